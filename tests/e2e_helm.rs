//! The Helm chart (`charts/nsguard`): it lints, renders for every certificate source and
//! mode, its RBAC and its objects equal the kustomize manifests' (parsed, so the two cannot
//! drift), its schema refuses a typo, and installed then upgraded on the real control plane
//! it keeps its generated certificate and guards deletions through its own webhook
//! configuration and Service.
//!
//! Helm is built from its Go module by `tests/helm/build.sh`, cached by version outside the
//! repo, like the control plane.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use localcluster::{LocalCluster, free_port, http_get, random_suffix};
use serde_json::{Value, json};
use support::*;

/// The label that routes a namespace to the chart's webhook in this test (objectSelector).
const HELM_LABEL: &str = "nsguard.io/e2e-helm";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn chart() -> PathBuf {
    root().join("charts/nsguard")
}

/// The helm binary: built (or found in the cache) by `tests/helm/build.sh`.
fn helm_bin() -> &'static Path {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| {
        let script = root().join("tests/helm/build.sh");
        let out = Command::new("bash")
            .arg(&script)
            .stderr(Stdio::inherit())
            .output()
            .expect("running tests/helm/build.sh");
        assert!(out.status.success(), "{} failed", script.display());
        let stdout = String::from_utf8_lossy(&out.stdout);
        let path = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
        assert!(path.is_file(), "tests/helm/build.sh printed {stdout:?}");
        path
    })
}

/// Runs helm with `args`; the helm state directories are private to the test process.
fn helm(args: &[&str], kubeconfig: Option<&Path>) -> Output {
    static HOME: OnceLock<tempfile::TempDir> = OnceLock::new();
    let home = HOME.get_or_init(|| tempfile::tempdir().unwrap()).path();
    let mut cmd = Command::new(helm_bin());
    cmd.args(args)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"));
    if let Some(kc) = kubeconfig {
        cmd.env("KUBECONFIG", kc);
    }
    cmd.output().expect("running helm")
}

