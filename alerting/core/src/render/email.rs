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
use super::{FOOTER_EN, FOOTER_FR, RenderError, escape_html, format_local_time, format_quantity};
use crate::ack::AckCode;
use crate::caps::{DigestEntry, DigestItemStatus, DigestLine};
use crate::episode::EpisodeState;
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

/// Everything one alert email shows.
#[derive(Debug, Clone, Copy)]
pub struct AlertEmailInput<'a> {
    /// The notification.
    pub notification: &'a Notification,
    /// The episode.
    pub episode: &'a EpisodeState,
    /// The recipient (for the time zone and greeting).
    pub recipient: &'a Physician,
    /// The signed acknowledgment URL (pages and reminders).
    pub ack_link: Option<&'a str>,
    /// The SMS acknowledgment code, if one was assigned.
    pub ack_code: Option<&'a AckCode>,
    /// The last 14 days of the vital (time, value), for the chart.
    pub history: &'a [(DateTime<Utc>, f64)],
    /// Domain used in Message-ID and Content-ID.
    pub id_domain: &'a str,
}

/// Renders the alert email. The chart is drawn when the alert is about one vital.
pub fn render_alert_email(input: &AlertEmailInput<'_>) -> Result<RenderedEmail, RenderError> {
    let n = input.notification;
    let ep = input.episode;
    let d = &ep.details;
    let tz = input.recipient.time_zone.tz();
    let patient = ep.patient_id.as_str();
    let vital = match d.code {
        Some(c) => c.display(),
        None if d.is_technical() => "device heartbeat",
        None => "multi-parameter score",
    };
    let sev = n.severity.label();
    let nonce = n.key.digest_hex();
    let at = |t: DateTime<Utc>| format!("{} ({})", format_local_time(t, tz), tz.name());
    let message_id = format!("{nonce}@{}", input.id_domain);
    let chart_cid = format!("chart-{nonce}@{}", input.id_domain);

    let (kind, intro) = match n.step {
        Step::Page { index: 0, .. } if d.historical => (
            sev.to_string(),
            format!(
                "A HISTORICAL reading needs your attention: it was measured at {}{}. It describes the patient at that time, not now.",
                at(d.reading_time),
                d.received_at.map(|r| format!(" and received at {}", at(r))).unwrap_or_default()
            ),
        ),
        Step::Page { index: 0, .. } if d.is_technical() => (
            sev.to_string(),
            "A monitoring device has stopped sending heartbeats. This is a technical alert for the care team (check the device, its battery and connection), not a clinical reading.".to_string(),
        ),
        Step::Page { index: 0, .. } => (sev.to_string(), "A new alert needs your attention.".to_string()),
        Step::Page { .. } => (
            format!("{sev} (escalated)"),
            "This alert was not acknowledged in time and is escalated to you.".to_string(),
        ),
        Step::Reminder { number, .. } => {
            (format!("REMINDER {sev}"), format!("Reminder {number}: this alert is still not acknowledged."))
        }
        Step::Resolved => ("RESOLVED".to_string(), "This alert is resolved: no action is needed.".to_string()),
        // Digests are rendered by `render_digest_email`; kept total for safety.
        Step::Digest => ("DIGEST".to_string(), "This alert was grouped into your digest.".to_string()),
    };
    let value = d.value.map(|v| format_quantity(v, &d.unit));
    let tag = if d.historical { " - HISTORICAL reading" } else { "" };
    let subject = match &value {
        Some(v) => format!("[vitalwatch] {kind}{tag} - {vital} {v} - patient {patient}"),
        None => format!("[vitalwatch] {kind}{tag} - {vital} - patient {patient}"),
    };

    // Facts, as (label, value) rows shared by text and HTML.
    let mut rows: Vec<(&str, String)> = vec![
        ("Patient (pseudonymous id)", patient.to_string()),
        ("Severity", sev.to_string()),
        (
            "Vital",
            match d.code {
                Some(c) => format!("{} (LOINC {})", c.display(), c.loinc()),
                None => vital.to_string(),
            },
        ),
    ];
    if let Some(v) = &value {
        rows.push(("Value", v.clone()));
    }
    if d.is_technical() {
        rows.push(("Silent since", at(d.reading_time)));
    } else {
        let reading =
            if d.historical { "HISTORICAL (arrived late; not the patient's current state)" } else { "current" };
        rows.push(("Reading", reading.to_string()));
        rows.push(("Measured at", at(d.reading_time)));
        if let Some(r) = d.received_at {
            rows.push(("Received at", at(r)));
        }
    }
    if let Some(t) = d.threshold {
        rows.push(("Threshold crossed", format_quantity(t, &d.unit)));
    }
    if let Some(b) = d.baseline {
        rows.push(("Baseline", format_quantity(b, &d.unit)));
    }
    if !d.summary.is_empty() {
        rows.push(("Summary", d.summary.clone()));
    }
    rows.push(("Rule", format!("{} ({})", d.rule_id, d.rule_kind)));
    let delay = d.detected_at - d.reading_time;
    let late_note = if d.historical {
        let since = d.received_at.map_or(delay, |r| r - d.reading_time);
        Some(format!(
            "Historical reading: measured at {}, received {} h {} min later. Check the patient's current state before acting.",
            at(d.reading_time),
            since.num_hours(),
            since.num_minutes() % 60
        ))
    } else {
        (delay > chrono::Duration::minutes(30)).then(|| {
            format!(
                "Note: this reading was taken {} h {} min before it was processed (delayed upload).",
                delay.num_hours(),
                delay.num_minutes() % 60
            )
        })
    };

    let chart_png = match (n.step, d.code) {
        (Step::Resolved | Step::Digest, _) | (_, None) => None,
        (_, Some(code)) => Some(render_chart_png(
            &ChartData {
                title: code.display().to_string(),
                unit: d.unit.clone(),
                points: input.history.to_vec(),
                threshold: d.threshold,
                baseline: d.baseline,
                highlight: d.value.map(|v| (d.reading_time, v)),
                end: d.reading_time.max(d.detected_at),
                days: 14,
            },
            tz,
        )?),
    };

    let ack_text = match (n.step, input.ack_link, input.ack_code) {
        (Step::Resolved | Step::Digest, _, _) => String::new(),
        (_, Some(link), Some(code)) => {
            format!("Acknowledge: {link}\nOr reply \"ACK {code}\" to the SMS alert.\n")
        }
        (_, Some(link), None) => format!("Acknowledge: {link}\n"),
        (_, None, Some(code)) => {
            format!("Acknowledge by replying \"ACK {code}\" to the SMS alert.\n")
        }
        (_, None, None) => String::new(),
    };

    let mut text = format!("Dear {},\n\n{intro}\n\n", input.recipient.name);
    for (label, v) in &rows {
        text.push_str(&format!("{label}: {v}\n"));
    }
    if let Some(note) = &late_note {
        text.push_str(&format!("\n{note}\n"));
    }
    if chart_png.is_some() {
        text.push_str("\nThe HTML version of this message shows the last 14 days of this vital.\n");
    }
    if !ack_text.is_empty() {
        text.push('\n');
        text.push_str(&ack_text);
    }
    text.push_str(&format!("\n--\n{FOOTER_EN}\n{FOOTER_FR}\n"));

    let color = match n.severity {
        crate::Severity::Critical => "#b00020",
        crate::Severity::High => "#d9480f",
        crate::Severity::Medium => "#e8a200",
        _ => "#1e5ab4",
    };
    let mut html = String::with_capacity(4096);
    html.push_str("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>");
    html.push_str(&escape_html(&subject));
    html.push_str("</title></head><body style=\"font-family:Arial,Helvetica,sans-serif;color:#222;max-width:680px\">");
    html.push_str(&format!(
        "<div style=\"background:{color};color:#fff;padding:10px 14px;font-weight:bold\">vitalwatch - {}</div>",
        escape_html(&kind)
    ));
    html.push_str(&format!(
        "<p>Dear {},</p><p>{}</p><table style=\"border-collapse:collapse\">",
        escape_html(&input.recipient.name),
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
            "<p><img src=\"cid:{}\" width=\"640\" height=\"280\" alt=\"{} over the last 14 days\"></p>",
            escape_html(&chart_cid),
            escape_html(vital)
        ));
    }
    if n.step.is_page() {
        if let Some(link) = input.ack_link {
            html.push_str(&format!(
                "<p><a href=\"{}\" style=\"background:{color};color:#fff;padding:10px 18px;text-decoration:none;display:inline-block\">Acknowledge</a></p>",
                escape_html(link)
            ));
        }
        if let Some(code) = input.ack_code {
            html.push_str(&format!(
                "<p>Or reply <strong>ACK {}</strong> to the SMS alert.</p>",
                escape_html(code.as_str())
            ));
        }
    }
    html.push_str(&format!(
        "<hr><p style=\"font-size:12px;color:#666\">{}<br><span lang=\"fr\">{}</span></p></body></html>",
        escape_html(FOOTER_EN),
        escape_html(FOOTER_FR)
    ));

    let mut headers = vec![
        ("X-Vitalwatch-Reading-Time".to_string(), d.reading_time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
        ("X-Vitalwatch-Step".to_string(), n.step.to_string()),
    ];
    if !d.trace_id.is_empty() && d.trace_id.bytes().all(|b| b.is_ascii_graphic()) {
        headers.push(("X-Vitalwatch-Trace".to_string(), d.trace_id.clone()));
    }
    Ok(RenderedEmail { subject, text, html, chart_png, chart_cid, message_id, headers })
}

