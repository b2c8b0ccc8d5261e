//! Rendering of notifications: email (text + HTML + chart), SMS, and the
//! formatting helpers they share.

pub mod chart;
pub mod email;
pub mod sms;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::i18n::{self, Language};

/// Error while rendering a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The chart could not be drawn or encoded.
    #[error("chart rendering failed: {0}")]
    Chart(String),
    /// The email could not be assembled.
    #[error("email assembly failed: {0}")]
    Email(String),
    /// The notification does not fit the recipient (e.g. SMS without mobile number).
    #[error("cannot render for this recipient: {0}")]
    Recipient(&'static str),
}

/// Human unit for a UCUM unit (`mm[Hg]` -> `mmHg`, `Cel` -> `°C`).
pub fn display_unit(ucum: &str) -> &str {
    match ucum {
        "mm[Hg]" => "mmHg",
        "Cel" => "°C",
        other => other,
    }
}

/// A value with at most one decimal (integers without decimals).
pub fn format_value(v: f64) -> String {
    if !v.is_finite() {
        return "?".to_string();
    }
    if (v - v.round()).abs() < 1e-9 { format!("{}", v.round() as i64) } else { format!("{v:.1}") }
}

/// A value and its unit, `88 %`, `142 mmHg`, `38.9 °C`.
pub fn format_quantity(v: f64, ucum: &str) -> String {
    let unit = display_unit(ucum);
    if unit.is_empty() { format_value(v) } else { format!("{} {unit}", format_value(v)) }
}

/// `Tue 26 Nov 2026 14:02 CET` in the given zone.
pub fn format_local_time(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%a %d %b %Y %H:%M %Z").to_string()
}

/// A value with at most one decimal in the language's notation (`37,5` / `37.5`).
pub fn value_in(lang: Language, v: f64) -> String {
    i18n::number(lang, v, 1)
}

/// A value and its unit in the language's notation: `37,5 °C` / `37.5 °C`.
pub fn quantity_in(lang: Language, v: f64, ucum: &str) -> String {
    let unit = display_unit(ucum);
    if unit.is_empty() { value_in(lang, v) } else { format!("{} {unit}", value_in(lang, v)) }
}

/// Escapes text for HTML element content and attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The "not an emergency service" notice in `lang`.
pub fn footer(lang: Language) -> &'static str {
    match lang {
        Language::Fr => FOOTER_FR,
        Language::En => FOOTER_EN,
    }
}

/// The "not an emergency service" notice in English.
pub const FOOTER_EN: &str = "vitalwatch is a remote monitoring service, not an emergency service: alerts can be delayed or missed. In an emergency, call 15 (SAMU) or 112.";
/// The French footer line.
pub const FOOTER_FR: &str = "vitalwatch n'est pas un service d'urgence : les alertes peuvent être retardées ou perdues. En cas d'urgence, appelez le 15 (SAMU) ou le 112.";
