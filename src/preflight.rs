//! The preflight: facts -> checks -> report, shared by the webhook and the CLI. Concurrent
//! preflights of the same namespace share one gathering.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use k8s_openapi::api::core::v1::Namespace;
use tokio::time::Instant;

use crate::checks::{self, Settings};
use crate::facts::Facts;
use crate::facts::gather::{self, Gatherer};
use crate::report::Report;

type Gathering = Shared<BoxFuture<'static, Arc<Facts>>>;

/// Runs preflights.
#[derive(Clone)]
pub struct Engine {
    gatherer: Gatherer,
    settings: Arc<Settings>,
    inflight: Arc<Mutex<HashMap<String, Gathering>>>,
}

impl Engine {
    /// An engine over a started gatherer.
    pub fn new(gatherer: Gatherer, settings: Settings) -> Self {
        Self {
            gatherer,
            settings: Arc::new(settings),
            inflight: Arc::default(),
        }
    }

    /// The gatherer.
    pub fn gatherer(&self) -> &Gatherer {
        &self.gatherer
    }

    /// Gathers facts for `namespace` and runs every check, within `deadline`.
    pub async fn preflight(&self, namespace: Namespace, deadline: Instant) -> Report {
        let facts = self.facts(namespace, deadline).await;
        self.check(&facts)
    }

    /// Runs every check on facts already gathered.
    pub fn check(&self, facts: &Facts) -> Report {
        checks::run(facts, &self.settings)
    }

    /// The facts for one namespace; a gathering already under way for it is joined.
    pub async fn facts(&self, namespace: Namespace, deadline: Instant) -> Arc<Facts> {
        let name = namespace.metadata.name.clone().unwrap_or_default();
        let shared = {
            let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(g) = inflight.get(&name) {
                g.clone()
            } else {
                let gatherer = self.gatherer.clone();
                let settings = self.settings.clone();
                let inflight_map = self.inflight.clone();
                let key = name.clone();
                let fut = async move {
                    let facts =
                        Arc::new(gather_facts(&gatherer, &settings, namespace, deadline).await);
                    inflight_map
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&key);
                    facts
                }
                .boxed()
                .shared();
                inflight.insert(name, fut.clone());
                fut
            }
        };
        shared.await
    }
}

async fn gather_facts(
    gatherer: &Gatherer,
    settings: &Settings,
    namespace: Namespace,
    deadline: Instant,
) -> Facts {
    let name = namespace.metadata.name.clone().unwrap_or_default();
    let mut not_checked = Vec::new();
    let cluster = match gatherer.cluster(deadline).await {
        Ok(c) => c,
        Err(e) => {
            not_checked.push(format!("cluster facts: {e}"));
            Arc::default()
        }
    };
    let (ns_facts, mut missed) = if not_checked.is_empty() {
        gatherer
            .namespace(namespace, &cluster.discovery, deadline)
            .await
    } else {
        not_checked.push("namespace content".to_string());
        (
            crate::facts::NamespaceFacts {
                namespace,
                ..Default::default()
            },
            Vec::new(),
        )
    };
    not_checked.append(&mut missed);
    let mut ns_facts = ns_facts;
    if !ns_facts.content.is_empty() {
        let (controllers, mut missed) = gatherer
            .controllers(
                &cluster,
                &ns_facts.content,
                &name,
                &settings.finalizer_controllers,
                deadline,
            )
            .await;
        ns_facts.controllers = controllers;
        not_checked.append(&mut missed);
    }
    Facts {
        now: gather::now(),
        name,
        cluster,
        namespace: ns_facts,
        not_checked,
    }
}
