//! Trend charts as accessible SVG, pure (no I/O, no JS): a [`Series`] of
//! hourly or daily buckets (min / mean / max) with the patient's threshold
//! levels, drawn in the patient's time zone.
//!
//! What is drawn, back to front: threshold bands (the alerting side of each
//! trigger, shaded by severity, labelled), the y grid with values in the
//! viewer's locale and the unit, the time axis (ticks at local midnights),
//! then per code a min–max band with its mean line, broken wherever a bucket
//! is missing (a gap, never an interpolation), and a point per bucket (larger
//! when the data are sparse, each with its own `<title>`). Blood pressure
//! draws systolic (solid) and diastolic (dashed) with a legend, so nothing is
//! told by colour alone. Colours are presentation attributes, not `style`
//! (the pages' CSP forbids inline styles).
//!
//! `<title>` and `<desc>` (referenced by `aria-labelledby`) say what the chart
//! shows in words: vital, unit, period, buckets with data, latest value,
//! thresholds.

use std::fmt::Write as _;

use chrono::{DateTime, Datelike, Duration, TimeZone as _, Utc};
use chrono_tz::Tz;
use vitalwatch_admin::service::patient_view::{Series, SeriesLine, SeriesRange, ThresholdBand};

use crate::fmt;
use crate::i18n::Lang;

/// Width of the drawing, user units (it scales to its container).
pub const WIDTH: f64 = 720.0;
/// Height of the drawing.
pub const HEIGHT: f64 = 280.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 44.0;

/// Texts of the charts.
pub struct ChartText {
    /// "no reading in this period".
    pub no_data: &'static str,
    /// Range names, by [`SeriesRange`].
    pub week: &'static str,
    /// "30 days".
    pub month: &'static str,
    /// "90 days".
    pub quarter: &'static str,
    /// "hourly" bucket description.
    pub hourly: &'static str,
    /// "daily".
    pub daily: &'static str,
    /// "min–max band and mean".
    pub band_and_mean: &'static str,
    /// "buckets with readings".
    pub with_data: &'static str,
    /// "latest".
    pub latest: &'static str,
    /// "thresholds".
    pub thresholds: &'static str,
    /// "no threshold".
    pub no_threshold: &'static str,
    /// "times in".
    pub times_in: &'static str,
    /// "readings".
    pub readings: &'static str,
    /// "mean".
    pub mean: &'static str,
}

const FR: ChartText = ChartText {
    no_data: "aucune mesure sur la période",
    week: "7 jours",
    month: "30 jours",
    quarter: "90 jours",
    hourly: "par heure",
    daily: "par jour",
    band_and_mean: "bande minimum–maximum et moyenne",
    with_data: "périodes avec mesures",
    latest: "dernière moyenne",
    thresholds: "seuils",
    no_threshold: "aucun seuil",
    times_in: "heures de",
    readings: "mesures",
    mean: "moyenne",
};

const EN: ChartText = ChartText {
    no_data: "no reading in this period",
    week: "7 days",
    month: "30 days",
    quarter: "90 days",
    hourly: "hourly",
    daily: "daily",
    band_and_mean: "min–max band and mean",
    with_data: "periods with readings",
    latest: "latest mean",
    thresholds: "thresholds",
    no_threshold: "no threshold",
    times_in: "times in",
    readings: "readings",
    mean: "mean",
};

/// The chart texts of a language.
pub fn text(l: Lang) -> &'static ChartText {
    match l {
        Lang::Fr => &FR,
        Lang::En => &EN,
    }
}

/// The name of a vital (by LOINC code) in a language.
pub fn vital_name(l: Lang, code: &str) -> &'static str {
    let (fr, en) = match code {
        "8867-4" => ("Fréquence cardiaque", "Heart rate"),
        "8480-6" => ("Pression systolique", "Systolic pressure"),
        "8462-4" => ("Pression diastolique", "Diastolic pressure"),
        "59408-5" => ("SpO2", "SpO2"),
        "29463-7" => ("Poids", "Weight"),
        "8310-5" => ("Température", "Temperature"),
        "41653-7" => ("Glycémie", "Blood glucose"),
        "9279-1" => ("Fréquence respiratoire", "Respiratory rate"),
        _ => ("Mesure", "Reading"),
    };
    match l {
        Lang::Fr => fr,
        Lang::En => en,
    }
}

