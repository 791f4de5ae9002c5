//! Facts: everything the checks look at, as plain data: no I/O and no clock (the time of the
//! gathering is itself a fact, [`Facts::now`]). [`crate::cluster`] reads the API server and
//! fills these structs; checks read them and nothing else.

pub mod admission;
pub mod controllers;
pub mod discovery;
pub mod finalizers;

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::jiff::Timestamp;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;

pub use discovery::{Discovery, ResourceType};

/// Cluster-scoped facts, shared by every namespace's preflight.
#[derive(Clone, Debug, Default)]
pub struct ClusterFacts {
    /// What aggregated discovery says, as the namespace controller sees it.
    pub discovery: Discovery,
    /// Every APIService.
    pub apiservices: Vec<APIService>,
    /// Every CustomResourceDefinition.
    pub crds: Vec<CustomResourceDefinition>,
    /// Every validating webhook configuration.
    pub validating_webhooks: Vec<ValidatingWebhookConfiguration>,
    /// Every mutating webhook configuration.
    pub mutating_webhooks: Vec<MutatingWebhookConfiguration>,
    /// State of each Service referenced by an APIService, webhook or conversion webhook.
    pub backends: BTreeMap<ServiceKey, BackendState>,
    /// Every node.
    pub nodes: Vec<Node>,
    /// Namespaces already Terminating.
    pub terminating: Vec<Namespace>,
    /// Every namespace's phase (`Active`, `Terminating`), by name.
    pub namespace_phases: BTreeMap<String, String>,
    /// RBAC, to find who can remove a finalizer.
    pub rbac: Rbac,
    /// ValidatingAdmissionPolicies that some binding binds, compiled.
    pub admission_policies: Vec<std::sync::Arc<admission::AdmissionPolicy>>,
}

/// RBAC objects, cluster-wide.
#[derive(Clone, Debug, Default)]
pub struct Rbac {
    /// ClusterRoles.
    pub cluster_roles: Vec<ClusterRole>,
    /// ClusterRoleBindings.
    pub cluster_role_bindings: Vec<ClusterRoleBinding>,
    /// Roles in every namespace.
    pub roles: Vec<Role>,
    /// RoleBindings in every namespace.
    pub role_bindings: Vec<RoleBinding>,
}

/// A Service, by namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceKey {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl std::fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What a backend Service looks like right now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackendState {
    /// The Service exists.
    pub exists: bool,
    /// Ready endpoints over all its EndpointSlices.
    pub ready_endpoints: usize,
    /// An `ExternalName` Service: the API server dials the name it points to and never looks
    /// at endpoints.
    pub external: bool,
    /// For a Service that exists but has no ready endpoints: since when, as far as nsguard can
    /// tell (the earlier of when this process first saw it so, and the endpointslice
    /// controller's last write to its slices). `None`: reachable, missing, or unknown.
    pub unreachable_since: Option<Timestamp>,
}

impl BackendState {
    /// Whether the API server can reach it, as far as the Service objects tell: it exists,
    /// and either points outside the cluster or has a ready endpoint.
    pub fn reachable(&self) -> bool {
        self.exists && (self.external || self.ready_endpoints > 0)
    }
}

/// One object of namespaced content: the metadata the checks need.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObjectFacts {
    /// Name.
    pub name: String,
    /// `metadata.finalizers`.
    pub finalizers: Vec<String>,
    /// `metadata.deletionTimestamp`.
    pub deletion_timestamp: Option<Timestamp>,
    /// Labels (webhook object selectors).
    pub labels: BTreeMap<String, String>,
    /// Annotations, when they were read: the live index does not keep them; a review reads
    /// them only for types an admission policy reads them of (kubectl's last-applied copy is
    /// never kept: on a Secret it holds the data).
    pub annotations: Option<BTreeMap<String, String>>,
}

