//! The admission adapter and the one choke point for cross-cutting rules: which requests are
//! looked at, the deadline, overrides, dry run, mode, and recording.

use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

use axum::http::StatusCode;
use k8s_openapi::api::core::v1::Namespace;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::config::Live;
use crate::engine::Engine;
use crate::output::policy::{self, OVERRIDE_ANNOTATION, Policy, RequestContext};
use crate::output::records::{Events, Metrics};
use crate::webhook::ratelimit::{Peer, PeerLimit};

/// Everything a review needs.
pub struct Admission {
    /// The preflight engine (absent in tests of bad input).
    pub engine: Option<Engine>,
    /// Mode, bypass groups, warning bound (replaced when the configuration is reloaded).
    pub policy: Live<Policy>,
    /// Upper bound for the preflight, whatever the API server's timeout.
    pub check_timeout: Duration,
    /// nsguard's own namespace: its deletion is never looked at.
    pub own_namespace: Option<String>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Event publisher (absent without a cluster).
    pub events: Option<Events>,
    /// Review slots (`--max-concurrent-reviews`); none left: fail open at once with a
    /// warning, never a queue past the API server's deadline. `None`: unbounded.
    pub slots: Option<Arc<tokio::sync::Semaphore>>,
    /// The per-peer rate limit (`--peer-rate-limit`, `--peer-burst`); a review over it fails
    /// open at once with a warning. `None`: no limit.
    pub peer_limit: Option<PeerLimit>,
}

/// Time kept back from the API server's timeout for answering.
const MARGIN: Duration = Duration::from_millis(1500);

/// An HTTP status and a JSON body.
pub type Reply = (StatusCode, Value);

fn bad_request(metrics: &Metrics, what: String) -> Reply {
    metrics.bad_request("malformed");
    tracing::info!(error = %what, "Bad request");
    (StatusCode::BAD_REQUEST, json!({"error": what}))
}

/// Parses `?timeout=10s` as the API server sends it.
pub fn parse_timeout(query: Option<&str>) -> Option<Duration> {
    let v = query?
        .split('&')
        .find_map(|kv| kv.strip_prefix("timeout="))?;
    let secs: f64 = if let Some(ms) = v.strip_suffix("ms") {
        ms.parse::<f64>().ok()? / 1000.0
    } else if let Some(s) = v.strip_suffix('s') {
        s.parse().ok()?
    } else if let Some(m) = v.strip_suffix('m') {
        m.parse::<f64>().ok()? * 60.0
    } else {
        return None;
    };
    (secs.is_finite() && secs > 0.0).then(|| Duration::from_secs_f64(secs.min(60.0)))
}

/// A report with nothing checked in `namespace`, saying why: the review fails open.
fn unchecked(namespace: &str, why: &str) -> crate::checks::report::Report {
    crate::checks::report::Report {
        namespace: namespace.to_string(),
        not_checked: vec![why.to_string()],
        ..Default::default()
    }
}

