//! `finalizer-controller`: for each (resource, finalizer) on objects in the namespace, the
//! controller expected to remove it (see [`crate::facts::controllers`] for the evidence) and
//! whether it is live. Not live anywhere, or live only inside this namespace (its pods are
//! deleted first): blocking, one finding per (resource, finalizer). Live elsewhere: handled.
//! nsguard's own failures to tell (`Liveness::Unknown`) are not evidence: no finding, and the
//! report says what was not checked. Built-in finalizers are never looked at here.

use std::collections::BTreeSet;

use crate::facts::controllers::{Expected, Liveness, ResourceControllers};
use crate::facts::{Content, Facts, finalizers};
use crate::report::{CheckId, Finding, Handled, ObjectRef, remedy};

/// What one (resource, finalizer) comes to.
enum Verdict<'a> {
    Handled(Vec<&'a (Expected, Liveness)>),
    HereOnly(Vec<&'a (Expected, Liveness)>, Vec<&'a str>),
    NotLive(Vec<&'a str>),
    Unknown,
}

/// The (content, finalizer) pairs to judge, with the controllers gathered for them.
fn pairs(facts: &Facts) -> Vec<(&Content, &str, &ResourceControllers)> {
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
        for f in names {
            out.push((c, f, rc));
        }
    }
    out
}

fn holders<'a>(c: &'a Content, f: &str) -> Vec<&'a str> {
    c.objects
        .iter()
        .filter(|o| o.finalizers.iter().any(|x| x == f))
        .map(|o| o.name.as_str())
        .collect()
}

fn verdict<'a>(rc: &'a ResourceControllers, objects: &[&'a str]) -> Verdict<'a> {
    let live: Vec<&(Expected, Liveness)> = rc
        .controllers
        .iter()
        .filter(|(_, l)| matches!(l, Liveness::Live(_)))
        .collect();
    let uncovered: Vec<&str> = objects
        .iter()
        .copied()
        .filter(|o| !live.iter().any(|(e, _)| e.covers(o)))
        .collect();
    if uncovered.is_empty() {
        return Verdict::Handled(live);
    }
    if rc
        .controllers
        .iter()
        .any(|(_, l)| matches!(l, Liveness::Unknown(_)))
    {
        return Verdict::Unknown;
    }
    let here: Vec<&(Expected, Liveness)> = rc
        .controllers
        .iter()
        .filter(|(_, l)| matches!(l, Liveness::LiveHereOnly(_)))
        .collect();
    if !here.is_empty() {
        return Verdict::HereOnly(here, uncovered);
    }
    Verdict::NotLive(uncovered)
}

fn describe(e: &Expected, l: &Liveness) -> String {
    let state = match l {
        Liveness::Live(d) | Liveness::LiveHereOnly(d) => format!("live: {d}"),
        Liveness::NotLive { reason, .. } => format!("not live: {reason}"),
        Liveness::Unknown(e) => format!("not checked: {e}"),
    };
    format!("expected {} ({}); {state}", e.identity, e.source)
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
    for (c, f, rc) in pairs(facts) {
        let objects = holders(c, f);
        let gr = c.resource.group_resource();
        let mut finding = match verdict(rc, &objects) {
            Verdict::Handled(_) | Verdict::Unknown => continue,
            Verdict::HereOnly(here, uncovered) => {
                let who: Vec<String> = here.iter().map(|(e, _)| e.identity.to_string()).collect();
                Finding::new(
                    CheckId::FinalizerController,
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
            Verdict::NotLive(uncovered) => {
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

/// The (resource, finalizer) pairs a live controller outside the namespace handles.
pub(super) fn handled(facts: &Facts) -> Vec<Handled> {
    let mut out = Vec::new();
    for (c, f, rc) in pairs(facts) {
        let objects = holders(c, f);
        if let Verdict::Handled(live) = verdict(rc, &objects) {
            let controller = live
                .iter()
                .map(|(e, _)| match &e.identity {
                    crate::facts::controllers::Identity::ServiceAccount { namespace, name } => {
                        format!("{namespace}/{name}")
                    }
                    crate::facts::controllers::Identity::ControlPlane { name } => name.clone(),
                })
                .collect::<Vec<_>>()
                .join(", ");
            out.push(Handled {
                resource: c.resource.group_resource(),
                finalizer: f.to_string(),
                controller,
                evidence: live.iter().map(|(e, l)| describe(e, l)).collect(),
            });
        }
    }
    out
}

trait WithObjects {
    fn with_objects(self, gr: &str, ns: &str, names: &[&str]) -> Self;
}

impl WithObjects for Finding {
    fn with_objects(mut self, gr: &str, ns: &str, names: &[&str]) -> Self {
        for n in names.iter().take(5) {
            self = self.object(ObjectRef::namespaced(gr, ns, *n));
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures;
    use super::*;
    use crate::facts::controllers::{Identity, Source};
    use rstest::rstest;

    fn expected(id: &str, names: Option<&[&str]>) -> Expected {
        Expected {
            identity: Identity::parse(id).unwrap(),
            source: Source::Rbac("ClusterRoleBinding op -> ClusterRole op".into()),
            resource_names: names.map(|n| n.iter().map(|s| s.to_string()).collect()),
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
