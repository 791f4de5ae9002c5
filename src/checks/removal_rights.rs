//! `finalizer-controller`, the right that must outlive the deletion: a finalizer whose live
//! controllers (outside the namespace) may remove it only through RoleBindings inside the
//! namespace being deleted. The namespace controller deletes RoleBindings and Roles with the
//! rest of the content, at once; the controller's clean-up of its objects takes longer; its
//! UPDATE that takes the finalizer off is then Forbidden and the namespace hangs. Judged on the
//! effective rules: a right also granted cluster-wide (a ClusterRoleBinding, a wildcard grant
//! included) is not at risk, and nothing is said without evidence of who removes the finalizer.

use std::collections::BTreeSet;

use super::finalizer_controller::{Judgement, holders, verdicts};
use crate::checks::report::{CheckId, Finding, ObjectRef, remedy};
use crate::checks::subject::{GroupResource, Subject};
use crate::facts::Facts;
use crate::facts::controllers::rbac;

/// The blocking findings: one per (resource, finalizer) whose every live remover's right goes
/// with the namespace.
pub(super) fn check(facts: &Facts) -> Vec<Finding> {
    let ns = &facts.name;
    let mut out = Vec::new();
    for (c, f, _, v) in verdicts(facts) {
        let Judgement::Handled(live) = v else {
            continue;
        };
        let updaters = rbac::updaters(&facts.cluster, &c.resource.group, &c.resource.resource, ns);
        let mut bindings = BTreeSet::new();
        let mut at_risk = !live.is_empty();
        for (e, _) in &live {
            match updaters.lost_with_namespace(&e.identity) {
                Some(lost) => bindings.extend(lost),
                None => at_risk = false,
            }
        }
        if !at_risk {
            continue;
        }
        let gr = GroupResource::from(&c.resource);
        let objects = holders(c, f);
        let who: Vec<String> = live.iter().map(|(e, _)| e.identity.to_string()).collect();
        let via: Vec<String> = bindings.iter().map(|g| g.to_string()).collect();
        let mut finding = Finding::new(
            CheckId::FinalizerController,
            Subject::RemovalRight {
                resource: gr.clone(),
                finalizer: f.to_string(),
                bindings: via.clone(),
            },
            format!(
                "{gr} finalizer {f} ({} objects): {} may remove it only through {}, which the deletion removes first",
                objects.len(),
                who.join(", "),
                via.join(", ")
            ),
            remedy(
                format!(
                    "delete the {gr} objects first and wait until they are gone, while the binding still grants the right; then delete the namespace (nsguard delete does this in order); or grant the right cluster-wide"
                ),
                format!("nsguard delete {ns}"),
            ),
        );
        for name in objects.iter().take(5) {
            finding = finding.object(ObjectRef::content(&gr, ns, *name));
        }
        let role_bindings = GroupResource::new("rbac.authorization.k8s.io", "rolebindings");
        for g in &bindings {
            finding = finding.object(ObjectRef::content(&role_bindings, ns, &g.binding));
        }
        finding = finding
            .evidence(format!(
                "{} grant{} update on {gr} only in this namespace; no ClusterRoleBinding grants it",
                via.join(", "),
                if via.len() == 1 { "s" } else { "" }
            ))
            .evidence(
                "the namespace controller deletes RoleBindings and Roles with the rest of the content, before the controller's clean-up of its objects ends: its removal of the finalizer is then Forbidden",
            );
        out.push(finding);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use k8s_openapi::api::rbac::v1::{
        ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject as RbacSubject,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::super::fixtures;
    use super::*;
    use crate::facts::controllers::{Basis, Expected, Identity, Liveness, ResourceControllers};

    fn meta(name: &str, ns: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: ns.map(str::to_string),
            ..Default::default()
        }
    }

    fn operator() -> RbacSubject {
        RbacSubject {
            kind: "ServiceAccount".into(),
            name: "op".into(),
            namespace: Some("ops".into()),
            api_group: None,
        }
    }

    /// A namespace with gadgets holding `acc.example.com/cleanup`, removed by the live
    /// ServiceAccount ops/op, granted update on gadgets in team-a by a RoleBinding there; with
    /// `cluster_wide`, also by a ClusterRoleBinding.
    fn facts(cluster_wide: bool) -> Facts {
        let mut facts = fixtures::facts("team-a")
            .with_content(
                "acc.example.com",
                "gadgets",
                &[("g1", &["acc.example.com/cleanup"])],
            )
            .build();
        facts.namespace.controllers.insert(
            "gadgets.acc.example.com".into(),
            ResourceControllers {
                controllers: vec![(
                    Expected {
                        identity: Identity::service_account("ops", "op"),
                        source: Basis::Rbac("RoleBinding op -> Role gadgets".into()),
                        resource_names: None,
                        finalizers: None,
                        groups: ["acc.example.com".to_string()].into(),
                    },
                    Liveness::Live("pod op-1 Ready in ops".into()),
                )],
                notes: vec![],
            },
        );
        let mut cluster = (*facts.cluster).clone();
        let rules = vec![PolicyRule {
            api_groups: Some(vec!["acc.example.com".into()]),
            resources: Some(vec!["gadgets".into()]),
            verbs: vec!["update".into(), "patch".into()],
            ..Default::default()
        }];
        cluster.rbac.roles.push(Role {
            metadata: meta("gadgets", Some("team-a")),
            rules: Some(rules),
        });
        cluster.rbac.role_bindings.push(RoleBinding {
            metadata: meta("op", Some("team-a")),
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "Role".into(),
                name: "gadgets".into(),
            },
            subjects: Some(vec![operator()]),
        });
        if cluster_wide {
            cluster.rbac.cluster_role_bindings.push(ClusterRoleBinding {
                metadata: meta("op", None),
                role_ref: RoleRef {
                    api_group: Some("rbac.authorization.k8s.io".into()),
                    kind: "ClusterRole".into(),
                    name: "cluster-admin".into(),
                },
                subjects: Some(vec![operator()]),
            });
            cluster
                .rbac
                .cluster_roles
                .push(k8s_openapi::api::rbac::v1::ClusterRole {
                    metadata: meta("cluster-admin", None),
                    rules: Some(vec![PolicyRule {
                        api_groups: Some(vec!["*".into()]),
                        resources: Some(vec!["*".into()]),
                        verbs: vec!["*".into()],
                        ..Default::default()
                    }]),
                    aggregation_rule: None,
                });
        }
        facts.cluster = Arc::new(cluster);
        facts
    }

    #[test]
    fn a_removal_right_granted_only_inside_the_namespace_blocks_naming_the_binding() {
        let found = check(&facts(false));
        assert_eq!(found.len(), 1, "{found:?}");
        let f = &found[0];
        assert_eq!(f.check, CheckId::FinalizerController);
        assert!(
            f.summary.contains("acc.example.com/cleanup"),
            "{}",
            f.summary
        );
        assert!(
            f.summary.contains("RoleBinding op -> Role gadgets"),
            "{}",
            f.summary
        );
        assert!(
            matches!(&f.subject, Subject::RemovalRight { bindings, .. } if bindings.len() == 1),
            "{:?}",
            f.subject
        );
        assert!(
            f.objects
                .iter()
                .any(|o| o.kind.to_string().contains("rolebindings") && o.name == "op"),
            "{:?}",
            f.objects
        );
        assert!(f.objects.iter().any(|o| o.name == "g1"));
        assert_eq!(f.remedy.command.as_deref(), Some("nsguard delete team-a"));
    }

    #[test]
    fn a_removal_right_also_granted_cluster_wide_is_not_at_risk() {
        assert!(check(&facts(true)).is_empty());
    }
}
