//! Who is expected to remove a finalizer, and is it live?
//!
//! For each resource type whose objects in the namespace carry finalizers Kubernetes does not
//! remove itself, nsguard names the controllers expected to remove them, from evidence in this
//! order:
//! 1. a declaration by the cluster's admin: the annotation [`DECLARATION`] on the CRD, or the
//!    `--finalizer-controller` flag (for built-in types, or controllers authorized outside
//!    RBAC). A declaration is authoritative: nothing else is consulted.
//! 2. the installer's record: an OLM ClusterServiceVersion (never a copy) that owns the CRD
//!    (its install Deployments), or the Helm release named by the CRD's annotations (that
//!    release's Deployments, StatefulSets and DaemonSets);
//! 3. RBAC grants that **name** the resource (or `<resource>/finalizers`) with update or patch,
//!    honouring `resourceNames`. Wildcard grants (cluster-admin) and aggregated roles
//!    (admin, edit) are not evidence that anyone handles this finalizer; Users and Groups are
//!    people, except control-plane identities (`system:` users), trusted as live.
//!
//! A ServiceAccount is live when it exists and a Ready pod that is not being deleted runs as it
//! on a Ready node, in a namespace that exists, is not Terminating and is not the one being
//! deleted (live there only: it dies first).
//!
//! [`leads`] and [`liveness`] are pure; [`Gatherer::controllers`] makes the few targeted calls
//! (no cluster-wide pod watch): per candidate ServiceAccount, the ServiceAccount, the pods
//! running as it (field selector) and, when none is ready, the workloads that would run it.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, ServiceAccount};
use k8s_openapi::api::rbac::v1::{PolicyRule, RoleRef, Subject};
use kube::api::{ApiResource, DynamicObject, ListParams};
use kube::{Api, Resource};
use serde::Serialize;
use tokio::time::Instant;

use super::gather::Gatherer;
use super::{ClusterFacts, Content, Discovery, ResourceType, finalizers};

/// The CRD annotation by which an admin names the controller of its finalizers:
/// `<namespace>/<serviceaccount>` (or a `system:` user), comma-separated for several.
pub const DECLARATION: &str = "nsguard.io/finalizer-controller";

/// Helm's release annotations.
const HELM_RELEASE: &str = "meta.helm.sh/release-name";
const HELM_NAMESPACE: &str = "meta.helm.sh/release-namespace";

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
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Identity::ServiceAccount { namespace, name } => {
                write!(f, "ServiceAccount {namespace}/{name}")
            }
            Identity::ControlPlane { name } => write!(f, "control-plane user {name}"),
        }
    }
}

/// Where the expectation that a controller removes a finalizer comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind", content = "detail")]
pub enum Source {
    /// An admin's declaration (annotation or flag).
    Declared(String),
    /// OLM's ClusterServiceVersion that owns the CRD.
    Olm(String),
    /// The Helm release that installed the CRD.
    Helm(String),
    /// An RBAC grant naming the resource.
    Rbac(String),
}

