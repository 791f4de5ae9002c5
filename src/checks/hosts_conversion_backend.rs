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

#[cfg(test)]
mod tests {
    use super::super::fixtures;
    use super::*;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
        CustomResourceConversion, CustomResourceDefinition, ServiceReference, WebhookClientConfig,
        WebhookConversion,
    };
    use std::sync::Arc;

    fn facts_with(svc_ns: &str, objects: &[(&str, &[&str])]) -> crate::facts::Facts {
        let mut facts = fixtures::facts("team-a")
            .with_content("example.com", "widgets", objects)
            .build();
        let mut crd = CustomResourceDefinition::default();
        crd.metadata.name = Some("widgets.example.com".into());
        crd.spec.group = "example.com".into();
        crd.spec.names.plural = "widgets".into();
        crd.spec.conversion = Some(CustomResourceConversion {
            strategy: "Webhook".into(),
            webhook: Some(WebhookConversion {
                client_config: Some(WebhookClientConfig {
                    service: Some(ServiceReference {
                        namespace: svc_ns.into(),
                        name: "conv".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                conversion_review_versions: vec!["v1".into()],
            }),
        });
        Arc::get_mut(&mut facts.cluster).unwrap().crds.push(crd);
        facts
    }

    #[test]
    fn only_while_objects_of_the_crd_remain_here() {
        assert_eq!(check(&facts_with("team-a", &[("w1", &[])])).len(), 1);
        assert!(check(&facts_with("team-a", &[])).is_empty());
        assert!(check(&facts_with("elsewhere", &[("w1", &[])])).is_empty());
        let found = check(&facts_with("team-a", &[("w1", &[]), ("w2", &[])]));
        assert!(
            found[0].summary.contains("2 of its objects"),
            "{}",
            found[0].summary
        );
        assert_eq!(
            found[0].remedy.command.as_deref(),
            Some("kubectl delete widgets.example.com --all -n team-a")
        );
    }
}
