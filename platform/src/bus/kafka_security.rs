//! Kafka transport security: TLS and SASL settings to librdkafka properties,
//! checked before any client is created.
//!
//! The typed keys (`bus.security_protocol`, `bus.ssl_ca_location`,
//! `bus.sasl_mechanism`, ...) exist because the environment cannot carry the
//! dotted librdkafka names; the same properties may be given in `bus.kafka`
//! instead, but not both. Rules checked here:
//! - the protocol is one of librdkafka's four;
//! - TLS file settings need a TLS protocol (they would be ignored silently);
//! - SASL settings need a SASL protocol, and SCRAM/PLAIN need a user and a
//!   password; PLAIN sends the password itself, so only over `sasl_ssl`;
//! - a client certificate comes with its key.
//!
//! Whether this binary can do TLS at all: [`tls_available`] (librdkafka built
//! with OpenSSL, cargo feature `kafka-tls`); without it, asking for TLS is an
//! error at start, never a plaintext connection.

use crate::config::BusSettings;

/// A security setting that cannot work, naming the key.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KafkaSecurityError(String);

/// The protocols librdkafka knows.
const PROTOCOLS: [&str; 4] = ["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"];

/// The SASL mechanisms librdkafka can use without Kerberos.
const MECHANISMS: [&str; 4] = ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN", "OAUTHBEARER"];

/// True when librdkafka was built with OpenSSL (TLS, and SCRAM's hashing).
pub fn tls_available() -> bool {
    builtin_features().split(',').any(|f| f == "ssl")
}

/// librdkafka's `builtin.features` (e.g. `gzip,snappy,ssl,sasl,...`).
pub fn builtin_features() -> String {
    rdkafka::ClientConfig::new().create_native_config().and_then(|c| c.get("builtin.features")).unwrap_or_default()
}

