//! Every path to a hang, judged as the API server judges it, on the production-shaped world
//! (every controller, a kubelet running pods, kubeadm's admin group, a GitOps controller with
//! cluster-admin, nsguard as its own ServiceAccount). Each class that hangs shows an unguarded
//! twin really hanging on the namespace controller, nsguard's deny on the guarded twin, then
//! the fix and both completing; each class that completes shows the completion and the allow.
//!
//! The classes: a webhook that refuses the finalizer removal (an UPDATE); an admission policy
//! that refuses the namespace controller's DELETE; a grant on a subresource that is not the
//! right to remove a finalizer; an installer record standing in for the controller; a live
//! controller taken for a finalizer it does not own; and, the other way, aggregated roles and
//! ServiceAccount groups bound to a live controller.

mod support;

use localcluster::{LocalCluster, random_suffix};
use support::nsguard::Nsguard;
use support::operator::{Operator, deploy, run_operator, wait_ready};
use support::*;

fn apply(cluster: &LocalCluster, yaml: &str) {
    kubectl(cluster, &["apply", "-f", "-"], Some(yaml)).unwrap();
}

/// ClusterRole `name` with `rules` (YAML flow maps) bound cluster-wide to `subject` (a YAML
/// flow map).
fn bind(cluster: &LocalCluster, name: &str, rules: &[String], subject: &str) {
    let rules: Vec<String> = rules.iter().map(|r| format!("- {r}")).collect();
    apply(
        cluster,
        &format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: {name}}}\nrules:\n{}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: {name}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {name}}}\nsubjects:\n- {subject}\n",
            rules.join("\n")
        ),
    );
}

/// A custom object `name` of `gadgets.<group>` in `ns` holding `finalizers`.
fn gadget_with(cluster: &LocalCluster, group: &str, ns: &str, name: &str, finalizers: &[&str]) {
    apply(
        cluster,
        &format!(
            "apiVersion: {group}/v1\nkind: Gadget\nmetadata:\n  name: {name}\n  namespace: {ns}\n  finalizers: [{}]\n",
            finalizers.join(", ")
        ),
    );
}

/// The same namespace twice, each with gadgets `g1`, `g2` holding `finalizers`: one nsguard
/// does not see (to show what the namespace controller does), one it guards.
async fn twins(
    guard: &Nsguard,
    group: &str,
    prefix: &str,
    finalizers: &[&str],
) -> (String, String) {
    let (cluster, client) = cluster().await;
    install_crd(cluster, group, "gadgets", "Gadget").await;
    let bare = create_namespace(&client, &format!("{prefix}-bare")).await;
    let guarded = create_namespace_with(&client, prefix, &guard.labels(), &[]).await;
    for ns in [&bare, &guarded] {
        for g in ["g1", "g2"] {
            gadget_with(cluster, group, ns, g, finalizers);
        }
    }
    (bare, guarded)
}

/// Deletes `ns` without nsguard and waits until the namespace controller says it is stuck with
/// `condition` whose message has `text`.
async fn hangs(
    cluster: &LocalCluster,
    client: &kube::Client,
    ns: &str,
    condition: &str,
    text: &str,
) {
    kubectl(cluster, &["delete", "namespace", ns, "--wait=false"], None).unwrap();
    let c = wait_stuck(client, ns, condition).await;
    assert!(
        c.message.as_deref().unwrap_or_default().contains(text),
        "{c:?}"
    );
}

fn strip(cluster: &LocalCluster, group: &str, namespaces: [&String; 2]) {
    for ns in namespaces {
        for g in ["g1", "g2"] {
            clear_finalizers(cluster, &format!("gadgets.{group}"), g, ns);
        }
    }
}

