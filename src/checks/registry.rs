//! The check registry: the one list of checks. Each check is a type in its own file under
//! `src/checks/` that implements [`Check`]: its [`CheckEntry`] (stable id, default severity,
//! the write of the deletion it stands in the way of, title, remedy, where its remedy goes in a
//! diagnosis and what it risks, how a deny that rests on it is confirmed) beside its pure
//! function. The list below binds each [`CheckId`] to its check; the report, the renderers,
//! `diagnose`, `delete`, the engine's confirmation and `docs/checks.md` are derived from it.
//!
//! Adding a check: its file (a type implementing [`Check`], declared with `mod` in
//! `src/checks/mod.rs`) and one line in the list below. The compiler refuses a line without
//! its check: every `CheckId` is matched to its entry and its function with no wildcard arm,
//! and nothing else lists the checks.

use serde::Serialize;

use super::Settings;
use super::report::Finding;
use crate::facts::Facts;

/// A check: its registry entry and its pure function, side by side in the check's file.
pub trait Check {
    /// What the registry says of it.
    const ENTRY: CheckEntry;

    /// Its findings on `facts`, with the configured `settings`; pure: no API call, no clock
    /// (the time is `facts.now`).
    fn run(facts: &Facts, settings: &Settings) -> Vec<Finding>;
}

/// Declares [`CheckId`] from the list of checks, and binds each id to its check's entry and
/// function with exhaustive `match`es: an id is a check, or nothing compiles.
macro_rules! registry {
    ($( $(#[$doc:meta])* $id:ident => $check:path, )+) => {
        /// Every check nsguard runs, by its stable id, in report order.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(rename_all = "kebab-case")]
        pub enum CheckId {
            $( $(#[$doc])* $id, )+
        }

        impl CheckId {
            /// Every check, in report order.
            const ALL: &'static [CheckId] = &[$( CheckId::$id, )+];

            /// Its registry entry: its check's [`Check::ENTRY`].
            pub fn entry(self) -> &'static CheckEntry {
                match self {
                    $( CheckId::$id => const { &<$check as Check>::ENTRY }, )+
                }
            }

            /// Its check's function.
            pub(super) fn check_fn(self) -> fn(&Facts, &Settings) -> Vec<Finding> {
                match self {
                    $( CheckId::$id => <$check as Check>::run, )+
                }
            }
        }
    };
}

// The list of checks, in report order: one line each, `Id => its check's type`.
registry! {
    /// An aggregated APIService is not Available, or discovery reports a group-version Stale.
    ApiserviceUnavailable => super::apiservice_unavailable::ApiserviceUnavailable,
    /// An APIService's backing Service lives in the namespace being deleted.
    HostsApiserviceBackend => super::hosts_apiservice_backend::HostsApiserviceBackend,
    /// A `Fail` webhook that deletion depends on has its Service in the namespace.
    HostsWebhookBackend => super::hosts_webhook_backend::HostsWebhookBackend,
    /// A CRD's conversion webhook Service lives in the namespace while its objects exist.
    HostsConversionBackend => super::hosts_conversion_backend::HostsConversionBackend,
    /// A `Fail` webhook matching a write the deletion needs has no ready backend.
    WebhookBackendUnavailable => super::webhook_backend_unavailable::WebhookBackendUnavailable,
    /// An admission policy refuses a write the deletion needs.
    AdmissionPolicyRefuses => super::admission_policy::AdmissionPolicyRefuses,
    /// Listing a namespaced resource type in the namespace fails.
    ListFailure => super::list_failure::ListFailure,
    /// Objects already being deleted for longer than the threshold still carry finalizers.
    FinalizerStuck => super::finalizer_stuck::FinalizerStuck,
    /// Objects with finalizers whose expected controller is not live, or live only inside
    /// the namespace being deleted.
    FinalizerController => super::finalizer_controller::FinalizerController,
    /// Other objects with finalizers not known to be handled.
    FinalizersPending => super::finalizers_pending::FinalizersPending,
    /// Finalizers on the namespace itself other than the ones Kubernetes handles.
    NamespaceFinalizers => super::namespace_finalizers::NamespaceFinalizers,
    /// Pods on nodes that are gone or not Ready without the out-of-service taint.
    PodsUnterminable => super::pods_unterminable::PodsUnterminable,
    /// Other namespaces are already stuck for a cluster-wide cause.
    ClusterAlreadyStuck => super::cluster_already_stuck::ClusterAlreadyStuck,
}

/// How much a finding matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The deletion would hang: enforce mode denies.
    Blocking,
    /// The deletion may hang or leave something behind: a warning.
    Advisory,
}

impl Severity {
    /// `blocking` or `advisory`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Blocking => "blocking",
            Severity::Advisory => "advisory",
        }
    }
}

