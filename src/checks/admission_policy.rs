//! `admission-policy-refuses`: a ValidatingAdmissionPolicy that refuses a write the deletion
//! needs, evaluated in process as the API server would.
//!
//! The two writes, per object of the namespace's content:
//! - the namespace controller's DELETE (`request.name` is `""`: it deletes by collection;
//!   `object` is null, `oldObject` the object; the user is the namespace controller's
//!   ServiceAccount);
//! - for each finalizer, its remover's UPDATE taking it off (`object` without it, `oldObject`
//!   with it, both already marked deleted; the user is the finalizer's live controller, or
//!   the built-in controller that removes it).
//!
//! A policy applies through each binding whose `validationActions` include `Deny` when its
//! `matchConstraints` and the binding's `matchResources` select the request and every
//! `matchCondition` holds; a validation that evaluates to false then refuses: blocking, naming
//! the policy, the binding and the objects. What nsguard cannot evaluate is advisory ("may
//! refuse", with why): parameters (`paramKind`), `authorizer`, parts of the object nsguard does
//! not hold (it holds the metadata the index keeps: name, namespace, labels, finalizers,
//! deletion timestamp), a function the interpreter lacks, any runtime error (with
//! `failurePolicy: Fail`, which is the default, an error refuses too: the finding says so).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::admissionregistration::v1::{MatchResources, NamedRuleWithOperations};
use serde_json::Value as Json;

use super::admission_request::{WriteRequest, removers, run, unevaluable, variables, writes};
use crate::checks::Settings;
use crate::checks::registry::{Check, CheckEntry, Confirm, Stage};
use crate::checks::report::{
    Blocks, CheckId, Finding, GroupResource, ObjectKind, ObjectRef, Severity, Subject, remedy,
};
use crate::facts::Facts;
use crate::facts::admission::{AdmissionPolicy, PolicyBinding};

/// The `admission-policy-refuses` check.
pub(super) struct AdmissionPolicyRefuses;

impl Check for AdmissionPolicyRefuses {
    const ENTRY: CheckEntry = CheckEntry {
        name: "admission-policy-refuses",
        default: Severity::Blocking,
        blocks: Blocks::Delete,
        title: "A ValidatingAdmissionPolicy, through a binding whose validationActions include Deny, refuses a write the deletion needs (the namespace controller's DELETE of content here, or a controller's removal of its finalizer), evaluated in process with CEL as the API server would; what nsguard cannot evaluate (parameters, the authorizer, parts of objects it does not hold, functions its interpreter lacks, runtime errors) is advisory: it may refuse",
        remedy: "exempt the write in the policy (a match condition that skips the namespace controller, or updates of objects being deleted), remove the binding while the namespace is deleted, or delete the protected objects first in a way the policy allows",
        stage: Stage::Admission,
        risk: "whatever the policy protects is unprotected while its binding is changed; deleting protected objects by hand is what the policy guards against: confirm it is intended",
        confirm: Confirm::Content,
        on_discovery: false,
    };

    fn run(facts: &Facts, _settings: &Settings) -> Vec<Finding> {
        let mut found = check(facts);
        found.extend(super::webhook_may_refuse::check(facts));
        found
    }
}

/// What a policy does to one write.
enum Answer {
    /// Not selected, a match condition false, or every validation holds.
    Admits,
    /// A validation evaluates to false: the message.
    Refuses(String),
    /// nsguard cannot tell: why.
    Unknown(String),
}

fn has(list: Option<&Vec<String>>, want: &str) -> bool {
    list.is_some_and(|l| l.iter().any(|x| x == "*" || x == want))
}

