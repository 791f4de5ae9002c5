//! The Helm chart (`charts/nsguard`): it lints, renders for every certificate source and
//! mode, its RBAC and its objects equal the kustomize manifests' (parsed, so the two cannot
//! drift), every knob renders where it should and is in the schema, the schema refuses a typo
//! and accepts `global` (use as a subchart), and on the real control plane the chart's first
//! version, installed and then upgraded to this one, keeps its generated certificate and keeps
//! guarding deletions through its own webhook configuration and Service, and `helm test`
//! passes.
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
    let args: Vec<&str> = set.iter().flat_map(|s| ["--set", s.as_str()]).collect();
    template_with(&args)
}

/// `helm template` of release `nsguard` in `nsguard-system` with extra helm arguments.
fn template_with(extra: &[&str]) -> Vec<Value> {
    let chart = chart();
    let mut args = vec![
        "template",
        "nsguard",
        chart.to_str().unwrap(),
        "-n",
        "nsguard-system",
    ];
    args.extend(extra);
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

fn env_value<'a>(deployment: &'a Value, name: &str) -> &'a Value {
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .map(|e| &e["value"])
        .unwrap_or_else(|| panic!("no env {name} in {deployment}"))
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

/// The default render holds no generated material (no genCA, no lookup), so `helm template`
/// with the same values gives the same text every time: a GitOps tool (Argo CD, Flux) sees
/// no drift. `tests/e2e_certs.rs` applies such a render twice on the control plane.
#[test]
fn the_default_render_is_the_same_every_time() {
    let render = || {
        let chart = chart();
        helm_ok(
            &[
                "template",
                "nsguard",
                chart.to_str().unwrap(),
                "-n",
                "nsguard-system",
            ],
            None,
        )
    };
    let first = render();
    assert_eq!(first, render(), "two renders of the defaults differ");
    assert!(
        !first.contains("BEGIN"),
        "the default render carries key material"
    );
    let docs = documents(&first);
    assert!(!docs.iter().any(|d| d["kind"] == "Secret"));
    let hook = &find(&docs, "ValidatingWebhookConfiguration", "nsguard")["webhooks"][0];
    assert!(hook["clientConfig"]["caBundle"].is_null());
}

