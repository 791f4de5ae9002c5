//! Who may remove a finalizer, by RBAC, exactly as the authorizer decides it.
//!
//! Removing a finalizer is an UPDATE or PATCH of the object itself, so the right to it is
//! `update` or `patch` on the resource (`apiGroups` naming its group or `*`; `resources` naming
//! its plural or `*`), honouring `resourceNames`. A subresource grant is not that right:
//! `<resource>/finalizers` is only checked by the OwnerReferencesPermissionEnforcement plugin
//! (for `blockOwnerDeletion`), `<resource>/status` never reaches metadata, and `*/*` matches
//! only subresources.
//!
//! Roles are judged by their effective rules (an aggregated ClusterRole's `rules` are filled by
//! the aggregation controller) and by who holds them, never by their kind:
//! - a ServiceAccount, a `system:serviceaccount:<ns>:<name>` user, and the
//!   `system:serviceaccounts:<ns>` group (every ServiceAccount of `<ns>`) are controllers;
//! - other `system:` users are control-plane components (trusted as live);
//! - Users and Groups are people; `system:serviceaccounts`, `system:authenticated`,
//!   `system:unauthenticated` and `system:anonymous` are everyone: neither is a controller.
//!
//! A grant that names the resource (or every resource of its named group: an operator's grant
//! over its own API) is evidence that its holder handles the type's finalizers. A grant only
//! through `*` groups and `*` resources (cluster-admin's shape) is the right, but no evidence of
//! intent: it counts only for a candidate an installer record names.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::rbac::v1::{PolicyRule, RoleRef, Subject};

use super::Identity;
use crate::facts::ClusterFacts;

/// What one rule allows on a resource, for removing a finalizer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Grant {
    /// update or patch on the resource named (or every resource of its named group): `None` =
    /// every object, else only these names.
    Named(Option<BTreeSet<String>>),
    /// update or patch only through `*` groups and `*` resources, or `*` resources of the core
    /// group: the right, not evidence of intent.
    Wildcard,
}

fn any(list: Option<&Vec<String>>, want: impl Fn(&str) -> bool) -> bool {
    list.is_some_and(|l| l.iter().any(|x| want(x)))
}

/// What `rule` allows on objects of `group`/`resource` for removing a finalizer.
pub fn rule_grant(rule: &PolicyRule, group: &str, resource: &str) -> Option<Grant> {
    let writes = rule
        .verbs
        .iter()
        .any(|v| v == "*" || v == "update" || v == "patch");
    let names_group = any(rule.api_groups.as_ref(), |g| g == group);
    let every_group = any(rule.api_groups.as_ref(), |g| g == "*");
    if !writes || !(names_group || every_group) {
        return None;
    }
    // As the authorizer matches: `*` is every resource, an exact name is that resource;
    // `<resource>/finalizers`, `<resource>/status` and `*/*` are subresources only.
    let names_resource = any(rule.resources.as_ref(), |r| r == resource);
    let every_resource = any(rule.resources.as_ref(), |r| r == "*");
    let names: BTreeSet<String> = rule.resource_names.iter().flatten().cloned().collect();
    let names = (!names.is_empty()).then_some(names);
    if names_resource || (every_resource && names_group && !group.is_empty()) {
        Some(Grant::Named(names))
    } else if every_resource {
        Some(Grant::Wildcard)
    } else {
        None
    }
}

/// Who holds a binding.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Holder {
    /// A controller: a ServiceAccount, every ServiceAccount of a namespace, or a control-plane
    /// user.
    Controller(Identity),
    /// People: Users and Groups (`kind name`).
    People(String),
    /// Everyone of a kind: `system:authenticated`, `system:serviceaccounts`, ...
    Everyone(String),
}

