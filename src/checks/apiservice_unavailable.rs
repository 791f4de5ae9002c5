//! `apiservice-unavailable`: an aggregated APIService is not Available, or discovery reports a
//! group-version Stale. Discovery then fails for the namespace controller and *no* namespace
//! in the cluster can finish deleting.

use crate::facts::{Facts, ServiceKey};
use crate::report::{CheckId, Finding, ObjectRef, remedy};

pub(super) fn check(facts: &Facts) -> Vec<Finding> {
    let cluster = &facts.cluster;
    let mut out = Vec::new();
    let mut covered = Vec::new();
    for a in &cluster.apiservices {
        let Some(spec) = &a.spec else { continue };
        let Some(svc) = &spec.service else { continue };
        let name = a.metadata.name.clone().unwrap_or_default();
        let available = a
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Available"));
        if available.is_some_and(|c| c.status == "True") {
            continue;
        }
        let gv = format!(
            "{}/{}",
            spec.group.clone().unwrap_or_default(),
            spec.version.clone().unwrap_or_default()
        );
        covered.push(gv.clone());
        let key = ServiceKey {
            namespace: svc.namespace.clone().unwrap_or_default(),
            name: svc.name.clone().unwrap_or_default(),
        };
        let (status, reason) = available
            .map(|c| (c.status.clone(), c.reason.clone().unwrap_or_default()))
            .unwrap_or_else(|| ("Unknown".into(), "NoCondition".into()));
        let mut f = Finding::new(
            CheckId::ApiserviceUnavailable,
            format!("APIService {name} is Available={status} ({reason}): no namespace can finish deleting"),
            remedy(
                format!("restore Service {key} (its endpoints and the network path to it), or delete the stale APIService"),
                format!("kubectl delete apiservice {name}"),
            ),
        )
        .object(ObjectRef::cluster("APIService", &name))
        .object(ObjectRef::namespaced("Service", &key.namespace, &key.name));
        if let Some(c) = available {
            let since = c
                .last_transition_time
                .as_ref()
                .map(|t| format!(" for {}", super::age(facts.now, t.0)))
                .unwrap_or_default();
            f = f.evidence(format!(
                "Available={} reason {} since{}: {}",
                c.status,
                reason,
                since,
                c.message.clone().unwrap_or_default()
            ));
        }
        let backend = cluster.backends.get(&key);
        f = f.evidence(match backend {
            Some(b) if !b.exists => format!("Service {key} does not exist"),
            Some(b) if b.external => format!("Service {key} is an ExternalName Service"),
            Some(b) => format!("Service {key} has {} ready endpoints", b.ready_endpoints),
            None => format!("Service {key} was not looked at"),
        });
        f = f.evidence(format!(
            "discovery of {gv} fails, so the namespace controller never removes its finalizer"
        ));
        out.push(f);
    }
    for gv in &cluster.discovery.stale {
        if covered.contains(gv) {
            continue;
        }
        out.push(
            Finding::new(
                CheckId::ApiserviceUnavailable,
                format!("discovery reports {gv} Stale: no namespace can finish deleting"),
                remedy(
                    "restore the aggregated API server that serves it, or delete its APIService",
                    None,
                ),
            )
            .evidence(format!("aggregated discovery marks {gv} Stale")),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::fixtures;
    use super::*;

    #[test]
    fn unavailable_apiservice_names_the_chain() {
        let facts = fixtures::facts("team-a")
            .with_apiservice(
                "v1beta1.metrics.k8s.io",
                "kube-system",
                "metrics-server",
                "False",
                "ServiceNotFound",
            )
            .build();
        let found = check(&facts);
        assert_eq!(found.len(), 1);
        let f = &found[0];
        assert!(
            f.summary.contains("v1beta1.metrics.k8s.io"),
            "{}",
            f.summary
        );
        assert!(f.summary.contains("ServiceNotFound"));
        assert!(
            f.evidence
                .iter()
                .any(|e| e.contains("kube-system/metrics-server does not exist")),
            "{:?}",
            f.evidence
        );
        assert_eq!(
            f.remedy.command.as_deref(),
            Some("kubectl delete apiservice v1beta1.metrics.k8s.io")
        );
    }

    #[test]
    fn available_and_local_apiservices_are_fine_but_stale_discovery_is_not() {
        let facts = fixtures::facts("team-a")
            .with_apiservice("v1.ok.example.com", "kube-system", "ok", "True", "Passed")
            .with_stale("broken.example.com/v1")
            .build();
        let found = check(&facts);
        assert_eq!(found.len(), 1);
        assert!(found[0].summary.contains("broken.example.com/v1 Stale"));
    }
}
