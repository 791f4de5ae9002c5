//! The background watch of Terminating namespaces, on the real control plane: a namespace made
//! Terminating while nsguard was down (a custom resource with a finalizer nobody removes) is
//! reported within a minute of nsguard's start, in its metrics and by a Warning Event on the
//! namespace naming the cause; with two replicas, exactly one (the Lease's holder) writes
//! Events, and when it is killed the other takes the Lease over within its duration and writes
//! them from then on.
//!
//! One test: every nsguard of this binary contends for the same Lease (`nsguard` in
//! nsguard-system, the one the RBAC names), so the replicas here must be the only ones.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event;
use kube::api::ListParams;
use kube::{Api, Client};
use localcluster::LocalCluster;
use support::nsguard::Nsguard;
use support::*;

const GROUP: &str = "terminating.nsguard.test";
/// The lease duration the replicas run with (`--leader-lease-duration`).
const LEASE: Duration = Duration::from_secs(6);

/// A namespace holding a Gadget whose finalizer nobody removes, deleted: Terminating for good.
async fn stuck_namespace(cluster: &LocalCluster, client: &Client, prefix: &str) -> String {
    let ns = create_namespace(client, prefix).await;
    gadget(cluster, GROUP, &ns, "g1");
    kubectl(cluster, &["delete", "namespace", &ns, "--wait=false"], None).unwrap();
    wait_stuck(client, &ns, "NamespaceFinalizersRemaining").await;
    ns
}

/// The `NamespaceStuckTerminating` Events about `ns` (nsguard writes them in `default`: a
/// Terminating namespace refuses new objects).
async fn stuck_events(client: &Client, ns: &str) -> Vec<Event> {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("NamespaceStuckTerminating"))
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(ns))
        .collect()
}

async fn holder(client: &Client) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "nsguard-system");
    leases
        .get_opt("nsguard")
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

/// The value of the sample `series` (name and labels exactly as exposed), if exposed.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn blocked(ns: &str) -> String {
    format!("nsguard_namespace_blocked{{namespace=\"{ns}\",check=\"finalizer-controller\"}}")
}

fn seconds(ns: &str) -> String {
    format!("nsguard_namespace_terminating_seconds{{namespace=\"{ns}\"}}")
}

const WRITTEN: &str = "nsguard_terminating_events_total{result=\"written\"}";

