//! `list-failure`: listing a namespaced resource type in the namespace fails. The namespace
//! controller lists the same way and would hit the same error. A 403 for nsguard's own
//! identity is a gap in nsguard's RBAC, not a blocker: advisory.

use crate::facts::Facts;
use crate::report::{CheckId, Finding, ObjectRef, Severity, remedy};

pub(super) fn check(facts: &Facts) -> Vec<Finding> {
    facts
        .namespace
        .list_failures
        .iter()
        .map(|lf| {
            let gr = lf.resource.group_resource();
            let code = lf.code.map(|c| format!("HTTP {c}: ")).unwrap_or_default();
            let mut f = if lf.code == Some(403) {
                let mut f = Finding::new(
                    CheckId::ListFailure,
                    format!("nsguard may not list {gr}: it could not check them"),
                    remedy("grant nsguard's ClusterRole list on this resource", None),
                );
                f.severity = Severity::Advisory;
                f
            } else {
                Finding::new(
                    CheckId::ListFailure,
                    format!("listing {gr} in {} fails; the namespace controller would fail too", facts.name),
                    remedy(
                        "fix what serves this resource (conversion webhook, aggregated API) before deleting",
                        format!("kubectl get {gr} -n {}", facts.name),
                    ),
                )
            };
            f = f
                .object(ObjectRef::cluster("Resource", gr))
                .evidence(format!("{code}{}", lf.message));
            f
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::fixtures;
    use super::*;
    use crate::facts::{ListFailure, ResourceType};
    use rstest::rstest;

    #[rstest]
    #[case::server_error(Some(500), Severity::Blocking)]
    #[case::no_answer(None, Severity::Blocking)]
    #[case::nsguards_own_rbac(Some(403), Severity::Advisory)]
    fn a_failing_list_blocks_unless_it_is_nsguards_own_rbac(
        #[case] code: Option<u16>,
        #[case] severity: Severity,
    ) {
        let mut facts = fixtures::facts("team-a").build();
        facts.namespace.list_failures.push(ListFailure {
            resource: ResourceType {
                group: "example.com".into(),
                version: "v2".into(),
                resource: "widgets".into(),
                kind: "Widget".into(),
                listable: true,
            },
            code,
            message: "conversion webhook failed".into(),
        });
        let found = check(&facts);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].severity, severity);
        assert!(
            found[0].summary.contains("widgets.example.com"),
            "{}",
            found[0].summary
        );
    }
}
