//! `finalizers-pending`: remaining objects with finalizers whose controller nsguard could not
//! judge (its own calls failed, or the type was not looked at), counted per kind with the
//! finalizer names. Advisory: not knowing is not evidence of a hang. Types whose controllers
//! were judged are `finalizer-controller`'s. Also objects carrying a built-in finalizer whose
//! remover runs outside kube-controller-manager and is not seen running (the load balancer's
//! finalizer without a cloud controller: see [`crate::facts::controllers::components`]).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::checks::Settings;
use crate::checks::registry::{Blocks, Check, CheckEntry, Confirm, Severity, Stage};
use crate::checks::report::{CheckId, Finding, GroupResource, ObjectRef, Subject, remedy};
use crate::facts::Facts;

/// The `finalizers-pending` check.
pub(super) struct FinalizersPending;

impl Check for FinalizersPending {
    const ENTRY: CheckEntry = CheckEntry {
        name: "finalizers-pending",
        default: Severity::Advisory,
        blocks: Blocks::RemoveFinalizer,
        title: "Other objects with finalizers that are not known to be handled (counts per kind, with the finalizer names)",
        remedy: "make sure the controllers of these finalizers run outside this namespace, or declare them",
        stage: Stage::Controllers,
        risk: "none: the controller does the cleanup its finalizer stands for",
        confirm: Confirm::No,
        on_discovery: false,
    };

    fn run(facts: &Facts, settings: &Settings) -> Vec<Finding> {
        check(facts, settings.finalizer_stuck_after)
    }
}

pub(super) fn check(facts: &Facts, stuck_after: Duration) -> Vec<Finding> {
    let mut out = Vec::new();
    for c in &facts.namespace.content {
        let judged = facts
            .namespace
            .controllers
            .get(&c.resource.group_resource())
            .is_some_and(|rc| {
                rc.controllers.is_empty()
                    || rc
                        .controllers
                        .iter()
                        .all(|(_, l)| !matches!(l, crate::facts::controllers::Liveness::Unknown(_)))
            });
        if judged {
            continue;
        }
        let mut names: BTreeMap<&str, usize> = BTreeMap::new();
        let mut objects = Vec::new();
        for o in &c.objects {
            // Objects already stuck are reported by finalizer-stuck.
            let stuck = o.deletion_timestamp.is_some_and(|t| {
                facts.now.as_second().saturating_sub(t.as_second()) >= stuck_after.as_secs() as i64
            });
            let unknown: Vec<&String> = o
                .finalizers
                .iter()
                .filter(|f| !super::is_known_finalizer(f))
                .collect();
            if unknown.is_empty() || stuck {
                continue;
            }
            for f in unknown {
                *names.entry(f.as_str()).or_default() += 1;
            }
            objects.push(&o.name);
        }
        if objects.is_empty() {
            continue;
        }
        let gr = GroupResource::from(&c.resource);
        let list: Vec<String> = names.iter().map(|(n, c)| format!("{n} ({c})")).collect();
        let mut f = Finding::new(
            CheckId::FinalizersPending,
            Subject::Finalizers {
                resource: gr.clone(),
                finalizers: names.keys().map(|n| n.to_string()).collect(),
            },
            format!("{} {gr} with finalizers {}", objects.len(), list.join(", ")),
            remedy(
                "make sure the controllers owning these finalizers keep running until the namespace is gone",
                format!(
                    "kubectl get {gr} -n {} -o custom-columns=NAME:.metadata.name,FINALIZERS:.metadata.finalizers",
                    facts.name
                ),
            ),
        );
        for name in objects.iter().take(5) {
            f = f.object(ObjectRef::content(&gr, &facts.name, *name));
        }
        out.push(f);
    }
    out.extend(removers_not_seen(facts, stuck_after));
    out
}

