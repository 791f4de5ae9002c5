//! The gatherer: the only place nsguard talks to the API server (besides writing Events in
//! `records`). It holds the three sources of facts and hands reviews what they read:
//!
//! - shared aggregated discovery, refreshed in the background (`serve`) or fetched per call
//!   (the CLI);
//! - the cluster snapshot ([`super::snapshot`]), rebuilt by a task after watch events;
//! - namespace content: from the live index ([`super::index`]) for the types it can vouch
//!   for, else one metadata-only, paged list per type with bounded concurrency and a timeout
//!   on every call (all of them for the CLI), and pods typed when the namespace has some.
//!
//! Every API call a review makes passes one bound ([`Limits::api_calls`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DynamicObject, ListParams};
use kube::runtime::reflector::{self};
use kube::{Api, Client, Resource};
use tokio::time::Instant;

pub use super::clock::now;
use super::index::{self as content_index, Index};
use super::snapshot::{Changed, SNAPSHOT_COALESCE, SNAPSHOT_WAIT, Snapshot, Stores, Tell};
use crate::config::InitialSync;
use crate::facts::{
    ClusterFacts, Content, Discovery, ListErrorClass, ListFailure, NamespaceFacts, ObjectFacts,
    ResourceType, ServiceKey,
};

/// Page size for metadata lists, as kubectl and the controllers use.
const PAGE: u32 = 2000;

/// The bounds on the API calls a preflight makes.
/// What nsguard's namespace watch says of the namespace a review names.
#[derive(Clone, Debug)]
pub enum NamespaceMatch {
    /// The watch has not listed namespaces yet: nothing can be verified.
    Unsynced,
    /// The live namespace with that name and uid.
    Live(Arc<Namespace>),
    /// No live namespace has that name and uid.
    NoMatch,
}

/// Aggregated discovery as the namespace controller runs it, on its own (no gatherer, no
/// watches): for `nsguard rbac`, which only needs to know the types the cluster serves.
pub async fn discover(client: &Client, timeout: Duration) -> Result<Discovery, GatherError> {
    let both = async {
        tokio::try_join!(
            client.list_core_api_versions_aggregated(),
            client.list_api_groups_aggregated()
        )
    };
    match tokio::time::timeout(timeout, both).await {
        Ok(Ok((core, apis))) => Ok(Discovery::from_aggregated(&core, &apis)),
        Ok(Err(source)) => Err(GatherError::Api {
            what: "aggregated discovery".into(),
            source,
        }),
        Err(_) => Err(GatherError::Timeout("aggregated discovery".into())),
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Upper bound for one call.
    pub call_timeout: Duration,
    /// Lists in flight at once for one namespace.
    pub concurrency: usize,
    /// Calls in flight at once over every preflight.
    pub api_calls: usize,
}

/// Errors gathering facts that are not about the namespace itself.
#[derive(Debug, thiserror::Error)]
pub enum GatherError {
    /// An API call failed.
    #[error("{what}: {source}")]
    Api {
        /// What was being read.
        what: String,
        /// The error.
        source: kube::Error,
    },
    /// An API call did not answer in time.
    #[error("{0}: timed out")]
    Timeout(String),
    /// The watches have not listed everything yet.
    #[error("cluster facts are not synced yet")]
    NotReady,
    /// nsguard's own bound on API calls in flight was reached: the call was not made.
    #[error("{0}: not read, nsguard's API calls in flight are at their bound")]
    Busy(String),
}

/// Where namespace facts come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentSource {
    /// Aggregated discovery and one metadata LIST per type on every call (the one-shot CLI:
    /// it should not start hundreds of watches).
    List,
    /// Aggregated discovery run in the background (every 30 s, as KCM's garbage collector,
    /// and whenever a CRD or an APIService changes) and shared by every review, and a live
    /// metadata index of every namespaced type (`serve`); a type the index cannot vouch for
    /// (syncing, failing) is listed in the namespace, as with `List`.
    Index,
}

/// How long after a CRD or APIService change the API server's aggregated discovery may still
/// be catching up: a shared result fetched sooner than this after the change is not trusted.
const DISCOVERY_SETTLE: Duration = Duration::from_secs(2);
/// How old (from the start of its calls) a discovery result fetched during the settle window
/// may be and still serve a review that finds the shared result unsettled.
const DISCOVERY_SHARE: Duration = Duration::from_millis(250);
/// The background discovery period, as KCM's garbage collector resyncs.
const DISCOVERY_PERIOD: Duration = Duration::from_secs(30);

/// One shared discovery result.
struct DiscoveryResult {
    /// Increases with every result stored.
    seq: u64,
    /// The CRD/APIService change count read before the calls were made.
    changes: u64,
    /// When the calls were made.
    fetched: Instant,
    discovery: Discovery,
}

