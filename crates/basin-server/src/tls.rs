//! TLS for both front doors, from `[server] tls_cert` and `tls_key` (PEM files): HTTP is
//! served as HTTPS only, and the Postgres door answers `SSLRequest` (psql's
//! `sslmode=require`) and takes logins over TLS only, except from this machine (loopback).
//! Without them, tokens cross the network in the clear, which `basin serve` says when it
//! listens beyond loopback.
//!
//! rustls with the ring provider: the one crypto library in the build (pgwire's TLS, the S3
//! client's), through the tokio-rustls pgwire and reqwest use, so both doors share one
//! version of it.

use std::path::Path;
use std::sync::Arc;

use basin_service::{Error, Result, TlsFiles};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

/// The two doors' acceptors, built from one certificate and key.
#[derive(Clone)]
pub(crate) struct Acceptors {
    pub(crate) http: TlsAcceptor,
    pub(crate) postgres: TlsAcceptor,
}

/// Reads the certificate chain and key; fails naming the file that is missing or wrong.
pub(crate) fn acceptors(files: &TlsFiles) -> Result<Acceptors> {
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| unreadable(&files.cert, "tls_cert", e))?;
    if certs.is_empty() {
        return Err(unreadable(&files.cert, "tls_cert", "no certificate in it"));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| unreadable(&files.key, "tls_key", e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| {
            Error::invalid(format!(
                "[server] tls_cert {} and tls_key {} do not make a TLS server: {e}",
                files.cert.display(),
                files.key.display()
            ))
            .with_hint(
                "the key must be the certificate's (PEM: BEGIN CERTIFICATE, BEGIN PRIVATE KEY)",
            )
        })?;
    let mut http = config.clone();
    http.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Acceptors {
        http: TlsAcceptor::from(Arc::new(http)),
        postgres: TlsAcceptor::from(Arc::new(config)),
    })
}

fn unreadable(path: &Path, setting: &str, e: impl std::fmt::Display) -> Error {
    Error::invalid(format!(
        "[server] {setting}: cannot read {}: {e}",
        path.display()
    ))
    .with_hint("a PEM file; a relative path is taken from the lakehouse folder")
}
