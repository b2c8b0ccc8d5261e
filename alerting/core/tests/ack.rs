//! Signed acknowledgment tokens, SMS codes and reply parsing.

use crate::common;

use chrono::Duration;
use common::*;
use vitalwatch_alerting_core::*;
use vitalwatch_schemas::proto::AlertEventKind;

fn notification() -> Notification {
    let t0 = t("2026-01-14T12:00:00Z");
    let (ep, _) = EpisodeState::from_event(&event("e1", AlertEventKind::Opened, Severity::High, t0), t0).unwrap();
    let dir = directory(vec![physician("dr-martin", None), physician("dr-chen", None)]);
    plan_now(&ep, &team(), &dir, t0).notifications[0].clone()
}

#[test]
fn token_valid_tampered_expired() {
    let signer = AckSigner::new(SECRET).unwrap();
    let n = notification();
    let now = t("2026-01-14T12:00:00Z");
    let (token, claims) = signer.issue(&n, now + Duration::hours(72));
    assert_eq!(claims.nonce, n.key.digest_hex());
    assert_eq!(claims.nonce.len(), 32);
    // The link names the severity it was sent for (issue #13, defect 2).
    assert_eq!(claims.severity, n.severity);

    // Valid.
    let got = signer.verify(&token, now + Duration::hours(1)).unwrap();
    assert_eq!(got, claims);
    assert_eq!(got.episode_id.as_str(), "ep-1");
    assert_eq!(got.recipient.as_str(), "dr-martin");

    // Tampered payload: another recipient, same signature.
    let (body, sig) = token.rsplit_once('.').unwrap();
    let mut forged = claims.clone();
    forged.recipient = pid("dr-evil");
    let forged_token = AckSigner::new(b"another-secret-that-is-32-bytes-long!!").unwrap().sign(&forged);
    let forged_body = forged_token.rsplit_once('.').unwrap().0;
    assert_eq!(signer.verify(&format!("{forged_body}.{sig}"), now), Err(AckError::BadSignature));
    assert_eq!(signer.verify(&forged_token, now), Err(AckError::BadSignature));
    // Tampered signature.
    let mut bad_sig = sig.to_string();
    let c = if bad_sig.ends_with('A') { 'B' } else { 'A' };
    bad_sig.pop();
    bad_sig.push(c);
    assert_eq!(signer.verify(&format!("{body}.{bad_sig}"), now), Err(AckError::BadSignature));
    // Garbage.
    assert!(matches!(signer.verify("hello", now), Err(AckError::Malformed(_))));
    assert!(matches!(signer.verify(&"v1.".repeat(1000), now), Err(AckError::Malformed(_))));

    // Expired.
    let err = signer.verify(&token, now + Duration::hours(72)).unwrap_err();
    assert!(matches!(err, AckError::Expired(_)));
    assert!(err.to_string().contains("expired"));

    // Key rotation: old tokens still verify with the previous key.
    let rotated = AckSigner::new(b"a-brand-new-secret-of-32-bytes-or-more").unwrap().with_previous(SECRET).unwrap();
    assert!(rotated.verify(&token, now).is_ok());

    assert_eq!(AckSigner::new(b"short").unwrap_err(), AckError::WeakSecret(5));
    assert_eq!(AckSigner::link("https://vw.example/ack", "tok"), "https://vw.example/ack?t=tok");
}

#[test]
fn codes_are_deterministic_and_unique_per_physician() {
    let g = AckCodeGenerator::new(SECRET, 6).unwrap();
    let ep = EpisodeId::new("ep-1").unwrap();
    let a = g.candidate(&ep, &pid("dr-martin"), 0);
    assert_eq!(a, g.candidate(&ep, &pid("dr-martin"), 0));
    assert_eq!(a.as_str().len(), 6);
    assert!(a.as_str().bytes().all(|b| b.is_ascii_digit()));
    // The first candidate taken by another open episode: the next free one.
    let taken = a.clone();
    let b = g.assign(&ep, &pid("dr-martin"), |c| *c == taken).unwrap();
    assert_ne!(a, b);
    assert_eq!(b, g.candidate(&ep, &pid("dr-martin"), 1));
    assert_eq!(g.assign(&ep, &pid("dr-martin"), |_| true), Err(AckError::CodesExhausted(64)));
    assert_eq!(AckCodeGenerator::new(SECRET, 3).unwrap_err(), AckError::CodeLength(3));
    // Four or five digits could be guessed within the inbound limits (issue #13).
    assert_eq!(AckCodeGenerator::new(SECRET, 5).unwrap_err(), AckError::CodeLength(5));
    assert_eq!(AckCodeGenerator::new(SECRET, 10).unwrap().candidate(&ep, &pid("dr-martin"), 0).as_str().len(), 10);
}

#[test]
fn parses_sms_replies() {
    let ack = |s: &str| {
        parse_sms_reply(s).map(|c| match c {
            SmsCommand::Ack { code } => code.to_string(),
            SmsCommand::Snooze { .. } => "snooze".into(),
        })
    };
    assert_eq!(ack("ACK 4821").unwrap(), "4821");
    assert_eq!(ack("ack 4821").unwrap(), "4821");
    assert_eq!(ack("  Ack: 4821. ").unwrap(), "4821");
    assert_eq!(ack("ACK4821").unwrap(), "4821");
    assert_eq!(
        parse_sms_reply("snooze 4821 30").unwrap(),
        SmsCommand::Snooze { code: serde_json::from_str("\"4821\"").unwrap(), minutes: 30 }
    );
    for bad in
        ["", "hello", "ACK", "ACK 12", "ACK abcd", "ACK 4821 please", "SNOOZE 4821", "SNOOZE 4821 0", "NACK 4821"]
    {
        assert_eq!(parse_sms_reply(bad), Err(AckError::UnrecognizedReply), "{bad:?}");
    }
}
