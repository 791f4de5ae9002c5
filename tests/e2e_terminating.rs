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

#[tokio::test(flavor = "multi_thread")]
async fn terminating_namespaces_are_reported_and_one_leader_writes_events() {
    let _lock = CLUSTER_WIDE.read().await;
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
    let leader_a = eventually("a holder of the Lease", LEASE * 3, || async {
        Ok(holder(&client).await)
    })
    .await;
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
