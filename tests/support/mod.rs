//! Helpers shared by the end-to-end tests: the shared local control plane, random labelled
//! namespaces, and polling with a deadline (never fixed sleeps).
#![allow(dead_code)]

pub mod nsguard;
pub mod operator;

use std::future::Future;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition};
use kube::api::PostParams;
use kube::{Api, Client};
use localcluster::LocalCluster;

/// The label every test namespace carries, for cleanup by selector.
pub const TEST_LABEL: &str = "nsguard.io/e2e";

/// Cluster-wide scenarios (a broken APIService blocks every namespace deletion) take this lock
/// for writing; every other scenario takes it for reading, so they never see each other.
pub static CLUSTER_WIDE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// The shared control plane and a client for this test's runtime.
pub async fn cluster() -> (&'static LocalCluster, Client) {
    let cluster = localcluster::shared()
        .await
        .expect("starting the local control plane");
    let client = cluster
        .client()
        .await
        .expect("client for the local control plane");
    (cluster, client)
}

/// Creates a namespace `<prefix>-<random>` with the test label and returns its name.
pub async fn create_namespace(client: &Client, prefix: &str) -> String {
    create_namespace_with(client, prefix, &[], &[]).await
}

/// Creates a namespace with extra labels and annotations.
pub async fn create_namespace_with(
    client: &Client,
    prefix: &str,
    labels: &[(&str, String)],
    annotations: &[(&str, &str)],
) -> String {
    let name = format!("{prefix}-{}", localcluster::random_suffix());
    let mut ns = Namespace::default();
    ns.metadata.name = Some(name.clone());
    let mut l: std::collections::BTreeMap<String, String> =
        [(TEST_LABEL.to_string(), "true".to_string())].into();
    l.extend(labels.iter().map(|(k, v)| (k.to_string(), v.clone())));
    ns.metadata.labels = Some(l);
    if !annotations.is_empty() {
        ns.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
    }
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
    name
}

/// Waits until the namespace's `default` ServiceAccount exists: the controller-manager's
/// serviceaccount controller creates it moments after the namespace, and the ServiceAccount
/// admission plugin refuses pods until then, as in any cluster.
pub async fn wait_default_service_account(client: &Client, ns: &str) {
    let api: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(client.clone(), ns);
    eventually(
        &format!("the default ServiceAccount of {ns}"),
        Duration::from_secs(60),
        || async { Ok(api.get_opt("default").await?.map(|_| ())) },
    )
    .await
}

