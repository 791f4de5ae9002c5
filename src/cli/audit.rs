//! `nsguard audit`: every namespace's preflight, with a diagnosis of those already Terminating;
//! a table, JSON, YAML, names, or PolicyReports.

use anyhow::Result;
use tokio::time::Instant;

use super::{AuditArgs, JSON_SCHEMA, Output, exit, phase, print_document, synced_engine};
use crate::checks::report::{CheckId, Report, Verdict};

/// One namespace in an audit.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Audited {
    namespace: String,
    phase: String,
    verdict: Verdict,
    report: Report,
    #[serde(skip_serializing_if = "Option::is_none")]
    diagnosis: Option<crate::remedy::diagnose::Diagnosis>,
    /// The kinds of its objects, for PolicyReports' `resources`.
    #[serde(skip)]
    kinds: crate::output::policyreport::Kinds,
}

/// Runs `nsguard audit`; returns the exit code.
pub async fn audit(args: AuditArgs) -> Result<i32> {
    use futures::StreamExt;
    use std::io::IsTerminal;

    let engine = synced_engine(&args.cluster).await?;
    // The report API, before the audit: a cluster that serves neither fails fast.
    let report_api = match (args.output, args.policyreport_api) {
        (Output::PolicyReport, Some(api)) => Some(api),
        (Output::PolicyReport, None) => {
            Some(crate::output::policyreport::discover(engine.gatherer().client()).await?)
        }
        _ => None,
    };
    let deadline = Instant::now() + args.cluster.check_timeout;
    let namespaces = engine
        .gatherer()
        .list_namespaces(args.selector.as_deref(), deadline)
        .await?;
    // Progress on stderr, only when it is a terminal.
    let bar = if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(namespaces.len() as u64);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("checked {pos}/{len} ({elapsed}): {msg}")
        {
            bar.set_style(style);
        }
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut audited: Vec<Audited> = futures::stream::iter(namespaces)
        .map(|ns| {
            let engine = engine.clone();
            let timeout = args.cluster.check_timeout;
            async move {
                let name = ns.metadata.name.clone().unwrap_or_default();
                let phase = phase(&ns);
                let facts = engine.facts(ns, Instant::now() + timeout).await;
                let report = engine.check(&facts);
                let diagnosis = (phase == "Terminating")
                    .then(|| crate::remedy::diagnose::diagnose(&facts, &report));
                Audited {
                    namespace: name,
                    phase,
                    verdict: report.verdict(),
                    report,
                    diagnosis,
                    kinds: crate::output::policyreport::Kinds::of(&facts),
                }
            }
        })
        .buffer_unordered(usize::from(args.concurrency))
        .inspect(|a| {
            bar.inc(1);
            bar.set_message(a.namespace.clone());
        })
        .collect()
        .await;
    bar.finish_and_clear();
    audited.sort_by(|a, b| a.namespace.cmp(&b.namespace));
    match args.output {
        Output::Table => print!("{}", render_audit(&audited, false)),
        Output::Wide => print!("{}", render_audit(&audited, true)),
        Output::Name => {
            for a in audited.iter().filter(|a| code(a) == exit::WOULD_HANG) {
                println!("namespace/{}", a.namespace);
            }
        }
        // (`-o dot` is not offered for audit: the parser refuses it.)
        Output::Json | Output::Yaml | Output::Dot => print_document(
            args.output,
            &serde_json::json!({
                "schema": JSON_SCHEMA,
                "namespaces": audited,
            }),
        )?,
        Output::PolicyReport => {
            // The API server refuses new objects in a Terminating namespace: those get no
            // report (the table and JSON diagnose them).
            let (terminating, live): (Vec<&Audited>, Vec<&Audited>) =
                audited.iter().partition(|a| a.diagnosis.is_some());
            for a in terminating {
                eprintln!("nsguard: no report for {}: it is Terminating", a.namespace);
            }
            let list = crate::output::policyreport::list(
                report_api.unwrap_or_default(),
                live.into_iter().map(|a| (&a.report, &a.kinds)),
                crate::output::policyreport::Timestamp::now(),
            );
            println!("{}", serde_json::to_string_pretty(&list)?);
        }
    }
    // The worst over every namespace: would hang (or hangs now), else warnings, else clean.
    // A namespace Terminating while making progress is not a blocker.
    Ok(audited.iter().map(code).max().unwrap_or(exit::CLEAN))
}

