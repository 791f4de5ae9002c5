//! The preflight: facts -> checks -> report, shared by the webhook and the CLI. Concurrent
//! preflights of the same namespace share one gathering.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use k8s_openapi::api::core::v1::Namespace;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::checks::registry::Confirm;
use crate::checks::report::Report;
use crate::checks::{self, Settings};
use crate::cluster::gather::{self, Gatherer};
use crate::facts::admission::budget::{self, Budget, CutOff};
use crate::facts::{Facts, ResourceType};

/// How long past its deadline a caller waits for the gathering it joined: a gathering bounded
/// by the same deadline stops its calls at that instant and then says what it could not
/// read ("list samples.example.com in ns"), which is worth more to the operator than "deadline
/// reached". The admission handler keeps a margin of 1.5 s after the deadline for this.
const REPORT_GRACE: Duration = Duration::from_millis(250);

/// How many reviews run their checks at once on the blocking pool: each is bounded by its CEL
/// budget and deadline, and this bounds how many threads a hostile policy can keep busy.
pub const CHECK_THREADS: usize = 2;

type Gathering = Shared<BoxFuture<'static, Option<Arc<Facts>>>>;

/// Runs preflights.
#[derive(Clone)]
pub struct Engine {
    gatherer: Gatherer,
    /// Shared by every clone: a reloaded configuration applies to the next preflight.
    settings: Arc<ArcSwap<Settings>>,
    inflight: Arc<Mutex<HashMap<String, (Gathering, Instant)>>>,
    /// Threads of the blocking pool the checks may hold at once (see [`Engine::check_within`]).
    check_pool: Arc<Semaphore>,
}

impl Engine {
    /// An engine over a started gatherer.
    pub fn new(gatherer: Gatherer, settings: Settings) -> Self {
        Self {
            gatherer,
            settings: Arc::new(ArcSwap::from_pointee(settings)),
            inflight: Arc::default(),
            check_pool: Arc::new(Semaphore::new(CHECK_THREADS)),
        }
    }

    /// Puts new check settings in force for the preflights that start from now on.
    pub fn set_settings(&self, settings: Settings) {
        self.settings.store(Arc::new(settings));
    }

    /// The gatherer.
    pub fn gatherer(&self) -> &Gatherer {
        &self.gatherer
    }

    /// Gathers facts for `namespace` and runs every check, within `deadline`.
    ///
    /// With the live index, content may lag by milliseconds: before a deny that rests on
    /// content (finalizers, objects a backend or a webhook matters for), the types the
    /// namespace holds are read again with a consistent LIST and the checks run on that;
    /// only what still holds is reported. Before a deny that rests on discovery (a `Stale`
    /// group-version, a type that fails to list), discovery is read again too.
    pub async fn preflight(&self, namespace: Namespace, deadline: Instant) -> Report {
        let facts = self.facts(namespace.clone(), deadline).await;
        let report = self.check_within(facts.clone(), deadline).await;
        // Findings whose evidence is namespace content (or a failed list of it) are confirmed
        // by a LIST before a deny: a list that failed once for a moment (an etcd leader change,
        // a restart) is not evidence of a hang; one that fails again is.
        let confirmed =
            |f: &&crate::checks::report::Finding| f.check.entry().confirm != Confirm::No;
        let on_content = report.blocking().any(|f| confirmed(&f));
        // Findings that can rest on aggregated discovery (their entry says so): discovery is
        // read again, so that an aggregated API fixed a moment ago (its APIService deleted,
        // the group gone from the API server's discovery) is not denied from nsguard's copy.
        let on_discovery = report.blocking().any(|f| f.check.entry().on_discovery);
        if !self.gatherer.indexed() || !(on_content || on_discovery) {
            return report;
        }
        // One fresh read of discovery; if it cannot be made, the shared copy is not evidence
        // enough for a deny: its `Stale` group-versions are left out and said not checked.
        let unconfirmed = if on_discovery {
            self.gatherer.confirm_discovery(deadline).await.err()
        } else {
            None
        };
        // The finalizer checks read only objects with finalizers, and list-failure only the
        // failing lists: when nothing else blocks, only those types are read again (one call
        // for a custom resource whose finalizer has no controller). Any other confirmed finding reads every type again.
        let narrow = report
            .blocking()
            .filter(confirmed)
            .all(|f| f.check.entry().confirm == Confirm::Narrow);
        let relist: BTreeSet<ResourceType> = facts
            .namespace
            .content
            .iter()
            .filter(|c| {
                on_content && (!narrow || c.objects.iter().any(|o| !o.finalizers.is_empty()))
            })
            .map(|c| c.resource.clone())
            .chain(
                facts
                    .namespace
                    .list_failures
                    .iter()
                    .map(|f| f.resource.clone()),
            )
            .collect();
        let mut fresh = gather_facts(
            &self.gatherer,
            &self.settings.load(),
            namespace,
            deadline,
            &relist,
            true,
        )
        .await;
        if let Some(error) = unconfirmed
            && !fresh.cluster.discovery.stale.is_empty()
        {
            let mut cluster = (*fresh.cluster).clone();
            let stale = std::mem::take(&mut cluster.discovery.stale);
            fresh.cluster = Arc::new(cluster);
            fresh.not_checked.push(format!(
                "discovery ({} Stale, not confirmed): {error}",
                stale.join(", ")
            ));
        }
        self.check_within(Arc::new(fresh), deadline).await
    }

