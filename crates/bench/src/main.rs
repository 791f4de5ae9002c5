//! `make bench`: nsguard's preflight on the real local control plane, measured.
//!
//! - Latency over N decisions (default 200) inside nsguard (its own `duration_ms` log field)
//!   and end to end (a server dry run of `DELETE namespace` with nsguard registered, and the
//!   same without), with 0, 50 and 200 CRDs installed and 0, 500 and 5,000 objects in the
//!   namespace.
//! - API requests per decision: kube-apiserver's `apiserver_request_total`, counted over the
//!   decisions with nsguard, minus the same count without it.
//! - nsguard's resident memory.
//! - Deletion storms: 200 namespaces deleted at once, nsguard enforcing (five runs in a row,
//!   `NSGUARD_BENCH_STORMS`) versus no webhook.
//! - Seed 004's method, the kubectl loop, timed on the same namespace.
//! - The API cost of a deny, nsguard's start-up time to ready at 200 CRDs and 5,000 objects,
//!   and a scale report: up to 100,000 objects over 2,000 namespaces and 300 types
//!   (`NSGUARD_BENCH_SCALE=0` skips it).
//!
//! - Figures of the above, as SVG beside the markdown (`docs/benchmarks/*.svg`, drawn by
//!   `figures.rs` from `target/bench/summary.json`).
//!
//! Usage: `nsguard-bench NSGUARD_BINARY OUTPUT_MARKDOWN [DECISIONS]`; redrawing the figures of
//! a run without running: `nsguard-bench --figures SUMMARY_JSON DIR`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::{Api, Client};
use localcluster::nsguard::{Nsguard as Launched, Tls};
use localcluster::{LocalCluster, workspace_root};
use nsguard_bench::{create_all, figures, machine, scrape, sum};

const GUARD: &str = "nsguard.io/bench";
const BENCH_NS: &str = "bench";

struct Row {
    crds: usize,
    objects: usize,
    types: usize,
    inside: [f64; 3],
    e2e: [f64; 3],
    bare: [f64; 3],
    requests: f64,
    rss_mib: f64,
    kubectl_loop_s: f64,
}

/// One storm: `n` namespaces deleted at once.
struct StormRun {
    secs: f64,
    decisions: u64,
    fail_open: u64,
    webhook_errors: u64,
    requests: f64,
    /// nsguard's peak resident memory (VmHWM) after the run.
    peak_rss_mib: f64,
    /// (seconds since the deletions were sent, namespaces remaining), at each poll.
    samples: Vec<(f64, usize)>,
}

struct Storm {
    guarded: Vec<StormRun>,
    bare: StormRun,
}

impl Storm {
    fn fail_opens(&self) -> u64 {
        self.guarded.iter().map(|r| r.fail_open).sum()
    }
    fn webhook_errors(&self) -> u64 {
        self.guarded.iter().map(|r| r.webhook_errors).sum()
    }
    fn peak_rss_mib(&self) -> f64 {
        self.guarded
            .iter()
            .map(|r| r.peak_rss_mib)
            .fold(f64::NAN, f64::max)
    }
}

/// One size of the scale report.
struct ScaleStep {
    objects: usize,
    namespaces: usize,
    types: usize,
    /// Objects nsguard's index held once synced.
    indexed: f64,
    ready_s: f64,
    rss_mib: f64,
    inside: [f64; 3],
    requests: f64,
    /// One nsguard starting: what it cost the API server.
    startup: Startup,
    /// Three replicas starting at once, as a rollout of a three-replica Deployment does.
    startup3: Startup,
}

/// What nsguard replicas starting at once cost: time to ready and to a full index, the API
/// server's requests (less its background rate) and its and etcd's memory meanwhile.
#[derive(Clone, Copy)]
struct Startup {
    replicas: usize,
    /// The slowest replica's process start to `/readyz` 200.
    ready_s: f64,
    /// The slowest replica's process start to every object indexed.
    synced_s: f64,
    requests: f64,
    lists: f64,
    watches: f64,
    apiserver_rss_before_mib: f64,
    apiserver_rss_peak_mib: f64,
    etcd_rss_peak_mib: f64,
}

/// Objects and policies of the policy scenario.
const POLICY_OBJECTS: usize = 10_000;
const POLICIES: usize = 20;

/// Review latency of a namespace of [`POLICY_OBJECTS`] ConfigMaps under [`POLICIES`]
/// ValidatingAdmissionPolicies that each select every ConfigMap's DELETE (label protections,
/// evaluated by nsguard per object: 200,000 evaluations per review): `n` server dry runs, p50
/// / p95 / p99 in ms. The policies and their bindings are deleted afterwards.
async fn policy_cost(cluster: &LocalCluster, client: &Client, n: usize) -> Result<[f64; 3]> {
    let ns = "bench-policies";
    create_namespace(client, ns, true).await?;
    configmaps(client, ns, 0, POLICY_OBJECTS).await?;
    let mut yaml = String::new();
    for i in 0..POLICIES {
        let _ = write!(
            yaml,
            "---\napiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicy\nmetadata: {{name: bench-protect-{i}}}\nspec:\n  matchConstraints:\n    resourceRules:\n    - {{apiGroups: [\"\"], apiVersions: [v1], operations: [DELETE], resources: [configmaps]}}\n    namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: {ns}}}}}\n  validations:\n  - expression: \"!has(oldObject.metadata.labels) || !('bench-protect-{i}' in oldObject.metadata.labels)\"\n    message: protected\n---\napiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicyBinding\nmetadata: {{name: bench-protect-{i}}}\nspec: {{policyName: bench-protect-{i}, validationActions: [Deny]}}\n"
        );
    }
    cluster.apply(&yaml)?;
    // nsguard's index and its policies catch up within the warm-up.
    dry_runs(client, ns, 10).await?;
    let latencies = dry_runs(client, ns, n).await?;
    for kind in [
        "validatingadmissionpolicybinding",
        "validatingadmissionpolicy",
    ] {
        for i in 0..POLICIES {
            let _ = cluster
                .kubectl()
                .args(["delete", kind, &format!("bench-protect-{i}")])
                .output();
        }
    }
    Ok(percentiles(latencies))
}

fn render_policies(p: &[f64; 3], n: usize) -> String {
    format!(
        "\n## Policies\n\nA namespace of {POLICY_OBJECTS} ConfigMaps under {POLICIES} ValidatingAdmissionPolicies that each select every ConfigMap's DELETE (label protections: nsguard evaluates each per object, {} evaluations per review, within the review's CEL budget), reviewed {n} times: **{:.1} / {:.1} / {:.1} ms** (p50 / p95 / p99, server dry runs; target p99 <= 100 ms).\n",
        POLICY_OBJECTS * POLICIES,
        p[0],
        p[1],
        p[2]
    )
}

/// The API cost and latency of a deny.
struct Deny {
    requests: f64,
    inside: [f64; 3],
    denied: usize,
    decisions: usize,
}

