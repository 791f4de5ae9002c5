//! `cluster-already-stuck`: other namespaces are already Terminating with
//! `NamespaceDeletionDiscoveryFailure=True`: the cause is cluster-wide and this deletion would
//! hang too.
//!
//! The condition is left until the namespace controller runs again, so it counts only while
//! its cause is current by nsguard's own facts: the group-versions its message names (for
//! example `... unable to retrieve the complete list of server APIs: metrics.k8s.io/v1beta1:
//! stale GroupVersion discovery: metrics.k8s.io/v1beta1`) must be unavailable now (their
//! APIService not Available, or discovery marks them Stale). A cause that is gone produces
//! nothing; one inside the APIService grace, or a message naming no group-version nsguard can
//! read, a warning.

use std::collections::BTreeSet;
use std::time::Duration;

use super::apiservice_unavailable::{Outage, outage};
use crate::checks::Settings;
use crate::checks::registry::{Blocks, Check, CheckEntry, Confirm, Stage};
use crate::checks::report::{CheckId, Finding, ObjectKind, ObjectRef, Severity, Subject, remedy};
use crate::facts::Facts;

/// The `cluster-already-stuck` check.
pub(super) struct ClusterAlreadyStuck;

impl Check for ClusterAlreadyStuck {
    const ENTRY: CheckEntry = CheckEntry {
        name: "cluster-already-stuck",
        default: Severity::Blocking,
        blocks: Blocks::Discovery,
        title: "Other namespaces are already Terminating for a cluster-wide cause that is still current (NamespaceDeletionDiscoveryFailure)",
        remedy: "fix the failing API group first (see apiservice-unavailable); the stuck namespaces then finish by themselves",
        stage: Stage::StuckElsewhere,
        risk: "none: it only reads; the other namespaces finish once the failing API group is fixed",
        confirm: Confirm::No,
        on_discovery: false,
    };

    fn run(facts: &Facts, settings: &Settings) -> Vec<Finding> {
        check(facts, settings.apiservice_grace)
    }
}

/// The group-versions a discovery failure message names: every `group/version` word, as
/// client-go's `ErrGroupDiscoveryFailed` prints them (`<gv>: <error>, <gv>: <error>`).
pub(super) fn named_group_versions(message: &str) -> BTreeSet<String> {
    message
        .split(|c: char| c.is_whitespace() || c == ',' || c == ';')
        .map(|w| w.trim_end_matches([':', '.', ')']).trim_start_matches('('))
        .filter(|w| is_group_version(w))
        .map(str::to_string)
        .collect()
}

fn is_group_version(w: &str) -> bool {
    let Some((group, version)) = w.split_once('/') else {
        return false;
    };
    // A DNS subdomain, as API group names are (aggregated ones usually have a dot; not always).
    let group_ok = group.split('.').all(|l| {
        !l.is_empty()
            && l.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    });
    // v1, v1beta1, v2alpha3: what Kubernetes versions look like.
    let version_ok = version.strip_prefix('v').is_some_and(|rest| {
        let digits = rest.trim_start_matches(|c: char| c.is_ascii_digit());
        rest.len() > digits.len()
            && (digits.is_empty()
                || ["alpha", "beta"].iter().any(|p| {
                    digits
                        .strip_prefix(p)
                        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
                }))
    });
    group_ok && version_ok
}

/// One stuck namespace, by whether its cause is current.
enum Cause {
    /// The named group-versions unavailable now, past the grace.
    Current(Vec<String>),
    /// Unavailable now, but inside the grace.
    InGrace(Vec<String>),
    /// The message names nothing nsguard can check.
    Unreadable(String),
}