/// Discovery shared by reviews, refreshed in the background.
#[derive(Default)]
struct SharedDiscovery {
    current: ArcSwapOption<DiscoveryResult>,
    /// CRD and APIService watch events seen.
    changes: AtomicU64,
    /// When the last CRD or APIService watch event arrived.
    last_change: Mutex<Option<Instant>>,
    wake: tokio::sync::Notify,
    /// The last `seq` given out.
    seq: AtomicU64,
    /// Held while a review fetches discovery itself.
    fetching: tokio::sync::Mutex<()>,
}

impl SharedDiscovery {
    fn changed(&self) {
        *self.last_change.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        self.changes.fetch_add(1, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// The shared result, if nothing it depends on changed since it was fetched and it was
    /// fetched after discovery had time to settle.
    fn current(&self) -> Option<Arc<DiscoveryResult>> {
        let current = self.current.load_full()?;
        let last_change = *self.last_change.lock().unwrap_or_else(|e| e.into_inner());
        let settled = last_change.is_none_or(|t| current.fetched >= t + DISCOVERY_SETTLE);
        (current.changes == self.changes.load(Ordering::SeqCst) && settled).then_some(current)
    }

    /// Stores a result fetched at `fetched` when `changes` changes had been seen.
    fn store(&self, changes: u64, fetched: Instant, discovery: Discovery) -> Arc<DiscoveryResult> {
        let result = Arc::new(DiscoveryResult {
            seq: self.seq.fetch_add(1, Ordering::SeqCst) + 1,
            changes,
            fetched,
            discovery,
        });
        self.current.store(Some(result.clone()));
        result
    }
}

/// Gathers facts. Cheap to clone; clones share the watches and the snapshot.
#[derive(Clone)]
pub struct Gatherer {
    client: Client,
    shared_discovery: Option<Arc<SharedDiscovery>>,
    index: Option<Arc<Index>>,
    /// The watcher task of each indexed type.
    index_tasks: Arc<Mutex<BTreeMap<ResourceType, tokio::task::AbortHandle>>>,
    call_timeout: Duration,
    concurrency: usize,
    /// Permits for API calls in flight over every preflight.
    api_calls: Arc<tokio::sync::Semaphore>,
    /// Types left out of discovery (`--skip-resource`, `resource.group`).
    skip: Arc<BTreeSet<String>>,
    stores: Stores,
    generation: Arc<AtomicU64>,
    /// The cluster facts reviews read, rebuilt by the builder task after a change, never on
    /// the request path unless the builder is late.
    snapshot: Arc<ArcSwapOption<Snapshot>>,
    /// Wakes the snapshot builder.
    rebuild: Arc<tokio::sync::Notify>,
    /// The generation of the last snapshot built, for reviews waiting on a newer one.
    built: Arc<tokio::sync::watch::Sender<u64>>,
    /// When this process first saw each backend Service without ready endpoints; an entry
    /// goes when the backend is reachable again.
    unreachable_seen: Arc<Mutex<BTreeMap<ServiceKey, Timestamp>>>,
}

impl Gatherer {
    /// Starts the watches. `limits` bound the preflight's API calls; `source` says whether
    /// discovery runs per call or in the background; the types in `skip` are left out of
    /// discovery, so never listed nor watched.
    pub fn start(
        client: Client,
        limits: Limits,
        source: ContentSource,
        skip: BTreeSet<String>,
        initial_sync: InitialSync,
    ) -> Self {
        let generation = Arc::new(AtomicU64::new(0));
        let rebuild = Arc::new(tokio::sync::Notify::new());
        let changed = Changed {
            generation: generation.clone(),
            rebuild: rebuild.clone(),
        };
        let shared_discovery =
            (source == ContentSource::Index).then(|| Arc::new(SharedDiscovery::default()));
        let tell = shared_discovery
            .clone()
            .map(|d| -> Tell { Arc::new(move || d.changed()) });
        let stores = Stores::start(&client, &changed, tell);
        let index = (source == ContentSource::Index)
            .then(|| Arc::new(Index::with_initial_sync(initial_sync)));
        let this = Self {
            client,
            shared_discovery,
            index,
            index_tasks: Arc::default(),
            call_timeout: limits.call_timeout,
            concurrency: limits.concurrency.max(1),
            api_calls: Arc::new(tokio::sync::Semaphore::new(limits.api_calls.max(1))),
            skip: Arc::new(skip),
            stores,
            generation,
            snapshot: Arc::default(),
            rebuild,
            built: Arc::new(tokio::sync::watch::Sender::new(0)),
            unreachable_seen: Arc::default(),
        };
        if let Some(shared) = &this.shared_discovery {
            tokio::spawn(refresh_discovery(this.clone(), shared.clone()));
            tokio::spawn(build_snapshots(this.clone(), shared.clone()));
        }
        this
    }

    /// Waits until every watch has listed once (readiness), or `timeout` passes.
    pub async fn wait_synced(&self, timeout: Duration) -> Result<(), GatherError> {
        let all = self.stores.wait_until_ready();
        tokio::time::timeout(timeout, all)
            .await
            .map_err(|_| GatherError::NotReady)
    }

    /// The live namespace named `name` whose uid is `uid`, as nsguard's namespace watch holds
    /// it: what a review's namespace is verified against (the API server reviews only the
    /// DELETE of a namespace that exists, so a review naming no live namespace is forged or
    /// replayed).
    pub fn live_namespace(&self, name: &str, uid: &str) -> NamespaceMatch {
        let store = &self.stores.namespaces;
        if store.state().is_empty() {
            return NamespaceMatch::Unsynced;
        }
        match store.get(&reflector::ObjectRef::new(name)) {
            Some(ns) if ns.metadata.uid.as_deref() == Some(uid) => NamespaceMatch::Live(ns),
            _ => NamespaceMatch::NoMatch,
        }
    }

    /// [`Self::live_namespace`], waiting until `until` for the watch to deliver a namespace
    /// created moments ago (the watch trails the API server by milliseconds). No API call.
    pub async fn await_live_namespace(
        &self,
        name: &str,
        uid: &str,
        until: Instant,
    ) -> NamespaceMatch {
        loop {
            let found = self.live_namespace(name, uid);
            if matches!(found, NamespaceMatch::Live(_)) || Instant::now() >= until {
                return found;
            }
            let next = (Instant::now() + Duration::from_millis(20)).min(until);
            tokio::time::sleep_until(next).await;
        }
    }

    /// The namespaces the namespace watch holds that are being deleted (a deletion timestamp
    /// or phase `Terminating`), as the watch last saw them: the background watch's input.
    pub fn terminating_namespaces(&self) -> Vec<Arc<Namespace>> {
        self.stores
            .namespaces
            .state()
            .into_iter()
            .filter(|ns| {
                ns.metadata.deletion_timestamp.is_some()
                    || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating")
            })
            .collect()
    }

    /// A receiver that changes each time the cluster snapshot is rebuilt, that is after a
    /// burst of watch events on the cluster-scoped objects (namespaces among them).
    pub fn snapshot_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.built.subscribe()
    }

    /// The client this gatherer uses.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Cluster facts: the watched objects and aggregated discovery.
    ///
    /// With shared discovery (`serve`), the snapshot the builder task keeps is read as it is,
    /// an `Arc` and no copy, as long as it carries the current discovery; watch events since
    /// it was built are at most milliseconds old. With `fresh` (the confirmation before a
    /// deny) the snapshot must include every watch event seen before the call: the review
    /// waits for the builder, and builds one itself if the builder is late. Without shared
    /// discovery (the CLI), discovery is fetched and the facts built on every call.
    pub async fn cluster(
        &self,
        deadline: Instant,
        fresh: bool,
    ) -> Result<Arc<ClusterFacts>, GatherError> {
        let Some(shared) = &self.shared_discovery else {
            let discovery = self.fetch_discovery(deadline).await?;
            return Ok(Arc::new(
                self.stores.build(discovery, &self.unreachable_seen),
            ));
        };
        let discovery = self.discovery_result(shared, deadline).await?;
        let generation = self.generation.load(Ordering::SeqCst);
        let usable = |s: &Snapshot| {
            s.discovery_seq >= discovery.seq && (!fresh || s.generation >= generation)
        };
        if let Some(s) = self.snapshot.load_full()
            && usable(&s)
        {
            return Ok(s.facts.clone());
        }
        self.rebuild.notify_one();
        let mut built = self.built.subscribe();
        let wait = async {
            loop {
                if let Some(s) = self.snapshot.load_full()
                    && usable(&s)
                {
                    return s.facts.clone();
                }
                if built.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        let until = deadline.min(Instant::now() + SNAPSHOT_WAIT);
        match tokio::time::timeout_at(until, wait).await {
            Ok(facts) => Ok(facts),
            Err(_) => Ok(Arc::new(
                self.stores
                    .build(discovery.discovery.clone(), &self.unreachable_seen),
            )),
        }
    }

    /// Aggregated discovery: the shared background result when it is current, else two
    /// calls, whose result is then shared.
    async fn discovery_result(
        &self,
        shared: &SharedDiscovery,
        deadline: Instant,
    ) -> Result<Arc<DiscoveryResult>, GatherError> {
        if let Some(d) = shared.current() {
            return Ok(d);
        }
        // Not yet fetched, or a CRD/APIService changed since: fetch now, and share the result.
        // One fetch at a time: reviews that arrive together (a deletion storm right after a
        // CRD changed) wait for it rather than each making two calls, and a result fetched
        // at most DISCOVERY_SHARE before a review asked is shared with it: inside the settle
        // window a fetch of its own would be no surer to see the change.
        let asked = Instant::now() - DISCOVERY_SHARE;
        let _one = tokio::time::timeout_at(deadline, shared.fetching.lock())
            .await
            .map_err(|_| GatherError::Timeout("discovery".to_string()))?;
        if let Some(d) = shared.current() {
            return Ok(d);
        }
        if let Some(d) = shared.current.load_full().filter(|d| d.fetched >= asked) {
            return Ok(d);
        }
        let changes = shared.changes.load(Ordering::SeqCst);
        let fetched = Instant::now();
        let discovery = self.fetch_discovery(deadline).await?;
        self.sync_index(&discovery);
        let result = shared.store(changes, fetched, discovery);
        self.rebuild.notify_one();
        Ok(result)
    }

    /// Reads aggregated discovery again now and shares the result (the confirmation before a
    /// deny that rests on discovery: a group-version reported `Stale`, a type that fails to
    /// list). A result another review fetched after this call began is shared instead of
    /// fetched twice. Within the API-call bound; without shared discovery (the CLI, which
    /// fetches discovery at every call) there is nothing to confirm.
    pub async fn confirm_discovery(&self, deadline: Instant) -> Result<(), GatherError> {
        let Some(shared) = &self.shared_discovery else {
            return Ok(());
        };
        let asked = Instant::now();
        let _one = tokio::time::timeout_at(deadline, shared.fetching.lock())
            .await
            .map_err(|_| GatherError::Timeout("discovery".to_string()))?;
        if shared
            .current
            .load()
            .as_ref()
            .is_some_and(|d| d.fetched >= asked)
        {
            return Ok(());
        }
        let changes = shared.changes.load(Ordering::SeqCst);
        let fetched = Instant::now();
        let discovery = self.fetch_discovery(deadline).await?;
        self.sync_index(&discovery);
        shared.store(changes, fetched, discovery);
        self.rebuild.notify_one();
        Ok(())
    }

    /// Aggregated discovery, two calls, as the namespace controller runs it.
    async fn fetch_discovery(&self, deadline: Instant) -> Result<Discovery, GatherError> {
        let core = self.call(
            "discovery /api",
            deadline,
            self.client.list_core_api_versions_aggregated(),
        );
        let apis = self.call(
            "discovery /apis",
            deadline,
            self.client.list_api_groups_aggregated(),
        );
        let (core, apis) = tokio::try_join!(core, apis)?;
        Ok(Discovery::from_aggregated(&core, &apis).skipping(&self.skip))
    }

    /// Runs one API call within the deadline and the per-call timeout.
    pub(crate) async fn call<T>(
        &self,
        what: &str,
        deadline: Instant,
        fut: impl Future<Output = kube::Result<T>>,
    ) -> Result<T, GatherError> {
        let budget = self
            .call_timeout
            .min(deadline.saturating_duration_since(Instant::now()));
        let Ok(_permit) = self.api_calls.try_acquire() else {
            return Err(GatherError::Busy(what.to_string()));
        };
        match tokio::time::timeout(budget, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(source)) => Err(GatherError::Api {
                what: what.to_string(),
                source,
            }),
            Err(_) => Err(GatherError::Timeout(what.to_string())),
        }
    }

    /// Reads a namespace (for the CLI; the webhook has it from the request).
    pub async fn read_namespace(
        &self,
        name: &str,
        deadline: Instant,
    ) -> Result<Option<Namespace>, GatherError> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        self.call(&format!("namespace {name}"), deadline, api.get_opt(name))
            .await
    }

    /// Every namespace (for the CLI's audit).
    pub async fn list_namespaces(
        &self,
        selector: Option<&str>,
        deadline: Instant,
    ) -> Result<Vec<Namespace>, GatherError> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let mut lp = ListParams::default();
        if let Some(s) = selector {
            lp = lp.labels(s);
        }
        Ok(self
            .call("namespaces", deadline, api.list(&lp))
            .await?
            .items)
    }

