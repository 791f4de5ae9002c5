//! `hosts-conversion-backend`: a CRD's conversion webhook Service lives in the namespace
//! while objects of that CRD exist there. The webhook's pods go first; listing those objects
//! at another version then fails and the namespace controller cannot finish.

use crate::facts::Facts;
use crate::report::{CheckId, Finding, ObjectRef, remedy};

pub(super) fn check(facts: &Facts) -> Vec<Finding> {
    let mut out = Vec::new();
    for crd in &facts.cluster.crds {
        let Some(svc) = crd
            .spec
            .conversion
            .as_ref()
            .filter(|c| c.strategy == "Webhook")
            .and_then(|c| c.webhook.as_ref())
            .and_then(|w| w.client_config.as_ref())
            .and_then(|c| c.service.as_ref())
        else {
            continue;
        };
        if svc.namespace != facts.name {
            continue;
        }
        let group = &crd.spec.group;
        let plural = &crd.spec.names.plural;
        let count: usize = facts
            .namespace
            .content
            .iter()
            .filter(|c| &c.resource.group == group && &c.resource.resource == plural)
            .map(|c| c.objects.len())
            .sum();
        if count == 0 {
            continue;
        }
        let name = crd.metadata.name.clone().unwrap_or_default();
        out.push(
            Finding::new(
                CheckId::HostsConversionBackend,
                format!("CRD {name} converts through Service {} in this namespace while {count} of its objects remain", svc.name),
                remedy(
                    format!("delete the {plural}.{group} objects here before the namespace, or move the conversion webhook out"),
                    format!("kubectl delete {plural}.{group} --all -n {}", facts.name),
                ),
            )
            .object(ObjectRef::cluster("CustomResourceDefinition", &name))
            .object(ObjectRef::namespaced("Service", &svc.namespace, &svc.name))
            .evidence("the webhook's pods are deleted first; conversion then fails"),
        );
    }
    out
}
