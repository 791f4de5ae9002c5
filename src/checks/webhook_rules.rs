//! The webhook rule matcher: which `failurePolicy: Fail` webhooks intercept the writes the
//! deletion needs, for `hosts-webhook-backend`, `webhook-backend-unavailable`, the webhook
//! part of `admission-policy-refuses` and `nsguard delete`'s plan ([`hosted_hooks`]).
//!
//! Rules are matched as the API server matches them: operations, apiGroups, apiVersions (the
//! namespace controller deletes at the version discovery prefers, [`ResourceType::version`]),
//! resources with subresources, scope, namespaceSelector and objectSelector. With
//! `matchPolicy: Equivalent` (the default) a rule naming another version of the same resource
//! matches too; nsguard knows the versions of CRDs and of the core group, and for other types
//! says the webhook *may* intercept. A webhook's `matchConditions` are evaluated with CEL on
//! what nsguard holds of each object; what it cannot evaluate *may* intercept. A "may" is a
//! warning, never a block.
//!
//! [`ResourceType::version`]: crate::facts::ResourceType

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::{
    MatchCondition, RuleWithOperations, ServiceReference,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::admission_request;
use crate::checks::report::{
    Blocks, Finding, ObjectRef, Severity, Subject, WebhookConfig, WebhookKind,
};
use crate::facts::admission::Expr;
use crate::facts::{Facts, ResourceType, ServiceKey};

/// One webhook, validating or mutating, with what the checks need.
pub(super) struct Hook<'a> {
    pub(super) config: WebhookConfig,
    pub(super) name: &'a str,
    pub(super) fails_closed: bool,
    pub(super) service: Option<&'a ServiceReference>,
    pub(super) rules: &'a [RuleWithOperations],
    pub(super) namespace_selector: Option<&'a LabelSelector>,
    pub(super) object_selector: Option<&'a LabelSelector>,
    /// `matchPolicy: Exact`; absent means `Equivalent` in v1.
    pub(super) exact: bool,
    /// Its `matchConditions`.
    pub(super) match_conditions: &'a [MatchCondition],
}

/// One [`Hook`] per webhook of a configuration list; validating and mutating webhooks have
/// the same fields under different types.
macro_rules! hooks_of {
    ($out:ident, $configs:expr, $kind:expr) => {
        for c in $configs {
            for w in c.webhooks.iter().flatten() {
                $out.push(Hook {
                    config: WebhookConfig {
                        kind: $kind,
                        name: c.metadata.name.clone().unwrap_or_default(),
                    },
                    name: &w.name,
                    fails_closed: w.failure_policy.as_deref().unwrap_or("Fail") == "Fail",
                    service: w.client_config.service.as_ref(),
                    rules: w.rules.as_deref().unwrap_or_default(),
                    namespace_selector: w.namespace_selector.as_ref(),
                    object_selector: w.object_selector.as_ref(),
                    exact: w.match_policy.as_deref() == Some("Exact"),
                    match_conditions: w.match_conditions.as_deref().unwrap_or_default(),
                });
            }
        }
    };
}

/// Every webhook of every configuration.
pub(super) fn hooks(facts: &Facts) -> Vec<Hook<'_>> {
    let mut out = Vec::new();
    hooks_of!(
        out,
        &facts.cluster.validating_webhooks,
        WebhookKind::Validating
    );
    hooks_of!(out, &facts.cluster.mutating_webhooks, WebhookKind::Mutating);
    out
}

fn has(list: Option<&Vec<String>>, want: &str) -> bool {
    list.is_some_and(|l| l.iter().any(|x| x == "*" || x == want))
}

/// A request, as a webhook rule sees it.
struct Request<'a> {
    op: &'a str,
    group: &'a str,
    version: &'a str,
    resource: &'a str,
    namespaced: bool,
}

/// Whether `rule` matches `req`; with `any_version`, whatever the rule's apiVersions say.
fn rule_matches(rule: &RuleWithOperations, req: &Request<'_>, any_version: bool) -> bool {
    let resource = req.resource;
    let scope_ok = match rule.scope.as_deref() {
        None | Some("*") => true,
        Some("Namespaced") => req.namespaced,
        Some("Cluster") => !req.namespaced,
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
        && has(rule.operations.as_ref(), req.op)
        && has(rule.api_groups.as_ref(), req.group)
        && (any_version || has(rule.api_versions.as_ref(), req.version))
        && resource_ok
}

/// Whether a webhook intercepts a request, as far as nsguard can tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Match {
    /// It does not.
    No,
    /// It may: the reason nsguard cannot tell.
    May(String),
    /// It does.
    Yes,
}

