//! Alert and digest emails: plain text and HTML in `multipart/alternative`,
//! inside `multipart/related` with the chart as an inline PNG (Content-ID).

#[cfg(feature = "mime")]
use std::time::SystemTime;

use chrono::{DateTime, Utc};
#[cfg(feature = "mime")]
use lettre::Message;
#[cfg(feature = "mime")]
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
#[cfg(feature = "mime")]
use lettre::message::{Attachment, MultiPart};

/// The sender mailbox type of [`RenderedEmail::to_message`] (re-exported from lettre).
#[cfg(feature = "mime")]
pub use lettre::message::Mailbox;

use super::chart::{ChartData, render_chart_png};
use super::{RenderError, escape_html, footer, quantity_in};
use crate::ack::AckCode;
use crate::caps::{DigestEntry, DigestItemStatus, DigestLine};
use crate::episode::EpisodeState;
use crate::i18n::{self, Language, fill};
use crate::notification::{Notification, Step};
use crate::team::Physician;

/// A rendered email, before MIME assembly.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedEmail {
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub text: String,
    /// HTML body (references the chart as `cid:{chart_cid}`).
    pub html: String,
    /// The chart PNG, if one was drawn.
    pub chart_png: Option<Vec<u8>>,
    /// Content-ID of the chart (without angle brackets).
    pub chart_cid: String,
    /// Message-ID (without angle brackets), derived from the idempotency key
    /// so that receivers can drop duplicates.
    pub message_id: String,
    /// Extra `X-Vitalwatch-*` headers (ids and times only, no clinical
    /// values): the trace id and measurement time of the triggering reading
    /// and the step, so that tools (the load generator's latency sink, mail
    /// filters) can map an email back to its reading.
    pub headers: Vec<(String, String)>,
}

/// The texts of the alert and digest emails, one constant per language
/// ([`EMAIL_FR`], [`EMAIL_EN`]). Arguments are named in braces (see [`fill`]).
#[derive(Debug)]
pub struct EmailText {
    /// Greeting line, `{name}`.
    pub greeting: &'static str,
    /// Separator between a label and its value (`": "`, French `" : "`).
    pub colon: &'static str,
    /// The vital of a device heartbeat alert.
    pub vital_heartbeat: &'static str,
    /// The vital of a multi-parameter score alert.
    pub vital_score: &'static str,
    /// Kind of an escalated page, `{sev}`.
    pub kind_escalated: &'static str,
    /// Kind of a reminder, `{sev}`.
    pub kind_reminder: &'static str,
    /// Kind of the all-clear.
    pub kind_resolved: &'static str,
    /// Kind of a digest.
    pub kind_digest: &'static str,
    /// Subject with a value: `{kind}{tag}`, `{vital}`, `{value}`, `{patient}`.
    pub subject_value: &'static str,
    /// Subject without a value: `{kind}{tag}`, `{vital}`, `{patient}`.
    pub subject_plain: &'static str,
    /// The subject tag of a historical reading.
    pub subject_historical: &'static str,
    /// Intro of a historical reading: `{at}`, `{received}` (see `intro_received`).
    pub intro_historical: &'static str,
    /// The "and received at" part of `intro_historical`, `{at}`.
    pub intro_received: &'static str,
    /// Intro of a technical (device heartbeat) alert.
    pub intro_technical: &'static str,
    /// Intro of a first page.
    pub intro_new: &'static str,
    /// Intro of an escalated page.
    pub intro_escalated: &'static str,
    /// Intro of a reminder, `{number}`.
    pub intro_reminder: &'static str,
    /// Intro of the all-clear.
    pub intro_resolved: &'static str,
    /// Intro of an alert folded into a digest.
    pub intro_digest: &'static str,
    /// Label of the patient id.
    pub label_patient: &'static str,
    /// Label of the severity.
    pub label_severity: &'static str,
    /// Label of the vital.
    pub label_vital: &'static str,
    /// Label of the value.
    pub label_value: &'static str,
    /// Label of the time a silent device was last heard.
    pub label_silent_since: &'static str,
    /// Label of the reading status (current or historical).
    pub label_reading: &'static str,
    /// A historical reading.
    pub reading_historical: &'static str,
    /// A current reading.
    pub reading_current: &'static str,
    /// Label of the measurement time.
    pub label_measured_at: &'static str,
    /// Label of the reception time.
    pub label_received_at: &'static str,
    /// Label of the threshold.
    pub label_threshold: &'static str,
    /// Label of the baseline.
    pub label_baseline: &'static str,
    /// Label of the rules engine's summary.
    pub label_summary: &'static str,
    /// Label of the rule.
    pub label_rule: &'static str,
    /// Note on a historical reading: `{at}`, `{h}`, `{m}`.
    pub late_historical: &'static str,
    /// Note on a reading processed late: `{h}`, `{m}`.
    pub late_delayed: &'static str,
    /// Text-part note that the HTML part has a chart.
    pub chart_note: &'static str,
    /// Alternative text of the chart image, `{vital}`.
    pub chart_alt: &'static str,
    /// The acknowledgment link line, `{link}`.
    pub ack_link: &'static str,
    /// After the link: acknowledging by SMS, `{code}`.
    pub ack_or_sms: &'static str,
    /// Acknowledging by SMS only, `{code}`.
    pub ack_sms_only: &'static str,
    /// The acknowledgment button.
    pub ack_button: &'static str,
    /// HTML: acknowledging by SMS, `{command}` (the reply, in bold).
    pub ack_html_or: &'static str,
    /// The SMS reply that acknowledges, `{code}`.
    pub ack_command: &'static str,
    /// Digest subject: `{count}`, `{open}`.
    pub digest_subject: &'static str,
    /// Digest intro.
    pub digest_intro: &'static str,
    /// One digest line: `{severity}`, `{patient}`, `{vital}`, `{value}` (with
    /// its leading space, or empty), `{at}`.
    pub digest_line: &'static str,
    /// Title of the open items.
    pub digest_open: &'static str,
    /// Title of the items closed since they were folded.
    pub digest_closed: &'static str,
    /// Status of an item acknowledged since: `{by}`, `{at}`.
    pub digest_acked: &'static str,
    /// Status of an item resolved since: `{at}`.
    pub digest_resolved: &'static str,
}

