//! TLS through rustls: client configurations (system roots by default, a custom CA, a client
//! certificate, an explicit opt-out of verification) and server configurations.
//!
//! Client configurations are built once per set of options and shared: building one copies
//! the trust store, and the system's roots (loaded once per process) take milliseconds to
//! read, which every connect would pay otherwise.

use std::sync::{Arc, Mutex, OnceLock};

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
    /// Do not resume TLS sessions. By default, the sessions the servers offer are kept in
    /// memory (256 at most, in the configuration shared by the connections with the same
    /// options), so reconnecting to a server skips the certificate exchange.
    pub no_session_resumption: bool,
}

impl TlsClientOptions {
    /// Whether `other` builds the same rustls configuration: all but the server name, which
    /// each connection chooses.
    fn same_config(&self, other: &Self) -> bool {
        let Self {
            ca_pem,
            no_system_roots,
            client_cert_pem,
            client_key_pem,
            server_name: _,
            insecure_skip_verify,
            no_session_resumption,
        } = self;
        *ca_pem == other.ca_pem
            && *no_system_roots == other.no_system_roots
            && *client_cert_pem == other.client_cert_pem
            && *client_key_pem == other.client_key_pem
            && *insecure_skip_verify == other.insecure_skip_verify
            && *no_session_resumption == other.no_session_resumption
    }
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

/// How many client configurations are kept: a process connects with a few at most, and each
/// holds its options' PEM.
const CACHED_CLIENT_CONFIGS: usize = 16;

/// The client configurations built so far with their options, most recently used last.
static CLIENT_CONFIGS: Mutex<Vec<(TlsClientOptions, Arc<rustls::ClientConfig>)>> =
    Mutex::new(Vec::new());

/// The rustls client configuration for `options`: built on first use, then shared.
pub fn client_config(options: &TlsClientOptions) -> Result<Arc<rustls::ClientConfig>> {
    // Built under the lock: connects racing with new options build them once.
    let mut cache = CLIENT_CONFIGS.lock().unwrap_or_else(|e| e.into_inner());
    let entry = match cache
        .iter()
        .position(|(built, _)| built.same_config(options))
    {
        Some(index) => cache.remove(index),
        None => {
            let entry = (options.clone(), build_client_config(options)?);
            if cache.len() == CACHED_CLIENT_CONFIGS {
                cache.remove(0);
            }
            entry
        }
    };
    let config = entry.1.clone();
    cache.push(entry);
    Ok(config)
}

/// The operating system's root certificates, loaded on first use, once per process.
fn system_roots() -> Result<&'static RootCertStore> {
    static SYSTEM_ROOTS: OnceLock<std::result::Result<RootCertStore, String>> = OnceLock::new();
    SYSTEM_ROOTS
        .get_or_init(load_system_roots)
        .as_ref()
        .map_err(|reason| Error::Tls(reason.clone()))
}

/// Loads the system's roots: an error when none could be read; some that could not be read
/// or parsed are skipped with a warning.
fn load_system_roots() -> std::result::Result<RootCertStore, String> {
    let loaded = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (_, unparsable) = roots.add_parsable_certificates(loaded.certs);
    if unparsable > 0 {
        log::warn!("skipped {unparsable} system root certificates that could not be parsed");
    }
    if !loaded.errors.is_empty() {
        let errors = loaded
            .errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        if roots.is_empty() {
            return Err(format!(
                "the system's root certificates could not be loaded ({errors}); \
                 give a CA and do without the system's roots"
            ));
        }
        log::warn!("some system root certificates could not be loaded: {errors}");
    }
    Ok(roots)
}

