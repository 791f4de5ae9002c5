//! Least privilege and hostile input, proven on the real control plane: the API server's own
//! audit log (every request of nsguard's ServiceAccount, with its response) shows nsguard
//! never receives a Secret's data, and with the no-secrets overlay's role never asks for
//! Secrets at all; forged reviews cost no API call and make no Event; a client over its rate
//! limit is let through unchecked at no API cost; an HTTP/1.1 client gets answers as the API
//! server's HTTP/2 does.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::nsguard::Nsguard;
use support::*;

#[tokio::test(flavor = "multi_thread")]
async fn nsguard_never_receives_a_secrets_data() {
    let _lock = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    let guard = Nsguard::start(cluster, &["--mode=enforce"]).await;
    let ns = create_namespace_with(&client, "secrets", &guard.labels(), &[]).await;
    create_secret(cluster, &ns);
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
    // With the default per-client rate limit (a burst of 400): a forged review is answered
    // before it could take a token, so a forger sharing the API server's address cannot
    // spend the API server's budget.
    assert!(
        guard
            .metrics()
            .contains("nsguard_reviews_rate_limited_total 0\n"),
        "forged reviews took rate-limit tokens"
    );
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
    // The audit log holds nsguard's own reads (its watches' lists at least), so the zero counts
    // above are not an empty log's. A real review of an empty namespace may make no call at
    // all (the live index answers it), so the marker proves only that the log caught up.
    assert!(
        calls(&events) >= before && before > 0,
        "no read of nsguard's in the audit log"
    );
    kubectl(cluster, &["delete", "namespace", &ns, "--wait=false"], None).unwrap();
}

/// Posts `count` reviews of deleting namespace `ns` (uid `uid`) to nsguard over one HTTP/1.1
/// keep-alive connection from the loopback address `source` (so from a peer other than the
/// API server's 127.0.0.1); prints a JSON list with one outcome per review: `denied`,
/// `limited` (allowed, warning of the rate limit) or anything else as it came.
const REVIEW_FLOOD: &str = r#"
import http.client, json, ssl, sys
port, ca, fixture, source, ns, ns_uid, count = sys.argv[1:8]
review = json.load(open(fixture))
ctx = ssl.create_default_context(cafile=ca)
ctx.check_hostname = False
conn = http.client.HTTPSConnection("127.0.0.1", int(port), context=ctx, timeout=30,
                                   source_address=(source, 0))