    /// Whether namespace content comes from the live index (`serve`).
    pub fn indexed(&self) -> bool {
        self.index.is_some()
    }

    /// The index's health per state, `(synced, syncing, failing)`; `None` without an index.
    pub fn index_counts(&self) -> Option<(usize, usize, usize)> {
        self.index.as_ref().map(|i| i.counts())
    }

    /// The indexed types nsguard may not read (a 403 for its own identity); `None` without
    /// an index.
    pub fn index_forbidden(&self) -> Option<Vec<String>> {
        self.index.as_ref().map(|i| i.forbidden())
    }

    /// Relists over every indexed type, `(expired, fallback)`; `None` without an index.
    pub fn index_relists(&self) -> Option<(u64, u64)> {
        self.index.as_ref().map(|i| i.relists())
    }

    /// Indexed types last listed whole by streaming list and by LIST, `(stream, list)`;
    /// `None` without an index.
    pub fn index_methods(&self) -> Option<(usize, usize)> {
        self.index.as_ref().map(|i| i.methods())
    }

    /// Objects held in the index; `None` without an index.
    pub fn index_objects(&self) -> Option<usize> {
        self.index.as_ref().map(|i| i.objects())
    }

    /// Sets how long an indexed type may go without the API server confirming its watch
    /// before reviews list it instead (`--index-max-staleness`).
    pub fn set_index_max_staleness(&self, bound: Duration) {
        if let Some(index) = &self.index {
            index.set_max_staleness(bound);
        }
    }

