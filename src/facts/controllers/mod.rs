//! Who is expected to remove a finalizer, and is it live?
//!
//! For each resource type whose objects in the namespace carry finalizers Kubernetes does not
//! remove itself, nsguard names the candidates expected to remove them:
//! 1. a declaration by the cluster's admin: the annotation [`DECLARATION`] on the CRD, or the
//!    `--finalizer-controller` flag / configuration (for built-in types, or controllers
//!    authorized outside RBAC). A declaration is authoritative: nothing else is consulted.
//! 2. otherwise, who may update the type by RBAC ([`rbac`]): grants that name the resource are
//!    evidence; an installer's record (an OLM ClusterServiceVersion that owns the CRD, or the
//!    Helm release named by the CRD's annotations) narrows the candidates to the workloads it
//!    installed that may update the type, each live through its own identity's pods.
//!
//! A ServiceAccount is live when it exists and a Ready pod that is not being deleted runs as it
//! on a Ready node, in a namespace that exists, is not Terminating and is not the one being
//! deleted (live there only: it dies first). Which finalizer each candidate accounts for is the
//! check's to judge (`finalizer-controller`), from the groups each candidate serves.
//!
//! Everything here is pure. The few targeted reads behind it (per candidate, the pods running as
//! it and, when none is ready, the workloads that would run it; installer records) are made in
//! [`crate::cluster::controllers`].

pub mod components;
pub mod rbac;

use std::collections::{BTreeMap, BTreeSet};

use kube::api::DynamicObject;
use serde::Serialize;

use super::{ClusterFacts, Content, ResourceType, finalizers};

/// The CRD annotation by which an admin names the controller of its finalizers:
/// `<namespace>/<serviceaccount>` (or a `system:` user), comma-separated for several.
pub const DECLARATION: &str = "nsguard.io/finalizer-controller";

/// Helm's release annotations.
pub const HELM_RELEASE: &str = "meta.helm.sh/release-name";
pub const HELM_NAMESPACE: &str = "meta.helm.sh/release-namespace";

/// A controller's identity.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Identity {
    /// A ServiceAccount: live when a Ready pod runs as it.
    ServiceAccount {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// Every ServiceAccount of a namespace (the group `system:serviceaccounts:<ns>`): live
    /// when a Ready pod runs in that namespace.
    ServiceAccounts {
        /// Namespace.
        namespace: String,
    },
    /// A control-plane user (`system:kube-controller-manager`): trusted as live.
    ControlPlane {
        /// The user name.
        name: String,
    },
}

impl Identity {
    /// A ServiceAccount.
    pub fn service_account(namespace: &str, name: &str) -> Self {
        Identity::ServiceAccount {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    /// Parses `ns/name`, `system:serviceaccount:ns:name` or another `system:` user.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        if let Some(rest) = s.strip_prefix("system:serviceaccount:") {
            let (ns, name) = rest.split_once(':')?;
            return (!ns.is_empty() && !name.is_empty()).then(|| Self::service_account(ns, name));
        }
        if s.starts_with("system:") && s.len() > "system:".len() {
            return Some(Identity::ControlPlane {
                name: s.to_string(),
            });
        }
        let (ns, name) = s.split_once('/')?;
        let valid = |x: &str| {
            !x.is_empty()
                && x.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        };
        (valid(ns) && valid(name)).then(|| Self::service_account(ns, name))
    }

    /// Whether this holder of a grant is (or includes) `other`: the same identity, or the
    /// ServiceAccounts of a namespace that holds `other`.
    pub fn covers(&self, other: &Identity) -> bool {
        match (self, other) {
            (
                Identity::ServiceAccounts { namespace },
                Identity::ServiceAccount { namespace: n, .. },
            ) => namespace == n,
            (a, b) => a == b,
        }
    }

    /// The namespace its pods run in, for a ServiceAccount or a namespace's ServiceAccounts.
    pub fn namespace(&self) -> Option<&str> {
        match self {
            Identity::ServiceAccount { namespace, .. }
            | Identity::ServiceAccounts { namespace } => Some(namespace),
            Identity::ControlPlane { .. } => None,
        }
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Identity::ServiceAccount { namespace, name } => {
                write!(f, "ServiceAccount {namespace}/{name}")
            }
            Identity::ServiceAccounts { namespace } => {
                write!(
                    f,
                    "the ServiceAccounts of {namespace} (group system:serviceaccounts:{namespace})"
                )
            }
            Identity::ControlPlane { name } => write!(f, "control-plane user {name}"),
        }
    }
}