    /// Runs every check on facts already gathered, with a CEL budget of its own (see
    /// [`budget`]) and no deadline: for the command line, whose caller waits.
    pub fn check(&self, facts: &Facts) -> Report {
        budget::within(Budget::review(None), || {
            checks::run(facts, &self.settings.load())
        })
        .0
    }

    /// Runs every check on facts already gathered, off the async runtime, by `deadline`.
    ///
    /// The checks evaluate ValidatingAdmissionPolicies' and webhooks' CEL, whose cost grows
    /// with objects x writes x policies: they run on the blocking pool, at most
    /// [`CHECK_THREADS`] reviews at once, each within a review's CEL budget and its deadline,
    /// so that no policy can hold the runtime that answers other reviews and `/livez`. When no
    /// thread is free by the deadline, or the checks outlive it, they run here with no CEL
    /// budget at all: what CEL would have said is reported as not evaluated ("deadline"),
    /// and every other check, cheap, still answers.
    pub async fn check_within(&self, facts: Arc<Facts>, deadline: Instant) -> Report {
        let settings = self.settings.load_full();
        let permit = tokio::time::timeout_at(deadline, self.check_pool.clone().acquire_owned());
        if let Ok(Ok(permit)) = permit.await {
            let (f, s) = (facts.clone(), settings.clone());
            let until = deadline.into_std();
            let task = tokio::task::spawn_blocking(move || {
                let _permit = permit;
                budget::within(Budget::review(Some(until)), || checks::run(&f, &s)).0
            });
            if let Ok(Ok(report)) = tokio::time::timeout_at(deadline + REPORT_GRACE, task).await {
                return report;
            }
        }
        budget::within(Budget::spent(CutOff::Deadline), || {
            checks::run(&facts, &settings)
        })
        .0
    }

    /// The facts for one namespace; a gathering already under way for it is joined.
    ///
    /// The gathering runs in its own task, so a caller that goes away (the API server cancels
    /// a review) does not cancel it: the API server's retry joins it and gets a real answer.
    /// Every caller waits only until its own deadline (and [`REPORT_GRACE`]); one that joined
    /// a gathering bounded by an earlier deadline, which left something unchecked, gathers
    /// again with its own.
    pub async fn facts(&self, namespace: Namespace, deadline: Instant) -> Arc<Facts> {
        let (shared, its_deadline) = self.join_or_start(&namespace, deadline);
        let facts = match tokio::time::timeout_at(deadline + REPORT_GRACE, shared).await {
            Ok(Some(facts)) => facts,
            Ok(None) | Err(_) => {
                Arc::new(unchecked(&namespace, "namespace facts: deadline reached"))
            }
        };
        if facts.not_checked.is_empty() || its_deadline + Duration::from_millis(500) >= deadline {
            return facts;
        }
        let settings = self.settings.load_full();
        Arc::new(
            gather_facts(
                &self.gatherer,
                &settings,
                namespace,
                deadline,
                &BTreeSet::new(),
                false,
            )
            .await,
        )
    }

