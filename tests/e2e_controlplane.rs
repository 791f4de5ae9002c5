//! The two field reports in `shared/seeds/`, reproduced on the real control plane with no
//! nsguard involved: these are the hangs nsguard exists to prevent.

mod support;

use support::*;

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_namespace_is_deleted_by_the_real_controller_manager() {
    let _guard = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    let ns = create_namespace(&client, "plain").await;
    kubectl(cluster, &["delete", "namespace", &ns, "--wait=false"], None).unwrap();
    wait_gone(&client, &ns).await;
}

/// Seed 000: metrics.k8s.io's APIService has no reachable backend, discovery fails, and every
/// namespace deletion in the cluster hangs, even of a namespace holding nothing of that group.
#[tokio::test(flavor = "multi_thread")]
async fn an_unavailable_apiservice_keeps_any_namespace_terminating_until_it_is_deleted() {
    let _guard = CLUSTER_WIDE.write().await;
    let (cluster, client) = cluster().await;
    break_metrics_apiservice(cluster);

    let ns = create_namespace(&client, "seed000").await;
    kubectl(cluster, &["delete", "namespace", &ns, "--wait=false"], None).unwrap();
    let c = wait_stuck(&client, &ns, "NamespaceDeletionDiscoveryFailure").await;
    assert_eq!(c.reason.as_deref(), Some("DiscoveryFailed"));
    let message = c.message.unwrap_or_default();
    assert!(message.contains("metrics.k8s.io/v1beta1"), "{message}");

    kubectl(
        cluster,
        &["delete", "apiservice", "v1beta1.metrics.k8s.io"],
        None,
    )
    .unwrap();
    wait_gone(&client, &ns).await;
}

/// Seed 004: a custom resource keeps a finalizer that no controller will ever remove.
#[tokio::test(flavor = "multi_thread")]
async fn a_custom_resource_finalizer_without_a_controller_keeps_its_namespace_terminating() {
    let _guard = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    install_crd(cluster, "seed004.nsguard.test", "widgets", "Widget").await;
    let ns = create_namespace(&client, "seed004").await;
    let widget = format!(
        "apiVersion: seed004.nsguard.test/v1\nkind: Widget\nmetadata:\n  name: w1\n  namespace: {ns}\n  finalizers: [seed004.nsguard.test/cleanup]\n"
    );
    kubectl(cluster, &["apply", "-f", "-"], Some(&widget)).unwrap();

    kubectl(cluster, &["delete", "namespace", &ns, "--wait=false"], None).unwrap();
    let c = wait_stuck(&client, &ns, "NamespaceFinalizersRemaining").await;
    assert_eq!(c.reason.as_deref(), Some("SomeFinalizersRemain"));
    let message = c.message.unwrap_or_default();
    assert!(
        message.contains("seed004.nsguard.test/cleanup"),
        "{message}"
    );

    clear_finalizers(cluster, "widgets.seed004.nsguard.test", "w1", &ns);
    wait_gone(&client, &ns).await;
}
