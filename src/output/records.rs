//! Records of decisions: one structured log line, Prometheus metrics with bounded labels, and
//! a Kubernetes Event on the Namespace (never for a dry run).

use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::checks::report::Report;
use crate::output::policy::{Decision, Mode, Ruling};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReviewLabels {
    mode: &'static str,
    decision: &'static str,
    dry_run: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FindingLabels {
    check: &'static str,
    severity: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IndexLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    os: &'static str,
    arch: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NamespaceLabels {
    namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BlockedLabels {
    namespace: String,
    check: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModeLabels {
    mode: &'static str,
}

/// Every mode, for gauges with one series per mode.
const MODES: [Mode; 3] = [Mode::Enforce, Mode::Warn, Mode::Audit];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    kind: &'static str,
}

/// nsguard's metrics.
pub struct Metrics {
    registry: Registry,
    reviews: Family<ReviewLabels, Counter>,
    findings: Family<FindingLabels, Counter>,
    bad_requests: Family<ErrorLabels, Counter>,
    rate_limited: Counter,
    unverified: Counter,
    duration: Histogram,
    ready: Gauge,
    certificate_expiry: Gauge,
    index_types: Family<IndexLabels, Gauge>,
    index_objects: Gauge,
    index_forbidden: Gauge,
    index_relists: Family<ReasonLabels, Counter>,
    index_sync_types: Family<MethodLabels, Gauge>,
    index_oldest_confirmation: Gauge<f64, std::sync::atomic::AtomicU64>,
    index_stale_types: Gauge,
    config_reloads: Family<ResultLabels, Counter>,
    config_last_reload_successful: Gauge,
    terminating: Terminating,
    config_mode: Family<ModeLabels, Gauge>,
    config_expected_mode: Family<ModeLabels, Gauge>,
    config_bypass_groups: Gauge,
}

/// The background watch's series: one per Terminating namespace (at most the watch's cap), so
/// their labels stay bounded by what is actually stuck.
struct Terminating {
    seconds: Family<NamespaceLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    blocked: Family<BlockedLabels, Gauge>,
    /// The checks each namespace's `blocked` series name, to remove the ones that stop.
    checks: std::sync::Mutex<std::collections::BTreeMap<String, Vec<&'static str>>>,
    total: Gauge,
    dropped: Counter,
    leader: Gauge,
    events: Family<ResultLabels, Counter>,
}

impl Terminating {
    fn register(registry: &mut Registry) -> Self {
        let seconds =
            Family::<NamespaceLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register_with_unit(
            "namespace_terminating",
            "How long each namespace the background watch follows has been Terminating (since its deletion timestamp); only Terminating namespaces, at most --watch-max-namespaces",
            Unit::Seconds,
            seconds.clone(),
        );
        let blocked = Family::<BlockedLabels, Gauge>::default();
        registry.register(
            "namespace_blocked",
            "1 for each check that blocks a Terminating namespace's deletion, as the background watch last found it",
            blocked.clone(),
        );
        let total = Gauge::default();
        registry.register(
            "namespaces_terminating",
            "Namespaces being deleted, as the namespace watch sees them (every one, past the cap too)",
            total.clone(),
        );
        let dropped = Counter::default();
        registry.register(
            "namespace_series_dropped",
            "Terminating namespaces left without nsguard_namespace_* series because --watch-max-namespaces was reached (each counted once)",
            dropped.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease and writes the background watch's Events, else 0",
            leader.clone(),
        );
        let events = Family::<ResultLabels, Counter>::default();
        registry.register(
            "terminating_events",
            "Warning Events NamespaceStuckTerminating by result (written, rate_limited: deferred by the per-namespace or global bound, failed)",
            events.clone(),
        );
        for result in ["written", "rate_limited", "failed"] {
            events.get_or_create(&ResultLabels { result }).inc_by(0);
        }
        Self {
            seconds,
            blocked,
            checks: std::sync::Mutex::default(),
            total,
            dropped,
            leader,
            events,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("nsguard");
        let reviews = Family::<ReviewLabels, Counter>::default();
        registry.register(
            "admission_reviews",
            "Namespace DELETE reviews by decision",
            reviews.clone(),
        );
        let findings = Family::<FindingLabels, Counter>::default();
        registry.register(
            "findings",
            "Findings by check and severity",
            findings.clone(),
        );
        let bad_requests = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "bad_requests",
            "Requests refused as malformed or too large",
            bad_requests.clone(),
        );
        let rate_limited = Counter::default();
        registry.register(
            "reviews_rate_limited",
            "Namespace DELETE reviews over their client's rate limit, allowed unchecked (also counted as fail_open)",
            rate_limited.clone(),
        );
        let index_forbidden = Gauge::default();
        registry.register(
            "index_types_forbidden",
            "Namespaced types nsguard's own identity may not list or watch (403): never checked until its role grants them",
            index_forbidden.clone(),
        );
        let unverified = Counter::default();
        registry.register(
            "reviews_unverified",
            "Namespace DELETE reviews whose namespace name and uid match no live namespace, answered (allowed) with no effect",
            unverified.clone(),
        );
        let duration = Histogram::new([
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ]);
        registry.register_with_unit(
            "preflight_duration",
            "Time from review received to decision",
            Unit::Seconds,
            duration.clone(),
        );
        let ready = Gauge::default();
        registry.register(
            "ready",
            "1 when every watch has listed and the webhook takes traffic, 0 before and while shutting down",
            ready.clone(),
        );
        let certificate_expiry = Gauge::default();
        registry.register_with_unit(
            "certificate_expiry_timestamp",
            "notAfter of the serving certificate in use, as a Unix time",
            Unit::Seconds,
            certificate_expiry.clone(),
        );
        let index_types = Family::<IndexLabels, Gauge>::default();
        registry.register(
            "index_types",
            "Namespaced types in the live content index by watch state (synced, syncing, failing)",
            index_types.clone(),
        );
        for state in ["synced", "syncing", "failing"] {
            index_types.get_or_create(&IndexLabels { state }).set(0);
        }
        let index_relists = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "index_relists",
            "Types of the live content index listed whole again, by reason (expired: its watch got 410 Gone; fallback: a streaming list was refused or never ended, so it was listed)",
            index_relists.clone(),
        );
        for reason in ["expired", "fallback"] {
            index_relists
                .get_or_create(&ReasonLabels { reason })
                .inc_by(0);
        }
        let index_sync_types = Family::<MethodLabels, Gauge>::default();
        registry.register(
            "index_sync_types",
            "Types of the live content index by how they were last listed whole (stream: a consistent streaming list; list: a paginated LIST)",
            index_sync_types.clone(),
        );
        for method in ["stream", "list"] {
            index_sync_types
                .get_or_create(&MethodLabels { method })
                .set(0);
        }
        // Always 1: its labels say which build runs, and its absence that none is scraped.
        let build_info = Family::<BuildLabels, Gauge>::default();
        registry.register(
            "build_info",
            "1, labelled with the version, OS and architecture of the running build",
            build_info.clone(),
        );
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                os: std::env::consts::OS,
                arch: std::env::consts::ARCH,
            })
            .set(1);
        let index_objects = Gauge::default();
        registry.register(
            "index_objects",
            "Objects held in the live content index, over every type (what its memory grows with)",
            index_objects.clone(),
        );
        let index_oldest_confirmation = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register_with_unit(
            "index_oldest_confirmation_age",
            "Longest time since the API server confirmed a synced type's watch (a list, an event or a bookmark)",
            Unit::Seconds,
            index_oldest_confirmation.clone(),
        );
        let index_stale_types = Gauge::default();
        registry.register(
            "index_stale_types",
            "Synced types not confirmed within --index-max-staleness: listed at each review, not read from the index",
            index_stale_types.clone(),
        );
        let config_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "config_reloads",
            "Changes of the configuration file seen, by result (applied, rejected: the configuration in force stays)",
            config_reloads.clone(),
        );
        for result in ["applied", "rejected"] {
            config_reloads
                .get_or_create(&ResultLabels { result })
                .inc_by(0);
        }
        let config_last_reload_successful = Gauge::default();
        registry.register(
            "config_last_reload_successful",
            "1 when the configuration file as it is now is in force, 0 when its last change was rejected",
            config_last_reload_successful.clone(),
        );
        config_last_reload_successful.set(1);
        let terminating = Terminating::register(&mut registry);
        let config_mode = Family::<ModeLabels, Gauge>::default();
        registry.register(
            "config_mode",
            "1 for the mode in force (enforce, warn or audit), 0 for the others",
            config_mode.clone(),
        );
        let config_expected_mode = Family::<ModeLabels, Gauge>::default();
        registry.register(
            "config_expected_mode",
            "1 for the mode the installation intends (--expected-mode, set by the chart and the manifests), 0 for the others; absent without the flag",
            config_expected_mode.clone(),
        );
        let config_bypass_groups = Gauge::default();
        registry.register(
            "config_bypass_groups",
            "Groups in bypass_groups, whose members' deletions are allowed with a warning",
            config_bypass_groups.clone(),
        );
        Self {
            terminating,
            registry,
            config_reloads,
            config_last_reload_successful,
            config_mode,
            config_expected_mode,
            config_bypass_groups,
            index_types,
            index_objects,
            index_relists,
            index_sync_types,
            index_oldest_confirmation,
            index_stale_types,
            reviews,
            findings,
            bad_requests,
            rate_limited,
            unverified,
            index_forbidden,
            duration,
            ready,
            certificate_expiry,
        }
    }
}

