//! Certificates managed in process (`certificates.source: managed`, the chart's default), on
//! the real control plane: the chart's default render is applied GitOps-style (server-side
//! apply, twice: the second changes nothing), nsguard runs as the chart's pods would (the
//! Deployment's environment and arguments, the chart's ServiceAccount and RBAC), makes its
//! CA and serving certificate in its Secret, sets its webhook's caBundle, and the API server's
//! reviews reach it through the chart's webhook configuration and Service. A GitOps re-apply
//! keeps the caBundle; a caBundle blanked by hand is set again at once (a watch). A second
//! replica adopts the same Secret. With short validities the serving certificate and then the
//! CA rotate under load with no review failed.
//!
//! Helm is built from its Go module by `tests/helm/build.sh`, cached outside the repo.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use localcluster::{LocalCluster, free_port, http_get, random_suffix};
use serde_json::Value;
use support::*;

/// The label that routes a namespace to one release's webhook (objectSelector).
const CERTS_LABEL: &str = "nsguard.io/e2e-certs";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
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
        PathBuf::from(stdout.lines().last().unwrap_or_default().trim())
    })
}

/// `helm template RELEASE charts/nsguard -n NS` with `set`: the text a GitOps tool applies.
fn render(release: &str, ns: &str, set: &[String]) -> String {
    let home = tempfile::tempdir().unwrap();
    let chart = root().join("charts/nsguard");
    let mut cmd = Command::new(helm_bin());
    cmd.args(["template", release, chart.to_str().unwrap(), "-n", ns])
        .env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_DATA_HOME", home.path().join("data"));
    for s in set {
        cmd.args(["--set", s]);
    }
    let out = cmd.output().expect("running helm");
    assert!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn documents(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(yaml)
        .unwrap()
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} rendered"))
}

fn b64(s: &Value) -> String {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.as_str().unwrap_or_default())
        .unwrap();
    String::from_utf8(bytes).unwrap()
}

fn certificates_in(pem: &str) -> usize {
    pem.matches("-----BEGIN CERTIFICATE-----").count()
}

/// A release of the chart applied as a GitOps tool would, and nsguard run as its pods would.
struct Release {
    cluster: &'static LocalCluster,
    ns: String,
    id: String,
    rendered: String,
    port: u16,
    processes: Vec<(Child, u16)>,
    dir: tempfile::TempDir,
}

impl Release {
    /// Renders the chart's defaults (plus the test hooks and `extra`) for release = namespace
    /// `certs-…`, and applies the render twice with server-side apply; the second apply
    /// must change nothing.
    async fn apply(cluster: &'static LocalCluster, client: &kube::Client, extra: &[&str]) -> Self {
        let ns = create_namespace(client, "certs").await;
        let id = random_suffix();
        let port = free_port().unwrap();
        let mut set = vec![
            // Test hooks: no pod runs here (nsguard runs beside the cluster, reached through an
            // ExternalName Service), the webhook sees only this release's namespaces, and the
            // `helm test` pod is left out (a GitOps tool treats hooks apart).
            "replicas=0".to_string(),
            "service.externalName=localhost".to_string(),
            format!("service.port={port}"),
            format!("webhook.objectSelector.matchLabels.nsguard\\.io/e2e-certs={id}"),
            "test.enabled=false".to_string(),
        ];
        set.extend(extra.iter().map(|s| s.to_string()));
        let rendered = render(&ns, &ns, &set);
        assert_eq!(
            rendered,
            render(&ns, &ns, &set),
            "two renders with the same values differ"
        );
        let release = Self {
            cluster,
            ns,
            id,
            rendered,
            port,
            processes: Vec::new(),
            dir: tempfile::tempdir().unwrap(),
        };
        release.gitops_apply();
        // The controllers write the Deployment's and the PodDisruptionBudget's status after
        // the first apply, and the API server's type checker the ValidatingAdmissionPolicy's:
        // settle before comparing versions.
        eventually(
            "the controllers to observe the release",
            Duration::from_secs(30),
            || async {
                let objects = release.live();
                Ok(objects
                    .iter()
                    .filter(|o| {
                        o["kind"] == "Deployment"
                            || o["kind"] == "PodDisruptionBudget"
                            || o["kind"] == "ValidatingAdmissionPolicy"
                    })
                    .all(|o| o["status"]["observedGeneration"] == o["metadata"]["generation"])
                    .then_some(()))
            },
        )
        .await;
        let before = release.versions();
        release.gitops_apply();
        assert_eq!(
            before,
            release.versions(),
            "a second apply of the same render changed objects"
        );
        release.assert_no_diff();
        release
    }

