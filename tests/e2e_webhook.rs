//! nsguard on the real control plane: the real binary, registered with the real API server,
//! deciding real `kubectl delete namespace` calls. That each scenario really hangs without
//! nsguard is shown in e2e_controlplane.rs on the same kind of control plane.

mod support;

use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::ListParams;
use support::nsguard::Nsguard;
use support::*;

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A namespace holding a custom resource whose finalizer has no controller.
async fn namespace_with_orphan_finalizer(guard: &Nsguard, annotations: &[(&str, &str)]) -> String {
    let (cluster, client) = cluster().await;
    install_crd(cluster, "hooks.nsguard.test", "gadgets", "Gadget").await;
    let ns = create_namespace_with(&client, "orphan", &guard.labels(), annotations).await;
    gadget(cluster, "hooks.nsguard.test", &ns, "g1");
    ns
}

async fn remove_finalizer(ns: &str) {
    let (cluster, _) = cluster().await;
    clear_finalizers(cluster, "gadgets.hooks.nsguard.test", "g1", ns);
}

async fn events_for(ns: &str) -> Vec<Event> {
    let (_, client) = cluster().await;
    let api: Api<Event> = Api::namespaced(client, "default");
    api.list(&ListParams::default().fields(&format!("regarding.name={ns}")))
        .await
        .unwrap()
        .items
}

