//! A live, metadata-only index of namespaced content: one watcher per namespaced
//! type, kept stripped to what the checks read (name, finalizers, deletionTimestamp, labels),
//! with a health record per type that nsguard keeps itself (kube's `Store` never clears on
//! errors and `wait_until_ready` fires only on the first `InitDone`).
//!
//! This module holds the structure and its event handling; a review reads a type from it only
//! when the type is [`Health::Synced`], and lists the type in the namespace otherwise.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::api::DynamicObject;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher;
use kube::{Api, Client, Resource};
use tokio::time::Instant;

use crate::config::InitialSync;
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
    /// A bookmark: the API server says the watch is current up to its resourceVersion, with
    /// no event to tell.
    Bookmark,
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

/// A label set, interned: the pods of one ReplicaSet, the objects of one Helm release share
/// one.
type Labels = Arc<[(Arc<str>, Arc<str>)]>;
/// A finalizer set, interned: a handful of distinct sets cover a cluster.
type Finalizers = Arc<[Arc<str>]>;

/// Strings and sets that many objects share, kept once over every type: namespaces, label
/// sets (and their keys and values), finalizer sets. Entries no object holds any longer are
/// swept once the interner has doubled since its last sweep.
#[derive(Debug, Default)]
pub struct Interner {
    strings: HashSet<Arc<str>>,
    labels: HashSet<Labels>,
    finalizers: HashSet<Finalizers>,
    /// Entries after the last sweep.
    swept_at: usize,
}

impl Interner {
    fn string(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.strings.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        self.strings.insert(a.clone());
        a
    }

    fn labels(&mut self, labels: &BTreeMap<String, String>) -> Option<Labels> {
        if labels.is_empty() {
            return None;
        }
        let pairs: Vec<(Arc<str>, Arc<str>)> = labels
            .iter()
            .map(|(k, v)| (self.string(k), self.string(v)))
            .collect();
        if let Some(l) = self.labels.get(pairs.as_slice()) {
            return Some(l.clone());
        }
        let l: Labels = Arc::from(pairs);
        self.labels.insert(l.clone());
        Some(l)
    }

    fn finalizers(&mut self, finalizers: &[String]) -> Option<Finalizers> {
        if finalizers.is_empty() {
            return None;
        }
        let set: Vec<Arc<str>> = finalizers.iter().map(|f| self.string(f)).collect();
        if let Some(f) = self.finalizers.get(set.as_slice()) {
            return Some(f.clone());
        }
        let f: Finalizers = Arc::from(set);
        self.finalizers.insert(f.clone());
        Some(f)
    }

    fn len(&self) -> usize {
        self.strings.len() + self.labels.len() + self.finalizers.len()
    }

    /// Drops what no object holds, once the interner has doubled since the last sweep.
    fn maybe_sweep(&mut self) {
        if self.len() <= 2 * self.swept_at + 1024 {
            return;
        }
        // Sets first: they hold strings.
        self.labels.retain(|l| Arc::strong_count(l) > 1);
        self.finalizers.retain(|f| Arc::strong_count(f) > 1);
        self.strings.retain(|s| Arc::strong_count(s) > 1);
        self.swept_at = self.len();
    }

    /// The stored form of `entry`: its key and what the checks read besides the name.
    fn store(&mut self, (ns, o): &Entry) -> (Key, Stored) {
        let rare = (!o.finalizers.is_empty() || o.deletion_timestamp.is_some()).then(|| {
            Box::new(Rare {
                finalizers: self.finalizers(&o.finalizers),
                deletion: o.deletion_timestamp,
            })
        });
        let stored = Stored {
            labels: self.labels(&o.labels),
            rare,
        };
        let key = (self.string(ns), Box::from(o.name.as_str()));
        self.maybe_sweep();
        (key, stored)
    }
}

/// One object's key: (namespace, name). The namespace is interned.
type Key = (Arc<str>, Box<str>);

/// One object as the index keeps it: 24 bytes beside its key, strings shared.
#[derive(Debug)]
struct Stored {
    labels: Option<Labels>,
    /// Finalizers and deletion: most objects have neither.
    rare: Option<Box<Rare>>,
}

#[derive(Debug)]
struct Rare {
    finalizers: Option<Finalizers>,
    deletion: Option<Timestamp>,
}

impl Stored {
    fn facts(&self, name: &str) -> ObjectFacts {
        let rare = self.rare.as_deref();
        ObjectFacts {
            name: name.to_string(),
            finalizers: rare
                .and_then(|r| r.finalizers.as_deref())
                .map(|f| f.iter().map(|s| s.to_string()).collect())
                .unwrap_or_default(),
            deletion_timestamp: rare.and_then(|r| r.deletion),
            labels: self
                .labels
                .as_deref()
                .map(|l| {
                    l.iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect()
                })
                .unwrap_or_default(),
            // Not kept: a review reads them where an admission policy needs them.
            annotations: None,
        }
    }
}

/// One ordered map per type, keyed by (namespace, name): a namespace's objects are one range.
///
/// Not a map of maps: most types hold a few objects in each of many namespaces (a ConfigMap
/// and a ServiceAccount in every namespace, a custom resource or two), and a map per
/// (type, namespace) costs a whole B-tree node (about 1.3 KB) for one object. A relist is
/// collected in a vector and built into the map in one go, which packs the B-tree's nodes
/// full (one object at a time in key order, as a list arrives, leaves them about half full).
type ByNamespace = BTreeMap<Key, Stored>;

#[derive(Debug)]
struct TypeState {
    health: Health,
    objects: ByNamespace,
    /// Filled by `InitApply` during a relist, built into the map on `InitDone`.
    buffer: Option<Vec<(Key, Stored)>>,
    /// When the API server last confirmed that the index is current: a complete list, a
    /// watch event, a bookmark, or a watch started again from the last resourceVersion after
    /// an error (its replay is what the break missed). A watch started again after silence
    /// does not count: it says the server answered, not that its events arrive.
    confirmed: Option<Instant>,
    /// How the type was last listed whole.
    method: Option<SyncMethod>,
}

/// How a type was listed whole (at start, and again after its watch expired).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMethod {
    /// A consistent streaming list: one WATCH with `sendInitialEvents=true` and no
    /// resourceVersion, up to its `k8s.io/initial-events-end` bookmark, then the same watch.
    Stream,
    /// A consistent paginated LIST, then a WATCH from its resourceVersion.
    List,
}

impl SyncMethod {
    /// The bounded label of `nsguard_index_sync_types{method}` and `/debug/index-digest`.
    pub fn label(self) -> &'static str {
        match self {
            SyncMethod::Stream => "stream",
            SyncMethod::List => "list",
        }
    }
}

/// Why a type was listed whole again, counted over every type (`nsguard_index_relists_total`).
#[derive(Debug, Default)]
pub struct Relists {
    /// Its watch expired (410 Gone: the resourceVersion it would resume from was compacted
    /// away or is older than the API server's watch cache).
    pub expired: AtomicU64,
    /// A streaming list was refused or never ended: the type was listed instead.
    pub fallback: AtomicU64,
}

