//! `POST /validate-config`: nsguard's own configuration validated at admission.
//!
//! A running webhook keeps its configuration when an edit of its ConfigMap does not validate,
//! but a pod started after the edit would fail to start, and with `failurePolicy: Ignore`
//! that is a silent fail-open. So the ConfigMap's writes (CREATE, UPDATE) are sent here, and
//! one whose configuration key does not validate is refused with the same message as
//! `nsguard config validate`. Everything else is allowed untouched: another ConfigMap, a
//! ConfigMap without the key's change, any request that is not a ConfigMap write. The webhook
//! that sends these is `failurePolicy: Ignore`: nsguard down never blocks a ConfigMap write.

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use serde_json::{Value, json};

use crate::config::{CONFIG_MAP_KEY, Layer};

/// The path the configuration webhook calls.
pub const PATH: &str = "/validate-config";

/// A ConfigMap review is at most two ConfigMaps of 1 MiB each and their envelope.
const BODY_LIMIT: usize = 3 * 1024 * 1024;

/// Which ConfigMap holds nsguard's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnConfigMap {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

/// The router serving [`PATH`] for `own`.
pub fn router(own: OwnConfigMap) -> Router {
    Router::new()
        .route(PATH, post(validate))
        .with_state(std::sync::Arc::new(own))
}

async fn validate(State(own): State<std::sync::Arc<OwnConfigMap>>, body: Body) -> Response {
    let body = match axum::body::to_bytes(body, BODY_LIMIT).await {
        Ok(b) => b,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": format!("request body unreadable: {e}")})),
            )
                .into_response();
        }
    };
    let (status, json) = review(&own, &body);
    (status, Json(json)).into_response()
}

/// The answer to one AdmissionReview of a ConfigMap write.
pub fn review(own: &OwnConfigMap, body: &[u8]) -> (StatusCode, Value) {
    let bad = |what: String| (StatusCode::BAD_REQUEST, json!({ "error": what }));
    let review: AdmissionReview<ConfigMap> = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return bad(format!("AdmissionReview does not parse: {e}")),
    };
    let req: AdmissionRequest<ConfigMap> = match review.try_into() {
        Ok(r) => r,
        Err(e) => return bad(format!("AdmissionReview has no request: {e}")),
    };
    let resp = AdmissionResponse::from(&req);
    let ours = req.namespace.as_deref() == Some(own.namespace.as_str())
        && req.name == own.name
        && matches!(req.operation, Operation::Create | Operation::Update);
    let resp = match (ours, &req.object) {
        (true, Some(cm)) => match verdict(cm) {
            Ok(()) => resp,
            Err(why) => {
                tracing::warn!(configmap = %format!("{}/{}", own.namespace, own.name), error = %why, "Configuration edit refused");
                resp.deny(why)
            }
        },
        _ => resp,
    };
    let review = resp.into_review();
    match serde_json::to_value(review) {
        Ok(v) => (StatusCode::OK, v),
        Err(e) => bad(format!("answer does not serialize: {e}")),
    }
}

/// Whether `cm` holds a valid configuration: the validation's message when it does not. A
/// ConfigMap without the key is nsguard's defaults, which are valid.
fn verdict(cm: &ConfigMap) -> Result<(), String> {
    let Some(text) = cm.data.as_ref().and_then(|d| d.get(CONFIG_MAP_KEY)) else {
        return Ok(());
    };
    Layer::parse(text).map(|_| ()).map_err(|e| {
        format!("nsguard's configuration ({CONFIG_MAP_KEY}) is not valid, the edit would keep restarted pods from starting: {e}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own() -> OwnConfigMap {
        OwnConfigMap {
            namespace: "nsguard-system".into(),
            name: "nsguard-config".into(),
        }
    }

    fn body(namespace: &str, name: &str, operation: &str, config: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "u1",
                "kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
                "resource": {"group": "", "version": "v1", "resource": "configmaps"},
                "name": name,
                "namespace": namespace,
                "operation": operation,
                "userInfo": {"username": "admin"},
                "object": {
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": name, "namespace": namespace},
                    "data": {CONFIG_MAP_KEY: config}
                },
                "dryRun": false
            }
        }))
        .unwrap()
    }

    fn allowed(v: &Value) -> bool {
        v["response"]["allowed"] == true
    }

    #[test]
    fn a_bad_edit_is_refused_with_the_validations_message() {
        let (status, v) = review(
            &own(),
            &body(
                "nsguard-system",
                "nsguard-config",
                "UPDATE",
                "mode: enforse\n",
            ),
        );
        assert_eq!(status, StatusCode::OK);
        assert!(!allowed(&v), "{v}");
        let message = v["response"]["status"]["message"].as_str().unwrap();
        let expected = Layer::parse("mode: enforse\n").unwrap_err().to_string();
        assert!(message.contains(&expected), "{message}");
        assert_eq!(v["response"]["uid"], "u1");
    }

    #[test]
    fn a_good_edit_and_other_configmaps_pass() {
        for (ns, name, op, config) in [
            (
                "nsguard-system",
                "nsguard-config",
                "UPDATE",
                "mode: enforce\n",
            ),
            ("nsguard-system", "nsguard-config", "CREATE", "mode: warn\n"),
            ("nsguard-system", "other", "UPDATE", "mode: enforse\n"),
            ("team-a", "nsguard-config", "UPDATE", "mode: enforse\n"),
            (
                "nsguard-system",
                "nsguard-config",
                "DELETE",
                "mode: enforse\n",
            ),
        ] {
            let (_, v) = review(&own(), &body(ns, name, op, config));
            assert!(allowed(&v), "{ns}/{name} {op}: {v}");
        }
    }

    #[test]
    fn bad_input_is_a_clear_error_not_a_panic() {
        for input in [
            &b"not json"[..],
            b"{}",
            b"{\"apiVersion\": \"admission.k8s.io/v1\", \"kind\": \"AdmissionReview\"}",
        ] {
            let (status, v) = review(&own(), input);
            assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
            assert!(v["error"].is_string());
        }
    }
}
