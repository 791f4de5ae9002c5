//! A builder of plain [`Facts`] for unit tests.

use std::sync::Arc;

use k8s_openapi::api::admissionregistration;
use k8s_openapi::api::admissionregistration::v1::{
    RuleWithOperations, ValidatingWebhook, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::api::core::v1::{Namespace, NamespaceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::{
    APIService, APIServiceCondition, APIServiceSpec, APIServiceStatus, ServiceReference,
};

use crate::facts::{
    BackendState, ClusterFacts, Content, Facts, NamespaceFacts, ObjectFacts, ResourceType,
    ServiceKey,
};

pub(crate) struct Builder {
    name: String,
    cluster: ClusterFacts,
    ns: NamespaceFacts,
    now: Timestamp,
}

pub(crate) fn facts(name: &str) -> Builder {
    let mut ns = Namespace::default();
    ns.metadata.name = Some(name.to_string());
    ns.spec = Some(NamespaceSpec {
        finalizers: Some(vec!["kubernetes".into()]),
    });
    Builder {
        name: name.to_string(),
        cluster: ClusterFacts::default(),
        ns: NamespaceFacts {
            namespace: ns,
            ..Default::default()
        },
        now: "2026-11-22T12:00:00Z".parse().unwrap(),
    }
}

impl Builder {
    pub(crate) fn with_namespace_spec_finalizers(mut self, f: &[&str]) -> Self {
        self.ns.namespace.spec = Some(NamespaceSpec {
            finalizers: Some(f.iter().map(|s| s.to_string()).collect()),
        });
        self
    }

    pub(crate) fn with_apiservice(
        mut self,
        name: &str,
        ns: &str,
        svc: &str,
        status: &str,
        reason: &str,
    ) -> Self {
        let (version, group) = name.split_once('.').unwrap();
        self.cluster.apiservices.push(APIService {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(APIServiceSpec {
                group: Some(group.into()),
                version: Some(version.into()),
                service: Some(ServiceReference {
                    namespace: Some(ns.into()),
                    name: Some(svc.into()),
                    port: Some(443),
                }),
                group_priority_minimum: 100,
                version_priority: 100,
                ..Default::default()
            }),
            status: Some(APIServiceStatus {
                conditions: Some(vec![APIServiceCondition {
                    type_: "Available".into(),
                    status: status.into(),
                    reason: Some(reason.into()),
                    message: Some(format!("service/{svc} in \"{ns}\" is not present")),
                    last_transition_time: Some(Time("2026-11-22T11:46:00Z".parse().unwrap())),
                }]),
            }),
        });
        self.cluster.backends.insert(
            ServiceKey {
                namespace: ns.into(),
                name: svc.into(),
            },
            BackendState {
                exists: status == "True",
                ready_endpoints: usize::from(status == "True"),
                external: false,
                unreachable_since: None,
            },
        );
        self
    }

    /// Sets APIService `name`'s creation time and its `Available` condition's last transition
    /// (`None`: it has no condition yet); times are `HH:MM:SS` on the fixtures' day.
    pub(crate) fn apiservice_timed(
        mut self,
        name: &str,
        created: &str,
        changed: Option<&str>,
    ) -> Self {
        let at = |t: &str| Time(format!("2026-11-22T{t}Z").parse().unwrap());
        for a in &mut self.cluster.apiservices {
            if a.metadata.name.as_deref() != Some(name) {
                continue;
            }
            a.metadata.creation_timestamp = Some(at(created));
            let status = a.status.get_or_insert_with(Default::default);
            match changed {
                Some(t) => {
                    for c in status.conditions.iter_mut().flatten() {
                        c.last_transition_time = Some(at(t));
                    }
                }
                None => status.conditions = None,
            }
        }
        self
    }

    pub(crate) fn with_stale(mut self, gv: &str) -> Self {
        self.cluster.discovery.stale.push(gv.into());
        self
    }

    pub(crate) fn with_content(
        mut self,
        group: &str,
        resource: &str,
        objects: &[(&str, &[&str])],
    ) -> Self {
        self.ns.content.push(Content {
            resource: ResourceType {
                group: group.into(),
                version: "v1".into(),
                resource: resource.into(),
                kind: "Kind".into(),
                listable: true,
            },
            objects: objects
                .iter()
                .map(|(n, f)| ObjectFacts {
                    name: n.to_string(),
                    finalizers: f.iter().map(|s| s.to_string()).collect(),
                    ..Default::default()
                })
                .collect(),
        });
        self
    }

    pub(crate) fn deleting_since(mut self, object: &str, since: &str) -> Self {
        for c in &mut self.ns.content {
            for o in &mut c.objects {
                if o.name == object {
                    o.deletion_timestamp = Some(since.parse().unwrap());
                }
            }
        }
        self
    }

    /// A `Fail` validating webhook `name` on `operations` of `resources` in the core group,
    /// served by Service `svc_ns/svc`, whose state is `backend`.
    pub(crate) fn with_webhook(
        mut self,
        name: &str,
        operations: &[&str],
        resources: &[&str],
        (svc_ns, svc): (&str, &str),
        backend: BackendState,
    ) -> Self {
        let strings = |x: &[&str]| Some(x.iter().map(|s| s.to_string()).collect());
        self.cluster
            .validating_webhooks
            .push(ValidatingWebhookConfiguration {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    ..Default::default()
                },
                webhooks: Some(vec![ValidatingWebhook {
                    name: format!("{name}.example.com"),
                    failure_policy: Some("Fail".into()),
                    client_config: WebhookClientConfig {
                        service: Some(admissionregistration::v1::ServiceReference {
                            namespace: svc_ns.into(),
                            name: svc.into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                    rules: Some(vec![RuleWithOperations {
                        operations: strings(operations),
                        api_groups: strings(&[""]),
                        api_versions: strings(&["v1"]),
                        resources: strings(resources),
                        scope: None,
                    }]),
                    ..Default::default()
                }]),
            });
        self.cluster.backends.insert(
            ServiceKey {
                namespace: svc_ns.into(),
                name: svc.into(),
            },
            backend,
        );
        self
    }

    /// Records that no controller is expected for `gr`'s finalizers (as RBAC shows nothing).
    pub(crate) fn without_controller(mut self, gr: &str) -> Self {
        self.ns.controllers.insert(
            gr.to_string(),
            crate::facts::controllers::ResourceControllers {
                controllers: Vec::new(),
                notes: vec![format!(
                    "no role names {gr} with update or patch for a controller"
                )],
            },
        );
        self
    }

    pub(crate) fn build(self) -> Facts {
        Facts {
            now: self.now,
            name: self.name,
            cluster: Arc::new(self.cluster),
            namespace: self.ns,
            not_checked: Vec::new(),
        }
    }
}
