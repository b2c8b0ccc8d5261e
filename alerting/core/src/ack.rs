//! Acknowledgment: signed, expiring link tokens (HMAC-SHA256), short numeric
//! codes for SMS replies, and the parser for those replies.
//!
//! Single use is enforced by the store: every token carries the nonce of the
//! notification it was issued for ([`NotificationKey::digest_hex`]); record
//! used nonces and refuse a second use.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::episode::EpisodeId;
use crate::notification::Notification;
use crate::severity::Severity;
use crate::team::PhysicianId;

type HmacSha256 = Hmac<Sha256>;

/// Shortest secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 32;
/// Longest token accepted by [`AckSigner::verify`].
pub const MAX_TOKEN_LEN: usize = 2048;
const TOKEN_PREFIX: &str = "v1.";

/// Error for acknowledgment tokens, codes and replies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    /// The secret is too short.
    #[error("acknowledgment secret too short: {0} bytes, at least {MIN_SECRET_LEN} required")]
    WeakSecret(usize),
    /// The token is not of the expected form.
    #[error("malformed acknowledgment token: {0}")]
    Malformed(&'static str),
    /// The signature does not match (tampered token or unknown key).
    #[error("acknowledgment token signature is invalid")]
    BadSignature,
    /// The token has expired.
    #[error("acknowledgment token expired at {0}")]
    Expired(DateTime<Utc>),
    /// Code length out of range.
    #[error("acknowledgment codes must have {MIN_CODE_DIGITS} to {MAX_CODE_DIGITS} digits, not {0}")]
    CodeLength(u32),
    /// No free code was found.
    #[error("no free acknowledgment code for this physician after {0} candidates")]
    CodesExhausted(u32),
    /// The SMS reply is not a command.
    #[error(
        "unrecognized SMS reply: expected \"ACK <code>\" or \"SNOOZE <code> <minutes>\" (French: \"OK <code>\" or \"PAUSE <code> <minutes>\")"
    )]
    UnrecognizedReply,
}

/// What a link token asserts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckClaims {
    /// The episode to acknowledge.
    pub episode_id: EpisodeId,
    /// The physician the link was sent to.
    pub recipient: PhysicianId,
    /// The severity the message was sent for: the link acknowledges that severity
    /// and below, never a rise that happened after it was sent.
    pub severity: Severity,
    /// Unique per notification: the store records it to make the link single-use.
    pub nonce: String,
    /// Expiry, Unix seconds.
    pub expires_at: i64,
}

/// Signs and verifies acknowledgment link tokens. Supports key rotation:
/// tokens are signed with the current key and verified against every key.
#[derive(Clone)]
pub struct AckSigner {
    keys: Vec<Vec<u8>>,
}

impl fmt::Debug for AckSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AckSigner").field("keys", &self.keys.len()).finish_non_exhaustive()
    }
}

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    <HmacSha256 as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
}