    /// The index's oldest confirmation and stale types; `None` without an index.
    pub fn index_freshness(&self) -> Option<content_index::Freshness> {
        self.index.as_ref().map(|i| i.freshness(Instant::now()))
    }

    /// The digest of every indexed type (`/debug/index-digest`); `None` without an index.
    pub fn index_digest(&self) -> Option<Vec<content_index::TypeDigest>> {
        self.index.as_ref().map(|i| i.digests())
    }

    /// The indexed types still listing for the first time (`resource.group`).
    pub fn index_syncing(&self) -> Vec<String> {
        self.index
            .as_ref()
            .map(|i| i.syncing().iter().map(|r| r.group_resource()).collect())
            .unwrap_or_default()
    }

    /// Ready to answer from the index: discovery ran once and every indexed type has synced
    /// or is failing (a broken type is listed at review time, it must not keep nsguard
    /// unready). Always true without an index.
    pub fn index_ready(&self) -> bool {
        let Some(index) = &self.index else {
            return true;
        };
        let discovered = self
            .shared_discovery
            .as_ref()
            .is_some_and(|d| d.current.load().is_some());
        discovered && index.ready()
    }

    /// Starts watching every type discovery serves that is not watched yet, and stops
    /// watching the ones it no longer serves. Pods are indexed by metadata like every type;
    /// the checks need them typed (node, phase), so a review lists them in its namespace when
    /// the index says there are some, and only then.
    fn sync_index(&self, discovery: &Discovery) {
        let Some(index) = &self.index else {
            return;
        };
        let wanted: Vec<ResourceType> = discovery
            .resources
            .iter()
            .filter(|r| r.listable)
            .cloned()
            .collect();
        let mut tasks = self.index_tasks.lock().unwrap_or_else(|e| e.into_inner());
        for gone in index.retain(&wanted) {
            if let Some(task) = tasks.remove(&gone) {
                task.abort();
            }
        }
        for r in wanted {
            let (t, new) = index.get_or_add(&r);
            if new {
                let task = tokio::spawn(content_index::run(
                    self.client.clone(),
                    r.clone(),
                    Arc::downgrade(&t),
                    index.gate(),
                ));
                tasks.insert(r, task.abort_handle());
            }
        }
    }

