//! `nsguard delete NS` on the real control plane. A namespace holds an operator
//! with its finalized custom resources, a hosted admission webhook (`Fail`, on DELETE of a
//! custom type there) and a hosted conversion backend (objects stored at v1, listed at v2):
//! - plain `kubectl delete namespace` is denied by nsguard's webhook, naming `nsguard delete`;
//! - `nsguard delete --dry-run` prints the plan and changes nothing (resourceVersions);
//! - `nsguard delete`, interrupted in its first wave and run again, completes: the namespace
//!   is gone, every custom resource was finalized by its own operator, and nothing stripped a
//!   finalizer.
//!
//! The operator's work is played by a thread that removes its finalizer from a deleting object
//! only while the operator's pod exists and is Ready, and records each object it finalized: a
//! namespace deleted all at once would strand them (e2e_checks.rs shows that hang).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use localcluster::LocalCluster;
use localcluster::backend::Backend;
use serde_json::Value;
use support::nsguard::Nsguard;
use support::*;

fn apply(cluster: &LocalCluster, yaml: &str) {
    kubectl(cluster, &["apply", "-f", "-"], Some(yaml)).unwrap();
}

fn get_json(cluster: &LocalCluster, args: &[&str]) -> anyhow::Result<Value> {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    Ok(serde_json::from_str(&kubectl(cluster, &all, None)?)?)
}

