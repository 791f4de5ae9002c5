//! The only place nsguard talks to the API server (besides writing Events in `records`).
//!
//! Cluster-scoped facts come from watches (kube-runtime reflectors) that are started once and
//! kept fresh; a snapshot is rebuilt only when a watched object changed. Namespace facts are
//! listed at the time of the preflight: aggregated discovery (two calls), then one
//! metadata-only, paged list per namespaced resource type with bounded concurrency and a
//! timeout on every call, and one typed list of pods.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::jiff::Timestamp;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use kube::api::{ApiResource, DynamicObject, ListParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use super::index::{self as content_index, Index};
use super::{
    BackendState, ClusterFacts, Content, Discovery, ListErrorClass, ListFailure, NamespaceFacts,
    ObjectFacts, Rbac, ResourceType, ServiceKey,
};

/// Page size for metadata lists, as kubectl and the controllers use.
const PAGE: u32 = 2000;

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
}

/// Watched cluster-scoped objects.
#[derive(Clone)]
struct Stores {
    apiservices: Store<APIService>,
    crds: Store<CustomResourceDefinition>,
    validating: Store<ValidatingWebhookConfiguration>,
    mutating: Store<MutatingWebhookConfiguration>,
    nodes: Store<Node>,
    namespaces: Store<Namespace>,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    cluster_roles: Store<ClusterRole>,
    cluster_role_bindings: Store<ClusterRoleBinding>,
    roles: Store<Role>,
    role_bindings: Store<RoleBinding>,
}

/// Cluster facts built from the watches at one watch generation.
type Snapshot = (u64, Arc<ClusterFacts>);

/// Where namespace facts come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
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
/// The background discovery period, as KCM's garbage collector resyncs.
const DISCOVERY_PERIOD: Duration = Duration::from_secs(30);

/// One shared discovery result.
struct DiscoveryResult {
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
}

impl SharedDiscovery {
    fn changed(&self) {
        *self.last_change.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        self.changes.fetch_add(1, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// The shared result, if nothing it depends on changed since it was fetched and it was
    /// fetched after discovery had time to settle.
    fn current(&self) -> Option<Discovery> {
        let current = self.current.load_full()?;
        let last_change = *self.last_change.lock().unwrap_or_else(|e| e.into_inner());
        let settled = last_change.is_none_or(|t| current.fetched >= t + DISCOVERY_SETTLE);
        (current.changes == self.changes.load(Ordering::SeqCst) && settled)
            .then(|| current.discovery.clone())
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
    stores: Stores,
    generation: Arc<AtomicU64>,
    snapshot: Arc<Mutex<Option<Snapshot>>>,
    /// When this process first saw each backend Service without ready endpoints; an entry
    /// goes when the backend is reachable again.
    unreachable_seen: Arc<Mutex<BTreeMap<ServiceKey, Timestamp>>>,
}

fn watch<K>(client: &Client, generation: &Arc<AtomicU64>) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    watch_telling(client, generation, None)
}

/// A watch that also tells shared discovery about every change (CRDs and APIServices).
fn watch_telling<K>(
    client: &Client,
    generation: &Arc<AtomicU64>,
    discovery: Option<Arc<SharedDiscovery>>,
) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let api: Api<K> = Api::all(client.clone());
    let generation = generation.clone();
    let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()))
        .default_backoff()
        .for_each(move |event| {
            if let Err(error) = &event {
                tracing::warn!(%error, kind = %K::kind(&K::DynamicType::default()), "Watch error");
            }
            generation.fetch_add(1, Ordering::Relaxed);
            if let Some(d) = &discovery {
                d.changed();
            }
            std::future::ready(())
        });
    tokio::spawn(stream);
    reader
}

