//! The command line: `serve`, `check`, `audit`, `diagnose`, `delete`, `config`, `certs`,
//! `completion`.
//! Every flag has an `NSGUARD_*` variable.

mod audit;
mod certs;
mod check;
pub mod complete;
mod config;
mod delete;
pub mod log;
mod rbac;

pub use audit::audit;
pub use certs::certs;
pub use check::{check, diagnose};
pub use config::{ConfigArgs, ConfigCommand, config};
pub use delete::{DeleteArgs, delete};
pub use rbac::{RbacArgs, rbac};

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use k8s_openapi::api::core::v1::Namespace;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tokio::time::Instant;

use crate::checks::Setting;
use crate::checks::report::CheckId;
use crate::cluster::gather::Limits;
use crate::cluster::gather::{ContentSource, Gatherer};
use crate::config::{CONFIG_MAP_KEY, Effective, InitialSync, Layer, Origin};
use crate::engine::Engine;
use crate::facts::controllers::{Declarations, Identity};
use crate::output::policy::Mode;

/// nsguard: stops namespace deletions that would hang in Terminating.
#[derive(Debug, Parser)]
#[command(name = "nsguard", version, about)]
pub struct Cli {
    /// Log lines on stderr: text (for people) or json (one object a line, for log
    /// collectors). The level comes from NSGUARD_LOG (default info).
    #[arg(
        long,
        global = true,
        env = "NSGUARD_LOG_FORMAT",
        value_enum,
        default_value = "text",
        // After each command's own flags.
        display_order = 900
    )]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The command line's definition as nsguard prints it: the shared flags' help speaks of
    /// what the CLI does, and `serve` gets its own wording for the few that differ there.
    pub fn definition() -> clap::Command {
        <Self as clap::CommandFactory>::command().mut_subcommand("serve", |serve| {
            serve
                .mut_arg("config", |a| {
                    a.help(
                        "The configuration file (YAML; see docs/configuration.md), read again \
                         when it changes (default: the built-in defaults)",
                    )
                })
                .mut_arg("max_api_calls", |a| {
                    a.help(
                        "API calls in flight at once over every preflight. A call over the \
                         bound is not made: what it would have read is \"not checked\" and the \
                         review fails open with a warning (never a queue past the deadline; the \
                         live index makes such calls rare)",
                    )
                })
                // `serve` reads the file the chart mounts, never the ConfigMap by name.
                .mut_arg("config_map", |a| a.hide(true))
        })
    }

    /// Parses `args` (the first is the program's name) against [`Cli::definition`] named
    /// `bin_name`; a usage error comes back formatted with the usage, for `exit()`.
    pub fn parse_as<I, T>(bin_name: &str, args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::FromArgMatches;
        let mut command = Self::definition().bin_name(bin_name);
        let matches = command.try_get_matches_from_mut(args)?;
        Self::from_arg_matches(&matches).map_err(|e| {
            // The usage of the subcommand the error is about (`nsguard check ...`).
            match matches
                .subcommand_name()
                .and_then(|name| command.find_subcommand_mut(name))
            {
                Some(sub) => e.format(sub),
                None => e.format(&mut command),
            }
        })
    }
}

/// How log lines are written (`--log-format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object a line (timestamp, level, target, fields).
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the admission webhook.
    Serve(Box<ServeArgs>),
    /// Run the preflight for one namespace and print what would block its deletion.
    ///
    /// Exit status: 0 the deletion would complete; 3 warnings only (advisory findings, or
    /// something was not checked); 4 it would hang; 1 nsguard could not run (cluster
    /// unreachable, bad kubeconfig or context, no such namespace); 2 usage error.
    #[command(after_help = EXIT_CODES)]
    Check(CheckArgs),
    /// Run the preflight for every namespace (or those selected): a summary, then a
    /// diagnosis of each namespace already Terminating.
    ///
    /// Exit status: 0 none would hang; 3 warnings only (in any namespace, or something was
    /// not checked); 4 some would hang or are stuck; 1 nsguard could not run; 2 usage error.
    #[command(after_help = EXIT_CODES)]
    Audit(AuditArgs),
    /// Explain why a Terminating namespace is stuck and print the remedies in a safe order,
    /// each with its risk. Changes nothing.
    ///
    /// Exit status: 0 nothing blocks it; 3 warnings only (advisory findings, or something was
    /// not checked); 4 blockers found; 1 nsguard could not run; 2 usage error.
    #[command(after_help = EXIT_CODES)]
    Diagnose(DiagnoseArgs),
    /// Delete a namespace in an order that lets it finish: custom resources whose controllers
    /// run in it first, then objects its hosted webhooks and conversion backends serve, then
    /// the namespace. Never removes a finalizer. `--dry-run` prints the plan only.
    ///
    /// Exit status: 0 deleted (dry run: the plan can run); 3 dry run: the plan can run but
    /// something was not checked; 4 stopped, with the reason (a blocker ordering cannot fix,
    /// a wave or the namespace past its deadline, a denial); 1 nsguard could not run; 2 usage
    /// error.
    #[command(after_help = EXIT_CODES)]
    Delete(DeleteArgs),
    /// Validate the configuration, or show the one in effect with where each value comes
    /// from (default, file, configmap, flag).
    Config(ConfigArgs),
    /// Print the ClusterRole nsguard needs on this cluster (`--no-secrets`: every type this
    /// cluster serves but Secrets, for installs that do not grant `*`).
    Rbac(RbacArgs),
    /// Write a CA and a serving certificate for the webhook and print the caBundle.
    Certs(CertsArgs),
    /// Print a shell completion script: `source <(nsguard completion bash)`.
    Completion(CompletionArgs),
}

