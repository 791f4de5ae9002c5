//! A live, metadata-only index of namespaced content (issue 12): one watcher per namespaced
//! type, kept stripped to what the checks read (name, finalizers, deletionTimestamp, labels),
//! with a health record per type that nsguard keeps itself (kube's `Store` never clears on
//! errors and `wait_until_ready` fires only on the first `InitDone`).
//!
//! This module holds the structure and its event handling; a review reads a type from it only
//! when the type is [`Health::Synced`], and lists the type in the namespace otherwise.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use k8s_openapi::jiff::Timestamp;
use kube::api::DynamicObject;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher;
use kube::{Api, Client, Resource};

use crate::facts::{ListErrorClass, ObjectFacts, ResourceType};

/// A type's watch, as nsguard tracks it.
#[derive(Clone, Debug, PartialEq)]
pub enum Health {
    /// Listing for the first time (or after being replaced by discovery).
    Syncing,
    /// Listed, and the watch has not failed since.
    Synced,
    /// The last list or watch failed: the index for this type is not trusted.
    Failing {
        /// When the failures began (kept across repeated failures).
        since: Timestamp,
        /// The status code, when the API server answered with one.
        code: Option<u16>,
        /// Whose trouble the failure is.
        class: ListErrorClass,
        /// The last error.
        message: String,
    },
}

impl Health {
    /// The bounded label of `nsguard_index_types{state}`.
    pub fn label(&self) -> &'static str {
        match self {
            Health::Syncing => "syncing",
            Health::Synced => "synced",
            Health::Failing { .. } => "failing",
        }
    }
}

/// One watch event, already stripped to the facts kept: (namespace, object).
pub type Entry = (String, ObjectFacts);

/// What the watcher said, without the objects' bodies.
#[derive(Clone, Debug)]
pub enum Change {
    /// A relist begins.
    Init,
    /// An object of the relist.
    InitApply(Entry),
    /// The relist is complete: it replaces the index of the type.
    InitDone,
    /// An object was added or changed.
    Apply(Entry),
    /// An object was deleted.
    Delete(Entry),
    /// A watch (re)started from the last resourceVersion seen: the API server will replay
    /// every change since, so a type that was failing only because its watch broke is whole.
    Resumed,
    /// The list or the watch failed.
    Failed {
        /// Status code, if any.
        code: Option<u16>,
        /// Whose trouble.
        class: ListErrorClass,
        /// The error.
        message: String,
    },
}

/// One ordered map per type, keyed by (namespace, name): a namespace's objects are one range.
///
/// Not a map of maps: most types hold a few objects in each of many namespaces (a ConfigMap
/// and a ServiceAccount in every namespace, a custom resource or two), and a map per
/// (type, namespace) costs a whole B-tree node (about 1.3 KB) for one object. Flat, 100,000
/// objects over 270 types and 2,000 namespaces take 30 MiB instead of 80 (measured with this
/// layout in a scratch program).
type ByNamespace = BTreeMap<(String, String), ObjectFacts>;

#[derive(Debug)]
struct TypeState {
    health: Health,
    objects: ByNamespace,
    /// Filled by `InitApply` during a relist, swapped in on `InitDone`.
    buffer: Option<ByNamespace>,
}

/// The index of one namespaced type. Updated by its watcher, read by reviews.
#[derive(Debug)]
pub struct TypeIndex {
    state: RwLock<TypeState>,
}

impl Default for TypeIndex {
    fn default() -> Self {
        Self {
            state: RwLock::new(TypeState {
                health: Health::Syncing,
                objects: BTreeMap::new(),
                buffer: None,
            }),
        }
    }
}

fn insert(map: &mut ByNamespace, (ns, o): Entry) {
    map.insert((ns, o.name.clone()), o);
}

fn remove(map: &mut ByNamespace, (ns, o): &Entry) {
    map.remove(&(ns.clone(), o.name.clone()));
}

