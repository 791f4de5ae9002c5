//! ValidatingAdmissionPolicies with their bindings, distilled and with their CEL compiled once
//! (when the cluster snapshot is built), for the `admission-policy-refuses` check.

use std::sync::{Arc, OnceLock};

use k8s_openapi::api::admissionregistration::v1::{
    MatchResources, ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};

/// The CEL environment the policies are compiled and run in: the standard library with the
/// strings, lists and math extensions, as far as the interpreter offers what Kubernetes offers.
/// What it lacks (Kubernetes' own libraries: quantities, IPs, URLs, `authorizer`, ...) fails at
/// run time and is reported as not evaluated.
pub fn env() -> Arc<cel::Env> {
    static ENV: OnceLock<Arc<cel::Env>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = cel::Env::stdlib();
        // Both extensions only add functions; a clash would be a bug of the interpreter's,
        // and then the standard library alone still serves.
        let _ = env.add_extension(cel::extensions::strings);
        let _ = env.add_extension(cel::extensions::lists);
        let _ = env.add_extension(cel::extensions::math);
        Arc::new(env)
    })
    .clone()
}

/// One CEL expression, compiled.
#[derive(Clone)]
pub struct Expr {
    /// The expression as written.
    pub source: String,
    /// The program, or why it did not compile.
    pub program: Result<Arc<cel::Program>, String>,
}

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Expr")
            .field("source", &self.source)
            .finish()
    }
}

impl Expr {
    /// `source` compiled once per process (webhooks' `matchConditions`, read from the
    /// configurations as they are): a bounded cache by source text.
    pub fn cached(source: &str) -> Arc<Self> {
        static CACHE: OnceLock<std::sync::Mutex<std::collections::HashMap<String, Arc<Expr>>>> =
            OnceLock::new();
        let cache = CACHE.get_or_init(Default::default);
        let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = cache.get(source) {
            return e.clone();
        }
        if cache.len() >= 4096 {
            cache.clear();
        }
        let e = Arc::new(Self::compile(source));
        cache.insert(source.to_string(), e.clone());
        e
    }

    /// Compiles `source` in [`env`].
    pub fn compile(source: &str) -> Self {
        Self {
            source: source.to_string(),
            program: env()
                .compile(source)
                .map(Arc::new)
                .map_err(|e| e.to_string()),
        }
    }
}

/// One validation of a policy.
#[derive(Clone, Debug)]
pub struct Validation {
    /// What must hold.
    pub expression: Expr,
    /// The message when it does not.
    pub message: Option<String>,
    /// A CEL expression for the message.
    pub message_expression: Option<Expr>,
}

/// A binding of a policy.
#[derive(Clone, Debug)]
pub struct PolicyBinding {
    /// Its name.
    pub name: String,
    /// `validationActions` include `Deny`: a failed validation refuses the request.
    pub deny: bool,
    /// Its `matchResources` (narrowing the policy's constraints).
    pub match_resources: Option<MatchResources>,
    /// It references parameters (`paramRef`).
    pub params: bool,
}

/// A ValidatingAdmissionPolicy with its bindings.
#[derive(Clone, Debug)]
pub struct AdmissionPolicy {
    /// Its name.
    pub name: String,
    /// `failurePolicy: Fail` (the default): an error refuses the request.
    pub fails_closed: bool,
    /// `matchConstraints`.
    pub constraints: Option<MatchResources>,
    /// `matchConditions`, by name.
    pub match_conditions: Vec<(String, Expr)>,
    /// `variables`, in order.
    pub variables: Vec<(String, Expr)>,
    /// `validations`.
    pub validations: Vec<Validation>,
    /// It takes parameters (`paramKind`), which nsguard does not read.
    pub params: bool,
    /// Its bindings.
    pub bindings: Vec<PolicyBinding>,
}

