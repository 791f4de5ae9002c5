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