/// The operator's work: while its pod in `ns` exists and is Ready, removes `finalizer` from
/// every `things` object being deleted there and records the object's name.
struct ThingOperator {
    stop: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
    finalized: Arc<Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn operator_ready(cluster: &LocalCluster, ns: &str) -> bool {
    let Ok(pods) = get_json(cluster, &["pods", "-n", ns, "-l", "app=thing-operator"]) else {
        return false;
    };
    pods["items"].as_array().into_iter().flatten().any(|p| {
        p["metadata"]["deletionTimestamp"].is_null()
            && p["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

impl ThingOperator {
    fn start(cluster: &'static LocalCluster, ns: &str, gr: &str, finalizer: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let paused = Arc::new(AtomicBool::new(false));
        let finalized = Arc::new(Mutex::new(Vec::new()));
        let (ns, gr, finalizer) = (ns.to_string(), gr.to_string(), finalizer.to_string());
        let thread = {
            let (stop, paused, finalized) = (stop.clone(), paused.clone(), finalized.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if !paused.load(Ordering::Relaxed) && operator_ready(cluster, &ns) {
                        let things = get_json(cluster, &[&gr, "-n", &ns]).unwrap_or_default();
                        for o in things["items"].as_array().into_iter().flatten() {
                            let m = &o["metadata"];
                            let fs: Vec<&str> = m["finalizers"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .filter_map(Value::as_str)
                                .collect();
                            if m["deletionTimestamp"].is_null() || !fs.contains(&finalizer.as_str())
                            {
                                continue;
                            }
                            let keep: Vec<&str> =
                                fs.into_iter().filter(|f| *f != finalizer).collect();
                            // The resourceVersion makes it a compare-and-swap, as a
                            // controller's update is.
                            let patch = serde_json::json!({"metadata": {
                                "finalizers": keep,
                                "resourceVersion": m["resourceVersion"],
                            }});
                            let name = m["name"].as_str().unwrap_or_default().to_string();
                            let patched = kubectl(
                                cluster,
                                &[
                                    "patch",
                                    &gr,
                                    &name,
                                    "-n",
                                    &ns,
                                    "--type=merge",
                                    "-p",
                                    &patch.to_string(),
                                ],
                                None,
                            );
                            if patched.is_ok() {
                                finalized.lock().unwrap().push(name);
                            }
                        }
                    }
                    // The operator's own resync period.
                    std::thread::sleep(Duration::from_millis(300));
                }
            })
        };
        Self {
            stop,
            paused,
            finalized,
            thread: Some(thread),
        }
    }

    fn finalized(&self) -> Vec<String> {
        self.finalized.lock().unwrap().clone()
    }
}

impl Drop for ThingOperator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Every object's resourceVersion among `types` in `ns`, and the namespace's own.
fn resource_versions(cluster: &LocalCluster, ns: &str, types: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let doc = get_json(cluster, &[types, "-n", ns]).unwrap();
    for o in doc["items"].as_array().into_iter().flatten() {
        out.insert(
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap_or_default(),
                o["metadata"]["name"].as_str().unwrap_or_default()
            ),
            o["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    let n = get_json(cluster, &["namespace", ns]).unwrap();
    out.insert(
        format!("Namespace/{ns}"),
        n["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    );
    out
}

fn nsguard(cluster: &LocalCluster) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nsguard"));
    cmd.env("KUBECONFIG", cluster.kubeconfig())
        .env("NSGUARD_LOG", "warn")
        // The CLI on a busy 2-core machine: give the preflight room.
        .env("NSGUARD_CHECK_TIMEOUT", "30s");
    cmd
}

#[tokio::test(flavor = "multi_thread")]
async fn nsguard_delete_tears_down_in_order_and_resumes() {
    // Conversion is cluster-wide: while a conversion webhook fails, listing its type fails in
    // every namespace.
    let _lock = CLUSTER_WIDE.write().await;
    let (cluster, client) = cluster().await;
    let guard = Nsguard::start(cluster, &["--mode=enforce"]).await;
    let ns = create_namespace_with(&client, "teardown", &guard.labels(), &[]).await;
    wait_default_service_account(&client, &ns).await;
    let op = format!("{ns}.op.nsguard.test");
    let hooked = format!("{ns}.hook.nsguard.test");
    let conv = format!("{ns}.conv.nsguard.test");
    let finalizer = format!("{op}/cleanup");
    install_crd(cluster, &op, "things", "Thing").await;
    install_crd(cluster, &hooked, "gadgets", "Gadget").await;
    // The stand-in for the webhook and conversion pods hosted in the namespace.
    let backend = Backend::start(cluster, &[(&ns, "hook"), (&ns, "conv")]).await;
    backend.service(cluster, &ns, "hook");
    backend.service(cluster, &ns, "conv");
    converting_crd(cluster, &conv, (&ns, "conv"), backend.port);
    let hook_config = format!("gadgets-{ns}");
    apply(
        cluster,
        &format!(
            r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: {hook_config}
webhooks:
- name: gadgets.hosted.nsguard.test
  admissionReviewVersions: ["v1"]
  sideEffects: None
  failurePolicy: Fail
  rules:
  - {{apiGroups: ["{hooked}"], apiVersions: ["v1"], operations: ["DELETE"], resources: ["gadgets"]}}
  namespaceSelector: {{matchLabels: {{"kubernetes.io/metadata.name": "{ns}"}}}}
  clientConfig:
    caBundle: {ca}
    service: {{namespace: {ns}, name: hook, port: {port}, path: /validate}}
"#,
            ca = cluster.ca().ca_bundle(),
            port = backend.port,
        ),
    );
    // The operator that owns the things' finalizer runs in the namespace, with a Role there.
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
- {{apiGroups: [{op}], resources: [things], verbs: [get, list, watch, update, patch]}}
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
    support::operator::wait_ready(cluster, &ns, "thing-operator").await;
    let things: BTreeSet<String> = (1..=4).map(|i| format!("t{i}")).collect();
    let mut objects = String::new();
    for t in &things {
        objects.push_str(&format!(
            "apiVersion: {op}/v1\nkind: Thing\nmetadata: {{name: {t}, namespace: {ns}, finalizers: [\"{finalizer}\"]}}\n---\n"
        ));
    }
    for i in 1..=2 {
        objects.push_str(&format!(
            "apiVersion: {hooked}/v1\nkind: Gadget\nmetadata: {{name: g{i}, namespace: {ns}}}\n---\napiVersion: {conv}/v1\nkind: Widget\nmetadata: {{name: w{i}, namespace: {ns}}}\n---\n"
        ));
    }
    apply(cluster, &objects);
    let thing_gr = format!("things.{op}");
    let operator = ThingOperator::start(cluster, &ns, &thing_gr, &finalizer);

    // 1. A plain delete is denied, naming every hosted dependency and the command.
    let started = Instant::now();
    let dry = ["delete", "namespace", ns.as_str(), "--dry-run=server"];
    let remedy = format!("nsguard delete {ns}");
    eventually(
        "a server dry run of the deletion to be denied for all three reasons",
        Duration::from_secs(60),
        || async {
            let out = kubectl_output(cluster, &dry, None)?;
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            Ok((!out.status.success()
                && [
                    "finalizer-controller",
                    "hosts-webhook-backend",
                    "hosts-conversion-backend",
                ]
                .iter()
                .all(|c| err.contains(c))
                && err.contains(&remedy))
            .then_some(()))
        },
    )
    .await;
    let out = kubectl_output(cluster, &["delete", "namespace", &ns, "--wait=false"], None).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "plain delete of {ns} was not denied");
    assert!(err.contains("Error from server (Forbidden)"), "{err}");
    assert!(err.contains("runs only in this namespace"), "{err}");
    eprintln!("denied: {:.1}s", started.elapsed().as_secs_f64());

    // 2. --dry-run: the plan, and nothing changes.
    let types = format!(
        "{thing_gr},gadgets.{hooked},widgets.{conv},services,deployments,serviceaccounts,roles,rolebindings"
    );
    let before = resource_versions(cluster, &ns, &types);
    assert_eq!(
        before.len(),
        4 + 2 + 2 + 2 + 1 + 2 + 1 + 1 + 1,
        "{before:?}"
    );
    let started = Instant::now();
    let out = nsguard(cluster)
        .args(["delete", &ns, "--dry-run", "-o", "json"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["outcome"], "planned", "{doc}");
    let waves = doc["plan"]["waves"].as_array().unwrap();
    assert_eq!(waves.len(), 2, "{doc}");
    assert_eq!(waves[0]["kind"], "controllers-here", "{doc}");
    assert_eq!(waves[0]["resources"][0]["resource"], thing_gr.as_str());
    assert_eq!(
        waves[0]["resources"][0]["objects"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    assert_eq!(waves[1]["kind"], "served-here", "{doc}");
    let second: BTreeSet<&str> = waves[1]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["resource"].as_str())
        .collect();
    let want_second = format!("gadgets.{hooked}");
    let want_third = format!("widgets.{conv}");
    assert_eq!(
        second,
        BTreeSet::from([want_second.as_str(), want_third.as_str()])
    );
    assert!(doc["plan"]["stop"].as_array().unwrap().is_empty(), "{doc}");
    eprintln!("dry run: {:.1}s", started.elapsed().as_secs_f64());
    // The operator's Deployment status may move on its own: compare the rest, and the
    // Deployment's spec generation.
    let after = resource_versions(cluster, &ns, &types);
    let steady = |m: &BTreeMap<String, String>| -> BTreeMap<String, String> {
        m.iter()
            .filter(|(k, _)| !k.starts_with("Deployment/"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    assert_eq!(
        steady(&before),
        steady(&after),
        "--dry-run changed something"
    );
    assert!(operator.finalized().is_empty());

    // 3. Interrupted: the first wave's deletions are issued while the operator is held back,
    // then the process is killed.
    operator.paused.store(true, Ordering::Relaxed);
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = nsguard(cluster)
        .args(["delete", &ns, "--yes"])
        .stdout(Stdio::from(log.reopen().unwrap()))
        .stderr(Stdio::from(log.reopen().unwrap()))
        .spawn()
        .unwrap();
    let started = Instant::now();
    eventually(
        "the first wave's deletions to be issued",
        Duration::from_secs(60),
        || async {
            let doc = get_json(cluster, &[&thing_gr, "-n", &ns])?;
            let items = doc["items"].as_array().cloned().unwrap_or_default();
            Ok((items.len() == 4
                && items
                    .iter()
                    .all(|o| !o["metadata"]["deletionTimestamp"].is_null()))
            .then_some(()))
        },
    )
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    let first_run = std::fs::read_to_string(log.path()).unwrap();
    eprintln!(
        "interrupted after {:.1}s:\n{first_run}",
        started.elapsed().as_secs_f64()
    );
    assert!(first_run.contains("wave 1"), "{first_run}");
    // Nothing past the first wave was touched.
    for (gr, kind) in [(&want_second, "gadgets"), (&want_third, "widgets")] {
        let doc = get_json(cluster, &[gr.as_str(), "-n", &ns]).unwrap();
        let items = doc["items"].as_array().unwrap();
        assert_eq!(items.len(), 2, "{kind}: {doc}");
        assert!(
            items
                .iter()
                .all(|o| o["metadata"]["deletionTimestamp"].is_null()),
            "{kind} were deleted before the first wave finished"
        );
    }
    let phase = get_json(cluster, &["namespace", &ns]).unwrap()["status"]["phase"].clone();
    assert_eq!(phase, "Active");

    // 4. Run again: it continues from the cluster's state and completes.
    operator.paused.store(false, Ordering::Relaxed);
    let started = Instant::now();
    let out = {
        let mut cmd = nsguard(cluster);
        cmd.args(["delete", &ns, "--yes"]);
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap()
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "second run: {:.1}s\n{stdout}",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("wave 1"), "{stdout}");
    assert!(stdout.contains("wave 2"), "{stdout}");
    assert!(
        stdout.contains(&format!("namespace {ns} is gone")),
        "{stdout}"
    );
    let gone = kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .get_opt(&ns)
        .await
        .unwrap();
    assert!(gone.is_none(), "{ns} still exists");

    // Every thing was finalized by its own operator, once; nobody else removed its finalizer
    // (nsguard only ever deletes), or the operator would have had nothing to record.
    let finalized = operator.finalized();
    drop(operator);
    assert_eq!(finalized.len(), things.len(), "{finalized:?}");
    assert_eq!(
        finalized.into_iter().collect::<BTreeSet<_>>(),
        things,
        "every custom resource finalized by its operator"
    );
    // The gadgets were deleted while their webhook still answered.
    let gadget_deletes = backend
        .reviews
        .lock()
        .unwrap()
        .iter()
        .filter(|r| {
            r["request"]["operation"] == "DELETE"
                && r["request"]["resource"]["resource"] == "gadgets"
        })
        .count();
    assert_eq!(
        gadget_deletes, 2,
        "each gadget's DELETE reached its webhook"
    );

    kubectl(
        cluster,
        &["delete", "validatingwebhookconfiguration", &hook_config],
        None,
    )
    .unwrap();
    for crd in [thing_gr, want_second, want_third] {
        kubectl(cluster, &["delete", "crd", &crd], None).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn nsguard_delete_stops_on_a_blocker_ordering_cannot_fix() {
    let _lock = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    // A finalizer nobody will ever remove: no controller anywhere.
    let group = "orphan.teardown.nsguard.test";
    install_crd(cluster, group, "relics", "Relic").await;
    let ns = create_namespace(&client, "teardown-stop").await;
    apply(
        cluster,
        &format!(
            "apiVersion: {group}/v1\nkind: Relic\nmetadata: {{name: r1, namespace: {ns}, finalizers: [\"{group}/keep\"]}}\n"
        ),
    );
    let before = resource_versions(cluster, &ns, &format!("relics.{group}"));
    let out = nsguard(cluster)
        .args(["delete", &ns, "--yes"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("finalizer-controller"), "{stderr}");
    assert!(stderr.contains("has no live controller"), "{stderr}");
    assert!(
        stderr.contains("would hang in Terminating"),
        "the webhook's message: {stderr}"
    );
    assert_eq!(
        before,
        resource_versions(cluster, &ns, &format!("relics.{group}")),
        "a stopped run changes nothing"
    );
    clear_finalizers(cluster, &format!("relics.{group}"), "r1", &ns);
    kubectl(cluster, &["delete", "namespace", &ns, "--wait=false"], None).unwrap();
    wait_gone(&client, &ns).await;
}

/// Whether namespace `ns` is still there and not Terminating.
fn still_active(cluster: &LocalCluster, ns: &str) -> bool {
    get_json(cluster, &["namespace", ns]).is_ok_and(|doc| {
        doc["status"]["phase"] == "Active" && doc["metadata"]["deletionTimestamp"].is_null()
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn nsguard_delete_without_the_right_to_delete_stops_before_any_delete() {
    let _lock = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    let ns = create_namespace(&client, "teardown-rbac").await;
    kubectl(cluster, &["create", "configmap", "keep", "-n", &ns], None).unwrap();
    let before = resource_versions(cluster, &ns, "configmaps");
    // nsguard's own identity reads everything and deletes nothing.
    let readonly = cluster.nsguard_kubeconfig().unwrap();
    let out = nsguard(cluster)
        .env("KUBECONFIG", &readonly)
        .args(["delete", &ns, "--yes"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("stopped before deleting anything"),
        "{stderr}"
    );
    assert!(stderr.contains("may not delete namespaces"), "{stderr}");
    assert_eq!(before, resource_versions(cluster, &ns, "configmaps"));
    assert!(still_active(cluster, &ns), "namespace {ns} was touched");
    kubectl(cluster, &["delete", "namespace", &ns, "--wait=false"], None).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn nsguard_delete_of_a_namespace_another_policy_protects_stops_before_any_delete() {
    let _lock = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    let label = format!("protected-{}", localcluster::random_suffix());
    let policy = format!("nsguard-test-{label}");
    cluster
        .apply(&format!(
            r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {{name: {policy}}}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - {{apiGroups: [""], apiVersions: [v1], operations: [DELETE], resources: [namespaces]}}
  validations:
  - expression: "false"
    message: "namespace is protected by {policy}"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {{name: {policy}}}
spec:
  policyName: {policy}
  validationActions: [Deny]
  matchResources:
    namespaceSelector:
      matchLabels: {{nsguard-test-protect: "{label}"}}
"#
        ))
        .unwrap();
    let ns = create_namespace(&client, "teardown-protected").await;
    kubectl(cluster, &["create", "configmap", "keep", "-n", &ns], None).unwrap();
    kubectl(
        cluster,
        &[
            "label",
            "namespace",
            &ns,
            &format!("nsguard-test-protect={label}"),
        ],
        None,
    )
    .unwrap();
    // The policy is in force once a server dry run of the DELETE is refused by it.
    eventually(
        "the protecting policy in force",
        Duration::from_secs(30),
        || async {
            let dry = ["delete", "namespace", ns.as_str(), "--dry-run=server"];
            Ok(kubectl(cluster, &dry, None)
                .err()
                .filter(|e| format!("{e:#}").contains(&policy)))
        },
    )
    .await;
    let before = resource_versions(cluster, &ns, "configmaps");
    let out = nsguard(cluster)
        .args(["delete", &ns, "--yes"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("stopped before deleting anything"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&policy),
        "the refusing policy is named: {stderr}"
    );
    assert_eq!(before, resource_versions(cluster, &ns, "configmaps"));
    assert!(still_active(cluster, &ns), "namespace {ns} was touched");
    // Without a terminal and without --yes, nothing is asked and nothing deleted.
    let out = nsguard(cluster).args(["delete", &ns]).output().unwrap();
    assert_ne!(out.status.code(), Some(0));
    // The namespace is unprotected first (the binding selects it by label), then the policy
    // goes; the API server's copy of the policies follows a moment later.
    kubectl(
        cluster,
        &["label", "namespace", &ns, "nsguard-test-protect-"],
        None,
    )
    .unwrap();
    for what in [
        "validatingadmissionpolicybinding",
        "validatingadmissionpolicy",
    ] {
        kubectl(cluster, &["delete", what, &policy], None).unwrap();
    }
    eventually("the namespace deleted", Duration::from_secs(30), || async {
        Ok(
            kubectl(cluster, &["delete", "namespace", &ns, "--wait=false"], None)
                .ok()
                .map(|_| ()),
        )
    })
    .await;
}