impl Gatherer {
    /// Starts the watches. `call_timeout` bounds every API call, `concurrency` the lists in
    /// flight for one namespace; `source` says whether discovery runs per call or in the
    /// background.
    pub fn start(
        client: Client,
        call_timeout: Duration,
        concurrency: usize,
        source: Source,
    ) -> Self {
        let generation = Arc::new(AtomicU64::new(0));
        let shared_discovery =
            (source == Source::Index).then(|| Arc::new(SharedDiscovery::default()));
        let stores = Stores {
            apiservices: watch_telling(&client, &generation, shared_discovery.clone()),
            crds: watch_telling(&client, &generation, shared_discovery.clone()),
            validating: watch(&client, &generation),
            mutating: watch(&client, &generation),
            nodes: watch(&client, &generation),
            namespaces: watch(&client, &generation),
            services: watch(&client, &generation),
            slices: watch(&client, &generation),
            cluster_roles: watch(&client, &generation),
            cluster_role_bindings: watch(&client, &generation),
            roles: watch(&client, &generation),
            role_bindings: watch(&client, &generation),
        };
        let index = (source == Source::Index).then(|| Arc::new(Index::default()));
        let this = Self {
            client,
            shared_discovery,
            index,
            index_tasks: Arc::default(),
            call_timeout,
            concurrency: concurrency.max(1),
            stores,
            generation,
            snapshot: Arc::new(Mutex::new(None)),
            unreachable_seen: Arc::default(),
        };
        if let Some(shared) = &this.shared_discovery {
            tokio::spawn(refresh_discovery(this.clone(), shared.clone()));
        }
        this
    }

    /// Waits until every watch has listed once (readiness), or `timeout` passes.
    pub async fn wait_synced(&self, timeout: Duration) -> Result<(), GatherError> {
        let s = &self.stores;
        let all = async {
            s.apiservices.wait_until_ready().await.ok();
            s.crds.wait_until_ready().await.ok();
            s.validating.wait_until_ready().await.ok();
            s.mutating.wait_until_ready().await.ok();
            s.nodes.wait_until_ready().await.ok();
            s.namespaces.wait_until_ready().await.ok();
            s.services.wait_until_ready().await.ok();
            s.slices.wait_until_ready().await.ok();
            s.cluster_roles.wait_until_ready().await.ok();
            s.cluster_role_bindings.wait_until_ready().await.ok();
            s.roles.wait_until_ready().await.ok();
            s.role_bindings.wait_until_ready().await.ok();
        };
        tokio::time::timeout(timeout, all)
            .await
            .map_err(|_| GatherError::NotReady)
    }

    /// Whether the namespace watch knows `name` (with `uid`, when given): `None` until the
    /// watch has listed once.
    pub fn namespace_known(&self, name: &str, uid: Option<&str>) -> Option<bool> {
        let store = &self.stores.namespaces;
        if store.state().is_empty() {
            return None;
        }
        let key = reflector::ObjectRef::new(name);
        Some(
            store
                .get(&key)
                .is_some_and(|ns| uid.is_none_or(|u| ns.metadata.uid.as_deref() == Some(u))),
        )
    }

    /// The client this gatherer uses.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Cluster facts: the watched objects (a snapshot rebuilt only after a change) plus fresh
    /// aggregated discovery.
    pub async fn cluster(&self, deadline: Instant) -> Result<Arc<ClusterFacts>, GatherError> {
        let discovery = self.discovery(deadline).await?;
        let watched = self.watched_snapshot();
        if watched.discovery == discovery {
            return Ok(watched);
        }
        let mut facts = (*watched).clone();
        facts.discovery = discovery;
        Ok(Arc::new(facts))
    }

    fn watched_snapshot(&self) -> Arc<ClusterFacts> {
        let generation = self.generation.load(Ordering::Relaxed);
        let mut cached = self.snapshot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((g, facts)) = cached.as_ref()
            && *g == generation
        {
            return facts.clone();
        }
        let facts = Arc::new(self.build_snapshot());
        *cached = Some((generation, facts.clone()));
        facts
    }