#[test]
fn every_certificate_source_and_mode_renders_what_the_manifests_say() {
    let rbac =
        documents(&std::fs::read_to_string(root().join("manifests/base/rbac.yaml")).unwrap());
    let rules = &find(&rbac, "ClusterRole", "nsguard")["rules"];
    for source in ["managed", "generate", "certManager", "existingSecret"] {
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
            assert_eq!(
                find(&docs, "Role", "nsguard-leader-election")["rules"],
                find(&rbac, "Role", "nsguard-leader-election")["rules"],
                "{what}"
            );
            let config = find(&docs, "ValidatingWebhookConfiguration", "nsguard");
            let bundle = &hook["clientConfig"]["caBundle"];
            let secret_name =
                &deployment["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"];
            let managed_rbac = docs.iter().any(|d| {
                d["metadata"]["name"] == "nsguard-certificates"
                    && ["Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"]
                        .contains(&d["kind"].as_str().unwrap_or_default())
            });
            assert_eq!(managed_rbac, source == "managed", "{what}");
            match source {
                "managed" => {
                    // Nothing generated: no Secret, no caBundle, nothing mounted; nsguard is
                    // told its Secret, webhook configuration and names.
                    assert!(!docs.iter().any(|d| d["kind"] == "Secret"), "{what}");
                    assert!(bundle.is_null(), "{what}");
                    let volumes = &deployment["spec"]["template"]["spec"]["volumes"];
                    assert_eq!(volumes.as_array().unwrap().len(), 1, "{what}: {volumes}");
                    assert_eq!(
                        env_value(deployment, "NSGUARD_MANAGE_CERTIFICATES"),
                        "nsguard-certs"
                    );
                    assert_eq!(
                        env_value(deployment, "NSGUARD_WEBHOOK_CONFIGURATION"),
                        "nsguard"
                    );
                    assert_eq!(
                        env_value(deployment, "NSGUARD_CERTIFICATE_DNS"),
                        "nsguard.nsguard-system.svc,nsguard.nsguard-system.svc.cluster.local"
                    );
                    let role = docs
                        .iter()
                        .find(|d| {
                            d["kind"] == "Role" && d["metadata"]["name"] == "nsguard-certificates"
                        })
                        .unwrap();
                    assert_eq!(
                        role["rules"],
                        json!([
                            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
                            {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["nsguard-certs"], "verbs": ["get", "update", "patch"]},
                        ]),
                        "{what}"
                    );
                    assert_eq!(
                        find(&docs, "ClusterRole", "nsguard-certificates")["rules"],
                        json!([{"apiGroups": ["admissionregistration.k8s.io"], "resources": ["validatingwebhookconfigurations"], "resourceNames": ["nsguard"], "verbs": ["get", "update", "patch"]}]),
                        "{what}"
                    );
                }
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
            // `helm test`'s pod is not installed; kustomize has no such thing.
            if c["metadata"]["annotations"]["helm.sh/hook"] == "test" {
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
                    // The same spread; each selects its own pods' labels (labels aside).
                    let spread = |spec: &Value| -> Value {
                        let mut v = spec["topologySpreadConstraints"].clone();
                        for c in v.as_array_mut().into_iter().flatten() {
                            c.as_object_mut().unwrap().remove("labelSelector");
                        }
                        v
                    };
                    assert_eq!(spread(cs), spread(ks), "{what}");
                    let (cc, kc) = (&cs["containers"][0], &ks["containers"][0]);
                    // The same variables; kustomize's strategic merge puts an overlay's
                    // first. Both define NSGUARD_OWN_NAMESPACE before the variable that
                    // refers to it, which is all the order means to Kubernetes.
                    let by_name = |env: &Value| -> Vec<(String, String)> {
                        let mut v: Vec<(String, String)> = env
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|e| (e["name"].to_string(), e.to_string()))
                            .collect();
                        v.sort();
                        v
                    };
                    assert_eq!(by_name(&cc["env"]), by_name(&kc["env"]), "{what}: env");
                    for field in [
                        "args",
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
                    let hooks = c["webhooks"].as_array().unwrap();
                    assert_eq!(
                        hooks.len(),
                        k["webhooks"].as_array().unwrap().len(),
                        "{what}"
                    );
                    for (i, hook) in hooks.iter().enumerate() {
                        let mut hook = hook.clone();
                        hook["clientConfig"]
                            .as_object_mut()
                            .unwrap()
                            .remove("caBundle");
                        assert_eq!(hook, k["webhooks"][i], "{what}: webhooks[{i}]");
                    }
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
                "ClusterRole" | "Role" => assert_eq!(c["rules"], k["rules"], "{what}"),
                "ClusterRoleBinding" | "RoleBinding" => {
                    assert_eq!(c["roleRef"], k["roleRef"], "{what}");
                    assert_eq!(c["subjects"], k["subjects"], "{what}");
                }
                "Issuer" | "Certificate" => assert_eq!(c["spec"], k["spec"], "{what}"),
                // The same rules, the same defaults (the groups list is the chart's value).
                "ValidatingAdmissionPolicy" | "ValidatingAdmissionPolicyBinding" => {
                    assert_eq!(c["spec"], k["spec"], "{what}")
                }
                // The same configuration (comments and layout aside).
                "ConfigMap" => assert_eq!(configuration(c), configuration(k), "{what}"),
                other => panic!("{what}: {other} has no comparison here yet"),
            }
        }
    }
}