/// The English email texts.
pub const EMAIL_EN: EmailText = EmailText {
    greeting: "Dear {name},",
    colon: ": ",
    vital_heartbeat: "device heartbeat",
    vital_score: "multi-parameter score",
    kind_escalated: "{sev} (escalated)",
    kind_reminder: "REMINDER {sev}",
    kind_resolved: "RESOLVED",
    kind_digest: "DIGEST",
    subject_value: "[vitalwatch] {kind} - {vital} {value} - patient {patient}",
    subject_plain: "[vitalwatch] {kind} - {vital} - patient {patient}",
    subject_historical: " - HISTORICAL reading",
    intro_historical: "A HISTORICAL reading needs your attention: it was measured at {at}{received}. It describes the patient at that time, not now.",
    intro_received: " and received at {at}",
    intro_technical: "A monitoring device has stopped sending heartbeats. This is a technical alert for the care team (check the device, its battery and connection), not a clinical reading.",
    intro_new: "A new alert needs your attention.",
    intro_escalated: "This alert was not acknowledged in time and is escalated to you.",
    intro_reminder: "Reminder {number}: this alert is still not acknowledged.",
    intro_resolved: "This alert is resolved: no action is needed.",
    intro_digest: "This alert was grouped into your digest.",
    label_patient: "Patient (pseudonymous id)",
    label_severity: "Severity",
    label_vital: "Vital",
    label_value: "Value",
    label_silent_since: "Silent since",
    label_reading: "Reading",
    reading_historical: "HISTORICAL (arrived late; not the patient's current state)",
    reading_current: "current",
    label_measured_at: "Measured at",
    label_received_at: "Received at",
    label_threshold: "Threshold crossed",
    label_baseline: "Baseline",
    label_summary: "Summary",
    label_rule: "Rule",
    late_historical: "Historical reading: measured at {at}, received {h} h {m} min later. Check the patient's current state before acting.",
    late_delayed: "Note: this reading was taken {h} h {m} min before it was processed (delayed upload).",
    chart_note: "The HTML version of this message shows the last 14 days of this vital.",
    chart_alt: "{vital} over the last 14 days",
    ack_link: "Acknowledge: {link}",
    ack_or_sms: "Or reply \"ACK {code}\" to the SMS alert.",
    ack_sms_only: "Acknowledge by replying \"ACK {code}\" to the SMS alert.",
    ack_button: "Acknowledge",
    ack_html_or: "Or reply {command} to the SMS alert.",
    ack_command: "ACK {code}",
    digest_subject: "[vitalwatch] Digest - {count} alert(s), {open} open",
    digest_intro: "These alerts were grouped because of your hourly notification limit, or because they are informational:",
    digest_line: "{severity} - patient {patient} - {vital}{value} - measured {at}",
    digest_open: "Open",
    digest_closed: "No action needed (acknowledged or resolved since they were grouped)",
    digest_acked: " - acknowledged by {by} at {at}",
    digest_resolved: " - resolved at {at}",
};

