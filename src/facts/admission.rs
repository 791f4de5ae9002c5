//! ValidatingAdmissionPolicies with their bindings, distilled and with their CEL compiled once
//! (when the cluster snapshot is built), for the `admission-policy-refuses` check.

use std::sync::{Arc, OnceLock};

use k8s_openapi::api::admissionregistration::v1::{
    MatchResources, ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};

/// The CEL environment the policies are compiled and run in: the standard library with the
/// strings, lists and math extensions, as far as the interpreter offers what Kubernetes offers.
/// What it lacks (Kubernetes' own libraries: quantities, IPs, URLs, `authorizer`, ...) fails at
/// run time and is reported as not evaluated. It also holds [`CHARGE`], the meter's hook.
pub fn env() -> Arc<cel::Env> {
    static ENV: OnceLock<Arc<cel::Env>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = cel::Env::stdlib();
        // Both extensions only add functions; a clash would be a bug of the interpreter's,
        // and then the standard library alone still serves.
        let _ = env.add_extension(cel::extensions::strings);
        let _ = env.add_extension(cel::extensions::lists);
        let _ = env.add_extension(cel::extensions::math);
        // The name starts with `@`, which CEL source cannot spell: only the instrumented
        // comprehensions call it. Without it every comprehension would fail, so a clash (a
        // bug) is loud in the tests.
        let _ = env.add_overload(
            CHARGE,
            "nsguard_charge",
            vec![cel::common::types::DYN_TYPE, cel::common::types::INT_TYPE],
            budget::charge,
        );
        Arc::new(env)
    })
    .clone()
}

/// The function every comprehension's range passes through: it charges the loop's cost
/// (elements x the cost of one iteration) before the loop runs, and fails it when the budget
/// is spent (see [`budget`]).
pub const CHARGE: &str = "@nsguard_charge";

pub mod budget {
    //! What CEL may cost, counted while it runs, as the API server bounds it
    //! (k8s.io/apiserver/pkg/apis/cel: `PerCallLimit`, `RuntimeCELCostBudget`).
    //!
    //! The interpreter counts nothing and cannot be interrupted, so each expression is
    //! compiled with every comprehension's range wrapped in a call of [`super::CHARGE`]: before
    //! a loop runs it is charged its elements times the nodes of one iteration (its condition
    //! and step), a nested loop once per iteration of the outer one. The whole expression's
    //! nodes are charged once per evaluation. CEL has no other way to loop, so this counts
    //! what an expression can cost within a small factor of the API server's units (one per
    //! operation). A charge over the limits, or past the deadline, fails the loop before it
    //! runs and marks the evaluation cut off: the caller reports it as not evaluated, never
    //! as an answer (an `all()` may absorb the error of one element into `false`).

    use std::cell::RefCell;
    use std::time::Instant;

    use cel::ExecutionError;
    use cel::common::value::CowVal;

    /// The most one evaluation of one expression may cost: the API server's `PerCallLimit`.
    pub const PER_EXPRESSION: u64 = 1_000_000;
    /// The most one review's evaluations may cost together: the API server's budget for one
    /// request (`RuntimeCELCostBudget`), which nsguard spends on every write of a namespace.
    pub const PER_REVIEW: u64 = 10_000_000;

    /// What evaluations on this thread may spend.
    #[derive(Clone, Copy, Debug)]
    pub struct Budget {
        /// Cost units for every evaluation together.
        pub total: u64,
        /// Past this instant no loop starts.
        pub deadline: Option<Instant>,
    }

    impl Budget {
        /// A review's budget: [`PER_REVIEW`], until `deadline`.
        pub fn review(deadline: Option<Instant>) -> Self {
            Self {
                total: PER_REVIEW,
                deadline,
            }
        }

        /// Nothing to spend: every evaluation is cut off, saying `why`.
        pub fn spent(why: CutOff) -> Self {
            Self {
                total: 0,
                deadline: matches!(why, CutOff::Deadline).then(Instant::now),
            }
        }
    }

