//! `make faults`: two faults in the middle of a deletion storm on the real local control
//! plane, measured (issue 13).
//!
//! - **nsguard killed**: N namespaces (one ConfigMap each, nothing that blocks) deleted at
//!   once; once about half the reviews are answered nsguard gets SIGKILL and is started again
//!   at once, as the kubelet restarts a crashed container. Measured: whether every deletion
//!   still goes through and how long until every namespace is gone, which reviews nsguard
//!   answered and which the API server failed open (and why), how long nsguard took to take
//!   traffic again.
//! - **kube-apiserver restarted**: the same storm; once about half the reviews are answered
//!   kube-apiserver is restarted in place (SIGTERM, same flags and etcd data). Measured: every
//!   review nsguard answered and how long it took against the webhook's timeout, the API
//!   server's fail-opens, how long until nsguard's content index is synced again, and how
//!   many deletions the client lost while the API server was down (retried here and counted).
//!
//! nsguard runs as in production: its own ServiceAccount with the manifests' RBAC, behind the
//! ValidatingWebhookConfiguration of `manifests/base/webhook.yaml` (failurePolicy and
//! timeoutSeconds as written there; only the clientConfig points at the local process).
//!
//! Usage: `nsguard-faults NSGUARD_BINARY RELIABILITY_MARKDOWN [N]`. The figures replace the
//! text between the markers of the section in RELIABILITY_MARKDOWN (appended if absent).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use localcluster::nsguard::{Nsguard as Launched, Tls};
use localcluster::{LocalCluster, http_get, http_ok, workspace_root};
use nsguard_bench::{create_all, machine, scrape, sum};

/// Label on every storm namespace; its value names the scenario.
const STORM_LABEL: &str = "nsguard.io/faults";
/// How long every namespace of a storm has to be gone, from the first DELETE.
const GONE_DEADLINE: Duration = Duration::from_secs(300);
/// How long nsguard's index has to be synced again after the API server restart.
const RESYNC_DEADLINE: Duration = Duration::from_secs(180);
/// How often nsguard refreshes `nsguard_index_types` (serve.rs): the resolution of the resync
/// time.
const INDEX_GAUGE_PERIOD: Duration = Duration::from_secs(5);
const BEGIN: &str = "<!-- make faults: begin (generated; rerun `make faults` to update) -->";
const END: &str = "<!-- make faults: end -->";
/// A namespace that lives through the run, for dry runs.
const PROBE: &str = "faults-probe";
const HEADING: &str = "## Faults mid-storm: nsguard killed, the API server restarted";

/// The webhook as the manifests install it.
struct Webhook {
    yaml: String,
    failure_policy: String,
    timeout_s: u64,
}

/// `manifests/base/webhook.yaml` with its clientConfig pointed at `url`.
fn manifest_webhook(url: &str, ca_bundle: &str) -> Result<Webhook> {
    let path = workspace_root().join("manifests/base/webhook.yaml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .map(|v| v.trim().to_string())
            .with_context(|| format!("{} has no {key}", path.display()))
    };
    let failure_policy = field("failurePolicy:")?;
    let timeout_s = field("timeoutSeconds:")?
        .parse()
        .with_context(|| format!("timeoutSeconds in {}", path.display()))?;
    let mut yaml = String::new();
    let mut replaced = false;
    for line in text.lines() {
        match line.trim_start().strip_prefix("service:") {
            Some(_) => {
                let indent = &line[..line.len() - line.trim_start().len()];
                let _ = writeln!(yaml, "{indent}url: {url}\n{indent}caBundle: {ca_bundle}");
                replaced = true;
            }
            None => {
                let _ = writeln!(yaml, "{line}");
            }
        }
    }
    if !replaced {
        bail!(
            "{} has no clientConfig.service line to point at the local nsguard",
            path.display()
        );
    }
    Ok(Webhook {
        yaml,
        failure_policy,
        timeout_s,
    })
}

/// The `nsguard serve` process, started again on the same ports after a kill.
struct Nsguard {
    process: Launched,
    admin: u16,
    log: PathBuf,
}

impl Nsguard {
    fn new(cluster: &LocalCluster, bin: &Path, dir: &Path) -> Result<(Self, u16)> {
        let process = Launched::new(
            cluster,
            bin,
            dir,
            "nsguard",
            Tls::FromClusterCa,
            &["--mode=enforce".to_string()],
        )?;
        let port = process.port();
        let guard = Self {
            admin: process.admin_port(),
            log: process.log_path().to_path_buf(),
            process,
        };
        Ok((guard, port))
    }

    /// Starts the process (its log appended to `nsguard.log`) and waits until `/readyz`
    /// says ready; returns how long that took.
    async fn start(&mut self) -> Result<Duration> {
        self.process.start(Duration::from_secs(120)).await
    }

    /// SIGKILL, and reap it.
    fn kill(&mut self) -> Result<()> {
        self.process.kill();
        Ok(())
    }