/// The French email texts.
pub const EMAIL_FR: EmailText = EmailText {
    greeting: "Bonjour {name},",
    colon: " : ",
    vital_heartbeat: "signal de vie de l'appareil",
    vital_score: "score multiparamétrique",
    kind_escalated: "{sev} (escalade)",
    kind_reminder: "RAPPEL {sev}",
    kind_resolved: "RÉSOLUE",
    kind_digest: "RÉCAPITULATIF",
    subject_value: "[vitalwatch] {kind} - {vital} {value} - patient {patient}",
    subject_plain: "[vitalwatch] {kind} - {vital} - patient {patient}",
    subject_historical: " - mesure HISTORIQUE",
    intro_historical: "Une mesure HISTORIQUE demande votre attention : elle a été prise le {at}{received}. Elle décrit l'état du patient à ce moment-là, pas maintenant.",
    intro_received: " et reçue le {at}",
    intro_technical: "Un appareil de télésurveillance n'envoie plus de signal de vie. Il s'agit d'une alerte technique pour l'équipe de soins (vérifiez l'appareil, sa batterie et sa connexion), pas d'une mesure clinique.",
    intro_new: "Une nouvelle alerte demande votre attention.",
    intro_escalated: "Cette alerte n'a pas été acquittée à temps et vous est transmise (escalade).",
    intro_reminder: "Rappel {number} : cette alerte n'est toujours pas acquittée.",
    intro_resolved: "Cette alerte est résolue : aucune action n'est requise.",
    intro_digest: "Cette alerte a été regroupée dans votre récapitulatif.",
    label_patient: "Patient (identifiant pseudonyme)",
    label_severity: "Sévérité",
    label_vital: "Paramètre",
    label_value: "Valeur",
    label_silent_since: "Sans signal depuis le",
    label_reading: "Mesure",
    reading_historical: "HISTORIQUE (arrivée en retard ; ne reflète pas l'état actuel du patient)",
    reading_current: "actuelle",
    label_measured_at: "Date de mesure",
    label_received_at: "Date de réception",
    label_threshold: "Seuil franchi",
    label_baseline: "Valeur de référence",
    label_summary: "Résumé",
    label_rule: "Règle",
    late_historical: "Mesure historique : prise le {at}, reçue {h} h {m} min plus tard. Vérifiez l'état actuel du patient avant d'agir.",
    late_delayed: "Remarque : cette mesure a été prise {h} h {m} min avant son traitement (transmission retardée).",
    chart_note: "La version HTML de ce message montre les 14 derniers jours de ce paramètre.",
    chart_alt: "{vital} sur les 14 derniers jours",
    ack_link: "Acquitter : {link}",
    ack_or_sms: "Ou répondez « OK {code} » au SMS d'alerte.",
    ack_sms_only: "Acquittez en répondant « OK {code} » au SMS d'alerte.",
    ack_button: "Acquitter",
    ack_html_or: "Ou répondez {command} au SMS d'alerte.",
    ack_command: "OK {code}",
    digest_subject: "[vitalwatch] Récapitulatif - {count} alerte(s), {open} ouverte(s)",
    digest_intro: "Ces alertes ont été regroupées en raison de votre limite horaire de notifications, ou parce qu'elles sont informatives :",
    digest_line: "{severity} - patient {patient} - {vital}{value} - mesurée le {at}",
    digest_open: "Ouvertes",
    digest_closed: "Aucune action requise (acquittées ou résolues depuis leur regroupement)",
    digest_acked: " - acquittée par {by} le {at}",
    digest_resolved: " - résolue le {at}",
};

