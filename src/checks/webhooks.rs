//! Webhooks the deletion depends on:
//! - `hosts-webhook-backend`: a `Fail` webhook whose Service lives in this namespace and that
//!   intercepts the deletion's own calls (DELETE of content here, or UPDATE of
//!   `namespaces/finalize` or `namespaces/status`). Its pods go first; then its calls fail.
//! - `webhook-backend-unavailable`: a `Fail` webhook matching DELETE of content present here
//!   whose Service is missing or has no ready endpoints.

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::{RuleWithOperations, ServiceReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::facts::{Facts, ServiceKey};
use crate::report::{CheckId, Finding, ObjectRef, remedy};

/// One webhook, validating or mutating, with what the checks need.
struct Hook<'a> {
    config_kind: &'static str,
    config: String,
    name: &'a str,
    fails_closed: bool,
    service: Option<&'a ServiceReference>,
    rules: &'a [RuleWithOperations],
    namespace_selector: Option<&'a LabelSelector>,
    object_selector: Option<&'a LabelSelector>,
}

/// One [`Hook`] per webhook of a configuration list; validating and mutating webhooks have
/// the same fields under different types.
macro_rules! hooks_of {
    ($out:ident, $configs:expr, $kind:literal) => {
        for c in $configs {
            for w in c.webhooks.iter().flatten() {
                $out.push(Hook {
                    config_kind: $kind,
                    config: c.metadata.name.clone().unwrap_or_default(),
                    name: &w.name,
                    fails_closed: w.failure_policy.as_deref().unwrap_or("Fail") == "Fail",
                    service: w.client_config.service.as_ref(),
                    rules: w.rules.as_deref().unwrap_or_default(),
                    namespace_selector: w.namespace_selector.as_ref(),
                    object_selector: w.object_selector.as_ref(),
                });
            }
        }
    };
}

fn hooks(facts: &Facts) -> Vec<Hook<'_>> {
    let mut out = Vec::new();
    hooks_of!(
        out,
        &facts.cluster.validating_webhooks,
        "ValidatingWebhookConfiguration"
    );
    hooks_of!(
        out,
        &facts.cluster.mutating_webhooks,
        "MutatingWebhookConfiguration"
    );
    out
}

fn has(list: Option<&Vec<String>>, want: &str) -> bool {
    list.is_some_and(|l| l.iter().any(|x| x == "*" || x == want))
}

fn rule_matches(
    rule: &RuleWithOperations,
    op: &str,
    group: &str,
    resource: &str,
    namespaced: bool,
) -> bool {
    let scope_ok = match rule.scope.as_deref() {
        None | Some("*") => true,
        Some("Namespaced") => namespaced,
        Some("Cluster") => !namespaced,
        Some(_) => false,
    };
    let resource_ok = rule.resources.as_ref().is_some_and(|rs| {
        rs.iter().any(|r| {
            r == "*/*"
                || r == resource
                || (r == "*" && !resource.contains('/'))
                || r.split_once('/').is_some_and(|(a, b)| {
                    resource
                        .split_once('/')
                        .is_some_and(|(x, y)| (a == "*" || a == x) && (b == "*" || b == y))
                })
        })
    });
    scope_ok
        && has(rule.operations.as_ref(), op)
        && has(rule.api_groups.as_ref(), group)
        && resource_ok
}

/// The first resource type with content here that a hook intercepts on DELETE; `labels` are
/// the namespace's.
fn intercepted_content(
    facts: &Facts,
    labels: &BTreeMap<String, String>,
    hook: &Hook<'_>,
) -> Option<(String, usize)> {
    if !super::selector_matches(hook.namespace_selector, labels) {
        return None;
    }
    facts.namespace.content.iter().find_map(|c| {
        let matched = hook
            .rules
            .iter()
            .any(|r| rule_matches(r, "DELETE", &c.resource.group, &c.resource.resource, true));
        let objects = c
            .objects
            .iter()
            .filter(|o| super::selector_matches(hook.object_selector, &o.labels))
            .count();
        (matched && objects > 0).then(|| (c.resource.group_resource(), objects))
    })
}

