//! The worklist (`/worklist`): open episodes of the viewer's patients, most
//! severe then oldest first, with escalation and snooze state, current vs
//! previous value and filters; `/worklist/rows` is the rows fragment that
//! `app.js` polls (ETag: 304 when unchanged).

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use vitalwatch_admin::AdminError;
use vitalwatch_admin::service::worklist::{WorklistQuery, WorklistRow};

use crate::auth::Viewer;
use crate::fmt;
use crate::i18n::Lang;
use crate::pages::{Nav, PageCtx, admin_error, error_page, render};
use crate::state::AppState;

/// The worklist's texts.
pub(crate) struct WorklistText {
    pub title: &'static str,
    pub filters: &'static str,
    pub severity: &'static str,
    pub program: &'static str,
    pub acknowledged: &'static str,
    pub snoozed: &'static str,
    pub any: &'static str,
    pub yes: &'static str,
    pub no: &'static str,
    pub apply: &'static str,
    pub reset: &'static str,
    pub patient: &'static str,
    pub alert: &'static str,
    pub value: &'static str,
    pub opened: &'static str,
    pub ack: &'static str,
    pub escalation: &'static str,
    pub snooze: &'static str,
    pub empty: &'static str,
    pub more: &'static str,
    pub previous: &'static str,
    pub mean_7d: &'static str,
    pub not_acknowledged: &'static str,
    pub by: &'static str,
    pub until: &'static str,
    pub paged: &'static str,
    pub next_step: &'static str,
    pub no_next_step: &'static str,
    pub expertise_open: &'static str,
    pub open_episode: &'static str,
    pub critical: &'static str,
    pub high: &'static str,
    pub medium: &'static str,
    pub low: &'static str,
    pub info: &'static str,
    pub sent: &'static str,
    pub pending: &'static str,
    pub failed: &'static str,
    pub cancelled: &'static str,
    pub reminder: &'static str,
    pub refreshing: &'static str,
}

const FR: WorklistText = WorklistText {
    title: "Liste de travail",
    filters: "Filtres",
    severity: "Gravité",
    program: "Programme",
    acknowledged: "Pris en compte",
    snoozed: "En sourdine",
    any: "Tous",
    yes: "Oui",
    no: "Non",
    apply: "Filtrer",
    reset: "Réinitialiser",
    patient: "Patient",
    alert: "Alerte",
    value: "Valeur",
    opened: "Ouverte",
    ack: "Prise en compte",
    escalation: "Escalade",
    snooze: "Sourdine",
    empty: "Aucun épisode ouvert.",
    more: "Épisodes suivants",
    previous: "précédente",
    mean_7d: "moyenne 7 j",
    not_acknowledged: "Non pris en compte",
    by: "par",
    until: "jusqu'à",
    paged: "Alerté",
    next_step: "Prochaine étape",
    no_next_step: "Aucune",
    expertise_open: "Avis demandé",
    open_episode: "Ouvrir l'épisode",
    critical: "Critique",
    high: "Élevée",
    medium: "Moyenne",
    low: "Faible",
    info: "Info",
    sent: "envoyé",
    pending: "en attente",
    failed: "échec",
    cancelled: "annulé",
    reminder: "rappel",
    refreshing: "Mise à jour automatique toutes les 15 s",
};

const EN: WorklistText = WorklistText {
    title: "Worklist",
    filters: "Filters",
    severity: "Severity",
    program: "Program",
    acknowledged: "Acknowledged",
    snoozed: "Snoozed",
    any: "Any",
    yes: "Yes",
    no: "No",
    apply: "Filter",
    reset: "Reset",
    patient: "Patient",
    alert: "Alert",
    value: "Value",
    opened: "Opened",
    ack: "Acknowledgment",
    escalation: "Escalation",
    snooze: "Snooze",
    empty: "No open episode.",
    more: "Next episodes",
    previous: "previous",
    mean_7d: "7-day mean",
    not_acknowledged: "Not acknowledged",
    by: "by",
    until: "until",
    paged: "Paged",
    next_step: "Next step",
    no_next_step: "None",
    expertise_open: "Advice requested",
    open_episode: "Open the episode",
    critical: "Critical",
    high: "High",
    medium: "Medium",
    low: "Low",
    info: "Info",
    sent: "sent",
    pending: "pending",
    failed: "failed",
    cancelled: "cancelled",
    reminder: "reminder",
    refreshing: "Refreshed automatically every 15 s",
};

pub(crate) fn text(l: Lang) -> &'static WorklistText {
    match l {
        Lang::Fr => &FR,
        Lang::En => &EN,
    }
}

