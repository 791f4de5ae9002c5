//! nsguard, the real binary, started beside the shared control plane and registered through a
//! `url:` ValidatingWebhookConfiguration with the cluster CA as caBundle. Each instance only
//! sees namespaces carrying its own label (objectSelector), so tests run side by side.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use localcluster::{LocalCluster, free_port, http_get, random_suffix};

use super::{eventually, kubectl};

/// The label key that routes a namespace to one test's nsguard.
pub const GUARD_LABEL: &str = "nsguard.io/e2e-guard";

/// A running nsguard and its webhook registration.
pub struct Nsguard {
    child: Child,
    cluster: &'static LocalCluster,
    admin_port: u16,
    /// The HTTPS port serving `/validate`.
    pub port: u16,
    /// The value of [`GUARD_LABEL`] this instance handles.
    pub id: String,
    config_name: String,
    _dir: tempfile::TempDir,
    _pki: Option<tempfile::TempDir>,
}

impl Nsguard {
    /// Starts nsguard with `args` (e.g. `--mode=warn`) and a serving pair from the cluster
    /// CA, and waits until the API server calls it.
    pub async fn start(cluster: &'static LocalCluster, args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pair = cluster
            .ca()
            .issue_server(
                "nsguard",
                &["localhost".into()],
                &["127.0.0.1".parse().unwrap()],
                1,
            )
            .unwrap();
        std::fs::write(dir.path().join("tls.crt"), &pair.cert_pem).unwrap();
        std::fs::write(dir.path().join("tls.key"), &pair.key_pem).unwrap();
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        let mut guard =
            Self::start_with_certs(cluster, &cert, &key, &cluster.ca().ca_bundle(), args).await;
        guard._pki = Some(dir);
        guard
    }

    /// Starts nsguard serving `cert`/`key`, registered with `ca_bundle`.
    pub async fn start_with_certs(
        cluster: &'static LocalCluster,
        cert: &Path,
        key: &Path,
        ca_bundle: &str,
        args: &[&str],
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port().unwrap();
        let admin_port = free_port().unwrap();
        // As installed: nsguard's own ServiceAccount with the manifests' RBAC (so API Priority
        // and Fairness applies to it too), not the admin.
        let kubeconfig = cluster
            .nsguard_kubeconfig()
            .expect("nsguard's ServiceAccount kubeconfig");
        let child = Command::new(env!("CARGO_BIN_EXE_nsguard"))
            .arg("serve")
            .arg(format!("--listen=127.0.0.1:{port}"))
            .arg(format!("--admin-listen=127.0.0.1:{admin_port}"))
            .arg(format!("--tls-cert={}", cert.display()))
            .arg(format!("--tls-key={}", key.display()))
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg("--shutdown-delay=0s")
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("nsguard.log")).unwrap())
            .spawn()
            .expect("starting nsguard");
        let id = random_suffix();
        let guard = Self {
            child,
            cluster,
            admin_port,
            port,
            config_name: format!("nsguard-e2e-{id}"),
            id,
            _dir: dir,
            _pki: None,
        };
        eventually("nsguard /readyz", Duration::from_secs(60), || async {
            Ok(http_get(admin_port, "/readyz").filter(|(c, _)| *c == 200))
        })
        .await;
        let config = localcluster::namespace_delete_webhook(
            &guard.config_name,
            &format!("https://127.0.0.1:{port}/validate"),
            &format!("{{matchLabels: {{\"{GUARD_LABEL}\": \"{}\"}}}}", guard.id),
            ca_bundle,
        );
        kubectl(cluster, &["apply", "-f", "-"], Some(&config)).unwrap();
        // The API server picks webhook configurations up asynchronously: wait until a server
        // dry run of a probe namespace's deletion reaches nsguard.
        let probe = format!("probe-{}", guard.id);
        let ns = format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {probe}\n  labels: {{\"{GUARD_LABEL}\": \"{}\", \"{}\": \"true\"}}\n",
            guard.id,
            super::TEST_LABEL
        );
        kubectl(cluster, &["apply", "-f", "-"], Some(&ns)).unwrap();
        eventually(
            "the API server to call nsguard",
            Duration::from_secs(60),
            || async {
                let _ = kubectl(
                    cluster,
                    &["delete", "namespace", &probe, "--dry-run=server"],
                    None,
                );
                Ok((guard.reviews() > 0).then_some(()))
            },
        )
        .await;
        let _ = kubectl(
            cluster,
            &["delete", "namespace", &probe, "--wait=false"],
            None,
        );
        guard
    }

    /// What nsguard has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("nsguard.log")).unwrap_or_default()
    }

    /// The body of `path` on the admin listener (`/debug/index-digest`), or empty.
    pub fn admin(&self, path: &str) -> String {
        http_get(self.admin_port, path)
            .map(|(_, b)| b)
            .unwrap_or_default()
    }

    /// The plain-HTTP admin port: /livez, /readyz, /metrics.
    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    /// The metrics text.
    pub fn metrics(&self) -> String {
        http_get(self.admin_port, "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default()
    }

    /// Reviews counted so far, all decisions.
    pub fn reviews(&self) -> u64 {
        self.metrics()
            .lines()
            .filter(|l| l.starts_with("nsguard_admission_reviews_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    /// The labels a namespace needs to be handled by this instance.
    pub fn labels(&self) -> Vec<(&'static str, String)> {
        vec![(GUARD_LABEL, self.id.clone())]
    }

    /// Sends `signal` (`STOP`, `CONT`) to the nsguard process, by its pid.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args(["-s", signal, &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -s {signal} nsguard");
    }

    /// Stops nsguard, leaving its webhook registered (to show `failurePolicy: Ignore`).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Nsguard {
    fn drop(&mut self) {
        self.kill();
        let _ = kubectl(
            self.cluster,
            &[
                "delete",
                "validatingwebhookconfiguration",
                &self.config_name,
                "--ignore-not-found",
            ],
            None,
        );
    }
}
