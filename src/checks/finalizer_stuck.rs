//! `finalizer-stuck`: objects already being deleted for longer than a threshold that still
//! carry finalizers. Whatever should remove them is not doing it now.

use std::time::Duration;

use crate::facts::Facts;
use crate::report::{CheckId, Finding, ObjectRef, remedy};

pub(super) fn check(facts: &Facts, after: Duration) -> Vec<Finding> {
    let mut out = Vec::new();
    for c in &facts.namespace.content {
        for o in &c.objects {
            let Some(since) = o.deletion_timestamp else { continue };
            if o.finalizers.is_empty() {
                continue;
            }
            let waited = facts.now.as_second().saturating_sub(since.as_second());
            if waited < after.as_secs() as i64 {
                continue;
            }
            let gr = c.resource.group_resource();
            out.push(
                Finding::new(
                    CheckId::FinalizerStuck,
                    format!("{gr} {} has been deleting for {} and still has finalizers {}", o.name, super::age(facts.now, since), o.finalizers.join(",")),
                    remedy(
                        "bring back the controller that owns the finalizer; only if it is gone for good, remove the finalizer",
                        format!("kubectl patch {gr} {} -n {} --type=merge -p '{{\"metadata\":{{\"finalizers\":null}}}}'", o.name, facts.name),
                    ),
                )
                .object(ObjectRef::namespaced(gr, &facts.name, &o.name))
                .evidence(format!("finalizers: {}", o.finalizers.join(", "))),
            );
        }
    }
    out
}
