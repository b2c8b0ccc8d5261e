//! [`Secret`]: a configuration string that cannot be printed by accident.
//!
//! `Debug`, `Display` and `Serialize` all write `********`; the value is zeroized when dropped
//! (the `secrecy` crate). Code that needs the value calls [`Secret::expose`], which makes every
//! use of a secret visible in review (`grep expose`).
//!
//! Two configuration values are partly secret and stay readable when printed:
//! [`SecretUrl`] (a URL that may carry a password: printed with the password
//! masked, see [`crate::redact::redact_url`]) and [`KafkaProperties`] (the
//! `bus.kafka` librdkafka properties: secret ones printed masked).

use std::collections::BTreeMap;
use std::fmt;

use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a secret prints as.
pub const MASK: &str = "********";

/// A password, token or key. Never printed; read it with [`Secret::expose`].
#[derive(Clone, Default)]
pub struct Secret(SecretString);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(SecretString::from(value.into()))
    }

    /// The value, for the one place that needs it (a connection, a signature).
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.expose().is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret::new(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret::new(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl Serialize for Secret {
    /// Always the mask: a serialized configuration (`vitalwatch config`) never shows a secret.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(MASK)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

/// A URL that may carry credentials (`postgres://user:password@host/db?password=...`).
/// `Display`, `Debug` and `Serialize` print it with every secret masked
/// ([`crate::redact::redact_url`]); [`SecretUrl::expose`] gives the URL to connect with.
#[derive(Clone, Default)]
pub struct SecretUrl(Secret);

impl SecretUrl {
    /// Wraps a URL.
    pub fn new(url: impl Into<String>) -> Self {
        SecretUrl(Secret::new(url))
    }

    /// The whole URL, password included, for the one place that connects.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    /// The URL with its secrets masked (what `Display` prints).
    pub fn redacted(&self) -> String {
        crate::redact::redact_url(self.expose())
    }
}

impl From<String> for SecretUrl {
    fn from(value: String) -> Self {
        SecretUrl::new(value)
    }
}

impl From<&str> for SecretUrl {
    fn from(value: &str) -> Self {
        SecretUrl::new(value)
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for SecretUrl {
    /// The redacted URL.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.redacted())
    }
}

impl<'de> Deserialize<'de> for SecretUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(SecretUrl::new)
    }
}

/// Extra librdkafka properties (`bus.kafka`). `Debug` and `Serialize` mask the
/// values of secret properties ([`crate::redact::is_secret_kafka_property`]:
/// `ssl.key.pem`, `sasl.password`, ...) and the secrets of URL values; iterate
/// (`for (k, v) in &props`) to read the real values.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct KafkaProperties(BTreeMap<String, String>);

impl KafkaProperties {
    /// The properties, real values (for the Kafka client configuration).
    pub fn iter(&self) -> std::collections::btree_map::Iter<'_, String, String> {
        self.0.iter()
    }

    /// One property's real value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Whether the property is set.
    pub fn contains_key(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    /// Sets a property.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.0.insert(key.into(), value.into());
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The properties as printed: secrets masked.
    pub fn redacted(&self) -> BTreeMap<String, String> {
        self.0.iter().map(|(k, v)| (k.clone(), crate::redact::redact_kafka_property(k, v))).collect()
    }
}

impl<'a> IntoIterator for &'a KafkaProperties {
    type Item = (&'a String, &'a String);
    type IntoIter = std::collections::btree_map::Iter<'a, String, String>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl FromIterator<(String, String)> for KafkaProperties {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        KafkaProperties(iter.into_iter().collect())
    }
}

impl From<BTreeMap<String, String>> for KafkaProperties {
    fn from(map: BTreeMap<String, String>) -> Self {
        KafkaProperties(map)
    }
}

impl fmt::Debug for KafkaProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.redacted()).finish()
    }
}

impl Serialize for KafkaProperties {
    /// The properties with secrets masked.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.redacted().serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed() {
        let s = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{s}"), MASK);
        assert_eq!(format!("{s:?}"), MASK);
        assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{MASK}\""));
        assert_eq!(s.expose(), "hunter2-very-secret");
        let back: Secret = serde_json::from_str("\"abc\"").unwrap();
        assert_eq!(back.expose(), "abc");
    }

    #[test]
    fn urls_print_redacted_and_connect_whole() {
        let u = SecretUrl::new("postgres://u:pw1-secret@h/db?password=pw2-secret&sslmode=require");
        for printed in [format!("{u}"), format!("{u:?}"), serde_json::to_string(&u).unwrap()] {
            assert!(!printed.contains("pw1-secret") && !printed.contains("pw2-secret"), "{printed}");
            assert!(printed.contains("postgres://u:********@h/db?password=********&sslmode=require"), "{printed}");
        }
        assert_eq!(u.expose(), "postgres://u:pw1-secret@h/db?password=pw2-secret&sslmode=require");
        let back: SecretUrl = serde_json::from_str("\"sqlite:///x.db\"").unwrap();
        assert_eq!(back.expose(), "sqlite:///x.db");
    }

    #[test]
    fn kafka_secret_properties_print_masked() {
        let mut p = KafkaProperties::default();
        p.insert("sasl.password", "kpw-secret");
        p.insert("ssl.key.pem", "-----BEGIN PRIVATE KEY-----kpem-secret");
        p.insert("security.protocol", "SASL_SSL");
        for printed in [format!("{p:?}"), serde_json::to_string(&p).unwrap()] {
            assert!(!printed.contains("kpw-secret") && !printed.contains("kpem-secret"), "{printed}");
            assert!(printed.contains("SASL_SSL"), "{printed}");
        }
        assert_eq!(p.get("sasl.password"), Some("kpw-secret"));
        assert_eq!((&p).into_iter().count(), 3);
        let back: KafkaProperties = serde_json::from_str(r#"{"sasl.password":"x"}"#).unwrap();
        assert_eq!(back.get("sasl.password"), Some("x"));
    }
}
