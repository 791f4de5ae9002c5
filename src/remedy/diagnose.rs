//! Diagnosis of a namespace already `Terminating`: the namespace controller's conditions,
//! what is left inside, the blockers the checks find, and the remedies as commands in a safe
//! order, each with what it risks. Pure: it reads facts and a report and changes nothing.
//!
//! The order goes from what repairs to what discards: first cluster-wide causes (a failing
//! APIService blocks every namespace), then webhooks and unlistable types, then bringing a
//! finalizer's controller back, only then removing a finalizer by hand, and last of all
//! finalizing the namespace through `/finalize`. It never suggests editing etcd or granting
//! anonymous users anything.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::checks::registry::Stage;
use crate::checks::report::{CheckId, Finding, GroupResource, Report, Subject};
use crate::facts::Facts;
use crate::facts::finalizers::is_built_in;

/// At most this many objects are listed (the remedies cover every object).
pub const MAX_OBJECTS: usize = 20;

/// One condition the namespace controller set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Condition {
    /// Type, e.g. `NamespaceDeletionDiscoveryFailure`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `True` or `False`.
    pub status: String,
    /// Reason.
    pub reason: String,
    /// Message.
    pub message: String,
}

/// One object still in the namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RemainingObject {
    /// `resource.group`.
    pub resource: String,
    /// Name.
    pub name: String,
    /// Its finalizers.
    pub finalizers: Vec<String>,
    /// Already being deleted.
    pub deleting: bool,
}

/// One remedy, as a command with its risk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Step {
    /// What this step fixes.
    pub fixes: String,
    /// The command; a line starting with `#` is an instruction, not a command.
    pub command: String,
    /// What it risks.
    pub risk: String,
}

/// The diagnosis.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Diagnosis {
    /// The namespace.
    pub namespace: String,
    /// Its phase.
    pub phase: String,
    /// When its deletion was requested.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleting_since: Option<String>,
    /// The namespace controller's conditions.
    pub conditions: Vec<Condition>,
    /// Objects still inside (at most [`MAX_OBJECTS`]).
    pub remaining: Vec<RemainingObject>,
    /// How many objects remain in all.
    pub remaining_total: usize,
    /// The blockers, as the checks found them.
    pub blockers: Vec<Finding>,
    /// Advisory findings: worth knowing, not what holds the namespace.
    pub advisories: Vec<Finding>,
    /// The remedies, first to last.
    pub steps: Vec<Step>,
    /// What could not be checked.
    pub not_checked: Vec<String>,
}

/// Where a check's remedy goes in the order, and what it risks (from the check registry).
fn place(check: CheckId) -> (Stage, &'static str) {
    let e = check.entry();
    (e.stage, e.risk)
}

const PATCH_RISK: &str = "whatever the finalizer guards outside the cluster (a cloud load balancer, a volume, a DNS record, a bucket) is left behind and must be cleaned up by hand";

const FINALIZE_RISK: &str = "LAST RESORT: anything still stored in the namespace stays in etcd, orphaned, and reappears if a namespace of this name is created again; run it only when every step above is done and nothing is left in the namespace";

