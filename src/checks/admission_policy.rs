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
use std::sync::{Arc, OnceLock};

use k8s_openapi::api::admissionregistration::v1::{MatchResources, NamedRuleWithOperations};
use regex::Regex;
use serde_json::{Value as Json, json};

use super::finalizer_ties::ties;
use crate::checks::report::{Blocks, CheckId, Finding, ObjectRef, Severity, remedy};
use crate::facts::admission::{AdmissionPolicy, Expr, PolicyBinding, env};
use crate::facts::controllers::{Identity, Liveness};
use crate::facts::{Content, Facts, ObjectFacts, finalizers};

/// The namespace controller's identity (kube-controller-manager with per-controller
/// credentials, as kubeadm and every managed offering run it).
const NAMESPACE_CONTROLLER: &str = "system:serviceaccount:kube-system:namespace-controller";

/// Who removes a finalizer Kubernetes itself handles.
fn built_in_remover(finalizer: &str) -> Option<&'static str> {
    Some(match finalizer {
        "kubernetes.io/pvc-protection" => {
            "system:serviceaccount:kube-system:pvc-protection-controller"
        }
        "batch.kubernetes.io/job-tracking" => "system:serviceaccount:kube-system:job-controller",
        "orphan" | "foregroundDeletion" => {
            "system:serviceaccount:kube-system:generic-garbage-collector"
        }
        "resource.kubernetes.io/delete-protection" => {
            "system:serviceaccount:kube-system:resource-claim-controller"
        }
        "service.kubernetes.io/load-balancer-cleanup" => {
            "system:serviceaccount:kube-system:service-controller"
        }
        _ => return None,
    })
}

/// `request.userInfo` for a user name: a ServiceAccount's requests carry its groups.
fn user_info(username: &str) -> Json {
    let mut groups = vec![];
    if let Some(rest) = username.strip_prefix("system:serviceaccount:")
        && let Some((ns, _)) = rest.split_once(':')
    {
        groups.push("system:serviceaccounts".to_string());
        groups.push(format!("system:serviceaccounts:{ns}"));
    }
    groups.push("system:authenticated".to_string());
    json!({"username": username, "uid": "", "groups": groups})
}

