//! What the phone trusts and presents over TLS (HTTPS, FTPS): the CA certificates it was given
//! and, optionally, its device certificate and key — as a real phone has its factory
//! certificate and the CAs its configuration installed.

use super::TransportError;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;

/// A TLS client configuration trusting the CA certificates in `ca_pem`, presenting
/// `device` (certificate chain PEM, key PEM) when a server asks for a client certificate.
pub fn client_config(
    ca_pem: &[u8],
    device: Option<(&[u8], &[u8])>,
) -> Result<Arc<rustls::ClientConfig>, TransportError> {
    let bad = |e: String| TransportError::Unsupported(format!("TLS settings: {e}"));
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots
            .add(cert.map_err(|e| bad(e.to_string()))?)
            .map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("no CA certificate found".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots);
    let config = match device {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(cert)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(format!("device certificate: {e}")))?;
            let key =
                PrivateKeyDer::from_pem_slice(key).map_err(|e| bad(format!("device key: {e}")))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| bad(format!("device certificate and key: {e}")))?
        }
    };
    Ok(Arc::new(config))
}
