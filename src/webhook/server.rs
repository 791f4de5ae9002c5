//! Server plumbing: the HTTPS webhook listener, the plain-HTTP admin listener (`/livez`,
//! `/readyz`, `/metrics`), and two-phase shutdown.

use hyper_util::rt::TokioTimer;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use axum_server::accept::Accept;
use axum_server::tls_rustls::RustlsAcceptor;
use tokio::net::TcpStream;

use crate::output::records::Metrics;
use crate::webhook::admission::{Admission, parse_timeout};
use crate::webhook::ratelimit::Peer;

/// Bodies larger than this get 413. Namespace reviews are a few KiB; the API server's own
/// limit for a request is 3 MiB.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// The webhook router: `POST /validate`.
pub fn webhook_router(admission: Arc<Admission>) -> Router {
    Router::new()
        .route("/validate", post(validate))
        .with_state(admission)
}

/// How long a client may take to send its body: a trickled body is cut off, and it never
/// holds a review slot (the slot is taken once the body is read).
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

async fn validate(
    State(admission): State<Arc<Admission>>,
    peer: Option<Extension<Peer>>,
    RawQuery(q): RawQuery,
    body: Body,
) -> Response {
    // Every error is JSON, the body limit's 413 and a trickled body's 408 included.
    let error = |status: StatusCode, error: String| {
        (status, axum::Json(serde_json::json!({ "error": error }))).into_response()
    };
    let body =
        match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, BODY_LIMIT)).await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) if is_length_limit(&e) => {
                admission.metrics.bad_request("too_large");
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("request body too large: the limit is {BODY_LIMIT} bytes"),
                );
            }
            Ok(Err(e)) => {
                admission.metrics.bad_request("malformed");
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("request body unreadable: {e}"),
                );
            }
            Err(_) => {
                admission.metrics.bad_request("malformed");
                return error(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "request body not received within {}s",
                        BODY_TIMEOUT.as_secs()
                    ),
                );
            }
        };
    let (status, json) = admission
        .review_from(&body, parse_timeout(q.as_deref()), peer.map(|p| p.0))
        .await;
    (status, axum::Json(json)).into_response()
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// Whether the process should get traffic.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Sets readiness.
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }
    /// Reads readiness.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// The admin router.
pub fn admin_router(ready: Readiness, metrics: Arc<Metrics>) -> Router {
    let ready_for_metrics = ready.clone();
    Router::new()
        .route("/livez", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.clone();
                async move {
                    if ready.get() {
                        (StatusCode::OK, "ok")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                let ready = ready_for_metrics.clone();
                async move {
                    metrics.set_ready(ready.get());
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        metrics.encode(),
                    )
                }
            }),
        )
}

/// Serves both listeners until SIGTERM or Ctrl-C; then readiness goes false, and after
/// `drain` in-flight reviews finish before the process exits.
pub async fn serve(
    listen: SocketAddr,
    admin_listen: SocketAddr,
    tls: rustls::ServerConfig,
    webhook: Router,
    admin: Router,
    ready: Readiness,
    drain: Duration,
) -> anyhow::Result<()> {
    let handle = axum_server::Handle::new();
    let tls = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(tls));
    // A client that opens a connection and never finishes the handshake is cut off.
    let acceptor = PeerAcceptor(RustlsAcceptor::new(tls).handshake_timeout(Duration::from_secs(5)));
    let mut server = axum_server::bind(listen)
        .acceptor(acceptor)
        .handle(handle.clone());
    // hyper's timeouts need a timer; without one every HTTP/1.1 connection panics
    // ("header_read_timeout set, but no timer set") and gets an empty reply.
    let builder = server.http_builder();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(5))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10));
    let admin_listener = tokio::net::TcpListener::bind(admin_listen).await?;
    tracing::info!(%listen, %admin_listen, "Serving");
    let admin_task = tokio::spawn(async move { axum::serve(admin_listener, admin).await });
    let shutdown = {
        let handle = handle.clone();
        async move {
            shutdown_signal().await;
            tracing::info!("Shutting down: not ready, draining");
            ready.set(false);
            tokio::time::sleep(drain).await;
            handle.graceful_shutdown(Some(Duration::from_secs(10)));
        }
    };
    tokio::spawn(shutdown);
    server.serve(webhook.into_make_service()).await?;
    admin_task.abort();
    Ok(())
}

/// The TLS acceptor, then the connection's [`Peer`] (source address, and whether it presented
/// a verified client certificate) put on every request it carries, for the per-peer rate
/// limit. With `--client-ca-file` the handshake refuses clients without a verified
/// certificate, so a certificate present here has been verified.
#[derive(Clone)]
struct PeerAcceptor(RustlsAcceptor);

type TlsStream = <RustlsAcceptor as Accept<TcpStream, Router>>::Stream;

impl Accept<TcpStream, Router> for PeerAcceptor {
    type Stream = TlsStream;
    type Service = Router;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<(TlsStream, Router)>> + Send>>;

    fn accept(&self, stream: TcpStream, service: Router) -> Self::Future {
        let addr = stream.peer_addr();
        // A review's answer is one small write the API server waits for: without NODELAY,
        // Nagle holds it until the client's delayed ACK (about 40 ms on Linux).
        let _ = stream.set_nodelay(true);
        let handshake = self.0.accept(stream, service);
        Box::pin(async move {
            let ip = addr?.ip();
            let (stream, service) = handshake.await?;
            let verified = stream.get_ref().1.peer_certificates().is_some();
            Ok((stream, service.layer(Extension(Peer { ip, verified }))))
        })
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
