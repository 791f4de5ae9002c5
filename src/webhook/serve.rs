//! `nsguard serve`: the webhook's wiring: facts from the live index, admission, the TLS and
//! admin listeners, records.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::certs::managed::Policy as CertificatePolicy;
use crate::cli::ServeArgs;
use crate::cluster::certificates::CertificateStore;
use crate::cluster::gather::ContentSource;
use crate::cluster::lease::{self, Election};
use crate::config::{Config, Effective, Live, Reload, Watcher};
use crate::engine::Engine;
use crate::output::policy::Policy;
use crate::output::records::{Events, Metrics};
use crate::webhook::admission::Admission;
use crate::webhook::background;
use crate::webhook::config_review::{self, OwnConfigMap};
use crate::webhook::managed::Manager;
use crate::webhook::ratelimit::PeerLimit;
use crate::webhook::server::{self, Readiness};
use crate::webhook::tls;

/// Runs `nsguard serve`.
pub async fn serve(args: ServeArgs) -> Result<()> {
    let provider = tls::provider();
    let metrics = Arc::new(Metrics::default());
    let managed = match &args.certificates.manage_certificates {
        Some(secret) => Some(managed_policy(&args, secret)?),
        None => None,
    };
    let cert = Arc::new(match &managed {
        // The pair comes from the Secret once the manager has read (or made) it; until then
        // handshakes fail and /readyz says not ready.
        Some((secret, _)) => tls::ReloadingCert::empty(
            &format!("Secret {}/{secret}", args.own_namespace),
            provider.clone(),
        )
        .with_expiry_gauge(metrics.certificate_expiry()),
        None => tls::ReloadingCert::load(&args.tls_cert, &args.tls_key, provider.clone())
            .context("loading the serving certificate")?
            .with_expiry_gauge(metrics.certificate_expiry()),
    });
    if managed.is_none() {
        cert.spawn_reloader(args.tls_reload_interval);
    }
    let tls_config = match &args.client_ca_file {
        Some(ca) => tls::server_config_verifying_clients(cert.clone(), provider, ca)?,
        None => tls::server_config(cert.clone(), provider)?,
    };
    let flags = args.overrides();
    let (effective, watcher) = match &args.cluster.config {
        Some(path) => {
            let (effective, watcher) = Watcher::start(path, flags.clone())
                .with_context(|| format!("configuration {}", path.display()))?;
            (effective, Some(watcher))
        }
        None => (Effective::resolve(None, &flags), None),
    };
    let overrides = flags.as_flags();
    if !overrides.is_empty() {
        tracing::info!(flags = %overrides.join(" "), "Flags override the configuration");
    }
    let config = effective.config.clone();
    metrics.set_config(config.mode, config.bypass_groups.len());
    if let Some(mode) = args.expected_mode {
        metrics.set_expected_mode(mode);
    }
    let client = args.cluster.client().await?;
    if let Some((secret, policy)) = managed {
        Manager {
            store: CertificateStore::new(
                client.clone(),
                &args.own_namespace,
                &secret,
                &args.certificates.webhook_configuration,
                &args.certificates.webhook_name,
            ),
            policy,
            cert: cert.clone(),
            interval: args.certificates.certificate_check_interval,
        }
        .spawn();
    }
    let engine = args.cluster.engine(client, ContentSource::Index, &config);
    engine
        .gatherer()
        .set_index_max_staleness(args.index_max_staleness);
    let events = Events::new(
        engine.gatherer().client().clone(),
        std::env::var("POD_NAME").ok(),
    );
    let ready = Readiness::default();
    {
        let gatherer = engine.gatherer().clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut unreadable: Vec<String> = Vec::new();
            loop {
                if let Some((synced, syncing, failing)) = gatherer.index_counts() {
                    metrics.set_index_types(synced, syncing, failing);
                }
                if let Some(forbidden) = gatherer.index_forbidden() {
                    // Named in the log when the set changes: which types went unchecked.
                    if forbidden != unreadable {
                        if !forbidden.is_empty() {
                            tracing::warn!(types = %forbidden.join(", "), "Types nsguard may not read: not checked (nsguard rbac)");
                        }
                        unreadable = forbidden;
                    }
                    metrics.set_index_forbidden(unreadable.len());
                }
                if let Some((expired, fallback)) = gatherer.index_relists() {
                    metrics.set_index_relists(expired, fallback);
                }
                if let Some((stream, list)) = gatherer.index_methods() {
                    metrics.set_index_sync_methods(stream, list);
                }
                if let Some(objects) = gatherer.index_objects() {
                    metrics.set_index_objects(objects);
                }
                if let Some(f) = gatherer.index_freshness() {
                    metrics.set_index_freshness(f.oldest_confirmation, f.stale);
                }
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        });
    }
    {
        // Ready once every watch has listed: before that a review would see no cluster facts.
        let ready = ready.clone();
        let cert = cert.clone();
        let gatherer = engine.gatherer().clone();
        tokio::spawn(async move {
            loop {
                match gatherer.wait_synced(Duration::from_secs(30)).await {
                    Ok(()) => break,
                    Err(error) => tracing::warn!(%error, "Waiting for cluster facts"),
                }
            }
            // And the content index: every type synced or failing (a failing type is listed
            // at review time).
            let mut said = tokio::time::Instant::now();
            while !gatherer.index_ready() {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if said.elapsed() >= Duration::from_secs(10) {
                    said = tokio::time::Instant::now();
                    let syncing = gatherer.index_syncing();
                    tracing::info!(
                        count = syncing.len(),
                        types = %syncing.iter().take(20).cloned().collect::<Vec<_>>().join(","),
                        "Not ready: content index types still listing"
                    );
                }
            }
            // And a serving pair (certificates managed in process: read or made by the manager).
            let mut said = tokio::time::Instant::now();
            while !cert.has_pair() {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if said.elapsed() >= Duration::from_secs(10) {
                    said = tokio::time::Instant::now();
                    tracing::info!("Not ready: no serving certificate yet");
                }
            }
            tracing::info!("Cluster facts and content index synced: ready");
            ready.set(true);
        });
    }
    if args.watch_terminating {
        let identity = Election::default_identity();
        let leadership = lease::start(
            engine.gatherer().client().clone(),
            Election {
                namespace: args.own_namespace.clone(),
                identity: identity.clone(),
                duration: args.leader_lease_duration,
            },
        );
        // The background Events name the replica that wrote them: the Lease's holder.
        let events = Events::new(engine.gatherer().client().clone(), Some(identity));
        background::spawn(
            engine.clone(),
            metrics.clone(),
            events,
            leadership,
            background::Settings {
                interval: args.watch_interval,
                max_namespaces: args.watch_max_namespaces,
                check_timeout: args.cluster.check_timeout,
                ..Default::default()
            },
        );
    }
    let gatherer = engine.gatherer().clone();
    let policy: Live<Policy> = policy_of(&config, args.max_warnings).into();
    if let Some(watcher) = watcher {
        spawn_reloader(
            watcher,
            args.config_reload_interval,
            Reloading {
                engine: engine.clone(),
                policy: policy.clone(),
                metrics: metrics.clone(),
                max_warnings: args.max_warnings,
                skip_resources: config.skip_resources.clone(),
            },
        );
    }
    let admission = Arc::new(Admission {
        engine: Some(engine),
        policy,
        check_timeout: args.cluster.check_timeout,
        own_namespace: Some(args.own_namespace.clone()),
        metrics: metrics.clone(),
        events: Some(events),
        slots: Some(Arc::new(tokio::sync::Semaphore::new(
            args.max_concurrent_reviews.max(1),
        ))),
        peer_limit: PeerLimit::new(args.peer_rate_limit, args.peer_burst),
    });
    server::serve(
        args.listen,
        args.admin_listen,
        tls_config,
        server::webhook_router(admission).merge(config_review::router(OwnConfigMap {
            namespace: args.cluster.config_map.0.clone(),
            name: args.cluster.config_map.1.clone(),
        })),
        server::admin_router(ready.clone(), metrics).merge(debug_router(gatherer)),
        ready,
        args.shutdown_delay,
    )
    .await
}