impl Liveness {
    fn not(reason: String) -> Self {
        Liveness::NotLive { reason, fix: None }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Declared(s) | Source::Olm(s) | Source::Helm(s) | Source::Rbac(s) => {
                f.write_str(s)
            }
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
    pub source: Source,
    /// Only these objects, when its grant lists `resourceNames`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_names: Option<BTreeSet<String>>,
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

    fn for_type(&self, group_resource: &str, finalizers: &BTreeSet<&str>) -> Vec<Identity> {
        let mut out: Vec<Identity> = self.0.get(group_resource).cloned().unwrap_or_default();
        for f in finalizers {
            out.extend(self.0.get(*f).cloned().unwrap_or_default());
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
    /// Declared controllers (authoritative when not empty), with where the declaration is.
    pub declared: Vec<(Identity, String)>,
    /// The CRD's name, when OLM may own it.
    pub crd: Option<String>,
    /// The Helm release `(namespace, name)` the CRD's annotations name.
    pub helm: Option<(String, String)>,
    /// Controllers from RBAC grants that name the resource.
    pub rbac: Vec<Expected>,
    /// What RBAC shows that is not evidence.
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
                    (id, format!("annotation {DECLARATION} on CRD {name}"))
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
            .map(|id| {
                (
                    id,
                    "finalizer_controllers in the configuration (or --finalizer-controller)"
                        .to_string(),
                )
            }),
    );
    let (rbac, notes) = rbac_controllers(cluster, &resource.group, &resource.resource, ns);
    out.rbac = rbac;
    out.notes.extend(notes);
    out
}

/// What a rule grants on `group/resource` for update or patch.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Grant {
    /// The rule names the resource; `None` = every object, else only these names.
    Named(Option<BTreeSet<String>>),
    /// Only through `*` resources: not evidence.
    Wildcard,
}

fn rule_grant(rule: &PolicyRule, group: &str, resource: &str) -> Option<Grant> {
    let verbs = rule
        .verbs
        .iter()
        .any(|v| v == "*" || v == "update" || v == "patch");
    let names_group = rule.api_groups.iter().flatten().any(|g| g == group);
    let any_group = rule.api_groups.iter().flatten().any(|g| g == "*");
    if !verbs || !(names_group || any_group) {
        return None;
    }
    let resources = rule.resources.iter().flatten();
    let mut named = false;
    let mut wildcard = false;
    for r in resources {
        if r == resource || *r == format!("{resource}/finalizers") {
            named = true;
        } else if r == "*" || r == "*/*" {
            // Every resource of one named group is an operator's grant over its own API
            // (`apiGroups: [acc.example.com], resources: ["*"]`); every resource of every
            // group is cluster-admin's, which says nothing about who handles this finalizer.
            if names_group && !group.is_empty() {
                named = true;
            } else {
                wildcard = true;
            }
        }
    }
    if named {
        let names: BTreeSet<String> = rule.resource_names.iter().flatten().cloned().collect();
        Some(Grant::Named((!names.is_empty()).then_some(names)))
    } else if wildcard {
        Some(Grant::Wildcard)
    } else {
        None
    }
}

/// The grants a role reference gives; aggregated ClusterRoles (admin, edit and whatever
/// aggregates into them) are grants to people, not to controllers.
fn role_grants(
    cluster: &ClusterFacts,
    role: &RoleRef,
    binding_ns: Option<&str>,
    group: &str,
    resource: &str,
) -> (Vec<Grant>, Option<String>) {
    let rules: Vec<&PolicyRule> = match role.kind.as_str() {
        "ClusterRole" => {
            let Some(r) = cluster
                .rbac
                .cluster_roles
                .iter()
                .find(|r| r.metadata.name.as_deref() == Some(role.name.as_str()))
            else {
                return (Vec::new(), None);
            };
            if r.aggregation_rule.is_some() {
                let grants = r
                    .rules
                    .iter()
                    .flatten()
                    .filter_map(|rule| rule_grant(rule, group, resource))
                    .count();
                let note = (grants > 0).then(|| {
                    format!(
                        "ClusterRole {} aggregates grants for people (not evidence)",
                        role.name
                    )
                });
                return (Vec::new(), note);
            }
            r.rules.iter().flatten().collect()
        }
        "Role" => cluster
            .rbac
            .roles
            .iter()
            .filter(|r| {
                r.metadata.name.as_deref() == Some(role.name.as_str())
                    && r.metadata.namespace.as_deref() == binding_ns
            })
            .flat_map(|r| r.rules.iter().flatten())
            .collect(),
        _ => Vec::new(),
    };
    let grants = rules
        .into_iter()
        .filter_map(|rule| rule_grant(rule, group, resource))
        .collect();
    (grants, None)
}

/// A binding subject as a controller identity; `None` for people (Users, Groups).
fn subject_identity(s: &Subject, binding_ns: Option<&str>) -> Option<Identity> {
    match s.kind.as_str() {
        "ServiceAccount" => {
            let ns = s.namespace.as_deref().or(binding_ns)?;
            Some(Identity::service_account(ns, &s.name))
        }
        "User" if s.name.starts_with("system:") => Identity::parse(&s.name),
        _ => None,
    }
}

fn rbac_controllers(
    cluster: &ClusterFacts,
    group: &str,
    resource: &str,
    ns: &str,
) -> (Vec<Expected>, Vec<String>) {
    let mut out: Vec<Expected> = Vec::new();
    let mut wildcard_subjects: BTreeSet<String> = BTreeSet::new();
    let mut people: BTreeSet<String> = BTreeSet::new();
    let mut notes: BTreeSet<String> = BTreeSet::new();
    let crbs = cluster.rbac.cluster_role_bindings.iter().map(|b| {
        (
            "ClusterRoleBinding",
            None,
            &b.metadata,
            &b.role_ref,
            &b.subjects,
        )
    });
    let rbs = cluster
        .rbac
        .role_bindings
        .iter()
        .filter(|b| b.metadata.namespace.as_deref() == Some(ns))
        .map(|b| {
            (
                "RoleBinding",
                Some(ns),
                &b.metadata,
                &b.role_ref,
                &b.subjects,
            )
        });
    for (kind, binding_ns, meta, role, subjects) in crbs.chain(rbs) {
        let (grants, note) = role_grants(cluster, role, binding_ns, group, resource);
        notes.extend(note);
        let binding = meta.name.clone().unwrap_or_default();
        for grant in grants {
            for s in subjects.iter().flatten() {
                let identity = subject_identity(s, binding_ns);
                match (&grant, identity) {
                    (Grant::Wildcard, _) => {
                        wildcard_subjects.insert(format!("{} {} ({})", s.kind, s.name, role.name));
                    }
                    (Grant::Named(_), None) => {
                        people.insert(format!("{} {}", s.kind, s.name));
                    }
                    (Grant::Named(names), Some(identity)) => {
                        let source = Source::Rbac(format!(
                            "{kind} {binding} -> {} {} grants update on {}",
                            role.kind,
                            role.name,
                            if group.is_empty() {
                                resource.to_string()
                            } else {
                                format!("{resource}.{group}")
                            }
                        ));
                        merge(&mut out, identity, source, names.clone());
                    }
                }
            }
        }
    }
    if out.is_empty() {
        let gr = if group.is_empty() {
            resource.to_string()
        } else {
            format!("{resource}.{group}")
        };
        let mut note = format!("no role names {gr} with update or patch for a controller");
        if !wildcard_subjects.is_empty() {
            let list: Vec<&String> = wildcard_subjects.iter().take(3).collect();
            note.push_str(&format!(
                "; only wildcard grants ({}{}), which are not evidence that anyone handles its finalizers",
                list.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                if wildcard_subjects.len() > 3 { ", ..." } else { "" }
            ));
        }
        notes.insert(note);
    }
    if !people.is_empty() {
        let list: Vec<&str> = people.iter().take(3).map(String::as_str).collect();
        notes.insert(format!(
            "grants to people are not controllers: {}",
            list.join(", ")
        ));
    }
    (out, notes.into_iter().collect())
}

fn merge(
    out: &mut Vec<Expected>,
    identity: Identity,
    source: Source,
    names: Option<BTreeSet<String>>,
) {
    if let Some(e) = out.iter_mut().find(|e| e.identity == identity) {
        // Grants add up: any grant without resourceNames covers everything.
        e.resource_names = match (e.resource_names.take(), names) {
            (Some(mut a), Some(b)) => {
                a.extend(b);
                Some(a)
            }
            _ => None,
        };
        return;
    }
    out.push(Expected {
        identity,
        source,
        resource_names: names,
    });
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
    let (ns, _) = match identity {
        Identity::ControlPlane { name } => {
            return Liveness::Live(format!("{name} is a control-plane identity"));
        }
        Identity::ServiceAccount { namespace, name } => (namespace, name),
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

fn ready_nodes(cluster: &ClusterFacts) -> BTreeSet<String> {
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
            let mut notes = l.notes.clone();
            let list = if !l.declared.is_empty() {
                // Declared: authoritative, nothing else consulted.
                l.declared
                    .into_iter()
                    .map(|(identity, source)| Expected {
                        identity,
                        source: Source::Declared(source),
                        resource_names: None,
                    })
                    .collect()
            } else {
                let mut list = Vec::new();
                if let Some(crd) = &l.crd {
                    match self
                        .olm_controllers(&cluster.discovery, crd, deadline)
                        .await
                    {
                        Ok(found) => list.extend(found),
                        Err(e) => not_checked.push(format!("OLM record of CRD {crd}: {e}")),
                    }
                }
                if let Some((rel_ns, rel)) = &l.helm {
                    match self.helm_controllers(rel_ns, rel, deadline).await {
                        Ok(found) if found.is_empty() => notes.push(format!(
                            "Helm release {rel_ns}/{rel} (annotations on its CRD) has no Deployment, StatefulSet or DaemonSet"
                        )),
                        Ok(found) => list.extend(found),
                        Err(e) => not_checked.push(format!("Helm release {rel_ns}/{rel}: {e}")),
                    }
                }
                for e in l.rbac {
                    if !list.iter().any(|x: &Expected| x.identity == e.identity) {
                        list.push(e);
                    }
                }
                list
            };
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
    ) -> Result<AccountState, super::gather::GatherError> {
        let Identity::ServiceAccount { namespace, name } = identity else {
            return Ok(AccountState::default());
        };
        let mut state = AccountState {
            namespace_phase: cluster.namespace_phases.get(namespace).cloned(),
            ..Default::default()
        };
        if state.namespace_phase.is_none() {
            return Ok(state);
        }
        let client = self.client().clone();
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
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let lp = ListParams::default().fields(&format!("spec.serviceAccountName={name}"));
        let listed = self
            .call(
                &format!("pods of serviceaccount {namespace}/{name}"),
                deadline,
                pods.list(&lp),
            )
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
            .filter(|w| w.account == *name)
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
    ) -> Result<Vec<Expected>, super::gather::GatherError> {
        let Some(rt) = discovery
            .resources
            .iter()
            .find(|r| r.group == "operators.coreos.com" && r.resource == "clusterserviceversions")
        else {
            return Ok(Vec::new());
        };
        let ar = ApiResource {
            group: rt.group.clone(),
            version: rt.version.clone(),
            api_version: rt.api_version(),
            kind: rt.kind.clone(),
            plural: rt.resource.clone(),
        };
        let api: Api<DynamicObject> = Api::all_with(self.client().clone(), &ar);
        let lp = ListParams::default().labels("!olm.copiedFrom");
        let csvs = self
            .call("clusterserviceversions", deadline, api.list(&lp))
            .await?;
        Ok(olm_expected(&csvs.items, crd))
    }

    /// The ServiceAccounts of a Helm release's workloads in its namespace.
    async fn helm_controllers(
        &self,
        ns: &str,
        release: &str,
        deadline: Instant,
    ) -> Result<Vec<Expected>, super::gather::GatherError> {
        let mut out: Vec<Expected> = Vec::new();
        for w in self.workloads(ns, deadline).await? {
            if w.release.as_deref() != Some(release) {
                continue;
            }
            let identity = Identity::service_account(ns, &w.account);
            if out.iter().any(|e| e.identity == identity) {
                continue;
            }
            out.push(Expected {
                identity,
                source: Source::Helm(format!(
                    "Helm release {ns}/{release} installed the CRD; {} {} runs its controller",
                    w.kind, w.name
                )),
                resource_names: None,
            });
        }
        Ok(out)
    }

    /// Deployments, StatefulSets and DaemonSets of `ns`, distilled.
    async fn workloads(
        &self,
        ns: &str,
        deadline: Instant,
    ) -> Result<Vec<Workload>, super::gather::GatherError> {
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

/// From CSVs (already filtered to originals), the install Deployments' ServiceAccounts of
/// those that own `crd`.
pub fn olm_expected(csvs: &[DynamicObject], crd: &str) -> Vec<Expected> {
    let mut out: Vec<Expected> = Vec::new();
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
            out.push(Expected {
                identity,
                source: Source::Olm(format!(
                    "ClusterServiceVersion {ns}/{name} owns CRD {crd}; Deployment {} runs its controller",
                    d["name"].as_str().unwrap_or_default()
                )),
                resource_names: None,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::rbac::v1::{
        AggregationRule, ClusterRole, ClusterRoleBinding, RoleBinding,
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

    #[rstest]
    #[case::named_resource(vec![rule(&["gadgets"], &["update"], &[])], false, subject("ServiceAccount", Some("ops"), "op"), Some((sa("ops", "op"), None)), "")]
    #[case::finalizers_subresource(vec![rule(&["gadgets/finalizers"], &["patch"], &[])], false, subject("ServiceAccount", Some("ops"), "op"), Some((sa("ops", "op"), None)), "")]
    #[case::verb_wildcard_on_named_resource(vec![rule(&["gadgets"], &["*"], &[])], false, subject("ServiceAccount", Some("ops"), "op"), Some((sa("ops", "op"), None)), "")]
    #[case::resource_names(vec![rule(&["gadgets"], &["update"], &["g1"])], false, subject("ServiceAccount", Some("ops"), "op"), Some((sa("ops", "op"), Some(vec!["g1"]))), "")]
    #[case::read_only(vec![rule(&["gadgets"], &["get", "list"], &[])], false, subject("ServiceAccount", Some("ops"), "op"), None, "no role names gadgets.acc.example.com")]
    #[case::wildcard_resources(vec![cluster_admin()], false, subject("ServiceAccount", Some("argocd"), "argocd-application-controller"), None, "only wildcard grants")]
    #[case::every_resource_of_its_own_group(vec![rule(&["*"], &["*"], &[])], false, subject("ServiceAccount", Some("ops"), "op"), Some((sa("ops", "op"), None)), "")]
    #[case::aggregated_role(vec![rule(&["gadgets"], &["update"], &[])], true, subject("ServiceAccount", Some("team"), "ci"), None, "aggregates grants for people")]
    #[case::group_is_people(vec![rule(&["gadgets"], &["update"], &[])], false, subject("Group", None, "kubeadm:cluster-admins"), None, "grants to people are not controllers: Group kubeadm:cluster-admins")]
    #[case::user_is_people(vec![rule(&["gadgets"], &["update"], &[])], false, subject("User", None, "alice"), None, "User alice")]
    #[case::control_plane_user(vec![rule(&["gadgets"], &["update"], &[])], false, subject("User", None, "system:kube-controller-manager"), Some((Identity::ControlPlane { name: "system:kube-controller-manager".into() }, None)), "")]
    #[case::service_account_as_user(vec![rule(&["gadgets"], &["update"], &[])], false, subject("User", None, "system:serviceaccount:ops:op"), Some((sa("ops", "op"), None)), "")]
    fn rbac_evidence(
        #[case] rules: Vec<PolicyRule>,
        #[case] aggregated: bool,
        #[case] subject: Subject,
        #[case] want: Option<(Identity, Option<Vec<&str>>)>,
        #[case] note: &str,
    ) {
        let c = cluster(rules, aggregated, vec![subject]);
        let l = leads(
            &c,
            &gadgets(),
            &finalizer(),
            "team-a",
            &Declarations::default(),
        );
        match want {
            None => assert!(l.rbac.is_empty(), "{:?}", l.rbac),
            Some((identity, names)) => {
                assert_eq!(l.rbac.len(), 1, "{:?}", l.rbac);
                assert_eq!(l.rbac[0].identity, identity);
                let names: Option<BTreeSet<String>> =
                    names.map(|n| n.iter().map(|s| s.to_string()).collect());
                assert_eq!(l.rbac[0].resource_names, names);
            }
        }
        assert!(
            note.is_empty() || l.notes.iter().any(|n| n.contains(note)),
            "{note:?} not in {:?}",
            l.notes
        );
    }

    #[test]
    fn role_bindings_count_only_in_the_namespace_being_deleted() {
        let mut c = cluster(vec![rule(&["gadgets"], &["update"], &[])], false, vec![]);
        for ns in ["team-a", "elsewhere"] {
            c.rbac.role_bindings.push(RoleBinding {
                metadata: ObjectMeta {
                    name: Some("op".into()),
                    namespace: Some(ns.into()),
                    ..Default::default()
                },
                role_ref: RoleRef {
                    api_group: Some("rbac.authorization.k8s.io".into()),
                    kind: "ClusterRole".into(),
                    name: "role".into(),
                },
                subjects: Some(vec![subject("ServiceAccount", None, &format!("op-{ns}"))]),
            });
        }
        let l = leads(
            &c,
            &gadgets(),
            &finalizer(),
            "team-a",
            &Declarations::default(),
        );
        let ids: Vec<&Identity> = l.rbac.iter().map(|e| &e.identity).collect();
        assert_eq!(ids, vec![&sa("team-a", "op-team-a")]);
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
        let ids: Vec<&Identity> = l.declared.iter().map(|(i, _)| i).collect();
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
        assert!(matches!(found[0].source, Source::Olm(_)));
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