/// Where the expectation that a controller removes a finalizer comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind", content = "detail")]
pub enum Basis {
    /// An admin's declaration (annotation or flag).
    Declared(String),
    /// OLM's ClusterServiceVersion that owns the CRD.
    Olm(String),
    /// The Helm release that installed the CRD.
    Helm(String),
    /// An RBAC grant naming the resource.
    Rbac(String),
    /// An installer's workload that may update the type only through a wildcard grant.
    Installer(String),
}

impl Liveness {
    fn not(reason: String) -> Self {
        Liveness::NotLive { reason, fix: None }
    }
}

impl std::fmt::Display for Basis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Basis::Declared(s)
            | Basis::Olm(s)
            | Basis::Helm(s)
            | Basis::Rbac(s)
            | Basis::Installer(s) => f.write_str(s),
        }
    }
}

/// A controller expected to remove a finalizer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Expected {
    /// Who.
    pub identity: Identity,
    /// Why nsguard expects it.
    pub source: Basis,
    /// Only these objects, when its grant lists `resourceNames`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_names: Option<BTreeSet<String>>,
    /// Only these finalizers, when it was declared for them by name; `None`: it was declared
    /// for the type, or found by evidence about the type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finalizers: Option<BTreeSet<String>>,
    /// The API groups it serves or owns: named in its grants, or the groups of the CRDs its
    /// installer record owns. A finalizer whose domain belongs to one of them is its own.
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub groups: BTreeSet<String>,
}

impl Expected {
    /// Whether its evidence covers the object `name`.
    pub fn covers(&self, name: &str) -> bool {
        self.resource_names
            .as_ref()
            .is_none_or(|n| n.contains(name))
    }
}

/// Whether a controller is live.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "state", content = "detail")]
pub enum Liveness {
    /// Running outside the namespace being deleted: it will remove its finalizers.
    Live(String),
    /// Running only inside the namespace being deleted: its pods are deleted first.
    LiveHereOnly(String),
    /// Not running, and why; with the command that brings it back, when one is known.
    NotLive {
        /// Why it is not live.
        reason: String,
        /// What would make it live (`kubectl scale ...`).
        #[serde(skip_serializing_if = "Option::is_none")]
        fix: Option<String>,
    },
    /// nsguard could not tell (its own API call failed): not evidence either way.
    Unknown(String),
}

/// The controllers expected for one resource type, each with its liveness.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceControllers {
    /// Candidates and their liveness.
    pub controllers: Vec<(Expected, Liveness)>,
    /// Why there are no candidates, or what else was seen (wildcard grants, people, an
    /// installer record that leads nowhere).
    pub notes: Vec<String>,
}

/// Per resource type (`resource.group`), the controllers of its finalizers.
pub type ControllerFacts = BTreeMap<String, ResourceControllers>;

/// Controllers declared by flag: key `resource.group` (or a finalizer name, which contains a
/// `/`), value the identities.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Declarations(pub BTreeMap<String, Vec<Identity>>);

impl Declarations {
    /// Parses `KEY=IDENTITY[,IDENTITY]` (the `--finalizer-controller` flag).
    pub fn parse_flag(s: &str) -> Result<(String, Vec<Identity>), String> {
        let (key, value) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?}: expected RESOURCE.GROUP=NAMESPACE/SERVICEACCOUNT"))?;
        let ids = parse_identities(value).map_err(|bad| {
            format!("{s:?}: {bad:?} is not NAMESPACE/SERVICEACCOUNT or a system: user")
        })?;
        if key.is_empty() || ids.is_empty() {
            return Err(format!(
                "{s:?}: expected RESOURCE.GROUP=NAMESPACE/SERVICEACCOUNT"
            ));
        }
        Ok((key.to_string(), ids))
    }

    /// The identities declared for the type (for all its finalizers: `None`) or for one of
    /// `finalizers` by name.
    fn for_type(
        &self,
        group_resource: &str,
        finalizers: &BTreeSet<&str>,
    ) -> Vec<(Identity, Option<BTreeSet<String>>)> {
        let mut out: Vec<(Identity, Option<BTreeSet<String>>)> = self
            .0
            .get(group_resource)
            .into_iter()
            .flatten()
            .map(|id| (id.clone(), None))
            .collect();
        for f in finalizers {
            for id in self.0.get(*f).into_iter().flatten() {
                match out.iter_mut().find(|(i, _)| i == id) {
                    Some((_, Some(fs))) => {
                        fs.insert(f.to_string());
                    }
                    Some((_, None)) => {}
                    None => out.push((id.clone(), Some([f.to_string()].into()))),
                }
            }
        }
        out
    }
}