/// The holder a binding subject stands for; `binding_ns` is a RoleBinding's namespace.
pub fn holder(s: &Subject, binding_ns: Option<&str>) -> Holder {
    let people = || Holder::People(format!("{} {}", s.kind, s.name));
    match s.kind.as_str() {
        "ServiceAccount" => match s.namespace.as_deref().or(binding_ns) {
            Some(ns) if !ns.is_empty() => {
                Holder::Controller(Identity::service_account(ns, &s.name))
            }
            _ => people(),
        },
        "User" => match s.name.as_str() {
            "system:anonymous" => Holder::Everyone(format!("User {}", s.name)),
            n if n.starts_with("system:node:") => people(),
            n if n.starts_with("system:") => match Identity::parse(n) {
                Some(id) => Holder::Controller(id),
                None => people(),
            },
            _ => people(),
        },
        "Group" => match s.name.as_str() {
            "system:serviceaccounts" | "system:authenticated" | "system:unauthenticated" => {
                Holder::Everyone(format!("Group {}", s.name))
            }
            n => match n.strip_prefix("system:serviceaccounts:") {
                Some(ns) if !ns.is_empty() => Holder::Controller(Identity::ServiceAccounts {
                    namespace: ns.to_string(),
                }),
                _ => people(),
            },
        },
        _ => people(),
    }
}

/// The effective rules of a role reference from a binding in `binding_ns` (`None`: a
/// ClusterRoleBinding).
fn role_rules<'c>(
    cluster: &'c ClusterFacts,
    role: &RoleRef,
    binding_ns: Option<&str>,
) -> Vec<&'c PolicyRule> {
    match role.kind.as_str() {
        "ClusterRole" => cluster
            .rbac
            .cluster_roles
            .iter()
            .filter(|r| r.metadata.name.as_deref() == Some(role.name.as_str()))
            .flat_map(|r| r.rules.iter().flatten())
            .collect(),
        "Role" => cluster
            .rbac
            .roles
            .iter()
            .filter(|r| {
                r.metadata.name.as_deref() == Some(role.name.as_str())
                    && r.metadata.namespace.as_deref() == binding_ns
            })
            .flat_map(|r| r.rules.iter().flatten())
            .collect(),
        _ => Vec::new(),
    }
}

/// One binding, cluster-wide or in a namespace.
struct Binding<'c> {
    kind: &'static str,
    name: &'c str,
    namespace: Option<&'c str>,
    role: &'c RoleRef,
    subjects: &'c [Subject],
}

/// ClusterRoleBindings, and RoleBindings in `ns` (a RoleBinding grants only in its namespace);
/// every RoleBinding when `ns` is `None`.
fn bindings<'c>(cluster: &'c ClusterFacts, ns: Option<&str>) -> Vec<Binding<'c>> {
    let crbs = cluster.rbac.cluster_role_bindings.iter().map(|b| Binding {
        kind: "ClusterRoleBinding",
        name: b.metadata.name.as_deref().unwrap_or_default(),
        namespace: None,
        role: &b.role_ref,
        subjects: b.subjects.as_deref().unwrap_or_default(),
    });
    let rbs = cluster
        .rbac
        .role_bindings
        .iter()
        .filter(|b| ns.is_none() || b.metadata.namespace.as_deref() == ns)
        .map(|b| Binding {
            kind: "RoleBinding",
            name: b.metadata.name.as_deref().unwrap_or_default(),
            namespace: b.metadata.namespace.as_deref(),
            role: &b.role_ref,
            subjects: b.subjects.as_deref().unwrap_or_default(),
        });
    crbs.chain(rbs).collect()
}

/// A controller that may update a resource, and on what evidence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Updater {
    /// `None`: every object; else only these names.
    pub resource_names: Option<BTreeSet<String>>,
    /// The binding and role, in words.
    pub via: String,
    /// Whether one of its grants outlives the namespace's deletion: a ClusterRoleBinding's.
    pub lasting: bool,
    /// The grants that go with the namespace: the RoleBindings in it, which the namespace
    /// controller deletes with the rest of its content.
    pub in_namespace: BTreeSet<RoleBindingGrant>,
}

