//! Masking of secrets found inside printable configuration values: the
//! password of a URL (userinfo and query parameters such as `password=`,
//! `sslpassword=`), and the librdkafka properties that hold a secret.
//!
//! Pure functions, no I/O: every place that prints a URL or a `bus.kafka`
//! property (configuration dump, banner, log lines, error messages) goes
//! through them. [`crate::secret::SecretUrl`] and
//! [`crate::secret::KafkaProperties`] call them in their `Display`, `Debug`
//! and `Serialize`.

use crate::secret::MASK;

/// Query parameters whose value is a secret (compared case-insensitively, after
/// percent-decoding the name). Any name containing one of
/// [`SECRET_NAME_PARTS`] is a secret as well.
pub const SECRET_QUERY_PARAMS: &[&str] = &[
    "password",
    "sslpassword",
    "pass",
    "passwd",
    "pwd",
    "secret",
    "token",
    "access_token",
    "auth",
    "authorization",
    "apikey",
    "api_key",
    "key",
    "sig",
    "signature",
];

/// Name fragments that make a query parameter secret.
pub const SECRET_NAME_PARTS: &[&str] =
    &["password", "passwd", "passphrase", "secret", "token", "credential", "apikey", "api_key"];

/// Name fragments that make a Kafka property secret (`token` is not one:
/// `sasl.oauthbearer.token.endpoint.url` is an address, masked as a URL).
pub const KAFKA_SECRET_NAME_PARTS: &[&str] = &["password", "passwd", "passphrase", "secret", "credential"];

/// The librdkafka properties flagged `_RK_SENSITIVE` in librdkafka 2.12
/// (`src/rdkafka_conf.c`; the ones CONFIGURATION.md describes as keys,
/// passwords, secrets and credentials). librdkafka itself redacts exactly
/// these in its own configuration dumps.
pub const KAFKA_SECRET_PROPERTIES: &[&str] = &[
    "ssl.key.location",
    "ssl.key.password",
    "ssl.key.pem",
    "ssl_key",
    "ssl.ca.pem",
    "ssl.keystore.password",
    "sasl.username",
    "sasl.password",
    "sasl.oauthbearer.config",
    "sasl.oauthbearer.client.secret",
    "sasl.oauthbearer.assertion.private.key.file",
    "sasl.oauthbearer.assertion.private.key.passphrase",
    "sasl.oauthbearer.assertion.private.key.pem",
];

fn has_part(name: &str, parts: &[&str]) -> bool {
    parts.iter().any(|p| name.contains(p))
}

/// Whether a URL query parameter of this name carries a secret.
pub fn is_secret_query_param(name: &str) -> bool {
    let name = percent_decode(name).to_ascii_lowercase();
    let name = name.trim();
    SECRET_QUERY_PARAMS.contains(&name) || has_part(name, SECRET_NAME_PARTS)
}

/// Whether a librdkafka property (a `bus.kafka` key) carries a secret: the
/// properties librdkafka marks sensitive ([`KAFKA_SECRET_PROPERTIES`]), and any
/// name containing `password`, `secret`, `passphrase`, `credential` (future
/// properties, Java-style names such as `ssl.truststore.password`), and any
/// `.pem` key material.
pub fn is_secret_kafka_property(key: &str) -> bool {
    let key = key.trim().to_ascii_lowercase();
    KAFKA_SECRET_PROPERTIES.contains(&key.as_str())
        || has_part(&key, KAFKA_SECRET_NAME_PARTS)
        || key.starts_with("sasl.oauthbearer.config")
        || key.starts_with("sasl.jaas")
        || (key.contains("key") && key.ends_with(".pem"))
}

/// The printable form of one `bus.kafka` property: the mask for a secret
/// property, a redacted URL for a value that is a URL (e.g. an OAuth token
/// endpoint with a query secret), else the value.
pub fn redact_kafka_property(key: &str, value: &str) -> String {
    if is_secret_kafka_property(key) {
        MASK.to_owned()
    } else if value.contains("://") {
        redact_url(value)
    } else {
        value.to_owned()
    }
}

