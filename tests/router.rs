//! The webhook router in process (no sockets, no cluster): bad input of every class gets a
//! clear 4xx, other resources and operations pass untouched, and nothing panics.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use nsguard::output::policy::Policy;
use nsguard::output::records::Metrics;
use nsguard::webhook::admission::Admission;
use nsguard::webhook::ratelimit::{Peer, PeerLimit};
use nsguard::webhook::server::{BODY_LIMIT, webhook_router};
use serde_json::{Value, json};
use tower::ServiceExt;

fn router() -> axum::Router {
    router_with_slots(None)
}

fn router_with_slots(slots: Option<usize>) -> axum::Router {
    webhook_router(admission(slots, None))
}

fn admission(slots: Option<usize>, peer_limit: Option<PeerLimit>) -> Arc<Admission> {
    Arc::new(Admission {
        engine: None,
        policy: Policy::default().into(),
        check_timeout: Duration::from_secs(5),
        own_namespace: Some("nsguard-system".into()),
        metrics: Arc::new(Metrics::default()),
        events: None,
        slots: slots.map(|n| Arc::new(tokio::sync::Semaphore::new(n))),
        peer_limit,
    })
}

async fn post(body: impl Into<Body>) -> (StatusCode, Value) {
    let req = Request::post("/validate?timeout=10s")
        .header("content-type", "application/json")
        .body(body.into())
        .unwrap();
    let resp = router().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// A namespace DELETE review as kube-apiserver sends it, captured from the local control
/// plane (e2e_capture.rs keeps the fixture true), for namespace `name`.
fn namespace_delete(name: &str) -> Value {
    let text = include_str!("fixtures/namespace-delete.json").replace("team-a", name);
    serde_json::from_str(&text).unwrap()
}

#[tokio::test]
async fn bad_input_gets_400_with_a_reason() {
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("not JSON", b"{not json".to_vec(), "not JSON"),
        ("wrong apiVersion", serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {}})).unwrap(), "admission.k8s.io/v1"),
        ("wrong kind", serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "Pod"})).unwrap(), "AdmissionReview"),
        ("no request", serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"})).unwrap(), "no request"),
        ("no oldObject", {
            let mut v = namespace_delete("team-a");
            v["request"]["oldObject"] = Value::Null;
            serde_json::to_vec(&v).unwrap()
        }, "oldObject"),
        ("garbage request", serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"operation": "DELETE", "resource": {"group": "", "resource": "namespaces"}, "uid": 5}})).unwrap(), "does not parse"),
    ];
    for (what, body, expect) in cases {
        let (status, v) = post(body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {v}");
        let err = v["error"].as_str().unwrap_or_default();
        assert!(err.contains(expect), "{what}: {err}");
    }
}

#[tokio::test]
async fn an_oversized_body_gets_413() {
    let (status, doc) = post(vec![b' '; BODY_LIMIT + 1]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        doc["error"]
            .as_str()
            .is_some_and(|e| e.contains("too large")),
        "413 as JSON: {doc}"
    );
}

#[tokio::test]
async fn other_resources_and_operations_pass_untouched() {
    let mut pod = namespace_delete("x");
    pod["request"]["resource"] = json!({"group": "", "version": "v1", "resource": "pods"});
    let mut update = namespace_delete("x");
    update["request"]["operation"] = json!("UPDATE");
    let mut finalize = namespace_delete("x");
    finalize["request"]["subResource"] = json!("finalize");
    for review in [pod, update, finalize] {
        let (status, v) = post(serde_json::to_vec(&review).unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["response"]["allowed"], true, "{v}");
        assert_eq!(v["response"]["uid"], review["request"]["uid"]);
        assert!(v["response"]["warnings"].is_null());
    }
}

#[tokio::test]
async fn nsguards_own_namespace_is_never_checked() {
    let (status, v) = post(serde_json::to_vec(&namespace_delete("nsguard-system")).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["response"]["allowed"], true);
    assert!(v["response"]["warnings"].is_null(), "{v}");
}