    /// What the namespace holds, for every type `cluster`'s discovery serves: from the index
    /// where it can vouch for the type, else listed in the namespace; the types in `relist`
    /// are read with a consistent LIST (no resourceVersion) whatever the index says (the
    /// confirmation before a deny). Failures the namespace controller would hit too are
    /// facts (a `list-failure`), and so is nsguard's own 401/403 (an RBAC gap); a 404 means
    /// the type is gone and is skipped; a deadline or an error of nsguard's own (transport,
    /// decode, throttling) leaves the resource type unchecked (the second element).
    pub async fn namespace(
        &self,
        namespace: Namespace,
        cluster: &ClusterFacts,
        deadline: Instant,
        relist: &BTreeSet<ResourceType>,
    ) -> (NamespaceFacts, Vec<String>) {
        let discovery = &cluster.discovery;
        let name = namespace.metadata.name.clone().unwrap_or_default();
        let mut facts = NamespaceFacts {
            namespace,
            ..Default::default()
        };
        let mut not_checked = Vec::new();

        let mut results: Vec<(ResourceType, Result<Listed, GatherError>)> = Vec::new();
        let mut to_list: Vec<ResourceType> = Vec::new();
        let backed = backed_types(cluster);
        for r in discovery.resources.iter().filter(|r| r.listable) {
            // Reads of a type served through a webhook (conversion) or an aggregated server
            // can break while its watch stays quiet: the index cannot vouch for them, so they
            // are listed at every review, as the namespace controller will.
            let trusted = !relist.contains(r)
                && !backed.contains(&(r.group.clone(), r.resource.clone()))
                && !backed.contains(&(r.group.clone(), String::new()));
            let indexed = self
                .index
                .as_ref()
                .filter(|_| trusted)
                .and_then(|i| i.get(r))
                .and_then(|t| t.namespace(&name));
            match indexed {
                // Pods are read typed: an empty namespace needs no call, any pod needs one.
                Some(objects) if is_pods(r) && objects.is_empty() => {
                    results.push((r.clone(), Ok(Listed::Pods(Vec::new()))))
                }
                Some(_) if is_pods(r) => to_list.push(r.clone()),
                Some(objects) => results.push((r.clone(), Ok(Listed::Objects(objects)))),
                None => to_list.push(r.clone()),
            }
        }
        let listed: Vec<(ResourceType, Result<Listed, GatherError>)> =
            futures::stream::iter(to_list)
                .map(|r| {
                    let this = self.clone();
                    let name = name.clone();
                    let consistent = relist.contains(&r);
                    async move {
                        let listed = this.list_resource(&name, &r, deadline, consistent).await;
                        (r, listed)
                    }
                    .boxed()
                })
                .buffer_unordered(self.concurrency)
                .collect()
                .await;
        results.extend(listed);
        for (resource, result) in results {
            match result {
                Ok(Listed::Objects(objects)) if objects.is_empty() => {}
                Ok(Listed::Objects(objects)) => facts.content.push(Content { resource, objects }),
                Ok(Listed::Pods(pods)) => {
                    let objects: Vec<ObjectFacts> = pods.iter().map(object_facts_of).collect();
                    if !objects.is_empty() {
                        facts.content.push(Content { resource, objects });
                    }
                    facts.pods = pods;
                }
                Err(GatherError::Timeout(what)) => not_checked.push(what),
                Err(e @ (GatherError::Busy(_) | GatherError::NotReady)) => {
                    not_checked.push(e.to_string())
                }
                Err(GatherError::Api { what, source }) => match list_error(&source) {
                    (ListErrorClass::Gone, ..) => {}
                    (ListErrorClass::Own, code, message) => not_checked.push(match code {
                        Some(code) => format!("{what}: HTTP {code}: {message}"),
                        None => format!("{what}: {message}"),
                    }),
                    (_, code, message) => facts.list_failures.push(ListFailure {
                        resource,
                        code,
                        message,
                    }),
                },
            }
        }
        // An admission policy that reads annotations is judged on them: the index does not
        // keep them, so those types (only) are read here.
        for r in crate::facts::admission::annotations_wanted(cluster, &facts.content) {
            match self.list_resource(&name, &r, deadline, false).await {
                Ok(Listed::Objects(objects)) => {
                    if let Some(c) = facts.content.iter_mut().find(|c| c.resource == r) {
                        c.objects = objects;
                    }
                }
                Ok(Listed::Pods(_)) => {}
                Err(e) => not_checked.push(format!(
                    "annotations of {} (an admission policy reads them): {e}",
                    r.group_resource()
                )),
            }
        }
        facts.content.sort_by(|a, b| a.resource.cmp(&b.resource));
        facts
            .list_failures
            .sort_by(|a, b| a.resource.cmp(&b.resource));
        (facts, not_checked)
    }

