//! `list-failure`: listing a namespaced resource type in the namespace fails the way the
//! namespace controller's own list would: HTTP 500/502/503/504 (an aggregated API that is down
//! answers 503), or a conversion webhook failure. A 401 or 403 for nsguard's own identity is a
//! gap in nsguard's RBAC, not a blocker: advisory, "not checked". A 404 (the type went away
//! since discovery) and nsguard's own trouble (timeouts, transport and decode errors,
//! throttling, the API server's 503 while it shuts down) are not findings: the gatherer skips
//! the first and records the others as not checked, which makes the decision fail open; should
//! one reach this check, it says nothing.

use crate::checks::Settings;
use crate::checks::registry::{Blocks, Check, CheckEntry, Confirm, Stage};
use crate::checks::report::{CheckId, Finding, GroupResource, Severity, Subject, remedy};
use crate::facts::{Facts, ListErrorClass};

/// The `list-failure` check.
pub(super) struct ListFailure;

impl Check for ListFailure {
    const ENTRY: CheckEntry = CheckEntry {
        name: "list-failure",
        default: Severity::Blocking,
        blocks: Blocks::List,
        title: "Listing a namespaced resource type in this namespace fails as the namespace controller's list would (conversion webhook down, aggregated API error, 5xx); a 403 for nsguard's own identity is an RBAC gap (advisory)",
        remedy: "repair the server that fails the list (the conversion webhook or aggregated API behind the type); grant nsguard list on the type for a 403",
        stage: Stage::Listing,
        risk: "none when the failing server is repaired; deleting objects discards them",
        confirm: Confirm::Narrow,
        on_discovery: true,
    };

    fn run(facts: &Facts, _settings: &Settings) -> Vec<Finding> {
        check(facts)
    }
}

pub(super) fn check(facts: &Facts) -> Vec<Finding> {
    facts
        .namespace
        .list_failures
        .iter()
        .filter_map(|lf| {
            let gr = GroupResource::from(&lf.resource);
            let subject = Subject::ResourceType {
                resource: gr.clone(),
            };
            let code = lf.code.map(|c| format!("HTTP {c}: ")).unwrap_or_default();
            let f = match lf.class() {
                ListErrorClass::NotAllowed => {
                    let (what, fix) = if lf.code == Some(401) {
                        (
                            "nsguard's credentials were refused",
                            "check nsguard's ServiceAccount token",
                        )
                    } else {
                        (
                            "nsguard may not list them",
                            "grant nsguard's ClusterRole list on this resource",
                        )
                    };
                    let mut f = Finding::new(
                        CheckId::ListFailure,
                        subject,
                        format!("{gr} not checked: {what} (an RBAC gap of nsguard's, not the namespace's)"),
                        remedy(fix, None),
                    );
                    f.severity = Severity::Advisory;
                    f
                }
                ListErrorClass::Controller => Finding::new(
                    CheckId::ListFailure,
                    subject,
                    format!("listing {gr} in {} fails; the namespace controller would fail too", facts.name),
                    remedy(
                        "fix what serves this resource (conversion webhook, aggregated API) before deleting",
                        format!("kubectl get {gr} -n {}", facts.name),
                    ),
                ),
                ListErrorClass::Gone | ListErrorClass::Own => return None,
            };
            Some(
                f.evidence(format!("{code}{}", lf.message)),
            )
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
    #[case::server_error(Some(500), "etcdserver: leader changed", Some(Severity::Blocking))]
    #[case::aggregated_api_down(Some(503), "service unavailable", Some(Severity::Blocking))]
    #[case::bad_gateway(Some(502), "bad gateway", Some(Severity::Blocking))]
    #[case::gateway_timeout(Some(504), "gateway timeout", Some(Severity::Blocking))]
    #[case::conversion(
        Some(500),
        "conversion webhook for example.com/v2 failed",
        Some(Severity::Blocking)
    )]
    #[case::conversion_without_status(None, "conversion webhook failed", Some(Severity::Blocking))]
    #[case::nsguards_own_rbac(Some(403), "forbidden", Some(Severity::Advisory))]
    #[case::nsguards_own_credentials(Some(401), "Unauthorized", Some(Severity::Advisory))]
    #[case::gone_since_discovery(Some(404), "not found", None)]
    #[case::throttled(Some(429), "too many requests", None)]
    #[case::api_server_shutting_down(Some(503), "apiserver is shutting down", None)]
    #[case::no_answer(None, "ServiceError: too many open files", None)]
    fn a_failing_list_blocks_only_when_the_controller_would_fail_too(
        #[case] code: Option<u16>,
        #[case] message: &str,
        #[case] severity: Option<Severity>,
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
            message: message.into(),
        });
        let found = check(&facts);
        assert_eq!(found.first().map(|f| f.severity), severity, "{found:?}");
        if let Some(f) = found.first() {
            assert!(f.summary.contains("widgets.example.com"), "{}", f.summary);
        }
    }
}