#[tokio::test]
async fn without_a_cluster_the_preflight_fails_open_with_a_warning() {
    let (status, v) = post(serde_json::to_vec(&namespace_delete("team-a")).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(v["response"]["allowed"], true);
    assert_eq!(v["response"]["uid"], "0f1c5e8a-2d33-4c0e-9a57-3b7f7d1e2a10");
    let w = v["response"]["warnings"][0].as_str().unwrap();
    assert!(w.contains("could not check"), "{w}");
}

#[tokio::test]
async fn with_no_review_slot_left_it_fails_open_within_its_deadline_with_a_warning() {
    let req = Request::post("/validate?timeout=10s")
        .header("content-type", "application/json")
        .body(Body::from(
            serde_json::to_vec(&namespace_delete("team-a")).unwrap(),
        ))
        .unwrap();
    let resp = router_with_slots(Some(0)).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["response"]["allowed"], true);
    let w = v["response"]["warnings"].to_string();
    assert!(w.contains("concurrent reviews"), "{w}");
}

/// Posts `review` to `router` as sent from `peer` (what the TLS acceptor attaches to each
/// request); returns the status and the JSON answer.
async fn post_from(
    router: &axum::Router,
    peer: Option<Peer>,
    review: &Value,
) -> (StatusCode, Value) {
    let mut req = Request::post("/validate?timeout=10s")
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(review).unwrap()))
        .unwrap();
    if let Some(peer) = peer {
        req.extensions_mut().insert(peer);
    }
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn a_client_over_its_burst_is_allowed_unchecked_with_a_warning_and_counted() {
    const BURST: u32 = 5;
    const SENT: usize = 20;
    // One review a second after the burst: the test's reviews take milliseconds, so a token
    // refills only if the machine stalls for a second (allowed for below).
    let admission = admission(None, PeerLimit::new(1, BURST));
    let metrics = admission.metrics.clone();
    let router = webhook_router(admission);
    let peer = |ip: &str, verified: bool| Peer {
        ip: ip.parse().unwrap(),
        verified,
    };
    let client = peer("10.0.0.7", false);
    let started = std::time::Instant::now();
    let mut outcomes = Vec::new();
    for i in 0..SENT {
        let mut review = namespace_delete("team-a");
        let uid = format!("00000000-0000-0000-0000-{i:012}");
        review["request"]["uid"] = json!(uid);
        let (status, v) = post_from(&router, Some(client), &review).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["response"]["uid"], uid.as_str(), "{v}");
        assert_eq!(v["response"]["allowed"], true, "never a deny: {v}");
        let warnings = v["response"]["warnings"].to_string();
        // Without a cluster, a review that reaches the preflight fails open saying so: that
        // is its real decision here. One over the limit never reaches it.
        let decided = warnings.contains("no cluster connection");
        let limited = warnings.contains("rate limit for this client");
        assert!(decided != limited, "exactly one of the two: {warnings}");
        outcomes.push(limited);
    }
    let refills = started.elapsed().as_secs() as usize + 1;
    let limited = outcomes.iter().filter(|l| **l).count();
    assert!(
        outcomes[..BURST as usize].iter().all(|l| !l),
        "the burst is decided: {outcomes:?}"
    );
    assert!(
        limited >= SENT - BURST as usize - refills,
        "{limited} of {SENT} limited: {outcomes:?}"
    );
    let text = metrics.encode();
    assert!(
        text.contains(&format!("nsguard_reviews_rate_limited_total {limited}\n")),
        "{text}"
    );
    // Still answered as a fail-open decision, like any incomplete preflight.
    assert!(
        text.contains(&format!(
            "nsguard_admission_reviews_total{{mode=\"enforce\",decision=\"fail_open\",dry_run=\"false\"}} {SENT}\n"
        )),
        "{text}"
    );

    // The limit is the client's own: another address, the API server with a verified client
    // certificate at the same address, and a request with no known peer are all decided.
    for other in [
        Some(peer("10.0.0.8", false)),
        Some(peer("10.0.0.7", true)),
        None,
    ] {
        let (_, v) = post_from(&router, other, &namespace_delete("team-a")).await;
        let warnings = v["response"]["warnings"].to_string();
        assert!(
            warnings.contains("no cluster connection"),
            "{other:?}: {warnings}"
        );
    }
    // Nothing but a namespace DELETE review is limited: other requests from the same client
    // pass untouched and bad input is still a 400.
    let mut pod = namespace_delete("x");
    pod["request"]["resource"] = json!({"group": "", "version": "v1", "resource": "pods"});
    let (status, v) = post_from(&router, Some(client), &pod).await;
    assert_eq!(status, StatusCode::OK);
    assert!(v["response"]["warnings"].is_null(), "{v}");
    let (status, _) = post_from(&router, Some(client), &json!({"kind": "Pod"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, v) = post_from(&router, Some(client), &namespace_delete("nsguard-system")).await;
    assert!(v["response"]["warnings"].is_null(), "own namespace: {v}");
}
