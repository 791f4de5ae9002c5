//! The live index against the truth, on the real control plane: after CRDs come and go and
//! finalizers change while `nsguard serve` runs, its `/debug/index-digest` equals a fresh
//! LIST of every type it indexes; and a deny that rests on discovery is confirmed by a fresh
//! read of it, so an aggregated API just fixed is not denied from nsguard's copy.

mod support;

use std::time::Duration;

use kube::api::{ApiResource, DynamicObject, ListParams};
use localcluster::{LocalCluster, random_suffix};
use support::nsguard::Nsguard;
use support::*;

/// Each indexed type's sync method (`stream`, `list`) from `/debug/index-digest`.
fn sync_methods(digest: &str) -> std::collections::BTreeMap<String, String> {
    let types: Vec<serde_json::Value> = serde_json::from_str(digest).unwrap_or_default();
    types
        .iter()
        .map(|t| {
            (
                t["resource"].as_str().unwrap_or_default().to_string(),
                t["sync"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The value of the metric sample `name{labels}` in `metrics`, 0 when absent.
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

/// Waits until `guard`'s index equals a fresh LIST of every type it indexes; the types compared.
async fn index_equals_list(client: &kube::Client, guard: &Nsguard) -> usize {
    eventually(
        "the index digest to equal a fresh LIST of every type",
        Duration::from_secs(90),
        || async move {
            let digest = guard.admin("/debug/index-digest");
            let (differing, types) = differences(client, &digest).await?;
            if !differing.is_empty() || types == 0 {
                anyhow::bail!("{types} types; differing: {differing:?}");
            }
            Ok(Some(types))
        },
    )
    .await
}

fn apply(cluster: &LocalCluster, yaml: &str) {
    kubectl(cluster, &["apply", "-f", "-"], Some(yaml)).unwrap();
}

/// Types whose digest differs from a fresh LIST, as `resource (index n, LIST m)`; the types
/// compared.
async fn differences(client: &kube::Client, digest: &str) -> anyhow::Result<(Vec<String>, usize)> {
    let types: Vec<serde_json::Value> = serde_json::from_str(digest)?;
    let mut differing = Vec::new();
    for t in &types {
        let text = |k: &str| t[k].as_str().unwrap_or_default().to_string();
        let api_version = text("api_version");
        let (group, version) = api_version
            .split_once('/')
            .map(|(g, v)| (g.to_string(), v.to_string()))
            .unwrap_or((String::new(), api_version.clone()));
        let ar = ApiResource {
            group,
            version,
            api_version: api_version.clone(),
            kind: String::new(),
            plural: text("plural"),
        };
        let api = kube::Api::<DynamicObject>::all_with(client.clone(), &ar);
        let (mut entries, mut lp) = (Vec::new(), ListParams::default().limit(500));
        loop {
            let page = match api.list_metadata(&lp).await {
                Ok(page) => page,
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    differing.push(format!("{} (gone, still indexed)", text("resource")));
                    break;
                }
                Err(e) => return Err(e.into()),
            };
            entries.extend(page.items.into_iter().map(|o| {
                (
                    o.metadata.namespace.unwrap_or_default(),
                    o.metadata.name.unwrap_or_default(),
                    o.metadata.finalizers.unwrap_or_default(),
                )
            }));
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(c) => lp = lp.continue_token(&c),
                None => break,
            }
        }
        entries.sort();
        let hash = ::nsguard::cluster::index::digest(entries.iter().map(|(ns, n, f)| {
            (
                ns.as_str(),
                n.as_str(),
                f.iter().map(|s| s.as_str()).collect(),
            )
        }));
        let indexed = (t["objects"].as_u64().unwrap_or(0), text("hash"));
        if text("state") != "synced" || indexed != (entries.len() as u64, format!("{hash:016x}")) {
            differing.push(format!(
                "{} ({}: index {}, LIST {})",
                text("resource"),
                text("state"),
                indexed.0,
                entries.len()
            ));
        }
    }
    Ok((differing, types.len()))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_index_equals_a_fresh_list_after_crds_come_and_go() {
    let _lock = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    let guard = Nsguard::start(cluster, &[]).await;
    let id = random_suffix();
    let (added, removed) = (
        format!("added{id}.nsguard.test"),
        format!("removed{id}.nsguard.test"),
    );
    let ns = create_namespace(&client, "truth").await;
    install_crd(cluster, &removed, "gadgets", "Gadget").await;
    apply(
        cluster,
        &format!(
            "apiVersion: {removed}/v1\nkind: Gadget\nmetadata:\n  name: r0\n  namespace: {ns}\n"
        ),
    );
    apply(
        cluster,
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  namespace: {ns}\n  finalizers: [nsguard.test/hold]\n"
        ),
    );
    // The type that will go is indexed first.
    eventually(
        "the index to hold the type that will be removed",
        Duration::from_secs(60),
        || async {
            let digest = guard.admin("/debug/index-digest");
            Ok(digest.contains(&format!("gadgets.{removed}")).then_some(()))
        },
    )
    .await;
    // Mid-run: a CRD added with objects, the other deleted, a finalizer removed.
    install_crd(cluster, &added, "gadgets", "Gadget").await;
    for i in 0..5 {
        apply(
            cluster,
            &format!(
                "apiVersion: {added}/v1\nkind: Gadget\nmetadata:\n  name: g{i}\n  namespace: {ns}\n"
            ),
        );
    }
    kubectl(
        cluster,
        &[
            "patch",
            "configmap",
            "held",
            "-n",
            &ns,
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ],
        None,
    )
    .unwrap();
    kubectl(
        cluster,
        &["delete", "crd", &format!("gadgets.{removed}")],
        None,
    )
    .unwrap();
    let client = &client;
    let guard = &guard;
    let (added, removed) = (&added, &removed);
    let compared = eventually(
        "the index digest to equal a fresh LIST of every type",
        Duration::from_secs(90),
        || async move {
            let digest = guard.admin("/debug/index-digest");
            let (differing, types) = differences(client, &digest).await?;
            let has = |g: &str| digest.contains(&format!("\"gadgets.{g}\""));
            if !differing.is_empty() || !has(added) || has(removed) {
                anyhow::bail!(
                    "{types} types; differing: {differing:?}; added indexed {}, removed indexed {}",
                    has(added),
                    has(removed)
                );
            }
            Ok(Some(types))
        },
    )
    .await;
    assert!(compared > 10, "{compared} types compared");
    // The control plane offers consistent streaming lists (WatchList, on by default since
    // 1.34): the built-in types were streamed, not listed.
    let digest = guard.admin("/debug/index-digest");
    let methods = sync_methods(&digest);
    assert_eq!(
        methods.get("configmaps"),
        Some(&"stream".to_string()),
        "{methods:?}"
    );
    kubectl(
        cluster,
        &["delete", "crd", &format!("gadgets.{added}")],
        None,
    )
    .unwrap();
    kubectl(cluster, &["delete", "namespace", &ns, "--wait=false"], None).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deletion_right_after_an_aggregated_api_is_removed_is_not_denied_for_it() {
    let _lock = CLUSTER_WIDE.write().await;
    let (cluster, client) = cluster().await;
    let guard = Nsguard::start(cluster, &["--mode=enforce"]).await;
    let ns = create_namespace_with(&client, "fixed-api", &guard.labels(), &[]).await;
    break_metrics_apiservice(cluster);
    denied(cluster, &ns, "apiservice-unavailable").await;
    // The fix: the APIService deleted. Once the API server's own discovery no longer lists
    // the group, a deletion is allowed at once: nsguard reads discovery again before a
    // deny, whatever its shared copy says. (On this control plane the APIService watch
    // usually refreshes that copy in time anyway; the unit test in preflight.rs holds the
    // copy stale on purpose and shows the fresh read is what drops the deny.)
    kubectl(
        cluster,
        &["delete", "apiservice", "v1beta1.metrics.k8s.io"],
        None,
    )
    .unwrap();
    eventually(
        "the API server's discovery to drop metrics.k8s.io",
        Duration::from_secs(30),
        || async {
            let out = kubectl(cluster, &["get", "--raw", "/apis"], None)?;
            Ok((!out.contains("metrics.k8s.io")).then_some(()))
        },
    )
    .await;
    let out = kubectl_output(
        cluster,
        &["delete", "namespace", &ns, "--dry-run=server"],
        None,
    )
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "denied right after the fix: {err}");
    allowed_and_gone(cluster, &client, &ns).await;
}

/// A control plane of this test's own (it restarts kube-apiserver), leaked: nsguard's test
/// support holds a `&'static` cluster; its processes die with the test binary.
async fn own_cluster() -> &'static LocalCluster {
    let dir = localcluster::workspace_root().join("target/localcluster/e2e_index_truth-own");
    let cluster = LocalCluster::start(&dir)
        .await
        .expect("starting a second local control plane");
    cluster.keep();
    Box::leak(Box::new(cluster))
}

fn configmap(ns: &str, name: &str, finalizers: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {ns}\n  finalizers: [{finalizers}]\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_index_equals_a_fresh_list_after_a_410_by_compaction_and_on_a_server_refusing_streaming_lists()
 {
    let cluster = own_cluster().await;
    let client = cluster.client().await.unwrap();
    let guard = Nsguard::start(cluster, &["--mode=enforce"]).await;
    let held = create_namespace_with(&client, "held", &guard.labels(), &[]).await;
    let clean = create_namespace_with(&client, "clean", &guard.labels(), &[]).await;
    apply(cluster, &configmap(&held, "before", ""));
    apply(cluster, &configmap(&held, "going", ""));
    apply(cluster, &configmap(&clean, "plain", ""));
    index_equals_list(&client, &guard).await;
    let streamed = sync_methods(&guard.admin("/debug/index-digest"));
    assert_eq!(
        streamed.get("configmaps"),
        Some(&"stream".to_string()),
        "{streamed:?}"
    );

    // The fault: nsguard frozen with its watches at the resourceVersions it had; the API
    // server restarted; objects changed behind nsguard's back; etcd compacted past every
    // resourceVersion nsguard holds. Thawed, its watches resume from compacted versions.
    let expired = |g: &Nsguard| {
        sample(
            &g.metrics(),
            "nsguard_index_relists_total{reason=\"expired\"}",
        )
    };
    let before = expired(&guard);
    guard.signal("STOP");
    let restart = cluster
        .restart_apiserver_with(Duration::from_secs(60), None, |c| {
            c.compact_etcd().map(|_| ())
        })
        .await;
    let changed = async {
        restart?;
        apply(cluster, &configmap(&held, "held", "nsguard.test/hold"));
        apply(cluster, &configmap(&held, "after", ""));
        kubectl(
            cluster,
            &["delete", "configmap", "going", "-n", &held],
            None,
        )?;
        cluster.compact_etcd()
    }
    .await;
    guard.signal("CONT");
    let revision = changed.expect("the fault");
    eventually(
        "a relist after 410 Gone",
        Duration::from_secs(120),
        || async { Ok((expired(&guard) > before).then_some(())) },
    )
    .await;
    let compared = index_equals_list(&client, &guard).await;
    eprintln!(
        "410 fault: etcd compacted at revision {revision}; relists after 410: {}; {compared} types equal to a fresh LIST",
        expired(&guard) - before
    );
    denied(cluster, &held, "denied").await;
    allowed_and_gone(cluster, &client, &clean).await;

    // A server that refuses streaming lists: WatchList off. A new nsguard falls back to
    // paginated LISTs, type by type, and its index equals the truth all the same.
    cluster
        .restart_apiserver_with(
            Duration::from_secs(60),
            Some(&["--feature-gates=WatchList=false".to_string()]),
            |_| Ok(()),
        )
        .await
        .expect("restarting kube-apiserver with WatchList off");
    let listed = Nsguard::start(cluster, &["--mode=enforce"]).await;
    let compared = index_equals_list(&client, &listed).await;
    let methods = sync_methods(&listed.admin("/debug/index-digest"));
    assert!(methods.values().all(|m| m == "list"), "{methods:?}");
    let fallback = eventually(
        "a fallback counted for every type",
        Duration::from_secs(30),
        || async {
            let n = sample(
                &listed.metrics(),
                "nsguard_index_relists_total{reason=\"fallback\"}",
            );
            Ok((n >= compared as f64).then_some(n))
        },
    )
    .await;
    let refusal = listed
        .log()
        .lines()
        .find(|l| l.contains("Streaming list not offered"))
        .map(str::to_string)
        .unwrap_or_default();
    assert!(refusal.contains("422"), "{}", listed.log());
    eprintln!(
        "refusing server: {compared} types listed and equal to a fresh LIST, {fallback} fallbacks; first refusal: {refusal}"
    );
    let held2 = create_namespace_with(&client, "held", &listed.labels(), &[]).await;
    apply(cluster, &configmap(&held2, "held", "nsguard.test/hold"));
    denied(cluster, &held2, "denied").await;
    drop(listed);
    drop(guard);
}
