//! `apiservice-unavailable`: an aggregated APIService is not Available, or discovery reports a
//! group-version Stale. Discovery then fails for the namespace controller and *no* namespace
//! in the cluster can finish deleting.
//!
//! Transient states are not evidence. An APIService that was Available and turned unavailable
//! (a rollout, a flapping backend) blocks only once it has been unavailable for longer than
//! the grace (`--apiservice-grace`), measured from its condition's `lastTransitionTime`; inside
//! the grace it is a warning. One that has never been Available (its condition last changed
//! within [`NEVER_AVAILABLE_WITHIN`] of its creation) blocks at once: nothing is in flight
//! that would fix it. A brand-new APIService with no condition yet has not been assessed by
//! the API server: a warning while younger than the grace. A `Stale` group-version blocks
//! unless its APIService is itself inside the grace (going down, or just back up and
//! discovery lagging behind); with no APIService for it, it blocks.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::{
    APIService, APIServiceCondition,
};

use crate::checks::Settings;
use crate::checks::registry::{Blocks, Check, CheckEntry, Confirm, Stage};
use crate::checks::report::{CheckId, Finding, ObjectKind, ObjectRef, Severity, Subject, remedy};
use crate::facts::{Facts, ServiceKey};

/// The `apiservice-unavailable` check.
pub(super) struct ApiserviceUnavailable;

impl Check for ApiserviceUnavailable {
    const ENTRY: CheckEntry = CheckEntry {
        name: "apiservice-unavailable",
        default: Severity::Blocking,
        blocks: Blocks::Discovery,
        title: "An aggregated APIService is not Available, or discovery reports one of its group-versions Stale: no namespace in the cluster can finish deleting",
        remedy: "restore the APIService's backend (its Service, endpoints and the network path to them), or delete the APIService if its API is no longer wanted",
        stage: Stage::Discovery,
        risk: "deleting an APIService removes its API for every client until its owner registers it again; restoring its Service and endpoints instead risks nothing",
        confirm: Confirm::No,
        on_discovery: true,
    };

    fn run(facts: &Facts, settings: &Settings) -> Vec<Finding> {
        check(facts, settings.apiservice_grace)
    }
}

/// An `Available` condition that last changed this close to the APIService's creation was
/// set by the first assessment: the APIService has never been Available.
pub(super) const NEVER_AVAILABLE_WITHIN: i64 = 5;

/// How an APIService with a backend stands, by its own condition and age.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Standing {
    /// Available, and has been for longer than the grace (or since an unknown time).
    Available,
    /// Available again only since `since`, inside the grace: discovery may still lag.
    Recovered { since: Timestamp },
    /// Unavailable since `since` (if known), inside the grace: not evidence yet. `new`: it has
    /// no condition yet and `since` is its creation.
    InGrace { since: Timestamp, new: bool },
    /// Unavailable and evidence of a hang: never Available, or unavailable past the grace.
    Down { never_available: bool },
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

fn available_condition(a: &APIService) -> Option<&APIServiceCondition> {
    a.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Available"))
}

/// The standing of `a` at `now`. Local APIServices (no `spec.service`) are always Available.
pub(super) fn standing(a: &APIService, now: Timestamp, grace: Duration) -> Standing {
    if a.spec.as_ref().and_then(|s| s.service.as_ref()).is_none() {
        return Standing::Available;
    }
    let within_grace = |t: Timestamp| now.as_second().saturating_sub(t.as_second()) < secs(grace);
    let created = a.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let Some(c) = available_condition(a) else {
        return match created {
            Some(t) if within_grace(t) => Standing::InGrace {
                since: t,
                new: true,
            },
            _ => Standing::Down {
                never_available: true,
            },
        };
    };
    let changed = c.last_transition_time.as_ref().map(|t| t.0);
    if c.status == "True" {
        return match changed {
            Some(t) if within_grace(t) => Standing::Recovered { since: t },
            _ => Standing::Available,
        };
    }
    let Some(t) = changed else {
        // No time to measure a grace against: the condition is all the evidence there is.
        return Standing::Down {
            never_available: false,
        };
    };
    let never =
        created.is_some_and(|cr| (t.as_second() - cr.as_second()).abs() <= NEVER_AVAILABLE_WITHIN);
    if never {
        Standing::Down {
            never_available: true,
        }
    } else if within_grace(t) {
        Standing::InGrace {
            since: t,
            new: false,
        }
    } else {
        Standing::Down {
            never_available: false,
        }
    }
}

