//! Certificates managed in process (`nsguard serve --manage-certificates`): every replica
//! reads nsguard's Secret, plans with [`crate::certs::managed::plan`] (create when missing,
//! rotate before expiry), writes with optimistic concurrency (the replica that loses reads the
//! winner's), serves the Secret's pair through the reloading resolver, and keeps its webhook's
//! caBundle equal to the Secret's CAs. It looks every `--certificate-check-interval`, and at
//! once when the webhook configuration changes.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use futures::StreamExt;
use time::OffsetDateTime;

use crate::certs::managed::{self, Material, Plan, Policy};
use crate::cluster::certificates::{CertificateStore, Written};
use crate::webhook::tls::ReloadingCert;

/// Writes lost to another replica in one look before it waits for the next.
const ATTEMPTS: usize = 5;

/// The manager of one nsguard process.
pub struct Manager {
    /// The Secret and the webhook configuration.
    pub store: CertificateStore,
    /// What to keep.
    pub policy: Policy,
    /// The resolver that serves the pair.
    pub cert: Arc<ReloadingCert>,
    /// How often to look again.
    pub interval: Duration,
}

/// Whether `bundle` (PEM) holds the newest CA of `material`.
fn holds_newest(bundle: &str, material: &Material) -> bool {
    let ours = managed::bundle_certificates(&material.ca_bundle);
    let theirs = managed::bundle_certificates(bundle);
    ours.first().is_some_and(|newest| theirs.contains(newest))
}

/// Whether the webhook's `bundle` holds a CA newer than every CA of `material`: another
/// replica rotated after this one read the Secret, and this one must not set the older
/// bundle back.
fn bundle_is_ahead(bundle: &str, material: &Material) -> bool {
    let ours = managed::bundle_certificates(&material.ca_bundle);
    let newest_ours = managed::not_befores(&material.ca_bundle).into_iter().max();
    managed::bundle_certificates(bundle)
        .iter()
        .filter(|c| !ours.contains(c))
        .flat_map(|c| managed::not_befores(c))
        .any(|nb| newest_ours.is_none_or(|ours| nb > ours))
}

impl Manager {
    /// One look: the Secret planned and written if needed, its pair served, the caBundle set.
    pub async fn reconcile(&self) -> Result<()> {
        for _ in 0..ATTEMPTS {
            let stored = self.store.read().await?;
            let bundle = match self.store.ca_bundle().await {
                Ok(b) => Some(b),
                Err(error) => {
                    tracing::warn!(%error, "Cannot read nsguard's webhook configuration: its caBundle is not kept");
                    None
                }
            };
            let current = stored.as_ref().and_then(|s| s.material.as_ref());
            let trusted = match (&bundle, current) {
                (Some(b), Some(m)) => holds_newest(b, m),
                _ => false,
            };
            let planned = managed::plan(current, &self.policy, OffsetDateTime::now_utc(), trusted)
                .context("planning the certificates")?;
            let material = match planned {
                Plan::Keep => current.cloned(),
                Plan::Write(next, changes) => {
                    let written = match &stored {
                        None => self.store.create(&next).await?,
                        Some(s) => self.store.replace(&next, &s.resource_version).await?,
                    };
                    if written == Written::Lost {
                        tracing::info!(
                            secret = %self.store.secret_name(),
                            "Certificates changed by another replica: reading them again"
                        );
                        continue;
                    }
                    let changes: Vec<String> = changes.iter().map(ToString::to_string).collect();
                    tracing::info!(
                        secret = %self.store.secret_name(),
                        changes = %changes.join("; "),
                        "Certificates written"
                    );
                    Some(next)
                }
            };
            let Some(material) = material else {
                continue;
            };
            if self
                .cert
                .store(material.tls_crt.as_bytes(), material.tls_key.as_bytes())
                .context("serving the Secret's pair")?
            {
                tracing::info!(
                    secret = %self.store.secret_name(),
                    "Serving certificate loaded"
                );
            }
            if let Some(bundle) = bundle
                && bundle != material.ca_bundle
            {
                if bundle_is_ahead(&bundle, &material) {
                    // Read again: another replica's newer CA is already in.
                    continue;
                }
                self.store.set_ca_bundle(&material.ca_bundle).await?;
                tracing::info!(
                    config = %self.store.config_name(),
                    cas = managed::bundle_certificates(&material.ca_bundle).len(),
                    "Webhook caBundle set"
                );
            }
            return Ok(());
        }
        anyhow::bail!("the certificates kept changing under this replica ({ATTEMPTS} reads)")
    }

    /// Runs [`Manager::reconcile`] every interval, at once when the webhook configuration
    /// changes, and after an error again with a backoff (1 s, doubling up to the interval).
    pub fn spawn(self) {
        let notify = Arc::new(tokio::sync::Notify::new());
        {
            let notify = notify.clone();
            let changes = self.store.config_changes();
            tokio::spawn(async move {
                let mut changes = std::pin::pin!(changes);
                while changes.next().await.is_some() {
                    notify.notify_one();
                }
            });
        }
        tokio::spawn(async move {
            let mut backoff = Duration::from_secs(1);
            loop {
                let wait = match self.reconcile().await {
                    Ok(()) => {
                        backoff = Duration::from_secs(1);
                        self.interval
                    }
                    Err(error) => {
                        tracing::warn!(error = %format!("{error:#}"), "Certificates not managed this time; trying again");
                        let wait = backoff.min(self.interval);
                        backoff = (backoff * 2).min(self.interval);
                        wait
                    }
                };
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = notify.notified() => {}
                }
            }
        });
    }
}
