//! CEL under a budget, on the real control plane: a ValidatingAdmissionPolicy the API server
//! accepts (its cost estimate is under the API server's limit per expression) but that nsguard,
//! which evaluates it for every object of a namespace, cannot afford. While a review evaluates
//! it, nsguard's `/livez` keeps answering at once and another namespace's review meets its
//! deadline; the review touching it says the policy was not evaluated, and why.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use localcluster::random_suffix;
use support::nsguard::Nsguard;
use support::*;

/// Elements of the list the policy builds and iterates twice over: 250 x 250 iterations per
/// evaluation, under the API server's estimate limit of 1,000,000 per expression.
const N: usize = 250;

/// ConfigMaps in the namespace: each is one evaluation, together far over a review's budget.
const OBJECTS: usize = 60;

/// `/livez` latencies while `stop` is not set, polled every 20 ms.
fn poll_livez(port: u16, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<Duration>> {
    std::thread::spawn(move || {
        let mut out = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            let answer = localcluster::http_get(port, "/livez");
            let took = started.elapsed();
            assert!(
                matches!(answer, Some((200, _))),
                "/livez answered {answer:?}"
            );
            out.push(took);
            std::thread::sleep(Duration::from_millis(20));
        }
        out
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_costly_policy_is_not_evaluated_and_stalls_nothing() {
    let _lock = CLUSTER_WIDE.read().await;
    let (cluster, client) = cluster().await;
    let guard = Nsguard::start(cluster, &["--mode=enforce"]).await;
    let sfx = random_suffix();
    let label = format!("costly-{sfx}");
    let ns = create_namespace_with(&client, "cel", &guard.labels(), &[]).await;
    let other = create_namespace_with(&client, "cel-other", &guard.labels(), &[]).await;
    let maps: String = (0..OBJECTS)
        .map(|i| {
            format!(
                "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: data-{i}, namespace: {ns}, labels: {{{label}: \"true\"}}}}\n"
            )
        })
        .collect();
    kubectl(cluster, &["apply", "-f", "-"], Some(&maps)).unwrap();

    let policy = format!("costly-{sfx}");
    let list: Vec<String> = (0..N).map(|i| i.to_string()).collect();
    let yaml = format!(
        r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {{name: {policy}}}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - {{apiGroups: [""], apiVersions: [v1], operations: [DELETE], resources: [configmaps]}}
    objectSelector: {{matchLabels: {{{label}: "true"}}}}
  variables:
  - name: xs
    expression: "[{}]"
  validations:
  - expression: "variables.xs.all(x, variables.xs.all(y, x + y >= 0))"
    message: never refuses, but costs
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {{name: {policy}}}
spec: {{policyName: {policy}, validationActions: [Deny]}}
"#,
        list.join(", ")
    );
    // Accepted: the API server's estimate is under its limit.
    kubectl(cluster, &["apply", "-f", "-"], Some(&yaml)).unwrap();
    // The API server itself evaluates it (on one object) and admits.
    kubectl(
        cluster,
        &[
            "delete",
            "configmap",
            "data-0",
            "-n",
            &ns,
            "--dry-run=server",
        ],
        None,
    )
    .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let livez = poll_livez(guard.admin_port(), stop.clone());
    // The review of the namespace holding the objects: allowed, with a warning that the
    // policy was not evaluated (nsguard's index may lag the policy by a moment: poll).
    let dry = ["delete", "namespace", &ns, "--dry-run=server"];
    let warning = eventually(
        "the costly policy to be reported as not evaluated",
        Duration::from_secs(60),
        || async {
            let out = kubectl_output(cluster, &dry, None)?;
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(out.status.success(), "the deletion was refused: {err}");
            Ok(err
                .contains(&format!("ValidatingAdmissionPolicy {policy}"))
                .then_some(err))
        },
    )
    .await;
    // Another review while the costly one runs: it meets its deadline (the webhook's timeout
    // is 10 s; nsguard answers well within it).
    let costly_ns = ns.clone();
    let costly = tokio::spawn(async move {
        let started = Instant::now();
        let out = kubectl_output(
            cluster,
            &["delete", "namespace", &costly_ns, "--dry-run=server"],
            None,
        )
        .unwrap();
        (started.elapsed(), out)
    });
    let started = Instant::now();
    let out = kubectl_output(
        cluster,
        &["delete", "namespace", &other, "--dry-run=server"],
        None,
    )
    .unwrap();
    let other_took = started.elapsed();
    let (costly_took, costly_out) = costly.await.unwrap();
    stop.store(true, Ordering::Relaxed);
    let mut samples = livez.join().unwrap();

    eprintln!("{warning}");
    // The warning (cut at 120 characters) names the policy and why first.
    assert!(
        warning.contains(&format!(
            "ValidatingAdmissionPolicy {policy} not evaluated: cost budget exceeded"
        )) || warning.contains(&format!(
            "ValidatingAdmissionPolicy {policy} not evaluated: deadline"
        )),
        "{warning}"
    );
    assert!(costly_out.status.success());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        other_took < Duration::from_secs(5),
        "another namespace's review took {other_took:?}"
    );
    assert!(
        costly_took < Duration::from_secs(10),
        "the costly review took {costly_took:?}"
    );
    samples.sort();
    let p95 = samples[samples.len() * 95 / 100];
    let max = *samples.last().unwrap();
    eprintln!(
        "livez: {} samples, p50 {:?}, p95 {p95:?}, max {max:?}; other review {other_took:?}; costly review {costly_took:?}",
        samples.len(),
        samples[samples.len() / 2]
    );
    assert!(samples.len() >= 10, "{} samples", samples.len());
    // The machine running the tests is shared: the bound is on the 95th percentile, and the
    // worst answer may not take more than a few times that.
    assert!(p95 < Duration::from_millis(100), "livez p95 {p95:?}");
    assert!(max < Duration::from_millis(500), "livez max {max:?}");
    for kind in [
        "validatingadmissionpolicybinding",
        "validatingadmissionpolicy",
    ] {
        kubectl(cluster, &["delete", kind, &policy], None).unwrap();
    }
    for ns in [&ns, &other] {
        allowed_and_gone(cluster, &client, ns).await;
    }
}
