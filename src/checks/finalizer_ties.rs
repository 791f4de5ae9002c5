//! Which candidate accounts for which finalizer.
//!
//! An object often carries the finalizers of several controllers (its operator's, a backup or
//! policy tool's). A live candidate that may update the type removes only its own: it accounts
//! for finalizer F only on evidence that ties it to F, in this order:
//!
//! | evidence | ties | real shape |
//! |---|---|---|
//! | declared for F by name | F only | `--finalizer-controller example.com/hold=ops/op` |
//! | declared for the type | every finalizer of the type | the CRD annotation `nsguard.io/finalizer-controller` |
//! | F's domain shares its registrable domain with an API group the candidate serves (named in its grants, owned by its installer record) or with the type's own group | F | `finalizers.fluxcd.io` on `*.toolkit.fluxcd.io`; `resources-finalizer.argocd.argoproj.io` on `argoproj.io`; `kubevirt.io/...` on `kubevirt.io` |
//! | F has no domain and the candidate is the type's only one | F | KubeVirt's `foregroundDeleteVirtualMachine` |
//! | no competing explanation: the candidate is the type's only one, no finalizer of those objects is tied to it otherwise, and F is the only one left untied | F | Crossplane's `finalizer.managedresource.crossplane.io` on provider types in `*.upbound.io` |
//!
//! A domained finalizer that no candidate is tied to, beside one that a live candidate is tied
//! to, is nobody's: the tool that put it there is gone (blocking). Any other finalizer no
//! candidate is tied to is only doubtful (advisory): nsguard does not deny on a guess.

use std::collections::BTreeSet;

use crate::facts::controllers::Expected;

/// The domain part of a finalizer (`acc.example.com` of `acc.example.com/cleanup`,
/// `finalizers.fluxcd.io` of itself); `None` for an undomained one (`foregroundDeleteVM`).
pub(super) fn domain(finalizer: &str) -> Option<&str> {
    let head = finalizer.split('/').next().unwrap_or_default();
    head.contains('.').then_some(head)
}

/// The registrable domain of a DNS name (`fluxcd.io` of `kustomize.toolkit.fluxcd.io`), by the
/// public suffix list.
fn registrable(name: &str) -> Option<&str> {
    psl::domain_str(name)
}

/// Whether the finalizer's domain belongs with an API group: the same registrable domain.
pub(super) fn related(finalizer: &str, group: &str) -> bool {
    let (Some(d), Some(g)) = (domain(finalizer).and_then(registrable), registrable(group)) else {
        return false;
    };
    d == g
}

/// Evidence-only ties (declaration, domain, undomained of the only candidate), before the
/// "no competing explanation" rule.
fn direct(c: &Expected, finalizer: &str, type_group: &str, only: bool) -> bool {
    if let Some(declared) = &c.finalizers {
        return declared.contains(finalizer);
    }
    if matches!(c.source, crate::facts::controllers::Basis::Declared(_)) {
        return true;
    }
    match domain(finalizer) {
        Some(_) => related(finalizer, type_group) || c.groups.iter().any(|g| related(finalizer, g)),
        None => only,
    }
}