    /// Its metrics text, or empty when it does not answer.
    async fn metrics(&self) -> String {
        get(self.admin, "/metrics")
            .await
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    /// Namespace DELETE reviews decided so far by this process (not dry runs).
    async fn decisions(&self) -> f64 {
        sum(
            &self.metrics().await,
            "nsguard_admission_reviews_total",
            "dry_run=\"false\"",
        )
    }
}

/// `http_get` off the runtime's threads.
async fn get(port: u16, path: &'static str) -> Option<(u16, String)> {
    tokio::task::spawn_blocking(move || http_get(port, path))
        .await
        .ok()
        .flatten()
}

/// One Decision line of nsguard's log.
struct Decision {
    namespace: String,
    decision: String,
    duration_ms: f64,
}

/// The decisions on namespaces starting with `prefix` in nsguard's log.
fn decisions_in_log(log: &Path, prefix: &str) -> Vec<Decision> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let key = format!("namespace={prefix}");
    let field = |line: &str, name: &str| -> Option<String> {
        let rest = line.split(&format!(" {name}=")).nth(1)?;
        let value = rest.split([' ', '}']).next()?.trim_matches('"');
        Some(value.to_string())
    };
    text.lines()
        .filter(|l| l.contains(&key) && l.contains(" Decision "))
        .filter_map(|l| {
            Some(Decision {
                namespace: field(l, "namespace")?,
                decision: field(l, "decision")?,
                duration_ms: field(l, "duration_ms")?.parse().ok()?,
            })
        })
        .collect()
}

/// The API server's "failing open" log lines for nsguard's webhook after byte `from`, counted
/// by cause. The log survives a restart (appended), its metrics do not.
fn fail_opens_in_log(log: &Path, from: u64) -> BTreeMap<&'static str, usize> {
    let bytes = std::fs::read(log).unwrap_or_default();
    let start = usize::try_from(from).unwrap_or(0).min(bytes.len());
    let text = String::from_utf8_lossy(&bytes[start..]);
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.contains("Failed calling webhook, failing open namespaces.nsguard.io"))
    {
        let cause = if line.contains("connection refused") {
            "connection refused"
        } else if line.contains("deadline exceeded") || line.contains("Timeout") {
            "timeout"
        } else if line.contains("EOF")
            || line.contains("connection reset")
            || line.contains("broken pipe")
        {
            "connection lost mid-review"
        } else {
            "other"
        };
        *out.entry(cause).or_default() += 1;
    }
    out
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Creates `n` namespaces `<prefix>-NNN` labelled for `scenario`, each with one ConfigMap.
async fn create_storm(client: &Client, scenario: &str, n: usize) -> Result<Vec<String>> {
    let names: Vec<String> = (0..n)
        .map(|i| format!("faults-{scenario}-{i:03}"))
        .collect();
    create_all(names.clone(), 16, |name| {
        let client = client.clone();
        async move {
            let mut ns = Namespace::default();
            ns.metadata.name = Some(name.clone());
            ns.metadata.labels = Some([(STORM_LABEL.to_string(), scenario.to_string())].into());
            Api::<Namespace>::all(client.clone())
                .create(&PostParams::default(), &ns)
                .await
                .with_context(|| format!("creating namespace {name}"))?;
            let mut cm = ConfigMap::default();
            cm.metadata.name = Some("payload".into());
            cm.data = Some([("k".to_string(), "v".to_string())].into());
            Api::<ConfigMap>::namespaced(client, &name)
                .create(&PostParams::default(), &cm)
                .await
                .with_context(|| format!("creating a ConfigMap in {name}"))?;
            Ok(())
        }
    })
    .await?;
    Ok(names)
}

/// What became of one namespace's DELETE.
struct Deletion {
    /// DELETE calls made (more than one: the earlier ones failed and were retried).
    attempts: u32,
    /// Errors of the failed calls, shortened.
    errors: Vec<String>,
    /// The API server accepted the deletion (or the namespace was already being deleted).
    accepted: bool,
    /// A webhook denied it.
    denied: Option<String>,
    /// From the first DELETE sent to the one accepted (or given up).
    took: Duration,
}

/// Sends DELETE for `name` until the API server takes it (200, or 404/409: gone or already
/// Terminating, the case of an accepted DELETE whose answer the client lost), retrying every
/// 250 ms until `deadline`. A denial is not retried.
async fn delete_until_accepted(api: Api<Namespace>, name: String, deadline: Instant) -> Deletion {
    let t = Instant::now();
    let mut d = Deletion {
        attempts: 0,
        errors: Vec::new(),
        accepted: false,
        denied: None,
        took: Duration::ZERO,
    };
    loop {
        d.attempts += 1;
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => d.accepted = true,
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => d.accepted = true,
            Err(kube::Error::Api(s)) if s.code == 403 && s.message.contains("denied") => {
                d.denied = Some(s.message.clone());
            }
            Err(e) => {
                let mut e = e.to_string();
                e.truncate(160);
                d.errors.push(e);
                if Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    continue;
                }
            }
        }
        d.took = t.elapsed();
        return d;
    }
}

/// Every DELETE of a storm, sent at once.
fn send_storm(client: &Client, names: &[String]) -> Vec<tokio::task::JoinHandle<Deletion>> {
    let api = Api::<Namespace>::all(client.clone());
    let deadline = Instant::now() + GONE_DEADLINE;
    names
        .iter()
        .map(|name| tokio::spawn(delete_until_accepted(api.clone(), name.clone(), deadline)))
        .collect()
}

async fn collect(handles: Vec<tokio::task::JoinHandle<Deletion>>) -> Result<Vec<Deletion>> {
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.context("a DELETE task panicked")?);
    }
    Ok(out)
}