/// The Secret's name and what to keep in it, from the flags of `--manage-certificates`.
fn managed_policy(args: &ServeArgs, secret: &str) -> Result<(String, CertificatePolicy)> {
    let c = &args.certificates;
    let duration = |d: Duration, flag: &str| {
        time::Duration::try_from(d).with_context(|| format!("{flag}: out of range"))
    };
    let validity = duration(c.certificate_validity, "--certificate-validity")?;
    let ca_validity = duration(c.ca_validity, "--ca-validity")?;
    if c.certificate_validity < Duration::from_secs(10) {
        anyhow::bail!("--certificate-validity must be at least 10s");
    }
    if c.ca_validity < c.certificate_validity {
        anyhow::bail!("--ca-validity must be at least --certificate-validity");
    }
    let ns = &args.own_namespace;
    let dns_names = if c.certificate_dns.is_empty() {
        vec![
            format!("nsguard.{ns}.svc"),
            format!("nsguard.{ns}.svc.cluster.local"),
        ]
    } else {
        c.certificate_dns.clone()
    };
    let common_name = dns_names
        .first()
        .cloned()
        .unwrap_or_else(|| "nsguard".into());
    Ok((
        secret.to_string(),
        CertificatePolicy {
            common_name,
            dns_names,
            validity,
            ca_validity,
        },
    ))
}