/// `url` with every secret masked: the password of the userinfo
/// (`scheme://user:********@host`) and the value of every secret query
/// parameter (`?password=********`, see [`is_secret_query_param`]). Anything
/// else is kept, so the host, port, database and options stay readable.
///
/// Where the userinfo ends is ambiguous when a password holds an unencoded
/// `@`, `/` or `?`: the URL is read both ways, with the userinfo ending at the
/// last `@` before the first `?`, and at the first `@` anywhere (as
/// tokio-postgres reads it), and whatever either reading calls a secret is
/// masked. Masking too much is preferred to masking too little.
pub fn redact_url(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[start..];
    let query = rest.find('?').unwrap_or(rest.len());
    let mut ranges = Vec::new();
    let last_before_query = rest[..query].rfind('@');
    secret_ranges(url, start, last_before_query, &mut ranges);
    if last_before_query.is_none() && rest.contains('@') {
        secret_ranges(url, start, rest.find('@'), &mut ranges);
    }
    render(url, ranges)
}

/// The byte ranges of `url` that are secret when the userinfo ends at `at`
/// (an index into `url[start..]`): its password, and the values of secret
/// query parameters after the host.
fn secret_ranges(url: &str, start: usize, at: Option<usize>, out: &mut Vec<std::ops::Range<usize>>) {
    let rest = &url[start..];
    let after = match at {
        Some(at) => {
            if let Some(c) = rest[..at].find(':') {
                out.push(start + c + 1..start + at);
            }
            start + at + 1
        }
        None => start,
    };
    let tail = &url[after..];
    let Some(q) = tail.find('?') else { return };
    let qs = after + q + 1;
    let end = url[qs..].find('#').map_or(url.len(), |f| qs + f);
    let mut pos = qs;
    for pair in url[qs..end].split('&') {
        if let Some((k, _)) = pair.split_once('=')
            && is_secret_query_param(k)
        {
            out.push(pos + k.len() + 1..pos + pair.len());
        }
        pos += pair.len() + 1;
    }
}

/// `url` with each (merged) range replaced by the mask; an empty range (an
/// empty password) is shown as the mask too.
fn render(url: &str, mut ranges: Vec<std::ops::Range<usize>>) -> String {
    ranges.sort_by_key(|r| (r.start, r.end));
    let mut out = String::with_capacity(url.len());
    let mut pos = 0;
    let mut i = 0;
    while i < ranges.len() {
        let (s, mut e) = (ranges[i].start, ranges[i].end);
        i += 1;
        while i < ranges.len() && ranges[i].start <= e {
            e = e.max(ranges[i].end);
            i += 1;
        }
        if s < pos {
            continue;
        }
        out.push_str(&url[pos..s]);
        out.push_str(MASK);
        pos = e;
    }
    out.push_str(&url[pos..]);
    out
}