/// The step of the namespace controller's work that a finding stands in the way of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Blocks {
    /// Discovery of every API group, which the controller needs before it deletes anything.
    Discovery,
    /// The controller's LIST of the namespace's content.
    List,
    /// The controller's DELETE of the namespace's content.
    Delete,
    /// A controller's UPDATE or PATCH that removes its finalizer from an object.
    RemoveFinalizer,
    /// The end of a pod's termination on its node.
    PodTermination,
    /// The controller's UPDATE of `namespaces/finalize`, and other finalizers of the
    /// namespace itself.
    FinalizeNamespace,
}

impl Blocks {
    /// `discovery`, `list`, `delete`, `remove-finalizer`, `pod-termination`,
    /// `finalize-namespace`.
    pub fn as_str(self) -> &'static str {
        match self {
            Blocks::Discovery => "discovery",
            Blocks::List => "list",
            Blocks::Delete => "delete",
            Blocks::RemoveFinalizer => "remove-finalizer",
            Blocks::PodTermination => "pod-termination",
            Blocks::FinalizeNamespace => "finalize-namespace",
        }
    }

    /// In words, for the docs and messages.
    pub fn describe(self) -> &'static str {
        match self {
            Blocks::Discovery => "the namespace controller's discovery of every API group",
            Blocks::List => "the namespace controller's LIST of the namespace's content",
            Blocks::Delete => "the namespace controller's DELETE of the namespace's content",
            Blocks::RemoveFinalizer => "a controller's removal of its finalizer (UPDATE/PATCH)",
            Blocks::PodTermination => "the end of a pod's termination on its node",
            Blocks::FinalizeNamespace => "the final removal of the namespace's own finalizers",
        }
    }
}

/// How a deny that rests on a check's findings is confirmed first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Confirm {
    /// Cluster facts the watches keep: no confirming read.
    No,
    /// Evidence is objects with finalizers (or a failed list): only those types are read
    /// again.
    Narrow,
    /// Evidence is namespace content in general: every type the namespace holds is read again.
    Content,
}

/// Where a check's remedy goes in a diagnosis, first to last: from what repairs to what
/// discards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// Discovery of an aggregated API, which fails every namespace's deletion.
    Discovery,
    /// Other namespaces already stuck: they finish once discovery is repaired.
    StuckElsewhere,
    /// Webhooks and admission policies that refuse a write the deletion needs.
    Admission,
    /// Types that cannot be listed (a conversion webhook, an aggregated API).
    Listing,
    /// Bringing a finalizer's controller back, before any finalizer is removed by hand.
    Controllers,
    /// Nodes that cannot confirm the end of their pods.
    Nodes,
    /// The namespace's own finalizers.
    NamespaceFinalizers,
}

/// One check's entry in the registry.
#[derive(Clone, Copy, Debug)]
pub struct CheckEntry {
    /// Its stable id, as used in flags, configuration, metrics and JSON.
    pub name: &'static str,
    /// Its severity unless configured otherwise.
    pub default: Severity,
    /// What it stands in the way of.
    pub blocks: Blocks,
    /// One line: what it finds.
    pub title: &'static str,
    /// What to do about its findings, in general (each finding's remedy names the objects).
    pub remedy: &'static str,
    /// Its remedy's place in a diagnosis.
    pub stage: Stage,
    /// What its remedy risks.
    pub risk: &'static str,
    /// How a deny resting on it is confirmed against namespace content.
    pub confirm: Confirm,
    /// Its findings can rest on aggregated discovery (a group-version `Stale`, a type that
    /// discovery still lists): before a deny, discovery is read again, so that an aggregated
    /// API fixed a moment ago is not denied from nsguard's shared copy.
    pub on_discovery: bool,
}

