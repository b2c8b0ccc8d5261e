//! Text a sender controls that would reach Kafka or the database: no control
//! characters (U+0000 to U+001F, U+007F to U+009F). PostgreSQL refuses U+0000
//! in `text` (SQLSTATE 22021) and the others have no place in an id or a
//! firmware version. A message carrying one is rejected with
//! [`Reason::InvalidCharacters`] naming the field (never cleaned silently:
//! the sender's id would no longer be theirs). The other strings of an
//! observation are not the sender's: ids are validated identifiers, the unit
//! stored is the canonical UCUM unit of a fixed table, the trace id is hex.
//! Pure: no I/O.

use crate::decode::RawBatch;
use crate::reject::{Reason, Rejection};

/// The first control character of `s`, if any.
pub fn control_char(s: &str) -> Option<char> {
    s.chars().find(|c| c.is_control())
}

fn message_rejection(field: &str, c: char) -> Rejection {
    Rejection {
        reason: Reason::InvalidCharacters,
        message: format!("{field} holds the control character U+{:04X}; control characters are not accepted", c as u32),
        field: Some(field.to_owned()),
        index: None,
    }
}

/// Checks the message-level strings of a decoded batch (`msg_id`, the
/// claimed `patient_id`).
///
/// # Errors
///
/// The rejection of the whole message, naming the field.
pub fn check_message(batch: &RawBatch<'_>) -> Result<(), Rejection> {
    for (field, value) in [("msg_id", batch.msg_id.as_deref()), ("patient_id", batch.patient_claim.as_deref())] {
        if let Some(c) = value.and_then(control_char) {
            return Err(message_rejection(field, c));
        }
    }
    Ok(())
}

/// Checks a device status's firmware string.
///
/// # Errors
///
/// The rejection of the status message.
pub fn check_firmware(firmware: Option<&str>) -> Result<(), Rejection> {
    match firmware.and_then(control_char) {
        Some(c) => Err(message_rejection("firmware", c)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    #[test]
    fn control_characters_are_found_and_others_pass() {
        for bad in ["\0", "a\u{0}b", "tab\there", "nl\n", "del\u{7f}", "c1\u{85}", "\u{9f}"] {
            assert!(control_char(bad).is_some(), "{bad:?}");
        }
        for good in ["", "m-1", "é€😀", "\u{2028}", "\u{fffd}", "\u{200b}", "x".repeat(10_000).as_str()] {
            assert_eq!(control_char(good), None, "{good:?}");
        }
    }

    #[test]
    fn a_batch_names_the_offending_field() {
        let mut b = RawBatch { msg_id: Some(Cow::Borrowed("m\u{0}1")), ..Default::default() };
        let r = check_message(&b).unwrap_err();
        assert_eq!((r.reason, r.field.as_deref()), (Reason::InvalidCharacters, Some("msg_id")));
        assert!(r.message.contains("U+0000"), "{}", r.message);
        b.msg_id = Some(Cow::Borrowed("m1"));
        b.patient_claim = Some(Cow::Borrowed("p\u{1b}1"));
        assert_eq!(check_message(&b).unwrap_err().field.as_deref(), Some("patient_id"));
        b.patient_claim = None;
        assert!(check_message(&b).is_ok());
        assert!(check_firmware(Some("1.2\u{0}")).is_err() && check_firmware(Some("1.2.3")).is_ok());
    }
}