pub(super) fn check(facts: &Facts, grace: Duration) -> Vec<Finding> {
    let mut current: Vec<(String, Vec<String>)> = Vec::new();
    let mut in_grace: Vec<(String, Vec<String>)> = Vec::new();
    let mut unreadable: Vec<(String, String)> = Vec::new();
    for ns in &facts.cluster.terminating {
        let name = ns.metadata.name.clone().unwrap_or_default();
        if name == facts.name {
            continue;
        }
        let Some(c) = ns
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| {
                c.iter()
                    .find(|c| c.type_ == "NamespaceDeletionDiscoveryFailure")
            })
            .filter(|c| c.status == "True")
        else {
            continue;
        };
        let message = c.message.clone().unwrap_or_default();
        let named = named_group_versions(&message);
        let cause = if named.is_empty() {
            Cause::Unreadable(message)
        } else {
            let (mut blocking, mut waiting) = (Vec::new(), Vec::new());
            for gv in named {
                match outage(facts, &gv, grace) {
                    Outage::Blocking => blocking.push(gv),
                    Outage::InGrace => waiting.push(gv),
                    Outage::None => {}
                }
            }
            if !blocking.is_empty() {
                Cause::Current(blocking)
            } else if !waiting.is_empty() {
                Cause::InGrace(waiting)
            } else {
                // Its cause is gone: the controller simply has not run again yet.
                continue;
            }
        };
        match cause {
            Cause::Current(gvs) => current.push((name, gvs)),
            Cause::InGrace(gvs) => in_grace.push((name, gvs)),
            Cause::Unreadable(m) => unreadable.push((name, m)),
        }
    }
    let mut out = Vec::new();
    if let Some(f) = finding(
        current,
        "namespaces are already stuck on failing discovery",
        "now unavailable",
        Severity::Blocking,
    ) {
        out.push(f);
    }
    if let Some(f) = finding(
        in_grace,
        "namespaces are stuck on discovery of an API that is unavailable only for seconds",
        "unavailable, inside the grace",
        Severity::Advisory,
    ) {
        out.push(f);
    }
    unreadable.sort();
    if let Some((first, message)) = unreadable.first() {
        let mut f = Finding::new(
            CheckId::ClusterAlreadyStuck,
            Subject::StuckNamespaces {
                group_versions: Vec::new(),
            },
            format!(
                "{} namespaces show a discovery failure naming no group-version nsguard can check (e.g. {first})",
                unreadable.len()
            ),
            remedy(
                "read the condition; fix the failing API group it names",
                format!("kubectl get namespace {first} -o jsonpath='{{.status.conditions}}'"),
            ),
        )
        .evidence(format!("NamespaceDeletionDiscoveryFailure: {message}"));
        f.severity = Severity::Advisory;
        for (name, _) in unreadable.iter().take(5) {
            f = f.object(ObjectRef::cluster(ObjectKind::Namespace, name));
        }
        out.push(f);
    }
    out
}

fn finding(
    mut stuck: Vec<(String, Vec<String>)>,
    what: &str,
    state: &str,
    severity: Severity,
) -> Option<Finding> {
    stuck.sort();
    let (first, _) = stuck.first()?;
    let gvs: BTreeSet<&String> = stuck.iter().flat_map(|(_, g)| g).collect();
    let gvs: Vec<&str> = gvs.into_iter().map(String::as_str).collect();
    let mut f = Finding::new(
        CheckId::ClusterAlreadyStuck,
        Subject::StuckNamespaces {
            group_versions: gvs.iter().map(|g| g.to_string()).collect(),
        },
        format!("{} {what} (e.g. {first})", stuck.len()),
        remedy(
            "fix the failing API group first (see apiservice-unavailable); then they and this one can finish",
            format!("kubectl get namespace {first} -o jsonpath='{{.status.conditions}}'"),
        ),
    )
    .evidence(format!(
        "NamespaceDeletionDiscoveryFailure names {}, {state}",
        gvs.join(", ")
    ));
    f.severity = severity;
    for (name, _) in stuck.iter().take(5) {
        f = f.object(ObjectRef::cluster(ObjectKind::Namespace, name));
    }
    Some(f)
}