impl AdmissionPolicy {
    /// The policy `p` with the bindings among `bindings` that name it; `None` when nothing binds
    /// it (an unbound policy does nothing).
    pub fn distil(
        p: &ValidatingAdmissionPolicy,
        bindings: &[ValidatingAdmissionPolicyBinding],
    ) -> Option<Self> {
        let name = p.metadata.name.clone()?;
        let bound: Vec<PolicyBinding> = bindings
            .iter()
            .filter_map(|b| {
                let spec = &b.spec;
                (spec.policy_name == name).then(|| PolicyBinding {
                    name: b.metadata.name.clone().unwrap_or_default(),
                    deny: spec.validation_actions.iter().any(|a| a == "Deny"),
                    match_resources: spec.match_resources.clone(),
                    params: spec.param_ref.is_some(),
                })
            })
            .collect();
        if bound.is_empty() {
            return None;
        }
        let spec = p.spec.as_ref()?;
        Some(Self {
            name,
            fails_closed: spec.failure_policy.as_deref().unwrap_or("Fail") == "Fail",
            constraints: spec.match_constraints.clone(),
            match_conditions: spec
                .match_conditions
                .iter()
                .flatten()
                .map(|c| (c.name.clone(), Expr::compile(&c.expression)))
                .collect(),
            variables: spec
                .variables
                .iter()
                .flatten()
                .map(|v| (v.name.clone(), Expr::compile(&v.expression)))
                .collect(),
            validations: spec
                .validations
                .iter()
                .flatten()
                .map(|v| Validation {
                    expression: Expr::compile(&v.expression),
                    message: v.message.clone(),
                    message_expression: v.message_expression.as_deref().map(Expr::compile),
                })
                .collect(),
            params: spec.param_kind.is_some(),
            bindings: bound,
        })
    }
}

impl AdmissionPolicy {
    /// Whether any of its expressions reads objects' annotations.
    pub fn reads_annotations(&self) -> bool {
        let reads = |e: &Expr| e.source.contains("annotations");
        self.match_conditions.iter().any(|(_, e)| reads(e))
            || self.variables.iter().any(|(_, e)| reads(e))
            || self
                .validations
                .iter()
                .any(|v| reads(&v.expression) || v.message_expression.as_ref().is_some_and(reads))
    }

    /// Whether its constraints may select requests on `group`/`resource` (any operation).
    pub fn may_select(&self, group: &str, resource: &str) -> bool {
        let has = |l: Option<&Vec<String>>, want: &str| {
            l.is_some_and(|l| l.iter().any(|x| x == "*" || x == want))
        };
        self.constraints.as_ref().is_some_and(|c| {
            c.resource_rules
                .iter()
                .flatten()
                .any(|r| has(r.api_groups.as_ref(), group) && has(r.resources.as_ref(), resource))
        })
    }
}

/// The types of `content` whose objects' annotations a policy that may deny reads, and that
/// were not read with them.
pub fn annotations_wanted(
    cluster: &super::ClusterFacts,
    content: &[super::Content],
) -> Vec<super::ResourceType> {
    let readers: Vec<&AdmissionPolicy> = cluster
        .admission_policies
        .iter()
        .filter(|p| p.bindings.iter().any(|b| b.deny) && p.reads_annotations())
        .map(|p| &**p)
        .collect();
    if readers.is_empty() {
        return Vec::new();
    }
    content
        .iter()
        .filter(|c| c.objects.iter().any(|o| o.annotations.is_none()))
        .filter(|c| {
            readers
                .iter()
                .any(|p| p.may_select(&c.resource.group, &c.resource.resource))
        })
        .map(|c| c.resource.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_compile_once_and_say_why_they_do_not() {
        assert!(
            Expr::compile("has(oldObject.metadata.labels)")
                .program
                .is_ok()
        );
        assert!(
            Expr::compile("oldObject.metadata.name.lowerAscii() == 'x'")
                .program
                .is_ok()
        );
        assert!(Expr::compile("oldObject.(").program.is_err());
    }
}