    fn build_snapshot(&self) -> ClusterFacts {
        fn all<K: Resource + Clone>(s: &Store<K>) -> Vec<K>
        where
            K::DynamicType: Eq + Hash + Clone,
        {
            s.state().iter().map(|o| (**o).clone()).collect()
        }
        let s = &self.stores;
        let mut facts = ClusterFacts {
            discovery: Discovery::default(),
            apiservices: all(&s.apiservices),
            crds: all(&s.crds),
            validating_webhooks: all(&s.validating),
            mutating_webhooks: all(&s.mutating),
            backends: BTreeMap::new(),
            nodes: all(&s.nodes),
            terminating: s
                .namespaces
                .state()
                .iter()
                .filter(|n| {
                    n.status.as_ref().and_then(|st| st.phase.as_deref()) == Some("Terminating")
                })
                .map(|n| (**n).clone())
                .collect(),
            namespace_phases: s
                .namespaces
                .state()
                .iter()
                .filter_map(|n| {
                    let phase = n
                        .status
                        .as_ref()
                        .and_then(|st| st.phase.clone())
                        .unwrap_or_else(|| "Active".to_string());
                    Some((n.metadata.name.clone()?, phase))
                })
                .collect(),
            rbac: Rbac {
                cluster_roles: all(&s.cluster_roles),
                cluster_role_bindings: all(&s.cluster_role_bindings),
                roles: all(&s.roles),
                role_bindings: all(&s.role_bindings),
            },
        };
        let keys = referenced_services(&facts);
        let services = s.services.state();
        let slices = s.slices.state();
        let now = now();
        let mut seen = self
            .unreachable_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for key in keys {
            let service = services.iter().find(|svc| {
                svc.metadata.namespace.as_deref() == Some(&key.namespace)
                    && svc.metadata.name.as_deref() == Some(&key.name)
            });
            let exists = service.is_some();
            let external = service
                .and_then(|svc| svc.spec.as_ref())
                .and_then(|spec| spec.type_.as_deref())
                == Some("ExternalName");
            let own_slices: Vec<&EndpointSlice> = slices
                .iter()
                .filter(|sl| {
                    sl.metadata.namespace.as_deref() == Some(&key.namespace)
                        && sl
                            .metadata
                            .labels
                            .as_ref()
                            .and_then(|l| l.get("kubernetes.io/service-name"))
                            == Some(&key.name)
                })
                .map(|sl| &**sl)
                .collect();
            let ready_endpoints = own_slices
                .iter()
                .flat_map(|sl| sl.endpoints.iter().flatten())
                .filter(|ep| ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
                .count();
            let mut state = BackendState {
                exists,
                ready_endpoints,
                external,
                unreachable_since: None,
            };
            if state.reachable() || !exists {
                seen.remove(&key);
            } else {
                let first_seen = *seen.entry(key.clone()).or_insert(now);
                let created = service.and_then(|svc| svc.metadata.creation_timestamp.as_ref());
                state.unreachable_since = Some(unreachable_since(
                    first_seen,
                    &own_slices,
                    created.map(|t| t.0),
                ));
            }
            facts.backends.insert(key, state);
        }
        facts
    }

    /// Aggregated discovery: the shared background result when it is current, else two calls.
    pub async fn discovery(&self, deadline: Instant) -> Result<Discovery, GatherError> {
        let Some(shared) = &self.shared_discovery else {
            return self.fetch_discovery(deadline).await;
        };
        if let Some(d) = shared.current() {
            return Ok(d);
        }
        // Not yet fetched, or a CRD/APIService changed since: fetch now, and share the result.
        let changes = shared.changes.load(Ordering::SeqCst);
        let fetched = Instant::now();
        let discovery = self.fetch_discovery(deadline).await?;
        self.sync_index(&discovery);
        shared.current.store(Some(Arc::new(DiscoveryResult {
            changes,
            fetched,
            discovery: discovery.clone(),
        })));
        Ok(discovery)
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
        Ok(Discovery::from_aggregated(&core, &apis))
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

    /// Lists what the namespace holds. Failures the namespace controller would hit too are
    /// facts (a `list-failure`), and so is nsguard's own 401/403 (an RBAC gap); a 404 means the
    /// type is gone and is skipped; a deadline or an error of nsguard's own (transport, decode,
    /// throttling) leaves the resource type unchecked (the second element).
    pub async fn namespace(
        &self,
        namespace: Namespace,
        discovery: &Discovery,
        deadline: Instant,
    ) -> (NamespaceFacts, Vec<String>) {
        self.namespace_relisting(namespace, discovery, deadline, &BTreeSet::new())
            .await
    }

    /// `(group, plural)` of CRDs converting through a webhook, and `(group, "")` of groups
    /// served by an aggregated API server: types whose reads depend on a backend.
    fn backed_types(&self) -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        for crd in self.stores.crds.state() {
            let webhook = crd
                .spec
                .conversion
                .as_ref()
                .is_some_and(|c| c.strategy == "Webhook");
            if webhook {
                out.insert((crd.spec.group.clone(), crd.spec.names.plural.clone()));
            }
        }
        for a in self.stores.apiservices.state() {
            if let Some(spec) = a.spec.as_ref().filter(|s| s.service.is_some()) {
                out.insert((spec.group.clone().unwrap_or_default(), String::new()));
            }
        }
        out
    }

    /// Whether namespace content comes from the live index (`serve`).
    pub fn indexed(&self) -> bool {
        self.index.is_some()
    }

    /// The index's health per state, `(synced, syncing, failing)`; `None` without an index.
    pub fn index_counts(&self) -> Option<(usize, usize, usize)> {
        self.index.as_ref().map(|i| i.counts())
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
    /// watching the ones it no longer serves. Pods are not indexed: the checks need them
    /// typed (node, phase), and a review lists them in its namespace only.
    fn sync_index(&self, discovery: &Discovery) {
        let Some(index) = &self.index else {
            return;
        };
        let wanted: Vec<ResourceType> = discovery
            .resources
            .iter()
            .filter(|r| r.listable && !is_pods(r))
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
                ));
                tasks.insert(r, task.abort_handle());
            }
        }
    }

    /// As [`Gatherer::namespace`], but the types in `relist` are read with a consistent LIST
    /// (no resourceVersion) whatever the index says: the confirmation before a deny.
    pub async fn namespace_relisting(
        &self,
        namespace: Namespace,
        discovery: &Discovery,
        deadline: Instant,
        relist: &BTreeSet<ResourceType>,
    ) -> (NamespaceFacts, Vec<String>) {
        let name = namespace.metadata.name.clone().unwrap_or_default();
        let mut facts = NamespaceFacts {
            namespace,
            ..Default::default()
        };
        let mut not_checked = Vec::new();

        let mut results: Vec<(ResourceType, Result<Listed, GatherError>)> = Vec::new();
        let mut to_list: Vec<ResourceType> = Vec::new();
        let backed = self.backed_types();
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
                Err(GatherError::NotReady) => {}
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
        let ar = ApiResource {
            group: r.group.clone(),
            version: r.version.clone(),
            api_version: r.api_version(),
            kind: r.kind.clone(),
            plural: r.resource.clone(),
        };
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
    loop {
        let wait = if settle_pending {
            DISCOVERY_SETTLE + Duration::from_millis(100)
        } else {
            DISCOVERY_PERIOD
        };
        let woken = tokio::select! {
            () = shared.wake.notified() => true,
            () = tokio::time::sleep(wait) => false,
        };
        settle_pending = woken;
        let changes = shared.changes.load(Ordering::SeqCst);
        let fetched = Instant::now();
        match gatherer
            .fetch_discovery(fetched + gatherer.call_timeout)
            .await
        {
            Ok(discovery) => {
                gatherer.sync_index(&discovery);
                shared.current.store(Some(Arc::new(DiscoveryResult {
                    changes,
                    fetched,
                    discovery,
                })));
            }
            Err(error) => tracing::warn!(%error, "Background discovery"),
        }
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
    }
}

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

