//! A write of the deletion as admission sees it, and CEL run over it: what
//! `admission-policy-refuses` evaluates policies against and `webhooks` evaluates
//! `matchConditions` against. The object is presented as the live index holds it (metadata:
//! name, namespace, labels, finalizers, deletion timestamp); an expression that reads more is
//! not evaluated, never guessed.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use regex::Regex;
use serde_json::{Value as Json, json};

use super::finalizer_ties::ties;
use crate::checks::report::Blocks;
use crate::facts::admission::{Expr, env};
use crate::facts::controllers::{Identity, Liveness};
use crate::facts::{Content, Facts, ObjectFacts, finalizers};

/// The namespace controller's identity (kube-controller-manager with per-controller
/// credentials, as kubeadm and every managed offering run it).
pub(super) const NAMESPACE_CONTROLLER: &str =
    "system:serviceaccount:kube-system:namespace-controller";

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
pub(super) struct WriteRequest<'a> {
    pub(super) blocks: Blocks,
    /// In words: "the namespace controller's DELETE", "the removal of F".
    pub(super) what: String,
    /// The user, when nsguard knows who makes it.
    pub(super) user: Option<String>,
    pub(super) operation: &'static str,
    pub(super) content: &'a Content,
    pub(super) object: &'a ObjectFacts,
    /// For a finalizer removal: which one.
    pub(super) finalizer: Option<&'a str>,
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
pub(super) fn unevaluable(
    source: &str,
    user_known: bool,
    annotations_known: bool,
) -> Option<String> {
    static OBJECT: OnceLock<Regex> = OnceLock::new();
    let object = OBJECT.get_or_init(|| {
        Regex::new(r"\b(oldObject|object)((?:\.[A-Za-z_][A-Za-z0-9_]*)*)(\s*\[)?")
            .expect("a valid pattern")
    });
    for c in object.captures_iter(source) {
        let path = c.get(2).map_or("", |m| m.as_str());
        let annotations = annotations_known
            && (path == ".metadata.annotations" || path.starts_with(".metadata.annotations."));
        if !annotations && !held(path, c.get(3).is_some()) {
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
    if let Some(a) = o.annotations.as_ref().filter(|a| !a.is_empty()) {
        metadata["annotations"] = json!(a);
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

fn request_json(facts: &Facts, w: &WriteRequest<'_>) -> Json {
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

/// Runs `expr` with `vars`, within the thread's CEL budget (see
/// [`crate::facts::admission::budget`]): a cut-off evaluation is an error saying so.
pub(super) fn run(expr: &Expr, vars: &BTreeMap<&str, Json>) -> Result<cel::Value, String> {
    let ctx = context(vars)?;
    expr.evaluate(&ctx).map_err(|e| e.to_string())
}

/// A CEL context holding `vars`, to evaluate several expressions in.
pub(super) fn context(
    vars: &BTreeMap<&str, Json>,
) -> Result<cel::Context<'static, 'static>, String> {
    let mut ctx = cel::Context::with_env(env());
    for (k, v) in vars {
        let value = cel::to_value(v).map_err(|e| e.to_string())?;
        ctx.add_variable_from_value(*k, value);
    }
    Ok(ctx)
}

/// For each finalizer on the objects of `c`, the user that removes it: the built-in controller,
/// or the live candidate tied to it (`None`: nsguard does not know who). Computed once per type.
pub(super) fn removers(facts: &Facts, c: &Content) -> BTreeMap<String, Option<String>> {
    let mut names: Vec<&str> = c
        .objects
        .iter()
        .flat_map(|o| o.finalizers.iter().map(String::as_str))
        .collect();
    names.sort_unstable();
    names.dedup();
    let (built_in, custom): (Vec<&str>, Vec<&str>) =
        names.into_iter().partition(|f| finalizers::is_built_in(f));
    let mut out: BTreeMap<String, Option<String>> = built_in
        .iter()
        .map(|f| (f.to_string(), built_in_remover(f).map(str::to_string)))
        .collect();
    let rc = facts
        .namespace
        .controllers
        .get(&c.resource.group_resource());
    let tied = rc.map(|rc| {
        let expected: Vec<_> = rc.controllers.iter().map(|(e, _)| e).collect();
        ties(&expected, &custom, &c.resource.group)
    });
    for (at, f) in custom.iter().enumerate() {
        let user = rc.zip(tied.as_ref()).and_then(|(rc, t)| {
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
        });
        out.insert(f.to_string(), user);
    }
    out
}

/// One of the variables CEL sees for write `w` (see [`variables`]); `namespaceObject` is
/// the caller's to build once per review.
pub(super) fn input(facts: &Facts, w: &WriteRequest<'_>, name: &str) -> Json {
    match name {
        "object" | "oldObject" => {
            let old = object_json(facts, w.content, w.object, None);
            match (w.finalizer, name) {
                (None, "object") => Json::Null,
                (None, _) => old,
                (Some(f), "object") => object_json(facts, w.content, w.object, Some(f)),
                (Some(_), _) => {
                    let mut old = old;
                    old["metadata"]["deletionTimestamp"] =
                        json!(w.object.deletion_timestamp.unwrap_or(facts.now).to_string());
                    old
                }
            }
        }
        "request" => request_json(facts, w),
        "namespaceObject" => serde_json::to_value(&facts.namespace.namespace).unwrap_or(Json::Null),
        _ => Json::Null,
    }
}

/// The variables CEL sees for write `w`: `object`, `oldObject`, `request`, `namespaceObject`,
/// `params` (null).
pub(super) fn variables(facts: &Facts, w: &WriteRequest<'_>) -> BTreeMap<&'static str, Json> {
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
    vars
}

/// The writes the deletion needs of object `o` of `c`: the namespace controller's DELETE,
/// and each finalizer's removal by its remover (`removers` of `c`).
pub(super) fn writes<'a>(
    c: &'a Content,
    o: &'a ObjectFacts,
    removers: &BTreeMap<String, Option<String>>,
) -> Vec<WriteRequest<'a>> {
    let mut out = vec![WriteRequest {
        blocks: Blocks::Delete,
        what: "the namespace controller's DELETE".into(),
        user: Some(NAMESPACE_CONTROLLER.into()),
        operation: "DELETE",
        content: c,
        object: o,
        finalizer: None,
    }];
    for f in &o.finalizers {
        out.push(WriteRequest {
            blocks: Blocks::RemoveFinalizer,
            what: format!("the removal of finalizer {f}"),
            user: removers.get(f).cloned().flatten(),
            operation: "UPDATE",
            content: c,
            object: o,
            finalizer: Some(f),
        });
    }
    out
}