/// Whether a rule selects the write's resource and operation. A rule with `resourceNames`
/// never selects the namespace controller's DELETE, whose request name is empty.
fn rule_selects(rule: &NamedRuleWithOperations, w: &WriteRequest<'_>, exact: bool) -> bool {
    let r = &w.content.resource;
    let scope_ok = matches!(rule.scope.as_deref(), None | Some("*") | Some("Namespaced"));
    let resource_ok = rule
        .resources
        .as_ref()
        .is_some_and(|rs| rs.iter().any(|x| x == "*" || *x == r.resource));
    let names_ok = match rule.resource_names.as_deref() {
        None | Some([]) => true,
        Some(names) => w.operation != "DELETE" && names.contains(&w.object.name),
    };
    scope_ok
        && resource_ok
        && names_ok
        && has(rule.operations.as_ref(), w.operation)
        && has(rule.api_groups.as_ref(), &r.group)
        && (!exact || has(rule.api_versions.as_ref(), &r.version))
}

/// Whether `m` selects the write; `empty_rules_select`: a binding's `matchResources` without
/// rules selects whatever its policy does.
fn selects(
    m: &MatchResources,
    w: &WriteRequest<'_>,
    ns_labels: &BTreeMap<String, String>,
    empty_rules_select: bool,
) -> bool {
    let exact = m.match_policy.as_deref() == Some("Exact");
    let rules = m.resource_rules.as_deref().unwrap_or_default();
    let included = if rules.is_empty() {
        empty_rules_select
    } else {
        rules.iter().any(|r| rule_selects(r, w, exact))
    };
    let excluded = m
        .exclude_resource_rules
        .iter()
        .flatten()
        .any(|r| rule_selects(r, w, exact));
    included
        && !excluded
        && super::selector_matches(m.namespace_selector.as_ref(), ns_labels)
        && super::selector_matches(m.object_selector.as_ref(), &w.object.labels)
}

/// What `policy` through `binding` does to write `w`.
fn judge(
    facts: &Facts,
    policy: &AdmissionPolicy,
    binding: &PolicyBinding,
    w: &WriteRequest<'_>,
) -> Answer {
    let ns_labels = facts.labels();
    let Some(constraints) = &policy.constraints else {
        return Answer::Admits;
    };
    if !selects(constraints, w, &ns_labels, false) {
        return Answer::Admits;
    }
    if let Some(m) = &binding.match_resources
        && !selects(m, w, &ns_labels, true)
    {
        return Answer::Admits;
    }
    if policy.params || binding.params {
        return Answer::Unknown("it takes parameters, which nsguard does not read".into());
    }
    let sources = policy
        .match_conditions
        .iter()
        .map(|(_, e)| e)
        .chain(policy.variables.iter().map(|(_, e)| e))
        .chain(policy.validations.iter().map(|v| &v.expression));
    for e in sources {
        if let Some(why) = unevaluable(&e.source, w.user.is_some(), w.object.annotations.is_some())
        {
            return Answer::Unknown(why);
        }
    }
    let mut vars = variables(facts, w);
    for (name, e) in &policy.match_conditions {
        match run(e, &vars) {
            Ok(cel::Value::Bool(true)) => {}
            Ok(cel::Value::Bool(false)) => return Answer::Admits,
            Ok(other) => {
                return Answer::Unknown(format!(
                    "match condition {name} gives {other:?}, not a bool"
                ));
            }
            Err(e) if policy.fails_closed => return Answer::Unknown(e),
            // failurePolicy Ignore: an error skips the policy.
            Err(_) => return Answer::Admits,
        }
    }
    let mut variables = serde_json::Map::new();
    for (name, e) in &policy.variables {
        vars.insert("variables", Json::Object(variables.clone()));
        match run(e, &vars).and_then(|v| v.json().map_err(|e| e.to_string())) {
            Ok(v) => {
                variables.insert(name.clone(), v);
            }
            Err(e) => return Answer::Unknown(format!("variable {name}: {e}")),
        }
    }
    vars.insert("variables", Json::Object(variables));
    for v in &policy.validations {
        match run(&v.expression, &vars) {
            Ok(cel::Value::Bool(true)) => {}
            Ok(cel::Value::Bool(false)) => {
                let message = v
                    .message_expression
                    .as_ref()
                    .and_then(|m| match run(m, &vars) {
                        Ok(cel::Value::String(s)) => Some(s.to_string()),
                        _ => None,
                    })
                    .or_else(|| v.message.clone())
                    .unwrap_or_else(|| format!("failed expression: {}", v.expression.source));
                return Answer::Refuses(message);
            }
            Ok(other) => {
                return Answer::Unknown(format!(
                    "validation {:?} gives {other:?}, not a bool",
                    v.expression.source
                ));
            }
            Err(e) if policy.fails_closed => return Answer::Unknown(e),
            Err(_) => {}
        }
    }
    Answer::Admits
}

