//! Reports as Kubernetes PolicyReports: one report per namespace, in the `openreports.io`
//! `Report` format (or the older `wgpolicyk8s.io/v1alpha2` `PolicyReport`, whichever the
//! cluster serves), so that what `nsguard audit` finds shows up in the tools that read
//! reports (Policy Reporter, Kyverno's UI). nsguard only prints them; the person runs
//! `kubectl apply`, so the webhook needs no write access.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{Value, json};

use crate::checks::report::{
    Finding, GroupResource, ObjectKind, ObjectRef, Report, Severity, Subject,
};

/// The name of every report nsguard prints (one per namespace), and its `source` and `policy`.
pub const NAME: &str = "nsguard";

/// The rule of the result that says a namespace would delete cleanly, or what was not checked.
pub const PREFLIGHT_RULE: &str = "preflight";

/// Which report API to print.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportApi {
    /// `openreports.io/v1alpha1` `Report`, what Kyverno 1.15 and later read.
    #[default]
    #[value(name = "openreports.io/v1alpha1")]
    OpenReports,
    /// `wgpolicyk8s.io/v1alpha2` `PolicyReport`, the older API of the Policy WG.
    #[value(name = "wgpolicyk8s.io/v1alpha2")]
    Wgpolicy,
}

impl ReportApi {
    /// The apiVersion.
    pub fn api_version(self) -> &'static str {
        match self {
            ReportApi::OpenReports => "openreports.io/v1alpha1",
            ReportApi::Wgpolicy => "wgpolicyk8s.io/v1alpha2",
        }
    }

    /// The namespaced kind.
    pub fn kind(self) -> &'static str {
        match self {
            ReportApi::OpenReports => "Report",
            ReportApi::Wgpolicy => "PolicyReport",
        }
    }

    /// The resource (plural) of the kind.
    pub fn plural(self) -> &'static str {
        match self {
            ReportApi::OpenReports => "reports",
            ReportApi::Wgpolicy => "policyreports",
        }
    }
}

/// Why no report API could be chosen.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// Neither API is served.
    #[error(
        "the cluster serves neither openreports.io/v1alpha1 (kind Report) nor wgpolicyk8s.io/v1alpha2 (kind PolicyReport): install the CRD of one of them (Kyverno and Policy Reporter do), or name one with --policyreport-api"
    )]
    Neither,
    /// Discovery failed.
    #[error("discovering {api_version}: {source}")]
    Api {
        /// The group version asked for.
        api_version: &'static str,
        /// The error.
        source: kube::Error,
    },
}

/// The report API the cluster serves: `openreports.io/v1alpha1` if it does, else
/// `wgpolicyk8s.io/v1alpha2`, else [`DiscoveryError::Neither`].
pub async fn discover(client: &kube::Client) -> Result<ReportApi, DiscoveryError> {
    for api in [ReportApi::OpenReports, ReportApi::Wgpolicy] {
        match crate::cluster::serves(client, api.api_version(), api.plural()).await {
            Ok(true) => return Ok(api),
            Ok(false) => {}
            Err(source) => {
                return Err(DiscoveryError::Api {
                    api_version: api.api_version(),
                    source,
                });
            }
        }
    }
    Err(DiscoveryError::Neither)
}

/// A result: pass, fail, warn or skip, in the reports' vocabulary (`PolicyResult` in their schema).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyResult {
    /// Nothing would keep the namespace Terminating.
    Pass,
    /// A blocking finding: the deletion would hang.
    Fail,
    /// An advisory finding.
    Warn,
    /// Something was not checked (nsguard could not read it, or was told not to).
    Skip,
}

/// When the results were found, as `metav1.Timestamp` (`{seconds, nanos}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Timestamp {
    /// Seconds since the Unix epoch.
    pub seconds: i64,
    /// Nanoseconds within the second.
    pub nanos: i32,
}

impl Timestamp {
    /// Now.
    pub fn now() -> Self {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self {
            seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
        }
    }
}

/// One result of a report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReportResult {
    /// `nsguard`.
    pub source: &'static str,
    /// `nsguard`.
    pub policy: &'static str,
    /// The check id, or `preflight`.
    pub rule: String,
    /// What nsguard checks.
    pub category: &'static str,
    /// pass, fail, warn or skip.
    pub result: PolicyResult,
    /// `high` for blocking findings, `medium` for advisory ones, `info` otherwise.
    pub severity: &'static str,
    /// Whether the result counts towards the namespace's score (warnings and skips do not).
    pub scored: bool,
    /// One line saying what is wrong, or that nothing is.
    pub message: String,
    /// The objects the finding is about, as `ObjectReference`s.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<Reference>,
    /// Evidence and remedy (and objects that are no API object, such as a resource type).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
    /// When it was found.
    pub timestamp: Timestamp,
}

