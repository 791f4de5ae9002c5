//! `nsguard check` and `nsguard diagnose`: one namespace's preflight, as a table, JSON, YAML,
//! names or a Graphviz digraph.

use anyhow::Result;
use tokio::time::Instant;

use super::{
    CheckArgs, DiagnoseArgs, JSON_SCHEMA, Output, exit, phase, print_document, read_namespace,
    synced_engine,
};
use crate::checks::report::{Report, Verdict};

/// The JSON document `check -o json` prints; `audit -o json` prints one per namespace.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CheckOutput<'a> {
    /// Schema version of this document.
    pub(super) schema: &'static str,
    /// The namespace's phase.
    pub(super) phase: String,
    pub(super) verdict: Verdict,
    #[serde(flatten)]
    pub(super) report: &'a Report,
}

/// Runs `nsguard check`; returns the exit code.
pub async fn check(args: CheckArgs) -> Result<i32> {
    let engine = synced_engine(&args.cluster).await?;
    let deadline = Instant::now() + args.cluster.check_timeout;
    let ns = read_namespace(&engine, &args.namespace, deadline).await?;
    let phase = phase(&ns);
    let report = engine.preflight(ns.clone(), deadline).await;
    match args.output {
        Output::Table => print!("{}", crate::output::render::table(&report, false)),
        Output::Wide => print!("{}", crate::output::render::table(&report, true)),
        Output::Name => {
            for name in crate::output::render::blocking_object_names(&report) {
                println!("{name}");
            }
        }
        Output::Dot => {
            // The chain's finalizers and controllers come from the facts; the findings from
            // the preflight's (confirmed) report.
            let facts = engine
                .facts(ns, Instant::now() + args.cluster.check_timeout)
                .await;
            let blocking: Vec<_> = report.blocking().cloned().collect();
            print!(
                "{}",
                crate::output::render::dot(&report.namespace, &phase, &blocking, Some(&facts))
            );
        }
        Output::Json | Output::Yaml | Output::PolicyReport => print_document(
            args.output,
            &CheckOutput {
                schema: JSON_SCHEMA,
                phase,
                verdict: report.verdict(),
                report: &report,
            },
        )?,
    }
    Ok(exit::of(report.verdict()))
}

/// The exit code of a diagnosis: blockers, else warnings (advisories, or something not
/// checked), else clean.
pub(super) fn diagnosis_code(d: &crate::remedy::diagnose::Diagnosis) -> i32 {
    if !d.blockers.is_empty() {
        exit::WOULD_HANG
    } else if !d.advisories.is_empty() || !d.not_checked.is_empty() {
        exit::WARNINGS
    } else {
        exit::CLEAN
    }
}

/// Runs `nsguard diagnose`; returns the exit code.
pub async fn diagnose(args: DiagnoseArgs) -> Result<i32> {
    let engine = synced_engine(&args.cluster).await?;
    let deadline = Instant::now() + args.cluster.check_timeout;
    let ns = read_namespace(&engine, &args.namespace, deadline).await?;
    let facts = engine.facts(ns, deadline).await;
    let report = engine.check(&facts);
    let d = crate::remedy::diagnose::diagnose(&facts, &report);
    match args.output {
        Output::Dot => print!(
            "{}",
            crate::output::render::dot(&d.namespace, &d.phase, &d.blockers, Some(&facts))
        ),
        Output::Json | Output::Yaml => print_document(args.output, &d)?,
        _ => print!("{}", crate::remedy::diagnose::render(&d)),
    }
    Ok(diagnosis_code(&d))
}
