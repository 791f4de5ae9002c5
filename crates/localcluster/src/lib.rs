//! A real control plane on loopback: etcd, kube-apiserver and kube-controller-manager, built
//! from upstream Go modules by `tests/controlplane/build.sh`, shaped like a production cluster
//! made with kubeadm: every controller runs, the default admission plugins are on, one Node
//! has a (fake) kubelet that runs pods to Ready, and the usual RBAC is there, including a
//! GitOps controller's ServiceAccount bound to `cluster-admin` with its pod Ready.
//!
//! Used by nsguard's end-to-end tests and by `make run` alike. Every port is a free loopback
//! port, every certificate is made here with rcgen, and every process started here is stopped
//! here: by PID when the [`LocalCluster`] is dropped, and by the kernel (parent-death signal)
//! when the process that owns it exits without dropping it (a shared cluster in a static).

pub mod backend;
pub mod demo;
mod kubelet;
pub mod nsguard;
mod pki;
mod process;

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use nsguard_certs::{self as certs, Ca};

use kubelet::Kubelet;
pub use kubelet::NODE_NAME;
use pki::{ClientIssuer, signing_key};
use process::Process;

/// How long any one start-up step may take before the start fails with the process logs.
const STEP_DEADLINE: Duration = Duration::from_secs(120);

/// A running local control plane.
pub struct LocalCluster {
    dir: PathBuf,
    bin_dir: PathBuf,
    kubeconfig: PathBuf,
    server: String,
    ca: Ca,
    /// Behind a lock: a test that shares the cluster (`&'static`) may restart kube-apiserver.
    processes: std::sync::Mutex<Vec<Process>>,
    kubelet: Option<Kubelet>,
    nsguard_kubeconfig: std::sync::Mutex<Option<PathBuf>>,
    keep_dir: std::sync::atomic::AtomicBool,
    /// etcd's client URL.
    etcd_url: String,
    /// Flags kube-apiserver runs with besides its own (`--feature-gates=...`).
    apiserver_flags: std::sync::Mutex<Vec<String>>,
}

/// How a [`LocalCluster`] is started, besides its defaults.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Flags added to kube-apiserver's, e.g. `--feature-gates=WatchList=false`.
    pub apiserver_flags: Vec<String>,
}

impl LocalCluster {
    /// Builds (or finds in the cache) the control-plane executables and returns their
    /// directory. `NSGUARD_CONTROLPLANE_DIR` names a directory to use as it is.
    pub fn bin_dir() -> Result<PathBuf> {
        if let Some(dir) = std::env::var_os("NSGUARD_CONTROLPLANE_DIR") {
            return Ok(PathBuf::from(dir));
        }
        let script = workspace_root().join("tests/controlplane/build.sh");
        let out = Command::new("bash")
            .arg(&script)
            .stderr(std::process::Stdio::inherit())
            .output()
            .with_context(|| format!("running {}", script.display()))?;
        if !out.status.success() {
            bail!("{} failed with {}", script.display(), out.status);
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let last = stdout.lines().last().unwrap_or_default().trim();
        if last.is_empty() {
            bail!("{} printed no directory", script.display());
        }
        Ok(PathBuf::from(last))
    }

    /// Starts etcd, kube-apiserver, kube-controller-manager and the fake kubelet with their
    /// state and logs in `dir` (emptied first), applies the RBAC and the GitOps controller every
    /// cluster carries, and returns once a namespace can be created and deleted and the GitOps
    /// controller's pod is Ready.
    pub async fn start(dir: impl Into<PathBuf>) -> Result<Self> {
        Self::start_with(dir, Options::default()).await
    }

    /// [`LocalCluster::start`], with `options`.
    pub async fn start_with(dir: impl Into<PathBuf>, options: Options) -> Result<Self> {
        let dir = dir.into();
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("emptying {}", dir.display()))?;
        }
        std::fs::create_dir_all(dir.join("pki"))?;
        let bin_dir = Self::bin_dir()?;
        for bin in [
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kubectl",
        ] {
            if !bin_dir.join(bin).is_file() {
                bail!("{} has no {bin}", bin_dir.display());
            }
        }

