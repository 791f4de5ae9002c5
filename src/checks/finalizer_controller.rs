//! `finalizer-controller`: for each (resource, finalizer) on objects in the namespace, the
//! controller expected to remove it (see [`crate::facts::controllers`] for the evidence) and
//! whether it is live. Not live anywhere, or live only inside this namespace (its pods are
//! deleted first): blocking, one finding per (resource, finalizer). Live elsewhere: handled.
//! nsguard's own failures to tell (`Liveness::Unknown`) are not evidence: no finding, and the
//! report says what was not checked. Built-in finalizers are never looked at here.

use std::collections::BTreeSet;

use super::finalizer_ties::{domain, ties};
use crate::checks::Settings;
use crate::checks::registry::{Blocks, Check, CheckEntry, Confirm, Stage};
use crate::checks::report::{
    CheckId, Finding, GroupResource, Handled, ObjectRef, Severity, Subject, remedy,
};
use crate::facts::controllers::{Expected, Liveness, ResourceControllers};
use crate::facts::{Content, Facts, finalizers};

/// The `finalizer-controller` check.
pub(super) struct FinalizerController;

impl Check for FinalizerController {
    const ENTRY: CheckEntry = CheckEntry {
        name: "finalizer-controller",
        default: Severity::Blocking,
        blocks: Blocks::RemoveFinalizer,
        title: "Objects carry a finalizer whose controller is not live, or is live only inside this namespace (its pods are deleted first), or cannot remove it",
        remedy: "bring the controller back (or delete the objects first while it still runs: nsguard delete), grant it update on the type, or declare the controller that removes the finalizer",
        stage: Stage::Controllers,
        risk: "none: the controller does the cleanup its finalizer stands for",
        confirm: Confirm::Narrow,
        on_discovery: false,
    };

    fn run(facts: &Facts, _settings: &Settings) -> Vec<Finding> {
        let mut found = check(facts);
        // The right to remove a finalizer must outlive the deletion.
        found.extend(super::removal_rights::check(facts));
        found
    }
}

pub(super) type Candidate = (Expected, Liveness);

/// What one (resource, finalizer) comes to.
pub(super) enum Judgement<'a> {
    /// Live candidates tied to it cover every object holding it.
    Handled(Vec<&'a Candidate>),
    /// Its controller runs only in this namespace.
    HereOnly(Vec<&'a Candidate>, Vec<&'a str>),
    /// Its controller (or the type's, when nothing is live) is not live.
    NotLive(Vec<&'a str>),
    /// Domained, tied to no candidate, beside finalizers a live candidate is tied to: the tool
    /// that put it there is gone.
    Nobodys {
        live: Vec<&'a Candidate>,
        theirs: Vec<&'a str>,
        objects: Vec<&'a str>,
    },
    /// Tied to no candidate, with no evidence either way: advisory.
    Doubtful(Vec<&'a Candidate>, Vec<&'a str>),
    /// nsguard could not tell (its own read failed).
    Unknown,
}

/// The resource types with finalizers to judge: content, the non-built-in finalizers on its
/// objects (sorted), and the controllers gathered for it.
fn types(facts: &Facts) -> Vec<(&Content, Vec<&str>, &ResourceControllers)> {
    let mut out = Vec::new();
    for c in &facts.namespace.content {
        let Some(rc) = facts
            .namespace
            .controllers
            .get(&c.resource.group_resource())
        else {
            continue;
        };
        let names: BTreeSet<&str> = c
            .objects
            .iter()
            .flat_map(|o| o.finalizers.iter().map(String::as_str))
            .filter(|f| !finalizers::is_built_in(f))
            .collect();
        if !names.is_empty() {
            out.push((c, names.into_iter().collect(), rc));
        }
    }
    out
}

pub(super) fn holders<'a>(c: &'a Content, f: &str) -> Vec<&'a str> {
    c.objects
        .iter()
        .filter(|o| o.finalizers.iter().any(|x| x == f))
        .map(|o| o.name.as_str())
        .collect()
}

fn is_live(l: &Liveness) -> bool {
    matches!(l, Liveness::Live(_))
}

