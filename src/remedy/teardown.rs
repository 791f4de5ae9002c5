//! `nsguard delete NS`: the order in which to delete a namespace's content so that nothing it
//! hosts dies before the objects that need it are gone. Pure: a plan is a function of the
//! facts and the report; the CLI executes it (`cli::delete`) and plans again after each wave,
//! so that a run interrupted anywhere continues from the cluster's state.
//!
//! The namespace controller deletes everything at once: an operator living in the namespace
//! dies before it removes the finalizers of its own custom resources, and webhooks and
//! conversion backends hosted there vanish while objects still need them. The order:
//! 1. custom resources whose finalizers' controllers run only in this namespace;
//! 2. objects served by webhooks or conversion backends hosted here;
//! 3. the backends' own workloads and everything else, with the namespace, by the namespace
//!    controller, once nothing needs them.
//!
//! Blockers that ordering cannot fix (an unavailable APIService elsewhere, a controller not
//! live anywhere, a webhook on the namespace's own finalization) stop the plan.

use std::collections::BTreeSet;
use std::fmt;

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use crate::checks;
use crate::checks::report::{CheckId, Finding, GroupResource, Report, Subject};
use crate::facts::controllers::Liveness;
use crate::facts::{Facts, ResourceType, ServiceKey};

/// Why a wave comes where it does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WaveKind {
    /// Custom resources whose controllers run only in this namespace: deleted while they run.
    ControllersHere,
    /// Objects that webhooks or conversion backends hosted here serve: deleted while those
    /// still answer.
    ServedHere,
    /// Objects whose finalizers' controllers may remove them only through RoleBindings in
    /// this namespace: deleted while those still grant the right.
    RightsHere,
}

impl WaveKind {
    /// What the wave is, in words.
    pub fn describe(self) -> &'static str {
        match self {
            WaveKind::ControllersHere => {
                "custom resources whose controllers run in this namespace (deleted while they still run)"
            }
            WaveKind::ServedHere => {
                "objects served by webhooks or conversion backends hosted here (deleted while those still answer)"
            }
            WaveKind::RightsHere => {
                "objects whose controllers may remove their finalizers only through RoleBindings here (deleted while those still grant it)"
            }
        }
    }
}

/// One resource type of a wave.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WaveResource {
    /// `resource.group`.
    pub resource: String,
    /// The version it is listed and deleted at.
    pub api_version: String,
    /// The type, for the executor.
    #[serde(skip)]
    pub resource_type: ResourceType,
    /// Its objects here now.
    pub objects: Vec<String>,
    /// Who should remove their finalizers (the expected controllers), where nsguard knows.
    pub controllers: Vec<String>,
    /// Why it is in this wave: the check that found it.
    pub because: CheckId,
}

/// What a wave relies on that lives in the namespace: it goes with the namespace, last.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The Service of a webhook or a conversion webhook hosted here.
    Service(ServiceKey),
    /// A controller running here that removes the finalizers of a wave's objects.
    Controller {
        /// The namespace it runs in (the one being deleted).
        namespace: String,
        /// Its identity, as `ServiceAccount NS/NAME`.
        identity: String,
    },
}

/// `Service NAME`, `controller IDENTITY`.
impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backend::Service(key) => write!(f, "Service {}", key.name),
            Backend::Controller { identity, .. } => write!(f, "controller {identity}"),
        }
    }
}

/// In JSON as an object reference: `{kind, namespace, name}` (kind `Service` or `controller`).
impl Serialize for Backend {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (kind, namespace, name) = match self {
            Backend::Service(key) => ("Service", key.namespace.as_str(), key.name.as_str()),
            Backend::Controller {
                namespace,
                identity,
            } => ("controller", namespace.as_str(), identity.as_str()),
        };
        let mut st = s.serialize_struct("Backend", 3)?;
        st.serialize_field("kind", kind)?;
        st.serialize_field("namespace", namespace)?;
        st.serialize_field("name", name)?;
        st.end()
    }
}

/// A set of resource types deleted together; the next wave starts once they are gone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Wave {
    /// Why these go now.
    pub kind: WaveKind,
    /// The types.
    pub resources: Vec<WaveResource>,
}