    fn join_or_start(&self, namespace: &Namespace, deadline: Instant) -> (Gathering, Instant) {
        let name = namespace.metadata.name.clone().unwrap_or_default();
        let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((g, d)) = inflight.get(&name) {
            return (g.clone(), *d);
        }
        let gatherer = self.gatherer.clone();
        let settings = self.settings.load_full();
        let inflight_map = self.inflight.clone();
        let key = name.clone();
        let namespace = namespace.clone();
        let task = tokio::spawn(async move {
            let facts = Arc::new(
                gather_facts(
                    &gatherer,
                    &settings,
                    namespace,
                    deadline,
                    &BTreeSet::new(),
                    false,
                )
                .await,
            );
            inflight_map
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key);
            facts
        });
        let fut = async move { task.await.ok() }.boxed().shared();
        inflight.insert(name, (fut.clone(), deadline));
        (fut, deadline)
    }
}

/// Facts with nothing gathered but the namespace, saying why.
fn unchecked(namespace: &Namespace, why: &str) -> Facts {
    Facts {
        now: gather::now(),
        name: namespace.metadata.name.clone().unwrap_or_default(),
        cluster: Arc::default(),
        namespace: crate::facts::NamespaceFacts {
            namespace: namespace.clone(),
            ..Default::default()
        },
        not_checked: vec![why.to_string()],
    }
}