/// Every nsguard of this binary contends for the one Lease: the tests that start one take
/// turns.
static LEASE_TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread")]
async fn terminating_namespaces_are_reported_and_one_leader_writes_events() {
    let _lock = CLUSTER_WIDE.read().await;
    let _turn = LEASE_TURN.lock().await;
    let (cluster, client) = cluster().await;
    install_crd(cluster, GROUP, "gadgets", "Gadget").await;
    // Made Terminating while no nsguard runs.
    let first = stuck_namespace(cluster, &client, "stuck").await;

    let args = [
        "--mode=enforce",
        "--watch-interval=5s",
        "--leader-lease-duration=6s",
    ];
    let started = Instant::now();
    let mut a = Nsguard::start(cluster, &args).await;

    // Within a minute of the start: the metrics show it, blocked by the finalizer's missing
    // controller, and for as long as it has been Terminating.
    let terminating_for = eventually(
        "nsguard's metrics to show the Terminating namespace",
        Duration::from_secs(60).saturating_sub(started.elapsed()),
        || async {
            let m = a.metrics();
            Ok(sample(&m, &blocked(&first))
                .filter(|v| *v == 1.0)
                .and_then(|_| sample(&m, &seconds(&first))))
        },
    )
    .await;
    assert!(terminating_for > 0.0, "{terminating_for}");
    // A replica of an earlier test may have left the Lease held: A leads once it expires.
    eventually("the first replica to lead", LEASE * 4, || async {
        Ok((sample(&a.metrics(), "nsguard_leader") == Some(1.0)).then_some(()))
    })
    .await;
    let leader_a = holder(&client).await.expect("a holder of the Lease");
    // And a Warning Event on the namespace names the cause and the first remedy, written by
    // the Lease's holder.
    let event = eventually(
        "the Warning Event on the stuck namespace",
        Duration::from_secs(60).saturating_sub(started.elapsed()),
        || async { Ok(stuck_events(&client, &first).await.pop()) },
    )
    .await;
    let reported = started.elapsed();
    let note = event.note.clone().unwrap_or_default();
    assert_eq!(event.type_.as_deref(), Some("Warning"), "{event:?}");
    assert!(note.contains("[finalizer-controller]"), "{note}");
    assert!(note.contains(&format!("{GROUP}/cleanup")), "{note}");
    assert!(note.contains("First remedy: "), "{note}");
    assert_eq!(event.reporting_instance.as_deref(), Some(leader_a.as_str()));
    assert!(
        sample(&a.metrics(), "nsguard_leader") == Some(1.0),
        "{}",
        a.metrics()
    );
    eprintln!("reported {reported:?} after nsguard's start");

    // A second replica: it exports the same series, does not lead, and writes nothing, also
    // for a namespace that gets stuck while both run.
    let b = Nsguard::start(cluster, &args).await;
    let second = stuck_namespace(cluster, &client, "stuck-two").await;
    eventually(
        "both replicas to report the second namespace",
        Duration::from_secs(60),
        || async {
            Ok((sample(&a.metrics(), &blocked(&second)) == Some(1.0)
                && sample(&b.metrics(), &blocked(&second)) == Some(1.0))
            .then_some(()))
        },
    )
    .await;
    let events = eventually(
        "the Event on the second namespace",
        Duration::from_secs(60),
        || async {
            let e = stuck_events(&client, &second).await;
            Ok((!e.is_empty()).then_some(e))
        },
    )
    .await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        events[0].reporting_instance.as_deref(),
        Some(leader_a.as_str())
    );
    let bm = b.metrics();
    assert_eq!(sample(&bm, "nsguard_leader"), Some(0.0), "{bm}");
    assert_eq!(sample(&bm, WRITTEN), Some(0.0), "{bm}");
    assert_eq!(holder(&client).await.as_deref(), Some(leader_a.as_str()));
    // Only the leader's Events exist, on both namespaces.
    for ns in [&first, &second] {
        for e in stuck_events(&client, ns).await {
            assert_eq!(e.reporting_instance.as_deref(), Some(leader_a.as_str()));
        }
    }

    // The leader dies without releasing the Lease: the other takes it over within the
    // lease's duration (plus up to a second of the election's random back-off), and writes
    // the Events from then on.
    a.kill();
    let killed = Instant::now();
    let leader_b = eventually("the other replica to take the Lease", LEASE * 3, || async {
        Ok(holder(&client).await.filter(|h| *h != leader_a))
    })
    .await;
    let takeover = killed.elapsed();
    eprintln!("takeover after {takeover:?} (lease duration {LEASE:?})");
    assert!(
        takeover <= LEASE + Duration::from_secs(2),
        "took {takeover:?}"
    );
    eventually(
        "the new leader's Event",
        Duration::from_secs(30),
        || async {
            let theirs = stuck_events(&client, &first)
                .await
                .into_iter()
                .any(|e| e.reporting_instance.as_deref() == Some(leader_b.as_str()));
            Ok((theirs && sample(&b.metrics(), "nsguard_leader") == Some(1.0)).then_some(()))
        },
    )
    .await;

    // Fixed by hand: the series go with the namespaces.
    for ns in [&first, &second] {
        clear_finalizers(cluster, &format!("gadgets.{GROUP}"), "g1", ns);
        wait_gone(&client, ns).await;
    }
    eventually("the series to go", Duration::from_secs(30), || async {
        let m = b.metrics();
        Ok((sample(&m, &seconds(&first)).is_none()
            && sample(&m, &seconds(&second)).is_none()
            && sample(&m, &blocked(&first)).is_none())
        .then_some(()))
    })
    .await;
}

