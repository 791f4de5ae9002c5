//! `cluster-already-stuck`: other namespaces are already Terminating with
//! `NamespaceDeletionDiscoveryFailure=True`: the cause is cluster-wide and this deletion would
//! hang too.

use crate::facts::Facts;
use crate::report::{CheckId, Finding, ObjectRef, remedy};

pub(super) fn check(facts: &Facts) -> Vec<Finding> {
    let mut stuck = Vec::new();
    let mut message = String::new();
    for ns in &facts.cluster.terminating {
        let name = ns.metadata.name.clone().unwrap_or_default();
        if name == facts.name {
            continue;
        }
        let failing = ns
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| {
                c.iter()
                    .find(|c| c.type_ == "NamespaceDeletionDiscoveryFailure")
            })
            .filter(|c| c.status == "True");
        if let Some(c) = failing {
            if message.is_empty() {
                message = c.message.clone().unwrap_or_default();
            }
            stuck.push(name);
        }
    }
    if stuck.is_empty() {
        return Vec::new();
    }
    stuck.sort();
    let mut f = Finding::new(
        CheckId::ClusterAlreadyStuck,
        format!("{} namespaces are already stuck on failing discovery (e.g. {})", stuck.len(), stuck[0]),
        remedy(
            "fix the failing API group first (see apiservice-unavailable); then they and this one can finish",
            format!("kubectl get namespace {} -o jsonpath='{{.status.conditions}}'", stuck[0]),
        ),
    )
    .evidence(format!("NamespaceDeletionDiscoveryFailure: {message}"));
    for name in stuck.iter().take(5) {
        f = f.object(ObjectRef::cluster("Namespace", name));
    }
    vec![f]
}

#[cfg(test)]
mod tests {
    use super::super::fixtures;
    use super::*;
    use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition, NamespaceStatus};
    use std::sync::Arc;

    fn terminating(name: &str, condition: &str) -> Namespace {
        let mut ns = Namespace::default();
        ns.metadata.name = Some(name.into());
        ns.status = Some(NamespaceStatus {
            phase: Some("Terminating".into()),
            conditions: Some(vec![NamespaceCondition {
                type_: condition.into(),
                status: "True".into(),
                message: Some("metrics.k8s.io/v1beta1: stale GroupVersion discovery".into()),
                ..Default::default()
            }]),
        });
        ns
    }

    #[test]
    fn other_namespaces_stuck_on_discovery_count_not_this_one_nor_other_causes() {
        let mut facts = fixtures::facts("team-a").build();
        let cluster = Arc::get_mut(&mut facts.cluster).unwrap();
        cluster.terminating = vec![
            terminating("team-a", "NamespaceDeletionDiscoveryFailure"),
            terminating("old-1", "NamespaceDeletionDiscoveryFailure"),
            terminating("old-2", "NamespaceFinalizersRemaining"),
        ];
        let found = check(&facts);
        assert_eq!(found.len(), 1);
        assert!(
            found[0].summary.starts_with("1 namespaces"),
            "{}",
            found[0].summary
        );
        assert_eq!(found[0].objects[0].name, "old-1");
        assert!(found[0].evidence[0].contains("metrics.k8s.io/v1beta1"));
    }
}