impl TypeIndex {
    /// Applies one change at time `now`.
    pub fn apply(&self, change: Change, now: Timestamp) {
        let mut s = self.state.write().unwrap_or_else(|e| e.into_inner());
        match change {
            Change::Init => s.buffer = Some(BTreeMap::new()),
            Change::InitApply(entry) => insert(s.buffer.get_or_insert_with(BTreeMap::new), entry),
            Change::InitDone => {
                s.objects = s.buffer.take().unwrap_or_default();
                s.health = Health::Synced;
            }
            // Events come only on a watch that started (`Resumed` came first): they say
            // nothing of health.
            Change::Apply(entry) => insert(&mut s.objects, entry),
            Change::Delete(entry) => remove(&mut s.objects, &entry),
            Change::Resumed => {
                // Only after a complete list: a failed relist leaves the buffer in place.
                if matches!(s.health, Health::Failing { .. }) && s.buffer.is_none() {
                    s.health = Health::Synced;
                }
            }
            Change::Failed {
                code,
                class,
                message,
            } => {
                let since = match &s.health {
                    Health::Failing { since, .. } => *since,
                    _ => now,
                };
                s.health = Health::Failing {
                    since,
                    code,
                    class,
                    message,
                };
            }
        }
    }

    /// The type's health.
    pub fn health(&self) -> Health {
        self.state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .health
            .clone()
    }

    /// The objects of this type in `namespace`, if the index can be trusted (`Synced`);
    /// `None` means: list the type in the namespace instead.
    pub fn namespace(&self, namespace: &str) -> Option<Vec<ObjectFacts>> {
        let s = self.state.read().unwrap_or_else(|e| e.into_inner());
        (s.health == Health::Synced).then(|| {
            s.objects
                .range((namespace.to_string(), String::new())..)
                .take_while(|((ns, _), _)| ns == namespace)
                .map(|(_, o)| o.clone())
                .collect()
        })
    }

    /// Objects held, over every namespace.
    pub fn len(&self) -> usize {
        let s = self.state.read().unwrap_or_else(|e| e.into_inner());
        s.objects.len()
    }

    /// Whether no object is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The index of every watched type.
pub struct Index {
    types: RwLock<BTreeMap<ResourceType, Arc<TypeIndex>>>,
    /// Bounds the lists and watch starts in flight over every type ([`START_GATE`]).
    gate: Arc<tokio::sync::Semaphore>,
}

impl Default for Index {
    fn default() -> Self {
        Self {
            types: RwLock::default(),
            gate: Arc::new(tokio::sync::Semaphore::new(START_GATE)),
        }
    }
}

impl Index {
    /// The gate every type's lists and watch starts pass through.
    pub fn gate(&self) -> Arc<tokio::sync::Semaphore> {
        self.gate.clone()
    }

    /// The index of `r`, created (`Syncing`) if new; the second element says it was new.
    pub fn get_or_add(&self, r: &ResourceType) -> (Arc<TypeIndex>, bool) {
        let mut types = self.types.write().unwrap_or_else(|e| e.into_inner());
        match types.get(r) {
            Some(t) => (t.clone(), false),
            None => {
                let t = Arc::new(TypeIndex::default());
                types.insert(r.clone(), t.clone());
                (t, true)
            }
        }
    }

    /// The index of `r`, if watched.
    pub fn get(&self, r: &ResourceType) -> Option<Arc<TypeIndex>> {
        self.types
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(r)
            .cloned()
    }

    /// Stops indexing every type not in `keep` (discovery no longer serves them); returns
    /// the ones removed.
    pub fn retain(&self, keep: &[ResourceType]) -> Vec<ResourceType> {
        let mut types = self.types.write().unwrap_or_else(|e| e.into_inner());
        let gone: Vec<ResourceType> = types
            .keys()
            .filter(|r| !keep.contains(r))
            .cloned()
            .collect();
        for r in &gone {
            types.remove(r);
        }
        gone
    }

