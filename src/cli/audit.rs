//! `nsguard audit`: every namespace's preflight, with a diagnosis of those already Terminating;
//! a table, JSON, or PolicyReports.

use anyhow::Result;
use tokio::time::Instant;

use super::{AuditArgs, JSON_SCHEMA, Output, phase, synced_engine};
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
}

/// Runs `nsguard audit`; returns the exit code.
pub async fn audit(args: AuditArgs) -> Result<i32> {
    use futures::StreamExt;
    use std::io::IsTerminal;

    let engine = synced_engine(&args.cluster).await?;
    let deadline = Instant::now() + args.cluster.check_timeout;
    let namespaces = engine
        .gatherer()
        .list_namespaces(args.selector.as_deref(), deadline)
        .await?;
    let total = namespaces.len();
    let progress = std::io::stderr().is_terminal();
    let mut done = 0usize;
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
                }
            }
        })
        .buffer_unordered(usize::from(args.concurrency))
        .inspect(|a| {
            done += 1;
            if progress {
                // Erase the line first (ANSI EL): padding would leave the tail of a name
                // longer than the next one (names run to 63 characters).
                eprint!("\r\x1b[Kchecked {done}/{total}: {}", a.namespace);
            }
        })
        .collect()
        .await;
    if progress {
        eprintln!();
    }
    audited.sort_by(|a, b| a.namespace.cmp(&b.namespace));
    match args.format.output {
        Output::Table => print!("{}", render_audit(&audited)),
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "schema": JSON_SCHEMA,
                "namespaces": audited,
            }))?
        ),
        Output::PolicyReport => {
            // The API server refuses new objects in a Terminating namespace: those get no
            // report (the table and JSON diagnose them).
            let (terminating, live): (Vec<&Audited>, Vec<&Audited>) =
                audited.iter().partition(|a| a.diagnosis.is_some());
            for a in terminating {
                eprintln!("nsguard: no report for {}: it is Terminating", a.namespace);
            }
            let list = crate::policyreport::list(
                args.policyreport_api,
                live.into_iter().map(|a| &a.report),
                crate::policyreport::Timestamp::now(),
            );
            println!("{}", serde_json::to_string_pretty(&list)?);
        }
    }
    // Non-zero only for namespaces that would hang (or hang now): warnings, and a namespace
    // Terminating while making progress, are not errors.
    let would_hang = audited.iter().any(|a| match &a.diagnosis {
        Some(d) => !d.blockers.is_empty(),
        None => a.verdict == Verdict::WouldHang,
    });
    Ok(if would_hang {
        Verdict::WouldHang.exit_code()
    } else {
        Verdict::Clean.exit_code()
    })
}

fn render_audit(audited: &[Audited]) -> String {
    let mut out = format!(
        "{:<32} {:<12} {:<11} BLOCKERS\n",
        "NAMESPACE", "PHASE", "VERDICT"
    );
    for a in audited {
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
        out.push_str(&format!(
            "{:<32} {:<12} {:<11} {}\n",
            a.namespace,
            a.phase,
            verdict,
            if blockers.is_empty() {
                "-".to_string()
            } else {
                blockers.join(",")
            }
        ));
    }
    for a in audited {
        if let Some(d) = &a.diagnosis {
            out.push('\n');
            out.push_str(&crate::remedy::diagnose::render(d));
        }
    }
    out
}
