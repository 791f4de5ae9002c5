//! One configuration for the webhook and the CLI, on the real control plane: the webhook
//! reading a configuration file and `nsguard check` reading the same configuration from the
//! cluster's ConfigMap give the same verdict on the same namespace; the webhook reloads the
//! file when it changes and keeps the configuration in force when an edit is not valid.

mod support;

use std::process::Output;
use std::time::Duration;

use localcluster::{LocalCluster, http_get, random_suffix};
use serde_json::Value;
use support::nsguard::Nsguard;
use support::*;

/// A namespace that would hang three ways (objects with a finalizer nobody removes, of three
/// custom types), and the configuration that changes the verdict on each: the check lowered
/// to a warning, a declared controller for the second type, the third type skipped.
struct World {
    lowered: String,
    declared: String,
    skipped: String,
    controller_ns: String,
}

impl World {
    fn new() -> Self {
        let id = random_suffix();
        World {
            lowered: format!("lowered-{id}.example.com"),
            declared: format!("declared-{id}.example.com"),
            skipped: format!("skipped-{id}.example.com"),
            controller_ns: format!("ctrl-{id}"),
        }
    }

    fn groups(&self) -> [&String; 3] {
        [&self.lowered, &self.declared, &self.skipped]
    }

    /// The configuration: declared controller and skipped type, and the check lowered when
    /// `lowered`.
    fn config(&self, lowered: bool) -> String {
        let checks = if lowered {
            "checks:\n  finalizer-controller: warn\n"
        } else {
            ""
        };
        format!(
            "# A non-default configuration.\n{checks}\
             finalizer_controllers:\n  gadgets.{}: [{}/gadget-controller]\n\
             skip_resources: [gadgets.{}]\n",
            self.declared, self.controller_ns, self.skipped
        )
    }

    /// The namespace, with one object of each type.
    async fn namespace(
        &self,
        cluster: &LocalCluster,
        client: &kube::Client,
        labels: &[(&str, String)],
    ) -> String {
        let ns = create_namespace_with(client, "config", labels, &[]).await;
        for group in self.groups() {
            gadget(cluster, group, &ns, "g1");
        }
        ns
    }
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write_config_map(cluster: &LocalCluster, name: &str, config: &str) {
    let cm = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "nsguard-system"},
        "data": {"config.yaml": config},
    });
    kubectl(cluster, &["apply", "-f", "-"], Some(&cm.to_string())).unwrap();
}

