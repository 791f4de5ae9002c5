//! `webhook-backend-unavailable`: a `failurePolicy: Fail` webhook matching DELETE of content
//! present here, or a finalizer's removal, whose Service is missing or has no ready endpoints.
//! Which webhooks intercept what: [`super::webhook_rules`].

use std::time::Duration;

use super::webhook_rules::{
    WriteKind, config_object, hooks, intercepted_content, key, soften, subject,
};
use crate::checks::Settings;
use crate::checks::registry::{Blocks, Check, CheckEntry, Confirm, Severity, Stage};
use crate::checks::report::{CheckId, Finding, ObjectKind, ObjectRef, remedy};
use crate::facts::Facts;

/// The `webhook-backend-unavailable` check.
pub(super) struct WebhookBackendUnavailable;

impl Check for WebhookBackendUnavailable {
    const ENTRY: CheckEntry = CheckEntry {
        name: "webhook-backend-unavailable",
        default: Severity::Blocking,
        blocks: Blocks::Delete,
        title: "A failurePolicy Fail webhook whose Service is missing or has no ready endpoints intercepts a write the deletion needs: the controller's DELETE of content here, or a controller's removal of its finalizer",
        remedy: "restore the webhook's backend (Service and ready endpoints), or delete its webhook configuration if it is no longer wanted",
        stage: Stage::Admission,
        risk: "whatever the webhook enforced is not enforced until it is reinstalled; restoring its Service instead risks nothing",
        confirm: Confirm::Content,
        on_discovery: false,
    };

    fn run(facts: &Facts, settings: &Settings) -> Vec<Finding> {
        check(facts, settings.backend_grace)
    }
}

