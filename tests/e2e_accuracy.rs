//! Deny only on evidence, on a world shaped like production (every controller, a node whose
//! kubelet runs pods, kubeadm's admin group and a GitOps controller bound to cluster-admin,
//! nsguard as its own ServiceAccount). Each missed-hang class shows the namespace really
//! hanging without nsguard, the deny with it, then the fix and the completion; each
//! false-deny class shows the completion and the allow.

mod support;

use std::time::Duration;

use localcluster::{LocalCluster, random_suffix};
use support::nsguard::Nsguard;
use support::operator::{Operator, run_operator, wait_ready};
use support::*;

fn apply(cluster: &LocalCluster, yaml: &str) {
    kubectl(cluster, &["apply", "-f", "-"], Some(yaml)).unwrap();
}

/// The same namespace twice: one nsguard does not see (to show the hang), one it guards.
async fn twins(guard: &Nsguard, group: &str, prefix: &str) -> (String, String) {
    let (cluster, client) = cluster().await;
    install_crd(cluster, group, "gadgets", "Gadget").await;
    let bare = create_namespace(&client, &format!("{prefix}-bare")).await;
    let guarded = create_namespace_with(&client, prefix, &guard.labels(), &[]).await;
    for ns in [&bare, &guarded] {
        gadget(cluster, group, ns, "g1");
        gadget(cluster, group, ns, "g2");
    }
    (bare, guarded)
}

/// The last resort, once nothing will ever remove the finalizers: strip them by hand from
/// both twins' gadgets.
fn strip_both(cluster: &LocalCluster, group: &str, namespaces: [&String; 2]) {
    for ns in namespaces {
        for g in ["g1", "g2"] {
            clear_finalizers(cluster, &format!("gadgets.{group}"), g, ns);
        }
    }
}