/// How long a type's index may go without the API server confirming its watch (an event or
/// a bookmark) before reviews stop trusting it and list the type instead: a watch that went
/// silent is caught within two minutes.
///
/// kube-apiserver's watch cache is documented to send bookmarks about once a minute, but on
/// the local control plane (1.36) a quiet metadata watch got them only near its own deadline:
/// with a 90 s bound and 290 s watches `make bench` found quiet types listed at every review
/// (2 API requests per allow, 329 fail-opens in the storms under the API-call bound). The one
/// bookmark every watch does get comes two seconds before its timeout, so the watches' timeout
/// ([`WATCH_TIMEOUT_S`], 100 s) is kept 20 s under this bound: a healthy quiet type is
/// confirmed every 100 s and never untrusted, a silent one is within 120 s. Clients must not
/// rely on bookmark intervals, says the API's documentation; this one relies only on the
/// deadline's.
pub const DEFAULT_MAX_STALENESS: Duration = Duration::from_secs(120);

/// The index of one namespaced type. Updated by its watcher, read by reviews.
#[derive(Debug)]
pub struct TypeIndex {
    state: RwLock<TypeState>,
    /// The staleness bound in milliseconds, shared by every type of one [`Index`].
    max_staleness_ms: Arc<AtomicU64>,
    /// Shared by every type of one [`Index`].
    interner: Arc<Mutex<Interner>>,
    /// Shared by every type of one [`Index`].
    relists: Arc<Relists>,
    /// How the type is to be listed whole.
    initial_sync: InitialSync,
}

