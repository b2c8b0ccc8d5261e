//! `/reports/activity`: the monthly télésurveillance activity report, as a
//! printable page (a print stylesheet hides the navigation and the form) and
//! as a CSV download (`/reports/activity.csv`, the same query). Physicians and
//! nurses see their own patients, operators every patient (or one
//! physician's); the calendar month is in the viewer's time zone. Figures and
//! definitions: docs/activity-report.md.

use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::Utc;
use serde::Deserialize;
use vitalwatch_admin::report::{self, ActivityReport, AlertCounts, Month};
use vitalwatch_admin::service::report::ReportQuery;

use super::{Nav, PageCtx, admin_error, render};
use crate::auth::Viewer;
use crate::i18n::Lang;
use crate::state::AppState;

/// Texts of the report page.
#[derive(Debug)]
pub struct ReportText {
    title: &'static str,
    month: &'static str,
    show: &'static str,
    previous: &'static str,
    next: &'static str,
    csv: &'static str,
    print_hint: &'static str,
    zone: &'static str,
    patient: &'static str,
    days: &'static str,
    readings: &'static str,
    alerts: &'static str,
    acks: &'static str,
    ack_delay: &'static str,
    unacked: &'static str,
    actions: &'static str,
    total: &'static str,
    empty: &'static str,
    bp: &'static str,
    hr: &'static str,
    spo2: &'static str,
    weight: &'static str,
    temp: &'static str,
    glucose: &'static str,
    rr: &'static str,
    snoozes: &'static str,
    closes: &'static str,
    notes: &'static str,
    expertise: &'static str,
    rules: &'static str,
    minutes: &'static str,
    days_note: &'static str,
}

const FR: ReportText = ReportText {
    title: "Activité mensuelle de télésurveillance",
    month: "Mois",
    show: "Afficher",
    previous: "Mois précédent",
    next: "Mois suivant",
    csv: "Télécharger (CSV)",
    print_hint: "Imprimez cette page depuis le navigateur : la mise en page d'impression masque la navigation.",
    zone: "Fuseau horaire",
    patient: "Patient",
    days: "Jours avec données",
    readings: "Mesures",
    alerts: "Alertes",
    acks: "Acquittées",
    ack_delay: "Délai d'acquittement (médian / max)",
    unacked: "Non acquittées",
    actions: "Actions",
    total: "Total",
    empty: "Aucun patient dans vos équipes de soins.",
    bp: "PA",
    hr: "FC",
    spo2: "SpO2",
    weight: "Poids",
    temp: "Temp.",
    glucose: "Glycémie",
    rr: "FR",
    snoozes: "reports",
    closes: "clôtures",
    notes: "notes",
    expertise: "télé-expertises",
    rules: "modif. seuils",
    minutes: "min",
    days_note: "Jours calendaires (fuseau ci-dessus) avec au moins une mesure transmise, par date de mesure. Le seuil de facturation reste à apprécier par l'équipe.",
};

const EN: ReportText = ReportText {
    title: "Monthly telemonitoring activity",
    month: "Month",
    show: "Show",
    previous: "Previous month",
    next: "Next month",
    csv: "Download (CSV)",
    print_hint: "Print this page from the browser: the print layout hides the navigation.",
    zone: "Time zone",
    patient: "Patient",
    days: "Days with data",
    readings: "Readings",
    alerts: "Alerts",
    acks: "Acknowledged",
    ack_delay: "Acknowledgment delay (median / max)",
    unacked: "Unacknowledged",
    actions: "Actions",
    total: "Total",
    empty: "No patient in your care teams.",
    bp: "BP",
    hr: "HR",
    spo2: "SpO2",
    weight: "Weight",
    temp: "Temp.",
    glucose: "Glucose",
    rr: "RR",
    snoozes: "snoozes",
    closes: "closes",
    notes: "notes",
    expertise: "tele-expertise",
    rules: "rules changes",
    minutes: "min",
    days_note: "Calendar days (time zone above) with at least one transmitted reading, by measurement time. The billing threshold is the team's to apply.",
};

fn text(l: Lang) -> &'static ReportText {
    match l {
        Lang::Fr => &FR,
        Lang::En => &EN,
    }
}

/// One line of the table (a patient, or the totals).
#[derive(Debug)]
struct Line {
    id: String,
    days: String,
    readings_total: u64,
    readings: String,
    alerts: String,
    acked: u64,
    delay: String,
    unacked: u64,
    actions: String,
}

#[derive(Template)]
#[template(path = "reports_activity.html")]
struct ReportPage {
    ctx: PageCtx,
    t: &'static ReportText,
    month: String,
    zone: String,
    days_in_month: u32,
    query: String,
    previous: String,
    next: String,
    lines: Vec<Line>,
    total: Line,
}

/// The routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new().route("/reports/activity", get(page)).route("/reports/activity.csv", get(csv))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    #[serde(default)]
    month: Option<String>,
    #[serde(default)]
    patient: Option<String>,
    #[serde(default)]
    physician: Option<String>,
}

