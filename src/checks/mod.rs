//! The checks: pure functions from [`Facts`] to [`Finding`]s, one file each, listed in
//! [`registry`].

// The checks, one file each (each listed once in `registry.rs`).
mod admission_policy;
mod apiservice_unavailable;
mod cluster_already_stuck;
mod finalizer_controller;
mod finalizer_stuck;
mod finalizers_pending;
mod hosts_apiservice_backend;
mod hosts_conversion_backend;
mod hosts_webhook_backend;
mod list_failure;
mod namespace_finalizers;
mod pods_unterminable;
mod webhook_backend_unavailable;

// What several checks share.
mod admission_request;
mod finalizer_ties;
mod webhook_may_refuse;
mod webhook_rules;

pub mod registry;
mod removal_rights;
pub mod report;
pub mod subject;

pub use webhook_rules::{HostedHook, hosted_hooks, only_custom_resources};

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::jiff::Timestamp;
use kube::core::{Selector, SelectorExt};

use crate::checks::report::{CheckId, Report, Severity};
use crate::facts::Facts;
use crate::facts::controllers::Declarations;

/// What a check's findings count as, per configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Setting {
    /// Findings block the deletion (enforce mode denies).
    Block,
    /// Findings are warnings.
    Warn,
    /// The check does not run.
    Off,
}

/// How the checks are configured.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Per-check overrides of the default severity.
    pub overrides: BTreeMap<CheckId, Setting>,
    /// How long an object may be deleting with finalizers before it counts as stuck.
    pub finalizer_stuck_after: Duration,
    /// Finalizer controllers declared by the admin (`--finalizer-controller`).
    pub finalizer_controllers: Declarations,
    /// How long an APIService that was Available may be unavailable before it blocks (a
    /// rollout flaps it for seconds; the namespace controller retries).
    pub apiservice_grace: Duration,
    /// How long a webhook backend Service may have no ready endpoints before it blocks.
    pub backend_grace: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            overrides: BTreeMap::new(),
            finalizer_stuck_after: Duration::from_secs(300),
            finalizer_controllers: Declarations::default(),
            apiservice_grace: Duration::from_secs(30),
            backend_grace: Duration::from_secs(30),
        }
    }
}

impl Settings {
    fn setting(&self, id: CheckId) -> Option<Severity> {
        match self.overrides.get(&id) {
            Some(Setting::Off) => None,
            Some(Setting::Block) => Some(Severity::Blocking),
            Some(Setting::Warn) => Some(Severity::Advisory),
            None => Some(id.default_severity()),
        }
    }
}

/// Runs every enabled check and returns the report, blocking findings first.
pub fn run(facts: &Facts, settings: &Settings) -> Report {
    let mut findings = Vec::new();
    for id in CheckId::all() {
        let Some(severity) = settings.setting(id) else {
            continue;
        };
        findings.extend((id.check_fn())(facts, settings).into_iter().map(|mut f| {
            // A check lowers its own default where evidence is missing (a 403 list is an RBAC
            // gap; a cause inside its grace; a webhook that only may intercept). `warn` lowers
            // any finding, but `block` raises only findings at the check's default: it never
            // turns missing evidence into a block.
            if f.severity == id.default_severity() || severity == Severity::Advisory {
                f.severity = severity;
            }
            f
        }));
    }
    findings.sort_by_key(|f| (f.severity, f.check));
    Report {
        namespace: facts.name.clone(),
        findings,
        handled: finalizer_controller::handled(facts),
        not_checked: facts.not_checked.clone(),
        not_checked_by_choice: facts.cluster.discovery.skipped.clone(),
    }
}

/// True when a finalizer is one Kubernetes itself removes (see [`crate::facts::finalizers`]).
pub fn is_known_finalizer(f: &str) -> bool {
    crate::facts::finalizers::is_built_in(f)
}

/// "3m", "2h", "5d": how long ago `t` was.
pub fn age(now: Timestamp, t: Timestamp) -> String {
    let secs = now.as_second().saturating_sub(t.as_second()).max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// Whether `labels` satisfy a label selector (an absent selector matches everything), by
/// kube's own selector semantics; a selector that does not parse matches nothing (the API
/// server never stores one).
pub fn selector_matches(
    selector: Option<&LabelSelector>,
    labels: &BTreeMap<String, String>,
) -> bool {
    let Some(sel) = selector else { return true };
    Selector::try_from(sel.clone()).is_ok_and(|s| s.matches(labels))
}

#[cfg(test)]
pub(crate) mod fixtures;

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
    use rstest::rstest;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[rstest]
    #[case("In", &["a"], &[("k", "a")], true)]
    #[case("In", &["a"], &[("k", "b")], false)]
    #[case("NotIn", &["a"], &[], true)]
    #[case("NotIn", &["a"], &[("k", "a")], false)]
    #[case("Exists", &[], &[("k", "x")], true)]
    #[case("DoesNotExist", &[], &[("k", "x")], false)]
    fn selector_expressions(
        #[case] op: &str,
        #[case] values: &[&str],
        #[case] have: &[(&str, &str)],
        #[case] expected: bool,
    ) {
        let sel = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "k".into(),
                operator: op.into(),
                values: Some(values.iter().map(|s| s.to_string()).collect()),
            }]),
            match_labels: None,
        };
        assert_eq!(selector_matches(Some(&sel), &labels(have)), expected);
    }

    #[test]
    fn block_never_raises_a_finding_lowered_for_lack_of_evidence() {
        use crate::facts::{ListFailure, ResourceType};
        let mut facts = fixtures::facts("team-a").build();
        for (resource, code) in [("widgets", 403), ("gadgets", 500)] {
            facts.namespace.list_failures.push(ListFailure {
                resource: ResourceType {
                    group: "example.com".into(),
                    version: "v1".into(),
                    resource: resource.into(),
                    kind: "Kind".into(),
                    listable: true,
                },
                code: Some(code),
                message: "x".into(),
            });
        }
        let mut settings = Settings::default();
        settings
            .overrides
            .insert(CheckId::ListFailure, Setting::Block);
        let report = run(&facts, &settings);
        assert_eq!(report.blocking().count(), 1);
        assert_eq!(report.advisory().count(), 1);
        settings
            .overrides
            .insert(CheckId::ListFailure, Setting::Warn);
        assert_eq!(run(&facts, &settings).advisory().count(), 2);
    }

    #[test]
    fn an_off_check_produces_nothing_and_warn_downgrades() {
        let facts = fixtures::facts("team-a")
            .with_namespace_spec_finalizers(&["kubernetes", "example.com/hold"])
            .build();
        let mut settings = Settings::default();
        let report = run(&facts, &settings);
        assert_eq!(report.check_ids(), vec![CheckId::NamespaceFinalizers]);
        settings
            .overrides
            .insert(CheckId::NamespaceFinalizers, Setting::Block);
        assert_eq!(run(&facts, &settings).blocking().count(), 1);
        settings
            .overrides
            .insert(CheckId::NamespaceFinalizers, Setting::Off);
        assert!(run(&facts, &settings).findings.is_empty());
    }
}
