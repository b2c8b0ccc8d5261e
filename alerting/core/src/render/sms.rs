//! SMS text: one GSM-7 segment (160 characters) whenever possible, no
//! clinical detail beyond what is needed to act, never a name: the
//! pseudonymous patient id, the vital, the value and the acknowledgment code.

use chrono::{DateTime, Utc};

use super::{RenderError, value_in};
use crate::ack::AckCode;
use crate::episode::EpisodeState;
use crate::i18n::{self, Language, fill};
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

/// The texts of the SMS, one constant per language ([`SMS_FR`], [`SMS_EN`]).
/// Only GSM 03.38 characters (French: é, è, à, É are; ç, ê, ô are not).
#[derive(Debug)]
pub struct SmsText {
    /// The vital of a device heartbeat alert.
    pub vital_heartbeat: &'static str,
    /// The vital of a multi-parameter score alert.
    pub vital_score: &'static str,
    /// The all-clear: `{patient}`, `{vital}`.
    pub resolved: &'static str,
    /// Marks a historical reading in the head.
    pub historical: &'static str,
    /// Head of a first page: `{sev}`, `{hist}`.
    pub head: &'static str,
    /// Head of a reminder: `{sev}`, `{hist}`.
    pub head_reminder: &'static str,
    /// Head of an escalated page: `{sev}`, `{hist}`.
    pub head_escalated: &'static str,
    /// Mandatory first part: `{head}`, `{patient}`.
    pub patient: &'static str,
    /// The vital and value: `{vital}`, `{value}` (with its leading space, or empty).
    pub vital: &'static str,
    /// The threshold, `{value}`.
    pub limit: &'static str,
    /// The baseline, `{value}`.
    pub baseline: &'static str,
    /// A historical reading's times: `{measured}`, `{received}`.
    pub when_historical_received: &'static str,
    /// A historical reading's time, `{measured}`.
    pub when_historical: &'static str,
    /// A current reading's time, `{measured}`.
    pub when_current: &'static str,
    /// Mandatory last part: how to acknowledge, `{code}`.
    pub tail: &'static str,
}

/// The English SMS texts.
pub const SMS_EN: SmsText = SmsText {
    vital_heartbeat: "device heartbeat lost",
    vital_score: "multi-parameter score",
    resolved: "vitalwatch RESOLVED: patient {patient}, {vital} alert cleared. No action needed.",
    historical: " HISTORICAL",
    head: "vitalwatch {sev}{hist}",
    head_reminder: "vitalwatch REMINDER {sev}{hist}",
    head_escalated: "vitalwatch {sev} (escalated){hist}",
    patient: "{head}: patient {patient}",
    vital: ", {vital}{value}",
    limit: " (limit {value})",
    baseline: " (baseline {value})",
    when_historical_received: " measured {measured}, received {received}",
    when_historical: " measured {measured}",
    when_current: " measured {measured} (current)",
    tail: ". Reply ACK {code}",
};

/// The French SMS texts (reply `OK <code>`; see [`crate::ack::parse_sms_reply`]).
pub const SMS_FR: SmsText = SmsText {
    vital_heartbeat: "perte du signal de l'appareil",
    vital_score: "score multiparamétrique",
    resolved: "vitalwatch RÉSOLUE : patient {patient}, alerte {vital} terminée. Rien à faire.",
    historical: " HISTORIQUE",
    head: "vitalwatch {sev}{hist}",
    head_reminder: "vitalwatch RAPPEL {sev}{hist}",
    head_escalated: "vitalwatch {sev} (escalade){hist}",
    patient: "{head} : patient {patient}",
    vital: ", {vital}{value}",
    limit: " (seuil {value})",
    baseline: " (référence {value})",
    when_historical_received: " mesurée le {measured}, arrivée le {received}",
    when_historical: " mesurée le {measured}",
    when_current: " mesurée le {measured} (actuelle)",
    tail: ". Répondez OK {code}",
};