impl PageQuery {
    /// The month asked for, else the previous calendar month (the one a team reports on).
    fn month(&self, v: &Viewer) -> String {
        match self.month.as_deref().filter(|m| !m.is_empty()) {
            Some(m) => m.to_owned(),
            None => report::month_of(Utc::now(), v.tz).previous().to_string(),
        }
    }

    fn service_query(&self, v: &Viewer) -> ReportQuery {
        let some = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
        ReportQuery {
            month: self.month(v),
            patient: some(&self.patient),
            physician: some(&self.physician),
            tz: Some(v.tz.name().to_owned()),
            min_days: None,
            format: None,
        }
    }
}

fn query_string(month: &str, q: &ReportQuery) -> String {
    use super::worklist::urlencode;
    let mut s = format!("month={}", urlencode(month));
    if let Some(p) = &q.patient {
        s.push_str(&format!("&patient={}", urlencode(p)));
    }
    if let Some(d) = &q.physician {
        s.push_str(&format!("&physician={}", urlencode(d)));
    }
    s
}

fn minutes(secs: Option<i64>) -> String {
    secs.map_or_else(|| "–".to_owned(), |s| ((s + 30) / 60).to_string())
}

fn alerts(a: &AlertCounts) -> String {
    if a.total == 0 {
        return "0".into();
    }
    let parts: Vec<String> = report::SEVERITIES
        .iter()
        .filter(|s| a.of(s) > 0)
        .map(|s| format!("{} {}", a.of(s), s.chars().next().unwrap_or('?').to_ascii_uppercase()))
        .collect();
    format!("{} ({})", a.total, parts.join(", "))
}

#[allow(clippy::too_many_arguments)]
fn line(
    t: &ReportText,
    id: String,
    days: String,
    readings: &std::collections::BTreeMap<String, u64>,
    readings_total: u64,
    a: &AlertCounts,
    ack: &report::AckDelays,
    act: &report::Actions,
) -> Line {
    let names = [
        (report::BP_PANEL, t.bp),
        ("8867-4", t.hr),
        ("59408-5", t.spo2),
        ("29463-7", t.weight),
        ("8310-5", t.temp),
        ("41653-7", t.glucose),
        ("9279-1", t.rr),
    ];
    let readings = names
        .iter()
        .filter_map(|(c, n)| readings.get(*c).filter(|v| **v > 0).map(|v| format!("{n} {v}")))
        .collect::<Vec<_>>()
        .join(" · ");
    let delay = if ack.acknowledged == 0 {
        "–".to_owned()
    } else {
        format!("{} / {} {}", minutes(ack.median_secs), minutes(ack.max_secs), t.minutes)
    };
    let actions = format!(
        "{} {} · {} {} · {} {} · {} {} · {} {} · {} {}",
        act.acks,
        t.acks.to_lowercase(),
        act.snoozes,
        t.snoozes,
        act.closes,
        t.closes,
        act.notes,
        t.notes,
        act.expertise_requests,
        t.expertise,
        act.rules_changes,
        t.rules
    );
    Line {
        id,
        days,
        readings_total,
        readings,
        alerts: alerts(a),
        acked: ack.acknowledged,
        delay,
        unacked: ack.unacknowledged,
        actions,
    }
}

fn page_of(v: &Viewer, q: &ReportQuery, r: &ActivityReport) -> ReportPage {
    let t = text(v.lang);
    let month = Month::parse(&r.month).unwrap_or(Month { year: 2026, month: 1 });
    let lines = r
        .patients
        .iter()
        .map(|p| {
            line(
                t,
                p.patient_id.clone(),
                format!("{} / {}", p.days_with_data, r.days_in_month),
                &p.readings,
                p.readings_total,
                &p.alerts,
                &p.acknowledgment,
                &p.actions,
            )
        })
        .collect();
    let tt = &r.totals;
    let total = line(
        t,
        format!("{} ({})", t.total, tt.patients),
        tt.days_with_data.to_string(),
        &tt.readings,
        tt.readings_total,
        &tt.alerts,
        &tt.acknowledgment,
        &tt.actions,
    );
    ReportPage {
        ctx: PageCtx::new(v, Nav::Reports),
        t,
        month: r.month.clone(),
        zone: r.time_zone.clone(),
        days_in_month: r.days_in_month,
        query: query_string(&r.month, q),
        previous: query_string(&month.previous().to_string(), q),
        next: query_string(&month.next().to_string(), q),
        lines,
        total,
    }
}

async fn page(State(s): State<AppState>, v: Viewer, Query(q): Query<PageQuery>) -> Response {
    let q = q.service_query(&v);
    match s.admin.activity_report(&v.actor, &q).await {
        Ok(r) => render(page_of(&v, &q, &r)),
        Err(e) => admin_error(&v, e),
    }
}

async fn csv(State(s): State<AppState>, v: Viewer, Query(q): Query<PageQuery>) -> Response {
    let q = q.service_query(&v);
    match s.admin.activity_report(&v.actor, &q).await {
        Ok(r) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                (header::CONTENT_DISPOSITION, format!("attachment; filename=\"activity-{}.csv\"", r.month)),
            ],
            report::to_csv(&r),
        )
            .into_response(),
        Err(e) => admin_error(&v, e),
    }
}
