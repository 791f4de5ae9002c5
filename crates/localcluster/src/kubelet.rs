//! A fake kubelet for one Node, which also plays the scheduler: it registers the Node and keeps
//! it healthy (Lease renewed, Ready condition's heartbeat refreshed), binds every pod that has
//! no node to it, reports the pods bound to it Running and Ready (no container ever runs), and
//! finishes the pods being deleted on it, as a kubelet does once their containers stopped.
//!
//! It runs on its own OS thread with its own tokio runtime: a kube client lives on the runtime
//! it was made on, and tests each have their own runtime while the shared cluster lives in a
//! static. It stops when dropped. On request the node turns NotReady: heartbeats stop, the Ready
//! condition says False, and nothing is done for its pods (they stay as they are, Terminating
//! ones included) until it is Ready again, as with a kubelet that is down.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

/// The name of the one Node.
pub const NODE_NAME: &str = "localcluster-node";

/// How often the Lease is renewed and the Ready heartbeat refreshed (a kubelet's default).
const HEARTBEAT: Duration = Duration::from_secs(10);

/// How often every known pod is looked at again (work that failed is retried then).
const RESYNC: Duration = Duration::from_secs(2);

enum Command {
    SetReady(bool, oneshot::Sender<Result<()>>),
}

/// The running fake kubelet; stops when dropped.
pub(crate) struct Kubelet {
    commands: mpsc::UnboundedSender<Command>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct State {
    client: Client,
    ready: AtomicBool,
    /// When the Ready condition last changed, as written in the Node's status.
    ready_since: std::sync::Mutex<String>,
    next_ip: AtomicU32,
}

impl Kubelet {
    /// Starts the kubelet with the credentials of `kubeconfig` and returns once its Node is
    /// registered and Ready.
    pub(crate) async fn start(kubeconfig: PathBuf) -> Result<Self> {
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (stop, stop_rx) = oneshot::channel();
        let (started_tx, started_rx) = oneshot::channel::<Result<()>>();
        let thread = std::thread::Builder::new()
            .name("localcluster-kubelet".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = started_tx.send(Err(e.into()));
                        return;
                    }
                };
                runtime.block_on(async move {
                    tokio::select! {
                        () = run(kubeconfig, command_rx, started_tx) => {}
                        _ = stop_rx => {}
                    }
                });
                runtime.shutdown_timeout(Duration::from_secs(1));
            })?;
        started_rx
            .await
            .context("the kubelet thread ended before registering its node")??;
        Ok(Self {
            commands,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Makes the node Ready (heartbeats, pods handled) or NotReady (Ready=False, no
    /// heartbeats, pods left alone); returns once the Node's status says so.
    pub(crate) async fn set_ready(&self, ready: bool) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::SetReady(ready, tx))
            .map_err(|_| anyhow::anyhow!("the kubelet has stopped"))?;
        rx.await.context("the kubelet has stopped")?
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn run(
    kubeconfig: PathBuf,
    mut commands: mpsc::UnboundedReceiver<Command>,
    started: oneshot::Sender<Result<()>>,
) {
    let state = match register(kubeconfig).await {
        Ok(state) => Arc::new(state),
        Err(e) => {
            let _ = started.send(Err(e));
            return;
        }
    };
    let _ = started.send(Ok(()));
    tokio::spawn(heartbeats(state.clone()));
    tokio::spawn(pods(state.clone()));
    while let Some(command) = commands.recv().await {
        match command {
            Command::SetReady(ready, reply) => {
                let changed = state.ready.swap(ready, Ordering::SeqCst) != ready;
                if changed {
                    *state.ready_since.lock().unwrap() = now_time();
                }
                let mut result = write_node_status(&state).await;
                if ready && result.is_ok() {
                    result = renew_lease(&state).await;
                }
                tracing::info!(node = NODE_NAME, ready, "Node readiness set on request");
                let _ = reply.send(result);
            }
        }
    }
}

/// `2026-01-02T03:04:05Z`, the form of a `metav1.Time`.
fn now_time() -> String {
    format!("{:.0}", Timestamp::now())
}

/// `2026-01-02T03:04:05.123456Z`, the form of a `metav1.MicroTime`.
fn now_micro_time() -> String {
    format!("{:.6}", Timestamp::now())
}

async fn register(kubeconfig: PathBuf) -> Result<State> {
    let client = crate::client_for(&kubeconfig).await?;
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": NODE_NAME,
            "labels": {
                "kubernetes.io/hostname": NODE_NAME,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": "amd64",
            },
        },
        "spec": {},
    }))?;
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(e).context("registering the node"),
    }
    let state = State {
        client,
        ready: AtomicBool::new(true),
        ready_since: std::sync::Mutex::new(now_time()),
        next_ip: AtomicU32::new(0),
    };
    write_node_status(&state).await?;
    renew_lease(&state).await?;
    Ok(state)
}

