//! TLS 1.2/1.3 with a serving pair that is re-read from its files: a change (including a
//! Kubernetes Secret's `..data` symlink swap, since the paths are re-opened) is picked up, and
//! a broken new pair keeps the old one serving. With certificates managed in process the pair
//! comes from nsguard's Secret instead ([`ReloadingCert::empty`], then
//! [`ReloadingCert::store`]), through the same resolver.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use prometheus_client::metrics::gauge::Gauge;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, version};

/// Errors loading the serving pair.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A file holds no usable PEM.
    #[error("{path}: {what}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// rustls refused the pair.
    #[error("certificate and key do not form a usable pair: {0}")]
    Pair(rustls::Error),
    /// The client CA file (`--client-ca-file`) is unusable.
    #[error("client CA {0}: {1}")]
    ClientCa(PathBuf, String),
}

/// Where the pair comes from.
#[derive(Debug)]
enum Source {
    /// Files, re-read every interval.
    Files {
        cert_path: PathBuf,
        key_path: PathBuf,
    },
    /// Stored by the certificate manager; `from` names where (a Secret), for errors.
    Stored { from: PathBuf },
}

/// Resolves every handshake to the current pair (none yet: the handshake fails, and
/// readiness waits for a pair).
#[derive(Debug)]
pub struct ReloadingCert {
    source: Source,
    provider: Arc<CryptoProvider>,
    current: ArcSwapOption<CertifiedKey>,
    loaded: ArcSwap<(Vec<u8>, Vec<u8>)>,
    /// The leaf's notAfter (Unix seconds), set on every load that is swapped in.
    expiry: Gauge,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn parse(
    provider: &CryptoProvider,
    cert_path: &Path,
    key_path: &Path,
    cert: &[u8],
    key: &[u8],
) -> Result<(CertifiedKey, i64), TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem {
            path: cert_path.to_path_buf(),
            what: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Pem {
            path: cert_path.to_path_buf(),
            what: "no certificate".into(),
        });
    }
    let not_after = not_after(&chain[0]).map_err(|what| TlsError::Pem {
        path: cert_path.to_path_buf(),
        what,
    })?;
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| TlsError::Pem {
        path: key_path.to_path_buf(),
        what: e.to_string(),
    })?;
    let ck = CertifiedKey::from_der(chain, key, provider).map_err(TlsError::Pair)?;
    Ok((ck, not_after))
}

/// The certificate's notAfter as a Unix time, for the expiry metric.
fn not_after(cert: &CertificateDer<'_>) -> Result<i64, String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| format!("the first certificate does not parse as X.509: {e}"))?;
    Ok(parsed.validity().not_after.timestamp())
}

impl ReloadingCert {
    /// Loads the pair; fails when it is not usable.
    pub fn load(
        cert_path: &Path,
        key_path: &Path,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, TlsError> {
        let cert = read(cert_path)?;
        let key = read(key_path)?;
        let (ck, not_after) = parse(&provider, cert_path, key_path, &cert, &key)?;
        let expiry = Gauge::default();
        expiry.set(not_after);
        Ok(Self {
            source: Source::Files {
                cert_path: cert_path.to_path_buf(),
                key_path: key_path.to_path_buf(),
            },
            provider,
            current: ArcSwapOption::from_pointee(ck),
            loaded: ArcSwap::from_pointee((cert, key)),
            expiry,
        })
    }

    /// No pair yet: [`ReloadingCert::store`] brings one (certificates managed in process);
    /// `from` names where it comes from, for errors.
    pub fn empty(from: &str, provider: Arc<CryptoProvider>) -> Self {
        Self {
            source: Source::Stored {
                from: PathBuf::from(from),
            },
            provider,
            current: ArcSwapOption::empty(),
            loaded: ArcSwap::from_pointee((Vec::new(), Vec::new())),
            expiry: Gauge::default(),
        }
    }

    /// Swaps in `cert` and `key` (PEM) if they differ from the pair served and are usable.
    /// Returns whether it swapped; a broken pair keeps the old one.
    pub fn store(&self, cert: &[u8], key: &[u8]) -> Result<bool, TlsError> {
        let (cert_from, key_from) = match &self.source {
            Source::Files {
                cert_path,
                key_path,
            } => (cert_path.clone(), key_path.clone()),
            Source::Stored { from } => (from.join("tls.crt"), from.join("tls.key")),
        };
        let loaded = self.loaded.load();
        if self.current.load().is_some() && loaded.0 == cert && loaded.1 == key {
            return Ok(false);
        }
        let (ck, not_after) = parse(&self.provider, &cert_from, &key_from, cert, key)?;
        self.current.store(Some(Arc::new(ck)));
        self.loaded.store(Arc::new((cert.to_vec(), key.to_vec())));
        self.expiry.set(not_after);
        Ok(true)
    }

    /// Whether a pair is being served.
    pub fn has_pair(&self) -> bool {
        self.current.load().is_some()
    }

    /// Publishes the serving certificate's notAfter in `gauge` (the metrics registry's
    /// `nsguard_certificate_expiry_timestamp_seconds`), now and on every reload.
    pub fn with_expiry_gauge(mut self, gauge: Gauge) -> Self {
        gauge.set(self.expiry.get());
        self.expiry = gauge;
        self
    }

    /// The notAfter of the certificate being served, as a Unix time.
    pub fn not_after(&self) -> i64 {
        self.expiry.get()
    }

    /// Re-reads the files; swaps in the new pair if it changed and is usable. Returns whether
    /// it swapped. A stored pair has no files: nothing to re-read.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let Source::Files {
            cert_path,
            key_path,
        } = &self.source
        else {
            return Ok(false);
        };
        let cert = read(cert_path)?;
        let key = read(key_path)?;
        self.store(&cert, &key)
    }

    /// Reloads every `interval`, logging failures and keeping the old pair.
    pub fn spawn_reloader(self: &Arc<Self>, interval: Duration) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.tick().await;
            loop {
                tick.tick().await;
                match this.reload() {
                    Ok(true) => {
                        if let Source::Files { cert_path, .. } = &this.source {
                            tracing::info!(cert = %cert_path.display(), "Serving certificate reloaded")
                        }
                    }
                    Ok(false) => {}
                    Err(error) => {
                        tracing::warn!(%error, "Serving certificate not reloaded; keeping the old one")
                    }
                }
            }
        });
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.load_full()
    }
}

