//! `pods-unterminable`: pods on nodes that are gone, or not Ready without the
//! `node.kubernetes.io/out-of-service` taint. No kubelet confirms their end, so they never
//! finish terminating, and pods are deleted before anything else.

use crate::facts::Facts;
use crate::report::{CheckId, Finding, ObjectRef, remedy};

const OUT_OF_SERVICE: &str = "node.kubernetes.io/out-of-service";

pub(super) fn check(facts: &Facts) -> Vec<Finding> {
    let mut out = Vec::new();
    for pod in &facts.namespace.pods {
        let Some(node_name) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
            continue;
        };
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded") | Some("Failed")) {
            continue;
        }
        let node = facts
            .cluster
            .nodes
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(node_name.as_str()));
        let why = match node {
            None => format!("node {node_name} does not exist"),
            Some(n) => {
                let ready = n
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
                    .is_some_and(|c| c.status == "True");
                let tainted = n
                    .spec
                    .as_ref()
                    .and_then(|s| s.taints.as_ref())
                    .is_some_and(|t| t.iter().any(|t| t.key == OUT_OF_SERVICE));
                if ready || tainted {
                    continue;
                }
                format!("node {node_name} is not Ready")
            }
        };
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        out.push(
            Finding::new(
                CheckId::PodsUnterminable,
                format!("pod {pod_name} is on a node that cannot confirm its end ({why})"),
                remedy(
                    format!("recover the node, or taint it {OUT_OF_SERVICE}=nodeshutdown:NoExecute so its pods are cleaned up"),
                    format!("kubectl taint node {node_name} {OUT_OF_SERVICE}=nodeshutdown:NoExecute"),
                ),
            )
            .object(ObjectRef::namespaced("Pod", &facts.name, &pod_name))
            .evidence(why),
        );
    }
    out
}
