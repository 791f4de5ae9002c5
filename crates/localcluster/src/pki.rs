//! The control plane's own credentials, which nsguard itself never makes: client certificates
//! for the API server's users (the admin, the controller-manager, the API server's client to
//! webhooks) and the key that signs ServiceAccount tokens.
//!
//! They are made here with rcgen, not in nsguard's `certs` module, so that the library ships
//! only what `nsguard certs` and `nsguard serve` use. Client certificates are signed by the
//! cluster CA that nsguard's [`Ca`](nsguard_certs::Ca) made, read back from its PEM pair (the
//! same two files `nsguard certs` writes): one CA for serving and client certificates, as
//! kubeadm does.

use anyhow::{Context, Result};
use nsguard_certs::Pair;
use rcgen::{
    CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256,
};
use time::{Duration, OffsetDateTime};

/// Signs client certificates with an existing CA.
pub struct ClientIssuer {
    issuer: Issuer<'static, KeyPair>,
}

impl ClientIssuer {
    /// An issuer for the CA whose certificate and key are `ca`.
    pub fn new(ca: &Pair) -> Result<Self> {
        let key = KeyPair::from_pem(&ca.key_pem).context("reading the CA key")?;
        // The issuer's subject and key identifier come from the certificate itself, so that
        // every client certificate names its issuer byte for byte as the CA names itself:
        // Go's x509 finds a parent by the raw subject.
        let issuer =
            Issuer::from_ca_cert_pem(&ca.cert_pem, key).context("reading the CA certificate")?;
        Ok(Self { issuer })
    }

    /// A client certificate: the API server reads the user from the CN and the group from
    /// the O. One group at most: rcgen's distinguished name holds one value per attribute
    /// type, so a second O would silently replace the first.
    pub fn issue(&self, user: &str, group: Option<&str>, days: i64) -> Result<Pair> {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, user);
        if let Some(group) = group {
            params
                .distinguished_name
                .push(DnType::OrganizationName, group);
        }
        let now = OffsetDateTime::now_utc();
        // Backdated like nsguard's certificates, for a clock a little behind.
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + Duration::days(days);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .with_context(|| format!("generating the key of client {user}"))?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .with_context(|| format!("signing the certificate of client {user}"))?;
        Ok(Pair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// A key pair for signing ServiceAccount tokens: the private key (PKCS#8 PEM) for the
/// controller-manager and the API server, the public key (PEM) for the API server.
pub fn signing_key() -> Result<(String, String)> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .context("generating the ServiceAccount signing key")?;
    Ok((key.serialize_pem(), key.public_key_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nsguard_certs::Ca;
    use x509_parser::prelude::*;

    fn der(pem: &str) -> Vec<u8> {
        parse_x509_pem(pem.as_bytes()).expect("PEM").1.contents
    }

    #[test]
    fn a_client_certificate_names_its_user_and_groups_and_chains_to_the_ca() {
        let ca = Ca::new("test-ca", 1).unwrap();
        let client = ClientIssuer::new(&ca.pair())
            .unwrap()
            .issue("jane", Some("system:masters"), 1)
            .unwrap();
        assert!(client.key_pem.contains("PRIVATE KEY"));

        let (ca_der, leaf_der) = (der(&ca.cert_pem()), der(&client.cert_pem));
        let (_, ca_cert) = parse_x509_certificate(&ca_der).unwrap();
        let (_, leaf) = parse_x509_certificate(&leaf_der).unwrap();
        let cn: Vec<_> = leaf
            .subject()
            .iter_common_name()
            .map(|a| a.as_str().unwrap())
            .collect();
        let orgs: Vec<_> = leaf
            .subject()
            .iter_organization()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(cn, ["jane"]);
        assert_eq!(orgs, ["system:masters"]);

        assert_eq!(leaf.issuer().as_raw(), ca_cert.subject().as_raw());
        leaf.verify_signature(Some(ca_cert.public_key()))
            .expect("signed by the CA's key");
        let key_ids = |cert: &X509Certificate| {
            let (mut ski, mut aki) = (None, None);
            for e in cert.extensions() {
                match e.parsed_extension() {
                    ParsedExtension::SubjectKeyIdentifier(id) => ski = Some(id.0.to_vec()),
                    ParsedExtension::AuthorityKeyIdentifier(a) => {
                        aki = a.key_identifier.as_ref().map(|id| id.0.to_vec())
                    }
                    _ => {}
                }
            }
            (ski, aki)
        };
        let (ski, _) = key_ids(&ca_cert);
        let (_, aki) = key_ids(&leaf);
        assert!(ski.is_some(), "the CA has no Subject Key Identifier");
        assert_eq!(aki, ski);

        let eku = leaf.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth, "{eku:?}");
        assert!(!leaf.is_ca());
    }

    #[test]
    fn a_ca_that_does_not_parse_is_an_error_not_a_panic() {
        let ca = Ca::new("test-ca", 1).unwrap().pair();
        let broken = Pair {
            cert_pem: "not a certificate".into(),
            key_pem: ca.key_pem.clone(),
        };
        assert!(ClientIssuer::new(&broken).is_err());
        let broken = Pair {
            cert_pem: ca.cert_pem,
            key_pem: "not a key".into(),
        };
        assert!(ClientIssuer::new(&broken).is_err());
    }

    #[test]
    fn the_signing_key_pair_belongs_together() {
        let (private, public) = signing_key().unwrap();
        assert!(
            private.starts_with("-----BEGIN PRIVATE KEY-----"),
            "{private}"
        );
        assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"), "{public}");
        assert_eq!(
            KeyPair::from_pem(&private).unwrap().public_key_pem(),
            public
        );
        assert_ne!(signing_key().unwrap().0, private);
    }
}