/// The ring provider nsguard uses everywhere.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server config: TLS 1.2 and 1.3 only, ALPN h2 and http/1.1, the reloading pair.
pub fn server_config(
    cert: Arc<ReloadingCert>,
    provider: Arc<CryptoProvider>,
) -> Result<ServerConfig, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&version::TLS13, &version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Like [`server_config`], but only clients presenting a certificate signed by a CA in the
/// PEM file `client_ca` are served: the API server, given a client certificate for webhooks in
/// its AdmissionConfiguration kubeconfig (`--client-ca-file`).
pub fn server_config_verifying_clients(
    cert: Arc<ReloadingCert>,
    provider: Arc<CryptoProvider>,
    client_ca: &Path,
) -> Result<ServerConfig, TlsError> {
    let read = |e: String| TlsError::ClientCa(client_ca.to_path_buf(), e);
    let mut roots = rustls::RootCertStore::empty();
    for der in CertificateDer::pem_file_iter(client_ca).map_err(|e| read(e.to_string()))? {
        let der = der.map_err(|e| read(e.to_string()))?;
        roots.add(der).map_err(|e| read(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(read("no certificate in it".into()));
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| read(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&version::TLS13, &version::TLS12])
        .map_err(|e| read(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::Ca;

    #[test]
    fn a_broken_new_pair_keeps_the_old_one_and_a_good_one_is_swapped_in() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        let ca = Ca::new("t", 1).unwrap();
        let pair = ca.issue_server("a", &["localhost".into()], &[], 1).unwrap();
        std::fs::write(&c, &pair.cert_pem).unwrap();
        std::fs::write(&k, &pair.key_pem).unwrap();
        let gauge = Gauge::default();
        let r = ReloadingCert::load(&c, &k, provider())
            .unwrap()
            .with_expiry_gauge(gauge.clone());
        let before = r.current.load_full().unwrap();
        // Issued for one day: the metric says so, within the clock's drift during the test.
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let first_expiry = gauge.get();
        assert!(
            (first_expiry - now - 86_400).abs() < 3_600,
            "{first_expiry} vs {now}"
        );
        assert!(!r.reload().unwrap());
        std::fs::write(&c, "garbage").unwrap();
        assert!(r.reload().is_err());
        assert!(Arc::ptr_eq(&before, &r.current.load_full().unwrap()));
        assert_eq!(
            gauge.get(),
            first_expiry,
            "a broken pair leaves the metric alone"
        );
        let pair2 = ca
            .issue_server("b", &["localhost".into()], &[], 30)
            .unwrap();
        // Like a Secret volume: the new files appear behind a renamed path.
        let tmp = dir.path().join("new.crt");
        std::fs::write(&tmp, &pair2.cert_pem).unwrap();
        std::fs::write(&k, &pair2.key_pem).unwrap();
        std::fs::rename(&tmp, &c).unwrap();
        assert!(r.reload().unwrap());
        assert!(!Arc::ptr_eq(&before, &r.current.load_full().unwrap()));
        assert!(
            (gauge.get() - now - 30 * 86_400).abs() < 3_600,
            "the reloaded certificate's notAfter: {}",
            gauge.get()
        );
        assert_eq!(r.not_after(), gauge.get());
    }

    #[test]
    fn a_stored_pair_is_served_once_stored_and_a_broken_one_is_refused() {
        let ca = Ca::new("t", 1).unwrap();
        let pair = ca.issue_server("a", &["localhost".into()], &[], 1).unwrap();
        let r = ReloadingCert::empty("Secret ns/certs", provider());
        assert!(!r.has_pair());
        assert!(!r.reload().unwrap(), "no files to re-read");
        let err = r.store(b"garbage", pair.key_pem.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("Secret ns/certs"), "{err}");
        assert!(!r.has_pair());
        assert!(
            r.store(pair.cert_pem.as_bytes(), pair.key_pem.as_bytes())
                .unwrap()
        );
        assert!(r.has_pair());
        assert!(
            !r.store(pair.cert_pem.as_bytes(), pair.key_pem.as_bytes())
                .unwrap(),
            "the same pair again is no change"
        );
        assert!(r.store(b"garbage", b"garbage").is_err());
        assert!(r.has_pair(), "a broken pair keeps the one served");
    }
}
