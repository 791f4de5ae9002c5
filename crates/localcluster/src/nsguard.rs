//! nsguard, the real binary, run beside a [`LocalCluster`] the way production runs it: `nsguard
//! serve` as its own ServiceAccount with the manifests' RBAC (so API Priority and Fairness
//! applies to it), TLS from a pair the cluster CA signed, its admin listener on plain HTTP.
//!
//! The one launcher of the end-to-end tests, `make bench`, `make faults` and `make run`: each
//! prepares a [`Nsguard`], starts it (and again after a kill, on the same ports), waits for
//! `/readyz` and registers it with a `url:` webhook configuration.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{LocalCluster, free_port, http_get, http_ok, process};

/// One `nsguard serve` process: its arguments, ports and log, started and stopped in place.
pub struct Nsguard {
    bin: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    port: u16,
    admin: u16,
    log: PathBuf,
    started: Option<Instant>,
}

/// Where a [`Nsguard`] gets its serving certificate.
pub enum Tls<'a> {
    /// A pair issued by the cluster CA for `localhost` and 127.0.0.1, written into the
    /// directory.
    FromClusterCa,
    /// A certificate and key already on disk.
    Files { cert: &'a Path, key: &'a Path },
}

impl Nsguard {
    /// Prepares `bin serve` with its ports, certificate and the ServiceAccount's kubeconfig,
    /// `extra` appended to the arguments (`--mode=enforce`, a config file…); its log is
    /// `<dir>/<name>.log`. Nothing runs until [`Nsguard::start`].
    pub fn new(
        cluster: &LocalCluster,
        bin: &Path,
        dir: &Path,
        name: &str,
        tls: Tls<'_>,
        extra: &[String],
    ) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let (cert, key) = match tls {
            Tls::Files { cert, key } => (cert.to_path_buf(), key.to_path_buf()),
            Tls::FromClusterCa => {
                let pair = cluster.ca().issue_server(
                    "nsguard",
                    &["localhost".into()],
                    &["127.0.0.1".parse()?],
                    1,
                )?;
                let (cert, key) = (
                    dir.join(format!("{name}-tls.crt")),
                    dir.join(format!("{name}-tls.key")),
                );
                std::fs::write(&cert, &pair.cert_pem)?;
                std::fs::write(&key, &pair.key_pem)?;
                (cert, key)
            }
        };
        let (port, admin) = (free_port()?, free_port()?);
        let kubeconfig = cluster.nsguard_kubeconfig()?;
        let mut args = vec![
            "serve".to_string(),
            format!("--listen=127.0.0.1:{port}"),
            format!("--admin-listen=127.0.0.1:{admin}"),
            format!("--tls-cert={}", cert.display()),
            format!("--tls-key={}", key.display()),
            format!("--kubeconfig={}", kubeconfig.display()),
            "--shutdown-delay=0s".to_string(),
        ];
        args.extend(extra.iter().cloned());
        let log = dir.join(format!("{name}.log"));
        std::fs::write(&log, "").with_context(|| format!("creating {}", log.display()))?;
        Ok(Self {
            bin: bin.to_path_buf(),
            args,
            child: None,
            port,
            admin,
            log,
            started: None,
        })
    }

    /// Starts the process, its output appended to the log. It dies with the process that
    /// started it.
    pub fn spawn(&mut self) -> Result<()> {
        let out = OpenOptions::new()
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        self.child = Some(process::start(&self.bin, &self.args, out)?);
        self.started = Some(Instant::now());
        Ok(())
    }

    /// Waits until `/readyz` answers 200 (every watch listed) and returns the time since the
    /// spawn; fails with the log's tail when the process exits or `deadline` passes.
    pub async fn wait_ready(&mut self, deadline: Duration) -> Result<Duration> {
        let started = self.started.context("nsguard was not started")?;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok())
                .flatten()
            {
                bail!("nsguard exited with {status}:\n{}", self.log_tail(30));
            }
            let admin = self.admin;
            if tokio::task::spawn_blocking(move || http_ok(admin, "/readyz")).await? {
                return Ok(started.elapsed());
            }
            if started.elapsed() > deadline {
                bail!(
                    "nsguard not ready after {deadline:?}:\n{}",
                    self.log_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// [`Nsguard::spawn`], then [`Nsguard::wait_ready`].
    pub async fn start(&mut self, deadline: Duration) -> Result<Duration> {
        self.spawn()?;
        self.wait_ready(deadline).await
    }

    /// Registers this process for `DELETE namespaces` of the namespaces `object_selector`
    /// (YAML flow style) matches, as webhook configuration `name`, `failurePolicy: Ignore`
    /// as installed.
    pub fn register(
        &self,
        cluster: &LocalCluster,
        name: &str,
        object_selector: &str,
        ca_bundle: &str,
    ) -> Result<()> {
        cluster.apply(&crate::namespace_delete_webhook(
            name,
            &self.url(),
            object_selector,
            ca_bundle,
        ))
    }

    /// SIGKILL, and reap it; a later [`Nsguard::start`] runs it again on the same ports.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The running process's PID.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The webhook's URL.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}/validate", self.port)
    }

    /// The HTTPS port serving `/validate`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The plain-HTTP admin port: `/livez`, `/readyz`, `/metrics`, `/debug/…`.
    pub fn admin_port(&self) -> u16 {
        self.admin
    }

    /// The body of `path` on the admin listener, or empty when nothing answers.
    pub fn admin(&self, path: &str) -> String {
        http_get(self.admin, path)
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    /// The metrics text, or empty when nothing answers.
    pub fn metrics(&self) -> String {
        self.admin("/metrics")
    }

    /// The log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// What the process has logged so far (every start).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn log_tail(&self, lines: usize) -> String {
        let text = self.log();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Nsguard {
    fn drop(&mut self) {
        self.kill();
    }
}
