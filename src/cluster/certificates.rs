//! The API calls of certificates managed in process (`nsguard serve --manage-certificates`):
//! nsguard's own Secret (read, created, replaced with its resourceVersion, so replicas agree
//! through optimistic concurrency) and the caBundle of its own webhook in its own
//! ValidatingWebhookConfiguration (read, and patched for that one webhook only). RBAC limits
//! nsguard to these objects by name, but for `create`, which RBAC cannot limit by name.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use nsguard_certs::managed::Material;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The Secret's keys.
const CA_CRT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";
const TLS_CRT: &str = "tls.crt";
const TLS_KEY: &str = "tls.key";
/// When the newest CA was added beside an older one (RFC 3339).
const ROTATED_AT: &str = "nsguard.io/ca-rotated-at";
/// The field manager of nsguard's writes.
const MANAGER: &str = "nsguard";

/// Errors of the certificate store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An API call failed.
    #[error("{what}: {source}")]
    Api {
        /// The call, with its object.
        what: String,
        /// kube's error.
        source: kube::Error,
    },
    /// The webhook configuration has no webhook of that name.
    #[error("ValidatingWebhookConfiguration {config} has no webhook named {webhook}")]
    NoWebhook {
        /// The configuration.
        config: String,
        /// The webhook's name.
        webhook: String,
    },
}

/// The Secret as read: what it holds (`None` when a key is missing or not UTF-8) and its
/// resourceVersion.
#[derive(Debug)]
pub struct Stored {
    /// The material, when every key is there.
    pub material: Option<Material>,
    /// The resourceVersion to replace it with.
    pub resource_version: String,
}

/// What a write came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    /// The write is in.
    Done,
    /// Another replica wrote first (AlreadyExists, Conflict): read again.
    Lost,
}

/// nsguard's Secret and its webhook's caBundle.
#[derive(Clone)]
pub struct CertificateStore {
    secrets: Api<Secret>,
    configs: Api<ValidatingWebhookConfiguration>,
    namespace: String,
    secret: String,
    config: String,
    webhook: String,
}

impl CertificateStore {
    /// The store of Secret `namespace/secret` and of webhook `webhook` in
    /// ValidatingWebhookConfiguration `config`.
    pub fn new(client: Client, namespace: &str, secret: &str, config: &str, webhook: &str) -> Self {
        Self {
            secrets: Api::namespaced(client.clone(), namespace),
            configs: Api::all(client),
            namespace: namespace.into(),
            secret: secret.into(),
            config: config.into(),
            webhook: webhook.into(),
        }
    }

    /// `namespace/name` of the Secret, for messages.
    pub fn secret_name(&self) -> String {
        format!("{}/{}", self.namespace, self.secret)
    }

    /// The webhook configuration's name.
    pub fn config_name(&self) -> &str {
        &self.config
    }

    fn api(&self, what: String) -> impl FnOnce(kube::Error) -> StoreError {
        move |source| StoreError::Api { what, source }
    }

    /// Reads the Secret; `None` when there is none.
    pub async fn read(&self) -> Result<Option<Stored>, StoreError> {
        let Some(secret) = self
            .secrets
            .get_opt(&self.secret)
            .await
            .map_err(self.api(format!("reading Secret {}", self.secret_name())))?
        else {
            return Ok(None);
        };
        let resource_version = secret.metadata.resource_version.clone().unwrap_or_default();
        Ok(Some(Stored {
            material: material_of(&secret),
            resource_version,
        }))
    }

