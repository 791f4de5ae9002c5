//! The check registry: one table that says, for every check, its stable id, its default
//! severity, the write of the deletion it stands in the way of, its title, its remedy, where it
//! is documented, where its remedy goes in a diagnosis (and what that remedy risks), and how a
//! deny that rests on it is confirmed. The report, the renderers, `diagnose`, `delete` and
//! `docs/checks.md` are derived from it.
//!
//! Adding a check: a [`CheckId`] variant, its [`Entry`] here, its pure function (one file in
//! `src/checks/`) and its arm in `findings_of` (`src/checks/mod.rs`). The registry's tests fail when any of
//! them is missing, and when `docs/checks.md` no longer matches the table.

use serde::Serialize;

/// Every check nsguard runs, by its stable id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckId {
    /// An aggregated APIService is not Available, or discovery reports a group-version Stale.
    ApiserviceUnavailable,
    /// An APIService's backing Service lives in the namespace being deleted.
    HostsApiserviceBackend,
    /// A `Fail` webhook that deletion depends on has its Service in the namespace.
    HostsWebhookBackend,
    /// A CRD's conversion webhook Service lives in the namespace while its objects exist.
    HostsConversionBackend,
    /// A `Fail` webhook matching a write the deletion needs has no ready backend.
    WebhookBackendUnavailable,
    /// An admission policy refuses a write the deletion needs.
    AdmissionPolicyRefuses,
    /// Listing a namespaced resource type in the namespace fails.
    ListFailure,
    /// Objects already being deleted for longer than the threshold still carry finalizers.
    FinalizerStuck,
    /// Objects with finalizers whose expected controller is not live, or live only inside
    /// the namespace being deleted.
    FinalizerController,
    /// Other objects with finalizers not known to be handled.
    FinalizersPending,
    /// Finalizers on the namespace itself other than the ones Kubernetes handles.
    NamespaceFinalizers,
    /// Pods on nodes that are gone or not Ready without the out-of-service taint.
    PodsUnterminable,
    /// Other namespaces are already stuck for a cluster-wide cause.
    ClusterAlreadyStuck,
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

/// One check's entry.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    /// The check.
    pub id: CheckId,
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
    /// Its remedy's place in a diagnosis: lower goes first.
    pub order: u8,
    /// What its remedy risks.
    pub risk: &'static str,
    /// How a deny resting on it is confirmed.
    pub confirm: Confirm,
}

impl Entry {
    /// Its section in `docs/checks.md`.
    pub fn doc(&self) -> String {
        format!("docs/checks.md#{}", self.name)
    }
}

