//! The background watch of Terminating namespaces in `nsguard serve`.
//!
//! Admission runs once; a namespace that began Terminating before nsguard was installed,
//! during a fail-open, or whose controller died after the allow, would stay invisible until
//! someone runs `nsguard diagnose`. This task follows every namespace the namespace watch sees
//! being deleted and judges it with the same engine (facts from the live index, the same
//! checks, the same diagnosis): metrics on every replica (how long each has been Terminating,
//! which checks block it), and a Warning Event naming the cause and the first remedy, written
//! by the leader only, when the cause changes, and rate-limited.
//!
//! A namespace is judged again when its object changes (the namespace watch), and at least
//! every `interval` for what changes inside it (the content index has no per-namespace
//! notification; the periodic judgement reads the index, not the API server). Blockers found
//! from the index are confirmed by the engine's consistent read before they are believed, once
//! per change of cause, so a namespace that stays stuck costs no API call per round.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use tokio::time::Instant;

use crate::checks::report::CheckId;
use crate::cluster::gather;
use crate::cluster::lease::Leadership;
use crate::engine::Engine;
use crate::output::records::{Events, Metrics};
use crate::remedy::diagnose::{Diagnosis, diagnose};

/// How often the task wakes to update the Terminating times, judge what is due and retry
/// Events deferred by the rate limit.
const TICK: Duration = Duration::from_secs(5);
/// After a namespace event, how long to wait for the burst to end before judging.
const COALESCE: Duration = Duration::from_millis(500);

/// The watch's settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Each namespace is judged again at least this often.
    pub interval: Duration,
    /// At most this many namespaces get series (the longest Terminating first); the others
    /// are counted in `nsguard_namespace_series_dropped_total`.
    pub max_namespaces: usize,
    /// At most one Event per namespace this often.
    pub event_interval: Duration,
    /// At most this many Events a minute over every namespace.
    pub events_per_minute: usize,
    /// Upper bound of one judgement.
    pub check_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(30),
            max_namespaces: 500,
            event_interval: Duration::from_secs(300),
            events_per_minute: 20,
            check_timeout: Duration::from_secs(8),
        }
    }
}

/// What holds a namespace: the blocking checks, in the diagnosis' order. An Event is written
/// when it changes (not when a count or an age in a summary does).
type Cause = Vec<CheckId>;

/// Decides which Events may be written: the cause changed since the last one written for the
/// namespace, no Event for it within `per_namespace`, and fewer than `per_minute` over every
/// namespace in the last minute.
#[derive(Debug)]
pub struct EventGate {
    per_namespace: Duration,
    per_minute: usize,
    written: BTreeMap<String, (Cause, Instant)>,
    recent: VecDeque<Instant>,
}

/// What the gate says of an Event.
#[derive(Debug, PartialEq, Eq)]
pub enum Gate {
    /// Write it.
    Write,
    /// The same cause was written already: nothing new to say.
    Said,
    /// A new cause, but a bound holds it back for now: try again later.
    Deferred,
}

impl EventGate {
    /// A gate with these bounds.
    pub fn new(per_namespace: Duration, per_minute: usize) -> Self {
        Self {
            per_namespace,
            per_minute: per_minute.max(1),
            written: BTreeMap::new(),
            recent: VecDeque::new(),
        }
    }

    fn admit(&mut self, namespace: &str, cause: &Cause, now: Instant) -> Gate {
        if let Some((said, at)) = self.written.get(namespace) {
            if said == cause {
                return Gate::Said;
            }
            if now.saturating_duration_since(*at) < self.per_namespace {
                return Gate::Deferred;
            }
        }
        while self
            .recent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= Duration::from_secs(60))
        {
            self.recent.pop_front();
        }
        if self.recent.len() >= self.per_minute {
            return Gate::Deferred;
        }
        Gate::Write
    }

    fn written(&mut self, namespace: &str, cause: Cause, now: Instant) {
        self.written.insert(namespace.to_string(), (cause, now));
        self.recent.push_back(now);
    }

    fn forget(&mut self, namespace: &str) {
        self.written.remove(namespace);
    }
}