/// The versions the API server serves `group`'s `resource` at, where nsguard knows them: the
/// core group serves v1 only; a CRD its `served` versions.
fn served_versions(facts: &Facts, group: &str, resource: &str) -> Option<Vec<String>> {
    if group.is_empty() {
        return Some(vec!["v1".into()]);
    }
    let plural = resource.split('/').next().unwrap_or(resource);
    facts
        .cluster
        .crds
        .iter()
        .find(|c| c.spec.group == group && c.spec.names.plural == plural)
        .map(|c| {
            c.spec
                .versions
                .iter()
                .filter(|v| v.served)
                .map(|v| v.name.clone())
                .collect()
        })
}

/// Whether `hook`'s rules select `req`, before its selectors and match conditions.
fn rules_match(facts: &Facts, hook: &Hook<'_>, req: &Request<'_>) -> Match {
    if hook.rules.iter().any(|r| rule_matches(r, req, false)) {
        return Match::Yes;
    }
    if hook.exact {
        return Match::No;
    }
    // matchPolicy Equivalent: the API server also tries the same resource at the other versions
    // it serves, and converts the object for the webhook.
    let other: Vec<&RuleWithOperations> = hook
        .rules
        .iter()
        .filter(|r| rule_matches(r, req, true))
        .collect();
    if other.is_empty() {
        return Match::No;
    }
    match served_versions(facts, req.group, req.resource) {
        Some(served) => {
            let equivalent = other.iter().any(|r| {
                served
                    .iter()
                    .any(|v| v != req.version && has(r.api_versions.as_ref(), v))
            });
            if equivalent { Match::Yes } else { Match::No }
        }
        None => Match::May(format!(
            "its rules name {} at another version than {}; with matchPolicy Equivalent the API server calls it if that version serves the same resource, which nsguard cannot tell",
            if req.group.is_empty() {
                "the core group"
            } else {
                req.group
            },
            req.version
        )),
    }
}

/// Whether the hook's rules select `req`; its match conditions are judged per object
/// ([`conditions_match`]), except on the namespace itself, where nsguard does not evaluate
/// them.
fn hook_matches(facts: &Facts, hook: &Hook<'_>, req: &Request<'_>) -> Match {
    match rules_match(facts, hook, req) {
        Match::Yes if !hook.match_conditions.is_empty() && !req.namespaced => Match::May(format!(
            "it has {} matchConditions, which nsguard does not evaluate on the namespace itself: it may not intercept this",
            hook.match_conditions.len()
        )),
        m => m,
    }
}

/// Whether the hook's `matchConditions` send write `w` to it (all true), skip it (one false)
/// or nsguard cannot tell (an expression it cannot evaluate, or an error: with `Fail` the API
/// server would then refuse the request, with `Ignore` skip the webhook).
fn conditions_match(
    facts: &Facts,
    hook: &Hook<'_>,
    w: &admission_request::WriteRequest<'_>,
) -> Match {
    if hook.match_conditions.is_empty() {
        return Match::Yes;
    }
    for c in hook.match_conditions {
        if let Some(why) = admission_request::unevaluable(
            &c.expression,
            w.user.is_some(),
            w.object.annotations.is_some(),
        ) {
            return Match::May(format!(
                "matchCondition {} was not evaluated: {why}",
                c.name
            ));
        }
    }
    let vars = admission_request::variables(facts, w);
    let mut error = None;
    for c in hook.match_conditions {
        match admission_request::run(&Expr::cached(&c.expression), &vars) {
            Ok(cel::Value::Bool(true)) => {}
            Ok(cel::Value::Bool(false)) => return Match::No,
            Ok(other) => error = Some(format!("matchCondition {} gives {other:?}", c.name)),
            Err(e) => error = Some(format!("matchCondition {}: {e}", c.name)),
        }
    }
    match error {
        None => Match::Yes,
        Some(e) => Match::May(e),
    }
}

/// A write the deletion needs of the namespace's content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum WriteKind {
    /// The namespace controller's DELETE of every object.
    Delete,
    /// A controller's UPDATE (or PATCH, admitted as UPDATE) removing its finalizer, of every
    /// object that carries one (built-in finalizers too: the job controller, the
    /// pvc-protection controller, the garbage collector remove theirs this way).
    RemoveFinalizer,
}

impl WriteKind {
    /// In words, for `n` objects of `gr`.
    pub(super) fn describe(self, gr: &str, n: usize) -> String {
        match self {
            WriteKind::Delete => format!("DELETE of {gr} ({n} here)"),
            WriteKind::RemoveFinalizer => {
                format!("the finalizer removal (UPDATE) of {gr} ({n} here with finalizers)")
            }
        }
    }

