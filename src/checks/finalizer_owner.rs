//! Who can remove a finalizer? Only a subject allowed to update or patch the object. From
//! RBAC (bindings not named `system:*`, the group `system:masters` aside):
//! - `finalizer-owner-in-namespace`: every such subject is a ServiceAccount of this namespace.
//!   Its pods are deleted first, so the finalizers are never processed.
//! - `finalizer-owner-missing`: there is no such subject at all: the controller is gone.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::rbac::v1::{PolicyRule, RoleRef, Subject};

use crate::facts::{Content, Facts, Rbac};
use crate::report::{CheckId, Finding, ObjectRef, remedy};

/// A subject as `Kind:namespace/name`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Who {
    kind: String,
    namespace: String,
    name: String,
}

fn grants(rules: &[PolicyRule], group: &str, resource: &str) -> bool {
    let has = |l: &Option<Vec<String>>, want: &str| {
        l.as_ref()
            .is_some_and(|l| l.iter().any(|x| x == "*" || x == want))
    };
    rules.iter().any(|r| {
        (r.verbs
            .iter()
            .any(|v| v == "*" || v == "update" || v == "patch"))
            && has(&r.api_groups, group)
            && has(&r.resources, resource)
    })
}

fn role_grants(
    rbac: &Rbac,
    role: &RoleRef,
    binding_ns: Option<&str>,
    group: &str,
    resource: &str,
) -> bool {
    match role.kind.as_str() {
        "ClusterRole" => rbac
            .cluster_roles
            .iter()
            .filter(|r| r.metadata.name.as_deref() == Some(role.name.as_str()))
            .any(|r| grants(r.rules.as_deref().unwrap_or_default(), group, resource)),
        "Role" => rbac
            .roles
            .iter()
            .filter(|r| {
                r.metadata.name.as_deref() == Some(role.name.as_str())
                    && r.metadata.namespace.as_deref() == binding_ns
            })
            .any(|r| grants(r.rules.as_deref().unwrap_or_default(), group, resource)),
        _ => false,
    }
}

fn counts(name: Option<&str>, s: &Subject) -> bool {
    let built_in = name.unwrap_or_default().starts_with("system:");
    let masters = s.kind == "Group" && s.name == "system:masters";
    !(built_in || masters)
}

fn who(s: &Subject, binding_ns: Option<&str>) -> Who {
    Who {
        kind: s.kind.clone(),
        namespace: s
            .namespace
            .clone()
            .or_else(|| binding_ns.map(str::to_string))
            .unwrap_or_default(),
        name: s.name.clone(),
    }
}

/// Subjects that may update or patch `group/resource` objects in namespace `ns`.
fn removers(rbac: &Rbac, group: &str, resource: &str, ns: &str) -> BTreeSet<Who> {
    let mut out = BTreeSet::new();
    for b in &rbac.cluster_role_bindings {
        if role_grants(rbac, &b.role_ref, None, group, resource) {
            for s in b
                .subjects
                .iter()
                .flatten()
                .filter(|s| counts(b.metadata.name.as_deref(), s))
            {
                out.insert(who(s, None));
            }
        }
    }
    for b in rbac
        .role_bindings
        .iter()
        .filter(|b| b.metadata.namespace.as_deref() == Some(ns))
    {
        if role_grants(rbac, &b.role_ref, Some(ns), group, resource) {
            for s in b
                .subjects
                .iter()
                .flatten()
                .filter(|s| counts(b.metadata.name.as_deref(), s))
            {
                out.insert(who(s, Some(ns)));
            }
        }
    }
    out
}

/// Content types with objects carrying finalizers nobody in Kubernetes handles.
fn finalized(facts: &Facts) -> Vec<(&Content, BTreeMap<String, usize>)> {
    facts
        .namespace
        .content
        .iter()
        .filter_map(|c| {
            let mut names = BTreeMap::new();
            for o in &c.objects {
                for f in o
                    .finalizers
                    .iter()
                    .filter(|f| !super::is_known_finalizer(f))
                {
                    *names.entry(f.clone()).or_default() += 1;
                }
            }
            (!names.is_empty()).then_some((c, names))
        })
        .collect()
}

