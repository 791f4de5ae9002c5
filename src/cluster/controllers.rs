//! The reads behind finalizer-controller evidence: for each candidate ServiceAccount, the
//! ServiceAccount, the pods running as it (field selector; no cluster-wide pod watch) and,
//! when none is ready, the workloads that would run it; the installer records (OLM's
//! ClusterServiceVersions, a Helm release's workloads). The rules that judge what is read are
//! pure, in [`crate::facts::controllers`].

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, ServiceAccount};
use kube::api::{DynamicObject, ListParams};
use kube::{Api, Resource};
use tokio::time::Instant;

use super::gather::{GatherError, Gatherer};
use crate::facts::controllers::components::{self, CloudControllerReads, Seen};
use crate::facts::controllers::{
    AccountState, Basis, ControllerFacts, Declarations, Expected, HELM_RELEASE, Identity,
    Installed, Liveness, PodState, ResourceControllers, WorkloadState, candidates, finalized,
    leads, liveness, olm_expected, ready_nodes,
};
use crate::facts::finalizers::Component;
use crate::facts::{ClusterFacts, Content, Discovery};
use k8s_openapi::api::coordination::v1::Lease;

fn template_account(t: Option<&PodTemplateSpec>) -> String {
    t.and_then(|t| t.spec.as_ref())
        .and_then(|s| s.service_account_name.clone().filter(|n| !n.is_empty()))
        .unwrap_or_else(|| "default".to_string())
}

impl Gatherer {
    /// The controllers of the finalizers in `content`, and what could not be checked.
    pub async fn controllers(
        &self,
        cluster: &ClusterFacts,
        content: &[Content],
        ns: &str,
        declarations: &Declarations,
        deadline: Instant,
    ) -> (ControllerFacts, Vec<String>) {
        let mut out = ControllerFacts::new();
        let mut not_checked = Vec::new();
        let mut expected: BTreeMap<String, (Vec<Expected>, Vec<String>)> = BTreeMap::new();
        for (c, names) in finalized(content) {
            let gr = c.resource.group_resource();
            let l = leads(cluster, &c.resource, &names, ns, declarations);
            let mut installed: Vec<Installed> = Vec::new();
            let mut notes = Vec::new();
            if l.declared.is_empty() {
                // The installer records narrow the candidates; only read when they matter.
                if let Some(crd) = &l.crd {
                    match self
                        .olm_controllers(&cluster.discovery, crd, deadline)
                        .await
                    {
                        Ok(found) => installed.extend(found),
                        Err(e) => not_checked.push(format!("OLM record of CRD {crd}: {e}")),
                    }
                }
                if let Some((rel_ns, rel)) = &l.helm {
                    match self.helm_controllers(rel_ns, rel, &c.resource.group, deadline).await {
                        Ok(found) if found.is_empty() => notes.push(format!(
                            "Helm release {rel_ns}/{rel} (annotations on its CRD) has no Deployment, StatefulSet or DaemonSet"
                        )),
                        Ok(found) => installed.extend(found),
                        Err(e) => not_checked.push(format!("Helm release {rel_ns}/{rel}: {e}")),
                    }
                }
            }
            let (list, more) = candidates(cluster, &c.resource, &l, &installed);
            notes.extend(more);
            expected.insert(gr, (list, notes));
        }
        let accounts: BTreeSet<Identity> = expected
            .values()
            .flat_map(|(l, _)| l.iter().map(|e| e.identity.clone()))
            .collect();
        let nodes = ready_nodes(cluster);
        let mut states: BTreeMap<Identity, Liveness> = BTreeMap::new();
        for identity in accounts {
            let live = match self.account_state(cluster, &identity, deadline).await {
                Ok(state) => liveness(&identity, &state, &nodes, ns),
                Err(e) => {
                    not_checked.push(format!("liveness of {identity}: {e}"));
                    Liveness::Unknown(e.to_string())
                }
            };
            states.insert(identity, live);
        }
        for (gr, (list, notes)) in expected {
            let controllers = list
                .into_iter()
                .map(|e| {
                    let live = states
                        .get(&e.identity)
                        .cloned()
                        .unwrap_or_else(|| Liveness::Unknown("not looked at".into()));
                    (e, live)
                })
                .collect();
            out.insert(gr, ResourceControllers { controllers, notes });
        }
        (out, not_checked)
    }

