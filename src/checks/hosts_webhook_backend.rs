//! `hosts-webhook-backend`: a `failurePolicy: Fail` webhook whose Service lives in this
//! namespace and that intercepts the deletion's own calls (DELETE of content here, a
//! finalizer's removal, or UPDATE of `namespaces/finalize` or `namespaces/status`). Its pods go
//! first; then its calls fail. Which webhooks intercept what: [`super::webhook_rules`].

use super::webhook_rules::{
    Match, config_object, hooks, intercepted_all, intercepted_content, intercepts_finalize,
    only_custom_resources, selects_namespace, soften, subject,
};
use crate::checks::Settings;
use crate::checks::registry::{Blocks, Check, CheckEntry, Confirm, Severity, Stage};
use crate::checks::report::{CheckId, Finding, ObjectKind, ObjectRef, remedy};
use crate::facts::{Facts, ResourceType};

/// The `hosts-webhook-backend` check.
pub(super) struct HostsWebhookBackend;

impl Check for HostsWebhookBackend {
    const ENTRY: CheckEntry = CheckEntry {
        name: "hosts-webhook-backend",
        default: Severity::Blocking,
        blocks: Blocks::Delete,
        title: "A failurePolicy Fail webhook that intercepts a write the deletion needs has its Service in this namespace: its pods go first, then its calls fail",
        remedy: "delete the objects it intercepts first while it still runs (nsguard delete does this), or delete its webhook configuration, or move its backend out of the namespace",
        stage: Stage::Admission,
        risk: "whatever the webhook enforced is not enforced until it is reinstalled; restoring its Service instead risks nothing",
        confirm: Confirm::Content,
        on_discovery: false,
    };

    fn run(facts: &Facts, _settings: &Settings) -> Vec<Finding> {
        check(facts)
    }
}

pub(super) fn check(facts: &Facts) -> Vec<Finding> {
    let labels = facts.labels();
    let mut out = Vec::new();
    for hook in hooks(facts) {
        let Some(svc) = hook.service.filter(|s| s.namespace == facts.name) else {
            continue;
        };
        if !hook.fails_closed {
            continue;
        }
        let content = intercepted_content(facts, &labels, &hook);
        let finalize = if selects_namespace(&labels, &hook) {
            intercepts_finalize(facts, &hook)
        } else {
            Match::No
        };
        const FINALIZE: &str = "the namespace's finalize/status updates";
        let finalize_too = finalize != Match::No;
        let (what, matched, blocks) = match (content, finalize) {
            (Some((gr, n, Match::Yes, w)), _) => (w.describe(&gr, n), Match::Yes, w.blocks()),
            (_, Match::Yes) => (FINALIZE.to_string(), Match::Yes, Blocks::FinalizeNamespace),
            (Some((gr, n, m, w)), _) => (w.describe(&gr, n), m, w.blocks()),
            (None, Match::May(why)) => (
                FINALIZE.to_string(),
                Match::May(why),
                Blocks::FinalizeNamespace,
            ),
            (None, Match::No) => continue,
        };
        let by_hand = hook.config.delete_command();
        // Only content, all of it custom resources: deleting that content first, while the
        // webhook still serves, is what `nsguard delete` does.
        let intercepted: Vec<ResourceType> = intercepted_all(facts, &labels, &hook)
            .into_iter()
            .map(|(r, _, _, _)| r.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let ordered =
            !finalize_too && !intercepted.is_empty() && only_custom_resources(facts, &intercepted);
        let fix = if ordered {
            let types: Vec<String> = intercepted.iter().map(|r| r.group_resource()).collect();
            remedy(
                format!(
                    "delete the {} objects here first, while the webhook still serves, then the namespace (nsguard delete does this in order); or delete {} before the namespace ({by_hand}), or set its failurePolicy to Ignore",
                    types.join(", "),
                    hook.config
                ),
                format!("nsguard delete {}", facts.name),
            )
        } else {
            remedy(
                format!(
                    "delete {} before the namespace, or set its failurePolicy to Ignore",
                    hook.config
                ),
                by_hand,
            )
        };
        out.push(soften(
            Finding::new(
                CheckId::HostsWebhookBackend,
                subject(&hook),
                format!("webhook {} (failurePolicy Fail) intercepts {what} but is served from this namespace", hook.name),
                fix,
            )
            .blocks(blocks)
            .object(config_object(&hook.config))
            .object(ObjectRef::namespaced(ObjectKind::Service, &svc.namespace, &svc.name))
            .evidence("its pods are deleted first; every call it then gets fails and the deletion cannot finish"),
            matched,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::fixtures;
    use super::*;
    use crate::facts::BackendState;
    use rstest::rstest;

    const UP: BackendState = BackendState {
        exists: true,
        ready_endpoints: 2,
        external: false,
        unreachable_since: None,
    };

    #[rstest]
    #[case::content_here(&["DELETE"], &["configmaps"], "team-a", true)]
    #[case::finalize(&["UPDATE"], &["namespaces/finalize"], "team-a", true)]
    #[case::served_elsewhere(&["DELETE"], &["configmaps"], "sec", false)]
    #[case::unrelated(&["CREATE"], &["pods"], "team-a", false)]
    fn a_webhook_served_from_the_namespace_it_must_admit(
        #[case] ops: &[&str],
        #[case] resources: &[&str],
        #[case] svc_ns: &str,
        #[case] found: bool,
    ) {
        let facts = fixtures::facts("team-a")
            .with_content("", "configmaps", &[("cm", &[])])
            .with_webhook("guard", ops, resources, (svc_ns, "hook"), UP)
            .build();
        let out = check(&facts);
        assert_eq!(!out.is_empty(), found, "{out:?}");
        if found {
            assert!(
                out[0]
                    .remedy
                    .command
                    .as_deref()
                    .unwrap()
                    .contains("kubectl delete validatingwebhookconfiguration guard")
            );
        }
    }
}