/// Polls nsguard's decision counter until it has grown by `n` from `base`.
async fn wait_decisions(guard: &Nsguard, base: f64, n: f64) -> Result<f64> {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let now = guard.decisions().await;
        if now - base >= n {
            return Ok(now - base);
        }
        if Instant::now() > until {
            bail!(
                "nsguard decided {} of the storm's reviews in 60 s, waiting for {n}",
                now - base
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Seconds from `started` until no namespace labelled `scenario` is left, or how many are left
/// at the deadline. List errors (the API server down) count as not yet.
async fn wait_gone(
    client: Client,
    scenario: &'static str,
    started: Instant,
) -> (Option<f64>, usize) {
    let api = Api::<Namespace>::all(client);
    let lp = ListParams::default().labels(&format!("{STORM_LABEL}={scenario}"));
    let mut left = usize::MAX;
    loop {
        if let Ok(list) = api.list_metadata(&lp).await {
            left = list.items.len();
            if left == 0 {
                return (Some(started.elapsed().as_secs_f64()), 0);
            }
        }
        if started.elapsed() > GONE_DEADLINE {
            return (None, left);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until the API server sends nsguard a review: a server dry run of deleting `probe`
/// until nsguard's dry-run counter moves.
async fn wait_webhook_live(client: &Client, guard: &Nsguard, probe: &str) -> Result<()> {
    let api = Api::<Namespace>::all(client.clone());
    let dp = DeleteParams {
        dry_run: true,
        ..Default::default()
    };
    let dry = |t: String| sum(&t, "nsguard_admission_reviews_total", "dry_run=\"true\"");
    let before = dry(guard.metrics().await);
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        // Allowed or failed open, both are answers; only nsguard's counter matters.
        let _ = api.delete(probe, &dp).await;
        if dry(guard.metrics().await) > before {
            return Ok(());
        }
        if Instant::now() > until {
            bail!("the API server did not call nsguard within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How the DELETEs of a storm went, from the client's side.
struct ClientSide {
    accepted: usize,
    denied: usize,
    given_up: usize,
    /// Namespaces whose first DELETE failed (the client retried).
    retried: usize,
    /// Failed DELETE calls in all.
    failed_calls: usize,
    /// One error of each kind seen, with how often.
    errors: BTreeMap<String, usize>,
    slowest_s: f64,
}

fn client_side(deletions: &[Deletion]) -> ClientSide {
    let mut errors = BTreeMap::new();
    for e in deletions.iter().flat_map(|d| &d.errors) {
        // The error without the namespace's name, so that kinds group.
        let kind = e
            .split("faults-")
            .next()
            .unwrap_or(e)
            .trim_end_matches(['/', '"', ' '])
            .to_string();
        *errors.entry(kind).or_default() += 1;
    }
    ClientSide {
        accepted: deletions.iter().filter(|d| d.accepted).count(),
        denied: deletions.iter().filter(|d| d.denied.is_some()).count(),
        given_up: deletions
            .iter()
            .filter(|d| !d.accepted && d.denied.is_none())
            .count(),
        retried: deletions.iter().filter(|d| d.attempts > 1).count(),
        failed_calls: deletions.iter().map(|d| d.errors.len()).sum(),
        errors,
        slowest_s: deletions
            .iter()
            .map(|d| d.took.as_secs_f64())
            .fold(0.0, f64::max),
    }
}

/// nsguard's side of a storm: its Decision lines.
struct Reviews {
    decided: usize,
    by_outcome: BTreeMap<String, usize>,
    /// Namespaces with a Decision line.
    namespaces: usize,
    max_ms: f64,
    over_timeout: usize,
}

fn reviews(log: &Path, prefix: &str, timeout_s: u64) -> Reviews {
    let decisions = decisions_in_log(log, prefix);
    let mut by_outcome = BTreeMap::new();
    for d in &decisions {
        *by_outcome.entry(d.decision.clone()).or_default() += 1;
    }
    let mut namespaces: Vec<&str> = decisions.iter().map(|d| d.namespace.as_str()).collect();
    namespaces.sort_unstable();
    namespaces.dedup();
    Reviews {
        decided: decisions.len(),
        by_outcome,
        namespaces: namespaces.len(),
        max_ms: decisions.iter().map(|d| d.duration_ms).fold(0.0, f64::max),
        over_timeout: decisions
            .iter()
            .filter(|d| d.duration_ms > timeout_s as f64 * 1000.0)
            .count(),
    }
}

struct Kill {
    n: usize,
    decided_at_kill: f64,
    restart_ready_s: f64,
    gone_s: Option<f64>,
    left: usize,
    client: ClientSide,
    reviews: Reviews,
    fail_opens_log: BTreeMap<&'static str, usize>,
    fail_opens_metric: f64,
    after_fault: DryRun,
}

/// Scenario a: nsguard SIGKILLed when about half the storm's reviews are answered, then
/// started again at once.
async fn scenario_kill(
    cluster: &LocalCluster,
    client: &Client,
    guard: &mut Nsguard,
    n: usize,
    timeout_s: u64,
) -> Result<Kill> {
    let names = create_storm(client, "kill", n).await?;
    let apiserver_log = cluster.dir().join("kube-apiserver.log");
    let log_from = file_len(&apiserver_log);
    let metric = |t: &str| sum(t, "apiserver_admission_webhook_fail_open_count", "");
    let fail_open_before = metric(&scrape(client, "/metrics").await?);
    let base = guard.decisions().await;
    let started = Instant::now();
    let handles = send_storm(client, &names);
    // Watched from the start, so that nothing later in the scenario delays the reading.
    let gone = tokio::spawn(wait_gone(client.clone(), "kill", started));
    let decided_at_kill = wait_decisions(guard, base, (n / 2) as f64).await?;
    guard.kill()?;
    eprintln!("faults: nsguard killed after {decided_at_kill} decisions; starting it again");
    let restart_ready_s = guard.start().await?.as_secs_f64();
    let deletions = collect(handles).await?;
    let (gone_s, left) = gone.await.context("watching the namespaces go")?;
    let fail_opens_metric = metric(&scrape(client, "/metrics").await?) - fail_open_before;
    let after_fault = dry_run(cluster, client, guard).await?;
    Ok(Kill {
        n,
        decided_at_kill,
        restart_ready_s,
        gone_s,
        left,
        client: client_side(&deletions),
        reviews: reviews(&guard.log, "faults-kill-", timeout_s),
        fail_opens_log: fail_opens_in_log(&apiserver_log, log_from),
        fail_opens_metric,
        after_fault,
    })
}

/// A server dry run of deleting the probe namespace (known to nsguard since the start).
struct DryRun {
    /// End to end, from the client.
    ms: f64,
    /// nsguard decided and allowed it (its counter of allowed dry runs moved); otherwise the
    /// API server went without it.
    decided: bool,
    /// LISTs nsguard made in the namespace for it (audit log): 0 with every type in its index
    /// synced, one per type it could not trust.
    lists: usize,
}

async fn dry_run(cluster: &LocalCluster, client: &Client, guard: &Nsguard) -> Result<DryRun> {
    let allowed = |t: String| {
        sum(
            &t,
            "nsguard_admission_reviews_total",
            "decision=\"allowed\",dry_run=\"true\"",
        )
    };
    let before = allowed(guard.metrics().await);
    let audit = cluster.audit_log();
    let from = file_len(&audit);
    let dp = DeleteParams {
        dry_run: true,
        ..Default::default()
    };
    let t = Instant::now();
    let answered = Api::<Namespace>::all(client.clone())
        .delete(PROBE, &dp)
        .await
        .is_ok();
    let ms = t.elapsed().as_secs_f64() * 1e3;
    let decided = answered && allowed(guard.metrics().await) > before;
    Ok(DryRun {
        ms,
        decided,
        lists: lists_in_audit(&audit, from, PROBE),
    })
}

/// LISTs in namespace `ns` completed after byte `from` of the audit log (which records only
/// nsguard's ServiceAccount; the default blocking mode writes an event before the answer).
fn lists_in_audit(audit: &Path, from: u64, ns: &str) -> usize {
    let bytes = std::fs::read(audit).unwrap_or_default();
    let start = usize::try_from(from).unwrap_or(0).min(bytes.len());
    String::from_utf8_lossy(&bytes[start..])
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| {
            e["verb"] == "list"
                && e["stage"] == "ResponseComplete"
                && e["objectRef"]["namespace"] == ns
        })
        .count()
}

/// nsguard's index gauge and readiness, sampled.
#[derive(Clone, Copy)]
struct Sample {
    at: Duration,
    ready: bool,
    synced: f64,
    syncing: f64,
    failing: f64,
}

/// Samples nsguard's `/readyz` and `nsguard_index_types` every 100 ms on a thread of its own
/// (independent of the runtime that awaits the restart) until `stop`.
fn monitor(
    admin: u16,
    t0: Instant,
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let at = t0.elapsed();
            let ready = http_ok(admin, "/readyz");
            let text = http_get(admin, "/metrics")
                .map(|(_, b)| b)
                .unwrap_or_default();
            let state = |s: &str| sum(&text, "nsguard_index_types", &format!("state=\"{s}\""));
            if let Ok(mut v) = samples.lock() {
                v.push(Sample {
                    at,
                    ready,
                    synced: state("synced"),
                    syncing: state("syncing"),
                    failing: state("failing"),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
}

struct Restart {
    n: usize,
    decided_before: f64,
    down_s: f64,
    /// From the SIGTERM until the old process had exited.
    stopped_s: f64,
    /// It did not exit within the grace and got SIGKILL.
    killed: bool,
    synced_before: f64,
    lowest_synced: f64,
    most_failing: f64,
    not_ready_s: f64,
    /// From the SIGTERM until the index gauge is back to `synced_before`, nothing failing.
    resynced_s: Option<f64>,
    /// At the deadline, when it did not resync: (synced, syncing, failing).
    stuck: Option<(f64, f64, f64)>,
    gone_s: Option<f64>,
    left: usize,
    client: ClientSide,
    reviews: Reviews,
    fail_opens_log: BTreeMap<&'static str, usize>,
    after_fault: DryRun,
}

/// The index gauge now: (synced, syncing, failing).
async fn index_types(guard: &Nsguard) -> (f64, f64, f64) {
    let text = guard.metrics().await;
    let state = |s: &str| sum(&text, "nsguard_index_types", &format!("state=\"{s}\""));
    (state("synced"), state("syncing"), state("failing"))
}

/// The index against the truth, after the faults.
struct Truth {
    /// Types and objects in the last comparison.
    types: usize,
    objects: u64,
    /// Seconds from the last change (the CRD deleted) until every type's digest equalled a
    /// fresh LIST of it; `None`: never within the deadline.
    equal_s: Option<f64>,
    /// The types that differed in the last comparison, if any.
    differing: Vec<String>,
    /// The added CRD's type was in the index (with its objects), the removed one was not.
    added_seen: bool,
    removed_gone: bool,
}

const TRUTH_DEADLINE: Duration = Duration::from_secs(120);

fn truth_crd(group: &str) -> String {
    format!(
        "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.{group}
spec:
  group: {group}
  scope: Namespaced
  names: {{plural: gadgets, singular: gadget, kind: Gadget, listKind: GadgetList}}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}
"
    )
}

fn kubectl(cluster: &LocalCluster, args: &[&str]) -> Result<()> {
    let status = cluster.kubectl().args(args).status()?;
    if !status.success() {
        bail!("kubectl {} failed", args.join(" "));
    }
    Ok(())
}

/// Scenario c, after the restart: CRDs added and removed while nsguard runs, objects created
/// and a finalizer added and removed; then nsguard's `/debug/index-digest` is compared with a
/// fresh LIST of every type it indexes until they agree (or the deadline passes).
async fn scenario_truth(cluster: &LocalCluster, client: &Client, guard: &Nsguard) -> Result<Truth> {
    let (added, removed) = ("truth-added.nsguard.bench", "truth-removed.nsguard.bench");
    cluster.apply(&truth_crd(removed))?;
    cluster.apply(&truth_crd(added))?;
    for group in [added, removed] {
        kubectl(
            cluster,
            &[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                &format!("crd/gadgets.{group}"),
            ],
        )?;
    }
    for i in 0..5 {
        cluster.apply(&format!(
            "apiVersion: {added}/v1\nkind: Gadget\nmetadata:\n  name: g{i}\n  namespace: {PROBE}\n"
        ))?;
    }
    cluster.apply(&format!(
        "apiVersion: {removed}/v1\nkind: Gadget\nmetadata:\n  name: r0\n  namespace: {PROBE}\n"
    ))?;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), PROBE);
    let mut held = ConfigMap::default();
    held.metadata.name = Some("held".into());
    held.metadata.finalizers = Some(vec!["nsguard.bench/hold".into()]);
    configmaps.create(&PostParams::default(), &held).await?;
    // The removed type is watched before it goes: wait until the index lists it.
    let until = Instant::now() + TRUTH_DEADLINE;
    while !get(guard.admin, "/debug/index-digest")
        .await
        .is_some_and(|(_, b)| b.contains(&format!("gadgets.{removed}")))
    {
        if Instant::now() > until {
            bail!("nsguard never indexed gadgets.{removed}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let patch = serde_json::json!({"metadata": {"finalizers": null}});
    configmaps
        .patch(
            "held",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await?;
    kubectl(
        cluster,
        &[
            "delete",
            "crd",
            &format!("gadgets.{removed}"),
            "--wait=true",
        ],
    )?;
    let changed = Instant::now();
    let mut last = Vec::new();
    let mut equal_s = None;
    while changed.elapsed() < TRUTH_DEADLINE {
        if let Some((200, body)) = get(guard.admin, "/debug/index-digest").await {
            last = nsguard_bench::compare_index(client, &body).await?;
            let has = |name: &str| last.iter().any(|c| c.resource == name);
            if last.iter().all(|c| c.equal() && c.state == "synced")
                && has(&format!("gadgets.{added}"))
                && !has(&format!("gadgets.{removed}"))
            {
                equal_s = Some(changed.elapsed().as_secs_f64());
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let _ = configmaps.delete("held", &DeleteParams::default()).await;
    let _ = kubectl(cluster, &["delete", "crd", &format!("gadgets.{added}")]);
    Ok(Truth {
        types: last.len(),
        objects: last.iter().map(|c| c.list.0).sum(),
        equal_s,
        differing: last
            .iter()
            .filter(|c| !c.equal() || c.state != "synced")
            .map(|c| {
                format!(
                    "{} ({}: index {} objects, LIST {})",
                    c.resource, c.state, c.index.0, c.list.0
                )
            })
            .collect(),
        added_seen: last
            .iter()
            .any(|c| c.resource == format!("gadgets.{added}") && c.index.0 == 5),
        removed_gone: !last
            .iter()
            .any(|c| c.resource == format!("gadgets.{removed}")),
    })
}

fn render_truth(t: &Truth) -> String {
    let mut s = String::from(
        "### The index against the truth, after the faults\n\nAfter the API server restart (its watches broken, every type listed again), while nsguard keeps running: one CRD added (5 objects), one added then deleted with an object in it, a ConfigMap created with a finalizer that is then removed. Then nsguard's `/debug/index-digest` (per type: objects held and a hash of every (namespace, name, finalizers)) is compared with a fresh LIST of every type it indexes, every 0.5 s until they agree.\n\n| | measured |\n|---|---|\n",
    );
    let _ = writeln!(
        s,
        "| index equal to a fresh LIST of every type | {} |",
        match t.equal_s {
            Some(secs) => format!(
                "yes, {} types and {} objects, {secs:.1} s after the CRD was deleted",
                t.types, t.objects
            ),
            None => format!(
                "**no** after {} s: {}",
                TRUTH_DEADLINE.as_secs(),
                t.differing.join(", ")
            ),
        }
    );
    let _ = writeln!(
        s,
        "| the added CRD indexed with its 5 objects | {} |",
        if t.added_seen { "yes" } else { "**no**" }
    );
    let _ = writeln!(
        s,
        "| the deleted CRD gone from the index | {} |",
        if t.removed_gone { "yes" } else { "**no**" }
    );
    s
}

/// Scenario b: kube-apiserver restarted in place when about half the storm's reviews are
/// answered.
async fn scenario_restart(
    cluster: &mut LocalCluster,
    client: &Client,
    guard: &Nsguard,
    n: usize,
    timeout_s: u64,
) -> Result<Restart> {
    let names = create_storm(client, "restart", n).await?;
    // A steady index first: every type synced, none syncing or failing.
    let until = Instant::now() + Duration::from_secs(120);
    let synced_before = loop {
        let (synced, syncing, failing) = index_types(guard).await;
        if synced > 0.0 && syncing == 0.0 && failing == 0.0 {
            break synced;
        }
        if Instant::now() > until {
            bail!(
                "nsguard's index not steady before the restart: {synced} synced, {syncing} syncing, {failing} failing"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let apiserver_log = cluster.dir().join("kube-apiserver.log");
    let log_from = file_len(&apiserver_log);
    let base = guard.decisions().await;
    let started = Instant::now();
    let handles = send_storm(client, &names);
    let gone = tokio::spawn(wait_gone(client.clone(), "restart", started));
    let decided_before = wait_decisions(guard, base, (n / 2) as f64).await?;
    let t0 = Instant::now();
    let mut restarted = None;
    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let sampler = monitor(guard.admin, t0, stop.clone(), samples.clone());
    eprintln!("faults: restarting kube-apiserver after {decided_before} decisions");
    let down = cluster
        .restart_apiserver(Duration::from_secs(60))
        .await
        .map(|r| {
            restarted = Some(r);
            r.down
        });
    // Resynced: a reading after the API server was back with every type synced again, taken
    // after a reading that showed the drop (so not a reading from before the restart); if no
    // drop was ever seen, one taken a whole gauge refresh after the API server was back.
    let mut resynced_s = None;
    if let Ok(down) = &down {
        let full = |s: &Sample| s.synced >= synced_before && s.syncing == 0.0 && s.failing == 0.0;
        while t0.elapsed() < RESYNC_DEADLINE {
            let done = samples.lock().ok().and_then(|v| {
                let drop = v.iter().position(|s| !full(s));
                v.iter()
                    .enumerate()
                    .find(|(i, s)| {
                        full(s)
                            && s.at >= *down
                            && drop.map_or(s.at >= *down + INDEX_GAUGE_PERIOD, |d| *i > d)
                    })
                    .map(|(_, s)| s.at)
            });
            if let Some(at) = done {
                resynced_s = Some(at.as_secs_f64());
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let down = down?;
    let restarted = restarted.context("the restart said nothing")?;
    let samples = samples.lock().map(|v| v.clone()).unwrap_or_default();
    let deletions = collect(handles).await?;
    let (gone_s, left) = gone.await.context("watching the namespaces go")?;
    let stuck = match resynced_s {
        Some(_) => None,
        None => Some(index_types(guard).await),
    };
    let after_fault = dry_run(cluster, client, guard).await?;
    Ok(Restart {
        n,
        decided_before,
        down_s: down.as_secs_f64(),
        stopped_s: restarted.stopped.as_secs_f64(),
        killed: restarted.killed,
        synced_before,
        lowest_synced: samples
            .iter()
            .map(|s| s.synced)
            .fold(f64::INFINITY, f64::min),
        most_failing: samples.iter().map(|s| s.failing).fold(0.0, f64::max),
        not_ready_s: samples
            .windows(2)
            .filter(|w| !w[0].ready)
            .map(|w| (w[1].at - w[0].at).as_secs_f64())
            .fold(0.0, |a, b| a + b),
        resynced_s,
        stuck,
        gone_s,
        left,
        client: client_side(&deletions),
        reviews: reviews(&guard.log, "faults-restart-", timeout_s),
        fail_opens_log: fail_opens_in_log(&apiserver_log, log_from),
        after_fault,
    })
}

fn counts<K: std::fmt::Display>(m: &BTreeMap<K, usize>) -> String {
    if m.is_empty() {
        return "none".into();
    }
    m.iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn gone(gone_s: Option<f64>, left: usize) -> String {
    match gone_s {
        Some(s) => format!("yes, {s:.1} s after the first DELETE"),
        None => format!("**no**: {left} left after {} s", GONE_DEADLINE.as_secs()),
    }
}

fn client_row(c: &ClientSide) -> String {
    let mut s = format!(
        "{} accepted, {} denied, {} given up; {} namespaces needed a retry ({} failed calls{})",
        c.accepted,
        c.denied,
        c.given_up,
        c.retried,
        c.failed_calls,
        if c.errors.is_empty() {
            String::new()
        } else {
            format!(": {}", counts(&c.errors).replace('|', "\\|"))
        }
    );
    let _ = write!(s, "; slowest DELETE {:.1} s", c.slowest_s);
    s
}

fn dry_run_row(d: &DryRun) -> String {
    format!(
        "{}, {:.0} ms end to end, {} LISTs by nsguard in the namespace",
        if d.decided {
            "decided by nsguard"
        } else {
            "**not decided by nsguard**"
        },
        d.ms,
        d.lists
    )
}

fn render(
    webhook: &Webhook,
    baseline: &DryRun,
    kill: &Kill,
    restart: &Restart,
    timeout_s: u64,
) -> String {
    let mut t = format!(
        "Before the faults, a server dry run of deleting an empty namespace: {}.\n\n",
        dry_run_row(baseline)
    );
    let _ = write!(
        t,
        "### nsguard killed mid-storm\n\n{} namespaces deleted at once; nsguard got SIGKILL after {} decisions and was started again at once on the same ports (a crashed container restarted, or the Deployment's other replica taking the traffic).\n\n| | measured |\n|---|---|\n",
        kill.n, kill.decided_at_kill
    );
    let _ = writeln!(
        t,
        "| every namespace gone | {} |",
        gone(kill.gone_s, kill.left)
    );
    let _ = writeln!(
        t,
        "| DELETE calls (client) | {} |",
        client_row(&kill.client)
    );
    let _ = writeln!(
        t,
        "| reviews nsguard decided | {} ({}), for {} of the {} namespaces |",
        kill.reviews.decided,
        counts(&kill.reviews.by_outcome),
        kill.reviews.namespaces,
        kill.n
    );
    let _ = writeln!(
        t,
        "| failed open by the API server (`failurePolicy: {}`) | {} by `apiserver_admission_webhook_fail_open_count`; by cause in its log: {} |",
        webhook.failure_policy,
        kill.fail_opens_metric,
        counts(&kill.fail_opens_log)
    );
    let _ = writeln!(
        t,
        "| nsguard ready again (start to `/readyz` 200, every watch listed) | {:.1} s |",
        kill.restart_ready_s
    );
    let _ = writeln!(
        t,
        "| a server dry run after the storm | {} |",
        dry_run_row(&kill.after_fault)
    );
    let _ = write!(
        t,
        "\n### The API server restarted mid-storm\n\n{} namespaces deleted at once; after {} decisions kube-apiserver got SIGTERM (its graceful shutdown) and was started again with the same flags, port and etcd data, as a control-plane upgrade or a crashed static pod does. nsguard kept running.\n\n| | measured |\n|---|---|\n",
        restart.n, restart.decided_before
    );
    let _ = writeln!(
        t,
        "| API server down (SIGTERM to `/readyz` ok) | {:.1} s: the old process {} {:.1} s after the SIGTERM |",
        restart.down_s,
        if restart.killed {
            "stopped listening at once but had not exited after 60 s and got SIGKILL"
        } else {
            "exited"
        },
        restart.stopped_s
    );
    let _ = writeln!(
        t,
        "| every namespace gone | {} |",
        gone(restart.gone_s, restart.left)
    );
    let _ = writeln!(
        t,
        "| DELETE calls (client) | {} |",
        client_row(&restart.client)
    );
    let _ = writeln!(
        t,
        "| reviews nsguard decided | {} ({}), for {} of the {} namespaces |",
        restart.reviews.decided,
        counts(&restart.reviews.by_outcome),
        restart.reviews.namespaces,
        restart.n
    );
    let _ = writeln!(
        t,
        "| reviews answered past the webhook's timeout ({timeout_s} s) | {} (slowest decision {:.1} ms) |",
        restart.reviews.over_timeout, restart.reviews.max_ms
    );
    let _ = writeln!(
        t,
        "| failed open by the API server (`failurePolicy: {}`), by cause in its log | {} |",
        webhook.failure_policy,
        counts(&restart.fail_opens_log)
    );
    let resync = match (restart.resynced_s, restart.stuck) {
        (Some(s), _) => format!(
            "{s:.1} s after the SIGTERM ({:.1} s after the API server was ready; the gauge is refreshed every {} s)",
            s - restart.down_s,
            INDEX_GAUGE_PERIOD.as_secs()
        ),
        (None, Some((synced, syncing, failing))) => format!(
            "**not within {} s**: {synced} synced, {syncing} syncing, {failing} failing",
            RESYNC_DEADLINE.as_secs()
        ),
        (None, None) => "not measured".into(),
    };
    let _ = writeln!(
        t,
        "| nsguard's index synced again ({} types before) | {resync}; lowest synced seen {}, most failing {} |",
        restart.synced_before, restart.lowest_synced, restart.most_failing
    );
    let _ = writeln!(
        t,
        "| nsguard's `/readyz` not ready while sampled every 100 ms | {:.1} s |",
        restart.not_ready_s
    );
    let _ = writeln!(
        t,
        "| a server dry run after the storm | {} |",
        dry_run_row(&restart.after_fault)
    );
    t
}

/// What this run's figures say, in words.
fn reading(kill: &Kill, restart: &Restart, baseline: &DryRun) -> String {
    let mut s = String::from("What this run shows:\n\n");
    let cut_off = (kill.reviews.decided as f64 + kill.fail_opens_metric - kill.n as f64).max(0.0);
    let _ = writeln!(
        s,
        "- Killing nsguard loses the reviews it holds: nsguard had answered {} when it got SIGKILL, and the API server failed {} open ({}){}; {} deletion failed{}.",
        kill.decided_at_kill,
        kill.fail_opens_metric,
        counts(&kill.fail_opens_log),
        if cut_off > 0.0 {
            format!(
                ", {cut_off} of them reviews nsguard had decided and logged but whose answer the kill cut off"
            )
        } else {
            String::new()
        },
        kill.client.failed_calls,
        if kill.client.failed_calls == 0 && kill.gone_s.is_some() {
            ": every namespace went, unchecked where its review was lost"
        } else {
            ""
        }
    );
    let nsguard_fail_open = restart
        .reviews
        .by_outcome
        .get("fail_open")
        .copied()
        .unwrap_or(0);
    let _ = writeln!(
        s,
        "- The API server's graceful shutdown drains the requests it holds: {} DELETE call failed, and every review under way when it stopped accepting requests was answered (slowest {:.0} ms). {}",
        restart.client.failed_calls,
        restart.reviews.max_ms,
        if nsguard_fail_open > 0 {
            format!(
                "nsguard's own LISTs for {nsguard_fail_open} of them were refused, so those failed open inside nsguard, with a warning."
            )
        } else {
            "None of nsguard's LISTs for them was refused this time (how many are is a matter of timing: those under way in nsguard at the SIGTERM fail open inside nsguard, with a warning).".to_string()
        }
    );
    if restart.resynced_s.is_none() {
        let _ = writeln!(
            s,
            "- nsguard's index did not resync: a type whose watch resumed from its last resourceVersion, with no change to it since, stays `failing`, because nsguard marks a type healthy again only on an event or a completed relist; each review then lists those types live ({} LISTs for one review after the restart, {} before the faults).",
            restart.after_fault.lists, baseline.lists
        );
    }
    s
}

fn notes(webhook: &Webhook) -> String {
    format!(
        "What the numbers mean:\n\n- *failed open*: the API server could not get an answer from nsguard (refused, cut off, or later than `timeoutSeconds`) and, with `failurePolicy: {}`, let the deletion through unchecked. The API server's counter resets when it restarts, so its log lines (`Failed calling webhook, failing open`) are counted instead, from the start of each storm.\n- *reviews nsguard decided*: its `Decision` log lines for the storm's namespaces, from both processes in the kill; `fail_open` there is nsguard's own fail-open (preflight incomplete within its deadline, or no review slot).\n- *past the webhook's timeout*: a decision whose `duration_ms` (review received to answer built) is over `timeoutSeconds`; the API server would have failed it open.\n- *DELETE calls*: every namespace's DELETE sent at once from one kube client; a failed call is retried every 250 ms until accepted (404 or 409 count as accepted: the namespace is already gone or Terminating, an accepted DELETE whose answer was lost). A denial is not retried.\n- *index synced again*: `nsguard_index_types` back to the count before the restart with none syncing or failing, read after the API server was ready and after a reading that showed the drop (the gauge is refreshed every 5 s).\n- *LISTs by nsguard in the namespace*: from the API server's audit log, which records nsguard's ServiceAccount; a type in nsguard's index that is synced costs no call, any other is listed live.\n- *API server down*: on SIGTERM kube-apiserver stops listening at once (new requests are refused; its log says `Stopped listening`) and finishes what it holds; `LocalCluster::restart_apiserver` sends SIGKILL if it has not exited after 60 s, then starts it again.\n",
        webhook.failure_policy
    )
}

/// Replaces the text between the markers in `doc` (or appends the section).
fn splice(doc: &str, body: &str) -> String {
    match (doc.find(BEGIN), doc.find(END)) {
        (Some(b), Some(e)) if b < e => format!("{}{BEGIN}\n{body}{}", &doc[..b], &doc[e..]),
        _ => format!("{}\n{HEADING}\n\n{BEGIN}\n{body}{END}\n", doc.trim_end()),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let usage = "usage: nsguard-faults NSGUARD RELIABILITY_MARKDOWN [N]";
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bin = std::fs::canonicalize(args.first().context(usage)?)?;
    let output = PathBuf::from(args.get(1).context(usage)?);
    let n: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(200);
    if n < 2 {
        bail!("a storm needs at least 2 namespaces");
    }
    let dir = workspace_root().join("target/faults");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let started = Instant::now();
    eprintln!(
        "faults: starting the local control plane in {}",
        dir.display()
    );
    let mut cluster = LocalCluster::start(dir.join("cluster")).await?;
    // The logs are what the figures are read from: keep them until the next run.
    cluster.keep();
    let client = cluster.client().await?;
    let (mut guard, port) = Nsguard::new(&cluster, &bin, &dir)?;
    guard.start().await?;
    let webhook = manifest_webhook(
        &format!("https://127.0.0.1:{port}/validate"),
        &cluster.ca().ca_bundle(),
    )?;
    cluster.apply(&webhook.yaml)?;
    let mut probe = Namespace::default();
    probe.metadata.name = Some(PROBE.into());
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &probe)
        .await?;
    wait_webhook_live(&client, &guard, PROBE).await?;
    let baseline = dry_run(&cluster, &client, &guard).await?;

    eprintln!("faults: storm of {n} with nsguard killed mid-storm");
    let timeout_s = webhook.timeout_s;
    let kill = scenario_kill(&cluster, &client, &mut guard, n, timeout_s).await?;
    eprintln!("faults: storm of {n} with kube-apiserver restarted mid-storm");
    let restart = scenario_restart(&mut cluster, &client, &guard, n, timeout_s).await?;
    eprintln!("faults: the index against fresh LISTs, CRDs added and removed");
    let truth = scenario_truth(&cluster, &client, &guard).await?;

    let bin_dir = LocalCluster::bin_dir()?;
    let versions = bin_dir
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut body = format!(
        "Measured by `make faults` on {} ({}; control plane {versions}, built from upstream, on loopback; nsguard built with `--release`; the whole run took {:.0} s). nsguard runs in enforce mode as its own ServiceAccount with the manifests' RBAC, behind the webhook of `manifests/base/webhook.yaml`: **`failurePolicy: {}`, `timeoutSeconds: {}`** (only its clientConfig points at the local process). Each storm: {n} namespaces, each holding one ConfigMap, so nsguard allows every one; every DELETE is sent at once.\n\nReproduce: `make faults` (`make faults FAULTS_NAMESPACES=N` for another storm size). Code: `crates/bench/src/bin/nsguard-faults.rs`; `LocalCluster::restart_apiserver` in `crates/localcluster`. Logs of the last run: `target/faults/`.\n\n",
        std::env::var("NSGUARD_FAULTS_DATE").unwrap_or_else(|_| "today".into()),
        machine(),
        started.elapsed().as_secs_f64(),
        webhook.failure_policy,
        webhook.timeout_s,
    );
    body.push_str(&render(&webhook, &baseline, &kill, &restart, timeout_s));
    body.push('\n');
    body.push_str(&reading(&kill, &restart, &baseline));
    body.push('\n');
    body.push_str(&render_truth(&truth));
    body.push('\n');
    body.push_str(&notes(&webhook));
    print!("{body}");
    let doc = std::fs::read_to_string(&output).unwrap_or_default();
    std::fs::write(&output, splice(&doc, &body))
        .with_context(|| format!("writing {}", output.display()))?;
    eprintln!("faults: wrote {}", output.display());
    Ok(())
}
