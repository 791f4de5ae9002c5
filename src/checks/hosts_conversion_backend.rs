//! `hosts-conversion-backend`: a CRD's conversion webhook Service lives in the namespace
//! while objects of that CRD exist there. The webhook's pods go first; listing those objects
//! at another version then fails and the namespace controller cannot finish.
//!
//! Conversion is called only for objects stored at a version other than the one the
//! controller lists and deletes at (the version discovery prefers, [`ResourceType::version`]).
//! So it blocks only when the CRD's `status.storedVersions` names another version; when it
//! names only the listed version, no conversion is called and there is no finding. Without
//! `storedVersions` nsguard cannot tell: a warning.
//!
//! [`ResourceType::version`]: crate::facts::ResourceType

use crate::checks::Settings;
use crate::checks::registry::{Blocks, Check, CheckEntry, Confirm, Stage};
use crate::checks::report::{
    CheckId, Finding, GroupResource, ObjectKind, ObjectRef, Severity, Subject, remedy,
};
use crate::facts::{Facts, ServiceKey};

/// The `hosts-conversion-backend` check.
pub(super) struct HostsConversionBackend;

impl Check for HostsConversionBackend {
    const ENTRY: CheckEntry = CheckEntry {
        name: "hosts-conversion-backend",
        default: Severity::Blocking,
        blocks: Blocks::List,
        title: "A CRD's conversion webhook Service lives in this namespace while objects of that CRD exist",
        remedy: "delete the CRD's objects first while the conversion webhook still runs (nsguard delete does this), or move the webhook out of the namespace",
        stage: Stage::Listing,
        risk: "none when the failing server is repaired; deleting objects discards them",
        confirm: Confirm::Content,
        on_discovery: false,
    };

    fn run(facts: &Facts, _settings: &Settings) -> Vec<Finding> {
        check(facts)
    }
}

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
        let content: Vec<_> = facts
            .namespace
            .content
            .iter()
            .filter(|c| &c.resource.group == group && &c.resource.resource == plural)
            .collect();
        let count: usize = content.iter().map(|c| c.objects.len()).sum();
        let Some(listed) = content.first().map(|c| c.resource.version.as_str()) else {
            continue;
        };
        if count == 0 {
            continue;
        }
        let stored: &[String] = crd
            .status
            .as_ref()
            .and_then(|s| s.stored_versions.as_deref())
            .unwrap_or_default();
        let others: Vec<&str> = stored
            .iter()
            .map(String::as_str)
            .filter(|v| *v != listed)
            .collect();
        if !stored.is_empty() && others.is_empty() {
            // Every object is stored at the version the controller lists and deletes at.
            continue;
        }
        let name = crd.metadata.name.clone().unwrap_or_default();
        let mut f = Finding::new(
            CheckId::HostsConversionBackend,
            Subject::Conversion {
                crd: name.clone(),
                resource: GroupResource::new(group, plural),
                service: ServiceKey {
                    namespace: svc.namespace.clone(),
                    name: svc.name.clone(),
                },
            },
            format!("CRD {name} converts through Service {} in this namespace while {count} of its objects remain", svc.name),
            remedy(
                format!(
                    "delete the {plural}.{group} objects here before the namespace, while the conversion webhook still serves (nsguard delete does this in order; by hand: kubectl delete {plural}.{group} --all -n {}), or move the conversion webhook out",
                    facts.name
                ),
                format!("nsguard delete {}", facts.name),
            ),
        )
        .object(ObjectRef::cluster(ObjectKind::CustomResourceDefinition, &name))
        .object(ObjectRef::namespaced(ObjectKind::Service, &svc.namespace, &svc.name))
        .evidence("the webhook's pods are deleted first; conversion then fails");
        if stored.is_empty() {
            f = f.evidence(format!(
                "its status.storedVersions is empty: nsguard cannot tell whether objects are stored at a version other than {listed}"
            ));
            f.summary = format!("{} (may need conversion)", f.summary);
            f.severity = Severity::Advisory;
        } else {
            f = f.evidence(format!(
                "storedVersions {}: objects may be stored at {}, and the controller lists them at {listed}",
                stored.join(", "),
                others.join(", ")
            ));
        }
        out.push(f);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::fixtures;
    use super::*;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
        CustomResourceConversion, CustomResourceDefinition, CustomResourceDefinitionStatus,
        ServiceReference, WebhookClientConfig, WebhookConversion,
    };
    use rstest::rstest;
    use std::sync::Arc;

    fn facts_with(
        svc_ns: &str,
        objects: &[(&str, &[&str])],
        stored: &[&str],
    ) -> crate::facts::Facts {
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
        crd.status = Some(CustomResourceDefinitionStatus {
            stored_versions: Some(stored.iter().map(|v| v.to_string()).collect()),
            ..Default::default()
        });
        Arc::get_mut(&mut facts.cluster).unwrap().crds.push(crd);
        facts
    }

    #[test]
    fn only_while_objects_of_the_crd_remain_here() {
        let both = &["v1beta1", "v1"][..];
        assert_eq!(check(&facts_with("team-a", &[("w1", &[])], both)).len(), 1);
        assert!(check(&facts_with("team-a", &[], both)).is_empty());
        assert!(check(&facts_with("elsewhere", &[("w1", &[])], both)).is_empty());
        let found = check(&facts_with("team-a", &[("w1", &[]), ("w2", &[])], both));
        assert!(
            found[0].summary.contains("2 of its objects"),
            "{}",
            found[0].summary
        );
        assert_eq!(
            found[0].remedy.command.as_deref(),
            Some("nsguard delete team-a")
        );
        assert!(
            found[0]
                .remedy
                .text
                .contains("kubectl delete widgets.example.com --all -n team-a"),
            "{}",
            found[0].remedy.text
        );
    }

    // The fixture's content is listed at v1.
    #[rstest]
    #[case::stored_only_at_the_listed_version(&["v1"], None)]
    #[case::stored_also_at_another(&["v1beta1", "v1"], Some(Severity::Blocking))]
    #[case::stored_only_at_another(&["v1beta1"], Some(Severity::Blocking))]
    #[case::stored_versions_unknown(&[], Some(Severity::Advisory))]
    fn only_when_objects_may_be_stored_at_another_version(
        #[case] stored: &[&str],
        #[case] expected: Option<Severity>,
    ) {
        let found = check(&facts_with("team-a", &[("w1", &[])], stored));
        assert_eq!(found.first().map(|f| f.severity), expected, "{found:?}");
        if expected == Some(Severity::Blocking) {
            assert!(
                found[0]
                    .evidence
                    .iter()
                    .any(|e| e.contains("may be stored at v1beta1")),
                "{:?}",
                found[0].evidence
            );
        }
    }
}
