//! Policy: mode, overrides and bypasses turn a [`Report`] into a [`Decision`]. Pure.

use super::render;
use crate::checks::report::Report;

/// The annotation on a namespace that allows its deletion despite blockers.
pub use crate::checks::report::OVERRIDE_ANNOTATION;

/// What nsguard does with blocking findings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Deny deletions with blocking findings.
    Enforce,
    /// Allow, with every finding as a warning.
    Warn,
    /// Allow silently; record what enforce would have done.
    Audit,
}

impl Mode {
    /// `enforce`, `warn` or `audit`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Warn => "warn",
            Mode::Audit => "audit",
        }
    }
}

/// The configured policy.
#[derive(Clone, Debug)]
pub struct Policy {
    /// The mode.
    pub mode: Mode,
    /// Groups whose members' deletions are allowed with a warning (break glass).
    pub bypass_groups: Vec<String>,
    /// At most this many warnings; then one saying how many more.
    pub max_warnings: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            mode: Mode::Enforce,
            bypass_groups: Vec::new(),
            max_warnings: 8,
        }
    }
}

/// What about the request matters to the decision besides the report.
#[derive(Clone, Debug, Default)]
pub struct RequestContext {
    /// The override annotation's value, when the namespace has it.
    pub override_reason: Option<String>,
    /// The requesting user's groups.
    pub groups: Vec<String>,
}

/// What happened, as a bounded metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ruling {
    /// Allowed, nothing found.
    Allowed,
    /// Allowed with warnings (advisory findings, or warn mode).
    Warned,
    /// Denied (enforce, blocking findings).
    Denied,
    /// Allowed in audit mode although enforce would have denied.
    Audited,
    /// Allowed because of the override annotation or a bypass group.
    Overridden,
    /// Allowed because the preflight could not finish.
    FailOpen,
}

impl Ruling {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Ruling::Allowed => "allowed",
            Ruling::Warned => "warned",
            Ruling::Denied => "denied",
            Ruling::Audited => "audited",
            Ruling::Overridden => "overridden",
            Ruling::FailOpen => "fail_open",
        }
    }
}

/// The answer to one review.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Whether the API server may go on.
    pub allowed: bool,
    /// What happened.
    pub outcome: Ruling,
    /// The denial message (also recorded for audit and override).
    pub message: Option<String>,
    /// Warnings for the user.
    pub warnings: Vec<String>,
}

/// Applies the policy to a report.
pub fn decide(report: &Report, policy: &Policy, ctx: &RequestContext) -> Decision {
    let ns = &report.namespace;
    let blocking = report.blocking().count() > 0;
    let would_deny = render::denial_message(report);
    let bypass = ctx.groups.iter().find(|g| policy.bypass_groups.contains(g));
    let mut warnings = Vec::new();
    let outcome = if !blocking {
        if report.is_incomplete() {
            warnings.push(format!(
                "nsguard could not check everything ({}); deletion allowed",
                report.not_checked.join("; ")
            ));
        }
        if policy.mode != Mode::Audit {
            warnings.extend(render::finding_warnings(report));
        }
        if report.is_incomplete() {
            Ruling::FailOpen
        } else if warnings.is_empty() {
            Ruling::Allowed
        } else {
            Ruling::Warned
        }
    } else if let Some(reason) = ctx
        .override_reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
    {
        warnings.push(format!(
            "{OVERRIDE_ANNOTATION} ({reason}): deleting despite blockers; it may hang"
        ));
        warnings.extend(render::finding_warnings(report));
        Ruling::Overridden
    } else if let Some(group) = bypass {
        warnings.push(format!(
            "bypass group {group}: deleting despite blockers; it may hang"
        ));
        warnings.extend(render::finding_warnings(report));
        Ruling::Overridden
    } else {
        match policy.mode {
            Mode::Enforce => {
                if ctx.override_reason.is_some() {
                    warnings.push(format!(
                        "{OVERRIDE_ANNOTATION} is empty: an override needs a reason; not overridden"
                    ));
                }
                warnings.extend(
                    render::finding_warnings(report)
                        .into_iter()
                        .filter(|w| !w.starts_with("blocking")),
                );
                Ruling::Denied
            }
            Mode::Warn => {
                warnings.extend(render::finding_warnings(report));
                Ruling::Warned
            }
            Mode::Audit => Ruling::Audited,
        }
    };
    // Types skipped by choice are a standing caveat: said first (never cut by the bound), and
    // not a reason to fail open or to count the answer as warned.
    if policy.mode != Mode::Audit
        && let Some(caveat) = render::not_checked_by_choice(report)
    {
        warnings.insert(0, caveat);
    }
    Decision {
        allowed: outcome != Ruling::Denied,
        outcome,
        message: blocking.then_some(would_deny),
        warnings: render::bound_warnings(warnings, policy.max_warnings, ns),
    }
}

#[cfg(test)]
#[allow(clippy::too_many_arguments)] // rstest case tables: one argument per column
mod tests {
    use super::*;
    use crate::checks::report::{CheckId, Finding, Severity, remedy};
    use rstest::rstest;

