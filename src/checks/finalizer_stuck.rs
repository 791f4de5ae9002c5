//! `finalizer-stuck`: objects already being deleted for longer than a threshold that still
//! carry finalizers. Whatever should remove them is not doing it now.

use std::time::Duration;

use crate::checks::Settings;
use crate::checks::registry::{Blocks, Check, CheckEntry, Confirm, Severity, Stage};
use crate::checks::report::{CheckId, Finding, GroupResource, ObjectRef, Subject, remedy};
use crate::facts::Facts;

/// The `finalizer-stuck` check.
pub(super) struct FinalizerStuck;

impl Check for FinalizerStuck {
    const ENTRY: CheckEntry = CheckEntry {
        name: "finalizer-stuck",
        default: Severity::Blocking,
        blocks: Blocks::RemoveFinalizer,
        title: "Objects in this namespace already being deleted for longer than the threshold still carry finalizers Kubernetes does not remove itself",
        remedy: "bring back the controller that removes the finalizer (see its logs and events); remove the finalizer by hand only once what it guards is cleaned up",
        stage: Stage::Controllers,
        risk: "none: the controller does the cleanup its finalizer stands for",
        confirm: Confirm::Narrow,
        on_discovery: false,
    };

    fn run(facts: &Facts, settings: &Settings) -> Vec<Finding> {
        check(facts, settings.finalizer_stuck_after)
    }
}

pub(super) fn check(facts: &Facts, after: Duration) -> Vec<Finding> {
    let mut out = Vec::new();
    for c in &facts.namespace.content {
        for o in &c.objects {
            let Some(since) = o.deletion_timestamp else {
                continue;
            };
            // Kubernetes removes its own finalizers as the namespace empties, except those
            // whose remover is outside kube-controller-manager and not seen running (the
            // load balancer's, without a cloud controller).
            let foreign: Vec<&String> = o
                .finalizers
                .iter()
                .filter(|f| !super::is_known_finalizer(f) || remover_not_seen(facts, f))
                .collect();
            if foreign.is_empty() {
                continue;
            }
            let waited = facts.now.as_second().saturating_sub(since.as_second());
            if waited < after.as_secs() as i64 {
                continue;
            }
            let gr = GroupResource::from(&c.resource);
            let unseen = foreign.iter().filter_map(|f| {
                let b = crate::facts::finalizers::built_in(f)?;
                match facts.namespace.components.get(&b.component)? {
                    crate::facts::controllers::components::Seen::NotSeen(why) => Some(format!(
                        "{f} is removed only by {} ({}), not seen running: {why}",
                        b.component.as_str(),
                        b.removed_by
                    )),
                    crate::facts::controllers::components::Seen::Running(_) => None,
                }
            });
            let unseen: Vec<String> = unseen.collect();
            out.push(
                Finding::new(
                    CheckId::FinalizerStuck,
                    Subject::Deleting {
                        resource: gr.clone(),
                        name: o.name.clone(),
                        finalizers: foreign.iter().map(|f| f.to_string()).collect(),
                    },
                    format!("{gr} {} has been deleting for {} and still has finalizers {}", o.name, super::age(facts.now, since), foreign.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")),
                    remedy(
                        "bring back the controller that owns the finalizer (see its logs for why it does not finish); only if it is gone for good, remove that finalizer by hand, which skips its cleanup",
                        None,
                    ),
                )
                .object(ObjectRef::content(&gr, &facts.name, &o.name))
                .evidence(format!("finalizers: {}", o.finalizers.join(", "))),
            );
            if let Some(f) = out.last_mut() {
                f.evidence.extend(unseen);
            }
        }
    }
    out
}

/// True when `finalizer` is built in and removed by a component outside
/// kube-controller-manager that nothing shows running.
pub(super) fn remover_not_seen(facts: &Facts, finalizer: &str) -> bool {
    crate::facts::finalizers::built_in(finalizer).is_some_and(|b| {
        facts
            .namespace
            .components
            .get(&b.component)
            .is_some_and(|seen| seen.not_seen())
    })
}

#[cfg(test)]
mod tests {
    use super::super::fixtures;
    use super::*;

    #[test]
    fn only_objects_deleting_longer_than_the_threshold() {
        let facts = fixtures::facts("team-a")
            .with_content(
                "example.com",
                "widgets",
                &[("old", &["x/y"]), ("new", &["x/y"]), ("free", &[])],
            )
            .deleting_since("old", "2026-11-22T11:00:00Z")
            .deleting_since("new", "2026-11-22T11:59:00Z")
            .deleting_since("free", "2026-11-22T11:00:00Z")
            .build();
        let found = check(&facts, Duration::from_secs(300));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0]
                .summary
                .contains("widgets.example.com old has been deleting for 60m"),
            "{}",
            found[0].summary
        );
    }

    #[test]
    fn the_load_balancer_finalizer_blocks_only_without_a_cloud_controller() {
        use crate::facts::controllers::components::Seen;
        use crate::facts::finalizers::Component;
        let lb = "service.kubernetes.io/load-balancer-cleanup";
        let build = |seen: Option<Seen>| {
            let mut facts = fixtures::facts("team-a")
                .with_content("", "services", &[("web", &[lb])])
                .deleting_since("web", "2026-11-22T11:00:00Z")
                .build();
            if let Some(seen) = seen {
                facts
                    .namespace
                    .components
                    .insert(Component::CloudControllerManager, seen);
            }
            check(&facts, Duration::from_secs(300))
        };
        // Not looked at, or seen running: Kubernetes' own finalizer, not a blocker.
        assert!(build(None).is_empty());
        assert!(build(Some(Seen::Running("Lease held".into()))).is_empty());
        // Nothing shows a cloud controller: the Service waits on nobody.
        let found = build(Some(Seen::NotSeen("no Lease".into())));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].summary.contains(lb), "{}", found[0].summary);
        assert!(
            found[0].evidence.iter().any(|e| e.contains(
                "is removed only by cloud-controller-manager (the cloud provider's service controller"
            ) && e.ends_with("not seen running: no Lease")),
            "{:?}",
            found[0].evidence
        );
    }
}