impl EmailText {
    /// The texts of `lang`.
    pub fn of(lang: Language) -> &'static EmailText {
        match lang {
            Language::Fr => &EMAIL_FR,
            Language::En => &EMAIL_EN,
        }
    }

    /// Every template by name (the exhaustive destructuring makes a new
    /// field fail to compile until it is listed here), for the tests that
    /// compare the arguments of both languages.
    pub fn templates(&self) -> Vec<(&'static str, &'static str)> {
        let EmailText {
            greeting,
            colon,
            vital_heartbeat,
            vital_score,
            kind_escalated,
            kind_reminder,
            kind_resolved,
            kind_digest,
            subject_value,
            subject_plain,
            subject_historical,
            intro_historical,
            intro_received,
            intro_technical,
            intro_new,
            intro_escalated,
            intro_reminder,
            intro_resolved,
            intro_digest,
            label_patient,
            label_severity,
            label_vital,
            label_value,
            label_silent_since,
            label_reading,
            reading_historical,
            reading_current,
            label_measured_at,
            label_received_at,
            label_threshold,
            label_baseline,
            label_summary,
            label_rule,
            late_historical,
            late_delayed,
            chart_note,
            chart_alt,
            ack_link,
            ack_or_sms,
            ack_sms_only,
            ack_button,
            ack_html_or,
            ack_command,
            digest_subject,
            digest_intro,
            digest_line,
            digest_open,
            digest_closed,
            digest_acked,
            digest_resolved,
        } = self;
        vec![
            ("greeting", greeting),
            ("colon", colon),
            ("vital_heartbeat", vital_heartbeat),
            ("vital_score", vital_score),
            ("kind_escalated", kind_escalated),
            ("kind_reminder", kind_reminder),
            ("kind_resolved", kind_resolved),
            ("kind_digest", kind_digest),
            ("subject_value", subject_value),
            ("subject_plain", subject_plain),
            ("subject_historical", subject_historical),
            ("intro_historical", intro_historical),
            ("intro_received", intro_received),
            ("intro_technical", intro_technical),
            ("intro_new", intro_new),
            ("intro_escalated", intro_escalated),
            ("intro_reminder", intro_reminder),
            ("intro_resolved", intro_resolved),
            ("intro_digest", intro_digest),
            ("label_patient", label_patient),
            ("label_severity", label_severity),
            ("label_vital", label_vital),
            ("label_value", label_value),
            ("label_silent_since", label_silent_since),
            ("label_reading", label_reading),
            ("reading_historical", reading_historical),
            ("reading_current", reading_current),
            ("label_measured_at", label_measured_at),
            ("label_received_at", label_received_at),
            ("label_threshold", label_threshold),
            ("label_baseline", label_baseline),
            ("label_summary", label_summary),
            ("label_rule", label_rule),
            ("late_historical", late_historical),
            ("late_delayed", late_delayed),
            ("chart_note", chart_note),
            ("chart_alt", chart_alt),
            ("ack_link", ack_link),
            ("ack_or_sms", ack_or_sms),
            ("ack_sms_only", ack_sms_only),
            ("ack_button", ack_button),
            ("ack_html_or", ack_html_or),
            ("ack_command", ack_command),
            ("digest_subject", digest_subject),
            ("digest_intro", digest_intro),
            ("digest_line", digest_line),
            ("digest_open", digest_open),
            ("digest_closed", digest_closed),
            ("digest_acked", digest_acked),
            ("digest_resolved", digest_resolved),
        ]
        .into_iter()
        .map(|(k, v)| (k, *v))
        .collect()
    }
}