/// "Blood pressure" (the chart of both components).
pub fn bp_name(l: Lang) -> &'static str {
    match l {
        Lang::Fr => "Pression artérielle",
        Lang::En => "Blood pressure",
    }
}

/// The unit as people write it (UCUM `mm[Hg]` is "mmHg", `Cel` is "°C").
pub fn unit_label(ucum: &str) -> &str {
    match ucum {
        "mm[Hg]" => "mmHg",
        "Cel" => "°C",
        "/min" => "/min",
        u => u,
    }
}

/// Decimals shown for a unit.
fn decimals(ucum: &str) -> usize {
    match ucum {
        "kg" | "Cel" => 1,
        _ => 0,
    }
}

/// Fill colour of a threshold band of `severity` (contrast is carried by the
/// labels; the bands are light).
fn band_fill(severity: &str) -> &'static str {
    match severity {
        "critical" => "#c62828",
        "high" => "#e65100",
        "medium" => "#f9a825",
        _ => "#1565c0",
    }
}

/// XML text escaping.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
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

/// The value scale: data and thresholds, padded, rounded to nice ticks.
fn y_scale(series: &Series) -> (f64, f64, Vec<f64>) {
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for b in series.lines.iter().flat_map(|l| &l.buckets) {
        lo = lo.min(b.min);
        hi = hi.max(b.max);
    }
    let data = lo.is_finite();
    // A threshold far from the data would squash it: the scale takes in those
    // within reach (three times the data's spread, or a quarter of its level);
    // the description names them all.
    let reach = if data { ((hi - lo) * 3.0).max(hi.abs().max(lo.abs()) * 0.25).max(1.0) } else { 0.0 };
    for t in &series.thresholds {
        let near = !data || (t.value >= lo - reach && t.value <= hi + reach);
        if near {
            lo = lo.min(t.value);
            hi = hi.max(t.value);
        }
    }
    if !lo.is_finite() || !hi.is_finite() {
        (lo, hi) = (0.0, 100.0);
    }
    if (hi - lo).abs() < 1e-9 {
        (lo, hi) = (lo - 1.0, hi + 1.0);
    }
    let step = nice_step((hi - lo) / 4.0);
    let lo = (lo / step).floor() * step;
    let hi = (hi / step).ceil() * step;
    let mut ticks = Vec::new();
    let mut v = lo;
    while v <= hi + step * 1e-6 && ticks.len() < 12 {
        ticks.push(v);
        v += step;
    }
    (lo, hi, ticks)
}

/// 1, 2, 2.5 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    let raw = if raw.is_finite() && raw > 0.0 { raw } else { 1.0 };
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0].into_iter().map(|m| m * p).find(|s| *s >= raw).unwrap_or(10.0 * p)
}

/// Local midnights between `from` and `to` in `tz`, every `every` days.
fn day_ticks(from: DateTime<Utc>, to: DateTime<Utc>, tz: Tz, every: u32) -> Vec<DateTime<Utc>> {
    let mut out = Vec::new();
    let mut day = from.with_timezone(&tz).date_naive();
    let last = to.with_timezone(&tz).date_naive();
    while day <= last && out.len() < 400 {
        if let Some(t) = day.and_hms_opt(0, 0, 0).and_then(|m| tz.from_local_datetime(&m).earliest()) {
            let t = t.with_timezone(&Utc);
            let keep = match every {
                1 => true,
                n => day.day0().is_multiple_of(n) && day.day() <= 28,
            };
            if t >= from && t <= to && keep {
                out.push(t);
            }
        }
        day = day.succ_opt().unwrap_or(last + Duration::days(1));
    }
    out
}

/// Runs of consecutive buckets (no missing bucket between them).
fn runs(line: &SeriesLine, width_secs: i64) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=line.buckets.len() {
        let broken =
            i == line.buckets.len() || (line.buckets[i].start - line.buckets[i - 1].start).num_seconds() > width_secs;
        if broken {
            out.push(start..i);
            start = i;
        }
    }
    out
}

