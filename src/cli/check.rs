//! `nsguard check` and `nsguard diagnose`: one namespace's preflight, as a table or JSON.

use anyhow::Result;
use tokio::time::Instant;

use super::{JSON_SCHEMA, NamespaceArgs, Output, phase, read_namespace, synced_engine};
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
pub async fn check(args: NamespaceArgs) -> Result<i32> {
    args.format.not_policyreport("check")?;
    let engine = synced_engine(&args.cluster).await?;
    let deadline = Instant::now() + args.cluster.check_timeout;
    let ns = read_namespace(&engine, &args.namespace, deadline).await?;
    let phase = phase(&ns);
    let report = engine.preflight(ns, deadline).await;
    match args.format.output {
        Output::Table => print!("{}", crate::render::table(&report)),
        Output::PolicyReport => args.format.not_policyreport("check")?,
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&CheckOutput {
                schema: JSON_SCHEMA,
                phase,
                verdict: report.verdict(),
                report: &report,
            })?
        ),
    }
    Ok(report.verdict().exit_code())
}

/// Runs `nsguard diagnose`; returns the exit code.
pub async fn diagnose(args: NamespaceArgs) -> Result<i32> {
    args.format.not_policyreport("diagnose")?;
    let engine = synced_engine(&args.cluster).await?;
    let deadline = Instant::now() + args.cluster.check_timeout;
    let ns = read_namespace(&engine, &args.namespace, deadline).await?;
    let facts = engine.facts(ns, deadline).await;
    let report = engine.check(&facts);
    let d = crate::remedy::diagnose::diagnose(&facts, &report);
    match args.format.output {
        Output::Table => print!("{}", crate::remedy::diagnose::render(&d)),
        Output::Json => println!("{}", serde_json::to_string_pretty(&d)?),
        Output::PolicyReport => args.format.not_policyreport("diagnose")?,
    }
    Ok(if d.blockers.is_empty() { 0 } else { 2 })
}
