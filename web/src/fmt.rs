//! Dates, times and numbers in the viewer's language and time zone.
//!
//! French: `07/12/2026 14:05`, decimal comma (`37,5`), 24-hour clock.
//! English: `7 Dec 2026, 14:05`, decimal point; the 24-hour clock too (a
//! clinical record is read across shifts; no AM/PM ambiguity).

use chrono::{DateTime, Datelike as _, TimeDelta, Timelike as _, Utc};
use chrono_tz::Tz;

use crate::i18n::Lang;

const EN_MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// A date and time, e.g. `07/12/2026 14:05` (fr) or `7 Dec 2026, 14:05` (en).
pub fn datetime(l: Lang, tz: Tz, t: DateTime<Utc>) -> String {
    let t = t.with_timezone(&tz);
    match l {
        Lang::Fr => format!("{:02}/{:02}/{} {:02}:{:02}", t.day(), t.month(), t.year(), t.hour(), t.minute()),
        Lang::En => {
            format!("{} {} {}, {:02}:{:02}", t.day(), EN_MONTHS[t.month0() as usize], t.year(), t.hour(), t.minute())
        }
    }
}

/// A date, e.g. `07/12/2026` (fr) or `7 Dec 2026` (en).
pub fn date(l: Lang, tz: Tz, t: DateTime<Utc>) -> String {
    let t = t.with_timezone(&tz);
    match l {
        Lang::Fr => format!("{:02}/{:02}/{}", t.day(), t.month(), t.year()),
        Lang::En => format!("{} {} {}", t.day(), EN_MONTHS[t.month0() as usize], t.year()),
    }
}

/// A short date without the year, for chart axes: `07/12` (fr), `7 Dec` (en).
pub fn day_month(l: Lang, tz: Tz, t: DateTime<Utc>) -> String {
    let t = t.with_timezone(&tz);
    match l {
        Lang::Fr => format!("{:02}/{:02}", t.day(), t.month()),
        Lang::En => format!("{} {}", t.day(), EN_MONTHS[t.month0() as usize]),
    }
}

/// A time of day, `14:05`.
pub fn time(_l: Lang, tz: Tz, t: DateTime<Utc>) -> String {
    let t = t.with_timezone(&tz);
    format!("{:02}:{:02}", t.hour(), t.minute())
}

/// A machine-readable time for `<time datetime=..>` (RFC 3339, UTC).
pub fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A number with `decimals` digits after the separator: `37,5` (fr), `37.5` (en).
/// Not finite: `–`.
pub fn number(l: Lang, v: f64, decimals: usize) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    let s = format!("{v:.decimals$}");
    let s = if s.starts_with('-') && s[1..].chars().all(|c| c == '0' || c == '.') { s[1..].to_owned() } else { s };
    match l {
        Lang::Fr => s.replace('.', ","),
        Lang::En => s,
    }
}

/// An elapsed time, coarse: `il y a 3 h` / `3 h ago`, `il y a 12 min` / `12 min ago`,
/// `il y a 2 j` / `2 d ago`; under a minute: `à l'instant` / `just now`.
pub fn ago(l: Lang, d: TimeDelta) -> String {
    let m = d.num_minutes().max(0);
    let (n, unit) = if m < 1 {
        return match l {
            Lang::Fr => "à l'instant".into(),
            Lang::En => "just now".into(),
        };
    } else if m < 60 {
        (m, "min")
    } else if m < 48 * 60 {
        (m / 60, "h")
    } else {
        (m / (24 * 60), if l == Lang::Fr { "j" } else { "d" })
    };
    match l {
        Lang::Fr => format!("il y a {n} {unit}"),
        Lang::En => format!("{n} {unit} ago"),
    }
}

/// Parses an IANA time zone name, falling back to `fallback`.
pub fn tz_or(name: &str, fallback: Tz) -> Tz {
    name.parse().unwrap_or(fallback)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;

    #[test]
    fn dates_follow_language_and_time_zone() {
        // 13:05 UTC in December is 14:05 in Paris (CET, UTC+1).
        let t = Utc.with_ymd_and_hms(2026, 12, 7, 13, 5, 0).unwrap();
        assert_eq!(datetime(Lang::Fr, chrono_tz::Europe::Paris, t), "07/12/2026 14:05");
        assert_eq!(datetime(Lang::En, chrono_tz::Europe::London, t), "7 Dec 2026, 13:05");
        // Summer: Paris is UTC+2.
        let s = Utc.with_ymd_and_hms(2026, 7, 1, 22, 30, 0).unwrap();
        assert_eq!(date(Lang::Fr, chrono_tz::Europe::Paris, s), "02/07/2026");
        assert_eq!(time(Lang::En, chrono_tz::Europe::Paris, s), "00:30");
        assert_eq!(day_month(Lang::En, chrono_tz::America::New_York, s), "1 Jul");
    }

    #[test]
    fn numbers_use_the_decimal_separator_of_the_language() {
        assert_eq!(number(Lang::Fr, 37.54, 1), "37,5");
        assert_eq!(number(Lang::En, 37.54, 1), "37.5");
        assert_eq!(number(Lang::Fr, 120.0, 0), "120");
        assert_eq!(number(Lang::En, -0.01, 1), "0.0");
        assert_eq!(number(Lang::Fr, f64::NAN, 1), "–");
    }

    #[test]
    fn elapsed_times_are_coarse() {
        assert_eq!(ago(Lang::Fr, TimeDelta::minutes(12)), "il y a 12 min");
        assert_eq!(ago(Lang::En, TimeDelta::minutes(190)), "3 h ago");
        assert_eq!(ago(Lang::Fr, TimeDelta::days(3)), "il y a 3 j");
        assert_eq!(ago(Lang::En, TimeDelta::seconds(20)), "just now");
    }
}