#[cfg(test)]
mod tests {
    use super::super::fixtures;
    use super::*;
    use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition, NamespaceStatus};
    use rstest::rstest;
    use std::sync::Arc;

    const GRACE: Duration = Duration::from_secs(30);
    /// The message the namespace controller writes (namespace-deletion.md, 4.2).
    const STALE_METRICS: &str = "Discovery failed for some groups, 1 failing: unable to retrieve the complete list of server APIs: metrics.k8s.io/v1beta1: stale GroupVersion discovery: metrics.k8s.io/v1beta1";

    fn terminating(name: &str, condition: &str, message: &str) -> Namespace {
        let mut ns = Namespace::default();
        ns.metadata.name = Some(name.into());
        ns.status = Some(NamespaceStatus {
            phase: Some("Terminating".into()),
            conditions: Some(vec![NamespaceCondition {
                type_: condition.into(),
                status: "True".into(),
                message: Some(message.into()),
                ..Default::default()
            }]),
        });
        ns
    }

    fn with_stuck(mut facts: Facts, stuck: Vec<Namespace>) -> Facts {
        Arc::get_mut(&mut facts.cluster).unwrap().terminating = stuck;
        facts
    }

    #[test]
    fn other_namespaces_stuck_on_discovery_count_not_this_one_nor_other_causes() {
        let facts = with_stuck(
            fixtures::facts("team-a")
                .with_stale("metrics.k8s.io/v1beta1")
                .build(),
            vec![
                terminating("team-a", "NamespaceDeletionDiscoveryFailure", STALE_METRICS),
                terminating("old-1", "NamespaceDeletionDiscoveryFailure", STALE_METRICS),
                terminating("old-2", "NamespaceFinalizersRemaining", STALE_METRICS),
            ],
        );
        let found = check(&facts, GRACE);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].severity, Severity::Blocking);
        assert!(
            found[0].summary.starts_with("1 namespaces"),
            "{}",
            found[0].summary
        );
        assert_eq!(found[0].objects[0].name, "old-1");
        assert!(found[0].evidence[0].contains("metrics.k8s.io/v1beta1"));
    }

    #[rstest]
    #[case::stale_discovery_now(true, None, Some(Severity::Blocking))]
    #[case::apiservice_down_now(false, Some(("False", "11:50:00")), Some(Severity::Blocking))]
    #[case::apiservice_flapping(false, Some(("False", "11:59:50")), Some(Severity::Advisory))]
    #[case::cause_gone(false, Some(("True", "11:50:00")), None)]
    #[case::cause_gone_no_apiservice(false, None, None)]
    fn counts_only_while_its_cause_is_current(
        #[case] stale: bool,
        #[case] apiservice: Option<(&str, &str)>,
        #[case] expected: Option<Severity>,
    ) {
        let mut b = fixtures::facts("team-a");
        if stale {
            b = b.with_stale("metrics.k8s.io/v1beta1");
        }
        if let Some((status, changed)) = apiservice {
            b = b
                .with_apiservice("v1beta1.metrics.k8s.io", "kube-system", "ms", status, "X")
                .apiservice_timed("v1beta1.metrics.k8s.io", "10:00:00", Some(changed));
        }
        let facts = with_stuck(
            b.build(),
            vec![terminating(
                "old-1",
                "NamespaceDeletionDiscoveryFailure",
                STALE_METRICS,
            )],
        );
        let found = check(&facts, GRACE);
        assert_eq!(found.first().map(|f| f.severity), expected, "{found:?}");
    }

    #[test]
    fn a_message_naming_nothing_readable_is_a_warning() {
        let facts = with_stuck(
            fixtures::facts("team-a").build(),
            vec![terminating(
                "old-1",
                "NamespaceDeletionDiscoveryFailure",
                "Discovery failed for some groups: something odd",
            )],
        );
        let found = check(&facts, GRACE);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].severity, Severity::Advisory);
        assert!(found[0].evidence[0].contains("something odd"));
    }

    #[rstest]
    #[case::aggregated(STALE_METRICS, &["metrics.k8s.io/v1beta1"])]
    #[case::legacy_two_groups(
        "Discovery failed for some groups, 2 failing: unable to retrieve the complete list of server APIs: custom.metrics.k8s.io/v1beta2: the server is currently unable to handle the request, metrics.k8s.io/v1beta1: the server is currently unable to handle the request",
        &["custom.metrics.k8s.io/v1beta2", "metrics.k8s.io/v1beta1"]
    )]
    #[case::urls_and_paths_are_not_group_versions(
        "Get \"https://10.0.0.1:443/apis/metrics.k8s.io/v1beta1\": dial tcp: i/o timeout",
        &[]
    )]
    #[case::not_a_version("broken.example.com/latest: failed, i/o error", &[])]
    #[case::dotless_group("foo/v1alpha1: stale GroupVersion discovery: foo/v1alpha1", &["foo/v1alpha1"])]
    fn group_versions_in_the_message(#[case] message: &str, #[case] expected: &[&str]) {
        let got: Vec<String> = named_group_versions(message).into_iter().collect();
        assert_eq!(got, expected);
    }
}
