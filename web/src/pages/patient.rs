//! The patient page (`/patients/{id}?range=7d|30d|90d`) and its trend charts
//! (`/patients/{id}/chart/{code}.svg?range=..`): last reading per vital,
//! adherence this month, SVG trends from the hourly / daily aggregates with
//! the patient's threshold bands (time axis in the patient's time zone),
//! devices with battery and last heartbeat, episodes, program and rules with
//! their history. Everything goes through `AdminService` with the viewer's
//! actor: someone else's patient is the same 404 as an unknown one.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::Utc;
use chrono_tz::Tz;
use serde::Deserialize;
use vitalwatch_admin::service::patient_view::{PatientOverview, SeriesRange};
use vitalwatch_schemas::Code;

use super::{Nav, PageCtx, admin_error, error_page, render};
use crate::auth::Viewer;
use crate::chart;
use crate::fmt;
use crate::i18n::Lang;
use crate::state::AppState;

/// Texts of the patient page.
#[derive(Debug)]
pub struct PatientText {
    title: &'static str,
    program: &'static str,
    version: &'static str,
    default_rules: &'static str,
    edit_rules: &'static str,
    time_zone: &'static str,
    last_readings: &'static str,
    no_readings: &'static str,
    vital: &'static str,
    value: &'static str,
    when: &'static str,
    source: &'static str,
    manual: &'static str,
    device: &'static str,
    adherence: &'static str,
    adherence_line: &'static str,
    trends: &'static str,
    range_label: &'static str,
    chart_link: &'static str,
    devices: &'static str,
    no_devices: &'static str,
    battery: &'static str,
    signal: &'static str,
    firmware: &'static str,
    last_heartbeat: &'static str,
    never: &'static str,
    episodes: &'static str,
    no_episodes: &'static str,
    notes: &'static str,
    no_notes: &'static str,
    opened: &'static str,
    severity: &'static str,
    rule: &'static str,
    status: &'static str,
    summary: &'static str,
    status_open: &'static str,
    status_resolved: &'static str,
    status_closed: &'static str,
    history: &'static str,
    no_history: &'static str,
    author: &'static str,
    reason: &'static str,
    programs: [&'static str; 5],
}

const FR: PatientText = PatientText {
    title: "Patient",
    program: "Programme",
    version: "version des seuils",
    default_rules: ": aucune (seuils par défaut du programme)",
    edit_rules: "Voir ou modifier les seuils",
    time_zone: "fuseau horaire",
    last_readings: "Dernières mesures",
    no_readings: "Aucune mesure reçue.",
    vital: "Mesure",
    value: "Valeur",
    when: "Date",
    source: "Source",
    manual: "saisie manuelle",
    device: "appareil",
    adherence: "Observance ce mois-ci",
    adherence_line: "jours avec au moins une mesure sur",
    trends: "Tendances",
    range_label: "Période des graphiques",
    chart_link: "Graphique seul (SVG)",
    devices: "Appareils",
    no_devices: "Aucun appareil associé.",
    battery: "Batterie",
    signal: "Signal",
    firmware: "Micrologiciel",
    last_heartbeat: "Dernier signe de vie",
    never: "jamais",
    episodes: "Épisodes d'alerte",
    no_episodes: "Aucun épisode.",
    notes: "Notes et clôtures",
    no_notes: "Aucune note.",
    opened: "Ouvert le",
    severity: "Gravité",
    rule: "Règle",
    status: "Statut",
    summary: "Résumé",
    status_open: "ouvert",
    status_resolved: "résolu",
    status_closed: "clos",
    history: "Historique des seuils",
    no_history: "Les seuils par défaut du programme s'appliquent ; aucune modification enregistrée.",
    author: "Auteur",
    reason: "Motif",
    programs: [
        "Insuffisance cardiaque",
        "Hypertension artérielle",
        "BPCO / insuffisance respiratoire",
        "Diabète",
        "Surveillance générale",
    ],
};

const EN: PatientText = PatientText {
    title: "Patient",
    program: "Program",
    version: "thresholds version",
    default_rules: ": none (program default thresholds)",
    edit_rules: "View or change the thresholds",
    time_zone: "time zone",
    last_readings: "Latest readings",
    no_readings: "No reading received.",
    vital: "Reading",
    value: "Value",
    when: "Date",
    source: "Source",
    manual: "manual entry",
    device: "device",
    adherence: "Adherence this month",
    adherence_line: "days with at least one reading out of",
    trends: "Trends",
    range_label: "Chart period",
    chart_link: "Chart only (SVG)",
    devices: "Devices",
    no_devices: "No device enrolled.",
    battery: "Battery",
    signal: "Signal",
    firmware: "Firmware",
    last_heartbeat: "Last heartbeat",
    never: "never",
    episodes: "Alert episodes",
    no_episodes: "No episode.",
    notes: "Notes and closes",
    no_notes: "No note.",
    opened: "Opened",
    severity: "Severity",
    rule: "Rule",
    status: "Status",
    summary: "Summary",
    status_open: "open",
    status_resolved: "resolved",
    status_closed: "closed",
    history: "Thresholds history",
    no_history: "The program's default thresholds apply; no change recorded.",
    author: "Author",
    reason: "Reason",
    programs: ["Heart failure", "Hypertension", "COPD / respiratory failure", "Diabetes", "General monitoring"],
};

fn text(l: Lang) -> &'static PatientText {
    match l {
        Lang::Fr => &FR,
        Lang::En => &EN,
    }
}