/// The Event's note: how long, the first cause, the first remedy, and where to read more.
pub fn note(d: &Diagnosis, terminating_for: Duration) -> String {
    let mut out = format!(
        "Terminating for {}",
        humantime::format_duration(Duration::from_secs(terminating_for.as_secs()))
    );
    if let Some(first) = d.blockers.first() {
        out.push_str(&format!(": [{}] {}", first.check, first.summary));
        let more = d.blockers.len() - 1;
        if more > 0 {
            out.push_str(&format!(" (and {more} more blocker(s))"));
        }
    }
    if let Some(step) = d.steps.first() {
        out.push_str(&format!(". First remedy: {}", step.command));
    }
    out.push_str(&format!(
        ". Run `nsguard diagnose {}` for every step and its risk.",
        d.namespace
    ));
    out
}

/// One namespace followed.
struct Tracked {
    uid: Option<String>,
    resource_version: Option<String>,
    judged: Option<Instant>,
    /// The blocking checks found from the index alone at the last judgement that was then
    /// confirmed: while the index keeps saying the same, no confirmation is read again.
    confirmed: Option<Cause>,
    cause: Cause,
    note: String,
}

/// Starts the watch in the background.
pub fn spawn(
    engine: Engine,
    metrics: Arc<Metrics>,
    events: Events,
    leadership: Leadership,
    settings: Settings,
) {
    tokio::spawn(run(engine, metrics, events, leadership, settings));
}

async fn run(
    engine: Engine,
    metrics: Arc<Metrics>,
    events: Events,
    leadership: Leadership,
    settings: Settings,
) {
    let gatherer = engine.gatherer().clone();
    // Judge only on complete facts: every watch listed, every content type synced or failing.
    loop {
        if gatherer.wait_synced(Duration::from_secs(30)).await.is_ok() && gatherer.index_ready() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tracing::info!(
        interval = %humantime::format_duration(settings.interval),
        "Watching Terminating namespaces"
    );
    let mut changes = gatherer.snapshot_changes();
    let mut leading = leadership.subscribe();
    let mut watch = Watch {
        engine,
        metrics,
        events,
        leadership,
        gate: EventGate::new(settings.event_interval, settings.events_per_minute),
        settings,
        tracked: BTreeMap::new(),
        dropped: BTreeSet::new(),
    };
    loop {
        watch.round().await;
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    tokio::time::sleep(TICK).await;
                } else {
                    tokio::time::sleep(COALESCE).await;
                }
            }
            _ = leading.changed() => {}
            _ = tokio::time::sleep(TICK) => {}
        }
    }
}

struct Watch {
    engine: Engine,
    metrics: Arc<Metrics>,
    events: Events,
    leadership: Leadership,
    settings: Settings,
    gate: EventGate,
    tracked: BTreeMap<String, Tracked>,
    /// Namespaces past the cap, already counted.
    dropped: BTreeSet<String>,
}