/// The exit status of `check`, `audit`, `diagnose` and `delete`.
pub mod exit {
    use crate::checks::report::Verdict;

    /// Nothing blocks, nothing to warn about.
    pub const CLEAN: i32 = 0;
    /// nsguard could not run: the cluster is unreachable, the kubeconfig or context is bad,
    /// the namespace does not exist.
    pub const ERROR: i32 = 1;
    /// A usage error (clap's own code): an unknown flag, a bad value.
    pub const USAGE: i32 = 2;
    /// Warnings only: advisory findings, or something was not checked.
    pub const WARNINGS: i32 = 3;
    /// The deletion would hang (blockers found; `delete`: stopped with a reason).
    pub const WOULD_HANG: i32 = 4;

    /// The exit status for a preflight's verdict.
    pub fn of(verdict: Verdict) -> i32 {
        match verdict {
            Verdict::Clean => CLEAN,
            Verdict::Warnings => WARNINGS,
            Verdict::WouldHang => WOULD_HANG,
        }
    }
}

/// The exit codes, as `--help` lists them under each command that reads the cluster.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  clean: the deletion would complete (delete: done)
  1  nsguard could not run (cluster unreachable, bad kubeconfig or context, no such namespace)
  2  usage error
  3  warnings only (advisory findings, or something was not checked)
  4  would hang: blockers found (delete: stopped, with the reason)";

/// Flags shared by everything that reads the cluster, listed after each command's own under
/// "Cluster access" and "Configuration".
#[derive(Debug, Args)]
#[command(next_help_heading = "Cluster access")]
pub struct ClusterArgs {
    /// Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, then in-cluster).
    #[arg(long, env = "NSGUARD_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current context), as kubectl's --context.
    #[arg(long, env = "NSGUARD_CONTEXT")]
    pub context: Option<String>,
    /// Upper bound for one preflight.
    #[arg(long, env = "NSGUARD_CHECK_TIMEOUT", default_value = "8s", value_parser = parse_duration)]
    pub check_timeout: Duration,
    /// Upper bound for one API call.
    #[arg(long, env = "NSGUARD_CALL_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub call_timeout: Duration,
    /// Lists in flight at once for one namespace.
    #[arg(long, env = "NSGUARD_LIST_CONCURRENCY", default_value_t = 16)]
    pub list_concurrency: usize,
    /// API calls in flight at once. A call over the bound is not made: what it would have
    /// read is reported as not checked.
    #[arg(long, env = "NSGUARD_MAX_API_CALLS", default_value_t = 64)]
    pub max_api_calls: usize,
    /// The configuration file (YAML; see docs/configuration.md). Without it, the one in the
    /// cluster's ConfigMap (--config-map) is read.
    #[arg(help_heading = "Configuration", long, env = "NSGUARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// The ConfigMap that holds nsguard's configuration, NAMESPACE/NAME, read when there is
    /// no --config (the installed webhook's, so that checks agree with it).
    #[arg(help_heading = "Configuration", long, env = "NSGUARD_CONFIG_MAP", default_value = crate::config::DEFAULT_CONFIG_MAP, value_parser = parse_config_map)]
    pub config_map: (String, String),
    /// A check's severity: ID=block|warn|off (repeatable; comma-separated in the variable).
    /// Overrides the configuration's `checks`, check by check.
    #[arg(help_heading = "Configuration", long = "check", env = "NSGUARD_CHECKS", value_delimiter = ',', value_parser = parse_check_setting)]
    pub checks: Vec<(CheckId, Setting)>,
    /// How long an object may be deleting with finalizers before finalizer-stuck reports it
    /// (default 5m).
    #[arg(help_heading = "Configuration", long, env = "NSGUARD_FINALIZER_STUCK_AFTER", value_parser = parse_duration)]
    pub finalizer_stuck_after: Option<Duration>,
    /// The controller that removes a type's (or a finalizer's) finalizers, for controllers
    /// RBAC does not show: RESOURCE.GROUP=NAMESPACE/SERVICEACCOUNT or
    /// FINALIZER=NAMESPACE/SERVICEACCOUNT (repeatable; `;`-separated in the variable).
    #[arg(help_heading = "Configuration", long = "finalizer-controller", env = "NSGUARD_FINALIZER_CONTROLLERS", value_delimiter = ';', value_parser = Declarations::parse_flag)]
    pub finalizer_controllers: Vec<(String, Vec<Identity>)>,
    /// How long an APIService that was Available may be unavailable before
    /// apiservice-unavailable blocks (a warning until then; default 30s).
    #[arg(help_heading = "Configuration", long, env = "NSGUARD_APISERVICE_GRACE", value_parser = parse_duration)]
    pub apiservice_grace: Option<Duration>,
    /// How long a webhook's Service may have no ready endpoints before
    /// webhook-backend-unavailable blocks (a warning until then; default 30s).
    #[arg(help_heading = "Configuration", long, env = "NSGUARD_BACKEND_GRACE", value_parser = parse_duration)]
    pub backend_grace: Option<Duration>,
    /// A namespaced type nsguard never lists nor watches, as RESOURCE or RESOURCE.GROUP
    /// (`secrets`: a ClusterRole without Secrets, manifests/overlays/no-secrets); every report
    /// then says it was not checked (repeatable; comma-separated in the variable). Replaces
    /// the configuration's `skip_resources`.
    #[arg(help_heading = "Configuration", long = "skip-resource", env = "NSGUARD_SKIP_RESOURCES", value_delimiter = ',', value_parser = parse_skip_resource)]
    pub skip_resources: Vec<String>,
}

