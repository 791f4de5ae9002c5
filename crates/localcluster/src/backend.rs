//! A stand-in for the workloads a namespace hosts: an aggregated API server, an admission
//! webhook and a CRD conversion webhook, all served by one HTTPS server in the test process.
//! As an aggregated API server it serves no resources, or (see [`Backend::serve_resource`])
//! one namespaced resource that is always empty and whose lists can be made slow, as an
//! overloaded metrics-server's are.
//! The local control plane's kubelet runs no containers and there is no kube-proxy, so the API server reaches it
//! through an `ExternalName` Service pointing at `localhost`: the API server resolves such a
//! Service for APIServices, webhooks and conversion alike, and stops reaching it the moment
//! the Service is deleted, which is exactly what happens when its namespace is deleted.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{LocalCluster, free_port};
use anyhow::Result;
use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

type Reviews = Arc<Mutex<Vec<Value>>>;

/// What the handlers share.
#[derive(Clone, Default)]
struct Shared {
    reviews: Reviews,
    /// Group -> plural of the one namespaced resource served for that group.
    resources: Arc<Mutex<BTreeMap<String, String>>>,
    /// How long a LIST of a served resource waits before it answers.
    list_delay: Arc<Mutex<Duration>>,
}

/// The HTTPS server; it stops when dropped.
pub struct Backend {
    /// The loopback port it listens on.
    pub port: u16,
    /// Every AdmissionReview the API server sent to `/validate`, as received.
    pub reviews: Reviews,
    shared: Shared,
    handle: axum_server::Handle<std::net::SocketAddr>,
    _dir: tempfile::TempDir,
}

/// TLS 1.2 and 1.3 with the ring provider, as nsguard serves, for one certificate.
fn server_config(pair: &nsguard_certs::Pair) -> anyhow::Result<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs =
        CertificateDer::pem_slice_iter(pair.cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(pair.key_pem.as_bytes())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

async fn validate(State(shared): State<Shared>, Json(review): Json<Value>) -> Json<Value> {
    shared.reviews.lock().unwrap().push(review.clone());
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

/// Legacy discovery for a group-version: enough for an APIService to be Available. `/apis`
/// answers 404, so the aggregator falls back to this. A group with a served resource lists
/// it, namespaced, with the verbs the namespace controller needs to empty it (list, delete)
/// and watch for whoever indexes it; without `deletecollection` the controller lists it.
async fn group_version(
    State(shared): State<Shared>,
    Path((group, version)): Path<(String, String)>,
) -> Json<Value> {
    let resources: Vec<Value> = shared
        .resources
        .lock()
        .unwrap()
        .get(&group)
        .map(|plural| {
            json!({
                "name": plural,
                "singularName": "",
                "namespaced": true,
                "kind": kind_of(plural),
                "verbs": ["delete", "get", "list", "watch"]
            })
        })
        .into_iter()
        .collect();
    Json(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": format!("{group}/{version}"),
        "resources": resources
    }))
}

/// `widgets` -> `Widget`.
fn kind_of(plural: &str) -> String {
    let singular = plural.strip_suffix('s').unwrap_or(plural);
    let mut chars = singular.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

/// A LIST (after the configured delay) or a WATCH of a served resource: always empty. A
/// watch stays open and sends nothing, as a watch of an empty collection does.
async fn list(
    State(shared): State<Shared>,
    Path(path): Path<Vec<(String, String)>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let get = |k: &str| path.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let (group, version, plural) = (
        get("group").unwrap_or_default(),
        get("version").unwrap_or_default(),
        get("plural").unwrap_or_default(),
    );
    if shared.resources.lock().unwrap().get(&group) != Some(&plural) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let watch = query
        .unwrap_or_default()
        .split('&')
        .any(|kv| kv == "watch=true" || kv == "watch=1");
    if watch {
        let events = futures::stream::pending::<Result<Vec<u8>, std::io::Error>>();
        return (
            [(header::CONTENT_TYPE, "application/json")],
            Body::from_stream(events),
        )
            .into_response();
    }
    let delay = *shared.list_delay.lock().unwrap();
    tokio::time::sleep(delay).await;
    // Answer in the shape asked for: nsguard and the namespace controller read metadata only.
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let (kind, api_version) = if accept.contains("as=PartialObjectMetadataList") {
        (
            "PartialObjectMetadataList".to_string(),
            "meta.k8s.io/v1".to_string(),
        )
    } else {
        (
            format!("{}List", kind_of(&plural)),
            format!("{group}/{version}"),
        )
    };
    Json(json!({
        "kind": kind,
        "apiVersion": api_version,
        "metadata": {"resourceVersion": "1"},
        "items": []
    }))
    .into_response()
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
        let config = server_config(&pair).expect("the backend's TLS configuration");
        let port = free_port().unwrap();
        let handle = axum_server::Handle::new();
        let shared = Shared::default();
        let app = Router::new()
            .route("/validate", post(validate))
            .route("/convert", post(convert))
            .route("/apis/{group}/{version}", get(group_version))
            .route("/apis/{group}/{version}/{plural}", get(list))
            .route(
                "/apis/{group}/{version}/namespaces/{namespace}/{plural}",
                get(list),
            )
            .fallback(|| async { StatusCode::NOT_FOUND })
            .with_state(shared.clone());
        let server = axum_server::bind_rustls(
            ([127, 0, 0, 1], port).into(),
            axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(config)),
        )
        .handle(handle.clone());
        tokio::spawn(server.serve(app.into_make_service()));
        Self {
            port,
            reviews: shared.reviews.clone(),
            shared,
            handle,
            _dir: dir,
        }
    }

    /// Registers this server as the aggregated API server of `group` (APIService
    /// `v1alpha1.<group>`), reached through the `ExternalName` Service `api` in `ns`, and waits
    /// until the aggregator says it is Available. Returns the APIService's name.
    pub fn serve_api(&self, cluster: &LocalCluster, ns: &str, group: &str) -> Result<String> {
        self.service(cluster, ns, "api");
        let name = format!("v1alpha1.{group}");
        cluster.apply(&format!(
            "apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {{name: {name}}}
spec:
  group: {group}
  version: v1alpha1
  groupPriorityMinimum: 100
  versionPriority: 100
  insecureSkipTLSVerify: true
  service: {{namespace: {ns}, name: api, port: {port}}}
",
            port = self.port
        ))?;
        let out = cluster
            .kubectl()
            .args([
                "wait",
                "--for=condition=Available",
                "--timeout=60s",
                &format!("apiservice/{name}"),
            ])
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "APIService {name} not Available: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(name)
    }

    /// Serves one namespaced resource `plural` in `group` (every version), always empty.
    pub fn serve_resource(&self, group: &str, plural: &str) {
        self.shared
            .resources
            .lock()
            .unwrap()
            .insert(group.to_string(), plural.to_string());
    }

    /// Every LIST of a served resource waits `delay` before it answers.
    pub fn slow_lists(&self, delay: Duration) {
        *self.shared.list_delay.lock().unwrap() = delay;
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
