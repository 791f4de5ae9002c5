//! Reads the webhook's configuration ConfigMap, for the CLI.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, Client};

/// The value at `key` in ConfigMap `namespace/name`: `Ok(None)` when the ConfigMap does not
/// exist, an empty string when it has no such key.
pub async fn read(
    client: &Client,
    namespace: &str,
    name: &str,
    key: &str,
) -> Result<Option<String>, kube::Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let Some(cm) = api.get_opt(name).await? else {
        return Ok(None);
    };
    Ok(Some(
        cm.data.and_then(|mut d| d.remove(key)).unwrap_or_default(),
    ))
}