fn describe(names: &BTreeMap<String, usize>) -> String {
    names
        .iter()
        .map(|(n, c)| format!("{n} on {c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn first_object(c: &Content) -> &str {
    c.objects
        .iter()
        .find(|o| !o.finalizers.is_empty())
        .map(|o| o.name.as_str())
        .unwrap_or_default()
}

pub(super) fn in_namespace(facts: &Facts) -> Vec<Finding> {
    let mut out = Vec::new();
    for (c, names) in finalized(facts) {
        let who = removers(
            &facts.cluster.rbac,
            &c.resource.group,
            &c.resource.resource,
            &facts.name,
        );
        let all_here = !who.is_empty()
            && who
                .iter()
                .all(|w| w.kind == "ServiceAccount" && w.namespace == facts.name);
        if !all_here {
            continue;
        }
        let gr = c.resource.group_resource();
        let sas: Vec<String> = who.iter().map(|w| w.name.clone()).collect();
        out.push(
            Finding::new(
                CheckId::FinalizerOwnerInNamespace,
                format!("{gr} finalizers ({}) can only be removed by service accounts of this namespace ({})", describe(&names), sas.join(", ")),
                remedy(
                    format!("delete the {gr} objects first and wait until they are gone, while their controller still runs"),
                    format!("kubectl delete {gr} --all -n {} --wait", facts.name),
                ),
            )
            .object(ObjectRef::namespaced(&gr, &facts.name, first_object(c)))
            .evidence("pods are deleted before anything else, so the controller is gone before these objects are"),
        );
    }
    out
}

pub(super) fn missing(facts: &Facts) -> Vec<Finding> {
    let mut out = Vec::new();
    for (c, names) in finalized(facts) {
        if !removers(
            &facts.cluster.rbac,
            &c.resource.group,
            &c.resource.resource,
            &facts.name,
        )
        .is_empty()
        {
            continue;
        }
        let gr = c.resource.group_resource();
        let first = first_object(c);
        out.push(
            Finding::new(
                CheckId::FinalizerOwnerMissing,
                format!("{gr} finalizers ({}) have no controller: no one but cluster admins may update {gr}", describe(&names)),
                remedy(
                    "reinstall the controller that owns these finalizers; if it is gone for good, remove them by hand",
                    format!("kubectl patch {gr} {first} -n {} --type=merge -p '{{\"metadata\":{{\"finalizers\":null}}}}'", facts.name),
                ),
            )
            .object(ObjectRef::namespaced(&gr, &facts.name, first))
            .evidence("no RoleBinding or ClusterRoleBinding outside system: grants update or patch on it"),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::fixtures;
    use super::*;

    #[test]
    fn no_remover_means_missing_owner() {
        let facts = fixtures::facts("team-a")
            .with_content(
                "example.com",
                "widgets",
                &[("w1", &["example.com/cleanup"])],
            )
            .build();
        assert_eq!(missing(&facts).len(), 1);
        assert!(in_namespace(&facts).is_empty());
    }

    #[test]
    fn a_service_account_of_this_namespace_as_only_remover() {
        let facts = fixtures::facts("team-a")
            .with_content(
                "example.com",
                "widgets",
                &[("w1", &["example.com/cleanup"])],
            )
            .with_cluster_binding(
                "widget-operator",
                "example.com",
                "widgets",
                "ServiceAccount",
                "team-a",
                "operator",
            )
            .build();
        assert!(missing(&facts).is_empty());
        let found = in_namespace(&facts);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].summary.contains("operator"));
    }

    #[test]
    fn a_remover_elsewhere_is_fine() {
        let facts = fixtures::facts("team-a")
            .with_content(
                "example.com",
                "widgets",
                &[("w1", &["example.com/cleanup"])],
            )
            .with_cluster_binding(
                "widget-operator",
                "example.com",
                "widgets",
                "ServiceAccount",
                "operators",
                "operator",
            )
            .build();
        assert!(missing(&facts).is_empty());
        assert!(in_namespace(&facts).is_empty());
    }
}
