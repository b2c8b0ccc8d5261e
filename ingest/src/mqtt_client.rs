//! MQTT connection options from the `mqtt` settings: the broker URL (`mqtt://` plain,
//! `mqtts://` TLS), the CA that signs the broker's certificate, an optional client certificate
//! (mutual TLS) and the username/password. An `mqtts://` connection never falls back to plain
//! MQTT: a broker whose certificate does not verify is an error, retried like any connection
//! error.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rumqttc::{MqttOptions, TlsConfiguration, Transport};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use vitalwatch_platform::config::MqttSettings;

/// Why the MQTT connection options could not be built.
#[derive(Debug, thiserror::Error)]
pub enum MqttConfigError {
    /// The URL is not `mqtt://host[:port]` or `mqtts://host[:port]`.
    #[error("mqtt.url {0:?} must be mqtt://host[:port] or mqtts://host[:port]")]
    Url(String),
    /// A file could not be read.
    #[error("{key} {path}: {error}")]
    File {
        /// Configuration key.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What went wrong.
        error: String,
    },
    /// A file holds no usable PEM item.
    #[error("{key} {path}: no {what} in it (PEM expected)")]
    Empty {
        /// Configuration key.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What was expected.
        what: &'static str,
    },
    /// The system trust store has no certificate (and no `mqtt.ca_file` was given).
    #[error("mqtts:// without mqtt.ca_file needs the system's CA certificates, and none were found")]
    NoSystemRoots,
    /// rustls refused the settings (e.g. a key that does not match the certificate).
    #[error("mqtt TLS settings: {0}")]
    Tls(String),
}

/// A parsed broker URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// `mqtts://`.
    pub tls: bool,
    /// Host name or IP address (also the name the broker's certificate must carry).
    pub host: String,
    /// Port (default 1883, or 8883 with TLS).
    pub port: u16,
}

impl BrokerUrl {
    /// Parses `mqtt://host[:port]`, `mqtts://host[:port]` (`tcp://` and `embedded://` are plain).
    pub fn parse(url: &str) -> Result<BrokerUrl, MqttConfigError> {
        let bad = || MqttConfigError::Url(url.to_owned());
        let (tls, rest) = if let Some(r) = url.strip_prefix("mqtts://") {
            (true, r)
        } else if let Some(r) = url
            .strip_prefix("mqtt://")
            .or_else(|| url.strip_prefix("tcp://"))
            .or_else(|| url.strip_prefix("embedded://"))
        {
            (false, r)
        } else {
            return Err(bad());
        };
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() || rest.contains('/') || rest.contains('@') {
            return Err(bad());
        }
        let default_port = if tls { 8883 } else { 1883 };
        let (host, port) = match rest.rsplit_once(':') {
            // An IPv6 literal without a port ("[::1]") has colons inside brackets.
            Some((h, p)) if !p.contains(']') => (h, p.parse().map_err(|_| bad())?),
            _ => (rest, default_port),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad());
        }
        Ok(BrokerUrl { tls, host: host.to_owned(), port })
    }
}

/// Client options for `client_id` from the settings: address, TLS, credentials. Nothing else
/// (keep-alive, session, in-flight) is set.
pub fn options(settings: &MqttSettings, client_id: &str) -> Result<MqttOptions, MqttConfigError> {
    let url = BrokerUrl::parse(&settings.url)?;
    let mut opts = MqttOptions::new(client_id, url.host.clone(), url.port);
    if url.tls {
        opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(Arc::new(tls_config(settings)?))));
    }
    if let Some(user) = &settings.username {
        let password = settings.password.as_ref().map(|p| p.expose().to_owned()).unwrap_or_default();
        opts.set_credentials(user.clone(), password);
    }
    Ok(opts)
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, MqttConfigError> {
    std::fs::read(path).map_err(|e| MqttConfigError::File { key, path: path.to_owned(), error: e.to_string() })
}

fn certificates(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, MqttConfigError> {
    let pem = read(key, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| MqttConfigError::File { key, path: path.to_owned(), error: e.to_string() })?;
    if certs.is_empty() {
        return Err(MqttConfigError::Empty { key, path: path.to_owned(), what: "certificate" });
    }
    Ok(certs)
}

/// The rustls client configuration (ring provider, TLS 1.2 and 1.3, certificates verified against
/// `mqtt.ca_file`, or the system's CA certificates when it is not set).
pub fn tls_config(settings: &MqttSettings) -> Result<rustls::ClientConfig, MqttConfigError> {
    let mut roots = rustls::RootCertStore::empty();
    match &settings.ca_file {
        Some(path) => {
            for cert in certificates("mqtt.ca_file", path)? {
                roots.add(cert).map_err(|e| MqttConfigError::File {
                    key: "mqtt.ca_file",
                    path: path.clone(),
                    error: e.to_string(),
                })?;
            }
        }
        None => {
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            if roots.is_empty() {
                return Err(MqttConfigError::NoSystemRoots);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| MqttConfigError::Tls(e.to_string()))?
        .with_root_certificates(roots);
    match (&settings.client_cert_file, &settings.client_key_file) {
        (Some(cert), Some(key)) => {
            let chain = certificates("mqtt.client_cert_file", cert)?;
            let pem = read("mqtt.client_key_file", key)?;
            let key_der = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| MqttConfigError::File {
                key: "mqtt.client_key_file",
                path: key.clone(),
                error: e.to_string(),
            })?;
            builder.with_client_auth_cert(chain, key_der).map_err(|e| MqttConfigError::Tls(e.to_string()))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let u = BrokerUrl::parse("mqtts://broker.example:8884").unwrap();
        assert_eq!(u, BrokerUrl { tls: true, host: "broker.example".into(), port: 8884 });
        assert_eq!(BrokerUrl::parse("mqtts://broker.example").unwrap().port, 8883);
        let u = BrokerUrl::parse("mqtt://127.0.0.1:1884/").unwrap();
        assert_eq!((u.tls, u.host.as_str(), u.port), (false, "127.0.0.1", 1884));
        assert_eq!(BrokerUrl::parse("mqtt://h").unwrap().port, 1883);
        assert!(!BrokerUrl::parse("embedded://127.0.0.1:1883").unwrap().tls);
        assert_eq!(BrokerUrl::parse("mqtts://[::1]:8883").unwrap().host, "::1");
        for bad in ["http://h:1", "mqtts://", "mqtt://h:port", "mqtts://u:p@h:1", "mqtt://h:1/x", "h:1883"] {
            assert!(BrokerUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tls_errors_name_the_key() {
        let mut s = MqttSettings { url: "mqtts://localhost".into(), ..Default::default() };
        s.ca_file = Some("/nonexistent/ca.pem".into());
        let e = options(&s, "c").unwrap_err().to_string();
        assert!(e.contains("mqtt.ca_file") && e.contains("/nonexistent/ca.pem"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate").unwrap();
        s.ca_file = Some(empty);
        let e = options(&s, "c").unwrap_err().to_string();
        assert!(e.contains("no certificate"), "{e}");
    }
}