/// A write, as admission sees it.
struct Write<'a> {
    blocks: Blocks,
    /// In words: "the namespace controller's DELETE", "the removal of F".
    what: String,
    /// The user, when nsguard knows who makes it.
    user: Option<String>,
    operation: &'static str,
    content: &'a Content,
    object: &'a ObjectFacts,
    /// For a finalizer removal: which one.
    finalizer: Option<&'a str>,
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
fn rule_selects(rule: &NamedRuleWithOperations, w: &Write<'_>, exact: bool) -> bool {
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
    w: &Write<'_>,
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

/// Parts of the object nsguard holds: the metadata the index keeps.
const HELD: [&str; 7] = [
    ".apiVersion",
    ".kind",
    ".metadata.name",
    ".metadata.namespace",
    ".metadata.labels",
    ".metadata.finalizers",
    ".metadata.deletionTimestamp",
];

/// Whether a path into `object`/`oldObject` (`.metadata.labels`), followed by an index or
/// not, stays within what nsguard holds.
fn held(path: &str, indexed: bool) -> bool {
    if path.is_empty() || path == ".metadata" {
        // The whole object or its metadata, as a value or `has()` target; an index into them
        // (`oldObject['spec']`) may reach anything.
        return !indexed;
    }
    HELD.iter().any(|h| {
        path == *h
            || path
                .strip_prefix(h)
                .is_some_and(|rest| rest.starts_with('.'))
    })
}

/// Why an expression cannot be evaluated on what nsguard holds, if it cannot.
fn unevaluable(source: &str, user_known: bool) -> Option<String> {
    static OBJECT: OnceLock<Regex> = OnceLock::new();
    let object = OBJECT.get_or_init(|| {
        Regex::new(r"\b(oldObject|object)((?:\.[A-Za-z_][A-Za-z0-9_]*)*)(\s*\[)?")
            .expect("a valid pattern")
    });
    for c in object.captures_iter(source) {
        let path = c.get(2).map_or("", |m| m.as_str());
        if !held(path, c.get(3).is_some()) {
            return Some(format!(
                "it reads {}{}, which nsguard does not hold (it keeps only names, labels, finalizers and deletion timestamps)",
                c.get(1).map_or("", |m| m.as_str()),
                path
            ));
        }
    }
    if source.contains("authorizer") {
        return Some("it asks the authorizer, which nsguard does not evaluate".into());
    }
    if source.contains("params") {
        return Some("it reads parameters, which nsguard does not read".into());
    }
    if !user_known && source.contains("userInfo") {
        return Some(
            "it reads the requesting user, and nsguard does not know who removes this finalizer"
                .into(),
        );
    }
    None
}

fn object_json(facts: &Facts, c: &Content, o: &ObjectFacts, without: Option<&str>) -> Json {
    let r = &c.resource;
    let mut metadata = json!({"name": o.name, "namespace": facts.name});
    if !o.labels.is_empty() {
        metadata["labels"] = json!(o.labels);
    }
    let finalizers: Vec<&String> = o
        .finalizers
        .iter()
        .filter(|f| Some(f.as_str()) != without)
        .collect();
    if !finalizers.is_empty() {
        metadata["finalizers"] = json!(finalizers);
    }
    // A finalizer is removed after the namespace controller's DELETE marked the object.
    let deleted = o.deletion_timestamp.or(without.map(|_| facts.now));
    if let Some(t) = deleted {
        metadata["deletionTimestamp"] = json!(t.to_string());
    }
    json!({"apiVersion": r.api_version(), "kind": r.kind, "metadata": metadata})
}

fn request_json(facts: &Facts, w: &Write<'_>) -> Json {
    let r = &w.content.resource;
    let kind = json!({"group": r.group, "version": r.version, "kind": r.kind});
    let resource = json!({"group": r.group, "version": r.version, "resource": r.resource});
    let name = if w.operation == "DELETE" {
        String::new()
    } else {
        w.object.name.clone()
    };
    let options = if w.operation == "DELETE" {
        json!({"apiVersion": "meta.k8s.io/v1", "kind": "DeleteOptions", "propagationPolicy": "Background"})
    } else {
        json!({"apiVersion": "meta.k8s.io/v1", "kind": "UpdateOptions"})
    };
    json!({
        "kind": kind, "resource": resource, "subResource": "",
        "requestKind": kind, "requestResource": resource, "requestSubResource": "",
        "name": name, "namespace": facts.name, "operation": w.operation,
        "userInfo": w.user.as_deref().map(user_info).unwrap_or(Json::Null),
        "dryRun": false, "options": options,
    })
}

/// Runs `expr` with `vars`.
fn run(expr: &Expr, vars: &BTreeMap<&str, Json>) -> Result<cel::Value, String> {
    let program = expr
        .program
        .as_ref()
        .map_err(|e| format!("it does not compile here: {e}"))?;
    let mut ctx = cel::Context::with_env(env());
    for (k, v) in vars {
        let value = cel::to_value(v).map_err(|e| e.to_string())?;
        ctx.add_variable_from_value(*k, value);
    }
    program
        .execute(&ctx)
        .map_err(|e| format!("evaluating {:?}: {e}", expr.source))
}

/// What `policy` through `binding` does to write `w`.
fn judge(
    facts: &Facts,
    policy: &AdmissionPolicy,
    binding: &PolicyBinding,
    w: &Write<'_>,
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
        if let Some(why) = unevaluable(&e.source, w.user.is_some()) {
            return Answer::Unknown(why);
        }
    }
    let mut vars: BTreeMap<&str, Json> = BTreeMap::new();
    let old = object_json(facts, w.content, w.object, None);
    match w.finalizer {
        None => {
            vars.insert("object", Json::Null);
            vars.insert("oldObject", old);
        }
        Some(f) => {
            let mut old = old;
            old["metadata"]["deletionTimestamp"] =
                json!(w.object.deletion_timestamp.unwrap_or(facts.now).to_string());
            vars.insert("object", object_json(facts, w.content, w.object, Some(f)));
            vars.insert("oldObject", old);
        }
    }
    vars.insert("request", request_json(facts, w));
    vars.insert(
        "namespaceObject",
        serde_json::to_value(&facts.namespace.namespace).unwrap_or(Json::Null),
    );
    vars.insert("params", Json::Null);
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

/// The user that removes finalizer `f` from objects of `c`: the built-in controller, or the
/// live candidate tied to it.
fn remover(facts: &Facts, c: &Content, f: &str) -> Option<String> {
    if let Some(u) = built_in_remover(f) {
        return Some(u.to_string());
    }
    let rc = facts
        .namespace
        .controllers
        .get(&c.resource.group_resource())?;
    let expected: Vec<_> = rc.controllers.iter().map(|(e, _)| e).collect();
    let mut names: Vec<&str> = c
        .objects
        .iter()
        .flat_map(|o| o.finalizers.iter().map(String::as_str))
        .filter(|x| !finalizers::is_built_in(x))
        .collect();
    names.sort_unstable();
    names.dedup();
    let at = names.iter().position(|x| *x == f)?;
    let t = ties(&expected, &names, &c.resource.group);
    t[at].iter().find_map(|i| match &rc.controllers[*i] {
        (e, Liveness::Live(_)) => match &e.identity {
            Identity::ServiceAccount { namespace, name } => {
                Some(format!("system:serviceaccount:{namespace}:{name}"))
            }
            Identity::ControlPlane { name } => Some(name.clone()),
            Identity::ServiceAccounts { .. } => None,
        },
        _ => None,
    })
}

/// One refusal (or possible refusal), gathered over objects.
struct Refusal {
    policy: Arc<AdmissionPolicy>,
    binding: String,
    blocks: Blocks,
    what: String,
    resource: String,
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
        for o in &c.objects {
            let mut writes = vec![Write {
                blocks: Blocks::Delete,
                what: "the namespace controller's DELETE".into(),
                user: Some(NAMESPACE_CONTROLLER.into()),
                operation: "DELETE",
                content: c,
                object: o,
                finalizer: None,
            }];
            for f in &o.finalizers {
                writes.push(Write {
                    blocks: Blocks::RemoveFinalizer,
                    what: format!("the removal of finalizer {f}"),
                    user: remover(facts, c, f),
                    operation: "UPDATE",
                    content: c,
                    object: o,
                    finalizer: Some(f),
                });
            }
            for w in &writes {
                for p in &policies {
                    for b in p.bindings.iter().filter(|b| b.deny) {
                        let outcome = match judge(facts, p, b, w) {
                            Answer::Admits => continue,
                            Answer::Refuses(m) => Ok(m),
                            Answer::Unknown(why) => Err(why),
                        };
                        let resource = c.resource.group_resource();
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
    let mut f = match &v.outcome {
        Ok(message) => Finding::new(
            CheckId::AdmissionPolicyRefuses,
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
        .object(ObjectRef::cluster("ValidatingAdmissionPolicy", p))
        .object(ObjectRef::cluster(
            "ValidatingAdmissionPolicyBinding",
            &v.binding,
        ));
    for o in v.objects.iter().take(5) {
        f = f.object(ObjectRef::namespaced(&v.resource, ns, o));
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
                        .any(|o| o.kind == "ValidatingAdmissionPolicy")
                );
            }
        }
    }

    #[test]
    fn the_namespace_controller_deletes_by_collection_so_resource_names_never_match() {
        let spec = "  matchConstraints:\n    resourceRules:\n    - {apiGroups: [\"acc.example.com\"], apiVersions: [\"*\"], operations: [\"DELETE\"], resources: [\"gadgets\"], resourceNames: [g1]}\n  validations:\n  - {expression: \"false\"}\n";
        assert!(check(&facts_with(policy(spec, &["Deny"]))).is_empty());
    }
}