fn group_version(a: &APIService) -> String {
    let spec = a.spec.as_ref();
    format!(
        "{}/{}",
        spec.and_then(|s| s.group.clone()).unwrap_or_default(),
        spec.and_then(|s| s.version.clone()).unwrap_or_default()
    )
}

/// Whether a group-version is unavailable now, by nsguard's own facts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Outage {
    /// Served: its APIService is Available and discovery has it fresh.
    None,
    /// Unavailable, but inside the grace: not evidence yet.
    InGrace,
    /// Unavailable: evidence that discovery fails for the namespace controller.
    Blocking,
}

/// The outage of `gv` ("group/version"): its APIService's standing, or discovery's `Stale`.
pub(super) fn outage(facts: &Facts, gv: &str, grace: Duration) -> Outage {
    let standings: Vec<Standing> = facts
        .cluster
        .apiservices
        .iter()
        .filter(|a| group_version(a) == gv)
        .map(|a| standing(a, facts.now, grace))
        .collect();
    if standings.iter().any(|s| matches!(s, Standing::Down { .. })) {
        return Outage::Blocking;
    }
    if standings
        .iter()
        .any(|s| matches!(s, Standing::InGrace { .. }))
    {
        return Outage::InGrace;
    }
    if !facts.cluster.discovery.stale.iter().any(|s| s == gv) {
        return Outage::None;
    }
    if standings
        .iter()
        .any(|s| matches!(s, Standing::Recovered { .. }))
    {
        Outage::InGrace
    } else {
        Outage::Blocking
    }
}