/// The knobs users of other charts reach for first: each renders where Kubernetes reads it,
/// and each is in the values schema.
#[test]
fn every_convention_knob_renders_and_is_in_the_schema() {
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(chart().join("values.schema.json")).unwrap())
            .unwrap();
    for path in [
        "extraArgs",
        "extraEnv",
        "nodeSelector",
        "tolerations",
        "affinity",
        "topologySpreadConstraints",
        "priorityClassName",
        "imagePullSecrets",
        "podAnnotations",
        "podLabels",
        "serviceAccount.create",
        "serviceAccount.name",
        "serviceAccount.annotations",
        "serviceMonitor.labels",
        "prometheusRule.labels",
        "grafanaDashboard.enabled",
        "grafanaDashboard.labels",
        "grafanaDashboard.annotations",
        "grafanaDashboard.namespace",
        "test.enabled",
        "global",
    ] {
        let mut node = &schema;
        for key in path.split('.') {
            node = &node["properties"][key];
        }
        assert!(
            node["type"].is_string(),
            "{path} is not in values.schema.json"
        );
    }

    let docs = template_with(&[
        "--set-json",
        r#"extraArgs=["--check=finalizer-stuck=warn","--bypass-group=platform"]"#,
        "--set-json",
        r#"extraEnv=[{"name":"RUST_LOG","value":"debug"},{"name":"NODE","valueFrom":{"fieldRef":{"fieldPath":"spec.nodeName"}}}]"#,
        "--set-json",
        r#"nodeSelector={"node-role.kubernetes.io/infra":""}"#,
        "--set-json",
        r#"tolerations=[{"key":"infra","operator":"Exists","effect":"NoSchedule"}]"#,
        "--set-json",
        r#"affinity={"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":{"nodeSelectorTerms":[{"matchExpressions":[{"key":"zone","operator":"In","values":["a"]}]}]}}}"#,
        "--set-json",
        r#"topologySpreadConstraints=[{"maxSkew":1,"topologyKey":"topology.kubernetes.io/zone","whenUnsatisfiable":"DoNotSchedule"},{"maxSkew":2,"topologyKey":"kubernetes.io/hostname","whenUnsatisfiable":"ScheduleAnyway","labelSelector":{"matchLabels":{"own":"selector"}}}]"#,
        "--set",
        "priorityClassName=system-cluster-critical",
        "--set-json",
        r#"imagePullSecrets=[{"name":"regcred"}]"#,
        "--set-json",
        r#"podAnnotations={"example.com/scrape":"true"}"#,
        "--set-json",
        r#"podLabels={"team":"platform"}"#,
        "--set-json",
        r#"serviceAccount={"create":true,"name":"guard","annotations":{"iam.example.com/role":"nsguard"}}"#,
        "--set",
        "serviceMonitor.enabled=true",
        "--set",
        "serviceMonitor.labels.release=kps",
        "--set",
        "prometheusRule.enabled=true",
        "--set",
        "prometheusRule.labels.release=kps",
        "--set",
        "grafanaDashboard.enabled=true",
        "--set",
        "grafanaDashboard.namespace=monitoring",
        "--set",
        "grafanaDashboard.annotations.grafana_folder=Kubernetes",
        "--set",
        "global.imageRegistry=registry.example.com",
    ]);
    let deployment = find(&docs, "Deployment", "nsguard");
    let pod = &deployment["spec"]["template"];
    let spec = &pod["spec"];
    let container = &spec["containers"][0];
    assert_eq!(
        container["args"],
        json!([
            "serve",
            "--config",
            "/etc/nsguard/config.yaml",
            "--check=finalizer-stuck=warn",
            "--bypass-group=platform"
        ])
    );
    assert_eq!(env_value(deployment, "RUST_LOG"), "debug");
    let env = container["env"].as_array().unwrap();
    assert!(
        env.iter()
            .any(|e| e["name"] == "NODE"
                && e["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"),
        "{env:?}"
    );
    assert_eq!(
        spec["nodeSelector"],
        json!({"node-role.kubernetes.io/infra": ""})
    );
    assert_eq!(spec["tolerations"][0]["key"], "infra");
    assert_eq!(
        spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            [0]["matchExpressions"][0]["key"],
        "zone"
    );
    let spread = spec["topologySpreadConstraints"].as_array().unwrap();
    assert_eq!(spread.len(), 2);
    assert_eq!(spread[0]["topologyKey"], "topology.kubernetes.io/zone");
    assert_eq!(spread[0]["whenUnsatisfiable"], "DoNotSchedule");
    assert_eq!(
        spread[0]["labelSelector"]["matchLabels"],
        json!({"app.kubernetes.io/name": "nsguard", "app.kubernetes.io/instance": "nsguard"}),
        "a constraint without a selector gets the pods' own"
    );
    assert_eq!(
        spread[1]["labelSelector"]["matchLabels"],
        json!({"own": "selector"}),
        "a constraint's own selector is kept"
    );
    assert_eq!(spec["priorityClassName"], "system-cluster-critical");
    assert_eq!(spec["imagePullSecrets"], json!([{"name": "regcred"}]));
    assert_eq!(pod["metadata"]["annotations"]["example.com/scrape"], "true");
    assert_eq!(pod["metadata"]["labels"]["team"], "platform");
    assert_eq!(
        pod["metadata"]["labels"]["app.kubernetes.io/name"], "nsguard",
        "the selector labels stay"
    );
    assert_eq!(spec["serviceAccountName"], "guard");
    let account = find(&docs, "ServiceAccount", "guard");
    assert_eq!(
        account["metadata"]["annotations"]["iam.example.com/role"],
        "nsguard"
    );
    assert_eq!(
        find(&docs, "ClusterRoleBinding", "nsguard")["subjects"],
        json!([{"kind": "ServiceAccount", "name": "guard", "namespace": "nsguard-system"}])
    );
    let monitor = find(&docs, "ServiceMonitor", "nsguard");
    assert_eq!(monitor["metadata"]["labels"]["release"], "kps");
    assert_eq!(
        monitor["metadata"]["labels"]["app.kubernetes.io/name"],
        "nsguard"
    );
    assert_eq!(monitor["spec"]["jobLabel"], "app.kubernetes.io/name");
    assert_eq!(
        find(&docs, "PrometheusRule", "nsguard")["metadata"]["labels"]["release"],
        "kps"
    );
    let dashboard = find(&docs, "ConfigMap", "nsguard-dashboard");
    assert_eq!(dashboard["metadata"]["namespace"], "monitoring");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(
        dashboard["metadata"]["annotations"]["grafana_folder"],
        "Kubernetes"
    );
    let json_text = dashboard["data"]["nsguard.json"].as_str().unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(json_text).unwrap(),
        serde_json::from_str::<Value>(
            &std::fs::read_to_string(root().join("deploy/grafana/nsguard.json")).unwrap()
        )
        .unwrap(),
        "the ConfigMap holds the dashboard"
    );
    // The test pod runs as the same ServiceAccount, scheduled as the webhook's pods.
    let test = find(&docs, "Pod", "nsguard-test");
    assert_eq!(test["spec"]["serviceAccountName"], "guard");
    assert_eq!(test["spec"]["nodeSelector"], spec["nodeSelector"]);
    assert_eq!(test["spec"]["imagePullSecrets"], spec["imagePullSecrets"]);

    // Defaults: the webhook pods spread over nodes, nothing else is set, and the
    // ServiceAccount is the release's.
    let docs = template(&[]);
    let spec = &find(&docs, "Deployment", "nsguard")["spec"]["template"]["spec"];
    for absent in [
        "nodeSelector",
        "tolerations",
        "affinity",
        "priorityClassName",
        "imagePullSecrets",
    ] {
        assert!(spec[absent].is_null(), "{absent}: {}", spec[absent]);
    }
    assert_eq!(
        spec["topologySpreadConstraints"][0]["topologyKey"],
        "kubernetes.io/hostname"
    );
    assert_eq!(spec["serviceAccountName"], "nsguard");
    // No dashboard ConfigMap by default: only the configuration's.
    assert!(
        !docs
            .iter()
            .any(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] != "nsguard-config")
    );
    let docs = template_with(&["--set-json", "topologySpreadConstraints=[]"]);
    assert!(
        find(&docs, "Deployment", "nsguard")["spec"]["template"]["spec"]
            ["topologySpreadConstraints"]
            .is_null()
    );

    // A ServiceAccount made elsewhere: none rendered, the pods and the binding use its name.
    let docs = template(&[
        "serviceAccount.create=false".into(),
        "serviceAccount.name=ops".into(),
    ]);
    assert!(!docs.iter().any(|d| d["kind"] == "ServiceAccount"));
    assert_eq!(
        find(&docs, "Deployment", "nsguard")["spec"]["template"]["spec"]["serviceAccountName"],
        "ops"
    );
    assert_eq!(
        find(&docs, "ClusterRoleBinding", "nsguard")["subjects"][0]["name"],
        "ops"
    );
    let docs = template(&["rbac.create=false".into()]);
    assert!(!docs.iter().any(|d| d["kind"] == "ClusterRole"));
    assert!(docs.iter().any(|d| d["kind"] == "ServiceAccount"));
}