    /// Creates the Secret; [`Written::Lost`] when another replica created it first.
    pub async fn create(&self, material: &Material) -> Result<Written, StoreError> {
        let secret = self.secret_of(material, None);
        match self.secrets.create(&PostParams::default(), &secret).await {
            Ok(_) => Ok(Written::Done),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Written::Lost),
            Err(e) => Err(self.api(format!("creating Secret {}", self.secret_name()))(
                e,
            )),
        }
    }

    /// Replaces the Secret if it is still at `resource_version`; [`Written::Lost`] when
    /// another replica changed it since.
    pub async fn replace(
        &self,
        material: &Material,
        resource_version: &str,
    ) -> Result<Written, StoreError> {
        let secret = self.secret_of(material, Some(resource_version.to_string()));
        let params = PostParams {
            field_manager: Some(MANAGER.into()),
            ..PostParams::default()
        };
        match self.secrets.replace(&self.secret, &params, &secret).await {
            Ok(_) => Ok(Written::Done),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Written::Lost),
            Err(e) => Err(self.api(format!("updating Secret {}", self.secret_name()))(
                e,
            )),
        }
    }

    fn secret_of(&self, m: &Material, resource_version: Option<String>) -> Secret {
        let mut secret = Secret {
            type_: Some("kubernetes.io/tls".into()),
            ..Secret::default()
        };
        secret.metadata.name = Some(self.secret.clone());
        secret.metadata.namespace = Some(self.namespace.clone());
        secret.metadata.resource_version = resource_version;
        secret.metadata.labels = Some(BTreeMap::from([(
            "app.kubernetes.io/managed-by".to_string(),
            "nsguard".to_string(),
        )]));
        if let Some(at) = m.ca_rotated_at.and_then(|at| at.format(&Rfc3339).ok()) {
            secret.metadata.annotations = Some(BTreeMap::from([(ROTATED_AT.to_string(), at)]));
        }
        let data = [
            (CA_CRT, &m.ca_bundle),
            (CA_KEY, &m.ca_key),
            (TLS_CRT, &m.tls_crt),
            (TLS_KEY, &m.tls_key),
        ];
        secret.data = Some(
            data.into_iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        );
        secret
    }

    /// The caBundle of nsguard's webhook as it is now (PEM; empty when unset).
    pub async fn ca_bundle(&self) -> Result<String, StoreError> {
        let config = self
            .configs
            .get(&self.config)
            .await
            .map_err(self.api(format!(
                "reading ValidatingWebhookConfiguration {}",
                self.config
            )))?;
        let hook = config
            .webhooks
            .unwrap_or_default()
            .into_iter()
            .find(|w| w.name == self.webhook)
            .ok_or_else(|| StoreError::NoWebhook {
                config: self.config.clone(),
                webhook: self.webhook.clone(),
            })?;
        let bundle = hook
            .client_config
            .ca_bundle
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
            .unwrap_or_default();
        Ok(bundle)
    }

    /// Sets the caBundle of nsguard's webhook: a strategic merge patch, which merges the
    /// configuration's webhooks by name, so no other webhook of it is touched.
    pub async fn set_ca_bundle(&self, bundle: &str) -> Result<(), StoreError> {
        use base64::Engine;
        let encoded = base64::engine::general_purpose::STANDARD.encode(bundle);
        let patch = serde_json::json!({"webhooks": [
            {"name": self.webhook, "clientConfig": {"caBundle": encoded}},
        ]});
        self.configs
            .patch(
                &self.config,
                &PatchParams {
                    field_manager: Some(MANAGER.into()),
                    ..PatchParams::default()
                },
                &Patch::Strategic(patch),
            )
            .await
            .map_err(self.api(format!(
                "patching the caBundle of ValidatingWebhookConfiguration {}",
                self.config
            )))?;
        Ok(())
    }
}

impl CertificateStore {
    /// A stream that yields whenever nsguard's webhook configuration changes (a GitOps
    /// re-apply blanking the caBundle, nsguard's own patch), so the manager looks at once
    /// instead of at its next interval. The watch restarts with a backoff after errors.
    pub fn config_changes(&self) -> impl futures::Stream<Item = ()> + Send + use<> {
        use futures::StreamExt;
        use kube::runtime::{WatchStreamExt, watcher};
        let config = watcher::Config::default().fields(&format!("metadata.name={}", self.config));
        watcher(self.configs.clone(), config)
            .default_backoff()
            .filter_map(|event| async move {
                match event {
                    Ok(watcher::Event::Apply(_) | watcher::Event::InitDone) => Some(()),
                    Ok(_) => None,
                    Err(error) => {
                        tracing::debug!(%error, "Watch of the webhook configuration");
                        None
                    }
                }
            })
    }
}

fn material_of(secret: &Secret) -> Option<Material> {
    let data = secret.data.as_ref()?;
    let text = |k: &str| String::from_utf8(data.get(k)?.0.clone()).ok();
    let ca_rotated_at = secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ROTATED_AT))
        .and_then(|at| OffsetDateTime::parse(at, &Rfc3339).ok());
    Some(Material {
        ca_bundle: text(CA_CRT)?,
        ca_key: text(CA_KEY)?,
        tls_crt: text(TLS_CRT)?,
        tls_key: text(TLS_KEY)?,
        ca_rotated_at,
    })
}