fn helm_ok(args: &[&str], kubeconfig: Option<&Path>) -> String {
    let out = helm(args, kubeconfig);
    assert!(
        out.status.success(),
        "helm {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every document of a multi-document YAML stream, as JSON values.
fn documents(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(yaml)
        .unwrap_or_else(|e| panic!("parsing YAML: {e}\n{yaml}"))
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

/// `helm template` of release `nsguard` in `nsguard-system` (the manifests' names) with `set`.
fn template(set: &[String]) -> Vec<Value> {
    let chart = chart();
    let mut args = vec![
        "template",
        "nsguard",
        chart.to_str().unwrap(),
        "-n",
        "nsguard-system",
    ];
    for s in set {
        args.extend(["--set", s.as_str()]);
    }
    documents(&helm_ok(&args, None))
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in {docs:#?}"))
}

/// The objects of a kustomize overlay, rendered by the control plane's kubectl.
fn kustomize(overlay: &str) -> Vec<Value> {
    let kubectl = LocalCluster::bin_dir()
        .expect("the control plane's executables")
        .join("kubectl");
    let dir = root().join("manifests/overlays").join(overlay);
    let out = Command::new(kubectl)
        .args(["kustomize", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    documents(&String::from_utf8_lossy(&out.stdout))
}

/// The configuration file a ConfigMap holds, parsed as nsguard parses it.
fn configuration(config_map: &Value) -> ::nsguard::config::Layer {
    let text = config_map["data"]["config.yaml"]
        .as_str()
        .unwrap_or_else(|| panic!("no config.yaml in {config_map}"));
    ::nsguard::config::Layer::parse(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The mode a ConfigMap's configuration sets.
fn configured_mode(config_map: &Value) -> &'static str {
    configuration(config_map)
        .mode
        .expect("the chart sets the mode")
        .as_str()
}

fn source_args(source: &str) -> Vec<String> {
    let mut set = vec![format!("certificates.source={source}")];
    if source == "existingSecret" {
        set.push("certificates.existingSecret.name=my-tls".into());
        set.push("certificates.existingSecret.caBundle=Q0EK".into());
    }
    set
}

#[test]
fn the_chart_lints() {
    let chart = chart();
    let out = helm_ok(&["lint", "--strict", chart.to_str().unwrap()], None);
    assert!(out.contains("0 chart(s) failed"), "{out}");
}

#[test]
fn every_certificate_source_and_mode_renders_what_the_manifests_say() {
    let rbac =
        documents(&std::fs::read_to_string(root().join("manifests/base/rbac.yaml")).unwrap());
    let rules = &find(&rbac, "ClusterRole", "nsguard")["rules"];
    for source in ["generate", "certManager", "existingSecret"] {
        for mode in ["enforce", "warn", "audit"] {
            let mut set = source_args(source);
            set.push(format!("mode={mode}"));
            let docs = template(&set);
            let what = format!("{source}/{mode}");
            let deployment = find(&docs, "Deployment", "nsguard");
            assert_eq!(
                configured_mode(find(&docs, "ConfigMap", "nsguard-config")),
                mode,
                "{what}"
            );
            let container = &deployment["spec"]["template"]["spec"]["containers"][0];
            assert_eq!(
                container["args"],
                json!(["serve", "--config", "/etc/nsguard/config.yaml"]),
                "{what}"
            );
            let hook = &find(&docs, "ValidatingWebhookConfiguration", "nsguard")["webhooks"][0];
            assert_eq!(hook["failurePolicy"], "Ignore", "{what}");
            assert_eq!(hook["sideEffects"], "None", "{what}");
            assert_eq!(hook["timeoutSeconds"], 10, "{what}");
            assert_eq!(hook["admissionReviewVersions"], json!(["v1"]), "{what}");
            assert_eq!(
                hook["namespaceSelector"]["matchExpressions"],
                json!([{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["nsguard-system"]}]),
                "{what}"
            );
            assert_eq!(
                find(&docs, "ClusterRole", "nsguard")["rules"],
                *rules,
                "{what}"
            );
            let config = find(&docs, "ValidatingWebhookConfiguration", "nsguard");
            let bundle = &hook["clientConfig"]["caBundle"];
            let secret_name =
                &deployment["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"];
            match source {
                "generate" => {
                    let secret = find(&docs, "Secret", "nsguard-tls");
                    assert_eq!(secret["type"], "kubernetes.io/tls");
                    assert!(bundle.as_str().is_some_and(|b| b.len() > 100), "{what}");
                    assert_eq!(secret["data"]["ca.crt"], *bundle, "{what}");
                    assert_eq!(*secret_name, "nsguard-tls");
                }
                "existingSecret" => {
                    assert_eq!(*bundle, "Q0EK", "{what}");
                    assert_eq!(*secret_name, "my-tls");
                    assert!(!docs.iter().any(|d| d["kind"] == "Secret"), "{what}");
                }
                _ => {
                    assert!(bundle.is_null(), "{what}");
                    assert_eq!(
                        config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
                        "nsguard-system/nsguard-ca",
                        "{what}"
                    );
                    assert_eq!(*secret_name, "nsguard-tls");
                }
            }
        }
    }
}

/// With the manifests' release name and namespace, the chart's objects carry the same specs
/// as the overlays' (labels aside), and neither has an object the other lacks: chart and
/// kustomize never drift apart.
#[test]
fn the_chart_and_the_overlays_render_the_same_objects() {
    for (overlay, source, extra) in [
        ("enforce", "generate", None),
        ("audit", "generate", Some("mode=audit")),
        ("cert-manager", "certManager", None),
        ("no-secrets", "generate", Some("secrets.check=false")),
    ] {
        let mut set = source_args(source);
        set.extend(extra.map(String::from));
        let chart = template(&set);
        let kust = kustomize(overlay);
        for c in &chart {
            let (kind, name) = (&c["kind"], &c["metadata"]["name"]);
            // The chart generates the serving pair; with kustomize the admin creates the
            // Secret (docs/install.md, "With kustomize").
            if *kind == "Secret" && *name == "nsguard-tls" {
                continue;
            }
            assert!(
                kust.iter()
                    .any(|k| k["kind"] == *kind && k["metadata"]["name"] == *name),
                "{overlay}: the chart's {kind} {name} is not in the overlay"
            );
        }
        for k in &kust {
            let (kind, name) = (k["kind"].as_str().unwrap(), &k["metadata"]["name"]);
            if kind == "Namespace" {
                // The chart installs into the release namespace (helm --create-namespace).
                continue;
            }
            let c = find(&chart, kind, name.as_str().unwrap());
            let what = format!("{overlay}: {kind} {name}");
            match kind {
                "Deployment" => {
                    let (cs, ks) = (
                        &c["spec"]["template"]["spec"],
                        &k["spec"]["template"]["spec"],
                    );
                    assert_eq!(c["spec"]["replicas"], k["spec"]["replicas"], "{what}");
                    assert_eq!(cs["securityContext"], ks["securityContext"], "{what}");
                    assert_eq!(cs["serviceAccountName"], ks["serviceAccountName"], "{what}");
                    assert_eq!(cs["volumes"], ks["volumes"], "{what}");
                    let (cc, kc) = (&cs["containers"][0], &ks["containers"][0]);
                    for field in [
                        "args",
                        "env",
                        "ports",
                        "readinessProbe",
                        "livenessProbe",
                        "resources",
                        "securityContext",
                        "volumeMounts",
                        "image",
                    ] {
                        assert_eq!(cc[field], kc[field], "{what}: {field}");
                    }
                }
                "Service" => assert_eq!(c["spec"]["ports"], k["spec"]["ports"], "{what}"),
                "PodDisruptionBudget" => assert_eq!(
                    c["spec"]["minAvailable"], k["spec"]["minAvailable"],
                    "{what}"
                ),
                "NetworkPolicy" => {
                    assert_eq!(c["spec"]["ingress"], k["spec"]["ingress"], "{what}");
                    assert_eq!(c["spec"]["policyTypes"], k["spec"]["policyTypes"], "{what}");
                }
                "ValidatingWebhookConfiguration" => {
                    let mut hook = c["webhooks"][0].clone();
                    hook["clientConfig"]
                        .as_object_mut()
                        .unwrap()
                        .remove("caBundle");
                    assert_eq!(hook, k["webhooks"][0], "{what}");
                    assert_eq!(
                        c["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
                        k["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
                        "{what}"
                    );
                }
                "ServiceAccount" => assert_eq!(
                    c["automountServiceAccountToken"], k["automountServiceAccountToken"],
                    "{what}"
                ),
                "ClusterRole" => assert_eq!(c["rules"], k["rules"], "{what}"),
                "ClusterRoleBinding" => {
                    assert_eq!(c["roleRef"], k["roleRef"], "{what}");
                    assert_eq!(c["subjects"], k["subjects"], "{what}");
                }
                "Issuer" | "Certificate" => assert_eq!(c["spec"], k["spec"], "{what}"),
                // The same configuration (comments and layout aside).
                "ConfigMap" => assert_eq!(configuration(c), configuration(k), "{what}"),
                other => panic!("{what}: {other} has no comparison here yet"),
            }
        }
    }
}

#[test]
fn the_schema_refuses_typos() {
    let chart = chart();
    for bad in [
        "mod=enforce",
        "mode=enforcing",
        "failurePolicy=Fial",
        "certificates.source=vault",
        "image.tagg=1",
    ] {
        let out = helm(
            &["template", "nsguard", chart.to_str().unwrap(), "--set", bad],
            None,
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad} was accepted");
        assert!(err.contains("schema"), "{bad}: {err}");
    }
}

#[test]
fn the_prometheus_rule_embeds_the_alert_rules_unchanged() {
    let original = std::fs::read_to_string(root().join("deploy/prometheus/nsguard-rules.yaml"));
    let copy = std::fs::read_to_string(chart().join("files/nsguard-rules.yaml"));
    assert_eq!(
        copy.unwrap(),
        original.unwrap(),
        "charts/nsguard/files/nsguard-rules.yaml must be a copy of deploy/prometheus/nsguard-rules.yaml"
    );
    let docs = template(&["prometheusRule.enabled=true".into()]);
    let rule = find(&docs, "PrometheusRule", "nsguard");
    let rules: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(root().join("deploy/prometheus/nsguard-rules.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(rule["spec"]["groups"], rules["groups"]);
    assert!(!docs.iter().any(|d| d["kind"] == "ServiceMonitor"));
    let docs = template(&["serviceMonitor.enabled=true".into()]);
    assert_eq!(
        find(&docs, "ServiceMonitor", "nsguard")["spec"]["endpoints"][0]["port"],
        "metrics"
    );
}

fn secret_data(cluster: &LocalCluster, ns: &str, name: &str) -> Value {
    let out = kubectl(
        cluster,
        &["get", "secret", name, "-n", ns, "-o", "json"],
        None,
    )
    .unwrap();
    serde_json::from_str::<Value>(&out).unwrap()["data"].clone()
}

fn b64(s: &Value) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s.as_str().unwrap())
        .unwrap()
}

/// nsguard, the real binary, serving the chart's certificate as the chart's ServiceAccount.
struct Local {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Local {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Installs the chart (warn mode), upgrades it (enforce mode) and checks that the generated
/// certificate survives the upgrade; then nsguard, run locally with that certificate and the
/// chart's ServiceAccount, is called by the API server through the chart's webhook
/// configuration and Service (an ExternalName to localhost: no pod can run here), and denies
/// a guarded deletion and allows a clean one.
#[tokio::test(flavor = "multi_thread")]
async fn install_upgrade_keeps_the_certificate_and_the_webhook_guards_through_the_service() {
    let _lock = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    let ns = create_namespace(&client, "nsguard-helm").await;
    let release = ns.clone();
    let id = random_suffix();
    let port = free_port().unwrap();
    let chart = chart();
    let port_set = format!("service.port={port}");
    let selector = format!("webhook.objectSelector.matchLabels.nsguard\\.io/e2e-helm={id}");
    let common = [
        "--set",
        "replicas=0",
        "--set",
        "service.externalName=localhost",
        "--set",
        port_set.as_str(),
        "--set",
        selector.as_str(),
    ];
    let kc = Some(cluster.kubeconfig());
    let mut install = vec![
        "install",
        release.as_str(),
        chart.to_str().unwrap(),
        "-n",
        ns.as_str(),
        "--set",
        "mode=warn",
    ];
    install.extend(common);
    helm_ok(&install, kc);
    let tls = format!("{release}-tls");
    let before = secret_data(cluster, &ns, &tls);
    let config_map = |cluster| -> Value {
        serde_json::from_str(
            &kubectl(
                cluster,
                &[
                    "get",
                    "configmap",
                    &format!("{release}-config"),
                    "-n",
                    &ns,
                    "-o",
                    "json",
                ],
                None,
            )
            .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(configured_mode(&config_map(cluster)), "warn");

    let mut upgrade = vec![
        "upgrade",
        release.as_str(),
        chart.to_str().unwrap(),
        "-n",
        ns.as_str(),
        "--set",
        "mode=enforce",
    ];
    upgrade.extend(common);
    helm_ok(&upgrade, kc);
    assert_eq!(configured_mode(&config_map(cluster)), "enforce");
    let after = secret_data(cluster, &ns, &tls);
    assert_eq!(
        before, after,
        "the upgrade changed the generated certificate"
    );
    let config: Value = serde_json::from_str(
        &kubectl(
            cluster,
            &[
                "get",
                "validatingwebhookconfiguration",
                &release,
                "-o",
                "json",
            ],
            None,
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        config["webhooks"][0]["clientConfig"]["caBundle"],
        after["ca.crt"]
    );
    assert_eq!(
        config["webhooks"][0]["namespaceSelector"]["matchExpressions"][0]["values"],
        json!([ns]),
        "the release namespace is not excluded"
    );

    // nsguard as the pods would run it: the Secret's pair, the chart's ServiceAccount.
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert, b64(&after["tls.crt"])).unwrap();
    std::fs::write(&key, b64(&after["tls.key"])).unwrap();
    let kubeconfig = cluster.service_account_kubeconfig(&ns, &release).unwrap();
    let admin_port = free_port().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_nsguard"))
        .arg("serve")
        .arg(format!("--listen=127.0.0.1:{port}"))
        .arg(format!("--admin-listen=127.0.0.1:{admin_port}"))
        .arg(format!("--tls-cert={}", cert.display()))
        .arg(format!("--tls-key={}", key.display()))
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .arg("--shutdown-delay=0s")
        .env("NSGUARD_MODE", "enforce")
        .env("NSGUARD_OWN_NAMESPACE", &ns)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("nsguard.log")).unwrap())
        .spawn()
        .unwrap();
    let local = Local { child, _dir: dir };
    eventually("nsguard /readyz", Duration::from_secs(60), || async {
        Ok(http_get(admin_port, "/readyz").filter(|(c, _)| *c == 200))
    })
    .await;

    // A guarded deletion: a custom resource whose finalizer no controller will ever remove.
    install_crd(cluster, "helm.nsguard.test", "widgets", "Widget").await;
    let labels = [(HELM_LABEL, id.clone())];
    let guarded = create_namespace_with(&client, "helm-guarded", &labels, &[]).await;
    kubectl(
        cluster,
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: helm.nsguard.test/v1\nkind: Widget\nmetadata:\n  name: w1\n  namespace: {guarded}\n  finalizers: [helm.nsguard.test/cleanup]\n"
        )),
    )
    .unwrap();
    denied(cluster, &guarded, "finalizer-controller").await;

    // A clean one, through the same webhook: allowed.
    let clean = create_namespace_with(&client, "helm-clean", &labels, &[]).await;
    allowed_and_gone(cluster, &client, &clean).await;
    // Both answers came from this nsguard, not from another test's.
    let metrics = http_get(admin_port, "/metrics").unwrap().1;
    for decision in ["denied", "allowed"] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("nsguard_admission_reviews_total{")
                    && l.contains(&format!("decision=\"{decision}\""))
                    && !l.ends_with(" 0")),
            "no {decision} review in {metrics}"
        );
    }

    clear_finalizers(cluster, "widgets.helm.nsguard.test", "w1", &guarded);
    allowed_and_gone(cluster, &client, &guarded).await;
    drop(local);
    helm_ok(
        &["uninstall", release.as_str(), "-n", ns.as_str(), "--wait"],
        kc,
    );
    let left = kubectl(
        cluster,
        &[
            "get",
            "validatingwebhookconfiguration,clusterrole",
            "-o",
            "name",
        ],
        None,
    )
    .unwrap();
    assert!(!left.contains(&release), "helm uninstall left {left}");
    kubectl(cluster, &["delete", "namespace", &ns, "--wait=false"], None).unwrap();
    wait_gone(&client, &ns).await;
}

/// The README's Helm install block, run as printed (helm and kubectl on the PATH), installs
/// every object; `helm uninstall` removes the cluster-scoped ones again.
#[tokio::test(flavor = "multi_thread")]
async fn the_readme_helm_install_works_as_printed() {
    // The release's webhook sees every namespace deletion (failing open: no pod runs here).
    let _lock = CLUSTER_WIDE.write().await;
    let (cluster, client) = cluster().await;
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let block = readme
        .split_once("<!-- helm-install -->\n```sh\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(block, _)| block.to_string())
        .expect("the Helm install block in the README");
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(chart().parent().unwrap(), dir.path().join("charts")).unwrap();
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &block])
        .current_dir(dir.path())
        .env("KUBECONFIG", cluster.kubeconfig())
        .env("HELM_CACHE_HOME", dir.path().join("cache"))
        .env("HELM_CONFIG_HOME", dir.path().join("config"))
        .env("HELM_DATA_HOME", dir.path().join("data"))
        .env(
            "PATH",
            format!(
                "{}:{}:{}",
                helm_bin().parent().unwrap().display(),
                cluster.bin_path().display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .output()
        .unwrap();
    let installed = kubectl(
        cluster,
        &[
            "get",
            "serviceaccount,deployment,service,poddisruptionbudget,networkpolicy,secret",
            "-n",
            "nsguard-system",
            "-o",
            "name",
        ],
        None,
    );
    let hook = kubectl(
        cluster,
        &[
            "get",
            "validatingwebhookconfiguration",
            "nsguard",
            "-o",
            "json",
        ],
        None,
    );
    let kc = Some(cluster.kubeconfig());
    let _ = helm(
        &["uninstall", "nsguard", "-n", "nsguard-system", "--wait"],
        kc,
    );
    let _ = kubectl(
        cluster,
        &["delete", "namespace", "nsguard-system", "--wait=false"],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let installed = installed.unwrap();
    for object in [
        "serviceaccount/nsguard",
        "deployment.apps/nsguard",
        "service/nsguard",
        "poddisruptionbudget.policy/nsguard",
        "networkpolicy.networking.k8s.io/nsguard",
        "secret/nsguard-tls",
    ] {
        assert!(
            installed.contains(object),
            "{object} missing in {installed}"
        );
    }
    let hook: Value = serde_json::from_str(&hook.unwrap()).unwrap();
    assert!(hook["webhooks"][0]["clientConfig"]["caBundle"].is_string());
    let left = kubectl(
        cluster,
        &[
            "get",
            "validatingwebhookconfiguration,clusterrole",
            "-o",
            "name",
        ],
        None,
    )
    .unwrap();
    assert!(!left.contains("/nsguard\n"), "helm uninstall left {left}");
    wait_gone(&client, "nsguard-system").await;
}

/// `config` in the values goes into the configuration file beside `mode` and the Secrets
/// switch, and reads back as nsguard reads it.
#[test]
fn the_config_value_goes_into_the_configuration_file() {
    use ::nsguard::checks::Setting;
    use ::nsguard::checks::report::CheckId;
    let mut set = source_args("generate");
    set.extend([
        "mode=audit".to_string(),
        "secrets.check=false".to_string(),
        "config.checks.finalizer-controller=warn".to_string(),
        "config.backend_grace=1m30s".to_string(),
    ]);
    let layer = configuration(find(&template(&set), "ConfigMap", "nsguard-config"));
    assert_eq!(layer.mode, Some(::nsguard::policy::Mode::Audit));
    assert_eq!(
        layer.checks.get(&CheckId::FinalizerController),
        Some(&Setting::Warn)
    );
    assert_eq!(layer.backend_grace, Some(Duration::from_secs(90)));
    assert_eq!(
        layer.skip_resources,
        Some(["secrets".to_string()].into_iter().collect())
    );
}
