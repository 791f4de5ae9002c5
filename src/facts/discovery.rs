//! Discovery the way the namespace controller does it: aggregated discovery (`/api` and
//! `/apis`), `Stale` group-versions recorded as failures, the preferred version per resource,
//! and only namespaced resources that support `delete`.

use std::collections::BTreeSet;

use kube::core::discovery::v2::APIGroupDiscoveryList;

/// A namespaced resource type at its preferred version.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceType {
    /// API group ("" for core).
    pub group: String,
    /// Version.
    pub version: String,
    /// Plural resource name.
    pub resource: String,
    /// Kind.
    pub kind: String,
    /// The resource supports `list` (nsguard can only enumerate those).
    pub listable: bool,
}

impl ResourceType {
    /// `resource.group` (`pods` for core), the way the namespace conditions name it.
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }

    /// `group/version` (`v1` for core).
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// What discovery says.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Discovery {
    /// Namespaced resource types the namespace controller would delete.
    pub resources: Vec<ResourceType>,
    /// Group-versions whose discovery is `Stale` ("group/version").
    pub stale: Vec<String>,
    /// Types the cluster serves that were left out on purpose (`--skip-resource`), as
    /// `resource.group`: never listed nor watched, so every report says they were not checked.
    pub skipped: Vec<String>,
}

impl Discovery {
    /// Builds the controller's view from the two aggregated discovery documents.
    pub fn from_aggregated(core: &APIGroupDiscoveryList, apis: &APIGroupDiscoveryList) -> Self {
        let mut out = Discovery::default();
        let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
        for group in core.items.iter().chain(apis.items.iter()) {
            let group_name = group
                .metadata
                .as_ref()
                .and_then(|m| m.name.clone())
                .unwrap_or_default();
            for version in &group.versions {
                let v = version.version.clone().unwrap_or_default();
                if version.freshness.as_deref() == Some("Stale") {
                    out.stale.push(if group_name.is_empty() {
                        v
                    } else {
                        format!("{group_name}/{v}")
                    });
                    continue;
                }
                // Versions are listed in preference order: the first fresh version that serves
                // a resource is the one the controller deletes it at.
                for r in &version.resources {
                    let Some(name) = r.resource.clone() else {
                        continue;
                    };
                    if r.scope.as_deref() != Some("Namespaced")
                        || !r.verbs.iter().any(|v| v == "delete")
                    {
                        continue;
                    }
                    if !seen.insert((group_name.clone(), name.clone())) {
                        continue;
                    }
                    out.resources.push(ResourceType {
                        group: group_name.clone(),
                        version: v.clone(),
                        kind: r
                            .response_kind
                            .as_ref()
                            .and_then(|k| k.kind.clone())
                            .unwrap_or_default(),
                        resource: name,
                        listable: r.verbs.iter().any(|v| v == "list"),
                    });
                }
            }
        }
        out.resources.sort();
        out.stale.sort();
        out
    }

    /// Leaves out the types named in `skip` (`resource.group`, `secrets` for core) and
    /// records those the cluster serves in [`Discovery::skipped`].
    pub fn skipping(mut self, skip: &BTreeSet<String>) -> Self {
        if skip.is_empty() {
            return self;
        }
        self.resources.retain(|r| {
            let gr = r.group_resource();
            if skip.contains(&gr) {
                self.skipped.push(gr);
                return false;
            }
            true
        });
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(json: serde_json::Value) -> APIGroupDiscoveryList {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn stale_versions_are_failures_and_preferred_versions_win() {
        let core = list(
            serde_json::json!({"items": [{"metadata": {"name": ""}, "versions": [
            {"version": "v1", "resources": [
                {"resource": "pods", "scope": "Namespaced", "verbs": ["list", "delete"], "responseKind": {"kind": "Pod"}},
                {"resource": "nodes", "scope": "Cluster", "verbs": ["list", "delete"]},
                {"resource": "bindings", "scope": "Namespaced", "verbs": ["create"]}
            ]}]}]}),
        );
        let apis = list(serde_json::json!({"items": [
            {"metadata": {"name": "metrics.k8s.io"}, "versions": [{"version": "v1beta1", "freshness": "Stale"}]},
            {"metadata": {"name": "example.com"}, "versions": [
                {"version": "v2", "resources": [{"resource": "widgets", "scope": "Namespaced", "verbs": ["list", "delete"], "responseKind": {"kind": "Widget"}}]},
                {"version": "v1", "resources": [
                    {"resource": "widgets", "scope": "Namespaced", "verbs": ["list", "delete"]},
                    {"resource": "gadgets", "scope": "Namespaced", "verbs": ["delete"]}
                ]}
            ]}
        ]}));
        let d = Discovery::from_aggregated(&core, &apis);
        assert_eq!(d.stale, vec!["metrics.k8s.io/v1beta1"]);
        let names: Vec<String> = d
            .resources
            .iter()
            .map(|r| format!("{} {} {}", r.api_version(), r.resource, r.listable))
            .collect();
        assert_eq!(
            names,
            vec![
                "v1 pods true",
                "example.com/v1 gadgets false",
                "example.com/v2 widgets true"
            ]
        );
        assert!(d.skipped.is_empty());
    }

    #[test]
    fn skipped_types_are_left_out_and_recorded() {
        let core = list(
            serde_json::json!({"items": [{"metadata": {"name": ""}, "versions": [
            {"version": "v1", "resources": [
                {"resource": "pods", "scope": "Namespaced", "verbs": ["list", "delete"]},
                {"resource": "secrets", "scope": "Namespaced", "verbs": ["list", "watch", "delete"]},
                {"resource": "configmaps", "scope": "Namespaced", "verbs": ["list", "delete"]}
            ]}]}]}),
        );
        let apis = list(serde_json::json!({"items": [
            {"metadata": {"name": "example.com"}, "versions": [{"version": "v1", "resources": [
                {"resource": "secrets", "scope": "Namespaced", "verbs": ["list", "delete"]}
            ]}]}
        ]}));
        let skip: BTreeSet<String> = ["secrets".to_string(), "absent.example.com".to_string()]
            .into_iter()
            .collect();
        let d = Discovery::from_aggregated(&core, &apis).skipping(&skip);
        let names: Vec<String> = d.resources.iter().map(|r| r.group_resource()).collect();
        // Only the core type: a CRD's `secrets` in another group is another type.
        assert_eq!(names, vec!["configmaps", "pods", "secrets.example.com"]);
        // Recorded only when the cluster serves it.
        assert_eq!(d.skipped, vec!["secrets"]);
        let d = Discovery::from_aggregated(&core, &apis).skipping(&BTreeSet::new());
        assert_eq!(d.resources.len(), 4);
        assert!(d.skipped.is_empty());
    }
}
