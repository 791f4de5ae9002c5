//! `make run`: a local control plane with nsguard registered in enforce mode (and a second
//! instance in warn mode for namespaces labelled `nsguard.io/mode=warn`), demo namespaces,
//! and the commands that show nsguard working, each with what it should show. The same
//! [`Step`]s are what the end-to-end test of the demo runs, so what is printed is what is
//! tested.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::LocalCluster;
use crate::backend::Backend;
use crate::nsguard::{Nsguard, Tls};

/// What a step's command should show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Fails with an error naming this text.
    Denied(&'static str),
    /// Succeeds, printing a warning containing this text.
    Warned(&'static str),
    /// Succeeds; stdout contains this text.
    Succeeds(&'static str),
}

/// One command to paste, with what it shows.
#[derive(Clone, Debug)]
pub struct Step {
    /// What the step shows.
    pub title: &'static str,
    /// The shell command.
    pub command: String,
    /// What it should show.
    pub expect: Expect,
}

/// The demo, running until dropped.
pub struct Demo {
    /// The control plane.
    pub cluster: LocalCluster,
    /// The commands to paste, in order.
    pub steps: Vec<Step>,
    /// Log files of the nsguard instances.
    pub logs: Vec<PathBuf>,
    nsguards: Vec<Nsguard>,
    _backend: Backend,
}

const CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.demo.nsguard.io
spec:
  group: demo.nsguard.io
  scope: Namespaced
  names: {plural: gadgets, singular: gadget, kind: Gadget, listKind: GadgetList}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
"#;

fn namespace(name: &str, labels: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels: {{{labels}}}\n")
}

fn gadget(ns: &str) -> String {
    format!(
        "apiVersion: demo.nsguard.io/v1\nkind: Gadget\nmetadata:\n  name: g1\n  namespace: {ns}\n  finalizers: [demo.nsguard.io/cleanup]\n"
    )
}

fn kubectl(cluster: &LocalCluster, args: &[&str]) -> Result<std::process::Output> {
    Ok(cluster.kubectl().args(args).output()?)
}

fn wait_for(what: &str, deadline: Duration, mut ok: impl FnMut() -> bool) -> Result<()> {
    let until = Instant::now() + deadline;
    while !ok() {
        if Instant::now() > until {
            bail!("timed out after {deadline:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Ok(())
}

impl Demo {
    /// Starts everything under `dir` with the nsguard binary `nsguard`.
    pub async fn start(dir: &Path, nsguard: &Path) -> Result<Self> {
        let cluster = LocalCluster::start(dir.join("cluster")).await?;
        let certs = dir.join("certs");
        let out = Command::new(nsguard)
            .args(["certs", "--out-dir"])
            .arg(&certs)
            .args(["--dns", "localhost", "--ip", "127.0.0.1"])
            .output()
            .context("running nsguard certs")?;
        if !out.status.success() {
            bail!("nsguard certs: {}", String::from_utf8_lossy(&out.stderr));
        }
        let ca_bundle = String::from_utf8(out.stdout)?.trim().to_string();

        // nsguard runs as installed: its own ServiceAccount with the manifests' RBAC.
        let mut nsguards = Vec::new();
        let mut logs = Vec::new();
        for (mode, selector) in [
            (
                "enforce",
                r#"{matchExpressions: [{key: nsguard.io/mode, operator: NotIn, values: [warn]}]}"#,
            ),
            ("warn", r#"{matchLabels: {nsguard.io/mode: warn}}"#),
        ] {
            let name = format!("nsguard-{mode}");
            let (cert, key) = (certs.join("tls.crt"), certs.join("tls.key"));
            let mut guard = Nsguard::new(
                &cluster,
                nsguard,
                dir,
                &name,
                Tls::Files {
                    cert: &cert,
                    key: &key,
                },
                &[format!("--mode={mode}")],
            )?;
            guard
                .start(Duration::from_secs(60))
                .await
                .with_context(|| format!("starting {name}"))?;
            guard.register(&cluster, &name, selector, &ca_bundle)?;
            logs.push(guard.log_path().to_path_buf());
            nsguards.push(guard);
        }

        // The demo namespaces.
        cluster.apply(CRD)?;
        kubectl(
            &cluster,
            &[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "crd/gadgets.demo.nsguard.io",
            ],
        )?;
        cluster.apply(&namespace("demo-stuck", ""))?;
        cluster.apply(&gadget("demo-stuck"))?;
        cluster.apply(&namespace("demo-warn", "nsguard.io/mode: warn"))?;
        cluster.apply(&gadget("demo-warn"))?;
        cluster.apply(&namespace("demo-healthy", ""))?;
        cluster.apply(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: demo-healthy}\ndata: {color: blue}\n",
        )?;
        // An aggregated API served from demo-apiserver (the stand-in server plays its pods).
        cluster.apply(&namespace("demo-apiserver", ""))?;
        let backend = Backend::start(&cluster, &[]).await;
        backend.serve_api(&cluster, "demo-apiserver", "demo.nsguard.io")?;
        // Ready when the API server calls nsguard and nsguard sees the demo.
        wait_for("nsguard to see the demo", Duration::from_secs(60), || {
            kubectl(
                &cluster,
                &["delete", "namespace", "demo-stuck", "--dry-run=server"],
            )
            .is_ok_and(|o| String::from_utf8_lossy(&o.stderr).contains("finalizer-controller"))
        })?;

        let patch = |ns: &str| {
            format!(
                "kubectl patch gadgets.demo.nsguard.io g1 -n {ns} --type=merge -p '{{\"metadata\":{{\"finalizers\":null}}}}'"
            )
        };
        let steps = vec![
            Step {
                title: "A denial: demo-stuck holds a custom resource whose finalizer no controller will remove",
                command: "kubectl delete namespace demo-stuck".into(),
                expect: Expect::Denied("finalizer-controller"),
            },
            Step {
                title: "A server dry run: the same answer, nothing changes",
                command: "kubectl delete namespace demo-stuck --dry-run=server".into(),
                expect: Expect::Denied("finalizer-controller"),
            },
            Step {
                title: "demo-apiserver serves an aggregated API: deleting it would make every namespace deletion hang",
                command: "kubectl delete namespace demo-apiserver".into(),
                expect: Expect::Denied("hosts-apiservice-backend"),
            },
            Step {
                title: "The same preflight from the command line (exit code 4: would hang)",
                command: "nsguard check demo-apiserver || test $? -eq 4".into(),
                expect: Expect::Succeeds("kubectl delete apiservice v1alpha1.demo.nsguard.io"),
            },
            Step {
                title: "A clean deletion",
                command: "kubectl delete namespace demo-healthy".into(),
                expect: Expect::Succeeds("namespace \"demo-healthy\" deleted"),
            },
            Step {
                title: "Warn mode (demo-warn is labelled nsguard.io/mode=warn): allowed, with warnings",
                command: "kubectl delete namespace demo-warn --wait=false".into(),
                expect: Expect::Warned("finalizer-controller"),
            },
            Step {
                title: "...and it really hangs, as warned; diagnose says why and how to fix it",
                command: "kubectl wait --for=condition=NamespaceFinalizersRemaining namespace/demo-warn --timeout=60s && nsguard diagnose demo-warn || test $? -eq 4".into(),
                expect: Expect::Succeeds("kubectl patch gadgets.demo.nsguard.io g1 -n demo-warn"),
            },
            Step {
                title: "Apply the remedy: demo-warn finishes",
                command: format!("{} && kubectl wait --for=delete namespace/demo-warn --timeout=60s", patch("demo-warn")),
                expect: Expect::Succeeds("patched"),
            },
            Step {
                title: "The override: an annotation with a reason lets it through, with a warning and an Event",
                command: "kubectl annotate namespace demo-stuck nsguard.io/allow-stuck-delete=TICKET-1 && kubectl delete namespace demo-stuck --wait=false".into(),
                expect: Expect::Warned("nsguard.io/allow-stuck-delete (TICKET-1)"),
            },
            Step {
                title: "Clean up demo-stuck",
                command: format!("{} && kubectl wait --for=delete namespace/demo-stuck --timeout=60s", patch("demo-stuck")),
                expect: Expect::Succeeds("patched"),
            },
            Step {
                title: "The record of the override, an Event on the Namespace",
                command: "kubectl get events -n default --field-selector reason=DeletionOverridden -o custom-columns=REASON:.reason,MESSAGE:.message".into(),
                expect: Expect::Succeeds("DeletionOverridden"),
            },
        ];
        Ok(Self {
            cluster,
            steps,
            logs,
            nsguards,
            _backend: backend,
        })
    }

    /// The environment every step runs in: this cluster's kubeconfig, its kubectl and nsguard
    /// first on PATH.
    pub fn env(&self, nsguard: &Path) -> Vec<(String, String)> {
        let nsguard_dir = nsguard.parent().unwrap_or(Path::new("."));
        vec![
            (
                "KUBECONFIG".into(),
                self.cluster.kubeconfig().display().to_string(),
            ),
            (
                "PATH".into(),
                format!(
                    "{}:{}:{}",
                    self.cluster.bin_path().display(),
                    nsguard_dir.display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            ),
        ]
    }

    /// The text `make run` prints.
    pub fn instructions(&self, nsguard: &Path) -> String {
        let mut out = String::from(
            "nsguard is running in enforce mode on a local control plane.\nIn another terminal:\n\n",
        );
        let nsguard_dir = nsguard.parent().unwrap_or(Path::new("."));
        out.push_str(&format!(
            "export KUBECONFIG={}\nexport PATH={}:{}:$PATH\n",
            self.cluster.kubeconfig().display(),
            self.cluster.bin_path().display(),
            nsguard_dir.display()
        ));
        out.push('\n');
        for (i, s) in self.steps.iter().enumerate() {
            out.push_str(&format!("# {}. {}\n{}\n\n", i + 1, s.title, s.command));
        }
        out.push_str(&format!(
            "nsguard's logs: {}\nCtrl-C here stops everything.\n",
            self.logs
                .iter()
                .map(|l| l.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        out
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        for guard in &mut self.nsguards {
            guard.kill();
        }
    }
}
