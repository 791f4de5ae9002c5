//! Certificates with rcgen: a CA and serving certificates for the webhook (`nsguard certs`).
//! The local control plane's client certificates and token signing key are made in the
//! `localcluster` crate, which tests and `make run` use; nsguard itself needs neither.
//!
//! Every key is ECDSA P-256. Nothing here touches the network or the cluster.

pub mod managed;

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};
use time::{Duration, OffsetDateTime};

/// What can go wrong while making or writing certificates.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// rcgen refused the parameters or failed to sign.
    #[error("generating {what}: {source}")]
    Generate {
        /// Which certificate or key.
        what: &'static str,
        /// The rcgen error.
        source: rcgen::Error,
    },
    /// A name given as a SAN is not a valid DNS name.
    #[error("invalid DNS name {name:?}: {source}")]
    DnsName {
        /// The offending name.
        name: String,
        /// The rcgen error.
        source: rcgen::Error,
    },
    /// A name given as a SAN is not a DNS name (RFC 1123 labels, an optional leading `*.`).
    #[error("invalid DNS name {0:?}: use letters, digits, '-' and '.'")]
    BadDnsName(String),
    /// Writing a file failed.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A PEM certificate and its PEM private key.
#[derive(Clone, Debug)]
pub struct Pair {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PEM (PKCS#8).
    pub key_pem: String,
}

/// A certificate authority that issues the webhook's serving certificates.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    key_pem: String,
}

fn rc<T>(what: &'static str, r: Result<T, rcgen::Error>) -> Result<T, CertError> {
    r.map_err(|source| CertError::Generate { what, source })
}

fn base_params(common_name: &str, not_after: OffsetDateTime) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    let now = OffsetDateTime::now_utc();
    // Backdate a little so that a clock a few seconds behind still accepts the certificate.
    params.not_before = now - Duration::minutes(5);
    params.not_after = not_after;
    params
}

fn days_from_now(days: i64) -> OffsetDateTime {
    OffsetDateTime::now_utc() + Duration::days(days)
}

/// 16 hex digits from the clock and a process-wide counter: distinct for every call.
fn unique_suffix() -> String {
    use std::hash::{BuildHasher, RandomState};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let h = RandomState::new().hash_one((n, std::process::id(), std::time::SystemTime::now()));
    format!("{h:016x}")
}

fn is_dns_name(name: &str) -> bool {
    let name = name.strip_prefix("*.").unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

fn new_key(what: &'static str) -> Result<KeyPair, CertError> {
    rc(what, KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256))
}

impl Ca {
    /// A new self-signed CA valid for `days`.
    pub fn new(common_name: &str, days: i64) -> Result<Self, CertError> {
        Self::new_until(common_name, days_from_now(days))
    }

    /// A new self-signed CA valid until `not_after`.
    pub fn new_until(common_name: &str, not_after: OffsetDateTime) -> Result<Self, CertError> {
        // Every CA gets its own subject and serial: after a rotation, clients that pick a CA
        // by subject (OpenSSL) must not confuse the new one with the old.
        let unique = unique_suffix();
        let mut params = base_params(&format!("{common_name} {unique}"), not_after);
        params.serial_number = Some(rcgen::SerialNumber::from_slice(unique.as_bytes()));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = new_key("CA key")?;
        let key_pem = key.serialize_pem();
        let cert_pem = rc("CA certificate", params.self_signed(&key))?.pem();
        Ok(Self {
            issuer: Issuer::new(params, key),
            cert_pem,
            key_pem,
        })
    }

    /// A CA read back from its PEM certificate and PEM private key (as [`Ca::pair`] gives
    /// them), to issue more certificates with it: what the in-process manager keeps in its
    /// Secret.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, CertError> {
        let key = rc("CA key", KeyPair::from_pem(key_pem))?;
        let issuer = rc("CA certificate", Issuer::from_ca_cert_pem(cert_pem, key))?;
        Ok(Self {
            issuer,
            cert_pem: cert_pem.to_string(),
            key_pem: key_pem.to_string(),
        })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> String {
        self.cert_pem.clone()
    }

    /// The CA certificate and key.
    pub fn pair(&self) -> Pair {
        Pair {
            cert_pem: self.cert_pem(),
            key_pem: self.key_pem.clone(),
        }
    }