/// Services that an APIService, a webhook or a CRD conversion webhook sends traffic to.
pub fn referenced_services(facts: &ClusterFacts) -> BTreeSet<ServiceKey> {
    let mut keys = BTreeSet::new();
    let mut add = |ns: &str, name: &str| {
        keys.insert(ServiceKey {
            namespace: ns.to_string(),
            name: name.to_string(),
        });
    };
    for a in &facts.apiservices {
        if let Some(s) = a.spec.as_ref().and_then(|s| s.service.as_ref())
            && let (Some(ns), Some(name)) = (&s.namespace, &s.name)
        {
            add(ns, name);
        }
    }
    let validating = facts
        .validating_webhooks
        .iter()
        .flat_map(|c| c.webhooks.iter().flatten())
        .map(|w| &w.client_config);
    let mutating = facts
        .mutating_webhooks
        .iter()
        .flat_map(|c| c.webhooks.iter().flatten())
        .map(|w| &w.client_config);
    for s in validating
        .chain(mutating)
        .filter_map(|c| c.service.as_ref())
    {
        add(&s.namespace, &s.name);
    }
    for crd in &facts.crds {
        if let Some(s) = crd
            .spec
            .conversion
            .as_ref()
            .and_then(|c| c.webhook.as_ref())
            .and_then(|w| w.client_config.as_ref())
            .and_then(|c| c.service.as_ref())
        {
            add(&s.namespace, &s.name);
        }
    }
    keys
}

