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