    /// Objects held, over every type.
    pub fn objects(&self) -> usize {
        let types = self.types.read().unwrap_or_else(|e| e.into_inner());
        types.values().map(|t| t.len()).sum()
    }

    /// How many types are in each state: `(synced, syncing, failing)`.
    pub fn counts(&self) -> (usize, usize, usize) {
        let types = self.types.read().unwrap_or_else(|e| e.into_inner());
        types
            .values()
            .fold((0, 0, 0), |(a, b, c), t| match t.health() {
                Health::Synced => (a + 1, b, c),
                Health::Syncing => (a, b + 1, c),
                Health::Failing { .. } => (a, b, c + 1),
            })
    }

    /// Ready: every type has synced or is failing (a broken type must not keep nsguard
    /// unready; a review lists it and reports what that list says).
    pub fn ready(&self) -> bool {
        self.counts().1 == 0
    }
}

/// Strips a metadata-only object to the facts kept.
pub fn entry_of(o: &PartialObjectMeta<DynamicObject>) -> Entry {
    let m = o.meta();
    (
        m.namespace.clone().unwrap_or_default(),
        ObjectFacts {
            name: m.name.clone().unwrap_or_default(),
            finalizers: m.finalizers.clone().unwrap_or_default(),
            deletion_timestamp: m.deletion_timestamp.as_ref().map(|t| t.0),
            labels: m.labels.clone().unwrap_or_default(),
            // Not kept in the index: a review reads them when a policy needs them.
            annotations: None,
        },
    )
}

/// The `Failed` change for an error of a list or a watch.
fn failed_of(error: &kube::Error) -> Change {
    match error {
        kube::Error::Api(status) => failed_status(status),
        other => Change::Failed {
            code: None,
            class: ListErrorClass::Own,
            message: other.to_string(),
        },
    }
}

fn failed_status(status: &kube::core::Status) -> Change {
    Change::Failed {
        code: Some(status.code),
        class: ListErrorClass::of(Some(status.code), &status.message),
        message: status.message.clone(),
    }
}

/// `410 Gone`: the resourceVersion (or a list's continue token) is too old; list again.
fn gone(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(s) if s.code == 410)
}

/// The index missed events (its watch expired): not trusted until the relist is done.
fn expired() -> Change {
    Change::Failed {
        code: Some(410),
        class: ListErrorClass::Own,
        message: "watch expired (410 Gone): listing again".to_string(),
    }
}

/// How many lists and watch starts may be in flight at once over every type: hundreds of
/// types started together would otherwise meet API Priority and Fairness as one burst.
pub const START_GATE: usize = 8;

/// Page size of the index's lists.
const LIST_PAGE: u32 = 500;

/// Server-side timeout of one watch, as kube's watcher and client-go use (below the client's
/// 295 s read timeout).
const WATCH_TIMEOUT_S: u32 = 290;

/// One consistent, paged, metadata-only list of every object of the type: the objects and
/// the resourceVersion to watch from.
async fn list_all(api: &Api<DynamicObject>) -> Result<(Vec<Entry>, String), kube::Error> {
    let mut entries = Vec::new();
    let mut lp = kube::api::ListParams::default().limit(LIST_PAGE);
    let mut version = None;
    loop {
        let page = api.list_metadata(&lp).await?;
        version.get_or_insert(page.metadata.resource_version.clone().unwrap_or_default());
        entries.extend(page.items.iter().map(entry_of));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => lp = lp.continue_token(&token),
            None => return Ok((entries, version.unwrap_or_default())),
        }
    }
}

