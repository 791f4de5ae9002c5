//! Every blocking check, on the real control plane, three ways:
//! 1. without nsguard (a namespace its webhook does not select), the namespace really stays
//!    `Terminating`, with the condition the namespace controller sets, until the cause is fixed;
//! 2. with nsguard in enforce mode, `kubectl delete namespace` is denied naming the cause;
//! 3. after the remedy nsguard named, the deletion is allowed and the namespace disappears.
//!
//! (apiservice-unavailable and finalizer-controller are in e2e_webhook.rs and e2e_accuracy.rs, with the seed
//! scenarios of e2e_controlplane.rs showing their hang.)

mod support;

use std::time::Duration;

use localcluster::backend::Backend;
use localcluster::{LocalCluster, random_suffix};
use support::nsguard::Nsguard;
use support::operator;
use support::*;

fn delete_now(cluster: &LocalCluster, ns: &str) {
    kubectl(cluster, &["delete", "namespace", ns, "--wait=false"], None).unwrap();
}

fn apply(cluster: &LocalCluster, yaml: &str) {
    kubectl(cluster, &["apply", "-f", "-"], Some(yaml)).unwrap();
}

/// Creates an object `kind` named `name` of the test CRD in `group`, with `finalizers`.
fn custom_object(cluster: &LocalCluster, group: &str, kind: &str, ns: &str, finalizers: &[&str]) {
    let f = finalizers
        .iter()
        .map(|f| format!("\"{f}\""))
        .collect::<Vec<_>>()
        .join(",");
    apply(
        cluster,
        &format!(
            "apiVersion: {group}/v1\nkind: {kind}\nmetadata:\n  name: o1\n  namespace: {ns}\n  finalizers: [{f}]\n"
        ),
    );
}

/// A workload that takes more than one pass of the namespace controller to finish, as pods
/// with a grace period do: a custom object whose finalizer "its operator" (the test) removes
/// once the deletion is under way. Without it the controller may finish in its first pass,
/// before the broken dependency is noticed.
const SLOW_GROUP: &str = "slow.nsguard.test";

