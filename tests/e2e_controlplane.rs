//! The two field reports in `shared/seeds/`, reproduced on the real control plane with no
//! nsguard involved: these are the hangs nsguard exists to prevent. And the test world
//! itself: a node that runs pods, and the RBAC and workloads every cluster carries.

mod support;

use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::Api;
use kube::api::{DeleteParams, ListParams};
use support::*;

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_namespace_is_deleted_by_the_real_controller_manager() {
    let _guard = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    let ns = create_namespace(&client, "plain").await;
    kubectl(cluster, &["delete", "namespace", &ns, "--wait=false"], None).unwrap();
    wait_gone(&client, &ns).await;
}

/// A stale aggregated API: metrics.k8s.io's APIService has no reachable backend, discovery fails, and every
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

/// An orphaned finalizer: a custom resource keeps a finalizer that no controller will ever remove.
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

/// The world is shaped like a production cluster: kubeadm's binding of
/// `kubeadm:cluster-admins`, a GitOps controller bound to `cluster-admin` whose pod is Ready,
/// and nsguard authenticating as its own ServiceAccount.
#[tokio::test(flavor = "multi_thread")]
async fn the_world_has_the_common_rbac_a_live_gitops_controller_and_nsguards_identity() {
    let _guard = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    for (name, kind, subject) in [
        ("kubeadm:cluster-admins", "Group", "kubeadm:cluster-admins"),
        (
            localcluster::GITOPS_SERVICE_ACCOUNT,
            "ServiceAccount",
            localcluster::GITOPS_SERVICE_ACCOUNT,
        ),
    ] {
        let b = bindings.get(name).await.unwrap();
        assert_eq!(b.role_ref.name, "cluster-admin", "{name}");
        let subjects = b.subjects.unwrap_or_default();
        assert!(
            subjects.iter().any(|s| s.kind == kind && s.name == subject),
            "{name}: {subjects:?}"
        );
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), localcluster::GITOPS_NAMESPACE);
    let gitops = pods.list(&ListParams::default()).await.unwrap().items;
    assert!(
        gitops.iter().any(|p| localcluster::pod_is_ready(p)
            && p.spec
                .as_ref()
                .and_then(|s| s.service_account_name.as_deref())
                == Some(localcluster::GITOPS_SERVICE_ACCOUNT)),
        "{gitops:?}"
    );

    let kubeconfig = cluster.nsguard_kubeconfig().unwrap();
    let out = Command::new(cluster.bin_path().join("kubectl"))
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args([
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "system:serviceaccount:nsguard-system:nsguard"
    );
}

fn ready_condition(node: &Node) -> Option<String> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.clone())
}

fn has_taint(node: &Node, key: &str) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|t| t.iter().any(|t| t.key == key))
}

/// The one Ready pod of `app` in `ns` bound to the node.
async fn ready_pod(pods: &Api<Pod>, app: &str) -> Pod {
    let cluster_node = localcluster::NODE_NAME;
    eventually(
        &format!("a Ready pod of {app} on {cluster_node}"),
        Duration::from_secs(60),
        || async {
            let list = pods
                .list(&ListParams::default().labels(&format!("app={app}")))
                .await?;
            Ok(list.items.into_iter().find(|p| {
                p.metadata.deletion_timestamp.is_none()
                    && localcluster::pod_is_ready(p)
                    && p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(cluster_node)
            }))
        },
    )
    .await
}

/// The node's kubelet runs a Deployment's pod to Ready, finishes a deleted pod, and, while the
/// node is NotReady on request, leaves a deleted pod Terminating until the node is back.
#[tokio::test(flavor = "multi_thread")]
async fn pods_run_on_the_node_and_the_node_turns_not_ready_and_back_on_request() {
    // A NotReady node concerns every test with pods.
    let _guard = CLUSTER_WIDE.write().await;
    let (cluster, client) = cluster().await;
    let ns = create_namespace(&client, "world").await;
    wait_default_service_account(&client, &ns).await;
    let deployment = format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {ns}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers: [{{name: web, image: registry.invalid/web:1}}]
"
    );
    kubectl(cluster, &["apply", "-f", "-"], Some(&deployment)).unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let first = ready_pod(&pods, "web").await;
    let status = first.status.clone().unwrap();
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert!(status.pod_ip.is_some(), "{status:?}");
    let statuses = status.container_statuses.unwrap_or_default();
    assert!(
        statuses.iter().all(|c| c.ready && c.started == Some(true)),
        "{statuses:?}"
    );

    // Deleted: the kubelet finishes it, the ReplicaSet replaces it.
    let first_name = first.metadata.name.clone().unwrap();
    pods.delete(&first_name, &DeleteParams::default())
        .await
        .unwrap();
    eventually(
        &format!("pod {first_name} to be finished"),
        Duration::from_secs(60),
        || async { Ok(pods.get_opt(&first_name).await?.is_none().then_some(())) },
    )
    .await;
    let second = ready_pod(&pods, "web").await;
    let second_name = second.metadata.name.clone().unwrap();

    // NotReady: the controller-manager taints the node; a deleted pod stays Terminating.
    let nodes: Api<Node> = Api::all(client.clone());
    let node = localcluster::NODE_NAME;
    cluster.set_node_ready(false).await.unwrap();
    eventually(
        "the node to be NotReady and tainted",
        Duration::from_secs(60),
        || async {
            let n = nodes.get(node).await?;
            Ok((ready_condition(&n).as_deref() == Some("False")
                && has_taint(&n, "node.kubernetes.io/not-ready"))
            .then_some(()))
        },
    )
    .await;
    pods.delete(&second_name, &DeleteParams::default())
        .await
        .unwrap();
    let terminating = pods.get(&second_name).await.unwrap();
    assert!(terminating.metadata.deletion_timestamp.is_some());

    // Ready again: the taint goes, the Terminating pod is finished, the replacement runs.
    cluster.set_node_ready(true).await.unwrap();
    eventually(
        "the node to be Ready and untainted",
        Duration::from_secs(60),
        || async {
            let n = nodes.get(node).await?;
            Ok((ready_condition(&n).as_deref() == Some("True")
                && !has_taint(&n, "node.kubernetes.io/not-ready"))
            .then_some(()))
        },
    )
    .await;
    eventually(
        &format!("pod {second_name} to be finished"),
        Duration::from_secs(60),
        || async { Ok(pods.get_opt(&second_name).await?.is_none().then_some(())) },
    )
    .await;
    ready_pod(&pods, "web").await;

    kubectl(cluster, &["delete", "namespace", &ns, "--wait=false"], None).unwrap();
    wait_gone(&client, &ns).await;
}
