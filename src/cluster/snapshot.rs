//! The cluster snapshot: one watch per cluster-scoped kind the checks read (APIServices, CRDs,
//! webhook configurations, nodes, namespaces, Services, EndpointSlices, RBAC), each object
//! stripped on arrival of what no check reads, and the immutable [`ClusterFacts`] built from
//! them. The gatherer rebuilds it in one task after each burst of watch events and reviews read
//! it as an `Arc`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
    ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::{Namespace, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::jiff::Timestamp;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

use crate::facts::admission::AdmissionPolicy;
use crate::facts::{BackendState, ClusterFacts, Discovery, Rbac, ServiceKey};

/// Watched cluster-scoped objects.
#[derive(Clone)]
pub(super) struct Stores {
    pub(super) apiservices: Store<APIService>,
    pub(super) crds: Store<CustomResourceDefinition>,
    pub(super) validating: Store<ValidatingWebhookConfiguration>,
    pub(super) mutating: Store<MutatingWebhookConfiguration>,
    pub(super) nodes: Store<Node>,
    pub(super) namespaces: Store<Namespace>,
    pub(super) services: Store<Service>,
    pub(super) slices: Store<EndpointSlice>,
    pub(super) cluster_roles: Store<ClusterRole>,
    pub(super) cluster_role_bindings: Store<ClusterRoleBinding>,
    pub(super) roles: Store<Role>,
    pub(super) role_bindings: Store<RoleBinding>,
    pub(super) policies: Store<ValidatingAdmissionPolicy>,
    pub(super) policy_bindings: Store<ValidatingAdmissionPolicyBinding>,
    /// Compiled policies by (uid, resourceVersion, bindings' resourceVersions): CEL is
    /// compiled once per version, not at every snapshot.
    compiled: Arc<Mutex<BTreeMap<String, Arc<AdmissionPolicy>>>>,
}

impl Stores {
    /// Starts every watch. Each event moves `changed`; the CRD and APIService watches also
    /// tell `discovery` (shared discovery is refetched after such a change).
    pub(super) fn start(client: &Client, changed: &Changed, discovery: Option<Tell>) -> Self {
        Stores {
            apiservices: watch(client, changed, discovery.clone(), strip),
            crds: watch(client, changed, discovery, strip_crd),
            validating: watch(client, changed, None, strip),
            mutating: watch(client, changed, None, strip),
            nodes: watch(client, changed, None, strip_node),
            namespaces: watch(client, changed, None, strip),
            services: watch(client, changed, None, strip),
            slices: watch(client, changed, None, strip_slice),
            cluster_roles: watch(client, changed, None, strip),
            cluster_role_bindings: watch(client, changed, None, strip),
            roles: watch(client, changed, None, strip),
            role_bindings: watch(client, changed, None, strip),
            policies: watch(client, changed, None, strip),
            policy_bindings: watch(client, changed, None, strip),
            compiled: Arc::default(),
        }
    }

    /// Waits until every watch has listed once.
    pub(super) async fn wait_until_ready(&self) {
        // A watch whose writer is gone (the task ended) has nothing to wait for.
        self.apiservices.wait_until_ready().await.ok();
        self.crds.wait_until_ready().await.ok();
        self.validating.wait_until_ready().await.ok();
        self.mutating.wait_until_ready().await.ok();
        self.nodes.wait_until_ready().await.ok();
        self.namespaces.wait_until_ready().await.ok();
        self.services.wait_until_ready().await.ok();
        self.slices.wait_until_ready().await.ok();
        self.cluster_roles.wait_until_ready().await.ok();
        self.cluster_role_bindings.wait_until_ready().await.ok();
        self.roles.wait_until_ready().await.ok();
        self.role_bindings.wait_until_ready().await.ok();
        self.policies.wait_until_ready().await.ok();
        self.policy_bindings.wait_until_ready().await.ok();
    }

    /// The bound policies, compiled (from the cache when nothing about them changed).
    fn admission_policies(&self) -> Vec<Arc<AdmissionPolicy>> {
        let bindings: Vec<ValidatingAdmissionPolicyBinding> = self
            .policy_bindings
            .state()
            .iter()
            .map(|b| (**b).clone())
            .collect();
        let mut cache = self.compiled.lock().unwrap_or_else(|e| e.into_inner());
        let mut keep = BTreeMap::new();
        let mut out = Vec::new();
        for p in self.policies.state() {
            let name = p.metadata.name.clone().unwrap_or_default();
            let mut key = format!(
                "{name}@{}",
                p.metadata.resource_version.as_deref().unwrap_or_default()
            );
            for b in &bindings {
                if b.spec.policy_name == name {
                    key.push_str(&format!(
                        ",{}@{}",
                        b.metadata.name.as_deref().unwrap_or_default(),
                        b.metadata.resource_version.as_deref().unwrap_or_default()
                    ));
                }
            }
            let compiled = match cache.get(&key) {
                Some(c) => Some(c.clone()),
                None => AdmissionPolicy::distil(&p, &bindings).map(Arc::new),
            };
            if let Some(c) = compiled {
                keep.insert(key, c.clone());
                out.push(c);
            }
        }
        *cache = keep;
        out
    }

    /// Cluster facts from the stores as they are now, with `discovery`. `unreachable_seen`
    /// remembers when each backend Service was first seen without ready endpoints.
    pub(super) fn build(
        &self,
        discovery: Discovery,
        unreachable_seen: &Mutex<BTreeMap<ServiceKey, Timestamp>>,
    ) -> ClusterFacts {
        fn all<K: Resource + Clone>(s: &Store<K>) -> Vec<K>
        where
            K::DynamicType: Eq + Hash + Clone,
        {
            s.state().iter().map(|o| (**o).clone()).collect()
        }
        let s = self;
        let mut facts = ClusterFacts {
            discovery,
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
            admission_policies: s.admission_policies(),
        };
        let keys = referenced_services(&facts);
        let services = s.services.state();
        let slices = s.slices.state();
        let now = super::clock::now();
        let mut seen = unreachable_seen.lock().unwrap_or_else(|e| e.into_inner());
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
}

/// Cluster facts built from the watches at one watch generation and one discovery result.
pub(super) struct Snapshot {
    /// The watch generation read before the stores were read.
    pub(super) generation: u64,
    /// The discovery result the facts carry.
    pub(super) discovery_seq: u64,
    pub(super) facts: Arc<ClusterFacts>,
}

/// How long the snapshot builder lets a burst of watch events gather before it rebuilds.
pub(super) const SNAPSHOT_COALESCE: Duration = Duration::from_millis(5);
/// How long a review that needs a newer snapshot waits for the builder before it builds one
/// itself.
pub(super) const SNAPSHOT_WAIT: Duration = Duration::from_millis(500);

/// What a watch event changes: the generation moves and the snapshot builder is woken.
#[derive(Clone)]
pub(super) struct Changed {
    pub(super) generation: Arc<AtomicU64>,
    pub(super) rebuild: Arc<tokio::sync::Notify>,
}

/// Something else to tell about every event of a watch (shared discovery, for CRDs and
/// APIServices).
pub(super) type Tell = Arc<dyn Fn() + Send + Sync>;

/// What no check reads and every object may carry in bulk: managed fields and kubectl's
/// last-applied copy of the whole object. Dropped on arrival, before the store keeps it.
fn strip<K: Resource>(o: &mut K) {
    o.meta_mut().managed_fields = None;
    drop_last_applied(o);
}

fn drop_last_applied<K: Resource>(o: &mut K) {
    if let Some(annotations) = o.meta_mut().annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// A CRD without its schemas (the bulk of a large CRD; the checks read names, versions,
/// conversion and status).
fn strip_crd(crd: &mut CustomResourceDefinition) {
    strip(crd);
    for v in &mut crd.spec.versions {
        v.schema = None;
    }
}

/// A Node without its image list and volume records (kilobytes each; the checks read its
/// conditions).
fn strip_node(node: &mut Node) {
    strip(node);
    if let Some(status) = node.status.as_mut() {
        status.images = None;
        status.volumes_attached = None;
        status.volumes_in_use = None;
    }
}

/// An EndpointSlice keeps, of its managed fields, only the time of the last write: when a
/// backend lost its endpoints is read from it ([`unreachable_since`]).
fn strip_slice(slice: &mut EndpointSlice) {
    drop_last_applied(slice);
    let last = slice
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.time.clone())
        .max_by(|a, b| a.0.cmp(&b.0));
    slice.metadata.managed_fields = last.map(|time| {
        vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry {
                time: Some(time),
                ..Default::default()
            },
        ]
    });
}

/// Starts the watch of every `K`, each object stripped by `strip` on arrival, each event told
/// to `changed` (and to `tell`).
fn watch<K>(client: &Client, changed: &Changed, tell: Option<Tell>, strip: fn(&mut K)) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let api: Api<K> = Api::all(client.clone());
    let changed = changed.clone();
    let events = watcher(api, watcher::Config::default()).modify(strip);
    let mut listed_once = false;
    let stream = reflector::reflector(writer, events)
        .default_backoff()
        .for_each(move |event| {
            use watcher::Event;
            if let Err(error) = &event {
                tracing::warn!(%error, kind = %K::kind(&K::DynamicType::default()), "Watch error");
            }
            changed.generation.fetch_add(1, Ordering::SeqCst);
            changed.rebuild.notify_one();
            // What can change discovery: an object added, changed or deleted, or a relist
            // (which may hold what changed while the watch was down); not the first list,
            // which is how every watch starts.
            let change = match &event {
                Ok(Event::Apply(_) | Event::Delete(_)) => true,
                Ok(Event::InitDone) => std::mem::replace(&mut listed_once, true),
                _ => false,
            };
            if let Some(tell) = tell.as_ref().filter(|_| change) {
                tell();
            }
            std::future::ready(())
        });
    tokio::spawn(stream);
    reader
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

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, Time};
    use rstest::rstest;

    fn at(t: &str) -> Timestamp {
        format!("2026-11-22T{t}Z").parse().unwrap()
    }

    #[test]
    fn stores_keep_what_checks_read_and_drop_the_bulk() {
        let mut crd: CustomResourceDefinition = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "widgets.example.com",
                "annotations": {
                    "kubectl.kubernetes.io/last-applied-configuration": "{...}",
                    "nsguard.io/finalizer-controller": "team-a/widget-controller"
                },
                "managedFields": [{"manager": "kubectl"}]
            },
            "spec": {
                "group": "example.com",
                "scope": "Namespaced",
                "names": {"plural": "widgets", "kind": "Widget"},
                "versions": [{"name": "v1", "served": true, "storage": true,
                              "schema": {"openAPIV3Schema": {"type": "object"}}}]
            }
        }))
        .unwrap();
        strip_crd(&mut crd);
        let annotations = crd.metadata.annotations.as_ref().unwrap();
        assert_eq!(annotations.len(), 1);
        assert!(annotations.contains_key("nsguard.io/finalizer-controller"));
        assert!(crd.metadata.managed_fields.is_none());
        assert_eq!(crd.spec.versions[0].name, "v1");
        assert!(crd.spec.versions[0].storage);
        assert!(crd.spec.versions[0].schema.is_none());
        let mut node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n1"},
            "status": {
                "conditions": [{"type": "Ready", "status": "True"}],
                "images": [{"names": ["registry.example/app:1"], "sizeBytes": 1}]
            }
        }))
        .unwrap();
        strip_node(&mut node);
        let status = node.status.unwrap();
        assert!(status.images.is_none());
        assert_eq!(status.conditions.unwrap()[0].type_, "Ready");
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

    #[test]
    fn a_slice_keeps_only_the_time_of_its_last_write() {
        let mut sl = slice(&["11:40:00", "11:52:00"]);
        strip_slice(&mut sl);
        let fields = sl.metadata.managed_fields.clone().unwrap();
        assert_eq!(fields.len(), 1);
        assert_eq!(fields[0].time.as_ref().unwrap().0, at("11:52:00"));
        assert_eq!(
            unreachable_since(at("11:58:00"), &[&sl], None),
            at("11:52:00")
        );
    }
}
