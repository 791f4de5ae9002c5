//! Test support for the facts module: a mock API server.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A mock API server whose aggregated discovery answers after `delay` (every other read
/// answers empty at once, watches stay open); counts the discovery calls.
pub(crate) fn slow_discovery(delay: Duration) -> (kube::Client, Arc<AtomicUsize>) {
    mock_discovery(delay, Arc::new(Vec::new))
}

/// A mock API server whose `/apis` aggregated discovery holds the groups `apis()` returns at
/// each call (as `APIGroupDiscovery` JSON), answered after `delay`; `/api` is empty, every
/// other read answers empty at once, watches stay open. Counts the discovery calls.
pub(crate) fn mock_discovery(
    delay: Duration,
    apis: Arc<dyn Fn() -> Vec<serde_json::Value> + Send + Sync>,
) -> (kube::Client, Arc<AtomicUsize>) {
    let discoveries = Arc::new(AtomicUsize::new(0));
    let counted = discoveries.clone();
    let service = tower::service_fn(move |req: axum::http::Request<kube::client::Body>| {
        let path = req.uri().path().to_string();
        let watching = req.uri().query().unwrap_or("").contains("watch=true");
        let discovery = path == "/api" || path == "/apis";
        if discovery {
            counted.fetch_add(1, Ordering::SeqCst);
        }
        let groups = if path == "/apis" { apis() } else { Vec::new() };
        async move {
            let body = if watching {
                axum::body::Body::from_stream(futures::stream::pending::<
                    Result<axum::body::Bytes, std::io::Error>,
                >())
            } else if discovery {
                tokio::time::sleep(delay).await;
                axum::body::Body::from(
                    serde_json::json!({"kind": "APIGroupDiscoveryList",
                        "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": groups})
                    .to_string(),
                )
            } else {
                axum::body::Body::from(
                    r#"{"kind":"List","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[]}"#,
                )
            };
            Ok::<_, std::convert::Infallible>(
                axum::http::Response::builder()
                    .header("content-type", "application/json")
                    .body(body)
                    .unwrap(),
            )
        }
    });
    (kube::Client::new(service, "default"), discoveries)
}