impl Metrics {
    /// Counts a decision.
    pub fn decision(
        &self,
        mode: Mode,
        decision: &Decision,
        dry_run: bool,
        report: &Report,
        took: Duration,
    ) {
        self.reviews
            .get_or_create(&ReviewLabels {
                mode: mode.as_str(),
                decision: decision.outcome.as_str(),
                dry_run: if dry_run { "true" } else { "false" },
            })
            .inc();
        for f in &report.findings {
            self.findings
                .get_or_create(&FindingLabels {
                    check: f.check.as_str(),
                    severity: f.severity.as_str(),
                })
                .inc();
        }
        self.duration.observe(took.as_secs_f64());
    }

    /// Counts a refused request (`malformed` or `too_large`).
    pub fn bad_request(&self, kind: &'static str) {
        self.bad_requests.get_or_create(&ErrorLabels { kind }).inc();
    }

    /// Counts a review over its client's rate limit (`--peer-rate-limit`).
    pub fn rate_limited(&self) {
        self.rate_limited.inc();
    }

    /// Counts a review that matches no live namespace (name and uid): a forged or replayed one.
    pub fn unverified(&self) {
        self.unverified.inc();
    }

    /// Records a change of the configuration file: put in force, or rejected.
    pub fn config_reload(&self, applied: bool) {
        let result = if applied { "applied" } else { "rejected" };
        self.config_reloads
            .get_or_create(&ResultLabels { result })
            .inc();
        self.config_last_reload_successful.set(i64::from(applied));
    }

