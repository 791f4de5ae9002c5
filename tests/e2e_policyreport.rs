//! `nsguard audit -o policyreport` on the real control plane: with neither report CRD it
//! fails naming both; with only the older wgpolicyk8s.io PolicyReport it picks that one by
//! discovery, then the openreports.io Report once that is served too. Each time its output
//! goes through `kubectl apply -f -` unchanged, and the reports read back say what the audit
//! found: `fail` for finalizer-controller in a namespace that would hang, with the object in
//! `resources`, `pass` in a clean one.

mod support;

use std::time::Duration;

use localcluster::{LocalCluster, random_suffix};
use serde_json::Value;
use support::*;

/// A minimal CRD for a report kind: the real group, version, kind and plural, and a schema
/// of the fields nsguard prints (results kept whole).
fn report_crd(group: &str, version: &str, plural: &str, kind: &str) -> String {
    format!(
        r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: {plural}.{group}
spec:
  group: {group}
  scope: Namespaced
  names: {{plural: {plural}, singular: {singular}, kind: {kind}, listKind: {kind}List}}
  versions:
  - name: {version}
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          source: {{type: string}}
          scope:
            type: object
            properties:
              apiVersion: {{type: string}}
              kind: {{type: string}}
              name: {{type: string}}
              namespace: {{type: string}}
              uid: {{type: string}}
          summary:
            type: object
            properties:
              pass: {{type: integer}}
              fail: {{type: integer}}
              warn: {{type: integer}}
              error: {{type: integer}}
              skip: {{type: integer}}
          results:
            type: array
            items:
              type: object
              required: [policy]
              properties:
                resources:
                  type: array
                  items:
                    type: object
                    properties:
                      apiVersion: {{type: string}}
                      kind: {{type: string}}
                      namespace: {{type: string}}
                      name: {{type: string}}
                      uid: {{type: string}}
                      fieldPath: {{type: string}}
                      resourceVersion: {{type: string}}
                source: {{type: string}}
                policy: {{type: string}}
                rule: {{type: string}}
                category: {{type: string}}
                result: {{type: string, enum: [pass, fail, warn, error, skip]}}
                severity: {{type: string, enum: [critical, high, low, medium, info]}}
                scored: {{type: boolean}}
                message: {{type: string}}
                properties:
                  type: object
                  additionalProperties: {{type: string}}
                timestamp:
                  type: object
                  properties:
                    seconds: {{type: integer}}
                    nanos: {{type: integer}}
"#,
        singular = kind.to_lowercase()
    )
}

/// The report kinds, older first: (group, version, plural, kind).
const APIS: [(&str, &str, &str, &str); 2] = [
    (
        "wgpolicyk8s.io",
        "v1alpha2",
        "policyreports",
        "PolicyReport",
    ),
    ("openreports.io", "v1alpha1", "reports", "Report"),
];

fn install_report_crd(
    cluster: &LocalCluster,
    (group, version, plural, kind): (&str, &str, &str, &str),
) {
    kubectl(
        cluster,
        &["apply", "-f", "-"],
        Some(&report_crd(group, version, plural, kind)),
    )
    .unwrap();
    kubectl(
        cluster,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            &format!("crd/{plural}.{group}"),
        ],
        None,
    )
    .unwrap();
}

/// Removes both report CRDs and waits until they are gone (a run before may have left them).
fn remove_report_crds(cluster: &LocalCluster) {
    for (group, _, plural, _) in APIS {
        kubectl(
            cluster,
            &[
                "delete",
                "crd",
                &format!("{plural}.{group}"),
                "--ignore-not-found",
                "--wait=true",
                "--timeout=60s",
            ],
            None,
        )
        .unwrap();
    }
}

/// Runs the audit over `selector` with `extra` flags until it prints reports of
/// `api_version`, applies what it prints and returns the printed List.
async fn audit_and_apply(
    cluster: &LocalCluster,
    selector: &str,
    extra: &[&str],
    api_version: &str,
) -> Value {
    let mut args = vec!["audit", "-l", selector, "-o", "policyreport"];
    args.extend_from_slice(extra);
    // Discovery may lag a CRD established a moment ago: retry until the reports are of the
    // API just installed.
    let (stdout, list) = eventually(
        "nsguard audit -o policyreport",
        Duration::from_secs(30),
        || async {
            let out = nsguard_cli(cluster.kubeconfig(), &args);
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            let list = serde_json::from_str::<Value>(&stdout)
                .ok()
                .filter(|l| l["items"][0]["apiVersion"] == api_version);
            Ok(list.map(|list| {
                assert_eq!(out.status.code(), Some(4), "one namespace would hang");
                (stdout, list)
            }))
        },
    )
    .await;
    // kubectl's discovery cache may not know a CRD established a moment ago: retry.
    eventually(
        "kubectl apply of the reports",
        Duration::from_secs(30),
        || async { Ok(kubectl(cluster, &["apply", "-f", "-"], Some(&stdout)).ok()) },
    )
    .await;
    list
}