/// `webhook-backend-unavailable`. A Service that does not exist blocks at once (a rollout never
/// deletes its Service); one that exists without ready endpoints blocks once it has been so for
/// longer than `grace` (a rollout empties it for seconds), and is a warning until then.
pub(super) fn check(facts: &Facts, grace: Duration) -> Vec<Finding> {
    let labels = facts.labels();
    let mut out = Vec::new();
    for hook in hooks(facts) {
        let Some(svc) = hook.service else { continue };
        if !hook.fails_closed {
            continue;
        }
        let key = key(svc);
        let state = facts
            .cluster
            .backends
            .get(&key)
            .cloned()
            .unwrap_or_default();
        if state.reachable() {
            continue;
        }
        let Some((gr, n, matched, write)) = intercepted_content(facts, &labels, &hook) else {
            continue;
        };
        let what = write.describe(&gr, n);
        let why = if state.exists {
            format!("Service {key} has no ready endpoints")
        } else {
            format!("Service {key} does not exist")
        };
        let recent = state.unreachable_since.filter(|since| {
            state.exists
                && facts.now.as_second().saturating_sub(since.as_second())
                    < i64::try_from(grace.as_secs()).unwrap_or(i64::MAX)
        });
        let mut f = Finding::new(
            CheckId::WebhookBackendUnavailable,
            subject(&hook),
            format!(
                "webhook {} (failurePolicy Fail) intercepts {what} and is down: {why}",
                hook.name
            ),
            remedy(
                format!(
                    "restore Service {key}, or delete {} if it is no longer used",
                    hook.config
                ),
                hook.config.delete_command(),
            ),
        )
        .blocks(write.blocks())
        .object(config_object(&hook.config))
        .object(ObjectRef::namespaced(
            ObjectKind::Service,
            &key.namespace,
            &key.name,
        ))
        .evidence(why);
        if write == WriteKind::RemoveFinalizer {
            f = f.evidence("removing a finalizer is an UPDATE of the object: its controller runs, but every removal it tries is refused, so the objects keep their finalizers (NamespaceFinalizersRemaining)");
        }
        if let Some(since) = state.unreachable_since.filter(|_| state.exists) {
            f = f.evidence(format!(
                "no ready endpoints since {since} ({} ago)",
                super::age(facts.now, since)
            ));
        }
        if let Some(since) = recent {
            f.summary = format!(
                "webhook {} (failurePolicy Fail) intercepts {what}; its Service {key} has had no ready endpoints for {}: blocks after {}s",
                hook.name,
                super::age(facts.now, since),
                grace.as_secs()
            );
            f = f.evidence(format!(
                "inside the {}s grace: a rollout empties the endpoints for seconds",
                grace.as_secs()
            ));
            f.severity = Severity::Advisory;
        }
        out.push(soften(f, matched));
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
    const GRACE: Duration = Duration::from_secs(30);

    #[rstest]
    #[case::missing(BackendState::default(), 1)]
    #[case::no_endpoints(BackendState { exists: true, ..Default::default() }, 1)]
    #[case::ready(UP, 0)]
    #[case::external_name(BackendState { exists: true, external: true, ..Default::default() }, 0)]
    fn a_down_webhook_on_delete_of_present_content(
        #[case] backend: BackendState,
        #[case] expected: usize,
    ) {
        let facts = fixtures::facts("team-a")
            .with_content("", "configmaps", &[("cm", &[])])
            .with_webhook(
                "guard",
                &["DELETE"],
                &["configmaps"],
                ("sec", "hook"),
                backend,
            )
            .build();
        let found = check(&facts, GRACE);
        assert_eq!(found.len(), expected, "{found:?}");
    }

    #[rstest]
    #[case::finalized_objects(&[("g1", &["acc.example.com/cleanup"][..]), ("g2", &[][..])], Some(1))]
    #[case::built_in_finalizers_too(&[("g1", &["orphan"][..])], Some(1))]
    #[case::no_finalizers_no_update(&[("g1", &[][..])], None)]
    fn a_down_webhook_on_update_blocks_the_finalizer_removal(
        #[case] objects: &[(&str, &[&str])],
        #[case] expected: Option<usize>,
    ) {
        let facts = fixtures::facts("team-a")
            .with_content("", "configmaps", objects)
            .with_webhook(
                "guard",
                &["UPDATE"],
                &["configmaps"],
                ("sec", "hook"),
                BackendState::default(),
            )
            .build();
        let found = check(&facts, GRACE);
        match expected {
            None => assert!(found.is_empty(), "{found:?}"),
            Some(n) => {
                assert_eq!(found.len(), 1, "{found:?}");
                assert_eq!(found[0].blocks, Blocks::RemoveFinalizer);
                assert!(
                    found[0].summary.contains(&format!(
                        "the finalizer removal (UPDATE) of configmaps ({n} here"
                    )),
                    "{}",
                    found[0].summary
                );
            }
        }
    }

    #[test]
    fn a_down_webhook_on_types_not_present_here_does_not_matter() {
        let facts = fixtures::facts("team-a")
            .with_content("", "configmaps", &[("cm", &[])])
            .with_webhook(
                "guard",
                &["DELETE"],
                &["secrets"],
                ("sec", "hook"),
                BackendState::default(),
            )
            .build();
        assert!(check(&facts, GRACE).is_empty());
    }

    #[rstest]
    #[case::just_emptied(true, Some("11:59:50"), Some(Severity::Advisory))]
    #[case::empty_past_the_grace(true, Some("11:55:00"), Some(Severity::Blocking))]
    #[case::empty_since_unknown(true, None, Some(Severity::Blocking))]
    #[case::missing_service_blocks_at_once(false, Some("11:59:50"), Some(Severity::Blocking))]
    fn an_empty_backend_blocks_only_after_the_grace(
        #[case] exists: bool,
        #[case] since: Option<&str>,
        #[case] expected: Option<Severity>,
    ) {
        let backend = BackendState {
            exists,
            unreachable_since: since.map(|t| format!("2026-11-22T{t}Z").parse().unwrap()),
            ..Default::default()
        };
        let facts = fixtures::facts("team-a")
            .with_content("", "configmaps", &[("cm", &[])])
            .with_webhook(
                "guard",
                &["DELETE"],
                &["configmaps"],
                ("sec", "hook"),
                backend,
            )
            .build();
        let found = check(&facts, GRACE);
        assert_eq!(found.first().map(|f| f.severity), expected, "{found:?}");
        if expected == Some(Severity::Advisory) {
            assert!(
                found[0].summary.contains("blocks after 30s"),
                "{}",
                found[0].summary
            );
            assert!(
                found[0]
                    .evidence
                    .iter()
                    .any(|e| e.contains("since 2026-11-22T11:59:50Z (10s ago)")),
                "{:?}",
                found[0].evidence
            );
        }
    }
}