impl Watch {
    async fn round(&mut self) {
        let leads = self.leadership.is_leader();
        self.metrics.set_leader(leads);
        let now = gather::now();
        let mut all = self.engine.gatherer().terminating_namespaces();
        self.metrics.set_terminating_total(all.len());
        // The longest Terminating first: past the cap, the newest go without series.
        all.sort_by(|a, b| {
            let key = |ns: &Namespace| {
                (
                    ns.metadata.deletion_timestamp.as_ref().map(|t| t.0),
                    ns.metadata.name.clone(),
                )
            };
            let (ka, kb) = (key(a), key(b));
            // A namespace without a deletion timestamp (phase only) sorts last.
            (ka.0.is_none(), ka).cmp(&(kb.0.is_none(), kb))
        });
        let over = all.split_off(all.len().min(self.settings.max_namespaces));
        let mut newly_dropped = 0;
        let over_names: BTreeSet<String> = over
            .iter()
            .filter_map(|ns| ns.metadata.name.clone())
            .collect();
        for name in &over_names {
            if self.dropped.insert(name.clone()) {
                newly_dropped += 1;
            }
        }
        self.dropped.retain(|n| over_names.contains(n));
        if newly_dropped > 0 {
            self.metrics.terminating_dropped(newly_dropped);
            tracing::warn!(
                count = over_names.len(),
                cap = self.settings.max_namespaces,
                "More Terminating namespaces than --watch-max-namespaces: the newest have no series"
            );
        }
        let kept: BTreeSet<String> = all
            .iter()
            .filter_map(|ns| ns.metadata.name.clone())
            .collect();
        let gone: Vec<String> = self
            .tracked
            .keys()
            .filter(|n| !kept.contains(*n))
            .cloned()
            .collect();
        for name in gone {
            self.tracked.remove(&name);
            self.gate.forget(&name);
            self.metrics.forget_terminating(&name);
        }
        for ns in all {
            let Some(name) = ns.metadata.name.clone() else {
                continue;
            };
            let since = ns
                .metadata
                .deletion_timestamp
                .as_ref()
                .map(|t| now.as_millisecond().saturating_sub(t.0.as_millisecond()))
                .unwrap_or(0)
                .max(0);
            let terminating_for = Duration::from_millis(u64::try_from(since).unwrap_or(0));
            let due = match self.tracked.get(&name) {
                None => true,
                Some(t) => {
                    t.uid != ns.metadata.uid
                        || t.resource_version != ns.metadata.resource_version
                        || t.judged
                            .is_none_or(|j| j.elapsed() >= self.settings.interval)
                }
            };
            if due {
                self.judge(&name, &ns, terminating_for).await;
            }
            let Some(t) = self.tracked.get(&name) else {
                continue;
            };
            let blocked: Vec<&'static str> = t.cause.iter().map(|c| c.as_str()).collect();
            self.metrics
                .set_terminating(&name, terminating_for.as_secs_f64(), &blocked);
            if leads && !t.cause.is_empty() {
                let (cause, note, uid) = (t.cause.clone(), t.note.clone(), t.uid.clone());
                self.event(&name, uid, cause, &note).await;
            }
        }
    }

    /// Judges one namespace: the facts from the index and the checks; blockers the index
    /// shows that were not confirmed before are confirmed with the engine's consistent read.
    async fn judge(&mut self, name: &str, ns: &Namespace, terminating_for: Duration) {
        let deadline = Instant::now() + self.settings.check_timeout;
        let facts = self.engine.facts(ns.clone(), deadline).await;
        let mut report = self.engine.check(&facts);
        let seen = cause_of(&report);
        let previous = self.tracked.get(name).filter(|t| t.uid == ns.metadata.uid);
        let confirmed = previous.and_then(|t| t.confirmed.clone());
        let (cause, confirmed) = if seen.is_empty() || confirmed.as_ref() == Some(&seen) {
            (
                previous
                    .filter(|_| !seen.is_empty())
                    .map(|t| t.cause.clone())
                    .unwrap_or_default(),
                Some(seen),
            )
        } else {
            report = self.engine.preflight(ns.clone(), deadline).await;
            (cause_of(&report), Some(seen))
        };
        let d = diagnose(&facts, &report);
        if !report.not_checked.is_empty() {
            tracing::debug!(namespace = %name, not_checked = %report.not_checked.join("; "),
                "Terminating namespace judged with something not checked");
        }
        self.tracked.insert(
            name.to_string(),
            Tracked {
                uid: ns.metadata.uid.clone(),
                resource_version: ns.metadata.resource_version.clone(),
                judged: Some(Instant::now()),
                confirmed,
                note: note(&d, terminating_for),
                cause,
            },
        );
    }

