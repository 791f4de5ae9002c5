//! The webhook part of `admission-policy-refuses`: webhooks with a live backend that
//! intercept the namespace controller's DELETE of content here may refuse it, which only their
//! code can say. Which webhooks intercept what: [`super::webhook_rules`].

use super::webhook_rules::{Match, WriteKind, config_object, hooks, intercepted_all, key, subject};
use crate::checks::report::{CheckId, Finding, Severity, remedy};
use crate::facts::Facts;

/// Webhooks with a live backend (or a URL) that intercept the namespace controller's DELETE of
/// content here: whether they refuse is their code's to say, which nsguard never calls.
/// Advisory, one finding per webhook (`admission-policy-refuses`). Webhooks served from this
/// namespace are `hosts-webhook-backend`'s; down ones `webhook-backend-unavailable`'s.
pub(super) fn check(facts: &Facts) -> Vec<Finding> {
    let labels = facts.labels();
    let mut out = Vec::new();
    for hook in hooks(facts) {
        if let Some(svc) = hook.service {
            if svc.namespace == facts.name {
                continue;
            }
            let reachable = facts
                .cluster
                .backends
                .get(&key(svc))
                .is_some_and(|b| b.reachable());
            if !reachable {
                continue;
            }
        }
        let deletes: Vec<(String, usize)> = intercepted_all(facts, &labels, &hook)
            .into_iter()
            .filter(|(_, _, m, w)| *m == Match::Yes && *w == WriteKind::Delete)
            .map(|(r, n, _, _)| (r.group_resource(), n))
            .collect();
        let Some((gr, n)) = deletes.first() else {
            continue;
        };
        let more = if deletes.len() > 1 {
            format!(" and {} more types", deletes.len() - 1)
        } else {
            String::new()
        };
        let mut f = Finding::new(
            CheckId::AdmissionPolicyRefuses,
            subject(&hook),
            format!(
                "webhook {} intercepts DELETE of {gr} ({n} here){more} and may refuse it",
                hook.name
            ),
            remedy(
                format!(
                    "if {} protects these objects from deletion, exempt the namespace controller (system:serviceaccount:kube-system:namespace-controller) or delete them first",
                    hook.config
                ),
                None,
            ),
        )
        .object(config_object(&hook.config))
        .evidence("its backend is up; whether it refuses is its own code's answer, and nsguard never calls a third-party webhook");
        f.severity = Severity::Advisory;
        out.push(f);
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
    #[case::live_backend(UP, 1)]
    #[case::down_backend_is_another_checks(BackendState::default(), 0)]
    fn a_live_webhook_on_delete_may_refuse(#[case] backend: BackendState, #[case] n: usize) {
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
        let found = check(&facts);
        assert_eq!(found.len(), n, "{found:?}");
        if let Some(f) = found.first() {
            assert_eq!(f.severity, Severity::Advisory);
            assert!(f.summary.contains("may refuse"), "{}", f.summary);
        }
    }
}