/// A RoleBinding in the namespace being deleted and the role it binds.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RoleBindingGrant {
    /// The RoleBinding's name.
    pub binding: String,
    /// The role's kind (`Role` or `ClusterRole`).
    pub role_kind: String,
    /// The role's name.
    pub role: String,
}

impl std::fmt::Display for RoleBindingGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RoleBinding {} -> {} {}",
            self.binding, self.role_kind, self.role
        )
    }
}

/// Everyone who may update (or patch) objects of one resource in one namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Updaters {
    /// Controllers whose grant names the resource: evidence that they handle its finalizers.
    pub named: BTreeMap<Identity, Updater>,
    /// Controllers that may update it only through wildcard grants.
    pub wildcard: BTreeMap<Identity, Updater>,
    /// People who may update it (not controllers).
    pub people: BTreeSet<String>,
    /// Everyone-groups that may update it: then every identity may.
    pub everyone: BTreeSet<String>,
}

impl Updaters {
    /// Whether `identity` may update the objects named `name`, by any grant (an installer
    /// record's candidate passes this test with a wildcard grant too).
    pub fn may_update(&self, identity: &Identity, name: Option<&str>) -> bool {
        if !self.everyone.is_empty() {
            return true;
        }
        self.named
            .iter()
            .chain(self.wildcard.iter())
            .any(|(holder, u)| {
                holder.covers(identity)
                    && name.is_none_or(|n| u.resource_names.as_ref().is_none_or(|r| r.contains(n)))
            })
    }
}

/// Where a grant comes from: whether it outlives the namespace, else the binding in it.
struct Source {
    lasting: bool,
    in_namespace: Option<RoleBindingGrant>,
}

fn add(
    map: &mut BTreeMap<Identity, Updater>,
    id: Identity,
    names: Option<BTreeSet<String>>,
    via: String,
    source: Source,
) {
    let u = map.entry(id).or_insert_with(|| Updater {
        resource_names: names.clone(),
        via,
        lasting: false,
        in_namespace: BTreeSet::new(),
    });
    // Grants add up: any grant without resourceNames covers every object.
    u.resource_names = match (u.resource_names.take(), names) {
        (Some(mut a), Some(b)) => {
            a.extend(b);
            Some(a)
        }
        _ => None,
    };
    u.lasting |= source.lasting;
    u.in_namespace.extend(source.in_namespace);
}

impl Updater {
    /// The RoleBindings in the namespace that alone give this right, when none outlives the
    /// namespace's deletion: the namespace controller deletes them with the content, so the
    /// right is gone before a controller's clean-up of the content ends.
    pub fn lost_with_namespace(&self) -> Option<&BTreeSet<RoleBindingGrant>> {
        (!self.lasting && !self.in_namespace.is_empty()).then_some(&self.in_namespace)
    }
}

impl Updaters {
    /// The RoleBindings in the namespace that alone give `identity` the right to update the
    /// objects (every grant that covers it goes with the namespace); `None` when a grant
    /// outlives it, when everyone may update them, or when nothing grants it.
    pub fn lost_with_namespace(&self, identity: &Identity) -> Option<BTreeSet<RoleBindingGrant>> {
        if !self.everyone.is_empty() {
            return None;
        }
        let mut lost = BTreeSet::new();
        let mut covered = false;
        for (holder, u) in self.named.iter().chain(self.wildcard.iter()) {
            if !holder.covers(identity) {
                continue;
            }
            covered = true;
            lost.extend(u.lost_with_namespace()?.iter().cloned());
        }
        (covered && !lost.is_empty()).then_some(lost)
    }
}