    /// The step of the deletion it is.
    pub(super) fn blocks(self) -> Blocks {
        match self {
            WriteKind::Delete => Blocks::Delete,
            WriteKind::RemoveFinalizer => Blocks::RemoveFinalizer,
        }
    }
}

/// Every resource type with content here whose DELETE, or whose finalizer removal, a hook
/// intercepts (surely or maybe), with how many of its objects the hook's object selector
/// matches; `labels` are the namespace's.
pub(super) fn intercepted_all<'f>(
    facts: &'f Facts,
    labels: &BTreeMap<String, String>,
    hook: &Hook<'_>,
) -> Vec<(&'f ResourceType, usize, Match, WriteKind)> {
    if !super::selector_matches(hook.namespace_selector, labels) {
        return Vec::new();
    }
    let mut out = Vec::new();
    for c in &facts.namespace.content {
        for (write, op) in [
            (WriteKind::Delete, "DELETE"),
            (WriteKind::RemoveFinalizer, "UPDATE"),
        ] {
            let req = Request {
                op,
                group: &c.resource.group,
                version: &c.resource.version,
                resource: &c.resource.resource,
                namespaced: true,
            };
            let matched = hook_matches(facts, hook, &req);
            if matched == Match::No {
                continue;
            }
            let mut objects = 0;
            let mut may: Option<String> = None;
            let mut removers = None;
            for o in &c.objects {
                if !super::selector_matches(hook.object_selector, &o.labels)
                    || (write == WriteKind::RemoveFinalizer && o.finalizers.is_empty())
                {
                    continue;
                }
                if hook.match_conditions.is_empty() {
                    objects += 1;
                    continue;
                }
                let requests = admission_request::writes(
                    c,
                    o,
                    removers.get_or_insert_with(|| admission_request::removers(facts, c)),
                );
                let wanted = requests.iter().filter(|r| match write {
                    WriteKind::Delete => r.finalizer.is_none(),
                    WriteKind::RemoveFinalizer => r.finalizer.is_some(),
                });
                let mut hit = Match::No;
                for r in wanted {
                    match conditions_match(facts, hook, r) {
                        Match::Yes => {
                            hit = Match::Yes;
                            break;
                        }
                        Match::May(why) => hit = Match::May(why),
                        Match::No => {}
                    }
                }
                match hit {
                    Match::Yes => objects += 1,
                    Match::May(why) => may = Some(why),
                    Match::No => {}
                }
            }
            let matched = match (matched, may) {
                (Match::Yes, Some(why)) if objects == 0 => {
                    objects = 1;
                    Match::May(why)
                }
                (m, _) => m,
            };
            if objects > 0 {
                out.push((&c.resource, objects, matched, write));
            }
        }
    }
    out
}

/// The resource type with content here that a hook intercepts (one it surely does first, a
/// DELETE before a finalizer removal, else one it may); `labels` are the namespace's.
pub(super) fn intercepted_content(
    facts: &Facts,
    labels: &BTreeMap<String, String>,
    hook: &Hook<'_>,
) -> Option<(String, usize, Match, WriteKind)> {
    let all = intercepted_all(facts, labels, hook);
    all.iter()
        .find(|(_, _, m, _)| *m == Match::Yes)
        .or_else(|| all.first())
        .map(|(r, n, m, w)| (r.group_resource(), *n, m.clone(), *w))
}

/// A `failurePolicy: Fail` webhook served from the namespace being deleted, and what of the
/// deletion it intercepts (surely or maybe): the input of `nsguard delete`'s plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostedHook {
    /// Its configuration.
    pub config: WebhookConfig,
    /// The webhook's Service (in this namespace).
    pub service: ServiceKey,
    /// Resource types with content here whose DELETE it intercepts.
    pub content: Vec<ResourceType>,
    /// It intercepts the namespace's own `finalize`/`status` updates: deleting content first
    /// cannot help.
    pub finalize: bool,
}

/// Every `Fail` webhook served from this namespace, with what it intercepts. The same
/// matching as `hosts-webhook-backend`.
pub fn hosted_hooks(facts: &Facts) -> Vec<HostedHook> {
    let labels = facts.labels();
    let mut out = Vec::new();
    for hook in hooks(facts) {
        let Some(svc) = hook.service.filter(|s| s.namespace == facts.name) else {
            continue;
        };
        if !hook.fails_closed {
            continue;
        }
        let finalize =
            selects_namespace(&labels, &hook) && intercepts_finalize(facts, &hook) != Match::No;
        out.push(HostedHook {
            config: hook.config.clone(),
            service: key(svc),
            content: intercepted_all(facts, &labels, &hook)
                .into_iter()
                .map(|(r, _, _, _)| r.clone())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect(),
            finalize,
        });
    }
    out
}