impl Default for TypeIndex {
    fn default() -> Self {
        Self::with(
            Arc::new(AtomicU64::new(millis(DEFAULT_MAX_STALENESS))),
            Arc::default(),
        )
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl TypeIndex {
    /// A type listed by paginated LISTs (`initial_sync: list`), alone or in an [`Index`].
    fn with(max_staleness_ms: Arc<AtomicU64>, interner: Arc<Mutex<Interner>>) -> Self {
        Self {
            state: RwLock::new(TypeState {
                health: Health::Syncing,
                objects: BTreeMap::new(),
                buffer: None,
                confirmed: None,
                method: None,
            }),
            max_staleness_ms,
            interner,
            relists: Arc::default(),
            initial_sync: InitialSync::List,
        }
    }

    /// This type, listed as `initial_sync` says.
    fn listing(mut self, initial_sync: InitialSync) -> Self {
        self.initial_sync = initial_sync;
        self
    }

    /// How the type was last listed whole; `None` before its first complete list.
    pub fn method(&self) -> Option<SyncMethod> {
        self.state.read().unwrap_or_else(|e| e.into_inner()).method
    }

    fn set_method(&self, method: SyncMethod) {
        self.state.write().unwrap_or_else(|e| e.into_inner()).method = Some(method);
    }

    fn store(&self, entry: &Entry) -> (Key, Stored) {
        self.interner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .store(entry)
    }

    /// The staleness bound in force ([`DEFAULT_MAX_STALENESS`] unless the [`Index`] says).
    pub fn max_staleness(&self) -> Duration {
        Duration::from_millis(self.max_staleness_ms.load(Ordering::Relaxed))
    }

    /// Applies one change at time `now` (the monotonic clock of the confirmation is read
    /// here, from tokio's clock, so that tests can pause it).
    pub fn apply(&self, change: Change, now: Timestamp) {
        // Interned before the state's lock is taken: reviews reading are not held up by it.
        let stored = match &change {
            Change::InitApply(entry) | Change::Apply(entry) => Some(self.store(entry)),
            _ => None,
        };
        let mut s = self.state.write().unwrap_or_else(|e| e.into_inner());
        match change {
            Change::Init => s.buffer = Some(Vec::new()),
            Change::InitApply(_) => s.buffer.get_or_insert_with(Vec::new).extend(stored),
            Change::InitDone => {
                // Built in one go: nodes packed full (the entries come sorted from the API
                // server; the sort is stable, and a repeated key keeps its last entry).
                s.objects = s.buffer.take().unwrap_or_default().into_iter().collect();
                s.health = Health::Synced;
                s.confirmed = Some(Instant::now());
            }
            // Events come only on a watch that started (`Resumed` came first): they say
            // nothing of health, but they confirm the watch is live.
            Change::Apply(_) => {
                s.objects.extend(stored);
                s.confirmed = Some(Instant::now());
            }
            Change::Delete((ns, o)) => {
                s.objects
                    .remove(&(Arc::from(ns.as_str()), Box::from(o.name.as_str())));
                s.confirmed = Some(Instant::now());
            }
            Change::Bookmark => s.confirmed = Some(Instant::now()),
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

    /// How long ago the API server last confirmed this type's index (a list, an event, a
    /// bookmark), as of `now`; `None` if it never did.
    pub fn confirmation_age(&self, now: Instant) -> Option<Duration> {
        let s = self.state.read().unwrap_or_else(|e| e.into_inner());
        s.confirmed.map(|t| now.saturating_duration_since(t))
    }

    /// Synced, but not confirmed within the staleness bound as of `now`: not trusted.
    pub fn stale(&self, now: Instant) -> bool {
        let s = self.state.read().unwrap_or_else(|e| e.into_inner());
        s.health == Health::Synced && !fresh(&s, now, self.max_staleness())
    }

    /// The objects of this type in `namespace`, if the index can be trusted: `Synced`, and
    /// confirmed by the API server within the staleness bound. `None` means: list the type
    /// in the namespace instead.
    pub fn namespace(&self, namespace: &str) -> Option<Vec<ObjectFacts>> {
        let now = Instant::now();
        let s = self.state.read().unwrap_or_else(|e| e.into_inner());
        (s.health == Health::Synced && fresh(&s, now, self.max_staleness())).then(|| {
            s.objects
                .range((Arc::from(namespace), Box::from(""))..)
                .take_while(|((ns, _), _)| &**ns == namespace)
                .map(|((_, name), o)| o.facts(name))
                .collect()
        })
    }

    /// The digest of what the index holds: object count and [`digest`] over every object.
    pub fn digest(&self) -> (usize, u64) {
        let s = self.state.read().unwrap_or_else(|e| e.into_inner());
        let entries = s.objects.iter().map(|((ns, name), o)| {
            let finalizers: Vec<&str> = o
                .rare
                .as_deref()
                .and_then(|r| r.finalizers.as_deref())
                .map(|f| f.iter().map(|s| &**s).collect())
                .unwrap_or_default();
            (&**ns, &**name, finalizers)
        });
        (s.objects.len(), digest(entries))
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

fn fresh(s: &TypeState, now: Instant, bound: Duration) -> bool {
    s.confirmed
        .is_some_and(|t| now.saturating_duration_since(t) <= bound)
}

/// The index of every watched type.
pub struct Index {
    types: RwLock<BTreeMap<ResourceType, Arc<TypeIndex>>>,
    /// Bounds the lists and watch starts in flight over every type ([`START_GATE`]).
    gate: Arc<tokio::sync::Semaphore>,
    /// The staleness bound of every type, in milliseconds.
    max_staleness_ms: Arc<AtomicU64>,
    /// Strings and sets shared over every type.
    interner: Arc<Mutex<Interner>>,
    /// Relists counted over every type.
    relists: Arc<Relists>,
    /// How every type is listed whole.
    initial_sync: InitialSync,
}

impl Default for Index {
    fn default() -> Self {
        Self::with_initial_sync(InitialSync::default())
    }
}

/// How fresh the index is, over its synced types.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Freshness {
    /// The longest time since the API server confirmed a synced type's watch.
    pub oldest_confirmation: Duration,
    /// Synced types not confirmed within the bound (read by LIST at review time).
    pub stale: usize,
}

impl Index {
    /// An empty index whose types are listed as `initial_sync` says.
    pub fn with_initial_sync(initial_sync: InitialSync) -> Self {
        Self {
            types: RwLock::default(),
            gate: Arc::new(tokio::sync::Semaphore::new(START_GATE)),
            max_staleness_ms: Arc::new(AtomicU64::new(millis(DEFAULT_MAX_STALENESS))),
            interner: Arc::default(),
            relists: Arc::default(),
            initial_sync,
        }
    }

    /// Relists so far over every type: `(expired, fallback)` ([`Relists`]).
    pub fn relists(&self) -> (u64, u64) {
        (
            self.relists.expired.load(Ordering::Relaxed),
            self.relists.fallback.load(Ordering::Relaxed),
        )
    }

    /// How many types were last listed whole by each method: `(stream, list)`.
    pub fn methods(&self) -> (usize, usize) {
        let types = self.types.read().unwrap_or_else(|e| e.into_inner());
        types.values().fold((0, 0), |(s, l), t| match t.method() {
            Some(SyncMethod::Stream) => (s + 1, l),
            Some(SyncMethod::List) => (s, l + 1),
            None => (s, l),
        })
    }

    /// Sets how long a type may go unconfirmed before reviews stop trusting it.
    pub fn set_max_staleness(&self, bound: Duration) {
        self.max_staleness_ms
            .store(millis(bound), Ordering::Relaxed);
    }

    /// The oldest confirmation and the count of stale types, as of `now`.
    pub fn freshness(&self, now: Instant) -> Freshness {
        let types = self.types.read().unwrap_or_else(|e| e.into_inner());
        types
            .values()
            .filter(|t| t.health() == Health::Synced)
            .fold(Freshness::default(), |acc, t| Freshness {
                oldest_confirmation: acc
                    .oldest_confirmation
                    .max(t.confirmation_age(now).unwrap_or_default()),
                stale: acc.stale + usize::from(t.stale(now)),
            })
    }

    /// The types still listing for the first time, for readiness to name.
    pub fn syncing(&self) -> Vec<ResourceType> {
        let types = self.types.read().unwrap_or_else(|e| e.into_inner());
        types
            .iter()
            .filter(|(_, t)| t.health() == Health::Syncing)
            .map(|(r, _)| r.clone())
            .collect()
    }

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
                let mut t = TypeIndex::with(self.max_staleness_ms.clone(), self.interner.clone())
                    .listing(self.initial_sync);
                t.relists = self.relists.clone();
                let t = Arc::new(t);
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

    /// The types nsguard's own identity may not list or watch (403), as `resource.group`:
    /// never checked until its role grants them (`nsguard rbac`).
    pub fn forbidden(&self) -> Vec<String> {
        let types = self.types.read().unwrap_or_else(|e| e.into_inner());
        types
            .iter()
            .filter(|(_, t)| {
                matches!(
                    t.health(),
                    Health::Failing {
                        code: Some(403),
                        ..
                    }
                )
            })
            .map(|(r, _)| r.group_resource())
            .collect()
    }

    /// Ready: every type has synced or is failing (a broken type must not keep nsguard
    /// unready; a review lists it and reports what that list says).
    pub fn ready(&self) -> bool {
        self.counts().1 == 0
    }
}

/// A stable hash (FNV-1a, 64 bits) of `(namespace, name, finalizers)` entries in
/// (namespace, name) order: the index's digest of a type, which a fresh LIST of the type
/// must reproduce (`/debug/index-digest`). Entries must come sorted.
pub fn digest<'a>(entries: impl IntoIterator<Item = (&'a str, &'a str, Vec<&'a str>)>) -> u64 {
    use std::hash::Hasher;
    let mut h = fnv::FnvHasher::default();
    for (ns, name, finalizers) in entries {
        for part in [ns, name].into_iter().chain(finalizers) {
            h.write(part.as_bytes());
            h.write_u8(0);
        }
        h.write_u8(0x1e);
    }
    h.finish()
}

/// One type in the index's digest.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TypeDigest {
    /// `resource.group`.
    pub resource: String,
    /// `group/version` it is watched at (`v1` for core).
    pub api_version: String,
    /// Its plural resource name.
    pub plural: String,
    /// `synced`, `syncing` or `failing`; `stale` for a synced type past the bound.
    pub state: &'static str,
    /// Objects held.
    pub objects: usize,
    /// [`digest`] of the objects held, as 16 hex digits.
    pub hash: String,
    /// How the type was last listed whole: `stream`, `list`, or `none` yet.
    pub sync: &'static str,
}

impl Index {
    /// The digest of every type, in type order.
    pub fn digests(&self) -> Vec<TypeDigest> {
        let types = self.types.read().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        types
            .iter()
            .map(|(r, t)| {
                let (objects, hash) = t.digest();
                TypeDigest {
                    resource: r.group_resource(),
                    api_version: r.api_version(),
                    plural: r.resource.clone(),
                    state: if t.stale(now) {
                        "stale"
                    } else {
                        t.health().label()
                    },
                    objects,
                    hash: format!("{hash:016x}"),
                    sync: t.method().map_or("none", SyncMethod::label),
                }
            })
            .collect()
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

/// How long the API server asked to wait (API Priority and Fairness answers a throttled
/// request 429 with `details.retryAfterSeconds`, beside its `Retry-After` header).
fn retry_after(error: &kube::Error) -> Option<std::time::Duration> {
    match error {
        kube::Error::Api(s) if s.code == 429 => s
            .details
            .as_ref()
            .map(|d| std::time::Duration::from_secs(u64::from(d.retry_after_seconds)))
            .filter(|d| !d.is_zero()),
        _ => None,
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

/// Server-side timeout of one watch: the API server sends a bookmark two seconds before it,
/// and that bookmark must come within [`DEFAULT_MAX_STALENESS`] (with 20 s to spare for the
/// watch's restart) for a quiet type to stay trusted. kube's watcher and client-go use 290 s;
/// a watch started every 100 s instead costs one request per type every 100 s, served from
/// the watch cache.
const WATCH_TIMEOUT_S: u32 = 100;

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

/// Applies `change` if the index is still wanted; `false` when it is not (the task ends).
fn tell(index: &std::sync::Weak<TypeIndex>, change: Change) -> bool {
    match index.upgrade() {
        Some(t) => {
            t.apply(change, Timestamp::now());
            true
        }
        None => false,
    }
}

/// Backs off, and at least as long as a 429 `asked`.
async fn pause(backoff: &mut watcher::DefaultBackoff, asked: Option<std::time::Duration>) {
    let next = backoff.next().unwrap_or(std::time::Duration::from_secs(30));
    tokio::time::sleep(next.max(asked.unwrap_or_default())).await
}

/// A watch's events, boxed: the same watch goes on after a streaming list.
type Events = futures::stream::BoxStream<
    'static,
    kube::Result<kube::api::WatchEvent<PartialObjectMeta<DynamicObject>>>,
>;

/// The annotation of the bookmark that ends a streaming list's initial events.
const INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";

/// How long a streaming list may go without an event before the API server is taken not to
/// offer it: a server that ignores `sendInitialEvents` sends every object (a plain watch with
/// no resourceVersion does) but never the end bookmark. Above the watch cache's 3 s wait for a
/// consistent read to catch up.
pub const STREAM_IDLE_BOUND: Duration = Duration::from_secs(15);

/// What a streaming list came to.
enum Streamed {
    /// Every object, the resourceVersion of the end bookmark, and the watch going on from it.
    Done(Vec<Entry>, String, Events),
    /// The API server does not offer streaming lists for this type: it refused the request
    /// (the status code), or the end bookmark did not come.
    NotOffered {
        /// The status code of a refusal.
        code: Option<u16>,
        /// What happened.
        why: String,
    },
    /// The request failed as any list may (unavailable, throttled, cut off): try again.
    Failed(kube::Error),
    /// The watch reported an error status that is not a refusal: try again.
    Error(Box<kube::core::Status>),
}

/// The status codes of an API server that does not serve `sendInitialEvents` for a type: 422
/// (the `WatchList` feature gate is off), 400, 403 and 501 (an aggregated API server that
/// does not implement it).
fn refuses_streaming(code: u16) -> bool {
    matches!(code, 400 | 403 | 422 | 501)
}

/// One consistent streaming list of every object of the type, as client-go's reflector asks
/// for it: a WATCH with `sendInitialEvents=true`, `resourceVersionMatch=NotOlderThan` and the
/// resourceVersion unset (kube's `streaming_lists()` sends `0`, which the API server may
/// answer from a stale cache). The initial events end at a bookmark annotated
/// [`INITIAL_EVENTS_END`] whose resourceVersion is that of the state they describe; the
/// watch then goes on from there, as a watch from a LIST's resourceVersion would.
async fn stream_list(api: &Api<DynamicObject>, idle: Duration) -> Streamed {
    use futures::StreamExt;
    use kube::api::WatchEvent;
    let params = kube::api::WatchParams {
        bookmarks: true,
        send_initial_events: true,
        ..Default::default()
    }
    .timeout(WATCH_TIMEOUT_S);
    // kube sends `resourceVersion=` with an empty value: the API server reads it as unset.
    let mut stream: Events = match api.watch_metadata(&params, "").await {
        Ok(stream) => stream.boxed(),
        Err(kube::Error::Api(s)) if refuses_streaming(s.code) => {
            return Streamed::NotOffered {
                code: Some(s.code),
                why: s.message,
            };
        }
        Err(error) => return Streamed::Failed(error),
    };
    let mut objects: BTreeMap<(String, String), Entry> = BTreeMap::new();
    loop {
        let event = match tokio::time::timeout(idle, stream.next()).await {
            Ok(Some(event)) => event,
            Ok(None) => {
                return Streamed::NotOffered {
                    code: None,
                    why: "the watch ended before its initial-events-end bookmark".into(),
                };
            }
            Err(_) => {
                return Streamed::NotOffered {
                    code: None,
                    why: format!(
                        "no initial-events-end bookmark ({} objects, then nothing for {} s)",
                        objects.len(),
                        idle.as_secs()
                    ),
                };
            }
        };
        match event {
            Ok(WatchEvent::Added(o) | WatchEvent::Modified(o)) => {
                let (ns, facts) = entry_of(&o);
                objects.insert((ns.clone(), facts.name.clone()), (ns, facts));
            }
            Ok(WatchEvent::Deleted(o)) => {
                let (ns, facts) = entry_of(&o);
                objects.remove(&(ns, facts.name));
            }
            Ok(WatchEvent::Bookmark(b))
                if b.metadata
                    .annotations
                    .get(INITIAL_EVENTS_END)
                    .is_some_and(|v| v == "true") =>
            {
                return Streamed::Done(
                    objects.into_values().collect(),
                    b.metadata.resource_version,
                    stream,
                );
            }
            Ok(WatchEvent::Bookmark(_)) => {}
            Ok(WatchEvent::Error(status)) if refuses_streaming(status.code) => {
                return Streamed::NotOffered {
                    code: Some(status.code),
                    why: status.message,
                };
            }
            Ok(WatchEvent::Error(status)) => return Streamed::Error(status),
            Err(error) => return Streamed::Failed(error),
        }
    }
}

/// The first complete list of a type, or its list again after a 410: how, and what it came to.
enum Synced {
    /// Every object, the resourceVersion to watch from, and the watch itself when the list
    /// was streamed (it goes on).
    Whole(Vec<Entry>, String, Option<Events>, SyncMethod),
    /// Failed: tell the index, back off and list again.
    Failed(Change, Option<Duration>),
}

/// Lists the type whole, by a streaming list while `streaming` (turned off for good, with one
/// log line, when the API server does not offer it and `initial_sync` allows the fallback),
/// else by a paginated LIST.
async fn sync_whole(
    api: &Api<DynamicObject>,
    r: &ResourceType,
    initial_sync: InitialSync,
    streaming: &mut bool,
    relists: &Relists,
) -> Synced {
    if *streaming {
        match stream_list(api, STREAM_IDLE_BOUND).await {
            Streamed::Done(entries, version, events) => {
                return Synced::Whole(entries, version, Some(events), SyncMethod::Stream);
            }
            Streamed::NotOffered { code, why } if initial_sync == InitialSync::Auto => {
                tracing::info!(
                    resource = %r.group_resource(),
                    code = code.map(i64::from),
                    reason = %why,
                    "Streaming list not offered: listing this type instead"
                );
                *streaming = false;
                relists.fallback.fetch_add(1, Ordering::Relaxed);
            }
            Streamed::NotOffered { code, why } => {
                let message = format!("streaming list not offered: {why}");
                let class = ListErrorClass::of(code, &message);
                return Synced::Failed(
                    Change::Failed {
                        code,
                        class,
                        message,
                    },
                    None,
                );
            }
            Streamed::Failed(error) => {
                tracing::debug!(%error, resource = %r.group_resource(), "Index streaming list failed");
                let asked = retry_after(&error);
                return Synced::Failed(failed_of(&error), asked);
            }
            Streamed::Error(status) => return Synced::Failed(failed_status(&status), None),
        }
    }
    match list_all(api).await {
        Ok((entries, version)) => Synced::Whole(entries, version, None, SyncMethod::List),
        Err(error) => {
            tracing::debug!(%error, resource = %r.group_resource(), "Index list failed");
            Synced::Failed(failed_of(&error), retry_after(&error))
        }
    }
}

/// Marks the type expired (410 Gone) and counts the relist; `false` when the index is gone.
fn expire(index: &std::sync::Weak<TypeIndex>) -> bool {
    match index.upgrade() {
        Some(t) => {
            t.relists.expired.fetch_add(1, Ordering::Relaxed);
            t.apply(expired(), Timestamp::now());
            true
        }
        None => false,
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
/// The type is listed whole as its [`TypeIndex`]'s `initial_sync` says ([`sync_whole`]).
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
    let Some((initial_sync, relists)) =
        index.upgrade().map(|t| (t.initial_sync, t.relists.clone()))
    else {
        return;
    };
    let mut streaming = initial_sync != InitialSync::List;
    // Bookmarks requested (`allowWatchBookmarks`): on a quiet type they are the API server's
    // only confirmation that the watch is live ([`DEFAULT_MAX_STALENESS`]).
    let params = kube::api::WatchParams {
        bookmarks: true,
        ..Default::default()
    }
    .timeout(WATCH_TIMEOUT_S);
    'list: loop {
        let synced = {
            let _permit = gate.acquire().await;
            sync_whole(&api, &r, initial_sync, &mut streaming, &relists).await
        };
        let (mut version, mut going_on) = match synced {
            Synced::Whole(entries, version, events, method) => {
                let Some(t) = index.upgrade() else { return };
                let now = Timestamp::now();
                t.apply(Change::Init, now);
                for entry in entries {
                    t.apply(Change::InitApply(entry), now);
                }
                t.apply(Change::InitDone, now);
                t.set_method(method);
                (version, events)
            }
            Synced::Failed(change, asked) => {
                if !tell(&index, change) {
                    return;
                }
                pause(&mut backoff, asked).await;
                continue 'list;
            }
        };
        // Whether the last watch ended on an error (not on its timeout, not silent): then a
        // watch that starts again confirms the index (below).
        let mut broken = false;
        loop {
            let stream = match going_on.take() {
                // The streaming list's own watch: already started, already confirmed.
                Some(events) => events,
                None => {
                    let started = {
                        let _permit = gate.acquire().await;
                        api.watch_metadata(&params, &version).await
                    };
                    let stream = match started {
                        Ok(stream) => stream.boxed(),
                        Err(error) if gone(&error) => {
                            if !expire(&index) {
                                return;
                            }
                            continue 'list;
                        }
                        Err(error) => {
                            tracing::debug!(%error, resource = %r.group_resource(), "Index watch failed to start");
                            if !tell(&index, failed_of(&error)) {
                                return;
                            }
                            pause(&mut backoff, retry_after(&error)).await;
                            broken = true;
                            continue;
                        }
                    };
                    if !tell(&index, Change::Resumed) {
                        return;
                    }
                    // After an error (the API server restarted, a 429 on the watch start), a
                    // watch that starts from the last resourceVersion is replayed every event
                    // since: it confirms the index, or every type would be listed at each
                    // review until its first bookmark, a minute after every API server
                    // restart. A watch started again because it was silent confirms nothing:
                    // only an event or a bookmark will.
                    if std::mem::take(&mut broken) && !tell(&index, Change::Bookmark) {
                        return;
                    }
                    stream
                }
            };
            backoff.reset();
            let mut stream = stream;
            loop {
                // A watch that says nothing (no event, no bookmark) for longer than the
                // staleness bound is presumed stalled (a half-open connection, an API server
                // that stopped sending): reviews already list the type; start it again.
                let bound = match index.upgrade() {
                    Some(t) => t.max_staleness(),
                    None => return,
                };
                let event = match tokio::time::timeout(bound, stream.next()).await {
                    Ok(Some(event)) => event,
                    Ok(None) => break,
                    Err(_) => {
                        tracing::warn!(resource = %r.group_resource(), "Index watch silent past the staleness bound: starting it again");
                        break;
                    }
                };
                match event {
                    Ok(WatchEvent::Added(o) | WatchEvent::Modified(o)) => {
                        version = o.metadata.resource_version.clone().unwrap_or(version);
                        if !tell(&index, Change::Apply(entry_of(&o))) {
                            return;
                        }
                    }
                    Ok(WatchEvent::Deleted(o)) => {
                        version = o.metadata.resource_version.clone().unwrap_or(version);
                        if !tell(&index, Change::Delete(entry_of(&o))) {
                            return;
                        }
                    }
                    Ok(WatchEvent::Bookmark(b)) => {
                        version = b.metadata.resource_version;
                        if !tell(&index, Change::Bookmark) {
                            return;
                        }
                    }
                    // The API server answers an expired resourceVersion with 200 and then
                    // this event: the `Resumed` above was premature, so untrust until listed.
                    Ok(WatchEvent::Error(status)) if status.code == 410 => {
                        if !expire(&index) {
                            return;
                        }
                        continue 'list;
                    }
                    Ok(WatchEvent::Error(status)) => {
                        if !tell(&index, failed_status(&status)) {
                            return;
                        }
                        pause(&mut backoff, None).await;
                        broken = true;
                        break;
                    }
                    Err(error) if gone(&error) => {
                        if !expire(&index) {
                            return;
                        }
                        continue 'list;
                    }
                    Err(error) => {
                        if !tell(&index, failed_of(&error)) {
                            return;
                        }
                        pause(&mut backoff, None).await;
                        broken = true;
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
        let m = mock_with(watch, None, 0);
        (m.client, m.lists, m.watches)
    }

    struct Mock {
        client: Client,
        lists: Arc<std::sync::atomic::AtomicUsize>,
        watches: Arc<std::sync::atomic::AtomicUsize>,
        /// The query string of every watch start.
        watch_queries: Arc<std::sync::Mutex<Vec<String>>>,
    }

    /// [`mock`], whose open watches also send a bookmark every `bookmark_every` (tokio's
    /// clock, so a paused test drives it), and whose errors ask to retry after
    /// `retry_after` seconds (0: not said).
    fn mock_with(
        watch: impl Fn(usize) -> Result<Vec<String>, u16> + Send + Sync + 'static,
        bookmark_every: Option<std::time::Duration>,
        retry_after: u32,
    ) -> Mock {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let lists = Arc::new(AtomicUsize::new(0));
        let watches = Arc::new(AtomicUsize::new(0));
        let watch_queries = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (l, w, q) = (lists.clone(), watches.clone(), watch_queries.clone());
        let watch = Arc::new(watch);
        let service = tower::service_fn(move |req: axum::http::Request<kube::client::Body>| {
            let query = req.uri().query().unwrap_or("").to_string();
            let watching = query.contains("watch=true");
            let answer = if watching {
                q.lock().unwrap().push(query);
                watch(w.fetch_add(1, Ordering::SeqCst))
            } else {
                l.fetch_add(1, Ordering::SeqCst);
                Ok(vec![])
            };
            async move {
                let response = match answer {
                    Err(code) => axum::http::Response::builder().status(code).body(axum::body::Body::from(
                        serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                            "message": "mock", "reason": "TooManyRequests", "code": code,
                            "details": {"retryAfterSeconds": retry_after}})
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
                        let line = |l: String| {
                            Ok::<_, std::io::Error>(axum::body::Bytes::from(format!("{l}\n")))
                        };
                        let lines = futures::stream::iter(lines.into_iter().map(line));
                        let rest: futures::stream::BoxStream<'static, _> = match bookmark_every {
                            None => Box::pin(futures::stream::pending()),
                            Some(every) => Box::pin(futures::stream::unfold((), move |()| async move {
                                tokio::time::sleep(every).await;
                                let bookmark = serde_json::json!({"type": "BOOKMARK", "object": {
                                    "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                    "metadata": {"resourceVersion": "12"}}});
                                Some((line(bookmark.to_string()), ()))
                            })),
                        };
                        let body = futures::StreamExt::chain(lines, rest);
                        axum::http::Response::builder().body(axum::body::Body::from_stream(body))
                    }
                };
                Ok::<_, std::convert::Infallible>(response.unwrap())
            }
        });
        Mock {
            client: Client::new(service, "default"),
            lists,
            watches,
            watch_queries,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_watch_is_not_trusted_past_the_bound_and_is_started_again() {
        use std::sync::atomic::Ordering;
        // Listed, then a watch that stays open and says nothing: no event, no bookmark.
        let m = mock_with(|_| Ok(vec![]), None, 0);
        let t = Arc::new(TypeIndex::default());
        let bound = t.max_staleness();
        let gate = Arc::new(tokio::sync::Semaphore::new(1));
        let task = tokio::spawn(run(m.client, rt("widgets"), Arc::downgrade(&t), gate));
        until("listed", || t.health() == Health::Synced).await;
        assert_eq!(names(&t, "a"), Some(vec!["x".to_string()]));
        // Just inside the bound (measured from the list), still trusted.
        tokio::time::sleep(bound - std::time::Duration::from_secs(1)).await;
        assert_eq!(names(&t, "a"), Some(vec!["x".to_string()]));
        assert!(!t.stale(Instant::now()));
        // Past it: not trusted, though the watch never failed; a review lists the type.
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        assert_eq!(t.health(), Health::Synced);
        assert!(t.stale(Instant::now()));
        assert_eq!(names(&t, "a"), None);
        // And the silent watch is started again.
        until("watched again", || m.watches.load(Ordering::SeqCst) >= 2).await;
        // Started again after silence, it proves nothing yet.
        assert_eq!(names(&t, "a"), None);
        let queries = m.watch_queries.lock().unwrap().clone();
        assert!(
            queries
                .iter()
                .all(|q| q.contains("allowWatchBookmarks=true")),
            "{queries:?}"
        );
        assert_eq!(m.lists.load(Ordering::SeqCst), 1);
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_watch_is_caught_within_two_minutes_and_a_quiet_one_never_is() {
        // The bound is two minutes, and every watch ends (with the bookmark the API server
        // sends two seconds before its timeout) well inside it.
        let bound = TypeIndex::default().max_staleness();
        assert!(bound <= std::time::Duration::from_secs(120), "{bound:?}");
        assert!(
            std::time::Duration::from_secs(u64::from(WATCH_TIMEOUT_S) + 15) <= bound,
            "watches of {WATCH_TIMEOUT_S} s get their deadline's bookmark too late for {bound:?}"
        );
        // Silent: untrusted at two minutes.
        let m = mock_with(|_| Ok(vec![]), None, 0);
        let t = Arc::new(TypeIndex::default());
        let gate = Arc::new(tokio::sync::Semaphore::new(1));
        let task = tokio::spawn(run(m.client, rt("widgets"), Arc::downgrade(&t), gate));
        until("listed", || t.health() == Health::Synced).await;
        tokio::time::sleep(std::time::Duration::from_secs(121)).await;
        assert!(t.stale(Instant::now()));
        assert_eq!(names(&t, "a"), None);
        let queries = m.watch_queries.lock().unwrap().clone();
        assert!(
            queries
                .iter()
                .all(|q| q.contains(&format!("timeoutSeconds={WATCH_TIMEOUT_S}"))),
            "{queries:?}"
        );
        task.abort();
        // Quiet but live: only the deadline's bookmark, every 98 s; trusted for ten minutes.
        let m = mock_with(|_| Ok(vec![]), Some(std::time::Duration::from_secs(98)), 0);
        let t = Arc::new(TypeIndex::default());
        let gate = Arc::new(tokio::sync::Semaphore::new(1));
        let task = tokio::spawn(run(m.client, rt("widgets"), Arc::downgrade(&t), gate));
        until("listed", || t.health() == Health::Synced).await;
        for _ in 0..60 {
            tokio::time::sleep(std::time::Duration::from_secs(10)).await;
            assert!(!t.stale(Instant::now()));
            assert_eq!(names(&t, "a"), Some(vec!["x".to_string()]));
        }
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttled_watch_start_waits_as_long_as_the_api_server_asked() {
        use std::sync::atomic::Ordering;
        // API Priority and Fairness: 429, retry after 40 s (kube's backoff alone: 0.8 s).
        let m = mock_with(|n| if n == 0 { Err(429) } else { Ok(vec![]) }, None, 40);
        let t = Arc::new(TypeIndex::default());
        let gate = Arc::new(tokio::sync::Semaphore::new(1));
        let task = tokio::spawn(run(m.client, rt("widgets"), Arc::downgrade(&t), gate));
        until("throttled", || t.health().label() == "failing").await;
        let throttled = Instant::now();
        until("watched again", || m.watches.load(Ordering::SeqCst) >= 2).await;
        assert!(throttled.elapsed() >= std::time::Duration::from_secs(39));
        until("trusted", || t.health() == Health::Synced).await;
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_watch_back_after_a_long_outage_is_trusted_at_once() {
        // The API server goes away for longer than the bound (a restart): the watch fails,
        // its restarts are refused, then one starts from the last resourceVersion.
        let m = mock_with(|n| if n <= 8 { Err(503) } else { Ok(vec![]) }, None, 0);
        // A 90 s bound, shorter than the outage below.
        let t = Arc::new(TypeIndex::with(
            Arc::new(AtomicU64::new(90_000)),
            Arc::default(),
        ));
        let gate = Arc::new(tokio::sync::Semaphore::new(1));
        let listed = Instant::now();
        let task = tokio::spawn(run(m.client, rt("widgets"), Arc::downgrade(&t), gate));
        until("back", || {
            m.watches.load(std::sync::atomic::Ordering::SeqCst) >= 10
                && t.health() == Health::Synced
        })
        .await;
        assert!(
            listed.elapsed() > t.max_staleness(),
            "{:?}",
            listed.elapsed()
        );
        // Trusted without waiting for a bookmark: the replay from the last resourceVersion
        // is what the outage missed.
        assert_eq!(names(&t, "a"), Some(vec!["x".to_string()]));
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn bookmarks_keep_a_quiet_type_trusted() {
        // The watch cache's bookmark, once a minute, on a type where nothing changes.
        let m = mock_with(|_| Ok(vec![]), Some(std::time::Duration::from_secs(60)), 0);
        let t = Arc::new(TypeIndex::default());
        let gate = Arc::new(tokio::sync::Semaphore::new(1));
        let task = tokio::spawn(run(m.client, rt("widgets"), Arc::downgrade(&t), gate));
        until("listed", || t.health() == Health::Synced).await;
        for _ in 0..60 {
            tokio::time::sleep(std::time::Duration::from_secs(10)).await;
            assert_eq!(names(&t, "a"), Some(vec!["x".to_string()]));
            let age = t.confirmation_age(Instant::now()).unwrap();
            assert!(age <= std::time::Duration::from_secs(61), "{age:?}");
        }
        task.abort();
    }

    #[test]
    fn objects_share_their_namespace_labels_and_finalizers_and_read_back_whole() {
        let labelled = |ns: &str, name: &str| {
            let (ns, mut o) = obj(ns, name, &["example.com/f"]);
            o.labels = BTreeMap::from([("app".to_string(), "web".to_string())]);
            o.deletion_timestamp = (name == "b").then(|| at("12:00:00"));
            (ns, o)
        };
        let index = Index::default();
        let (w, _) = index.get_or_add(&rt("widgets"));
        let (g, _) = index.get_or_add(&rt("gadgets"));
        for t in [&w, &g] {
            t.apply(Change::Init, at("12:00:00"));
            t.apply(Change::InitApply(labelled("team", "a")), at("12:00:00"));
            t.apply(Change::InitApply(labelled("team", "b")), at("12:00:00"));
            t.apply(Change::InitDone, at("12:00:00"));
        }
        let read = w.namespace("team").unwrap();
        assert_eq!(read, vec![labelled("team", "a").1, labelled("team", "b").1]);
        // One copy of each string and set, over both types.
        let interner = index.interner.lock().unwrap();
        assert_eq!(interner.labels.len(), 1);
        assert_eq!(interner.finalizers.len(), 1);
        // "team", "app", "web", "example.com/f".
        assert_eq!(interner.strings.len(), 4);
        let set = interner.labels.iter().next().unwrap();
        // The interner's, and one per object of each type.
        assert_eq!(Arc::strong_count(set), 5);
    }

    #[test]
    fn the_interner_forgets_what_no_object_holds() {
        let t = TypeIndex::default();
        t.apply(Change::Init, at("12:00:00"));
        for i in 0..3000 {
            t.apply(
                Change::InitApply(obj(&format!("ns-{i}"), "x", &[])),
                at("12:00:00"),
            );
        }
        t.apply(Change::InitDone, at("12:00:00"));
        // A relist: every one of those namespaces is gone.
        t.apply(Change::Init, at("12:01:00"));
        t.apply(Change::InitDone, at("12:01:00"));
        // New namespaces grow the interner past twice its last sweep: it sweeps.
        for i in 0..3000 {
            t.apply(
                Change::Apply(obj(&format!("new-{i}"), "x", &[])),
                at("12:01:01"),
            );
        }
        let interner = t.interner.lock().unwrap();
        assert!(!interner.strings.contains("ns-0"));
        assert!(interner.strings.len() <= 3100, "{}", interner.strings.len());
    }

    #[test]
    fn the_digest_is_that_of_the_objects_in_key_order() {
        let t = synced(&[
            obj("b", "y", &[]),
            obj("a", "x", &["f", "g"]),
            obj("a", "w", &[]),
        ]);
        let expected = digest([
            ("a", "w", vec![]),
            ("a", "x", vec!["f", "g"]),
            ("b", "y", vec![]),
        ]);
        assert_eq!(t.digest(), (3, expected));
        // A finalizer removed changes it; the same content built another way does not.
        t.apply(Change::Apply(obj("a", "x", &["f"])), at("12:00:01"));
        assert_ne!(t.digest().1, expected);
        t.apply(Change::Apply(obj("a", "x", &["f", "g"])), at("12:00:02"));
        assert_eq!(t.digest(), (3, expected));
        assert_ne!(digest([("a", "wx", vec![])]), digest([("aw", "x", vec![])]));
    }

    #[test]
    fn freshness_over_synced_types() {
        let index = Index::default();
        index.set_max_staleness(std::time::Duration::from_secs(30));
        let (w, _) = index.get_or_add(&rt("widgets"));
        let (_g, _) = index.get_or_add(&rt("gadgets"));
        w.apply(Change::Init, at("12:00:00"));
        w.apply(Change::InitDone, at("12:00:00"));
        let now = Instant::now();
        assert_eq!(index.freshness(now).stale, 0);
        assert_eq!(index.syncing(), vec![rt("gadgets")]);
        let later = now + std::time::Duration::from_secs(31);
        let f = index.freshness(later);
        assert_eq!(f.stale, 1);
        assert!(f.oldest_confirmation >= std::time::Duration::from_secs(31));
        w.apply(Change::Bookmark, at("12:00:31"));
        assert_eq!(index.freshness(Instant::now()).stale, 0);
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

    /// How [`streaming_mock`] answers a streaming list (a watch with `sendInitialEvents`).
    #[derive(Clone)]
    enum StreamAnswer {
        /// The status code, as a server with the WatchList gate off answers (422).
        Refuse(u16),
        /// These objects' ADDED events and nothing more, as a server that ignores the
        /// parameter answers a watch with no resourceVersion.
        NoEnd(Vec<&'static str>),
        /// These objects' ADDED events, the end bookmark at resourceVersion 20, then one more
        /// object added (`later`), and the watch stays open.
        End(Vec<&'static str>, &'static str),
    }

    struct StreamingMock {
        client: Client,
        lists: Arc<std::sync::atomic::AtomicUsize>,
        streams: Arc<std::sync::atomic::AtomicUsize>,
        /// Plain watches started (from a resourceVersion).
        watches: Arc<std::sync::atomic::AtomicUsize>,
        /// The query string of every streaming list.
        stream_queries: Arc<Mutex<Vec<String>>>,
    }

    /// A mock API server for one type: lists answer with object `x` in namespace `a`; a
    /// streaming list answers as `answer` says; the first plain watch answers 410 Gone when
    /// `expire_first_watch`, every other one stays open and says nothing.
    fn streaming_mock(answer: StreamAnswer, expire_first_watch: bool) -> StreamingMock {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let counters: [Arc<AtomicUsize>; 3] = Default::default();
        let stream_queries = Arc::new(Mutex::new(Vec::new()));
        let [l, s, w] = counters.clone();
        let q = stream_queries.clone();
        let object = |name: &str| {
            serde_json::json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                "metadata": {"name": name, "namespace": "a", "resourceVersion": "15"}})
        };
        let service = tower::service_fn(move |req: axum::http::Request<kube::client::Body>| {
            let query = req.uri().query().unwrap_or("").to_string();
            let line = |v: serde_json::Value| {
                Ok::<_, std::io::Error>(axum::body::Bytes::from(format!("{v}\n")))
            };
            let open = |lines: Vec<serde_json::Value>| {
                let lines = futures::stream::iter(lines.into_iter().map(line));
                axum::body::Body::from_stream(futures::StreamExt::chain(
                    lines,
                    futures::stream::pending(),
                ))
            };
            let response = if query.contains("sendInitialEvents=true") {
                s.fetch_add(1, Ordering::SeqCst);
                q.lock().unwrap().push(query);
                let added = |n: &str| serde_json::json!({"type": "ADDED", "object": object(n)});
                match &answer {
                    StreamAnswer::Refuse(code) => axum::http::Response::builder()
                        .status(*code)
                        .body(axum::body::Body::from(
                            serde_json::json!({"kind": "Status", "apiVersion": "v1",
                                "status": "Failure", "reason": "Invalid", "code": code,
                                "message": "sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled"})
                            .to_string(),
                        )),
                    StreamAnswer::NoEnd(names) => axum::http::Response::builder()
                        .body(open(names.iter().map(|n| added(n)).collect())),
                    StreamAnswer::End(names, later) => {
                        let mut lines: Vec<serde_json::Value> =
                            names.iter().map(|n| added(n)).collect();
                        lines.push(serde_json::json!({"type": "BOOKMARK", "object": {
                            "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                            "metadata": {"resourceVersion": "20",
                                "annotations": {INITIAL_EVENTS_END: "true"}}}}));
                        lines.push(added(later));
                        axum::http::Response::builder().body(open(lines))
                    }
                }
            } else if query.contains("watch=true") {
                let n = w.fetch_add(1, Ordering::SeqCst);
                let gone = serde_json::json!({"type": "ERROR", "object": {"kind": "Status",
                    "apiVersion": "v1", "status": "Failure", "reason": "Expired", "code": 410,
                    "message": "too old resource version"}});
                let lines = if expire_first_watch && n == 0 {
                    vec![gone]
                } else {
                    vec![]
                };
                axum::http::Response::builder().body(open(lines))
            } else {
                l.fetch_add(1, Ordering::SeqCst);
                axum::http::Response::builder().body(axum::body::Body::from(
                    serde_json::json!({"apiVersion": "meta.k8s.io/v1",
                        "kind": "PartialObjectMetadataList",
                        "metadata": {"resourceVersion": "10"}, "items": [object("x")]})
                    .to_string(),
                ))
            };
            async move { Ok::<_, std::convert::Infallible>(response.unwrap()) }
        });
        let [lists, streams, watches] = counters;
        StreamingMock {
            client: Client::new(service, "default"),
            lists,
            streams,
            watches,
            stream_queries,
        }
    }

    /// One type of an index listing as `initial_sync` says, its task running over `m`.
    fn streamed_type(
        m: &StreamingMock,
        initial_sync: InitialSync,
    ) -> (Index, Arc<TypeIndex>, tokio::task::JoinHandle<()>) {
        let index = Index::with_initial_sync(initial_sync);
        let (t, _) = index.get_or_add(&rt("widgets"));
        let task = tokio::spawn(run(
            m.client.clone(),
            rt("widgets"),
            Arc::downgrade(&t),
            index.gate(),
        ));
        (index, t, task)
    }

    #[tokio::test(start_paused = true)]
    async fn a_streaming_list_that_ends_is_the_index_and_its_watch_goes_on() {
        use std::sync::atomic::Ordering;
        let m = streaming_mock(StreamAnswer::End(vec!["p", "q"], "r"), false);
        let (index, t, task) = streamed_type(&m, InitialSync::Auto);
        until("streamed", || {
            names(&t, "a") == Some(vec!["p".into(), "q".into(), "r".into()])
        })
        .await;
        assert_eq!(t.health(), Health::Synced);
        assert_eq!(t.method(), Some(SyncMethod::Stream));
        assert_eq!(index.methods(), (1, 0));
        // Never listed, never watched again: the streaming list's watch goes on.
        assert_eq!(m.lists.load(Ordering::SeqCst), 0);
        assert_eq!(m.watches.load(Ordering::SeqCst), 0);
        assert_eq!(index.relists(), (0, 0));
        // A consistent read: resourceVersion unset (empty), never "0".
        let queries = m.stream_queries.lock().unwrap().clone();
        assert_eq!(queries.len(), 1);
        let get = |k: &str| {
            queries[0]
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v)
        };
        assert_eq!(get("sendInitialEvents"), Some("true"));
        assert_eq!(get("resourceVersionMatch"), Some("NotOlderThan"));
        assert_eq!(get("allowWatchBookmarks"), Some("true"));
        assert_eq!(get("resourceVersion").unwrap_or(""), "");
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_streaming_list_falls_back_to_a_list_for_good() {
        use std::sync::atomic::Ordering;
        // 422, as a server with the WatchList feature gate off answers; and the first watch
        // from the list's resourceVersion expires (410), so the type is listed again.
        let m = streaming_mock(StreamAnswer::Refuse(422), true);
        let (index, t, task) = streamed_type(&m, InitialSync::Auto);
        until("listed again", || m.lists.load(Ordering::SeqCst) >= 2).await;
        until("trusted", || t.health() == Health::Synced).await;
        assert_eq!(names(&t, "a"), Some(vec!["x".to_string()]));
        assert_eq!(t.method(), Some(SyncMethod::List));
        // The streaming list was asked for once: after the refusal the type is listed,
        // the relist after the 410 too.
        assert_eq!(m.streams.load(Ordering::SeqCst), 1);
        assert_eq!(index.relists(), (1, 1));
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_streaming_list_without_its_end_bookmark_falls_back_within_the_bound() {
        use std::sync::atomic::Ordering;
        // A server that ignores sendInitialEvents: the objects, never the end bookmark. What
        // it sent is not kept: the index is the list's.
        let m = streaming_mock(StreamAnswer::NoEnd(vec!["y"]), false);
        let (index, t, task) = streamed_type(&m, InitialSync::Auto);
        let started = Instant::now();
        until("listed", || t.health() == Health::Synced).await;
        assert!(started.elapsed() >= STREAM_IDLE_BOUND);
        assert!(
            started.elapsed() < STREAM_IDLE_BOUND * 2,
            "{:?}",
            started.elapsed()
        );
        assert_eq!(names(&t, "a"), Some(vec!["x".to_string()]));
        assert_eq!(t.method(), Some(SyncMethod::List));
        assert_eq!(m.streams.load(Ordering::SeqCst), 1);
        assert_eq!(m.lists.load(Ordering::SeqCst), 1);
        assert_eq!(index.relists(), (0, 1));
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn stream_only_never_lists_a_refusing_type_and_says_it_is_failing() {
        use std::sync::atomic::Ordering;
        let m = streaming_mock(StreamAnswer::Refuse(422), false);
        let (index, t, task) = streamed_type(&m, InitialSync::Stream);
        until("tried again", || m.streams.load(Ordering::SeqCst) >= 2).await;
        match t.health() {
            Health::Failing { code, .. } => assert_eq!(code, Some(422)),
            other => panic!("{other:?}"),
        }
        assert!(index.ready(), "a failing type does not hold readiness");
        assert_eq!(names(&t, "a"), None);
        assert_eq!(m.lists.load(Ordering::SeqCst), 0);
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn list_only_never_asks_for_a_streaming_list() {
        use std::sync::atomic::Ordering;
        let m = streaming_mock(StreamAnswer::End(vec!["p"], "r"), false);
        let (index, t, task) = streamed_type(&m, InitialSync::List);
        until("listed", || t.health() == Health::Synced).await;
        assert_eq!(names(&t, "a"), Some(vec!["x".to_string()]));
        assert_eq!(m.streams.load(Ordering::SeqCst), 0);
        assert_eq!(index.methods(), (0, 1));
        task.abort();
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