/// An object of a result, in `corev1.ObjectReference`'s shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reference {
    /// `group/version`, or `v1`.
    pub api_version: String,
    /// The kind.
    pub kind: String,
    /// The namespace, for namespaced objects.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The name.
    pub name: String,
}

/// The apiVersion and kind of the objects findings name: a report names built-in objects by
/// kind and custom ones by `resource.group`; the facts of the namespace know the latter's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Kinds(pub BTreeMap<GroupResource, (String, String)>);

impl Kinds {
    /// The kinds of the namespace's content types, from its facts.
    pub fn of(facts: &crate::facts::Facts) -> Self {
        Self(
            facts
                .namespace
                .content
                .iter()
                .map(|c| {
                    (
                        GroupResource::from(&c.resource),
                        (c.resource.api_version(), c.resource.kind.clone()),
                    )
                })
                .collect(),
        )
    }

    /// The reference for `o`, when its kind is known.
    pub fn reference(&self, o: &ObjectRef) -> Option<Reference> {
        let (api_version, kind) = match &o.kind {
            ObjectKind::Content(gr) => self.0.get(gr).cloned()?,
            named => named.api().map(|(v, k)| (v.to_string(), k.to_string()))?,
        };
        Some(Reference {
            api_version,
            kind,
            namespace: o.namespace.clone(),
            name: o.name.clone(),
        })
    }
}

/// Counts of results by outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Passed.
    pub pass: u32,
    /// Failed: the deletion would hang.
    pub fail: u32,
    /// Warnings.
    pub warn: u32,
    /// Errors of the policy engine itself: nsguard reports what it could not check as
    /// `skip`, so always 0.
    pub error: u32,
    /// Not checked.
    pub skip: u32,
}

const CATEGORY: &str = "Namespace deletion";

fn result(rule: String, outcome: PolicyResult, message: String, now: Timestamp) -> ReportResult {
    ReportResult {
        source: NAME,
        policy: NAME,
        rule,
        category: CATEGORY,
        result: outcome,
        severity: "info",
        scored: matches!(outcome, PolicyResult::Pass | PolicyResult::Fail),
        message,
        resources: Vec::new(),
        properties: BTreeMap::new(),
        timestamp: now,
    }
}

fn from_finding(f: &Finding, kinds: &Kinds, now: Timestamp) -> ReportResult {
    let (outcome, severity) = match f.severity {
        Severity::Blocking => (PolicyResult::Fail, "high"),
        Severity::Advisory => (PolicyResult::Warn, "medium"),
    };
    let mut r = result(f.check.as_str().into(), outcome, f.summary.clone(), now);
    r.severity = severity;
    let mut other = Vec::new();
    // A type that cannot be listed is no object: it stays a property.
    if let Subject::ResourceType { resource } = &f.subject {
        other.push(format!("Resource {resource}"));
    }
    for o in &f.objects {
        match kinds.reference(o) {
            Some(reference) => r.resources.push(reference),
            None => other.push(o.to_string()),
        }
    }
    let mut put = |k: &str, v: String| {
        if !v.is_empty() {
            r.properties.insert(k.into(), v);
        }
    };
    put("evidence", f.evidence.join("\n"));
    put("objects", other.join("\n"));
    put("remedy", f.remedy.text.clone());
    put(
        "remedyCommand",
        f.remedy.command.clone().unwrap_or_default(),
    );
    put("nsguardSeverity", f.severity.as_str().into());
    r
}

/// The results for one namespace's report: one per finding (its objects in `resources`),
/// one `skip` per thing not checked, and a single `pass` when there is neither.
pub fn results(report: &Report, kinds: &Kinds, now: Timestamp) -> Vec<ReportResult> {
    let mut out: Vec<ReportResult> = report
        .findings
        .iter()
        .map(|f| from_finding(f, kinds, now))
        .collect();
    out.extend(report.not_checked.iter().map(|what| {
        result(
            PREFLIGHT_RULE.into(),
            PolicyResult::Skip,
            format!("not checked: {what}"),
            now,
        )
    }));
    // Types skipped by choice (skipped by configuration): never read, so not checked either.
    out.extend(
        crate::output::render::not_checked_by_choice(report)
            .map(|caveat| result(PREFLIGHT_RULE.into(), PolicyResult::Skip, caveat, now)),
    );
    if out.is_empty() {
        out.push(result(
            PREFLIGHT_RULE.into(),
            PolicyResult::Pass,
            "nothing would keep this namespace Terminating if it were deleted now".into(),
            now,
        ));
    }
    out
}