/// For requests on the Namespace object itself, both selectors are matched against its labels.
fn selects_namespace(labels: &BTreeMap<String, String>, hook: &Hook<'_>) -> bool {
    super::selector_matches(hook.namespace_selector, labels)
        && super::selector_matches(hook.object_selector, labels)
}

fn intercepts_finalize(hook: &Hook<'_>) -> bool {
    hook.rules.iter().any(|r| {
        rule_matches(r, "UPDATE", "", "namespaces/finalize", false)
            || rule_matches(r, "UPDATE", "", "namespaces/status", false)
    })
}

fn key(s: &ServiceReference) -> ServiceKey {
    ServiceKey {
        namespace: s.namespace.clone(),
        name: s.name.clone(),
    }
}

pub(super) fn hosts_backend(facts: &Facts) -> Vec<Finding> {
    let labels = facts.labels();
    let mut out = Vec::new();
    for hook in hooks(facts) {
        let Some(svc) = hook.service.filter(|s| s.namespace == facts.name) else {
            continue;
        };
        if !hook.fails_closed {
            continue;
        }
        let what = if let Some((gr, n)) = intercepted_content(facts, &labels, &hook) {
            format!("DELETE of {gr} ({n} here)")
        } else if intercepts_finalize(&hook) && selects_namespace(&labels, &hook) {
            "the namespace's finalize/status updates".to_string()
        } else {
            continue;
        };
        out.push(
            Finding::new(
                CheckId::HostsWebhookBackend,
                format!("webhook {} (failurePolicy Fail) intercepts {what} but is served from this namespace", hook.name),
                remedy(
                    format!("delete {} {} before the namespace, or set its failurePolicy to Ignore", hook.config_kind, hook.config),
                    format!("kubectl delete {} {}", hook.config_kind.to_lowercase(), hook.config),
                ),
            )
            .object(ObjectRef::cluster(hook.config_kind, &hook.config))
            .object(ObjectRef::namespaced("Service", &svc.namespace, &svc.name))
            .evidence("its pods are deleted first; every call it then gets fails and the deletion cannot finish"),
        );
    }
    out
}

