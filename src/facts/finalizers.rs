//! Finalizers Kubernetes itself removes, and which component does it. An object held by one
//! of these is cleaned up by the control plane (or the cloud provider's controller) as the
//! namespace is deleted: never evidence of a hang by owner, never offered for stripping.

/// The component that removes a built-in finalizer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum Component {
    /// kube-controller-manager (garbage collector, pvc-protection, job, resource-claim
    /// controllers).
    ControllerManager,
    /// The cloud provider's service controller (cloud-controller-manager).
    CloudControllerManager,
    /// kube-apiserver (apiextensions).
    ApiServer,
}

impl Component {
    /// Its usual name.
    pub fn as_str(self) -> &'static str {
        match self {
            Component::ControllerManager => "kube-controller-manager",
            Component::CloudControllerManager => "cloud-controller-manager",
            Component::ApiServer => "kube-apiserver",
        }
    }
}

/// One finalizer Kubernetes removes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuiltIn {
    /// The finalizer.
    pub name: &'static str,
    /// Who removes it.
    pub component: Component,
    /// The controller inside that component, and when it removes it.
    pub removed_by: &'static str,
    /// What removing it by hand would leak or break.
    pub protects: &'static str,
}

/// The table. Sources: reference/index-and-liveness.md B4.
pub const BUILT_IN: &[BuiltIn] = &[
    BuiltIn {
        name: "orphan",
        component: Component::ControllerManager,
        removed_by: "garbage collector, after orphaning the dependents",
        protects: "dependents that must outlive their owner",
    },
    BuiltIn {
        name: "foregroundDeletion",
        component: Component::ControllerManager,
        removed_by: "garbage collector, once no blocking dependents remain",
        protects: "the order of a foreground cascade",
    },
    BuiltIn {
        name: "kubernetes.io/pvc-protection",
        component: Component::ControllerManager,
        removed_by: "pvc-protection controller, once no pod uses the claim",
        protects: "a volume still mounted by a pod",
    },
    BuiltIn {
        name: "kubernetes.io/pv-protection",
        component: Component::ControllerManager,
        removed_by: "pv-protection controller, once no claim is bound",
        protects: "a volume still bound to a claim",
    },
    BuiltIn {
        name: "batch.kubernetes.io/job-tracking",
        component: Component::ControllerManager,
        removed_by: "job controller, once it has counted the pod",
        protects: "the Job's count of finished pods",
    },
    BuiltIn {
        name: "resource.kubernetes.io/delete-protection",
        component: Component::ControllerManager,
        removed_by: "resource-claim controller, once the claim is unused",
        protects: "a device still allocated to a pod",
    },
    BuiltIn {
        name: "service.kubernetes.io/load-balancer-cleanup",
        component: Component::CloudControllerManager,
        removed_by: "the cloud provider's service controller, after deleting the load balancer",
        protects: "the cloud load balancer, which leaks if the finalizer is removed by hand",
    },
    BuiltIn {
        name: "customresourcecleanup.apiextensions.k8s.io",
        component: Component::ApiServer,
        removed_by: "apiextensions, after deleting the CRD's objects",
        protects: "the custom resources stored under the CRD",
    },
];

/// The built-in entry for a finalizer, if Kubernetes removes it.
pub fn built_in(finalizer: &str) -> Option<&'static BuiltIn> {
    BUILT_IN.iter().find(|b| b.name == finalizer)
}

/// True when Kubernetes itself removes this finalizer.
pub fn is_built_in(finalizer: &str) -> bool {
    built_in(finalizer).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("kubernetes.io/pvc-protection", Some(Component::ControllerManager))]
    #[case("foregroundDeletion", Some(Component::ControllerManager))]
    #[case("orphan", Some(Component::ControllerManager))]
    #[case("batch.kubernetes.io/job-tracking", Some(Component::ControllerManager))]
    #[case(
        "service.kubernetes.io/load-balancer-cleanup",
        Some(Component::CloudControllerManager)
    )]
    #[case("acc.example.com/cleanup", None)]
    #[case("kubernetes", None)]
    fn the_table_names_the_component(#[case] f: &str, #[case] who: Option<Component>) {
        assert_eq!(built_in(f).map(|b| b.component), who);
    }
}
