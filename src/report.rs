//! Findings and the report: what the checks say, before any policy is applied.

use serde::Serialize;

/// The namespace annotation that allows a deletion despite blockers: `"<reason>"`.
pub const OVERRIDE_ANNOTATION: &str = "nsguard.io/allow-stuck-delete";

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
    /// A `Fail` webhook matching DELETE of present content has no ready backend.
    WebhookBackendUnavailable,
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

impl CheckId {
    /// All checks, in report order.
    pub const ALL: [CheckId; 12] = [
        CheckId::ApiserviceUnavailable,
        CheckId::HostsApiserviceBackend,
        CheckId::HostsWebhookBackend,
        CheckId::HostsConversionBackend,
        CheckId::WebhookBackendUnavailable,
        CheckId::ListFailure,
        CheckId::FinalizerStuck,
        CheckId::FinalizerController,
        CheckId::FinalizersPending,
        CheckId::NamespaceFinalizers,
        CheckId::PodsUnterminable,
        CheckId::ClusterAlreadyStuck,
    ];

    /// The stable id, as used in flags, metrics and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckId::ApiserviceUnavailable => "apiservice-unavailable",
            CheckId::HostsApiserviceBackend => "hosts-apiservice-backend",
            CheckId::HostsWebhookBackend => "hosts-webhook-backend",
            CheckId::HostsConversionBackend => "hosts-conversion-backend",
            CheckId::WebhookBackendUnavailable => "webhook-backend-unavailable",
            CheckId::ListFailure => "list-failure",
            CheckId::FinalizerStuck => "finalizer-stuck",
            CheckId::FinalizerController => "finalizer-controller",
            CheckId::FinalizersPending => "finalizers-pending",
            CheckId::NamespaceFinalizers => "namespace-finalizers",
            CheckId::PodsUnterminable => "pods-unterminable",
            CheckId::ClusterAlreadyStuck => "cluster-already-stuck",
        }
    }

    /// The severity a finding of this check has unless configured otherwise.
    pub fn default_severity(self) -> Severity {
        match self {
            CheckId::FinalizersPending
            | CheckId::NamespaceFinalizers
            | CheckId::PodsUnterminable => Severity::Advisory,
            _ => Severity::Blocking,
        }
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
        CheckId::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown check {s:?}"))
    }
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

/// An object a finding is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ObjectRef {
    /// Kind, or `resource.group` for content.
    pub kind: String,
    /// Namespace, for namespaced objects.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
}

impl ObjectRef {
    /// A cluster-scoped object.
    pub fn cluster(kind: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            namespace: None,
            name: name.into(),
        }
    }

    /// A namespaced object.
    pub fn namespaced(
        kind: impl Into<String>,
        namespace: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        Self {
            kind: kind.into(),
            namespace: Some(namespace.into()),
            name: name.into(),
        }
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {}/{}", self.kind, ns, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// What to do about a finding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Remedy {
    /// In words.
    pub text: String,
    /// As a command, where one exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

/// One reason the deletion would hang, or might.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Which check found it.
    pub check: CheckId,
    /// Blocking or advisory (after the configured severities).
    pub severity: Severity,
    /// One line saying what is wrong.
    pub summary: String,
    /// The objects involved.
    pub objects: Vec<ObjectRef>,
    /// The evidence: condition reasons and messages, finalizers, ages.
    pub evidence: Vec<String>,
    /// What to do.
    pub remedy: Remedy,
}

impl Finding {
    /// A finding with the check's default severity.
    pub fn new(check: CheckId, summary: impl Into<String>, remedy: Remedy) -> Self {
        Self {
            check,
            severity: check.default_severity(),
            summary: summary.into(),
            objects: Vec::new(),
            evidence: Vec::new(),
            remedy,
        }
    }

    /// Adds an object.
    pub fn object(mut self, o: ObjectRef) -> Self {
        self.objects.push(o);
        self
    }

    /// Adds a line of evidence.
    pub fn evidence(mut self, e: impl Into<String>) -> Self {
        self.evidence.push(e.into());
        self
    }
}

/// Finalizers of one resource type that a live controller outside the namespace removes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Handled {
    /// `resource.group`.
    pub resource: String,
    /// The finalizer.
    pub finalizer: String,
    /// The live controller (`namespace/serviceaccount`, or a control-plane user).
    pub controller: String,
    /// Why nsguard expects it to remove the finalizer, and why it is live.
    pub evidence: Vec<String>,
}

/// The outcome of a preflight for one namespace.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The namespace.
    pub namespace: String,
    /// Every finding, blocking first.
    pub findings: Vec<Finding>,
    /// Finalizers found handled: by whom, on what evidence.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub handled: Vec<Handled>,
    /// What could not be checked (deadline, API errors not about this namespace).
    pub not_checked: Vec<String>,
    /// Types not checked by choice (`--skip-resource`, as `resource.group`): never read, so an
    /// object of one of them left with a finalizer would hang the deletion unseen. A standing
    /// caveat, not a failure: the decision does not fail open for it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_checked_by_choice: Vec<String>,
}

impl Report {
    /// Findings that make the deletion hang.
    pub fn blocking(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Blocking)
    }

    /// Findings that only warrant a warning.
    pub fn advisory(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Advisory)
    }

    /// True when the preflight could not look at everything.
    pub fn is_incomplete(&self) -> bool {
        !self.not_checked.is_empty()
    }

    /// The distinct check ids with findings, in order.
    pub fn check_ids(&self) -> Vec<CheckId> {
        let mut ids: Vec<CheckId> = self.findings.iter().map(|f| f.check).collect();
        ids.sort();
        ids.dedup();
        ids
    }
}

/// What a preflight says of a deletion, for the CLI and its exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Nothing found: the deletion would complete.
    Clean,
    /// Advisory findings only, or something could not be checked.
    Warnings,
    /// At least one blocking finding: the deletion would hang.
    WouldHang,
}

impl Verdict {
    /// `clean`, `warnings` or `would-hang`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Clean => "clean",
            Verdict::Warnings => "warnings",
            Verdict::WouldHang => "would-hang",
        }
    }
}

impl Report {
    /// The verdict: would hang, warnings (including anything not checked), or clean.
    pub fn verdict(&self) -> Verdict {
        if self.blocking().count() > 0 {
            Verdict::WouldHang
        } else if self.findings.is_empty() && self.not_checked.is_empty() {
            Verdict::Clean
        } else {
            Verdict::Warnings
        }
    }
}

/// The remedy helper: text with a command.
pub fn remedy(text: impl Into<String>, command: impl Into<Option<String>>) -> Remedy {
    Remedy {
        text: text.into(),
        command: command.into(),
    }
}