fn band_words(l: Lang, b: &ThresholdBand, unit: &str) -> String {
    format!(
        "{} {} {} ({})",
        b.op.replace(">=", "≥").replace("<=", "≤"),
        fmt::number(l, b.value, decimals(unit)),
        unit_label(unit),
        severity_word(l, &b.severity)
    )
}

fn severity_word(l: Lang, s: &str) -> &'static str {
    match (l, s) {
        (Lang::Fr, "critical") => "critique",
        (Lang::Fr, "high") => "élevée",
        (Lang::Fr, "medium") => "moyenne",
        (Lang::Fr, "low") => "basse",
        (Lang::Fr, _) => "info",
        (Lang::En, "critical") => "critical",
        (Lang::En, "high") => "high",
        (Lang::En, "medium") => "medium",
        (Lang::En, "low") => "low",
        (Lang::En, _) => "info",
    }
}

/// The chart of `series` as a standalone SVG document, its time axis in `tz`
/// and its numbers and words in `lang`. `id` prefixes the element ids (several
/// charts on one page).
pub fn svg(series: &Series, tz: Tz, lang: Lang, id: &str) -> String {
    let t = text(lang);
    let unit = series.unit.as_str();
    let dec = decimals(unit);
    let (x0, x1) = (LEFT, WIDTH - RIGHT);
    let (y0, y1) = (HEIGHT - BOTTOM, TOP);
    let from = series.from.timestamp() as f64;
    let span = ((series.to.timestamp() as f64) - from).max(1.0);
    let x = |at: DateTime<Utc>| x0 + ((at.timestamp() as f64 - from) / span).clamp(0.0, 1.0) * (x1 - x0);
    // Buckets are drawn at their middle.
    let half = series.bucket_secs / 2;
    let xb = |at: DateTime<Utc>| x(at + Duration::seconds(half));
    let (lo, hi, yticks) = y_scale(series);
    let y = |v: f64| y0 - ((v - lo) / (hi - lo)).clamp(0.0, 1.0) * (y0 - y1);

    let name = match series.lines.len() {
        2 => bp_name(lang),
        _ => vital_name(lang, &series.code),
    };
    let range = match series.range {
        SeriesRange::Week => t.week,
        SeriesRange::Month => t.month,
        SeriesRange::Quarter => t.quarter,
    };
    let per = if series.bucket_secs == 3600 { t.hourly } else { t.daily };
    let title = format!("{name} ({}), {range}", unit_label(unit));
    let buckets: usize = series.lines.iter().map(|l| l.buckets.len()).sum();
    let mut desc = format!("{}, {}. ", per, t.band_and_mean);
    for line in &series.lines {
        let last = line.buckets.last();
        let _ = write!(desc, "{}: {} {}", vital_name(lang, &line.code), line.buckets.len(), t.with_data);
        if let Some(b) = last {
            let _ = write!(
                desc,
                ", {} {} {} ({})",
                t.latest,
                fmt::number(lang, b.mean, dec),
                unit_label(unit),
                fmt::date(lang, tz, b.start)
            );
        }
        desc.push_str(". ");
    }
    if buckets == 0 {
        let _ = write!(desc, "{}. ", t.no_data);
    }
    if series.thresholds.is_empty() {
        let _ = write!(desc, "{}.", t.no_threshold);
    } else {
        let words: Vec<String> = series.thresholds.iter().map(|b| band_words(lang, b, unit)).collect();
        let _ = write!(desc, "{}: {}.", t.thresholds, words.join(", "));
    }
    let _ = write!(desc, " {} {}.", t.times_in, tz.name());

    let mut s = String::with_capacity(8 * 1024);
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" class="chart" aria-labelledby="{id}-title {id}-desc" font-family="system-ui, sans-serif" font-size="12">"#
    );
    let _ = write!(s, r#"<title id="{id}-title">{}</title><desc id="{id}-desc">{}</desc>"#, esc(&title), esc(&desc));
    let _ = write!(
        s,
        r##"<rect x="{x0}" y="{y1}" width="{}" height="{}" fill="#ffffff" stroke="#767676"/>"##,
        x1 - x0,
        y0 - y1
    );

    // Threshold bands: the alerting side of each trigger.
    for b in series.thresholds.iter().filter(|b| b.value >= lo && b.value <= hi) {
        let yv = y(b.value);
        let (top, bottom) = if b.upward { (y1, yv) } else { (yv, y0) };
        let _ = write!(
            s,
            r##"<g class="threshold" data-code="{}" data-value="{}" data-severity="{}"><rect x="{x0}" y="{top:.1}" width="{:.1}" height="{:.1}" fill="{}" fill-opacity="0.12"/><line x1="{x0}" x2="{x1}" y1="{yv:.1}" y2="{yv:.1}" stroke="{}" stroke-dasharray="6 3"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#5d1a1a">{}</text></g>"##,
            esc(&b.code),
            b.value,
            esc(&b.severity),
            x1 - x0,
            (bottom - top).max(0.0),
            band_fill(&b.severity),
            band_fill(&b.severity),
            x1 - 4.0,
            if b.upward { yv - 4.0 } else { yv + 14.0 },
            esc(&band_words(lang, b, unit)),
        );
    }

    // Value axis.
    s.push_str(r#"<g class="y-axis">"#);
    for v in &yticks {
        let yv = y(*v);
        let _ = write!(
            s,
            r##"<line x1="{x0}" x2="{x1}" y1="{yv:.1}" y2="{yv:.1}" stroke="#d0d0d0"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#333333">{}</text>"##,
            x0 - 6.0,
            yv + 4.0,
            esc(&fmt::number(lang, *v, dec)),
        );
    }
    let _ = write!(
        s,
        r##"<text class="unit" x="14" y="{:.1}" transform="rotate(-90 14 {:.1})" text-anchor="middle" fill="#333333">{}</text></g>"##,
        (y0 + y1) / 2.0,
        (y0 + y1) / 2.0,
        esc(unit_label(unit)),
    );

    // Time axis: local midnights (every day over 7 days, fewer beyond).
    let every = match series.range {
        SeriesRange::Week => 1,
        SeriesRange::Month => 5,
        SeriesRange::Quarter => 14,
    };
    s.push_str(r#"<g class="x-axis">"#);
    for at in day_ticks(series.from, series.to, tz, every) {
        let xv = x(at);
        let _ = write!(
            s,
            r##"<line x1="{xv:.1}" x2="{xv:.1}" y1="{y0}" y2="{:.1}" stroke="#767676"/><text x="{xv:.1}" y="{:.1}" text-anchor="middle" fill="#333333">{}</text>"##,
            y0 + 5.0,
            y0 + 18.0,
            esc(&fmt::day_month(lang, tz, at)),
        );
    }
    let _ = write!(
        s,
        r##"<text class="tz" x="{x1}" y="{:.1}" text-anchor="end" fill="#333333">{}</text></g>"##,
        HEIGHT - 6.0,
        esc(tz.name()),
    );

    // The data: per line a band, a mean line, points.
    let sparse = buckets <= 45;
    for (i, line) in series.lines.iter().enumerate() {
        let dash = if i == 0 { "" } else { r#" stroke-dasharray="5 3""# };
        let (stroke, fill) = if i == 0 { ("#0b4f8a", "#0b4f8a") } else { ("#6a1b9a", "#6a1b9a") };
        let _ = write!(s, r#"<g class="line" data-code="{}">"#, esc(&line.code));
        for run in runs(line, series.bucket_secs) {
            let part = &line.buckets[run];
            if part.len() >= 2 {
                let mut pts: Vec<String> = part.iter().map(|b| format!("{:.1},{:.1}", xb(b.start), y(b.max))).collect();
                pts.extend(part.iter().rev().map(|b| format!("{:.1},{:.1}", xb(b.start), y(b.min))));
                let _ = write!(
                    s,
                    r#"<polygon class="range" points="{}" fill="{fill}" fill-opacity="0.18" stroke="none"/>"#,
                    pts.join(" ")
                );
                let mean: Vec<String> = part.iter().map(|b| format!("{:.1},{:.1}", xb(b.start), y(b.mean))).collect();
                let _ = write!(
                    s,
                    r#"<polyline class="mean" points="{}" fill="none" stroke="{stroke}" stroke-width="2"{dash}/>"#,
                    mean.join(" ")
                );
            } else if let Some(b) = part.first() {
                let xv = xb(b.start);
                let _ = write!(
                    s,
                    r#"<line class="range" x1="{xv:.1}" x2="{xv:.1}" y1="{:.1}" y2="{:.1}" stroke="{stroke}" stroke-width="3" stroke-opacity="0.35"/>"#,
                    y(b.min),
                    y(b.max)
                );
            }
            for b in part {
                let r = if sparse || part.len() == 1 { 3.5 } else { 1.5 };
                let words = format!(
                    "{} {}: {} {} {} (min {}, max {}), {} {}",
                    vital_name(lang, &line.code),
                    fmt::datetime(lang, tz, b.start),
                    t.mean,
                    fmt::number(lang, b.mean, dec),
                    unit_label(unit),
                    fmt::number(lang, b.min, dec),
                    fmt::number(lang, b.max, dec),
                    b.n,
                    t.readings,
                );
                let _ = write!(
                    s,
                    r##"<circle class="bucket" cx="{:.1}" cy="{:.1}" r="{r}" fill="{fill}" stroke="#ffffff"><title>{}</title></circle>"##,
                    xb(b.start),
                    y(b.mean),
                    esc(&words),
                );
            }
        }
        s.push_str("</g>");
    }
    if series.lines.len() > 1 {
        // Legend: the dash pattern tells the lines apart, not only the colour.
        for (i, line) in series.lines.iter().enumerate() {
            let lx = x0 + 8.0 + 170.0 * i as f64;
            let (stroke, dash) = if i == 0 { ("#0b4f8a", "") } else { ("#6a1b9a", r#" stroke-dasharray="5 3""#) };
            let _ = write!(
                s,
                r##"<g class="legend"><line x1="{lx:.1}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="{stroke}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}" fill="#333333">{}</text></g>"##,
                lx + 22.0,
                y1 + 12.0,
                y1 + 12.0,
                lx + 28.0,
                y1 + 16.0,
                esc(vital_name(lang, &line.code)),
            );
        }
    }
    if buckets == 0 {
        let _ = write!(
            s,
            r##"<text class="empty" x="{:.1}" y="{:.1}" text-anchor="middle" fill="#333333">{}</text>"##,
            (x0 + x1) / 2.0,
            (y0 + y1) / 2.0,
            esc(t.no_data),
        );
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use vitalwatch_admin::service::patient_view::SeriesBucket;

    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn bucket(start: &str, min: f64, mean: f64, max: f64) -> SeriesBucket {
        SeriesBucket { start: at(start), n: 2, mean, min, max }
    }

    fn weight(range: SeriesRange, buckets: Vec<SeriesBucket>) -> Series {
        Series {
            patient_id: "pat-1".into(),
            code: "29463-7".into(),
            unit: "kg".into(),
            range,
            bucket_secs: range.bucket_secs(),
            from: at("2026-11-07T00:00:00Z"),
            to: at("2026-12-07T10:00:00Z"),
            time_zone: "Europe/Paris".into(),
            lines: vec![SeriesLine { code: "29463-7".into(), name: "body weight".into(), buckets }],
            thresholds: vec![ThresholdBand {
                code: "29463-7".into(),
                rule_id: "threshold.weight.high".into(),
                op: ">=".into(),
                upward: true,
                severity: "high".into(),
                value: 90.0,
                clear: 88.0,
            }],
        }
    }

    fn count(s: &str, needle: &str) -> usize {
        s.matches(needle).count()
    }

    #[test]
    fn a_daily_chart_has_a_point_per_bucket_gaps_thresholds_and_words() {
        let s = weight(
            SeriesRange::Month,
            vec![
                bucket("2026-12-01T00:00:00Z", 80.0, 80.5, 81.0),
                bucket("2026-12-02T00:00:00Z", 80.2, 80.4, 80.6),
                // 3 December missing: a gap.
                bucket("2026-12-04T00:00:00Z", 81.0, 81.5, 82.0),
            ],
        );
        let svg = svg(&s, chrono_tz::Europe::Paris, Lang::Fr, "c1");
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""), "{svg}");
        assert!(svg.contains(r#"role="img""#) && svg.contains(r#"aria-labelledby="c1-title c1-desc""#));
        assert!(svg.contains(r#"<title id="c1-title">Poids (kg), 30 jours</title>"#), "{svg}");
        let desc = svg.split("<desc id=\"c1-desc\">").nth(1).unwrap().split("</desc>").next().unwrap();
        assert!(desc.contains("3 périodes avec mesures"), "{desc}");
        assert!(desc.contains("dernière moyenne 81,5 kg (04/12/2026)"), "{desc}");
        assert!(desc.contains("seuils: ≥ 90,0 kg (élevée)"), "{desc}");
        assert!(desc.contains("Europe/Paris"), "{desc}");
        assert_eq!(count(&svg, r#"class="bucket""#), 3, "one point per bucket");
        // Two consecutive days: one band and one mean line; the lone day after the gap: a whisker.
        assert_eq!(count(&svg, r#"<polygon class="range""#), 1);
        assert_eq!(count(&svg, r#"<polyline class="mean""#), 1);
        assert_eq!(count(&svg, r#"<line class="range""#), 1);
        assert!(svg.contains(r#"data-value="90""#) && svg.contains(r#"data-severity="high""#), "the threshold band");
        assert!(svg.contains(r#"class="unit""#) && svg.contains(">kg</text>"), "the unit on the value axis");
        // Ticks every 5 days at Paris midnights, labelled day/month.
        assert!(svg.contains(">01/12</text>") && svg.contains(">06/12</text>"), "{svg}");
        assert!(svg.contains("81,5"), "numbers in the French locale");
        assert_eq!(count(&svg, "<g"), count(&svg, "</g>"));
        assert!(!svg.contains("style=") && !svg.contains("<script"), "no inline style or script");
    }

    #[test]
    fn an_hourly_chart_ticks_at_local_midnights_and_an_empty_one_says_so() {
        let mut s = weight(SeriesRange::Week, vec![]);
        s.from = at("2026-11-30T11:00:00Z");
        s.to = at("2026-12-07T10:30:00Z");
        let svg = svg(&s, chrono_tz::Europe::Paris, Lang::En, "c2");
        assert!(svg.contains("Weight (kg), 7 days"), "{svg}");
        assert!(svg.contains("no reading in this period"), "{svg}");
        assert_eq!(count(&svg, r#"class="bucket""#), 0);
        // Paris midnights from 1 to 7 December (23:00 UTC the day before).
        let ticks = count(&svg, r##"stroke="#767676"/><text"##);
        assert_eq!(ticks, 7, "{svg}");
        assert!(svg.contains(">1 Dec</text>") && svg.contains(">7 Dec</text>"), "{svg}");
    }

    #[test]
    fn blood_pressure_draws_both_codes_told_apart_by_dashes_and_a_legend() {
        let mut s = weight(SeriesRange::Month, vec![bucket("2026-12-01T00:00:00Z", 120.0, 125.0, 130.0)]);
        s.code = "8480-6".into();
        s.unit = "mm[Hg]".into();
        s.lines[0].code = "8480-6".into();
        s.lines.push(SeriesLine {
            code: "8462-4".into(),
            name: "diastolic blood pressure".into(),
            buckets: vec![bucket("2026-12-01T00:00:00Z", 80.0, 82.0, 85.0)],
        });
        s.thresholds = vec![];
        let svg = svg(&s, chrono_tz::UTC, Lang::En, "bp");
        assert!(svg.contains("Blood pressure (mmHg), 30 days"), "{svg}");
        assert_eq!(count(&svg, r#"class="legend""#), 2);
        assert!(svg.contains("Systolic pressure") && svg.contains("Diastolic pressure"));
        assert_eq!(count(&svg, r#"class="bucket""#), 2);
        assert!(svg.contains("no threshold"), "{svg}");
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(esc("<a & \"b\">"), "&lt;a &amp; &quot;b&quot;&gt;");
        assert_eq!(nice_step(0.3), 0.5);
        assert_eq!(nice_step(17.0), 20.0);
    }
}