impl AckSigner {
    /// A signer with one secret of at least [`MIN_SECRET_LEN`] bytes.
    pub fn new(secret: &[u8]) -> Result<Self, AckError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(AckError::WeakSecret(secret.len()));
        }
        Ok(Self { keys: vec![secret.to_vec()] })
    }

    /// Also accepts tokens signed with a previous secret (key rotation).
    pub fn with_previous(mut self, secret: &[u8]) -> Result<Self, AckError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(AckError::WeakSecret(secret.len()));
        }
        self.keys.push(secret.to_vec());
        Ok(self)
    }

    /// Signs claims into a URL-safe token `v1.<payload>.<signature>`.
    pub fn sign(&self, claims: &AckClaims) -> String {
        let payload = serde_json::to_vec(claims).unwrap_or_default();
        let body = format!("{TOKEN_PREFIX}{}", B64.encode(payload));
        let mut m = mac(&self.keys[0]);
        m.update(body.as_bytes());
        let sig = m.finalize().into_bytes();
        format!("{body}.{}", B64.encode(sig))
    }

    /// Issues the token of one notification, valid until `expires_at`.
    pub fn issue(&self, notification: &Notification, expires_at: DateTime<Utc>) -> (String, AckClaims) {
        let claims = AckClaims {
            episode_id: notification.episode_id.clone(),
            recipient: notification.recipient.clone(),
            severity: notification.severity,
            nonce: notification.key.digest_hex(),
            expires_at: expires_at.timestamp(),
        };
        (self.sign(&claims), claims)
    }

    /// Verifies signature and expiry (in constant time for the signature).
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<AckClaims, AckError> {
        let claims = self.verify_signature(token)?;
        if now.timestamp() >= claims.expires_at {
            let at = DateTime::from_timestamp(claims.expires_at, 0).unwrap_or(DateTime::<Utc>::MIN_UTC);
            return Err(AckError::Expired(at));
        }
        Ok(claims)
    }

    /// The claims of a token whose signature is valid, expired or not: who
    /// the link was issued to, so that even the "link expired" page speaks
    /// the physician's language. Never acknowledge with these claims: use
    /// [`AckSigner::verify`].
    pub fn verify_signature(&self, token: &str) -> Result<AckClaims, AckError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(AckError::Malformed("too long"));
        }
        if !token.starts_with(TOKEN_PREFIX) {
            return Err(AckError::Malformed("unknown version"));
        }
        let (body, sig) = token.rsplit_once('.').ok_or(AckError::Malformed("missing signature"))?;
        let sig = B64.decode(sig).map_err(|_| AckError::Malformed("signature is not base64url"))?;
        let valid = self.keys.iter().any(|k| {
            let mut m = mac(k);
            m.update(body.as_bytes());
            m.verify_slice(&sig).is_ok()
        });
        if !valid {
            return Err(AckError::BadSignature);
        }
        let payload =
            B64.decode(&body[TOKEN_PREFIX.len()..]).map_err(|_| AckError::Malformed("payload is not base64url"))?;
        let claims: AckClaims =
            serde_json::from_slice(&payload).map_err(|_| AckError::Malformed("payload is not valid claims"))?;
        Ok(claims)
    }

    /// The acknowledgment URL: `{base}?t={token}` (or `&t=` if `base` has a query).
    pub fn link(base_url: &str, token: &str) -> String {
        let sep = if base_url.contains('?') { '&' } else { '?' };
        format!("{base_url}{sep}t={token}")
    }
}

/// A short numeric acknowledgment code, e.g. `"4821"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AckCode(String);

impl AckCode {
    /// The code as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AckCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Derives acknowledgment codes from a secret, the episode and the recipient.
///
/// Codes must be unique per physician among open episodes: [`Self::assign`]
/// walks a deterministic candidate sequence and takes the first code the
/// store says is free. Store the assigned code with the episode (a unique
/// index on `(physician, code)` over open episodes) and reuse it.
#[derive(Clone)]
pub struct AckCodeGenerator {
    secret: Vec<u8>,
    digits: u32,
}

impl fmt::Debug for AckCodeGenerator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AckCodeGenerator").field("digits", &self.digits).finish_non_exhaustive()
    }
}

/// Fewest digits of an acknowledgment code (`alerting.ack_code_digits`): with the
/// inbound limits (5 failures per number, then a 1 h lockout) one number gets at most
/// 120 guesses a day, i.e. a chance of at most 120 x k / 10^6 per day with k open codes.
pub const MIN_CODE_DIGITS: u32 = 6;
/// Most digits of an acknowledgment code.
pub const MAX_CODE_DIGITS: u32 = 10;

/// Candidates tried by [`AckCodeGenerator::assign`].
pub const MAX_CODE_CANDIDATES: u32 = 64;