/// The `helm test` hook: a pod running `nsguard check <release namespace>` with the release's
/// image and ServiceAccount, never left behind once it passed.
#[test]
fn the_test_hook_checks_the_release_namespace_as_the_release() {
    let docs = template(&["secrets.check=false".into()]);
    let pod = find(&docs, "Pod", "nsguard-test");
    assert_eq!(pod["metadata"]["annotations"]["helm.sh/hook"], "test");
    assert!(
        pod["metadata"]["annotations"]["helm.sh/hook-delete-policy"]
            .as_str()
            .unwrap()
            .contains("before-hook-creation")
    );
    assert_eq!(pod["spec"]["restartPolicy"], "Never");
    assert_eq!(pod["spec"]["serviceAccountName"], "nsguard");
    let container = &pod["spec"]["containers"][0];
    let webhook = &find(&docs, "Deployment", "nsguard")["spec"]["template"]["spec"];
    assert_eq!(container["image"], webhook["containers"][0]["image"]);
    assert_eq!(container["args"], json!(["check", "nsguard-system"]));
    assert_eq!(
        container["env"],
        json!([{"name": "NSGUARD_SKIP_RESOURCES", "value": "secrets"}]),
        "without Secrets in its RBAC, the check skips them as the webhook does"
    );
    assert_eq!(pod["spec"]["securityContext"], webhook["securityContext"]);
    assert_eq!(
        container["securityContext"],
        webhook["containers"][0]["securityContext"]
    );
    let docs = template(&["test.enabled=false".into()]);
    assert!(!docs.iter().any(|d| d["kind"] == "Pod"));
}

