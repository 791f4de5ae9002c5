//! `nsguard rbac`: the ClusterRole nsguard needs on the cluster in the kubeconfig. By default
//! that of `manifests/base/rbac.yaml` (list and watch of every type); with `--no-secrets`, the
//! same with its first rule replaced by the types this cluster serves, Secrets left out: every
//! namespaced core type but Secrets by name, and every other API group it serves (its CRDs' and
//! aggregated APIs' too) whole.

use std::collections::BTreeSet;

use anyhow::{Context, Result, bail};
use clap::Args;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};

use super::{ClusterArgs, Output, formats, print_document};
use crate::facts::ResourceType;

/// The installed role, whose rules after the first (the read of every type) are kept.
const BASE_RBAC: &str = include_str!("../../manifests/base/rbac.yaml");

/// `nsguard rbac`.
#[derive(Debug, Args)]
pub struct RbacArgs {
    /// Leave Secrets out: name every other namespaced core type, and every API group this
    /// cluster serves, instead of reading every type.
    #[arg(long, env = "NSGUARD_NO_SECRETS")]
    pub no_secrets: bool,
    /// Output format: yaml or json.
    #[arg(short = 'o', long, env = "NSGUARD_OUTPUT", default_value = "yaml", value_parser = formats(&[Output::Yaml, Output::Json]))]
    pub output: Output,
    /// Cluster access.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// The ClusterRole of `manifests/base/rbac.yaml`.
fn base_role() -> Result<ClusterRole> {
    for doc in BASE_RBAC.split("\n---") {
        let value: serde_json::Value =
            serde_saphyr::from_str(doc).context("reading manifests/base/rbac.yaml")?;
        if value["kind"] == "ClusterRole" {
            return serde_json::from_value(value).context("the ClusterRole of rbac.yaml");
        }
    }
    bail!("manifests/base/rbac.yaml has no ClusterRole")
}

/// The read rules without Secrets for the types `served`: the core group's types by name
/// (Secrets left out), every other group whole.
pub fn rules_without_secrets(served: &[ResourceType]) -> Vec<PolicyRule> {
    let core: BTreeSet<&str> = served
        .iter()
        .filter(|t| t.group.is_empty() && t.resource != "secrets")
        .map(|t| t.resource.as_str())
        .collect();
    let groups: BTreeSet<&str> = served
        .iter()
        .filter(|t| !t.group.is_empty())
        .map(|t| t.group.as_str())
        .collect();
    let read = || Some(vec!["list".to_string(), "watch".to_string()]);
    let mut rules = vec![PolicyRule {
        api_groups: Some(vec![String::new()]),
        resources: Some(core.into_iter().map(String::from).collect()),
        verbs: read().unwrap_or_default(),
        ..Default::default()
    }];
    if !groups.is_empty() {
        rules.push(PolicyRule {
            api_groups: Some(groups.into_iter().map(String::from).collect()),
            resources: Some(vec!["*".to_string()]),
            verbs: read().unwrap_or_default(),
            ..Default::default()
        });
    }
    rules
}

/// Runs `nsguard rbac`; prints the ClusterRole.
pub async fn rbac(args: RbacArgs) -> Result<i32> {
    let mut role = base_role()?;
    if args.no_secrets {
        let client = args.cluster.client().await?;
        let discovery = crate::cluster::gather::discover(&client, args.cluster.check_timeout)
            .await
            .context("discovering the types this cluster serves")?;
        let mut rules = rules_without_secrets(&discovery.resources);
        let kept = role.rules.take().unwrap_or_default().into_iter().skip(1);
        rules.extend(kept);
        role.rules = Some(rules);
    }
    print_document(args.output, &role)?;
    Ok(super::exit::CLEAN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served(group: &str, resource: &str) -> ResourceType {
        ResourceType {
            group: group.into(),
            version: "v1".into(),
            resource: resource.into(),
            kind: String::new(),
            listable: true,
        }
    }

    #[test]
    fn the_base_role_reads_every_type_first() {
        let role = base_role().unwrap();
        let first = &role.rules.unwrap()[0];
        assert_eq!(first.resources.as_deref(), Some(&["*".to_string()][..]));
    }

    #[test]
    fn without_secrets_names_the_core_types_and_every_other_group() {
        let rules = rules_without_secrets(&[
            served("", "configmaps"),
            served("", "secrets"),
            served("", "pods"),
            served("apps", "deployments"),
            served("example.com", "widgets"),
            served("example.com", "gadgets"),
        ]);
        assert_eq!(
            rules[0].resources.as_deref(),
            Some(&["configmaps".to_string(), "pods".to_string()][..])
        );
        assert_eq!(
            rules[1].api_groups.as_deref(),
            Some(&["apps".to_string(), "example.com".to_string()][..])
        );
        assert!(
            rules
                .iter()
                .all(|r| !r.resources.iter().flatten().any(|x| x == "secrets")),
            "{rules:?}"
        );
    }
}