/// The name of a care program in the viewer's language.
pub fn program_name(l: Lang, program: &str) -> &'static str {
    let t = text(l);
    match vitalwatch_rules_core::Program::parse(program) {
        Some(p) => {
            let i = vitalwatch_rules_core::Program::ALL.iter().position(|q| *q == p).unwrap_or(4);
            t.programs[i]
        }
        None => t.programs[4],
    }
}

/// Decimals shown for a value of `unit`.
pub fn decimals(unit: &str) -> usize {
    match unit {
        "kg" | "Cel" => 1,
        _ => 0,
    }
}

#[derive(Debug)]
struct ReadingRow {
    name: &'static str,
    value: String,
    unit: String,
    iso: String,
    when: String,
    ago: String,
    source: String,
}

#[derive(Debug)]
struct RangeLink {
    value: &'static str,
    label: &'static str,
    current: bool,
}

#[derive(Debug)]
struct ChartView {
    code: String,
    name: &'static str,
    svg: String,
}

#[derive(Debug)]
struct DeviceRow {
    id: String,
    battery: String,
    battery_low: bool,
    signal: String,
    firmware: String,
    heartbeat: String,
}

#[derive(Debug)]
struct EpisodeRow {
    id: String,
    opened: String,
    severity: &'static str,
    severity_class: String,
    rule: String,
    status: &'static str,
    summary: String,
}

#[derive(Debug)]
struct VersionRow {
    version: i32,
    when: String,
    author: String,
    program: &'static str,
    reason: String,
}

#[derive(Template)]
#[template(path = "patient.html")]
struct PatientPage {
    ctx: PageCtx,
    t: &'static PatientText,
    patient_id: String,
    program: &'static str,
    version: String,
    time_zone: String,
    last: Vec<ReadingRow>,
    adherence_days: u32,
    adherence_elapsed: u32,
    adherence_percent: String,
    range: &'static str,
    ranges: Vec<RangeLink>,
    charts: Vec<ChartView>,
    devices: Vec<DeviceRow>,
    episodes: Vec<EpisodeRow>,
    notes: Vec<NoteRow>,
    history: Vec<VersionRow>,
    monitoring: super::monitoring::MonitoringView,
}

/// A note of one of the patient's episodes (or a close with its outcome).
#[derive(Debug)]
struct NoteRow {
    episode_id: String,
    at: String,
    author: String,
    outcome: String,
    body: String,
}

/// The routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new().route("/patients/{id}", get(page)).route("/patients/{id}/chart/{file}", get(chart_svg))
}

#[derive(Debug, Deserialize)]
struct RangeQuery {
    #[serde(default)]
    range: Option<String>,
}

fn range_of(q: &RangeQuery) -> SeriesRange {
    q.range.as_deref().and_then(SeriesRange::parse).unwrap_or(SeriesRange::Month)
}

fn range_label(l: Lang, r: SeriesRange) -> &'static str {
    let t = chart::text(l);
    match r {
        SeriesRange::Week => t.week,
        SeriesRange::Month => t.month,
        SeriesRange::Quarter => t.quarter,
    }
}

/// The zone a patient's times are shown in: theirs, else the viewer's.
fn zone(name: &str, viewer: Tz) -> Tz {
    name.parse().unwrap_or(viewer)
}