    /// `kubectl apply --server-side` of the render, as field manager `gitops`.
    fn gitops_apply(&self) {
        kubectl(
            self.cluster,
            &[
                "apply",
                "--server-side",
                "--field-manager=gitops",
                "-f",
                "-",
            ],
            Some(&self.rendered),
        )
        .unwrap();
    }

    /// `kubectl diff --server-side` of the render: exit 0, nothing would change.
    fn assert_no_diff(&self) {
        let out = kubectl_output(
            self.cluster,
            &["diff", "--server-side", "--field-manager=gitops", "-f", "-"],
            Some(&self.rendered),
        )
        .unwrap();
        assert!(
            out.status.success(),
            "kubectl diff of the render: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The live objects of the render.
    fn live(&self) -> Vec<Value> {
        let out = kubectl(
            self.cluster,
            &["get", "-f", "-", "-o", "json"],
            Some(&self.rendered),
        )
        .unwrap();
        let list: Value = serde_json::from_str(&out).unwrap();
        list["items"].as_array().cloned().unwrap_or_default()
    }

    /// Each live object's kind, name and version: the resourceVersion, or the generation for
    /// the objects whose controllers write their status.
    fn versions(&self) -> Vec<(String, String, String)> {
        self.live()
            .iter()
            .map(|o| {
                let kind = o["kind"].as_str().unwrap_or_default().to_string();
                // Objects whose status a controller writes (the API server's type checker
                // writes a ValidatingAdmissionPolicy's): their spec's generation.
                let version = if kind == "Deployment"
                    || kind == "PodDisruptionBudget"
                    || kind == "ValidatingAdmissionPolicy"
                {
                    o["metadata"]["generation"].to_string()
                } else {
                    o["metadata"]["resourceVersion"].to_string()
                };
                (kind, o["metadata"]["name"].to_string(), version)
            })
            .collect()
    }

    /// Starts one more nsguard as the Deployment's pods run it: its arguments (the
    /// configuration file written from the ConfigMap), its environment, the release's
    /// ServiceAccount. Waits for `/readyz`; returns the admin port.
    async fn start_nsguard(&mut self, extra_env: &[(&str, &str)]) -> u16 {
        let docs = documents(&self.rendered);
        let config = self.dir.path().join("config.yaml");
        std::fs::write(
            &config,
            find(&docs, "ConfigMap")["data"]["config.yaml"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        let container = &find(&docs, "Deployment")["spec"]["template"]["spec"]["containers"][0];
        let account = find(&docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"]
            .as_str()
            .unwrap()
            .to_string();
        let kubeconfig = self
            .cluster
            .service_account_kubeconfig(&self.ns, &account)
            .unwrap();
        let admin = free_port().unwrap();
        // The first replica takes the port the Service points at; another one (not reached by
        // the API server: one Service port, one local address) listens elsewhere.
        let listen = if self.processes.is_empty() {
            self.port
        } else {
            free_port().unwrap()
        };
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_nsguard"));
        for arg in container["args"].as_array().unwrap() {
            let arg = arg.as_str().unwrap();
            cmd.arg(if arg == "/etc/nsguard/config.yaml" {
                config.to_str().unwrap()
            } else {
                arg
            });
        }
        for env in container["env"].as_array().unwrap() {
            let name = env["name"].as_str().unwrap();
            match (env["value"].as_str(), name) {
                (Some(value), _) => cmd.env(name, value),
                (None, "NSGUARD_OWN_NAMESPACE") => cmd.env(name, &self.ns),
                (None, _) => &mut cmd,
            };
        }
        for (name, value) in extra_env {
            cmd.env(name, value);
        }
        let log = self
            .dir
            .path()
            .join(format!("nsguard-{}.log", self.processes.len()));
        let child = cmd
            .arg(format!("--listen=127.0.0.1:{listen}"))
            .arg(format!("--admin-listen=127.0.0.1:{admin}"))
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg("--shutdown-delay=0s")
            .env_remove("NSGUARD_TLS_CERT")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        self.processes.push((child, admin));
        let until = std::time::Instant::now() + Duration::from_secs(90);
        while http_get(admin, "/readyz").map(|(c, _)| c) != Some(200) {
            assert!(
                std::time::Instant::now() < until,
                "nsguard not ready: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        admin
    }

    /// What nsguard logged (every process).
    fn logs(&self) -> String {
        (0..self.processes.len())
            .map(|i| {
                std::fs::read_to_string(self.dir.path().join(format!("nsguard-{i}.log")))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n----\n")
    }

    /// nsguard's Secret: its data (decoded) and resourceVersion.
    fn secret(&self) -> Option<(Value, String)> {
        let out = kubectl_output(
            self.cluster,
            &[
                "get",
                "secret",
                &format!("{}-certs", self.ns),
                "-n",
                &self.ns,
                "-o",
                "json",
            ],
            None,
        )
        .unwrap();
        if !out.status.success() {
            return None;
        }
        let secret: Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut data = serde_json::Map::new();
        for (k, v) in secret["data"].as_object().cloned().unwrap_or_default() {
            data.insert(k, Value::String(b64(&v)));
        }
        assert_eq!(secret["type"], "kubernetes.io/tls");
        Some((
            Value::Object(data),
            secret["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .to_string(),
        ))
    }

    /// The caBundle of the release's webhook (PEM; empty when unset).
    fn ca_bundle(&self) -> String {
        let out = kubectl(
            self.cluster,
            &[
                "get",
                "validatingwebhookconfiguration",
                &self.ns,
                "-o",
                "json",
            ],
            None,
        )
        .unwrap();
        let config: Value = serde_json::from_str(&out).unwrap();
        match &config["webhooks"][0]["clientConfig"]["caBundle"] {
            Value::Null => String::new(),
            b => b64(b),
        }
    }

    /// A namespace of this release whose deletion nsguard denies (a Widget whose finalizer
    /// no controller removes).
    async fn guarded_namespace(&self, client: &kube::Client) -> String {
        install_crd(self.cluster, "certs.nsguard.test", "widgets", "Widget").await;
        let ns =
            create_namespace_with(client, "guarded", &[(CERTS_LABEL, self.id.clone())], &[]).await;
        kubectl(
            self.cluster,
            &["apply", "-f", "-"],
            Some(&format!(
                "apiVersion: certs.nsguard.test/v1\nkind: Widget\nmetadata:\n  name: w1\n  namespace: {ns}\n  finalizers: [certs.nsguard.test/cleanup]\n"
            )),
        )
        .unwrap();
        ns
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        for (child, _) in &mut self.processes {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = kubectl(
            self.cluster,
            &["delete", "-f", "-", "--ignore-not-found", "--wait=false"],
            Some(&self.rendered),
        );
        let _ = kubectl(
            self.cluster,
            &["delete", "namespace", &self.ns, "--wait=false"],
            None,
        );
    }
}

/// A server dry run of deleting `ns`, polled until nsguard denies it: the API server reached
/// nsguard over TLS and trusted its certificate.
async fn dry_run_denied(cluster: &LocalCluster, ns: &str) {
    eventually(
        &format!("a server dry run of deleting {ns} to be denied"),
        Duration::from_secs(30),
        || async {
            let out = kubectl_output(
                cluster,
                &["delete", "namespace", ns, "--dry-run=server"],
                None,
            )?;
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            if !out.status.success() && err.contains("finalizer-controller") {
                return Ok(Some(()));
            }
            anyhow::bail!("not (yet) denied: {err}")
        },
    )
    .await;
}

fn expiry(admin: u16) -> Option<String> {
    http_get(admin, "/metrics")?
        .1
        .lines()
        .find(|l| l.starts_with("nsguard_certificate_expiry_timestamp_seconds "))
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread")]
async fn managed_certificates_serve_the_api_server_and_survive_gitops() {
    let _lock = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    let mut release = Release::apply(cluster, &client, &[]).await;
    let rendered = documents(&release.rendered);
    assert!(
        !rendered.iter().any(|d| d["kind"] == "Secret"),
        "the default render carries a Secret"
    );
    assert_eq!(release.ca_bundle(), "", "the render carries a caBundle");
    assert!(release.secret().is_none());

    let admin = release.start_nsguard(&[]).await;
    let (data, version) = release.secret().expect("nsguard created its Secret");
    for key in ["ca.crt", "ca.key", "tls.crt", "tls.key"] {
        assert!(
            data[key].as_str().is_some_and(|v| v.contains("-----BEGIN")),
            "{key}"
        );
    }
    assert_eq!(certificates_in(data["ca.crt"].as_str().unwrap()), 1);
    eventually("the caBundle set", Duration::from_secs(30), || async {
        Ok((release.ca_bundle() == data["ca.crt"].as_str().unwrap()).then_some(()))
    })
    .await;
    // The API server calls nsguard through the chart's webhook configuration and Service,
    // verifying the managed certificate for the Service's DNS name.
    let guarded = release.guarded_namespace(&client).await;
    dry_run_denied(cluster, &guarded).await;

    // A GitOps re-apply (server-side, without the caBundle) leaves nsguard's caBundle alone
    // and still sees nothing to change.
    release.gitops_apply();
    assert_eq!(release.ca_bundle(), data["ca.crt"].as_str().unwrap());
    release.assert_no_diff();

    // A caBundle blanked by hand (a client-side re-apply of an older copy, a person) is set
    // again well before the 30 s interval: nsguard watches its webhook configuration.
    kubectl(
        cluster,
        &[
            "patch",
            "validatingwebhookconfiguration",
            &release.ns,
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/webhooks/0/clientConfig/caBundle"}]"#,
        ],
        None,
    )
    .unwrap();
    eventually(
        "the caBundle set again",
        Duration::from_secs(15),
        || async { Ok((release.ca_bundle() == data["ca.crt"].as_str().unwrap()).then_some(())) },
    )
    .await;

    // A second replica adopts the Secret as it is: no write, the same certificate served.
    let second = release.start_nsguard(&[]).await;
    let (again, again_version) = release.secret().unwrap();
    assert_eq!(again, data, "the second replica changed the certificates");
    assert_eq!(again_version, version);
    assert!(expiry(second).is_some());
    assert_eq!(expiry(second), expiry(admin));
    dry_run_denied(cluster, &guarded).await;
    let logs = release.logs();
    assert_eq!(
        logs.matches("Certificates written").count(),
        1,
        "only the first replica writes: {logs}"
    );
    clear_finalizers(cluster, "widgets.certs.nsguard.test", "w1", &guarded);
    allowed_and_gone(cluster, &client, &guarded).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn managed_certificates_rotate_under_load_with_no_failed_review() {
    let _lock = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    // The serving certificate lives 30 s (renewed after 20 s), a CA 60 s (a new one joins at
    // 40 s, the serving certificate moves to it a grace later, the old one leaves at 60 s).
    let mut release = Release::apply(
        cluster,
        &client,
        &[
            "certificates.managed.validity=30s",
            "certificates.managed.caValidity=60s",
        ],
    )
    .await;
    let admin = release
        .start_nsguard(&[("NSGUARD_CERTIFICATE_CHECK_INTERVAL", "1s")])
        .await;
    let (first, _) = release.secret().unwrap();
    let first_ca = first["ca.crt"].as_str().unwrap().to_string();
    let guarded = release.guarded_namespace(&client).await;
    dry_run_denied(cluster, &guarded).await;

    // The API server, deciding a deletion nsguard denies, as fast as kubectl runs; a failed
    // call would be ignored (failurePolicy Ignore) and the dry run let through.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (stop, ns) = (stop.clone(), guarded.clone());
        std::thread::spawn(move || {
            let (mut denied, mut let_through) = (0u64, 0u64);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let out = kubectl_output(
                    cluster,
                    &["delete", "namespace", &ns, "--dry-run=server"],
                    None,
                )
                .unwrap();
                if out.status.success() {
                    let_through += 1;
                } else {
                    denied += 1;
                }
            }
            (denied, let_through)
        })
    };

    // Watch the Secret through a whole CA rotation: serving renewals, both CAs trusted for a
    // while, the serving certificate on the new CA, the old CA gone.
    let mut serving = std::collections::BTreeSet::from([first["tls.crt"].to_string()]);
    let mut saw_both = false;
    let mut expiries = std::collections::BTreeSet::new();
    let until = std::time::Instant::now() + Duration::from_secs(150);
    loop {
        if let Some((data, _)) = release.secret() {
            let cas = data["ca.crt"].as_str().unwrap().to_string();
            serving.insert(data["tls.crt"].to_string());
            saw_both |= certificates_in(&cas) == 2;
            if saw_both && certificates_in(&cas) == 1 && !cas.contains(first_ca.trim()) {
                break;
            }
        }
        if let Some(e) = expiry(admin) {
            expiries.insert(e);
        }
        assert!(
            std::time::Instant::now() < until,
            "no full CA rotation: saw both CAs {saw_both}, {} serving certificates\n{}",
            serving.len(),
            release.logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // And the API server decided more reviews on the final certificates.
    let (data, _) = release.secret().unwrap();
    eventually(
        "the caBundle on the new CA",
        Duration::from_secs(30),
        || async { Ok((release.ca_bundle() == data["ca.crt"].as_str().unwrap()).then_some(())) },
    )
    .await;
    dry_run_denied(cluster, &guarded).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (denied, let_through) = load.join().unwrap();
    eprintln!(
        "managed rotation under load: {} serving certificates, {} served expiries, API server {denied} decided, {let_through} let through",
        serving.len(),
        expiries.len()
    );
    // At least the first pair and one issued by the new CA (the old one is gone); a renewal
    // on the old CA between them depends on where the two lifetimes fall, not on nsguard.
    assert!(serving.len() >= 2, "{serving:?}");
    assert!(expiries.len() >= 2, "{expiries:?}");
    assert_eq!(let_through, 0, "the API server failed to call nsguard");
    assert!(denied > 0);
    clear_finalizers(cluster, "widgets.certs.nsguard.test", "w1", &guarded);
    allowed_and_gone(cluster, &client, &guarded).await;
}
