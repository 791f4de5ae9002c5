//! `nsguard delete NS`: the ordered teardown. It plans from a fresh preflight
//! ([`crate::remedy::teardown::plan`]), deletes the first wave, waits until its controllers have
//! removed their finalizers, and plans again, until nothing blocks; then it deletes the
//! namespace (through the webhook, which now allows it) and waits until it is gone. Being
//! stateless, a run interrupted anywhere continues from the cluster's state when run again.
//!
//! It only ever deletes: it never removes or edits a finalizer.

use std::io::IsTerminal;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;
use tokio::time::Instant;

use super::{
    ClusterArgs, DELETE_FORMATS, JSON_SCHEMA, Output, TargetNamespace, exit, formats,
    parse_duration, phase, print_document, synced_engine,
};
use crate::cluster::gather::Gatherer;
use crate::cluster::teardown::{NamespaceDeletion, NamespaceDryRun};
use crate::facts::Facts;
use crate::remedy::teardown::{self, Plan, Wave};

/// At most this many preflights (one per wave, one for the namespace, retries of a denial).
const MAX_ROUNDS: usize = 8;

/// How often deletions are polled.
const POLL: std::time::Duration = std::time::Duration::from_millis(500);

/// `nsguard delete NS`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The namespace.
    #[command(flatten)]
    pub namespace: TargetNamespace,
    /// Print the plan and change nothing (the API server is still asked whether every delete
    /// of the plan would be allowed).
    #[arg(long, env = "NSGUARD_DRY_RUN")]
    pub dry_run: bool,
    /// Do not ask for confirmation before deleting (required when not run from a terminal).
    #[arg(short = 'y', long, env = "NSGUARD_YES")]
    pub yes: bool,
    /// Output format: table (the plan and progress), json or yaml (one document at the end,
    /// for machines).
    #[arg(short = 'o', long, env = "NSGUARD_OUTPUT", default_value = "table", value_parser = formats(DELETE_FORMATS))]
    pub output: Output,
    /// How long one wave may take until its objects are gone (their controllers have removed
    /// their finalizers).
    #[arg(long, env = "NSGUARD_WAVE_TIMEOUT", default_value = "2m", value_parser = parse_duration)]
    pub wave_timeout: std::time::Duration,
    /// How long the namespace may take to disappear once deleted.
    #[arg(long, env = "NSGUARD_NAMESPACE_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub namespace_timeout: std::time::Duration,
    /// Cluster access.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Outcome {
    /// `--dry-run`: the plan only.
    Planned,
    /// The namespace is gone.
    Deleted,
    /// A blocker that ordering cannot fix.
    Stopped,
    /// A wave's objects did not go within `--wave-timeout`.
    WaveTimeout,
    /// The namespace did not disappear within `--namespace-timeout`.
    NamespaceTimeout,
    /// The API server refused to delete the namespace.
    Denied,
    /// Before anything was deleted: a delete of the plan would be refused (RBAC, an admission
    /// webhook or policy other than nsguard's), or the run was not confirmed.
    Refused,
}

/// A wave that ran.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct WaveRun {
    kind: teardown::WaveKind,
    resources: Vec<String>,
    /// DELETE calls issued (objects already being deleted are only waited for).
    deleted: usize,
    seconds: f64,
}

/// An object that did not go with its finalizers.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Left {
    resource: String,
    name: String,
    finalizers: Vec<String>,
    /// Who should have removed them, and their liveness as last seen.
    expected: Vec<String>,
}

/// The document `delete -o json` prints.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct DeleteOutput {
    schema: &'static str,
    namespace: String,
    dry_run: bool,
    outcome: Outcome,
    /// The plan as first made.
    #[serde(skip_serializing_if = "Option::is_none")]
    plan: Option<Plan>,
    waves: Vec<WaveRun>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    remaining: Vec<Left>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    diagnosis: Option<crate::remedy::diagnose::Diagnosis>,
}

struct Run {
    out: DeleteOutput,
    output: Output,
    table: bool,
    progress: bool,
}

impl Run {
    /// A line of the narrative (table output only).
    fn say(&self, line: &str) {
        if self.table {
            println!("{line}");
        }
    }

    fn finish(mut self, outcome: Outcome) -> Result<i32> {
        self.out.outcome = outcome;
        if !self.table {
            print_document(self.output, &self.out)?;
        }
        Ok(match outcome {
            Outcome::Planned => match &self.out.plan {
                Some(p) if !p.stop.is_empty() => exit::WOULD_HANG,
                Some(p) if !p.not_checked.is_empty() => exit::WARNINGS,
                _ => exit::CLEAN,
            },
            Outcome::Deleted => exit::CLEAN,
            Outcome::Stopped
            | Outcome::WaveTimeout
            | Outcome::NamespaceTimeout
            | Outcome::Denied
            | Outcome::Refused => exit::WOULD_HANG,
        })
    }

