//! The observability kit stays true to the binary (no cluster): every PromQL expression of the
//! Grafana dashboard and the alert rules parses with PromQL's grammar, and every metric, label
//! and label value they name is in what nsguard's `/metrics` serves once it has recorded a
//! decision of each kind (or, for kube-apiserver's and Prometheus' own series, in what those
//! expose); every family nsguard exports is on the dashboard. The alert rules pass their unit
//! tests under promtool (built from its Go module by `tests/promtool/build.sh`), whose input
//! series are shaped as nsguard's exposition; every alert links its section of
//! docs/operating.md.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use nsguard::checks::report::{CheckId, Finding, Report, Severity, Subject, remedy};
use nsguard::output::policy::{Decision, Mode, Policy, Ruling};
use nsguard::output::records::Metrics;
use nsguard::webhook::admission::Admission;
use nsguard::webhook::server::{BODY_LIMIT, Readiness, admin_router, webhook_router};
use promql_parser::label::MatchOp;
use promql_parser::parser::{self, Expr, VectorSelector};
use serde_json::Value;
use tower::ServiceExt;

const DASHBOARD: &str = include_str!("../deploy/grafana/nsguard.json");
const RULES: &str = include_str!("../deploy/prometheus/nsguard-rules.yaml");
const RULE_TESTS: &str = include_str!("../deploy/prometheus/nsguard-rules.test.yaml");
const OPERATING: &str = include_str!("../docs/operating.md");

/// The webhook's name in the manifests and the chart: kube-apiserver labels its webhook
/// metrics with it.
const WEBHOOK_NAME: &str = "namespaces.nsguard.io";

/// Series the rules and the dashboard read that nsguard does not export, with the labels their
/// exporter sets: Prometheus' `up`, and kube-apiserver's counts of webhook calls
/// (`staging/src/k8s.io/apiserver/pkg/admission/metrics`).
const FOREIGN: &[(&str, &[&str])] = &[
    ("up", &[]),
    (
        "apiserver_admission_webhook_fail_open_count",
        &["name", "type"],
    ),
    (
        "apiserver_admission_webhook_rejection_count",
        &["name", "type", "operation", "error_type", "rejection_code"],
    ),
    (
        "apiserver_admission_webhook_admission_duration_seconds_count",
        &["name", "type", "operation", "rejected"],
    ),
];

/// The labels a scrape adds to every series (`cluster`: the external label or relabeling of a
/// Prometheus that watches several clusters).
const TARGET_LABELS: &[&str] = &["job", "instance", "cluster"];

/// Grafana's interval variables, as Grafana would substitute them before querying.
fn substitute_grafana_variables(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h")
        .replace("$cluster", ".*")
        .replace("$job", ".*")
}

fn collect_exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", Value::String(e)) => out.push(e.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

fn dashboard() -> Value {
    serde_json::from_str(DASHBOARD).expect("the dashboard is JSON")
}

fn dashboard_exprs() -> Vec<String> {
    let mut out = Vec::new();
    collect_exprs(&dashboard(), &mut out);
    out.iter()
        .map(|e| substitute_grafana_variables(e))
        .collect()
}

#[derive(Debug, serde::Deserialize)]
struct RuleFile {
    groups: Vec<Group>,
}