/// The codes charted for an overview: every code with a reading, blood
/// pressure once (both components on one chart).
fn charted_codes(o: &PatientOverview) -> Vec<Code> {
    let mut out = Vec::new();
    for c in Code::ALL {
        let has = o.last_readings.iter().any(|r| r.code == c.loinc());
        let c = if c == Code::Diastolic { Code::Systolic } else { c };
        if has && !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

async fn page(State(s): State<AppState>, v: Viewer, Path(id): Path<String>, Query(q): Query<RangeQuery>) -> Response {
    let o = match s.admin.patient_overview(&v.actor, &id).await {
        Ok(o) => o,
        Err(e) => return admin_error(&v, e),
    };
    let history = match s.admin.rules_history(&v.actor, &id).await {
        Ok(h) => h,
        Err(e) => return admin_error(&v, e),
    };
    // Read-access log: a page whose access cannot be recorded is not shown (503).
    let web = vitalwatch_admin::model::AccessInterface::Web;
    if let Err(e) = s.admin.log_access(&v.actor, &o.patient.id, web, "GET /app/patients/{id}").await {
        return admin_error(&v, e);
    }
    let (l, t, common) = (v.lang, text(v.lang), crate::i18n::common(v.lang));
    let tz = zone(&o.time_zone, v.tz);
    let range = range_of(&q);
    let now = Utc::now();
    let mut charts = Vec::new();
    for code in charted_codes(&o) {
        match s.admin.patient_series(&v.actor, &id, code.loinc(), range).await {
            Ok(series) => charts.push(ChartView {
                code: code.loinc().to_owned(),
                name: if code == Code::Systolic { chart::bp_name(l) } else { chart::vital_name(l, code.loinc()) },
                svg: chart::svg(&series, tz, l, &format!("chart-{}", code.loinc())),
            }),
            Err(e) => return admin_error(&v, e),
        }
    }
    let last = o
        .last_readings
        .iter()
        .map(|r| ReadingRow {
            name: chart::vital_name(l, &r.code),
            value: fmt::number(l, r.value, decimals(&r.unit)),
            unit: chart::unit_label(&r.unit).to_owned(),
            iso: fmt::iso(r.time),
            when: fmt::datetime(l, tz, r.time),
            ago: fmt::ago(l, now - r.time),
            source: match (&r.source[..], &r.device_id) {
                ("device", Some(d)) => format!("{} {d}", t.device),
                ("device", None) => t.device.to_owned(),
                _ => t.manual.to_owned(),
            },
        })
        .collect();
    let devices = o
        .devices
        .iter()
        .map(|d| DeviceRow {
            id: d.device_id.clone(),
            battery: d.battery_percent.map_or_else(|| "–".into(), |b| format!("{} %", fmt::number(l, b, 0))),
            battery_low: d.battery_percent.is_some_and(|b| b < 20.0),
            signal: d.signal_dbm.map_or_else(|| "–".into(), |s| format!("{} dBm", fmt::number(l, s, 0))),
            firmware: d.firmware.clone().unwrap_or_else(|| "–".into()),
            heartbeat: d.last_heartbeat.map_or_else(
                || t.never.to_owned(),
                |h| format!("{} ({})", fmt::datetime(l, tz, h), fmt::ago(l, now - h)),
            ),
        })
        .collect();
    let episodes = o
        .episodes
        .iter()
        .map(|e| EpisodeRow {
            id: e.episode_id.clone(),
            opened: fmt::datetime(l, tz, e.opened_at),
            severity: common.severity(&e.severity),
            severity_class: e.severity.clone(),
            rule: e.rule_id.clone(),
            status: match e.status.as_str() {
                "open" => t.status_open,
                "closed" => t.status_closed,
                _ => t.status_resolved,
            },
            summary: e.summary.clone(),
        })
        .collect();
    let history = history
        .iter()
        .map(|h| VersionRow {
            version: h.version,
            when: fmt::datetime(l, tz, h.changed_at),
            author: h.author.clone(),
            program: program_name(l, h.program.as_deref().unwrap_or("")),
            reason: h.reason.clone().unwrap_or_default(),
        })
        .collect();
    let ranges = SeriesRange::ALL
        .into_iter()
        .map(|r| RangeLink { value: r.as_str(), label: range_label(l, r), current: r == range })
        .collect();
    // The care team's notes on this patient's episodes, newest first (the last 20).
    let notes = match s.admin.patient_notes(&v.actor, &o.patient.id, None, Some(20)).await {
        Ok(p) => p
            .items
            .into_iter()
            .map(|n| NoteRow {
                at: fmt::datetime(l, v.tz, n.at),
                author: n.author,
                outcome: n
                    .outcome
                    .map(|o| super::episode::outcome_label(super::episode::text(l), &o))
                    .unwrap_or_default(),
                body: n.body,
                episode_id: n.episode_id,
            })
            .collect(),
        Err(e) => return admin_error(&v, e),
    };
    let monitoring = match s.admin.patient_periods(&v.actor, &o.patient.id).await {
        Ok(p) => super::monitoring::view(&p, l, tz),
        Err(e) => return admin_error(&v, e),
    };
    render(PatientPage {
        ctx: PageCtx::new(&v, Nav::Patients),
        monitoring,
        notes,
        t,
        program: program_name(l, &o.rules.program),
        version: o.rules.version.map_or_else(|| t.default_rules.to_owned(), |n| n.to_string()),
        time_zone: tz.name().to_owned(),
        last,
        adherence_days: o.adherence.days_with_data,
        adherence_elapsed: o.adherence.days_elapsed,
        adherence_percent: fmt::number(l, o.adherence.ratio() * 100.0, 0),
        range: range.as_str(),
        ranges,
        charts,
        devices,
        episodes,
        history,
        patient_id: o.patient.id,
    })
}

/// `/patients/{id}/chart/{code}.svg`: one chart as an SVG document.
async fn chart_svg(
    State(s): State<AppState>,
    v: Viewer,
    Path((id, file)): Path<(String, String)>,
    Query(q): Query<RangeQuery>,
) -> Response {
    let Some(code) = file.strip_suffix(".svg") else {
        return error_page(Some(&v), StatusCode::NOT_FOUND, None);
    };
    let series = match s.admin.patient_series(&v.actor, &id, code, range_of(&q)).await {
        Ok(series) => series,
        Err(e) => return admin_error(&v, e),
    };
    let tz = zone(&series.time_zone, v.tz);
    let body = chart::svg(&series, tz, v.lang, &format!("chart-{code}"));
    let mut r = body.into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("image/svg+xml; charset=utf-8"));
    r
}