impl SmsText {
    /// The texts of `lang`.
    pub fn of(lang: Language) -> &'static SmsText {
        match lang {
            Language::Fr => &SMS_FR,
            Language::En => &SMS_EN,
        }
    }

    /// Every template by name (exhaustive: a new field must be listed).
    pub fn templates(&self) -> Vec<(&'static str, &'static str)> {
        let SmsText {
            vital_heartbeat,
            vital_score,
            resolved,
            historical,
            head,
            head_reminder,
            head_escalated,
            patient,
            vital,
            limit,
            baseline,
            when_historical_received,
            when_historical,
            when_current,
            tail,
        } = self;
        vec![
            ("vital_heartbeat", vital_heartbeat),
            ("vital_score", vital_score),
            ("resolved", resolved),
            ("historical", historical),
            ("head", head),
            ("head_reminder", head_reminder),
            ("head_escalated", head_escalated),
            ("patient", patient),
            ("vital", vital),
            ("limit", limit),
            ("baseline", baseline),
            ("when_historical_received", when_historical_received),
            ("when_historical", when_historical),
            ("when_current", when_current),
            ("tail", tail),
        ]
        .into_iter()
        .map(|(k, v)| (k, *v))
        .collect()
    }
}

/// Renders the SMS body for a notification in `lang`, times in the
/// recipient's time zone. `ack_code` is required for pages and reminders,
/// ignored for the all-clear.
pub fn render_sms(
    notification: &Notification,
    episode: &EpisodeState,
    recipient: &Physician,
    lang: Language,
    ack_code: Option<&AckCode>,
    _now: DateTime<Utc>,
) -> Result<String, RenderError> {
    if recipient.mobile.is_none() {
        return Err(RenderError::Recipient("the physician has no mobile number"));
    }
    let tx = SmsText::of(lang);
    let d = &episode.details;
    let patient = episode.patient_id.as_str();
    let vital = match d.code {
        Some(c) => i18n::vital(lang, c),
        None if d.is_technical() => tx.vital_heartbeat,
        None => tx.vital_score,
    };
    let sev = i18n::severity(lang, notification.severity);
    if notification.step == Step::Resolved {
        let body = fill(tx.resolved, &[("patient", patient), ("vital", vital)]);
        return Ok(fit(vec![gsm7(&body)]));
    }
    let code = ack_code.ok_or(RenderError::Recipient("pages need an acknowledgment code"))?;
    // A historical reading says so in the mandatory part: it is never worded
    // as the present, whatever is dropped to fit.
    let hist = if d.historical { tx.historical } else { "" };
    let head_template = match notification.step {
        Step::Reminder { .. } => tx.head_reminder,
        Step::Page { index, .. } if index > 0 => tx.head_escalated,
        _ => tx.head,
    };
    let head = fill(head_template, &[("sev", sev), ("hist", hist)]);
    let tz = recipient.time_zone.tz();
    let value = d.value.map(|v| format!(" {}{}", value_in(lang, v), sms_unit(&d.unit))).unwrap_or_default();
    let limit = d
        .threshold
        .map(|t| fill(tx.limit, &[("value", &value_in(lang, t))]))
        .or_else(|| d.baseline.map(|b| fill(tx.baseline, &[("value", &value_in(lang, b))])))
        .unwrap_or_default();
    let fmt = |t: DateTime<Utc>| t.with_timezone(&tz).format("%d/%m %H:%M").to_string();
    let when = match (d.historical, d.received_at) {
        (true, Some(r)) => {
            fill(tx.when_historical_received, &[("measured", &fmt(d.reading_time)), ("received", &fmt(r))])
        }
        (true, None) => fill(tx.when_historical, &[("measured", &fmt(d.reading_time))]),
        (false, _) => fill(tx.when_current, &[("measured", &fmt(d.reading_time))]),
    };
    let tail = fill(tx.tail, &[("code", code.as_str())]);
    // Most important first; optional parts are dropped until it fits.
    Ok(fit(vec![
        gsm7(&fill(tx.patient, &[("head", &head), ("patient", patient)])),
        gsm7(&fill(tx.vital, &[("vital", vital), ("value", &value)])),
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