fn build_client_config(options: &TlsClientOptions) -> Result<Arc<rustls::ClientConfig>> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("protocol versions", e))?;
    let builder = if options.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
    } else {
        let mut roots = if options.no_system_roots {
            RootCertStore::empty()
        } else {
            system_roots()?.clone()
        };
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
    let mut config = match (&options.client_cert_pem, &options.client_key_pem) {
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
    // Resumption stays rustls' default (an in-memory cache of 256 sessions) unless refused.
    if options.no_session_resumption {
        config.resumption = rustls::client::Resumption::disabled();
    }
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

/// The error for a failed client TLS handshake: [`Error::UntrustedCertificate`] when the
/// server's certificate failed verification, else [`Error::Tls`].
pub(crate) fn handshake_error(error: std::io::Error) -> Error {
    let rejected = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|tls| matches!(tls, rustls::Error::InvalidCertificate(_)));
    if rejected {
        Error::UntrustedCertificate(error.to_string())
    } else {
        Error::Tls(error.to_string())
    }
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

/// Certificates issued by trustme for the tests (valid from 2000 to 3000).
#[cfg(test)]
pub(crate) mod test_pem {
    /// A test CA.
    pub const CA: &str = "\
-----BEGIN CERTIFICATE-----
MIIBxzCCAW+gAwIBAgIUdABRrVdLom0JHMOZEsKBUXXxKrIwCgYIKoZIzj0EAwIw
QDEXMBUGA1UECgwOdHJ1c3RtZSB2MS4yLjExJTAjBgNVBAsMHFRlc3RpbmcgQ0Eg
I2VuYWpkTWxiWVdjWmpBSHEwIBcNMDAwMTAxMDAwMDAwWhgPMzAwMDAxMDEwMDAw
MDBaMEAxFzAVBgNVBAoMDnRydXN0bWUgdjEuMi4xMSUwIwYDVQQLDBxUZXN0aW5n
IENBICNlbmFqZE1sYllXY1pqQUhxMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE
7qdUo5kK/vYYRWpPjEncDWoGTqPCGc7nbVTUs0mhLIkMrQmwX4RiLmM0Zzi6KgGY
W0bOiZq6VHDo3Eg0Chut/KNFMEMwHQYDVR0OBBYEFLJJScPY1UqdzskgrC3KsCv0
5Jw4MBIGA1UdEwEB/wQIMAYBAf8CAQkwDgYDVR0PAQH/BAQDAgGGMAoGCCqGSM49
BAMCA0YAMEMCIDc1NNJ1bf1he8gze/p84D5btt2l3aThqkhMu1/hCYGaAh9pO9/S
8AMlK57U4IN3clSCxBTXvko6iEmbnvbKCKCE
-----END CERTIFICATE-----
";

    /// Another CA, which issued nothing used here.
    pub const OTHER_CA: &str = "\
-----BEGIN CERTIFICATE-----
MIIByTCCAW+gAwIBAgIUFEt7uZ3QgPTlhIcjSx8kmnzGb90wCgYIKoZIzj0EAwIw
QDEXMBUGA1UECgwOdHJ1c3RtZSB2MS4yLjExJTAjBgNVBAsMHFRlc3RpbmcgQ0Eg
I2JwUUg5eFVtdzdYX0tpMjAwIBcNMDAwMTAxMDAwMDAwWhgPMzAwMDAxMDEwMDAw
MDBaMEAxFzAVBgNVBAoMDnRydXN0bWUgdjEuMi4xMSUwIwYDVQQLDBxUZXN0aW5n
IENBICNicFFIOXhVbXc3WF9LaTIwMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE
AYT+i9xIRv521WF+CH7Xc76SrH9+7UoLlnU3+4Ot2HPI+b44IAVvjj9eoCU+KC90
cCEuvuT4oO64Vz/yPvdUzaNFMEMwHQYDVR0OBBYEFByEOVDmU1AXpd/6QaEn36eX
RNB9MBIGA1UdEwEB/wQIMAYBAf8CAQkwDgYDVR0PAQH/BAQDAgGGMAoGCCqGSM49
BAMCA0gAMEUCIQDdhgcH9i0O1Xor6d52Gt8j+OWseUc9TDARBIveLvzn4wIgRyy6
zur61MAHHnjvy+LCBnSelnhOO4WW9WvarjwobPQ=
-----END CERTIFICATE-----
";

    /// A certificate for 127.0.0.1 issued by [`CA`].
    pub const SERVER_CERT: &str = "\
-----BEGIN CERTIFICATE-----
MIICKTCCAc6gAwIBAgIUfvJAisQBvFFXgAbddM9PIFMP0UAwCgYIKoZIzj0EAwIw
QDEXMBUGA1UECgwOdHJ1c3RtZSB2MS4yLjExJTAjBgNVBAsMHFRlc3RpbmcgQ0Eg
I2VuYWpkTWxiWVdjWmpBSHEwIBcNMDAwMTAxMDAwMDAwWhgPMzAwMDAxMDEwMDAw
MDBaMEIxFzAVBgNVBAoMDnRydXN0bWUgdjEuMi4xMScwJQYDVQQLDB5UZXN0aW5n
IGNlcnQgI2ZaejA3aTdzT3ZtX3FlaFMwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNC
AAQOgDxUfr6CuafvXVpHqT4Z7JaG1JVv8ZRpYQDg6Oho0d++TpimI99gErF1fOVG
1Yx1VGqZGBdmC2UlIYnJCED3o4GhMIGeMB0GA1UdDgQWBBQjrzIYn539aa61PjaB
pieAUzGB7zAMBgNVHRMBAf8EAjAAMB8GA1UdIwQYMBaAFLJJScPY1UqdzskgrC3K
sCv05Jw4MBIGA1UdEQEB/wQIMAaHBH8AAAEwDgYDVR0PAQH/BAQDAgWgMCoGA1Ud
JQEB/wQgMB4GCCsGAQUFBwMCBggrBgEFBQcDAQYIKwYBBQUHAwMwCgYIKoZIzj0E
AwIDSQAwRgIhAPYZi/vLMcAaSwEwCrXy3fJsLTel2N4xiGiBf7/YCNWwAiEAyL/j
kePZBFxJaZ7C/ogoj6BIwQBAqTSHPM0T1zwVL60=
-----END CERTIFICATE-----
";

    /// The private key of [`SERVER_CERT`].
    pub const SERVER_KEY: &str = "\
-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIPU/W0ofYgL6EXR+rftvf/cNtirxFp64auvcrOn1rAN9oAoGCCqGSM49
AwEHoUQDQgAEDoA8VH6+grmn711aR6k+GeyWhtSVb/GUaWEA4OjoaNHfvk6YpiPf
YBKxdXzlRtWMdVRqmRgXZgtlJSGJyQhA9w==
-----END EC PRIVATE KEY-----
";
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusting(ca: &str) -> TlsClientOptions {
        TlsClientOptions {
            ca_pem: Some(ca.as_bytes().to_vec()),
            no_system_roots: true,
            ..Default::default()
        }
    }

    #[test]
    fn client_configs_are_built_once_per_options() {
        let first = client_config(&trusting(test_pem::CA)).unwrap();
        let again = client_config(&trusting(test_pem::CA)).unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        let by_name = TlsClientOptions {
            server_name: Some("localhost".into()),
            ..trusting(test_pem::CA)
        };
        assert!(Arc::ptr_eq(&first, &client_config(&by_name).unwrap()));
        let other = client_config(&trusting(test_pem::OTHER_CA)).unwrap();
        assert!(!Arc::ptr_eq(&first, &other));
    }

    #[test]
    fn the_cache_is_bounded_and_keeps_the_recently_used() {
        let kept = client_config(&trusting(test_pem::CA)).unwrap();
        for extra in 0..CACHED_CLIENT_CONFIGS * 2 {
            // Distinct options: the same CA followed by a different comment each time.
            let pem = format!("{}# {extra}\n", test_pem::OTHER_CA);
            client_config(&trusting(&pem)).unwrap();
            assert!(Arc::ptr_eq(
                &kept,
                &client_config(&trusting(test_pem::CA)).unwrap()
            ));
        }
        let cached = CLIENT_CONFIGS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len();
        assert!(cached <= CACHED_CLIENT_CONFIGS);
    }

    #[test]
    fn a_ca_without_a_certificate_is_a_clear_error() {
        let error = client_config(&trusting("not a certificate\n")).unwrap_err();
        assert!(
            matches!(&error, Error::Tls(m) if m.contains("no certificate in PEM")),
            "{error}"
        );
        let broken = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let error = client_config(&trusting(broken)).unwrap_err();
        assert!(
            matches!(&error, Error::Tls(m) if m.starts_with("CA certificate")),
            "{error}"
        );
    }

    #[test]
    fn without_roots_there_is_no_configuration() {
        let options = TlsClientOptions {
            no_system_roots: true,
            ..Default::default()
        };
        let error = client_config(&options).unwrap_err();
        assert!(matches!(&error, Error::Tls(m) if m.contains("no trusted root")));
    }

    #[test]
    fn a_rejected_certificate_is_told_apart_from_other_failures() {
        let invalid = |error: rustls::Error| {
            handshake_error(std::io::Error::new(std::io::ErrorKind::InvalidData, error))
        };
        let unknown = rustls::CertificateError::UnknownIssuer;
        assert!(matches!(
            invalid(rustls::Error::InvalidCertificate(unknown)),
            Error::UntrustedCertificate(_)
        ));
        let garbage = rustls::InvalidMessage::InvalidContentType;
        assert!(matches!(
            invalid(rustls::Error::InvalidMessage(garbage)),
            Error::Tls(_)
        ));
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(matches!(handshake_error(reset), Error::Tls(_)));
    }
}
