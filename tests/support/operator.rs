//! Operators in the test world: a controller's ServiceAccount, the RBAC naming the resource
//! it finalizes and a Deployment that runs as it (the fake kubelet makes its pod Ready); and
//! the operator's work itself, played by the test: removing its finalizer from objects being
//! deleted.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use localcluster::LocalCluster;

use super::{TEST_LABEL, eventually, grant_update, kubectl};

/// Installs operator `name` for `resource` of `group`: namespace `<name>-system`,
/// ServiceAccount and Deployment `<name>` with `replicas`, and a ClusterRole naming the
/// resource bound to it. Returns the namespace.
pub async fn run_operator(
    cluster: &LocalCluster,
    _client: &kube::Client,
    name: &str,
    group: &str,
    resource: &str,
    replicas: u32,
) -> String {
    let ns = format!("{name}-system");
    deploy(cluster, &ns, name, name, replicas, &[]).await;
    grant_update(cluster, name, group, resource);
    ns
}

/// A Deployment `name` in `ns` running as ServiceAccount `account` (created too), with
/// `replicas` and the given annotations on the Deployment (an installer's record). Creates the
/// namespace when missing. No RBAC.
pub async fn deploy(
    cluster: &LocalCluster,
    ns: &str,
    name: &str,
    account: &str,
    replicas: u32,
    annotations: &[(&str, &str)],
) {
    let notes: Vec<String> = annotations
        .iter()
        .map(|(k, v)| format!("\"{k}\": \"{v}\""))
        .collect();
    let yaml = format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: {ns}, labels: {{"{TEST_LABEL}": "true"}}}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: {account}, namespace: {ns}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {ns}, annotations: {{{notes}}}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      serviceAccountName: {account}
      containers:
      - {{name: main, image: registry.invalid/{name}:1}}
"#,
        notes = notes.join(", ")
    );
    eventually(
        &format!("Deployment {ns}/{name} to be created"),
        Duration::from_secs(60),
        || async { Ok(kubectl(cluster, &["apply", "-f", "-"], Some(&yaml)).ok()) },
    )
    .await;
}

/// Waits until Deployment `name` in `ns` has a Ready replica.
pub async fn wait_ready(cluster: &LocalCluster, ns: &str, name: &str) {
    eventually(
        &format!("Deployment {ns}/{name} to be Ready"),
        Duration::from_secs(90),
        || async {
            let ready = kubectl(
                cluster,
                &[
                    "get",
                    "deployment",
                    name,
                    "-n",
                    ns,
                    "-o",
                    "jsonpath={.status.readyReplicas}",
                ],
                None,
            )?;
            Ok((ready.trim() == "1").then_some(()))
        },
    )
    .await;
}

/// An operator at work: while it lives, removes `<group>/cleanup` from every object of
/// `resource.group` being deleted, cluster-wide, as its controller would once its cleanup is
/// done.
pub struct Operator {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Operator {
    /// Starts it.
    pub fn start(cluster: &'static LocalCluster, group: &str, resource: &str) -> Self {
        Self::removing(cluster, group, resource, &format!("{group}/cleanup"))
    }

    /// Starts one that removes `finalizer` (and only it).
    pub fn removing(
        cluster: &'static LocalCluster,
        group: &str,
        resource: &str,
        finalizer: &str,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let gr = format!("{resource}.{group}");
        let finalizer = finalizer.to_string();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let listed = kubectl(cluster, &["get", &gr, "-A", "-o", "json"], None);
                if let Ok(doc) =
                    listed.and_then(|s| Ok(serde_json::from_str::<serde_json::Value>(&s)?))
                {
                    for o in doc["items"].as_array().into_iter().flatten() {
                        let m = &o["metadata"];
                        let ours = m["finalizers"]
                            .as_array()
                            .is_some_and(|f| f.iter().any(|x| x == finalizer.as_str()));
                        if m["deletionTimestamp"].is_null() || !ours {
                            continue;
                        }
                        let keep: Vec<&serde_json::Value> = m["finalizers"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter(|x| *x != finalizer.as_str())
                            .collect();
                        let patch = serde_json::json!({"metadata": {"finalizers": keep}});
                        let _ = kubectl(
                            cluster,
                            &[
                                "patch",
                                &gr,
                                m["name"].as_str().unwrap_or_default(),
                                "-n",
                                m["namespace"].as_str().unwrap_or_default(),
                                "--type=merge",
                                "-p",
                                &patch.to_string(),
                            ],
                            None,
                        );
                    }
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