/// A severity's label.
pub(crate) fn severity_label(t: &WorklistText, s: &str) -> &'static str {
    match s {
        "critical" => t.critical,
        "high" => t.high,
        "medium" => t.medium,
        "low" => t.low,
        _ => t.info,
    }
}

/// A delivery status's label.
pub(crate) fn status_label(t: &WorklistText, s: &str) -> &'static str {
    match s {
        "sent" => t.sent,
        "pending" => t.pending,
        "failed" => t.failed,
        _ => t.cancelled,
    }
}

/// The worklist's filters as the query string carries them (`acknowledged`
/// and `snoozed`: `yes`, `no` or empty).
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct Filters {
    #[serde(default)]
    severity: String,
    #[serde(default)]
    program: String,
    #[serde(default)]
    acknowledged: String,
    #[serde(default)]
    snoozed: String,
    #[serde(default)]
    after: String,
}

fn yes_no(s: &str) -> Option<bool> {
    match s {
        "yes" => Some(true),
        "no" => Some(false),
        _ => None,
    }
}

fn non_empty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

impl Filters {
    fn query(&self) -> WorklistQuery {
        WorklistQuery {
            severity: non_empty(&self.severity),
            program: non_empty(&self.program),
            acknowledged: yes_no(&self.acknowledged),
            snoozed: yes_no(&self.snoozed),
            patient: None,
            after: non_empty(&self.after),
            limit: None,
        }
    }

    /// The query string of these filters (without the cursor), URL-encoded.
    fn query_string(&self) -> String {
        let mut parts = Vec::new();
        for (k, v) in [
            ("severity", &self.severity),
            ("program", &self.program),
            ("acknowledged", &self.acknowledged),
            ("snoozed", &self.snoozed),
        ] {
            if !v.trim().is_empty() {
                parts.push(format!("{k}={}", urlencode(v.trim())));
            }
        }
        parts.join("&")
    }
}

/// Percent-encoding of a query value (unreserved characters kept).
pub(crate) fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One page sent or pending, for display.
pub(crate) struct PageLine {
    pub recipient: String,
    pub channel: String,
    pub step: String,
    pub status: &'static str,
    pub status_class: String,
    pub at: String,
}

/// One row, formatted for the viewer.
pub(crate) struct RowView {
    pub episode_id: String,
    pub href: String,
    pub patient_id: String,
    pub patient_href: String,
    pub severity: String,
    pub severity_label: &'static str,
    pub summary: String,
    pub program: String,
    pub code: String,
    pub current: Option<String>,
    pub previous: Option<String>,
    pub mean_7d: Option<String>,
    pub opened: String,
    pub opened_ago: String,
    pub ack: Option<String>,
    pub snooze: Option<String>,
    pub pages: Vec<PageLine>,
    pub next_step: Option<String>,
    pub expertise_open: bool,
}

fn value(l: Lang, v: f64, unit: Option<&str>) -> String {
    let n = fmt::number(l, v, if v.fract() == 0.0 { 0 } else { 1 });
    match unit {
        Some(u) if !u.is_empty() => format!("{n} {u}"),
        _ => n,
    }
}

pub(crate) fn row_view(v: &Viewer, r: &WorklistRow) -> RowView {
    let (l, tz, t) = (v.lang, v.tz, text(v.lang));
    let now = chrono::Utc::now();
    let unit = r.unit.as_deref();
    RowView {
        episode_id: r.episode_id.clone(),
        href: format!("/episodes/{}", urlencode(&r.episode_id)),
        patient_id: r.patient_id.clone(),
        patient_href: format!("/patients/{}", urlencode(&r.patient_id)),
        severity: r.severity.clone(),
        severity_label: severity_label(t, &r.severity),
        summary: r.summary.clone(),
        program: r.program.clone(),
        code: r.code.clone(),
        current: r.current.as_ref().map(|c| value(l, c.value, unit)),
        previous: r.previous.as_ref().map(|p| value(l, p.value, unit)),
        mean_7d: r.mean_7d.map(|m| value(l, m, unit)),
        opened: fmt::datetime(l, tz, r.opened_at),
        opened_ago: fmt::ago(l, now - r.opened_at),
        ack: r
            .acknowledgment
            .as_ref()
            .filter(|_| r.acknowledged)
            .map(|a| format!("{} {} · {}", t.by, a.by, fmt::time(l, tz, a.at))),
        snooze: r.snooze.as_ref().map(|s| format!("{} {} ({} {})", t.until, fmt::time(l, tz, s.until), t.by, s.by)),
        pages: r
            .pages
            .iter()
            .map(|p| PageLine {
                recipient: p.recipient.clone(),
                channel: p.channel.clone(),
                step: p.step.clone(),
                status: status_label(t, &p.status),
                status_class: p.status.clone(),
                at: fmt::time(l, tz, p.sent_at.unwrap_or(p.queued_at)),
            })
            .collect(),
        next_step: r.next_step.as_ref().map(|n| {
            let who = n.targets.join(", ");
            let kind = if n.kind == "reminder" { t.reminder } else { t.paged };
            match n.at {
                Some(at) => format!("{kind} {who} · {}", fmt::time(l, tz, at)),
                None => format!("{kind} {who}"),
            }
        }),
        expertise_open: r.expertise_open,
    }
}