/// Waits until a server dry run of `args` is refused with `text` (an admission object the
/// test created has taken effect).
async fn refused(cluster: &LocalCluster, args: &[&str], text: &str) {
    eventually(
        &format!("kubectl {} to be refused with {text:?}", args.join(" ")),
        std::time::Duration::from_secs(60),
        || async {
            let out = kubectl_output(cluster, args, None)?;
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            Ok((!out.status.success() && err.contains(text)).then_some(()))
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_down_on_the_finalizer_removal_hangs_the_namespace_although_its_controller_runs()
{
    let _lock = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    let guard = Nsguard::start(cluster, &["--mode=enforce"]).await;
    let sfx = random_suffix();
    let group = format!("upd-{sfx}.verdicts.nsguard.test");
    let operator = format!("upd-operator-{sfx}");
    let op_ns = run_operator(cluster, &client, &operator, &group, "gadgets", 1).await;
    wait_ready(cluster, &op_ns, &operator).await;
    let (bare, guarded) = twins(&guard, &group, "upd", &[&format!("{group}/cleanup")]).await;
    // A Fail webhook on UPDATE of the gadgets whose backend is gone: DELETE passes, the
    // controller's finalizer removal does not.
    let config = format!("refuse-update-{sfx}");
    apply(
        cluster,
        &format!(
            r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {{name: {config}}}
webhooks:
- name: refuse-update.{group}
  failurePolicy: Fail
  sideEffects: None
  admissionReviewVersions: [v1]
  clientConfig: {{service: {{namespace: gone-{sfx}, name: gone, port: 443}}}}
  rules:
  - {{apiGroups: ["{group}"], apiVersions: ["*"], operations: [UPDATE], resources: [gadgets], scope: Namespaced}}
"#
        ),
    );
    refused(
        cluster,
        &[
            "patch",
            &format!("gadgets.{group}"),
            "g1",
            "-n",
            &bare,
            "--type=merge",
            "-p",
            r#"{"metadata":{"labels":{"probe":"1"}}}"#,
            "--dry-run=server",
        ],
        "failed calling webhook",
    )
    .await;
    let _operator = Operator::start(cluster, &group, "gadgets");

    hangs(
        cluster,
        &client,
        &bare,
        "NamespaceFinalizersRemaining",
        &format!("{group}/cleanup"),
    )
    .await;
    let err = denied(cluster, &guarded, "webhook-backend-unavailable").await;
    assert!(err.contains("finalizer removal (UPDATE)"), "{err}");

    kubectl(
        cluster,
        &["delete", "validatingwebhookconfiguration", &config],
        None,
    )
    .unwrap();
    wait_gone(&client, &bare).await;
    allowed_and_gone(cluster, &client, &guarded).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admission_policy_that_refuses_the_controllers_delete_hangs_the_namespace() {
    let _lock = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    let guard = Nsguard::start(cluster, &["--mode=enforce"]).await;
    let sfx = random_suffix();
    let label = format!("protect-{sfx}");
    let bare = create_namespace(&client, "vap-bare").await;
    let guarded = create_namespace_with(&client, "vap", &guard.labels(), &[]).await;
    for ns in [&bare, &guarded] {
        apply(
            cluster,
            &format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: keep, namespace: {ns}, labels: {{{label}: \"true\"}}}}\n"
            ),
        );
    }
    let policy = format!("protect-{sfx}");
    apply(
        cluster,
        &format!(
            r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {{name: {policy}}}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - {{apiGroups: [""], apiVersions: [v1], operations: [DELETE], resources: [configmaps]}}
    objectSelector: {{matchExpressions: [{{key: {label}, operator: Exists}}]}}
  validations:
  - expression: "!has(oldObject.metadata.labels) || !('{label}' in oldObject.metadata.labels) || oldObject.metadata.labels['{label}'] != 'true'"
    message: protected ConfigMaps may not be deleted
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {{name: {policy}}}
spec: {{policyName: {policy}, validationActions: [Deny]}}
"#
        ),
    );
    refused(
        cluster,
        &[
            "delete",
            "configmap",
            "keep",
            "-n",
            &bare,
            "--dry-run=server",
        ],
        "protected ConfigMaps may not be deleted",
    )
    .await;

    hangs(
        cluster,
        &client,
        &bare,
        "NamespaceDeletionContentFailure",
        &format!("ValidatingAdmissionPolicy '{policy}'"),
    )
    .await;
    let err = denied(cluster, &guarded, "admission-policy-refuses").await;
    assert!(
        err.contains(&format!("ValidatingAdmissionPolicy {policy}")),
        "{err}"
    );
    assert!(
        err.contains("protected ConfigMaps may not be deleted"),
        "{err}"
    );

    kubectl(
        cluster,
        &["delete", "validatingadmissionpolicybinding", &policy],
        None,
    )
    .unwrap();
    wait_gone(&client, &bare).await;
    allowed_and_gone(cluster, &client, &guarded).await;
    kubectl(
        cluster,
        &["delete", "validatingadmissionpolicy", &policy],
        None,
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_grant_on_the_finalizers_subresource_is_not_the_right_to_remove_a_finalizer() {
    let _lock = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    let guard = Nsguard::start(cluster, &["--mode=enforce"]).await;
    let sfx = random_suffix();
    let group = format!("sub-{sfx}.verdicts.nsguard.test");
    let op_ns = format!("sub-operator-{sfx}");
    deploy(cluster, &op_ns, "operator", "operator", 1, &[]).await;
    wait_ready(cluster, &op_ns, "operator").await;
    bind(
        cluster,
        &format!("sub-{sfx}"),
        &[
            format!(
                "{{apiGroups: [\"{group}\"], resources: [gadgets], verbs: [get, list, watch]}}"
            ),
            format!(
                "{{apiGroups: [\"{group}\"], resources: [gadgets/finalizers, gadgets/status], verbs: [update, patch]}}"
            ),
        ],
        &format!("{{kind: ServiceAccount, name: operator, namespace: {op_ns}}}"),
    );
    let (bare, guarded) = twins(&guard, &group, "sub", &[&format!("{group}/cleanup")]).await;
    // What the API server says when the live controller tries to remove its finalizer.
    let out = kubectl_output(
        cluster,
        &[
            "patch",
            &format!("gadgets.{group}"),
            "g1",
            "-n",
            &bare,
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
            &format!("--as=system:serviceaccount:{op_ns}:operator"),
        ],
        None,
    )
    .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Forbidden"),
        "{out:?}"
    );

    hangs(
        cluster,
        &client,
        &bare,
        "NamespaceFinalizersRemaining",
        &format!("{group}/cleanup"),
    )
    .await;
    let err = denied(cluster, &guarded, "finalizer-controller").await;
    assert!(err.contains("no role names"), "{err}");

    strip(cluster, &group, [&bare, &guarded]);
    wait_gone(&client, &bare).await;
    allowed_and_gone(cluster, &client, &guarded).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_installer_record_narrows_the_candidates_it_does_not_stand_in_for_the_controller() {
    let _lock = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    let guard = Nsguard::start(cluster, &["--mode=enforce"]).await;
    let sfx = random_suffix();
    let group = format!("helm-{sfx}.verdicts.nsguard.test");
    let rel_ns = format!("helm-{sfx}-system");
    let release = [
        ("meta.helm.sh/release-name", "gadgets"),
        ("meta.helm.sh/release-namespace", rel_ns.as_str()),
    ];
    // The release's webhook runs (and may not update gadgets); its controller is scaled to 0.
    deploy(cluster, &rel_ns, "webhook", "webhook", 1, &release).await;
    deploy(cluster, &rel_ns, "controller", "controller", 0, &release).await;
    wait_ready(cluster, &rel_ns, "webhook").await;
    bind(
        cluster,
        &format!("helm-{sfx}"),
        &[format!(
            "{{apiGroups: [\"{group}\"], resources: [gadgets], verbs: [get, list, watch, update, patch]}}"
        )],
        &format!("{{kind: ServiceAccount, name: controller, namespace: {rel_ns}}}"),
    );
    let (bare, guarded) = twins(&guard, &group, "helm", &[&format!("{group}/cleanup")]).await;
    kubectl(
        cluster,
        &[
            "annotate",
            "--overwrite",
            "crd",
            &format!("gadgets.{group}"),
            "meta.helm.sh/release-name=gadgets",
            &format!("meta.helm.sh/release-namespace={rel_ns}"),
        ],
        None,
    )
    .unwrap();

    hangs(
        cluster,
        &client,
        &bare,
        "NamespaceFinalizersRemaining",
        &format!("{group}/cleanup"),
    )
    .await;
    let err = denied(cluster, &guarded, "finalizer-controller").await;
    assert!(err.contains("Deployment controller scaled to 0"), "{err}");
    assert!(!err.contains(&format!("{rel_ns}/webhook: pod")), "{err}");

    // The fix: the release's controller runs again and does its work.
    kubectl(
        cluster,
        &[
            "scale",
            "deployment",
            "controller",
            "-n",
            &rel_ns,
            "--replicas=1",
        ],
        None,
    )
    .unwrap();
    wait_ready(cluster, &rel_ns, "controller").await;
    let _operator = Operator::start(cluster, &group, "gadgets");
    wait_gone(&client, &bare).await;
    allowed_and_gone(cluster, &client, &guarded).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_live_operator_is_not_taken_for_a_finalizer_of_an_uninstalled_tool() {
    let _lock = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    let guard = Nsguard::start(cluster, &["--mode=enforce"]).await;
    let sfx = random_suffix();
    let group = format!("two-{sfx}.verdicts.nsguard.test");
    let operator = format!("two-operator-{sfx}");
    let op_ns = run_operator(cluster, &client, &operator, &group, "gadgets", 1).await;
    wait_ready(cluster, &op_ns, &operator).await;
    let backup = format!("backup.tools-{sfx}.example/protect");
    let own = format!("{group}/cleanup");
    let (bare, guarded) = twins(&guard, &group, "two", &[&own, &backup]).await;
    let _operator = Operator::start(cluster, &group, "gadgets");

    hangs(
        cluster,
        &client,
        &bare,
        "NamespaceFinalizersRemaining",
        &backup,
    )
    .await;
    let err = denied(cluster, &guarded, "finalizer-controller").await;
    assert!(
        err.contains(&backup) && err.contains("removes only"),
        "{err}"
    );

    strip(cluster, &group, [&bare, &guarded]);
    wait_gone(&client, &bare).await;
    allowed_and_gone(cluster, &client, &guarded).await;
}

/// A namespace with a gadget holding `finalizer`: `nsguard check` finds it handled (by
/// `controller`, when given), and once the operator (played by the test) removes it, the
/// deletion is allowed and the namespace completes.
async fn handled_then_gone(
    guard: &Nsguard,
    group: &str,
    finalizer: &str,
    controller: Option<&str>,
) {
    let (cluster, client) = cluster().await;
    let ns = create_namespace_with(&client, "handled", &guard.labels(), &[]).await;
    gadget_with(cluster, group, &ns, "g1", &[finalizer]);
    let out = nsguard_cli(cluster.kubeconfig(), &["check", &ns, "-o", "json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["verdict"], "clean", "{doc}");
    if let Some(c) = controller {
        assert_eq!(doc["handled"][0]["controller"], c, "{doc}");
    }
    let _operator = Operator::removing(cluster, group, "gadgets", finalizer);
    allowed_and_gone(cluster, &client, &ns).await;
}

/// A live operator (named grant) whose objects carry one finalizer of a real shape: allowed,
/// and the namespace completes once the operator removes it.
async fn a_real_shape_completes(group: &str, finalizer: &str) {
    let (cluster, client) = cluster().await;
    let guard = Nsguard::start(cluster, &["--mode=enforce"]).await;
    let operator = format!("shape-operator-{}", random_suffix());
    let op_ns = run_operator(cluster, &client, &operator, group, "gadgets", 1).await;
    wait_ready(cluster, &op_ns, &operator).await;
    install_crd(cluster, group, "gadgets", "Gadget").await;
    handled_then_gone(&guard, group, finalizer, None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn real_finalizer_shapes_are_not_false_denies() {
    let _lock = CLUSTER_WIDE.read().await;
    let sfx = random_suffix();
    // Flux: finalizers.fluxcd.io on *.toolkit.fluxcd.io (same registrable domain).
    a_real_shape_completes(
        &format!("kustomize.toolkit-{sfx}.fluxcd.io"),
        "finalizers.fluxcd.io",
    )
    .await;
    // Crossplane: a provider type in *.upbound.io, the managed-resource finalizer of
    // crossplane.io: its only controller, no competing explanation.
    a_real_shape_completes(
        &format!("s3.aws-{sfx}.upbound.io"),
        "finalizer.managedresource.crossplane.io",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_aggregated_role_bound_to_a_live_controller_is_its_grant() {
    let _lock = CLUSTER_WIDE.read().await;
    let (cluster, _client) = cluster().await;
    let guard = Nsguard::start(cluster, &["--mode=enforce"]).await;
    let sfx = random_suffix();
    let group = format!("agg-{sfx}.verdicts.nsguard.test");
    let op_ns = format!("agg-operator-{sfx}");
    deploy(cluster, &op_ns, "operator", "operator", 1, &[]).await;
    apply(
        cluster,
        &format!(
            r#"apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: agg-{sfx}}}
aggregationRule:
  clusterRoleSelectors: [{{matchLabels: {{aggregate-to-agg-{sfx}: "true"}}}}]
rules: []
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: agg-{sfx}-gadgets, labels: {{aggregate-to-agg-{sfx}: "true"}}}}
rules:
- {{apiGroups: ["{group}"], resources: [gadgets], verbs: [get, list, watch, update, patch]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: agg-{sfx}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: agg-{sfx}}}
subjects:
- {{kind: ServiceAccount, name: operator, namespace: {op_ns}}}
"#
        ),
    );
    // The aggregation controller fills the role's rules.
    eventually(
        "the aggregated role's rules",
        std::time::Duration::from_secs(60),
        || async {
            let rules = kubectl(
                cluster,
                &[
                    "get",
                    "clusterrole",
                    &format!("agg-{sfx}"),
                    "-o",
                    "jsonpath={.rules}",
                ],
                None,
            )?;
            Ok(rules.contains("gadgets").then_some(()))
        },
    )
    .await;
    wait_ready(cluster, &op_ns, "operator").await;
    install_crd(cluster, &group, "gadgets", "Gadget").await;
    let controller = format!("{op_ns}/operator");
    handled_then_gone(
        &guard,
        &group,
        &format!("{group}/cleanup"),
        Some(&controller),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_namespace_service_account_group_is_a_controller_and_every_account_is_nobody() {
    let _lock = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    let guard = Nsguard::start(cluster, &["--mode=enforce"]).await;
    let sfx = random_suffix();
    let group = format!("sag-{sfx}.verdicts.nsguard.test");
    let op_ns = format!("sag-operator-{sfx}");
    deploy(cluster, &op_ns, "worker", "worker", 1, &[]).await;
    wait_ready(cluster, &op_ns, "worker").await;
    let grant = |subject: &str| {
        bind(
            cluster,
            &format!("sag-{sfx}"),
            &[format!(
                "{{apiGroups: [\"{group}\"], resources: [gadgets], verbs: [get, list, watch, update, patch]}}"
            )],
            &format!("{{kind: Group, apiGroup: rbac.authorization.k8s.io, name: \"{subject}\"}}"),
        )
    };
    // Every ServiceAccount of the cluster: a wildcard, not a controller.
    grant("system:serviceaccounts");
    let (bare, guarded) = twins(&guard, &group, "sag", &[&format!("{group}/cleanup")]).await;
    hangs(
        cluster,
        &client,
        &bare,
        "NamespaceFinalizersRemaining",
        &format!("{group}/cleanup"),
    )
    .await;
    let err = denied(cluster, &guarded, "finalizer-controller").await;
    assert!(err.contains("no role names"), "{err}");
    strip(cluster, &group, [&bare, &guarded]);
    wait_gone(&client, &bare).await;
    allowed_and_gone(cluster, &client, &guarded).await;

    // The ServiceAccounts of the operator's namespace: each is a candidate, live by its pod.
    kubectl(
        cluster,
        &["delete", "clusterrolebinding", &format!("sag-{sfx}")],
        None,
    )
    .unwrap();
    grant(&format!("system:serviceaccounts:{op_ns}"));
    let controller = format!("system:serviceaccounts:{op_ns}");
    handled_then_gone(
        &guard,
        &group,
        &format!("{group}/cleanup"),
        Some(&controller),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admission_policy_on_annotations_is_judged_on_annotations_read_for_it() {
    let _lock = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    let guard = Nsguard::start(cluster, &["--mode=enforce"]).await;
    let sfx = random_suffix();
    let key = format!("keep-{sfx}.example.com/protected");
    let ns = create_namespace_with(&client, "vapa", &guard.labels(), &[]).await;
    apply(
        cluster,
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: keep, namespace: {ns}, annotations: {{\"{key}\": \"true\"}}}}\n"
        ),
    );
    let policy = format!("keep-{sfx}");
    apply(
        cluster,
        &format!(
            r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {{name: {policy}}}
spec:
  matchConstraints:
    resourceRules:
    - {{apiGroups: [""], apiVersions: [v1], operations: [DELETE], resources: [configmaps]}}
  validations:
  - expression: "!has(oldObject.metadata.annotations) || !('{key}' in oldObject.metadata.annotations)"
    message: annotated ConfigMaps are kept
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {{name: {policy}}}
spec: {{policyName: {policy}, validationActions: [Deny]}}
"#
        ),
    );
    refused(
        cluster,
        &["delete", "configmap", "keep", "-n", &ns, "--dry-run=server"],
        "annotated ConfigMaps are kept",
    )
    .await;
    let err = denied(cluster, &ns, "admission-policy-refuses").await;
    assert!(err.contains("annotated ConfigMaps are kept"), "{err}");
    kubectl(
        cluster,
        &["delete", "validatingadmissionpolicybinding", &policy],
        None,
    )
    .unwrap();
    allowed_and_gone(cluster, &client, &ns).await;
    kubectl(
        cluster,
        &["delete", "validatingadmissionpolicy", &policy],
        None,
    )
    .unwrap();
}
