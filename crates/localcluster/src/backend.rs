//! A stand-in for the workloads a namespace hosts: an aggregated API server, an admission
//! webhook and a CRD conversion webhook, all served by one HTTPS server in the test process.
//! The local control plane's kubelet runs no containers and there is no kube-proxy, so the API server reaches it
//! through an `ExternalName` Service pointing at `localhost`: the API server resolves such a
//! Service for APIServices, webhooks and conversion alike, and stops reaching it the moment
//! the Service is deleted, which is exactly what happens when its namespace is deleted.

use std::sync::{Arc, Mutex};

use crate::{LocalCluster, free_port};
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde_json::{Value, json};

type Reviews = Arc<Mutex<Vec<Value>>>;

/// The HTTPS server; it stops when dropped.
pub struct Backend {
    /// The loopback port it listens on.
    pub port: u16,
    /// Every AdmissionReview the API server sent to `/validate`, as received.
    pub reviews: Reviews,
    handle: axum_server::Handle<std::net::SocketAddr>,
    _dir: tempfile::TempDir,
}

async fn validate(State(seen): State<Reviews>, Json(review): Json<Value>) -> Json<Value> {
    seen.lock().unwrap().push(review.clone());
    let uid = review["request"]["uid"].clone();
    Json(json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": uid, "allowed": true}
    }))
}

/// Converts by rewriting apiVersion: the test CRDs' versions share one schema.
async fn convert(Json(review): Json<Value>) -> Json<Value> {
    let req = &review["request"];
    let desired = req["desiredAPIVersion"].clone();
    let objects: Vec<Value> = req["objects"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|mut o| {
            o["apiVersion"] = desired.clone();
            o
        })
        .collect();
    Json(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "ConversionReview",
        "response": {"uid": req["uid"].clone(), "convertedObjects": objects, "result": {"status": "Success"}}
    }))
}

/// Legacy discovery for a group-version with no resources: enough for an APIService to be
/// Available. `/apis` answers 404, so the aggregator falls back to this.
async fn group_version(Path((group, version)): Path<(String, String)>) -> Json<Value> {
    Json(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": format!("{group}/{version}"),
        "resources": []
    }))
}

impl Backend {
    /// Starts the server with a certificate from the cluster CA valid for `localhost` and for
    /// the Service DNS names `<service>.<namespace>.svc` in `services`.
    pub async fn start(cluster: &LocalCluster, services: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut names = vec!["localhost".to_string()];
        names.extend(services.iter().map(|(ns, svc)| format!("{svc}.{ns}.svc")));
        let pair = cluster
            .ca()
            .issue_server("backend", &names, &["127.0.0.1".parse().unwrap()], 1)
            .unwrap();
        let (c, k) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        std::fs::write(&c, &pair.cert_pem).unwrap();
        std::fs::write(&k, &pair.key_pem).unwrap();
        let provider = nsguard::server::tls::provider();
        let cert = nsguard::server::tls::ReloadingCert::load(&c, &k, provider.clone()).unwrap();
        let config = nsguard::server::tls::server_config(Arc::new(cert), provider).unwrap();
        let port = free_port().unwrap();
        let handle = axum_server::Handle::new();
        let reviews = Reviews::default();
        let app = Router::new()
            .route("/validate", post(validate))
            .route("/convert", post(convert))
            .route("/apis/{group}/{version}", get(group_version))
            .fallback(|| async { StatusCode::NOT_FOUND })
            .with_state(reviews.clone());
        let server = axum_server::bind_rustls(
            ([127, 0, 0, 1], port).into(),
            axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(config)),
        )
        .handle(handle.clone());
        tokio::spawn(server.serve(app.into_make_service()));
        Self {
            port,
            reviews,
            handle,
            _dir: dir,
        }
    }

    /// An `ExternalName` Service `name` in `ns` that leads the API server to this server.
    pub fn service(&self, cluster: &LocalCluster, ns: &str, name: &str) {
        let svc = format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  type: ExternalName\n  externalName: localhost\n"
        );
        cluster
            .apply(&svc)
            .expect("applying the ExternalName Service");
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}