impl Admission {
    /// Answers one AdmissionReview body sent by `peer`.
    pub async fn review_from(
        &self,
        body: &[u8],
        timeout: Option<Duration>,
        peer: Option<Peer>,
    ) -> Reply {
        let started = Instant::now();
        let raw: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return bad_request(&self.metrics, format!("body is not JSON: {e}")),
        };
        if raw.get("apiVersion").and_then(Value::as_str) != Some("admission.k8s.io/v1")
            || raw.get("kind").and_then(Value::as_str) != Some("AdmissionReview")
        {
            return bad_request(
                &self.metrics,
                "expected apiVersion admission.k8s.io/v1 and kind AdmissionReview".into(),
            );
        }
        if raw.get("request").is_none_or(Value::is_null) {
            return bad_request(&self.metrics, "AdmissionReview has no request".into());
        }
        // Anything that is not a namespace DELETE passes untouched, whatever its object.
        let req_v = &raw["request"];
        let is_ns_delete = req_v["operation"] == "DELETE"
            && req_v["resource"]["group"] == ""
            && req_v["resource"]["resource"] == "namespaces"
            && req_v["subResource"].as_str().unwrap_or_default().is_empty();
        if !is_ns_delete {
            return self.allow_untouched(&raw);
        }
        let review: AdmissionReview<Namespace> = match serde_json::from_value(raw) {
            Ok(r) => r,
            Err(e) => {
                return bad_request(
                    &self.metrics,
                    format!("AdmissionReview does not parse: {e}"),
                );
            }
        };
        let req: AdmissionRequest<Namespace> = match review.try_into() {
            Ok(r) => r,
            Err(e) => return bad_request(&self.metrics, format!("AdmissionReview: {e}")),
        };
        let Some(namespace) = req.old_object.clone() else {
            return bad_request(
                &self.metrics,
                "DELETE of a namespace without oldObject".into(),
            );
        };
        if req.operation != Operation::Delete {
            return bad_request(&self.metrics, "operation mismatch".into());
        }
        self.decide(&req, namespace, timeout, peer, started).await
    }

    fn allow_untouched(&self, raw: &Value) -> Reply {
        let uid = raw["request"]["uid"].as_str().unwrap_or_default();
        (
            StatusCode::OK,
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                   "response": {"uid": uid, "allowed": true}}),
        )
    }

    async fn decide(
        &self,
        req: &AdmissionRequest<Namespace>,
        namespace: Namespace,
        timeout: Option<Duration>,
        peer: Option<Peer>,
        started: Instant,
    ) -> Reply {
        let name = namespace
            .metadata
            .name
            .clone()
            .unwrap_or_else(|| req.name.clone());
        // The span goes with the future (never a guard held across an await), so every line
        // logged while deciding carries this review's uid and namespace, whatever else the
        // executor interleaves.
        let span = tracing::info_span!("review", uid = %req.uid, namespace = %name, user = %req.user_info.username.clone().unwrap_or_default(), dry_run = req.dry_run);
        self.decide_in_span(req, namespace, name, timeout, peer, started)
            .instrument(span)
            .await
    }

    async fn decide_in_span(
        &self,
        req: &AdmissionRequest<Namespace>,
        namespace: Namespace,
        name: String,
        timeout: Option<Duration>,
        peer: Option<Peer>,
        started: Instant,
    ) -> Reply {
        let mut resp = AdmissionResponse::from(req);
        if self.own_namespace.as_deref() == Some(name.as_str()) {
            return reply(resp);
        }
        let budget = timeout
            .unwrap_or(Duration::from_secs(10))
            .saturating_sub(MARGIN)
            .min(self.check_timeout);
        let deadline = started + budget;
        // Only the API server's reviews have effects. It reviews the DELETE of a namespace that
        // exists, so a review whose namespace name and uid match no live namespace is forged
        // (anyone who reaches the Service can POST one) or replayed: it is answered, allowed
        // with a warning saying why, and counted; no preflight, no API call, no Event, no
        // review slot or rate-limit token. The override is read from the live namespace,
        // never from the request.
        let live = match &self.engine {
            Some(engine) => match verify(engine, &namespace, &name, deadline).await {
                Ok(live) => Some(live),
                Err(why) => return self.unverified(resp, &name, &why),
            },
            None => None,
        };
        let ctx = RequestContext {
            override_reason: live
                .as_ref()
                .and_then(|ns| ns.metadata.annotations.as_ref())
                .and_then(|a| a.get(OVERRIDE_ANNOTATION))
                .cloned(),
            groups: req.user_info.groups.clone().unwrap_or_default(),
        };
        let ns_uid = namespace.metadata.uid.clone();
        // A peer over its rate limit is answered at once: allowed with a warning, no preflight,
        // no API call, no Event.
        let rate_limited = self
            .peer_limit
            .as_ref()
            .zip(peer)
            .is_some_and(|(limit, peer)| !limit.admit(peer));
        if rate_limited {
            self.metrics.rate_limited();
        }
        // A burst (a deletion storm) waits for a slot, but never past half of what is left of
        // the deadline: then it fails open, counted as a fail-open decision like any
        // incomplete preflight.
        let slot = match &self.slots {
            _ if rate_limited => None,
            Some(slots) => {
                let now = Instant::now();
                let wait = deadline.saturating_duration_since(now) / 2;
                let permit = tokio::time::timeout(wait, slots.clone().acquire_owned()).await;
                Some(permit.ok().and_then(Result::ok))
            }
            None => None,
        };
        let report = match (&self.engine, live) {
            _ if rate_limited => unchecked(
                &name,
                "nsguard's rate limit for this client was reached (--peer-rate-limit)",
            ),
            _ if matches!(slot, Some(None)) => unchecked(
                &name,
                "nsguard is at its limit of concurrent reviews (--max-concurrent-reviews)",
            ),
            (Some(engine), Some(live)) => engine.preflight((*live).clone(), deadline).await,
            _ => unchecked(&name, "no cluster connection"),
        };
        let current = self.policy.load();
        let decision = policy::decide(&report, &current, &ctx);
        let took = started.elapsed();
        tracing::info!(
            mode = current.mode.as_str(),
            decision = decision.outcome.as_str(),
            findings = ?report.check_ids().iter().map(|c| c.as_str()).collect::<Vec<_>>(),
            not_checked = report.not_checked.len(),
            duration_ms = (took.as_secs_f64() * 1e6).round() / 1e3,
            "Decision"
        );
        self.metrics
            .decision(current.mode, &decision, req.dry_run, &report, took);
        if !req.dry_run
            && let Some(events) = &self.events
        {
            let user = req
                .user_info
                .username
                .as_deref()
                .unwrap_or("(unknown user)");
            events.publish(&name, ns_uid, current.mode, &decision, user);
        }
        if !decision.warnings.is_empty() {
            resp.warnings = Some(decision.warnings.clone());
        }
        if !decision.allowed {
            resp = resp.deny(decision.message.clone().unwrap_or_default());
            resp.result.code = 403;
            resp.result.reason = "Forbidden".into();
        }
        reply(resp)
    }
}