/// The plan for deleting a namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// The namespace.
    pub namespace: String,
    /// The waves, first to last; then the namespace.
    pub waves: Vec<Wave>,
    /// Backends hosted here that the waves rely on: they go with the namespace, last.
    pub backends: Vec<Backend>,
    /// Blockers that ordering cannot fix: the plan stops here.
    pub stop: Vec<Finding>,
    /// What the preflight could not check.
    pub not_checked: Vec<String>,
    /// Types left out with `--skip-resource` (Secrets, in the no-secrets install): neither
    /// checked nor planned for; the namespace controller deletes them with the rest.
    pub not_checked_by_choice: Vec<String>,
}

/// Types of content whose finalizers' controllers run only in this namespace (and nowhere
/// else): the finalizer-controller verdict "live here only".
fn controlled_here(facts: &Facts, gr: &GroupResource) -> bool {
    facts
        .namespace
        .controllers
        .get(&gr.to_string())
        .is_some_and(|rc| {
            rc.controllers
                .iter()
                .any(|(_, l)| matches!(l, Liveness::LiveHereOnly(_)))
        })
}

fn content_of<'f>(facts: &'f Facts, gr: &GroupResource) -> Option<&'f crate::facts::Content> {
    facts.namespace.content.iter().find(|c| gr.is(&c.resource))
}

/// The types a fixable blocking finding asks to delete early, or `None` when ordering cannot
/// fix it.
fn early_types(facts: &Facts, f: &Finding) -> Option<(WaveKind, Vec<ResourceType>)> {
    match (&f.subject, f.check) {
        (Subject::Finalizer { resource, .. }, CheckId::FinalizerController) => {
            if !controlled_here(facts, resource) {
                return None;
            }
            let c = content_of(facts, resource)?;
            Some((WaveKind::ControllersHere, vec![c.resource.clone()]))
        }
        // The controller runs elsewhere and keeps running; only its right goes with the
        // namespace's RoleBindings, which go with the namespace, after this wave.
        (Subject::RemovalRight { resource, .. }, _) => {
            let c = content_of(facts, resource)?;
            Some((WaveKind::RightsHere, vec![c.resource.clone()]))
        }
        (Subject::Conversion { resource, .. }, _) => {
            let types: Vec<ResourceType> = facts
                .namespace
                .content
                .iter()
                .filter(|c| resource.is(&c.resource))
                .map(|c| c.resource.clone())
                .collect();
            (!types.is_empty()).then_some((WaveKind::ServedHere, types))
        }
        (Subject::Webhook { configuration, .. }, CheckId::HostsWebhookBackend) => {
            let hooks: Vec<_> = checks::hosted_hooks(facts)
                .into_iter()
                .filter(|h| h.config == *configuration)
                .collect();
            if hooks.is_empty() || hooks.iter().any(|h| h.finalize) {
                return None;
            }
            let types: Vec<ResourceType> = hooks
                .into_iter()
                .flat_map(|h| h.content)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            // Deleting built-in types first would take the webhook's own workload with them
            // (or never finish: a ConfigMap the controller-manager recreates).
            (!types.is_empty() && checks::only_custom_resources(facts, &types))
                .then_some((WaveKind::ServedHere, types))
        }
        _ => None,
    }
}