    async fn account_state(
        &self,
        cluster: &ClusterFacts,
        identity: &Identity,
        deadline: Instant,
    ) -> Result<AccountState, GatherError> {
        // One ServiceAccount, or every ServiceAccount of a namespace (`name` None).
        let (namespace, name) = match identity {
            Identity::ServiceAccount { namespace, name } => (namespace, Some(name)),
            Identity::ServiceAccounts { namespace } => (namespace, None),
            Identity::ControlPlane { .. } => return Ok(AccountState::default()),
        };
        let mut state = AccountState {
            namespace_phase: cluster.namespace_phases.get(namespace).cloned(),
            exists: name.is_none(),
            ..Default::default()
        };
        if state.namespace_phase.is_none() {
            return Ok(state);
        }
        let client = self.client().clone();
        if let Some(name) = name {
            let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
            let by_name = ListParams::default().fields(&format!("metadata.name={name}"));
            state.exists = !self
                .call(
                    &format!("serviceaccount {namespace}/{name}"),
                    deadline,
                    accounts.list_metadata(&by_name),
                )
                .await?
                .items
                .is_empty();
            if !state.exists {
                return Ok(state);
            }
        }
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let lp = match name {
            Some(name) => ListParams::default().fields(&format!("spec.serviceAccountName={name}")),
            None => ListParams::default(),
        };
        let listed = self
            .call(&format!("pods of {identity}"), deadline, pods.list(&lp))
            .await?;
        state.pods = listed
            .items
            .iter()
            .map(|p| PodState {
                name: p.metadata.name.clone().unwrap_or_default(),
                ready: p
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True")),
                deleting: p.metadata.deletion_timestamp.is_some(),
                node: p.spec.as_ref().and_then(|s| s.node_name.clone()),
            })
            .collect();
        if state.pods.iter().any(|p| p.ready && !p.deleting) {
            return Ok(state);
        }
        // No ready pod: find the workloads that would run one, to say why.
        state.workloads = self
            .workloads(namespace, deadline)
            .await?
            .into_iter()
            .filter(|w| name.is_none_or(|n| w.account == *n))
            .map(|w| WorkloadState {
                kind: w.kind.to_string(),
                name: w.name,
                replicas: w.replicas,
            })
            .collect();
        Ok(state)
    }

    /// The install Deployments' ServiceAccounts of the original (not copied) CSVs that own
    /// `crd`. Nothing when OLM is not installed.
    async fn olm_controllers(
        &self,
        discovery: &Discovery,
        crd: &str,
        deadline: Instant,
    ) -> Result<Vec<Installed>, GatherError> {
        let Some(rt) = discovery
            .resources
            .iter()
            .find(|r| r.group == "operators.coreos.com" && r.resource == "clusterserviceversions")
        else {
            return Ok(Vec::new());
        };
        let ar = super::api_resource(rt);
        let api: Api<DynamicObject> = Api::all_with(self.client().clone(), &ar);
        let lp = ListParams::default().labels("!olm.copiedFrom");
        let csvs = self
            .call("clusterserviceversions", deadline, api.list(&lp))
            .await?;
        Ok(olm_expected(&csvs.items, crd))
    }

    /// The ServiceAccounts of a Helm release's workloads in its namespace; the release owns
    /// the CRD's `group`.
    async fn helm_controllers(
        &self,
        ns: &str,
        release: &str,
        group: &str,
        deadline: Instant,
    ) -> Result<Vec<Installed>, GatherError> {
        let mut out: Vec<Installed> = Vec::new();
        for w in self.workloads(ns, deadline).await? {
            if w.release.as_deref() != Some(release) {
                continue;
            }
            let identity = Identity::service_account(ns, &w.account);
            if out.iter().any(|e| e.identity == identity) {
                continue;
            }
            out.push(Installed {
                identity,
                source: Basis::Helm(format!(
                    "Helm release {ns}/{release} installed the CRD; {} {} runs as it",
                    w.kind, w.name
                )),
                groups: [group.to_string()].into(),
            });
        }
        Ok(out)
    }