#[derive(Debug, serde::Deserialize)]
struct Group {
    name: String,
    rules: Vec<Rule>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    alert: Option<String>,
    record: Option<String>,
    expr: String,
    #[serde(rename = "for")]
    for_: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

fn rules() -> RuleFile {
    serde_saphyr::from_str(RULES).expect("the rules file is YAML in Prometheus' rule format")
}

/// Every vector selector in `expr` (matrix selectors included).
fn selectors<'a>(expr: &'a Expr, out: &mut Vec<&'a VectorSelector>) {
    match expr {
        Expr::Aggregate(a) => {
            selectors(&a.expr, out);
            if let Some(p) = &a.param {
                selectors(p, out);
            }
        }
        Expr::Unary(u) => selectors(&u.expr, out),
        Expr::Binary(b) => {
            selectors(&b.lhs, out);
            selectors(&b.rhs, out);
        }
        Expr::Paren(p) => selectors(&p.expr, out),
        Expr::Subquery(s) => selectors(&s.expr, out),
        Expr::VectorSelector(v) => out.push(v),
        Expr::MatrixSelector(m) => out.push(&m.vs),
        Expr::Call(c) => c.args.args.iter().for_each(|a| selectors(a, out)),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

fn parse(expr: &str) -> Expr {
    parser::parse(expr).unwrap_or_else(|e| panic!("{expr:?} does not parse: {e}"))
}

/// One sample line of the exposition: its name and labels.
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
}

fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let end = l.find(['{', ' ']).unwrap_or(l.len());
            let name = l[..end].to_string();
            let mut labels = BTreeMap::new();
            if l[end..].starts_with('{') {
                let close = l.find('}').expect("labels close");
                for kv in l[end + 1..close].split(',').filter(|kv| !kv.is_empty()) {
                    let (k, v) = kv.split_once('=').expect("label=value");
                    labels.insert(k.to_string(), v.trim_matches('"').to_string());
                }
            }
            Sample { name, labels }
        })
        .collect()
}