fn percentiles(mut v: Vec<f64>) -> [f64; 3] {
    if v.is_empty() {
        return [f64::NAN; 3];
    }
    v.sort_by(f64::total_cmp);
    let at = |p: f64| v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1];
    [at(0.50), at(0.95), at(0.99)]
}

async fn api_requests(client: &Client) -> Result<f64> {
    Ok(sum(
        &scrape(client, "/metrics").await?,
        "apiserver_request_total",
        "",
    ))
}

fn rss_mib(pid: u32) -> f64 {
    status_mib(pid, "VmRSS:")
}

/// The peak resident memory of the process so far.
fn peak_rss_mib(pid: u32) -> f64 {
    status_mib(pid, "VmHWM:")
}

fn status_mib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kib| kib / 1024.0)
        .unwrap_or(f64::NAN)
}

/// nsguard as `make bench` runs it: enforcing, registered for the namespaces labelled
/// [`GUARD`], started by the shared launcher.
struct Nsguard {
    process: Launched,
    /// Seconds from the process start to `/readyz` answering 200.
    ready_s: f64,
}

impl Nsguard {
    async fn start(cluster: &LocalCluster, bin: &Path, dir: &Path) -> Result<Self> {
        let mut process = launcher(cluster, bin, dir, "nsguard")?;
        let ready_s = process.start(Duration::from_secs(600)).await?.as_secs_f64();
        register_bench_webhook(cluster, &process)?;
        Ok(Self { process, ready_s })
    }

    fn pid(&self) -> u32 {
        self.process.pid().unwrap_or(0)
    }

    fn metric(&self, name: &str, filter: &str) -> f64 {
        sum(&self.process.metrics(), name, filter)
    }

    fn log_lines(&self) -> Vec<String> {
        self.process.log().lines().map(str::to_string).collect()
    }
}

/// An enforcing `nsguard serve` named `name` (its log `<dir>/<name>.log`), not yet started.
fn launcher(cluster: &LocalCluster, bin: &Path, dir: &Path, name: &str) -> Result<Launched> {
    Launched::new(
        cluster,
        bin,
        dir,
        name,
        Tls::FromClusterCa,
        &["--mode=enforce".to_string()],
    )
}