    /// A bar on stderr counting a wave's objects as they go, or a hidden one when stderr is
    /// not a terminal or the output is for machines.
    fn wave_bar(&self, wave: &Wave) -> indicatif::ProgressBar {
        if !self.progress {
            return indicatif::ProgressBar::hidden();
        }
        let total: usize = wave.resources.iter().map(|r| r.objects.len()).sum();
        let bar = indicatif::ProgressBar::new(total as u64);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "  [{bar:30}] {pos}/{len} gone, {msg} ({elapsed})",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        bar
    }

    /// A progress spinner on stderr, or a hidden one when stderr is not a terminal or the
    /// output is for machines.
    fn spinner(&self) -> indicatif::ProgressBar {
        if !self.progress {
            return indicatif::ProgressBar::hidden();
        }
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        bar
    }
}

/// Runs `nsguard delete`; returns the exit code: 0 deleted (or, with `--dry-run`, a plan that
/// can run), 3 with `--dry-run`, a plan that can run although something was not checked, 4
/// stopped (a blocker ordering cannot fix, a wave or the namespace past its deadline, a
/// denial).
pub async fn delete(args: DeleteArgs) -> Result<i32> {
    let engine = synced_engine(&args.cluster).await?;
    let name = args.namespace.clone();
    let table = args.output == Output::Table;
    let mut run = Run {
        out: DeleteOutput {
            schema: JSON_SCHEMA,
            namespace: name.clone(),
            dry_run: args.dry_run,
            outcome: Outcome::Planned,
            plan: None,
            waves: Vec::new(),
            remaining: Vec::new(),
            message: None,
            diagnosis: None,
        },
        output: args.output,
        table,
        progress: table && std::io::stderr().is_terminal(),
    };
    // The namespace as first read: every later DELETE of it must be of that one (uid).
    let mut ns_uid: Option<String> = None;
    // Types whose list and delete the API server said are allowed.
    let mut authorized = std::collections::BTreeSet::new();
    for round in 0..MAX_ROUNDS {
        let deadline = Instant::now() + args.cluster.check_timeout;
        let Some(ns) = engine.gatherer().read_namespace(&name, deadline).await? else {
            if round == 0 {
                bail!("namespace {name} not found");
            }
            run.say(&format!("namespace {name} is gone"));
            return run.finish(Outcome::Deleted);
        };
        let terminating = phase(&ns) == "Terminating";
        if round == 0 {
            ns_uid = ns.metadata.uid.clone();
        }
        let facts = engine.facts(ns, deadline).await;
        let report = engine.check(&facts);
        let plan = teardown::plan(&facts, &report);
        if run.out.plan.is_none() {
            if table {
                print!("{}", teardown::render(&plan));
            }
            run.out.plan = Some(plan.clone());
        }
        // Before the first delete of each type, and of the namespace: would the API server let
        // every one of them through? Anything refused stops the run before anything goes.
        if let Some(refusal) = authorize(
            &engine,
            &name,
            &plan,
            &mut authorized,
            (!terminating).then(|| ns_uid.clone()).flatten(),
            args.cluster.check_timeout,
        )
        .await?
        {
            if table {
                eprintln!("nsguard delete: {refusal}");
            }
            run.out.message = Some(refusal);
            return run.finish(Outcome::Refused);
        }
        if args.dry_run {
            return run.finish(Outcome::Planned);
        }
        if round == 0 && !args.yes && !confirm(&name, &plan, table)? {
            run.out.message = Some("not confirmed; nothing was deleted".into());
            return run.finish(Outcome::Refused);
        }
        if !plan.stop.is_empty() {
            let message = crate::output::render::denial_message(&report);
            if table {
                eprintln!(
                    "nsguard delete: stopped: {} blocker{} that deleting in order cannot fix; nothing was deleted in this round.\n{message}",
                    plan.stop.len(),
                    if plan.stop.len() == 1 { "" } else { "s" }
                );
            }
            run.out.message = Some(message);
            return run.finish(Outcome::Stopped);
        }
        if let Some(wave) = plan.waves.first() {
            let n = run.out.waves.len() + 1;
            run.say(&format!(
                "wave {n}: deleting {}: {}",
                wave.kind.describe(),
                wave.resources
                    .iter()
                    .map(|r| r.resource.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            let started = Instant::now();
            let (deleted, left) = run_wave(
                engine.gatherer(),
                args.cluster.check_timeout,
                &name,
                wave,
                &facts,
                args.wave_timeout,
                &run.wave_bar(wave),
            )
            .await?;
            run.out.waves.push(WaveRun {
                kind: wave.kind,
                resources: wave.resources.iter().map(|r| r.resource.clone()).collect(),
                deleted,
                seconds: started.elapsed().as_secs_f64(),
            });
            if !left.is_empty() {
                if table {
                    eprintln!(
                        "nsguard delete: wave {n} did not finish within {:?}: {} object{} still there; nsguard never removes finalizers:",
                        args.wave_timeout,
                        left.len(),
                        if left.len() == 1 { "" } else { "s" }
                    );
                    for l in &left {
                        eprintln!(
                            "  {} {}: finalizers [{}]; expected to remove them: {}",
                            l.resource,
                            l.name,
                            l.finalizers.join(", "),
                            if l.expected.is_empty() {
                                "nobody nsguard knows of".to_string()
                            } else {
                                l.expected.join("; ")
                            }
                        );
                    }
                    eprintln!(
                        "Check those controllers (logs, events); run nsguard delete {name} again to continue from here."
                    );
                }
                run.out.remaining = left;
                return run.finish(Outcome::WaveTimeout);
            }
            run.say(&format!(
                "wave {n}: done in {:.1}s ({deleted} deleted)",
                started.elapsed().as_secs_f64()
            ));
            continue;
        }
        // Nothing blocks: the namespace, through the webhook.
        if !terminating {
            let deadline = Instant::now() + args.cluster.check_timeout;
            match engine
                .gatherer()
                .delete_namespace(&name, ns_uid.clone(), deadline)
                .await?
            {
                NamespaceDeletion::Started => run.say(&format!("deleting namespace {name}")),
                NamespaceDeletion::AlreadyGoing => {}
                NamespaceDeletion::Denied(message) => {
                    // The webhook's watches may lag this client's view by a moment.
                    if round + 1 < MAX_ROUNDS {
                        run.say("the webhook denied the deletion; checking again");
                        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                        continue;
                    }
                    if table {
                        eprintln!("nsguard delete: {message}");
                    }
                    run.out.message = Some(message);
                    return run.finish(Outcome::Denied);
                }
            }
        }
        return wait_namespace_gone(run, &engine, &name, args.namespace_timeout).await;
    }
    if table {
        eprintln!("nsguard delete: gave up after {MAX_ROUNDS} rounds; run it again to continue");
    }
    run.finish(Outcome::Stopped)
}

/// Asks the API server whether the plan's deletes would be allowed: `list` and `delete` of
/// every type of its waves not yet asked about (SelfSubjectAccessReviews) and, with `uid`
/// (the namespace is not yet Terminating), a server dry run of the namespace's DELETE, where
/// nsguard's own refusal is the expected one. Returns why the run must stop, if it must.
async fn authorize(
    engine: &crate::engine::Engine,
    name: &str,
    plan: &Plan,
    authorized: &mut std::collections::BTreeSet<String>,
    uid: Option<String>,
    call_timeout: std::time::Duration,
) -> Result<Option<String>> {
    let types: Vec<crate::facts::ResourceType> = plan
        .waves
        .iter()
        .flat_map(|w| &w.resources)
        .filter(|r| !authorized.contains(&r.resource))
        .map(|r| r.resource_type.clone())
        .collect();
    let deadline = Instant::now() + call_timeout;
    let missing = engine
        .gatherer()
        .authorize_teardown(name, &types, deadline)
        .await
        .context("asking the API server what this user may delete")?;
    if !missing.is_empty() {
        let lines: Vec<String> = missing
            .iter()
            .map(|m| {
                let why = if m.reason.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", m.reason)
                };
                format!("  may not {} {}{why}", m.verb, m.resource)
            })
            .collect();
        return Ok(Some(format!(
            "stopped before deleting anything: the API server would refuse {} of the teardown's calls:\n{}",
            missing.len(),
            lines.join("\n")
        )));
    }
    authorized.extend(types.iter().map(|t| t.group_resource()));
    if let Some(uid) = uid {
        let deadline = Instant::now() + call_timeout;
        match engine
            .gatherer()
            .dry_run_delete_namespace(name, Some(uid), deadline)
            .await
            .context("a server dry run of the namespace's DELETE")?
        {
            NamespaceDryRun::Allowed | NamespaceDryRun::RefusedByNsguard(_) => {}
            NamespaceDryRun::Refused(message) => {
                return Ok(Some(format!(
                    "stopped before deleting anything: the API server would refuse the namespace's own DELETE (server dry run): {message}"
                )));
            }
        }
    }
    Ok(None)
}

/// Lists what the run will delete and asks for a yes on the terminal. Without a terminal there
/// is nobody to ask: `--yes` is required.
fn confirm(name: &str, plan: &Plan, table: bool) -> Result<bool> {
    use std::io::{BufRead, Write};
    if !std::io::stdin().is_terminal() {
        bail!(
            "nsguard delete {name} deletes objects and the namespace: confirm with --yes (no terminal to ask on)"
        );
    }
    let mut err = std::io::stderr().lock();
    if !table {
        // The plan was not printed (machine output): list what goes before asking.
        for (i, w) in plan.waves.iter().enumerate() {
            for r in &w.resources {
                writeln!(
                    err,
                    "wave {}: {} {} object(s)",
                    i + 1,
                    r.resource,
                    r.objects.len()
                )?;
            }
        }
    }
    write!(
        err,
        "Delete {} wave(s) of objects, then namespace {name} with everything else in it? [y/N] ",
        plan.waves.len()
    )?;
    err.flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

/// Deletes every object of the wave's types and waits until they are gone or `timeout`
/// passes. Returns the DELETE calls issued and what is left.
async fn run_wave(
    gatherer: &Gatherer,
    call_deadline: std::time::Duration,
    ns: &str,
    wave: &Wave,
    facts: &Facts,
    timeout: std::time::Duration,
    bar: &indicatif::ProgressBar,
) -> Result<(usize, Vec<Left>)> {
    let until = Instant::now() + timeout;
    let resources: Vec<(String, crate::facts::ResourceType)> = wave
        .resources
        .iter()
        .map(|r| (r.resource.clone(), r.resource_type.clone()))
        .collect();
    let total: usize = wave.resources.iter().map(|r| r.objects.len()).sum();
    let mut deleted = 0;
    loop {
        let (n, remaining) = gatherer
            .delete_pass(ns, &resources, Instant::now() + call_deadline)
            .await
            .with_context(|| format!("deleting a wave in {ns}"))?;
        deleted += n;
        let left: Vec<Left> = remaining
            .into_iter()
            .map(|r| Left {
                expected: expected(facts, &r.resource),
                resource: r.resource,
                name: r.name,
                finalizers: r.finalizers,
            })
            .collect();
        // Objects created since the plan count too: the length grows with them.
        let gone = total.saturating_sub(left.len());
        bar.set_length((gone + left.len()) as u64);
        bar.set_position(gone as u64);
        bar.set_message(format!("{} left", left.len()));
        if left.is_empty() || Instant::now() >= until {
            bar.finish_and_clear();
            return Ok((deleted, left));
        }
        tokio::time::sleep(POLL.min(until.saturating_duration_since(Instant::now()))).await;
    }
}

/// The controllers expected to remove the finalizers of `gr`, with their liveness.
fn expected(facts: &Facts, gr: &str) -> Vec<String> {
    facts
        .namespace
        .controllers
        .get(gr)
        .map(|rc| {
            rc.controllers
                .iter()
                .map(|(e, l)| format!("{} ({l})", e.identity))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until the namespace is gone; past `timeout`, prints what still holds it (the
/// `diagnose` view).
async fn wait_namespace_gone(
    mut run: Run,
    engine: &crate::engine::Engine,
    name: &str,
    timeout: std::time::Duration,
) -> Result<i32> {
    let started = Instant::now();
    let until = started + timeout;
    let spinner = run.spinner();
    loop {
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        let ns = engine.gatherer().read_namespace(name, deadline).await?;
        let Some(ns) = ns else {
            spinner.finish_and_clear();
            run.say(&format!(
                "namespace {name} is gone ({:.1}s)",
                started.elapsed().as_secs_f64()
            ));
            return run.finish(Outcome::Deleted);
        };
        if Instant::now() >= until {
            spinner.finish_and_clear();
            let deadline = Instant::now() + std::time::Duration::from_secs(10);
            let facts = engine.facts(ns, deadline).await;
            let report = engine.check(&facts);
            let d = crate::remedy::diagnose::diagnose(&facts, &report);
            if run.table {
                eprintln!(
                    "nsguard delete: namespace {name} is still there after {timeout:?}; what holds it:"
                );
                eprint!("{}", crate::remedy::diagnose::render(&d));
            }
            run.out.diagnosis = Some(d);
            return run.finish(Outcome::NamespaceTimeout);
        }
        spinner.set_message(format!(
            "waiting for namespace {name} to go: {:.0}s",
            started.elapsed().as_secs_f64()
        ));
        tokio::time::sleep(POLL).await;
    }
}