/// Who may update objects of `group`/`resource` in namespace `ns`.
pub fn updaters(cluster: &ClusterFacts, group: &str, resource: &str, ns: &str) -> Updaters {
    let mut out = Updaters::default();
    let gr = if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    };
    for b in bindings(cluster, Some(ns)) {
        let grants: Vec<Grant> = role_rules(cluster, b.role, b.namespace)
            .into_iter()
            .filter_map(|r| rule_grant(r, group, resource))
            .collect();
        for grant in grants {
            for s in b.subjects {
                let binding = format!("{} {} -> {} {}", b.kind, b.name, b.role.kind, b.role.name);
                let via = format!("{binding} grants update on {gr}");
                // A RoleBinding grants only in its own namespace, here the one being deleted.
                let source = || Source {
                    lasting: b.namespace.is_none(),
                    in_namespace: b.namespace.is_some().then(|| RoleBindingGrant {
                        binding: b.name.to_string(),
                        role_kind: b.role.kind.clone(),
                        role: b.role.name.clone(),
                    }),
                };
                match (holder(s, b.namespace), &grant) {
                    (Holder::Controller(id), Grant::Named(names)) => {
                        add(&mut out.named, id, names.clone(), via, source())
                    }
                    (Holder::Controller(id), Grant::Wildcard) => add(
                        &mut out.wildcard,
                        id,
                        None,
                        format!("{via} (wildcard)"),
                        source(),
                    ),
                    (Holder::People(p), _) => {
                        out.people.insert(p);
                    }
                    (Holder::Everyone(e), _) => {
                        out.everyone.insert(e);
                    }
                }
            }
        }
    }
    // A named grant says more than a wildcard one; where a wildcard grant of the same
    // controller outlives the namespace, the right does too.
    let named: Vec<Identity> = out.named.keys().cloned().collect();
    for id in named {
        if let Some(w) = out.wildcard.remove(&id)
            && let Some(n) = out.named.get_mut(&id)
        {
            n.lasting |= w.lasting;
            n.in_namespace.extend(w.in_namespace);
        }
    }
    out
}