        let ca = Ca::new("nsguard-localcluster-ca", 7)?;
        let mut cluster = Self {
            kubeconfig: dir.join("kubeconfig"),
            server: String::new(),
            dir,
            bin_dir,
            ca,
            processes: std::sync::Mutex::new(Vec::new()),
            kubelet: None,
            nsguard_kubeconfig: std::sync::Mutex::new(None),
            keep_dir: std::sync::atomic::AtomicBool::new(false),
            etcd_url: String::new(),
            apiserver_flags: std::sync::Mutex::new(options.apiserver_flags),
        };
        let started = Instant::now();
        cluster.start_etcd_and_apiserver().await?;
        cluster.start_controller_manager().await?;
        cluster.kubelet = Some(Kubelet::start(cluster.kubeconfig.clone()).await?);
        cluster.apply_common_world().await?;
        tracing::info!(
            dir = %cluster.dir.display(),
            server = %cluster.server,
            seconds = started.elapsed().as_secs_f64(),
            "Local control plane ready"
        );
        Ok(cluster)
    }

    async fn start_etcd_and_apiserver(&mut self) -> Result<()> {
        let pki = self.dir.join("pki");
        let ca_file = pki.join("ca.crt");
        certs::write_file(&ca_file, &self.ca.cert_pem(), false)?;
        let serving =
            self.ca
                .issue_server("kube-apiserver", &["localhost".into()], &[LOOPBACK], 7)?;
        write_pair(&pki, "apiserver", &serving)?;
        let ca_pair = self.ca.pair();
        let clients = ClientIssuer::new(&ca_pair)?;
        let admin = clients.issue("localcluster-admin", Some("system:masters"), 7)?;
        write_pair(&pki, "admin", &admin)?;
        // kubeadm's identity for the controller-manager, bound by the API server's bootstrap
        // RBAC to system:kube-controller-manager.
        let kcm = clients.issue("system:kube-controller-manager", None, 7)?;
        write_pair(&pki, "controller-manager", &kcm)?;
        // The controller-manager's csrsigning controller signs with the cluster CA.
        certs::write_file(&pki.join("ca.key"), &ca_pair.key_pem, true)?;
        let (sa_key, sa_pub) = signing_key()?;
        certs::write_file(&pki.join("sa.key"), &sa_key, true)?;
        certs::write_file(&pki.join("sa.pub"), &sa_pub, false)?;
        certs::write_file(&pki.join("audit-policy.yaml"), AUDIT_POLICY, false)?;
        // The API server presents a client certificate to every webhook, as a cluster admin
        // configures it for webhooks that verify their caller (nsguard's --client-ca-file).
        let webhook_client = clients.issue("kube-apiserver-webhook-client", None, 7)?;
        write_pair(&pki, "webhook-client", &webhook_client)?;
        let webhook_kubeconfig = pki.join("webhook-kubeconfig.yaml");
        certs::write_file(
            &webhook_kubeconfig,
            &format!(
                "apiVersion: v1\nkind: Config\nusers:\n- name: '*'\n  user:\n    client-certificate: {}\n    client-key: {}\n",
                pki.join("webhook-client.crt").display(),
                pki.join("webhook-client.key").display()
            ),
            true,
        )?;
        let plugin = |name: &str| {
            format!(
                "- name: {name}\n  configuration:\n    apiVersion: apiserver.config.k8s.io/v1\n    kind: WebhookAdmissionConfiguration\n    kubeConfigFile: {}\n",
                webhook_kubeconfig.display()
            )
        };
        certs::write_file(
            &pki.join("admission-config.yaml"),
            &format!(
                "apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins:\n{}{}",
                plugin("ValidatingAdmissionWebhook"),
                plugin("MutatingAdmissionWebhook")
            ),
            false,
        )?;

        let etcd_port = free_port()?;
        let etcd_peer_port = free_port()?;
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{etcd_peer_port}");
        let etcd = Process::spawn(
            "etcd",
            &self.bin_dir.join("etcd"),
            &[
                "--name=localcluster".into(),
                format!("--data-dir={}", self.dir.join("etcd").display()),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=localcluster={peer_url}"),
                "--unsafe-no-fsync=true".into(),
                "--logger=zap".into(),
                "--log-level=warn".into(),
            ],
            &self.dir,
        )?;
        self.processes_mut().push(etcd);
        self.etcd_url = etcd_url.clone();
        self.wait_for("etcd to accept connections", || async {
            Ok(TcpStream::connect(("127.0.0.1", etcd_port)).is_ok())
        })
        .await?;

        let api_port = free_port()?;
        self.server = format!("https://127.0.0.1:{api_port}");
        let p = |name: &str| pki.join(name).display().to_string();
        let flags: Vec<String> = [
            format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={api_port}"),
            // A loopback advertise address is only accepted with no endpoint reconciler;
            // both together make start-up independent of a default route.
            "--advertise-address=127.0.0.1".into(),
            "--endpoint-reconciler-type=none".into(),
            format!("--tls-cert-file={}", p("apiserver.crt")),
            format!("--tls-private-key-file={}", p("apiserver.key")),
            format!("--client-ca-file={}", p("ca.crt")),
            format!("--service-account-issuer={}", self.server),
            format!("--service-account-key-file={}", p("sa.pub")),
            format!("--service-account-signing-key-file={}", p("sa.key")),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            // As kubeadm: the Node authorizer and NodeRestriction on top of the default
            // admission plugins (ServiceAccount, PodSecurity, ResourceQuota, ...).
            "--authorization-mode=Node,RBAC".into(),
            "--enable-admission-plugins=NodeRestriction".into(),
            "--allow-privileged=true".into(),
            "--profiling=false".into(),
            // What nsguard's ServiceAccount asks and receives, bodies and all: the proof
            // that it never reads what metadata suffices for (e2e_manifests).
            format!(
                "--admission-control-config-file={}",
                p("admission-config.yaml")
            ),
            format!("--audit-policy-file={}", p("audit-policy.yaml")),
            format!("--audit-log-path={}", self.audit_log().display()),
            "--audit-log-format=json".into(),
            "--audit-log-maxbackup=1".into(),
        ]
        .into_iter()
        .chain(
            self.apiserver_flags
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .cloned(),
        )
        .collect();
        let apiserver = Process::spawn(
            "kube-apiserver",
            &self.bin_dir.join("kube-apiserver"),
            &flags,
            &self.dir,
        )?;
        self.processes_mut().push(apiserver);
        self.write_kubeconfig(&self.kubeconfig, &pki, "admin")?;
        self.write_kubeconfig(
            &self.dir.join("controller-manager.kubeconfig"),
            &pki,
            "controller-manager",
        )?;

        let kubeconfig = self.kubeconfig.clone();
        self.wait_for("kube-apiserver /readyz", || apiserver_ready(&kubeconfig))
            .await
    }

    async fn start_controller_manager(&mut self) -> Result<()> {
        let pki = self.dir.join("pki");
        let p = |name: &str| pki.join(name).display().to_string();
        let kcm = Process::spawn(
            "kube-controller-manager",
            &self.bin_dir.join("kube-controller-manager"),
            &[
                format!(
                    "--kubeconfig={}",
                    self.dir.join("controller-manager.kubeconfig").display()
                ),
                // As kubeadm: every controller on by default, plus the bootstrap-token ones;
                // those needing a cloud provider stay off.
                "--controllers=*,bootstrapsigner,tokencleaner".into(),
                "--leader-elect=false".into(),
                "--use-service-account-credentials=true".into(),
                format!("--service-account-private-key-file={}", p("sa.key")),
                format!("--root-ca-file={}", p("ca.crt")),
                format!("--cluster-signing-cert-file={}", p("ca.crt")),
                format!("--cluster-signing-key-file={}", p("ca.key")),
                "--secure-port=0".into(),
                // The informer resync: bounds how long a namespace that was stuck waits
                // after its cause is gone.
                "--namespace-sync-period=10s".into(),
            ],
            &self.dir,
        )?;
        self.processes_mut().push(kcm);

        // The controller-manager is ready when it really finishes a namespace deletion.
        let client = self.client().await?;
        let namespaces: Api<Namespace> = Api::all(client);
        let name = format!("localcluster-probe-{}", random_suffix());
        let mut ns = Namespace::default();
        ns.metadata.name = Some(name.clone());
        namespaces.create(&PostParams::default(), &ns).await?;
        namespaces.delete(&name, &DeleteParams::default()).await?;
        self.wait_for(
            "the namespace controller to delete a probe namespace",
            || async { Ok(namespaces.get_opt(&name).await?.is_none()) },
        )
        .await
    }

    /// Polls `ready` every 200 ms until it says true, failing with the logs if a process
    /// exits or the deadline passes.
    async fn wait_for<F, Fut>(&self, what: &str, mut ready: F) -> Result<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<bool>>,
    {
        let deadline = Instant::now() + STEP_DEADLINE;
        loop {
            for p in self.processes_mut().iter_mut() {
                if let Some(status) = p.exited()? {
                    self.keep();
                    bail!(
                        "waiting for {what}: {} exited with {status}; its log ends:\n{}",
                        p.name(),
                        p.log_tail(40)
                    );
                }
            }
            if ready().await.unwrap_or(false) {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.keep();
                bail!(
                    "waiting for {what}: not done after {}s; logs in {}",
                    STEP_DEADLINE.as_secs(),
                    self.dir.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A kubeconfig at `path` for the client pair `<pki>/<pair>.{crt,key}`.
    fn write_kubeconfig(&self, path: &Path, pki: &Path, pair: &str) -> Result<()> {
        self.write_kubeconfig_for(
            path,
            pair,
            serde_json::json!({
                "client-certificate": pki.join(format!("{pair}.crt")),
                "client-key": pki.join(format!("{pair}.key")),
            }),
        )
    }

    fn write_kubeconfig_for(&self, path: &Path, user: &str, auth: serde_json::Value) -> Result<()> {
        let config = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "localcluster", "cluster": {
                "server": self.server,
                "certificate-authority": self.dir.join("pki").join("ca.crt"),
            }}],
            "users": [{"name": user, "user": auth}],
            "contexts": [{"name": "localcluster", "context": {"cluster": "localcluster", "user": user}}],
            "current-context": "localcluster",
        });
        certs::write_file(path, &serde_json::to_string_pretty(&config)?, true)?;
        Ok(())
    }

    /// What every cluster carries besides the control plane: kubeadm's binding of the
    /// `kubeadm:cluster-admins` group, and a GitOps controller (Argo CD's application
    /// controller) whose ServiceAccount is bound to `cluster-admin` and whose pod runs.
    async fn apply_common_world(&mut self) -> Result<()> {
        self.apply(COMMON_WORLD)?;
        let client = self.client().await?;
        let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client, GITOPS_NAMESPACE);
        self.wait_for("the GitOps controller's pod to be Ready", || async {
            let list = pods
                .list(
                    &kube::api::ListParams::default()
                        .labels(&format!("app.kubernetes.io/name={GITOPS_SERVICE_ACCOUNT}")),
                )
                .await?;
            Ok(list.items.iter().any(pod_is_ready))
        })
        .await
    }

    /// Makes the node NotReady (its kubelet stops heartbeats, writes Ready=False and leaves
    /// its pods alone, Terminating ones included) or Ready again; returns once the Node's
    /// status says so. The controller-manager then taints it `node.kubernetes.io/not-ready`
    /// (or lifts the taint), as in any cluster. Its pods keep the status they had: the
    /// controller-manager marks them NotReady (and the node Unknown) only once the node's
    /// Lease has expired, after `--node-monitor-grace-period` (50 s).
    pub async fn set_node_ready(&self, ready: bool) -> Result<()> {
        self.kubelet
            .as_ref()
            .context("this cluster has no kubelet")?
            .set_ready(ready)
            .await
    }

    /// The name of the one Node, whose kubelet runs every pod.
    pub fn node_name(&self) -> &'static str {
        NODE_NAME
    }

    /// A kubeconfig for ServiceAccount `name` of namespace `namespace` (which must exist),
    /// with a 48-hour token from the TokenRequest API, same server and CA as the admin's;
    /// written to `<dir>/kubeconfig-<namespace>-<name>`.
    pub fn service_account_kubeconfig(&self, namespace: &str, name: &str) -> Result<PathBuf> {
        let out = self
            .kubectl()
            .args(["create", "token", name, "-n", namespace, "--duration=48h"])
            .output()?;
        if !out.status.success() {
            bail!(
                "kubectl create token {name} -n {namespace}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let token = String::from_utf8(out.stdout)?.trim().to_string();
        let path = self.dir.join(format!("kubeconfig-{namespace}-{name}"));
        self.write_kubeconfig_for(
            &path,
            &format!("system:serviceaccount:{namespace}:{name}"),
            serde_json::json!({ "token": token }),
        )?;
        Ok(path)
    }

    /// nsguard's own identity, as installed: applies `manifests/base/namespace.yaml` and
    /// `manifests/base/rbac.yaml` (namespace `nsguard-system`, ServiceAccount `nsguard`,
    /// ClusterRole and ClusterRoleBinding `nsguard`) and returns a kubeconfig for that
    /// ServiceAccount. The first call does the work; later calls return the same file.
    pub fn nsguard_kubeconfig(&self) -> Result<PathBuf> {
        let mut cached = self
            .nsguard_kubeconfig
            .lock()
            .map_err(|_| anyhow::anyhow!("nsguard kubeconfig lock poisoned"))?;
        if let Some(path) = cached.as_ref() {
            return Ok(path.clone());
        }
        let manifests = workspace_root().join("manifests/base");
        for file in ["namespace.yaml", "rbac.yaml"] {
            let path = manifests.join(file);
            let yaml = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            self.apply(&yaml)
                .with_context(|| format!("applying {}", path.display()))?;
        }
        let path = self.service_account_kubeconfig("nsguard-system", "nsguard")?;
        *cached = Some(path.clone());
        Ok(path)
    }

    /// A client for the admin user (`system:masters`). Make one per tokio runtime: a kube
    /// client lives on the runtime it was made on.
    pub async fn client(&self) -> Result<Client> {
        client_for(&self.kubeconfig).await
    }

    /// `kubectl` with this cluster's kubeconfig.
    pub fn kubectl(&self) -> Command {
        let mut cmd = Command::new(self.bin_dir.join("kubectl"));
        cmd.arg("--kubeconfig").arg(&self.kubeconfig);
        cmd
    }

    /// `kubectl apply -f -` of `yaml`; fails with kubectl's stderr. An apply that loses a
    /// create race to another test applying the same object at once (kubectl's GET found
    /// nothing, its POST met AlreadyExists) is run once more, and then updates the object.
    pub fn apply(&self, yaml: &str) -> Result<()> {
        match self.apply_once(yaml) {
            Err(e) if e.to_string().contains("AlreadyExists") => self.apply_once(yaml),
            other => other,
        }
    }

    fn apply_once(&self, yaml: &str) -> Result<()> {
        use std::io::Write;
        let mut child = self
            .kubectl()
            .args(["apply", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        child.stdin.take().unwrap().write_all(yaml.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            anyhow::bail!("kubectl apply: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    /// The kubeconfig file (admin user).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The directory with the control-plane executables.
    pub fn bin_path(&self) -> &Path {
        &self.bin_dir
    }

    /// Freezes kube-controller-manager (SIGSTOP) until the returned guard is dropped
    /// (SIGCONT): a test can then look at state the controllers would change a moment later,
    /// such as a condition left from the namespace controller's last pass.
    pub fn pause_controller_manager(&self) -> Paused<'_> {
        self.signal_controller_manager(libc::SIGSTOP);
        Paused(self)
    }

    /// Restarts kube-apiserver in place, as a control-plane upgrade or a crash-looping static
    /// pod does: SIGTERM (its graceful shutdown; SIGKILL after `grace`), then the same
    /// executable with the same flags, so the same port, certificates and etcd data. Every
    /// kubeconfig points at that port, so the controller-manager, the kubelet and any client
    /// reconnect on their own. Returns once the new process's `/readyz` says ok.
    pub async fn restart_apiserver(&self, grace: Duration) -> Result<ApiServerRestart> {
        self.restart_apiserver_with(grace, None, |_| Ok(())).await
    }

    /// [`LocalCluster::restart_apiserver`], calling `while_down` once the old process has
    /// exited and before the new one starts (to change etcd behind the API server's back, as
    /// [`LocalCluster::compact_etcd`] does), and starting the new one with `flags` in place of
    /// the extra flags the cluster was started with, when given (`Some(&[])`: none).
    pub async fn restart_apiserver_with(
        &self,
        grace: Duration,
        flags: Option<&[String]>,
        while_down: impl FnOnce(&Self) -> Result<()>,
    ) -> Result<ApiServerRestart> {
        let started = Instant::now();
        let killed = {
            let mut processes = self.processes_mut();
            let apiserver = processes
                .iter_mut()
                .find(|p| p.name() == "kube-apiserver")
                .context("this cluster has no kube-apiserver")?;
            let killed = apiserver.stop(grace);
            while_down(self)?;
            if let Some(flags) = flags {
                let mut extra = self
                    .apiserver_flags
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                apiserver.replace_flags(&extra, flags);
                *extra = flags.to_vec();
            }
            apiserver.start_again()?;
            killed
        };
        let stopped = started.elapsed();
        let kubeconfig = self.kubeconfig.clone();
        self.wait_for("the restarted kube-apiserver's /readyz", || {
            apiserver_ready(&kubeconfig)
        })
        .await?;
        Ok(ApiServerRestart {
            down: started.elapsed(),
            stopped,
            killed,
        })
    }

    /// Compacts etcd's history up to its current revision (physically): the API server can no
    /// longer serve a watch from a resourceVersion before it, nor a continue token; returns the
    /// revision. Through etcd's JSON gateway, as `etcdctl compaction --physical` does.
    pub fn compact_etcd(&self) -> Result<i64> {
        let port: u16 = self
            .etcd_url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .context("etcd's port")?;
        // A range over one key answers with the header of the current revision.
        let (code, body) = http_post(port, "/v3/kv/range", r#"{"key":"AA=="}"#)
            .context("etcd's JSON gateway does not answer")?;
        if code != 200 {
            bail!("etcd /v3/kv/range answered {code}: {body}");
        }
        let header: serde_json::Value = serde_json::from_str(&body)?;
        let revision: i64 = header["header"]["revision"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .with_context(|| format!("no revision in {body}"))?;
        let (code, body) = http_post(
            port,
            "/v3/kv/compaction",
            &format!(r#"{{"revision":"{revision}","physical":true}}"#),
        )
        .context("etcd's JSON gateway does not answer")?;
        if code != 200 {
            bail!("etcd /v3/kv/compaction answered {code}: {body}");
        }
        Ok(revision)
    }

    fn processes_mut(&self) -> std::sync::MutexGuard<'_, Vec<Process>> {
        self.processes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn signal_controller_manager(&self, signal: i32) {
        for p in self
            .processes_mut()
            .iter()
            .filter(|p| p.name() == "kube-controller-manager")
        {
            p.signal(signal);
        }
    }

    /// The PID of the control-plane process `name` (`kube-apiserver`, `etcd`,
    /// `kube-controller-manager`), for reading its memory.
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.processes_mut()
            .iter()
            .find(|p| p.name() == name)
            .map(process::Process::pid)
    }

    /// The API server's audit log (JSON lines): every request nsguard's ServiceAccount
    /// makes, with the response body.
    pub fn audit_log(&self) -> PathBuf {
        self.dir.join("audit.log")
    }

    /// The directory holding state and the processes' logs (`<name>.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The API server's URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The CA that signed the API server's certificate; it can sign a webhook's too.
    pub fn ca(&self) -> &Ca {
        &self.ca
    }

    /// Keeps the state directory and logs when this cluster is dropped.
    pub fn keep(&self) {
        self.keep_dir
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Stops the kubelet, then every process this cluster started, controller-manager first.
    pub fn stop(&mut self) {
        self.kubelet = None;
        while let Some(mut p) = self.processes_mut().pop() {
            p.stop(Duration::from_secs(10));
        }
    }
}

/// How a [`LocalCluster::restart_apiserver`] went.
#[derive(Clone, Copy, Debug)]
pub struct ApiServerRestart {
    /// From the SIGTERM until the new process's `/readyz` said ok.
    pub down: Duration,
    /// From the SIGTERM until the old process had exited.
    pub stopped: Duration,
    /// The old process did not exit within the grace and got SIGKILL.
    pub killed: bool,
}

/// kube-controller-manager frozen; resumed when dropped (also when a test panics).
pub struct Paused<'a>(&'a LocalCluster);

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        self.0.signal_controller_manager(libc::SIGCONT);
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.stop();
        if self.keep_dir.load(std::sync::atomic::Ordering::Relaxed) || std::thread::panicking() {
            eprintln!(
                "localcluster: state and logs kept in {}",
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Whether the API server behind `kubeconfig` answers `/readyz` with `ok` (a new client each
/// time: no connection kept from before a restart).
async fn apiserver_ready(kubeconfig: &Path) -> Result<bool> {
    let Ok(client) = client_for(kubeconfig).await else {
        return Ok(false);
    };
    let req = http::Request::get("/readyz").body(Vec::new())?;
    Ok(client
        .request_text(req)
        .await
        .is_ok_and(|body| body == "ok"))
}

async fn client_for(kubeconfig: &Path) -> Result<Client> {
    let kubeconfig = Kubeconfig::read_from(kubeconfig)?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

/// The namespace of the GitOps controller every test world has.
pub const GITOPS_NAMESPACE: &str = "argocd";
/// Its ServiceAccount, bound to `cluster-admin` (also the `app.kubernetes.io/name` of its pod).
pub const GITOPS_SERVICE_ACCOUNT: &str = "argocd-application-controller";

const COMMON_WORLD: &str = r#"apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: kubeadm:cluster-admins
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: "kubeadm:cluster-admins"}
---
apiVersion: v1
kind: Namespace
metadata:
  name: argocd
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: argocd-application-controller
  namespace: argocd
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: argocd-application-controller
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects:
- {kind: ServiceAccount, name: argocd-application-controller, namespace: argocd}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: argocd-application-controller
  namespace: argocd
  labels: {app.kubernetes.io/name: argocd-application-controller, app.kubernetes.io/part-of: argocd}
spec:
  replicas: 1
  selector:
    matchLabels: {app.kubernetes.io/name: argocd-application-controller}
  template:
    metadata:
      labels: {app.kubernetes.io/name: argocd-application-controller, app.kubernetes.io/part-of: argocd}
    spec:
      serviceAccountName: argocd-application-controller
      containers:
      - name: application-controller
        image: quay.io/argoproj/argocd:v3.1.0
        args: [argocd-application-controller]
"#;

/// Whether the pod's Ready condition is True.
pub fn pod_is_ready(pod: &k8s_openapi::api::core::v1::Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

/// Records nsguard's requests with request and response bodies, nothing else: its
/// ServiceAccount, and the one the tests of manifests/overlays/no-secrets bind its role to.
const AUDIT_POLICY: &str = r#"apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: RequestResponse
  users: ["system:serviceaccount:nsguard-system:nsguard", "system:serviceaccount:nsguard-system:nsguard-no-secrets"]
- level: None
"#;

const LOOPBACK: std::net::IpAddr = std::net::IpAddr::V4(Ipv4Addr::LOCALHOST);

fn write_pair(dir: &Path, name: &str, pair: &certs::Pair) -> Result<()> {
    certs::write_file(&dir.join(format!("{name}.crt")), &pair.cert_pem, false)?;
    certs::write_file(&dir.join(format!("{name}.key")), &pair.key_pem, true)?;
    Ok(())
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    Ok(listener.local_addr()?.port())
}

/// Eight lowercase hex digits, different on every call: for names of test objects.
pub fn random_suffix() -> String {
    use std::hash::{BuildHasher, RandomState};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let h = RandomState::new().hash_one((n, std::process::id(), Instant::now()));
    format!("{:08x}", h as u32)
}

/// The repository's top directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// One control plane shared by every test of a test binary, started by the first test that
/// asks. Its state and logs stay in `target/localcluster/<test binary>/` until the next run of
/// the same binary, so they are there to read when a test fails; its processes die with the
/// test binary.
pub async fn shared() -> Result<&'static LocalCluster> {
    static SHARED: tokio::sync::OnceCell<LocalCluster> = tokio::sync::OnceCell::const_new();
    SHARED
        .get_or_try_init(|| async {
            let exe = std::env::current_exe()?;
            let stem = exe
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("tests")
                .to_string();
            let dir = workspace_root().join("target/localcluster").join(stem);
            let cluster = LocalCluster::start(&dir).await?;
            cluster.keep();
            eprintln!(
                "localcluster: {} (logs in {})",
                cluster.server(),
                dir.display()
            );
            Ok(cluster)
        })
        .await
}

/// `GET http://127.0.0.1:<port><path>`: status and body, or `None` when nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let request = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
    http(port, &request, Duration::from_secs(5))
}

/// `POST http://127.0.0.1:<port><path>` with a JSON `body`: status and body, or `None` when
/// nothing answers.
fn http_post(port: u16, path: &str, body: &str) -> Option<(u16, String)> {
    let request = format!(
        "POST {path} HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    http(port, &request, Duration::from_secs(10))
}

/// Sends one plain HTTP/1.0 `request` to `127.0.0.1:<port>` and reads the answer to its end:
/// status and body, or `None` when nothing answers within `timeout`.
fn http(port: u16, request: &str, timeout: Duration) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.write_all(request.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let code = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((code, body))
}

/// Whether `GET http://127.0.0.1:<port><path>` answers 200.
pub fn http_ok(port: u16, path: &str) -> bool {
    http_get(port, path).is_some_and(|(code, _)| code == 200)
}

/// A ValidatingWebhookConfiguration `name` sending `DELETE namespaces` to `url`, for the
/// namespaces matching `object_selector` (YAML flow style), `failurePolicy: Ignore` as
/// nsguard is installed.
pub fn namespace_delete_webhook(
    name: &str,
    url: &str,
    object_selector: &str,
    ca_bundle: &str,
) -> String {
    format!(
        r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: {name}
webhooks:
- name: namespaces.nsguard.io
  admissionReviewVersions: ["v1"]
  sideEffects: None
  failurePolicy: Ignore
  timeoutSeconds: 10
  rules:
  - {{apiGroups: [""], apiVersions: ["v1"], operations: ["DELETE"], resources: ["namespaces"], scope: Cluster}}
  objectSelector: {object_selector}
  clientConfig:
    url: {url}
    caBundle: {ca_bundle}
"#
    )
}