    /// Why an evaluation was cut off.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum CutOff {
        /// One evaluation of the expression would cost more than [`PER_EXPRESSION`].
        Expression,
        /// The review's evaluations together would cost more than its budget.
        Review,
        /// The review's deadline passed.
        Deadline,
    }

    impl std::fmt::Display for CutOff {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self {
                CutOff::Expression => write!(
                    f,
                    "cost budget exceeded (one evaluation costs more than {PER_EXPRESSION}, the API server's limit per expression)"
                ),
                CutOff::Review => write!(
                    f,
                    "cost budget exceeded (the review's CEL budget of {PER_REVIEW} is spent)"
                ),
                CutOff::Deadline => write!(f, "deadline (the review's deadline passed)"),
            }
        }
    }

    struct Meter {
        budget: Budget,
        review: u64,
        expression: u64,
        cut: Option<CutOff>,
    }

    thread_local! {
        static METER: RefCell<Option<Meter>> = const { RefCell::new(None) };
    }

    /// Puts the previous meter back, even when `f` panics.
    struct Restore(Option<Meter>);

    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            METER.with(|m| *m.borrow_mut() = previous);
        }
    }

    /// Runs `f` with `budget` for the CEL it evaluates on this thread; returns what `f`
    /// returns and the cost spent.
    pub fn within<R>(budget: Budget, f: impl FnOnce() -> R) -> (R, u64) {
        let previous = METER.with(|m| {
            m.borrow_mut().replace(Meter {
                budget,
                review: 0,
                expression: 0,
                cut: None,
            })
        });
        let restore = Restore(previous);
        let out = f();
        let spent = METER.with(|m| m.borrow().as_ref().map_or(0, |m| m.review));
        drop(restore);
        (out, spent)
    }

    /// Starts one evaluation of an expression of `nodes` nodes: charges them. Without a
    /// meter (a caller outside [`within`]), the evaluation gets one of its own with the
    /// per-expression limit only.
    pub(super) fn start(nodes: u64) -> Result<(), CutOff> {
        METER.with(|m| {
            let mut m = m.borrow_mut();
            let m = m.get_or_insert_with(|| Meter {
                budget: Budget {
                    total: u64::MAX,
                    deadline: None,
                },
                review: 0,
                expression: 0,
                cut: None,
            });
            // A review's budget or deadline, once spent, stays spent; an expression's limit
            // is per evaluation.
            if matches!(m.cut, Some(CutOff::Expression)) {
                m.cut = None;
            }
            m.expression = 0;
            add(m, nodes)
        })
    }

    /// The review's budget or deadline, when spent: every evaluation from now on is cut off.
    pub fn exhausted() -> Option<CutOff> {
        METER.with(|m| {
            let mut m = m.borrow_mut();
            let m = m.as_mut()?;
            if m.cut.is_none() && m.budget.deadline.is_some_and(|d| Instant::now() >= d) {
                m.cut = Some(CutOff::Deadline);
            }
            m.cut.filter(|c| *c != CutOff::Expression)
        })
    }

    /// Whether the evaluation that just ran was cut off, and why.
    pub(super) fn cut() -> Option<CutOff> {
        METER.with(|m| m.borrow().as_ref().and_then(|m| m.cut))
    }

    fn add(m: &mut Meter, cost: u64) -> Result<(), CutOff> {
        if let Some(cut) = m.cut {
            return Err(cut);
        }
        m.expression = m.expression.saturating_add(cost);
        m.review = m.review.saturating_add(cost);
        let cut = if m.expression > PER_EXPRESSION {
            Some(CutOff::Expression)
        } else if m.review > m.budget.total {
            Some(CutOff::Review)
        } else if m.budget.deadline.is_some_and(|d| Instant::now() >= d) {
            Some(CutOff::Deadline)
        } else {
            None
        };
        m.cut = cut;
        cut.map_or(Ok(()), Err)
    }

    /// [`super::CHARGE`]`(range, per_iteration)`: charges the loop, then hands the range on.
    pub(super) fn charge<'b, 'v>(
        mut args: Vec<CowVal<'b, 'v>>,
    ) -> Result<CowVal<'b, 'v>, ExecutionError> {
        let per = args
            .pop()
            .and_then(|p| {
                p.downcast_ref::<cel::common::types::CelInt>()
                    .map(|i| *i.inner())
            })
            .unwrap_or(1)
            .max(1) as u64;
        let range = args.pop().ok_or_else(|| {
            ExecutionError::function_error(super::CHARGE, "a comprehension without a range")
        })?;
        let elements = range
            .as_sizer()
            .map_or(1, |s| (*s.size().inner()).max(0) as u64);
        let result = METER.with(|m| match m.borrow_mut().as_mut() {
            Some(m) => add(m, elements.saturating_mul(per)),
            None => Ok(()),
        });
        match result {
            Ok(()) => Ok(range),
            Err(cut) => Err(ExecutionError::function_error(super::CHARGE, cut)),
        }
    }
}

/// One CEL expression, compiled and instrumented for the [`budget`].
#[derive(Clone)]
pub struct Expr {
    /// The expression as written.
    pub source: String,
    /// The parsed expression with its macros expanded and its loops metered, or why it did
    /// not compile.
    pub program: Result<Arc<cel::IdedExpr>, String>,
    /// Its nodes: what one evaluation costs at least.
    pub nodes: u64,
    /// The inputs of a review it reads, among [`INPUTS`].
    pub inputs: Vec<&'static str>,
}

/// The variables admission gives an expression: one that reads none of some is evaluated
/// without building them.
pub const INPUTS: [&str; 5] = [
    "object",
    "oldObject",
    "request",
    "namespaceObject",
    "params",
];

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Expr")
            .field("source", &self.source)
            .finish()
    }
}