/// Whether every type is a custom resource (a CRD defines it): deleting those first leaves
/// the webhook's own workload (pods, Services, ConfigMaps) running to serve the deletes.
pub fn only_custom_resources(facts: &Facts, types: &[ResourceType]) -> bool {
    types.iter().all(|t| {
        facts
            .cluster
            .crds
            .iter()
            .any(|c| c.spec.group == t.group && c.spec.names.plural == t.resource)
    })
}

/// For requests on the Namespace object itself, both selectors are matched against its labels.
pub(super) fn selects_namespace(labels: &BTreeMap<String, String>, hook: &Hook<'_>) -> bool {
    super::selector_matches(hook.namespace_selector, labels)
        && super::selector_matches(hook.object_selector, labels)
}

/// Whether a hook intercepts the controller's `UPDATE namespaces/finalize` (or `/status`).
pub(super) fn intercepts_finalize(facts: &Facts, hook: &Hook<'_>) -> Match {
    let mut out = Match::No;
    for resource in ["namespaces/finalize", "namespaces/status"] {
        let req = Request {
            op: "UPDATE",
            group: "",
            version: "v1",
            resource,
            namespaced: false,
        };
        match hook_matches(facts, hook, &req) {
            Match::Yes => return Match::Yes,
            Match::May(why) => out = Match::May(why),
            Match::No => {}
        }
    }
    out
}

/// Marks a finding about a webhook that only may intercept as a warning, and says why.
pub(super) fn soften(mut f: Finding, matched: Match) -> Finding {
    if let Match::May(why) = matched {
        f.severity = Severity::Advisory;
        f.summary = format!("{} (may not apply)", f.summary);
        f = f.evidence(why);
    }
    f
}

/// The subject of a finding about `hook`.
pub(super) fn subject(hook: &Hook<'_>) -> Subject {
    Subject::Webhook {
        configuration: hook.config.clone(),
        webhook: hook.name.to_string(),
        service: hook.service.map(key),
    }
}

/// The configuration object of a finding about one of its webhooks.
pub(super) fn config_object(config: &WebhookConfig) -> ObjectRef {
    ObjectRef::cluster(config.kind.object_kind(), &config.name)
}