/// `/debug/index-digest` on the admin listener: per indexed type, its state, the objects held
/// and a hash of their (namespace, name, finalizers), which a fresh LIST of the type must
/// reproduce (`nsguard::cluster::index::digest`); and `/debug/index-syncing`, the types still
/// listing for the first time (what readiness waits for).
fn debug_router(gatherer: crate::cluster::gather::Gatherer) -> axum::Router {
    use axum::routing::get;
    let syncing = gatherer.clone();
    axum::Router::new()
        .route(
            "/debug/index-digest",
            get(move || {
                let gatherer = gatherer.clone();
                async move { axum::Json(gatherer.index_digest().unwrap_or_default()) }
            }),
        )
        .route(
            "/debug/index-syncing",
            get(move || {
                let gatherer = syncing.clone();
                async move { axum::Json(gatherer.index_syncing()) }
            }),
        )
}

fn policy_of(config: &Config, max_warnings: usize) -> Policy {
    Policy {
        mode: config.mode,
        bypass_groups: config.bypass_groups.clone(),
        max_warnings,
    }
}

/// What a reloaded configuration replaces.
struct Reloading {
    engine: Engine,
    policy: Live<Policy>,
    metrics: Arc<Metrics>,
    max_warnings: usize,
    /// Read once: the index watches what it was started with.
    skip_resources: std::collections::BTreeSet<String>,
}

/// Looks at the configuration file every `interval`: a valid change is put in force for the
/// reviews that start after it; an invalid one is logged and counted, and the configuration
/// in force stays (readiness is not touched: the webhook keeps deciding with it).
fn spawn_reloader(mut watcher: Watcher, interval: Duration, to: Reloading) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval.max(Duration::from_millis(100)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match watcher.poll() {
                Reload::Unchanged => {}
                Reload::Applied(effective) => {
                    let config = effective.config;
                    to.engine.set_settings(config.settings());
                    to.policy.store(policy_of(&config, to.max_warnings));
                    to.metrics.config_reload(true);
                    to.metrics
                        .set_config(config.mode, config.bypass_groups.len());
                    tracing::info!(mode = config.mode.as_str(), "Configuration reloaded");
                    if config.skip_resources != to.skip_resources {
                        tracing::warn!(
                            "skip_resources changed: it takes effect when nsguard restarts"
                        );
                    }
                }
                Reload::Rejected(error) => {
                    to.metrics.config_reload(false);
                    tracing::error!(%error, "Configuration rejected: the previous configuration stays in force");
                }
            }
        }
    });
}