fn parse_identities(value: &str) -> Result<Vec<Identity>, String> {
    value
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| Identity::parse(s).ok_or_else(|| s.trim().to_string()))
        .collect()
}

/// Where to look next for one resource type: the pure part of the evidence.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Leads {
    /// Declared controllers (authoritative when not empty): identity, where the declaration
    /// is, and the finalizers it names (`None`: the whole type).
    pub declared: Vec<(Identity, String, Option<BTreeSet<String>>)>,
    /// The CRD's name, when OLM may own it.
    pub crd: Option<String>,
    /// The Helm release `(namespace, name)` the CRD's annotations name.
    pub helm: Option<(String, String)>,
    /// Who may update the type in the namespace, by RBAC.
    pub updaters: rbac::Updaters,
    /// What the evidence shows that is not a candidate.
    pub notes: Vec<String>,
}

/// The leads for `resource`'s finalizers in namespace `ns`, from cluster facts alone.
pub fn leads(
    cluster: &ClusterFacts,
    resource: &ResourceType,
    finalizers: &BTreeSet<&str>,
    ns: &str,
    declarations: &Declarations,
) -> Leads {
    let gr = resource.group_resource();
    let mut out = Leads::default();
    let crd = cluster
        .crds
        .iter()
        .find(|c| c.spec.group == resource.group && c.spec.names.plural == resource.resource);
    if let Some(crd) = crd {
        let name = crd.metadata.name.clone().unwrap_or_default();
        let annotations = crd.metadata.annotations.clone().unwrap_or_default();
        if let Some(value) = annotations.get(DECLARATION) {
            match parse_identities(value) {
                Ok(ids) => out.declared.extend(ids.into_iter().map(|id| {
                    (id, format!("annotation {DECLARATION} on CRD {name}"), None)
                })),
                Err(bad) => out.notes.push(format!(
                    "annotation {DECLARATION} on CRD {name} has {bad:?}, which is not NAMESPACE/SERVICEACCOUNT: ignored"
                )),
            }
        }
        if let (Some(rel), Some(rel_ns)) = (
            annotations.get(HELM_RELEASE),
            annotations.get(HELM_NAMESPACE),
        ) {
            out.helm = Some((rel_ns.clone(), rel.clone()));
        }
        out.crd = Some(name);
    }
    out.declared.extend(
        declarations
            .for_type(&gr, finalizers)
            .into_iter()
            .map(|(id, fs)| {
                (
                    id,
                    "declared by configuration (finalizer controllers)".to_string(),
                    fs,
                )
            }),
    );
    out.updaters = rbac::updaters(cluster, &resource.group, &resource.resource, ns);
    out
}

/// What an installer record names: a workload's identity, and what it says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Installed {
    /// The workload's identity.
    pub identity: Identity,
    /// Where it comes from.
    pub source: Basis,
    /// The API groups of the CRDs the record owns.
    pub groups: BTreeSet<String>,
}