/// The knobs for clusters whose API server cannot reach pod IPs (`hostNetwork`, the ports),
/// for log collectors (`logFormat`) and for who may scrape (`networkPolicy.metricsFrom`):
/// each renders where Kubernetes and nsguard read it; the defaults render as the manifests.
#[test]
fn ports_host_network_log_format_and_scrape_sources_render() {
    let defaults = template(&[]);
    let deployment = find(&defaults, "Deployment", "nsguard");
    let pod = &deployment["spec"]["template"]["spec"];
    assert!(
        pod["hostNetwork"].is_null() && pod["dnsPolicy"].is_null(),
        "{pod}"
    );
    let args = pod["containers"][0]["args"].as_array().unwrap();
    assert!(
        !args.iter().any(|a| {
            let a = a.as_str().unwrap();
            a.starts_with("--listen")
                || a.starts_with("--admin-listen")
                || a.starts_with("--log-format")
        }),
        "{args:?}"
    );

    let docs = template(&[
        "hostNetwork=true".into(),
        "webhook.port=9443".into(),
        "admin.port=9080".into(),
        "logFormat=json".into(),
    ]);
    let deployment = find(&docs, "Deployment", "nsguard");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["dnsPolicy"], "ClusterFirstWithHostNet");
    let container = &pod["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    for wanted in [
        "--listen=0.0.0.0:9443",
        "--admin-listen=0.0.0.0:9080",
        "--log-format=json",
    ] {
        assert!(args.contains(&wanted), "{wanted} not in {args:?}");
    }
    // nsguard parses what the chart passes it.
    let parsed = ::nsguard::cli::Cli::parse_as(
        "nsguard",
        std::iter::once("nsguard").chain(args.iter().copied()),
    )
    .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert_eq!(parsed.log_format, ::nsguard::cli::LogFormat::Json);
    let ::nsguard::cli::Command::Serve(serve) = parsed.command else {
        panic!("{args:?}")
    };
    assert_eq!(serve.listen.port(), 9443);
    assert_eq!(serve.admin_listen.port(), 9080);
    assert_eq!(
        container["ports"],
        serde_json::json!([
            {"name": "webhook", "containerPort": 9443},
            {"name": "admin", "containerPort": 9080}
        ])
    );
    // The Service sends to the named ports, wherever they are.
    let service = find(&docs, "Service", "nsguard");
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "webhook");
    assert_eq!(service["spec"]["ports"][1]["targetPort"], "admin");
    let policy = find(&docs, "NetworkPolicy", "nsguard");
    assert_eq!(policy["spec"]["ingress"][0]["ports"][0]["port"], 9443);
    assert_eq!(policy["spec"]["ingress"][1]["ports"][0]["port"], 9080);

    // Scrapes from a named namespace; none at all drops the rule (a rule without `from`
    // would admit everyone).
    let peers = r#"networkPolicy.metricsFrom=[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"monitoring"}}},{"ipBlock":{"cidr":"10.0.0.0/8"}}]"#;
    let docs = template_with(&["--set-json", peers]);
    let ingress = &find(&docs, "NetworkPolicy", "nsguard")["spec"]["ingress"];
    assert_eq!(
        ingress[1]["from"],
        serde_json::json!([
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}},
            {"ipBlock": {"cidr": "10.0.0.0/8"}}
        ])
    );
    let docs = template_with(&["--set-json", "networkPolicy.metricsFrom=[]"]);
    let ingress = find(&docs, "NetworkPolicy", "nsguard")["spec"]["ingress"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(ingress.len(), 1, "{ingress:?}");
    assert_eq!(ingress[0]["ports"][0]["port"], 8443);
    assert!(ingress[0]["from"].is_null());

    for bad in [
        "logFormat=yaml",
        "webhook.port=0",
        "admin.port=70000",
        "hostNetwork=maybe",
    ] {
        let out = helm(
            &[
                "template",
                "nsguard",
                chart().to_str().unwrap(),
                "--set",
                bad,
            ],
            None,
        );
        assert!(!out.status.success(), "{bad} was accepted");
    }
    let out = helm(
        &[
            "template",
            "nsguard",
            chart().to_str().unwrap(),
            "--set-json",
            r#"networkPolicy.metricsFrom=[{"namespaceSelectr":{}}]"#,
        ],
        None,
    );
    assert!(!out.status.success(), "a misspelt peer was accepted");
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
        "extraArgs=--verbose",
        "serviceAccount.nmae=x",
        "podLabels.team=1",
        "topologySpreadConstraints[0].maxSkew=0",
        "grafanaDashboard.label.x=1",
    ] {
        let out = helm(
            &["template", "nsguard", chart.to_str().unwrap(), "--set", bad],
            None,
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad} was accepted");
        assert!(err.contains("schema"), "{bad}: {err}");
    }
    // What a parent chart passes its subcharts.
    let docs = template(&[
        "global.imageRegistry=r.example.com".into(),
        "global.x.y=1".into(),
    ]);
    find(&docs, "Deployment", "nsguard");
}