fn controllers_of(facts: &Facts, gr: &GroupResource) -> Vec<String> {
    facts
        .namespace
        .controllers
        .get(&gr.to_string())
        .map(|rc| {
            rc.controllers
                .iter()
                .map(|(e, _)| e.identity.to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Plans the deletion of the namespace of `facts` from the blocking findings of `report`.
/// No blocking findings: no waves (delete the namespace now).
pub fn plan(facts: &Facts, report: &Report) -> Plan {
    let mut stop = Vec::new();
    let mut by_kind: Vec<(WaveKind, ResourceType, CheckId)> = Vec::new();
    let mut backends: Vec<Backend> = Vec::new();
    for f in report.blocking() {
        match early_types(facts, f) {
            Some((kind, types)) => {
                by_kind.extend(types.into_iter().map(|t| (kind, t, f.check)));
                let relied_on: Vec<Backend> = match &f.subject {
                    Subject::Webhook {
                        service: Some(service),
                        ..
                    }
                    | Subject::Conversion { service, .. } => {
                        vec![Backend::Service(service.clone())]
                    }
                    Subject::Finalizer { resource, .. } => controllers_of(facts, resource)
                        .into_iter()
                        .map(|identity| Backend::Controller {
                            namespace: facts.name.clone(),
                            identity,
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                for b in relied_on {
                    if !backends.contains(&b) {
                        backends.push(b);
                    }
                }
            }
            None => stop.push(f.clone()),
        }
    }
    // A type goes in its earliest wave only.
    by_kind.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let mut seen = BTreeSet::new();
    let mut waves: Vec<Wave> = Vec::new();
    for (kind, t, because) in by_kind {
        if !seen.insert(t.clone()) {
            continue;
        }
        let gr = GroupResource::from(&t);
        let resource = WaveResource {
            resource: gr.to_string(),
            api_version: t.api_version(),
            objects: content_of(facts, &gr)
                .map(|c| c.objects.iter().map(|o| o.name.clone()).collect())
                .unwrap_or_default(),
            controllers: controllers_of(facts, &gr),
            resource_type: t,
            because,
        };
        match waves.last_mut() {
            Some(w) if w.kind == kind => w.resources.push(resource),
            _ => waves.push(Wave {
                kind,
                resources: vec![resource],
            }),
        }
    }
    Plan {
        namespace: facts.name.clone(),
        waves,
        backends,
        stop,
        not_checked: report.not_checked.clone(),
        not_checked_by_choice: report.not_checked_by_choice.clone(),
    }
}

/// The plan as text.
pub fn render(plan: &Plan) -> String {
    let mut out = format!("plan for deleting namespace {}:\n", plan.namespace);
    if !plan.stop.is_empty() {
        out.push_str("  STOP: blockers that deleting in order cannot fix:\n");
        for f in &plan.stop {
            out.push_str(&format!("  - [{}] {}\n", f.check, f.summary));
            out.push_str(&format!("      fix: {}", f.remedy.text));
            if let Some(cmd) = &f.remedy.command {
                out.push_str(&format!(": {cmd}"));
            }
            out.push('\n');
        }
        return out;
    }
    let mut n = 0;
    for w in &plan.waves {
        n += 1;
        out.push_str(&format!("  {n}. {}\n", w.kind.describe()));
        for r in &w.resources {
            let shown: Vec<&str> = r.objects.iter().take(5).map(String::as_str).collect();
            let more = r.objects.len().saturating_sub(shown.len());
            out.push_str(&format!(
                "       {} ({} object{}: {}{})\n",
                r.resource,
                r.objects.len(),
                if r.objects.len() == 1 { "" } else { "s" },
                shown.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ));
            if !r.controllers.is_empty() {
                out.push_str(&format!(
                    "         finalized by {}\n",
                    r.controllers.join(", ")
                ));
            }
        }
    }
    n += 1;
    if plan.backends.is_empty() {
        out.push_str(&format!(
            "  {n}. the namespace, with everything else in it\n"
        ));
    } else {
        let names: Vec<String> = plan.backends.iter().map(ToString::to_string).collect();
        out.push_str(&format!(
            "  {n}. the namespace, with everything else in it: the backends and controllers the waves relied on ({}) go last\n",
            names.join(", ")
        ));
    }
    for nc in &plan.not_checked {
        out.push_str(&format!("  not checked: {nc}\n"));
    }
    if let Some(caveat) = crate::output::render::skipped_caveat(&plan.not_checked_by_choice) {
        out.push_str(&format!("  {caveat}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::{Settings, fixtures};
    use crate::facts::BackendState;
    use crate::facts::controllers::{Basis, Expected, Identity, ResourceControllers};
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
        CustomResourceConversion, CustomResourceDefinition, CustomResourceDefinitionNames,
        CustomResourceDefinitionSpec, CustomResourceDefinitionStatus,
        CustomResourceDefinitionVersion, ServiceReference, WebhookClientConfig, WebhookConversion,
    };
    use std::sync::Arc;

    const UP: BackendState = BackendState {
        exists: true,
        ready_endpoints: 1,
        external: false,
        unreachable_since: None,
    };

    fn crd(
        group: &str,
        plural: &str,
        conversion_svc: Option<(&str, &str)>,
    ) -> CustomResourceDefinition {
        let mut c = CustomResourceDefinition {
            spec: CustomResourceDefinitionSpec {
                group: group.into(),
                names: CustomResourceDefinitionNames {
                    plural: plural.into(),
                    kind: "Kind".into(),
                    ..Default::default()
                },
                scope: "Namespaced".into(),
                versions: vec![CustomResourceDefinitionVersion {
                    name: "v1".into(),
                    served: true,
                    storage: true,
                    ..Default::default()
                }],
                conversion: conversion_svc.map(|(ns, name)| CustomResourceConversion {
                    strategy: "Webhook".into(),
                    webhook: Some(WebhookConversion {
                        client_config: Some(WebhookClientConfig {
                            service: Some(ServiceReference {
                                namespace: ns.into(),
                                name: name.into(),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }),
                        conversion_review_versions: vec!["v1".into()],
                    }),
                }),
                ..Default::default()
            },
            status: Some(CustomResourceDefinitionStatus {
                stored_versions: Some(vec!["v1beta1".into(), "v1".into()]),
                ..Default::default()
            }),
            ..Default::default()
        };
        c.metadata.name = Some(format!("{plural}.{group}"));
        c
    }

    fn with_controller(facts: &mut Facts, gr: &str, identity: &str, liveness: Liveness) {
        facts.namespace.controllers.insert(
            gr.into(),
            ResourceControllers {
                controllers: vec![(
                    Expected {
                        identity: Identity::parse(identity).unwrap(),
                        source: Basis::Rbac("RoleBinding op -> Role op".into()),
                        resource_names: None,
                        finalizers: None,
                        groups: Default::default(),
                    },
                    liveness,
                )],
                notes: vec![],
            },
        );
    }

    /// A namespace with an operator here finalizing things, a webhook served from here on
    /// DELETE of `hook_resources` (core group in the fixture; with `custom_hooked`, "gadgets"
    /// is a custom type there), and widgets converted by a Service here.
    fn world(hook_resources: &[&str], custom_hooked: bool) -> Facts {
        world_ops(&["DELETE"], hook_resources, custom_hooked)
    }

    fn world_ops(ops: &[&str], hook_resources: &[&str], custom_hooked: bool) -> Facts {
        let mut facts = fixtures::facts("team-a")
            .with_content(
                "op.example.com",
                "things",
                &[
                    ("t1", &["op.example.com/cleanup"]),
                    ("t2", &["op.example.com/cleanup"]),
                ],
            )
            .with_content("conv.example.com", "widgets", &[("w1", &[])])
            .with_content("", "configmaps", &[("kube-root-ca.crt", &[])])
            .with_content("", "gadgets", &[("g1", &[])])
            .with_webhook("guard", ops, hook_resources, ("team-a", "hook"), UP)
            .build();
        with_controller(
            &mut facts,
            "things.op.example.com",
            "team-a/op",
            Liveness::LiveHereOnly("pod op-1".into()),
        );
        let mut cluster = (*facts.cluster).clone();
        cluster.crds.push(crd("op.example.com", "things", None));
        cluster
            .crds
            .push(crd("conv.example.com", "widgets", Some(("team-a", "conv"))));
        if custom_hooked {
            // The fixture's webhook names the core group: make "gadgets" a custom type there.
            cluster.crds.push(crd("", "gadgets", None));
        }
        facts.cluster = Arc::new(cluster);
        facts
    }

    fn planned(facts: &Facts) -> Plan {
        let report = crate::checks::run(facts, &Settings::default());
        plan(facts, &report)
    }

    fn wave_types(p: &Plan) -> Vec<(WaveKind, Vec<String>)> {
        p.waves
            .iter()
            .map(|w| {
                (
                    w.kind,
                    w.resources.iter().map(|r| r.resource.clone()).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn controllers_here_first_then_what_hosted_backends_serve() {
        let p = planned(&world(&["gadgets"], true));
        assert!(p.stop.is_empty(), "{:?}", p.stop);
        assert_eq!(
            wave_types(&p),
            vec![
                (
                    WaveKind::ControllersHere,
                    vec!["things.op.example.com".to_string()]
                ),
                (
                    WaveKind::ServedHere,
                    vec![
                        "gadgets".to_string(),
                        "widgets.conv.example.com".to_string()
                    ]
                ),
            ]
        );
        let things = &p.waves[0].resources[0];
        assert_eq!(things.objects, vec!["t1", "t2"]);
        assert_eq!(things.controllers, vec!["ServiceAccount team-a/op"]);
        let service = |name: &str| {
            Backend::Service(ServiceKey {
                namespace: "team-a".into(),
                name: name.into(),
            })
        };
        assert!(p.backends.contains(&service("conv")));
        assert!(p.backends.contains(&service("hook")));
        assert!(p.backends.contains(&Backend::Controller {
            namespace: "team-a".into(),
            identity: "ServiceAccount team-a/op".into()
        }));
        let json = serde_json::to_value(&p).unwrap();
        assert!(
            json["backends"].as_array().unwrap().contains(
                &serde_json::json!({"kind": "Service", "namespace": "team-a", "name": "conv"})
            ),
            "{json}"
        );
        let text = render(&p);
        assert!(
            text.contains("1. custom resources whose controllers"),
            "{text}"
        );
        assert!(text.contains("3. the namespace"), "{text}");
    }

    #[test]
    fn a_webhook_on_built_in_types_is_not_fixed_by_ordering() {
        // Deleting ConfigMaps first would never finish (kube-root-ca.crt comes back).
        let p = planned(&world(&["configmaps"], false));
        assert_eq!(p.stop.len(), 1, "{:?}", p.stop);
        assert_eq!(p.stop[0].check, CheckId::HostsWebhookBackend);
    }

    #[test]
    fn a_webhook_on_the_namespaces_finalization_stops_the_plan() {
        let p = planned(&world_ops(
            &["DELETE", "UPDATE"],
            &["gadgets", "namespaces/finalize"],
            true,
        ));
        assert_eq!(p.stop.len(), 1, "{:?}", p.stop);
        assert_eq!(p.stop[0].check, CheckId::HostsWebhookBackend);
    }

    #[test]
    fn blockers_elsewhere_stop_the_plan_with_the_webhooks_message() {
        let mut facts = fixtures::facts("team-a")
            .with_apiservice(
                "v1beta1.metrics.k8s.io",
                "kube-system",
                "metrics-server",
                "False",
                "ServiceNotFound",
            )
            .with_content(
                "gone.example.com",
                "gizmos",
                &[("z1", &["gone.example.com/cleanup"])],
            )
            .without_controller("gizmos.gone.example.com")
            .build();
        // A controller live only here for another type is still planned, but the plan stops.
        facts.namespace.content.push(crate::facts::Content {
            resource: ResourceType {
                group: "op.example.com".into(),
                version: "v1".into(),
                resource: "things".into(),
                kind: "Thing".into(),
                listable: true,
            },
            objects: vec![crate::facts::ObjectFacts {
                name: "t1".into(),
                finalizers: vec!["op.example.com/cleanup".into()],
                ..Default::default()
            }],
        });
        with_controller(
            &mut facts,
            "things.op.example.com",
            "team-a/op",
            Liveness::LiveHereOnly("pod".into()),
        );
        let p = planned(&facts);
        let stopped: Vec<CheckId> = p.stop.iter().map(|f| f.check).collect();
        assert!(
            stopped.contains(&CheckId::ApiserviceUnavailable),
            "{stopped:?}"
        );
        assert!(
            stopped.contains(&CheckId::FinalizerController),
            "{stopped:?}"
        );
        assert_eq!(p.stop.len(), 2, "{:?}", p.stop);
        assert!(render(&p).contains("STOP"));
    }

    #[test]
    fn nothing_blocking_means_no_waves() {
        let facts = fixtures::facts("team-a")
            .with_content("", "configmaps", &[("cm", &[])])
            .build();
        let p = planned(&facts);
        assert!(p.waves.is_empty() && p.stop.is_empty());
        assert!(render(&p).contains("1. the namespace"));
    }

    #[test]
    fn a_controller_live_elsewhere_needs_no_wave() {
        let mut facts = world(&["gadgets"], true);
        with_controller(
            &mut facts,
            "things.op.example.com",
            "ops/op",
            Liveness::Live("pod".into()),
        );
        let p = planned(&facts);
        assert_eq!(p.waves.len(), 1);
        assert_eq!(p.waves[0].kind, WaveKind::ServedHere);
    }

    #[test]
    fn the_plan_says_what_was_left_out_by_choice() {
        let facts = fixtures::facts("team-a")
            .with_content("", "configmaps", &[("cm", &[])])
            .build();
        let report = Report {
            not_checked_by_choice: vec!["secrets".into()],
            ..Default::default()
        };
        let p = plan(&facts, &report);
        assert_eq!(p.not_checked_by_choice, ["secrets"]);
        let text = render(&p);
        assert!(
            text.contains("not checked: secrets (skipped by configuration)"),
            "{text}"
        );
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["notCheckedByChoice"], serde_json::json!(["secrets"]));
        assert!(!render(&planned(&facts)).contains("--skip-resource"));
    }
}
