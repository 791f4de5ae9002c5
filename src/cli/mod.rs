//! The command line: `serve`, `check`, `audit`, `diagnose`, `delete`, `certs`, `completion`.
//! Every flag has an `NSGUARD_*` variable.

mod audit;
mod certs;
mod check;
mod delete;

pub use audit::audit;
pub use certs::certs;
pub use check::{check, diagnose};
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

use crate::checks::report::CheckId;
use crate::checks::{Setting, Settings};
use crate::cluster::gather::Limits;
use crate::cluster::gather::{ContentSource, Gatherer};
use crate::engine::Engine;
use crate::facts::controllers::{Declarations, Identity};
use crate::policy::Mode;

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
    Serve(ServeArgs),
    /// Run the preflight for one namespace and print what would block its deletion.
    /// Exit 0: would delete cleanly; 1: warnings only; 2: would hang.
    Check(NamespaceArgs),
    /// Run the preflight for every namespace (or those selected): a summary, then a
    /// diagnosis of each namespace already Terminating.
    /// Exit 0: none would hang; 2: some would hang or are stuck.
    Audit(AuditArgs),
    /// Explain why a Terminating namespace is stuck and print the remedies in a safe order,
    /// each with its risk. Changes nothing.
    /// Exit 0: nothing blocks it; 2: blockers found.
    Diagnose(NamespaceArgs),
    /// Delete a namespace in an order that lets it finish: custom resources whose controllers
    /// run in it first, then objects its hosted webhooks and conversion backends serve, then
    /// the namespace. Never removes a finalizer. `--dry-run` prints the plan only.
    /// Exit 0: deleted (dry run: the plan can run); 2: stopped, with the reason.
    Delete(DeleteArgs),
    /// Write a CA and a serving certificate for the webhook and print the caBundle.
    Certs(CertsArgs),
    /// Print a shell completion script: `source <(nsguard completion bash)`.
    Completion(CompletionArgs),
}

/// Flags shared by everything that reads the cluster.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, then in-cluster).
    #[arg(long, env = "NSGUARD_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
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
    /// A check's severity: ID=block|warn|off (repeatable; comma-separated in the variable).
    #[arg(long = "check", env = "NSGUARD_CHECKS", value_delimiter = ',', value_parser = parse_check_setting)]
    pub checks: Vec<(CheckId, Setting)>,
    /// How long an object may be deleting with finalizers before finalizer-stuck reports it.
    #[arg(long, env = "NSGUARD_FINALIZER_STUCK_AFTER", default_value = "5m", value_parser = parse_duration)]
    pub finalizer_stuck_after: Duration,
    /// The controller that removes a type's (or a finalizer's) finalizers, for controllers
    /// RBAC does not show: RESOURCE.GROUP=NAMESPACE/SERVICEACCOUNT or
    /// FINALIZER=NAMESPACE/SERVICEACCOUNT (repeatable; `;`-separated in the variable).
    #[arg(long = "finalizer-controller", env = "NSGUARD_FINALIZER_CONTROLLERS", value_delimiter = ';', value_parser = Declarations::parse_flag)]
    pub finalizer_controllers: Vec<(String, Vec<Identity>)>,
    /// How long an APIService that was Available may be unavailable before
    /// apiservice-unavailable blocks (a warning until then).
    #[arg(long, env = "NSGUARD_APISERVICE_GRACE", default_value = "30s", value_parser = parse_duration)]
    pub apiservice_grace: Duration,
    /// How long a webhook's Service may have no ready endpoints before
    /// webhook-backend-unavailable blocks (a warning until then).
    #[arg(long, env = "NSGUARD_BACKEND_GRACE", default_value = "30s", value_parser = parse_duration)]
    pub backend_grace: Duration,
    /// A namespaced type nsguard never lists nor watches, as RESOURCE or RESOURCE.GROUP
    /// (`secrets`: a ClusterRole without Secrets, manifests/overlays/no-secrets); every report
    /// then says it was not checked (repeatable; comma-separated in the variable).
    #[arg(long = "skip-resource", env = "NSGUARD_SKIP_RESOURCES", value_delimiter = ',', value_parser = parse_skip_resource)]
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
    /// enforce: deny deletions that would hang; warn: allow with warnings; audit: allow and record.
    #[arg(long, env = "NSGUARD_MODE", value_enum, default_value = "enforce")]
    pub mode: Mode,
    /// Members of this group may delete despite blockers, with a warning (repeatable).
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
    /// or a bookmark; the watch cache sends one about every 60 s) before reviews stop reading
    /// it from the index and list it instead.
    #[arg(long, env = "NSGUARD_INDEX_MAX_STALENESS", default_value = "90s", value_parser = parse_duration)]
    pub index_max_staleness: Duration,
    /// Cluster access.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// Output format of the CLI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// A readable table.
    Table,
    /// JSON (the report).
    Json,
    /// `audit` only: one PolicyReport per namespace, as a List for `kubectl apply -f -`.
    #[value(name = "policyreport")]
    PolicyReport,
}