/// `nsguard completion`.
#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Writes the completion script for `shell` to `out`, for the binary named `name` (`nsguard`,
/// or `kubectl-nsguard` as a plugin).
pub fn completion(shell: clap_complete::Shell, name: &str, out: &mut dyn std::io::Write) {
    let mut command = Cli::definition();
    clap_complete::generate(shell, &mut command, name, out);
}

/// `nsguard serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// HTTPS listener for `POST /validate`.
    #[arg(long, env = "NSGUARD_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// Plain-HTTP admin listener: /livez, /readyz, /metrics.
    #[arg(long, env = "NSGUARD_ADMIN_LISTEN", default_value = "0.0.0.0:8080")]
    pub admin_listen: SocketAddr,
    /// Serving certificate (PEM); re-read when it changes.
    #[arg(long, env = "NSGUARD_TLS_CERT", default_value = "certs/tls.crt")]
    pub tls_cert: PathBuf,
    /// Serving key (PEM).
    #[arg(long, env = "NSGUARD_TLS_KEY", default_value = "certs/tls.key")]
    pub tls_key: PathBuf,
    /// Serve only clients with a certificate signed by a CA in this PEM file: the API server,
    /// configured with a client certificate for webhooks (AdmissionConfiguration kubeconfig).
    #[arg(long, env = "NSGUARD_CLIENT_CA_FILE")]
    pub client_ca_file: Option<PathBuf>,
    /// How often the certificate files are checked for changes.
    #[arg(long, env = "NSGUARD_TLS_RELOAD_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub tls_reload_interval: Duration,
    /// enforce: deny deletions that would hang; warn: allow with warnings; audit: allow and
    /// record (default enforce). Overrides the configuration's `mode`.
    #[arg(long, env = "NSGUARD_MODE", value_enum)]
    pub mode: Option<Mode>,
    /// Members of this group may delete despite blockers, with a warning (repeatable).
    /// Replaces the configuration's `bypass_groups`.
    #[arg(
        long = "bypass-group",
        env = "NSGUARD_BYPASS_GROUPS",
        value_delimiter = ','
    )]
    pub bypass_groups: Vec<String>,
    /// nsguard's own namespace, whose deletion is never checked.
    #[arg(long, env = "NSGUARD_OWN_NAMESPACE", default_value = "nsguard-system")]
    pub own_namespace: String,
    /// Warnings per response before "and N more".
    #[arg(long, env = "NSGUARD_MAX_WARNINGS", default_value_t = 8)]
    pub max_warnings: usize,
    /// The mode the installation intends (the chart's and the manifests' `mode`), exported as
    /// `nsguard_config_expected_mode`: an alert fires when the mode in force differs.
    #[arg(long, env = "NSGUARD_EXPECTED_MODE", value_enum)]
    pub expected_mode: Option<crate::output::policy::Mode>,
    /// Reviews decided at once; a review over it waits for a slot for at most half of its
    /// remaining deadline, then fails open with a warning (never a queue past the deadline).
    #[arg(long, env = "NSGUARD_MAX_CONCURRENT_REVIEWS", default_value_t = 64)]
    pub max_concurrent_reviews: usize,
    /// Namespace DELETE reviews a second from one client address after a burst of
    /// --peer-burst; a review over it is allowed unchecked with a warning (fail-open). Clients
    /// with a certificate verified against --client-ca-file are exempt. 0: no limit.
    #[arg(long, env = "NSGUARD_PEER_RATE_LIMIT", default_value_t = 100)]
    pub peer_rate_limit: u32,
    /// Reviews one client address may send at once before --peer-rate-limit applies: enough
    /// for the API server's deletion storms. 0: no limit.
    #[arg(long, env = "NSGUARD_PEER_BURST", default_value_t = 400)]
    pub peer_burst: u32,
    /// On SIGTERM, how long to keep serving while not ready before draining.
    #[arg(long, env = "NSGUARD_SHUTDOWN_DELAY", default_value = "5s", value_parser = parse_duration)]
    pub shutdown_delay: Duration,
    /// How long an indexed type may go without the API server confirming its watch (an event
    /// or a bookmark; every watch gets one two seconds before its 100 s timeout) before reviews
    /// stop reading it from the index and list it instead: a silent watch is caught within it.
    #[arg(long, env = "NSGUARD_INDEX_MAX_STALENESS", default_value = "2m", value_parser = parse_duration)]
    pub index_max_staleness: Duration,
    /// How often the configuration file (--config) is read again; a changed, valid file is
    /// put in force, an invalid one is reported and the configuration in force stays.
    #[arg(long, env = "NSGUARD_CONFIG_RELOAD_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub config_reload_interval: Duration,
    /// Follow every Terminating namespace in the background: metrics on every replica, a
    /// Warning Event by the leader when what holds it changes (docs/operating.md).
    #[arg(long, env = "NSGUARD_WATCH_TERMINATING", default_value_t = true, action = clap::ArgAction::Set)]
    pub watch_terminating: bool,
    /// How often the background watch judges each Terminating namespace again (also at once
    /// when the namespace object changes).
    #[arg(long, env = "NSGUARD_WATCH_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub watch_interval: Duration,
    /// At most this many Terminating namespaces get series (the longest Terminating first);
    /// the others are counted in nsguard_namespace_series_dropped_total.
    #[arg(long, env = "NSGUARD_WATCH_MAX_NAMESPACES", default_value_t = 500)]
    pub watch_max_namespaces: usize,
    /// The leader Lease's duration (Lease `nsguard` in --own-namespace): a leader that stops
    /// renewing it is replaced after at most this long.
    #[arg(long, env = "NSGUARD_LEADER_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub leader_lease_duration: Duration,
    /// Certificates managed in process (--manage-certificates).
    #[command(flatten)]
    pub certificates: ManagedCertificateArgs,
    /// How the content index lists each type at start and after its watch expired: auto (a
    /// consistent streaming list where the API server offers one, else a paginated LIST),
    /// list, or stream (default auto). Overrides the configuration's `initial_sync`.
    #[arg(long, env = "NSGUARD_INITIAL_SYNC", value_enum)]
    pub initial_sync: Option<InitialSync>,
    /// Cluster access.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