/// nsguard's `/metrics` after one decision of every outcome in every mode, both kinds of bad
/// request through the real router, and readiness set.
async fn exposition() -> String {
    let metrics = Arc::new(Metrics::default());
    let admission = Arc::new(Admission {
        engine: None,
        policy: Policy::default().into(),
        check_timeout: Duration::from_secs(5),
        own_namespace: Some("nsguard-system".into()),
        metrics: metrics.clone(),
        events: None,
        slots: None,
        peer_limit: None,
    });
    for body in [b"{not json".to_vec(), vec![b' '; BODY_LIMIT + 1]] {
        let req = Request::post("/validate")
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap();
        let resp = webhook_router(admission.clone())
            .oneshot(req)
            .await
            .unwrap();
        assert!(resp.status().is_client_error());
    }
    let mut report = Report {
        namespace: "team-a".into(),
        ..Default::default()
    };
    for check in CheckId::all() {
        let mut f = Finding::new(check, Subject::Namespace, "x", remedy("y", None));
        f.severity = Severity::Advisory;
        report.findings.push(f.clone());
        f.severity = Severity::Blocking;
        report.findings.push(f);
    }
    let outcomes = [
        Ruling::Allowed,
        Ruling::Warned,
        Ruling::Denied,
        Ruling::Audited,
        Ruling::Overridden,
        Ruling::FailOpen,
    ];
    for mode in [Mode::Enforce, Mode::Warn, Mode::Audit] {
        for outcome in outcomes {
            for dry_run in [false, true] {
                let decision = Decision {
                    allowed: outcome != Ruling::Denied,
                    outcome,
                    message: None,
                    warnings: vec![],
                };
                metrics.decision(mode, &decision, dry_run, &report, Duration::from_millis(30));
            }
        }
    }
    // The background watch: two Terminating namespaces, one blocked, on the leader.
    metrics.set_terminating("team-a", 1200.0, &["finalizer-controller"]);
    metrics.set_terminating("team-b", 30.0, &[]);
    metrics.set_terminating_total(2);
    metrics.set_leader(true);
    metrics.terminating_event("written");
    metrics.terminating_dropped(1);
    metrics.set_config(Mode::Warn, 2);
    metrics.set_expected_mode(Mode::Enforce);
    let ready = Readiness::default();
    ready.set(true);
    let resp = admin_router(ready, metrics)
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[test]
fn every_expression_parses_as_promql() {
    let exprs = dashboard_exprs();
    assert!(exprs.len() >= 8, "the dashboard has its panels: {exprs:?}");
    for e in &exprs {
        parse(e);
    }
    let file = rules();
    let mut alerts = BTreeSet::new();
    for g in &file.groups {
        assert!(!g.name.is_empty());
        for r in &g.rules {
            parse(&r.expr);
            let name = r
                .alert
                .as_ref()
                .or(r.record.as_ref())
                .expect("alert or record");
            assert!(
                r.alert.is_none() || r.record.is_none(),
                "{name}: alert and record"
            );
            assert!(alerts.insert(name.clone()), "{name} twice");
            if let Some(f) = &r.for_ {
                assert!(nsguard::cli::parse_duration(f).is_ok(), "{name}: for: {f}");
            }
            if r.alert.is_some() {
                assert!(r.labels.contains_key("severity"), "{name}: no severity");
                assert!(r.annotations.contains_key("summary"), "{name}: no summary");
            }
        }
    }
    for wanted in [
        "NsguardDown",
        "NsguardApiServerFailingOpen",
        "NsguardRejectionRateHigh",
        "NsguardFailOpen",
        "NsguardNotReady",
        "NsguardPreflightSlow",
        "NsguardCertificateExpiringSoon",
    ] {
        assert!(alerts.contains(wanted), "no alert {wanted}: {alerts:?}");
    }
}

#[test]
fn a_broken_expression_would_be_caught() {
    for bad in [
        "sum(rate(nsguard_admission_reviews_total[5m])",
        "rate(nsguard_admission_reviews_total)",
        "nsguard_ready{decision=fail_open}",
        "histogram_quantil(0.9, nsguard_preflight_duration_seconds_bucket)",
    ] {
        assert!(parser::parse(bad).is_err(), "{bad:?} parsed");
    }
}

#[tokio::test]
async fn every_metric_label_and_value_they_name_is_exported() {
    let text = exposition().await;
    let samples = samples(&text);
    let names: BTreeSet<&str> = samples.iter().map(|s| s.name.as_str()).collect();
    let mut exprs = dashboard_exprs();
    exprs.extend(
        rules()
            .groups
            .into_iter()
            .flat_map(|g| g.rules)
            .map(|r| r.expr),
    );
    let mut used = BTreeSet::new();
    for e in &exprs {
        let ast = parse(e);
        let mut vs = Vec::new();
        selectors(&ast, &mut vs);
        assert!(!vs.is_empty(), "{e}: selects nothing");
        for v in vs {
            let name = v
                .name
                .clone()
                .unwrap_or_else(|| panic!("{e}: no metric name"));
            if let Some((_, labels)) = FOREIGN.iter().find(|(n, _)| *n == name) {
                for m in &v.matchers.matchers {
                    assert!(
                        labels.contains(&m.name.as_str())
                            || TARGET_LABELS.contains(&m.name.as_str()),
                        "{e}: {name} has no label {}",
                        m.name
                    );
                    if m.name == "name" {
                        assert_eq!(m.value, WEBHOOK_NAME, "{e}");
                    }
                }
                continue;
            }
            assert!(
                names.contains(name.as_str()),
                "{e}: nsguard exports no {name}; it exports {names:?}"
            );
            used.insert(name.clone());
            let of_metric: Vec<&Sample> = samples.iter().filter(|s| s.name == name).collect();
            for m in &v.matchers.matchers {
                if m.name == "__name__" || TARGET_LABELS.contains(&m.name.as_str()) {
                    continue;
                }
                assert!(
                    of_metric.iter().any(|s| s.labels.contains_key(&m.name)),
                    "{e}: {name} has no label {}",
                    m.name
                );
                if let MatchOp::Equal = m.op {
                    assert!(
                        of_metric
                            .iter()
                            .any(|s| s.labels.get(&m.name) == Some(&m.value)),
                        "{e}: {name} never has {}={:?}",
                        m.name,
                        m.value
                    );
                }
                if let MatchOp::Re(_) = m.op {
                    for alt in m.value.split('|') {
                        assert!(
                            of_metric
                                .iter()
                                .any(|s| s.labels.get(&m.name).map(String::as_str) == Some(alt)),
                            "{e}: {name} never has {}={alt:?}",
                            m.name
                        );
                    }
                }
            }
        }
    }
    // The other way round: every family nsguard exports has a place on the dashboard.
    let families: BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let dashboard_text: String = dashboard_exprs().join("\n");
    for f in &families {
        assert!(
            dashboard_text.contains(f),
            "the dashboard shows nothing of {f}"
        );
    }
    for f in [
        "nsguard_ready",
        "nsguard_certificate_expiry_timestamp_seconds",
        "nsguard_admission_reviews",
        "nsguard_findings",
        "nsguard_bad_requests",
        "nsguard_preflight_duration_seconds",
        "nsguard_build_info",
    ] {
        assert!(families.contains(f), "no family {f}: {families:?}");
    }
    let ready: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == "nsguard_ready")
        .collect();
    assert_eq!(ready.len(), 1);
    assert!(
        text.contains("nsguard_ready 1\n"),
        "readiness is read at scrape: {text}"
    );
    assert!(
        text.contains(r#"nsguard_bad_requests_total{kind="too_large"} 1"#),
        "{text}"
    );
    let build = format!(
        "nsguard_build_info{{version=\"{}\",os=\"{}\",arch=\"{}\"}} 1\n",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
        std::env::consts::ARCH
    );
    assert!(text.contains(&build), "no {build} in {text}");
}

/// GitHub's anchor of a Markdown heading: lower case, spaces to dashes, punctuation dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn every_alert_links_its_runbook_section() {
    let anchors: BTreeSet<String> = OPERATING
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| anchor(l.trim_start_matches('#')))
        .collect();
    let prefix = "https://github.com/nsguard/nsguard/blob/main/docs/operating.md#";
    for rule in rules().groups.into_iter().flat_map(|g| g.rules) {
        let Some(alert) = rule.alert else { continue };
        let url = rule
            .annotations
            .get("runbook_url")
            .unwrap_or_else(|| panic!("{alert}: no runbook_url"));
        let section = url
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("{alert}: {url} is not a section of docs/operating.md"));
        assert_eq!(
            section,
            anchor(&alert),
            "{alert}: the section is named after the alert"
        );
        assert!(
            anchors.contains(section),
            "{alert}: docs/operating.md has no section #{section}"
        );
    }
}