/// The candidates for one type: the declared ones when there are any; otherwise the installer
/// records' workloads that may update the type (narrowing, never replacing, the RBAC test),
/// and every controller whose grant names the type.
pub fn candidates(
    cluster: &ClusterFacts,
    resource: &ResourceType,
    leads: &Leads,
    installed: &[Installed],
) -> (Vec<Expected>, Vec<String>) {
    let gr = resource.group_resource();
    let mut notes = leads.notes.clone();
    if !leads.declared.is_empty() {
        let list = leads
            .declared
            .iter()
            .map(|(identity, source, finalizers)| Expected {
                identity: identity.clone(),
                source: Basis::Declared(source.clone()),
                resource_names: None,
                finalizers: finalizers.clone(),
                groups: rbac::granted_groups(cluster, identity),
            })
            .collect();
        return (list, notes);
    }
    let mut list: Vec<Expected> = Vec::new();
    let mut refused: Vec<String> = Vec::new();
    for i in installed {
        if list.iter().any(|e| e.identity == i.identity) {
            continue;
        }
        if !leads.updaters.may_update(&i.identity, None) {
            refused.push(i.identity.to_string());
            continue;
        }
        let mut groups = rbac::granted_groups(cluster, &i.identity);
        groups.extend(i.groups.iter().cloned());
        list.push(Expected {
            identity: i.identity.clone(),
            source: i.source.clone(),
            resource_names: leads
                .updaters
                .named
                .iter()
                .find(|(h, _)| h.covers(&i.identity))
                .and_then(|(_, u)| u.resource_names.clone()),
            finalizers: None,
            groups,
        });
    }
    if !refused.is_empty() {
        notes.push(format!(
            "the installer record's workloads {} may not update {gr} (no update or patch on it): not candidates",
            refused.join(", ")
        ));
    }
    for (identity, u) in &leads.updaters.named {
        if list
            .iter()
            .any(|e| identity.covers(&e.identity) || e.identity == *identity)
        {
            continue;
        }
        list.push(Expected {
            identity: identity.clone(),
            source: Basis::Rbac(u.via.clone()),
            resource_names: u.resource_names.clone(),
            finalizers: None,
            groups: rbac::granted_groups(cluster, identity),
        });
    }
    if list.is_empty() {
        let mut note = format!("no role names {gr} with update or patch for a controller");
        if !leads.updaters.wildcard.is_empty() {
            let shown: Vec<String> = leads
                .updaters
                .wildcard
                .keys()
                .take(3)
                .map(|i| i.to_string())
                .collect();
            note.push_str(&format!(
                "; only wildcard grants ({}{}), which are not evidence that anyone handles its finalizers",
                shown.join(", "),
                if leads.updaters.wildcard.len() > 3 { ", ..." } else { "" }
            ));
        }
        notes.push(note);
    }
    for (set, who) in [
        (&leads.updaters.people, "people"),
        (&leads.updaters.everyone, "everyone"),
    ] {
        if !set.is_empty() {
            let shown: Vec<&str> = set.iter().take(3).map(String::as_str).collect();
            notes.push(format!(
                "grants to {who} are not controllers: {}",
                shown.join(", ")
            ));
        }
    }
    (list, notes)
}

/// A pod running as a candidate ServiceAccount, distilled.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodState {
    /// Name.
    pub name: String,
    /// Its Ready condition is True.
    pub ready: bool,
    /// It has a deletionTimestamp.
    pub deleting: bool,
    /// Its node, when bound.
    pub node: Option<String>,
}

/// A workload that would run as a candidate ServiceAccount.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkloadState {
    /// `Deployment`, `StatefulSet`, `DaemonSet`.
    pub kind: String,
    /// Name.
    pub name: String,
    /// Desired replicas (`None` for a DaemonSet).
    pub replicas: Option<i32>,
}

/// What nsguard read about one ServiceAccount.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccountState {
    /// The phase of its namespace; `None` when the namespace does not exist.
    pub namespace_phase: Option<String>,
    /// The ServiceAccount exists.
    pub exists: bool,
    /// Pods running as it.
    pub pods: Vec<PodState>,
    /// Workloads whose pods would run as it (read only when no pod is ready).
    pub workloads: Vec<WorkloadState>,
}

