//! The live content index of `nsguard serve`, on the real control plane: a type
//! whose watch cannot list (its conversion webhook is down) neither keeps nsguard unready nor
//! hides the trouble (the review lists it and reports a `list-failure`), and a review of a
//! namespace without finalized objects costs no LIST of its content.

mod support;

use std::time::Duration;

use localcluster::{LocalCluster, random_suffix};
use serde_json::Value;
use support::nsguard::Nsguard;
use support::*;

fn apply(cluster: &LocalCluster, yaml: &str) {
    kubectl(cluster, &["apply", "-f", "-"], Some(yaml)).unwrap();
}

/// A CRD with versions v1 (stored) and v2 (preferred, so listing needs conversion) whose
/// conversion webhook is a Service that does not exist, and one Widget in `ns`.
fn broken_crd(cluster: &LocalCluster, group: &str, missing: &str) {
    let version = |name: &str, storage: bool| {
        format!(
            "  - name: {name}\n    served: true\n    storage: {storage}\n    schema:\n      openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}\n"
        )
    };
    apply(
        cluster,
        &format!(
            "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.{group}
spec:
  group: {group}
  scope: Namespaced
  names: {{plural: widgets, singular: widget, kind: Widget, listKind: WidgetList}}
  versions:
{v1}{v2}  conversion:
    strategy: Webhook
    webhook:
      conversionReviewVersions: [v1]
      clientConfig:
        caBundle: {ca}
        service: {{namespace: default, name: {missing}, port: 443, path: /convert}}
",
            v1 = version("v1", true),
            v2 = version("v2", false),
            ca = cluster.ca().ca_bundle(),
        ),
    );
    kubectl(
        cluster,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            &format!("crd/widgets.{group}"),
        ],
        None,
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_type_that_cannot_be_watched_is_a_list_failure_and_nsguard_is_ready() {
    let _lock = CLUSTER_WIDE.write().await;
    let (cluster, client) = cluster().await;
    let id = random_suffix();
    let group = format!("unwatchable{id}.nsguard.test");
    broken_crd(cluster, &group, &format!("missing-{id}"));
    // nsguard starts with the broken type already there: Nsguard::start waits for /readyz.
    let guard = Nsguard::start(cluster, &["--mode=enforce"]).await;
    let guarded = create_namespace_with(&client, "unwatchable", &guard.labels(), &[]).await;
    apply(
        cluster,
        &format!(
            "apiVersion: {group}/v1\nkind: Widget\nmetadata:\n  name: o1\n  namespace: {guarded}\n"
        ),
    );
    let err = denied(cluster, &guarded, "list-failure").await;
    assert!(err.contains(&format!("widgets.{group}")), "{err}");
    eventually(
        "nsguard_index_types to count a failing type",
        Duration::from_secs(30),
        || async {
            let m = guard.metrics();
            let failing = m
                .lines()
                .find(|l| l.starts_with(r#"nsguard_index_types{state="failing"}"#))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(0);
            Ok((failing > 0).then_some(()))
        },
    )
    .await;

    kubectl(
        cluster,
        &[
            "patch",
            "crd",
            &format!("widgets.{group}"),
            "--type=merge",
            "-p",
            r#"{"spec":{"conversion":{"strategy":"None","webhook":null}}}"#,
        ],
        None,
    )
    .unwrap();
    allowed_and_gone(cluster, &client, &guarded).await;
    kubectl(
        cluster,
        &["delete", "crd", &format!("widgets.{group}")],
        None,
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_review_without_finalized_objects_lists_no_content() {
    // Cluster-wide: a failing type elsewhere would be listed at review time.
    let _lock = CLUSTER_WIDE.write().await;
    let (cluster, client) = cluster().await;
    let guard = Nsguard::start(cluster, &["--mode=enforce"]).await;
    let ns = create_namespace_with(&client, "nolist", &guard.labels(), &[]).await;
    kubectl(
        cluster,
        &[
            "create",
            "configmap",
            "plain",
            "-n",
            &ns,
            "--from-literal=k=v",
        ],
        None,
    )
    .unwrap();
    // Every type indexed (none syncing, none failing): a review then reads the index.
    eventually(
        "every indexed type synced",
        Duration::from_secs(60),
        || async {
            let m = guard.metrics();
            let count = |state: &str| {
                m.lines()
                    .find(|l| l.starts_with(&format!("nsguard_index_types{{state=\"{state}\"}}")))
                    .and_then(|l| l.rsplit(' ').next())
                    .and_then(|v| v.parse::<i64>().ok())
            };
            Ok((count("syncing") == Some(0)
                && count("failing") == Some(0)
                && count("synced") > Some(0))
            .then_some(()))
        },
    )
    .await;
    let in_ns = format!("/namespaces/{ns}/");
    let lists = |events: &[Value]| -> Vec<String> {
        events
            .iter()
            .filter(|e| e["verb"] == "list")
            .filter_map(|e| e["requestURI"].as_str())
            .filter(|u| u.contains(&in_ns))
            .map(str::to_string)
            .collect()
    };
    // The audit log is written before the API server answers, and nsguard decides (counts
    // the review) only after its lists: once the review is counted, its lists are logged.
    let before = lists(&nsguard_audit(cluster)).len();
    reviewed(cluster, &guard, &ns).await;
    let after = lists(&nsguard_audit(cluster));
    let new: Vec<&String> = after[before..].iter().collect();
    // Nothing at all: pods too come from the index, and are listed (typed: node and phase)
    // only in a namespace that has some.
    assert!(new.is_empty(), "a review listed content: {new:?}");
    kubectl(cluster, &["delete", "namespace", &ns, "--wait=false"], None).unwrap();
}