pub(super) fn backend_unavailable(facts: &Facts) -> Vec<Finding> {
    let labels = facts.labels();
    let mut out = Vec::new();
    for hook in hooks(facts) {
        let Some(svc) = hook.service else { continue };
        if !hook.fails_closed {
            continue;
        }
        let key = key(svc);
        let state = facts
            .cluster
            .backends
            .get(&key)
            .cloned()
            .unwrap_or_default();
        if state.reachable() {
            continue;
        }
        let Some((gr, n)) = intercepted_content(facts, &labels, &hook) else {
            continue;
        };
        let why = if state.exists {
            format!("Service {key} has no ready endpoints")
        } else {
            format!("Service {key} does not exist")
        };
        out.push(
            Finding::new(
                CheckId::WebhookBackendUnavailable,
                format!("webhook {} (failurePolicy Fail) intercepts DELETE of {gr} ({n} here) and is down: {why}", hook.name),
                remedy(
                    format!("restore Service {key}, or delete {} {} if it is no longer used", hook.config_kind, hook.config),
                    format!("kubectl delete {} {}", hook.config_kind.to_lowercase(), hook.config),
                ),
            )
            .object(ObjectRef::cluster(hook.config_kind, &hook.config))
            .object(ObjectRef::namespaced("Service", &key.namespace, &key.name))
            .evidence(why),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::fixtures;
    use super::*;
    use crate::facts::BackendState;
    use rstest::rstest;

    const UP: BackendState = BackendState {
        exists: true,
        ready_endpoints: 2,
        external: false,
    };

    #[rstest]
    #[case::missing(BackendState::default(), 1)]
    #[case::no_endpoints(BackendState { exists: true, ..Default::default() }, 1)]
    #[case::ready(UP, 0)]
    #[case::external_name(BackendState { exists: true, external: true, ..Default::default() }, 0)]
    fn a_down_webhook_on_delete_of_present_content(
        #[case] backend: BackendState,
        #[case] expected: usize,
    ) {
        let facts = fixtures::facts("team-a")
            .with_content("", "configmaps", &[("cm", &[])])
            .with_webhook(
                "guard",
                &["DELETE"],
                &["configmaps"],
                ("sec", "hook"),
                backend,
            )
            .build();
        let found = backend_unavailable(&facts);
        assert_eq!(found.len(), expected, "{found:?}");
    }

    #[test]
    fn a_down_webhook_on_types_not_present_here_does_not_matter() {
        let facts = fixtures::facts("team-a")
            .with_content("", "configmaps", &[("cm", &[])])
            .with_webhook(
                "guard",
                &["DELETE"],
                &["secrets"],
                ("sec", "hook"),
                BackendState::default(),
            )
            .build();
        assert!(backend_unavailable(&facts).is_empty());
    }

    #[rstest]
    #[case::content_here(&["DELETE"], &["configmaps"], "team-a", true)]
    #[case::finalize(&["UPDATE"], &["namespaces/finalize"], "team-a", true)]
    #[case::served_elsewhere(&["DELETE"], &["configmaps"], "sec", false)]
    #[case::unrelated(&["CREATE"], &["pods"], "team-a", false)]
    fn a_webhook_served_from_the_namespace_it_must_admit(
        #[case] ops: &[&str],
        #[case] resources: &[&str],
        #[case] svc_ns: &str,
        #[case] found: bool,
    ) {
        let facts = fixtures::facts("team-a")
            .with_content("", "configmaps", &[("cm", &[])])
            .with_webhook("guard", ops, resources, (svc_ns, "hook"), UP)
            .build();
        let out = hosts_backend(&facts);
        assert_eq!(!out.is_empty(), found, "{out:?}");
        if found {
            assert!(
                out[0]
                    .remedy
                    .command
                    .as_deref()
                    .unwrap()
                    .contains("kubectl delete validatingwebhookconfiguration guard")
            );
        }
    }

    fn rule(ops: &[&str], groups: &[&str], resources: &[&str]) -> RuleWithOperations {
        let v = |x: &[&str]| Some(x.iter().map(|s| s.to_string()).collect());
        RuleWithOperations {
            operations: v(ops),
            api_groups: v(groups),
            api_versions: v(&["*"]),
            resources: v(resources),
            scope: None,
        }
    }

    #[rstest]
    #[case(&["DELETE"], &[""], &["configmaps"], "configmaps", true)]
    #[case(&["*"], &["*"], &["*"], "configmaps", true)]
    #[case(&["CREATE"], &[""], &["configmaps"], "configmaps", false)]
    #[case(&["DELETE"], &["apps"], &["configmaps"], "configmaps", false)]
    #[case(&["DELETE"], &[""], &["*"], "pods/status", false)]
    #[case(&["DELETE"], &[""], &["*/*"], "pods/status", true)]
    fn rules(
        #[case] ops: &[&str],
        #[case] groups: &[&str],
        #[case] res: &[&str],
        #[case] resource: &str,
        #[case] expected: bool,
    ) {
        assert_eq!(
            rule_matches(&rule(ops, groups, res), "DELETE", "", resource, true),
            expected
        );
    }

    #[test]
    fn finalize_subresource_is_matched_only_by_subresource_rules() {
        let plain = rule(&["UPDATE"], &[""], &["namespaces"]);
        let finalize = rule(&["UPDATE"], &[""], &["namespaces/finalize"]);
        assert!(!rule_matches(
            &plain,
            "UPDATE",
            "",
            "namespaces/finalize",
            false
        ));
        assert!(rule_matches(
            &finalize,
            "UPDATE",
            "",
            "namespaces/finalize",
            false
        ));
    }
}