    /// Deployments, StatefulSets and DaemonSets of `ns`, distilled.
    async fn workloads(&self, ns: &str, deadline: Instant) -> Result<Vec<Workload>, GatherError> {
        let client = self.client().clone();
        let lp = ListParams::default();
        let what = format!("workloads in {ns}");
        let mut out = Vec::new();
        let d: Api<Deployment> = Api::namespaced(client.clone(), ns);
        for o in self.call(&what, deadline, d.list(&lp)).await?.items {
            let spec = o.spec.as_ref();
            let replicas = Some(spec.and_then(|s| s.replicas).unwrap_or(1));
            out.push(Workload::of(
                "Deployment",
                &o,
                spec.map(|s| &s.template),
                replicas,
            ));
        }
        let s: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
        for o in self.call(&what, deadline, s.list(&lp)).await?.items {
            let spec = o.spec.as_ref();
            let replicas = Some(spec.and_then(|s| s.replicas).unwrap_or(1));
            out.push(Workload::of(
                "StatefulSet",
                &o,
                spec.map(|s| &s.template),
                replicas,
            ));
        }
        let ds: Api<DaemonSet> = Api::namespaced(client, ns);
        for o in self.call(&what, deadline, ds.list(&lp)).await?.items {
            let template = o.spec.as_ref().map(|s| &s.template);
            out.push(Workload::of("DaemonSet", &o, template, None));
        }
        Ok(out)
    }
}

/// A workload, distilled: as which ServiceAccount its pods run, how many, which Helm release
/// made it.
struct Workload {
    kind: &'static str,
    name: String,
    account: String,
    replicas: Option<i32>,
    release: Option<String>,
}

impl Workload {
    fn of<K: Resource>(
        kind: &'static str,
        o: &K,
        template: Option<&PodTemplateSpec>,
        replicas: Option<i32>,
    ) -> Self {
        let m = o.meta();
        Workload {
            kind,
            name: m.name.clone().unwrap_or_default(),
            account: template_account(template),
            replicas,
            release: m
                .annotations
                .as_ref()
                .and_then(|a| a.get(HELM_RELEASE))
                .cloned(),
        }
    }
}

impl Gatherer {
    /// Whether each component outside kube-controller-manager that removes a built-in
    /// finalizer of `content` runs: for cloud-controller-manager, its leader Lease (one LIST
    /// by name in kube-system, which the ClusterRole's `list` covers) and, when that is not
    /// renewed, the pods of kube-system named after it. Nothing is read when no object carries
    /// such a finalizer.
    pub async fn components(
        &self,
        content: &[crate::facts::Content],
        now: k8s_openapi::jiff::Timestamp,
        deadline: Instant,
    ) -> (BTreeMap<Component, Seen>, Vec<String>) {
        let mut out = BTreeMap::new();
        let mut not_checked = Vec::new();
        for component in components::needed(content) {
            if component != Component::CloudControllerManager {
                continue;
            }
            match self.cloud_controller_reads(now, deadline).await {
                Ok(reads) => {
                    out.insert(component, components::cloud_controller(&reads, now));
                }
                Err(e) => not_checked.push(format!("whether {} runs: {e}", component.as_str())),
            }
        }
        (out, not_checked)
    }

    async fn cloud_controller_reads(
        &self,
        now: k8s_openapi::jiff::Timestamp,
        deadline: Instant,
    ) -> Result<CloudControllerReads, GatherError> {
        let (ns, name) = components::CLOUD_CONTROLLER_LEASE;
        let leases: Api<Lease> = Api::namespaced(self.client().clone(), ns);
        let by_name = ListParams::default().fields(&format!("metadata.name={name}"));
        let lease = self
            .call(
                &format!("lease {ns}/{name}"),
                deadline,
                leases.list(&by_name),
            )
            .await?
            .items
            .into_iter()
            .next()
            .map(|l| {
                let spec = l.spec.unwrap_or_default();
                (
                    spec.holder_identity,
                    spec.renew_time.map(|t| t.0),
                    spec.lease_duration_seconds,
                )
            });
        let mut reads = CloudControllerReads {
            lease,
            pods: Vec::new(),
        };
        if !components::cloud_controller(&reads, now).not_seen() {
            return Ok(reads);
        }
        let pods: Api<Pod> = Api::namespaced(self.client().clone(), ns);
        reads.pods = self
            .call(
                &format!("pods in {ns}"),
                deadline,
                pods.list(&ListParams::default()),
            )
            .await?
            .items
            .into_iter()
            .filter_map(|p| {
                let pod_name = p.metadata.name.clone()?;
                pod_name.contains(name).then(|| {
                    let ready = p.metadata.deletion_timestamp.is_none()
                        && p.status.as_ref().is_some_and(|s| {
                            s.phase.as_deref() == Some("Running")
                                && s.conditions
                                    .iter()
                                    .flatten()
                                    .any(|c| c.type_ == "Ready" && c.status == "True")
                        });
                    (pod_name, ready)
                })
            })
            .collect();
        Ok(reads)
    }
}
