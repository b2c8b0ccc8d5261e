//! The 14-day chart of one vital with its threshold and baseline, drawn with
//! plotters into an RGB buffer and encoded as PNG.

use std::sync::OnceLock;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use plotters::prelude::*;
use plotters::style::FontStyle;

use super::{RenderError, display_unit, value_in};
use crate::i18n::{Language, fill};

/// The texts of the chart, one constant per language ([`CHART_FR`], [`CHART_EN`]).
#[derive(Debug)]
pub struct ChartText {
    /// Caption: `{title}`, `{unit}`, `{days}`.
    pub caption: &'static str,
    /// Legend of the threshold line, `{value}`.
    pub threshold: &'static str,
    /// Legend of the baseline, `{value}`.
    pub baseline: &'static str,
    /// Shown on an empty chart.
    pub no_readings: &'static str,
}

/// The English chart texts.
pub const CHART_EN: ChartText = ChartText {
    caption: "{title} ({unit}), last {days} days",
    threshold: "threshold {value}",
    baseline: "baseline {value}",
    no_readings: "no readings in this period",
};

/// The French chart texts.
pub const CHART_FR: ChartText = ChartText {
    caption: "{title} ({unit}), {days} derniers jours",
    threshold: "seuil {value}",
    baseline: "référence {value}",
    no_readings: "aucune mesure sur la période",
};

impl ChartText {
    /// The texts of `lang`.
    pub fn of(lang: Language) -> &'static ChartText {
        match lang {
            Language::Fr => &CHART_FR,
            Language::En => &CHART_EN,
        }
    }

    /// Every template by name (exhaustive: a new field must be listed).
    pub fn templates(&self) -> Vec<(&'static str, &'static str)> {
        let ChartText { caption, threshold, baseline, no_readings } = self;
        vec![("caption", caption), ("threshold", threshold), ("baseline", baseline), ("no_readings", no_readings)]
            .into_iter()
            .map(|(k, v)| (k, *v))
            .collect()
    }

    /// The caption of `data`.
    pub fn caption_of(&self, data: &ChartData) -> String {
        fill(
            self.caption,
            &[("title", &data.title), ("unit", display_unit(&data.unit)), ("days", &data.days.to_string())],
        )
    }
}

/// DejaVu Sans (Bitstream Vera license, see `assets/DejaVuSans-LICENSE.txt`).
static FONT_BYTES: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
const FONT: &str = "vw-dejavu-sans";

fn ensure_font() -> Result<(), RenderError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES).is_ok());
    if ok { Ok(()) } else { Err(RenderError::Chart("embedded font could not be loaded".into())) }
}

/// The data of one chart.
#[derive(Debug, Clone, PartialEq)]
pub struct ChartData {
    /// Title, e.g. `SpO2`.
    pub title: String,
    /// UCUM unit of values, threshold and baseline.
    pub unit: String,
    /// Readings (time, value); unsorted and non-finite values are tolerated.
    pub points: Vec<(DateTime<Utc>, f64)>,
    /// Threshold line, if any.
    pub threshold: Option<f64>,
    /// Baseline line, if any.
    pub baseline: Option<f64>,
    /// The triggering reading, highlighted.
    pub highlight: Option<(DateTime<Utc>, f64)>,
    /// Right edge of the chart (usually the alert's reading time or now).
    pub end: DateTime<Utc>,
    /// Days shown (14).
    pub days: u32,
}

/// Pixel size of the chart.
pub const CHART_SIZE: (u32, u32) = (640, 280);

/// Renders the chart as a PNG, with day labels in `tz` and texts and numbers
/// in `lang` (the title in `data` is already in `lang`).
pub fn render_chart_png(data: &ChartData, tz: Tz, lang: Language) -> Result<Vec<u8>, RenderError> {
    ensure_font()?;
    let (w, h) = CHART_SIZE;
    let mut rgb = vec![255u8; (w * h * 3) as usize];
    draw(data, tz, lang, &mut rgb).map_err(|e| RenderError::Chart(e.to_string()))?;
    encode_png(&rgb, w, h)
}