    async fn list_resource(
        &self,
        ns: &str,
        r: &ResourceType,
        deadline: Instant,
        consistent: bool,
    ) -> Result<Listed, GatherError> {
        let what = format!("list {} in {ns}", r.group_resource());
        if is_pods(r) {
            // Pods typed: the checks need the node and phase, as the controller's estimate does.
            let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
            let pods: Vec<Pod> = self
                .paged(&what, deadline, consistent, |lp| {
                    let api = api.clone();
                    async move { api.list(&lp).await.map(|l| (l.items, l.metadata.continue_)) }
                })
                .await?;
            return Ok(Listed::Pods(pods));
        }
        let ar = super::api_resource(r);
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &ar);
        let objects = self
            .paged(&what, deadline, consistent, |lp| {
                let api = api.clone();
                async move {
                    api.list_metadata(&lp).await.map(|l| {
                        let items = l.items.iter().map(object_facts_of).collect::<Vec<_>>();
                        (items, l.metadata.continue_)
                    })
                }
            })
            .await?;
        Ok(Listed::Objects(objects))
    }

    async fn paged<T, F, Fut>(
        &self,
        what: &str,
        deadline: Instant,
        consistent: bool,
        mut page: F,
    ) -> Result<Vec<T>, GatherError>
    where
        F: FnMut(ListParams) -> Fut,
        Fut: Future<Output = kube::Result<(Vec<T>, Option<String>)>>,
    {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            // The first page from the API server's watch cache (resourceVersion=0): no quorum
            // read from etcd, at most as stale as the cache (milliseconds), which a preflight
            // can afford; the cache may answer whole, without a continue token.
            let mut lp = ListParams::default().limit(PAGE);
            match token.take() {
                Some(t) => lp = lp.continue_token(&t),
                // A confirmation before a deny reads consistently (resourceVersion unset).
                None if !consistent => lp = lp.match_any(),
                None => {}
            }
            let (items, next) = self.call(what, deadline, page(lp)).await?;
            out.extend(items);
            match next {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(out),
            }
        }
    }
}

