//! What a finding is about, as types the remedies, the renderers and the teardown `match` on:
//! a resource type ([`GroupResource`]), the kind of an object ([`ObjectKind`]), and the
//! subject of a finding ([`Subject`]). Each concept is turned into text in one place, its
//! `Display`.

use std::fmt;

use serde::{Serialize, Serializer};

use crate::facts::controllers::Liveness;
use crate::facts::{ResourceType, ServiceKey};

/// A resource type by API group and plural resource name, written `resource.group` (`pods`
/// for the core group), the way the namespace controller's conditions name it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupResource {
    /// API group (`""` for core).
    pub group: String,
    /// Plural resource name.
    pub resource: String,
}

impl GroupResource {
    /// The type `resource` of `group`.
    pub fn new(group: impl Into<String>, resource: impl Into<String>) -> Self {
        Self {
            group: group.into(),
            resource: resource.into(),
        }
    }

    /// Whether `t` is this type (at any version).
    pub fn is(&self, t: &ResourceType) -> bool {
        self.group == t.group && self.resource == t.resource
    }
}

impl From<&ResourceType> for GroupResource {
    fn from(t: &ResourceType) -> Self {
        Self::new(&t.group, &t.resource)
    }
}

impl fmt::Display for GroupResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.group.is_empty() {
            f.write_str(&self.resource)
        } else {
            write!(f, "{}.{}", self.resource, self.group)
        }
    }
}

impl Serialize for GroupResource {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Validating or mutating: the two kinds of webhook configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WebhookKind {
    /// `ValidatingWebhookConfiguration`.
    Validating,
    /// `MutatingWebhookConfiguration`.
    Mutating,
}

impl WebhookKind {
    /// The kind of its configuration object.
    pub fn object_kind(self) -> ObjectKind {
        match self {
            WebhookKind::Validating => ObjectKind::ValidatingWebhookConfiguration,
            WebhookKind::Mutating => ObjectKind::MutatingWebhookConfiguration,
        }
    }
}

/// One webhook configuration, by kind and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WebhookConfig {
    /// Validating or mutating.
    pub kind: WebhookKind,
    /// The configuration's name.
    pub name: String,
}

impl WebhookConfig {
    /// The command that deletes it.
    pub fn delete_command(&self) -> String {
        format!(
            "kubectl delete {} {}",
            self.kind.object_kind().to_string().to_lowercase(),
            self.name
        )
    }
}

impl fmt::Display for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.object_kind(), self.name)
    }
}

impl Serialize for WebhookConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The kind of an object a finding names: one of the Kubernetes kinds the checks name, or an
/// object of the namespace's content, by its type.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectKind {
    /// `Namespace`.
    Namespace,
    /// `Pod`.
    Pod,
    /// `Service`.
    Service,
    /// `APIService` (`apiregistration.k8s.io`).
    ApiService,
    /// `CustomResourceDefinition` (`apiextensions.k8s.io`).
    CustomResourceDefinition,
    /// `ValidatingWebhookConfiguration` (`admissionregistration.k8s.io`).
    ValidatingWebhookConfiguration,
    /// `MutatingWebhookConfiguration` (`admissionregistration.k8s.io`).
    MutatingWebhookConfiguration,
    /// `ValidatingAdmissionPolicy` (`admissionregistration.k8s.io`).
    ValidatingAdmissionPolicy,
    /// `ValidatingAdmissionPolicyBinding` (`admissionregistration.k8s.io`).
    ValidatingAdmissionPolicyBinding,
    /// An object of the namespace's content, whose kind the facts know by its type.
    Content(GroupResource),
}

impl ObjectKind {
    /// The apiVersion and kind of a kind the checks name; `None` for content, whose kind only
    /// the facts know.
    pub fn api(&self) -> Option<(&'static str, &'static str)> {
        let admission = "admissionregistration.k8s.io/v1";
        Some(match self {
            ObjectKind::Namespace => ("v1", "Namespace"),
            ObjectKind::Pod => ("v1", "Pod"),
            ObjectKind::Service => ("v1", "Service"),
            ObjectKind::ApiService => ("apiregistration.k8s.io/v1", "APIService"),
            ObjectKind::CustomResourceDefinition => {
                ("apiextensions.k8s.io/v1", "CustomResourceDefinition")
            }
            ObjectKind::ValidatingWebhookConfiguration => {
                (admission, "ValidatingWebhookConfiguration")
            }
            ObjectKind::MutatingWebhookConfiguration => (admission, "MutatingWebhookConfiguration"),
            ObjectKind::ValidatingAdmissionPolicy => (admission, "ValidatingAdmissionPolicy"),
            ObjectKind::ValidatingAdmissionPolicyBinding => {
                (admission, "ValidatingAdmissionPolicyBinding")
            }
            ObjectKind::Content(_) => return None,
        })
    }
}

/// The Kind (`APIService`), or `resource.group` for content.
impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self, self.api()) {
            (ObjectKind::Content(gr), _) => gr.fmt(f),
            (_, Some((_, kind))) => f.write_str(kind),
            (_, None) => Ok(()),
        }
    }
}