fn read_back(cluster: &LocalCluster, resource: &str, ns: &str) -> Value {
    let out = kubectl(
        cluster,
        &["get", resource, "nsguard", "-n", ns, "-o", "json"],
        None,
    )
    .unwrap_or_else(|e| panic!("{resource} in {ns}: {e:#}"));
    serde_json::from_str(&out).unwrap()
}

fn results_of(report: &Value) -> Vec<(String, String)> {
    report["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results: {report}"))
        .iter()
        .map(|r| {
            (
                r["rule"].as_str().unwrap_or_default().to_string(),
                r["result"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_reports_apply_with_kubectl_with_either_api_picked_by_discovery() {
    // Report CRDs are cluster-wide: no other scenario may see them come and go.
    let _lock = CLUSTER_WIDE.write().await;
    let (cluster, client) = cluster().await;
    remove_report_crds(cluster);
    let group = "reported.nsguard.test";
    install_crd(cluster, group, "gadgets", "Gadget").await;
    let id = random_suffix();
    let label = [("nsguard.io/e2e-policyreport", id.clone())];
    let clean = create_namespace_with(&client, "report-clean", &label, &[]).await;
    let hanging = create_namespace_with(&client, "report-hanging", &label, &[]).await;
    // A finalizer no controller handles: deleting this namespace would hang.
    gadget(cluster, group, &hanging, "g1");
    let selector = format!("nsguard.io/e2e-policyreport={id}");

    // Neither API: a runtime error that names both, and nothing on stdout.
    let out = nsguard_cli(
        cluster.kubeconfig(),
        &["audit", "-l", &selector, "-o", "policyreport"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("openreports.io/v1alpha1") && stderr.contains("wgpolicyk8s.io/v1alpha2"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "{out:?}");

    // Each API installed in turn (the older alone first), picked without a flag; then the
    // older one named explicitly while both are served.
    for (api, extra) in [
        (APIS[0], &[][..]),
        (APIS[1], &[][..]),
        (
            APIS[0],
            &["--policyreport-api", "wgpolicyk8s.io/v1alpha2"][..],
        ),
    ] {
        let (group_, version, plural, kind) = api;
        install_report_crd(cluster, api);
        let resource = format!("{plural}.{group_}");
        let api_version = format!("{group_}/{version}");
        let list = audit_and_apply(cluster, &selector, extra, &api_version).await;
        assert_eq!(list["kind"], "List");
        assert_eq!(list["items"].as_array().unwrap().len(), 2, "{list}");
        assert_eq!(
            list["items"][0]["apiVersion"],
            api_version.as_str(),
            "{list}"
        );

        let report = read_back(cluster, &resource, &hanging);
        assert_eq!(report["apiVersion"], api_version);
        assert_eq!(report["kind"], kind);
        assert_eq!(report["scope"]["kind"], "Namespace");
        assert_eq!(report["scope"]["name"], hanging.as_str());
        let results = results_of(&report);
        assert!(
            results.contains(&("finalizer-controller".into(), "fail".into())),
            "{kind} of {hanging}: {results:?}"
        );
        assert!(
            report["summary"]["fail"].as_u64().unwrap_or(0) >= 1,
            "{report}"
        );
        let fail = report["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["rule"] == "finalizer-controller")
            .unwrap();
        assert_eq!(fail["source"], "nsguard");
        assert_eq!(fail["policy"], "nsguard");
        let said = format!(
            "{} {}",
            fail["message"].as_str().unwrap_or_default(),
            fail["properties"]["evidence"].as_str().unwrap_or_default()
        );
        assert!(said.contains(group), "names the finalizer: {fail}");
        // The object itself, as an ObjectReference, kept by the CRD's schema.
        assert_eq!(
            fail["resources"],
            serde_json::json!([{
                "apiVersion": format!("{group}/v1"),
                "kind": "Gadget",
                "namespace": hanging,
                "name": "g1",
            }]),
            "{fail}"
        );
        assert!(fail["properties"].get("objects").is_none(), "{fail}");
        assert!(fail["timestamp"]["seconds"].as_i64().unwrap_or(0) > 0);
        if kind == "Report" {
            assert_eq!(report["source"], "nsguard");
        }

        let report = read_back(cluster, &resource, &clean);
        assert_eq!(
            results_of(&report),
            [("preflight".to_string(), "pass".to_string())],
            "{kind} of {clean}"
        );
        assert_eq!(report["summary"]["pass"], 1);
        assert_eq!(report["summary"]["fail"], 0);
    }

    // Cleanup: the finalizer goes, then both namespaces, then the report CRDs.
    clear_finalizers(cluster, &format!("gadgets.{group}"), "g1", &hanging);
    for ns in [&clean, &hanging] {
        kubectl(cluster, &["delete", "namespace", ns, "--wait=false"], None).unwrap();
    }
    for ns in [&clean, &hanging] {
        wait_gone(&client, ns).await;
    }
    remove_report_crds(cluster);
}