/// Why an evaluation gave no value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EvalError {
    /// The budget cut it off: nothing is known.
    CutOff(budget::CutOff),
    /// It did not compile, or it failed: the message.
    Failed(String),
}

impl std::fmt::Display for EvalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EvalError::CutOff(c) => write!(f, "not evaluated: {c}"),
            EvalError::Failed(m) => f.write_str(m),
        }
    }
}

/// Wraps every comprehension's range in [`CHARGE`]; returns the nodes of `e`.
fn instrument(e: &mut cel::IdedExpr) -> u64 {
    use cel::common::ast::{EntryExpr, Expr as E, LiteralValue};
    let mut nodes = 1;
    match &mut e.expr {
        E::Call(c) => {
            if let Some(t) = c.target.as_deref_mut() {
                nodes += instrument(t);
            }
            nodes += c.args.iter_mut().map(instrument).sum::<u64>();
        }
        E::Comprehension(c) => {
            nodes += instrument(&mut c.accu_init) + instrument(&mut c.result);
            let per = 1 + instrument(&mut c.loop_cond) + instrument(&mut c.loop_step);
            nodes += instrument(&mut c.iter_range);
            let range = std::mem::take(&mut c.iter_range);
            c.iter_range = cel::IdedExpr {
                id: range.id,
                expr: E::Call(cel::common::ast::CallExpr {
                    func_name: CHARGE.to_string(),
                    target: None,
                    args: vec![
                        range,
                        cel::IdedExpr {
                            id: 0,
                            expr: E::Literal(LiteralValue::Int(cel::common::types::CelInt::from(
                                i64::try_from(per).unwrap_or(i64::MAX),
                            ))),
                        },
                    ],
                }),
            };
            // The loop's own iterations are charged when it runs.
        }
        E::List(l) => nodes += l.elements.iter_mut().map(instrument).sum::<u64>(),
        E::Map(m) => {
            for entry in &mut m.entries {
                if let EntryExpr::MapEntry(me) = &mut entry.expr {
                    nodes += instrument(&mut me.key) + instrument(&mut me.value);
                }
            }
        }
        E::Struct(s) => {
            for entry in &mut s.entries {
                match &mut entry.expr {
                    EntryExpr::StructField(f) => nodes += instrument(&mut f.value),
                    EntryExpr::MapEntry(me) => {
                        nodes += instrument(&mut me.key) + instrument(&mut me.value)
                    }
                }
            }
        }
        E::Select(s) => nodes += instrument(&mut s.operand),
        E::Ident(_) | E::Literal(_) | E::Unspecified => {}
    }
    nodes
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

    /// Compiles `source` in [`env`], its loops metered.
    pub fn compile(source: &str) -> Self {
        match env().parser().parse(source) {
            Ok(mut e) => {
                let references = e.references();
                let inputs = INPUTS
                    .into_iter()
                    .filter(|i| references.has_variable(i))
                    .collect();
                let nodes = instrument(&mut e);
                Self {
                    source: source.to_string(),
                    program: Ok(Arc::new(e)),
                    nodes,
                    inputs,
                }
            }
            Err(e) => Self {
                source: source.to_string(),
                program: Err(e.to_string()),
                nodes: 0,
                inputs: Vec::new(),
            },
        }
    }

    /// Evaluates the expression in `ctx` within this thread's [`budget`].
    pub fn evaluate(&self, ctx: &cel::Context<'_, '_>) -> Result<cel::Value, EvalError> {
        let program = self
            .program
            .as_ref()
            .map_err(|e| EvalError::Failed(format!("it does not compile here: {e}")))?;
        budget::start(self.nodes).map_err(EvalError::CutOff)?;
        let out = cel::Value::resolve(program, ctx);
        // An `all()` or `exists()` may absorb a cut-off loop's error into an answer: what
        // was cut off is never an answer.
        if let Some(cut) = budget::cut() {
            return Err(EvalError::CutOff(cut));
        }
        out.map_err(|e| EvalError::Failed(format!("evaluating {:?}: {e}", self.source)))
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
    /// The review's inputs its expressions read (see [`INPUTS`]).
    pub inputs: Vec<&'static str>,
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
        let mut policy = Self {
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
            inputs: Vec::new(),
        };
        let mut inputs: Vec<&'static str> = policy
            .match_conditions
            .iter()
            .chain(&policy.variables)
            .flat_map(|(_, e)| e.inputs.iter().copied())
            .chain(policy.validations.iter().flat_map(|v| {
                v.expression
                    .inputs
                    .iter()
                    .chain(v.message_expression.iter().flat_map(|m| m.inputs.iter()))
                    .copied()
            }))
            .collect();
        inputs.sort_unstable();
        inputs.dedup();
        policy.inputs = inputs;
        Some(policy)
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
