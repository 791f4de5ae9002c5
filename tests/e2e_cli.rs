//! The operator CLI on the real control plane: `diagnose` on each field report really stuck,
//! its remedy applied by the test; `audit` over namespaces in every state; `check` exit codes
//! and JSON; the same binary as a kubectl plugin.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use localcluster::{LocalCluster, random_suffix};
use serde_json::Value;
use support::*;

/// Runs the nsguard binary with `args` against the local cluster.
fn nsguard(cluster: &LocalCluster, args: &[&str]) -> Output {
    nsguard_cli(cluster.kubeconfig(), args)
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Runs one remedy command the way an operator would paste it, with this cluster's kubectl.
fn run_remedy(cluster: &LocalCluster, command: &str) {
    let path = format!(
        "{}:{}",
        cluster.bin_path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("sh")
        .args(["-c", command])
        .env("PATH", path)
        .env("KUBECONFIG", cluster.kubeconfig())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The first step that is a command rather than an instruction.
fn first_command(diagnosis: &Value) -> String {
    diagnosis["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["command"].as_str().unwrap().to_string())
        .find(|c| !c.starts_with('#'))
        .expect("a command among the steps")
}

/// Seed 000: the stale metrics APIService. diagnose names it, reads the controller's
/// condition, and its first remedy lets the namespace go.
#[tokio::test(flavor = "multi_thread")]
async fn diagnose_seed_000_names_the_apiservice_and_its_remedy_frees_the_namespace() {
    let _lock = CLUSTER_WIDE.write().await;
    let (cluster, client) = cluster().await;
    break_metrics_apiservice(cluster);
    let ns = create_namespace(&client, "seed000-diag").await;
    kubectl(cluster, &["delete", "namespace", &ns, "--wait=false"], None).unwrap();
    wait_stuck(&client, &ns, "NamespaceDeletionDiscoveryFailure").await;

    let text = nsguard(cluster, &["diagnose", &ns]);
    assert_eq!(text.status.code(), Some(2));
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("NamespaceDeletionDiscoveryFailure=True"),
        "{text}"
    );
    assert!(text.contains("remedies, in this order"), "{text}");

    let out = nsguard(cluster, &["diagnose", &ns, "-o", "json"]);
    let d = json(&out);
    assert_eq!(d["phase"], "Terminating");
    assert_eq!(d["blockers"][0]["check"], "apiservice-unavailable");
    assert!(
        d["blockers"][0]["evidence"]
            .to_string()
            .contains("ServiceNotFound"),
        "{d}"
    );
    let first = first_command(&d);
    assert_eq!(first, "kubectl delete apiservice v1beta1.metrics.k8s.io");
    assert_eq!(d["steps"][0]["command"], first.as_str());
    assert!(!d["steps"][0]["risk"].as_str().unwrap().is_empty());
    assert!(
        d["steps"].as_array().unwrap().last().unwrap()["risk"]
            .as_str()
            .unwrap()
            .starts_with("LAST RESORT")
    );
    run_remedy(cluster, &first);
    wait_gone(&client, &ns).await;
}

/// Seed 004: a custom resource whose finalizer has no controller.
#[tokio::test(flavor = "multi_thread")]
async fn diagnose_seed_004_names_the_object_and_its_finalizer_and_the_patch_frees_the_namespace() {
    let _lock = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    install_crd(cluster, "hooks.nsguard.test", "gadgets", "Gadget").await;
    let ns = create_namespace(&client, "seed004-diag").await;
    gadget(cluster, "hooks.nsguard.test", &ns, "g1");
    kubectl(cluster, &["delete", "namespace", &ns, "--wait=false"], None).unwrap();
    wait_stuck(&client, &ns, "NamespaceFinalizersRemaining").await;

    let d = json(&nsguard(cluster, &["diagnose", &ns, "-o", "json"]));
    assert_eq!(d["blockers"][0]["check"], "finalizer-controller", "{d}");
    assert_eq!(d["remaining"][0]["resource"], "gadgets.hooks.nsguard.test");
    assert_eq!(
        d["remaining"][0]["finalizers"][0],
        "hooks.nsguard.test/cleanup"
    );
    assert!(
        d["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "NamespaceFinalizersRemaining" && c["status"] == "True"),
        "{d}"
    );
    // First: bring the controller back (an instruction; there is none to bring back here).
    assert!(d["steps"][0]["command"].as_str().unwrap().starts_with('#'));
    let first = first_command(&d);
    assert!(
        first.starts_with(&format!(
            "kubectl patch gadgets.hooks.nsguard.test g1 -n {ns}"
        )),
        "{first}"
    );
    run_remedy(cluster, &first);
    wait_gone(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_and_check_report_every_state_with_exit_codes_and_json() {
    let _lock = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    install_crd(cluster, "hooks.nsguard.test", "gadgets", "Gadget").await;
    install_crd(cluster, "audited.nsguard.test", "widgets", "Widget").await;
    // Widgets have a live controller somewhere else: their finalizers are handled.
    let operator = format!("widget-operator-{}", random_suffix());
    let op_ns = support::operator::run_operator(
        cluster,
        &client,
        &operator,
        "audited.nsguard.test",
        "widgets",
        1,
    )
    .await;
    support::operator::wait_ready(cluster, &op_ns, &operator).await;
    let id = random_suffix();
    let label = [("nsguard.io/e2e-audit", id.clone())];
    let clean = create_namespace_with(&client, "audit-clean", &label, &[]).await;
    let pending = create_namespace_with(&client, "audit-pending", &label, &[]).await;
    let orphan = create_namespace_with(&client, "audit-orphan", &label, &[]).await;
    let hooked = create_namespace_with(&client, "audit-hooked", &label, &[]).await;
    let stuck = create_namespace_with(&client, "audit-stuck", &label, &[]).await;
    kubectl(
        cluster,
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: audited.nsguard.test/v1\nkind: Widget\nmetadata:\n  name: w1\n  namespace: {pending}\n  finalizers: [audited.nsguard.test/cleanup]\n"
        )),
    )
    .unwrap();
    gadget(cluster, "hooks.nsguard.test", &orphan, "g1");
    gadget(cluster, "hooks.nsguard.test", &stuck, "g1");
    let config = format!("audit-down-{id}");
    kubectl(
        cluster,
        &["apply", "-f", "-"],
        Some(&format!(
            r#"apiVersion: v1
kind: ConfigMap
metadata: {{name: data, namespace: {hooked}}}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {{name: {config}}}
webhooks:
- name: configmaps.audit.nsguard.test
  admissionReviewVersions: ["v1"]
  sideEffects: None
  failurePolicy: Fail
  rules:
  - {{apiGroups: [""], apiVersions: ["v1"], operations: ["DELETE"], resources: ["configmaps"]}}
  namespaceSelector: {{matchLabels: {{"kubernetes.io/metadata.name": "{hooked}"}}}}
  clientConfig:
    service: {{namespace: default, name: missing-{id}}}
"#
        )),
    )
    .unwrap();
    kubectl(
        cluster,
        &["delete", "namespace", &stuck, "--wait=false"],
        None,
    )
    .unwrap();
    wait_stuck(&client, &stuck, "NamespaceFinalizersRemaining").await;

    // check: exit codes and the JSON document.
    for (ns, code, verdict) in [
        (&clean, 0, "clean"),
        (&pending, 0, "clean"),
        (&orphan, 2, "would-hang"),
        (&hooked, 2, "would-hang"),
    ] {
        let out = nsguard(cluster, &["check", ns, "-o", "json"]);
        let doc = json(&out);
        assert_eq!(out.status.code(), Some(code), "{ns}: {doc}");
        assert_eq!(doc["schema"], "nsguard.io/v1");
        assert_eq!(doc["namespace"], ns.as_str());
        assert_eq!(doc["verdict"], verdict, "{doc}");
        assert_eq!(doc["phase"], "Active");
        assert!(doc["notChecked"].as_array().unwrap().is_empty(), "{doc}");
    }
    let table = nsguard(cluster, &["check", &orphan]);
    assert!(
        String::from_utf8_lossy(&table.stdout).contains("finalizer-controller"),
        "{table:?}"
    );
    let missing = nsguard(cluster, &["check", "no-such-namespace"]);
    assert_eq!(missing.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not found"));

    // audit: every namespace selected, each with its verdict; the stuck one diagnosed.
    let selector = format!("nsguard.io/e2e-audit={id}");
    let out = nsguard(cluster, &["audit", "-l", &selector, "-o", "json"]);
    assert_eq!(out.status.code(), Some(2));
    let doc = json(&out);
    let rows = doc["namespaces"].as_array().unwrap();
    assert_eq!(rows.len(), 5, "{doc}");
    let row = |ns: &str| rows.iter().find(|r| r["namespace"] == ns).unwrap().clone();
    assert_eq!(row(&clean)["verdict"], "clean");
    assert_eq!(row(&pending)["verdict"], "clean");
    assert_eq!(
        row(&pending)["report"]["handled"][0]["controller"],
        format!("{op_ns}/{operator}")
    );
    assert_eq!(row(&orphan)["verdict"], "would-hang");
    assert_eq!(
        row(&orphan)["report"]["findings"][0]["check"],
        "finalizer-controller"
    );
    assert_eq!(
        row(&hooked)["report"]["findings"][0]["check"],
        "webhook-backend-unavailable"
    );
    assert_eq!(row(&stuck)["phase"], "Terminating");
    assert_eq!(
        row(&stuck)["diagnosis"]["blockers"][0]["check"],
        "finalizer-controller"
    );
    assert!(row(&clean)["diagnosis"].is_null());

    let out = nsguard(cluster, &["audit", "-l", &selector]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("NAMESPACE"), "{text}");
    let line = |ns: &str| {
        text.lines()
            .find(|l| l.starts_with(ns))
            .unwrap()
            .to_string()
    };
    assert!(line(&stuck).contains("stuck"), "{text}");
    assert!(
        line(&hooked).contains("webhook-backend-unavailable"),
        "{text}"
    );
    assert!(line(&clean).contains("clean"), "{text}");
    assert!(
        text.contains(&format!("namespace {stuck}: Terminating")),
        "{text}"
    );
    // Not a terminal: no progress written.
    assert!(!String::from_utf8_lossy(&out.stderr).contains("checked"));

    // Clean up what this test made.
    kubectl(
        cluster,
        &["delete", "validatingwebhookconfiguration", &config],
        None,
    )
    .unwrap();
    for ns in [&orphan, &stuck] {
        clear_finalizers(cluster, "gadgets.hooks.nsguard.test", "g1", ns);
    }
    clear_finalizers(cluster, "widgets.audited.nsguard.test", "w1", &pending);
    for ns in [&clean, &pending, &orphan, &hooked] {
        kubectl(cluster, &["delete", "namespace", ns, "--wait=false"], None).unwrap();
    }
    for ns in [&clean, &pending, &orphan, &hooked, &stuck] {
        wait_gone(&client, ns).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn works_as_a_kubectl_plugin() {
    let _lock = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    let ns = create_namespace(&client, "plugin").await;
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_nsguard"),
        dir.path().join("kubectl-nsguard"),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let kubectl = |args: &[&str]| {
        Command::new(Path::new(cluster.bin_path()).join("kubectl"))
            .args(args)
            .env("PATH", &path)
            .env("KUBECONFIG", cluster.kubeconfig())
            .output()
            .unwrap()
    };
    let list = kubectl(&["plugin", "list"]);
    assert!(
        String::from_utf8_lossy(&list.stdout).contains("kubectl-nsguard"),
        "{list:?}"
    );
    let out = kubectl(&["nsguard", "check", &ns, "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(json(&out)["verdict"], "clean");
    let help = kubectl(&["nsguard", "--help"]);
    assert!(
        String::from_utf8_lossy(&help.stdout).contains("Usage: kubectl nsguard"),
        "{help:?}"
    );
    support::kubectl(cluster, &["delete", "namespace", &ns, "--wait=false"], None).unwrap();
    wait_gone(&client, &ns).await;
}
