//! The test server certificate as a rustls acceptor, for HTTPS stand-ins of st2: one file for the
//! adapter's tests and the st2 client's, which include it by path.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// An acceptor presenting the PEM chain in `cert` with the private key in `key`.
pub fn acceptor(cert: &Path, key: &Path) -> tokio_rustls::TlsAcceptor {
    let certs = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}