impl ServeArgs {
    /// What the flags set, to override the configuration file.
    pub fn overrides(&self) -> Layer {
        Layer {
            mode: self.mode,
            bypass_groups: (!self.bypass_groups.is_empty()).then(|| self.bypass_groups.clone()),
            initial_sync: self.initial_sync,
            ..self.cluster.overrides()
        }
    }
}

/// Output format of the CLI (`-o`); each command takes the ones that make sense for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// A readable table.
    Table,
    /// The table with more columns (objects, advisories, what was not checked).
    Wide,
    /// JSON (the report, schema nsguard.io/v1).
    Json,
    /// The same document as YAML.
    Yaml,
    /// Names only, one a line, as kubectl's `-o name`.
    Name,
    /// A Graphviz digraph of the blocking chain: namespace, objects, finalizers, controllers,
    /// and why each is not live (`| dot -Tsvg`).
    Dot,
    /// `audit` only: one PolicyReport per namespace, as a List for `kubectl apply -f -`.
    #[value(name = "policyreport")]
    PolicyReport,
}

/// A `-o` parser that takes only `allowed` (a usage error otherwise, listing them).
fn formats(allowed: &'static [Output]) -> impl clap::builder::TypedValueParser<Value = Output> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(
        allowed
            .iter()
            .filter_map(ValueEnum::to_possible_value)
            .collect::<Vec<_>>(),
    )
    .try_map(|s: String| Output::from_str(&s, true))
}

/// `check`: table, wide, json, yaml, name (the objects that block), dot.
const CHECK_FORMATS: &[Output] = &[
    Output::Table,
    Output::Wide,
    Output::Json,
    Output::Yaml,
    Output::Name,
    Output::Dot,
];
/// `diagnose`: table, json, yaml, dot.
const DIAGNOSE_FORMATS: &[Output] = &[Output::Table, Output::Json, Output::Yaml, Output::Dot];
/// `audit`: table, wide, json, yaml, name (namespaces that would hang), policyreport.
const AUDIT_FORMATS: &[Output] = &[
    Output::Table,
    Output::Wide,
    Output::Json,
    Output::Yaml,
    Output::Name,
    Output::PolicyReport,
];
/// `delete`: table, json, yaml.
pub(crate) const DELETE_FORMATS: &[Output] = &[Output::Table, Output::Json, Output::Yaml];

/// Prints `doc` as JSON or YAML (`output` is one of the two).
pub(crate) fn print_document<T: serde::Serialize>(output: Output, doc: &T) -> Result<()> {
    if output == Output::Yaml {
        let yaml = serde_saphyr::to_string(doc).context("writing YAML")?;
        print!("{yaml}");
        if !yaml.ends_with('\n') {
            println!();
        }
    } else {
        println!("{}", serde_json::to_string_pretty(doc)?);
    }
    Ok(())
}

/// A namespace argument: `NAME`, or `namespace/NAME` as `-o name` prints it.
fn parse_namespace(s: &str) -> Result<String, String> {
    let name = ["namespace/", "namespaces/", "ns/"]
        .iter()
        .find_map(|p| s.strip_prefix(p))
        .unwrap_or(s);
    if name.is_empty() || name.contains('/') {
        return Err(format!("{s:?}: expected a namespace name"));
    }
    Ok(name.to_string())
}

