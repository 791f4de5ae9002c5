//! `nsguard serve`: the webhook's wiring: facts from the live index, admission, the TLS and
//! admin listeners, records.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::cli::ServeArgs;
use crate::cluster::gather::ContentSource;
use crate::policy::Policy;
use crate::ratelimit::PeerLimit;
use crate::records::{Events, Metrics};
use crate::webhook::admission::Admission;
use crate::webhook::server::{self, Readiness};
use crate::webhook::tls;

/// Runs `nsguard serve`.
pub async fn serve(args: ServeArgs) -> Result<()> {
    let provider = tls::provider();
    let metrics = Arc::new(Metrics::default());
    let cert = Arc::new(
        tls::ReloadingCert::load(&args.tls_cert, &args.tls_key, provider.clone())
            .context("loading the serving certificate")?
            .with_expiry_gauge(metrics.certificate_expiry()),
    );
    cert.spawn_reloader(args.tls_reload_interval);
    let tls_config = match &args.client_ca_file {
        Some(ca) => tls::server_config_verifying_clients(cert, provider, ca)?,
        None => tls::server_config(cert, provider)?,
    };
    let engine = args.cluster.engine(ContentSource::Index).await?;
    let events = Events::new(
        engine.gatherer().client().clone(),
        std::env::var("POD_NAME").ok(),
    );
    let ready = Readiness::default();
    {
        let gatherer = engine.gatherer().clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            loop {
                if let Some((synced, syncing, failing)) = gatherer.index_counts() {
                    metrics.set_index_types(synced, syncing, failing);
                }
                if let Some(objects) = gatherer.index_objects() {
                    metrics.set_index_objects(objects);
                }
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        });
    }
    {
        // Ready once every watch has listed: before that a review would see no cluster facts.
        let ready = ready.clone();
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
            while !gatherer.index_ready() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            tracing::info!("Cluster facts and content index synced: ready");
            ready.set(true);
        });
    }
    let admission = Arc::new(Admission {
        engine: Some(engine),
        policy: Policy {
            mode: args.mode,
            bypass_groups: args.bypass_groups.clone(),
            max_warnings: args.max_warnings,
        },
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
        server::webhook_router(admission),
        server::admin_router(ready.clone(), metrics),
        ready,
        args.shutdown_delay,
    )
    .await
}