/// The API groups `identity` may update something of by a grant that names the group: the
/// groups it serves (for tying a finalizer's domain to it).
pub fn granted_groups(cluster: &ClusterFacts, identity: &Identity) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for b in bindings(cluster, None) {
        let holds = b.subjects.iter().any(|s| match holder(s, b.namespace) {
            Holder::Controller(h) => h.covers(identity),
            _ => false,
        });
        if !holds {
            continue;
        }
        for rule in role_rules(cluster, b.role, b.namespace) {
            let writes = rule
                .verbs
                .iter()
                .any(|v| v == "*" || v == "update" || v == "patch");
            if writes {
                out.extend(
                    rule.api_groups
                        .iter()
                        .flatten()
                        .filter(|g| *g != "*" && !g.is_empty())
                        .cloned(),
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::rbac::v1::{
        AggregationRule, ClusterRole, ClusterRoleBinding, Role, RoleBinding,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use rstest::rstest;

    const GROUP: &str = "acc.example.com";

    fn rule(groups: &[&str], resources: &[&str], verbs: &[&str], names: &[&str]) -> PolicyRule {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        PolicyRule {
            api_groups: Some(v(groups)),
            resources: Some(v(resources)),
            verbs: v(verbs),
            resource_names: (!names.is_empty()).then(|| v(names)),
            ..Default::default()
        }
    }

    fn named(names: &[&str]) -> Option<Grant> {
        Some(Grant::Named(
            (!names.is_empty()).then(|| names.iter().map(|s| s.to_string()).collect()),
        ))
    }

    // Resource form x verb: only update/patch on the resource itself is the right.
    #[rstest]
    #[case::resource_update(&[GROUP], &["gadgets"], &["update"], &[], named(&[]))]
    #[case::resource_patch(&[GROUP], &["gadgets"], &["patch"], &[], named(&[]))]
    #[case::resource_any_verb(&[GROUP], &["gadgets"], &["*"], &[], named(&[]))]
    #[case::resource_names(&[GROUP], &["gadgets"], &["update"], &["g1"], named(&["g1"]))]
    #[case::read_only(&[GROUP], &["gadgets"], &["get", "list", "watch"], &[], None)]
    #[case::delete_only(&[GROUP], &["gadgets"], &["delete"], &[], None)]
    #[case::finalizers_subresource(&[GROUP], &["gadgets/finalizers"], &["update", "patch"], &[], None)]
    #[case::status_subresource(&[GROUP], &["gadgets/status"], &["update", "patch"], &[], None)]
    #[case::every_subresource(&[GROUP], &["*/*"], &["*"], &[], None)]
    #[case::every_resource_of_its_group(&[GROUP], &["*"], &["*"], &[], named(&[]))]
    #[case::other_group(&["other.example.com"], &["gadgets"], &["update"], &[], None)]
    #[case::every_group_named_resource(&["*"], &["gadgets"], &["update"], &[], named(&[]))]
    #[case::cluster_admin(&["*"], &["*"], &["*"], &[], Some(Grant::Wildcard))]
    fn the_right_to_remove_a_finalizer(
        #[case] groups: &[&str],
        #[case] resources: &[&str],
        #[case] verbs: &[&str],
        #[case] names: &[&str],
        #[case] want: Option<Grant>,
    ) {
        let r = rule(groups, resources, verbs, names);
        assert_eq!(rule_grant(&r, GROUP, "gadgets"), want);
    }

    #[test]
    fn every_resource_of_the_core_group_is_a_wildcard() {
        let r = rule(&[""], &["*"], &["update"], &[]);
        assert_eq!(rule_grant(&r, "", "configmaps"), Some(Grant::Wildcard));
    }

    fn subject(kind: &str, ns: Option<&str>, name: &str) -> Subject {
        Subject {
            kind: kind.into(),
            name: name.into(),
            namespace: ns.map(str::to_string),
            api_group: None,
        }
    }

    fn sa(ns: &str, name: &str) -> Identity {
        Identity::service_account(ns, name)
    }

    // Subject kind: who holds a binding.
    #[rstest]
    #[case::service_account(
        subject("ServiceAccount", Some("ops"), "op"),
        None,
        Holder::Controller(sa("ops", "op"))
    )]
    #[case::service_account_in_binding_ns(
        subject("ServiceAccount", None, "op"),
        Some("team"),
        Holder::Controller(sa("team", "op"))
    )]
    #[case::service_account_user(
        subject("User", None, "system:serviceaccount:ops:op"),
        None,
        Holder::Controller(sa("ops", "op"))
    )]
    #[case::control_plane_user(subject("User", None, "system:kube-controller-manager"), None, Holder::Controller(Identity::ControlPlane { name: "system:kube-controller-manager".into() }))]
    #[case::namespace_service_accounts(subject("Group", None, "system:serviceaccounts:ops"), None, Holder::Controller(Identity::ServiceAccounts { namespace: "ops".into() }))]
    #[case::every_service_account(subject("Group", None, "system:serviceaccounts"), None, Holder::Everyone("Group system:serviceaccounts".into()))]
    #[case::authenticated(subject("Group", None, "system:authenticated"), None, Holder::Everyone("Group system:authenticated".into()))]
    #[case::unauthenticated(subject("Group", None, "system:unauthenticated"), None, Holder::Everyone("Group system:unauthenticated".into()))]
    #[case::anonymous(subject("User", None, "system:anonymous"), None, Holder::Everyone("User system:anonymous".into()))]
    #[case::kubeadm_admins(subject("Group", None, "kubeadm:cluster-admins"), None, Holder::People("Group kubeadm:cluster-admins".into()))]
    #[case::masters(subject("Group", None, "system:masters"), None, Holder::People("Group system:masters".into()))]
    #[case::user(subject("User", None, "alice"), None, Holder::People("User alice".into()))]
    #[case::node(subject("User", None, "system:node:n1"), None, Holder::People("User system:node:n1".into()))]
    fn who_holds_a_binding(
        #[case] s: Subject,
        #[case] binding_ns: Option<&str>,
        #[case] want: Holder,
    ) {
        assert_eq!(holder(&s, binding_ns), want);
    }

    fn meta(name: &str, ns: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: ns.map(str::to_string),
            ..Default::default()
        }
    }

    fn role_ref(kind: &str, name: &str) -> RoleRef {
        RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: kind.into(),
            name: name.into(),
        }
    }

    /// A cluster with one ClusterRole `role` (aggregated or not: its `rules` are what the
    /// aggregation controller filled in) bound cluster-wide to `subjects`.
    fn cluster(rules: Vec<PolicyRule>, aggregated: bool, subjects: Vec<Subject>) -> ClusterFacts {
        let mut c = ClusterFacts::default();
        c.rbac.cluster_roles.push(ClusterRole {
            metadata: meta("role", None),
            rules: Some(rules),
            aggregation_rule: aggregated.then(AggregationRule::default),
        });
        c.rbac.cluster_role_bindings.push(ClusterRoleBinding {
            metadata: meta("binding", None),
            role_ref: role_ref("ClusterRole", "role"),
            subjects: Some(subjects),
        });
        c
    }

    fn gadgets_update() -> Vec<PolicyRule> {
        vec![rule(&[GROUP], &["gadgets"], &["update"], &[])]
    }

    // Role shape x subject: judged by subject, never by the role's kind.
    #[rstest]
    #[case::plain_role_to_controller(false, subject("ServiceAccount", Some("ops"), "op"), true)]
    #[case::aggregated_role_to_controller(
        true,
        subject("ServiceAccount", Some("crossplane-system"), "crossplane"),
        true
    )]
    #[case::aggregated_role_to_people(true, subject("Group", None, "developers"), false)]
    #[case::plain_role_to_people(false, subject("User", None, "alice"), false)]
    #[case::aggregated_role_to_namespace_accounts(
        true,
        subject("Group", None, "system:serviceaccounts:ops"),
        true
    )]
    #[case::role_to_every_account(false, subject("Group", None, "system:serviceaccounts"), false)]
    fn candidates_by_subject_not_by_role_kind(
        #[case] aggregated: bool,
        #[case] s: Subject,
        #[case] candidate: bool,
    ) {
        let c = cluster(gadgets_update(), aggregated, vec![s]);
        let u = updaters(&c, GROUP, "gadgets", "team-a");
        assert_eq!(!u.named.is_empty(), candidate, "{u:?}");
    }

    #[test]
    fn a_namespace_group_makes_each_of_its_accounts_a_candidate() {
        let c = cluster(
            gadgets_update(),
            false,
            vec![subject("Group", None, "system:serviceaccounts:ops")],
        );
        let u = updaters(&c, GROUP, "gadgets", "team-a");
        assert!(u.may_update(&sa("ops", "anyone"), None));
        assert!(!u.may_update(&sa("elsewhere", "anyone"), None));
    }

    #[test]
    fn wildcards_are_the_right_but_not_evidence() {
        let c = cluster(
            vec![rule(&["*"], &["*"], &["*"], &[])],
            false,
            vec![subject(
                "ServiceAccount",
                Some("argocd"),
                "argocd-application-controller",
            )],
        );
        let u = updaters(&c, GROUP, "gadgets", "team-a");
        assert!(u.named.is_empty());
        assert!(u.may_update(&sa("argocd", "argocd-application-controller"), None));
        assert!(!u.may_update(&sa("ops", "op"), None));
    }

    #[test]
    fn resource_names_limit_what_a_grant_covers() {
        let c = cluster(
            vec![rule(&[GROUP], &["gadgets"], &["update"], &["g1"])],
            false,
            vec![subject("ServiceAccount", Some("ops"), "op")],
        );
        let u = updaters(&c, GROUP, "gadgets", "team-a");
        assert!(u.may_update(&sa("ops", "op"), Some("g1")));
        assert!(!u.may_update(&sa("ops", "op"), Some("g2")));
    }

    #[test]
    fn role_bindings_grant_only_in_their_namespace() {
        let mut c = ClusterFacts::default();
        for ns in ["team-a", "elsewhere"] {
            c.rbac.roles.push(Role {
                metadata: meta("op", Some(ns)),
                rules: Some(gadgets_update()),
            });
            c.rbac.role_bindings.push(RoleBinding {
                metadata: meta("op", Some(ns)),
                role_ref: role_ref("Role", "op"),
                subjects: Some(vec![subject("ServiceAccount", None, &format!("op-{ns}"))]),
            });
        }
        let u = updaters(&c, GROUP, "gadgets", "team-a");
        let ids: Vec<&Identity> = u.named.keys().collect();
        assert_eq!(ids, vec![&sa("team-a", "op-team-a")]);
    }

    /// A controller in `ops` granted update on gadgets in `team-a` through a RoleBinding
    /// there; with `cluster_wide`, also through a ClusterRoleBinding.
    fn granted_in_the_namespace(cluster_wide: bool) -> ClusterFacts {
        let mut c = if cluster_wide {
            cluster(
                gadgets_update(),
                false,
                vec![subject("ServiceAccount", Some("ops"), "op")],
            )
        } else {
            ClusterFacts::default()
        };
        c.rbac.roles.push(Role {
            metadata: meta("gadget-editor", Some("team-a")),
            rules: Some(gadgets_update()),
        });
        c.rbac.role_bindings.push(RoleBinding {
            metadata: meta("op-edits-gadgets", Some("team-a")),
            role_ref: role_ref("Role", "gadget-editor"),
            subjects: Some(vec![subject("ServiceAccount", Some("ops"), "op")]),
        });
        c
    }

    #[test]
    fn a_right_granted_only_inside_the_namespace_goes_with_it() {
        let u = updaters(&granted_in_the_namespace(false), GROUP, "gadgets", "team-a");
        let lost = u.lost_with_namespace(&sa("ops", "op")).unwrap();
        assert_eq!(
            lost.iter().map(|g| g.to_string()).collect::<Vec<_>>(),
            vec!["RoleBinding op-edits-gadgets -> Role gadget-editor"]
        );
        // Another namespace's deletion takes nothing: the grant is not there.
        let elsewhere = updaters(&granted_in_the_namespace(false), GROUP, "gadgets", "team-b");
        assert_eq!(elsewhere.lost_with_namespace(&sa("ops", "op")), None);
    }

    #[test]
    fn a_right_also_granted_cluster_wide_outlives_the_namespace() {
        let u = updaters(&granted_in_the_namespace(true), GROUP, "gadgets", "team-a");
        assert_eq!(u.lost_with_namespace(&sa("ops", "op")), None);
        // A cluster-wide wildcard grant keeps the right too.
        let mut c = granted_in_the_namespace(false);
        c.rbac.cluster_roles.push(ClusterRole {
            metadata: meta("admin-ish", None),
            rules: Some(vec![rule(&["*"], &["*"], &["*"], &[])]),
            aggregation_rule: None,
        });
        c.rbac.cluster_role_bindings.push(ClusterRoleBinding {
            metadata: meta("admin-ish", None),
            role_ref: role_ref("ClusterRole", "admin-ish"),
            subjects: Some(vec![subject("ServiceAccount", Some("ops"), "op")]),
        });
        let u = updaters(&c, GROUP, "gadgets", "team-a");
        assert_eq!(u.lost_with_namespace(&sa("ops", "op")), None);
    }

    #[test]
    fn the_groups_a_controller_serves() {
        let c = cluster(
            vec![
                rule(&["kustomize.toolkit.fluxcd.io"], &["*"], &["*"], &[]),
                rule(
                    &["source.toolkit.fluxcd.io"],
                    &["gitrepositories"],
                    &["get"],
                    &[],
                ),
                rule(&["*"], &["*"], &["update"], &[]),
            ],
            false,
            vec![subject("Group", None, "system:serviceaccounts:flux-system")],
        );
        let groups = granted_groups(&c, &sa("flux-system", "kustomize-controller"));
        assert_eq!(
            groups,
            BTreeSet::from(["kustomize.toolkit.fluxcd.io".to_string()])
        );
    }
}