/// Percent-decodes a query parameter name (`pass%77ord` is `password`); bytes
/// that are not valid escapes are kept as they are.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
        } else if b[i] == b'+' {
            out.push(b' ');
            i += 1;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: &str = "Sup3rS3cret";

    #[test]
    fn url_shapes() {
        let cases: &[(&str, &str)] = &[
            ("postgres://u:Sup3rS3cret@h/db", "postgres://u:********@h/db"),
            ("postgres://h/db", "postgres://h/db"),
            ("postgres://u@h:5432/db", "postgres://u@h:5432/db"),
            ("postgres://u@h/db?password=Sup3rS3cret", "postgres://u@h/db?password=********"),
            (
                "postgresql://u@h/db?sslmode=require&password=Sup3rS3cret&application_name=vw",
                "postgresql://u@h/db?sslmode=require&password=********&application_name=vw",
            ),
            (
                "postgres://u@h/db?sslpassword=Sup3rS3cret&sslmode=verify-full",
                "postgres://u@h/db?sslpassword=********&sslmode=verify-full",
            ),
            ("postgres://u@h/db?PASSWORD=Sup3rS3cret", "postgres://u@h/db?PASSWORD=********"),
            ("postgres://u@h/db?pass%77ord=Sup3rS3cret", "postgres://u@h/db?pass%77ord=********"),
            ("postgres://u:Sup3rS3cret@h/db?password=Sup3rS3cret", "postgres://u:********@h/db?password=********"),
            ("postgres://u:Sup3r@S3cret@h/db", "postgres://u:********@h/db"),
            ("postgres://u:Sup3r/S3cret@h/db", "postgres://u:********@h/db"),
            ("postgres://u:Sup3r?S3cret@h/db", "postgres://u:********@h/db"),
            ("postgres://u:Sup3rS3cret@h1:5432,h2:5433/db", "postgres://u:********@h1:5432,h2:5433/db"),
            ("postgres://u:Sup3rS3cret@[::1]:5432/db", "postgres://u:********@[::1]:5432/db"),
            ("postgres://:Sup3rS3cret@h/db", "postgres://:********@h/db"),
            ("postgres://u:@h/db", "postgres://u:********@h/db"),
            ("mqtt://dev:Sup3rS3cret@broker:1883", "mqtt://dev:********@broker:1883"),
            ("https://hook.example/sms?token=Sup3rS3cret#frag", "https://hook.example/sms?token=********#frag"),
            ("https://idp.example/token?client_secret=Sup3rS3cret", "https://idp.example/token?client_secret=********"),
            ("https://h/x?a=1&&b", "https://h/x?a=1&&b"),
            ("sqlite:///tmp/data/vitalwatch.db", "sqlite:///tmp/data/vitalwatch.db"),
            ("sqlite://{data_dir}/vitalwatch.db", "sqlite://{data_dir}/vitalwatch.db"),
            ("u:Sup3rS3cret@h", "u:********@h"),
            ("postgres://h/db?password=Sup3r@S3cret", "postgres://h/db?password=********"),
            ("postgres://h/db?x=a@b", "postgres://h/db?x=a@b"),
            // Read by tokio-postgres as user `h`, password `5432/db?password=Sup3r`, host `S3cret`.
            ("postgres://h:5432/db?password=Sup3r@S3cret", "postgres://h:********"),
            (
                "postgres://u@h/db?password=Sup3rS3cret&password=Sup3rS3cret",
                "postgres://u@h/db?password=********&password=********",
            ),
            ("", ""),
        ];
        for (url, want) in cases {
            let got = redact_url(url);
            assert_eq!(&got, want, "redact_url({url:?})");
            assert!(!got.contains(S), "{got}");
        }
    }

    #[test]
    fn kafka_properties() {
        for k in [
            "ssl.key.pem",
            "ssl.key.password",
            "ssl.keystore.password",
            "sasl.password",
            "sasl.username",
            "sasl.oauthbearer.client.secret",
            "sasl.oauthbearer.config",
            "sasl.oauthbearer.assertion.private.key.passphrase",
            "SASL.PASSWORD",
            "ssl.truststore.password",
            "sasl.jaas.config",
        ] {
            assert!(is_secret_kafka_property(k), "{k}");
            assert_eq!(redact_kafka_property(k, S), MASK, "{k}");
        }
        for k in ["security.protocol", "sasl.mechanism", "ssl.ca.location", "fetch.wait.max.ms", "ssl.certificate.pem"]
        {
            assert!(!is_secret_kafka_property(k), "{k}");
        }
        assert_eq!(redact_kafka_property("sasl.mechanism", "SCRAM-SHA-512"), "SCRAM-SHA-512");
        assert_eq!(
            redact_kafka_property("sasl.oauthbearer.token.endpoint.url", "https://idp/t?client_secret=Sup3rS3cret"),
            "https://idp/t?client_secret=********"
        );
    }
}