fn encode_png(rgb: &[u8], w: u32, h: u32) -> Result<Vec<u8>, RenderError> {
    let mut out = Vec::with_capacity(32 * 1024);
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_compression(png::Compression::Fast);
    let mut writer = enc.write_header().map_err(|e| RenderError::Chart(e.to_string()))?;
    writer.write_image_data(rgb).map_err(|e| RenderError::Chart(e.to_string()))?;
    writer.finish().map_err(|e| RenderError::Chart(e.to_string()))?;
    Ok(out)
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn draw(data: &ChartData, tz: Tz, lang: Language, buf: &mut [u8]) -> DrawResult {
    let tx = ChartText::of(lang);
    let days = f64::from(data.days.clamp(1, 90));
    let start = data.end - Duration::days(i64::from(data.days.clamp(1, 90)));
    // x = days before `end` (negative), so no datetime feature is needed.
    let x_of = |t: DateTime<Utc>| (t - data.end).num_seconds() as f64 / 86_400.0;
    let mut pts: Vec<(f64, f64)> = data
        .points
        .iter()
        .filter(|(t, v)| v.is_finite() && *t >= start && *t <= data.end)
        .map(|(t, v)| (x_of(*t), *v))
        .collect();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));

    let mut ys: Vec<f64> = pts.iter().map(|p| p.1).collect();
    ys.extend(data.threshold.iter().chain(data.baseline.iter()).filter(|v| v.is_finite()));
    if let Some((_, v)) = data.highlight.filter(|(_, v)| v.is_finite()) {
        ys.push(v);
    }
    let (mut lo, mut hi) = ys.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(*v), h.max(*v)));
    if !lo.is_finite() || !hi.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.12).max(hi.abs() * 0.02).max(1.0);
    let (lo, hi) = (lo - pad, hi + pad);

    let root = BitMapBackend::with_buffer(buf, CHART_SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let caption = tx.caption_of(data);
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, (FONT, 16).into_font())
        .margin(10)
        .margin_right(24)
        .x_label_area_size(28)
        .y_label_area_size(48)
        .build_cartesian_2d(-days..0.0, lo..hi)?;
    let end = data.end;
    let label_day = move |x: &f64| {
        let t = end + Duration::seconds((*x * 86_400.0) as i64);
        t.with_timezone(&tz).format("%d/%m").to_string()
    };
    chart
        .configure_mesh()
        .x_labels(8)
        .y_labels(6)
        .x_label_formatter(&label_day)
        .y_label_formatter(&|y| value_in(lang, *y))
        .label_style((FONT, 11).into_font())
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;

    if let Some(t) = data.threshold.filter(|v| v.is_finite()) {
        let red = RGBColor(200, 30, 30);
        chart
            .draw_series(DashedLineSeries::new(vec![(-days, t), (0.0, t)], 8, 5, red.stroke_width(2)))?
            .label(fill(tx.threshold, &[("value", &value_in(lang, t))]))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], red.stroke_width(2)));
    }
    if let Some(b) = data.baseline.filter(|v| v.is_finite()) {
        let grey = RGBColor(120, 120, 120);
        chart
            .draw_series(LineSeries::new(vec![(-days, b), (0.0, b)], grey.stroke_width(1)))?
            .label(fill(tx.baseline, &[("value", &value_in(lang, b))]))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], grey));
    }
    let blue = RGBColor(30, 90, 180);
    chart.draw_series(LineSeries::new(pts.iter().copied(), blue.stroke_width(2)))?;
    chart.draw_series(pts.iter().map(|p| Circle::new(*p, 2, blue.filled())))?;
    if let Some((t, v)) = data.highlight.filter(|(_, v)| v.is_finite()) {
        let x = x_of(t).clamp(-days, 0.0);
        chart.draw_series(std::iter::once(Circle::new((x, v), 5, RGBColor(200, 30, 30).filled())))?;
    }
    if pts.is_empty() {
        root.draw(&Text::new(
            tx.no_readings,
            ((CHART_SIZE.0 / 2 - 90) as i32, (CHART_SIZE.1 / 2) as i32),
            (FONT, 14).into_font(),
        ))?;
    }
    if data.threshold.is_some() || data.baseline.is_some() {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font((FONT, 11).into_font())
            .background_style(WHITE.mix(0.8))
            .border_style(RGBColor(200, 200, 200))
            .draw()?;
    }
    root.present()?;
    Ok(())
}