/// Since when a Service that exists has had no ready endpoints: the earlier of when this
/// process first saw it so and the last write to its EndpointSlices (the endpointslice
/// controller empties them when the last pod goes), or, without slices, the Service's creation.
/// A later write to an empty slice only moves the time later, never past `first_seen`.
fn unreachable_since(
    first_seen: Timestamp,
    slices: &[&EndpointSlice],
    service_created: Option<Timestamp>,
) -> Timestamp {
    let last_write = if slices.is_empty() {
        service_created
    } else {
        slices
            .iter()
            .flat_map(|sl| sl.metadata.managed_fields.iter().flatten())
            .filter_map(|m| m.time.as_ref().map(|t| t.0))
            .max()
    };
    last_write.map_or(first_seen, |t| t.min(first_seen))
}

/// The current time, as the checks compare ages against it.
pub fn now() -> Timestamp {
    Timestamp::now()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, Time};
    use rstest::rstest;

    fn at(t: &str) -> Timestamp {
        format!("2026-11-22T{t}Z").parse().unwrap()
    }

    fn slice(writes: &[&str]) -> EndpointSlice {
        let mut sl = EndpointSlice::default();
        sl.metadata.managed_fields = Some(
            writes
                .iter()
                .map(|t| ManagedFieldsEntry {
                    time: Some(Time(at(t))),
                    ..Default::default()
                })
                .collect(),
        );
        sl
    }

    #[rstest]
    // Each string is one slice's managedFields times, comma-separated; nsguard first saw the
    // backend empty at 11:58:00, the Service was created at 11:30:00.
    #[case::emptied_before_nsguard_started(&["11:50:00,11:40:00"], "11:50:00")]
    #[case::newest_write_over_all_slices(&["11:40:00", "11:52:00"], "11:52:00")]
    #[case::never_later_than_first_seen(&["11:59:59"], "11:58:00")]
    #[case::no_slices_since_the_service_was_created(&[], "11:30:00")]
    fn since_when_a_backend_has_no_ready_endpoints(
        #[case] writes: &[&str],
        #[case] expected: &str,
    ) {
        let slices: Vec<EndpointSlice> = writes
            .iter()
            .map(|w| slice(&w.split(',').collect::<Vec<_>>()))
            .collect();
        let refs: Vec<&EndpointSlice> = slices.iter().collect();
        assert_eq!(
            unreachable_since(at("11:58:00"), &refs, Some(at("11:30:00"))),
            at(expected)
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