/// `-o table|json`.
#[derive(Debug, Args)]
pub struct Format {
    /// Output format.
    #[arg(
        short = 'o',
        long,
        env = "NSGUARD_OUTPUT",
        value_enum,
        default_value = "table"
    )]
    pub output: Output,
}

impl Format {
    /// Only `audit` prints PolicyReports: refuse before reading the cluster.
    fn not_policyreport(&self, command: &str) -> Result<()> {
        if self.output == Output::PolicyReport {
            anyhow::bail!("{command}: -o policyreport is for audit; use -o table or -o json");
        }
        Ok(())
    }
}

/// `nsguard check NS` and `nsguard diagnose NS`.
#[derive(Debug, Args)]
pub struct NamespaceArgs {
    /// The namespace.
    pub namespace: String,
    /// Output format.
    #[command(flatten)]
    pub format: Format,
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
    /// Output format.
    #[command(flatten)]
    pub format: Format,
    /// With `-o policyreport`: the report API to print.
    #[arg(
        long,
        env = "NSGUARD_POLICYREPORT_API",
        value_enum,
        default_value = "openreports.io/v1alpha1"
    )]
    pub policyreport_api: crate::policyreport::ReportApi,
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

/// `10s`, `500ms`, `5m`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map(|i| s.split_at(i))
        .ok_or_else(|| format!("{s:?}: give a unit, e.g. 10s"))?;
    let n: u64 = num.parse().map_err(|_| format!("{s:?}: not a duration"))?;
    Ok(match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return Err(format!("{s:?}: unit must be ms, s, m or h")),
    })
}

/// `secrets`, `widgets.example.com`: lower case, as `kubectl api-resources` names them.
fn parse_skip_resource(s: &str) -> Result<String, String> {
    let s = s.trim();
    let valid = !s.is_empty()
        && !s.starts_with('.')
        && !s.ends_with('.')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-');
    if valid {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?}: expected a resource as RESOURCE or RESOURCE.GROUP, e.g. secrets"
        ))
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
    fn settings(&self) -> Settings {
        Settings {
            overrides: self.checks.iter().cloned().collect(),
            finalizer_stuck_after: self.finalizer_stuck_after,
            finalizer_controllers: Declarations(
                self.finalizer_controllers.iter().cloned().collect(),
            ),
            apiservice_grace: self.apiservice_grace,
            backend_grace: self.backend_grace,
        }
    }

    async fn client(&self) -> Result<Client> {
        let config = match &self.kubeconfig {
            Some(path) => {
                let kc = Kubeconfig::read_from(path)
                    .with_context(|| format!("reading kubeconfig {}", path.display()))?;
                Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?
            }
            None => Config::infer()
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

    pub(crate) async fn engine(&self, source: ContentSource) -> Result<Engine> {
        let client = self.client().await?;
        let gatherer = Gatherer::start(
            client,
            Limits {
                call_timeout: self.call_timeout,
                concurrency: self.list_concurrency,
                api_calls: self.max_api_calls,
            },
            source,
            self.skip_resources.iter().cloned().collect(),
        );
        Ok(Engine::new(gatherer, self.settings()))
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
    let engine = cluster.engine(ContentSource::List).await?;
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
        assert!(parse_duration("10").unwrap_err().contains("unit"));
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