/// The counts of `results` by outcome.
pub fn summary(results: &[ReportResult]) -> Summary {
    let mut s = Summary::default();
    for r in results {
        match r.result {
            PolicyResult::Pass => s.pass += 1,
            PolicyResult::Fail => s.fail += 1,
            PolicyResult::Warn => s.warn += 1,
            PolicyResult::Skip => s.skip += 1,
        }
    }
    s
}

/// The report object for one namespace.
pub fn report(api: ReportApi, report: &Report, kinds: &Kinds, now: Timestamp) -> Value {
    let results = results(report, kinds, now);
    let mut doc = json!({
        "apiVersion": api.api_version(),
        "kind": api.kind(),
        "metadata": {
            "name": NAME,
            "namespace": report.namespace,
            "labels": {"app.kubernetes.io/managed-by": NAME},
        },
        "scope": {"apiVersion": "v1", "kind": "Namespace", "name": report.namespace},
        "summary": summary(&results),
        "results": results,
    });
    // Only the openreports.io Report has a report-level source; the older PolicyReport
    // names it on each result, which both carry.
    if api == ReportApi::OpenReports {
        doc["source"] = json!(NAME);
    }
    doc
}

/// Every report as one `v1` `List`, which `kubectl apply -f -` takes as it is.
pub fn list<'a>(
    api: ReportApi,
    reports: impl IntoIterator<Item = (&'a Report, &'a Kinds)>,
    now: Timestamp,
) -> Value {
    let items: Vec<Value> = reports
        .into_iter()
        .map(|(r, kinds)| report(api, r, kinds, now))
        .collect();
    json!({"apiVersion": "v1", "kind": "List", "items": items})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::report::{CheckId, ObjectRef, remedy};

    const NOW: Timestamp = Timestamp {
        seconds: 1_700_000_000,
        nanos: 5,
    };

    fn kinds() -> Kinds {
        Kinds(BTreeMap::from([(
            GroupResource::new("example.com", "gadgets"),
            ("example.com/v1".to_string(), "Gadget".to_string()),
        )]))
    }

    fn hanging() -> Report {
        Report {
            namespace: "team-a".into(),
            findings: vec![
                Finding::new(
                    CheckId::FinalizerController,
                    Subject::Finalizer {
                        resource: GroupResource::new("example.com", "gadgets"),
                        finalizer: "example.com/cleanup".into(),
                    },
                    "2 gadgets.example.com hold example.com/cleanup and no live controller removes it",
                    remedy(
                        "run the controller again, or remove the finalizers",
                        Some("kubectl patch gadgets.example.com g1 -n team-a --type=merge -p '{\"metadata\":{\"finalizers\":null}}'".into()),
                    ),
                )
                .object(ObjectRef::content(
                    &GroupResource::new("example.com", "gadgets"),
                    "team-a",
                    "g1",
                ))
                .evidence("finalizer example.com/cleanup")
                .evidence("no RBAC grant names gadgets.example.com"),
                Finding::new(
                    CheckId::FinalizersPending,
                    Subject::Finalizers {
                        resource: GroupResource::new("", "configmaps"),
                        finalizers: vec!["other.io/x".into()],
                    },
                    "1 configmaps holds other.io/x",
                    remedy("wait", None),
                ),
            ],
            handled: vec![],
            not_checked: vec!["list of widgets.example.com: timed out".into()],
            not_checked_by_choice: vec![],
        }
    }

    #[test]
    fn a_hanging_namespace_fails_with_the_check_as_rule_its_objects_as_resources() {
        let doc = report(ReportApi::OpenReports, &hanging(), &kinds(), NOW);
        assert_eq!(doc["apiVersion"], "openreports.io/v1alpha1");
        assert_eq!(doc["kind"], "Report");
        assert_eq!(doc["metadata"]["name"], "nsguard");
        assert_eq!(doc["metadata"]["namespace"], "team-a");
        assert_eq!(doc["source"], "nsguard");
        assert_eq!(
            doc["scope"],
            json!({"apiVersion": "v1", "kind": "Namespace", "name": "team-a"})
        );
        assert_eq!(
            doc["summary"],
            json!({"pass": 0, "fail": 1, "warn": 1, "error": 0, "skip": 1})
        );
        let r = &doc["results"];
        assert_eq!(r.as_array().unwrap().len(), 3);
        assert_eq!(r[0]["rule"], "finalizer-controller");
        assert_eq!(r[0]["result"], "fail");
        assert_eq!(r[0]["severity"], "high");
        assert_eq!(r[0]["policy"], "nsguard");
        assert_eq!(r[0]["source"], "nsguard");
        assert_eq!(r[0]["scored"], true);
        assert_eq!(
            r[0]["timestamp"],
            json!({"seconds": 1_700_000_000, "nanos": 5})
        );
        let p = &r[0]["properties"];
        assert_eq!(
            p["evidence"],
            "finalizer example.com/cleanup\nno RBAC grant names gadgets.example.com"
        );
        assert!(p.get("objects").is_none(), "{p}");
        assert_eq!(
            r[0]["resources"],
            json!([{"apiVersion": "example.com/v1", "kind": "Gadget", "namespace": "team-a", "name": "g1"}])
        );
        assert!(
            p["remedyCommand"]
                .as_str()
                .unwrap()
                .starts_with("kubectl patch")
        );
        assert_eq!(p["nsguardSeverity"], "blocking");
        assert_eq!(r[1]["rule"], "finalizers-pending");
        assert_eq!(r[1]["result"], "warn");
        assert_eq!(r[1]["scored"], false);
        assert!(r[1]["properties"].get("remedyCommand").is_none());
        assert!(r[1].get("resources").is_none(), "{}", r[1]);
        assert_eq!(r[2]["rule"], "preflight");
        assert_eq!(r[2]["result"], "skip");
        assert_eq!(r[2]["scored"], false);
        assert!(r[2]["message"].as_str().unwrap().contains("widgets"));
        // Every property is a string: the CRDs declare map[string]string.
        for result in r.as_array().unwrap() {
            for v in result["properties"]
                .as_object()
                .into_iter()
                .flat_map(|m| m.values())
            {
                assert!(v.is_string(), "{v}");
            }
        }
    }

    #[test]
    fn a_clean_namespace_gets_one_pass() {
        let clean = Report {
            namespace: "quiet".into(),
            ..Default::default()
        };
        let doc = report(ReportApi::OpenReports, &clean, &Kinds::default(), NOW);
        assert_eq!(
            doc["summary"],
            json!({"pass": 1, "fail": 0, "warn": 0, "error": 0, "skip": 0})
        );
        assert_eq!(doc["results"][0]["rule"], "preflight");
        assert_eq!(doc["results"][0]["result"], "pass");
    }

    #[test]
    fn the_older_api_is_a_policyreport_with_the_source_on_each_result() {
        let doc = report(ReportApi::Wgpolicy, &hanging(), &kinds(), NOW);
        assert_eq!(doc["apiVersion"], "wgpolicyk8s.io/v1alpha2");
        assert_eq!(doc["kind"], "PolicyReport");
        assert!(doc.get("source").is_none());
        assert_eq!(doc["results"][0]["source"], "nsguard");
    }

    #[test]
    fn the_list_is_what_kubectl_apply_takes() {
        let reports = [
            hanging(),
            Report {
                namespace: "quiet".into(),
                ..Default::default()
            },
        ];
        let kinds = kinds();
        let doc = list(
            ReportApi::OpenReports,
            reports.iter().map(|r| (r, &kinds)),
            NOW,
        );
        assert_eq!(doc["apiVersion"], "v1");
        assert_eq!(doc["kind"], "List");
        let names: Vec<&str> = doc["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["namespace"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["team-a", "quiet"]);
    }

    #[test]
    fn built_in_kinds_are_references_and_what_is_no_object_stays_a_property() {
        let f = Finding::new(
            CheckId::ListFailure,
            Subject::ResourceType {
                resource: GroupResource::new("example.com", "widgets"),
            },
            "listing widgets.example.com fails",
            remedy("fix the server", None),
        )
        .object(ObjectRef::cluster(ObjectKind::ApiService, "v1.example.com"))
        .object(ObjectRef::namespaced(ObjectKind::Service, "team-a", "api"));
        let r = from_finding(&f, &Kinds::default(), NOW);
        let refs = serde_json::to_value(&r.resources).unwrap();
        assert_eq!(
            refs,
            json!([
                {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "name": "v1.example.com"},
                {"apiVersion": "v1", "kind": "Service", "namespace": "team-a", "name": "api"},
            ])
        );
        assert_eq!(r.properties["objects"], "Resource widgets.example.com");
    }

    #[test]
    fn types_skipped_by_choice_are_skipped() {
        let skipped = Report {
            namespace: "quiet".into(),
            not_checked_by_choice: vec!["secrets".into()],
            ..Default::default()
        };
        let doc = report(ReportApi::OpenReports, &skipped, &Kinds::default(), NOW);
        assert_eq!(doc["results"][0]["result"], "skip");
        assert_eq!(
            doc["summary"],
            json!({"pass": 0, "fail": 0, "warn": 0, "error": 0, "skip": 1})
        );
    }

    #[test]
    fn now_is_after_2024() {
        assert!(Timestamp::now().seconds > 1_704_067_200);
    }
}
