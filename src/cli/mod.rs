//! The command line: `serve`, `check`, `audit`, `diagnose`, `delete`, `config`, `certs`,
//! `completion`.
//! Every flag has an `NSGUARD_*` variable.

mod audit;
mod certs;
mod check;
mod config;
mod delete;

pub use audit::audit;
pub use certs::certs;
pub use check::{check, diagnose};
pub use config::{ConfigArgs, ConfigCommand, config};
pub use delete::{DeleteArgs, delete};

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
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
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

/// Flags shared by everything that reads the cluster.
#[derive(Debug, Args)]
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
    /// API calls in flight at once over every preflight. A call over the bound is not made:
    /// what it would have read is "not checked" and the review fails open with a warning
    /// (never a queue past the deadline; the live index makes such calls rare).
    #[arg(long, env = "NSGUARD_MAX_API_CALLS", default_value_t = 64)]
    pub max_api_calls: usize,
    /// The configuration file (YAML; see docs/configuration.md). Without it, `serve` uses
    /// the defaults and the other commands read the webhook's ConfigMap (--config-map).
    #[arg(long, env = "NSGUARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// The webhook's configuration ConfigMap, NAMESPACE/NAME, read from the cluster when
    /// there is no --config (not by `serve`, which reads the file the chart mounts).
    #[arg(long, env = "NSGUARD_CONFIG_MAP", default_value = crate::config::DEFAULT_CONFIG_MAP, value_parser = parse_config_map)]
    pub config_map: (String, String),
    /// A check's severity: ID=block|warn|off (repeatable; comma-separated in the variable).
    /// Overrides the configuration's `checks`, check by check.
    #[arg(long = "check", env = "NSGUARD_CHECKS", value_delimiter = ',', value_parser = parse_check_setting)]
    pub checks: Vec<(CheckId, Setting)>,
    /// How long an object may be deleting with finalizers before finalizer-stuck reports it
    /// (default 5m).
    #[arg(long, env = "NSGUARD_FINALIZER_STUCK_AFTER", value_parser = parse_duration)]
    pub finalizer_stuck_after: Option<Duration>,
    /// The controller that removes a type's (or a finalizer's) finalizers, for controllers
    /// RBAC does not show: RESOURCE.GROUP=NAMESPACE/SERVICEACCOUNT or
    /// FINALIZER=NAMESPACE/SERVICEACCOUNT (repeatable; `;`-separated in the variable).
    #[arg(long = "finalizer-controller", env = "NSGUARD_FINALIZER_CONTROLLERS", value_delimiter = ';', value_parser = Declarations::parse_flag)]
    pub finalizer_controllers: Vec<(String, Vec<Identity>)>,
    /// How long an APIService that was Available may be unavailable before
    /// apiservice-unavailable blocks (a warning until then; default 30s).
    #[arg(long, env = "NSGUARD_APISERVICE_GRACE", value_parser = parse_duration)]
    pub apiservice_grace: Option<Duration>,
    /// How long a webhook's Service may have no ready endpoints before
    /// webhook-backend-unavailable blocks (a warning until then; default 30s).
    #[arg(long, env = "NSGUARD_BACKEND_GRACE", value_parser = parse_duration)]
    pub backend_grace: Option<Duration>,
    /// A namespaced type nsguard never lists nor watches, as RESOURCE or RESOURCE.GROUP
    /// (`secrets`: a ClusterRole without Secrets, manifests/overlays/no-secrets); every report
    /// then says it was not checked (repeatable; comma-separated in the variable). Replaces
    /// the configuration's `skip_resources`.
    #[arg(long = "skip-resource", env = "NSGUARD_SKIP_RESOURCES", value_delimiter = ',', value_parser = parse_skip_resource)]
    pub skip_resources: Vec<String>,
    /// How the content index of `serve` lists each type at start and after its watch
    /// expired: auto (a consistent streaming list where the API server offers one, else a
    /// paginated LIST), list, or stream (default auto). Overrides the configuration's
    /// `initial_sync`.
    #[arg(long, env = "NSGUARD_INITIAL_SYNC", value_enum)]
    pub initial_sync: Option<InitialSync>,
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
    let mut command = <Cli as clap::CommandFactory>::command();
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

/// `nsguard check NS`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The namespace (`NAME` or `namespace/NAME`).
    #[arg(value_parser = parse_namespace)]
    pub namespace: String,
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
    /// The namespace (`NAME` or `namespace/NAME`).
    #[arg(value_parser = parse_namespace)]
    pub namespace: String,
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
            initial_sync: self.initial_sync,
            ..Layer::default()
        }
    }

    /// The configuration for a CLI command: --config, else the webhook's ConfigMap read
    /// with `client` (none: not read), else the defaults; flags override, with a note on
    /// stderr.
    pub async fn configuration(&self, client: Option<&Client>) -> Result<Effective> {
        let flags = self.overrides();
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

    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
