//! Least privilege and hostile input, proven on the real control plane: the API server's own
//! audit log (every request of nsguard's ServiceAccount, with its response) shows nsguard
//! never receives a Secret's data; forged reviews cost no API call and make no Event; an
//! HTTP/1.1 client gets answers as the API server's HTTP/2 does.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::nsguard::Nsguard;
use support::*;

const NSGUARD_USER: &str = "system:serviceaccount:nsguard-system:nsguard";

/// Makes the API server send nsguard a review of deleting `ns` (a server dry run, repeated
/// until nsguard has counted one more review).
async fn reviewed(cluster: &'static localcluster::LocalCluster, guard: &Nsguard, ns: &str) {
    let before = guard.reviews();
    eventually(
        "nsguard to review the deletion",
        Duration::from_secs(30),
        || async {
            let _ = kubectl(
                cluster,
                &["delete", "namespace", ns, "--dry-run=server"],
                None,
            );
            Ok((guard.reviews() > before).then_some(()))
        },
    )
    .await;
}

/// The audit log's events for nsguard's ServiceAccount.
fn nsguard_audit(cluster: &localcluster::LocalCluster) -> Vec<Value> {
    let text = std::fs::read_to_string(cluster.audit_log()).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["user"]["username"] == NSGUARD_USER)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn nsguard_never_receives_a_secrets_data() {
    let _lock = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    let guard = Nsguard::start(cluster, &["--mode=enforce"]).await;
    let ns = create_namespace_with(&client, "secrets", &guard.labels(), &[]).await;
    kubectl(
        cluster,
        &[
            "create",
            "secret",
            "generic",
            "s1",
            "-n",
            &ns,
            "--from-literal=password=hunter2-topsecret",
        ],
        None,
    )
    .unwrap();
    // The webhook's preflight and the CLI's, both as nsguard's ServiceAccount.
    reviewed(cluster, &guard, &ns).await;
    let as_sa = cluster.nsguard_kubeconfig().unwrap();
    let out = nsguard_cli(&as_sa, &["check", &ns, "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    let path = format!("/api/v1/namespaces/{ns}/secrets");
    let events = eventually(
        "the audit log to show nsguard listing the Secrets",
        Duration::from_secs(30),
        || async {
            let events: Vec<Value> = nsguard_audit(cluster)
                .into_iter()
                .filter(|e| e["objectRef"]["resource"] == "secrets")
                .collect();
            let listed = events.iter().any(|e| {
                e["requestURI"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with(&path)
            });
            Ok(listed.then_some(events))
        },
    )
    .await;
    for e in &events {
        // List (the CLI, a review's fallback) and watch (the content index); the audit log
        // records no watch event bodies, so the metadata-only proof is on the lists.
        assert!(
            e["verb"] == "list" || e["verb"] == "watch",
            "nsguard may only list and watch Secrets: {e}"
        );
        let body = &e["responseObject"];
        if e["verb"] == "list" && e["responseStatus"]["code"] == 200 {
            assert_eq!(body["kind"], "PartialObjectMetadataList", "{e}");
        }
        let text = body.to_string();
        assert!(
            !text.contains("\"data\""),
            "a Secret's data reached nsguard: {e}"
        );
        // base64 of the value, as a Secret's data would carry it.
        assert!(!text.contains("aHVudGVyMi10b3BzZWNyZXQ"), "{e}");
    }
    kubectl(cluster, &["delete", "namespace", &ns, "--wait=false"], None).unwrap();
}

/// Posts `count` AdmissionReviews for namespaces that do not exist to nsguard over one
/// HTTP/1.1 keep-alive connection (Python's http.client); returns how many got a 200 with an
/// allowed response carrying their uid.
fn post_forged(port: u16, ca: &std::path::Path, count: usize) -> usize {
    let fixture = localcluster::workspace_root().join("tests/fixtures/namespace-delete.json");
    let script = r#"
import http.client, json, ssl, sys
port, ca, fixture, count = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
review = json.load(open(fixture))
ctx = ssl.create_default_context(cafile=ca)
ctx.check_hostname = False
conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)
ok = 0
for i in range(count):
    name = "forged-%d" % i
    uid = "00000000-0000-0000-0000-%012d" % i
    review["request"]["uid"] = uid
    review["request"]["name"] = name
    review["request"]["namespace"] = name
    review["request"]["oldObject"]["metadata"]["name"] = name
    review["request"]["oldObject"]["metadata"]["uid"] = uid
    conn.request("POST", "/validate?timeout=10s", body=json.dumps(review),
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    doc = json.loads(resp.read())
    if resp.status == 200 and resp.version == 11 and doc["response"]["uid"] == uid and doc["response"]["allowed"]:
        ok += 1
print(ok)
"#;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(port.to_string())
        .arg(ca)
        .arg(fixture)
        .arg(count.to_string())
        .output()
        .expect("python3");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_reviews_cost_no_api_call_and_make_no_event() {
    let _lock = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    let guard = Nsguard::start(cluster, &["--mode=enforce"]).await;
    let ca = cluster.dir().join("pki/ca.crt");
    let calls = |events: &[Value]| {
        events
            .iter()
            .filter(|e| e["verb"] == "list" || e["verb"] == "get")
            .count()
    };
    let before = calls(&nsguard_audit(cluster));
    let answered = post_forged(guard.port, &ca, 1000);
    assert_eq!(answered, 1000, "every forged review answered over HTTP/1.1");
    // Wait for anything nsguard might still do (Events are written in the background) to
    // reach the audit log: a real review afterwards is the marker.
    let ns = create_namespace_with(&client, "marker", &guard.labels(), &[]).await;
    reviewed(cluster, &guard, &ns).await;
    let events = nsguard_audit(cluster);
    let forged_calls = events
        .iter()
        .filter(|e| {
            e["requestURI"]
                .as_str()
                .unwrap_or_default()
                .contains("forged-")
        })
        .count();
    assert_eq!(forged_calls, 0, "a forged review made nsguard call the API");
    let event_writes = events
        .iter()
        .filter(|e| e["objectRef"]["resource"] == "events" && e["verb"] == "create")
        .filter(|e| e["requestObject"].to_string().contains("forged-"))
        .count();
    assert_eq!(event_writes, 0, "a forged review made an Event");
    // The real review listed; the thousand forged ones did not.
    assert!(calls(&events) > before);
    kubectl(cluster, &["delete", "namespace", &ns, "--wait=false"], None).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn every_decision_line_carries_its_own_uid_and_namespace() {
    let _lock = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    let guard = Nsguard::start(cluster, &["--mode=enforce"]).await;
    let mut names = Vec::new();
    for _ in 0..6 {
        names.push(create_namespace_with(&client, "concurrent", &guard.labels(), &[]).await);
    }
    let before = guard.reviews();
    // Six reviews at once: the executor interleaves them.
    let threads: Vec<_> = names
        .iter()
        .map(|ns| {
            let ns = ns.clone();
            std::thread::spawn(move || {
                let _ = kubectl(
                    cluster,
                    &["delete", "namespace", &ns, "--dry-run=server"],
                    None,
                );
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    eventually("six reviews", Duration::from_secs(30), || async {
        Ok((guard.reviews() >= before + 6).then_some(()))
    })
    .await;
    let log = guard.log();
    let decisions: Vec<&str> = log.lines().filter(|l| l.contains("Decision")).collect();
    for ns in &names {
        let lines: Vec<&&str> = decisions
            .iter()
            .filter(|l| l.contains(&format!("namespace={ns}")))
            .collect();
        assert!(!lines.is_empty(), "no decision line for {ns}:\n{log}");
        for l in lines {
            assert_eq!(l.matches("uid=").count(), 1, "{l}");
            assert_eq!(l.matches("namespace=").count(), 1, "{l}");
        }
    }
    for ns in &names {
        kubectl(cluster, &["delete", "namespace", ns, "--wait=false"], None).unwrap();
    }
}