    async fn event(&mut self, name: &str, uid: Option<String>, cause: Cause, note: &str) {
        let now = Instant::now();
        match self.gate.admit(name, &cause, now) {
            Gate::Said => {}
            Gate::Deferred => self.metrics.terminating_event("rate_limited"),
            Gate::Write => match self.events.publish_stuck(name, uid, note).await {
                Ok(()) => {
                    self.gate.written(name, cause, now);
                    self.metrics.terminating_event("written");
                    tracing::info!(namespace = %name, note = %note, "Namespace stuck Terminating: Event written");
                }
                Err(error) => {
                    self.metrics.terminating_event("failed");
                    tracing::warn!(%error, namespace = %name, "Failed to publish the Terminating namespace's Event");
                }
            },
        }
    }
}

/// The blocking checks of a report, in the diagnosis' order (by remedy order, then id).
fn cause_of(report: &crate::checks::report::Report) -> Cause {
    let mut cause: Vec<CheckId> = report.blocking().map(|f| f.check).collect();
    cause.sort_by_key(|c| (c.entry().stage, *c));
    cause.dedup();
    cause
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::{self, fixtures};

    #[test]
    fn an_event_per_change_of_cause_at_most_every_interval() {
        let mut gate = EventGate::new(Duration::from_secs(300), 100);
        let t0 = Instant::now();
        let a = vec![CheckId::FinalizerController];
        let b = vec![CheckId::ApiserviceUnavailable];
        assert_eq!(gate.admit("ns", &a, t0), Gate::Write);
        gate.written("ns", a.clone(), t0);
        // The same cause again: nothing new to say, however late.
        assert_eq!(
            gate.admit("ns", &a, t0 + Duration::from_secs(3600)),
            Gate::Said
        );
        // A new cause within five minutes waits; after, it is written.
        assert_eq!(
            gate.admit("ns", &b, t0 + Duration::from_secs(60)),
            Gate::Deferred
        );
        assert_eq!(
            gate.admit("ns", &b, t0 + Duration::from_secs(300)),
            Gate::Write
        );
        // Another namespace is not held back by this one.
        assert_eq!(gate.admit("other", &a, t0), Gate::Write);
        // Forgotten (the namespace went): its next Event is new.
        gate.forget("ns");
        assert_eq!(gate.admit("ns", &a, t0), Gate::Write);
    }

    #[test]
    fn the_global_bound_defers_past_its_count_a_minute() {
        let mut gate = EventGate::new(Duration::from_secs(300), 2);
        let t0 = Instant::now();
        let a = vec![CheckId::FinalizerController];
        for ns in ["a", "b"] {
            assert_eq!(gate.admit(ns, &a, t0), Gate::Write);
            gate.written(ns, a.clone(), t0);
        }
        assert_eq!(gate.admit("c", &a, t0), Gate::Deferred);
        assert_eq!(
            gate.admit("c", &a, t0 + Duration::from_secs(61)),
            Gate::Write
        );
    }

    #[test]
    fn the_note_names_the_cause_and_the_first_remedy() {
        let mut facts = fixtures::facts("team-a")
            .with_content(
                "example.com",
                "widgets",
                &[("w1", &["example.com/cleanup"])],
            )
            .without_controller("widgets.example.com")
            .build();
        facts.namespace.namespace.status = Some(k8s_openapi::api::core::v1::NamespaceStatus {
            phase: Some("Terminating".into()),
            conditions: None,
        });
        let report = checks::run(&facts, &checks::Settings::default());
        let d = diagnose(&facts, &report);
        let cause = cause_of(&report);
        assert!(cause.contains(&CheckId::FinalizerController), "{cause:?}");
        let n = note(&d, Duration::from_secs(754));
        assert!(n.starts_with("Terminating for 12m 34s: ["), "{n}");
        assert!(n.contains("finalizer-controller"), "{n}");
        assert!(n.contains("First remedy: "), "{n}");
        assert!(n.ends_with("Run `nsguard diagnose team-a` for every step and its risk."));
    }
}