/// Renders a digest of folded low-severity alerts: open episodes first, each
/// with its acknowledgment link, then the ones acknowledged or resolved since
/// they were folded (listed, marked, without a link). Times are in the
/// recipient's time zone. `digest_key` gives the deterministic Message-ID.
pub fn render_digest_email(
    recipient: &Physician,
    lines: &[DigestLine],
    digest_key: &str,
    id_domain: &str,
) -> RenderedEmail {
    let tz = recipient.time_zone.tz();
    let nonce = crate::notification::hex(&<sha2::Sha256 as sha2::Digest>::digest(digest_key.as_bytes())[..16]);
    let open = lines.iter().filter(|l| l.status == DigestItemStatus::Open).count();
    let subject = format!("[vitalwatch] Digest - {} alert(s), {open} open", lines.len());
    let intro =
        "These alerts were grouped because of your hourly notification limit, or because they are informational:";
    let mut text = format!("Dear {},\n\n{intro}\n", recipient.name);
    let mut html = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title></head><body style=\"font-family:Arial,Helvetica,sans-serif\"><p>Dear {},</p><p>{}</p>",
        escape_html(&subject),
        escape_html(&recipient.name),
        escape_html(intro)
    );
    let describe = |e: &DigestEntry| {
        let vital = e.code.map(|c| c.display()).unwrap_or("multi-parameter score");
        let value = e.value.map(|v| format!(" {}", format_quantity(v, &e.unit))).unwrap_or_default();
        let mut line = format!(
            "{} - patient {} - {vital}{value} - measured {} ({})",
            e.severity.label(),
            e.patient_id,
            format_local_time(e.reading_time, tz),
            tz.name()
        );
        if !e.summary.is_empty() {
            line.push_str(&format!(" - {}", e.summary));
        }
        line
    };
    let sections: [(&str, bool); 2] =
        [("Open", true), ("No action needed (acknowledged or resolved since they were grouped)", false)];
    for (title, want_open) in sections {
        let items: Vec<&DigestLine> =
            lines.iter().filter(|l| (l.status == DigestItemStatus::Open) == want_open).collect();
        if items.is_empty() {
            continue;
        }
        text.push_str(&format!("\n{title}:\n"));
        html.push_str(&format!("<h3>{}</h3><ul>", escape_html(title)));
        for l in items {
            let line = describe(&l.entry);
            let status = match &l.status {
                DigestItemStatus::Open => String::new(),
                DigestItemStatus::Acknowledged { by, at } => {
                    format!(" - acknowledged by {by} at {}", format_local_time(*at, tz))
                }
                DigestItemStatus::Resolved { at } => format!(" - resolved at {}", format_local_time(*at, tz)),
            };
            text.push_str(&format!("- {line}{status}\n"));
            html.push_str(&format!("<li>{}{}", escape_html(&line), escape_html(&status)));
            if let Some(link) = &l.ack_link {
                text.push_str(&format!("  Acknowledge: {link}\n"));
                html.push_str(&format!(" <a href=\"{}\">Acknowledge</a>", escape_html(link)));
            }
            html.push_str("</li>");
        }
        html.push_str("</ul>");
    }
    text.push_str(&format!("\n--\n{FOOTER_EN}\n{FOOTER_FR}\n"));
    html.push_str(&format!(
        "<hr><p style=\"font-size:12px;color:#666\">{}<br><span lang=\"fr\">{}</span></p></body></html>",
        escape_html(FOOTER_EN),
        escape_html(FOOTER_FR)
    ));
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
