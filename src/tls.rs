//! TLS material: the rustls provider (aws-lc), PEM loading, the inbound listener's
//! certificate (hot-swappable, [`CertResolver`]) and the forwarding client's
//! configuration. Shared by the listeners and the client; depends on neither.
use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::ServerTls;

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    // The cause in the message, not also a `source()` (see `StartError`).
    #[error("TLS configuration: {0}")]
    Rustls(rustls::Error),
}

impl From<rustls::Error> for TlsSetupError {
    fn from(e: rustls::Error) -> Self {
        TlsSetupError::Rustls(e)
    }
}

fn file_err(path: &Path, reason: impl std::fmt::Display) -> TlsSetupError {
    TlsSetupError::File {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(path, e))?;
    if certs.is_empty() {
        return Err(file_err(path, "holds no CERTIFICATE block"));
    }
    Ok(certs)
}

pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsSetupError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_err(path, e))
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The forwarding client's TLS: roots from `ca_file` or the system, and an optional
/// client certificate. ALPN is the connector's business.
pub fn client_config(
    ca_file: Option<&Path>,
    client_cert: Option<(&Path, &Path)>,
) -> Result<rustls::ClientConfig, TlsSetupError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in load_certs(path)? {
                roots.add(cert).map_err(|e| file_err(path, e))?;
            }
        }
        None => {
            // System roots; unreadable ones are skipped (as every TLS client does).
            // In a container that is the image's bundle
            // (/etc/ssl/certs/ca-certificates.crt, or SSL_CERT_FILE).
            let native = rustls_native_certs::load_native_certs();
            for cert in native.certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                tracing::warn!(
                    "no system CA roots found: https:// peers will be refused unless a CA \
                     file is configured (or SSL_CERT_FILE names a bundle)"
                );
            } else {
                tracing::debug!(roots = roots.len(), "system CA roots loaded");
            }
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    Ok(match client_cert {
        Some((cert, key)) => {
            builder.with_client_auth_cert(load_certs(cert)?, load_private_key(key)?)?
        }
        None => builder.with_no_client_auth(),
    })
}

/// The inbound certificate, behind an atomic pointer so a renewed certificate applies to
/// the next handshake without a restart.
#[derive(Debug)]
pub struct CertResolver {
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    current: arc_swap::ArcSwap<rustls::sign::CertifiedKey>,
    /// The PEM bytes loaded, to tell a real change from a touch.
    loaded: std::sync::Mutex<(Vec<u8>, Vec<u8>)>,
}

impl CertResolver {
    fn load(
        cert: &std::path::Path,
        key: &std::path::Path,
    ) -> Result<rustls::sign::CertifiedKey, TlsSetupError> {
        let certs = load_certs(cert)?;
        let key_der = load_private_key(key)?;
        let signing = provider().key_provider.load_private_key(key_der)?;
        Ok(rustls::sign::CertifiedKey::new(certs, signing))
    }

    fn new(t: &ServerTls) -> Result<Self, TlsSetupError> {
        let ck = Self::load(&t.cert, &t.key)?;
        Ok(CertResolver {
            cert: t.cert.clone(),
            key: t.key.clone(),
            current: arc_swap::ArcSwap::from_pointee(ck),
            loaded: std::sync::Mutex::new((
                std::fs::read(&t.cert).unwrap_or_default(),
                std::fs::read(&t.key).unwrap_or_default(),
            )),
        })
    }

    /// Re-reads the certificate and key; swaps them in if they changed and load.
    pub fn reload(&self) -> Result<bool, TlsSetupError> {
        let bytes = (
            std::fs::read(&self.cert).unwrap_or_default(),
            std::fs::read(&self.key).unwrap_or_default(),
        );
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if *loaded == bytes {
            return Ok(false);
        }
        let ck = Self::load(&self.cert, &self.key)?;
        self.current.store(Arc::new(ck));
        *loaded = bytes;
        Ok(true)
    }

    pub fn paths(&self) -> [&std::path::Path; 2] {
        [&self.cert, &self.key]
    }
}

impl rustls::server::ResolvesServerCert for CertResolver {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.current.load_full())
    }
}

pub fn server_acceptor(t: &ServerTls) -> Result<(TlsAcceptor, Arc<CertResolver>), TlsSetupError> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?;
    let builder = match &t.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in load_certs(ca)? {
                roots.add(cert)?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .build()
            .map_err(|e| file_err(ca, e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let resolver = Arc::new(CertResolver::new(t)?);
    let mut config = builder.with_cert_resolver(resolver.clone());
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((TlsAcceptor::from(Arc::new(config)), resolver))
}