out = []
for i in range(int(count)):
    uid = "00000000-0000-0000-0001-%012d" % i
    review["request"]["uid"] = uid
    review["request"]["name"] = ns
    review["request"]["namespace"] = ns
    review["request"]["oldObject"]["metadata"]["name"] = ns
    review["request"]["oldObject"]["metadata"]["uid"] = ns_uid
    conn.request("POST", "/validate?timeout=10s", body=json.dumps(review),
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    doc = json.loads(resp.read())
    r = doc.get("response", {})
    if resp.status == 200 and r.get("uid") == uid and r.get("allowed") is False:
        out.append("denied")
    elif resp.status == 200 and r.get("allowed") and "rate limit for this client" in json.dumps(r.get("warnings")):
        out.append("limited")
    else:
        out.append("%d %s" % (resp.status, json.dumps(doc)))
print(json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_client_over_its_rate_limit_is_let_through_unchecked_at_no_api_cost() {
    let _lock = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    const BURST: usize = 5;
    const RATE: usize = 2;
    let guard = Nsguard::start(
        cluster,
        &[
            "--mode=enforce",
            &format!("--peer-burst={BURST}"),
            &format!("--peer-rate-limit={RATE}"),
        ],
    )
    .await;
    // A namespace nsguard denies: a finalizer nobody removes. Every real decision confirms
    // the blocker with a fresh LIST of the namespace's gadgets before denying.
    let group = "ratelimit.security.nsguard.test";
    install_crd(cluster, group, "gadgets", "Gadget").await;
    let ns = create_namespace_with(&client, "ratelimit", &guard.labels(), &[]).await;
    gadget(cluster, group, &ns, "g1");
    denied(cluster, &ns, "finalizer-controller").await;
    let uid = kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .get(&ns)
        .await
        .unwrap()
        .metadata
        .uid
        .unwrap();
    let ca = cluster.dir().join("pki/ca.crt");
    let fixture = localcluster::workspace_root().join("tests/fixtures/namespace-delete.json");
    let flood = |source: &str, count: usize| -> Vec<String> {
        let out = std::process::Command::new("python3")
            .arg("-c")
            .arg(REVIEW_FLOOD)
            .arg(guard.port.to_string())
            .arg(&ca)
            .arg(&fixture)
            .arg(source)
            .arg(&ns)
            .arg(&uid)
            .arg(count.to_string())
            .output()
            .expect("python3");
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let limited_metric = || {
        guard
            .metrics()
            .lines()
            .find_map(|l| l.strip_prefix("nsguard_reviews_rate_limited_total "))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .expect("nsguard_reviews_rate_limited_total")
    };
    // The confirming LISTs of this namespace in the audit log, once a review of another
    // namespace afterwards (the marker) shows nsguard's earlier calls are all written.
    let lists = async || {
        let marker = create_namespace_with(&client, "marker", &guard.labels(), &[]).await;
        reviewed(cluster, &guard, &marker).await;
        kubectl(
            cluster,
            &["delete", "namespace", &marker, "--wait=false"],
            None,
        )
        .unwrap();
        let path = format!("/namespaces/{ns}/gadgets");
        nsguard_audit(cluster)
            .iter()
            .filter(|e| e["verb"] == "list")
            .filter(|e| e["requestURI"].as_str().unwrap_or_default().contains(&path))
            .count()
    };

    // What one real decision costs, from a client of its own (127.0.0.3).
    let before = lists().await;
    assert_eq!(flood("127.0.0.3", 1), ["denied"]);
    let one = lists().await - before;
    assert!(one >= 1, "a deny is confirmed by a LIST");

    // A flood from 127.0.0.2: its burst is decided, the rest let through unchecked.
    let limited_before = limited_metric();
    let started = std::time::Instant::now();
    let outcomes = flood("127.0.0.2", 40);
    let refilled = RATE * (started.elapsed().as_secs() as usize + 1);
    let decided = outcomes.iter().filter(|o| *o == "denied").count();
    let limited = outcomes.iter().filter(|o| *o == "limited").count();
    assert_eq!(
        decided + limited,
        40,
        "only denials and fail-opens: {outcomes:?}"
    );
    assert!(
        outcomes[..BURST].iter().all(|o| o == "denied"),
        "the burst gets real decisions: {outcomes:?}"
    );
    assert!(
        decided <= BURST + refilled,
        "{decided} decided, at most {BURST} + {refilled} refilled"
    );
    assert_eq!(limited_metric() - limited_before, limited);
    // No API call for the ones over the limit.
    let flood_lists = lists().await - before - one;
    assert!(
        flood_lists <= decided * one,
        "{flood_lists} LISTs for {decided} decisions of {one} each: the {limited} over the limit made calls"
    );
    eprintln!(
        "flood of 40 from one client: {decided} decided, {limited} let through unchecked; {flood_lists} LISTs ({one} per decision)"
    );
    // Another client's budget is its own.
    assert_eq!(flood("127.0.0.3", 1), ["denied"]);
    clear_finalizers(cluster, &format!("gadgets.{group}"), "g1", &ns);
    allowed_and_gone(cluster, &client, &ns).await;
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

/// Talks to nsguard's HTTPS port the way hostile or broken clients do (Python's ssl and
/// sockets); prints one JSON object of what happened.
const TRANSPORT_PROBE: &str = r#"
import json, socket, ssl, sys, time
port, ca = int(sys.argv[1]), sys.argv[2]
out = {}

def tls(minv, maxv):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    ctx.check_hostname = False
    ctx.minimum_version, ctx.maximum_version = minv, maxv
    ctx.set_ciphers("DEFAULT@SECLEVEL=0")
    raw = socket.create_connection(("127.0.0.1", port), timeout=30)
    return ctx.wrap_socket(raw)

def handshake(minv, maxv):
    try:
        s = tls(minv, maxv)
        v = s.version()
        s.close()
        return v
    except ssl.SSLError as e:
        return "refused: " + str(e)

out["tls12"] = handshake(ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2)
out["tls11"] = handshake(ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1)

def closed_after(sock):
    start = time.time()
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                break
            out.setdefault("answers", []).append(data.decode("latin-1")[:120])
    except (ConnectionResetError, ssl.SSLError, socket.timeout, OSError) as e:
        if isinstance(e, socket.timeout):
            return None
    return round(time.time() - start, 1)

# A connection that never starts the handshake.
raw = socket.create_connection(("127.0.0.1", port), timeout=30)
out["silent_handshake_closed_after_s"] = closed_after(raw)

# Headers trickled: a request line, then nothing.
s = tls(ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3)
s.sendall(b"POST /validate HTTP/1.1\r\nHost: nsguard\r\n")
out["slow_headers_closed_after_s"] = closed_after(s)

# A body promised and never sent.
s = tls(ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3)
s.sendall(b"POST /validate HTTP/1.1\r\nHost: nsguard\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
out["slow_body_closed_after_s"] = closed_after(s)
print(json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread")]
async fn old_tls_and_slow_clients_are_refused_or_cut_off() {
    let _lock = CLUSTER_WIDE.read().await;
    let (cluster, _) = cluster().await;
    let guard = Nsguard::start(cluster, &["--mode=enforce"]).await;
    let ca = cluster.dir().join("pki/ca.crt");
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(TRANSPORT_PROBE)
        .arg(guard.port.to_string())
        .arg(&ca)
        .output()
        .expect("python3");
    assert!(out.status.success(), "{out:?}");
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("transport probe: {doc}");
    // The same client speaks TLS 1.2, so a refusal of 1.1 is nsguard's.
    assert_eq!(doc["tls12"], "TLSv1.2", "{doc}");
    let old = doc["tls11"].as_str().unwrap();
    assert!(old.starts_with("refused"), "{doc}");
    assert!(
        !old.contains("NO_PROTOCOLS_AVAILABLE"),
        "the client refused, not nsguard: {doc}"
    );
    for (what, within) in [
        ("silent_handshake_closed_after_s", 15.0),
        ("slow_headers_closed_after_s", 15.0),
        ("slow_body_closed_after_s", 20.0),
    ] {
        let after = doc[what].as_f64();
        assert!(
            after.is_some_and(|s| s <= within),
            "{what}: the connection was not cut off within {within}s: {doc}"
        );
    }
    // The trickled body got a JSON 408 before the connection closed.
    assert!(
        doc["answers"].to_string().contains("408"),
        "no 408 for the trickled body: {doc}"
    );
}

/// Posts one forged review to nsguard with Python's ssl, presenting `cert` (a client
/// certificate and key) or none; prints `200` or what failed.
const MTLS_PROBE: &str = r#"
import http.client, json, ssl, sys
port, ca, fixture = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)
ctx.check_hostname = False
if len(sys.argv) > 5:
    ctx.load_cert_chain(sys.argv[4], sys.argv[5])
try:
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)
    conn.request("POST", "/validate", body=open(fixture).read(),
                 headers={"Content-Type": "application/json"})
    print(conn.getresponse().status)
except Exception as e:
    print("refused: %s" % e)
"#;

#[tokio::test(flavor = "multi_thread")]
async fn with_a_client_ca_only_the_api_server_is_served() {
    let _lock = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    let pki = cluster.dir().join("pki");
    let ca = pki.join("ca.crt");
    // Started means the API server's own calls got through: it presents its webhook client
    // certificate (AdmissionConfiguration kubeconfig) signed by that CA.
    // A per-client limit of one review a second: the API server, verified, is exempt.
    let guard = Nsguard::start(
        cluster,
        &[
            "--mode=enforce",
            &format!("--client-ca-file={}", ca.display()),
            "--peer-burst=1",
            "--peer-rate-limit=1",
        ],
    )
    .await;
    let fixture = localcluster::workspace_root().join("tests/fixtures/namespace-delete.json");
    let probe = |cert: &[&std::path::Path]| {
        let out = std::process::Command::new("python3")
            .arg("-c")
            .arg(MTLS_PROBE)
            .arg(guard.port.to_string())
            .arg(&ca)
            .arg(&fixture)
            .args(cert)
            .output()
            .expect("python3");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let anonymous = probe(&[]);
    assert!(anonymous.starts_with("refused"), "{anonymous}");
    let with_cert = probe(&[
        &pki.join("webhook-client.crt"),
        &pki.join("webhook-client.key"),
    ]);
    assert_eq!(with_cert, "200");
    // Five reviews by the API server, as fast as kubectl runs: none is over the limit.
    let ns = create_namespace_with(&client, "mtls", &guard.labels(), &[]).await;
    let before = guard.reviews();
    for _ in 0..5 {
        kubectl(
            cluster,
            &["delete", "namespace", &ns, "--dry-run=server"],
            None,
        )
        .unwrap();
    }
    assert_eq!(guard.reviews(), before + 5);
    assert!(
        guard
            .metrics()
            .contains("nsguard_reviews_rate_limited_total 0\n"),
        "the API server, verified, was rate limited"
    );
    kubectl(cluster, &["delete", "namespace", &ns, "--wait=false"], None).unwrap();
}

/// An OpenSSL-based client under load: POSTs a review over and over, a new connection (so a
/// new handshake) each time, trusting the CAs in `ca`, until the file `stop` exists; prints
/// `ok failed`.
const HANDSHAKE_LOAD: &str = r#"
import http.client, os, ssl, sys
port, ca, fixture, stop = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
body = open(fixture).read()
ok = failed = 0
while not os.path.exists(stop):
    try:
        ctx = ssl.create_default_context(cafile=ca)
        ctx.check_hostname = False
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
        conn.request("POST", "/validate", body=body, headers={"Content-Type": "application/json"})
        if conn.getresponse().status == 200:
            ok += 1
        else:
            failed += 1
        conn.close()
    except Exception as e:
        failed += 1
        sys.stderr.write("%s\n" % e)
print(ok, failed)
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_rotated_under_load_fails_no_handshake() {
    use ::nsguard::certs::Ca;
    let _lock = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let ip = ["127.0.0.1".parse().unwrap()];
    let (old_ca, new_ca) = (
        Ca::new("nsguard-ca", 2).unwrap(),
        Ca::new("nsguard-ca", 2).unwrap(),
    );
    let old = old_ca
        .issue_server("nsguard", &["localhost".into()], &ip, 1)
        .unwrap();
    let new = new_ca
        .issue_server("nsguard", &["localhost".into()], &ip, 2)
        .unwrap();
    std::fs::write(&cert, &old.cert_pem).unwrap();
    std::fs::write(&key, &old.key_pem).unwrap();
    // The rotation's first step: both CAs trusted, by the API server and by the other client.
    let both = format!("{}{}", old_ca.cert_pem(), new_ca.cert_pem());
    let bundle = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(&both)
    };
    let cas = dir.path().join("cas.crt");
    std::fs::write(&cas, &both).unwrap();
    let guard = Nsguard::start_with_certs(
        cluster,
        &cert,
        &key,
        &bundle,
        &["--mode=enforce", "--tls-reload-interval=1s"],
    )
    .await;
    let expiry = || {
        guard
            .metrics()
            .lines()
            .find(|l| l.starts_with("nsguard_certificate_expiry_timestamp_seconds "))
            .map(str::to_string)
    };
    let before = expiry();
    assert!(before.is_some(), "no certificate expiry metric");

    // Go's client: the API server, deciding a deletion nsguard denies (a finalizer nobody
    // removes); a failed call would be ignored (failurePolicy Ignore) and the dry run allowed.
    let group = "rotation.security.nsguard.test";
    install_crd(cluster, group, "gadgets", "Gadget").await;
    let ns = create_namespace_with(&client, "rotation", &guard.labels(), &[]).await;
    gadget(cluster, group, &ns, "g1");
    denied(cluster, &ns, "finalizer-controller").await;
    let stop = dir.path().join("stop");
    let fixture = localcluster::workspace_root().join("tests/fixtures/namespace-delete.json");
    let openssl = std::process::Command::new("python3")
        .arg("-c")
        .arg(HANDSHAKE_LOAD)
        .arg(guard.port.to_string())
        .arg(&cas)
        .arg(&fixture)
        .arg(&stop)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let go = {
        let (stop, ns) = (stop.clone(), ns.clone());
        std::thread::spawn(move || {
            let (mut denied, mut let_through) = (0, 0);
            while !stop.exists() {
                let out = kubectl_output(
                    cluster,
                    &["delete", "namespace", &ns, "--dry-run=server"],
                    None,
                )
                .unwrap();
                if out.status.success() {
                    let_through += 1;
                } else {
                    denied += 1;
                }
            }
            (denied, let_through)
        })
    };

    // The swap, as a Secret's symlink swap: the new pair renamed into place.
    let staged = dir.path().join("staged");
    std::fs::create_dir(&staged).unwrap();
    std::fs::write(staged.join("tls.crt"), &new.cert_pem).unwrap();
    std::fs::write(staged.join("tls.key"), &new.key_pem).unwrap();
    std::fs::rename(staged.join("tls.key"), &key).unwrap();
    std::fs::rename(staged.join("tls.crt"), &cert).unwrap();
    eventually(
        "nsguard to serve the new certificate",
        Duration::from_secs(30),
        || async { Ok((expiry() != before).then_some(())) },
    )
    .await;
    // Keep the load on across the new certificate for a few more API server calls.
    let reviews = guard.reviews();
    eventually(
        "more reviews on the new certificate",
        Duration::from_secs(60),
        || async { Ok((guard.reviews() >= reviews + 5).then_some(())) },
    )
    .await;
    std::fs::write(&stop, "").unwrap();
    let (denied_calls, let_through) = go.join().unwrap();
    let out = openssl.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut counts = text.split_whitespace().map(|n| n.parse::<u64>().unwrap());
    let (ok, failed) = (counts.next().unwrap(), counts.next().unwrap());
    eprintln!(
        "rotation under load: OpenSSL client {ok} ok, {failed} failed; API server {denied_calls} decided, {let_through} let through"
    );
    assert_eq!(failed, 0, "{}", String::from_utf8_lossy(&out.stderr));
    assert!(ok > 0);
    assert_eq!(let_through, 0, "the API server failed to call nsguard");
    assert!(denied_calls > 0);
    clear_finalizers(cluster, &format!("gadgets.{group}"), "g1", &ns);
    allowed_and_gone(cluster, &client, &ns).await;
}

/// The built-in API groups the no-secrets overlay grants (and the core group, ""): a 403 on
/// any of them would be a gap in its rules.
const BUILT_IN_GROUPS: [&str; 19] = [
    "",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "apiregistration.k8s.io",
    "apps",
    "autoscaling",
    "batch",
    "certificates.k8s.io",
    "coordination.k8s.io",
    "discovery.k8s.io",
    "events.k8s.io",
    "flowcontrol.apiserver.k8s.io",
    "networking.k8s.io",
    "node.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "resource.k8s.io",
    "scheduling.k8s.io",
    "storage.k8s.io",
];

#[tokio::test(flavor = "multi_thread")]
async fn with_the_no_secrets_role_nsguard_never_asks_for_secrets_and_says_so() {
    let _lock = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    // The overlay's ClusterRole, as kustomize renders it, bound to a ServiceAccount of its
    // own (the API server audits it too), so the other tests keep nsguard's usual role.
    cluster.nsguard_kubeconfig().unwrap();
    let overlay = localcluster::workspace_root().join("manifests/overlays/no-secrets");
    let rendered = kubectl(cluster, &["kustomize", overlay.to_str().unwrap()], None).unwrap();
    let docs: Vec<Value> = serde_saphyr::from_multiple(&rendered).unwrap();
    let mut role = docs
        .iter()
        .find(|d| d["kind"] == "ClusterRole")
        .expect("the overlay's ClusterRole")
        .clone();
    role["metadata"] = serde_json::json!({"name": "nsguard-no-secrets"});
    kubectl(cluster, &["apply", "-f", "-"], Some(&role.to_string())).unwrap();
    kubectl(
        cluster,
        &["apply", "-f", "-"],
        Some(
            "apiVersion: v1
kind: ServiceAccount
metadata: {name: nsguard-no-secrets, namespace: nsguard-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: nsguard-no-secrets}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: nsguard-no-secrets}
subjects:
- {kind: ServiceAccount, name: nsguard-no-secrets, namespace: nsguard-system}
",
        ),
    )
    .unwrap();
    // The overlay's configuration file, as its ConfigMap holds it.
    let config_map = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "nsguard-config")
        .expect("the overlay's ConfigMap");
    let config_text = config_map["data"]["config.yaml"].as_str().unwrap();
    assert_eq!(
        ::nsguard::config::Layer::parse(config_text)
            .unwrap()
            .skip_resources,
        Some(["secrets".to_string()].into_iter().collect()),
        "the overlay skips Secrets: {config_text}"
    );
    let config_dir = tempfile::tempdir().unwrap();
    let config_file = config_dir.path().join("config.yaml");
    std::fs::write(&config_file, config_text).unwrap();
    let as_sa = cluster
        .service_account_kubeconfig("nsguard-system", "nsguard-no-secrets")
        .unwrap();

    let ns = create_namespace_with(&client, "nosecrets", &[], &[]).await;
    create_secret(cluster, &ns);
    kubectl(cluster, &["create", "configmap", "c1", "-n", &ns], None).unwrap();
    // The overlay's configuration file, as the webhook reads it.
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_nsguard"))
            .args(args)
            .env("KUBECONFIG", &as_sa)
            .env("NSGUARD_LOG", "warn")
            .env("NSGUARD_CONFIG", &config_file)
            .output()
            .expect("running nsguard")
    };
    let json = run(&["check", &ns, "-o", "json"]);
    let report: Value =
        serde_json::from_slice(&json.stdout).unwrap_or_else(|e| panic!("{e}: {json:?}"));
    assert_eq!(
        report["notCheckedByChoice"],
        serde_json::json!(["secrets"]),
        "{report}"
    );
    // CRDs other tests installed are outside the role (a 403, advisory); built-in types never.
    assert!(
        report["notChecked"].as_array().is_some_and(Vec::is_empty),
        "{report}"
    );
    let table = run(&["check", &ns]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains(
            "not checked: secrets (skipped by configuration): one left with a finalizer could hang the deletion"
        ),
        "{text}"
    );
    assert!(!text.contains("the deletion would complete"), "{text}");

    // The audit log: the preflight listed the namespace's ConfigMaps as that ServiceAccount,
    // never touched Secrets, and was refused nothing on a built-in type.
    let user = "system:serviceaccount:nsguard-system:nsguard-no-secrets";
    let configmaps = format!("/api/v1/namespaces/{ns}/configmaps");
    let events = eventually(
        "the audit log to show the preflight's lists",
        Duration::from_secs(30),
        || async {
            let text = std::fs::read_to_string(cluster.audit_log()).unwrap_or_default();
            let events: Vec<Value> = text
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|e| e["user"]["username"] == user)
                .collect();
            let listed = events.iter().any(|e| {
                e["requestURI"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with(&configmaps)
            });
            Ok(listed.then_some(events))
        },
    )
    .await;
    let on_secrets: Vec<&Value> = events
        .iter()
        .filter(|e| {
            e["objectRef"]["resource"] == "secrets"
                || e["requestURI"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("/secrets")
        })
        .collect();
    assert!(on_secrets.is_empty(), "requests on Secrets: {on_secrets:?}");
    let forbidden: Vec<&Value> = events
        .iter()
        .filter(|e| e["responseStatus"]["code"] == 403)
        .filter(|e| {
            BUILT_IN_GROUPS.contains(&e["objectRef"]["apiGroup"].as_str().unwrap_or_default())
        })
        .collect();
    assert!(
        forbidden.is_empty(),
        "the role misses built-in types: {forbidden:#?}"
    );
    let types_listed = events
        .iter()
        .filter(|e| e["verb"] == "list" && e["responseStatus"]["code"] == 200)
        .filter(|e| {
            e["requestURI"]
                .as_str()
                .unwrap_or_default()
                .contains(&format!("/namespaces/{ns}/"))
        })
        .count();
    eprintln!(
        "no-secrets role: {} requests audited, {types_listed} lists of the namespace's types, 0 on Secrets, 0 refused on built-in types",
        events.len()
    );
    assert!(types_listed > 10, "the preflight listed the built-in types");
    kubectl(cluster, &["delete", "namespace", &ns, "--wait=false"], None).unwrap();
}

/// A Secret `s1` in `ns` with data (a password), which no response to nsguard may carry.
fn create_secret(cluster: &localcluster::LocalCluster, ns: &str) {
    kubectl(
        cluster,
        &[
            "create",
            "secret",
            "generic",
            "s1",
            "-n",
            ns,
            "--from-literal=password=hunter2-topsecret",
        ],
        None,
    )
    .unwrap();
}

/// Posts one AdmissionReview of deleting namespace `name` to nsguard (not through the API
/// server): its oldObject carries uid `uid` (none when empty) and the override annotation with
/// reason `reason` (none when empty). Prints the response as JSON.
const FORGE_ONE: &str = r#"
import http.client, json, ssl, sys
port, ca, fixture, name, uid, reason = sys.argv[1:7]
review = json.load(open(fixture))
review["request"]["uid"] = "00000000-0000-0000-0002-000000000001"
review["request"]["name"] = name
review["request"]["namespace"] = name
meta = review["request"]["oldObject"]["metadata"]
meta["name"] = name
meta.pop("uid", None)
if uid:
    meta["uid"] = uid
if reason:
    meta.setdefault("annotations", {})["nsguard.io/allow-stuck-delete"] = reason
ctx = ssl.create_default_context(cafile=ca)
ctx.check_hostname = False
conn = http.client.HTTPSConnection("127.0.0.1", int(port), context=ctx, timeout=30)
conn.request("POST", "/validate?timeout=10s", body=json.dumps(review),
             headers={"Content-Type": "application/json"})
print(json.dumps(json.loads(conn.getresponse().read())["response"]))
"#;

#[tokio::test(flavor = "multi_thread")]
async fn forged_reviews_of_a_real_namespace_have_no_effect_and_never_carry_an_override() {
    let _lock = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    let guard = Nsguard::start(cluster, &["--mode=enforce"]).await;
    // A real namespace whose deletion nsguard denies: a finalizer no controller removes.
    install_crd(cluster, "forge.nsguard.test", "gadgets", "Gadget").await;
    let ns = create_namespace_with(&client, "forge-target", &guard.labels(), &[]).await;
    gadget(cluster, "forge.nsguard.test", &ns, "g1");
    let uid = kubectl(
        cluster,
        &["get", "namespace", &ns, "-o", "jsonpath={.metadata.uid}"],
        None,
    )
    .unwrap();
    let ca = cluster.dir().join("pki/ca.crt");
    let fixture = localcluster::workspace_root().join("tests/fixtures/namespace-delete.json");
    let forge = |uid: &str, reason: &str| -> Value {
        let out = std::process::Command::new("python3")
            .arg("-c")
            .arg(FORGE_ONE)
            .arg(guard.port.to_string())
            .arg(&ca)
            .arg(&fixture)
            .args([ns.as_str(), uid, reason])
            .output()
            .expect("python3");
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let unverified = |m: &str| -> u64 {
        m.lines()
            .find_map(|l| l.strip_prefix("nsguard_reviews_unverified_total "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let before = unverified(&guard.metrics());
    // Without a uid, and with another namespace's uid: answered, allowed, saying why.
    for forged_uid in ["", "00000000-0000-0000-0000-00000000dead"] {
        let r = forge(forged_uid, "forged");
        assert_eq!(r["allowed"], true, "{r}");
        assert!(
            r["warnings"]
                .to_string()
                .contains("nsguard did not check this deletion"),
            "{r}"
        );
    }
    assert_eq!(unverified(&guard.metrics()), before + 2);
    // With the real uid, the review is checked, but the override comes from the namespace,
    // which does not carry it: the forged annotation changes nothing.
    let r = forge(&uid, "forged");
    assert_eq!(
        r["allowed"], false,
        "the request's override was believed: {r}"
    );
    // Nothing the forged reviews did reached the namespace: the one Event (if any) is the
    // real uid's denial, never an override. A real review afterwards marks the point the
    // log and the Events have caught up with.
    reviewed(cluster, &guard, &ns).await;
    let events = kubectl(
        cluster,
        &[
            "get",
            "events.events.k8s.io",
            "-A",
            "--field-selector",
            &format!("regarding.name={ns}"),
            "-o",
            "json",
        ],
        None,
    )
    .unwrap();
    assert!(!events.contains("DeletionOverridden"), "{events}");
    clear_finalizers(cluster, "gadgets.forge.nsguard.test", "g1", &ns);
    kubectl(cluster, &["delete", "namespace", &ns, "--wait=false"], None).unwrap();
}