/// The librdkafka properties of the typed keys, after checking them together
/// with `bus.kafka`. The caller sets them, then `bus.kafka`.
///
/// # Errors
///
/// [`KafkaSecurityError`] naming the key when the settings cannot work.
pub fn properties(s: &BusSettings) -> Result<Vec<(&'static str, String)>, KafkaSecurityError> {
    let bad = |m: String| Err(KafkaSecurityError(m));
    let path = |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| p.display().to_string());
    let typed: [(&'static str, &'static str, Option<String>); 7] = [
        ("security_protocol", "security.protocol", s.security_protocol.clone()),
        ("ssl_ca_location", "ssl.ca.location", path(&s.ssl_ca_location)),
        ("ssl_certificate_location", "ssl.certificate.location", path(&s.ssl_certificate_location)),
        ("ssl_key_location", "ssl.key.location", path(&s.ssl_key_location)),
        ("sasl_mechanism", "sasl.mechanism", s.sasl_mechanism.clone()),
        ("sasl_username", "sasl.username", s.sasl_username.clone()),
        ("sasl_password", "sasl.password", s.sasl_password.as_ref().map(|p| p.expose().to_owned())),
    ];
    let mut out = Vec::new();
    for (key, prop, value) in typed {
        let Some(value) = value.filter(|v| !v.is_empty()) else { continue };
        if s.kafka.contains_key(prop) {
            return bad(format!("bus.{key} and bus.kafka.\"{prop}\" both set: keep one"));
        }
        out.push((prop, value));
    }
    // The effective values: typed keys, else `bus.kafka`.
    let get = |prop: &str| -> Option<String> {
        out.iter().find(|(p, _)| *p == prop).map(|(_, v)| v.clone()).or_else(|| s.kafka.get(prop).map(str::to_owned))
    };
    let protocol = get("security.protocol").unwrap_or_else(|| "plaintext".into()).to_ascii_lowercase();
    if !PROTOCOLS.contains(&protocol.as_str()) {
        return bad(format!("bus.security_protocol {protocol:?} is not one of {}", PROTOCOLS.join(", ")));
    }
    let tls = protocol == "ssl" || protocol == "sasl_ssl";
    let sasl = protocol.starts_with("sasl_");
    for (key, prop) in [
        ("ssl_ca_location", "ssl.ca.location"),
        ("ssl_certificate_location", "ssl.certificate.location"),
        ("ssl_key_location", "ssl.key.location"),
        ("ssl_ca_location", "ssl.ca.pem"),
        ("ssl_certificate_location", "ssl.certificate.pem"),
        ("ssl_key_location", "ssl.key.pem"),
    ] {
        if !tls && get(prop).is_some() {
            return bad(format!(
                "bus.{key} ({prop}) has no effect with bus.security_protocol = {protocol:?}: use ssl or sasl_ssl"
            ));
        }
    }
    let cert = get("ssl.certificate.location").or_else(|| get("ssl.certificate.pem")).is_some();
    let key = get("ssl.key.location").or_else(|| get("ssl.key.pem")).is_some();
    if cert != key {
        return bad("a client certificate (bus.ssl_certificate_location or bus.kafka.\"ssl.certificate.pem\") and its key (bus.ssl_key_location or bus.kafka.\"ssl.key.pem\") go together: set both or neither".into());
    }
    let mechanism = get("sasl.mechanism").or_else(|| get("sasl.mechanisms"));
    if !sasl {
        if let Some(k) = ["sasl.mechanism", "sasl.mechanisms", "sasl.username", "sasl.password"]
            .into_iter()
            .find(|p| get(p).is_some())
        {
            return bad(format!(
                "{k} is set but bus.security_protocol = {protocol:?}: use sasl_ssl (or sasl_plaintext)"
            ));
        }
        return Ok(out);
    }
    let mechanism = mechanism.unwrap_or_else(|| "GSSAPI".into());
    if !MECHANISMS.contains(&mechanism.as_str()) {
        return bad(format!(
            "bus.sasl_mechanism {mechanism:?} is not supported (GSSAPI/Kerberos is not built in): use one of {}",
            MECHANISMS.join(", ")
        ));
    }
    if mechanism == "PLAIN" && !tls {
        return bad(
            "bus.sasl_mechanism PLAIN over sasl_plaintext would send the password in clear: use sasl_ssl".into()
        );
    }
    if mechanism != "OAUTHBEARER" && (get("sasl.username").is_none() || get("sasl.password").is_none()) {
        return bad(format!("bus.sasl_mechanism {mechanism} needs bus.sasl_username and bus.sasl_password"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> BusSettings {
        BusSettings::default()
    }

    #[test]
    fn typed_keys_become_properties() {
        let mut s = settings();
        s.security_protocol = Some("sasl_ssl".into());
        s.ssl_ca_location = Some("/etc/kafka/ca.pem".into());
        s.sasl_mechanism = Some("SCRAM-SHA-512".into());
        s.sasl_username = Some("vitalwatch".into());
        s.sasl_password = Some("pw".into());
        let p = properties(&s).unwrap();
        assert!(p.contains(&("security.protocol", "sasl_ssl".into())), "{p:?}");
        assert!(p.contains(&("ssl.ca.location", "/etc/kafka/ca.pem".into())), "{p:?}");
        assert!(p.contains(&("sasl.password", "pw".into())), "{p:?}");
        assert!(properties(&settings()).unwrap().is_empty());
    }

    #[test]
    fn settings_that_cannot_work_are_refused_by_name() {
        let err = |s: &BusSettings| properties(s).unwrap_err().to_string();
        let mut s = settings();
        s.security_protocol = Some("tls".into());
        assert!(err(&s).contains("bus.security_protocol \"tls\" is not one of"), "{}", err(&s));
        let mut s = settings();
        s.ssl_ca_location = Some("/ca.pem".into());
        assert!(err(&s).contains("bus.ssl_ca_location (ssl.ca.location) has no effect"), "{}", err(&s));
        let mut s = settings();
        s.security_protocol = Some("ssl".into());
        s.kafka.insert("security.protocol", "ssl");
        assert!(err(&s).contains("both set"), "{}", err(&s));
        let mut s = settings();
        s.security_protocol = Some("sasl_plaintext".into());
        s.sasl_mechanism = Some("PLAIN".into());
        assert!(err(&s).contains("in clear"), "{}", err(&s));
        s.security_protocol = Some("sasl_ssl".into());
        s.sasl_mechanism = Some("SCRAM-SHA-256".into());
        assert!(err(&s).contains("needs bus.sasl_username and bus.sasl_password"), "{}", err(&s));
        s.sasl_mechanism = Some("GSSAPI".into());
        assert!(err(&s).contains("not built in"), "{}", err(&s));
        let mut s = settings();
        s.sasl_username = Some("u".into());
        assert!(err(&s).contains("sasl.username is set but bus.security_protocol = \"plaintext\""), "{}", err(&s));
        let mut s = settings();
        s.security_protocol = Some("ssl".into());
        s.ssl_certificate_location = Some("/c.pem".into());
        assert!(err(&s).contains("go together"), "{}", err(&s));
    }
}