/// The `duration_ms` of decisions on `ns` in log lines after `from`.
fn inside_durations(lines: &[String], from: usize, ns: &str) -> Vec<f64> {
    let key = format!("namespace={ns} ");
    lines[from.min(lines.len())..]
        .iter()
        .filter(|l| l.contains(&key) && l.contains("Decision"))
        .filter_map(|l| {
            l.split("duration_ms=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

async fn label(client: &Client, ns: &str, value: Option<&str>) -> Result<()> {
    let patch = serde_json::json!({"metadata": {"labels": {GUARD: value}}});
    Api::<Namespace>::all(client.clone())
        .patch(ns, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

async fn create_namespace(client: &Client, name: &str, guarded: bool) -> Result<()> {
    let mut ns = Namespace::default();
    ns.metadata.name = Some(name.into());
    if guarded {
        ns.metadata.labels = Some([(GUARD.to_string(), "guarded".to_string())].into());
    }
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    Ok(())
}

async fn configmaps(client: &Client, ns: &str, from: usize, to: usize) -> Result<()> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    create_all(from..to, 32, |i| {
        let api = api.clone();
        async move {
            let mut cm = ConfigMap::default();
            cm.metadata.name = Some(format!("cm-{i:05}"));
            cm.data = Some([("k".to_string(), "v".to_string())].into());
            api.create(&PostParams::default(), &cm).await?;
            Ok(())
        }
    })
    .await
}

async fn install_crds(cluster: &LocalCluster, from: usize, to: usize) -> Result<()> {
    if from >= to {
        return Ok(());
    }
    let mut yaml = String::new();
    for i in from..to {
        write!(
            yaml,
            "---\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: widgets.b{i}.nsguard.bench\n  labels: {{nsguard.io/bench: crd}}\nspec:\n  group: b{i}.nsguard.bench\n  scope: Namespaced\n  names: {{plural: widgets, singular: widget, kind: Widget, listKind: WidgetList}}\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}\n"
        )?;
    }
    cluster.apply(&yaml)?;
    let out = cluster
        .kubectl()
        .args([
            "wait",
            "--for=condition=Established",
            "--timeout=300s",
            "crd",
            "-l",
            "nsguard.io/bench=crd",
        ])
        .output()?;
    if !out.status.success() {
        bail!(
            "CRDs not established: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Namespaced types with list and delete, as the namespace controller and nsguard see them.
fn namespaced_types(cluster: &LocalCluster) -> Result<usize> {
    let out = cluster
        .kubectl()
        .args([
            "api-resources",
            "--verbs=list,delete",
            "--namespaced",
            "-o",
            "name",
        ])
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout).lines().count())
}

/// `n` server dry runs of deleting `ns`, one after another; their latencies in ms.
async fn dry_runs(client: &Client, ns: &str, n: usize) -> Result<Vec<f64>> {
    Ok(dry_runs_denied(client, ns, n).await?.0)
}

/// `n` server dry runs of deleting `ns`, one after another: their latencies in ms, and how
/// many were denied (any error counts: only the time matters to most callers).
async fn dry_runs_denied(client: &Client, ns: &str, n: usize) -> Result<(Vec<f64>, usize)> {
    let api = Api::<Namespace>::all(client.clone());
    let dp = DeleteParams {
        dry_run: true,
        ..Default::default()
    };
    let mut out = Vec::with_capacity(n);
    let mut denied = 0;
    for _ in 0..n {
        let t = Instant::now();
        denied += usize::from(api.delete(ns, &dp).await.is_err());
        out.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok((out, denied))
}

/// The tail nsguard adds, measured so that the machine's noise cancels: dry runs of deleting
/// `guarded` (selected by nsguard's webhook) and `bare` (not selected) sent alternately, one
/// after another, `n` of each per round, `rounds` rounds; each round's p99(with) - p99(without),
/// in ms. Both namespaces see the same moments of the machine, so a slow second (another
/// build, the API server's GC) lands on both sides instead of on one.
async fn interleaved_p99_deltas(
    client: &Client,
    guarded: &str,
    bare: &str,
    n: usize,
    rounds: usize,
) -> Result<Vec<f64>> {
    let mut deltas = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let (mut with, mut without) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for _ in 0..n {
            with.extend(dry_runs(client, guarded, 1).await?);
            without.extend(dry_runs(client, bare, 1).await?);
        }
        deltas.push(percentiles(with)[2] - percentiles(without)[2]);
    }
    Ok(deltas)
}

/// The median of `v` and its spread (min, max).
fn median_spread(v: &[f64]) -> (f64, f64, f64) {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => (f64::NAN, f64::NAN, f64::NAN),
        len => (v[len / 2], v[0], v[len - 1]),
    }
}

/// The index's heap per object at 250k, 500k and 1M objects, measured in-process by the
/// `nsguard-index-memory` binary beside this one (its JSON lines).
fn index_memory(bin_dir: &Path) -> Result<Vec<serde_json::Value>> {
    let out = Command::new(bin_dir.join("nsguard-index-memory"))
        .output()
        .context("running nsguard-index-memory")?;
    if !out.status.success() {
        bail!("nsguard-index-memory failed");
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

/// Seed 004's method: list every namespaced type with kubectl, one process per type.
fn kubectl_loop(cluster: &LocalCluster, ns: &str) -> Result<f64> {
    let path = format!(
        "{}:{}",
        cluster.bin_path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let t = Instant::now();
    let out = Command::new("bash")
        .args([
            "-c",
            &format!("kubectl api-resources --verbs=list --namespaced -o name | xargs -n 1 kubectl get --show-kind --ignore-not-found -n {ns} > /dev/null"),
        ])
        .env("KUBECONFIG", cluster.kubeconfig())
        .env("PATH", path)
        .output()?;
    if !out.status.success() {
        bail!("kubectl loop: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(t.elapsed().as_secs_f64())
}

/// One storm: `n` namespaces, each holding one ConfigMap, deleted at once, guarded by nsguard
/// or not; returns when the last is gone.
async fn storm_run(
    client: &Client,
    guard: &Nsguard,
    n: usize,
    prefix: &str,
    guarded: bool,
) -> Result<StormRun> {
    for i in 0..n {
        let name = format!("{prefix}-{i:03}");
        create_namespace(client, &name, guarded).await?;
        configmaps(client, &name, 0, 1).await?;
    }
    let before_decisions = guard.metric("nsguard_admission_reviews_total", "");
    let before_fail_open = guard.metric("nsguard_admission_reviews_total", "fail_open");
    let apiserver = scrape(client, "/metrics").await?;
    let before_errors = sum(
        &apiserver,
        "apiserver_admission_webhook_fail_open_count",
        "",
    );
    let before_requests = sum(&apiserver, "apiserver_request_total", "");
    let api = Api::<Namespace>::all(client.clone());
    let t = Instant::now();
    let deletes = (0..n).map(|i| {
        let api = api.clone();
        let name = format!("{prefix}-{i:03}");
        async move {
            api.delete(&name, &DeleteParams::default())
                .await
                .map(|_| ())
        }
    });
    let results = futures::future::join_all(deletes).await;
    let denied = results.iter().filter(|r| r.is_err()).count();
    if denied > 0 {
        bail!(
            "{denied} storm deletions failed: {:?}",
            results.iter().find(|r| r.is_err())
        );
    }
    let mut samples = vec![(0.0, n)];
    loop {
        let left = api
            .list_metadata(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|ns| {
                ns.metadata
                    .name
                    .as_deref()
                    .unwrap_or("")
                    .starts_with(prefix)
            })
            .count();
        samples.push((t.elapsed().as_secs_f64(), left));
        if left == 0 {
            break;
        }
        if t.elapsed() > Duration::from_secs(900) {
            bail!("{left} storm namespaces still there after 15 minutes");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let secs = t.elapsed().as_secs_f64();
    let apiserver = scrape(client, "/metrics").await?;
    Ok(StormRun {
        secs,
        decisions: (guard.metric("nsguard_admission_reviews_total", "") - before_decisions) as u64,
        fail_open: (guard.metric("nsguard_admission_reviews_total", "fail_open") - before_fail_open)
            as u64,
        webhook_errors: (sum(
            &apiserver,
            "apiserver_admission_webhook_fail_open_count",
            "",
        ) - before_errors) as u64,
        requests: sum(&apiserver, "apiserver_request_total", "") - before_requests,
        peak_rss_mib: peak_rss_mib(guard.pid()),
        samples,
    })
}

/// `runs` guarded storms in a row, then one without the webhook.
async fn storm(client: &Client, guard: &Nsguard, n: usize, runs: usize) -> Result<Storm> {
    let mut guarded = Vec::new();
    for run in 0..runs {
        eprintln!("bench: storm {} of {runs} with nsguard", run + 1);
        guarded.push(storm_run(client, guard, n, &format!("storm-g{run}"), true).await?);
    }
    eprintln!("bench: storm without nsguard");
    let bare = storm_run(client, guard, n, "storm-b", false).await?;
    Ok(Storm { guarded, bare })
}

/// The API cost of a deny: a namespace holding one custom resource with a finalizer whose
/// CRD no controller serves (seed 004), reviewed `n` times by server dry runs, against the
/// same dry runs without the webhook.
async fn deny_cost(client: &Client, guard: &Nsguard, n: usize) -> Result<Deny> {
    let ns = "bench-deny";
    create_namespace(client, ns, true).await?;
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &widget_resource(0));
    let widget: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "b0.nsguard.bench/v1",
        "kind": "Widget",
        "metadata": {"name": "orphan", "finalizers": ["b0.nsguard.bench/cleanup"]},
    }))?;
    api.create(&PostParams::default(), &widget).await?;
    // Until the index has the widget, a review allows: wait for the first deny.
    let until = Instant::now() + Duration::from_secs(60);
    while Api::<Namespace>::all(client.clone())
        .delete(
            ns,
            &DeleteParams {
                dry_run: true,
                ..Default::default()
            },
        )
        .await
        .is_ok()
    {
        if Instant::now() > until {
            bail!("nsguard never denied the deletion of {ns}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let d = decisions_on(client, guard, ns, n).await?;
    Ok(Deny {
        requests: d.requests,
        inside: d.inside,
        denied: d.denied,
        decisions: n,
    })
}

/// `n` decisions on `ns` (labelled for nsguard), then `n` with `ns` unlabelled, which the
/// webhook does not select (`ns` is left unlabelled).
struct Decisions {
    /// nsguard's time inside, p50 / p95 / p99, from its log.
    inside: [f64; 3],
    /// API requests per decision: the run with nsguard minus the run without.
    requests: f64,
    /// Reviews denied in the run with nsguard.
    denied: usize,
    /// Dry-run latencies with nsguard and without, ms.
    guarded: Vec<f64>,
    bare: Vec<f64>,
    /// nsguard's RSS right after the run with it.
    rss_mib: f64,
}

async fn decisions_on(client: &Client, guard: &Nsguard, ns: &str, n: usize) -> Result<Decisions> {
    let from = guard.log_lines().len();
    let before = api_requests(client).await?;
    let (guarded, denied) = dry_runs_denied(client, ns, n).await?;
    let guarded_requests = api_requests(client).await? - before;
    let inside = inside_durations(&guard.log_lines(), from, ns);
    let rss_mib = rss_mib(guard.pid());
    label(client, ns, None).await?;
    let before = api_requests(client).await?;
    let bare = dry_runs(client, ns, n).await?;
    let bare_requests = api_requests(client).await? - before;
    Ok(Decisions {
        inside: percentiles(inside),
        requests: (guarded_requests - bare_requests) / n as f64,
        denied,
        guarded,
        bare,
        rss_mib,
    })
}

/// The bench CRD number `i`: `widgets.b{i}.nsguard.bench`.
fn widget_resource(i: usize) -> ApiResource {
    ApiResource {
        group: format!("b{i}.nsguard.bench"),
        version: "v1".into(),
        api_version: format!("b{i}.nsguard.bench/v1"),
        kind: "Widget".into(),
        plural: "widgets".into(),
    }
}

/// Creates `objects[from..to]` of the scale world: object `k` is a Widget of CRD `k % crds`
/// in namespace `scale-{k % namespaces}`.
async fn scale_objects(
    client: &Client,
    from: usize,
    to: usize,
    crds: usize,
    namespaces: usize,
) -> Result<()> {
    create_all(from..to, 32, |k| {
        let client = client.clone();
        async move {
            let ns = format!("scale-{:04}", k % namespaces);
            let ar = widget_resource(k % crds);
            let api: Api<DynamicObject> = Api::namespaced_with(client, &ns, &ar);
            let o = DynamicObject::new(&format!("w{k:06}"), &ar);
            api.create(&PostParams::default(), &o).await?;
            Ok(())
        }
    })
    .await
}

/// Starts `replicas` nsguards at once and waits until each is ready and indexes at least
/// `objects` objects; measures what that cost the API server (requests less the background
/// rate measured just before, its and etcd's peak memory sampled every 100 ms).
async fn start_replicas(
    cluster: &LocalCluster,
    client: &Client,
    bin: &Path,
    dir: &Path,
    replicas: usize,
    objects: usize,
) -> Result<(Vec<Launched>, Startup)> {
    // `apiserver_request_total` counts a request when it ends, so a WATCH is counted when it
    // closes (the last run's nsguards', killed just before): watches are counted open instead,
    // by the `apiserver_longrunning_requests` gauge, and left out of the counter.
    let counts = async || -> Result<[f64; 3]> {
        let text = scrape(client, "/metrics").await?;
        Ok([
            sum(&text, "apiserver_request_total", "")
                - sum(&text, "apiserver_request_total", "verb=\"WATCH\""),
            sum(&text, "apiserver_request_total", "verb=\"LIST\""),
            sum(&text, "apiserver_longrunning_requests", "verb=\"WATCH\""),
        ])
    };
    // The background: what the controllers, the kubelet and this bench ask while idle.
    let idle = Duration::from_secs(5);
    let quiet = counts().await?;
    tokio::time::sleep(idle).await;
    let before = counts().await?;
    let background: Vec<f64> = (0..3)
        .map(|i| (before[i] - quiet[i]) / idle.as_secs_f64())
        .collect();
    let pids = [cluster.pid("kube-apiserver"), cluster.pid("etcd")];
    let apiserver_rss_before_mib = pids[0].map_or(f64::NAN, rss_mib);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut peak = [f64::NAN; 2];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for (p, pid) in peak.iter_mut().zip(pids) {
                    *p = p.max(pid.map_or(f64::NAN, rss_mib));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            peak
        })
    };
    let started = Instant::now();
    let mut launched = Vec::new();
    for r in 0..replicas {
        let mut l = launcher(cluster, bin, dir, &format!("nsguard-replica-{r}"))?;
        l.spawn()?;
        launched.push(l);
    }
    let mut ready_s: f64 = 0.0;
    for l in &mut launched {
        ready_s = ready_s.max(l.wait_ready(Duration::from_secs(900)).await?.as_secs_f64());
    }
    // Every object indexed (the gauge is updated every 5 s).
    let until = Instant::now() + Duration::from_secs(300);
    while launched
        .iter()
        .any(|l| sum(&l.metrics(), "nsguard_index_objects", "") < objects as f64)
    {
        if Instant::now() > until {
            bail!("nsguard's index short of {objects} objects after 300 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let synced_s = started.elapsed().as_secs_f64();
    let after = counts().await?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler
        .join()
        .map_err(|_| anyhow::anyhow!("the memory sampler panicked"))?;
    let cost = |i: usize| after[i] - before[i] - background[i] * synced_s;
    let watches_opened = after[2] - before[2];
    Ok((
        launched,
        Startup {
            replicas,
            ready_s,
            synced_s,
            requests: cost(0) + watches_opened,
            lists: cost(1),
            watches: watches_opened,
            apiserver_rss_before_mib,
            apiserver_rss_peak_mib: peak[0],
            etcd_rss_peak_mib: peak[1],
        },
    ))
}

/// The scale report: a fresh nsguard at each size (start-up to ready, memory once synced, the
/// objects its index holds) and `n` decisions on one of the namespaces.
async fn scale(
    cluster: &LocalCluster,
    client: &Client,
    bin: &Path,
    dir: &Path,
    have_crds: usize,
    n: usize,
) -> Result<Vec<ScaleStep>> {
    const NAMESPACES: usize = 2000;
    const TYPES: usize = 300;
    let builtin = namespaced_types(cluster)? - have_crds;
    let crds = TYPES.saturating_sub(builtin).max(have_crds);
    install_crds(cluster, have_crds, crds).await?;
    let types = namespaced_types(cluster)?;
    eprintln!("bench: scale: {NAMESPACES} namespaces, {types} types");
    create_all(0..NAMESPACES, 32, |i| async move {
        create_namespace(client, &format!("scale-{i:04}"), false).await
    })
    .await?;
    let mut steps = Vec::new();
    let mut have = 0;
    // `make bench-scale` goes further (NSGUARD_BENCH_SCALE_STEPS=250000,500000,1000000).
    let sizes: Vec<usize> = std::env::var("NSGUARD_BENCH_SCALE_STEPS")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| vec![25_000, 50_000, 100_000]);
    for objects in sizes {
        eprintln!("bench: scale: {objects} objects");
        scale_objects(client, have, objects, crds, NAMESPACES).await?;
        have = objects;
        let (mut one, startup) = start_replicas(cluster, client, bin, dir, 1, objects).await?;
        let process = one.pop().context("one replica")?;
        register_bench_webhook(cluster, &process)?;
        let guard = Nsguard {
            process,
            ready_s: startup.ready_s,
        };
        let indexed = guard.metric("nsguard_index_objects", "");
        let rss = rss_mib(guard.pid());
        let ns = "scale-0000";
        label(client, ns, Some("guarded")).await?;
        dry_runs(client, ns, 10).await?;
        let d = decisions_on(client, &guard, ns, n).await?;
        label(client, ns, None).await?;
        drop(guard);
        eprintln!("bench: scale: {objects} objects, three replicas at once");
        let (three, startup3) = start_replicas(cluster, client, bin, dir, 3, objects).await?;
        drop(three);
        steps.push(ScaleStep {
            objects,
            namespaces: NAMESPACES,
            types,
            indexed,
            ready_s: startup.ready_s,
            rss_mib: rss,
            inside: d.inside,
            requests: d.requests,
            startup,
            startup3,
        });
    }
    Ok(steps)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `nsguard-bench --figures SUMMARY DIR`: redraw the figures of a run, without a run.
    if args.first().map(String::as_str) == Some("--figures") {
        let usage = "usage: nsguard-bench --figures SUMMARY_JSON DIR";
        let from = PathBuf::from(args.get(1).context(usage)?);
        let summary: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(&from)
                .with_context(|| format!("reading {}", from.display()))?,
        )?;
        for path in figures::write_all(&summary, Path::new(args.get(2).context(usage)?))? {
            eprintln!("bench: wrote {}", path.display());
        }
        return Ok(());
    }
    let bin = std::fs::canonicalize(
        args.first()
            .context("usage: nsguard-bench NSGUARD OUTPUT [DECISIONS]")?,
    )?;
    let output = PathBuf::from(
        args.get(1)
            .context("usage: nsguard-bench NSGUARD OUTPUT [DECISIONS]")?,
    );
    let n: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(200);
    if std::env::var("NSGUARD_BENCH_ONLY_SCALE").as_deref() == Ok("1") {
        return scale_only(&bin, &output, n).await;
    }
    let dir = workspace_root().join("target/bench");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let started = Instant::now();
    eprintln!(
        "bench: starting the local control plane in {}",
        dir.display()
    );
    let cluster = LocalCluster::start(dir.join("cluster")).await?;
    let client = cluster.client().await?;
    let guard = Nsguard::start(&cluster, &bin, &dir).await?;
    // Wait until the API server calls nsguard.
    create_namespace(&client, "bench-probe", true).await?;
    let until = Instant::now() + Duration::from_secs(60);
    while guard.metric("nsguard_admission_reviews_total", "") < 1.0 {
        if Instant::now() > until {
            bail!("the API server never called nsguard");
        }
        dry_runs(&client, "bench-probe", 1).await?;
    }

    let idle_rss = rss_mib(guard.pid());
    let runs: usize = std::env::var("NSGUARD_BENCH_STORMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    eprintln!("bench: deletion storms of {n} namespaces, with nsguard and without");
    let storm = storm(&client, &guard, n, runs).await?;

    create_namespace(&client, BENCH_NS, true).await?;
    let mut rows = Vec::new();
    let mut have_crds = 0;
    for crds in [0, 50, 200] {
        install_crds(&cluster, have_crds, crds).await?;
        have_crds = crds;
        // Within a CRD count the namespace's objects only grow.
        let mut have_objects = 0;
        for objects in [0, 500, 5000] {
            configmaps(&client, BENCH_NS, have_objects, objects).await?;
            have_objects = objects;
            eprintln!("bench: {crds} CRDs, {objects} objects");
            let types = namespaced_types(&cluster)?;
            label(&client, BENCH_NS, Some("guarded")).await?;
            dry_runs(&client, BENCH_NS, 10).await?;
            let d = decisions_on(&client, &guard, BENCH_NS, n).await?;
            let kubectl_loop_s = kubectl_loop(&cluster, BENCH_NS)?;
            rows.push(Row {
                crds,
                objects,
                types,
                inside: d.inside,
                e2e: percentiles(d.guarded),
                bare: percentiles(d.bare),
                requests: d.requests,
                rss_mib: d.rss_mib,
                kubectl_loop_s,
            });
        }
        // Objects persist, so the next CRD count starts at 5,000: recreate the namespace.
        if crds != 200 {
            label(&client, BENCH_NS, None).await?;
            Api::<Namespace>::all(client.clone())
                .delete(BENCH_NS, &DeleteParams::default())
                .await?;
            let until = Instant::now() + Duration::from_secs(300);
            while Api::<Namespace>::all(client.clone())
                .get_opt(BENCH_NS)
                .await?
                .is_some()
            {
                if Instant::now() > until {
                    bail!("namespace {BENCH_NS} not deleted");
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            create_namespace(&client, BENCH_NS, true).await?;
        }
    }

    // The tail, interleaved: the bench namespace (200 CRDs, 5,000 objects) selected by
    // nsguard against an empty one that is not.
    eprintln!("bench: dry-run p99 with and without nsguard, interleaved");
    label(&client, BENCH_NS, Some("guarded")).await?;
    create_namespace(&client, "bench-bare", false).await?;
    dry_runs(&client, BENCH_NS, 10).await?;
    let rounds: usize = std::env::var("NSGUARD_BENCH_TAIL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let deltas = interleaved_p99_deltas(&client, BENCH_NS, "bench-bare", n, rounds).await?;
    label(&client, BENCH_NS, None).await?;
    let memory = index_memory(bin.parent().context("the binary's directory")?)?;

    eprintln!("bench: the API cost of a deny");
    let deny = deny_cost(&client, &guard, n).await?;
    // Start-up at 200 CRDs and 5,000 objects: a fresh nsguard, timed to ready.
    drop(guard);
    let guard = Nsguard::start(&cluster, &bin, &dir).await?;
    let ready_s = guard.ready_s;
    drop(guard);
    let scale_steps = if std::env::var("NSGUARD_BENCH_SCALE").as_deref() == Ok("0") {
        Vec::new()
    } else {
        scale(&cluster, &client, &bin, &dir, have_crds, n).await?
    };

    eprintln!("bench: 10,000 objects under 20 admission policies");
    let policies = {
        let guard = Nsguard::start(&cluster, &bin, &dir).await?;
        let p = policy_cost(&cluster, &client, n).await?;
        drop(guard);
        p
    };

    let mut table = render(&rows, &storm, n);
    let _ = writeln!(
        table,
        "\nnsguard's resident memory when idle and synced, before the storms: {idle_rss:.0} MiB; the RSS column is measured after the storms."
    );
    table.push_str(&render_more(&deny, ready_s, &scale_steps, n));
    table.push_str(&render_tail_and_memory(&deltas, n, &memory));
    table.push_str(&render_policies(&policies, n));
    print!("{table}");
    let doc = format!(
        "# Benchmarks\n\nThe latest `make bench` run: {} on {}; Kubernetes v1.36.3 and etcd v3.6.16 built from upstream, all on loopback; nsguard built with `--release`. The whole run took {:.0} s.\n\nHow it measures, and what the numbers mean, is in `crates/bench/src/main.rs` and below the table. The figures are drawn from the run's `target/bench/summary.json` by `crates/bench/src/figures.rs`; `nsguard-bench --figures target/bench/summary.json docs/benchmarks/` redraws them.\n\n{table}\n{}",
        std::env::var("NSGUARD_BENCH_DATE").unwrap_or_else(|_| "today".into()),
        machine(),
        started.elapsed().as_secs_f64(),
        notes(&rows, &storm, &deny),
    );
    if let Some(parent) = output.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&output, doc)?;
    eprintln!("bench: wrote {}", output.display());
    let mut summary = summary(&rows, &storm, n, idle_rss, &deny, ready_s, &scale_steps);
    let (median, low, high) = median_spread(&deltas);
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    let largest_step = scale_steps.iter().max_by_key(|st| st.objects);
    let extra = serde_json::json!({
        "dry_run_p99_delta_ms": round(median),
        "dry_run_p99_delta_ms_spread": [round(low), round(high)],
        "dry_run_p99_delta_rounds": deltas.len(),
        "bytes_per_object": memory.last().and_then(|m| m.get("bytes_per_object").cloned()),
        "bytes_per_object_at_objects": memory.last().and_then(|m| m.get("objects").cloned()),
        "scale_objects_max": largest_step.map(|st| st.objects),
        "ready_s_at_scale_max": largest_step.map(|st| round(st.ready_s)),
        // What the figures draw (crates/bench/src/figures.rs).
        "preflight": rows.iter().map(|r| serde_json::json!({
            "crds": r.crds,
            "objects": r.objects,
            "types": r.types,
            "inside_ms": r.inside.map(round),
            "dry_run_with_ms": r.e2e.map(round),
            "dry_run_without_ms": r.bare.map(round),
            "api_calls_per_decision": round(r.requests),
            "rss_mib": round(r.rss_mib),
            "kubectl_loop_s": round(r.kubectl_loop_s),
        })).collect::<Vec<_>>(),
        "index_memory": memory,
        "storm_timelines": storm.guarded.iter().enumerate()
            .map(|(i, r)| (format!("nsguard enforce, run {}", i + 1), true, r))
            .chain([("no webhook".to_string(), false, &storm.bare)])
            .map(|(run, webhook, r)| serde_json::json!({
                "run": run,
                "webhook": webhook,
                "samples": r.samples.iter().map(|&(s, left)| (round(s), left)).collect::<Vec<_>>(),
            }))
            .collect::<Vec<_>>(),
    });
    if let (Some(into), Some(from)) = (summary.as_object_mut(), extra.as_object()) {
        into.extend(from.clone());
    }
    // The last `make bench-scale` run, as recorded beside the docs.
    let scale_run = workspace_root().join("docs/benchmarks-scale.json");
    if let (Some(into), Ok(text)) = (summary.as_object_mut(), std::fs::read_to_string(&scale_run)) {
        let scale_run: serde_json::Value = serde_json::from_str(&text)?;
        // The largest step measured wins the top-level keys: `make bench-scale` goes further
        // than `make bench`'s own scale step, and says so in `scale_measured_by`.
        let theirs = scale_run["scale_objects_max"].as_u64().unwrap_or(0);
        let ours = into
            .get("scale_objects_max")
            .and_then(|v| v.as_u64())
            .unwrap_or(0);
        if theirs > ours {
            into.insert(
                "scale_objects_max".into(),
                scale_run["scale_objects_max"].clone(),
            );
            into.insert(
                "ready_s_at_scale_max".into(),
                scale_run["ready_s_at_scale_max"].clone(),
            );
            into.insert(
                "scale_measured_by".into(),
                "make bench-scale (docs/benchmarks-scale.json)".into(),
            );
        } else {
            into.insert("scale_measured_by".into(), "make bench".into());
        }
        into.insert("bench_scale".into(), scale_run);
    }
    let path = dir.join("summary.json");
    std::fs::write(&path, serde_json::to_string_pretty(&summary)?)?;
    eprintln!("bench: wrote {}", path.display());
    // Beside the markdown: docs/benchmarks/*.svg.
    let figures_dir = output.parent().unwrap_or(Path::new(".")).join("benchmarks");
    for path in figures::write_all(&summary, &figures_dir)? {
        eprintln!("bench: wrote {}", path.display());
    }
    Ok(())
}

/// Registers `process` as the webhook for the namespaces the bench labels as guarded.
fn register_bench_webhook(cluster: &LocalCluster, process: &Launched) -> Result<()> {
    process.register(
        cluster,
        "nsguard-bench",
        &format!("{{matchLabels: {{\"{GUARD}\": guarded}}}}"),
        &cluster.ca().ca_bundle(),
    )
}

/// `make bench-scale`: only the scale report, at the sizes `NSGUARD_BENCH_SCALE_STEPS` names,
/// on a control plane of its own; writes `output` and, beside it, the same figures as JSON
/// (read by `make bench` into its summary), and `target/bench-scale/summary.json`.
async fn scale_only(bin: &Path, output: &Path, n: usize) -> Result<()> {
    let dir = workspace_root().join("target/bench-scale");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let started = Instant::now();
    let cluster = LocalCluster::start(dir.join("cluster")).await?;
    let client = cluster.client().await?;
    let memory = index_memory(bin.parent().context("the binary's directory")?)?;
    let steps = scale(&cluster, &client, bin, &dir, 0, n).await?;
    let mut doc = format!(
        "# Benchmarks at scale\n\nThe latest `make bench-scale` run: {} on {}; Kubernetes v1.36.3 and etcd v3.6.16 built from upstream, all on loopback; nsguard built with `--release`, running as its own ServiceAccount. The whole run took {:.0} s. `make bench` measures the rest ([benchmarks.md](benchmarks.md)); how both measure is in `crates/bench/src/main.rs`.\n",
        std::env::var("NSGUARD_BENCH_DATE").unwrap_or_else(|_| "today".into()),
        machine(),
        started.elapsed().as_secs_f64(),
    );
    doc.push_str(&render_scale(&steps, n));
    doc.push_str(&render_memory(&memory));
    std::fs::write(output, &doc)?;
    let largest = steps.iter().max_by_key(|st| st.objects);
    let summary = serde_json::json!({
        "date": std::env::var("NSGUARD_BENCH_DATE").ok(),
        "scale": scale_json(&steps),
        "scale_objects_max": largest.map(|st| st.objects),
        "ready_s_at_scale_max": largest.map(|st| (st.ready_s * 1000.0).round() / 1000.0),
        "bytes_per_object": memory.last().and_then(|m| m.get("bytes_per_object").cloned()),
        "bytes_per_object_at_objects": memory.last().and_then(|m| m.get("objects").cloned()),
    });
    let text = serde_json::to_string_pretty(&summary)?;
    std::fs::write(output.with_extension("json"), &text)?;
    std::fs::write(dir.join("summary.json"), &text)?;
    eprintln!("bench: wrote {}", output.display());
    Ok(())
}

/// The headline figures, by key; a figure this bench does not measure is `null`.
fn summary(
    rows: &[Row],
    storm: &Storm,
    n: usize,
    idle_rss: f64,
    deny: &Deny,
    ready_s: f64,
    scale: &[ScaleStep],
) -> serde_json::Value {
    let number = |x: f64| {
        if x.is_finite() {
            serde_json::json!((x * 1000.0).round() / 1000.0)
        } else {
            serde_json::Value::Null
        }
    };
    let largest = rows.iter().find(|r| r.crds == 200 && r.objects == 5000);
    serde_json::json!({
        "p99_ms_inside": largest.map(|r| number(r.inside[2])),
        // The bench namespace holds ConfigMaps only: every decision is an allow.
        "api_calls_per_allow": largest.map(|r| number(r.requests)),
        // One blocker (a finalizer nobody removes on one custom resource), confirmed.
        "api_calls_per_deny": number(deny.requests),
        "deny_blockers_confirmed": 1,
        "dry_run_overhead_ms_p50": largest.map(|r| number(r.e2e[0] - r.bare[0])),
        "storm_namespaces": n,
        "storm_runs": storm.guarded.len(),
        "storm_fail_opens": storm.fail_opens(),
        "storm_timeouts": storm.webhook_errors(),
        "storm_fail_opens_per_run": storm.guarded.iter().map(|r| r.fail_open).collect::<Vec<_>>(),
        "storm_timeouts_per_run": storm.guarded.iter().map(|r| r.webhook_errors).collect::<Vec<_>>(),
        "rss_peak_mib": number(storm.peak_rss_mib()),
        "rss_idle_mib": number(idle_rss),
        "ready_seconds": number(ready_s),
        "scale": scale_json(scale),
    })
}

/// The scale steps, for `summary.json`.
fn scale_json(scale: &[ScaleStep]) -> Vec<serde_json::Value> {
    let number = |x: f64| {
        if x.is_finite() {
            serde_json::json!((x * 1000.0).round() / 1000.0)
        } else {
            serde_json::Value::Null
        }
    };
    scale
        .iter()
        .map(|st| {
            serde_json::json!({
                "objects": st.objects,
                "namespaces": st.namespaces,
                "types": st.types,
                "index_objects": number(st.indexed),
                "ready_seconds": number(st.ready_s),
                "rss_mib": number(st.rss_mib),
                "p99_ms_inside": number(st.inside[2]),
                "api_calls_per_allow": number(st.requests),
                "startup": startup_json(&st.startup),
                "startup_3_replicas": startup_json(&st.startup3),
            })
        })
        .collect()
}

fn startup_json(st: &Startup) -> serde_json::Value {
    let number = |x: f64| {
        if x.is_finite() {
            serde_json::json!((x * 100.0).round() / 100.0)
        } else {
            serde_json::Value::Null
        }
    };
    serde_json::json!({
        "replicas": st.replicas,
        "ready_seconds": number(st.ready_s),
        "synced_seconds": number(st.synced_s),
        "apiserver_requests": number(st.requests),
        "apiserver_lists": number(st.lists),
        "apiserver_watches": number(st.watches),
        "apiserver_rss_before_mib": number(st.apiserver_rss_before_mib),
        "apiserver_rss_peak_mib": number(st.apiserver_rss_peak_mib),
        "etcd_rss_peak_mib": number(st.etcd_rss_peak_mib),
    })
}

/// The interleaved tail and the index's memory per object.
fn render_tail_and_memory(deltas: &[f64], n: usize, memory: &[serde_json::Value]) -> String {
    let mut s = String::new();
    let (median, low, high) = median_spread(deltas);
    let _ = writeln!(
        s,
        "\n### Dry-run tail, interleaved\n\n{} rounds of {n} dry runs of deleting the bench namespace (200 CRDs, 5,000 objects, selected by nsguard) alternating one by one with dry runs of deleting an empty namespace nsguard does not select. p99(with) - p99(without) per round: {}; median {median:.1} ms, spread {low:.1} to {high:.1} ms (target ≤ +3 ms).",
        deltas.len(),
        deltas
            .iter()
            .map(|d| format!("{d:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    s.push_str(&render_memory(memory));
    s
}

/// The index's memory per object, measured in process.
fn render_memory(memory: &[serde_json::Value]) -> String {
    let mut s = String::new();
    if !memory.is_empty() {
        let _ = writeln!(
            s,
            "\n### The index's memory per object\n\nMeasured in-process by `nsguard-index-memory` (a counting allocator; the index built through the same path as a watch's list; 2,000 namespaces, 300 types, 20-character names, two labels from 50 sets, one object in ten with a finalizer). *former* is the same objects in the layout before interning. *bare*: the objects as this bench's scale world creates them (seven-character names, no labels, no finalizers).\n\n| objects | bytes per object | former | bare | bare, former |\n|---:|---:|---:|---:|---:|"
        );
        for m in memory {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} |",
                m["objects"],
                m["bytes_per_object"],
                m["former_bytes_per_object"],
                m["bare_bytes_per_object"],
                m["bare_former_bytes_per_object"]
            );
        }
        let _ = writeln!(s, "\n{}", figures::INDEX_MEMORY.markdown());
    }
    s
}

/// The deny, start-up and scale tables.
fn render_more(deny: &Deny, ready_s: f64, scale: &[ScaleStep], n: usize) -> String {
    let f = |p: &[f64; 3]| format!("{:.1} / {:.1} / {:.1}", p[0], p[1], p[2]);
    let mut t = format!(
        "\n## A deny\n\nA namespace holding one custom resource with a finalizer that no controller removes, reviewed {n} times: {} of {} denied; inside nsguard {} ms (p50 / p95 / p99); **{:.1} API requests per deny** (the confirmation LIST of the one type holding it, and the liveness reads of its finalizer's controllers).\n\n## Start-up\n\nA fresh nsguard, from process start to `/readyz` at 200 CRDs and 5,000 objects: **{ready_s:.1} s**.\n",
        deny.denied,
        deny.decisions,
        f(&deny.inside),
        deny.requests,
    );
    t.push_str(&render_scale(scale, n));
    if !scale.is_empty() {
        let _ = writeln!(t, "\n{}", figures::SCALE.markdown());
    }
    t
}

/// The scale tables: latency and memory, and what start-up costs the API server.
fn render_scale(scale: &[ScaleStep], n: usize) -> String {
    let f = |p: &[f64; 3]| format!("{:.1} / {:.1} / {:.1}", p[0], p[1], p[2]);
    let mut t = String::new();
    if scale.is_empty() {
        return t;
    }
    let _ = write!(
        t,
        "\n## Scale\n\nWidgets spread over every bench CRD and {} namespaces; at each size a fresh nsguard starts, syncs its index, and answers {n} decisions on one namespace of the world.\n\n| objects | namespaces | types | objects in the index | start to ready s | RSS MiB once synced | inside nsguard ms (p50 / p95 / p99) | API requests per allow |\n|---:|---:|---:|---:|---:|---:|---|---:|\n",
        scale[0].namespaces
    );
    for st in scale {
        let _ = writeln!(
            t,
            "| {} | {} | {} | {:.0} | {:.1} | {:.0} | {} | {:.1} |",
            st.objects,
            st.namespaces,
            st.types,
            st.indexed,
            st.ready_s,
            st.rss_mib,
            f(&st.inside),
            st.requests
        );
    }
    let _ = write!(
        t,
        "\n### Start-up at scale: what it costs the API server\n\nAt each size, one nsguard and then three replicas at once (a three-replica rollout) start against the same world. *synced*: process start to every object indexed. Requests and LISTs are the growth of kube-apiserver's `apiserver_request_total` over the start-up, less the background rate measured over 5 s just before; WATCHes are the growth of the watches open (`apiserver_longrunning_requests`: the counter counts a watch only when it ends), added to the requests. A streaming list is a WATCH. Memory is sampled every 100 ms.\n\n| objects | replicas | start to ready s | start to synced s | API requests | LISTs | WATCHes | API server RSS MiB before -> peak | etcd peak RSS MiB |\n|---:|---:|---:|---:|---:|---:|---:|---|---:|\n"
    );
    for st in scale {
        for s in [&st.startup, &st.startup3] {
            let _ = writeln!(
                t,
                "| {} | {} | {:.1} | {:.1} | {:.0} | {:.0} | {:.0} | {:.0} -> {:.0} | {:.0} |",
                st.objects,
                s.replicas,
                s.ready_s,
                s.synced_s,
                s.requests,
                s.lists,
                s.watches,
                s.apiserver_rss_before_mib,
                s.apiserver_rss_peak_mib,
                s.etcd_rss_peak_mib
            );
        }
    }
    if let (Some(a), Some(b)) = (scale.first(), scale.last())
        && b.objects > a.objects
    {
        let per_k = (b.rss_mib - a.rss_mib) / ((b.objects - a.objects) as f64 / 1000.0);
        let ready_per_k = (b.ready_s - a.ready_s) / ((b.objects - a.objects) as f64 / 1000.0);
        let _ = writeln!(
            t,
            "\nGrowth from {} to {} objects: memory {per_k:.2} MiB and start-up {ready_per_k:.3} s per 1,000 objects; decision latency p99 {:.1} -> {:.1} ms (a decision reads one namespace's entries, so it does not grow with the cluster).",
            a.objects, b.objects, a.inside[2], b.inside[2]
        );
    }
    t
}

fn render(rows: &[Row], storm: &Storm, n: usize) -> String {
    let mut t = format!(
        "## Preflight latency ({n} decisions each; ms, p50 / p95 / p99)\n\n| CRDs | objects | types | inside nsguard | dry run with nsguard | dry run without | API requests per decision (target ≤ types + 5) | nsguard RSS MiB | kubectl loop s | speed-up (loop / nsguard p50) | p99 inside ≤ 50 ms |\n|---:|---:|---:|---|---|---|---:|---:|---:|---:|---|\n"
    );
    let f = |p: &[f64; 3]| format!("{:.1} / {:.1} / {:.1}", p[0], p[1], p[2]);
    for r in rows {
        let target = r.types as f64 + 5.0;
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {:.1}{} | {:.0} | {:.2} | {:.0}x | {} |",
            r.crds,
            r.objects,
            r.types,
            f(&r.inside),
            f(&r.e2e),
            f(&r.bare),
            r.requests,
            if r.requests <= target {
                ""
            } else {
                " (missed)"
            },
            r.rss_mib,
            r.kubectl_loop_s,
            r.kubectl_loop_s * 1e3 / r.inside[0],
            if r.inside[2] <= 50.0 {
                "yes"
            } else {
                "**missed**"
            }
        );
    }
    let _ = writeln!(
        t,
        "\n{}\n\n{}",
        figures::LATENCY.markdown(),
        figures::MEMORY.markdown()
    );
    let _ = write!(
        t,
        "\n## Deletion storms ({n} namespaces deleted at once, each holding one ConfigMap, no extra CRDs)\n\n| | all gone after s | decisions | fail-opens | webhook calls failed (API server) | API requests per decision | nsguard peak RSS MiB |\n|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for (i, r) in storm.guarded.iter().enumerate() {
        let _ = writeln!(
            t,
            "| nsguard enforce, run {} | {:.1} | {} | {} | {} | {:.1} | {:.0} |",
            i + 1,
            r.secs,
            r.decisions,
            r.fail_open,
            r.webhook_errors,
            (r.requests - storm.bare.requests) / n as f64,
            r.peak_rss_mib
        );
    }
    let _ = writeln!(t, "| no webhook | {:.1} | | | | | |", storm.bare.secs);
    let _ = writeln!(t, "\n{}", figures::STORMS.markdown());
    t
}

fn notes(rows: &[Row], storm: &Storm, deny: &Deny) -> String {
    let mut s = String::from(
        "## Method\n\n- *inside nsguard*: the `duration_ms` nsguard logs for each decision (admission request parsed to response built: facts, checks, policy).\n- *dry run with / without nsguard*: `DELETE namespace` with `dryRun=All` from a kube client, one after another, with the namespace selected by nsguard's webhook and then not: the difference is what nsguard adds to a deletion.\n- *API requests per decision*: the growth of kube-apiserver's `apiserver_request_total` over the decisions with nsguard minus the same over the decisions without it, divided by the number of decisions. *types* is the number of namespaced resource types with `list` and `delete` (what the namespace controller lists).\n- *kubectl loop*: the command of field report 004, `kubectl api-resources --verbs=list --namespaced -o name | xargs -n 1 kubectl get --show-kind --ignore-not-found -n NS`, timed once per row on the same namespace.\n- *storm*: every deletion sent at once; time until the last namespace is gone; fail-opens are nsguard's `decision=\"fail_open\"`, failed webhook calls are the API server's `apiserver_admission_webhook_fail_open_count` (a call that timed out or failed, let through by `failurePolicy: Ignore`); peak RSS is the kernel's `VmHWM` of the nsguard process.\n- nsguard runs as installed: its own ServiceAccount with the manifests' RBAC (so API Priority and Fairness applies to it, as `workload-low`), the release build with the allocator the image runs (glibc's malloc; the image is the same build on distroless cc).\n\n## Against the targets\n\n",
    );
    let Some(largest) = rows.iter().find(|r| r.crds == 200 && r.objects == 5000) else {
        return s;
    };
    let verdict = |ok: bool| if ok { "met" } else { "**missed**" };
    let overhead = largest.e2e[0] - largest.bare[0];
    let _ = writeln!(
        s,
        "- p99 inside nsguard at 200 CRDs and 5,000 objects: {:.1} ms (target ≤ 5): {}.",
        largest.inside[2],
        verdict(largest.inside[2] <= 5.0)
    );
    let _ = writeln!(
        s,
        "- API requests per allow: {:.1} (target 0): {}. Per deny: {:.1} (target ≤ 1 + blockers confirmed = 2): {}.",
        largest.requests,
        verdict(largest.requests < 0.5),
        deny.requests,
        verdict(deny.requests <= 2.0)
    );
    let _ = writeln!(
        s,
        "- Dry-run overhead, p50 with nsguard minus p50 without: {overhead:.1} ms (target ≤ 3): {}.",
        verdict(overhead <= 3.0)
    );
    let _ = writeln!(
        s,
        "- Storms: {} runs of {} namespaces, {} fail-opens and {} failed webhook calls in all (target 0 in every run): {}.",
        storm.guarded.len(),
        storm.guarded.first().map_or(0, |r| r.decisions),
        storm.fail_opens(),
        storm.webhook_errors(),
        verdict(storm.fail_opens() == 0 && storm.webhook_errors() == 0)
    );
    let _ = writeln!(
        s,
        "- Peak RSS over the storms: {:.0} MiB (target ≤ 128): {}.",
        storm.peak_rss_mib(),
        verdict(storm.peak_rss_mib() <= 128.0)
    );
    s
}
