//! A live, metadata-only index of namespaced content (issue 12): one watcher per namespaced
//! type, kept stripped to what the checks read (name, finalizers, deletionTimestamp, labels),
//! with a health record per type that nsguard keeps itself (kube's `Store` never clears on
//! errors and `wait_until_ready` fires only on the first `InitDone`).
//!
//! This module holds the structure and its event handling; a review reads a type from it only
//! when the type is [`Health::Synced`], and lists the type in the namespace otherwise.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use k8s_openapi::jiff::Timestamp;
use kube::api::{ApiResource, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::runtime::watcher;
use kube::{Api, Client, Resource};

use super::{ListErrorClass, ObjectFacts, ResourceType};

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

type ByNamespace = HashMap<String, BTreeMap<String, ObjectFacts>>;

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
                objects: HashMap::new(),
                buffer: None,
            }),
        }
    }
}

fn insert(map: &mut ByNamespace, (ns, o): Entry) {
    map.entry(ns).or_default().insert(o.name.clone(), o);
}

fn remove(map: &mut ByNamespace, (ns, o): &Entry) {
    if let Some(objects) = map.get_mut(ns) {
        objects.remove(&o.name);
        if objects.is_empty() {
            map.remove(ns);
        }
    }
}

impl TypeIndex {
    /// Applies one change at time `now`.
    pub fn apply(&self, change: Change, now: Timestamp) {
        let mut s = self.state.write().unwrap_or_else(|e| e.into_inner());
        match change {
            Change::Init => s.buffer = Some(HashMap::new()),
            Change::InitApply(entry) => insert(s.buffer.get_or_insert_with(HashMap::new), entry),
            Change::InitDone => {
                s.objects = s.buffer.take().unwrap_or_default();
                s.health = Health::Synced;
            }
            Change::Apply(entry) => {
                insert(&mut s.objects, entry);
                // An event after a failed watch: the watch resumed.
                if matches!(s.health, Health::Failing { .. }) && s.buffer.is_none() {
                    s.health = Health::Synced;
                }
            }
            Change::Delete(entry) => {
                remove(&mut s.objects, &entry);
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
                .get(namespace)
                .map(|m| m.values().cloned().collect())
                .unwrap_or_default()
        })
    }

    /// Objects held, over every namespace.
    pub fn len(&self) -> usize {
        let s = self.state.read().unwrap_or_else(|e| e.into_inner());
        s.objects.values().map(BTreeMap::len).sum()
    }

    /// Whether no object is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The index of every watched type.
#[derive(Default)]
pub struct Index {
    types: RwLock<BTreeMap<ResourceType, Arc<TypeIndex>>>,
}

impl Index {
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
        },
    )
}

fn change_of(
    event: Result<watcher::Event<PartialObjectMeta<DynamicObject>>, watcher::Error>,
) -> Change {
    use watcher::Event;
    match event {
        Ok(Event::Init) => Change::Init,
        Ok(Event::InitApply(o)) => Change::InitApply(entry_of(&o)),
        Ok(Event::InitDone) => Change::InitDone,
        Ok(Event::Apply(o)) => Change::Apply(entry_of(&o)),
        Ok(Event::Delete(o)) => Change::Delete(entry_of(&o)),
        Err(error) => {
            let api = match &error {
                watcher::Error::InitialListFailed(e)
                | watcher::Error::WatchStartFailed(e)
                | watcher::Error::WatchFailed(e) => match e {
                    kube::Error::Api(status) => Some((status.code, status.message.clone())),
                    _ => None,
                },
                watcher::Error::WatchError(status) => Some((status.code, status.message.clone())),
                watcher::Error::NoResourceVersion => None,
            };
            match api {
                Some((code, message)) => Change::Failed {
                    code: Some(code),
                    class: ListErrorClass::of(Some(code), &message),
                    message,
                },
                None => Change::Failed {
                    code: None,
                    class: ListErrorClass::Own,
                    message: error.to_string(),
                },
            }
        }
    }
}

/// Runs the metadata-only watcher of one type into its index until the index is dropped from
/// [`Index`] (the task holds only a weak reference) or the task is aborted. ListWatch, default
/// page size: a consistent first list; never `streaming_lists()`.
pub async fn run(client: Client, r: ResourceType, index: std::sync::Weak<TypeIndex>) {
    use futures::StreamExt;
    use kube::runtime::WatchStreamExt;
    let ar = ApiResource {
        group: r.group.clone(),
        version: r.version.clone(),
        api_version: r.api_version(),
        kind: r.kind.clone(),
        plural: r.resource.clone(),
    };
    let api = Api::<PartialObjectMeta<DynamicObject>>::all_with(client, &ar);
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = stream.next().await {
        let Some(index) = index.upgrade() else {
            return;
        };
        index.apply(change_of(event), Timestamp::now());
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