/// The Node's whole status: capacity, addresses, and the conditions with a fresh heartbeat.
async fn write_node_status(state: &State) -> Result<()> {
    let ready = state.ready.load(Ordering::SeqCst);
    let now = now_time();
    let since = state.ready_since.lock().unwrap().clone();
    let condition = |type_: &str, status: &str, reason: &str, message: &str, since: &str| {
        json!({"type": type_, "status": status, "reason": reason, "message": message,
               "lastHeartbeatTime": now, "lastTransitionTime": since})
    };
    let (ready_status, ready_reason, ready_message) = if ready {
        ("True", "KubeletReady", "kubelet is posting ready status")
    } else {
        (
            "False",
            "KubeletNotReady",
            "localcluster: the node was made NotReady on request",
        )
    };
    let resources =
        json!({"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"});
    let status = json!({
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": NODE_NAME},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": "localcluster", "systemUUID": "localcluster", "bootID": "localcluster",
                "kernelVersion": "6.1.0", "osImage": "localcluster", "containerRuntimeVersion": "fake://1.0",
                "kubeletVersion": "v1.36.3", "kubeProxyVersion": "", "operatingSystem": "linux",
                "architecture": "amd64",
            },
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available", &since),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure", &since),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available", &since),
                condition("Ready", ready_status, ready_reason, ready_message, &since),
            ],
        }
    });
    Api::<Node>::all(state.client.clone())
        .patch_status(NODE_NAME, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .context("writing the node's status")?;
    Ok(())
}

/// Creates or renews the node's Lease in `kube-node-lease`, owned by the Node.
async fn renew_lease(state: &State) -> Result<()> {
    let node = Api::<Node>::all(state.client.clone())
        .get(NODE_NAME)
        .await
        .context("reading the node")?;
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": NODE_NAME,
            "namespace": "kube-node-lease",
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": NODE_NAME,
                                 "uid": node.metadata.uid}],
        },
        "spec": {"holderIdentity": NODE_NAME, "leaseDurationSeconds": 40, "renewTime": now_micro_time()},
    });
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(state.client.clone(), "kube-node-lease");
    leases
        .patch(
            NODE_NAME,
            &PatchParams::apply("localcluster-kubelet").force(),
            &Patch::Apply(&lease),
        )
        .await
        .context("renewing the node's lease")?;
    Ok(())
}

async fn heartbeats(state: Arc<State>) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !state.ready.load(Ordering::SeqCst) {
            continue;
        }
        for result in [renew_lease(&state).await, write_node_status(&state).await] {
            if let Err(error) = result {
                tracing::warn!(error = format!("{error:#}"), "Kubelet heartbeat failed");
            }
        }
    }
}

/// Watches every pod; handles each one that changes, and every known one every [`RESYNC`].
async fn pods(state: Arc<State>) {
    let api: Api<Pod> = Api::all(state.client.clone());
    let (store, writer) = reflector::store::<Pod>();
    let mut events = std::pin::pin!(
        reflector::reflector(writer, watcher(api, watcher::Config::default()))
            .default_backoff()
            .touched_objects()
    );
    let mut resync = tokio::time::interval(RESYNC);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(pod)) => handle(&state, &pod).await,
                Some(Err(error)) => tracing::warn!(%error, "Kubelet pod watch error"),
                None => return,
            },
            _ = resync.tick() => resync_all(&state, &store).await,
        }
    }
}

async fn resync_all(state: &State, store: &Store<Pod>) {
    for pod in store.state() {
        handle(state, &pod).await;
    }
}

