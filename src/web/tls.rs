//! TLS for the receiver (`[receive] tls_cert_file`, `tls_key_file`): rustls, the certificate re-read on SIGHUP.
//! A reload that cannot read the new files keeps serving with the old ones, so a renewal that went wrong never
//! takes the endpoint down.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::Context as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, ServerConfig};

#[derive(Clone)]
pub struct Tls(Arc<RwLock<TlsAcceptor>>);

impl Tls {
    pub fn load(cert: &Path, key: &Path) -> anyhow::Result<Tls> {
        Ok(Tls(Arc::new(RwLock::new(acceptor(cert, key)?))))
    }

    /// Applies the files as they are now; on error the running certificate stays.
    pub fn reload(&self, cert: &Path, key: &Path) -> anyhow::Result<()> {
        let acceptor = acceptor(cert, key)?;
        *self.0.write().expect("tls lock") = acceptor;
        Ok(())
    }

    pub(super) fn acceptor(&self) -> TlsAcceptor {
        self.0.read().expect("tls lock").clone()
    }
}

/// The receiver's TLS files, when it terminates TLS itself.
pub fn files(settings: &crate::config::ReceiveSettings) -> Option<(PathBuf, PathBuf)> {
    settings.tls_cert_file.clone().zip(settings.tls_key_file.clone())
}

fn acceptor(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("tls_cert_file: cannot read certificates from {}", cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("tls_cert_file: {} holds no PEM certificate", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("tls_key_file: cannot read a PEM private key from {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("tls_cert_file and tls_key_file do not make a usable certificate and key pair")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
