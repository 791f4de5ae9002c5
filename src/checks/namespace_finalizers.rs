//! `namespace-finalizers`: finalizers on the namespace itself that nothing in Kubernetes
//! removes: `spec.finalizers` other than `kubernetes`, `metadata.finalizers` other than
//! `orphan` and `foregroundDeletion`.

use crate::checks::Settings;
use crate::checks::registry::{Blocks, Check, CheckEntry, Confirm, Severity, Stage};
use crate::checks::report::{CheckId, Finding, ObjectKind, ObjectRef, Subject, remedy};
use crate::facts::Facts;

/// The `namespace-finalizers` check.
pub(super) struct NamespaceFinalizers;

impl Check for NamespaceFinalizers {
    const ENTRY: CheckEntry = CheckEntry {
        name: "namespace-finalizers",
        default: Severity::Advisory,
        blocks: Blocks::FinalizeNamespace,
        title: "The namespace itself carries finalizers other than the ones Kubernetes handles",
        remedy: "make sure the controller that owns each namespace finalizer runs",
        stage: Stage::NamespaceFinalizers,
        risk: "none: the controller that owns the namespace finalizer does its cleanup",
        confirm: Confirm::No,
        on_discovery: false,
    };

    fn run(facts: &Facts, _settings: &Settings) -> Vec<Finding> {
        check(facts)
    }
}

pub(super) fn check(facts: &Facts) -> Vec<Finding> {
    let ns = &facts.namespace.namespace;
    let spec: Vec<String> = ns
        .spec
        .as_ref()
        .and_then(|s| s.finalizers.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|f| f != "kubernetes")
        .collect();
    let meta: Vec<String> = ns
        .metadata
        .finalizers
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|f| f != "orphan" && f != "foregroundDeletion")
        .collect();
    if spec.is_empty() && meta.is_empty() {
        return Vec::new();
    }
    let all: Vec<String> = spec.iter().chain(meta.iter()).cloned().collect();
    vec![
        Finding::new(
            CheckId::NamespaceFinalizers,
            Subject::Namespace,
            format!(
                "namespace has finalizers {} that only their own controllers remove",
                all.join(", ")
            ),
            remedy("make sure the controllers owning them are running", None),
        )
        .object(ObjectRef::cluster(ObjectKind::Namespace, &facts.name))
        .evidence(format!(
            "spec.finalizers: {spec:?}; metadata.finalizers: {meta:?}"
        )),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::fixtures;
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::only_kubernetes(&["kubernetes"], &[], false)]
    #[case::foreign_spec(&["kubernetes", "example.com/hold"], &[], true)]
    #[case::gc_metadata(&["kubernetes"], &["orphan", "foregroundDeletion"], false)]
    #[case::foreign_metadata(&["kubernetes"], &["example.com/hold"], true)]
    fn only_finalizers_kubernetes_does_not_handle(
        #[case] spec: &[&str],
        #[case] meta: &[&str],
        #[case] found: bool,
    ) {
        let mut facts = fixtures::facts("team-a")
            .with_namespace_spec_finalizers(spec)
            .build();
        facts.namespace.namespace.metadata.finalizers =
            Some(meta.iter().map(|s| s.to_string()).collect());
        assert_eq!(!check(&facts).is_empty(), found);
    }
}