async fn gather_facts(
    gatherer: &Gatherer,
    settings: &Settings,
    namespace: Namespace,
    deadline: Instant,
    relist: &BTreeSet<ResourceType>,
    fresh: bool,
) -> Facts {
    let name = namespace.metadata.name.clone().unwrap_or_default();
    let mut not_checked = Vec::new();
    let cluster = match gatherer.cluster(deadline, fresh).await {
        Ok(c) => c,
        Err(e) => {
            not_checked.push(format!("cluster facts: {e}"));
            Arc::default()
        }
    };
    let (ns_facts, mut missed) = if not_checked.is_empty() {
        gatherer
            .namespace(namespace, &cluster, deadline, relist)
            .await
    } else {
        not_checked.push("namespace content".to_string());
        (
            crate::facts::NamespaceFacts {
                namespace,
                ..Default::default()
            },
            Vec::new(),
        )
    };
    not_checked.append(&mut missed);
    let mut ns_facts = ns_facts;
    if !ns_facts.content.is_empty() {
        let (controllers, mut missed) = gatherer
            .controllers(
                &cluster,
                &ns_facts.content,
                &name,
                &settings.finalizer_controllers,
                deadline,
            )
            .await;
        ns_facts.controllers = controllers;
        not_checked.append(&mut missed);
        let (components, mut missed) = gatherer
            .components(&ns_facts.content, gather::now(), deadline)
            .await;
        ns_facts.components = components;
        not_checked.append(&mut missed);
    }
    Facts {
        now: gather::now(),
        name,
        cluster,
        namespace: ns_facts,
        not_checked,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::report::CheckId;
    use crate::cluster::gather::{ContentSource, Limits};
    use crate::cluster::testing::slow_discovery;
    use std::sync::atomic::Ordering;

    fn namespace(name: &str) -> Namespace {
        let mut ns = Namespace::default();
        ns.metadata.name = Some(name.to_string());
        ns
    }

    /// An engine that lists (no index) through `client`.
    fn listing_engine(client: kube::Client) -> Engine {
        let limits = Limits {
            call_timeout: Duration::from_secs(5),
            concurrency: 4,
            api_calls: 16,
        };
        Engine::new(
            Gatherer::start(
                client,
                limits,
                ContentSource::List,
                BTreeSet::new(),
                Default::default(),
            ),
            Settings::default(),
        )
    }

    #[tokio::test]
    async fn a_cancelled_review_then_its_retry_gets_a_real_answer() {
        let (client, discoveries) = slow_discovery(Duration::from_millis(300));
        let engine = listing_engine(client);
        // The API server gives up on the first review (its caller goes away) while its
        // gathering is still waiting for discovery.
        let first = engine.facts(namespace("team-a"), Instant::now() + Duration::from_secs(2));
        assert!(
            tokio::time::timeout(Duration::from_millis(20), first)
                .await
                .is_err()
        );
        // The gathering started: aggregated discovery is two calls, /api and /apis.
        assert_eq!(discoveries.load(Ordering::SeqCst), 2);
        // The retry joins that gathering, which went on without its first caller, and gets
        // facts with nothing left unchecked; nothing was read twice.
        let facts = engine
            .facts(namespace("team-a"), Instant::now() + Duration::from_secs(5))
            .await;
        assert!(facts.not_checked.is_empty(), "{:?}", facts.not_checked);
        assert_eq!(discoveries.load(Ordering::SeqCst), 2);
        assert_eq!(facts.name, "team-a");
    }

    /// An engine over the live index (as `serve` runs) whose `/apis` discovery shows
    /// `metrics.k8s.io/v1beta1` Stale while `stale` is set; waits for its first discovery.
    async fn indexed_engine_with_stale_metrics(
        stale: Arc<std::sync::atomic::AtomicBool>,
    ) -> (Engine, Arc<std::sync::atomic::AtomicUsize>) {
        let apis = Arc::new(move || {
            if stale.load(Ordering::SeqCst) {
                vec![serde_json::json!({"metadata": {"name": "metrics.k8s.io"},
                    "versions": [{"version": "v1beta1", "freshness": "Stale"}]})]
            } else {
                Vec::new()
            }
        });
        let (client, discoveries) =
            crate::cluster::testing::mock_discovery(Duration::from_millis(1), apis);
        let limits = Limits {
            call_timeout: Duration::from_secs(5),
            concurrency: 4,
            api_calls: 16,
        };
        let engine = Engine::new(
            Gatherer::start(
                client,
                limits,
                ContentSource::Index,
                BTreeSet::new(),
                Default::default(),
            ),
            Settings::default(),
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !engine.gatherer().index_ready() {
            assert!(std::time::Instant::now() < deadline, "no discovery");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (engine, discoveries)
    }

    fn blocking(report: &Report) -> Vec<CheckId> {
        report.blocking().map(|f| f.check).collect()
    }

    #[tokio::test]
    async fn a_deny_on_a_stale_group_version_is_confirmed_by_a_fresh_discovery_read() {
        let stale = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (engine, discoveries) = indexed_engine_with_stale_metrics(stale.clone()).await;
        let deadline = || Instant::now() + Duration::from_secs(5);
        // Still Stale at the API server: the fresh read confirms it, and the deny stands.
        let report = engine.preflight(namespace("team-a"), deadline()).await;
        assert_eq!(blocking(&report), vec![CheckId::ApiserviceUnavailable]);
        // The user fixes the aggregated API (deletes its APIService): the API server's
        // discovery no longer lists the group, while nsguard's shared copy still does.
        stale.store(false, Ordering::SeqCst);
        let before = discoveries.load(Ordering::SeqCst);
        let report = engine.preflight(namespace("team-a"), deadline()).await;
        assert_eq!(blocking(&report), Vec::<CheckId>::new(), "{report:?}");
        assert!(report.not_checked.is_empty(), "{:?}", report.not_checked);
        // One fresh read: /api and /apis.
        assert_eq!(discoveries.load(Ordering::SeqCst) - before, 2);
    }

    #[tokio::test]
    async fn an_allow_reads_no_discovery() {
        let stale = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (engine, discoveries) = indexed_engine_with_stale_metrics(stale).await;
        let before = discoveries.load(Ordering::SeqCst);
        let report = engine
            .preflight(namespace("team-a"), Instant::now() + Duration::from_secs(5))
            .await;
        assert_eq!(blocking(&report), Vec::<CheckId>::new());
        assert_eq!(discoveries.load(Ordering::SeqCst), before);
    }

    #[tokio::test]
    async fn a_preflight_past_its_deadline_names_what_it_could_not_read() {
        let (client, _) = slow_discovery(Duration::from_secs(5));
        let engine = listing_engine(client);
        let report = engine
            .preflight(
                namespace("team-a"),
                Instant::now() + Duration::from_millis(200),
            )
            .await;
        // Not a bare "deadline reached": the call that did not answer in time.
        let said = report.not_checked.join("; ");
        assert!(said.contains("discovery /api"), "{said}");
        assert!(!said.contains("deadline reached"), "{said}");
    }
}
