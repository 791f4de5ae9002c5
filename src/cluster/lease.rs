//! Leader election among `nsguard serve` replicas, on a coordination Lease in nsguard's own
//! namespace, so that one replica (the leader) writes the background watch's Events.
//!
//! The election is `kube-lease-manager`'s (a maintained crate on kube 5): the leader renews
//! the Lease `grace` before it expires; the others sleep until it expires and then take it.
//! A leader killed without releasing is replaced within the lease's duration (plus up to a
//! second of the crate's random back-off against collisions). The Lease is created when it is
//! missing; nsguard's RBAC allows `create` on leases in its namespace and `get`, `patch`,
//! `update` on this Lease by name only.

use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseCreateMode, LeaseManagerBuilder};
use tokio::sync::watch;

/// The Lease's name (in nsguard's own namespace); the RBAC names it.
pub const LEASE_NAME: &str = "nsguard";

/// How long to wait before building the lease manager again after the API refused it.
const RETRY: Duration = Duration::from_secs(5);

/// Settings of the election.
#[derive(Clone, Debug)]
pub struct Election {
    /// The namespace holding the Lease (nsguard's own).
    pub namespace: String,
    /// This replica's identity: the Lease's `holderIdentity` while it leads.
    pub identity: String,
    /// How long a Lease not renewed stays held (`leaseDurationSeconds`).
    pub duration: Duration,
}

impl Election {
    /// The identity of this process: the pod's name (`POD_NAME`, set by the manifests), else
    /// the host's name and the process id (two processes on one machine differ).
    pub fn default_identity() -> String {
        if let Ok(pod) = std::env::var("POD_NAME")
            && !pod.is_empty()
        {
            return pod;
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "nsguard".to_string());
        format!("{host}-{}", std::process::id())
    }

    /// How long before expiry the leader renews: a third of the duration, at least 1 s.
    fn grace(&self) -> u64 {
        (self.duration.as_secs() / 3).max(1)
    }
}

/// Whether this replica leads, as it changes.
#[derive(Clone)]
pub struct Leadership {
    identity: String,
    state: watch::Receiver<bool>,
}

impl Leadership {
    /// A replica that always leads (a single replica without an election, and tests).
    pub fn always(identity: impl Into<String>) -> Self {
        Self {
            identity: identity.into(),
            state: watch::Sender::new(true).subscribe(),
        }
    }

    /// Whether this replica leads now.
    pub fn is_leader(&self) -> bool {
        *self.state.borrow()
    }

    /// This replica's identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// A receiver that changes when leadership does.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.state.clone()
    }
}

/// Starts the election in the background; until the Lease can be read (the API server down,
/// RBAC missing) this replica does not lead, and the attempt is repeated.
pub fn start(client: Client, election: Election) -> Leadership {
    let (tx, rx) = watch::channel(false);
    let identity = election.identity.clone();
    tokio::spawn(async move {
        let duration = election.duration.as_secs().max(2);
        loop {
            let manager = LeaseManagerBuilder::new(client.clone(), LEASE_NAME)
                .with_namespace(&election.namespace)
                .with_create_mode(LeaseCreateMode::AutoCreate)
                .with_identity(&election.identity)
                .with_duration(duration)
                .with_grace(election.grace().min(duration - 1))
                .with_field_manager(format!("nsguard-{}", election.identity))
                .build()
                .await;
            let manager = match manager {
                Ok(m) => m,
                Err(error) => {
                    tracing::warn!(%error, lease = LEASE_NAME, namespace = %election.namespace,
                        "Leader election: the Lease cannot be used; retrying");
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            };
            let (mut state, task) = manager.watch().await;
            loop {
                let leads = *state.borrow_and_update();
                if *tx.borrow() != leads {
                    tracing::info!(
                        identity = %election.identity,
                        leader = leads,
                        "Leader election: {}",
                        if leads { "this replica leads" } else { "this replica follows" }
                    );
                    tx.send_replace(leads);
                }
                if state.changed().await.is_err() {
                    break;
                }
            }
            // The manager's task ended (it only does on an error it gives up on): follow, and
            // start over.
            tx.send_replace(false);
            match task.await {
                Ok(Err(error)) => tracing::warn!(%error, "Leader election stopped; restarting"),
                Err(error) => tracing::warn!(%error, "Leader election stopped; restarting"),
                Ok(Ok(_)) => {}
            }
            tokio::time::sleep(RETRY).await;
        }
    });
    Leadership {
        identity,
        state: rx,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_comes_well_before_expiry() {
        let e = |secs| Election {
            namespace: "nsguard-system".into(),
            identity: "a".into(),
            duration: Duration::from_secs(secs),
        };
        assert_eq!(e(15).grace(), 5);
        assert_eq!(e(2).grace(), 1);
        assert_eq!(e(60).grace(), 20);
    }

    #[test]
    fn always_leads() {
        let l = Leadership::always("x");
        assert!(l.is_leader());
        assert_eq!(l.identity(), "x");
    }
}