#[tokio::test(flavor = "multi_thread")]
async fn enforce_denies_while_an_apiservice_is_unavailable_and_allows_once_it_is_fixed() {
    let _guard = CLUSTER_WIDE.write().await;
    let (cluster, client) = cluster().await;
    let guard = Nsguard::start(cluster, &["--mode=enforce"]).await;
    break_metrics_apiservice(cluster);
    let ns = create_namespace_with(&client, "apisvc", &guard.labels(), &[]).await;

    // A server dry run is a free preflight: the same denial.
    let dry = kubectl_output(
        cluster,
        &["delete", "namespace", &ns, "--dry-run=server"],
        None,
    )
    .unwrap();
    assert!(!dry.status.success());
    assert!(
        stderr_of(&dry).contains("v1beta1.metrics.k8s.io"),
        "{}",
        stderr_of(&dry)
    );

    let out = kubectl_output(cluster, &["delete", "namespace", &ns, "--wait=false"], None).unwrap();
    let err = stderr_of(&out);
    assert!(!out.status.success(), "deletion was not denied");
    assert!(err.contains("Error from server (Forbidden)"), "{err}");
    assert!(err.contains("denied the request"), "{err}");
    assert!(err.contains("apiservice-unavailable"), "{err}");
    assert!(err.contains("ServiceNotFound"), "{err}");
    assert!(
        err.contains("kubectl delete apiservice v1beta1.metrics.k8s.io"),
        "{err}"
    );
    // Denied means denied: the namespace is not Terminating.
    assert!(
        condition(&client, &ns, "NamespaceDeletionDiscoveryFailure")
            .await
            .unwrap()
            .is_none()
    );
    eventually(
        "a DeletionDenied event",
        Duration::from_secs(30),
        || async {
            Ok(events_for(&ns)
                .await
                .into_iter()
                .find(|e| e.reason.as_deref() == Some("DeletionDenied")))
        },
    )
    .await;

    kubectl(
        cluster,
        &["delete", "apiservice", "v1beta1.metrics.k8s.io"],
        None,
    )
    .unwrap();
    eventually(
        "the deletion to be allowed once the APIService is gone",
        Duration::from_secs(60),
        || async {
            Ok(
                kubectl(cluster, &["delete", "namespace", &ns, "--wait=false"], None)
                    .ok()
                    .map(|_| ()),
            )
        },
    )
    .await;
    wait_gone(&client, &ns).await;
    assert!(guard.metrics().contains(r#"decision="denied""#));
}

#[tokio::test(flavor = "multi_thread")]
async fn enforce_denies_a_finalizer_nobody_can_remove_and_allows_once_it_is_gone() {
    let _lock = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    let guard = Nsguard::start(cluster, &["--mode=enforce"]).await;
    let ns = namespace_with_orphan_finalizer(&guard, &[]).await;
    let out = kubectl_output(cluster, &["delete", "namespace", &ns, "--wait=false"], None).unwrap();
    let err = stderr_of(&out);
    assert!(!out.status.success(), "deletion was not denied");
    assert!(err.contains("finalizer-controller"), "{err}");
    assert!(err.contains("has no live controller"), "{err}");
    assert!(err.contains("hooks.nsguard.test/cleanup"), "{err}");

    remove_finalizer(&ns).await;
    kubectl(cluster, &["delete", "namespace", &ns, "--wait=false"], None).unwrap();
    wait_gone(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn warn_mode_allows_with_warnings_that_kubectl_prints() {
    let _lock = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    let guard = Nsguard::start(cluster, &["--mode=warn"]).await;
    let ns = namespace_with_orphan_finalizer(&guard, &[]).await;
    let out = kubectl_output(cluster, &["delete", "namespace", &ns, "--wait=false"], None).unwrap();
    let err = stderr_of(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("Warning: blocking finalizer-controller"),
        "{err}"
    );
    // And it really hangs, as the warning said.
    wait_stuck(&client, &ns, "NamespaceFinalizersRemaining").await;
    remove_finalizer(&ns).await;
    wait_gone(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_mode_allows_silently_and_records_an_event_and_a_metric_but_not_for_dry_runs() {
    let _lock = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    let guard = Nsguard::start(cluster, &["--mode=audit"]).await;
    let ns = namespace_with_orphan_finalizer(&guard, &[]).await;

    let dry = kubectl_output(
        cluster,
        &["delete", "namespace", &ns, "--dry-run=server"],
        None,
    )
    .unwrap();
    assert!(dry.status.success(), "{}", stderr_of(&dry));
    assert!(!stderr_of(&dry).contains("Warning"), "{}", stderr_of(&dry));
    let dry_audited = r#"decision="audited",dry_run="true""#;
    eventually(
        "the dry run to be counted",
        Duration::from_secs(10),
        || async { Ok(guard.metrics().contains(dry_audited).then_some(())) },
    )
    .await;
    // Nothing to poll for proves an absence; the real deletion's Event below arrives later than
    // any Event the dry run could have caused, so checking after it covers both.

    let out = kubectl_output(cluster, &["delete", "namespace", &ns, "--wait=false"], None).unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(!stderr_of(&out).contains("Warning"), "{}", stderr_of(&out));
    let events = eventually(
        "a DeletionWouldBeDenied event",
        Duration::from_secs(30),
        || async {
            let evs = events_for(&ns).await;
            Ok(evs
                .iter()
                .any(|e| e.reason.as_deref() == Some("DeletionWouldBeDenied"))
                .then_some(evs))
        },
    )
    .await;
    assert_eq!(
        events.len(),
        1,
        "one event for the real request, none for the dry run: {events:?}"
    );
    assert_eq!(events[0].reporting_controller.as_deref(), Some("nsguard"));
    assert!(
        guard
            .metrics()
            .contains(r#"decision="audited",dry_run="false""#)
    );
    remove_finalizer(&ns).await;
    wait_gone(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_override_annotation_allows_with_a_warning() {
    let _lock = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    let guard = Nsguard::start(cluster, &["--mode=enforce"]).await;
    let ns =
        namespace_with_orphan_finalizer(&guard, &[("nsguard.io/allow-stuck-delete", "ticket-42")])
            .await;
    let out = kubectl_output(cluster, &["delete", "namespace", &ns, "--wait=false"], None).unwrap();
    let err = stderr_of(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("nsguard.io/allow-stuck-delete (ticket-42)"),
        "{err}"
    );
    remove_finalizer(&ns).await;
    wait_gone(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_nsguard_down_deletions_still_work() {
    let _lock = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    let mut guard = Nsguard::start(cluster, &["--mode=enforce"]).await;
    let ns = namespace_with_orphan_finalizer(&guard, &[]).await;
    guard.kill();
    // failurePolicy Ignore: the API server goes on without nsguard.
    kubectl(cluster, &["delete", "namespace", &ns, "--wait=false"], None).unwrap();
    remove_finalizer(&ns).await;
    wait_gone(&client, &ns).await;
}

/// `kubectl annotate` of the override on `ns`, as user `user` in group `group`.
fn annotate_override_as(
    cluster: &localcluster::LocalCluster,
    ns: &str,
    user: &str,
    group: &str,
    reason: &str,
) -> std::process::Output {
    let annotation = format!("nsguard.io/allow-stuck-delete={reason}");
    kubectl_output(
        cluster,
        &[
            "annotate",
            "--overwrite",
            "namespace",
            ns,
            &annotation,
            "--as",
            user,
            "--as-group",
            group,
        ],
        None,
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_override_groups_may_set_the_override_and_its_event_names_who() {
    let _lock = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    let policy = std::fs::read_to_string(
        localcluster::workspace_root().join("manifests/base/override-policy.yaml"),
    )
    .unwrap();
    cluster.apply(&policy).unwrap();
    // Both groups may patch and delete namespaces: only the policy tells them apart.
    cluster
        .apply(
            r#"apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: nsguard-test-namespace-editor}
rules:
- apiGroups: [""]
  resources: [namespaces]
  verbs: [get, list, watch, patch, update, delete]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: nsguard-test-namespace-editor}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: nsguard-test-namespace-editor}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: tenants}
- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: "nsguard:override"}
"#,
        )
        .unwrap();
    let guard = Nsguard::start(cluster, &["--mode=enforce"]).await;
    let ns = namespace_with_orphan_finalizer(&guard, &[]).await;
    // A tenant who may patch namespaces is refused once the policy is in force.
    let refused = eventually(
        "the override policy in force",
        Duration::from_secs(30),
        || async {
            let out = annotate_override_as(cluster, &ns, "bob", "tenants", "mine now");
            Ok((!out.status.success()).then(|| stderr_of(&out)))
        },
    )
    .await;
    assert!(refused.contains("only members of"), "{refused}");
    // A member must give a reason.
    let out = annotate_override_as(cluster, &ns, "alice", "nsguard:override", " ");
    assert!(!out.status.success(), "an empty override was accepted");
    assert!(
        stderr_of(&out).contains("needs a reason"),
        "{}",
        stderr_of(&out)
    );
    let out = annotate_override_as(cluster, &ns, "alice", "nsguard:override", "ticket-77");
    assert!(out.status.success(), "{}", stderr_of(&out));
    // The deletion then goes through, and its Event says who deleted and why.
    let out = kubectl_output(
        cluster,
        &[
            "delete",
            "namespace",
            &ns,
            "--wait=false",
            "--as",
            "alice",
            "--as-group",
            "nsguard:override",
        ],
        None,
    )
    .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("ticket-77"), "{}", stderr_of(&out));
    let note = eventually(
        "a DeletionOverridden event",
        Duration::from_secs(30),
        || async {
            Ok(events_for(&ns).await.into_iter().find_map(|e| {
                (e.reason.as_deref() == Some("DeletionOverridden"))
                    .then(|| e.note.unwrap_or_default())
            }))
        },
    )
    .await;
    assert!(note.contains("deleted by alice"), "{note}");
    assert!(note.contains("ticket-77"), "{note}");
    remove_finalizer(&ns).await;
    wait_gone(&client, &ns).await;
    for what in [
        "clusterrolebinding/nsguard-test-namespace-editor",
        "clusterrole/nsguard-test-namespace-editor",
        "validatingadmissionpolicybinding/nsguard-override",
        "validatingadmissionpolicy/nsguard-override",
    ] {
        kubectl(cluster, &["delete", what], None).unwrap();
    }
}
