//! Certificates managed in process (`nsguard serve --manage-certificates`): given what nsguard's
//! Secret holds, the time and the policy, what to write back. Pure: no I/O, the time is an
//! argument, so every replica that reads the same Secret at the same moment plans the same.
//!
//! The rules, in order:
//! - nothing usable (no Secret, unreadable PEM, a CA key that is not the newest CA's, the
//!   newest CA expired): a new CA and a serving certificate;
//! - an older CA that has expired leaves the bundle;
//! - the newest CA past two thirds of its life: a new CA goes *beside* it (the bundle holds
//!   both, the new one first) and the serving certificate stays on the old one, so the API
//!   server trusts the new CA before anything presents a certificate it signed;
//! - the serving certificate moves to the newest CA once the webhook's caBundle holds it and a
//!   grace (a tenth of the serving validity, at most two minutes) has passed since the CA was
//!   added; it is renewed past two thirds of its life and when the names asked for change. It
//!   never outlives its CA.

use std::fmt;

use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::{Ca, CertError};

/// What nsguard's Secret holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Material {
    /// Every CA trusted, PEM, newest first: the webhook's caBundle (`ca.crt`).
    pub ca_bundle: String,
    /// The newest CA's private key, PEM (`ca.key`).
    pub ca_key: String,
    /// The serving certificate, PEM (`tls.crt`).
    pub tls_crt: String,
    /// The serving certificate's key, PEM (`tls.key`).
    pub tls_key: String,
    /// When the newest CA was added beside an older one; `None` once it is alone.
    pub ca_rotated_at: Option<OffsetDateTime>,
}

/// What nsguard is asked to keep.
#[derive(Clone, Debug)]
pub struct Policy {
    /// The serving certificate's common name.
    pub common_name: String,
    /// Its DNS names (the Service's).
    pub dns_names: Vec<String>,
    /// The serving certificate's validity; renewed at two thirds of it.
    pub validity: Duration,
    /// A CA's validity; a new one is added at two thirds of it.
    pub ca_validity: Duration,
}

impl Policy {
    /// How long after a new CA is added (and the webhook's caBundle holds it) the serving
    /// certificate may move to it: the API server must have read the new bundle first.
    pub fn move_grace(&self) -> Duration {
        Ord::min(self.validity / 10_i32, Duration::minutes(2))
    }
}

/// One change a plan makes, for the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Nothing usable was there (the reason): a new CA and serving certificate.
    Created(String),
    /// An older CA expired and left the bundle.
    ExpiredCaDropped,
    /// The newest CA neared its end: a new CA beside it.
    CaAdded,
    /// The serving certificate moved to the newest CA.
    ServingMoved,
    /// The serving certificate neared its end.
    ServingRenewed,
    /// The DNS names asked for changed.
    ServingNamesChanged,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Created(why) => write!(f, "new CA and serving certificate ({why})"),
            Change::ExpiredCaDropped => f.write_str("an expired CA left the bundle"),
            Change::CaAdded => f.write_str("a new CA added beside the current one"),
            Change::ServingMoved => f.write_str("serving certificate moved to the newest CA"),
            Change::ServingRenewed => f.write_str("serving certificate renewed"),
            Change::ServingNamesChanged => {
                f.write_str("serving certificate reissued for new DNS names")
            }
        }
    }
}

/// What to do with the Secret.
#[derive(Debug)]
pub enum Plan {
    /// It is as it should be.
    Keep,
    /// Write this, for these reasons.
    Write(Material, Vec<Change>),
}

/// A certificate, read for what the plan needs.
struct Read {
    pem: String,
    subject: Vec<u8>,
    issuer: Vec<u8>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    public_key: Vec<u8>,
    dns_names: Vec<String>,
}

/// The `CERTIFICATE` blocks of a PEM text, each with its markers, in order.
fn pem_blocks(text: &str) -> Vec<String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let Some(len) = rest[start..].find(END) else {
            break;
        };
        let end = start + len + END.len();
        blocks.push(format!("{}\n", &rest[start..end]));
        rest = &rest[end..];
    }
    blocks
}