    /// Records the configuration in force: its mode and how many groups bypass the checks.
    pub fn set_config(&self, mode: Mode, bypass_groups: usize) {
        for m in MODES {
            self.config_mode
                .get_or_create(&ModeLabels { mode: m.as_str() })
                .set(i64::from(m == mode));
        }
        self.config_bypass_groups
            .set(i64::try_from(bypass_groups).unwrap_or(i64::MAX));
    }

    /// Records the mode the installation intends (`--expected-mode`).
    pub fn set_expected_mode(&self, mode: Mode) {
        for m in MODES {
            self.config_expected_mode
                .get_or_create(&ModeLabels { mode: m.as_str() })
                .set(i64::from(m == mode));
        }
    }

    /// Records readiness (read from the flag at each scrape, so it is never stale).
    pub fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    /// Records how many objects the index holds.
    pub fn set_index_objects(&self, objects: usize) {
        self.index_objects
            .set(i64::try_from(objects).unwrap_or(i64::MAX));
    }

    /// Records the index's oldest watch confirmation and how many types are stale.
    pub fn set_index_freshness(&self, oldest_confirmation: Duration, stale: usize) {
        self.index_oldest_confirmation
            .set(oldest_confirmation.as_secs_f64());
        self.index_stale_types
            .set(i64::try_from(stale).unwrap_or(i64::MAX));
    }

