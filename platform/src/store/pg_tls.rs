//! TLS to PostgreSQL with libpq's `sslmode` semantics, on rustls (ring
//! crypto provider: no system OpenSSL).
//!
//! The settings are libpq's URL query parameters, so a URL that works with
//! `psql` works here: `sslmode`, `sslrootcert` (CA file, PEM), `sslcert` and
//! `sslkey` (client certificate and key, PEM). tokio-postgres understands
//! only `disable`, `prefer` and `require`, so [`split_url`] takes them out of
//! the URL before tokio-postgres parses it.
//!
//! | `sslmode`     | encrypted                  | server certificate checked      |
//! |---------------|----------------------------|---------------------------------|
//! | `disable`     | never                      | -                               |
//! | `prefer`      | if the server offers it    | no                              |
//! | `require`     | always (else no connection)| no; chain only if `sslrootcert` |
//! | `verify-ca`   | always                     | chain to `sslrootcert`          |
//! | `verify-full` | always                     | chain and host name             |
//!
//! `prefer` and `require` without a CA stop a passive eavesdropper only: an
//! attacker in the middle can present any certificate. Production uses
//! `verify-full`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// Plaintext only.
    Disable,
    /// TLS if the server offers it, without checking its certificate; else
    /// plaintext (libpq's default).
    #[default]
    Prefer,
    /// TLS or no connection; the certificate is checked against
    /// `sslrootcert` when one is given (as libpq), else not at all.
    Require,
    /// TLS; the certificate chain must lead to `sslrootcert`.
    VerifyCa,
    /// TLS; chain to `sslrootcert` and the certificate names the host.
    VerifyFull,
}

impl SslMode {
    /// Parses libpq's spelling (`disable`, `prefer`, `require`, `verify-ca`, `verify-full`).
    pub fn parse(s: &str) -> Option<SslMode> {
        Some(match s {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    /// libpq's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// True when the server's certificate is checked against a CA (never for
    /// `disable` and `prefer`; for `require` only with a CA file).
    pub fn verifies(self, has_root_cert: bool) -> bool {
        match self {
            SslMode::Disable | SslMode::Prefer => false,
            SslMode::Require => has_root_cert,
            SslMode::VerifyCa | SslMode::VerifyFull => true,
        }
    }
}

/// The TLS parameters of a PostgreSQL URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PgTls {
    /// `sslmode` (default `prefer`, as libpq).
    pub mode: SslMode,
    /// `sslrootcert`: CA certificates (PEM) the server's chain must lead to.
    pub root_cert: Option<PathBuf>,
    /// `sslcert`: client certificate chain (PEM), with `sslkey`.
    pub client_cert: Option<PathBuf>,
    /// `sslkey`: the client certificate's private key (PEM).
    pub client_key: Option<PathBuf>,
}

/// A TLS setting that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum PgTlsError {
    /// A parameter has a value libpq would refuse, or parameters contradict.
    #[error("{0}")]
    Invalid(String),
    /// A certificate or key file cannot be read or holds no usable PEM item.
    #[error("{what} {path}: {reason}")]
    File {
        /// Which file (`sslrootcert`, `sslcert`, `sslkey`).
        what: &'static str,
        /// Its path.
        path: String,
        /// Why it is unusable.
        reason: String,
    },
}

/// The TLS parameter names taken out of a URL.
pub const TLS_PARAMS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

/// Splits a `postgres://` URL into the URL without its TLS parameters (what
/// tokio-postgres parses) and those parameters. Other query parameters stay.
///
/// # Errors
///
/// [`PgTlsError::Invalid`] for an unknown `sslmode`, `verify-ca` or
/// `verify-full` without `sslrootcert`, or `sslcert` without `sslkey` (or the
/// reverse).
pub fn split_url(url: &str) -> Result<(String, PgTls), PgTlsError> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, q),
        None => (url, ""),
    };
    let mut tls = PgTls::default();
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(v);
        match k {
            "sslmode" => tls.mode = SslMode::parse(&value).ok_or_else(|| {
                PgTlsError::Invalid(format!(
                    "invalid sslmode {value:?} in the database URL (disable, prefer, require, verify-ca or verify-full)"
                ))
            })?,
            "sslrootcert" => tls.root_cert = (!value.is_empty()).then(|| PathBuf::from(&value)),
            "sslcert" => tls.client_cert = (!value.is_empty()).then(|| PathBuf::from(&value)),
            "sslkey" => tls.client_key = (!value.is_empty()).then(|| PathBuf::from(&value)),
            _ => kept.push(pair),
        }
    }
    tls.check()?;
    let url = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
    Ok((url, tls))
}

impl PgTls {
    /// Checks that the parameters can work together.
    ///
    /// # Errors
    ///
    /// See [`split_url`].
    pub fn check(&self) -> Result<(), PgTlsError> {
        if matches!(self.mode, SslMode::VerifyCa | SslMode::VerifyFull) && self.root_cert.is_none() {
            return Err(PgTlsError::Invalid(format!(
                "sslmode={} needs a CA file: set sslrootcert in the database URL or database.sslrootcert",
                self.mode.as_str()
            )));
        }
        if self.client_cert.is_some() != self.client_key.is_some() {
            return Err(PgTlsError::Invalid("sslcert and sslkey go together: set both or neither".into()));
        }
        Ok(())
    }