/// Keeps shared discovery fresh: every [`DISCOVERY_PERIOD`], and after a CRD or APIService
/// change both at once and again once discovery has had time to settle.
async fn refresh_discovery(gatherer: Gatherer, shared: Arc<SharedDiscovery>) {
    let mut settle_pending = false;
    // The first fetch at once: readiness waits for discovery (and the index it starts).
    let mut first = true;
    loop {
        let wait = if settle_pending {
            DISCOVERY_SETTLE + Duration::from_millis(100)
        } else {
            DISCOVERY_PERIOD
        };
        if !std::mem::take(&mut first) {
            let woken = tokio::select! {
                () = shared.wake.notified() => true,
                () = tokio::time::sleep(wait) => false,
            };
            settle_pending = woken;
        }
        let changes = shared.changes.load(Ordering::SeqCst);
        let fetched = Instant::now();
        match gatherer
            .fetch_discovery(fetched + gatherer.call_timeout)
            .await
        {
            Ok(discovery) => {
                gatherer.sync_index(&discovery);
                shared.store(changes, fetched, discovery);
                gatherer.rebuild.notify_one();
            }
            Err(error) => tracing::warn!(%error, "Background discovery"),
        }
    }
}

/// Keeps the cluster-facts snapshot current: woken by every watch event and every discovery
/// result, it lets a burst gather for [`SNAPSHOT_COALESCE`], then builds one snapshot for
/// every review to share. Reviews never copy the facts.
async fn build_snapshots(gatherer: Gatherer, shared: Arc<SharedDiscovery>) {
    loop {
        gatherer.rebuild.notified().await;
        tokio::time::sleep(SNAPSHOT_COALESCE).await;
        let Some(discovery) = shared.current.load_full() else {
            continue;
        };
        let generation = gatherer.generation.load(Ordering::SeqCst);
        let facts = Arc::new(
            gatherer
                .stores
                .build(discovery.discovery.clone(), &gatherer.unreachable_seen),
        );
        gatherer.snapshot.store(Some(Arc::new(Snapshot {
            generation,
            discovery_seq: discovery.seq,
            facts,
        })));
        gatherer.built.send_replace(generation);
    }
}

fn is_pods(r: &ResourceType) -> bool {
    r.group.is_empty() && r.resource == "pods"
}

enum Listed {
    Objects(Vec<ObjectFacts>),
    Pods(Vec<Pod>),
}