    /// The CA certificate as a webhook `caBundle` (base64 of the PEM).
    pub fn ca_bundle(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.cert_pem())
    }

    /// A serving certificate for the given DNS names and IP addresses.
    pub fn issue_server(
        &self,
        common_name: &str,
        dns_names: &[String],
        ips: &[IpAddr],
        days: i64,
    ) -> Result<Pair, CertError> {
        self.issue_server_until(common_name, dns_names, ips, days_from_now(days))
    }

    /// A serving certificate for the given DNS names and IP addresses, valid until
    /// `not_after`.
    pub fn issue_server_until(
        &self,
        common_name: &str,
        dns_names: &[String],
        ips: &[IpAddr],
        not_after: OffsetDateTime,
    ) -> Result<Pair, CertError> {
        let mut params = base_params(common_name, not_after);
        for name in dns_names {
            if !is_dns_name(name) {
                return Err(CertError::BadDnsName(name.clone()));
            }
            let dns = name
                .clone()
                .try_into()
                .map_err(|source| CertError::DnsName {
                    name: name.clone(),
                    source,
                })?;
            params.subject_alt_names.push(SanType::DnsName(dns));
        }
        params
            .subject_alt_names
            .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params, "serving certificate")
    }

    fn issue(&self, mut params: CertificateParams, what: &'static str) -> Result<Pair, CertError> {
        // Subject and Authority Key Identifiers: chain building by key, not by name.
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(rcgen::SerialNumber::from_slice(unique_suffix().as_bytes()));
        let key = new_key(what)?;
        let cert = rc(what, params.signed_by(&key, &self.issuer))?;
        Ok(Pair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// Writes `contents` to `path`, creating the parent directory; key files get mode 0600.
pub fn write_file(path: &Path, contents: &str, secret: bool) -> Result<(), CertError> {
    let err = |source| CertError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(err)?;
    }
    fs::write(path, contents).map_err(err)?;
    if secret {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_certificate_carries_the_requested_names() {
        let ca = Ca::new("test-ca", 1).unwrap();
        let pair = ca
            .issue_server(
                "nsguard",
                &["nsguard.nsguard-system.svc".into()],
                &["127.0.0.1".parse().unwrap()],
                1,
            )
            .unwrap();
        assert!(pair.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(pair.key_pem.contains("PRIVATE KEY"));
        assert_ne!(pair.cert_pem, ca.cert_pem());
    }

    #[test]
    fn a_bad_dns_name_is_an_error_not_a_panic() {
        let ca = Ca::new("test-ca", 1).unwrap();
        let err = ca
            .issue_server("x", &["not a name!".into()], &[], 1)
            .unwrap_err();
        assert!(err.to_string().contains("not a name!"), "{err}");
    }

    #[test]
    fn every_ca_is_distinct_and_certificates_carry_key_identifiers() {
        use base64::Engine;
        let der = |pem: &str| {
            let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap()
        };
        let has = |der: &[u8], oid: &[u8]| der.windows(oid.len()).any(|w| w == oid);
        const SKI: &[u8] = &[0x06, 0x03, 0x55, 0x1d, 0x0e];
        const AKI: &[u8] = &[0x06, 0x03, 0x55, 0x1d, 0x23];
        let a = Ca::new("nsguard-ca", 1).unwrap();
        let b = Ca::new("nsguard-ca", 1).unwrap();
        let subject = |der: &[u8]| {
            let at = der
                .windows(11)
                .position(|w| w == b"nsguard-ca ")
                .expect("CN nsguard-ca <suffix>");
            der[at..at + 27].to_vec()
        };
        assert_ne!(
            subject(&der(&a.cert_pem())),
            subject(&der(&b.cert_pem())),
            "two CAs share a subject"
        );
        assert!(has(&der(&a.cert_pem()), SKI));
        let leaf = a
            .issue_server("nsguard", &["nsguard.nsguard-system.svc".into()], &[], 1)
            .unwrap();
        let leaf = der(&leaf.cert_pem);
        assert!(has(&leaf, SKI), "leaf lacks a Subject Key Identifier");
        assert!(has(&leaf, AKI), "leaf lacks an Authority Key Identifier");
    }

    #[test]
    fn ca_bundle_is_base64_of_the_pem() {
        let ca = Ca::new("test-ca", 1).unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(ca.ca_bundle())
            .unwrap();
        assert_eq!(String::from_utf8(decoded).unwrap(), ca.cert_pem());
    }
}
