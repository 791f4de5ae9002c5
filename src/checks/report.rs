//! Findings and the report: what the checks say, before any policy is applied.

use serde::Serialize;

/// The namespace annotation that allows a deletion despite blockers: `"<reason>"`.
pub const OVERRIDE_ANNOTATION: &str = "nsguard.io/allow-stuck-delete";

pub use super::registry::{Blocks, CheckId, Severity};
pub use super::subject::{GroupResource, ObjectKind, Subject, WebhookConfig, WebhookKind};

/// An object a finding is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ObjectRef {
    /// Its kind (in JSON: the Kind, or `resource.group` for content).
    pub kind: ObjectKind,
    /// Namespace, for namespaced objects.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
}

impl ObjectRef {
    /// A cluster-scoped object.
    pub fn cluster(kind: ObjectKind, name: impl Into<String>) -> Self {
        Self {
            kind,
            namespace: None,
            name: name.into(),
        }
    }

    /// A namespaced object.
    pub fn namespaced(
        kind: ObjectKind,
        namespace: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            namespace: Some(namespace.into()),
            name: name.into(),
        }
    }

    /// An object of the namespace's content, of type `resource`.
    pub fn content(
        resource: &GroupResource,
        namespace: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        Self::namespaced(ObjectKind::Content(resource.clone()), namespace, name)
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
    /// The step of the deletion it stands in the way of (`delete`, `remove-finalizer`, ...).
    pub blocks: Blocks,
    /// What it is about, typed: what remedies and renderers read.
    pub subject: Subject,
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
    pub fn new(
        check: CheckId,
        subject: Subject,
        summary: impl Into<String>,
        remedy: Remedy,
    ) -> Self {
        Self {
            check,
            severity: check.default_severity(),
            blocks: check.blocks(),
            subject,
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

    /// Says which step of the deletion it stands in the way of, where the check's default
    /// does not say it.
    pub fn blocks(mut self, b: Blocks) -> Self {
        self.blocks = b;
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
    /// The type (`resource.group` in JSON).
    pub resource: GroupResource,
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