    fn report(blocking: bool, advisory: bool, incomplete: bool) -> Report {
        let mut r = Report {
            namespace: "team-a".into(),
            ..Default::default()
        };
        if blocking {
            r.findings.push(Finding::new(
                CheckId::ApiserviceUnavailable,
                crate::checks::report::Subject::Namespace,
                "APIService v1beta1.metrics.k8s.io is Available=False",
                remedy(
                    "delete it",
                    "kubectl delete apiservice v1beta1.metrics.k8s.io".to_string(),
                ),
            ));
        }
        if advisory {
            let mut f = Finding::new(
                CheckId::NamespaceFinalizers,
                crate::checks::report::Subject::Namespace,
                "namespace has finalizers x",
                remedy("r", None),
            );
            f.severity = Severity::Advisory;
            r.findings.push(f);
        }
        if incomplete {
            r.not_checked
                .push("list widgets.example.com: timed out".into());
        }
        r
    }

    #[rstest]
    #[allow(clippy::too_many_arguments)]
    // a case table: one argument per column
    // mode, blocking, advisory, incomplete, override -> allowed, outcome, has warnings
    #[case(
        Mode::Enforce,
        false,
        false,
        false,
        false,
        true,
        Ruling::Allowed,
        false
    )]
    #[case(Mode::Enforce, true, false, false, false, false, Ruling::Denied, false)]
    #[case(Mode::Enforce, true, true, false, false, false, Ruling::Denied, true)]
    #[case(Mode::Enforce, false, true, false, false, true, Ruling::Warned, true)]
    #[case(Mode::Enforce, false, false, true, false, true, Ruling::FailOpen, true)]
    #[case(Mode::Enforce, true, false, true, false, false, Ruling::Denied, false)]
    #[case(
        Mode::Enforce,
        true,
        false,
        false,
        true,
        true,
        Ruling::Overridden,
        true
    )]
    #[case(Mode::Warn, true, false, false, false, true, Ruling::Warned, true)]
    #[case(Mode::Warn, false, false, false, false, true, Ruling::Allowed, false)]
    #[case(Mode::Audit, true, true, false, false, true, Ruling::Audited, false)]
    #[case(Mode::Audit, false, true, false, false, true, Ruling::Allowed, false)]
    #[case(Mode::Audit, true, false, false, true, true, Ruling::Overridden, true)]
    fn decision_grid(
        #[case] mode: Mode,
        #[case] blocking: bool,
        #[case] advisory: bool,
        #[case] incomplete: bool,
        #[case] overridden: bool,
        #[case] allowed: bool,
        #[case] outcome: Ruling,
        #[case] warns: bool,
    ) {
        let policy = Policy {
            mode,
            ..Default::default()
        };
        let ctx = RequestContext {
            override_reason: overridden.then(|| "decommissioned".to_string()),
            groups: vec![],
        };
        let d = decide(&report(blocking, advisory, incomplete), &policy, &ctx);
        assert_eq!(d.allowed, allowed, "{d:?}");
        assert_eq!(d.outcome, outcome, "{d:?}");
        assert_eq!(!d.warnings.is_empty(), warns, "{d:?}");
        assert_eq!(d.message.is_some(), blocking);
        if blocking && !allowed {
            assert!(
                d.message
                    .as_ref()
                    .unwrap()
                    .contains("kubectl delete apiservice v1beta1.metrics.k8s.io")
            );
        }
        // The same request twice gives the same answer.
        assert_eq!(
            d,
            decide(&report(blocking, advisory, incomplete), &policy, &ctx)
        );
    }

    #[rstest]
    #[case(Mode::Enforce, false, Ruling::Allowed, true)]
    #[case(Mode::Enforce, true, Ruling::Denied, true)]
    #[case(Mode::Warn, false, Ruling::Allowed, true)]
    #[case(Mode::Audit, false, Ruling::Allowed, false)]
    fn types_skipped_by_choice_are_a_warning_that_changes_no_outcome(
        #[case] mode: Mode,
        #[case] blocking: bool,
        #[case] outcome: Ruling,
        #[case] warns: bool,
    ) {
        let mut r = report(blocking, false, false);
        r.not_checked_by_choice = vec!["secrets".into()];
        let policy = Policy {
            mode,
            max_warnings: 1,
            ..Default::default()
        };
        let d = decide(&r, &policy, &RequestContext::default());
        assert_eq!(d.outcome, outcome, "{d:?}");
        assert_eq!(
            d.warnings
                .first()
                .is_some_and(|w| w.starts_with("not checked: secrets (skipped by configuration)")),
            warns,
            "{d:?}"
        );
    }

    #[test]
    fn a_bypass_group_allows_with_a_warning() {
        let policy = Policy {
            bypass_groups: vec!["platform-admins".into()],
            ..Default::default()
        };
        let ctx = RequestContext {
            override_reason: None,
            groups: vec!["platform-admins".into()],
        };
        let d = decide(&report(true, false, false), &policy, &ctx);
        assert!(d.allowed);
        assert!(d.warnings[0].contains("bypass group platform-admins"));
    }

    #[rstest]
    #[case("")]
    #[case("   ")]
    fn an_override_without_a_reason_does_not_override(#[case] reason: &str) {
        let ctx = RequestContext {
            override_reason: Some(reason.to_string()),
            groups: vec![],
        };
        let d = decide(&report(true, false, false), &Policy::default(), &ctx);
        assert_eq!(d.outcome, Ruling::Denied, "{d:?}");
        assert!(
            d.warnings
                .iter()
                .any(|w| w.contains("an override needs a reason")),
            "{d:?}"
        );
    }
}