fn metric(guard: &Nsguard, name: &str) -> Option<f64> {
    guard
        .metrics()
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_webhook_and_the_cli_agree_on_a_non_default_configuration() {
    let _lock = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    kubectl(cluster, &["create", "namespace", "nsguard-system"], None).ok();
    let w = World::new();
    for group in w.groups() {
        install_crd(cluster, group, "gadgets", "Gadget").await;
    }
    // The same configuration in the webhook's file and in the ConfigMap the CLI reads.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    std::fs::write(&file, w.config(true)).unwrap();
    write_config_map(cluster, "nsguard-config", &w.config(true));
    let config_arg = format!("--config={}", file.display());
    let guard = Nsguard::start(
        cluster,
        &[
            "--mode=enforce",
            &config_arg,
            "--config-reload-interval=200ms",
        ],
    )
    .await;
    let ns = w.namespace(cluster, &client, &guard.labels()).await;

    // With the defaults, the deletion would hang on all three types.
    let empty = dir.path().join("empty.yaml");
    std::fs::write(&empty, "").unwrap();
    let out = nsguard_cli(
        cluster.kubeconfig(),
        &["check", &ns, "--config", empty.to_str().unwrap()],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(4), "{stdout}\n{stderr}");
    for group in w.groups() {
        assert!(stdout.contains(group.as_str()), "{group}: {stdout}");
    }

    // The webhook, with the configuration: allowed, with a warning for each of the two types
    // it looks at (once its index has them); the skipped type is not looked at.
    let warnings = eventually(
        "the webhook to warn of both types",
        Duration::from_secs(30),
        || async {
            let out = kubectl_output(
                cluster,
                &["delete", "namespace", &ns, "--dry-run=server"],
                None,
            )?;
            let (_, err) = text(&out);
            anyhow::ensure!(out.status.success(), "denied: {err}");
            Ok(
                (err.contains(w.lowered.as_str()) && err.contains(w.declared.as_str()))
                    .then_some(err),
            )
        },
    )
    .await;
    let about_skipped = format!("finalizer-controller: gadgets.{}", w.skipped);
    assert!(!warnings.contains(&about_skipped), "{warnings}");
    assert!(
        warnings.contains(&format!("not checked: gadgets.{}", w.skipped)),
        "{warnings}"
    );

    // `nsguard check`, reading the ConfigMap: the same verdict (warnings only, exit 3) on the
    // same findings, and no note about overriding flags.
    let out = nsguard_cli(cluster.kubeconfig(), &["check", &ns, "-o", "json"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{stderr}");
    assert!(!stderr.contains("override"), "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let findings = report["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 2, "{report}");
    for f in findings {
        assert_eq!(f["check"], "finalizer-controller", "{report}");
        assert_eq!(f["severity"], "advisory", "{report}");
    }
    let findings_text = Value::Array(findings.clone()).to_string();
    assert!(findings_text.contains(w.lowered.as_str()), "{report}");
    assert!(findings_text.contains(w.declared.as_str()), "{report}");
    // The declared controller is the one judged.
    assert!(findings_text.contains(w.controller_ns.as_str()), "{report}");
    assert!(!findings_text.contains(w.skipped.as_str()), "{report}");
    let skipped = format!("gadgets.{}", w.skipped);
    assert!(
        report["notCheckedByChoice"]
            .as_array()
            .is_some_and(|a| a.iter().any(|r| r == skipped.as_str())),
        "{report}"
    );

    // A flag overrides the ConfigMap, and says so: the check at block again, the deletion
    // would hang (exit 4).
    let out = nsguard_cli(
        cluster.kubeconfig(),
        &["check", &ns, "--check", "finalizer-controller=block"],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(4), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("flags override the configuration: --check finalizer-controller=block"),
        "{stderr}"
    );

    // `config show`: each value with where it comes from; `config validate`: the ConfigMap.
    let out = nsguard_cli(
        cluster.kubeconfig(),
        &["config", "show", "--backend-grace", "1m"],
    );
    let (shown, stderr) = text(&out);
    assert!(out.status.success(), "{shown}\n{stderr}");
    for line in [
        "finalizer-controller: warn  # configmap nsguard-system/nsguard-config",
        "list-failure: block  # default",
        "backend_grace: 1m  # flag",
        "mode: enforce  # default",
    ] {
        assert!(shown.contains(line), "{line}: {shown}");
    }
    assert!(
        shown.contains(&format!(
            "gadgets.{}: [{}/gadget-controller]  # configmap nsguard-system/nsguard-config",
            w.declared, w.controller_ns
        )),
        "{shown}"
    );
    let out = nsguard_cli(cluster.kubeconfig(), &["config", "validate"]);
    assert!(out.status.success(), "{:?}", text(&out));

    // A bad edit of the webhook's file: reported (log, metric), /readyz stays ready, and the
    // configuration in force stays: still allowed.
    std::fs::write(&file, "checks:\n  finalizer-controller: sometimes\n").unwrap();
    eventually(
        "the webhook to reject the bad edit",
        Duration::from_secs(30),
        || async {
            Ok(
                (metric(&guard, "nsguard_config_last_reload_successful") == Some(0.0))
                    .then_some(()),
            )
        },
    )
    .await;
    let log = guard.log();
    assert!(log.contains("Configuration rejected"), "{log}");
    assert!(log.contains("checks.finalizer-controller"), "{log}");
    assert_eq!(
        http_get(guard.admin_port(), "/readyz").map(|(c, _)| c),
        Some(200)
    );
    let out = kubectl_output(
        cluster,
        &["delete", "namespace", &ns, "--dry-run=server"],
        None,
    )
    .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "checks:\n  finalizer-controller: sometimes\n").unwrap();
    let out = nsguard_cli(
        cluster.kubeconfig(),
        &["config", "validate", bad.to_str().unwrap()],
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("checks.finalizer-controller"), "{stderr}");

    // A valid edit (the check no longer lowered) is applied: denied, on the two types it
    // looks at, the declared controller named.
    std::fs::write(&file, w.config(false)).unwrap();
    let err = denied(cluster, &ns, "finalizer-controller").await;
    assert!(err.contains(w.lowered.as_str()), "{err}");
    assert!(err.contains(w.declared.as_str()), "{err}");
    assert!(err.contains(w.controller_ns.as_str()), "{err}");
    assert!(!err.contains(&about_skipped), "{err}");
    assert_eq!(
        metric(&guard, "nsguard_config_last_reload_successful"),
        Some(1.0)
    );

    // Clean up: the objects' finalizers, then the namespace.
    for group in w.groups() {
        clear_finalizers(cluster, &format!("gadgets.{group}"), "g1", &ns);
    }
    kubectl(
        cluster,
        &[
            "delete",
            "configmap",
            "nsguard-config",
            "-n",
            "nsguard-system",
        ],
        None,
    )
    .ok();
    allowed_and_gone(cluster, &client, &ns).await;
}

/// An edit of nsguard's own ConfigMap is validated at admission, with the same validation as
/// `nsguard config validate`: a bad one is refused with its message (a pod restarted after it
/// would not start), a good one is stored. The webhook configuration is the installed one's
/// second webhook (`/validate-config`, `failurePolicy: Ignore`), narrowed to this test's
/// namespace and label.
#[tokio::test(flavor = "multi_thread")]
async fn a_bad_configuration_edit_is_refused_at_admission() {
    let _lock = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    let ns = create_namespace(&client, "cfgval").await;
    let config_map = format!("--config-map={ns}/nsguard-config");
    let guard = Nsguard::start(cluster, &[config_map.as_str()]).await;
    let name = format!("nsguard-config-{}", guard.id);
    kubectl(
        cluster,
        &["apply", "-f", "-"],
        Some(&format!(
            r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {{name: {name}}}
webhooks:
- name: config.nsguard.io
  admissionReviewVersions: ["v1"]
  sideEffects: None
  failurePolicy: Ignore
  timeoutSeconds: 5
  rules:
  - {{apiGroups: [""], apiVersions: ["v1"], operations: ["CREATE", "UPDATE"], resources: ["configmaps"], scope: Namespaced}}
  namespaceSelector:
    matchExpressions:
    - {{key: kubernetes.io/metadata.name, operator: In, values: [{ns}]}}
  objectSelector:
    matchLabels: {{app.kubernetes.io/name: nsguard}}
  clientConfig:
    url: https://127.0.0.1:{}/validate-config
    caBundle: {}
"#,
            guard.port,
            cluster.ca().ca_bundle()
        )),
    )
    .unwrap();
    let config_map = |mode: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: nsguard-config\n  namespace: {ns}\n  labels: {{app.kubernetes.io/name: nsguard}}\ndata:\n  config.yaml: |\n    mode: {mode}\n"
        )
    };
    // A good configuration is stored (the webhook is called: a good one passes it).
    kubectl(cluster, &["apply", "-f", "-"], Some(&config_map("warn"))).unwrap();
    // The API server picks the webhook configuration up asynchronously: poll until a bad
    // edit is refused, with the message `nsguard config validate` prints.
    let bad = config_map("enforse");
    let refusal = eventually(
        "a bad configuration edit to be refused",
        Duration::from_secs(30),
        || async {
            let out = kubectl_output(cluster, &["apply", "-f", "-"], Some(&bad))?;
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            Ok((!out.status.success()).then_some(err))
        },
    )
    .await;
    assert!(refusal.contains("denied the request"), "{refusal}");
    assert!(
        refusal.contains("nsguard's configuration (config.yaml) is not valid"),
        "{refusal}"
    );
    assert!(
        refusal.contains("\"enforse\": expected enforce, warn or audit"),
        "{refusal}"
    );
    let stored = kubectl(
        cluster,
        &[
            "get",
            "configmap",
            "nsguard-config",
            "-n",
            &ns,
            "-o",
            "jsonpath={.data.config\\.yaml}",
        ],
        None,
    )
    .unwrap();
    assert_eq!(stored.trim(), "mode: warn", "the bad edit was stored");
    // The same text, validated by the CLI: the same message.
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), "mode: enforse\n").unwrap();
    let out = nsguard_cli(
        cluster.kubeconfig(),
        &["config", "validate", file.path().to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(4));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("\"enforse\": expected enforce, warn or audit")
    );
    // A good edit passes.
    kubectl(cluster, &["apply", "-f", "-"], Some(&config_map("enforce"))).unwrap();
    let stored = kubectl(
        cluster,
        &[
            "get",
            "configmap",
            "nsguard-config",
            "-n",
            &ns,
            "-o",
            "jsonpath={.data.config\\.yaml}",
        ],
        None,
    )
    .unwrap();
    assert_eq!(stored.trim(), "mode: enforce");
    // Another ConfigMap of the namespace, with the label, is none of nsguard's business.
    kubectl(
        cluster,
        &["apply", "-f", "-"],
        Some(&bad.replace("name: nsguard-config", "name: something-else")),
    )
    .unwrap();
    kubectl(
        cluster,
        &["delete", "validatingwebhookconfiguration", &name],
        None,
    )
    .unwrap();
    kubectl(cluster, &["delete", "namespace", &ns, "--wait=false"], None).unwrap();
}
