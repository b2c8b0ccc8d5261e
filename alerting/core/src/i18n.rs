//! Languages of notifications (issue #16): French and English.
//!
//! Every text a recipient reads (email, SMS, chart caption, acknowledgment
//! page, SMS answer) comes from a catalogue: a struct of `&'static str` fields
//! with one French and one English constant next to the code that uses it, so
//! a missing translation fails to compile. Templates name their arguments in
//! braces (`{at}`) and are filled with [`fill`]; the tests check that both
//! languages of every template use the same arguments.
//!
//! The language of a recipient is [`Physician::language`](crate::team::Physician)
//! when set, else the deployment default (`alerting.default_language`, French
//! unless configured). Dates and times are shown in the recipient's time zone,
//! numbers with the language's decimal separator (`37,5` / `37.5`).

use std::fmt;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::severity::Severity;

/// A language notifications are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Language {
    /// French (the default of a French deployment).
    #[default]
    Fr,
    /// English.
    En,
}

/// Error for a language code that is not supported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown language {0:?}: expected \"fr\" (French) or \"en\" (English)")]
pub struct UnknownLanguage(pub String);

impl Language {
    /// Both languages.
    pub const ALL: [Language; 2] = [Language::Fr, Language::En];

    /// The ISO 639-1 code (`fr`, `en`), as in `<html lang>`.
    pub fn code(self) -> &'static str {
        match self {
            Language::Fr => "fr",
            Language::En => "en",
        }
    }

    /// Parses a code: `fr` or `en` (case-insensitive, surrounding spaces ignored).
    ///
    /// # Errors
    ///
    /// [`UnknownLanguage`] for anything else (`de`, `fr-FR`, an empty string).
    pub fn parse(s: &str) -> Result<Self, UnknownLanguage> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fr" => Ok(Language::Fr),
            "en" => Ok(Language::En),
            _ => Err(UnknownLanguage(s.chars().take(20).collect())),
        }
    }

    /// The language a browser prefers among French and English, from its
    /// `Accept-Language` header (`fr-FR,fr;q=0.9,en;q=0.8`): the supported
    /// range with the highest weight (the first on a tie). `None` when the
    /// header names neither (or only with `q=0`); `*` does not choose.
    pub fn from_accept_language(header: &str) -> Option<Language> {
        let mut best: Option<(Language, u32)> = None;
        for item in header.split(',').take(32) {
            let mut parts = item.split(';');
            let range = parts.next().unwrap_or("").trim();
            let primary = range.split('-').next().unwrap_or("").to_ascii_lowercase();
            let Ok(lang) = Language::parse(&primary) else { continue };
            // Weight in thousandths; a malformed q counts as 1.
            let q = parts
                .find_map(|p| p.trim().strip_prefix("q=").or_else(|| p.trim().strip_prefix("Q=")))
                .map_or(1000, |q| q.trim().parse::<f64>().map_or(1000, |v| (v.clamp(0.0, 1.0) * 1000.0) as u32));
            if q > 0 && best.is_none_or(|(_, b)| q > b) {
                best = Some((lang, q));
            }
        }
        best.map(|(l, _)| l)
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl std::str::FromStr for Language {
    type Err = UnknownLanguage;
    fn from_str(s: &str) -> Result<Self, UnknownLanguage> {
        Language::parse(s)
    }
}

impl TryFrom<String> for Language {
    type Error = UnknownLanguage;
    fn try_from(s: String) -> Result<Self, UnknownLanguage> {
        Language::parse(&s)
    }
}

impl From<Language> for String {
    fn from(l: Language) -> String {
        l.code().to_string()
    }
}

/// Fills a template: every `{name}` of `args` is replaced by its value (in
/// one pass, so values are never re-scanned). Unknown names stay as they are.
pub fn fill(template: &str, args: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}').and_then(|close| {
            let name = &after[..close];
            args.iter().find(|(k, _)| *k == name).map(|(_, v)| (close, *v))
        }) {
            Some((close, value)) => {
                out.push_str(value);
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The argument names of a template (`{name}`), sorted: the tests compare
/// them across languages.
pub fn placeholders(template: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else { break };
        let name = &after[..close];
        if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            out.push(name);
        }
        rest = &after[close + 1..];
    }
    out.sort_unstable();
    out
}