/// Whether a controller is live; `ready_nodes` are the nodes whose Ready condition is True;
/// `deleting` is the namespace being deleted.
pub fn liveness(
    identity: &Identity,
    state: &AccountState,
    ready_nodes: &BTreeSet<String>,
    deleting: &str,
) -> Liveness {
    let ns = match identity {
        Identity::ControlPlane { name } => {
            return Liveness::Live(format!("{name} is a control-plane identity"));
        }
        Identity::ServiceAccount { namespace, .. } | Identity::ServiceAccounts { namespace } => {
            namespace
        }
    };
    match state.namespace_phase.as_deref() {
        None => return Liveness::not(format!("{identity}: its namespace does not exist")),
        Some("Terminating") if ns != deleting => {
            return Liveness::not(format!("{identity}: its namespace {ns} is Terminating"));
        }
        _ => {}
    }
    if !state.exists {
        return Liveness::not(format!("{identity} does not exist"));
    }
    let live: Vec<&PodState> = state
        .pods
        .iter()
        .filter(|p| {
            p.ready && !p.deleting && p.node.as_ref().is_some_and(|n| ready_nodes.contains(n))
        })
        .collect();
    if let Some(p) = live.first() {
        let detail = format!(
            "{identity}: pod {} Ready on node {}{}",
            p.name,
            p.node.as_deref().unwrap_or_default(),
            if live.len() > 1 {
                format!(" (+{} more)", live.len() - 1)
            } else {
                String::new()
            }
        );
        return if ns == deleting {
            Liveness::LiveHereOnly(detail)
        } else {
            Liveness::Live(detail)
        };
    }
    if state.pods.is_empty() {
        let scaled: Vec<&WorkloadState> = state
            .workloads
            .iter()
            .filter(|w| w.replicas == Some(0))
            .collect();
        if let Some(first) = scaled.first() {
            let list: Vec<String> = scaled
                .iter()
                .map(|w| format!("{} {} scaled to 0", w.kind, w.name))
                .collect();
            return Liveness::NotLive {
                reason: format!("{identity}: {}", list.join(", ")),
                fix: Some(format!(
                    "kubectl scale {} {} -n {ns} --replicas=1",
                    first.kind.to_lowercase(),
                    first.name
                )),
            };
        }
        return Liveness::not(if let Some(w) = state.workloads.first() {
            format!("{identity}: {} {} runs no pod", w.kind, w.name)
        } else {
            format!("{identity}: no pod runs as it")
        });
    }
    let deleting_pods = state.pods.iter().filter(|p| p.deleting).count();
    let on_bad_node = state
        .pods
        .iter()
        .filter(|p| !p.deleting && p.node.as_ref().is_some_and(|n| !ready_nodes.contains(n)))
        .filter_map(|p| p.node.clone())
        .collect::<BTreeSet<_>>();
    let reason = if deleting_pods == state.pods.len() {
        format!("{identity}: its pods are being deleted")
    } else if !on_bad_node.is_empty() {
        format!(
            "{identity}: its pods are on nodes that are not Ready ({})",
            on_bad_node.into_iter().collect::<Vec<_>>().join(", ")
        )
    } else {
        format!("{identity}: none of its {} pods is Ready", state.pods.len())
    };
    Liveness::not(reason)
}

/// Resource types with objects carrying finalizers Kubernetes does not remove, with those
/// finalizers.
pub fn finalized(content: &[Content]) -> Vec<(&Content, BTreeSet<&str>)> {
    content
        .iter()
        .filter_map(|c| {
            let names: BTreeSet<&str> = c
                .objects
                .iter()
                .flat_map(|o| o.finalizers.iter())
                .map(String::as_str)
                .filter(|f| !finalizers::is_built_in(f))
                .collect();
            (!names.is_empty()).then_some((c, names))
        })
        .collect()
}