/// The findings of `nsguard check NS -o json` with `extra` flags, and its exit code.
fn check_json(
    cluster: &LocalCluster,
    ns: &str,
    extra: &[&str],
) -> (Option<i32>, serde_json::Value) {
    let mut args = vec!["check", ns, "-o", "json"];
    args.extend_from_slice(extra);
    let out = nsguard_cli(cluster.kubeconfig(), &args);
    let doc = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), doc)
}

fn finding<'a>(doc: &'a serde_json::Value, check: &str) -> Option<&'a serde_json::Value> {
    doc["findings"]
        .as_array()?
        .iter()
        .find(|f| f["check"] == check)
}

/// A Service of type LoadBalancer carrying `service.kubernetes.io/load-balancer-cleanup`, on a
/// control plane without a cloud controller (as kubeadm on bare metal): nothing will ever
/// remove the finalizer. nsguard warns before the deletion, and once the Service has waited
/// on it past --finalizer-stuck-after, names it as the blocker, in `check` and in the
/// background watch's metrics.
#[tokio::test(flavor = "multi_thread")]
async fn a_load_balancer_finalizer_without_a_cloud_controller_is_reported() {
    const LB: &str = "service.kubernetes.io/load-balancer-cleanup";
    let _lock = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    let ns = create_namespace(&client, "lb").await;
    kubectl(
        cluster,
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: {ns}\n  finalizers: [{LB}]\nspec:\n  type: LoadBalancer\n  selector: {{app: web}}\n  ports: [{{port: 80}}]\n"
        )),
    )
    .unwrap();

    // Before the deletion: a warning naming the finalizer and what was looked at.
    let (code, doc) = check_json(cluster, &ns, &[]);
    assert_eq!(code, Some(3), "{doc}");
    let f = finding(&doc, "finalizers-pending").unwrap_or_else(|| panic!("{doc}"));
    assert_eq!(f["severity"], "advisory", "{f}");
    let summary = f["summary"].as_str().unwrap();
    assert!(summary.contains(LB), "{summary}");
    assert!(summary.contains("cloud-controller-manager"), "{summary}");
    assert!(
        f["evidence"][0]
            .as_str()
            .unwrap()
            .contains("no Lease kube-system/cloud-controller-manager"),
        "{f}"
    );

    // Without nsguard in the way the deletion really hangs on it.
    kubectl(cluster, &["delete", "namespace", &ns, "--wait=false"], None).unwrap();
    let c = wait_stuck(&client, &ns, "NamespaceFinalizersRemaining").await;
    assert!(
        c.message.as_deref().unwrap_or_default().contains(LB),
        "{c:?}"
    );

    // Waited past the threshold: a blocker, with the evidence that no cloud controller runs.
    let doc = eventually(
        "finalizer-stuck on the Service",
        Duration::from_secs(60),
        || async {
            let (code, doc) = check_json(cluster, &ns, &["--finalizer-stuck-after=2s"]);
            Ok((code == Some(4) && finding(&doc, "finalizer-stuck").is_some()).then_some(doc))
        },
    )
    .await;
    let f = finding(&doc, "finalizer-stuck").unwrap();
    assert_eq!(f["severity"], "blocking", "{f}");
    assert!(
        f["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e.as_str().unwrap().contains("not seen running")),
        "{f}"
    );

    // And the background watch reports it (its metrics are every replica's, whichever leads).
    let _turn = LEASE_TURN.lock().await;
    let guard = Nsguard::start(
        cluster,
        &[
            "--finalizer-stuck-after=2s",
            "--watch-interval=5s",
            "--leader-lease-duration=6s",
        ],
    )
    .await;
    let series =
        format!("nsguard_namespace_blocked{{namespace=\"{ns}\",check=\"finalizer-stuck\"}}");
    eventually(
        "the background watch to report the Service's finalizer",
        Duration::from_secs(60),
        || async { Ok((sample(&guard.metrics(), &series) == Some(1.0)).then_some(())) },
    )
    .await;

    // The remedy an operator without a cloud provider takes: the namespace completes.
    clear_finalizers(cluster, "service", "web", &ns);
    wait_gone(&client, &ns).await;
}