/// Objects carrying a built-in finalizer whose remover runs outside kube-controller-manager
/// and is not seen running (the load balancer's, without a cloud controller): advisory, one
/// finding per type and finalizer, since a managed control plane may run it out of sight.
/// Objects already deleting past `stuck_after` are finalizer-stuck's.
fn removers_not_seen(facts: &Facts, stuck_after: Duration) -> Vec<Finding> {
    use crate::facts::controllers::components::Seen;
    let mut out = Vec::new();
    for c in &facts.namespace.content {
        let mut by_finalizer: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for o in &c.objects {
            let stuck = o.deletion_timestamp.is_some_and(|t| {
                facts.now.as_second().saturating_sub(t.as_second()) >= stuck_after.as_secs() as i64
            });
            if stuck {
                continue;
            }
            for f in &o.finalizers {
                if super::finalizer_stuck::remover_not_seen(facts, f) {
                    by_finalizer.entry(f).or_default().push(&o.name);
                }
            }
        }
        let gr = GroupResource::from(&c.resource);
        for (finalizer, objects) in by_finalizer {
            let Some(b) = crate::facts::finalizers::built_in(finalizer) else {
                continue;
            };
            let why = match facts.namespace.components.get(&b.component) {
                Some(Seen::NotSeen(why)) => why.clone(),
                _ => continue,
            };
            let mut f = Finding::new(
                CheckId::FinalizersPending,
                Subject::Finalizers {
                    resource: gr.clone(),
                    finalizers: vec![finalizer.to_string()],
                },
                format!(
                    "{} {gr} with finalizer {finalizer}, which only {} removes, and nothing shows it runs",
                    objects.len(),
                    b.component.as_str()
                ),
                remedy(
                    format!(
                        "run the cloud provider's {} before deleting, or delete these objects first and remove the finalizer by hand once nothing is left outside the cluster ({})",
                        b.component.as_str(),
                        b.protects
                    ),
                    format!(
                        "kubectl get {gr} -n {} -o custom-columns=NAME:.metadata.name,FINALIZERS:.metadata.finalizers",
                        facts.name
                    ),
                ),
            )
            .evidence(format!("{}: not seen running ({why})", b.component.as_str()))
            .evidence(format!("removed by {}", b.removed_by));
            for name in objects.iter().take(5) {
                f = f.object(ObjectRef::content(&gr, &facts.name, *name));
            }
            out.push(f);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::fixtures;
    use super::*;

    #[test]
    fn unknown_finalizers_only_and_not_the_ones_already_stuck() {
        let facts = fixtures::facts("team-a")
            .with_content(
                "example.com",
                "widgets",
                &[
                    ("mine", &["example.com/cleanup"]),
                    ("builtin", &["kubernetes.io/pvc-protection"]),
                    ("old", &["example.com/cleanup"]),
                ],
            )
            .deleting_since("old", "2026-11-22T11:00:00Z")
            .build();
        let found = check(&facts, Duration::from_secs(300));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0]
                .summary
                .starts_with("1 widgets.example.com with finalizers example.com/cleanup (1)"),
            "{}",
            found[0].summary
        );
    }

    #[test]
    fn a_load_balancer_finalizer_without_a_cloud_controller_is_advisory() {
        use crate::facts::controllers::components::Seen;
        use crate::facts::finalizers::Component;
        let lb = "service.kubernetes.io/load-balancer-cleanup";
        let mut facts = fixtures::facts("team-a")
            .with_content(
                "",
                "services",
                &[("web", &[lb]), ("api", &[lb]), ("plain", &[])],
            )
            .build();
        // Not looked at: nothing said.
        assert!(check(&facts, Duration::from_secs(300)).is_empty());
        facts.namespace.components.insert(
            Component::CloudControllerManager,
            Seen::NotSeen("no Lease kube-system/cloud-controller-manager".into()),
        );
        let found = check(&facts, Duration::from_secs(300));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            found[0].summary,
            format!(
                "2 services with finalizer {lb}, which only cloud-controller-manager removes, and nothing shows it runs"
            )
        );
        assert_eq!(found[0].objects.len(), 2);
        assert!(
            found[0].evidence[0].contains("no Lease kube-system/cloud-controller-manager"),
            "{:?}",
            found[0].evidence
        );
        facts.namespace.components.insert(
            Component::CloudControllerManager,
            Seen::Running("Lease held".into()),
        );
        assert!(check(&facts, Duration::from_secs(300)).is_empty());
    }
}