#[test]
fn the_dashboard_config_map_holds_the_dashboard_unchanged() {
    let original = std::fs::read_to_string(root().join("deploy/grafana/nsguard.json"));
    let copy = std::fs::read_to_string(chart().join("files/nsguard-dashboard.json"));
    assert_eq!(
        copy.unwrap(),
        original.unwrap(),
        "charts/nsguard/files/nsguard-dashboard.json must be a copy of deploy/grafana/nsguard.json"
    );
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

/// The chart as first released: the commit that added `charts/nsguard/Chart.yaml`, unpacked
/// from git into `dir`. The upgrade test starts from it.
fn first_chart(dir: &Path) -> PathBuf {
    let git = |args: &[&str]| -> Output {
        let out = Command::new("git")
            .args(args)
            .current_dir(root())
            .output()
            .expect("running git");
        assert!(out.status.success(), "git {args:?}: {out:?}");
        out
    };
    let log = git(&[
        "log",
        "--diff-filter=A",
        "--format=%H",
        "--",
        "charts/nsguard/Chart.yaml",
    ]);
    let log = String::from_utf8_lossy(&log.stdout).into_owned();
    let first = log.lines().last().expect("a commit that added the chart");
    let tar = git(&["archive", "--format=tar", first, "charts/nsguard"]);
    let mut child = Command::new("tar")
        .args(["-x", "-C"])
        .arg(dir)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), &tar.stdout).unwrap();
    assert!(child.wait().unwrap().success());
    dir.join("charts/nsguard")
}

/// Polls server dry runs of deleting `ns` until nsguard denies with `check`; deletes nothing.
async fn dry_run_denied(cluster: &LocalCluster, ns: &str, check: &str) {
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
            anyhow::bail!("not (yet) denied by {check}: {err}")
        },
    )
    .await;
}

/// Runs `helm test` and plays the kubelet for its pod (the local control plane runs no
/// container): runs the pod's own command and arguments with the nsguard built here, as the
/// pod's ServiceAccount, and reports its exit code as the pod's. Returns helm's output and
/// the command's.
async fn helm_test(cluster: &LocalCluster, release: &str, ns: &str) -> (Output, Output) {
    let home = tempfile::tempdir().unwrap();
    let mut helm_test = Command::new(helm_bin())
        .args(["test", release, "-n", ns, "--timeout", "2m"])
        .env("KUBECONFIG", cluster.kubeconfig())
        .env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_DATA_HOME", home.path().join("data"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pod_name = format!("{release}-test");
    // Once the fake kubelet reports it Running, as a kubelet would before its container ends.
    let pod: Value = eventually(
        "the helm test pod to run",
        Duration::from_secs(60),
        || async {
            let out = kubectl_output(
                cluster,
                &["get", "pod", &pod_name, "-n", ns, "-o", "json"],
                None,
            )?;
            if !out.status.success() {
                return Ok(None);
            }
            let pod: Value = serde_json::from_slice(&out.stdout)?;
            Ok((pod["status"]["phase"] == "Running").then_some(pod))
        },
    )
    .await;
    let spec = &pod["spec"];
    let container = &spec["containers"][0];
    let account = spec["serviceAccountName"].as_str().unwrap();
    let kubeconfig = cluster.service_account_kubeconfig(ns, account).unwrap();
    let mut check = Command::new(env!("CARGO_BIN_EXE_nsguard"));
    check.env("KUBECONFIG", &kubeconfig);
    for arg in container["args"].as_array().unwrap() {
        check.arg(arg.as_str().unwrap());
    }
    for env in container["env"].as_array().into_iter().flatten() {
        check.env(
            env["name"].as_str().unwrap(),
            env["value"].as_str().unwrap(),
        );
    }
    let ran = check.output().unwrap();
    let code = ran.status.code().unwrap_or(-1);
    let now = "2026-01-01T00:00:00Z";
    let phase = if code == 0 { "Succeeded" } else { "Failed" };
    let status = json!({"status": {
        "phase": phase,
        "containerStatuses": [{
            "name": container["name"], "image": container["image"], "imageID": "",
            "ready": false, "restartCount": 0, "started": false,
            "state": {"terminated": {"exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" },
                                     "startedAt": now, "finishedAt": now}},
        }],
    }});
    eventually("the test pod's status", Duration::from_secs(30), || async {
        let out = kubectl_output(
            cluster,
            &[
                "patch",
                "pod",
                &pod_name,
                "-n",
                ns,
                "--subresource=status",
                "--type=merge",
                "-p",
                &status.to_string(),
            ],
            None,
        )?;
        Ok(out.status.success().then_some(()))
    })
    .await;
    let until = std::time::Instant::now() + Duration::from_secs(150);
    let done = loop {
        if let Some(status) = helm_test.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < until,
            "helm test did not finish"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    use std::io::Read;
    helm_test
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut stdout)
        .unwrap();
    helm_test
        .stderr
        .take()
        .unwrap()
        .read_to_end(&mut stderr)
        .unwrap();
    (
        Output {
            status: done,
            stdout,
            stderr,
        },
        ran,
    )
}