impl CheckEntry {
    /// Its section in `docs/checks.md`.
    pub fn doc(&self) -> String {
        format!("docs/checks.md#{}", self.name)
    }
}

impl CheckId {
    /// Every check, in report order.
    pub fn all() -> impl Iterator<Item = CheckId> {
        Self::ALL.iter().copied()
    }

    /// The stable id, as used in flags, metrics and JSON.
    pub fn as_str(self) -> &'static str {
        self.entry().name
    }

    /// The severity a finding of this check has unless configured otherwise.
    pub fn default_severity(self) -> Severity {
        self.entry().default
    }

    /// What its findings stand in the way of.
    pub fn blocks(self) -> Blocks {
        self.entry().blocks
    }
}

impl std::fmt::Display for CheckId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for CheckId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // The two ids the owner heuristic had before the liveness model still configure it.
        if s == "finalizer-owner-missing" || s == "finalizer-owner-in-namespace" {
            return Ok(CheckId::FinalizerController);
        }
        CheckId::all()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown check {s:?}"))
    }
}

/// `docs/checks.md`, generated from the registry.
pub fn docs() -> String {
    let mut out = String::from(
        "# Checks\n\n<!-- Generated from the checks' entries (src/checks/*.rs, listed in src/checks/registry.rs) by `NSGUARD_BLESS=1 cargo test --lib registry`; do not edit by hand. -->\n\n\
         Each check can be configured `block`, `warn` or `off` (`--check ID=SETTING`, or the \
         configuration file's `checks:`). A check lowers its own findings to advisory where its \
         evidence is incomplete; `block` never raises those.\n\n\
         | id | default | stands in the way of |\n|---|---|---|\n",
    );
    for e in CheckId::all().map(CheckId::entry) {
        out.push_str(&format!(
            "| [`{}`](#{}) | {} | {} |\n",
            e.name,
            e.name,
            e.default.as_str(),
            e.blocks.as_str()
        ));
    }
    for e in CheckId::all().map(CheckId::entry) {
        out.push_str(&format!(
            "\n## {}\n\n{}.\n\n- Default: **{}**.\n- Stands in the way of: {} (`{}`).\n- Remedy: {}.\n- What the remedy risks: {}.\n",
            e.name,
            e.title,
            e.default.as_str(),
            e.blocks.describe(),
            e.blocks.as_str(),
            e.remedy,
            e.risk
        ));
        out.push_str(match e.confirm {
            Confirm::No => "- A deny rests on cluster facts the watches keep current.\n",
            Confirm::Narrow => {
                "- Before a deny, the types holding the evidence are read again with a consistent LIST; only evidence that still holds denies.\n"
            }
            Confirm::Content => {
                "- Before a deny, the namespace's content is read again with a consistent LIST; only evidence that still holds denies.\n"
            }
        });
        if e.on_discovery {
            out.push_str("- Aggregated discovery is read again before a deny: a group-version repaired since is not evidence.\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_check_has_one_entry_named_as_its_id() {
        let mut names = Vec::new();
        for id in CheckId::all() {
            let e = id.entry();
            assert!(!e.title.is_empty() && !e.remedy.is_empty() && !e.risk.is_empty());
            assert!(
                e.name.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
                "{}",
                e.name
            );
            // The name is the id as JSON writes it, and parses back to it.
            assert_eq!(serde_json::to_value(id).unwrap(), e.name);
            assert_eq!(e.name.parse::<CheckId>(), Ok(id));
            names.push(e.name);
        }
        names.sort();
        names.dedup();
        assert_eq!(names.len(), CheckId::ALL.len());
    }

    #[test]
    fn docs_checks_md_is_generated_from_the_registry() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/checks.md");
        let want = docs();
        if std::env::var_os("NSGUARD_BLESS").is_some() {
            std::fs::write(&path, &want).expect("write docs/checks.md");
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "docs/checks.md is stale: run NSGUARD_BLESS=1 cargo test --lib registry"
        );
    }
}
