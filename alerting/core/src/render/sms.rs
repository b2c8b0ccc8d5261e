//! SMS text: one GSM-7 segment (160 characters) whenever possible, no
//! clinical detail beyond what is needed to act, never a name: the
//! pseudonymous patient id, the vital, the value and the acknowledgment code.

use chrono::{DateTime, Utc};

use super::{RenderError, format_value};
use crate::ack::AckCode;
use crate::episode::EpisodeState;
use crate::notification::{Notification, Step};
use crate::team::Physician;

/// Characters in one GSM-7 segment.
pub const SEGMENT_LEN: usize = 160;

/// Whether a character is in the GSM 03.38 basic character set (extension
/// characters count double and are avoided).
pub fn is_gsm7(c: char) -> bool {
    c.is_ascii_alphanumeric() || " \n\r@$_!\"#%&'()*+,-./:;<=>?£¥èéùìòÇØøÅåÄÖÑÜ§¿äöñüàΔΦΓΛΩΠΨΣΘΞÆæßÉ¡¤".contains(c)
}

fn gsm7(s: &str) -> String {
    s.chars().map(|c| if is_gsm7(c) { c } else { '?' }).collect()
}

fn sms_unit(ucum: &str) -> &str {
    match ucum {
        "mm[Hg]" => "mmHg",
        "Cel" => "C",
        other => other,
    }
}

/// Renders the SMS body for a notification. `ack_code` is required for pages
/// and reminders, ignored for the all-clear.
pub fn render_sms(
    notification: &Notification,
    episode: &EpisodeState,
    recipient: &Physician,
    ack_code: Option<&AckCode>,
    _now: DateTime<Utc>,
) -> Result<String, RenderError> {
    if recipient.mobile.is_none() {
        return Err(RenderError::Recipient("the physician has no mobile number"));
    }
    let d = &episode.details;
    let patient = episode.patient_id.as_str();
    let vital = match d.code {
        Some(c) => c.display(),
        None if d.is_technical() => "device heartbeat lost",
        None => "multi-parameter score",
    };
    let sev = notification.severity.label();
    if notification.step == Step::Resolved {
        let body = format!("vitalwatch RESOLVED: patient {patient}, {vital} alert cleared. No action needed.");
        return Ok(fit(vec![gsm7(&body)]));
    }
    let code = ack_code.ok_or(RenderError::Recipient("pages need an acknowledgment code"))?;
    // A historical reading says so in the mandatory part: it is never worded
    // as the present, whatever is dropped to fit.
    let hist = if d.historical { " HISTORICAL" } else { "" };
    let head = match notification.step {
        Step::Reminder { .. } => format!("vitalwatch REMINDER {sev}{hist}"),
        Step::Page { index, .. } if index > 0 => format!("vitalwatch {sev} (escalated){hist}"),
        _ => format!("vitalwatch {sev}{hist}"),
    };
    let tz = recipient.time_zone.tz();
    let value = d.value.map(|v| format!(" {}{}", format_value(v), sms_unit(&d.unit))).unwrap_or_default();
    let limit = d
        .threshold
        .map(|t| format!(" (limit {})", format_value(t)))
        .or_else(|| d.baseline.map(|b| format!(" (baseline {})", format_value(b))))
        .unwrap_or_default();
    let fmt = |t: DateTime<Utc>| t.with_timezone(&tz).format("%d/%m %H:%M").to_string();
    let when = match (d.historical, d.received_at) {
        (true, Some(r)) => format!(" measured {}, received {}", fmt(d.reading_time), fmt(r)),
        (true, None) => format!(" measured {}", fmt(d.reading_time)),
        (false, _) => format!(" measured {} (current)", fmt(d.reading_time)),
    };
    let tail = format!(". Reply ACK {code}");
    // Most important first; optional parts are dropped until it fits.
    Ok(fit(vec![
        gsm7(&format!("{head}: patient {patient}")),
        gsm7(&format!(", {vital}{value}")),
        gsm7(&tail),
        gsm7(&limit),
        gsm7(&when),
    ]))
}

/// Assembles parts (mandatory: 0 and 2, i.e. head and ack instruction;
/// then 1, 4, 3 in order of usefulness) into one segment when possible.
fn fit(parts: Vec<String>) -> String {
    if parts.len() != 5 {
        return parts.concat();
    }
    let assemble = |vital: bool, limit: bool, when: bool| {
        let mut s = parts[0].clone();
        if vital {
            s.push_str(&parts[1]);
            if limit {
                s.push_str(&parts[3]);
            }
            if when {
                s.push_str(&parts[4]);
            }
        }
        s.push_str(&parts[2]);
        s
    };
    for (vital, limit, when) in [(true, true, true), (true, false, true), (true, false, false), (false, false, false)] {
        let s = assemble(vital, limit, when);
        if s.chars().count() <= SEGMENT_LEN {
            return s;
        }
    }
    assemble(false, false, false)
}