/// Every check, in report order.
pub const REGISTRY: [Entry; 13] = [
    Entry {
        id: CheckId::ApiserviceUnavailable,
        name: "apiservice-unavailable",
        default: Severity::Blocking,
        blocks: Blocks::Discovery,
        title: "An aggregated APIService is not Available, or discovery reports one of its group-versions Stale: no namespace in the cluster can finish deleting",
        remedy: "restore the APIService's backend (its Service, endpoints and the network path to them), or delete the APIService if its API is no longer wanted",
        order: 0,
        risk: "deleting an APIService removes its API for every client until its owner registers it again; restoring its Service and endpoints instead risks nothing",
        confirm: Confirm::No,
    },
    Entry {
        id: CheckId::HostsApiserviceBackend,
        name: "hosts-apiservice-backend",
        default: Severity::Blocking,
        blocks: Blocks::Discovery,
        title: "An APIService's backing Service lives in this namespace: deleting it makes every namespace deletion hang, this one included",
        remedy: "move the API server out of this namespace, or delete its APIService first (nothing can then use its API)",
        order: 0,
        risk: "deleting an APIService removes its API for every client until its owner registers it again; restoring its Service and endpoints instead risks nothing",
        confirm: Confirm::No,
    },
    Entry {
        id: CheckId::HostsWebhookBackend,
        name: "hosts-webhook-backend",
        default: Severity::Blocking,
        blocks: Blocks::Delete,
        title: "A failurePolicy Fail webhook that intercepts a write the deletion needs has its Service in this namespace: its pods go first, then its calls fail",
        remedy: "delete the objects it intercepts first while it still runs (nsguard delete does this), or delete its webhook configuration, or move its backend out of the namespace",
        order: 2,
        risk: "whatever the webhook enforced is not enforced until it is reinstalled; restoring its Service instead risks nothing",
        confirm: Confirm::Content,
    },
    Entry {
        id: CheckId::HostsConversionBackend,
        name: "hosts-conversion-backend",
        default: Severity::Blocking,
        blocks: Blocks::List,
        title: "A CRD's conversion webhook Service lives in this namespace while objects of that CRD exist",
        remedy: "delete the CRD's objects first while the conversion webhook still runs (nsguard delete does this), or move the webhook out of the namespace",
        order: 3,
        risk: "none when the failing server is repaired; deleting objects discards them",
        confirm: Confirm::Content,
    },
    Entry {
        id: CheckId::WebhookBackendUnavailable,
        name: "webhook-backend-unavailable",
        default: Severity::Blocking,
        blocks: Blocks::Delete,
        title: "A failurePolicy Fail webhook whose Service is missing or has no ready endpoints intercepts a write the deletion needs: the controller's DELETE of content here, or a controller's removal of its finalizer",
        remedy: "restore the webhook's backend (Service and ready endpoints), or delete its webhook configuration if it is no longer wanted",
        order: 2,
        risk: "whatever the webhook enforced is not enforced until it is reinstalled; restoring its Service instead risks nothing",
        confirm: Confirm::Content,
    },
    Entry {
        id: CheckId::AdmissionPolicyRefuses,
        name: "admission-policy-refuses",
        default: Severity::Blocking,
        blocks: Blocks::Delete,
        title: "A ValidatingAdmissionPolicy, through a binding whose validationActions include Deny, refuses a write the deletion needs (the namespace controller's DELETE of content here, or a controller's removal of its finalizer), evaluated in process with CEL as the API server would; what nsguard cannot evaluate (parameters, the authorizer, parts of objects it does not hold, functions its interpreter lacks, runtime errors) is advisory: it may refuse",
        remedy: "exempt the write in the policy (a match condition that skips the namespace controller, or updates of objects being deleted), remove the binding while the namespace is deleted, or delete the protected objects first in a way the policy allows",
        order: 2,
        risk: "whatever the policy protects is unprotected while its binding is changed; deleting protected objects by hand is what the policy guards against: confirm it is intended",
        confirm: Confirm::Content,
    },
    Entry {
        id: CheckId::ListFailure,
        name: "list-failure",
        default: Severity::Blocking,
        blocks: Blocks::List,
        title: "Listing a namespaced resource type in this namespace fails as the namespace controller's list would (conversion webhook down, aggregated API error, 5xx); a 403 for nsguard's own identity is an RBAC gap (advisory)",
        remedy: "repair the server that fails the list (the conversion webhook or aggregated API behind the type); grant nsguard list on the type for a 403",
        order: 3,
        risk: "none when the failing server is repaired; deleting objects discards them",
        confirm: Confirm::Narrow,
    },
    Entry {
        id: CheckId::FinalizerStuck,
        name: "finalizer-stuck",
        default: Severity::Blocking,
        blocks: Blocks::RemoveFinalizer,
        title: "Objects in this namespace already being deleted for longer than the threshold still carry finalizers Kubernetes does not remove itself",
        remedy: "bring back the controller that removes the finalizer (see its logs and events); remove the finalizer by hand only once what it guards is cleaned up",
        order: 4,
        risk: "none: the controller does the cleanup its finalizer stands for",
        confirm: Confirm::Narrow,
    },
    Entry {
        id: CheckId::FinalizerController,
        name: "finalizer-controller",
        default: Severity::Blocking,
        blocks: Blocks::RemoveFinalizer,
        title: "Objects carry a finalizer whose controller is not live, or is live only inside this namespace (its pods are deleted first), or cannot remove it",
        remedy: "bring the controller back (or delete the objects first while it still runs: nsguard delete), grant it update on the type, or declare the controller that removes the finalizer",
        order: 4,
        risk: "none: the controller does the cleanup its finalizer stands for",
        confirm: Confirm::Narrow,
    },
    Entry {
        id: CheckId::FinalizersPending,
        name: "finalizers-pending",
        default: Severity::Advisory,
        blocks: Blocks::RemoveFinalizer,
        title: "Other objects with finalizers that are not known to be handled (counts per kind, with the finalizer names)",
        remedy: "make sure the controllers of these finalizers run outside this namespace, or declare them",
        order: 4,
        risk: "none: the controller does the cleanup its finalizer stands for",
        confirm: Confirm::No,
    },
    Entry {
        id: CheckId::NamespaceFinalizers,
        name: "namespace-finalizers",
        default: Severity::Advisory,
        blocks: Blocks::FinalizeNamespace,
        title: "The namespace itself carries finalizers other than the ones Kubernetes handles",
        remedy: "make sure the controller that owns each namespace finalizer runs",
        order: 7,
        risk: "none: the controller that owns the namespace finalizer does its cleanup",
        confirm: Confirm::No,
    },
    Entry {
        id: CheckId::PodsUnterminable,
        name: "pods-unterminable",
        default: Severity::Advisory,
        blocks: Blocks::PodTermination,
        title: "Pods on nodes that no longer exist, or that are not Ready and lack the out-of-service taint: they cannot finish terminating",
        remedy: "bring the node back, or, once it is really gone, taint it node.kubernetes.io/out-of-service=nodeshutdown:NoExecute (or delete the Node)",
        order: 6,
        risk: "a container on an unreachable node may still be running; confirm the node is really gone",
        confirm: Confirm::No,
    },
    Entry {
        id: CheckId::ClusterAlreadyStuck,
        name: "cluster-already-stuck",
        default: Severity::Blocking,
        blocks: Blocks::Discovery,
        title: "Other namespaces are already Terminating for a cluster-wide cause that is still current (NamespaceDeletionDiscoveryFailure)",
        remedy: "fix the failing API group first (see apiservice-unavailable); the stuck namespaces then finish by themselves",
        order: 1,
        risk: "none: it only reads; the other namespaces finish once the failing API group is fixed",
        confirm: Confirm::No,
    },
];