/// Polls `check` every 250 ms until it returns `Some`, or fails after `deadline`.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let until = Instant::now() + deadline;
    let mut last_err = String::new();
    loop {
        match check().await {
            Ok(Some(v)) => return v,
            Ok(None) => {}
            Err(e) => last_err = format!("{e:#}"),
        }
        if Instant::now() > until {
            panic!("timed out after {deadline:?} waiting for {what} (last error: {last_err:?})");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The namespace's condition of type `kind`, if it has one.
pub async fn condition(
    client: &Client,
    ns: &str,
    kind: &str,
) -> Result<Option<NamespaceCondition>> {
    let ns = Api::<Namespace>::all(client.clone())
        .get_opt(ns)
        .await?
        .context("namespace is gone")?;
    Ok(ns
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == kind))
}

/// Waits until the namespace shows condition `kind` with status True while Terminating,
/// which is the namespace controller saying it tried and could not finish.
pub async fn wait_stuck(client: &Client, ns: &str, kind: &str) -> NamespaceCondition {
    let c = eventually(
        &format!("{ns} to show {kind}=True"),
        Duration::from_secs(90),
        || async {
            Ok(condition(client, ns, kind)
                .await?
                .filter(|c| c.status == "True"))
        },
    )
    .await;
    let phase = Api::<Namespace>::all(client.clone())
        .get(ns)
        .await
        .unwrap()
        .status
        .and_then(|s| s.phase);
    assert_eq!(phase.as_deref(), Some("Terminating"), "{ns} phase");
    c
}

/// Waits until the namespace no longer exists.
pub async fn wait_gone(client: &Client, ns: &str) {
    let api = Api::<Namespace>::all(client.clone());
    eventually(
        &format!("namespace {ns} to disappear"),
        Duration::from_secs(120),
        || async { Ok(api.get_opt(ns).await?.is_none().then_some(())) },
    )
    .await
}

/// Runs kubectl with `args`, feeding `stdin`, and returns stdout; fails with stderr.
///
/// An `apply` that loses a create race to another test applying the same object at once
/// (kubectl's GET found nothing, its POST met AlreadyExists) is run once more: the second
/// apply finds the object and updates it.
pub fn kubectl(cluster: &LocalCluster, args: &[&str], stdin: Option<&str>) -> Result<String> {
    let mut out = kubectl_output(cluster, args, stdin)?;
    if !out.status.success()
        && args.first() == Some(&"apply")
        && String::from_utf8_lossy(&out.stderr).contains("AlreadyExists")
    {
        out = kubectl_output(cluster, args, stdin)?;
    }
    if !out.status.success() {
        bail!(
            "kubectl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs kubectl and returns its whole output, whatever the exit status.
pub fn kubectl_output(
    cluster: &LocalCluster,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<std::process::Output> {
    let mut cmd: Command = cluster.kubectl();
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes())?;
    }
    drop(child.stdin.take());
    Ok(child.wait_with_output()?)
}

/// A namespaced CRD `<plural>.<group>` (kind `kind`, version v1) with no controller at all.
pub fn crd_yaml(group: &str, plural: &str, kind: &str) -> String {
    format!(
        r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: {plural}.{group}
spec:
  group: {group}
  scope: Namespaced
  names: {{plural: {plural}, singular: {singular}, kind: {kind}, listKind: {kind}List}}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"#,
        singular = kind.to_lowercase()
    )
}

/// Applies a CRD and waits until it is Established. Tests of one binary installing the same
/// CRD at once would race (`kubectl apply` reads, then creates): they take turns.
pub async fn install_crd(cluster: &LocalCluster, group: &str, plural: &str, kind: &str) {
    static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _turn = TURN.lock().await;
    kubectl(
        cluster,
        &["apply", "-f", "-"],
        Some(&crd_yaml(group, plural, kind)),
    )
    .unwrap();
    let name = format!("crd/{plural}.{group}");
    kubectl(
        cluster,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            &name,
        ],
        None,
    )
    .unwrap();
}

/// A stale aggregated API: metrics.k8s.io served by a Service that does not exist (ServiceNotFound).
pub const METRICS_APISERVICE_WITHOUT_BACKEND: &str = r#"
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata:
  name: v1beta1.metrics.k8s.io
spec:
  group: metrics.k8s.io
  version: v1beta1
  groupPriorityMinimum: 100
  versionPriority: 100
  insecureSkipTLSVerify: true
  service: {namespace: kube-system, name: metrics-server, port: 443}
"#;

/// Applies [`METRICS_APISERVICE_WITHOUT_BACKEND`] and waits until it is `Available=False`.
pub fn break_metrics_apiservice(cluster: &LocalCluster) {
    kubectl(
        cluster,
        &["apply", "-f", "-"],
        Some(METRICS_APISERVICE_WITHOUT_BACKEND),
    )
    .unwrap();
    kubectl(
        cluster,
        &[
            "wait",
            "--for=condition=Available=False",
            "--timeout=60s",
            "apiservice/v1beta1.metrics.k8s.io",
        ],
        None,
    )
    .unwrap();
}

/// A custom object `name` of `gadgets.<group>` in `ns` holding the finalizer
/// `<group>/cleanup`, which no controller removes: deleting `ns` hangs on it.
pub fn gadget(cluster: &LocalCluster, group: &str, ns: &str, name: &str) {
    kubectl(
        cluster,
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: {group}/v1\nkind: Gadget\nmetadata:\n  name: {name}\n  namespace: {ns}\n  finalizers: [{group}/cleanup]\n"
        )),
    )
    .unwrap();
}

/// Removes every finalizer of `resource`/`name` in `ns` (as its controller would, or an
/// operator by hand).
pub fn clear_finalizers(cluster: &LocalCluster, resource: &str, name: &str, ns: &str) {
    kubectl(
        cluster,
        &[
            "patch",
            resource,
            name,
            "-n",
            ns,
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ],
        None,
    )
    .unwrap();
}

/// Runs the nsguard binary with `args` against the cluster of `kubeconfig`.
pub fn nsguard_cli(kubeconfig: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_nsguard"))
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("NSGUARD_LOG", "warn")
        .output()
        .expect("running nsguard")
}