/// Deletes `ns` without nsguard and waits until the namespace controller says it is stuck on
/// `finalizer`.
async fn hangs(cluster: &LocalCluster, client: &kube::Client, ns: &str, finalizer: &str) {
    kubectl(cluster, &["delete", "namespace", ns, "--wait=false"], None).unwrap();
    let c = wait_stuck(client, ns, "NamespaceFinalizersRemaining").await;
    assert!(
        c.message.as_deref().unwrap_or_default().contains(finalizer),
        "{c:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_uninstalled_operator_whose_rbac_was_left_behind_is_no_controller() {
    let _lock = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    let guard = Nsguard::start(cluster, &["--mode=enforce"]).await;
    let group = "left.accuracy.nsguard.test";
    // The operator's ClusterRole and binding outlived it: its namespace is gone.
    let operator = format!("left-operator-{}", random_suffix());
    grant_update(cluster, &operator, group, "gadgets");
    let (bare, guarded) = twins(&guard, group, "left").await;

    hangs(cluster, &client, &bare, &format!("{group}/cleanup")).await;
    let err = denied(cluster, &guarded, "finalizer-controller").await;
    assert!(
        err.contains(&format!(
            "{operator}-system/{operator}: its namespace does not exist"
        )),
        "{err}"
    );

    strip_both(cluster, group, [&bare, &guarded]);
    wait_gone(&client, &bare).await;
    allowed_and_gone(cluster, &client, &guarded).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_admin_bystanders_are_not_controllers() {
    let _lock = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    // What nearly every cluster has, and this world too.
    kubectl(
        cluster,
        &["get", "clusterrolebinding", "kubeadm:cluster-admins"],
        None,
    )
    .expect("kubeadm's admin group binding");
    let guard = Nsguard::start(cluster, &["--mode=enforce"]).await;
    let group = "bystander.accuracy.nsguard.test";
    let (bare, guarded) = twins(&guard, group, "bystander").await;

    hangs(cluster, &client, &bare, &format!("{group}/cleanup")).await;
    let err = denied(cluster, &guarded, "finalizer-controller").await;
    assert!(err.contains("only wildcard grants"), "{err}");

    strip_both(cluster, group, [&bare, &guarded]);
    wait_gone(&client, &bare).await;
    allowed_and_gone(cluster, &client, &guarded).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_scaled_to_zero_is_denied_until_it_runs_again() {
    let _lock = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    let guard = Nsguard::start(cluster, &["--mode=enforce"]).await;
    let group = "scaled.accuracy.nsguard.test";
    let operator = format!("scaled-operator-{}", random_suffix());
    let op_ns = run_operator(cluster, &client, &operator, group, "gadgets", 0).await;
    let (bare, guarded) = twins(&guard, group, "scaled").await;

    hangs(cluster, &client, &bare, &format!("{group}/cleanup")).await;
    let err = denied(cluster, &guarded, "finalizer-controller").await;
    assert!(
        err.contains(&format!("Deployment {operator} scaled to 0")),
        "{err}"
    );
    let remedy = format!("kubectl scale deployment {operator} -n {op_ns} --replicas=1");
    assert!(err.contains(&remedy), "{err}");

    // The remedy as printed; then the operator (played by the test) does its work.
    let args: Vec<&str> = remedy.split_whitespace().skip(1).collect();
    kubectl(cluster, &args, None).unwrap();
    wait_ready(cluster, &op_ns, &operator).await;
    let _operator = Operator::start(cluster, group, "gadgets");
    wait_gone(&client, &bare).await;
    allowed_and_gone(cluster, &client, &guarded).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_live_operator_elsewhere_handles_its_finalizers() {
    let _lock = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    let guard = Nsguard::start(cluster, &["--mode=enforce"]).await;
    let group = "live.accuracy.nsguard.test";
    let operator = format!("live-operator-{}", random_suffix());
    let op_ns = run_operator(cluster, &client, &operator, group, "gadgets", 1).await;
    wait_ready(cluster, &op_ns, &operator).await;
    install_crd(cluster, group, "gadgets", "Gadget").await;
    let ns = create_namespace_with(&client, "live", &guard.labels(), &[]).await;
    gadget(cluster, group, &ns, "g1");

    let out = nsguard_cli(cluster.kubeconfig(), &["check", &ns, "-o", "json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{doc}");
    assert_eq!(doc["verdict"], "clean", "{doc}");
    assert_eq!(
        doc["handled"][0]["controller"],
        format!("{op_ns}/{operator}"),
        "{doc}"
    );

    let _operator = Operator::start(cluster, group, "gadgets");
    allowed_and_gone(cluster, &client, &ns).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn finalizers_kubernetes_removes_itself_are_not_blockers() {
    let _lock = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    let guard = Nsguard::start(cluster, &["--mode=enforce"]).await;
    let ns = create_namespace_with(&client, "builtin", &guard.labels(), &[]).await;
    // A claim gets kubernetes.io/pvc-protection from the admission plugin; the garbage
    // collector removes orphan and foregroundDeletion.
    apply(
        cluster,
        &format!(
            r#"apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: data, namespace: {ns}}}
spec:
  accessModes: [ReadWriteOnce]
  resources: {{requests: {{storage: 1Gi}}}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: orphaning, namespace: {ns}, finalizers: [orphan]}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: foreground, namespace: {ns}, finalizers: [foregroundDeletion]}}
"#
        ),
    );
    let finalizers = kubectl(
        cluster,
        &[
            "get",
            "pvc",
            "data",
            "-n",
            &ns,
            "-o",
            "jsonpath={.metadata.finalizers}",
        ],
        None,
    )
    .unwrap();
    assert!(
        finalizers.contains("kubernetes.io/pvc-protection"),
        "{finalizers}"
    );

    let out = nsguard_cli(cluster.kubeconfig(), &["check", &ns, "-o", "json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["verdict"], "clean", "{doc}");

    let warnings = allowed_and_gone(cluster, &client, &ns).await;
    assert!(!warnings.contains("Warning"), "{warnings}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_apiservice_flapping_in_a_rollout_is_not_evidence() {
    // An unavailable APIService makes every namespace deletion wait: cluster-wide.
    let _lock = CLUSTER_WIDE.write().await;
    let (cluster, client) = cluster().await;
    // The default grace is 30 s; a generous one keeps a slow machine inside it.
    let guard = Nsguard::start(cluster, &["--mode=enforce", "--apiservice-grace=120s"]).await;
    let backend = localcluster::backend::Backend::start(cluster, &[]).await;
    let host = create_namespace(&client, "flap-host").await;
    let group = format!("{host}.nsguard.test");
    let name = backend.serve_api(cluster, &host, &group).unwrap();
    let wait = |condition: &str| {
        kubectl(
            cluster,
            &[
                "wait",
                &format!("--for=condition={condition}"),
                "--timeout=60s",
                &format!("apiservice/{name}"),
            ],
            None,
        )
        .unwrap();
    };
    let ns = create_namespace_with(&client, "flap", &guard.labels(), &[]).await;

    // A transition within seconds of creation reads as "never Available" (which blocks at
    // once): let it be Available for a while first, as a serving APIService is.
    let created = kubectl(
        cluster,
        &[
            "get",
            "apiservice",
            &name,
            "-o",
            "jsonpath={.metadata.creationTimestamp}",
        ],
        None,
    )
    .unwrap();
    let created: k8s_openapi::jiff::Timestamp = created.trim().parse().unwrap();
    eventually(
        "the APIService to be Available for 10 s",
        Duration::from_secs(30),
        || async {
            let age = k8s_openapi::jiff::Timestamp::now().as_second() - created.as_second();
            Ok((age >= 10).then_some(()))
        },
    )
    .await;

    // The rollout: the backend's Service goes for a moment; the APIService turns unavailable.
    kubectl(cluster, &["delete", "service", "api", "-n", &host], None).unwrap();
    wait("Available=False");
    let out = kubectl_output(cluster, &["delete", "namespace", &ns, "--wait=false"], None).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "a flapping APIService denied: {err}");
    assert!(err.contains("apiservice-unavailable"), "{err}");

    // ...and it comes back: the deletion completes.
    backend.service(cluster, &host, "api");
    wait("Available");
    wait_gone(&client, &ns).await;
    kubectl(cluster, &["delete", "apiservice", &name], None).unwrap();
    kubectl(
        cluster,
        &["delete", "namespace", &host, "--wait=false"],
        None,
    )
    .unwrap();
    wait_gone(&client, &host).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_condition_left_on_another_namespace_after_its_cause_is_fixed_is_not_evidence() {
    let _lock = CLUSTER_WIDE.write().await;
    let (cluster, client) = cluster().await;
    let guard = Nsguard::start(cluster, &["--mode=enforce"]).await;
    // A namespace stuck on discovery; its gadget keeps it Terminating after the fix.
    let group = "stale.accuracy.nsguard.test";
    install_crd(cluster, group, "gadgets", "Gadget").await;
    break_metrics_apiservice(cluster);
    let stuck = create_namespace(&client, "stale-stuck").await;
    gadget(cluster, group, &stuck, "g1");
    kubectl(
        cluster,
        &["delete", "namespace", &stuck, "--wait=false"],
        None,
    )
    .unwrap();
    wait_stuck(&client, &stuck, "NamespaceDeletionDiscoveryFailure").await;
    let guarded = create_namespace_with(&client, "stale", &guard.labels(), &[]).await;

    // The cause is fixed; the namespace controller has not made its next pass (it is frozen),
    // so the condition is still there.
    let paused = cluster.pause_controller_manager();
    kubectl(
        cluster,
        &["delete", "apiservice", "v1beta1.metrics.k8s.io"],
        None,
    )
    .unwrap();
    let out = eventually(
        "the deletion to be allowed once the APIService is gone",
        Duration::from_secs(30),
        || async {
            let out = kubectl_output(
                cluster,
                &["delete", "namespace", &guarded, "--dry-run=server"],
                None,
            )?;
            Ok(out.status.success().then_some(out))
        },
    )
    .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("cluster-already-stuck"), "{err}");
    let c = condition(&client, &stuck, "NamespaceDeletionDiscoveryFailure")
        .await
        .unwrap()
        .expect("the condition is still there");
    assert_eq!(c.status, "True", "the condition was still current: {c:?}");
    kubectl(
        cluster,
        &["delete", "namespace", &guarded, "--wait=false"],
        None,
    )
    .unwrap();

    drop(paused);
    wait_gone(&client, &guarded).await;
    clear_finalizers(cluster, &format!("gadgets.{group}"), "g1", &stuck);
    wait_gone(&client, &stuck).await;
}
