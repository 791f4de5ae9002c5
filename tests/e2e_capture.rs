//! The AdmissionReview fixture the router tests use is what the real API server sends: this
//! test captures one for a namespace DELETE and compares its shape with
//! `tests/fixtures/namespace-delete.json`. `NSGUARD_UPDATE_FIXTURES=1` rewrites the fixture
//! from the capture (names and uids replaced by stable placeholders).

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use localcluster::backend::Backend;
use serde_json::Value;
use support::*;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/namespace-delete.json"
);

/// Every path to a leaf, with the leaf's JSON type: the shape, not the values.
fn shape(v: &Value, path: String, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => m
            .iter()
            .for_each(|(k, v)| shape(v, format!("{path}.{k}"), out)),
        Value::Array(a) => a.iter().for_each(|v| shape(v, format!("{path}[]"), out)),
        other => {
            let kind = match other {
                Value::Null => "null",
                Value::Bool(_) => "bool",
                Value::Number(_) => "number",
                _ => "string",
            };
            out.insert(format!("{path}: {kind}"));
        }
    }
}

/// Replaces what differs from run to run with placeholders.
fn normalise(mut review: Value, ns: &str) -> Value {
    let text = serde_json::to_string_pretty(&review["request"]).unwrap();
    let text = text.replace(ns, "team-a");
    review["request"] = serde_json::from_str(&text).unwrap();
    let req = &mut review["request"];
    req["uid"] = "0f1c5e8a-2d33-4c0e-9a57-3b7f7d1e2a10".into();
    let meta = &mut req["oldObject"]["metadata"];
    meta["uid"] = "6a3b9a43-77b5-4b8e-8f0e-1c2d3e4f5a6b".into();
    meta["labels"]["nsguard.io/e2e-capture"] = "fixture".into();
    meta["resourceVersion"] = "1000".into();
    meta["creationTimestamp"] = "2026-11-22T11:00:00Z".into();
    if let Some(fields) = meta["managedFields"].as_array_mut() {
        for f in fields {
            f["time"] = "2026-11-22T11:00:00Z".into();
        }
    }
    req["options"]["preconditions"]["uid"] = "6a3b9a43-77b5-4b8e-8f0e-1c2d3e4f5a6b".into();
    if let Some(extra) = req["userInfo"]["extra"].as_object_mut() {
        for v in extra.values_mut() {
            *v = serde_json::json!(["placeholder"]);
        }
    }
    review
}

#[tokio::test(flavor = "multi_thread")]
async fn the_router_fixture_has_the_shape_the_api_server_sends() {
    let _lock = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    let backend = Backend::start(cluster, &[]).await;
    let id = localcluster::random_suffix();
    let config = format!("capture-{id}");
    kubectl(
        cluster,
        &["apply", "-f", "-"],
        Some(&localcluster::namespace_delete_webhook(
            &config,
            &format!("https://127.0.0.1:{}/validate", backend.port),
            &format!("{{matchLabels: {{\"nsguard.io/e2e-capture\": \"{id}\"}}}}"),
            &cluster.ca().ca_bundle(),
        )),
    )
    .unwrap();
    let ns =
        create_namespace_with(&client, "capture", &[("nsguard.io/e2e-capture", id)], &[]).await;
    // The registration takes effect asynchronously: delete for real once a dry run arrives.
    eventually(
        "the API server to call the capture webhook",
        Duration::from_secs(60),
        || async {
            kubectl(
                cluster,
                &["delete", "namespace", &ns, "--dry-run=server"],
                None,
            )?;
            Ok((!backend.reviews.lock().unwrap().is_empty()).then_some(()))
        },
    )
    .await;
    let dry = backend.reviews.lock().unwrap()[0].clone();
    assert_eq!(dry["request"]["dryRun"], true);
    kubectl(cluster, &["delete", "namespace", &ns, "--wait=false"], None).unwrap();
    let review = eventually(
        "the real deletion's review",
        Duration::from_secs(30),
        || async {
            Ok(backend
                .reviews
                .lock()
                .unwrap()
                .iter()
                .find(|r| r["request"]["dryRun"] == false)
                .cloned())
        },
    )
    .await;
    kubectl(
        cluster,
        &["delete", "validatingwebhookconfiguration", &config],
        None,
    )
    .unwrap();
    wait_gone(&client, &ns).await;

    let captured = normalise(review, &ns);
    if std::env::var_os("NSGUARD_UPDATE_FIXTURES").is_some() {
        let text = serde_json::to_string_pretty(&captured).unwrap() + "\n";
        std::fs::write(FIXTURE, text).unwrap();
    }
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(FIXTURE).unwrap()).unwrap();
    let (mut want, mut got) = (BTreeSet::new(), BTreeSet::new());
    shape(&fixture, String::new(), &mut want);
    shape(&captured, String::new(), &mut got);
    assert_eq!(
        got.symmetric_difference(&want).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "the API server's AdmissionReview changed shape; rerun with NSGUARD_UPDATE_FIXTURES=1"
    );
    assert_eq!(captured["request"]["operation"], "DELETE");
    assert_eq!(captured["request"]["name"], "team-a");
}