/// The verdict on finalizer `finalizers[at]` of a type whose candidates are `rc`.
fn verdict<'a>(
    rc: &'a ResourceControllers,
    finalizers: &[&'a str],
    at: usize,
    group: &str,
    objects: &[&'a str],
) -> Judgement<'a> {
    let all: Vec<&Candidate> = rc.controllers.iter().collect();
    let uncovered_by = |live: &[&Candidate]| -> Vec<&'a str> {
        objects
            .iter()
            .copied()
            .filter(|o| !live.iter().any(|(e, _)| e.covers(o)))
            .collect()
    };
    let any_live = all.iter().any(|(_, l)| is_live(l));
    // Nothing live for the type: whoever was tied, nobody removes anything.
    let mine: Vec<&Candidate> = if any_live {
        let expected: Vec<&Expected> = all.iter().map(|(e, _)| e).collect();
        let t = ties(&expected, finalizers, group);
        let mine: Vec<&Candidate> = t[at].iter().map(|i| all[*i]).collect();
        if mine.is_empty() {
            let live: Vec<&Candidate> = all.iter().copied().filter(|(_, l)| is_live(l)).collect();
            let theirs: Vec<&str> = finalizers
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != at && t[*i].iter().any(|c| is_live(&all[*c].1)))
                .map(|(_, f)| *f)
                .collect();
            return if domain(finalizers[at]).is_some() && !theirs.is_empty() {
                Judgement::Nobodys {
                    live,
                    theirs,
                    objects: objects.to_vec(),
                }
            } else {
                Judgement::Doubtful(live, objects.to_vec())
            };
        }
        mine
    } else {
        all
    };
    let live: Vec<&Candidate> = mine.iter().copied().filter(|(_, l)| is_live(l)).collect();
    let uncovered = uncovered_by(&live);
    if uncovered.is_empty() {
        return Judgement::Handled(live);
    }
    if mine.iter().any(|(_, l)| matches!(l, Liveness::Unknown(_))) {
        return Judgement::Unknown;
    }
    let here: Vec<&Candidate> = mine
        .iter()
        .copied()
        .filter(|(_, l)| matches!(l, Liveness::LiveHereOnly(_)))
        .collect();
    if !here.is_empty() {
        return Judgement::HereOnly(here, uncovered);
    }
    Judgement::NotLive(uncovered)
}

fn describe(e: &Expected, l: &Liveness) -> String {
    format!("expected {} ({}); {l}", e.identity, e.source)
}