/// The chart's first version is installed (warn mode) and guards deletions through its
/// webhook configuration and Service, served by nsguard run locally with the chart's
/// certificate and ServiceAccount (an ExternalName Service to localhost: no pod runs here).
/// Upgraded to this chart (enforce mode), the certificate, the caBundle and the Service stay,
/// so the same nsguard keeps answering: it denies the guarded deletion again and allows a
/// clean one. Then `helm test` passes, and `helm uninstall` removes the cluster-wide objects.
#[tokio::test(flavor = "multi_thread")]
async fn upgrade_from_the_first_chart_keeps_the_webhook_serving_and_helm_test_passes() {
    let _lock = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    let ns = create_namespace(&client, "nsguard-helm").await;
    let release = ns.clone();
    let id = random_suffix();
    let port = free_port().unwrap();
    let chart = chart();
    let old = tempfile::tempdir().unwrap();
    let first = first_chart(old.path());
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
        first.to_str().unwrap(),
        "-n",
        ns.as_str(),
        "--set",
        "mode=warn",
    ];
    install.extend(common);
    helm_ok(&install, kc);
    let tls = format!("{release}-tls");
    let before = secret_data(cluster, &ns, &tls);
    let deployment = |cluster| -> Value {
        serde_json::from_str(
            &kubectl(
                cluster,
                &["get", "deployment", &release, "-n", &ns, "-o", "json"],
                None,
            )
            .unwrap(),
        )
        .unwrap()
    };
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
    // The first chart passed the mode in the environment.
    assert_eq!(env_value(&deployment(cluster), "NSGUARD_MODE"), "warn");

    // nsguard as the pods would run it: the Secret's pair, the chart's ServiceAccount.
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert, b64(&before["tls.crt"])).unwrap();
    std::fs::write(&key, b64(&before["tls.key"])).unwrap();
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
    // Through the first chart's webhook configuration and Service.
    dry_run_denied(cluster, &guarded, "finalizer-controller").await;

    let mut upgrade = vec![
        "upgrade",
        release.as_str(),
        chart.to_str().unwrap(),
        "-n",
        ns.as_str(),
        "--set",
        "mode=enforce",
        // The first chart generated its certificate; this upgrade keeps that source (a
        // switch to `managed` hands the caBundle to nsguard: docs/install.md).
        "--set",
        "certificates.source=generate",
    ];
    upgrade.extend(common);
    let upgraded = helm_ok(&upgrade, kc);
    assert!(upgraded.contains("NOTES:"), "{upgraded}");
    assert!(upgraded.contains("in enforce mode"), "{upgraded}");
    let deployed = deployment(cluster);
    // This chart: in the configuration file, mounted from its ConfigMap.
    assert_eq!(configured_mode(&config_map(cluster)), "enforce");
    assert!(
        deployed["metadata"]["labels"]["helm.sh/chart"]
            .as_str()
            .is_some_and(|c| c.ends_with(&chart_version())),
        "not upgraded to this chart: {}",
        deployed["metadata"]["labels"]
    );
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

    // The same nsguard, still serving through the upgraded release: it denies the guarded
    // deletion and allows a clean one.
    denied(cluster, &guarded, "finalizer-controller").await;
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

    // helm test: `nsguard check <release namespace>` as the release's ServiceAccount.
    let (tested, check) = helm_test(cluster, &release, &ns).await;
    assert!(
        check.status.success(),
        "the test pod's command failed: {}\n{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(
        tested.status.success(),
        "helm test: {}\n{}",
        String::from_utf8_lossy(&tested.stdout),
        String::from_utf8_lossy(&tested.stderr)
    );
    let report = String::from_utf8_lossy(&tested.stdout);
    assert!(report.contains("Phase:          Succeeded"), "{report}");

    clear_finalizers(cluster, "widgets.helm.nsguard.test", "w1", &guarded);
    allowed_and_gone(cluster, &client, &guarded).await;
    // The alert rules read kube-apiserver's own counts of this webhook's calls: it labels
    // them as deploy/prometheus/nsguard-rules.yaml expects. A denial was counted above; with
    // nsguard stopped, the next deletion fails open (failurePolicy Ignore) and is counted.
    drop(local);
    let unguarded = create_namespace_with(&client, "helm-unguarded", &labels, &[]).await;
    allowed_and_gone(cluster, &client, &unguarded).await;
    let rejected = apiserver_series(cluster, "apiserver_admission_webhook_rejection_count");
    assert!(
        rejected.iter().any(|(l, v)| *v >= 1.0
            && l.get("error_type").map(String::as_str) == Some("no_error")
            && l.keys().map(String::as_str).eq([
                "error_type",
                "name",
                "operation",
                "rejection_code",
                "type"
            ])),
        "{rejected:?}"
    );
    let reviewed = apiserver_series(
        cluster,
        "apiserver_admission_webhook_admission_duration_seconds_count",
    );
    assert!(
        reviewed.iter().any(
            |(l, _)| l.get("rejected").map(String::as_str) == Some("true")
                && l.keys()
                    .map(String::as_str)
                    .eq(["name", "operation", "rejected", "type"])
        ),
        "{reviewed:?}"
    );
    let failed_open = apiserver_series(cluster, "apiserver_admission_webhook_fail_open_count");
    assert!(
        failed_open
            .iter()
            .any(|(l, v)| *v >= 1.0 && l.keys().map(String::as_str).eq(["name", "type"])),
        "{failed_open:?}"
    );
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