/// One pod: bind it, run it, or finish its deletion. Errors are logged; the next resync retries.
async fn handle(state: &State, pod: &Pod) {
    if !state.ready.load(Ordering::SeqCst) {
        return;
    }
    let (Some(ns), Some(name)) = (
        pod.metadata.namespace.as_deref(),
        pod.metadata.name.as_deref(),
    ) else {
        return;
    };
    let api: Api<Pod> = Api::namespaced(state.client.clone(), ns);
    let spec = pod.spec.as_ref();
    let node = spec.and_then(|s| s.node_name.as_deref());
    let deleting = pod.metadata.deletion_timestamp.is_some();
    let result = match node {
        None if !deleting && scheduled_by_default_scheduler(pod) => bind(&api, name).await,
        Some(NODE_NAME) if deleting && pod.metadata.deletion_grace_period_seconds != Some(0) => {
            finish(&api, pod, name).await
        }
        Some(NODE_NAME) if deleting => Ok(()),
        Some(NODE_NAME) if !running_and_ready(pod) && !finished(pod) => {
            run_pod(state, &api, pod, name).await
        }
        _ => Ok(()),
    };
    if let Err(error) = result {
        let gone = matches!(
            error.downcast_ref::<kube::Error>(),
            Some(kube::Error::Api(s)) if s.code == 404 || s.code == 409
        );
        if !gone {
            tracing::warn!(pod = %format!("{ns}/{name}"), error = format!("{error:#}"), "Kubelet could not handle a pod");
        }
    }
}

fn scheduled_by_default_scheduler(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.scheduler_name.as_deref())
        .is_none_or(|s| s == "default-scheduler")
}

fn finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

fn running_and_ready(pod: &Pod) -> bool {
    let Some(status) = pod.status.as_ref() else {
        return false;
    };
    status.phase.as_deref() == Some("Running")
        && status.pod_ip.is_some()
        && status
            .conditions
            .as_ref()
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .is_some_and(|c| c.status == "True")
}

/// What the scheduler does: `POST pods/<name>/binding` to the node.
async fn bind(api: &Api<Pod>, name: &str) -> Result<()> {
    let binding = json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": name},
        "target": {"apiVersion": "v1", "kind": "Node", "name": NODE_NAME},
    });
    api.create_subresource::<Value, Value>("binding", name, &PostParams::default(), &binding)
        .await?;
    tracing::debug!(pod = name, node = NODE_NAME, "Bound");
    Ok(())
}

/// Reports the pod Running with every container started and ready.
async fn run_pod(state: &State, api: &Api<Pod>, pod: &Pod, name: &str) -> Result<()> {
    let now = now_time();
    let status = pod.status.as_ref();
    let start = status
        .and_then(|s| s.start_time.as_ref())
        .map(|t| format!("{:.0}", t.0))
        .unwrap_or_else(|| now.clone());
    let ip = match status.and_then(|s| s.pod_ip.clone()) {
        Some(ip) => ip,
        None => {
            let n = state.next_ip.fetch_add(1, Ordering::Relaxed);
            format!("10.244.{}.{}", (n / 250) % 250, n % 250 + 2)
        }
    };
    let spec = pod.spec.as_ref();
    let container_id = |c: &str| format!("fake://{}", crate::random_suffix() + c);
    let containers: Vec<Value> = spec
        .map(|s| s.containers.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|c| {
            json!({
                "name": c.name, "image": c.image.clone().unwrap_or_default(), "imageID": "",
                "containerID": container_id(&c.name), "ready": true, "started": true,
                "restartCount": 0, "state": {"running": {"startedAt": start}},
            })
        })
        .collect();
    let init_containers: Vec<Value> = spec
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or_default()
        .iter()
        .map(|c| {
            json!({
                "name": c.name, "image": c.image.clone().unwrap_or_default(), "imageID": "",
                "containerID": container_id(&c.name), "ready": true, "started": false,
                "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "reason": "Completed",
                                         "startedAt": start, "finishedAt": start}},
            })
        })
        .collect();
    let condition =
        |type_: &str| json!({"type": type_, "status": "True", "lastTransitionTime": now});
    let patch = json!({
        "status": {
            "phase": "Running",
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": start,
            "conditions": [
                condition("PodReadyToStartContainers"),
                condition("Initialized"),
                condition("Ready"),
                condition("ContainersReady"),
                condition("PodScheduled"),
            ],
            "containerStatuses": containers,
            "initContainerStatuses": init_containers,
        }
    });
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    tracing::debug!(pod = name, ip, "Running");
    Ok(())
}

/// What a kubelet does once a deleted pod's containers have stopped: delete it for good.
async fn finish(api: &Api<Pod>, pod: &Pod, name: &str) -> Result<()> {
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    api.delete(name, &params).await?;
    tracing::debug!(pod = name, "Finished");
    Ok(())
}