impl AckCodeGenerator {
    /// A generator of `digits`-digit codes ([`MIN_CODE_DIGITS`] to [`MAX_CODE_DIGITS`]).
    pub fn new(secret: &[u8], digits: u32) -> Result<Self, AckError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(AckError::WeakSecret(secret.len()));
        }
        if !(MIN_CODE_DIGITS..=MAX_CODE_DIGITS).contains(&digits) {
            return Err(AckError::CodeLength(digits));
        }
        Ok(Self { secret: secret.to_vec(), digits })
    }

    /// Candidate number `attempt` for (episode, recipient).
    pub fn candidate(&self, episode: &EpisodeId, recipient: &PhysicianId, attempt: u32) -> AckCode {
        let mut m = mac(&self.secret);
        m.update(b"vitalwatch-ack-code\0");
        m.update(episode.as_str().as_bytes());
        m.update(b"\0");
        m.update(recipient.as_str().as_bytes());
        m.update(b"\0");
        m.update(&attempt.to_be_bytes());
        let d = m.finalize().into_bytes();
        let n = u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]);
        let modulus = 10u64.pow(self.digits);
        AckCode(format!("{:0width$}", n % modulus, width = self.digits as usize))
    }

    /// The first candidate that `is_taken` reports free.
    pub fn assign(
        &self,
        episode: &EpisodeId,
        recipient: &PhysicianId,
        mut is_taken: impl FnMut(&AckCode) -> bool,
    ) -> Result<AckCode, AckError> {
        (0..MAX_CODE_CANDIDATES)
            .map(|i| self.candidate(episode, recipient, i))
            .find(|c| !is_taken(c))
            .ok_or(AckError::CodesExhausted(MAX_CODE_CANDIDATES))
    }
}

/// A command parsed from an inbound SMS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmsCommand {
    /// `ACK 4821`.
    Ack {
        /// The code.
        code: AckCode,
    },
    /// `SNOOZE 4821 30`: snooze for that many minutes (1 to 1440).
    Snooze {
        /// The code.
        code: AckCode,
        /// Minutes.
        minutes: u32,
    },
}

/// Words that acknowledge: English `ACK`, French `OK` and `ACQ` (acquitter).
pub const ACK_WORDS: [&str; 3] = ["ACK", "ACQ", "OK"];
/// Words that snooze: English `SNOOZE`, French `PAUSE`, `REPORTER` and `REPORT`.
pub const SNOOZE_WORDS: [&str; 4] = ["SNOOZE", "PAUSE", "REPORTER", "REPORT"];

/// Parses an SMS reply: `ACK 4821`, `ack 4821`, `Ack: 4821`, `ACK4821`,
/// `SNOOZE 4821 30`, and the French words: `OK 4821`, `ACQ 4821`,
/// `PAUSE 4821 30`, `REPORT 4821 30`, `REPORTER 4821 30` (see [`ACK_WORDS`],
/// [`SNOOZE_WORDS`]). Case and surrounding punctuation are ignored. Who sent
/// it must be checked by the caller (the sender number must be the
/// physician's registered mobile).
pub fn parse_sms_reply(body: &str) -> Result<SmsCommand, AckError> {
    let cleaned: String =
        body.trim().chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { ' ' }).collect();
    let mut words = cleaned.split_whitespace();
    let first = words.next().ok_or(AckError::UnrecognizedReply)?;
    let (is_ack, glued) = ACK_WORDS
        .iter()
        .map(|v| (true, v))
        .chain(SNOOZE_WORDS.iter().map(|v| (false, v)))
        .find_map(|(is_ack, v)| first.strip_prefix(v).map(|rest| (is_ack, rest)))
        .ok_or(AckError::UnrecognizedReply)?;
    let code = if glued.is_empty() { words.next().ok_or(AckError::UnrecognizedReply)? } else { glued };
    // Lenient on length (a shorter code simply matches nothing and counts as a failure).
    if !(4..=MAX_CODE_DIGITS as usize).contains(&code.len()) || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AckError::UnrecognizedReply);
    }
    let code = AckCode(code.to_string());
    let cmd = if is_ack {
        SmsCommand::Ack { code }
    } else {
        let minutes: u32 = words.next().and_then(|m| m.parse().ok()).ok_or(AckError::UnrecognizedReply)?;
        if !(1..=1440).contains(&minutes) {
            return Err(AckError::UnrecognizedReply);
        }
        SmsCommand::Snooze { code, minutes }
    };
    if words.next().is_some() {
        return Err(AckError::UnrecognizedReply);
    }
    Ok(cmd)
}