/// The namespace a command works on, as the argument (`NAME` or `namespace/NAME`) or with
/// `-n/--namespace` as kubectl users type it; both, and different, is a usage error.
///
/// It dereferences to the name, so `args.namespace` reads as the `String` it was.
#[derive(Debug)]
pub struct TargetNamespace(String);

/// The ids of the two ways to give the namespace.
const NAMESPACE_ARG: &str = "namespace_arg";
const NAMESPACE_FLAG: &str = "namespace_flag";

impl std::ops::Deref for TargetNamespace {
    type Target = String;
    fn deref(&self) -> &String {
        &self.0
    }
}

impl std::fmt::Display for TargetNamespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl clap::FromArgMatches for TargetNamespace {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        use clap::error::ErrorKind;
        let arg = matches.get_one::<String>(NAMESPACE_ARG);
        let flag = matches.get_one::<String>(NAMESPACE_FLAG);
        match (arg, flag) {
            (Some(arg), Some(flag)) if arg != flag => Err(clap::Error::raw(
                ErrorKind::ArgumentConflict,
                format!("two namespaces: {arg} (the argument) and {flag} (-n); give one of them"),
            )),
            (Some(name), _) | (None, Some(name)) => Ok(Self(name.clone())),
            (None, None) => Err(clap::Error::raw(
                ErrorKind::MissingRequiredArgument,
                "no namespace: give it as the argument or with -n NAMESPACE",
            )),
        }
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl clap::Args for TargetNamespace {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        use clap::Arg;
        cmd.arg(
            Arg::new(NAMESPACE_ARG)
                .value_name("NAMESPACE")
                .value_parser(parse_namespace)
                .required_unless_present(NAMESPACE_FLAG)
                .help("The namespace (NAME or namespace/NAME), or -n NAME"),
        )
        .arg(
            Arg::new(NAMESPACE_FLAG)
                .short('n')
                .long("namespace")
                .value_name("NAMESPACE")
                .value_parser(parse_namespace)
                .help("The namespace, as kubectl's -n (instead of the argument)"),
        )
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

/// `nsguard check NS`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The namespace.
    #[command(flatten)]
    pub namespace: TargetNamespace,
    /// Output format: table, wide (with objects and evidence), json, yaml, name (the objects
    /// that block, as KIND/NAME), dot (the blocking chain as a Graphviz digraph).
    #[arg(short = 'o', long, env = "NSGUARD_OUTPUT", default_value = "table", value_parser = formats(CHECK_FORMATS))]
    pub output: Output,
    /// Cluster access.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// `nsguard diagnose NS`.
#[derive(Debug, Args)]
pub struct DiagnoseArgs {
    /// The namespace.
    #[command(flatten)]
    pub namespace: TargetNamespace,
    /// Output format: table, json, yaml, dot (the blocking chain as a Graphviz digraph).
    #[arg(short = 'o', long, env = "NSGUARD_OUTPUT", default_value = "table", value_parser = formats(DIAGNOSE_FORMATS))]
    pub output: Output,
    /// Cluster access.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// `nsguard audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only namespaces matching this label selector.
    #[arg(short = 'l', long, env = "NSGUARD_SELECTOR")]
    pub selector: Option<String>,
    /// Output format: table, wide (with advisories and what was not checked), json, yaml,
    /// name (the namespaces that would hang or are stuck, as namespace/NAME), policyreport.
    #[arg(short = 'o', long, env = "NSGUARD_OUTPUT", default_value = "table", value_parser = formats(AUDIT_FORMATS))]
    pub output: Output,
    /// With `-o policyreport`: the report API to print (default: the one the cluster serves,
    /// openreports.io/v1alpha1 first, else wgpolicyk8s.io/v1alpha2).
    #[arg(long, env = "NSGUARD_POLICYREPORT_API", value_enum)]
    pub policyreport_api: Option<crate::output::policyreport::ReportApi>,
    /// Namespaces checked at once.
    #[arg(long, env = "NSGUARD_AUDIT_CONCURRENCY", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,
    /// Cluster access.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// `nsguard certs`.
#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Directory for ca.crt, ca.key, tls.crt, tls.key.
    #[arg(long, env = "NSGUARD_CERTS_DIR", default_value = "certs")]
    pub out_dir: PathBuf,
    /// DNS names for the serving certificate (repeatable).
    #[arg(long = "dns", env = "NSGUARD_CERT_DNS", value_delimiter = ',',
          default_values_t = ["nsguard.nsguard-system.svc".to_string(), "nsguard.nsguard-system.svc.cluster.local".to_string()])]
    pub dns: Vec<String>,
    /// IP addresses for the serving certificate (repeatable).
    #[arg(long = "ip", env = "NSGUARD_CERT_IPS", value_delimiter = ',')]
    pub ips: Vec<IpAddr>,
    /// Validity in days.
    #[arg(long, env = "NSGUARD_CERT_DAYS", default_value_t = 365)]
    pub days: i64,
}

