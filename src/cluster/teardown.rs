//! The ordered teardown's writes (`nsguard delete`): one pass over a wave's types, and the
//! namespace's own DELETE. Each call goes through the gatherer's bound on API calls, like every
//! read. Nothing here removes or edits a finalizer: a DELETE of an object with finalizers only
//! marks it, and its controller does the rest.

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{DeleteParams, DynamicObject, ListParams, PostParams, Preconditions};
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

/// What a server dry run of the namespace's DELETE came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NamespaceDryRun {
    /// The API server would delete it now.
    Allowed,
    /// nsguard's own webhook refused it: expected while the namespace still holds what the
    /// waves delete first.
    RefusedByNsguard(String),
    /// Anything else refused it (RBAC, another webhook, an admission policy, a protected
    /// namespace): the teardown must not start.
    Refused(String),
}

/// A permission the teardown needs and the API server says it lacks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unauthorized {
    /// `delete`, `list`.
    pub verb: String,
    /// `resource.group`, or `namespaces` for the namespace itself.
    pub resource: String,
    /// The authorizer's reason, when it gave one.
    pub reason: String,
}

/// The delete options of every teardown DELETE: the object must still be the one that was
/// listed (a uid precondition), so an object replaced since is never deleted unseen.
fn delete_exactly(uid: Option<String>, dry_run: bool) -> DeleteParams {
    DeleteParams {
        dry_run,
        preconditions: uid.map(|uid| Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::background()
    }
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
                            api.delete(&name, &delete_exactly(o.metadata.uid.clone(), false)),
                        )
                        .await
                    {
                        Ok(_) => deleted += 1,
                        // Gone, or replaced since the list (the uid precondition failed): the
                        // next pass sees what is there now.
                        Err(e) if is_status(&e, 404) || is_status(&e, 409) => continue,
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

    /// Asks the API server (SelfSubjectAccessReviews) whether nsguard's caller may `list` and
    /// `delete` every type of `resources` in `ns` and delete the namespace itself; returns what
    /// it may not do. Nothing is deleted before this says nothing is missing.
    pub async fn authorize_teardown(
        &self,
        ns: &str,
        resources: &[ResourceType],
        deadline: Instant,
    ) -> Result<Vec<Unauthorized>, GatherError> {
        let mut asks: Vec<(&str, String, ResourceAttributes)> = Vec::new();
        for r in resources {
            for verb in ["list", "delete"] {
                asks.push((
                    verb,
                    r.group_resource(),
                    ResourceAttributes {
                        namespace: Some(ns.to_string()),
                        verb: Some(verb.to_string()),
                        group: Some(r.group.clone()),
                        resource: Some(r.resource.clone()),
                        ..Default::default()
                    },
                ));
            }
        }
        asks.push((
            "delete",
            "namespaces".to_string(),
            ResourceAttributes {
                verb: Some("delete".to_string()),
                group: Some(String::new()),
                resource: Some("namespaces".to_string()),
                name: Some(ns.to_string()),
                ..Default::default()
            },
        ));
        let api: Api<SelfSubjectAccessReview> = Api::all(self.client().clone());
        let mut missing = Vec::new();
        for (verb, resource, attributes) in asks {
            let review = SelfSubjectAccessReview {
                spec: SelfSubjectAccessReviewSpec {
                    resource_attributes: Some(attributes),
                    ..Default::default()
                },
                ..Default::default()
            };
            let what = format!("may I {verb} {resource} in {ns}");
            let answer = self
                .call(&what, deadline, api.create(&PostParams::default(), &review))
                .await?;
            let status = answer.status.unwrap_or_default();
            if !status.allowed || status.denied == Some(true) {
                missing.push(Unauthorized {
                    verb: verb.to_string(),
                    resource,
                    reason: status.reason.unwrap_or_default(),
                });
            }
        }
        Ok(missing)
    }

    /// A server dry run of the namespace's DELETE (uid `uid`): every admission webhook and
    /// policy and the authorizer answer as they would, and nothing changes.
    pub async fn dry_run_delete_namespace(
        &self,
        name: &str,
        uid: Option<String>,
        deadline: Instant,
    ) -> Result<NamespaceDryRun, GatherError> {
        let api: Api<Namespace> = Api::all(self.client().clone());
        let what = format!("delete namespace {name} (server dry run)");
        match self
            .call(
                &what,
                deadline,
                api.delete(name, &delete_exactly(uid, true)),
            )
            .await
        {
            Ok(_) => Ok(NamespaceDryRun::Allowed),
            Err(e) if is_status(&e, 409) => Ok(NamespaceDryRun::Allowed),
            Err(GatherError::Api {
                source: kube::Error::Api(s),
                ..
            }) if s.message.contains("nsguard denied the deletion") => {
                Ok(NamespaceDryRun::RefusedByNsguard(s.message))
            }
            Err(GatherError::Api {
                source: kube::Error::Api(s),
                ..
            }) if (400..500).contains(&s.code) && s.code != 404 && s.code != 429 => Ok(
                NamespaceDryRun::Refused(format!("{} ({})", s.message, s.code)),
            ),
            Err(e) => Err(e),
        }
    }

    /// Deletes the namespace itself (through the admission webhooks, nsguard's included), only
    /// if it is still the one planned for (uid `uid`).
    pub async fn delete_namespace(
        &self,
        name: &str,
        uid: Option<String>,
        deadline: Instant,
    ) -> Result<NamespaceDeletion, GatherError> {
        let api: Api<Namespace> = Api::all(self.client().clone());
        let what = format!("delete namespace {name}");
        match self
            .call(
                &what,
                deadline,
                api.delete(name, &delete_exactly(uid, false)),
            )
            .await
        {
            Ok(_) => Ok(NamespaceDeletion::Started),
            Err(GatherError::Api {
                source: kube::Error::Api(s),
                ..
            }) if s.code == 409 && s.message.to_lowercase().contains("precondition") => {
                Ok(NamespaceDeletion::Denied(format!(
                    "namespace {name} was replaced since the plan: {}",
                    s.message
                )))
            }
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