impl Serialize for ObjectKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// What a finding is about. The remedies (`diagnose`, the teardown's plan) and the renderers
/// read this, never the finding's words. In JSON, `type` says which, in kebab case.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Subject {
    /// The namespace being deleted itself (its own finalizers).
    Namespace,
    /// An aggregated APIService and its backing Service.
    ApiService {
        /// The APIService's name (`v1beta1.metrics.k8s.io`).
        name: String,
        /// Its Service.
        #[serde(serialize_with = "display")]
        service: ServiceKey,
    },
    /// A group-version aggregated discovery reports `Stale`, with no APIService to blame.
    GroupVersion {
        /// `group/version`.
        #[serde(rename = "groupVersion")]
        group_version: String,
    },
    /// Other namespaces already stuck on discovery of these group-versions (none when their
    /// condition names none nsguard can read).
    StuckNamespaces {
        /// `group/version`s.
        #[serde(rename = "groupVersions")]
        group_versions: Vec<String>,
    },
    /// One webhook of a configuration.
    Webhook {
        /// Its configuration.
        configuration: WebhookConfig,
        /// The webhook's name in it.
        webhook: String,
        /// Its Service, unless it is called by URL.
        #[serde(serialize_with = "display_opt")]
        #[serde(skip_serializing_if = "Option::is_none")]
        service: Option<ServiceKey>,
    },
    /// A CRD whose conversion webhook a Service serves.
    Conversion {
        /// The CRD's name.
        crd: String,
        /// Its resource type.
        resource: GroupResource,
        /// The conversion webhook's Service.
        #[serde(serialize_with = "display")]
        service: ServiceKey,
    },
    /// A ValidatingAdmissionPolicy, through one binding, on a type of the namespace's content.
    PolicyBinding {
        /// The policy's name.
        policy: String,
        /// The binding's name.
        binding: String,
        /// The type whose writes it refuses.
        resource: GroupResource,
    },
    /// A resource type of the namespace's content (one that cannot be listed, or whose objects
    /// a check counts).
    ResourceType {
        /// The type.
        resource: GroupResource,
    },
    /// A finalizer on objects of one type, judged by its controller.
    Finalizer {
        /// The type of the objects.
        resource: GroupResource,
        /// The finalizer.
        finalizer: String,
    },
    /// A finalizer whose live controllers may remove it only through RoleBindings inside the
    /// namespace, which the deletion removes first.
    RemovalRight {
        /// The type of the objects.
        resource: GroupResource,
        /// The finalizer.
        finalizer: String,
        /// The RoleBindings (`RoleBinding b -> Role r`) that alone grant the right.
        bindings: Vec<String>,
    },
    /// One object already being deleted that still carries finalizers.
    Deleting {
        /// Its type.
        resource: GroupResource,
        /// Its name.
        name: String,
        /// The finalizers Kubernetes does not remove itself.
        finalizers: Vec<String>,
    },
    /// Objects of one type with finalizers whose controllers were not judged.
    Finalizers {
        /// The type.
        resource: GroupResource,
        /// The finalizers.
        finalizers: Vec<String>,
    },
    /// A pod on a node that cannot confirm its end.
    Pod {
        /// The pod's name.
        name: String,
        /// Its node.
        node: String,
    },
}

impl Subject {
    /// The type whose objects hold finalizers, for subjects about finalizers.
    pub fn finalized_type(&self) -> Option<&GroupResource> {
        match self {
            Subject::Finalizer { resource, .. }
            | Subject::RemovalRight { resource, .. }
            | Subject::Deleting { resource, .. }
            | Subject::Finalizers { resource, .. } => Some(resource),
            _ => None,
        }
    }
}

fn display<S: Serializer, T: fmt::Display>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

fn display_opt<S: Serializer, T: fmt::Display>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}

/// How a controller stands, in the words every output uses (the checks' evidence, `delete`,
/// the `dot` chain).
impl fmt::Display for Liveness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Liveness::Live(d) => write!(f, "live: {d}"),
            Liveness::LiveHereOnly(d) => {
                write!(f, "live only in this namespace, deleted with it: {d}")
            }
            Liveness::NotLive { reason, .. } => write!(f, "not live: {reason}"),
            Liveness::Unknown(why) => write!(f, "not checked: {why}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_types_read_as_kubectl_writes_them() {
        assert_eq!(GroupResource::new("", "pods").to_string(), "pods");
        let gr = GroupResource::new("example.com", "gadgets");
        assert_eq!(gr.to_string(), "gadgets.example.com");
        assert_eq!(
            ObjectKind::Content(gr.clone()).to_string(),
            "gadgets.example.com"
        );
        assert_eq!(ObjectKind::ApiService.to_string(), "APIService");
        let config = WebhookConfig {
            kind: WebhookKind::Mutating,
            name: "guard".into(),
        };
        assert_eq!(config.to_string(), "MutatingWebhookConfiguration guard");
        assert_eq!(
            config.delete_command(),
            "kubectl delete mutatingwebhookconfiguration guard"
        );
        let subject = Subject::Finalizer {
            resource: gr,
            finalizer: "example.com/cleanup".into(),
        };
        assert_eq!(
            serde_json::to_value(&subject).unwrap(),
            serde_json::json!({"type": "finalizer", "resource": "gadgets.example.com", "finalizer": "example.com/cleanup"})
        );
    }
}