// The registry holds every variant in declaration order: `CheckId::entry` indexes it.
const _: () = {
    let mut i = 0;
    while i < REGISTRY.len() {
        assert!(REGISTRY[i].id as usize == i);
        i += 1;
    }
};

impl CheckId {
    /// Every check, in report order.
    pub fn all() -> impl Iterator<Item = CheckId> {
        REGISTRY.iter().map(|e| e.id)
    }

    /// Its registry entry.
    pub fn entry(self) -> &'static Entry {
        &REGISTRY[self as usize]
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
        "# Checks\n\n<!-- Generated from src/checks/registry.rs by `NSGUARD_BLESS=1 cargo test --lib registry`; do not edit by hand. -->\n\n\
         Each check can be configured `block`, `warn` or `off` (`--check ID=SETTING`, or the \
         configuration file's `checks:`). A check lowers its own findings to advisory where its \
         evidence is incomplete; `block` never raises those.\n\n\
         | id | default | stands in the way of |\n|---|---|---|\n",
    );
    for e in &REGISTRY {
        out.push_str(&format!(
            "| [`{}`](#{}) | {} | {} |\n",
            e.name,
            e.name,
            e.default.as_str(),
            e.blocks.as_str()
        ));
    }
    for e in &REGISTRY {
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
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Adding a variant fails to compile here until it is listed, and then this test fails
    /// until the registry has its entry.
    fn listed(id: CheckId) -> bool {
        match id {
            CheckId::ApiserviceUnavailable
            | CheckId::HostsApiserviceBackend
            | CheckId::HostsWebhookBackend
            | CheckId::HostsConversionBackend
            | CheckId::WebhookBackendUnavailable
            | CheckId::AdmissionPolicyRefuses
            | CheckId::ListFailure
            | CheckId::FinalizerStuck
            | CheckId::FinalizerController
            | CheckId::FinalizersPending
            | CheckId::NamespaceFinalizers
            | CheckId::PodsUnterminable => true,
            CheckId::ClusterAlreadyStuck => true,
        }
    }

    #[test]
    fn the_last_variant_has_the_last_entry() {
        // ClusterAlreadyStuck is the last variant: every variant before it has an index below.
        assert!(listed(CheckId::ClusterAlreadyStuck));
        assert_eq!(REGISTRY.len(), CheckId::ClusterAlreadyStuck as usize + 1);
        assert!(CheckId::all().all(listed));
    }

    #[test]
    fn every_check_has_one_entry_in_declaration_order() {
        for (i, e) in REGISTRY.iter().enumerate() {
            assert_eq!(e.id as usize, i, "{} is out of order", e.name);
            assert!(!e.title.is_empty() && !e.remedy.is_empty() && !e.risk.is_empty());
            assert!(
                e.name.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
                "{}",
                e.name
            );
            assert_eq!(e.name.parse::<CheckId>(), Ok(e.id));
        }
        let mut names: Vec<&str> = REGISTRY.iter().map(|e| e.name).collect();
        names.dedup();
        assert_eq!(names.len(), REGISTRY.len());
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