fn object_facts_of<K: Resource>(o: &K) -> ObjectFacts {
    let m = o.meta();
    ObjectFacts {
        name: m.name.clone().unwrap_or_default(),
        finalizers: m.finalizers.clone().unwrap_or_default(),
        deletion_timestamp: m.deletion_timestamp.as_ref().map(|t| t.0),
        labels: m.labels.clone().unwrap_or_default(),
        annotations: Some(
            m.annotations
                .iter()
                .flatten()
                .filter(|(k, _)| k.as_str() != LAST_APPLIED)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
    }
}

/// kubectl's copy of the applied object: on a Secret it holds the Secret's data.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// What a failed list means, with its status code and message. Only a status the API server
/// answered with can be the namespace's trouble; an error without one (transport, TLS, decode,
/// auth plumbing) is nsguard's own.
fn list_error(source: &kube::Error) -> (ListErrorClass, Option<u16>, String) {
    match source {
        kube::Error::Api(status) => (
            ListErrorClass::of(Some(status.code), &status.message),
            Some(status.code),
            status.message.clone(),
        ),
        other => (ListErrorClass::Own, None, other.to_string()),
    }
}

/// `(group, plural)` of CRDs converting through a webhook, and `(group, "")` of groups
/// served by an aggregated API server: types whose reads depend on a backend, which the
/// index cannot vouch for.
fn backed_types(cluster: &ClusterFacts) -> BTreeSet<(String, String)> {
    let converting = cluster.crds.iter().filter(|crd| {
        crd.spec
            .conversion
            .as_ref()
            .is_some_and(|c| c.strategy == "Webhook")
    });
    let aggregated = cluster
        .apiservices
        .iter()
        .filter_map(|a| a.spec.as_ref().filter(|s| s.service.is_some()));
    converting
        .map(|crd| (crd.spec.group.clone(), crd.spec.names.plural.clone()))
        .chain(aggregated.map(|spec| (spec.group.clone().unwrap_or_default(), String::new())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[tokio::test]
    async fn reviews_that_find_discovery_unsettled_share_one_fetch() {
        let (client, calls) = crate::cluster::testing::slow_discovery(Duration::from_millis(50));
        let limits = Limits {
            call_timeout: Duration::from_secs(5),
            concurrency: 4,
            api_calls: 64,
        };
        let g = Gatherer::start(
            client,
            limits,
            ContentSource::Index,
            BTreeSet::new(),
            InitialSync::default(),
        );
        let shared = g.shared_discovery.clone().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        assert!(g.discovery_result(&shared, deadline).await.is_ok());
        // A CRD just changed: for 2 s the shared result is not trusted, and a storm of
        // reviews arrives.
        shared.changed();
        let before = calls.load(std::sync::atomic::Ordering::SeqCst);
        let reviews = (0..20).map(|_| g.discovery_result(&shared, deadline));
        for result in futures::future::join_all(reviews).await {
            assert!(result.is_ok());
        }
        // Two calls a fetch: the background refresh's and the reviews' one, not twenty.
        let fetches = (calls.load(std::sync::atomic::Ordering::SeqCst) - before) / 2;
        assert!(fetches <= 2, "{fetches} fetches");
    }

    #[tokio::test]
    async fn a_call_over_the_bound_is_not_made() {
        // A server that is never reached: only the bound is under test.
        let config = kube::Config::new("https://127.0.0.1:9".parse().unwrap());
        let client = Client::try_from(config).unwrap();
        let limits = Limits {
            call_timeout: Duration::from_secs(1),
            concurrency: 1,
            api_calls: 1,
        };
        let g = Gatherer::start(
            client,
            limits,
            ContentSource::List,
            BTreeSet::new(),
            InitialSync::default(),
        );
        let deadline = Instant::now() + Duration::from_secs(1);
        let held = g.api_calls.try_acquire().unwrap();
        let made = std::sync::atomic::AtomicBool::new(false);
        let refused = g
            .call("list widgets in a", deadline, async {
                made.store(true, Ordering::SeqCst);
                Ok(())
            })
            .await;
        assert!(matches!(refused, Err(GatherError::Busy(_))), "{refused:?}");
        assert!(!made.load(Ordering::SeqCst));
        drop(held);
        assert!(
            g.call("list widgets in a", deadline, async { Ok(()) })
                .await
                .is_ok()
        );
    }

    fn api(code: u16, message: &str) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure(message, "Failure")
                .with_code(code)
                .boxed(),
        )
    }

    #[rstest]
    #[case::server_error(api(500, "etcdserver: request timed out"), ListErrorClass::Controller)]
    #[case::aggregated_api_down(api(503, "service unavailable"), ListErrorClass::Controller)]
    #[case::bad_gateway(api(502, "bad gateway"), ListErrorClass::Controller)]
    #[case::gateway_timeout(api(504, "gateway timeout"), ListErrorClass::Controller)]
    #[case::conversion(
        api(
            500,
            "conversion webhook for example.com/v2, Kind=Widget failed: Post \"https://conv.team-a.svc:443/convert\": no endpoints available"
        ),
        ListErrorClass::Controller
    )]
    #[case::unauthorized(api(401, "Unauthorized"), ListErrorClass::NotAllowed)]
    #[case::forbidden(
        api(403, "widgets.example.com is forbidden"),
        ListErrorClass::NotAllowed
    )]
    #[case::gone_since_discovery(
        api(404, "the server could not find the requested resource"),
        ListErrorClass::Gone
    )]
    #[case::throttled(api(429, "too many requests"), ListErrorClass::Own)]
    #[case::continue_expired(
        api(410, "the provided continue parameter is too old"),
        ListErrorClass::Own
    )]
    #[case::not_implemented(api(501, "not implemented"), ListErrorClass::Own)]
    #[case::api_server_shutting_down(api(503, "apiserver is shutting down"), ListErrorClass::Own)]
    #[case::api_server_shutting_down_retry_after(
        api(503, "The apiserver is shutting down, please try again later."),
        ListErrorClass::Own
    )]
    #[case::transport(
        kube::Error::Service(Box::new(std::io::Error::other(
            "Too many open files (os error 24)"
        ))),
        ListErrorClass::Own
    )]
    #[case::decode(
        kube::Error::SerdeError(serde_json::from_str::<u8>("x").unwrap_err()),
        ListErrorClass::Own
    )]
    fn list_errors_by_whose_trouble_they_are(
        #[case] error: kube::Error,
        #[case] expected: ListErrorClass,
    ) {
        assert_eq!(list_error(&error).0, expected);
    }
}
