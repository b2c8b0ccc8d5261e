//! Verification of Twilio's `X-Twilio-Signature` on inbound webhooks:
//! base64(HMAC-SHA1(auth token, URL + every POST parameter name and value,
//! sorted by name)).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

/// The string Twilio signs: the full URL followed by each parameter's name
/// and value, sorted by name.
pub fn signed_payload(url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut s = url.to_string();
    for (k, v) in sorted {
        s.push_str(k);
        s.push_str(v);
    }
    s
}

/// The signature Twilio would send.
pub fn sign(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut m = <Hmac<Sha1> as KeyInit>::new_from_slice(auth_token.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    m.update(signed_payload(url, params).as_bytes());
    B64.encode(m.finalize().into_bytes())
}

/// Whether `signature` is valid (constant-time comparison).
pub fn verify(auth_token: &str, url: &str, params: &[(String, String)], signature: &str) -> bool {
    let Ok(sig) = B64.decode(signature.trim()) else {
        return false;
    };
    let mut m = <Hmac<Sha1> as KeyInit>::new_from_slice(auth_token.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    m.update(signed_payload(url, params).as_bytes());
    m.verify_slice(&sig).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha1_matches_rfc_2202() {
        // RFC 2202 test case 2: key "Jefe", data "what do ya want for nothing?".
        let mut m = <Hmac<Sha1> as KeyInit>::new_from_slice(b"Jefe").unwrap();
        m.update(b"what do ya want for nothing?");
        let hex: String = m.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
    }

    #[test]
    fn signs_sorted_parameters_and_verifies() {
        let params = vec![
            ("To".to_string(), "+18005551212".to_string()),
            ("Body".to_string(), "ACK 4821".to_string()),
            ("From".to_string(), "+33612345678".to_string()),
        ];
        assert_eq!(
            signed_payload("https://x.example/sms/inbound", &params),
            "https://x.example/sms/inboundBodyACK 4821From+33612345678To+18005551212"
        );
        let sig = sign("token", "https://x.example/sms/inbound", &params);
        assert!(verify("token", "https://x.example/sms/inbound", &params, &sig));
        assert!(!verify("other", "https://x.example/sms/inbound", &params, &sig));
        assert!(!verify("token", "https://x.example/sms/inbound", &params, "not base64!"));
    }
}