/// One refusal (or possible refusal), gathered over objects.
struct Refusal {
    policy: Arc<AdmissionPolicy>,
    binding: String,
    blocks: Blocks,
    what: String,
    resource: GroupResource,
    objects: Vec<String>,
    outcome: Result<String, String>,
}

pub(super) fn check(facts: &Facts) -> Vec<Finding> {
    let mut verdicts: Vec<Refusal> = Vec::new();
    let policies: Vec<&Arc<AdmissionPolicy>> = facts
        .cluster
        .admission_policies
        .iter()
        .filter(|p| p.bindings.iter().any(|b| b.deny))
        .collect();
    if policies.is_empty() {
        return Vec::new();
    }
    for c in &facts.namespace.content {
        let removers = removers(facts, c);
        for o in &c.objects {
            let writes = writes(c, o, &removers);
            for w in &writes {
                for p in &policies {
                    for b in p.bindings.iter().filter(|b| b.deny) {
                        let outcome = match judge(facts, p, b, w) {
                            Answer::Admits => continue,
                            Answer::Refuses(m) => Ok(m),
                            Answer::Unknown(why) => Err(why),
                        };
                        let resource = GroupResource::from(&c.resource);
                        match verdicts.iter_mut().find(|v| {
                            Arc::ptr_eq(&v.policy, p)
                                && v.binding == b.name
                                && v.what == w.what
                                && v.resource == resource
                                && v.outcome.is_ok() == outcome.is_ok()
                        }) {
                            Some(v) => v.objects.push(o.name.clone()),
                            None => verdicts.push(Refusal {
                                policy: (*p).clone(),
                                binding: b.name.clone(),
                                blocks: w.blocks,
                                what: w.what.clone(),
                                resource,
                                objects: vec![o.name.clone()],
                                outcome,
                            }),
                        }
                    }
                }
            }
        }
    }
    verdicts.into_iter().map(|v| finding(facts, v)).collect()
}

fn finding(facts: &Facts, v: Refusal) -> Finding {
    let ns = &facts.name;
    let p = &v.policy.name;
    let shown: Vec<&str> = v.objects.iter().take(3).map(String::as_str).collect();
    let more = v.objects.len().saturating_sub(shown.len());
    let list = if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    };
    let fix = remedy(
        format!(
            "exempt this write in ValidatingAdmissionPolicy {p} (for example a match condition that skips {}), or remove binding {} while the namespace is deleted, or delete the {} objects first in a way the policy allows",
            if v.blocks == Blocks::Delete {
                "the namespace controller's user system:serviceaccount:kube-system:namespace-controller"
            } else {
                "updates of objects being deleted"
            },
            v.binding,
            v.resource
        ),
        format!(
            "kubectl delete validatingadmissionpolicybinding {}",
            v.binding
        ),
    );
    let subject = Subject::PolicyBinding {
        policy: p.clone(),
        binding: v.binding.clone(),
        resource: v.resource.clone(),
    };
    let mut f = match &v.outcome {
        Ok(message) => Finding::new(
            CheckId::AdmissionPolicyRefuses,
            subject,
            format!(
                "ValidatingAdmissionPolicy {p} (binding {}) refuses {} of {} ({} here): {message}",
                v.binding,
                v.what,
                v.resource,
                v.objects.len()
            ),
            fix,
        )
        .evidence(format!("refused objects: {list}"))
        .evidence(format!(
            "the API server would answer: ValidatingAdmissionPolicy '{p}' with binding '{}' denied request: {message}",
            v.binding
        )),
        Err(why) => {
            let mut f = Finding::new(
                CheckId::AdmissionPolicyRefuses,
                subject,
                format!(
                    "ValidatingAdmissionPolicy {p} (binding {}) may refuse {} of {} ({} here): not evaluated: {why}",
                    v.binding,
                    v.what,
                    v.resource,
                    v.objects.len()
                ),
                fix,
            )
            .evidence(format!("objects: {list}"));
            if v.policy.fails_closed {
                f = f.evidence(
                    "its failurePolicy is Fail: an error evaluating it refuses the request too",
                );
            }
            f.severity = Severity::Advisory;
            f
        }
    };
    f = f
        .blocks(v.blocks)
        .object(ObjectRef::cluster(ObjectKind::ValidatingAdmissionPolicy, p))
        .object(ObjectRef::cluster(
            ObjectKind::ValidatingAdmissionPolicyBinding,
            &v.binding,
        ));
    for o in v.objects.iter().take(5) {
        f = f.object(ObjectRef::content(&v.resource, ns, o));
    }
    f
}

