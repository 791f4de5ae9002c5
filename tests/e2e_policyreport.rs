//! `nsguard audit -o policyreport` on the real control plane: with the report CRDs installed,
//! its output goes through `kubectl apply -f -` unchanged, and the reports read back say
//! what the audit found: `fail` for finalizer-controller in a namespace that would hang,
//! `pass` in a clean one; for the openreports.io Report and the older wgpolicyk8s.io
//! PolicyReport alike.

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
              x-kubernetes-preserve-unknown-fields: true
              required: [policy]
              properties:
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

fn install_report_crds(cluster: &LocalCluster) {
    for (group, version, plural, kind) in [
        ("openreports.io", "v1alpha1", "reports", "Report"),
        (
            "wgpolicyk8s.io",
            "v1alpha2",
            "policyreports",
            "PolicyReport",
        ),
    ] {
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
}

/// Runs the audit over `selector` with `extra` flags, applies what it prints and returns the
/// printed List.
async fn audit_and_apply(cluster: &LocalCluster, selector: &str, extra: &[&str]) -> Value {
    let mut args = vec!["audit", "-l", selector, "-o", "policyreport"];
    args.extend_from_slice(extra);
    let out = nsguard_cli(cluster.kubeconfig(), &args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let list: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(2), "one namespace would hang");
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
async fn audit_reports_apply_with_kubectl_and_read_back_fail_and_pass() {
    let _lock = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    install_report_crds(cluster);
    let group = "reported.nsguard.test";
    install_crd(cluster, group, "gadgets", "Gadget").await;
    let id = random_suffix();
    let label = [("nsguard.io/e2e-policyreport", id.clone())];
    let clean = create_namespace_with(&client, "report-clean", &label, &[]).await;
    let hanging = create_namespace_with(&client, "report-hanging", &label, &[]).await;
    // A finalizer no controller handles: deleting this namespace would hang.
    gadget(cluster, group, &hanging, "g1");
    let selector = format!("nsguard.io/e2e-policyreport={id}");

    for (extra, resource, api_version, kind) in [
        (
            &[][..],
            "reports.openreports.io",
            "openreports.io/v1alpha1",
            "Report",
        ),
        (
            &["--policyreport-api", "wgpolicyk8s.io/v1alpha2"][..],
            "policyreports.wgpolicyk8s.io",
            "wgpolicyk8s.io/v1alpha2",
            "PolicyReport",
        ),
    ] {
        let list = audit_and_apply(cluster, &selector, extra).await;
        assert_eq!(list["kind"], "List");
        assert_eq!(list["items"].as_array().unwrap().len(), 2, "{list}");

        let report = read_back(cluster, resource, &hanging);
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
        assert!(fail["timestamp"]["seconds"].as_i64().unwrap_or(0) > 0);
        if kind == "Report" {
            assert_eq!(report["source"], "nsguard");
        }

        let report = read_back(cluster, resource, &clean);
        assert_eq!(
            results_of(&report),
            [("preflight".to_string(), "pass".to_string())],
            "{kind} of {clean}"
        );
        assert_eq!(report["summary"]["pass"], 1);
        assert_eq!(report["summary"]["fail"], 0);
    }

    // Cleanup: the finalizer goes, then both namespaces.
    clear_finalizers(cluster, &format!("gadgets.{group}"), "g1", &hanging);
    for ns in [&clean, &hanging] {
        kubectl(cluster, &["delete", "namespace", ns, "--wait=false"], None).unwrap();
    }
    for ns in [&clean, &hanging] {
        wait_gone(&client, ns).await;
    }
}