/// The rows fragment (also included by the page).
#[derive(Template)]
#[template(path = "worklist_rows.html")]
pub(crate) struct RowsTemplate {
    pub t: &'static WorklistText,
    pub rows: Vec<RowView>,
    pub more_href: Option<String>,
}

#[derive(Template)]
#[template(path = "worklist.html")]
struct WorklistTemplate {
    ctx: PageCtx,
    t: &'static WorklistText,
    f: Filters,
    rows_html: String,
    poll: String,
    etag: String,
    severities: Vec<(&'static str, &'static str)>,
}

async fn rows_of(state: &AppState, v: &Viewer, f: &Filters) -> Result<RowsTemplate, AdminError> {
    let page = state.admin.worklist(&v.actor, &f.query()).await?;
    let qs = f.query_string();
    let more_href = page.next.as_ref().map(|n| {
        let sep = if qs.is_empty() { "" } else { "&" };
        format!("/worklist?{qs}{sep}after={}", urlencode(n))
    });
    Ok(RowsTemplate { t: text(v.lang), rows: page.items.iter().map(|r| row_view(v, r)).collect(), more_href })
}

fn etag_of(html: &str) -> String {
    let d = Sha256::digest(html.as_bytes());
    let hex: String = d[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

async fn page(State(state): State<AppState>, v: Viewer, Query(f): Query<Filters>) -> Response {
    let rows = match rows_of(&state, &v, &f).await {
        Ok(r) => r,
        Err(e) => return admin_error(&v, e),
    };
    let rows_html = match rows.render() {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(message = "Worklist rows not rendered.", error = %e);
            return error_page(Some(&v), StatusCode::INTERNAL_SERVER_ERROR, None);
        }
    };
    let etag = etag_of(&rows_html);
    // app.js adds the page's query string (filters, cursor) to the poll URL.
    let poll = "/worklist/rows".to_owned();
    let t = text(v.lang);
    let severities =
        vec![("critical", t.critical), ("high", t.high), ("medium", t.medium), ("low", t.low), ("info", t.info)];
    render(WorklistTemplate { ctx: PageCtx::new(&v, Nav::Worklist), t, f, rows_html, poll, etag, severities })
}

async fn rows(State(state): State<AppState>, v: Viewer, Query(f): Query<Filters>, headers: HeaderMap) -> Response {
    let rows = match rows_of(&state, &v, &f).await {
        Ok(r) => r,
        Err(e) => return admin_error(&v, e),
    };
    let html = match rows.render() {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(message = "Worklist rows not rendered.", error = %e);
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let etag = etag_of(&html);
    let cache = (header::CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
    let Ok(etag_value) = HeaderValue::from_str(&etag) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|h| h.split(',').any(|t| t.trim().trim_start_matches("W/") == etag));
    if unchanged {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag_value), cache]).into_response();
    }
    let ctype = (header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    (StatusCode::OK, [(header::ETAG, etag_value), cache, ctype], html).into_response()
}

/// `/worklist` and `/worklist/rows`.
pub fn routes() -> axum::Router<AppState> {
    axum::Router::new().route("/worklist", get(page)).route("/worklist/rows", get(rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_become_queries_and_query_strings() {
        let f = Filters {
            severity: "high".into(),
            program: "heart failure".into(),
            acknowledged: "no".into(),
            snoozed: String::new(),
            after: "4~1~ep".into(),
        };
        let q = f.query();
        assert_eq!((q.severity.as_deref(), q.acknowledged, q.snoozed), (Some("high"), Some(false), None));
        assert_eq!(q.after.as_deref(), Some("4~1~ep"));
        assert_eq!(f.query_string(), "severity=high&program=heart%20failure&acknowledged=no");
    }

    #[test]
    fn every_text_exists_in_both_languages() {
        assert_eq!(text(Lang::Fr).title, "Liste de travail");
        assert_eq!(text(Lang::En).title, "Worklist");
    }
}
