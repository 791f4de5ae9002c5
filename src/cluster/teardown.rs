//! The ordered teardown's writes (`nsguard delete`): one pass over a wave's types, and the
//! namespace's own DELETE. Each call goes through the gatherer's bound on API calls, like every
//! read. Nothing here removes or edits a finalizer: a DELETE of an object with finalizers only
//! marks it, and its controller does the rest.

use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{DeleteParams, DynamicObject, ListParams};
use tokio::time::Instant;

use super::gather::{GatherError, Gatherer};
use crate::facts::ResourceType;

/// An object of a wave that is still there after a pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Remaining {
    /// `resource.group`.
    pub resource: String,
    /// Name.
    pub name: String,
    /// Its finalizers.
    pub finalizers: Vec<String>,
}

/// What the namespace's own DELETE came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NamespaceDeletion {
    /// The API server accepted it: the namespace is Terminating.
    Started,
    /// It was already gone (404) or already Terminating (409): wait for it like ours.
    AlreadyGoing,
    /// An admission webhook denied it, with the API server's message.
    Denied(String),
}

fn is_status(e: &GatherError, code: u16) -> bool {
    matches!(e, GatherError::Api { source: kube::Error::Api(s), .. } if s.code == code)
}

impl Gatherer {
    /// One pass over `resources` (`(resource.group, type)`) in `ns`: deletes every object not
    /// yet being deleted (objects created since the plan too) and returns how many DELETE calls
    /// it made and what is still there.
    pub async fn delete_pass(
        &self,
        ns: &str,
        resources: &[(String, ResourceType)],
        deadline: Instant,
    ) -> Result<(usize, Vec<Remaining>), GatherError> {
        let mut deleted = 0;
        let mut left = Vec::new();
        for (gr, r) in resources {
            let api: Api<DynamicObject> =
                Api::namespaced_with(self.client().clone(), ns, &super::api_resource(r));
            let what = format!("list {gr} in {ns}");
            let listed = self
                .call(&what, deadline, api.list_metadata(&ListParams::default()))
                .await?;
            for o in listed.items {
                let name = o.metadata.name.clone().unwrap_or_default();
                if o.metadata.deletion_timestamp.is_none() {
                    let what = format!("delete {gr} {name} in {ns}");
                    match self
                        .call(
                            &what,
                            deadline,
                            api.delete(&name, &DeleteParams::background()),
                        )
                        .await
                    {
                        Ok(_) => deleted += 1,
                        Err(e) if is_status(&e, 404) => continue,
                        Err(e) => return Err(e),
                    }
                }
                left.push(Remaining {
                    resource: gr.clone(),
                    name,
                    finalizers: o.metadata.finalizers.clone().unwrap_or_default(),
                });
            }
        }
        Ok((deleted, left))
    }

    /// Deletes the namespace itself (through the admission webhooks, nsguard's included).
    pub async fn delete_namespace(
        &self,
        name: &str,
        deadline: Instant,
    ) -> Result<NamespaceDeletion, GatherError> {
        let api: Api<Namespace> = Api::all(self.client().clone());
        let what = format!("delete namespace {name}");
        match self
            .call(&what, deadline, api.delete(name, &DeleteParams::default()))
            .await
        {
            Ok(_) => Ok(NamespaceDeletion::Started),
            Err(e) if is_status(&e, 404) || is_status(&e, 409) => {
                Ok(NamespaceDeletion::AlreadyGoing)
            }
            Err(GatherError::Api {
                source: kube::Error::Api(s),
                ..
            }) if s.code == 403 && s.message.contains("denied the request") => {
                Ok(NamespaceDeletion::Denied(s.message))
            }
            Err(e) => Err(e),
        }
    }
}
