//! TLS through rustls: client configurations (system roots by default, a custom CA, a client
//! certificate, an explicit opt-out of verification) and server configurations.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring, verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::error::{Error, Result};

/// How a client verifies and identifies itself to a wss:// server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsClientOptions {
    /// Extra trusted CA certificates (PEM). With `no_system_roots` they are the only ones.
    pub ca_pem: Option<Vec<u8>>,
    /// Do not trust the operating system's roots (only `ca_pem`).
    pub no_system_roots: bool,
    /// A client certificate chain and its private key (PEM), for servers that ask for one.
    pub client_cert_pem: Option<Vec<u8>>,
    /// The private key of `client_cert_pem` (PEM).
    pub client_key_pem: Option<Vec<u8>>,
    /// Verify the certificate against this name instead of the URI's host.
    pub server_name: Option<String>,
    /// Accept any certificate. Never the default: for tests and trusted networks only.
    pub insecure_skip_verify: bool,
}

/// A server's certificate chain and private key (PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsServerOptions {
    /// The certificate chain, leaf first (PEM).
    pub cert_chain_pem: Vec<u8>,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_pem: Vec<u8>,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

fn tls_error(what: &str, error: impl std::fmt::Display) -> Error {
    Error::Tls(format!("{what}: {error}"))
}

fn parse_certs(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| tls_error(what, e))?;
    if certs.is_empty() {
        return Err(Error::Tls(format!("{what}: no certificate in PEM")));
    }
    Ok(certs)
}

fn parse_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| tls_error("private key", e))
}

/// Builds the rustls client configuration for `options`.
pub fn client_config(options: &TlsClientOptions) -> Result<Arc<rustls::ClientConfig>> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("protocol versions", e))?;
    let builder = if options.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
    } else {
        let mut roots = RootCertStore::empty();
        if !options.no_system_roots {
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
        }
        if let Some(pem) = &options.ca_pem {
            for cert in parse_certs(pem, "CA certificate")? {
                roots
                    .add(cert)
                    .map_err(|e| tls_error("CA certificate", e))?;
            }
        }
        if roots.is_empty() {
            return Err(Error::Tls(
                "no trusted root certificates: the system has none and no CA was given".into(),
            ));
        }
        builder.with_root_certificates(roots)
    };
    let config = match (&options.client_cert_pem, &options.client_key_pem) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(parse_certs(cert, "client certificate")?, parse_key(key)?)
            .map_err(|e| tls_error("client certificate", e))?,
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(Error::Config(
                "a client certificate needs both the certificate and its key".into(),
            ))
        }
    };
    Ok(Arc::new(config))
}

/// Builds the rustls server configuration for `options`.
pub fn server_config(options: &TlsServerOptions) -> Result<Arc<rustls::ServerConfig>> {
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("protocol versions", e))?
        .with_no_client_auth()
        .with_single_cert(
            parse_certs(&options.cert_chain_pem, "server certificate")?,
            parse_key(&options.key_pem)?,
        )
        .map_err(|e| tls_error("server certificate", e))?;
    Ok(Arc::new(config))
}

/// The name a client verifies the server's certificate against.
pub fn server_name(options: &TlsClientOptions, host: &str) -> Result<ServerName<'static>> {
    let name = options.server_name.as_deref().unwrap_or(host);
    ServerName::try_from(name.to_owned()).map_err(|e| tls_error("server name", e))
}

/// The verifier behind `insecure_skip_verify`: checks signatures, trusts any certificate.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