#[cfg(test)]
mod tests {
    use super::super::fixtures;
    use super::*;
    use k8s_openapi::api::admissionregistration::v1::{
        ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
        ValidatingAdmissionPolicyBindingSpec,
    };
    use rstest::rstest;

    /// A policy (in YAML, as an admin writes it) bound with `actions`.
    fn policy(spec: &str, actions: &[&str]) -> Arc<AdmissionPolicy> {
        let p: ValidatingAdmissionPolicy = serde_saphyr::from_str(&format!(
            "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicy\nmetadata: {{name: protect}}\nspec:\n{spec}"
        ))
        .expect("policy YAML");
        let b = ValidatingAdmissionPolicyBinding {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("protect-binding".into()),
                ..Default::default()
            },
            spec: ValidatingAdmissionPolicyBindingSpec {
                policy_name: "protect".into(),
                validation_actions: actions.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            },
        };
        Arc::new(AdmissionPolicy::distil(&p, &[b]).expect("bound"))
    }

    const ON_DELETE: &str = "  matchConstraints:\n    resourceRules:\n    - {apiGroups: [\"acc.example.com\"], apiVersions: [\"*\"], operations: [\"DELETE\"], resources: [\"gadgets\"]}\n";
    const ON_UPDATE: &str = "  matchConstraints:\n    resourceRules:\n    - {apiGroups: [\"acc.example.com\"], apiVersions: [\"*\"], operations: [\"UPDATE\"], resources: [\"gadgets\"]}\n";

    fn facts_with(p: Arc<AdmissionPolicy>) -> Facts {
        let mut facts = fixtures::facts("team-a")
            .with_content(
                "acc.example.com",
                "gadgets",
                &[("g1", &[]), ("g2", &["acc.example.com/cleanup"])],
            )
            .build();
        facts.namespace.content[0].objects[0]
            .labels
            .insert("protected".into(), "true".into());
        std::sync::Arc::make_mut(&mut facts.cluster)
            .admission_policies
            .push(p);
        facts
    }

    #[rstest]
    #[case::refuses_protected_deletes(ON_DELETE, "  validations:\n  - {expression: \"!has(oldObject.metadata.labels) || !('protected' in oldObject.metadata.labels)\", message: protected}\n", &["Deny"], Some((Severity::Blocking, Blocks::Delete, "refuses the namespace controller's DELETE of gadgets.acc.example.com (1 here): protected")))]
    #[case::warn_only_binding(ON_DELETE, "  validations:\n  - {expression: \"false\"}\n", &["Warn", "Audit"], None)]
    #[case::exempts_the_namespace_controller(ON_DELETE, "  matchConditions:\n  - {name: not-gc, expression: \"request.userInfo.username != 'system:serviceaccount:kube-system:namespace-controller'\"}\n  validations:\n  - {expression: \"false\"}\n", &["Deny"], None)]
    #[case::reads_the_spec(ON_DELETE, "  validations:\n  - {expression: \"oldObject.spec.keep != true\"}\n", &["Deny"], Some((Severity::Advisory, Blocks::Delete, "not evaluated: it reads oldObject.spec.keep")))]
    #[case::reads_annotations(ON_DELETE, "  validations:\n  - {expression: \"!('keep' in oldObject.metadata.annotations)\"}\n", &["Deny"], Some((Severity::Advisory, Blocks::Delete, "oldObject.metadata.annotations")))]
    #[case::authorizer(ON_DELETE, "  validations:\n  - {expression: \"authorizer.group('x').resource('y').check('delete').allowed()\"}\n", &["Deny"], Some((Severity::Advisory, Blocks::Delete, "authorizer")))]
    #[case::refuses_finalizer_removal(ON_UPDATE, "  validations:\n  - {expression: \"has(object.metadata.finalizers) && size(object.metadata.finalizers) >= size(oldObject.metadata.finalizers)\", message: finalizers are kept}\n", &["Deny"], Some((Severity::Blocking, Blocks::RemoveFinalizer, "refuses the removal of finalizer acc.example.com/cleanup of gadgets.acc.example.com (1 here): finalizers are kept")))]
    #[case::message_expression(ON_DELETE, "  validations:\n  - {expression: \"false\", messageExpression: \"'no deleting ' + oldObject.metadata.name\"}\n", &["Deny"], Some((Severity::Blocking, Blocks::Delete, "no deleting g")))]
    #[case::unknown_function(ON_DELETE, "  validations:\n  - {expression: \"quantity('1Gi').isGreaterThan(quantity('1Mi'))\"}\n", &["Deny"], Some((Severity::Advisory, Blocks::Delete, "not evaluated")))]
    fn policies(
        #[case] constraints: &str,
        #[case] body: &str,
        #[case] actions: &[&str],
        #[case] want: Option<(Severity, Blocks, &str)>,
    ) {
        let facts = facts_with(policy(&format!("{constraints}{body}"), actions));
        let found = check(&facts);
        match want {
            None => assert!(found.is_empty(), "{found:?}"),
            Some((severity, blocks, text)) => {
                assert!(!found.is_empty(), "nothing found");
                let f = &found[0];
                assert_eq!((f.severity, f.blocks), (severity, blocks), "{f:?}");
                assert!(f.summary.contains(text), "{}", f.summary);
                assert!(
                    f.objects
                        .iter()
                        .any(|o| o.kind == ObjectKind::ValidatingAdmissionPolicy)
                );
                assert!(
                    matches!(&f.subject, Subject::PolicyBinding { resource, .. } if resource.to_string() == "gadgets.acc.example.com"),
                    "{:?}",
                    f.subject
                );
            }
        }
    }

    #[test]
    fn annotations_are_judged_once_read_and_only_then() {
        let spec = format!(
            "{ON_DELETE}  validations:\n  - {{expression: \"!has(oldObject.metadata.annotations) || !('keep' in oldObject.metadata.annotations)\", message: kept}}\n"
        );
        let mut facts = facts_with(policy(&spec, &["Deny"]));
        // As the index holds them: not read, so not evaluated.
        let found = check(&facts);
        assert_eq!(found[0].severity, Severity::Advisory, "{found:?}");
        assert_eq!(
            crate::facts::admission::annotations_wanted(&facts.cluster, &facts.namespace.content)
                .len(),
            1
        );
        // As the review reads them for this policy.
        for (i, o) in facts.namespace.content[0].objects.iter_mut().enumerate() {
            o.annotations = Some(if i == 0 {
                [("keep".to_string(), "yes".to_string())].into()
            } else {
                Default::default()
            });
        }
        let found = check(&facts);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].severity, Severity::Blocking);
        assert!(
            found[0].summary.contains("(1 here): kept"),
            "{}",
            found[0].summary
        );
    }

    #[test]
    fn the_namespace_controller_deletes_by_collection_so_resource_names_never_match() {
        let spec = "  matchConstraints:\n    resourceRules:\n    - {apiGroups: [\"acc.example.com\"], apiVersions: [\"*\"], operations: [\"DELETE\"], resources: [\"gadgets\"], resourceNames: [g1]}\n  validations:\n  - {expression: \"false\"}\n";
        assert!(check(&facts_with(policy(spec, &["Deny"]))).is_empty());
    }
}
