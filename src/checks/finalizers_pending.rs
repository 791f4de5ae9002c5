//! `finalizers-pending`: remaining objects with finalizers whose controller nsguard could not
//! judge (its own calls failed, or the type was not looked at), counted per kind with the
//! finalizer names. Advisory: not knowing is not evidence of a hang. Types whose controllers
//! were judged are `finalizer-controller`'s.

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
}
