//! The test server certificate as a rustls acceptor, for HTTPS stand-ins of st2: one file for the
//! adapter's tests and the st2 client's, which include it by path.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// An acceptor presenting the PEM chain in `cert` with the private key in `key`.
pub fn acceptor(cert: &Path, key: &Path) -> tokio_rustls::TlsAcceptor {
    let config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain(cert), PrivateKeyDer::from_pem_file(key).unwrap())
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// As [`acceptor`], refusing any client without a certificate signed by the CA in
/// `client_ca` (mutual TLS).
#[allow(dead_code)] // the st2 client's tests, which include this file, need no client CA
pub fn acceptor_requiring_clients(
    cert: &Path,
    key: &Path,
    client_ca: &Path,
) -> tokio_rustls::TlsAcceptor {
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    for ca in chain(client_ca) {
        roots.add(ca).unwrap();
    }
    let verifier = tokio_rustls::rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
        .build()
        .unwrap();
    let config = ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain(cert), PrivateKeyDer::from_pem_file(key).unwrap())
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

fn chain(pem: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(pem)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}
