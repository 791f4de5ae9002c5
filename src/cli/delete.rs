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
use crate::cluster::teardown::NamespaceDeletion;
use crate::facts::Facts;
use crate::facts::controllers::Liveness;
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
    /// Print the plan and change nothing.
    #[arg(long, env = "NSGUARD_DRY_RUN")]
    pub dry_run: bool,
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
            | Outcome::Denied => exit::WOULD_HANG,
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
        let facts = engine.facts(ns, deadline).await;
        let report = engine.check(&facts);
        let plan = teardown::plan(&facts, &report);
        if run.out.plan.is_none() {
            if table {
                print!("{}", teardown::render(&plan));
            }
            run.out.plan = Some(plan.clone());
        }
        if args.dry_run {
            return run.finish(Outcome::Planned);
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
            match engine.gatherer().delete_namespace(&name, deadline).await? {
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
                .map(|(e, l)| {
                    let state = match l {
                        Liveness::Live(d) | Liveness::LiveHereOnly(d) => format!("live: {d}"),
                        Liveness::NotLive { reason, .. } => format!("not live: {reason}"),
                        Liveness::Unknown(why) => format!("not checked: {why}"),
                    };
                    format!("{} ({state})", e.identity)
                })
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