/// `nsguard serve --manage-certificates`: nsguard keeps its CA and serving certificate in a
/// Secret of its own namespace and the CA in its webhook's caBundle (docs/install.md,
/// "Certificates").
#[derive(Debug, Args)]
pub struct ManagedCertificateArgs {
    /// Manage the webhook's certificates in process, in this Secret of --own-namespace: a CA
    /// and a serving certificate are created when missing and rotated before they expire,
    /// and the CA is kept in the caBundle of --webhook-configuration. --tls-cert and
    /// --tls-key are then unused.
    #[arg(long, env = "NSGUARD_MANAGE_CERTIFICATES", value_name = "SECRET")]
    pub manage_certificates: Option<String>,
    /// With --manage-certificates: the ValidatingWebhookConfiguration whose caBundle nsguard
    /// keeps (only its webhook --webhook-name is changed).
    #[arg(long, env = "NSGUARD_WEBHOOK_CONFIGURATION", default_value = "nsguard")]
    pub webhook_configuration: String,
    /// With --manage-certificates: the name of nsguard's webhook in it.
    #[arg(
        long,
        env = "NSGUARD_WEBHOOK_NAME",
        default_value = "namespaces.nsguard.io"
    )]
    pub webhook_name: String,
    /// With --manage-certificates: the serving certificate's DNS names, the Service's
    /// (repeatable; comma-separated in the variable). Default: nsguard.<own namespace>.svc
    /// and nsguard.<own namespace>.svc.cluster.local.
    #[arg(
        long = "certificate-dns",
        env = "NSGUARD_CERTIFICATE_DNS",
        value_delimiter = ','
    )]
    pub certificate_dns: Vec<String>,
    /// With --manage-certificates: the serving certificate's validity; it is renewed at two
    /// thirds of it.
    #[arg(long, env = "NSGUARD_CERTIFICATE_VALIDITY", default_value = "8760h", value_parser = parse_duration)]
    pub certificate_validity: Duration,
    /// With --manage-certificates: a CA's validity (at least the serving certificate's); a new
    /// CA is added beside it at two thirds of it.
    #[arg(long, env = "NSGUARD_CA_VALIDITY", default_value = "43800h", value_parser = parse_duration)]
    pub ca_validity: Duration,
    /// With --manage-certificates: how often the Secret and the caBundle are read again (a
    /// peer's rotation; a change of the webhook configuration is also seen at once, by a
    /// watch).
    #[arg(long, env = "NSGUARD_CERTIFICATE_CHECK_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub certificate_check_interval: Duration,
}

/// A duration as humantime reads it: `10s`, `500ms`, `5m`, `1m30s`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::config::parse_duration(s)
}

/// `secrets`, `widgets.example.com`: lower case, as `kubectl api-resources` names them.
fn parse_skip_resource(s: &str) -> Result<String, String> {
    crate::config::parse_skip_resource(s)
}

/// `NAMESPACE/NAME`.
fn parse_config_map(s: &str) -> Result<(String, String), String> {
    match s.trim().split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((ns.to_string(), name.to_string()))
        }
        _ => Err(format!("{s:?}: expected NAMESPACE/NAME")),
    }
}

fn parse_check_setting(s: &str) -> Result<(CheckId, Setting), String> {
    let (id, setting) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected CHECK=block|warn|off"))?;
    let id: CheckId = id.trim().parse()?;
    let setting = Setting::from_str(setting.trim(), true)
        .map_err(|_| format!("{s:?}: setting must be block, warn or off"))?;
    Ok((id, setting))
}

impl ClusterArgs {
    /// What the flags set, to override the configuration.
    pub fn overrides(&self) -> Layer {
        Layer {
            checks: self.checks.iter().cloned().collect(),
            finalizer_stuck_after: self.finalizer_stuck_after,
            apiservice_grace: self.apiservice_grace,
            backend_grace: self.backend_grace,
            finalizer_controllers: self.finalizer_controllers.iter().cloned().collect(),
            skip_resources: (!self.skip_resources.is_empty())
                .then(|| self.skip_resources.iter().cloned().collect()),
            ..Layer::default()
        }
    }

    /// The configuration for a CLI command: --config, else the webhook's ConfigMap read
    /// with `client` (none: not read), else the defaults; flags override, with a note on
    /// stderr.
    pub async fn configuration(&self, client: Option<&Client>) -> Result<Effective> {
        self.configuration_with(client, self.overrides()).await
    }