/// kube-apiserver's series of `metric` for the webhook `namespaces.nsguard.io`, from its
/// `/metrics`: each one's labels and value.
fn apiserver_series(
    cluster: &LocalCluster,
    metric: &str,
) -> Vec<(std::collections::BTreeMap<String, String>, f64)> {
    let text = kubectl(cluster, &["get", "--raw", "/metrics"], None).unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix(metric)?.strip_prefix('{'))
        .filter_map(|l| {
            let (labels, value) = l.rsplit_once("} ")?;
            let labels: std::collections::BTreeMap<String, String> = labels
                .split("\",")
                .filter_map(|kv| {
                    let (k, v) = kv.split_once("=\"")?;
                    Some((k.to_string(), v.trim_end_matches('"').to_string()))
                })
                .collect();
            Some((labels, value.trim().parse().ok()?))
        })
        .filter(|(l, _)| l.get("name").map(String::as_str) == Some("namespaces.nsguard.io"))
        .collect()
}

/// The version in charts/nsguard/Chart.yaml.
fn chart_version() -> String {
    let chart: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(chart().join("Chart.yaml")).unwrap())
            .unwrap();
    chart["version"].as_str().unwrap().to_string()
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
            "serviceaccount,deployment,service,poddisruptionbudget,networkpolicy,secret,role,rolebinding",
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
        "role.rbac.authorization.k8s.io/nsguard-certificates",
        "rolebinding.rbac.authorization.k8s.io/nsguard-certificates",
    ] {
        assert!(
            installed.contains(object),
            "{object} missing in {installed}"
        );
    }
    // Certificates managed in process: no Secret is installed and the caBundle is left to
    // nsguard, which sets it once its pods run (none runs here).
    assert!(!installed.contains("secret/nsguard"), "{installed}");
    let hook: Value = serde_json::from_str(&hook.unwrap()).unwrap();
    assert!(hook["webhooks"][0]["clientConfig"]["caBundle"].is_null());
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
    assert!(
        !left.contains("/nsguard-certificates\n"),
        "helm uninstall left {left}"
    );
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
        "config.initial_sync=list".to_string(),
    ]);
    let layer = configuration(find(&template(&set), "ConfigMap", "nsguard-config"));
    assert_eq!(layer.mode, Some(::nsguard::output::policy::Mode::Audit));
    assert_eq!(
        layer.checks.get(&CheckId::FinalizerController),
        Some(&Setting::Warn)
    );
    assert_eq!(layer.backend_grace, Some(Duration::from_secs(90)));
    assert_eq!(
        layer.initial_sync,
        Some(::nsguard::config::InitialSync::List)
    );
    assert_eq!(
        layer.skip_resources,
        Some(["secrets".to_string()].into_iter().collect())
    );
}