impl Admission {
    /// The answer to a review that matches no live namespace: allowed, with a warning saying
    /// why; counted, logged, nothing else.
    fn unverified(&self, mut resp: AdmissionResponse, name: &str, why: &str) -> Reply {
        self.metrics.unverified();
        tracing::info!(namespace = %name, reason = %why, "Unverified review");
        resp.warnings = Some(vec![crate::output::render::truncate(
            &crate::output::render::sanitize(&format!(
                "nsguard did not check this deletion: {why}"
            )),
            120,
        )]);
        reply(resp)
    }
}

/// Grace for the namespace watch to deliver a namespace created moments before its DELETE.
const WATCH_GRACE: Duration = Duration::from_secs(2);

/// How recent a namespace must be for nsguard to wait for its watch to deliver it.
const RECENT: Duration = Duration::from_secs(30);

/// The live namespace a review names (name and uid), or why the review matches none.
async fn verify(
    engine: &Engine,
    namespace: &Namespace,
    name: &str,
    deadline: Instant,
) -> Result<Arc<Namespace>, String> {
    use crate::cluster::gather::NamespaceMatch;
    let Some(uid) = namespace.metadata.uid.as_deref().filter(|u| !u.is_empty()) else {
        return Err("the review's namespace has no uid".into());
    };
    let gatherer = engine.gatherer();
    let found = match gatherer.live_namespace(name, uid) {
        // A namespace created moments ago may not have reached the watch yet: wait for it a
        // little (no API call). An old one the watch does not hold is not live.
        NamespaceMatch::NoMatch if created_recently(namespace) => {
            let until = (Instant::now() + WATCH_GRACE).min(deadline);
            gatherer.await_live_namespace(name, uid, until).await
        }
        other => other,
    };
    match found {
        NamespaceMatch::Live(ns) => Ok(ns),
        NamespaceMatch::Unsynced => Err("nsguard's namespace watch has not listed yet".into()),
        NamespaceMatch::NoMatch => Err(format!("no live namespace {name} has the review's uid")),
    }
}

fn created_recently(namespace: &Namespace) -> bool {
    let Some(created) = &namespace.metadata.creation_timestamp else {
        return false;
    };
    let age = crate::cluster::gather::now().as_second() - created.0.as_second();
    age < RECENT.as_secs() as i64
}

fn reply(resp: AdmissionResponse) -> Reply {
    let review = resp.into_review();
    match serde_json::to_value(&review) {
        Ok(v) => (StatusCode::OK, v),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": e.to_string()}),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_server_timeouts_parse() {
        assert_eq!(
            parse_timeout(Some("timeout=10s")),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_timeout(Some("a=b&timeout=500ms")),
            Some(Duration::from_millis(500))
        );
        assert_eq!(parse_timeout(Some("timeout=x")), None);
        assert_eq!(parse_timeout(Some("timeout=-1s")), None);
        assert_eq!(parse_timeout(None), None);
    }
}