    /// Records the index's relists so far (totals kept by the index: the counters catch up).
    pub fn set_index_relists(&self, expired: u64, fallback: u64) {
        for (reason, total) in [("expired", expired), ("fallback", fallback)] {
            let counter = self.index_relists.get_or_create(&ReasonLabels { reason });
            counter.inc_by(total.saturating_sub(counter.get()));
        }
    }

    /// Records how many indexed types were last listed whole by streaming list and by LIST.
    pub fn set_index_sync_methods(&self, stream: usize, list: usize) {
        for (method, n) in [("stream", stream), ("list", list)] {
            self.index_sync_types
                .get_or_create(&MethodLabels { method })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Records how many indexed types nsguard may not read.
    pub fn set_index_forbidden(&self, types: usize) {
        self.index_forbidden
            .set(i64::try_from(types).unwrap_or(i64::MAX));
    }

    /// Records how many indexed types are synced, syncing and failing.
    pub fn set_index_types(&self, synced: usize, syncing: usize, failing: usize) {
        for (state, n) in [
            ("synced", synced),
            ("syncing", syncing),
            ("failing", failing),
        ] {
            self.index_types
                .get_or_create(&IndexLabels { state })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Records a Terminating namespace as the background watch judged it: how long it has
    /// been Terminating and the checks that block it (the series of checks that no longer
    /// block are removed).
    pub fn set_terminating(&self, namespace: &str, seconds: f64, blocked: &[&'static str]) {
        let t = &self.terminating;
        t.seconds
            .get_or_create(&NamespaceLabels {
                namespace: namespace.to_string(),
            })
            .set(seconds);
        let mut checks = t.checks.lock().unwrap_or_else(|e| e.into_inner());
        let before = checks.entry(namespace.to_string()).or_default();
        for check in before.iter().filter(|c| !blocked.contains(c)) {
            t.blocked.remove(&BlockedLabels {
                namespace: namespace.to_string(),
                check,
            });
        }
        for &check in blocked {
            t.blocked
                .get_or_create(&BlockedLabels {
                    namespace: namespace.to_string(),
                    check,
                })
                .set(1);
        }
        *before = blocked.to_vec();
    }

    /// Removes every series of a namespace the background watch no longer follows (gone,
    /// no longer Terminating, or past the cap).
    pub fn forget_terminating(&self, namespace: &str) {
        let t = &self.terminating;
        t.seconds.remove(&NamespaceLabels {
            namespace: namespace.to_string(),
        });
        let mut checks = t.checks.lock().unwrap_or_else(|e| e.into_inner());
        for check in checks.remove(namespace).unwrap_or_default() {
            t.blocked.remove(&BlockedLabels {
                namespace: namespace.to_string(),
                check,
            });
        }
    }

    /// The namespaces the background watch has series for.
    pub fn terminating_series(&self) -> Vec<String> {
        let t = &self.terminating;
        let checks = t.checks.lock().unwrap_or_else(|e| e.into_inner());
        checks.keys().cloned().collect()
    }

    /// Records how many namespaces are being deleted, past the cap too.
    pub fn set_terminating_total(&self, n: usize) {
        self.terminating
            .total
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Counts namespaces newly left without series because of the cap.
    pub fn terminating_dropped(&self, n: u64) {
        self.terminating.dropped.inc_by(n);
    }

    /// Records whether this replica leads.
    pub fn set_leader(&self, leads: bool) {
        self.terminating.leader.set(i64::from(leads));
    }

    /// Counts a background Event: `written`, `rate_limited` or `failed`.
    pub fn terminating_event(&self, result: &'static str) {
        self.terminating
            .events
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// The gauge that holds the serving certificate's notAfter; the certificate loader sets
    /// it on every (re)load.
    pub fn certificate_expiry(&self) -> Gauge {
        self.certificate_expiry.clone()
    }

    /// The OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Publishes Events on Namespaces.
#[derive(Clone)]
pub struct Events {
    recorder: Recorder,
}

impl Events {
    /// A recorder reporting as controller `nsguard`, instance `instance`.
    pub fn new(client: Client, instance: Option<String>) -> Self {
        let reporter = Reporter {
            controller: "nsguard".into(),
            instance,
        };
        Self {
            recorder: Recorder::new(client, reporter),
        }
    }

    /// Publishes the Event for a decision, if the decision warrants one. Runs in the
    /// background so that it never delays the answer.
    /// `user` is who asked for the deletion (named in an override's Event).
    pub fn publish(
        &self,
        namespace: &str,
        uid: Option<String>,
        mode: Mode,
        decision: &Decision,
        user: &str,
    ) {
        let (type_, reason) = match decision.outcome {
            Ruling::Denied => (EventType::Warning, "DeletionDenied"),
            Ruling::Warned => (EventType::Warning, "DeletionWarned"),
            Ruling::Audited => (EventType::Warning, "DeletionWouldBeDenied"),
            Ruling::Overridden => (EventType::Warning, "DeletionOverridden"),
            Ruling::Allowed | Ruling::FailOpen => return,
        };
        let note = match decision.outcome {
            // Who deleted despite blockers, on what grounds (the override's reason or the
            // bypass group, the first warning), then the blockers.
            Ruling::Overridden => format!(
                "deleted by {user}: {}. {}",
                decision
                    .warnings
                    .first()
                    .map(String::as_str)
                    .unwrap_or_default(),
                decision.message.as_deref().unwrap_or_default()
            ),
            _ => decision
                .message
                .clone()
                .or_else(|| decision.warnings.first().cloned())
                .unwrap_or_default(),
        };
        let event = Event {
            type_,
            reason: reason.into(),
            // The API limits an Event's note to 1 KiB.
            note: Some(crate::output::render::truncate(&note, 1000)),
            action: format!("Delete{}", capitalised(mode.as_str())),
            secondary: None,
        };
        let reference = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Namespace".into()),
            name: Some(namespace.to_string()),
            uid,
            ..Default::default()
        };
        let recorder = self.recorder.clone();
        let ns = namespace.to_string();
        tokio::spawn(async move {
            if let Err(error) = recorder.publish(&event, &reference).await {
                tracing::warn!(%error, namespace = %ns, "Failed to publish event");
            }
        });
    }
}

/// The reason of the background watch's Event.
pub const STUCK_REASON: &str = "NamespaceStuckTerminating";

impl Events {
    /// Publishes the background watch's Warning Event on a Terminating namespace: what holds
    /// it and the first remedy (`note`, cut to the API's 1 KiB). Awaited: the watch counts
    /// the result and tries again later after a failure.
    pub async fn publish_stuck(
        &self,
        namespace: &str,
        uid: Option<String>,
        note: &str,
    ) -> Result<(), kube::Error> {
        let event = Event {
            type_: EventType::Warning,
            reason: STUCK_REASON.into(),
            note: Some(crate::output::render::truncate(note, 1000)),
            action: "WatchTerminating".into(),
            secondary: None,
        };
        let reference = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Namespace".into()),
            name: Some(namespace.to_string()),
            uid,
            ..Default::default()
        };
        self.recorder.publish(&event, &reference).await
    }
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}
