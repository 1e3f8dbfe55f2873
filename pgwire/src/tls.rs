//! TLS for the door from `[tls]` (PEM certificate chain and key): clients ask for it with an
//! SSLRequest (`sslmode=require`), and a cleartext password is then accepted from any network.

use std::sync::Arc;

use anyhow::Context;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use strata_query::config::TlsSettings;
use tokio_rustls::rustls;

pub fn acceptor(settings: &TlsSettings) -> anyhow::Result<Option<pgwire::tokio::TlsAcceptor>> {
    let (cert, key) = match (&settings.cert, &settings.key) {
        (Some(cert), Some(key)) => (cert, key),
        (None, None) => return Ok(None),
        _ => anyhow::bail!("[tls] needs both cert and key"),
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("cannot read the certificate {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("bad certificate {}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("cannot read the private key {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match &settings.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => builder.with_client_cert_verifier(client_verifier(ca, provider)?),
    };
    let config = builder
        .with_single_cert(chain, key)
        .context("the certificate and key do not match")?;
    Ok(Some(pgwire::tokio::TlsAcceptor::from(Arc::new(config))))
}

/// Mutual TLS: only certificates the client CA signed complete the handshake.
fn client_verifier(
    ca: &std::path::Path,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> anyhow::Result<Arc<dyn rustls::server::danger::ClientCertVerifier>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca)
        .with_context(|| format!("cannot read the client CA {}", ca.display()))?
    {
        roots
            .add(cert.with_context(|| format!("bad client CA {}", ca.display()))?)
            .with_context(|| format!("unusable client CA {}", ca.display()))?;
    }
    rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .with_context(|| format!("client CA {}", ca.display()))
}