    /// [`ClusterArgs::configuration`] with `flags` (these flags and a command's own) over it.
    pub async fn configuration_with(
        &self,
        client: Option<&Client>,
        flags: Layer,
    ) -> Result<Effective> {
        let base = match (&self.config, client) {
            (Some(path), _) => {
                let (layer, _) = Layer::read(path)
                    .with_context(|| format!("configuration {}", path.display()))?;
                Some((layer, Origin::File(path.clone())))
            }
            (None, Some(client)) => {
                let (ns, name) = &self.config_map;
                let at = format!("{ns}/{name}");
                match crate::cluster::config_map::read(client, ns, name, CONFIG_MAP_KEY).await {
                    Ok(Some(text)) => {
                        let layer = Layer::parse(&text).with_context(|| {
                            format!("configuration in ConfigMap {at}, key {CONFIG_MAP_KEY}")
                        })?;
                        Some((layer, Origin::ConfigMap(at)))
                    }
                    Ok(None) => None,
                    Err(error) => {
                        eprintln!(
                            "nsguard: note: cannot read ConfigMap {at} ({error}): using the defaults; give --config FILE to use a file"
                        );
                        None
                    }
                }
            }
            (None, None) => None,
        };
        let overrides = flags.as_flags();
        if !overrides.is_empty() {
            eprintln!(
                "nsguard: note: flags override the configuration: {}",
                overrides.join(" ")
            );
        }
        Ok(Effective::resolve(
            base.as_ref().map(|(l, o)| (l, o.clone())),
            &flags,
        ))
    }

    /// A client from --kubeconfig and --context, else the usual places.
    pub async fn client(&self) -> Result<Client> {
        let options = KubeConfigOptions {
            context: self.context.clone(),
            ..KubeConfigOptions::default()
        };
        let config = match (&self.kubeconfig, &self.context) {
            (Some(path), _) => {
                let kc = Kubeconfig::read_from(path)
                    .with_context(|| format!("reading kubeconfig {}", path.display()))?;
                Config::from_custom_kubeconfig(kc, &options)
                    .await
                    .with_context(|| format!("kubeconfig {}", path.display()))?
            }
            // A context names one in a kubeconfig: no in-cluster fallback.
            (None, Some(context)) => Config::from_kubeconfig(&options)
                .await
                .with_context(|| format!("context {context}"))?,
            (None, None) => Config::infer()
                .await
                .context("no kubeconfig and not in a cluster")?,
        };
        // kube retries 429/503/504 up to 15 times with backoff by default. A preflight has a
        // deadline: a retried 503 (an aggregated API that is down, which is evidence) would
        // eat it and come back as a timeout, "not checked". Watches have their own backoff.
        let mut config = config;
        config.default_retry = false;
        Ok(Client::try_from(config)?)
    }

    /// An engine over `client` with the configuration `config`.
    pub(crate) fn engine(
        &self,
        client: Client,
        source: ContentSource,
        config: &crate::config::Config,
    ) -> Engine {
        let gatherer = Gatherer::start(
            client,
            Limits {
                call_timeout: self.call_timeout,
                concurrency: self.list_concurrency,
                api_calls: self.max_api_calls,
            },
            source,
            config.skip_resources.clone(),
            config.initial_sync,
        );
        Engine::new(gatherer, config.settings())
    }
}