/// The input series of the rules' unit tests are what nsguard exports: each nsguard_* series
/// has the name and, but for the scrape's own labels, the label set of a sample of the real
/// exposition; the others are the foreign series the rules read.
#[tokio::test]
async fn the_rule_tests_feed_series_shaped_as_the_exposition() {
    let text = exposition().await;
    let exported = samples(&text);
    let doc: Value = serde_saphyr::from_str(RULE_TESTS).expect("the rule tests are YAML");
    let mut seen = 0;
    for test in doc["tests"].as_array().expect("tests") {
        for input in test["input_series"].as_array().expect("input_series") {
            let series = input["series"].as_str().expect("series");
            let sample = samples(series).pop().expect("a series");
            let labels: BTreeMap<String, String> = sample
                .labels
                .into_iter()
                .filter(|(k, _)| !TARGET_LABELS.contains(&k.as_str()))
                .collect();
            if let Some((_, names)) = FOREIGN.iter().find(|(n, _)| *n == sample.name) {
                let keys: Vec<&str> = labels.keys().map(String::as_str).collect();
                let mut want = names.to_vec();
                want.sort_unstable();
                assert_eq!(keys, want, "{series}: not the labels its exporter sets");
                assert!(
                    labels
                        .get("name")
                        .is_none_or(|n| n == WEBHOOK_NAME || n.ends_with(".example.com")),
                    "{series}"
                );
            } else {
                let mut labels = labels;
                // Values are compared as nsguard writes them, so a bucket bound must be spelled
                // as the exposition spells it.
                if sample.name == "nsguard_build_info" {
                    labels.insert("version".into(), env!("CARGO_PKG_VERSION").into());
                    labels.insert("os".into(), std::env::consts::OS.into());
                    labels.insert("arch".into(), std::env::consts::ARCH.into());
                }
                assert!(
                    exported
                        .iter()
                        .any(|s| s.name == sample.name && s.labels == labels),
                    "{series}: nsguard exports no such series"
                );
            }
            seen += 1;
        }
    }
    assert!(seen >= 10, "{seen} input series");
}