/// One namespace's exit code: a Terminating one by its diagnosis, others by their verdict.
fn code(a: &Audited) -> i32 {
    match &a.diagnosis {
        Some(d) => super::check::diagnosis_code(d),
        None => exit::of(a.verdict),
    }
}

fn render_audit(audited: &[Audited], wide: bool) -> String {
    let mut header = vec!["NAMESPACE", "PHASE", "VERDICT", "BLOCKERS"];
    if wide {
        header.extend(["ADVISORIES", "NOT CHECKED"]);
    }
    let list = |ids: Vec<&str>| {
        if ids.is_empty() {
            "-".to_string()
        } else {
            ids.join(",")
        }
    };
    let rows = audited
        .iter()
        .map(|a| {
            let verdict = match &a.diagnosis {
                Some(d) if d.blockers.is_empty() => "terminating",
                Some(_) => "stuck",
                None => a.verdict.as_str(),
            };
            let blockers: Vec<&str> = a
                .report
                .check_ids()
                .into_iter()
                .filter(|id| a.diagnosis.is_some() || a.report.blocking().any(|f| f.check == *id))
                .map(CheckId::as_str)
                .collect();
            let mut row = vec![
                a.namespace.clone(),
                a.phase.clone(),
                verdict.to_string(),
                list(blockers),
            ];
            if wide {
                let mut advisories: Vec<&str> =
                    a.report.advisory().map(|f| f.check.as_str()).collect();
                advisories.dedup();
                row.push(list(advisories));
                row.push(a.report.not_checked.len().to_string());
            }
            row
        })
        .collect();
    let mut out = crate::output::render::grid(&header, rows);
    for a in audited {
        if let Some(d) = &a.diagnosis {
            out.push('\n');
            out.push_str(&crate::remedy::diagnose::render(d));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::report::{Finding, Severity, Subject, remedy};

    fn audited(namespace: &str, findings: Vec<Finding>, not_checked: &[&str]) -> Audited {
        let report = Report {
            namespace: namespace.into(),
            findings,
            not_checked: not_checked.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        Audited {
            namespace: namespace.into(),
            phase: "Active".into(),
            verdict: report.verdict(),
            report,
            diagnosis: None,
            kinds: Default::default(),
        }
    }

    fn finding(check: CheckId, severity: Severity) -> Finding {
        let mut f = Finding::new(check, Subject::Namespace, "found", remedy("fix", None));
        f.severity = severity;
        f
    }

    #[test]
    fn the_worst_namespace_decides_the_exit_code_and_wide_adds_columns() {
        let clean = audited("a-clean", vec![], &[]);
        let unchecked = audited("b-unchecked", vec![], &["list of x: timed out"]);
        let advisory = audited(
            "c-advisory",
            vec![finding(CheckId::FinalizersPending, Severity::Advisory)],
            &[],
        );
        let hangs = audited(
            "d-hangs",
            vec![finding(CheckId::FinalizerController, Severity::Blocking)],
            &[],
        );
        assert_eq!(code(&clean), exit::CLEAN);
        assert_eq!(code(&unchecked), exit::WARNINGS);
        assert_eq!(code(&advisory), exit::WARNINGS);
        assert_eq!(code(&hangs), exit::WOULD_HANG);

        let all = [clean, unchecked, advisory, hangs];
        let table = render_audit(&all, false);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0], "NAMESPACE     PHASE    VERDICT      BLOCKERS",
            "{table}"
        );
        assert_eq!(
            lines[4], "d-hangs       Active   would-hang   finalizer-controller",
            "{table}"
        );
        let wide = render_audit(&all, true);
        let lines: Vec<&str> = wide.lines().collect();
        assert!(
            lines[0].ends_with("BLOCKERS               ADVISORIES           NOT CHECKED"),
            "{wide}"
        );
        assert!(
            lines[2].starts_with("b-unchecked") && lines[2].ends_with(" 1"),
            "{wide}"
        );
        assert!(lines[3].contains("finalizers-pending"), "{wide}");
    }
}
