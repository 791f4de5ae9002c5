//! `hosts-apiservice-backend`: an APIService's Service lives in the namespace being deleted.
//! Its pods go first, the APIService becomes unavailable, and every namespace deletion hangs,
//! this one included. APIServices are cluster-scoped: the deletion never removes them.

use crate::checks::Settings;
use crate::checks::registry::{Blocks, Check, CheckEntry, Confirm, Severity, Stage};
use crate::checks::report::{CheckId, Finding, ObjectKind, ObjectRef, Subject, remedy};
use crate::facts::{Facts, ServiceKey};

/// The `hosts-apiservice-backend` check.
pub(super) struct HostsApiserviceBackend;

impl Check for HostsApiserviceBackend {
    const ENTRY: CheckEntry = CheckEntry {
        name: "hosts-apiservice-backend",
        default: Severity::Blocking,
        blocks: Blocks::Discovery,
        title: "An APIService's backing Service lives in this namespace: deleting it makes every namespace deletion hang, this one included",
        remedy: "move the API server out of this namespace, or delete its APIService first (nothing can then use its API)",
        stage: Stage::Discovery,
        risk: "deleting an APIService removes its API for every client until its owner registers it again; restoring its Service and endpoints instead risks nothing",
        confirm: Confirm::No,
        on_discovery: true,
    };

    fn run(facts: &Facts, _settings: &Settings) -> Vec<Finding> {
        check(facts)
    }
}

pub(super) fn check(facts: &Facts) -> Vec<Finding> {
    facts
        .cluster
        .apiservices
        .iter()
        .filter_map(|a| {
            let svc = a.spec.as_ref()?.service.as_ref()?;
            (svc.namespace.as_deref() == Some(facts.name.as_str())).then(|| {
                let name = a.metadata.name.clone().unwrap_or_default();
                let svc_name = svc.name.clone().unwrap_or_default();
                let service = ServiceKey {
                    namespace: facts.name.clone(),
                    name: svc_name.clone(),
                };
                Finding::new(
                    CheckId::HostsApiserviceBackend,
                    Subject::ApiService {
                        name: name.clone(),
                        service,
                    },
                    format!("APIService {name} is served from this namespace (Service {svc_name}): deleting it blocks every namespace deletion"),
                    remedy(
                        format!("delete APIService {name} first (or move its backend to another namespace)"),
                        format!("kubectl delete apiservice {name}"),
                    ),
                )
                .object(ObjectRef::cluster(ObjectKind::ApiService, &name))
                .object(ObjectRef::namespaced(ObjectKind::Service, &facts.name, &svc_name))
                .evidence("its pods are deleted first; the APIService then becomes unavailable and discovery fails")
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::fixtures;
    use super::*;

    #[test]
    fn only_apiservices_served_from_this_namespace() {
        let facts = fixtures::facts("monitoring")
            .with_apiservice(
                "v1beta1.metrics.k8s.io",
                "monitoring",
                "metrics-server",
                "True",
                "Passed",
            )
            .with_apiservice("v1.other.example.com", "elsewhere", "svc", "True", "Passed")
            .build();
        let found = check(&facts);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].objects[0].name, "v1beta1.metrics.k8s.io");
    }
}
