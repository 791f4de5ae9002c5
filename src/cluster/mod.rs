//! Cluster I/O: every call nsguard makes to the API server lives here, under one bound on the
//! calls in flight. It keeps the watched cluster facts and the live metadata index, lists what
//! the index cannot vouch for, confirms blockers with a fresh read before a deny, reads the
//! liveness of finalizer controllers, and performs the ordered teardown's writes. What it
//! reads it hands on as plain data ([`crate::facts`]); nothing above this layer calls the API.

pub mod certificates;
pub mod clock;
pub mod config_map;
pub mod controllers;
pub mod gather;
pub mod index;
pub mod lease;
pub mod snapshot;
pub mod teardown;
#[cfg(test)]
pub(crate) mod testing;

use kube::api::ApiResource;

use crate::facts::ResourceType;

/// The dynamic API handle's description of a discovered type.
pub(crate) fn api_resource(r: &ResourceType) -> ApiResource {
    ApiResource {
        group: r.group.clone(),
        version: r.version.clone(),
        api_version: r.api_version(),
        kind: r.kind.clone(),
        plural: r.resource.clone(),
    }
}

/// Whether the API server serves resource `plural` in `api_version` (a group version it does
/// not know is a no, not an error).
pub async fn serves(
    client: &kube::Client,
    api_version: &str,
    plural: &str,
) -> Result<bool, kube::Error> {
    match client.list_api_group_resources(api_version).await {
        Ok(list) => Ok(list.resources.iter().any(|r| r.name == plural)),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}