fn object_list(objects: &[&str]) -> String {
    let shown: Vec<&str> = objects.iter().take(3).copied().collect();
    let more = objects.len().saturating_sub(shown.len());
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

pub(super) fn check(facts: &Facts) -> Vec<Finding> {
    let ns = &facts.name;
    let mut out = Vec::new();
    for (c, f, rc, v) in verdicts(facts) {
        let gr = GroupResource::from(&c.resource);
        let subject = || Subject::Finalizer {
            resource: gr.clone(),
            finalizer: f.to_string(),
        };
        let mut finding = match v {
            Judgement::Handled(_) | Judgement::Unknown => continue,
            Judgement::Nobodys {
                live,
                theirs,
                objects,
            } => {
                let who: Vec<String> = live.iter().map(|(e, _)| e.identity.to_string()).collect();
                Finding::new(
                    CheckId::FinalizerController,
                    subject(),
                    format!(
                        "{gr} finalizer {f} ({} objects) has no live controller: the live {} removes only {}",
                        objects.len(),
                        who.join(", "),
                        theirs.join(", ")
                    ),
                    remedy(
                        format!(
                            "reinstall the controller that owns {f} (domain {}) and let it remove it, or declare its controller; the objects' own controller will not remove it",
                            domain(f).unwrap_or(f)
                        ),
                        None,
                    ),
                )
                .with_objects(&gr, ns, &objects)
                .evidence(format!("objects holding {f}: {}", object_list(&objects)))
                .evidence(format!(
                    "no evidence ties {f} to a live controller: no declaration names it, its domain matches no API group a live candidate serves, and the type's controller is already tied to {}",
                    theirs.join(", ")
                ))
            }
            Judgement::Doubtful(live, objects) => {
                let who: Vec<String> = live.iter().map(|(e, _)| e.identity.to_string()).collect();
                let mut f = Finding::new(
                    CheckId::FinalizerController,
                    subject(),
                    format!(
                        "{gr} finalizer {f} ({} objects): no evidence ties it to a live controller ({} may update {gr})",
                        objects.len(),
                        if who.is_empty() { "nobody".to_string() } else { who.join(", ") }
                    ),
                    remedy(
                        format!("declare the controller that removes {f} (annotation nsguard.io/finalizer-controller on the CRD, or the configuration's finalizer controllers) so nsguard can judge it"),
                        None,
                    ),
                )
                .with_objects(&gr, ns, &objects);
                f.severity = Severity::Advisory;
                f
            }
            Judgement::HereOnly(here, uncovered) => {
                let who: Vec<String> = here.iter().map(|(e, _)| e.identity.to_string()).collect();
                Finding::new(
                    CheckId::FinalizerController,
                    subject(),
                    format!(
                        "{gr} finalizer {f} ({} objects): its controller {} runs only in this namespace",
                        uncovered.len(),
                        who.join(", ")
                    ),
                    remedy(
                        format!("delete the {gr} objects first and wait until they are gone, while their controller still runs; then delete the namespace (nsguard delete does this in order; by hand: kubectl delete {gr} --all -n {ns} --wait)"),
                        format!("nsguard delete {ns}"),
                    ),
                )
                .evidence("pods are deleted with everything else, so the controller is gone before it can remove its finalizers")
                .with_objects(&gr, ns, &uncovered)
            }
            Judgement::NotLive(uncovered) => {
                let reasons: Vec<&str> = rc
                    .controllers
                    .iter()
                    .filter_map(|(_, l)| match l {
                        Liveness::NotLive { reason, .. } => Some(reason.as_str()),
                        _ => None,
                    })
                    .collect();
                let why = match (reasons.first(), rc.notes.first()) {
                    (Some(r), _) => {
                        if reasons.len() > 1 {
                            format!("{r} (+{} more)", reasons.len() - 1)
                        } else {
                            r.to_string()
                        }
                    }
                    (None, Some(n)) => n.clone(),
                    (None, None) => "nsguard found no controller for it".to_string(),
                };
                let fix = rc.controllers.iter().find_map(|(_, l)| match l {
                    Liveness::NotLive { fix, .. } => fix.clone(),
                    _ => None,
                });
                let expected: Vec<String> = rc
                    .controllers
                    .iter()
                    .map(|(e, _)| e.identity.to_string())
                    .collect();
                let text = if expected.is_empty() {
                    format!(
                        "install the controller that owns {f} and delete the {gr} objects while it runs; or name it with the annotation nsguard.io/finalizer-controller on the CRD"
                    )
                } else {
                    format!(
                        "restore {} (reinstall or scale it up), then delete the {gr} objects while it runs",
                        expected.join(", ")
                    )
                };
                Finding::new(
                    CheckId::FinalizerController,
                    subject(),
                    format!(
                        "{gr} finalizer {f} ({} objects) has no live controller: {why}",
                        uncovered.len()
                    ),
                    remedy(text, fix),
                )
                .with_objects(&gr, ns, &uncovered)
                .evidence(format!("objects holding {f}: {}", object_list(&uncovered)))
            }
        };
        for (e, l) in &rc.controllers {
            finding = finding.evidence(describe(e, l));
        }
        for n in &rc.notes {
            finding = finding.evidence(n.clone());
        }
        finding = finding.evidence(format!(
            "last resort, once nothing will ever remove it: remove {f} by hand, which skips the cleanup it stands for (what the controller would delete outside the cluster is left behind)"
        ));
        out.push(finding);
    }
    out
}

/// Every (content, finalizer) with its verdict.
pub(super) fn verdicts(
    facts: &Facts,
) -> Vec<(&Content, &str, &ResourceControllers, Judgement<'_>)> {
    let mut out = Vec::new();
    for (c, names, rc) in types(facts) {
        for (at, f) in names.iter().enumerate() {
            let objects = holders(c, f);
            let v = verdict(rc, &names, at, &c.resource.group, &objects);
            out.push((c, *f, rc, v));
        }
    }
    out
}

/// The (resource, finalizer) pairs a live controller outside the namespace handles.
pub(super) fn handled(facts: &Facts) -> Vec<Handled> {
    use crate::facts::controllers::Identity;
    let mut out = Vec::new();
    for (c, f, _, v) in verdicts(facts) {
        if let Judgement::Handled(live) = v {
            let controller = live
                .iter()
                .map(|(e, _)| match &e.identity {
                    Identity::ServiceAccount { namespace, name } => format!("{namespace}/{name}"),
                    Identity::ServiceAccounts { namespace } => {
                        format!("system:serviceaccounts:{namespace}")
                    }
                    Identity::ControlPlane { name } => name.clone(),
                })
                .collect::<Vec<_>>()
                .join(", ");
            out.push(Handled {
                resource: GroupResource::from(&c.resource),
                finalizer: f.to_string(),
                controller,
                evidence: live.iter().map(|(e, l)| describe(e, l)).collect(),
            });
        }
    }
    out
}

trait WithObjects {
    fn with_objects(self, gr: &GroupResource, ns: &str, names: &[&str]) -> Self;
}

impl WithObjects for Finding {
    fn with_objects(mut self, gr: &GroupResource, ns: &str, names: &[&str]) -> Self {
        for n in names.iter().take(5) {
            self = self.object(ObjectRef::content(gr, ns, *n));
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures;
    use super::*;
    use crate::facts::controllers::{Basis, Identity};
    use rstest::rstest;

    fn expected(id: &str, names: Option<&[&str]>) -> Expected {
        Expected {
            identity: Identity::parse(id).unwrap(),
            source: Basis::Rbac("ClusterRoleBinding op -> ClusterRole op".into()),
            resource_names: names.map(|n| n.iter().map(|s| s.to_string()).collect()),
            finalizers: None,
            groups: ["acc.example.com".to_string()].into(),
        }
    }

    fn facts_with(controllers: Vec<(Expected, Liveness)>, notes: &[&str]) -> Facts {
        let mut facts = fixtures::facts("team-a")
            .with_content(
                "acc.example.com",
                "gadgets",
                &[
                    ("g1", &["acc.example.com/cleanup"]),
                    ("g2", &["acc.example.com/cleanup", "orphan"]),
                    ("free", &["kubernetes.io/pvc-protection"]),
                ],
            )
            .build();
        facts.namespace.controllers.insert(
            "gadgets.acc.example.com".into(),
            ResourceControllers {
                controllers,
                notes: notes.iter().map(|s| s.to_string()).collect(),
            },
        );
        facts
    }

    fn not_live(reason: &str) -> Liveness {
        Liveness::NotLive {
            reason: reason.into(),
            fix: None,
        }
    }

    #[rstest]
    #[case::live_elsewhere(vec![(expected("ops/op", None), Liveness::Live("pod".into()))], None)]
    #[case::one_live_one_dead(
        vec![
            (expected("gone/op", None), not_live("namespace does not exist")),
            (expected("ops/op", None), Liveness::Live("pod".into())),
        ],
        None
    )]
    #[case::not_live(
        vec![(expected("ops/op", None), not_live("ServiceAccount ops/op: Deployment op scaled to 0"))],
        Some("has no live controller: ServiceAccount ops/op: Deployment op scaled to 0")
    )]
    #[case::no_candidates(vec![], Some("has no live controller: no role names"))]
    #[case::live_here_only(
        vec![(expected("team-a/op", None), Liveness::LiveHereOnly("pod".into()))],
        Some("runs only in this namespace")
    )]
    #[case::live_but_resource_names_leave_one_out(
        vec![(expected("ops/op", Some(&["g1"])), Liveness::Live("pod".into()))],
        Some("(1 objects) has no live controller")
    )]
    #[case::unknown_is_not_evidence(vec![(expected("ops/op", None), Liveness::Unknown("timed out".into()))], None)]
    #[case::control_plane_user(vec![(expected("system:kube-controller-manager", None), Liveness::Live("control plane".into()))], None)]
    fn verdicts(#[case] controllers: Vec<(Expected, Liveness)>, #[case] blocking: Option<&str>) {
        let facts = facts_with(
            controllers,
            &["no role names gadgets.acc.example.com with update or patch for a controller"],
        );
        let found = check(&facts);
        match blocking {
            None => assert!(found.is_empty(), "{found:?}"),
            Some(text) => {
                assert_eq!(found.len(), 1, "{found:?}");
                assert!(found[0].summary.contains(text), "{}", found[0].summary);
                assert!(
                    found[0].summary.contains("acc.example.com/cleanup"),
                    "one finding per (resource, finalizer), never for built-ins: {}",
                    found[0].summary
                );
            }
        }
    }

    #[test]
    fn handled_names_the_controller() {
        let facts = facts_with(
            vec![(expected("ops/op", None), Liveness::Live("pod op-1".into()))],
            &[],
        );
        let h = handled(&facts);
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].controller, "ops/op");
        assert_eq!(h[0].finalizer, "acc.example.com/cleanup");
    }

    #[test]
    fn the_fix_of_a_scaled_down_operator_is_the_remedy() {
        let facts = facts_with(
            vec![(
                expected("ops/op", None),
                Liveness::NotLive {
                    reason: "Deployment op scaled to 0".into(),
                    fix: Some("kubectl scale deployment op -n ops --replicas=1".into()),
                },
            )],
            &[],
        );
        let found = check(&facts);
        assert_eq!(
            found[0].remedy.command.as_deref(),
            Some("kubectl scale deployment op -n ops --replicas=1")
        );
        assert!(
            found[0]
                .evidence
                .iter()
                .any(|e| e.starts_with("last resort"))
        );
    }
}