    /// The tokio-postgres mode: every mode that must encrypt is `Require`.
    pub fn postgres_mode(&self) -> tokio_postgres::config::SslMode {
        match self.mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => tokio_postgres::config::SslMode::Require,
        }
    }

    /// The rustls connector of these settings (certificate files are read
    /// now: a renewed certificate is picked up by the next connection).
    ///
    /// # Errors
    ///
    /// [`PgTlsError::File`] for a CA, certificate or key file that cannot be
    /// read or parsed.
    pub fn connector(&self) -> Result<tokio_postgres_rustls::MakeRustlsConnect, PgTlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| PgTlsError::Invalid(format!("TLS protocol versions: {e}")))?;
        let verifier: Arc<dyn ServerCertVerifier> = match (&self.root_cert, self.mode) {
            (Some(path), SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull) => {
                let roots = load_roots(path)?;
                let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| PgTlsError::File {
                        what: "sslrootcert",
                        path: path.display().to_string(),
                        reason: e.to_string(),
                    })?;
                if self.mode == SslMode::VerifyFull { webpki } else { Arc::new(ChainOnly(webpki)) }
            }
            _ => Arc::new(NoVerification(provider)),
        };
        let builder = builder.dangerous().with_custom_certificate_verifier(verifier);
        let config = match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => {
                let chain = load_certs("sslcert", cert)?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| PgTlsError::File {
                    what: "sslkey",
                    path: key.display().to_string(),
                    reason: e.to_string(),
                })?;
                builder.with_client_auth_cert(chain, key).map_err(|e| PgTlsError::File {
                    what: "sslcert",
                    path: cert.display().to_string(),
                    reason: e.to_string(),
                })?
            }
            _ => builder.with_no_client_auth(),
        };
        Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
    }
}

fn load_certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, PgTlsError> {
    let file_err = |reason: String| PgTlsError::File { what, path: path.display().to_string(), reason };
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| file_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(file_err("no PEM certificate in it".into()));
    }
    Ok(certs)
}

fn load_roots(path: &Path) -> Result<RootCertStore, PgTlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs("sslrootcert", path)? {
        roots.add(cert).map_err(|e| PgTlsError::File {
            what: "sslrootcert",
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
    }
    Ok(roots)
}

/// `%XX` decoding of a URL query value (paths may be percent-encoded).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `verify-ca` (and `require` with a CA): the chain must lead to a trusted
/// CA, the host name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // rustls checks the chain first, the name last: a name error means
        // the chain was valid.
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer` and `require` without a CA: encryption without authentication
/// of the server (the handshake signatures are still checked).
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_tls_parameters_out_of_the_url() {
        let (url, tls) = split_url(
            "postgres://u:p@db.example:5432/vw?application_name=x&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&connect_timeout=3",
        )
        .unwrap();
        assert_eq!(url, "postgres://u:p@db.example:5432/vw?application_name=x&connect_timeout=3");
        assert_eq!(tls.mode, SslMode::VerifyFull);
        assert_eq!(tls.root_cert, Some(PathBuf::from("/etc/ca.pem")));
        let (url, tls) = split_url("postgres://h/db").unwrap();
        assert_eq!((url.as_str(), tls.mode), ("postgres://h/db", SslMode::Prefer));
        let (url, _) = split_url("postgres://h/db?sslmode=disable").unwrap();
        assert_eq!(url, "postgres://h/db");
    }

    #[test]
    fn refuses_what_cannot_work() {
        let e = split_url("postgres://h/db?sslmode=verify_full").unwrap_err().to_string();
        assert!(e.contains("invalid sslmode \"verify_full\""), "{e}");
        let e = split_url("postgres://h/db?sslmode=verify-full").unwrap_err().to_string();
        assert!(e.contains("sslmode=verify-full needs a CA file"), "{e}");
        let e = split_url("postgres://h/db?sslmode=require&sslcert=/c.pem").unwrap_err().to_string();
        assert!(e.contains("sslcert and sslkey go together"), "{e}");
    }

    #[test]
    fn which_modes_verify() {
        assert!(!SslMode::Prefer.verifies(true));
        assert!(!SslMode::Require.verifies(false));
        assert!(SslMode::Require.verifies(true));
        assert!(SslMode::VerifyCa.verifies(true));
        assert_eq!(SslMode::parse("verify-ca").map(SslMode::as_str), Some("verify-ca"));
    }

    #[test]
    fn a_missing_ca_file_is_named() {
        let tls =
            PgTls { mode: SslMode::VerifyFull, root_cert: Some("/nonexistent/ca.pem".into()), ..PgTls::default() };
        let e = tls.connector().err().expect("no CA file").to_string();
        assert!(e.starts_with("sslrootcert /nonexistent/ca.pem:"), "{e}");
    }
}