/// Diagnoses the namespace in `facts` with the findings in `report`.
pub fn diagnose(facts: &Facts, report: &Report) -> Diagnosis {
    let ns = &facts.namespace.namespace;
    let name = &facts.name;
    let status = ns.status.as_ref();
    let conditions = status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .map(|c| Condition {
            kind: c.type_.clone(),
            status: c.status.clone(),
            reason: c.reason.clone().unwrap_or_default(),
            message: c.message.clone().unwrap_or_default(),
        })
        .collect();
    let mut remaining = Vec::new();
    let mut remaining_total = 0;
    for c in &facts.namespace.content {
        for o in &c.objects {
            remaining_total += 1;
            if remaining.len() < MAX_OBJECTS {
                remaining.push(RemainingObject {
                    resource: c.resource.group_resource(),
                    name: o.name.clone(),
                    finalizers: o.finalizers.clone(),
                    deleting: o.deletion_timestamp.is_some(),
                });
            }
        }
    }

    let mut blockers: Vec<Finding> = report.blocking().cloned().collect();
    blockers.sort_by_key(|f| (place(f.check).0, f.check));
    let advisories: Vec<Finding> = report.advisory().cloned().collect();
    let mut steps: Vec<Step> = Vec::new();
    let mut push = |step: Step| {
        if !steps.iter().any(|s| s.command == step.command) {
            steps.push(step);
        }
    };
    for f in &blockers {
        let (stage, risk) = place(f.check);
        if stage == Stage::Controllers {
            // Bringing the controller back comes before any hand removal.
            let command = match &f.remedy.command {
                Some(c) if !c.starts_with("kubectl delete") => c.clone(),
                _ => format!("# {}", f.remedy.text),
            };
            push(Step {
                fixes: f.summary.clone(),
                command,
                risk: risk.into(),
            });
            continue;
        }
        push(Step {
            fixes: f.summary.clone(),
            command: f
                .remedy
                .command
                .clone()
                .unwrap_or_else(|| format!("# {}", f.remedy.text)),
            risk: risk.into(),
        });
    }
    // Then, for the types whose finalizers nobody will remove, remove those (and only those:
    // Kubernetes' own stay) from every object, objects with the same finalizers in one command.
    // A finalizer judged to have no controller, or one on an object stuck deleting; not
    // `finalizers-pending`'s, whose controllers were not judged at all.
    let held: BTreeSet<&GroupResource> = blockers
        .iter()
        .filter_map(|f| match &f.subject {
            Subject::Finalizer { resource, .. } | Subject::Deleting { resource, .. } => {
                Some(resource)
            }
            _ => None,
        })
        .collect();
    for c in &facts.namespace.content {
        let gr = GroupResource::from(&c.resource);
        if !held.contains(&gr) {
            continue;
        }
        let mut groups: BTreeMap<&[String], Vec<&str>> = BTreeMap::new();
        for o in &c.objects {
            if o.finalizers.iter().any(|f| !is_built_in(f)) {
                groups.entry(&o.finalizers).or_default().push(&o.name);
            }
        }
        for (fins, names) in groups {
            let (kept, removed): (Vec<&String>, Vec<&String>) =
                fins.iter().partition(|f| is_built_in(f));
            let kept = if kept.is_empty() {
                "null".to_string()
            } else {
                serde_json::to_string(&kept).unwrap_or_else(|_| "null".into())
            };
            let removed: Vec<&str> = removed.iter().map(|s| s.as_str()).collect();
            push(Step {
                fixes: format!(
                    "{} {gr} hold finalizers {} that nothing will remove",
                    names.len(),
                    removed.join(", ")
                ),
                command: format!(
                    "kubectl patch {gr} {} -n {name} --type=merge -p '{{\"metadata\":{{\"finalizers\":{kept}}}}}'",
                    names.join(" ")
                ),
                risk: PATCH_RISK.into(),
            });
        }
    }
    let terminating = status.and_then(|s| s.phase.as_deref()) == Some("Terminating");
    let spec_finalizers = ns
        .spec
        .as_ref()
        .and_then(|s| s.finalizers.as_ref())
        .is_some_and(|f| !f.is_empty());
    if terminating && spec_finalizers {
        push(Step {
            fixes: "the namespace's own finalizers, once nothing is left inside".into(),
            command: format!(
                "echo '{{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{{\"name\":\"{name}\"}},\"spec\":{{\"finalizers\":[]}}}}' | kubectl replace --raw /api/v1/namespaces/{name}/finalize -f -"
            ),
            risk: FINALIZE_RISK.into(),
        });
    }
    Diagnosis {
        namespace: name.clone(),
        phase: status
            .and_then(|s| s.phase.clone())
            .unwrap_or_else(|| "Active".into()),
        deleting_since: ns
            .metadata
            .deletion_timestamp
            .as_ref()
            .map(|t| t.0.to_string()),
        conditions,
        remaining,
        remaining_total,
        blockers,
        advisories,
        steps,
        not_checked: report
            .not_checked
            .iter()
            .cloned()
            .chain(
                crate::output::render::not_checked_by_choice(report)
                    .map(|c| c.trim_start_matches("not checked: ").to_string()),
            )
            .collect(),
    }
}