pub fn ready_nodes(cluster: &ClusterFacts) -> BTreeSet<String> {
    cluster
        .nodes
        .iter()
        .filter(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .filter_map(|n| n.metadata.name.clone())
        .collect()
}

/// From CSVs (already filtered to originals), the install Deployments' ServiceAccounts of
/// those that own `crd`.
pub fn olm_expected(csvs: &[DynamicObject], crd: &str) -> Vec<Installed> {
    let mut out: Vec<Installed> = Vec::new();
    for csv in csvs {
        // A copy names its origin; only the original is the operator's record.
        let copied = csv
            .metadata
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key("olm.copiedFrom"));
        if copied {
            continue;
        }
        let spec = &csv.data["spec"];
        let owns = spec["customresourcedefinitions"]["owned"]
            .as_array()
            .is_some_and(|o| o.iter().any(|c| c["name"].as_str() == Some(crd)));
        if !owns {
            continue;
        }
        let ns = csv.metadata.namespace.clone().unwrap_or_default();
        let name = csv.metadata.name.clone().unwrap_or_default();
        // A CRD's name is `<plural>.<group>`.
        let groups: BTreeSet<String> = spec["customresourcedefinitions"]["owned"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| {
                c["name"]
                    .as_str()?
                    .split_once('.')
                    .map(|(_, g)| g.to_string())
            })
            .collect();
        for d in spec["install"]["spec"]["deployments"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let account = d["spec"]["template"]["spec"]["serviceAccountName"]
                .as_str()
                .filter(|s| !s.is_empty())
                .unwrap_or("default");
            let identity = Identity::service_account(&ns, account);
            if out.iter().any(|e| e.identity == identity) {
                continue;
            }
            out.push(Installed {
                identity,
                source: Basis::Olm(format!(
                    "ClusterServiceVersion {ns}/{name} owns CRD {crd}; Deployment {} runs as it",
                    d["name"].as_str().unwrap_or_default()
                )),
                groups: groups.clone(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::rbac::v1::{
        AggregationRule, ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject,
    };
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
        CustomResourceDefinition, CustomResourceDefinitionNames, CustomResourceDefinitionSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use rstest::rstest;

    fn gadgets() -> ResourceType {
        ResourceType {
            group: "acc.example.com".into(),
            version: "v1".into(),
            resource: "gadgets".into(),
            kind: "Gadget".into(),
            listable: true,
        }
    }

    fn crd(annotations: &[(&str, &str)]) -> CustomResourceDefinition {
        CustomResourceDefinition {
            metadata: ObjectMeta {
                name: Some("gadgets.acc.example.com".into()),
                annotations: Some(
                    annotations
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            spec: CustomResourceDefinitionSpec {
                group: "acc.example.com".into(),
                names: CustomResourceDefinitionNames {
                    plural: "gadgets".into(),
                    kind: "Gadget".into(),
                    ..Default::default()
                },
                scope: "Namespaced".into(),
                ..Default::default()
            },
            status: None,
        }
    }

    fn rule(resources: &[&str], verbs: &[&str], names: &[&str]) -> PolicyRule {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        PolicyRule {
            api_groups: Some(v(&["acc.example.com"])),
            resources: Some(v(resources)),
            verbs: v(verbs),
            resource_names: (!names.is_empty()).then(|| v(names)),
            ..Default::default()
        }
    }

    fn cluster_admin() -> PolicyRule {
        PolicyRule {
            api_groups: Some(vec!["*".into()]),
            resources: Some(vec!["*".into()]),
            verbs: vec!["*".into()],
            ..Default::default()
        }
    }

    fn subject(kind: &str, ns: Option<&str>, name: &str) -> Subject {
        Subject {
            kind: kind.into(),
            name: name.into(),
            namespace: ns.map(str::to_string),
            api_group: None,
        }
    }

    /// A cluster with one ClusterRole `role` (rules, aggregated or not) bound cluster-wide to
    /// `subjects`.
    fn cluster(rules: Vec<PolicyRule>, aggregated: bool, subjects: Vec<Subject>) -> ClusterFacts {
        let mut c = ClusterFacts::default();
        c.crds.push(crd(&[]));
        c.rbac.cluster_roles.push(ClusterRole {
            metadata: ObjectMeta {
                name: Some("role".into()),
                ..Default::default()
            },
            rules: Some(rules),
            aggregation_rule: aggregated.then(AggregationRule::default),
        });
        c.rbac.cluster_role_bindings.push(ClusterRoleBinding {
            metadata: ObjectMeta {
                name: Some("binding".into()),
                ..Default::default()
            },
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "ClusterRole".into(),
                name: "role".into(),
            },
            subjects: Some(subjects),
        });
        c
    }

    fn finalizer() -> BTreeSet<&'static str> {
        ["acc.example.com/cleanup"].into()
    }

    fn sa(ns: &str, name: &str) -> Identity {
        Identity::service_account(ns, name)
    }

    fn helm(identity: Identity) -> Installed {
        Installed {
            identity,
            source: Basis::Helm("Helm release gadget-system/gadget".into()),
            groups: ["acc.example.com".to_string()].into(),
        }
    }

    /// Installer record x the RBAC test: the record narrows the candidates to its workloads
    /// that may update the type; it never stands in for that test.
    #[rstest]
    #[case::workload_with_a_named_grant(vec![rule(&["gadgets"], &["update"], &[])], vec![sa("gadget-system", "op")], vec![sa("gadget-system", "op")])]
    #[case::workload_with_only_cluster_admin(vec![cluster_admin()], vec![sa("gadget-system", "op")], vec![sa("gadget-system", "op")])]
    #[case::sibling_webhook_without_the_right(vec![rule(&["gadgets"], &["update"], &[])], vec![sa("gadget-system", "op"), sa("gadget-system", "webhook")], vec![sa("gadget-system", "op")])]
    #[case::record_of_workloads_that_may_not_update(vec![rule(&["gadgets"], &["get"], &[])], vec![sa("gadget-system", "webhook")], vec![])]
    #[case::finalizers_subresource_is_not_the_right(vec![rule(&["gadgets/finalizers"], &["update"], &[])], vec![sa("gadget-system", "op")], vec![])]
    fn installer_records_narrow_never_replace(
        #[case] rules: Vec<PolicyRule>,
        #[case] installed: Vec<Identity>,
        #[case] want: Vec<Identity>,
    ) {
        let c = cluster(
            rules,
            false,
            vec![subject("ServiceAccount", Some("gadget-system"), "op")],
        );
        let l = leads(
            &c,
            &gadgets(),
            &finalizer(),
            "team-a",
            &Declarations::default(),
        );
        let installed: Vec<Installed> = installed.into_iter().map(helm).collect();
        let (list, _) = candidates(&c, &gadgets(), &l, &installed);
        let got: Vec<Identity> = list.into_iter().map(|e| e.identity).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn an_aggregated_role_bound_to_a_controller_makes_a_candidate() {
        let c = cluster(
            vec![rule(&["*"], &["*"], &[])],
            true,
            vec![subject(
                "ServiceAccount",
                Some("crossplane-system"),
                "provider",
            )],
        );
        let l = leads(
            &c,
            &gadgets(),
            &finalizer(),
            "team-a",
            &Declarations::default(),
        );
        let (list, _) = candidates(&c, &gadgets(), &l, &[]);
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].identity, sa("crossplane-system", "provider"));
        assert!(list[0].groups.contains("acc.example.com"));
    }

    #[test]
    fn declarations_by_annotation_and_flag_and_the_helm_record() {
        let mut c = ClusterFacts::default();
        c.crds.push(crd(&[
            (DECLARATION, "ops/op, system:kube-controller-manager"),
            (HELM_RELEASE, "gadget"),
            (HELM_NAMESPACE, "gadget-system"),
        ]));
        let l = leads(
            &c,
            &gadgets(),
            &finalizer(),
            "team-a",
            &Declarations::default(),
        );
        let ids: Vec<&Identity> = l.declared.iter().map(|(i, _, _)| i).collect();
        assert_eq!(
            ids,
            vec![
                &sa("ops", "op"),
                &Identity::ControlPlane {
                    name: "system:kube-controller-manager".into()
                }
            ]
        );
        assert_eq!(l.helm, Some(("gadget-system".into(), "gadget".into())));

        let configmaps = ResourceType {
            group: String::new(),
            version: "v1".into(),
            resource: "configmaps".into(),
            kind: "ConfigMap".into(),
            listable: true,
        };
        let (key, ids) = Declarations::parse_flag("configmaps=ops/cm-cleaner").unwrap();
        let flags = Declarations([(key, ids)].into());
        let l = leads(
            &c,
            &configmaps,
            &["x.example.com/hold"].into(),
            "team-a",
            &flags,
        );
        assert_eq!(l.declared[0].0, sa("ops", "cm-cleaner"));
        assert!(Declarations::parse_flag("configmaps").is_err());
        assert!(Declarations::parse_flag("configmaps=Not A Name").is_err());
    }

    #[test]
    fn olm_original_csvs_only() {
        let csv = |name: &str, copied: bool, owns: &str| -> DynamicObject {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "operators.coreos.com/v1alpha1",
                "kind": "ClusterServiceVersion",
                "metadata": {
                    "name": name,
                    "namespace": if copied { "team-a" } else { "operators" },
                    "labels": if copied { serde_json::json!({"olm.copiedFrom": "operators"}) } else { serde_json::json!({}) },
                },
                "spec": {
                    "customresourcedefinitions": {"owned": [{"name": owns, "version": "v1", "kind": "Gadget"}]},
                    "install": {"strategy": "deployment", "spec": {"deployments": [
                        {"name": "gadget-operator", "spec": {"template": {"spec": {"serviceAccountName": "gadget-operator"}}}}
                    ]}}
                }
            }))
            .unwrap()
        };
        let found = olm_expected(
            &[
                csv("gadget.v1", false, "gadgets.acc.example.com"),
                csv("gadget.v1", true, "gadgets.acc.example.com"),
                csv("other.v1", false, "others.acc.example.com"),
            ],
            "gadgets.acc.example.com",
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].identity, sa("operators", "gadget-operator"));
        assert!(matches!(found[0].source, Basis::Olm(_)));
    }

    fn pod(ready: bool, deleting: bool, node: &str) -> PodState {
        PodState {
            name: "op-1".into(),
            ready,
            deleting,
            node: Some(node.into()),
        }
    }

    fn account(
        phase: Option<&str>,
        exists: bool,
        pods: Vec<PodState>,
        replicas: Option<i32>,
    ) -> AccountState {
        AccountState {
            namespace_phase: phase.map(str::to_string),
            exists,
            pods,
            workloads: replicas
                .map(|r| {
                    vec![WorkloadState {
                        kind: "Deployment".into(),
                        name: "gadget-operator".into(),
                        replicas: Some(r),
                    }]
                })
                .unwrap_or_default(),
        }
    }

    #[rstest]
    #[case::live(sa("ops", "op"), account(Some("Active"), true, vec![pod(true, false, "node-1")], None), "live", "pod op-1 Ready on node node-1")]
    #[case::live_here_only(sa("team-a", "op"), account(Some("Active"), true, vec![pod(true, false, "node-1")], None), "here", "pod op-1")]
    #[case::control_plane(Identity::ControlPlane { name: "system:kube-controller-manager".into() }, AccountState::default(), "live", "control-plane")]
    #[case::namespace_gone(sa("gadget-system", "op"), account(None, false, vec![], None), "not", "its namespace does not exist")]
    #[case::namespace_terminating(sa("gadget-system", "op"), account(Some("Terminating"), true, vec![pod(true, false, "node-1")], None), "not", "is Terminating")]
    #[case::account_gone(sa("ops", "op"), account(Some("Active"), false, vec![], None), "not", "does not exist")]
    #[case::scaled_to_zero(sa("ops", "op"), account(Some("Active"), true, vec![], Some(0)), "not", "Deployment gadget-operator scaled to 0")]
    #[case::workload_without_pods(sa("ops", "op"), account(Some("Active"), true, vec![], Some(1)), "not", "Deployment gadget-operator runs no pod")]
    #[case::no_pod(sa("ops", "op"), account(Some("Active"), true, vec![], None), "not", "no pod runs as it")]
    #[case::not_ready(sa("ops", "op"), account(Some("Active"), true, vec![pod(false, false, "node-1")], None), "not", "none of its 1 pods is Ready")]
    #[case::deleting(sa("ops", "op"), account(Some("Active"), true, vec![pod(true, true, "node-1")], None), "not", "being deleted")]
    #[case::node_not_ready(sa("ops", "op"), account(Some("Active"), true, vec![pod(true, false, "node-2")], None), "not", "not Ready (node-2)")]
    fn liveness_cases(
        #[case] identity: Identity,
        #[case] state: AccountState,
        #[case] want: &str,
        #[case] detail: &str,
    ) {
        let nodes: BTreeSet<String> = ["node-1".to_string()].into();
        let got = liveness(&identity, &state, &nodes, "team-a");
        let (kind, text) = match &got {
            Liveness::Live(d) => ("live", d.clone()),
            Liveness::LiveHereOnly(d) => ("here", d.clone()),
            Liveness::NotLive { reason, .. } => ("not", reason.clone()),
            Liveness::Unknown(e) => ("unknown", e.clone()),
        };
        assert_eq!(kind, want, "{got:?}");
        assert!(text.contains(detail), "{detail:?} not in {text:?}");
    }

    #[test]
    fn a_scaled_down_operator_comes_with_its_fix() {
        let got = liveness(
            &sa("ops", "op"),
            &account(Some("Active"), true, vec![], Some(0)),
            &BTreeSet::new(),
            "team-a",
        );
        let Liveness::NotLive { fix, .. } = got else {
            panic!("{got:?}")
        };
        assert_eq!(
            fix.as_deref(),
            Some("kubectl scale deployment gadget-operator -n ops --replicas=1")
        );
    }

    #[rstest]
    #[case("ops/op", Some(sa("ops", "op")))]
    #[case("system:serviceaccount:ops:op", Some(sa("ops", "op")))]
    #[case("system:kube-controller-manager", Some(Identity::ControlPlane { name: "system:kube-controller-manager".into() }))]
    #[case("op", None)]
    #[case("Ops/op", None)]
    #[case("system:", None)]
    fn identities_parse(#[case] s: &str, #[case] want: Option<Identity>) {
        assert_eq!(Identity::parse(s), want);
    }
}