fn promtool() -> std::path::PathBuf {
    let root = localcluster::workspace_root();
    let out = std::process::Command::new("bash")
        .arg(root.join("tests/promtool/build.sh"))
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("running tests/promtool/build.sh");
    assert!(out.status.success(), "tests/promtool/build.sh failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let path = std::path::PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
    assert!(path.is_file(), "tests/promtool/build.sh printed {stdout:?}");
    path
}

/// `promtool check rules` loads the rules and `promtool test rules` passes every unit test:
/// each alert fires on the series that should fire it, with its labels and annotations, and
/// stays quiet on the others.
#[test]
fn the_alert_rules_pass_promtool() {
    let dir = localcluster::workspace_root().join("deploy/prometheus");
    let promtool = promtool();
    for args in [
        &["check", "rules", "nsguard-rules.yaml"][..],
        &["test", "rules", "nsguard-rules.test.yaml"][..],
    ] {
        let out = std::process::Command::new(&promtool)
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("running promtool");
        assert!(
            out.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let tested: BTreeSet<String> = serde_saphyr::from_str::<Value>(RULE_TESTS).unwrap()["tests"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["exp_alerts"].as_array().is_some_and(|e| !e.is_empty()))
        .filter_map(|a| a["alertname"].as_str().map(String::from))
        .collect();
    for wanted in [
        "NsguardDown",
        "NsguardTargetDown",
        "NsguardApiServerFailingOpen",
        "NsguardWebhookCallsRejected",
        "NsguardRejectionRateHigh",
        "NsguardPreflightSlow",
        "NsguardFailOpen",
        "NsguardNamespaceStuckTerminating",
    ] {
        assert!(
            tested.contains(wanted),
            "no unit test fires {wanted}: {tested:?}"
        );
    }
}

/// The dashboard has a cluster and a job variable, and every selector of nsguard's series
/// narrows to both (the API server's series, of another job, to the cluster only): one
/// Grafana over several clusters, or over two installations, shows one at a time.
#[test]
fn every_selector_narrows_to_the_cluster_and_job_variables() {
    let d = dashboard();
    let vars = d["templating"]["list"].as_array().unwrap();
    for name in ["cluster", "job"] {
        let var = vars
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no {name} variable: {vars:?}"));
        assert_eq!(var["type"], "query", "{var}");
        assert_eq!(var["datasource"]["uid"], "${datasource}", "{var}");
        assert_eq!(var["includeAll"], true, "{var}");
        // All must match series without the label (a single cluster has none).
        assert_eq!(var["allValue"], ".*", "{var}");
        assert!(
            var["query"]["query"]
                .as_str()
                .unwrap()
                .starts_with("label_values(nsguard_build_info"),
            "{var}"
        );
    }
    let mut exprs = Vec::new();
    collect_exprs(&d["panels"], &mut exprs);
    assert!(!exprs.is_empty());
    for e in &exprs {
        let ast = parse(&substitute_grafana_variables(e));
        let mut vs = Vec::new();
        selectors(&ast, &mut vs);
        for v in vs {
            let name = v.name.clone().unwrap_or_default();
            let matcher = |label: &str| {
                v.matchers
                    .matchers
                    .iter()
                    .any(|m| m.name == label && matches!(m.op, MatchOp::Re(_)))
            };
            assert!(matcher("cluster"), "{e}: {name} not narrowed to $cluster");
            assert_eq!(
                matcher("job"),
                name.starts_with("nsguard_"),
                "{e}: {name}: $job is nsguard's job only"
            );
        }
        assert!(e.contains("$cluster"), "{e}");
    }
}

#[test]
fn the_dashboard_is_a_grafana_dashboard_over_a_datasource_variable() {
    let d = dashboard();
    assert_eq!(d["schemaVersion"], 39);
    assert_eq!(d["uid"], "nsguard");
    let vars = d["templating"]["list"].as_array().unwrap();
    assert!(
        vars.iter().any(|v| v["name"] == "datasource"
            && v["type"] == "datasource"
            && v["query"] == "prometheus"),
        "{vars:?}"
    );
    let mut ids = BTreeSet::new();
    for p in d["panels"].as_array().unwrap() {
        assert!(ids.insert(p["id"].as_u64().unwrap()), "panel id twice: {p}");
        if p["type"] != "row" {
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
            for t in p["targets"].as_array().unwrap() {
                assert_eq!(t["datasource"]["uid"], "${datasource}", "{}", p["title"]);
            }
        }
    }
}
