//! nsguard, the real binary, started beside the shared control plane and registered through a
//! `url:` ValidatingWebhookConfiguration with the cluster CA as caBundle. Each instance only
//! sees namespaces carrying its own label (objectSelector), so tests run side by side.

use std::path::Path;
use std::time::Duration;

use localcluster::nsguard::{Nsguard as Launched, Tls};
use localcluster::{LocalCluster, random_suffix};

use super::{eventually, kubectl};

/// The label key that routes a namespace to one test's nsguard.
pub const GUARD_LABEL: &str = "nsguard.io/e2e-guard";

/// A running nsguard and its webhook registration.
pub struct Nsguard {
    process: Launched,
    cluster: &'static LocalCluster,
    /// The HTTPS port serving `/validate`.
    pub port: u16,
    /// The value of [`GUARD_LABEL`] this instance handles.
    pub id: String,
    config_name: String,
    _dir: tempfile::TempDir,
}

impl Nsguard {
    /// Starts nsguard with `args` (e.g. `--mode=warn`) and a serving pair from the cluster
    /// CA, and waits until the API server calls it.
    pub async fn start(cluster: &'static LocalCluster, args: &[&str]) -> Self {
        Self::launch(cluster, Tls::FromClusterCa, &cluster.ca().ca_bundle(), args).await
    }

    /// Starts nsguard serving `cert`/`key`, registered with `ca_bundle`.
    pub async fn start_with_certs(
        cluster: &'static LocalCluster,
        cert: &Path,
        key: &Path,
        ca_bundle: &str,
        args: &[&str],
    ) -> Self {
        Self::launch(cluster, Tls::Files { cert, key }, ca_bundle, args).await
    }

    async fn launch(
        cluster: &'static LocalCluster,
        tls: Tls<'_>,
        ca_bundle: &str,
        args: &[&str],
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let extra: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let mut process = Launched::new(
            cluster,
            Path::new(env!("CARGO_BIN_EXE_nsguard")),
            dir.path(),
            "nsguard",
            tls,
            &extra,
        )
        .expect("preparing nsguard");
        process
            .start(Duration::from_secs(60))
            .await
            .expect("nsguard /readyz");
        let id = random_suffix();
        let guard = Self {
            port: process.port(),
            process,
            cluster,
            config_name: format!("nsguard-e2e-{id}"),
            id,
            _dir: dir,
        };
        guard
            .process
            .register(
                cluster,
                &guard.config_name,
                &format!("{{matchLabels: {{\"{GUARD_LABEL}\": \"{}\"}}}}", guard.id),
                ca_bundle,
            )
            .unwrap();
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
        self.process.log()
    }

    /// The body of `path` on the admin listener (`/debug/index-digest`), or empty.
    pub fn admin(&self, path: &str) -> String {
        self.process.admin(path)
    }

    /// The plain-HTTP admin port: /livez, /readyz, /metrics.
    pub fn admin_port(&self) -> u16 {
        self.process.admin_port()
    }

    /// The metrics text.
    pub fn metrics(&self) -> String {
        self.process.metrics()
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
        let pid = self.process.pid().expect("nsguard is running");
        let status = std::process::Command::new("kill")
            .args(["-s", signal, &pid.to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -s {signal} nsguard");
    }

    /// Stops nsguard, leaving its webhook registered (to show `failurePolicy: Ignore`).
    pub fn kill(&mut self) {
        self.process.kill();
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
