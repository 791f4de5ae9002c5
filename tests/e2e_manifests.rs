//! What a cluster admin installs, checked by the real API server: every overlay passes a
//! server-side dry run; the ClusterRole grants what the preflight needs (the preflight run
//! while impersonating nsguard's ServiceAccount sees no 403) and no write verb but Events.
//! Also `nsguard certs`, whose output a real API server then trusts.

mod support;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use localcluster::LocalCluster;
use serde_json::Value;
use support::nsguard::Nsguard;
use support::*;

const SA: &str = "system:serviceaccount:nsguard-system:nsguard";

fn manifests(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("manifests")
        .join(path)
}

/// A copy of the cluster's kubeconfig that impersonates nsguard's ServiceAccount.
fn impersonating(cluster: &LocalCluster, dir: &Path) -> PathBuf {
    let mut kc: Value =
        serde_json::from_str(&std::fs::read_to_string(cluster.kubeconfig()).unwrap()).unwrap();
    let user = &mut kc["users"][0]["user"];
    user["as"] = SA.into();
    user["as-groups"] = serde_json::json!([
        "system:serviceaccounts",
        "system:serviceaccounts:nsguard-system",
        "system:authenticated"
    ]);
    let path = dir.join("kubeconfig-sa");
    std::fs::write(&path, kc.to_string()).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn every_overlay_passes_a_server_side_dry_run() {
    let _lock = CLUSTER_WIDE.read().await;
    let (cluster, _) = cluster().await;
    // The namespace must exist for its objects to be dry-run; cert-manager is not installed
    // here, so its two kinds are validated against stand-in CRDs.
    kubectl(
        cluster,
        &[
            "apply",
            "-f",
            manifests("base/namespace.yaml").to_str().unwrap(),
        ],
        None,
    )
    .unwrap();
    install_crd(cluster, "cert-manager.io", "issuers", "Issuer").await;
    install_crd(cluster, "cert-manager.io", "certificates", "Certificate").await;
    for overlay in ["enforce", "audit", "cert-manager", "no-secrets"] {
        let dir = manifests(&format!("overlays/{overlay}"));
        let out = kubectl(
            cluster,
            &["apply", "--dry-run=server", "-k", dir.to_str().unwrap()],
            None,
        )
        .unwrap_or_else(|e| panic!("{overlay}: {e:#}"));
        for object in [
            "serviceaccount/nsguard",
            "clusterrole.rbac.authorization.k8s.io/nsguard",
            "configmap/nsguard-config",
            "deployment.apps/nsguard",
            "service/nsguard",
            "poddisruptionbudget.policy/nsguard",
            "networkpolicy.networking.k8s.io/nsguard",
            "validatingwebhookconfiguration.admissionregistration.k8s.io/nsguard",
        ] {
            assert!(out.contains(object), "{overlay}: {object} missing in {out}");
        }
        let rendered = kubectl(cluster, &["kustomize", dir.to_str().unwrap()], None).unwrap();
        let mode = if overlay == "audit" {
            "audit"
        } else {
            "enforce"
        };
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&rendered).unwrap();
        let config = docs
            .iter()
            .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "nsguard-config")
            .and_then(|d| d["data"]["config.yaml"].as_str())
            .map(|text| ::nsguard::config::Layer::parse(text).unwrap())
            .unwrap_or_else(|| panic!("{overlay}: no configuration in {rendered}"));
        assert_eq!(config.mode.map(|m| m.as_str()), Some(mode), "{overlay}");
        // Only the no-secrets overlay skips Secrets, and then no rule of its role reaches
        // them (RBAC has no deny: neither a wildcard group, nor the core group's wildcard).
        let skips = config.skip_resources.is_some_and(|s| s.contains("secrets"));
        assert_eq!(skips, overlay == "no-secrets", "{overlay}: {rendered}");
        if skips {
            let role = docs.iter().find(|d| d["kind"] == "ClusterRole").unwrap();
            for rule in role["rules"].as_array().unwrap() {
                let has = |field: &str, v: &str| {
                    rule[field]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|x| x == v))
                };
                let core = has("apiGroups", "") || has("apiGroups", "*");
                assert!(
                    !(core && (has("resources", "*") || has("resources", "secrets"))),
                    "{overlay}: a rule reaches Secrets: {rule}"
                );
            }
        }
        for must in [
            "failurePolicy: Ignore",
            "sideEffects: None",
            "timeoutSeconds: 10",
            "runAsNonRoot: true",
            "readOnlyRootFilesystem: true",
            "replicas: 2",
        ] {
            assert!(rendered.contains(must), "{overlay}: {must}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cluster_role_is_enough_for_the_preflight_and_writes_nothing_but_events() {
    let _lock = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    for file in ["base/namespace.yaml", "base/rbac.yaml"] {
        kubectl(
            cluster,
            &["apply", "-f", manifests(file).to_str().unwrap()],
            None,
        )
        .unwrap();
    }

    // No write verb, but creating (and patching, for series) Events (and, in a Role of its
    // own namespace, its leader Lease: below).
    let role: Value = serde_json::from_str(
        &kubectl(
            cluster,
            &["get", "clusterrole", "nsguard", "-o", "json"],
            None,
        )
        .unwrap(),
    )
    .unwrap();
    let reads: BTreeSet<&str> = ["get", "list", "watch"].into();
    for rule in role["rules"].as_array().unwrap() {
        let verbs: BTreeSet<&str> = rule["verbs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        if rule["resources"] == serde_json::json!(["events"]) {
            assert!(verbs.is_subset(&["create", "patch"].into()), "{rule}");
        } else {
            assert!(verbs.is_subset(&reads), "{rule}");
        }
    }
    for (verb, resource, allowed) in [
        ("list", "configmaps", "yes"),
        ("delete", "namespaces", "no"),
        ("update", "namespaces/finalize", "no"),
        ("get", "secrets", "no"),
        // The content index watches every type, metadata only.
        ("watch", "secrets", "yes"),
        (
            "patch",
            "customresourcedefinitions.apiextensions.k8s.io",
            "no",
        ),
        ("create", "events.events.k8s.io", "yes"),
    ] {
        let out = kubectl_output(
            cluster,
            &[
                "auth",
                "can-i",
                verb,
                resource,
                "--all-namespaces",
                &format!("--as={SA}"),
            ],
            None,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            allowed,
            "{verb} {resource}"
        );
    }

    // Leader election: nsguard's own Lease, by name, in its namespace; no other Lease.
    for (verb, resource, ns, allowed) in [
        (
            "update",
            "leases.coordination.k8s.io/nsguard",
            "nsguard-system",
            "yes",
        ),
        (
            "patch",
            "leases.coordination.k8s.io/nsguard",
            "nsguard-system",
            "yes",
        ),
        (
            "create",
            "leases.coordination.k8s.io",
            "nsguard-system",
            "yes",
        ),
        (
            "update",
            "leases.coordination.k8s.io/other",
            "nsguard-system",
            "no",
        ),
        (
            "update",
            "leases.coordination.k8s.io/nsguard",
            "kube-system",
            "no",
        ),
        ("create", "leases.coordination.k8s.io", "kube-system", "no"),
    ] {
        let out = kubectl_output(
            cluster,
            &[
                "auth",
                "can-i",
                verb,
                resource,
                "-n",
                ns,
                &format!("--as={SA}"),
            ],
            None,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            allowed,
            "{verb} {resource} -n {ns}"
        );
    }

    // The preflight as the ServiceAccount: same verdict as an admin's, nothing unchecked,
    // no 403 anywhere. The namespace holds core objects and a custom resource.
    install_crd(cluster, "hooks.nsguard.test", "gadgets", "Gadget").await;
    let ns = create_namespace(&client, "rbac").await;
    kubectl(
        cluster,
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c, namespace: {ns}}}\n---\napiVersion: hooks.nsguard.test/v1\nkind: Gadget\nmetadata:\n  name: g1\n  namespace: {ns}\n  finalizers: [hooks.nsguard.test/cleanup]\n"
        )),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let as_sa = impersonating(cluster, dir.path());
    // Bindings take effect asynchronously in the authorizer's cache.
    let doc = eventually(
        "the preflight to run as the ServiceAccount",
        Duration::from_secs(30),
        || async {
            let out = nsguard_cli(&as_sa, &["check", &ns, "-o", "json"]);
            let doc: Value = serde_json::from_slice(&out.stdout)?;
            let text = doc.to_string();
            Ok((out.status.code() == Some(4) && !text.contains("403")).then_some(doc))
        },
    )
    .await;
    assert!(doc["notChecked"].as_array().unwrap().is_empty(), "{doc}");
    assert_eq!(doc["findings"][0]["check"], "finalizer-controller", "{doc}");
    let admin = nsguard_cli(cluster.kubeconfig(), &["check", &ns, "-o", "json"]);
    let admin: Value = serde_json::from_slice(&admin.stdout).unwrap();
    assert_eq!(admin["findings"], doc["findings"]);
    // And the whole audit, across every namespace.
    let audit = nsguard_cli(&as_sa, &["audit", "-o", "json"]);
    let text = String::from_utf8_lossy(&audit.stdout);
    assert!(!text.contains("HTTP 403"), "{text}");
    assert!(!text.contains("may not list"), "{text}");

    clear_finalizers(cluster, "gadgets.hooks.nsguard.test", "g1", &ns);
    kubectl(cluster, &["delete", "namespace", &ns, "--wait=false"], None).unwrap();
    wait_gone(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nsguard_certs_writes_a_pair_the_api_server_trusts() {
    let _lock = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("certs");
    let out = Command::new(env!("CARGO_BIN_EXE_nsguard"))
        .args(["certs", "--out-dir", out_dir.to_str().unwrap()])
        .args(["--dns", "localhost", "--ip", "127.0.0.1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let bundle = String::from_utf8_lossy(&out.stdout).trim().to_string();
    for key in ["ca.key", "tls.key"] {
        let meta = std::fs::metadata(out_dir.join(key)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{key}");
    }
    use base64::Engine;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(&bundle)
        .unwrap();
    assert_eq!(decoded, std::fs::read(out_dir.join("ca.crt")).unwrap());
    // Bad input: a clear error, no panic.
    let bad = Command::new(env!("CARGO_BIN_EXE_nsguard"))
        .args([
            "certs",
            "--out-dir",
            out_dir.to_str().unwrap(),
            "--dns",
            "not a name",
        ])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1), "{bad:?}");
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("not a name"),
        "{bad:?}"
    );

    // The real API server calls nsguard serving that pair, trusting that caBundle.
    let guard = Nsguard::start_with_certs(
        cluster,
        &out_dir.join("tls.crt"),
        &out_dir.join("tls.key"),
        &bundle,
        &["--mode=enforce"],
    )
    .await;
    assert!(guard.reviews() > 0);
    let ns = create_namespace_with(&client, "certs", &guard.labels(), &[]).await;
    kubectl(cluster, &["delete", "namespace", &ns, "--wait=false"], None).unwrap();
    wait_gone(&client, &ns).await;
}

/// The install guide's kustomize block (docs/install.md), run as printed against the local
/// control plane.
#[tokio::test(flavor = "multi_thread")]
async fn the_install_guide_commands_work_as_printed() {
    // The real webhook configuration points at a Service nothing serves: while it exists,
    // every namespace deletion waits on it, so nothing else runs meanwhile.
    let _lock = CLUSTER_WIDE.write().await;
    let (cluster, _) = cluster().await;
    let guide =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/install.md"))
            .unwrap();
    let block = guide
        .split_once("<!-- install -->\n```sh\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(block, _)| block.to_string())
        .expect("the install block in docs/install.md");
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(manifests(""), dir.path().join("manifests")).unwrap();
    let nsguard_dir = Path::new(env!("CARGO_BIN_EXE_nsguard")).parent().unwrap();
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &block])
        .current_dir(dir.path())
        .env("KUBECONFIG", cluster.kubeconfig())
        .env(
            "PATH",
            format!(
                "{}:{}:{}",
                cluster.bin_path().display(),
                nsguard_dir.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .output()
        .unwrap();
    let cleanup = || {
        let _ = kubectl(
            cluster,
            &[
                "delete",
                "validatingwebhookconfiguration",
                "nsguard",
                "--ignore-not-found",
            ],
            None,
        );
    };
    if !out.status.success() {
        cleanup();
        panic!("{block}\n{}", String::from_utf8_lossy(&out.stderr));
    }
    let bundle = kubectl(
        cluster,
        &[
            "get",
            "validatingwebhookconfiguration",
            "nsguard",
            "-o",
            "jsonpath={.webhooks[0].clientConfig.caBundle}",
        ],
        None,
    )
    .unwrap();
    cleanup();
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD
        .decode(bundle.trim())
        .unwrap();
    assert_eq!(ca, std::fs::read(dir.path().join("certs/ca.crt")).unwrap());
    let secret_type = kubectl(
        cluster,
        &[
            "get",
            "secret",
            "nsguard-tls",
            "-n",
            "nsguard-system",
            "-o",
            "jsonpath={.type}",
        ],
        None,
    )
    .unwrap();
    assert_eq!(secret_type, "kubernetes.io/tls");
}
