//! The operator CLI on the real control plane: `diagnose` on each field report really stuck,
//! its remedy applied by the test, and its blocking chain drawn with Graphviz; `audit` over
//! namespaces in every state; `check` exit codes (0 clean, 1 could not run, 2 usage, 3
//! warnings, 4 would hang), JSON, YAML, names, `--context`; the same binary as a kubectl
//! plugin.

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

/// Renders `digraph` with Graphviz's `dot -Tsvg` when it is installed (`apt-get install
/// graphviz`); says so and checks nothing more when it is not, except in CI (`CI` set, as
/// `.ci/run` and GitHub Actions do), where a missing `dot` fails: CI proves the digraph renders.
fn render_with_graphviz(digraph: &str) {
    use std::io::Write;
    let Ok(mut child) = Command::new("dot")
        .arg("-Tsvg")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        let ci = std::env::var("CI").is_ok_and(|v| !matches!(v.as_str(), "" | "0" | "false"));
        assert!(
            !ci,
            "Graphviz `dot` is not installed, and CI is set: install graphviz (`.ci/run` does when apt-get is there)"
        );
        eprintln!("note: Graphviz `dot` is not installed: the digraph was not rendered");
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(digraph.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "dot -Tsvg: {}\n{digraph}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("<svg"));
}

/// The stale metrics APIService. diagnose names it, reads the controller's
/// condition, and its first remedy lets the namespace go.
#[tokio::test(flavor = "multi_thread")]
async fn diagnose_names_a_stale_apiservice_and_its_remedy_frees_the_namespace() {
    let _lock = CLUSTER_WIDE.write().await;
    let (cluster, client) = cluster().await;
    break_metrics_apiservice(cluster);
    let ns = create_namespace(&client, "stale-api-diag").await;
    kubectl(cluster, &["delete", "namespace", &ns, "--wait=false"], None).unwrap();
    wait_stuck(&client, &ns, "NamespaceDeletionDiscoveryFailure").await;

    let text = nsguard(cluster, &["diagnose", &ns]);
    assert_eq!(text.status.code(), Some(4));
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

/// A custom resource whose finalizer has no controller.
#[tokio::test(flavor = "multi_thread")]
async fn diagnose_names_an_orphaned_finalizer_and_the_patch_frees_the_namespace() {
    let _lock = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    install_crd(cluster, "hooks.nsguard.test", "gadgets", "Gadget").await;
    let ns = create_namespace(&client, "orphan-diag").await;
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
    // The same, as YAML: the same document.
    let yaml = nsguard(
        cluster,
        &["diagnose", &format!("namespace/{ns}"), "-o", "yaml"],
    );
    assert_eq!(yaml.status.code(), Some(4));
    let from_yaml: Value = serde_saphyr::from_str(&String::from_utf8_lossy(&yaml.stdout))
        .unwrap_or_else(|e| panic!("{e}: {yaml:?}"));
    assert_eq!(from_yaml["blockers"], d["blockers"]);
    assert_eq!(from_yaml["steps"], d["steps"]);
    // The blocking chain as a digraph: namespace -> object -> finalizer -> why.
    let out = nsguard(cluster, &["diagnose", &ns, "-o", "dot"]);
    assert_eq!(out.status.code(), Some(4));
    let digraph = String::from_utf8_lossy(&out.stdout).into_owned();
    for edge in [
        format!("\"namespace/{ns}\" -> \"object/gadgets.hooks.nsguard.test {ns}/g1\";"),
        format!(
            "\"object/gadgets.hooks.nsguard.test {ns}/g1\" -> \"finalizer/hooks.nsguard.test/cleanup\";"
        ),
        "\"finalizer/hooks.nsguard.test/cleanup\" -> \"none/gadgets.hooks.nsguard.test\";".into(),
    ] {
        assert!(digraph.contains(&edge), "{edge}\n{digraph}");
    }
    render_with_graphviz(&digraph);
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
        (&orphan, 4, "would-hang"),
        (&hooked, 4, "would-hang"),
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
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("finalizer-controller"), "{table:?}");
    assert!(
        text.starts_with(&format!("namespace {orphan}: WOULD HANG\n")),
        "{text}"
    );
    // The objects that block, as kubectl names them.
    let names = nsguard(cluster, &["check", &orphan, "-o", "name"]);
    assert_eq!(names.status.code(), Some(4));
    assert_eq!(
        String::from_utf8_lossy(&names.stdout),
        "gadgets.hooks.nsguard.test/g1\n"
    );
    // The chain, drawn: the object, its finalizer, and why nothing removes it.
    let out = nsguard(cluster, &["check", &orphan, "-o", "dot"]);
    assert_eq!(out.status.code(), Some(4));
    let digraph = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        digraph.contains(&format!(
            "\"object/gadgets.hooks.nsguard.test {orphan}/g1\" -> \"finalizer/hooks.nsguard.test/cleanup\";"
        )),
        "{digraph}"
    );
    render_with_graphviz(&digraph);
    // Made advisory, the same finding is a warning: exit 3, and the headline agrees.
    let warned = nsguard(
        cluster,
        &["check", &orphan, "--check", "finalizer-controller=warn"],
    );
    assert_eq!(warned.status.code(), Some(3), "{warned:?}");
    assert!(
        String::from_utf8_lossy(&warned.stdout)
            .starts_with(&format!("namespace {orphan}: WARNINGS\n")),
        "{warned:?}"
    );
    // YAML is the JSON document; durations as humantime writes them.
    let yaml = nsguard(
        cluster,
        &["check", &orphan, "-o", "yaml", "--check-timeout", "1m30s"],
    );
    assert_eq!(yaml.status.code(), Some(4), "{yaml:?}");
    let from_yaml: Value = serde_saphyr::from_str(&String::from_utf8_lossy(&yaml.stdout))
        .unwrap_or_else(|e| panic!("{e}: {yaml:?}"));
    let from_json = json(&nsguard(cluster, &["check", &orphan, "-o", "json"]));
    assert_eq!(from_yaml["verdict"], "would-hang");
    assert_eq!(from_yaml["findings"], from_json["findings"]);
    // nsguard could not run: 1; a usage error: clap's 2.
    let missing = nsguard(cluster, &["check", "no-such-namespace"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not found"));
    for usage in [
        &["check", &clean, "-o", "policyreport"][..],
        &["check", &clean, "--check-timeout", "ten"][..],
        &["diagnose", &clean, "-o", "name"][..],
        &["check"][..],
    ] {
        let out = nsguard(cluster, usage);
        assert_eq!(out.status.code(), Some(2), "{usage:?}: {out:?}");
    }

    // audit: every namespace selected, each with its verdict; the stuck one diagnosed.
    let selector = format!("nsguard.io/e2e-audit={id}");
    let out = nsguard(cluster, &["audit", "-l", &selector, "-o", "json"]);
    assert_eq!(out.status.code(), Some(4));
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
    // The namespaces that would hang or are stuck, as kubectl names them.
    let out = nsguard(cluster, &["audit", "-l", &selector, "-o", "name"]);
    assert_eq!(out.status.code(), Some(4));
    let mut named: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect();
    named.sort();
    let mut expected: Vec<String> = [&orphan, &hooked, &stuck]
        .iter()
        .map(|ns| format!("namespace/{ns}"))
        .collect();
    expected.sort();
    assert_eq!(named, expected);

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

/// `--context` picks a context of the kubeconfig, as with kubectl: with a kubeconfig whose
/// current context points nowhere, nsguard cannot run (1) unless told the working context.
#[tokio::test(flavor = "multi_thread")]
async fn context_picks_the_kubeconfig_context() {
    let _lock = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    let ns = create_namespace(&client, "context").await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kubeconfig");
    std::fs::copy(cluster.kubeconfig(), &config).unwrap();
    let config_arg = config.to_str().unwrap();
    let kubectl = |args: &[&str]| {
        let out = Command::new(Path::new(cluster.bin_path()).join("kubectl"))
            .args(args)
            .args(["--kubeconfig", config_arg])
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let working = kubectl(&["config", "current-context"]);
    let user = kubectl(&[
        "config",
        "view",
        "-o",
        &format!("jsonpath={{.contexts[?(@.name==\"{working}\")].context.user}}"),
    ]);
    kubectl(&[
        "config",
        "set-cluster",
        "nowhere",
        "--server=https://127.0.0.1:1",
    ]);
    kubectl(&[
        "config",
        "set-context",
        "nowhere",
        "--cluster=nowhere",
        &format!("--user={user}"),
    ]);
    kubectl(&["config", "use-context", "nowhere"]);
    let check = |extra: &[&str]| {
        let mut args = vec![
            "check",
            ns.as_str(),
            "--call-timeout",
            "2s",
            "--check-timeout",
            "3s",
        ];
        args.extend_from_slice(extra);
        nsguard_cli(&config, &args)
    };
    let out = check(&[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let out = check(&["--context", &working, "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(json(&out)["verdict"], "clean");
    let out = check(&["--context", "no-such-context"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no-such-context"),
        "{out:?}"
    );
    support::kubectl(cluster, &["delete", "namespace", &ns, "--wait=false"], None).unwrap();
    wait_gone(&client, &ns).await;
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

/// `-n NS` as every kubectl user types it: `check`, `diagnose` and `delete` take it as they
/// take the argument; the argument and `-n` naming two namespaces is a usage error (2) that
/// names both; `check --help` shows no flag of `serve`.
#[tokio::test(flavor = "multi_thread")]
async fn the_namespace_may_be_given_with_dash_n() {
    let _lock = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    let ns = create_namespace(&client, "dash-n").await;
    let out = nsguard(cluster, &["check", "-n", &ns, "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(json(&out)["namespace"], ns.as_str(), "{out:?}");
    assert_eq!(json(&out)["verdict"], "clean");
    let out = nsguard(cluster, &["diagnose", "--namespace", &ns, "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let out = nsguard(cluster, &["delete", "-n", &ns, "--dry-run", "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(json(&out)["namespace"], ns.as_str(), "{out:?}");

    let out = nsguard(cluster, &["check", &ns, "-n", "kube-system"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(ns.as_str()) && stderr.contains("kube-system"),
        "{stderr}"
    );
    let help = nsguard(cluster, &["check", "--help"]);
    assert_eq!(help.status.code(), Some(0), "{help:?}");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("-n, --namespace"), "{help}");
    assert!(
        !help.contains("--initial-sync") && !help.contains("--listen"),
        "{help}"
    );
    support::kubectl(cluster, &["delete", "namespace", &ns, "--wait=false"], None).unwrap();
    wait_gone(&client, &ns).await;
}

/// A kubeconfig that is not there: nsguard cannot run (1) and says why once, on one line.
#[test]
fn a_missing_kubeconfig_is_said_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-kubeconfig");
    for args in [
        vec!["check", "team-a", "--kubeconfig", missing.to_str().unwrap()],
        vec!["audit"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_nsguard"))
            .args(&args)
            .env("KUBECONFIG", &missing)
            .env("NSGUARD_LOG", "warn")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let path = missing.display().to_string();
        assert!(stderr.contains(&path), "{stderr}");
        assert_eq!(
            stderr.matches("No such file or directory").count(),
            1,
            "{args:?}: the cause twice: {stderr}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
}

/// `--log-format json`: every log line the binary writes is one JSON object (here the
/// client's debug lines while it fails to reach an API server that is not there).
#[test]
fn json_log_lines_parse_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: \"https://127.0.0.1:1\"}}]\nusers: [{name: u, user: {token: x}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_nsguard"))
        .args([
            "check",
            "team-a",
            "--call-timeout",
            "1s",
            "--check-timeout",
            "2s",
        ])
        .args(["--log-format", "json"])
        .env("KUBECONFIG", &kubeconfig)
        .env("NSGUARD_LOG", "debug")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<Value> = stderr
        .lines()
        .filter(|l| !l.starts_with("nsguard: "))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}\n{stderr}")))
        .collect();
    assert!(!lines.is_empty(), "no log line: {stderr}");
    for line in &lines {
        assert!(
            line["level"].is_string() && line["timestamp"].is_string(),
            "{line}"
        );
    }
}
