//! Removers of built-in finalizers that are not kube-controller-manager's controllers.
//!
//! Most finalizers Kubernetes adds are removed by kube-controller-manager (or kube-apiserver),
//! which runs wherever the namespace controller runs. One is not:
//! `service.kubernetes.io/load-balancer-cleanup`, which only the cloud provider's service
//! controller removes (in cloud-controller-manager). On a cluster without a cloud controller
//! (kubeadm on bare metal, kind, a cloud controller uninstalled) a Service carrying it is never
//! finalized, and neither is its namespace. Evidence that cloud-controller-manager runs: its
//! leader Lease `kube-system/cloud-controller-manager` renewed within its duration, or a
//! running, ready pod of that name in kube-system. A managed control plane may run it out of
//! sight: "not seen" is not proof of absence, so it is advisory until an object has waited on
//! it past `finalizer_stuck_after`.

use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

use super::super::Content;
use super::super::finalizers::{self, Component};

/// The namespace and name of cloud-controller-manager's leader Lease (its default
/// `--leader-elect-resource-name`).
pub const CLOUD_CONTROLLER_LEASE: (&str, &str) = ("kube-system", "cloud-controller-manager");

/// How long past `renewTime + leaseDurationSeconds` a Lease still counts as held: a leader
/// that renews late by a few seconds is live.
const LEASE_SLACK_SECONDS: i64 = 30;

/// Whether a component is seen running.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "state", content = "evidence")]
pub enum Seen {
    /// Seen running: how.
    Running(String),
    /// Not seen: what was looked at.
    NotSeen(String),
}

impl Seen {
    /// True when not seen running.
    pub fn not_seen(&self) -> bool {
        matches!(self, Seen::NotSeen(_))
    }
}

/// What the reads found of cloud-controller-manager.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CloudControllerReads {
    /// Its leader Lease: holder, renewTime, leaseDurationSeconds (`None`: no such Lease).
    pub lease: Option<(Option<String>, Option<Timestamp>, Option<i32>)>,
    /// Pods of kube-system whose name contains `cloud-controller-manager`: name, and whether
    /// it is Running and Ready and not being deleted.
    pub pods: Vec<(String, bool)>,
}

/// The components outside kube-controller-manager and kube-apiserver whose finalizers the
/// content carries.
pub fn needed(content: &[Content]) -> Vec<Component> {
    let mut out: Vec<Component> = content
        .iter()
        .flat_map(|c| c.objects.iter())
        .flat_map(|o| o.finalizers.iter())
        .filter_map(|f| finalizers::built_in(f))
        .map(|b| b.component)
        .filter(|c| *c == Component::CloudControllerManager)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Judges cloud-controller-manager from what was read, at `now`.
pub fn cloud_controller(reads: &CloudControllerReads, now: Timestamp) -> Seen {
    let (ns, name) = CLOUD_CONTROLLER_LEASE;
    if let Some((holder, Some(renewed), duration)) = &reads.lease {
        let age = now.as_second().saturating_sub(renewed.as_second());
        let held = i64::from(duration.unwrap_or(15).max(0)) + LEASE_SLACK_SECONDS;
        if age <= held {
            return Seen::Running(format!(
                "Lease {ns}/{name} held by {}, renewed {age}s ago",
                holder.as_deref().unwrap_or("?")
            ));
        }
    }
    if let Some((pod, _)) = reads.pods.iter().find(|(_, ready)| *ready) {
        return Seen::Running(format!("pod {ns}/{pod} is running and ready"));
    }
    let lease = match &reads.lease {
        None => format!("no Lease {ns}/{name}"),
        Some(_) => format!("Lease {ns}/{name} not renewed within its duration"),
    };
    let pods = if reads.pods.is_empty() {
        format!("no {name} pod in {ns}")
    } else {
        format!("no running, ready {name} pod in {ns}")
    };
    Seen::NotSeen(format!("{lease}, {pods}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::fixtures;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn only_the_load_balancer_finalizer_needs_a_component() {
        let facts = fixtures::facts("team-a")
            .with_content(
                "",
                "services",
                &[
                    ("lb", &["service.kubernetes.io/load-balancer-cleanup"]),
                    ("claim", &["kubernetes.io/pvc-protection"]),
                ],
            )
            .build();
        assert_eq!(
            needed(&facts.namespace.content),
            vec![Component::CloudControllerManager]
        );
        let facts = fixtures::facts("team-a")
            .with_content("", "pvcs", &[("claim", &["kubernetes.io/pvc-protection"])])
            .build();
        assert!(needed(&facts.namespace.content).is_empty());
    }

    #[test]
    fn a_renewed_lease_or_a_ready_pod_is_evidence() {
        let now = at("2026-12-08T00:10:00Z");
        let renewed = CloudControllerReads {
            lease: Some((
                Some("ccm-1".into()),
                Some(at("2026-12-08T00:09:50Z")),
                Some(15),
            )),
            pods: vec![],
        };
        assert_eq!(
            cloud_controller(&renewed, now),
            Seen::Running(
                "Lease kube-system/cloud-controller-manager held by ccm-1, renewed 10s ago".into()
            )
        );
        let expired = CloudControllerReads {
            lease: Some((
                Some("ccm-1".into()),
                Some(at("2026-12-07T23:00:00Z")),
                Some(15),
            )),
            pods: vec![("cloud-controller-manager-abc".into(), false)],
        };
        assert_eq!(
            cloud_controller(&expired, now),
            Seen::NotSeen(
                "Lease kube-system/cloud-controller-manager not renewed within its duration, no running, ready cloud-controller-manager pod in kube-system".into()
            )
        );
        let pod = CloudControllerReads {
            lease: None,
            pods: vec![("cloud-controller-manager-abc".into(), true)],
        };
        assert!(!cloud_controller(&pod, now).not_seen());
        assert_eq!(
            cloud_controller(&CloudControllerReads::default(), now),
            Seen::NotSeen(
                "no Lease kube-system/cloud-controller-manager, no cloud-controller-manager pod in kube-system".into()
            )
        );
    }
}