/// Everything one alert email shows.
#[derive(Debug, Clone, Copy)]
pub struct AlertEmailInput<'a> {
    /// The notification.
    pub notification: &'a Notification,
    /// The episode.
    pub episode: &'a EpisodeState,
    /// The recipient (for the time zone and greeting).
    pub recipient: &'a Physician,
    /// The language of the email (the recipient's, else the deployment default).
    pub language: Language,
    /// The signed acknowledgment URL (pages and reminders).
    pub ack_link: Option<&'a str>,
    /// The SMS acknowledgment code, if one was assigned.
    pub ack_code: Option<&'a AckCode>,
    /// The last 14 days of the vital (time, value), for the chart.
    pub history: &'a [(DateTime<Utc>, f64)],
    /// Domain used in Message-ID and Content-ID.
    pub id_domain: &'a str,
}

/// The footer (text and HTML) of every email, in `lang` only.
fn footers(lang: Language) -> (String, String) {
    (
        format!("\n--\n{}\n", footer(lang)),
        format!("<hr><p style=\"font-size:12px;color:#666\">{}</p></body></html>", escape_html(footer(lang))),
    )
}

/// Renders the alert email in `input.language`, times in the recipient's
/// time zone. The chart is drawn when the alert is about one vital.
pub fn render_alert_email(input: &AlertEmailInput<'_>) -> Result<RenderedEmail, RenderError> {
    let n = input.notification;
    let ep = input.episode;
    let d = &ep.details;
    let lang = input.language;
    let tx = EmailText::of(lang);
    let tz = input.recipient.time_zone.tz();
    let patient = ep.patient_id.as_str();
    let vital = match d.code {
        Some(c) => i18n::vital(lang, c),
        None if d.is_technical() => tx.vital_heartbeat,
        None => tx.vital_score,
    };
    let sev = i18n::severity(lang, n.severity);
    let nonce = n.key.digest_hex();
    let at = |t: DateTime<Utc>| i18n::datetime_zone(lang, t, tz);
    let message_id = format!("{nonce}@{}", input.id_domain);
    let chart_cid = format!("chart-{nonce}@{}", input.id_domain);

    let (kind, intro) = match n.step {
        Step::Page { index: 0, .. } if d.historical => (
            sev.to_string(),
            fill(
                tx.intro_historical,
                &[
                    ("at", &at(d.reading_time)),
                    (
                        "received",
                        &d.received_at.map(|r| fill(tx.intro_received, &[("at", &at(r))])).unwrap_or_default(),
                    ),
                ],
            ),
        ),
        Step::Page { index: 0, .. } if d.is_technical() => (sev.to_string(), tx.intro_technical.to_string()),
        Step::Page { index: 0, .. } => (sev.to_string(), tx.intro_new.to_string()),
        Step::Page { .. } => (fill(tx.kind_escalated, &[("sev", sev)]), tx.intro_escalated.to_string()),
        Step::Reminder { number, .. } => {
            (fill(tx.kind_reminder, &[("sev", sev)]), fill(tx.intro_reminder, &[("number", &number.to_string())]))
        }
        Step::Resolved => (tx.kind_resolved.to_string(), tx.intro_resolved.to_string()),
        // Digests are rendered by `render_digest_email`; kept total for safety.
        Step::Digest => (tx.kind_digest.to_string(), tx.intro_digest.to_string()),
    };
    let value = d.value.map(|v| quantity_in(lang, v, &d.unit));
    let tag = if d.historical { tx.subject_historical } else { "" };
    let kind_tag = format!("{kind}{tag}");
    let subject = match &value {
        Some(v) => fill(tx.subject_value, &[("kind", &kind_tag), ("vital", vital), ("value", v), ("patient", patient)]),
        None => fill(tx.subject_plain, &[("kind", &kind_tag), ("vital", vital), ("patient", patient)]),
    };

    // Facts, as (label, value) rows shared by text and HTML.
    let mut rows: Vec<(&str, String)> = vec![
        (tx.label_patient, patient.to_string()),
        (tx.label_severity, sev.to_string()),
        (
            tx.label_vital,
            match d.code {
                Some(c) => format!("{vital} (LOINC {})", c.loinc()),
                None => vital.to_string(),
            },
        ),
    ];
    if let Some(v) = &value {
        rows.push((tx.label_value, v.clone()));
    }
    if d.is_technical() {
        rows.push((tx.label_silent_since, at(d.reading_time)));
    } else {
        let reading = if d.historical { tx.reading_historical } else { tx.reading_current };
        rows.push((tx.label_reading, reading.to_string()));
        rows.push((tx.label_measured_at, at(d.reading_time)));
        if let Some(r) = d.received_at {
            rows.push((tx.label_received_at, at(r)));
        }
    }
    if let Some(t) = d.threshold {
        rows.push((tx.label_threshold, quantity_in(lang, t, &d.unit)));
    }
    if let Some(b) = d.baseline {
        rows.push((tx.label_baseline, quantity_in(lang, b, &d.unit)));
    }
    if !d.summary.is_empty() {
        rows.push((tx.label_summary, d.summary.clone()));
    }
    rows.push((tx.label_rule, format!("{} ({})", d.rule_id, d.rule_kind)));
    let delay = d.detected_at - d.reading_time;
    let late_note = if d.historical {
        let since = d.received_at.map_or(delay, |r| r - d.reading_time);
        Some(fill(
            tx.late_historical,
            &[
                ("at", &at(d.reading_time)),
                ("h", &since.num_hours().to_string()),
                ("m", &(since.num_minutes() % 60).to_string()),
            ],
        ))
    } else {
        (delay > chrono::Duration::minutes(30)).then(|| {
            fill(
                tx.late_delayed,
                &[("h", &delay.num_hours().to_string()), ("m", &(delay.num_minutes() % 60).to_string())],
            )
        })
    };

    let chart_png = match (n.step, d.code) {
        (Step::Resolved | Step::Digest, _) | (_, None) => None,
        (_, Some(code)) => Some(render_chart_png(
            &ChartData {
                title: i18n::vital(lang, code).to_string(),
                unit: d.unit.clone(),
                points: input.history.to_vec(),
                threshold: d.threshold,
                baseline: d.baseline,
                highlight: d.value.map(|v| (d.reading_time, v)),
                end: d.reading_time.max(d.detected_at),
                days: 14,
            },
            tz,
            lang,
        )?),
    };

    let ack_text = match (n.step, input.ack_link, input.ack_code) {
        (Step::Resolved | Step::Digest, _, _) => String::new(),
        (_, Some(link), Some(code)) => {
            format!("{}\n{}\n", fill(tx.ack_link, &[("link", link)]), fill(tx.ack_or_sms, &[("code", code.as_str())]))
        }
        (_, Some(link), None) => format!("{}\n", fill(tx.ack_link, &[("link", link)])),
        (_, None, Some(code)) => format!("{}\n", fill(tx.ack_sms_only, &[("code", code.as_str())])),
        (_, None, None) => String::new(),
    };

    let mut text = format!("{}\n\n{intro}\n\n", fill(tx.greeting, &[("name", &input.recipient.name)]));
    for (label, v) in &rows {
        text.push_str(&format!("{label}{}{v}\n", tx.colon));
    }
    if let Some(note) = &late_note {
        text.push_str(&format!("\n{note}\n"));
    }
    if chart_png.is_some() {
        text.push_str(&format!("\n{}\n", tx.chart_note));
    }
    if !ack_text.is_empty() {
        text.push('\n');
        text.push_str(&ack_text);
    }
    let (text_footer, html_footer) = footers(lang);
    text.push_str(&text_footer);

    let color = match n.severity {
        crate::Severity::Critical => "#b00020",
        crate::Severity::High => "#d9480f",
        crate::Severity::Medium => "#e8a200",
        _ => "#1e5ab4",
    };
    let mut html = String::with_capacity(4096);
    html.push_str(&format!("<!DOCTYPE html><html lang=\"{}\"><head><meta charset=\"utf-8\"><title>", lang.code()));
    html.push_str(&escape_html(&subject));
    html.push_str("</title></head><body style=\"font-family:Arial,Helvetica,sans-serif;color:#222;max-width:680px\">");
    html.push_str(&format!(
        "<div style=\"background:{color};color:#fff;padding:10px 14px;font-weight:bold\">vitalwatch - {}</div>",
        escape_html(&kind)
    ));
    html.push_str(&format!(
        "<p>{}</p><p>{}</p><table style=\"border-collapse:collapse\">",
        escape_html(&fill(tx.greeting, &[("name", &input.recipient.name)])),
        escape_html(&intro)
    ));
    for (label, v) in &rows {
        html.push_str(&format!(
            "<tr><td style=\"padding:3px 12px 3px 0;color:#666\">{}</td><td style=\"padding:3px 0\"><strong>{}</strong></td></tr>",
            escape_html(label),
            escape_html(v)
        ));
    }
    html.push_str("</table>");
    if let Some(note) = &late_note {
        html.push_str(&format!("<p style=\"color:#a15c00\">{}</p>", escape_html(note)));
    }
    if chart_png.is_some() {
        html.push_str(&format!(
            "<p><img src=\"cid:{}\" width=\"640\" height=\"280\" alt=\"{}\"></p>",
            escape_html(&chart_cid),
            escape_html(&fill(tx.chart_alt, &[("vital", vital)]))
        ));
    }
    if n.step.is_page() {
        if let Some(link) = input.ack_link {
            html.push_str(&format!(
                "<p><a href=\"{}\" style=\"background:{color};color:#fff;padding:10px 18px;text-decoration:none;display:inline-block\">{}</a></p>",
                escape_html(link),
                escape_html(tx.ack_button)
            ));
        }
        if let Some(code) = input.ack_code {
            let command =
                format!("<strong>{}</strong>", escape_html(&fill(tx.ack_command, &[("code", code.as_str())])));
            html.push_str(&format!("<p>{}</p>", fill(&escape_html(tx.ack_html_or), &[("command", &command)])));
        }
    }
    html.push_str(&html_footer);

    let mut headers = vec![
        ("X-Vitalwatch-Reading-Time".to_string(), d.reading_time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
        ("X-Vitalwatch-Step".to_string(), n.step.to_string()),
    ];
    if !d.trace_id.is_empty() && d.trace_id.bytes().all(|b| b.is_ascii_graphic()) {
        headers.push(("X-Vitalwatch-Trace".to_string(), d.trace_id.clone()));
    }
    Ok(RenderedEmail { subject, text, html, chart_png, chart_cid, message_id, headers })
}

/// Renders a digest of folded low-severity alerts in `lang`: open episodes
/// first, each with its acknowledgment link, then the ones acknowledged or
/// resolved since they were folded (listed, marked, without a link). Times
/// are in the recipient's time zone. `digest_key` gives the deterministic
/// Message-ID.
pub fn render_digest_email(
    recipient: &Physician,
    lang: Language,
    lines: &[DigestLine],
    digest_key: &str,
    id_domain: &str,
) -> RenderedEmail {
    let tx = EmailText::of(lang);
    let tz = recipient.time_zone.tz();
    let nonce = crate::notification::hex(&<sha2::Sha256 as sha2::Digest>::digest(digest_key.as_bytes())[..16]);
    let open = lines.iter().filter(|l| l.status == DigestItemStatus::Open).count();
    let subject = fill(tx.digest_subject, &[("count", &lines.len().to_string()), ("open", &open.to_string())]);
    let greeting = fill(tx.greeting, &[("name", &recipient.name)]);
    let mut text = format!("{greeting}\n\n{}\n", tx.digest_intro);
    let mut html = format!(
        "<!DOCTYPE html><html lang=\"{}\"><head><meta charset=\"utf-8\"><title>{}</title></head><body style=\"font-family:Arial,Helvetica,sans-serif\"><p>{}</p><p>{}</p>",
        lang.code(),
        escape_html(&subject),
        escape_html(&greeting),
        escape_html(tx.digest_intro)
    );
    let describe = |e: &DigestEntry| {
        let vital = e.code.map(|c| i18n::vital(lang, c)).unwrap_or(tx.vital_score);
        let value = e.value.map(|v| format!(" {}", quantity_in(lang, v, &e.unit))).unwrap_or_default();
        let mut line = fill(
            tx.digest_line,
            &[
                ("severity", i18n::severity(lang, e.severity)),
                ("patient", e.patient_id.as_str()),
                ("vital", vital),
                ("value", &value),
                ("at", &i18n::datetime_zone(lang, e.reading_time, tz)),
            ],
        );
        if !e.summary.is_empty() {
            line.push_str(&format!(" - {}", e.summary));
        }
        line
    };
    let sections: [(&str, bool); 2] = [(tx.digest_open, true), (tx.digest_closed, false)];
    for (title, want_open) in sections {
        let items: Vec<&DigestLine> =
            lines.iter().filter(|l| (l.status == DigestItemStatus::Open) == want_open).collect();
        if items.is_empty() {
            continue;
        }
        text.push_str(&format!("\n{title}{}\n", tx.colon.trim_end()));
        html.push_str(&format!("<h3>{}</h3><ul>", escape_html(title)));
        for l in items {
            let line = describe(&l.entry);
            let status = match &l.status {
                DigestItemStatus::Open => String::new(),
                DigestItemStatus::Acknowledged { by, at } => {
                    fill(tx.digest_acked, &[("by", by.as_str()), ("at", &i18n::datetime(lang, *at, tz))])
                }
                DigestItemStatus::Resolved { at } => {
                    fill(tx.digest_resolved, &[("at", &i18n::datetime(lang, *at, tz))])
                }
            };
            text.push_str(&format!("- {line}{status}\n"));
            html.push_str(&format!("<li>{}{}", escape_html(&line), escape_html(&status)));
            if let Some(link) = &l.ack_link {
                text.push_str(&format!("  {}\n", fill(tx.ack_link, &[("link", link)])));
                html.push_str(&format!(" <a href=\"{}\">{}</a>", escape_html(link), escape_html(tx.ack_button)));
            }
            html.push_str("</li>");
        }
        html.push_str("</ul>");
    }
    let (text_footer, html_footer) = footers(lang);
    text.push_str(&text_footer);
    html.push_str(&html_footer);
    RenderedEmail {
        subject,
        text,
        html,
        chart_png: None,
        chart_cid: String::new(),
        message_id: format!("{nonce}@{id_domain}"),
        headers: vec![("X-Vitalwatch-Step".to_string(), Step::Digest.to_string())],
    }
}

#[cfg(feature = "mime")]
impl RenderedEmail {
    /// Assembles the MIME message: `multipart/related` { `multipart/alternative`
    /// { text/plain, text/html }, image/png (inline, Content-ID) }, or just the
    /// alternative part when there is no chart. `date` is the message date.
    pub fn to_message(&self, from: &Mailbox, to: &Physician, date: DateTime<Utc>) -> Result<Message, RenderError> {
        let address =
            to.email.as_str().parse().map_err(|e: lettre::address::AddressError| RenderError::Email(e.to_string()))?;
        let to_box = Mailbox::new(Some(to.name.clone()), address);
        let alternative = MultiPart::alternative_plain_html(self.text.clone(), self.html.clone());
        let mut builder = Message::builder()
            .from(from.clone())
            .to(to_box)
            .subject(self.subject.clone())
            .message_id(Some(format!("<{}>", self.message_id)))
            .date(SystemTime::from(date));
        for (name, value) in &self.headers {
            let name = HeaderName::new_from_ascii(name.clone()).map_err(|e| RenderError::Email(e.to_string()))?;
            builder = builder.raw_header(HeaderValue::new(name, value.clone()));
        }
        let result = match &self.chart_png {
            Some(png) => {
                let image = Attachment::new_inline(self.chart_cid.clone())
                    .body(png.clone(), ContentType::parse("image/png").map_err(|e| RenderError::Email(e.to_string()))?);
                builder.multipart(MultiPart::related().multipart(alternative).singlepart(image))
            }
            None => builder.multipart(alternative),
        };
        result.map_err(|e| RenderError::Email(e.to_string()))
    }
}