/// A number with at most `decimals` decimals (trailing zeros dropped) and the
/// language's decimal separator: `37,5` (fr), `37.5` (en), `88`; `?` when not finite.
pub fn number(lang: Language, v: f64, decimals: usize) -> String {
    if !v.is_finite() {
        return "?".to_string();
    }
    let mut s = format!("{v:.decimals$}");
    if s.contains('.') {
        while s.ends_with('0') {
            s.pop();
        }
        if s.ends_with('.') {
            s.pop();
        }
    }
    if s == "-0" {
        s = "0".into();
    }
    match lang {
        Language::Fr => s.replace('.', ","),
        Language::En => s,
    }
}

/// A date and time in `tz`: `14/07/2026 à 10:29` (fr), `Tue 14 Jul 2026 10:29 CEST` (en).
pub fn datetime(lang: Language, t: DateTime<Utc>, tz: Tz) -> String {
    let local = t.with_timezone(&tz);
    match lang {
        Language::Fr => local.format("%d/%m/%Y à %H:%M").to_string(),
        Language::En => local.format("%a %d %b %Y %H:%M %Z").to_string(),
    }
}

/// A date and time in `tz` followed by the zone's IANA name:
/// `14/07/2026 à 10:29 (Europe/Paris)`.
pub fn datetime_zone(lang: Language, t: DateTime<Utc>, tz: Tz) -> String {
    format!("{} ({})", datetime(lang, t, tz), tz.name())
}

/// The severity as shown to a reader: `CRITIQUE` / `CRITICAL`.
pub fn severity(lang: Language, s: Severity) -> &'static str {
    match lang {
        Language::En => s.label(),
        Language::Fr => match s {
            Severity::Info => "INFO",
            Severity::Low => "FAIBLE",
            Severity::Medium => "MOYENNE",
            Severity::High => "ÉLEVÉE",
            Severity::Critical => "CRITIQUE",
        },
    }
}

/// The name of a vital sign: `fréquence cardiaque` / `heart rate`.
pub fn vital(lang: Language, code: vitalwatch_schemas::Code) -> &'static str {
    use vitalwatch_schemas::Code;
    match lang {
        Language::En => code.display(),
        Language::Fr => match code {
            Code::HeartRate => "fréquence cardiaque",
            Code::Systolic => "pression artérielle systolique",
            Code::Diastolic => "pression artérielle diastolique",
            Code::Spo2 => "SpO2",
            Code::BodyWeight => "poids",
            Code::BodyTemperature => "température",
            Code::BloodGlucose => "glycémie",
            Code::RespiratoryRate => "fréquence respiratoire",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_parse_and_unknown_ones_are_refused() {
        assert_eq!(Language::parse(" FR "), Ok(Language::Fr));
        assert_eq!(Language::parse("en"), Ok(Language::En));
        let e = Language::parse("de").unwrap_err();
        assert_eq!(e.to_string(), "unknown language \"de\": expected \"fr\" (French) or \"en\" (English)");
        assert!(Language::parse("fr-FR").is_err());
        assert!(serde_json::from_str::<Language>("\"es\"").is_err());
        assert_eq!(serde_json::to_string(&Language::Fr).unwrap(), "\"fr\"");
        assert_eq!(Language::default(), Language::Fr);
    }

    #[test]
    fn accept_language_picks_the_best_supported_range() {
        let f = Language::from_accept_language;
        assert_eq!(f("fr-FR,fr;q=0.9,en-US;q=0.8,en;q=0.7"), Some(Language::Fr));
        assert_eq!(f("de-DE,de;q=0.9,en;q=0.8,fr;q=0.5"), Some(Language::En));
        assert_eq!(f("en;q=0.2, fr;q=0.3"), Some(Language::Fr));
        assert_eq!(f("de, *;q=0.5"), None);
        assert_eq!(f("fr;q=0, en;q=0"), None);
        assert_eq!(f(""), None);
        assert_eq!(f("EN-gb"), Some(Language::En));
    }

    #[test]
    fn numbers_use_the_decimal_separator_of_the_language() {
        assert_eq!(number(Language::Fr, 37.5, 1), "37,5");
        assert_eq!(number(Language::En, 37.5, 1), "37.5");
        assert_eq!(number(Language::Fr, 88.0, 1), "88");
        assert_eq!(number(Language::Fr, -0.01, 1), "0");
        assert_eq!(number(Language::En, f64::NAN, 1), "?");
    }

    #[test]
    fn templates_are_filled_once() {
        assert_eq!(fill("a {x} b {y} {z}", &[("x", "{y}"), ("y", "2")]), "a {y} b 2 {z}");
        assert_eq!(placeholders("{b} and {a} {"), vec!["a", "b"]);
    }
}