/// Runs the list-watch of one type into its index until the index is dropped from [`Index`]
/// (the task holds only a weak reference) or the task is aborted.
///
/// nsguard runs its own loop rather than kube's `watcher` for one reason: health. kube's
/// watcher says nothing when a watch restarts after an error, so a quiet type whose watch
/// once failed to start (a 429 from API Priority and Fairness among hundreds of starts) would
/// stay untrusted, and be listed at every review, until one of its objects changed. Here a
/// watch that starts again from the last resourceVersion is [`Change::Resumed`]: the API
/// server replays every event since, so the index is whole again. A `410 Gone` lists again.
/// Lists and watch starts pass through `gate`; errors back off as kube's default backoff does.
pub async fn run(
    client: Client,
    r: ResourceType,
    index: std::sync::Weak<TypeIndex>,
    gate: Arc<tokio::sync::Semaphore>,
) {
    use futures::StreamExt;
    use kube::api::WatchEvent;
    use kube::runtime::utils::Backoff;
    let ar = super::api_resource(&r);
    let api = Api::<DynamicObject>::all_with(client, &ar);
    let mut backoff = watcher::DefaultBackoff::default();
    let params = kube::api::WatchParams::default().timeout(WATCH_TIMEOUT_S);
    // Applies a change if the index is still wanted; otherwise the task ends.
    macro_rules! tell {
        ($change:expr) => {
            match index.upgrade() {
                Some(t) => t.apply($change, Timestamp::now()),
                None => return,
            }
        };
    }
    macro_rules! pause {
        () => {
            tokio::time::sleep(backoff.next().unwrap_or(std::time::Duration::from_secs(30))).await
        };
    }
    'list: loop {
        let listed = {
            let _permit = gate.acquire().await;
            list_all(&api).await
        };
        let mut version = match listed {
            Ok((entries, version)) => {
                let Some(t) = index.upgrade() else { return };
                let now = Timestamp::now();
                t.apply(Change::Init, now);
                for entry in entries {
                    t.apply(Change::InitApply(entry), now);
                }
                t.apply(Change::InitDone, now);
                version
            }
            Err(error) => {
                tracing::debug!(%error, resource = %r.group_resource(), "Index list failed");
                tell!(failed_of(&error));
                pause!();
                continue 'list;
            }
        };
        loop {
            let started = {
                let _permit = gate.acquire().await;
                api.watch_metadata(&params, &version).await
            };
            let stream = match started {
                Ok(stream) => stream,
                Err(error) if gone(&error) => {
                    tell!(expired());
                    continue 'list;
                }
                Err(error) => {
                    tracing::debug!(%error, resource = %r.group_resource(), "Index watch failed to start");
                    tell!(failed_of(&error));
                    pause!();
                    continue;
                }
            };
            tell!(Change::Resumed);
            backoff.reset();
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                match event {
                    Ok(WatchEvent::Added(o) | WatchEvent::Modified(o)) => {
                        version = o.metadata.resource_version.clone().unwrap_or(version);
                        tell!(Change::Apply(entry_of(&o)));
                    }
                    Ok(WatchEvent::Deleted(o)) => {
                        version = o.metadata.resource_version.clone().unwrap_or(version);
                        tell!(Change::Delete(entry_of(&o)));
                    }
                    Ok(WatchEvent::Bookmark(b)) => version = b.metadata.resource_version,
                    // The API server answers an expired resourceVersion with 200 and then
                    // this event: the `Resumed` above was premature, so untrust until listed.
                    Ok(WatchEvent::Error(status)) if status.code == 410 => {
                        tell!(expired());
                        continue 'list;
                    }
                    Ok(WatchEvent::Error(status)) => {
                        tell!(failed_status(&status));
                        pause!();
                        break;
                    }
                    Err(error) if gone(&error) => {
                        tell!(expired());
                        continue 'list;
                    }
                    Err(error) => {
                        tell!(failed_of(&error));
                        pause!();
                        break;
                    }
                }
            }
            // The watch ended (its timeout, or an error above): watch again from `version`.
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t: &str) -> Timestamp {
        format!("2026-11-22T{t}Z").parse().unwrap()
    }

    fn obj(ns: &str, name: &str, finalizers: &[&str]) -> Entry {
        (
            ns.to_string(),
            ObjectFacts {
                name: name.to_string(),
                finalizers: finalizers.iter().map(|f| f.to_string()).collect(),
                ..Default::default()
            },
        )
    }

    fn names(index: &TypeIndex, ns: &str) -> Option<Vec<String>> {
        index
            .namespace(ns)
            .map(|v| v.into_iter().map(|o| o.name).collect())
    }

    fn synced(entries: &[Entry]) -> TypeIndex {
        let t = TypeIndex::default();
        t.apply(Change::Init, at("12:00:00"));
        for e in entries {
            t.apply(Change::InitApply(e.clone()), at("12:00:00"));
        }
        t.apply(Change::InitDone, at("12:00:00"));
        t
    }

    #[test]
    fn a_namespace_reads_its_own_objects_only_in_name_order() {
        // Neighbours in key order: "team" sorts before "team-a" and after "tea".
        let t = synced(&[
            obj("team-a", "x", &[]),
            obj("team", "b", &[]),
            obj("tea", "z", &[]),
            obj("team", "a", &["example.com/f"]),
            obj("teams", "y", &[]),
        ]);
        assert_eq!(names(&t, "team"), Some(vec!["a".into(), "b".into()]));
        assert_eq!(names(&t, "team-a"), Some(vec!["x".into()]));
        assert_eq!(names(&t, "nowhere"), Some(vec![]));
        assert_eq!(t.len(), 5);
        t.apply(Change::Delete(obj("team", "a", &[])), at("12:00:01"));
        t.apply(Change::Apply(obj("team", "c", &[])), at("12:00:01"));
        assert_eq!(names(&t, "team"), Some(vec!["b".into(), "c".into()]));
        assert_eq!(t.len(), 5);
    }

    fn failed(code: u16, message: &str) -> Change {
        Change::Failed {
            code: Some(code),
            class: ListErrorClass::of(Some(code), message),
            message: message.to_string(),
        }
    }

    #[test]
    fn not_trusted_until_the_first_list_is_done() {
        let t = TypeIndex::default();
        assert_eq!(t.health(), Health::Syncing);
        t.apply(Change::Init, at("12:00:00"));
        t.apply(Change::InitApply(obj("a", "x", &[])), at("12:00:00"));
        assert_eq!(names(&t, "a"), None);
        t.apply(Change::InitDone, at("12:00:01"));
        assert_eq!(t.health(), Health::Synced);
        assert_eq!(names(&t, "a"), Some(vec!["x".to_string()]));
    }

    #[test]
    fn per_namespace_view_with_apply_and_delete() {
        let t = synced(&[obj("a", "x", &[]), obj("b", "y", &["f"])]);
        t.apply(Change::Apply(obj("a", "z", &["g"])), at("12:00:02"));
        t.apply(Change::Apply(obj("b", "y", &[])), at("12:00:02"));
        assert_eq!(names(&t, "a"), Some(vec!["x".to_string(), "z".to_string()]));
        assert_eq!(
            t.namespace("b").unwrap()[0].finalizers,
            Vec::<String>::new()
        );
        t.apply(Change::Delete(obj("b", "y", &[])), at("12:00:03"));
        assert_eq!(names(&t, "b"), Some(vec![]));
        assert_eq!(names(&t, "nowhere"), Some(vec![]));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn a_relist_swaps_in_whole_and_drops_what_went_while_disconnected() {
        let t = synced(&[obj("a", "old", &["f"]), obj("a", "kept", &[])]);
        t.apply(Change::Init, at("12:01:00"));
        t.apply(Change::InitApply(obj("a", "kept", &[])), at("12:01:00"));
        // Until InitDone the old content is what reviews see.
        assert_eq!(
            names(&t, "a"),
            Some(vec!["kept".to_string(), "old".to_string()])
        );
        t.apply(Change::InitApply(obj("a", "new", &[])), at("12:01:00"));
        t.apply(Change::InitDone, at("12:01:01"));
        assert_eq!(
            names(&t, "a"),
            Some(vec!["kept".to_string(), "new".to_string()])
        );
    }

    #[test]
    fn failing_keeps_its_start_and_is_not_trusted_until_it_recovers() {
        let t = synced(&[obj("a", "x", &[])]);
        t.apply(failed(503, "service unavailable"), at("12:02:00"));
        t.apply(failed(503, "service unavailable"), at("12:02:30"));
        match t.health() {
            Health::Failing {
                since, code, class, ..
            } => {
                assert_eq!(since, at("12:02:00"));
                assert_eq!(code, Some(503));
                assert_eq!(class, ListErrorClass::Controller);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(names(&t, "a"), None);
        // A relist that completes makes it trusted again.
        t.apply(Change::Init, at("12:03:00"));
        t.apply(Change::InitDone, at("12:03:00"));
        assert_eq!(t.health(), Health::Synced);
        assert_eq!(names(&t, "a"), Some(vec![]));
    }

    #[test]
    fn a_watch_that_starts_again_makes_a_quiet_type_whole() {
        // A quiet type: listed, then its watch fails to start (APF's 429) and no object ever
        // changes. Resuming from the last resourceVersion is enough to trust it again.
        let t = synced(&[obj("a", "x", &["f"])]);
        t.apply(failed(429, "Too many requests"), at("12:00:01"));
        assert_eq!(names(&t, "a"), None);
        t.apply(Change::Resumed, at("12:00:02"));
        assert_eq!(t.health(), Health::Synced);
        assert_eq!(names(&t, "a"), Some(vec!["x".to_string()]));
    }

    #[test]
    fn resuming_during_a_relist_does_not_trust_a_partial_list() {
        let t = synced(&[obj("a", "x", &[])]);
        t.apply(Change::Init, at("12:00:01"));
        t.apply(failed(500, "etcd timeout"), at("12:00:02"));
        t.apply(Change::Resumed, at("12:00:03"));
        assert_eq!(t.health().label(), "failing");
    }

    #[test]
    fn a_type_that_never_lists_is_failing_not_syncing() {
        let t = TypeIndex::default();
        t.apply(Change::Init, at("12:00:00"));
        t.apply(
            failed(
                500,
                "conversion webhook for example.com/v2, Kind=Widget failed",
            ),
            at("12:00:01"),
        );
        assert_eq!(t.health().label(), "failing");
        assert_eq!(names(&t, "a"), None);
    }

    /// A mock API server for one type: lists answer with one object; the `n`th watch start
    /// (from 0) answers as `watch(n)` says: `Err(code)`, or a stream of the given lines that
    /// then stays open.
    fn mock(
        watch: impl Fn(usize) -> Result<Vec<String>, u16> + Send + Sync + 'static,
    ) -> (
        Client,
        Arc<std::sync::atomic::AtomicUsize>,
        Arc<std::sync::atomic::AtomicUsize>,
    ) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let lists = Arc::new(AtomicUsize::new(0));
        let watches = Arc::new(AtomicUsize::new(0));
        let (l, w) = (lists.clone(), watches.clone());
        let watch = Arc::new(watch);
        let service = tower::service_fn(move |req: axum::http::Request<kube::client::Body>| {
            let watching = req.uri().query().unwrap_or("").contains("watch=true");
            let answer = if watching {
                watch(w.fetch_add(1, Ordering::SeqCst))
            } else {
                l.fetch_add(1, Ordering::SeqCst);
                Ok(vec![])
            };
            async move {
                let response = match answer {
                    Err(code) => axum::http::Response::builder().status(code).body(axum::body::Body::from(
                        serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                            "message": "mock", "reason": "TooManyRequests", "code": code})
                        .to_string(),
                    )),
                    Ok(_) if !watching => axum::http::Response::builder().body(axum::body::Body::from(
                        serde_json::json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList",
                            "metadata": {"resourceVersion": "10"},
                            "items": [{"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                                "metadata": {"name": "x", "namespace": "a", "finalizers": ["f"]}}]})
                        .to_string(),
                    )),
                    Ok(lines) => {
                        let lines = futures::stream::iter(lines.into_iter().map(|l| {
                            Ok::<_, std::io::Error>(axum::body::Bytes::from(format!("{l}\n")))
                        }));
                        let body = futures::StreamExt::chain(lines, futures::stream::pending());
                        axum::http::Response::builder().body(axum::body::Body::from_stream(body))
                    }
                };
                Ok::<_, std::convert::Infallible>(response.unwrap())
            }
        });
        (Client::new(service, "default"), lists, watches)
    }

    async fn until(what: &str, check: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !check() {
            assert!(std::time::Instant::now() < deadline, "timed out: {what}");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_quiet_type_whose_watch_failed_to_start_is_trusted_once_it_starts() {
        use std::sync::atomic::Ordering;
        // The first watch start meets API Priority and Fairness (429); the second starts, and
        // no object ever changes.
        let (client, _, watches) = mock(|n| if n == 0 { Err(429) } else { Ok(vec![]) });
        let t = Arc::new(TypeIndex::default());
        let gate = Arc::new(tokio::sync::Semaphore::new(1));
        let task = tokio::spawn(run(client, rt("widgets"), Arc::downgrade(&t), gate));
        until("the first watch start fails", || {
            t.health().label() == "failing"
        })
        .await;
        assert_eq!(names(&t, "a"), None);
        until("the watch starts again", || {
            watches.load(Ordering::SeqCst) >= 2
        })
        .await;
        until("the type is trusted", || t.health() == Health::Synced).await;
        assert_eq!(names(&t, "a"), Some(vec!["x".to_string()]));
        task.abort();
    }

    #[tokio::test]
    async fn an_expired_watch_lists_again_and_is_not_trusted_meanwhile() {
        use std::sync::atomic::Ordering;
        let gone = serde_json::json!({"type": "ERROR", "object": {"kind": "Status",
            "apiVersion": "v1", "status": "Failure", "message": "too old resource version",
            "reason": "Expired", "code": 410}})
        .to_string();
        let (client, lists, _) =
            mock(move |n| Ok(if n == 0 { vec![gone.clone()] } else { vec![] }));
        let t = Arc::new(TypeIndex::default());
        let gate = Arc::new(tokio::sync::Semaphore::new(1));
        let task = tokio::spawn(run(client, rt("widgets"), Arc::downgrade(&t), gate));
        until("listed again", || lists.load(Ordering::SeqCst) >= 2).await;
        until("trusted after the relist", || t.health() == Health::Synced).await;
        task.abort();
    }

    fn rt(resource: &str) -> ResourceType {
        ResourceType {
            group: "example.com".into(),
            version: "v1".into(),
            resource: resource.into(),
            kind: "K".into(),
            listable: true,
        }
    }

    #[test]
    fn ready_once_every_type_synced_or_failing() {
        let index = Index::default();
        let (w, new) = index.get_or_add(&rt("widgets"));
        assert!(new);
        let (g, _) = index.get_or_add(&rt("gadgets"));
        assert!(!index.get_or_add(&rt("widgets")).1);
        assert!(!index.ready());
        w.apply(Change::Init, at("12:00:00"));
        w.apply(Change::InitDone, at("12:00:00"));
        assert_eq!(index.counts(), (1, 1, 0));
        g.apply(failed(503, "service unavailable"), at("12:00:01"));
        assert_eq!(index.counts(), (1, 0, 1));
        assert!(index.ready());
        assert_eq!(index.retain(&[rt("widgets")]), vec![rt("gadgets")]);
        assert!(index.get(&rt("gadgets")).is_none());
        assert_eq!(index.counts(), (1, 0, 0));
    }
}