pub(super) fn check(facts: &Facts, grace: Duration) -> Vec<Finding> {
    let cluster = &facts.cluster;
    let mut out = Vec::new();
    let mut covered = Vec::new();
    for a in &cluster.apiservices {
        let Some(svc) = a.spec.as_ref().and_then(|s| s.service.as_ref()) else {
            continue;
        };
        let standing = standing(a, facts.now, grace);
        if matches!(standing, Standing::Available | Standing::Recovered { .. }) {
            continue;
        }
        let name = a.metadata.name.clone().unwrap_or_default();
        let available = available_condition(a);
        let gv = group_version(a);
        covered.push(gv.clone());
        let key = ServiceKey {
            namespace: svc.namespace.clone().unwrap_or_default(),
            name: svc.name.clone().unwrap_or_default(),
        };
        let (status, reason) = available
            .map(|c| (c.status.clone(), c.reason.clone().unwrap_or_default()))
            .unwrap_or_else(|| ("Unknown".into(), "NoCondition".into()));
        let fix = remedy(
            format!(
                "restore Service {key} (its endpoints and the network path to it), or delete the stale APIService"
            ),
            format!("kubectl delete apiservice {name}"),
        );
        let subject = Subject::ApiService {
            name: name.clone(),
            service: key.clone(),
        };
        let mut f = match standing {
            Standing::InGrace { since, new } => {
                let what = if new {
                    "is new and not assessed yet"
                } else {
                    "was Available and is flapping"
                };
                let mut f = Finding::new(
                    CheckId::ApiserviceUnavailable,
                    subject,
                    format!(
                        "APIService {name} is Available={status} ({reason}) since {since} ({} ago): it {what}; blocks after {}s",
                        super::age(facts.now, since),
                        grace.as_secs()
                    ),
                    fix,
                )
                .evidence(format!(
                    "inside the {}s grace: a rollout or a restart makes an APIService unavailable for seconds, and the namespace controller retries",
                    grace.as_secs()
                ));
                f.severity = Severity::Advisory;
                f
            }
            _ => Finding::new(
                CheckId::ApiserviceUnavailable,
                subject,
                format!("APIService {name} is Available={status} ({reason}): no namespace can finish deleting"),
                fix,
            ),
        }
        .object(ObjectRef::cluster(ObjectKind::ApiService, &name))
        .object(ObjectRef::namespaced(ObjectKind::Service, &key.namespace, &key.name));
        if let Some(c) = available {
            let since = c
                .last_transition_time
                .as_ref()
                .map(|t| format!(" for {}", super::age(facts.now, t.0)))
                .unwrap_or_default();
            f = f.evidence(format!(
                "Available={} reason {} since{}: {}",
                c.status,
                reason,
                since,
                c.message.clone().unwrap_or_default()
            ));
        }
        if standing
            == (Standing::Down {
                never_available: true,
            })
        {
            f = f.evidence("it has never been Available since it was created");
        }
        let backend = cluster.backends.get(&key);
        f = f.evidence(match backend {
            Some(b) if !b.exists => format!("Service {key} does not exist"),
            Some(b) if b.external => format!("Service {key} is an ExternalName Service"),
            Some(b) => format!("Service {key} has {} ready endpoints", b.ready_endpoints),
            None => format!("Service {key} was not looked at"),
        });
        f = f.evidence(format!(
            "discovery of {gv} fails, so the namespace controller never removes its finalizer"
        ));
        out.push(f);
    }
    for gv in &cluster.discovery.stale {
        if covered.contains(gv) {
            continue;
        }
        let mut f = Finding::new(
            CheckId::ApiserviceUnavailable,
            Subject::GroupVersion {
                group_version: gv.clone(),
            },
            format!("discovery reports {gv} Stale: no namespace can finish deleting"),
            remedy(
                "restore the aggregated API server that serves it, or delete its APIService",
                None,
            ),
        )
        .evidence(format!("aggregated discovery marks {gv} Stale"));
        if outage(facts, gv, grace) == Outage::InGrace {
            f.summary = format!(
                "discovery reports {gv} Stale while its APIService just changed: not evidence yet"
            );
            f = f.evidence(format!(
                "its APIService became Available within the last {}s; discovery lags behind it",
                grace.as_secs()
            ));
            f.severity = Severity::Advisory;
        }
        out.push(f);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::fixtures;
    use super::*;
    use rstest::rstest;

    const GRACE: Duration = Duration::from_secs(30);

    #[test]
    fn unavailable_apiservice_names_the_chain() {
        let facts = fixtures::facts("team-a")
            .with_apiservice(
                "v1beta1.metrics.k8s.io",
                "kube-system",
                "metrics-server",
                "False",
                "ServiceNotFound",
            )
            .build();
        let found = check(&facts, GRACE);
        assert_eq!(found.len(), 1);
        let f = &found[0];
        assert_eq!(f.severity, Severity::Blocking);
        assert!(
            f.summary.contains("v1beta1.metrics.k8s.io"),
            "{}",
            f.summary
        );
        assert!(f.summary.contains("ServiceNotFound"));
        assert!(
            f.evidence
                .iter()
                .any(|e| e.contains("kube-system/metrics-server does not exist")),
            "{:?}",
            f.evidence
        );
        assert_eq!(
            f.remedy.command.as_deref(),
            Some("kubectl delete apiservice v1beta1.metrics.k8s.io")
        );
    }

    #[test]
    fn available_and_local_apiservices_are_fine_but_stale_discovery_is_not() {
        let facts = fixtures::facts("team-a")
            .with_apiservice("v1.ok.example.com", "kube-system", "ok", "True", "Passed")
            .with_stale("broken.example.com/v1")
            .build();
        let found = check(&facts, GRACE);
        assert_eq!(found.len(), 1);
        assert!(found[0].summary.contains("broken.example.com/v1 Stale"));
        assert_eq!(found[0].severity, Severity::Blocking);
    }

    // Now is 12:00:00; the grace is 30s.
    #[rstest]
    #[case::never_available_blocks_at_once(
        "False",
        "11:59:50",
        Some("11:59:51"),
        Some(Severity::Blocking)
    )]
    #[case::flapping_inside_the_grace(
        "False",
        "10:00:00",
        Some("11:59:45"),
        Some(Severity::Advisory)
    )]
    #[case::unavailable_past_the_grace(
        "False",
        "10:00:00",
        Some("11:59:00"),
        Some(Severity::Blocking)
    )]
    #[case::unknown_counts_as_unavailable(
        "Unknown",
        "10:00:00",
        Some("11:59:55"),
        Some(Severity::Advisory)
    )]
    #[case::new_without_a_condition("", "11:59:55", None, Some(Severity::Advisory))]
    #[case::old_without_a_condition("", "11:00:00", None, Some(Severity::Blocking))]
    #[case::available("True", "10:00:00", Some("11:59:55"), None)]
    fn transient_unavailability_is_not_evidence(
        #[case] status: &str,
        #[case] created: &str,
        #[case] changed: Option<&str>,
        #[case] expected: Option<Severity>,
    ) {
        let facts = fixtures::facts("team-a")
            .with_apiservice("v1beta1.metrics.k8s.io", "kube-system", "ms", status, "X")
            .apiservice_timed("v1beta1.metrics.k8s.io", created, changed)
            .build();
        let found = check(&facts, GRACE);
        assert_eq!(found.first().map(|f| f.severity), expected, "{found:?}");
        if expected == Some(Severity::Advisory) {
            assert!(
                found[0].summary.contains("blocks after 30s"),
                "{}",
                found[0].summary
            );
        }
    }

    #[test]
    fn flapping_evidence_says_since_when() {
        let facts = fixtures::facts("team-a")
            .with_apiservice(
                "v1beta1.metrics.k8s.io",
                "kube-system",
                "ms",
                "False",
                "MissingEndpoints",
            )
            .apiservice_timed("v1beta1.metrics.k8s.io", "10:00:00", Some("11:59:50"))
            .build();
        let f = &check(&facts, GRACE)[0];
        assert!(f.summary.contains("flapping"), "{}", f.summary);
        assert!(
            f.summary.contains("since 2026-11-22T11:59:50Z (10s ago)"),
            "{}",
            f.summary
        );
    }

    // A Stale group-version: blocking unless its APIService is inside its grace.
    #[rstest]
    #[case::no_apiservice(None, Severity::Blocking)]
    #[case::apiservice_long_available(Some(("True", "11:00:00")), Severity::Blocking)]
    #[case::apiservice_just_recovered(Some(("True", "11:59:50")), Severity::Advisory)]
    #[case::apiservice_flapping(Some(("False", "11:59:50")), Severity::Advisory)]
    #[case::apiservice_down_past_grace(Some(("False", "11:50:00")), Severity::Blocking)]
    fn stale_discovery_and_its_apiservice(
        #[case] apiservice: Option<(&str, &str)>,
        #[case] expected: Severity,
    ) {
        let mut b = fixtures::facts("team-a").with_stale("metrics.k8s.io/v1beta1");
        if let Some((status, changed)) = apiservice {
            b = b
                .with_apiservice("v1beta1.metrics.k8s.io", "kube-system", "ms", status, "X")
                .apiservice_timed("v1beta1.metrics.k8s.io", "10:00:00", Some(changed));
        }
        let found = check(&b.build(), GRACE);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].severity, expected);
    }
}