/// The objects of one resource type in the namespace.
#[derive(Clone, Debug, PartialEq)]
pub struct Content {
    /// The resource type.
    pub resource: ResourceType,
    /// Its objects.
    pub objects: Vec<ObjectFacts>,
}

/// A list of a namespaced resource type that failed.
#[derive(Clone, Debug, PartialEq)]
pub struct ListFailure {
    /// The resource type.
    pub resource: ResourceType,
    /// HTTP status code, when the API server answered.
    pub code: Option<u16>,
    /// The error message.
    pub message: String,
}

impl ListFailure {
    /// What this failure means for the deletion.
    pub fn class(&self) -> ListErrorClass {
        ListErrorClass::of(self.code, &self.message)
    }
}

/// What a failed list means for the deletion. Only errors the namespace controller would hit
/// too are evidence; nsguard's own trouble is "not checked".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListErrorClass {
    /// The controller would fail the same way: HTTP 500, 502, 503 or 504 (an aggregated API
    /// that is down answers 503 in plain text), or a conversion webhook failure.
    Controller,
    /// 401 or 403: nsguard's own identity may not list it; an RBAC gap, checked by nobody.
    NotAllowed,
    /// 404: the type went away since discovery; there is nothing to delete.
    Gone,
    /// Anything else (429, 410, 406, other statuses; timeouts, transport and decode errors,
    /// which carry no status; the API server's own 503 while it shuts down): nsguard's own
    /// trouble, not the namespace's.
    Own,
}

impl ListErrorClass {
    /// The class of an error the API server answered with `code` and `message`; `code` is
    /// `None` when there was no answer.
    pub fn of(code: Option<u16>, message: &str) -> Self {
        if message.contains("conversion webhook") {
            return Self::Controller;
        }
        // kube-apiserver in its graceful shutdown (a restart, an upgrade) answers every new
        // request 503 "apiserver is shutting down" (with --shutdown-send-retry-after: "The
        // apiserver is shutting down, please try again later."): the moment's trouble, not
        // this namespace's. Seen denying a clean namespace in `make faults`.
        if code == Some(503) && message.contains("apiserver is shutting down") {
            return Self::Own;
        }
        match code {
            Some(500 | 502 | 503 | 504) => Self::Controller,
            Some(401 | 403) => Self::NotAllowed,
            Some(404) => Self::Gone,
            _ => Self::Own,
        }
    }
}

/// Facts about one namespace, listed at the time of the preflight.
#[derive(Clone, Debug, Default)]
pub struct NamespaceFacts {
    /// The namespace object (from the admission request's `oldObject`, or read).
    pub namespace: Namespace,
    /// Content, one entry per resource type that has objects.
    pub content: Vec<Content>,
    /// Lists that failed.
    pub list_failures: Vec<ListFailure>,
    /// Pods, typed (node, phase).
    pub pods: Vec<Pod>,
    /// The controllers expected to remove the finalizers of the content, with their
    /// liveness, per resource type (`resource.group`).
    pub controllers: controllers::ControllerFacts,
    /// Whether each component outside kube-controller-manager that removes a built-in
    /// finalizer the content carries is seen running (cloud-controller-manager).
    pub components: BTreeMap<finalizers::Component, controllers::components::Seen>,
}

/// Everything one preflight looks at.
#[derive(Clone, Debug)]
pub struct Facts {
    /// When the facts were gathered.
    pub now: Timestamp,
    /// The namespace's name.
    pub name: String,
    /// Cluster-scoped facts.
    pub cluster: std::sync::Arc<ClusterFacts>,
    /// The namespace's own facts.
    pub namespace: NamespaceFacts,
    /// Parts that could not be gathered; the report says they were not checked.
    pub not_checked: Vec<String>,
}

impl Facts {
    /// The namespace's labels.
    pub fn labels(&self) -> BTreeMap<String, String> {
        self.namespace
            .namespace
            .metadata
            .labels
            .clone()
            .unwrap_or_default()
    }
}