async fn slow_workload(cluster: &LocalCluster, ns: &str) {
    install_crd(cluster, SLOW_GROUP, "workloads", "Workload").await;
    custom_object(
        cluster,
        SLOW_GROUP,
        "Workload",
        ns,
        &["slow.nsguard.test/drain"],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn webhook_backend_unavailable() {
    let _lock = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    let guard = Nsguard::start(cluster, &["--mode=enforce"]).await;
    let id = random_suffix();
    let hook = [("nsguard.io/e2e-hook", id.clone())];
    let bare = create_namespace_with(&client, "hookdown-bare", &hook, &[]).await;
    let mut labels = guard.labels();
    labels.extend(hook.iter().cloned());
    let guarded = create_namespace_with(&client, "hookdown", &labels, &[]).await;
    for ns in [&bare, &guarded] {
        apply(
            cluster,
            &format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: data\n  namespace: {ns}\n"
            ),
        );
    }
    // A policy webhook that must approve every ConfigMap deletion, its backend gone.
    let config = format!("down-{id}");
    apply(
        cluster,
        &format!(
            r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: {config}
webhooks:
- name: configmaps.down.nsguard.test
  admissionReviewVersions: ["v1"]
  sideEffects: None
  failurePolicy: Fail
  rules:
  - {{apiGroups: [""], apiVersions: ["v1"], operations: ["DELETE"], resources: ["configmaps"]}}
  namespaceSelector: {{matchLabels: {{"nsguard.io/e2e-hook": "{id}"}}}}
  clientConfig:
    service: {{namespace: default, name: missing-{id}}}
"#
        ),
    );

    delete_now(cluster, &bare);
    let c = wait_stuck(&client, &bare, "NamespaceDeletionContentFailure").await;
    assert!(
        c.message
            .as_deref()
            .unwrap_or_default()
            .contains("configmaps"),
        "{c:?}"
    );

    let err = denied(cluster, &guarded, "webhook-backend-unavailable").await;
    assert!(
        err.contains(&format!("Service default/missing-{id} does not exist")),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "kubectl delete validatingwebhookconfiguration {config}"
        )),
        "{err}"
    );

    kubectl(
        cluster,
        &["delete", "validatingwebhookconfiguration", &config],
        None,
    )
    .unwrap();
    wait_gone(&client, &bare).await;
    allowed_and_gone(cluster, &client, &guarded).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hosts_webhook_backend() {
    let _lock = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    let guard = Nsguard::start(cluster, &["--mode=enforce"]).await;
    let bare = create_namespace(&client, "hookhost-bare").await;
    let guarded = create_namespace_with(&client, "hookhost", &guard.labels(), &[]).await;
    let backend = Backend::start(cluster, &[(&bare, "hook"), (&guarded, "hook")]).await;
    // Each namespace serves a webhook that must approve its own finalization (as a policy
    // engine intercepting every UPDATE does).
    let config = |ns: &str| {
        format!(
            r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: finalize-{ns}
webhooks:
- name: finalize.hosted.nsguard.test
  admissionReviewVersions: ["v1"]
  sideEffects: None
  failurePolicy: Fail
  rules:
  - {{apiGroups: [""], apiVersions: ["v1"], operations: ["UPDATE"], resources: ["namespaces/finalize"]}}
  namespaceSelector: {{matchLabels: {{"kubernetes.io/metadata.name": "{ns}"}}}}
  clientConfig:
    caBundle: {ca}
    service: {{namespace: {ns}, name: hook, port: {port}, path: /validate}}
"#,
            ca = cluster.ca().ca_bundle(),
            port = backend.port,
        )
    };
    for ns in [&bare, &guarded] {
        backend.service(cluster, ns, "hook");
        apply(cluster, &config(ns));
    }
    slow_workload(cluster, &bare).await;

    delete_now(cluster, &bare);
    wait_stuck(&client, &bare, "NamespaceFinalizersRemaining").await;
    clear_finalizers(cluster, &format!("workloads.{SLOW_GROUP}"), "o1", &bare);
    // Everything inside is gone; the controller's finalize call now fails at the webhook,
    // whose Service went with the namespace. The API server counts each such rejection.
    let rejected = r#"name="finalize.hosted.nsguard.test""#;
    eventually(
        "the namespace controller's finalize call to be rejected",
        Duration::from_secs(60),
        || async {
            let metrics = kubectl(cluster, &["get", "--raw", "/metrics"], None)?;
            let hit = metrics.lines().any(|l| {
                l.starts_with("apiserver_admission_webhook_rejection_count")
                    && l.contains(rejected)
                    && l.contains("calling_webhook_error")
                    && l.contains("operation=\"UPDATE\"")
            });
            let content_gone = condition(&client, &bare, "NamespaceContentRemaining")
                .await?
                .is_some_and(|c| c.status == "False");
            Ok((hit && content_gone).then_some(()))
        },
    )
    .await;
    assert!(
        condition(&client, &bare, "NamespaceContentRemaining")
            .await
            .unwrap()
            .is_some(),
        "{bare} must still exist"
    );

    let err = denied(cluster, &guarded, "hosts-webhook-backend").await;
    assert!(err.contains("finalize"), "{err}");
    let fix = format!("kubectl delete validatingwebhookconfiguration finalize-{guarded}");
    assert!(err.contains(&fix), "{err}");

    for ns in [&bare, &guarded] {
        kubectl(
            cluster,
            &[
                "delete",
                "validatingwebhookconfiguration",
                &format!("finalize-{ns}"),
            ],
            None,
        )
        .unwrap();
    }
    wait_gone(&client, &bare).await;
    allowed_and_gone(cluster, &client, &guarded).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hosts_apiservice_backend() {
    // While the bare namespace hangs, every namespace deletion in the cluster hangs.
    let _lock = CLUSTER_WIDE.write().await;
    let (cluster, client) = cluster().await;
    let guard = Nsguard::start(cluster, &["--mode=enforce"]).await;
    let backend = Backend::start(cluster, &[]).await;
    let bare = create_namespace(&client, "apihost-bare").await;
    let bare_api = backend
        .serve_api(cluster, &bare, &format!("{bare}.nsguard.test"))
        .unwrap();
    slow_workload(cluster, &bare).await;
    delete_now(cluster, &bare);
    let c = wait_stuck(&client, &bare, "NamespaceDeletionDiscoveryFailure").await;
    assert!(
        c.message.as_deref().unwrap_or_default().contains(&bare),
        "{c:?}"
    );
    clear_finalizers(cluster, &format!("workloads.{SLOW_GROUP}"), "o1", &bare);
    kubectl(cluster, &["delete", "apiservice", &bare_api], None).unwrap();
    wait_gone(&client, &bare).await;

    let guarded = create_namespace_with(&client, "apihost", &guard.labels(), &[]).await;
    let api = backend
        .serve_api(cluster, &guarded, &format!("{guarded}.nsguard.test"))
        .unwrap();
    let err = denied(cluster, &guarded, "hosts-apiservice-backend").await;
    assert!(
        err.contains(&format!("kubectl delete apiservice {api}")),
        "{err}"
    );
    kubectl(cluster, &["delete", "apiservice", &api], None).unwrap();
    allowed_and_gone(cluster, &client, &guarded).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hosts_conversion_backend() {
    // A CRD whose conversion fails while any of its objects exist breaks listing that type in
    // every namespace: the API server's watch cache for the preferred version cannot
    // initialize. So while the bare namespace hangs, every namespace deletion hangs.
    let _lock = CLUSTER_WIDE.write().await;
    let (cluster, client) = cluster().await;
    let guard = Nsguard::start(cluster, &["--mode=enforce"]).await;
    let bare = create_namespace(&client, "convhost-bare").await;
    let guarded = create_namespace_with(&client, "convhost", &guard.labels(), &[]).await;
    // One backend per namespace: each stands for the webhook pods running there.
    let mut bare_backend = Some(Backend::start(cluster, &[(&bare, "conv")]).await);
    let backend = Backend::start(cluster, &[(&guarded, "conv")]).await;
    let (bare_group, group) = (
        format!("{bare}.nsguard.test"),
        format!("{guarded}.nsguard.test"),
    );
    for (ns, g, b) in [
        (&bare, &bare_group, bare_backend.as_ref().unwrap()),
        (&guarded, &group, &backend),
    ] {
        b.service(cluster, ns, "conv");
        converting_crd(cluster, g, (ns, "conv"), b.port);
    }
    // The operator that would remove this finalizer runs in the namespace too.
    custom_object(
        cluster,
        &bare_group,
        "Widget",
        &bare,
        &["convhost.nsguard.test/operator"],
    );
    custom_object(cluster, &group, "Widget", &guarded, &[]);

    delete_now(cluster, &bare);
    // The namespace controller deletes the Service and the webhook's pods; the API server's
    // cached webhook client would still reach this stand-in, so it stops with its Service.
    eventually(
        "the conversion Service to be deleted",
        Duration::from_secs(60),
        || async {
            let svc =
                kube::Api::<k8s_openapi::api::core::v1::Service>::namespaced(client.clone(), &bare);
            Ok(svc.get_opt("conv").await?.is_none().then_some(()))
        },
    )
    .await;
    bare_backend.take();
    let c = eventually(
        "listing the widgets to fail at the conversion webhook",
        Duration::from_secs(90),
        || async {
            Ok(condition(&client, &bare, "NamespaceDeletionContentFailure")
                .await?
                .filter(|c| {
                    c.status == "True"
                        && c.message
                            .as_deref()
                            .unwrap_or_default()
                            .contains("conversion webhook")
                }))
        },
    )
    .await;
    assert!(c.message.unwrap().contains(&bare_group));
    // Repair the only way left, at the stored version (no conversion): delete the object (the
    // controller may not have reached it before the Service went) and remove its finalizer.
    kubectl(
        cluster,
        &[
            "delete",
            &format!("widgets.v1.{bare_group}"),
            "o1",
            "-n",
            &bare,
            "--wait=false",
        ],
        None,
    )
    .unwrap();
    clear_finalizers(cluster, &format!("widgets.v1.{bare_group}"), "o1", &bare);
    wait_gone(&client, &bare).await;

    let err = denied(cluster, &guarded, "hosts-conversion-backend").await;
    let fix = format!("kubectl delete widgets.{group} --all -n {guarded}");
    assert!(err.contains(&fix), "{err}");
    kubectl(
        cluster,
        &[
            "delete",
            &format!("widgets.{group}"),
            "--all",
            "-n",
            &guarded,
        ],
        None,
    )
    .unwrap();
    allowed_and_gone(cluster, &client, &guarded).await;
    for g in [&bare_group, &group] {
        kubectl(cluster, &["delete", "crd", &format!("widgets.{g}")], None).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn list_failure() {
    // Cluster-wide, as for hosts_conversion_backend: the type cannot be listed anywhere.
    let _lock = CLUSTER_WIDE.write().await;
    let (cluster, client) = cluster().await;
    let guard = Nsguard::start(cluster, &["--mode=enforce"]).await;
    let id = random_suffix();
    let group = format!("broken{id}.nsguard.test");
    // Conversion through a Service that does not exist: widgets cannot be listed at v2.
    converting_crd(cluster, &group, ("default", &format!("missing-{id}")), 443);
    let bare = create_namespace(&client, "listfail-bare").await;
    let guarded = create_namespace_with(&client, "listfail", &guard.labels(), &[]).await;
    for ns in [&bare, &guarded] {
        custom_object(cluster, &group, "Widget", ns, &[]);
    }

    delete_now(cluster, &bare);
    let c = wait_stuck(&client, &bare, "NamespaceDeletionContentFailure").await;
    assert!(
        c.message.as_deref().unwrap_or_default().contains(&group),
        "{c:?}"
    );

    let err = denied(cluster, &guarded, "list-failure").await;
    assert!(err.contains(&format!("widgets.{group}")), "{err}");

    kubectl(
        cluster,
        &[
            "patch",
            "crd",
            &format!("widgets.{group}"),
            "--type=merge",
            "-p",
            r#"{"spec":{"conversion":{"strategy":"None","webhook":null}}}"#,
        ],
        None,
    )
    .unwrap();
    wait_gone(&client, &bare).await;
    allowed_and_gone(cluster, &client, &guarded).await;
    kubectl(
        cluster,
        &["delete", "crd", &format!("widgets.{group}")],
        None,
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn finalizer_stuck() {
    let _lock = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    let guard = Nsguard::start(cluster, &["--mode=enforce", "--finalizer-stuck-after=2s"]).await;
    let group = "stuck.nsguard.test";
    install_crd(cluster, group, "sprockets", "Sprocket").await;
    // A live controller may remove the finalizer; it just is not doing it.
    let operator = format!("sprocket-operator-{}", random_suffix());
    let op_ns = operator::run_operator(cluster, &client, &operator, group, "sprockets", 1).await;
    operator::wait_ready(cluster, &op_ns, &operator).await;
    let bare = create_namespace(&client, "stuck-bare").await;
    let guarded = create_namespace_with(&client, "stuck", &guard.labels(), &[]).await;
    for ns in [&bare, &guarded] {
        custom_object(
            cluster,
            group,
            "Sprocket",
            ns,
            &["stuck.nsguard.test/cleanup"],
        );
        kubectl(
            cluster,
            &[
                "delete",
                "sprockets.stuck.nsguard.test",
                "o1",
                "-n",
                ns,
                "--wait=false",
            ],
            None,
        )
        .unwrap();
    }

    delete_now(cluster, &bare);
    let c = wait_stuck(&client, &bare, "NamespaceFinalizersRemaining").await;
    assert!(
        c.message
            .as_deref()
            .unwrap_or_default()
            .contains("stuck.nsguard.test/cleanup"),
        "{c:?}"
    );

    // Stuck means deleting for longer than the threshold: poll until it is.
    let err = denied(cluster, &guarded, "finalizer-stuck").await;
    assert!(
        err.contains("sprockets.stuck.nsguard.test o1 has been deleting for"),
        "{err}"
    );
    assert!(
        !err.contains("finalizer-controller"),
        "the controller is live: {err}"
    );

    for ns in [&bare, &guarded] {
        clear_finalizers(cluster, "sprockets.stuck.nsguard.test", "o1", ns);
    }
    wait_gone(&client, &bare).await;
    allowed_and_gone(cluster, &client, &guarded).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn finalizer_owner_in_namespace() {
    let _lock = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    let guard = Nsguard::start(cluster, &["--mode=enforce"]).await;
    let group = "inside.nsguard.test";
    install_crd(cluster, group, "things", "Thing").await;
    let bare = create_namespace(&client, "owner-bare").await;
    let guarded = create_namespace_with(&client, "owner", &guard.labels(), &[]).await;
    for ns in [&bare, &guarded] {
        // The operator that owns the finalizer runs in the namespace, with a Role there.
        apply(
            cluster,
            &format!(
                "apiVersion: v1
kind: ServiceAccount
metadata: {{name: thing-operator, namespace: {ns}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: thing-operator, namespace: {ns}}}
rules:
- {{apiGroups: [inside.nsguard.test], resources: [things], verbs: [get, list, watch, update, patch]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: thing-operator, namespace: {ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: thing-operator}}
subjects:
- {{kind: ServiceAccount, name: thing-operator, namespace: {ns}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: thing-operator, namespace: {ns}}}
spec:
  selector: {{matchLabels: {{app: thing-operator}}}}
  template:
    metadata: {{labels: {{app: thing-operator}}}}
    spec:
      serviceAccountName: thing-operator
      containers:
      - {{name: operator, image: registry.invalid/thing-operator:1}}
"
            ),
        );
        operator::wait_ready(cluster, ns, "thing-operator").await;
        custom_object(
            cluster,
            group,
            "Thing",
            ns,
            &["inside.nsguard.test/cleanup"],
        );
    }

    // The operator is deleted with everything else; nobody processes the finalizer.
    delete_now(cluster, &bare);
    wait_stuck(&client, &bare, "NamespaceFinalizersRemaining").await;

    let err = denied(cluster, &guarded, "finalizer-controller").await;
    assert!(err.contains("thing-operator"), "{err}");
    assert!(err.contains("runs only in this namespace"), "{err}");

    // The remedy: delete the objects first, while the operator still runs (the test plays
    // the operator removing its finalizer); then the namespace.
    kubectl(
        cluster,
        &[
            "delete",
            "things.inside.nsguard.test",
            "--all",
            "-n",
            &guarded,
            "--wait=false",
        ],
        None,
    )
    .unwrap();
    for ns in [&bare, &guarded] {
        clear_finalizers(cluster, "things.inside.nsguard.test", "o1", ns);
    }
    wait_gone(&client, &bare).await;
    allowed_and_gone(cluster, &client, &guarded).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_already_stuck() {
    let _lock = CLUSTER_WIDE.write().await;
    let (cluster, client) = cluster().await;
    let guard = Nsguard::start(cluster, &["--mode=enforce"]).await;
    break_metrics_apiservice(cluster);
    let bare = create_namespace(&client, "already-bare").await;
    let guarded = create_namespace_with(&client, "already", &guard.labels(), &[]).await;
    delete_now(cluster, &bare);
    wait_stuck(&client, &bare, "NamespaceDeletionDiscoveryFailure").await;

    let err = denied(cluster, &guarded, "cluster-already-stuck").await;
    assert!(err.contains(&bare), "{err}");
    assert!(err.contains("apiservice-unavailable"), "{err}");

    kubectl(
        cluster,
        &["delete", "apiservice", "v1beta1.metrics.k8s.io"],
        None,
    )
    .unwrap();
    wait_gone(&client, &bare).await;
    allowed_and_gone(cluster, &client, &guarded).await;
}

/// Starts nsguard with `args`, deletes a namespace that would hang, and expects it allowed
/// with a warning containing `warning`, counted as `decision`.
async fn allowed_with_a_warning(args: &[&str], warning: &str, decision: &str) {
    let (cluster, client) = cluster().await;
    let guard = Nsguard::start(cluster, args).await;
    let ns = create_namespace_with(&client, "allowed", &guard.labels(), &[]).await;
    install_crd(cluster, "hooks.nsguard.test", "gadgets", "Gadget").await;
    custom_object(
        cluster,
        "hooks.nsguard.test",
        "Gadget",
        &ns,
        &["hooks.nsguard.test/cleanup"],
    );
    let out = kubectl_output(cluster, &["delete", "namespace", &ns, "--wait=false"], None).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains(warning), "{err}");
    assert!(
        guard
            .metrics()
            .contains(&format!("decision=\"{decision}\"")),
        "{}",
        guard.metrics()
    );
    clear_finalizers(cluster, "gadgets.hooks.nsguard.test", "o1", &ns);
    wait_gone(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bypass_group_allows_with_a_warning() {
    let _lock = CLUSTER_WIDE.read().await;
    // The tests' kubectl is an administrator in system:masters.
    allowed_with_a_warning(
        &["--mode=enforce", "--bypass-group=system:masters"],
        "bypass group system:masters",
        "overridden",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_preflight_that_cannot_finish_in_time_allows_with_a_warning() {
    // Cluster-wide: while the aggregated API below is registered, every namespace deletion
    // lists it.
    let _lock = CLUSTER_WIDE.write().await;
    let (cluster, client) = cluster().await;
    // An aggregated API whose lists can take longer than nsguard's budget for a preflight, as
    // an overloaded metrics-server's do. nsguard lists such types at every review (the index
    // cannot vouch for them), so no preflight can finish while its lists are slow: no timing
    // of this machine's makes it finish in time. Its backend runs in a namespace of its own.
    let home = create_namespace(&client, "slowapi").await;
    let backend = Backend::start(cluster, &[]).await;
    let group = format!("{home}.nsguard.test");
    backend.serve_resource(&group, "samples");
    let api = backend.serve_api(cluster, &home, &group).unwrap();
    let guard = Nsguard::start(cluster, &["--mode=enforce", "--check-timeout=2s"]).await;
    let ns = create_namespace_with(&client, "allowed", &guard.labels(), &[]).await;

    // Lists that answer after the API server's own timeout for nsguard's webhook (10 s), so
    // nothing but nsguard's deadline can end its wait.
    backend.slow_lists(Duration::from_secs(12));
    let out = kubectl_output(cluster, &["delete", "namespace", &ns, "--wait=false"], None).unwrap();
    backend.slow_lists(Duration::ZERO);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("nsguard could not check everything"), "{err}");
    assert!(
        err.contains(&format!("list samples.{group} in {ns}")),
        "{err}"
    );
    assert!(
        guard.metrics().contains("decision=\"fail_open\""),
        "{}",
        guard.metrics()
    );
    wait_gone(&client, &ns).await;
    kubectl(cluster, &["delete", "apiservice", &api], None).unwrap();
    delete_now(cluster, &home);
    wait_gone(&client, &home).await;
}