/// For each finalizer (in the order given), the indices of the candidates tied to it.
pub(super) fn ties(
    candidates: &[&Expected],
    finalizers: &[&str],
    type_group: &str,
) -> Vec<BTreeSet<usize>> {
    let only = candidates.len() == 1;
    let mut out: Vec<BTreeSet<usize>> = finalizers
        .iter()
        .map(|f| {
            candidates
                .iter()
                .enumerate()
                .filter(|(_, c)| direct(c, f, type_group, only))
                .map(|(i, _)| i)
                .collect()
        })
        .collect();
    // No competing explanation: the only candidate, tied to none of these finalizers, and
    // exactly one finalizer untied.
    let untied: Vec<usize> = (0..finalizers.len())
        .filter(|i| out[*i].is_empty())
        .collect();
    let tied_to_it = out.iter().any(|t| t.contains(&0));
    if only && !tied_to_it && untied.len() == 1 && candidates[0].finalizers.is_none() {
        out[untied[0]].insert(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::controllers::{Basis, Identity};
    use rstest::rstest;

    fn candidate(groups: &[&str]) -> Expected {
        Expected {
            identity: Identity::service_account("ops", "op"),
            source: Basis::Rbac("grant".into()),
            resource_names: None,
            finalizers: None,
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    #[rstest]
    #[case("acc.example.com/cleanup", Some("acc.example.com"))]
    #[case("finalizers.fluxcd.io", Some("finalizers.fluxcd.io"))]
    #[case("foregroundDeleteVirtualMachine", None)]
    #[case("kubernetes", None)]
    fn domains(#[case] f: &str, #[case] want: Option<&str>) {
        assert_eq!(domain(f), want);
    }

    /// Real shapes: (type group, the candidates' served groups, finalizers on the objects,
    /// for each finalizer whether candidate 0 is tied to it).
    #[rstest]
    #[case::flux("kustomize.toolkit.fluxcd.io", vec![vec!["kustomize.toolkit.fluxcd.io"]], &["finalizers.fluxcd.io"], &[true])]
    #[case::argocd("argoproj.io", vec![vec!["argoproj.io"]], &["resources-finalizer.argocd.argoproj.io"], &[true])]
    #[case::kubevirt_undomained("kubevirt.io", vec![vec!["kubevirt.io"]], &["kubevirt.io/virtualMachineControllerFinalize", "foregroundDeleteVirtualMachine"], &[true, true])]
    #[case::crossplane_provider("s3.aws.upbound.io", vec![vec!["s3.aws.upbound.io"]], &["finalizer.managedresource.crossplane.io"], &[true])]
    #[case::operator_and_uninstalled_backup_tool("acc.example.com", vec![vec!["acc.example.com"]], &["acc.example.com/cleanup", "backup.tools.io/protect"], &[true, false])]
    #[case::two_untied_finalizers_are_a_guess_not_a_tie("s3.aws.upbound.io", vec![vec!["s3.aws.upbound.io"]], &["finalizer.managedresource.crossplane.io", "other.tools.io/x"], &[false, false])]
    #[case::undomained_with_two_candidates("kubevirt.io", vec![vec!["kubevirt.io"], vec!["kubevirt.io"]], &["foregroundDeleteVirtualMachine"], &[false])]
    #[case::group_in_another_tld_shares_nothing("acc.example.com", vec![vec!["acc.example.com"]], &["acc.example.org/cleanup", "acc.example.com/x"], &[false, true])]
    fn shapes(
        #[case] type_group: &str,
        #[case] served: Vec<Vec<&str>>,
        #[case] finalizers: &[&str],
        #[case] tied_to_first: &[bool],
    ) {
        let cands: Vec<Expected> = served.iter().map(|g| candidate(g)).collect();
        let refs: Vec<&Expected> = cands.iter().collect();
        let t = ties(&refs, finalizers, type_group);
        let got: Vec<bool> = t.iter().map(|s| s.contains(&0)).collect();
        assert_eq!(got, tied_to_first);
    }

    #[test]
    fn a_declaration_by_finalizer_ties_only_that_finalizer() {
        let mut c = candidate(&["acc.example.com"]);
        c.source = Basis::Declared("flag".into());
        c.finalizers = Some(["backup.tools.io/protect".to_string()].into());
        let t = ties(
            &[&c],
            &["acc.example.com/cleanup", "backup.tools.io/protect"],
            "acc.example.com",
        );
        assert!(!t[0].contains(&0) && t[1].contains(&0));
        c.finalizers = None;
        let t = ties(
            &[&c],
            &["acc.example.com/cleanup", "backup.tools.io/protect"],
            "acc.example.com",
        );
        assert!(
            t[0].contains(&0) && t[1].contains(&0),
            "declared for the type: every finalizer"
        );
    }
}