/// The diagnosis for a terminal.
pub fn render(d: &Diagnosis) -> String {
    let mut out = format!("namespace {}: {}", d.namespace, d.phase);
    if let Some(since) = &d.deleting_since {
        out.push_str(&format!(" since {since}"));
    }
    out.push('\n');
    if !d.conditions.is_empty() {
        out.push_str("conditions (from the namespace controller):\n");
        for c in &d.conditions {
            out.push_str(&format!(
                "  {}={} {}: {}\n",
                c.kind, c.status, c.reason, c.message
            ));
        }
    }
    out.push_str(&format!("remaining objects: {}\n", d.remaining_total));
    for r in &d.remaining {
        let fin = if r.finalizers.is_empty() {
            String::new()
        } else {
            format!(" finalizers={}", r.finalizers.join(","))
        };
        let del = if r.deleting { " (deleting)" } else { "" };
        out.push_str(&format!("  {} {}{fin}{del}\n", r.resource, r.name));
    }
    if d.remaining_total > d.remaining.len() {
        out.push_str(&format!(
            "  and {} more\n",
            d.remaining_total - d.remaining.len()
        ));
    }
    if d.blockers.is_empty() {
        out.push_str("blockers: none found; the namespace controller retries with backoff\n");
    } else {
        out.push_str("blockers:\n");
        for f in &d.blockers {
            out.push_str(&format!("  [{}] {}\n", f.check, f.summary));
            for e in &f.evidence {
                out.push_str(&format!("      {e}\n"));
            }
        }
    }
    if !d.steps.is_empty() {
        out.push_str("remedies, in this order (nsguard changed nothing):\n");
        for (i, s) in d.steps.iter().enumerate() {
            out.push_str(&format!(
                "  {}. {}\n     {}\n     risk: {}\n",
                i + 1,
                s.fixes,
                s.command,
                s.risk
            ));
        }
    }
    if !d.advisories.is_empty() {
        out.push_str("advisories (not blockers):\n");
        for f in &d.advisories {
            out.push_str(&format!("  [{}] {}\n", f.check, f.summary));
        }
    }
    for n in &d.not_checked {
        out.push_str(&format!("not checked: {n}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::{self, Settings, fixtures};
    use k8s_openapi::api::core::v1::NamespaceStatus;

    fn terminating(mut facts: Facts) -> Facts {
        facts.namespace.namespace.status = Some(NamespaceStatus {
            phase: Some("Terminating".into()),
            conditions: None,
        });
        facts
    }

    #[test]
    fn a_stale_apiservice_comes_first_and_finalize_last() {
        let facts = terminating(
            fixtures::facts("team-a")
                .with_apiservice(
                    "v1beta1.metrics.k8s.io",
                    "kube-system",
                    "metrics-server",
                    "False",
                    "ServiceNotFound",
                )
                .with_content(
                    "example.com",
                    "widgets",
                    &[("w1", &["example.com/cleanup"])],
                )
                .without_controller("widgets.example.com")
                .build(),
        );
        let report = checks::run(&facts, &Settings::default());
        let d = diagnose(&facts, &report);
        assert_eq!(
            d.steps[0].command,
            "kubectl delete apiservice v1beta1.metrics.k8s.io"
        );
        assert!(d.steps.iter().any(|s| {
            s.command
                .starts_with("kubectl patch widgets.example.com w1 -n team-a")
        }));
        let last = d.steps.last().unwrap();
        assert!(
            last.command
                .contains("kubectl replace --raw /api/v1/namespaces/team-a/finalize -f -")
        );
        assert!(last.risk.starts_with("LAST RESORT"));
        let patch = d
            .steps
            .iter()
            .position(|s| s.command.starts_with("kubectl patch"))
            .unwrap();
        let operator = d
            .steps
            .iter()
            .position(|s| s.command.starts_with('#'))
            .unwrap();
        assert!(
            operator < patch,
            "bring the controller back before removing its finalizer"
        );
    }

    #[test]
    fn never_anonymous_bindings_or_etcd() {
        let facts = terminating(
            fixtures::facts("team-a")
                .with_apiservice(
                    "v1.x.example.com",
                    "team-a",
                    "x",
                    "False",
                    "MissingEndpoints",
                )
                .with_content(
                    "example.com",
                    "widgets",
                    &[("w1", &["example.com/cleanup"])],
                )
                .without_controller("widgets.example.com")
                .with_namespace_spec_finalizers(&["kubernetes", "example.com/ns"])
                .build(),
        );
        let d = diagnose(&facts, &checks::run(&facts, &Settings::default()));
        let text = render(&d);
        for bad in ["system:anonymous", "cluster-admin", "etcdctl"] {
            assert!(!text.contains(bad), "{bad} in {text}");
        }
        assert!(d.steps.iter().all(|s| !s.risk.is_empty()));
    }

    #[test]
    fn an_active_namespace_gets_no_finalize_step() {
        let facts = fixtures::facts("team-a").build();
        let d = diagnose(&facts, &checks::run(&facts, &Settings::default()));
        assert!(d.steps.is_empty());
        assert!(render(&d).contains("blockers: none found"));
    }
}