/// A controller elsewhere that RBAC lets update `resource` of `group`: a ClusterRole and its
/// binding to ServiceAccount `<name>` in namespace `<name>-system`.
pub fn grant_update(cluster: &LocalCluster, name: &str, group: &str, resource: &str) {
    let yaml = format!(
        "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: {name}}}
rules:
- {{apiGroups: [{group}], resources: [{resource}], verbs: [get, list, watch, update, patch]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: {name}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {name}}}
subjects:
- {{kind: ServiceAccount, name: {name}, namespace: {name}-system}}
"
    );
    kubectl(cluster, &["apply", "-f", "-"], Some(&yaml)).unwrap();
}

/// Polls a server dry run until nsguard denies with `check` (its watches may lag the setup by
/// a moment, and a real deletion let through would start the namespace terminating), then
/// deletes for real and returns the denial kubectl printed.
pub async fn denied(cluster: &LocalCluster, ns: &str, check: &str) -> String {
    let dry = ["delete", "namespace", ns, "--dry-run=server"];
    eventually(
        &format!("a server dry run of deleting {ns} to be denied by {check}"),
        Duration::from_secs(30),
        || async {
            let out = kubectl_output(cluster, &dry, None)?;
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            if !out.status.success() && err.contains(check) {
                return Ok(Some(()));
            }
            // The last answer is what a timeout reports.
            bail!("not (yet) denied by {check}: {err}")
        },
    )
    .await;
    let out = kubectl_output(cluster, &["delete", "namespace", ns, "--wait=false"], None).unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "deletion of {ns} was not denied");
    assert!(err.contains("Error from server (Forbidden)"), "{err}");
    assert!(err.contains(check), "{err}");
    err
}

/// Deletes `ns` once nsguard allows it (its view may lag the fix), waits until it is gone,
/// and returns what kubectl printed (warnings).
pub async fn allowed_and_gone(cluster: &LocalCluster, client: &kube::Client, ns: &str) -> String {
    let out = eventually(
        &format!("the deletion of {ns} to be allowed"),
        Duration::from_secs(60),
        || async {
            let out = kubectl_output(cluster, &["delete", "namespace", ns, "--wait=false"], None)?;
            Ok(out.status.success().then_some(out))
        },
    )
    .await;
    wait_gone(client, ns).await;
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The user nsguard's ServiceAccount authenticates as.
pub const NSGUARD_USER: &str = "system:serviceaccount:nsguard-system:nsguard";

/// The audit log's events for nsguard's ServiceAccount.
pub fn nsguard_audit(cluster: &LocalCluster) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(cluster.audit_log()).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["user"]["username"] == NSGUARD_USER)
        .collect()
}

/// Makes the API server send nsguard a review of deleting `ns` (a server dry run, repeated
/// until nsguard has counted one more review).
pub async fn reviewed(cluster: &'static LocalCluster, guard: &nsguard::Nsguard, ns: &str) {
    let before = guard.reviews();
    eventually(
        "nsguard to review the deletion",
        Duration::from_secs(30),
        || async {
            let _ = kubectl(
                cluster,
                &["delete", "namespace", ns, "--dry-run=server"],
                None,
            );
            Ok((guard.reviews() > before).then_some(()))
        },
    )
    .await;
}

/// A CRD with versions v1 (stored) and v2 (preferred, so listing needs conversion) whose
/// conversion webhook is Service `svc_ns/svc` on `port`.
pub fn converting_crd(cluster: &LocalCluster, group: &str, svc: (&str, &str), port: u16) {
    let (svc_ns, svc_name) = svc;
    let version = |name: &str, storage: bool| {
        format!(
            "  - name: {name}\n    served: true\n    storage: {storage}\n    schema:\n      openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}\n"
        )
    };
    cluster
        .apply(&format!(
            "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.{group}
spec:
  group: {group}
  scope: Namespaced
  names: {{plural: widgets, singular: widget, kind: Widget, listKind: WidgetList}}
  versions:
{v1}{v2}  conversion:
    strategy: Webhook
    webhook:
      conversionReviewVersions: [v1]
      clientConfig:
        caBundle: {ca}
        service: {{namespace: {svc_ns}, name: {svc_name}, port: {port}, path: /convert}}
",
            v1 = version("v1", true),
            v2 = version("v2", false),
            ca = cluster.ca().ca_bundle(),
        ))
        .unwrap();
    kubectl(
        cluster,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            &format!("crd/widgets.{group}"),
        ],
        None,
    )
    .unwrap();
}
