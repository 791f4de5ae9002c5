//! `pods-unterminable`: pods on nodes that are gone, or not Ready without the
//! `node.kubernetes.io/out-of-service` taint. No kubelet confirms their end, so they never
//! finish terminating, and pods are deleted before anything else.

use crate::checks::Settings;
use crate::checks::registry::{Blocks, Check, CheckEntry, Confirm, Severity, Stage};
use crate::checks::report::{CheckId, Finding, ObjectKind, ObjectRef, Subject, remedy};
use crate::facts::Facts;

/// The `pods-unterminable` check.
pub(super) struct PodsUnterminable;

impl Check for PodsUnterminable {
    const ENTRY: CheckEntry = CheckEntry {
        name: "pods-unterminable",
        default: Severity::Advisory,
        blocks: Blocks::PodTermination,
        title: "Pods on nodes that no longer exist, or that are not Ready and lack the out-of-service taint: they cannot finish terminating",
        remedy: "bring the node back, or, once it is really gone, taint it node.kubernetes.io/out-of-service=nodeshutdown:NoExecute (or delete the Node)",
        stage: Stage::Nodes,
        risk: "a container on an unreachable node may still be running; confirm the node is really gone",
        confirm: Confirm::No,
        on_discovery: false,
    };

    fn run(facts: &Facts, _settings: &Settings) -> Vec<Finding> {
        check(facts)
    }
}

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
                Subject::Pod {
                    name: pod_name.clone(),
                    node: node_name.clone(),
                },
                format!("pod {pod_name} is on a node that cannot confirm its end ({why})"),
                remedy(
                    format!("recover the node, or taint it {OUT_OF_SERVICE}=nodeshutdown:NoExecute so its pods are cleaned up"),
                    format!("kubectl taint node {node_name} {OUT_OF_SERVICE}=nodeshutdown:NoExecute"),
                ),
            )
            .object(ObjectRef::namespaced(ObjectKind::Pod, &facts.name, &pod_name))
            .evidence(why),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::fixtures;
    use super::*;
    use k8s_openapi::api::core::v1::{
        Node, NodeCondition, NodeSpec, NodeStatus, Pod, PodSpec, PodStatus, Taint,
    };
    use rstest::rstest;
    use std::sync::Arc;

    fn node(name: &str, ready: &str, out_of_service: bool) -> Node {
        let mut n = Node::default();
        n.metadata.name = Some(name.into());
        n.status = Some(NodeStatus {
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: ready.into(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        if out_of_service {
            n.spec = Some(NodeSpec {
                taints: Some(vec![Taint {
                    key: OUT_OF_SERVICE.into(),
                    effect: "NoExecute".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            });
        }
        n
    }

    #[rstest]
    #[case::node_gone(None, "Running", true)]
    #[case::node_not_ready(Some(node("n1", "Unknown", false)), "Running", true)]
    #[case::node_ready(Some(node("n1", "True", false)), "Running", false)]
    #[case::out_of_service(Some(node("n1", "False", true)), "Running", false)]
    #[case::finished_pod(None, "Succeeded", false)]
    fn pods_no_kubelet_will_confirm(
        #[case] node: Option<Node>,
        #[case] phase: &str,
        #[case] found: bool,
    ) {
        let mut facts = fixtures::facts("team-a").build();
        Arc::get_mut(&mut facts.cluster).unwrap().nodes.extend(node);
        let mut pod = Pod::default();
        pod.metadata.name = Some("p1".into());
        pod.spec = Some(PodSpec {
            node_name: Some("n1".into()),
            ..Default::default()
        });
        pod.status = Some(PodStatus {
            phase: Some(phase.into()),
            ..Default::default()
        });
        facts.namespace.pods.push(pod);
        assert_eq!(!check(&facts).is_empty(), found);
    }
}