/// The Service a webhook calls.
pub(super) fn key(s: &ServiceReference) -> ServiceKey {
    ServiceKey {
        namespace: s.namespace.clone(),
        name: s.name.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures;
    use super::*;
    use crate::checks::{hosts_webhook_backend, webhook_backend_unavailable};
    use crate::facts::BackendState;
    use k8s_openapi::api::admissionregistration::v1::{MatchCondition, ValidatingWebhook};
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
        CustomResourceDefinition, CustomResourceDefinitionVersion,
    };
    use rstest::rstest;
    use std::sync::Arc;
    use std::time::Duration;

    const GRACE: Duration = Duration::from_secs(30);

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

    fn req<'a>(op: &'a str, resource: &'a str, namespaced: bool) -> Request<'a> {
        Request {
            op,
            group: "",
            version: "v1",
            resource,
            namespaced,
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
            rule_matches(
                &rule(ops, groups, res),
                &req("DELETE", resource, true),
                false
            ),
            expected
        );
    }

    #[test]
    fn finalize_subresource_is_matched_only_by_subresource_rules() {
        let plain = rule(&["UPDATE"], &[""], &["namespaces"]);
        let finalize = rule(&["UPDATE"], &[""], &["namespaces/finalize"]);
        let request = req("UPDATE", "namespaces/finalize", false);
        assert!(!rule_matches(&plain, &request, false));
        assert!(rule_matches(&finalize, &request, false));
    }

    /// Changes the one webhook the fixture made.
    fn tweak(facts: &mut Facts, f: impl FnOnce(&mut ValidatingWebhook)) {
        let cluster = Arc::get_mut(&mut facts.cluster).unwrap();
        f(&mut cluster.validating_webhooks[0].webhooks.as_mut().unwrap()[0]);
    }

    fn crd(group: &str, plural: &str, served: &[&str]) -> CustomResourceDefinition {
        let mut crd = CustomResourceDefinition::default();
        crd.spec.group = group.into();
        crd.spec.names.plural = plural.into();
        crd.spec.versions = served
            .iter()
            .map(|v| CustomResourceDefinitionVersion {
                name: v.to_string(),
                served: true,
                ..Default::default()
            })
            .collect();
        crd
    }

    // The content is listed (and deleted) at v1, the version discovery prefers.
    #[rstest]
    #[case::same_version("", &["v1"], None, None, Some(Severity::Blocking))]
    #[case::any_version("", &["*"], None, None, Some(Severity::Blocking))]
    #[case::core_has_no_other_version("", &["v2"], None, None, None)]
    #[case::exact_other_version("example.com", &["v2"], Some("Exact"), Some(&["v1", "v2"][..]), None)]
    #[case::equivalent_served_version("example.com", &["v2"], None, Some(&["v1", "v2"][..]), Some(Severity::Blocking))]
    #[case::equivalent_unserved_version("example.com", &["v3"], None, Some(&["v1", "v2"][..]), None)]
    #[case::equivalent_unknown_versions("apps.example.com", &["v2"], None, None, Some(Severity::Advisory))]
    fn api_versions_as_the_api_server_matches_them(
        #[case] group: &str,
        #[case] versions: &[&str],
        #[case] policy: Option<&str>,
        #[case] crd_versions: Option<&[&str]>,
        #[case] expected: Option<Severity>,
    ) {
        let mut facts = fixtures::facts("team-a")
            .with_content(group, "widgets", &[("w", &[])])
            .with_webhook(
                "guard",
                &["DELETE"],
                &["widgets"],
                ("sec", "hook"),
                BackendState::default(),
            )
            .build();
        tweak(&mut facts, |w| {
            let rule = &mut w.rules.as_mut().unwrap()[0];
            rule.api_groups = Some(vec![group.into()]);
            rule.api_versions = Some(versions.iter().map(|v| v.to_string()).collect());
            w.match_policy = policy.map(String::from);
        });
        if let Some(served) = crd_versions {
            Arc::get_mut(&mut facts.cluster)
                .unwrap()
                .crds
                .push(crd(group, "widgets", served));
        }
        let found = webhook_backend_unavailable::check(&facts, GRACE);
        assert_eq!(found.first().map(|f| f.severity), expected, "{found:?}");
        if expected == Some(Severity::Advisory) {
            assert!(
                found[0]
                    .evidence
                    .iter()
                    .any(|e| e.contains("matchPolicy Equivalent")),
                "{:?}",
                found[0].evidence
            );
        }
    }

    /// matchConditions evaluated with CEL for the namespace controller's DELETE: all true sends
    /// the request to the webhook (blocking), one false skips it (nothing), what nsguard cannot
    /// evaluate may (a warning that says why).
    #[rstest]
    #[case::true_is_intercepted(false, "true", Some(Severity::Blocking), "")]
    #[case::true_here(true, "true", Some(Severity::Blocking), "")]
    #[case::exempts_the_namespace_controller(
        false,
        "request.userInfo.username != 'system:serviceaccount:kube-system:namespace-controller'",
        None,
        ""
    )]
    #[case::on_labels_it_holds(
        false,
        "has(oldObject.metadata.labels) && 'app' in oldObject.metadata.labels",
        None,
        ""
    )]
    #[case::reads_the_spec(
        false,
        "oldObject.spec.x == 1",
        Some(Severity::Advisory),
        "was not evaluated"
    )]
    #[case::authorizer(
        true,
        "authorizer.requestResource.check('delete').allowed()",
        Some(Severity::Advisory),
        "authorizer"
    )]
    fn match_conditions_are_evaluated(
        #[case] here: bool,
        #[case] expression: &str,
        #[case] expected: Option<Severity>,
        #[case] why: &str,
    ) {
        let svc_ns = if here { "team-a" } else { "sec" };
        let mut facts = fixtures::facts("team-a")
            .with_content("", "configmaps", &[("cm", &[])])
            .with_webhook(
                "guard",
                &["DELETE"],
                &["configmaps"],
                (svc_ns, "hook"),
                BackendState::default(),
            )
            .build();
        tweak(&mut facts, |w| {
            w.match_conditions = Some(vec![MatchCondition {
                name: "cond".into(),
                expression: expression.into(),
            }]);
        });
        let found = if here {
            hosts_webhook_backend::check(&facts)
        } else {
            webhook_backend_unavailable::check(&facts, GRACE)
        };
        assert_eq!(found.first().map(|f| f.severity), expected, "{found:?}");
        if !why.is_empty() {
            assert!(
                found[0].evidence.iter().any(|e| e.contains(why)),
                "{:?}",
                found[0].evidence
            );
        }
    }

    // Now is 12:00:00; the grace is 30s.
}