/// Every certificate of a PEM text, in order; an error names what does not parse.
fn read_pems(text: &str) -> Result<Vec<Read>, String> {
    let mut out = Vec::new();
    for block in pem_blocks(text) {
        let (_, pem) =
            x509_parser::pem::parse_x509_pem(block.as_bytes()).map_err(|e| format!("PEM: {e}"))?;
        let (_, cert) =
            X509Certificate::from_der(&pem.contents).map_err(|e| format!("X.509: {e}"))?;
        let dns_names = match cert.subject_alternative_name() {
            Ok(Some(san)) => san
                .value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some(d.to_string()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        out.push(Read {
            subject: cert.subject().as_raw().to_vec(),
            issuer: cert.issuer().as_raw().to_vec(),
            not_before: cert.validity().not_before.to_datetime(),
            not_after: cert.validity().not_after.to_datetime(),
            public_key: cert.public_key().subject_public_key.data.to_vec(),
            dns_names,
            pem: block,
        });
    }
    if out.is_empty() {
        return Err("no certificate".into());
    }
    Ok(out)
}

/// The notBefore of every certificate in a PEM bundle (unreadable ones left out): which CA
/// of two bundles is the newer.
pub fn not_befores(bundle: &str) -> Vec<OffsetDateTime> {
    pem_blocks(bundle)
        .iter()
        .filter_map(|b| read_pems(b).ok()?.pop())
        .map(|r| r.not_before)
        .collect()
}

/// The CA certificates of a PEM bundle, each as its own PEM block.
pub fn bundle_certificates(bundle: &str) -> Vec<String> {
    pem_blocks(bundle)
}

/// A new CA and a serving certificate signed by it.
fn fresh(policy: &Policy, now: OffsetDateTime, why: String) -> Result<Plan, CertError> {
    let ca = Ca::new_until(
        &format!("{}-ca", policy.common_name),
        now + policy.ca_validity,
    )?;
    let serving = ca.issue_server_until(
        &policy.common_name,
        &policy.dns_names,
        &[],
        now + policy.validity.min(policy.ca_validity),
    )?;
    Ok(Plan::Write(
        Material {
            ca_bundle: ca.cert_pem(),
            ca_key: ca.pair().key_pem,
            tls_crt: serving.cert_pem,
            tls_key: serving.key_pem,
            ca_rotated_at: None,
        },
        vec![Change::Created(why)],
    ))
}

fn same_names(a: &[String], b: &[String]) -> bool {
    let set = |v: &[String]| {
        v.iter()
            .map(|s| s.to_ascii_lowercase())
            .collect::<std::collections::BTreeSet<_>>()
    };
    set(a) == set(b)
}

/// What to write, given what the Secret holds (`None`: no Secret), the time, and whether the
/// webhook's caBundle already holds the newest CA of `current`.
pub fn plan(
    current: Option<&Material>,
    policy: &Policy,
    now: OffsetDateTime,
    newest_ca_trusted: bool,
) -> Result<Plan, CertError> {
    let Some(current) = current else {
        return fresh(policy, now, "none yet".into());
    };
    let cas = match read_pems(&current.ca_bundle) {
        Ok(cas) => cas,
        Err(e) => return fresh(policy, now, format!("ca.crt unusable: {e}")),
    };
    let newest = &cas[0];
    if newest.not_after <= now {
        return fresh(policy, now, "the CA expired".into());
    }
    let ca_key = match rcgen::KeyPair::from_pem(&current.ca_key) {
        Ok(k) => k,
        Err(e) => return fresh(policy, now, format!("ca.key unusable: {e}")),
    };
    if ca_key.public_key_raw() != newest.public_key.as_slice() {
        return fresh(policy, now, "ca.key is not the newest CA's key".into());
    }
    let mut next = current.clone();
    let mut changes = Vec::new();

    // Older CAs stay while they are valid: a replica that has not read the Secret again may
    // still serve a certificate one of them signed.
    let mut kept: Vec<&Read> = vec![newest];
    kept.extend(cas[1..].iter().filter(|c| c.not_after > now));
    if kept.len() < cas.len() {
        changes.push(Change::ExpiredCaDropped);
    }

    if newest.not_after - now < policy.ca_validity / 3_i32 {
        let ca = Ca::new_until(
            &format!("{}-ca", policy.common_name),
            now + policy.ca_validity,
        )?;
        // The new CA first, then the one the serving certificate still rests on; a third,
        // older one would have expired by now at the usual validities.
        next.ca_bundle = format!("{}{}", ca.cert_pem(), newest.pem);
        next.ca_key = ca.pair().key_pem;
        next.ca_rotated_at = Some(now);
        changes.push(Change::CaAdded);
        return Ok(Plan::Write(next, changes));
    }
    next.ca_bundle = kept.iter().map(|c| c.pem.as_str()).collect();
    if kept.len() == 1 {
        next.ca_rotated_at = None;
    }

    let leaf = read_pems(&current.tls_crt).ok().map(|mut v| v.remove(0));
    let trusted = |l: &Read| kept.iter().any(|c| c.subject == l.issuer);
    let reissue = match &leaf {
        None => Some(Change::Created("tls.crt unusable".into())),
        Some(l) if !trusted(l) || l.not_after <= now => {
            Some(Change::Created("tls.crt not signed by a trusted CA".into()))
        }
        Some(l) if l.issuer != newest.subject => {
            let settled = current
                .ca_rotated_at
                .is_none_or(|at| now >= at + policy.move_grace());
            (newest_ca_trusted && settled).then_some(Change::ServingMoved)
        }
        Some(l) if l.not_after - now < policy.validity / 3_i32 => Some(Change::ServingRenewed),
        Some(l) if !same_names(&l.dns_names, &policy.dns_names) => {
            Some(Change::ServingNamesChanged)
        }
        Some(_) => None,
    };
    if let Some(change) = reissue {
        let ca = Ca::from_pem(&newest.pem, &current.ca_key)?;
        let serving = ca.issue_server_until(
            &policy.common_name,
            &policy.dns_names,
            &[],
            (now + policy.validity).min(newest.not_after),
        )?;
        next.tls_crt = serving.cert_pem;
        next.tls_key = serving.key_pem;
        changes.push(change);
    }
    if changes.is_empty() && next == *current {
        Ok(Plan::Keep)
    } else {
        Ok(Plan::Write(next, changes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            common_name: "nsguard".into(),
            dns_names: vec!["nsguard.nsguard-system.svc".into()],
            validity: Duration::hours(30),
            ca_validity: Duration::hours(90),
        }
    }

    fn written(plan: Plan) -> (Material, Vec<Change>) {
        match plan {
            Plan::Write(m, c) => (m, c),
            Plan::Keep => panic!("expected a write"),
        }
    }

    fn issuer_of(m: &Material) -> Vec<u8> {
        read_pems(&m.tls_crt).unwrap().remove(0).issuer
    }

    fn subjects(m: &Material) -> Vec<Vec<u8>> {
        read_pems(&m.ca_bundle)
            .unwrap()
            .into_iter()
            .map(|c| c.subject)
            .collect()
    }

    #[test]
    fn a_whole_life_creation_renewal_ca_rotation_move_and_drop() {
        let p = policy();
        let t0 = OffsetDateTime::now_utc();
        let (m, changes) = written(plan(None, &p, t0, false).unwrap());
        assert!(matches!(changes[..], [Change::Created(_)]), "{changes:?}");
        assert_eq!(subjects(&m).len(), 1);
        assert_eq!(issuer_of(&m), subjects(&m)[0]);
        // Every replica reading it plans nothing more.
        assert!(matches!(plan(Some(&m), &p, t0, true).unwrap(), Plan::Keep));
        assert!(matches!(
            plan(Some(&m), &p, t0 + Duration::hours(19), true).unwrap(),
            Plan::Keep
        ));

        // Past two thirds of the serving certificate's life: renewed by the same CA.
        let t1 = t0 + Duration::hours(21);
        let (m1, changes) = written(plan(Some(&m), &p, t1, true).unwrap());
        assert_eq!(changes, [Change::ServingRenewed]);
        assert_eq!(m1.ca_bundle, m.ca_bundle);
        assert_ne!(m1.tls_crt, m.tls_crt);
        assert_eq!(issuer_of(&m1), subjects(&m)[0]);

        let (m1, _) = written(plan(Some(&m1), &p, t0 + Duration::hours(42), true).unwrap());

        // Past two thirds of the CA's life: a new CA beside it, the serving pair stays.
        let t2 = t0 + Duration::hours(61);
        let (m2, changes) = written(plan(Some(&m1), &p, t2, false).unwrap());
        assert!(changes.contains(&Change::CaAdded), "{changes:?}");
        let cas = subjects(&m2);
        assert_eq!(cas.len(), 2);
        assert_eq!(cas[1], subjects(&m)[0], "the old CA stays, second");
        assert_eq!(m2.tls_crt, m1.tls_crt);
        assert_eq!(m2.ca_rotated_at, Some(t2));
        // Not before the webhook trusts the new CA, nor before the grace.
        assert!(matches!(plan(Some(&m2), &p, t2, true).unwrap(), Plan::Keep));
        let later = t2 + p.move_grace() + Duration::seconds(1);
        assert!(matches!(
            plan(Some(&m2), &p, later, false).unwrap(),
            Plan::Keep
        ));
        let (m3, changes) = written(plan(Some(&m2), &p, later, true).unwrap());
        assert_eq!(changes, [Change::ServingMoved]);
        assert_eq!(issuer_of(&m3), cas[0]);
        assert_eq!(subjects(&m3), cas, "both CAs stay trusted");

        // The old CA expires: it leaves the bundle.
        let t4 = t0 + Duration::minutes(90 * 60 + 30);
        let (m4, changes) = written(plan(Some(&m3), &p, t4, true).unwrap());
        assert!(changes.contains(&Change::ExpiredCaDropped), "{changes:?}");
        assert_eq!(subjects(&m4), vec![cas[0].clone()]);
        assert_eq!(m4.ca_rotated_at, None);
    }

    #[test]
    fn unusable_material_is_replaced_and_new_names_reissue() {
        let p = policy();
        let now = OffsetDateTime::now_utc();
        let (m, _) = written(plan(None, &p, now, false).unwrap());
        let mut broken = m.clone();
        broken.ca_bundle = "garbage".into();
        let (_, changes) = written(plan(Some(&broken), &p, now, true).unwrap());
        assert!(matches!(changes[..], [Change::Created(_)]), "{changes:?}");
        let mut wrong_key = m.clone();
        wrong_key.ca_key = m.tls_key.clone();
        let (_, changes) = written(plan(Some(&wrong_key), &p, now, true).unwrap());
        assert!(
            matches!(&changes[..], [Change::Created(why)] if why.contains("ca.key")),
            "{changes:?}"
        );
        let mut no_leaf = m.clone();
        no_leaf.tls_crt = String::new();
        let (fixed, _) = written(plan(Some(&no_leaf), &p, now, true).unwrap());
        assert_eq!(fixed.ca_bundle, m.ca_bundle, "the CA is kept");
        let renamed = Policy {
            dns_names: vec!["other.nsguard-system.svc".into()],
            ..p
        };
        let (m2, changes) = written(plan(Some(&m), &renamed, now, true).unwrap());
        assert_eq!(changes, [Change::ServingNamesChanged]);
        assert_eq!(
            read_pems(&m2.tls_crt).unwrap()[0].dns_names,
            ["other.nsguard-system.svc"]
        );
    }

    #[test]
    fn a_ca_read_back_from_pem_issues_what_chains_to_it() {
        let ca = Ca::new("t", 1).unwrap();
        let pair = ca.pair();
        let again = Ca::from_pem(&pair.cert_pem, &pair.key_pem).unwrap();
        assert_eq!(again.cert_pem(), ca.cert_pem());
        let leaf = again
            .issue_server("x", &["localhost".into()], &[], 1)
            .unwrap();
        let leaf = read_pems(&leaf.cert_pem).unwrap().remove(0);
        assert_eq!(leaf.issuer, read_pems(&ca.cert_pem()).unwrap()[0].subject);
    }
}