/// `error` and its causes on one line, each cause once: a cause whose text its parent's
/// message already holds (kube's kubeconfig errors say their cause, then chain it too) is
/// not repeated.
pub fn error_chain(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// The schema version of the CLI's JSON documents.
pub const JSON_SCHEMA: &str = "nsguard.io/v1";

pub(crate) fn phase(ns: &Namespace) -> String {
    ns.status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_else(|| "Active".into())
}

pub(crate) async fn synced_engine(cluster: &ClusterArgs) -> Result<Engine> {
    let client = cluster.client().await?;
    let effective = cluster.configuration(Some(&client)).await?;
    let engine = cluster.engine(client, ContentSource::List, &effective.config);
    engine
        .gatherer()
        .wait_synced(cluster.check_timeout)
        .await
        .context("reading cluster-scoped objects")?;
    Ok(engine)
}

pub(crate) async fn read_namespace(
    engine: &Engine,
    name: &str,
    deadline: Instant,
) -> Result<Namespace> {
    engine
        .gatherer()
        .read_namespace(name, deadline)
        .await?
        .with_context(|| format!("namespace {name} not found"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_check_settings_parse_or_explain() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h 2m"), Ok(Duration::from_secs(3720)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        for bad in ["10", "", "ten seconds", "5 parsecs"] {
            assert!(parse_duration(bad).unwrap_err().contains("e.g."), "{bad:?}");
        }
        assert_eq!(
            parse_check_setting("finalizers-pending=block"),
            Ok((CheckId::FinalizersPending, Setting::Block))
        );
        assert!(
            parse_check_setting("nope=block")
                .unwrap_err()
                .contains("unknown check")
        );
        assert_eq!(parse_skip_resource("secrets"), Ok("secrets".into()));
        assert_eq!(
            parse_skip_resource(" widgets.example.com"),
            Ok("widgets.example.com".into())
        );
        for bad in ["", "Secrets", "secrets.", "a/b"] {
            assert!(parse_skip_resource(bad).is_err(), "{bad:?}");
        }
        assert!(
            parse_check_setting("list-failure=maybe")
                .unwrap_err()
                .contains("block, warn or off")
        );
    }

    #[test]
    fn completions_cover_every_subcommand_in_every_shell() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let mut out = Vec::new();
            completion(shell, "nsguard", &mut out);
            let text = String::from_utf8(out).unwrap();
            for sub in [
                "serve",
                "check",
                "audit",
                "diagnose",
                "delete",
                "certs",
                "completion",
            ] {
                assert!(text.contains(sub), "{shell}: no {sub}");
            }
        }
    }

    fn help(sub: &str) -> String {
        Cli::definition()
            .bin_name("nsguard")
            .find_subcommand_mut(sub)
            .unwrap_or_else(|| panic!("no {sub}"))
            .render_help()
            .to_string()
    }

    #[test]
    fn help_shows_a_commands_own_flags_first_and_no_serve_only_flag() {
        for sub in ["check", "audit", "diagnose", "delete"] {
            let text = help(sub);
            for serve_only in [
                "--initial-sync",
                "--listen",
                "--tls-cert",
                "--mode",
                "--index-max-staleness",
            ] {
                assert!(
                    !text.contains(serve_only),
                    "{sub} --help lists {serve_only}:\n{text}"
                );
            }
            for webhook_wording in ["review", "`serve`", "fails open", "content index"] {
                assert!(
                    !text.contains(webhook_wording),
                    "{sub} --help says {webhook_wording:?}:\n{text}"
                );
            }
            let own = text
                .find("-o, --output")
                .unwrap_or_else(|| panic!("{text}"));
            let cluster = text
                .find("Cluster access:")
                .unwrap_or_else(|| panic!("{text}"));
            let configuration = text
                .find("Configuration:")
                .unwrap_or_else(|| panic!("{text}"));
            assert!(own < cluster && cluster < configuration, "{sub}:\n{text}");
            assert!(text.find("--kubeconfig").unwrap() > cluster, "{text}");
            assert!(text.find("--check <").unwrap() > configuration, "{text}");
        }
        for sub in ["check", "diagnose", "delete"] {
            let text = help(sub);
            assert!(
                text.contains("-n, --namespace <NAMESPACE>"),
                "{sub}:\n{text}"
            );
            assert!(text.find("-n, --namespace").unwrap() < text.find("Cluster access:").unwrap());
        }
        let serve = help("serve");
        for wanted in ["--initial-sync", "--listen", "review fails open"] {
            assert!(
                serve.contains(wanted),
                "serve --help has no {wanted}:\n{serve}"
            );
        }
        assert!(
            !serve.contains("--config-map"),
            "serve never reads it:\n{serve}"
        );
        assert!(help("config").contains("show"));
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::parse_as(
            "nsguard",
            std::iter::once("nsguard").chain(args.iter().copied()),
        )
    }

    fn namespace_of(args: &[&str]) -> String {
        match parse(args)
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
            .command
        {
            Command::Check(a) => a.namespace.to_string(),
            Command::Diagnose(a) => a.namespace.to_string(),
            Command::Delete(a) => a.namespace.to_string(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_namespace_is_the_argument_or_dash_n() {
        for sub in ["check", "diagnose", "delete"] {
            assert_eq!(namespace_of(&[sub, "team-a"]), "team-a");
            assert_eq!(namespace_of(&[sub, "-n", "team-a"]), "team-a");
            assert_eq!(namespace_of(&[sub, "--namespace=team-a"]), "team-a");
            assert_eq!(
                namespace_of(&[sub, "namespace/team-a", "-n", "team-a"]),
                "team-a"
            );
            assert_eq!(
                namespace_of(&["--log-format", "json", sub, "-nteam-a"]),
                "team-a"
            );
            let two = parse(&[sub, "team-a", "-n", "team-b"]).unwrap_err();
            assert_eq!(two.kind(), clap::error::ErrorKind::ArgumentConflict);
            assert_eq!(two.exit_code(), exit::USAGE);
            let text = two.to_string();
            assert!(text.contains("team-a") && text.contains("team-b"), "{text}");
            assert!(text.contains("Usage:"), "{text}");
            let none = parse(&[sub]).unwrap_err();
            assert_eq!(none.exit_code(), exit::USAGE, "{none}");
            assert!(parse(&[sub, "-n", "a/b"]).is_err());
        }
        // `audit` has no namespace argument; -n is not a flag there.
        assert!(parse(&["audit", "-n", "team-a"]).is_err());
    }

    #[test]
    fn the_log_format_is_global() {
        assert_eq!(parse(&["check", "x"]).unwrap().log_format, LogFormat::Text);
        assert_eq!(
            parse(&["serve", "--log-format", "json"])
                .unwrap()
                .log_format,
            LogFormat::Json
        );
        assert_eq!(
            parse(&["--log-format=json", "audit"]).unwrap().log_format,
            LogFormat::Json
        );
        assert!(parse(&["--log-format=xml", "audit"]).is_err());
    }

    #[test]
    fn each_cause_is_printed_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("failed to read kubeconfig from \"/nope\": {0}")]
        struct Read(#[source] std::io::Error);
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
        let error = anyhow::Error::new(Read(io)).context("reading kubeconfig /nope");
        let line = error_chain(&error);
        assert_eq!(
            line,
            "reading kubeconfig /nope: failed to read kubeconfig from \"/nope\": No such file or directory"
        );
        assert_eq!(line.matches("No such file").count(), 1);
        // Causes that do not repeat each other are all there.
        let plain = anyhow::anyhow!("connection refused").context("listing namespaces");
        assert_eq!(
            error_chain(&plain),
            "listing namespaces: connection refused"
        );
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::definition().debug_assert();
    }
}
