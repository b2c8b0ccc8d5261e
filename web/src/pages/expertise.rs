//! Tele-expertise pages: the specialist's inbox (`/expertise`), one request
//! with its evidence snapshot and the answer form (`/expertise/{id}`), and the
//! page of an emailed single-use link (`/expertise/link/{token}`) for an
//! external specialist without an account.
//!
//! The link page has no session: its form carries no CSRF field, the secret
//! token in the URL plays that part (a forged cross-site POST cannot know it),
//! and the `Origin` header, when sent, must be this site's.

use askama::Template;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use vitalwatch_admin::AdminError;
use vitalwatch_admin::service::expertise::Answerer;
use vitalwatch_admin::store::workspace::ExpertiseView;

use super::worklist::urlencode;
use crate::auth::extract::{ClientAddr, origin, same_origin};
use crate::auth::{CsrfForm, Viewer};
use crate::fmt;
use crate::i18n::Lang;
use crate::pages::{Nav, PageCtx, admin_error, render, render_status, see_other};
use crate::state::AppState;

/// The tele-expertise pages' texts.
pub(crate) struct ExpertiseText {
    pub inbox: &'static str,
    pub empty: &'static str,
    pub request: &'static str,
    pub asked: &'static str,
    pub asked_by: &'static str,
    pub episode: &'static str,
    pub patient: &'static str,
    pub status: &'static str,
    pub awaiting: &'static str,
    pub answered: &'static str,
    pub question: &'static str,
    pub summary: &'static str,
    pub severity: &'static str,
    pub program: &'static str,
    pub code: &'static str,
    pub opened: &'static str,
    pub evidence: &'static str,
    pub threshold: &'static str,
    pub current: &'static str,
    pub readings: &'static str,
    pub time: &'static str,
    pub value: &'static str,
    pub advice: &'static str,
    pub send: &'static str,
    pub your_advice: &'static str,
    pub answered_by: &'static str,
    pub thanks: &'static str,
    pub link_title: &'static str,
    pub link_expires: &'static str,
    pub link_invalid: &'static str,
}

const FR: ExpertiseText = ExpertiseText {
    inbox: "Demandes d'avis",
    empty: "Aucune demande.",
    request: "Demande d'avis",
    asked: "Demandée le",
    asked_by: "Demandée par",
    episode: "Épisode",
    patient: "Patient",
    status: "Statut",
    awaiting: "En attente",
    answered: "Répondue",
    question: "Question",
    summary: "Alerte",
    severity: "Gravité",
    program: "Programme",
    code: "Mesure",
    opened: "Ouverte",
    evidence: "Éléments",
    threshold: "Seuil",
    current: "Valeur déclenchante",
    readings: "Mesures autour de l'épisode",
    time: "Heure",
    value: "Valeur",
    advice: "Avis",
    send: "Envoyer l'avis",
    your_advice: "Votre avis",
    answered_by: "Répondu par",
    thanks: "Merci, votre avis a été transmis au médecin responsable.",
    link_title: "Demande de télé-expertise",
    link_expires: "Ce lien à usage unique expire le",
    link_invalid: "Ce lien n'est plus valable.",
};

const EN: ExpertiseText = ExpertiseText {
    inbox: "Advice requests",
    empty: "No requests.",
    request: "Advice request",
    asked: "Asked on",
    asked_by: "Asked by",
    episode: "Episode",
    patient: "Patient",
    status: "Status",
    awaiting: "Awaiting",
    answered: "Answered",
    question: "Question",
    summary: "Alert",
    severity: "Severity",
    program: "Program",
    code: "Measurement",
    opened: "Opened",
    evidence: "Evidence",
    threshold: "Threshold",
    current: "Triggering value",
    readings: "Readings around the episode",
    time: "Time",
    value: "Value",
    advice: "Advice",
    send: "Send the advice",
    your_advice: "Your advice",
    answered_by: "Answered by",
    thanks: "Thank you, your advice was passed on to the responsible physician.",
    link_title: "Tele-expertise request",
    link_expires: "This single-use link expires on",
    link_invalid: "This link is no longer valid.",
};

pub(crate) fn text(l: Lang) -> &'static ExpertiseText {
    match l {
        Lang::Fr => &FR,
        Lang::En => &EN,
    }
}

pub(crate) struct InboxLine {
    pub href: String,
    pub id: i64,
    pub episode_id: String,
    pub by: String,
    pub at: String,
    pub answered: bool,
}

#[derive(Template)]
#[template(path = "expertise_inbox.html")]
struct InboxTemplate {
    ctx: PageCtx,
    t: &'static ExpertiseText,
    items: Vec<InboxLine>,
}

/// A request formatted for display (shared by the signed-in and the link pages).
pub(crate) struct RequestView {
    pub id: i64,
    pub episode_id: String,
    pub patient_id: String,
    pub by: String,
    pub at: String,
    pub question: String,
    pub summary: String,
    pub severity: String,
    pub program: String,
    pub code: String,
    pub opened: String,
    pub threshold: Option<String>,
    pub current: Option<String>,
    pub readings: Vec<(String, String)>,
    pub answer: Option<String>,
    pub answered: Option<String>,
    pub expires: Option<String>,
    /// The readings of the snapshot drawn as a chart (an inline SVG), with the threshold.
    pub chart: Option<String>,
}

/// The snapshot's readings as a trend chart: each reading a point, the
/// episode's threshold as a band, the time axis in `tz`. `None` without readings.
fn snapshot_chart(l: Lang, tz: chrono_tz::Tz, snap: &serde_json::Value) -> Option<String> {
    use vitalwatch_admin::service::patient_view::{Series, SeriesBucket, SeriesLine, SeriesRange, ThresholdBand};
    let at = |v: &serde_json::Value| {
        v.as_str().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()).map(|t| t.with_timezone(&chrono::Utc))
    };
    let ep = &snap["episode"];
    let code = ep["code"].as_str()?.to_owned();
    let buckets: Vec<SeriesBucket> = snap["readings"]
        .as_array()?
        .iter()
        .filter_map(|p| {
            let v = p["value"].as_f64()?;
            Some(SeriesBucket { start: at(&p["time"])?, n: 1, mean: v, min: v, max: v })
        })
        .collect();
    if buckets.is_empty() {
        return None;
    }
    let thresholds = snap["evidence"]["threshold"]
        .as_f64()
        .map(|value| {
            // A low reading under a low threshold, or a high one above a high threshold.
            let upward = buckets.last().is_some_and(|b| b.mean >= value);
            ThresholdBand {
                code: code.clone(),
                rule_id: ep["rule_id"].as_str().unwrap_or_default().to_owned(),
                op: if upward { ">=".into() } else { "<=".into() },
                upward,
                severity: ep["severity"].as_str().unwrap_or("high").to_owned(),
                value,
                clear: value,
            }
        })
        .into_iter()
        .collect();
    let series = Series {
        patient_id: ep["patient_id"].as_str().unwrap_or_default().to_owned(),
        code: code.clone(),
        unit: snap["unit"].as_str().unwrap_or_default().to_owned(),
        range: SeriesRange::Week,
        bucket_secs: 3600,
        from: at(&snap["from"]).unwrap_or(buckets[0].start),
        to: at(&snap["to"]).unwrap_or(buckets[buckets.len() - 1].start),
        time_zone: tz.name().to_owned(),
        lines: vec![SeriesLine { code: code.clone(), name: code, buckets }],
        thresholds,
    };
    Some(crate::chart::svg(&series, tz, l, "expertise"))
}

fn request_view(l: Lang, tz: chrono_tz::Tz, x: &ExpertiseView) -> RequestView {
    let snap = x.snapshot.clone().unwrap_or_default();
    let ep = &snap["episode"];
    let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    let unit = snap["unit"].as_str().unwrap_or_default().to_owned();
    let num = |v: f64| {
        let n = fmt::number(l, v, if v.fract() == 0.0 { 0 } else { 1 });
        if unit.is_empty() { n } else { format!("{n} {unit}") }
    };
    let time = |v: &serde_json::Value| {
        v.as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| fmt::datetime(l, tz, t.with_timezone(&chrono::Utc)))
            .unwrap_or_default()
    };
    RequestView {
        id: x.id,
        episode_id: x.episode_id.clone(),
        patient_id: x.patient_id.clone(),
        by: x.requested_by.clone(),
        at: fmt::datetime(l, tz, x.created_at),
        question: x.question.clone(),
        summary: s(&ep["summary"]),
        severity: s(&ep["severity"]),
        program: s(&ep["program"]),
        code: s(&ep["code"]),
        opened: time(&ep["opened_at"]),
        threshold: snap["evidence"]["threshold"].as_f64().map(num),
        current: snap["evidence"]["readings"]
            .as_array()
            .and_then(|r| {
                r.iter()
                    .filter(|p| p["code"] == ep["code"])
                    .max_by_key(|p| p["time_unix_micros"].as_i64())
                    .and_then(|p| p["value"].as_f64())
            })
            .or_else(|| snap["evidence"]["value"].as_f64())
            .map(|v| {
                let unit = snap["evidence"]["readings"][0]["unit"].as_str().or(snap["evidence"]["unit"].as_str());
                let n = fmt::number(l, v, if v.fract() == 0.0 { 0 } else { 1 });
                match unit {
                    Some(u) if !u.is_empty() => format!("{n} {u}"),
                    _ => n,
                }
            }),
        readings: snap["readings"]
            .as_array()
            .map(|r| {
                r.iter().rev().take(60).filter_map(|p| Some((time(&p["time"]), num(p["value"].as_f64()?)))).collect()
            })
            .unwrap_or_default(),
        answer: x.answer.clone(),
        answered: x
            .answered_at
            .map(|at| format!("{} · {}", x.answered_by.clone().unwrap_or_default(), fmt::datetime(l, tz, at))),
        expires: x.link_expires_at.map(|e| fmt::datetime(l, tz, e)),
        chart: snapshot_chart(l, tz, &snap),
    }
}

#[derive(Template)]
#[template(path = "expertise.html")]
struct RequestTemplate {
    ctx: PageCtx,
    t: &'static ExpertiseText,
    r: RequestView,
    can_answer: bool,
    action: String,
}

/// The page of an emailed link (no session: no navigation).
#[derive(Template)]
#[template(path = "expertise_link.html")]
struct LinkTemplate {
    ctx: PageCtx,
    t: &'static ExpertiseText,
    r: Option<RequestView>,
    message: Option<String>,
    action: String,
}

async fn inbox(State(state): State<AppState>, v: Viewer) -> Response {
    match state.admin.expertise_inbox(&v.actor).await {
        Ok(items) => {
            let items = items
                .iter()
                .map(|x| InboxLine {
                    href: format!("/expertise/{}", x.id),
                    id: x.id,
                    episode_id: x.episode_id.clone(),
                    by: x.requested_by.clone(),
                    at: fmt::datetime(v.lang, v.tz, x.created_at),
                    answered: x.answered_at.is_some(),
                })
                .collect();
            render(InboxTemplate { ctx: PageCtx::new(&v, Nav::Expertise), t: text(v.lang), items })
        }
        Err(e) => admin_error(&v, e),
    }
}

async fn request(State(state): State<AppState>, v: Viewer, Path(id): Path<i64>) -> Response {
    match state.admin.expertise(&v.actor, id).await {
        Ok(x) => {
            let mine = match &v.actor.role {
                vitalwatch_admin::Role::Specialist(me) | vitalwatch_admin::Role::Nurse(me) => {
                    x.to_account.as_deref() == Some(me.as_str())
                }
                vitalwatch_admin::Role::Physician(p) => x.to_account.as_deref() == Some(p.as_str()),
                vitalwatch_admin::Role::Operator => false,
            };
            let can_answer = mine && x.answered_at.is_none();
            let r = request_view(v.lang, v.tz, &x);
            render(RequestTemplate {
                ctx: PageCtx::new(&v, Nav::Expertise),
                t: text(v.lang),
                r,
                can_answer,
                action: format!("/expertise/{id}"),
            })
        }
        Err(e) => admin_error(&v, e),
    }
}

#[derive(Debug, Deserialize)]
struct AnswerForm {
    advice: String,
}

async fn answer(
    State(state): State<AppState>,
    v: Viewer,
    Path(id): Path<i64>,
    CsrfForm(f): CsrfForm<AnswerForm>,
) -> Response {
    match state.admin.answer_expertise(Answerer::Actor(&v.actor), id, &f.advice).await {
        Ok(_) => see_other(&format!("/expertise/{id}")),
        Err(e) => admin_error(&v, e),
    }
}

/// The language of an anonymous visitor: `Accept-Language`, French by default.
fn visitor_lang(headers: &HeaderMap) -> Lang {
    let accept = headers.get(header::ACCEPT_LANGUAGE).and_then(|h| h.to_str().ok()).unwrap_or_default();
    Lang::from_accept_language(accept).unwrap_or_default()
}

fn link_page(status: StatusCode, l: Lang, r: Option<RequestView>, message: Option<String>, token: &str) -> Response {
    let t = LinkTemplate {
        ctx: PageCtx::anonymous(l),
        t: text(l),
        r,
        message,
        action: format!("/expertise/link/{}", urlencode(token)),
    };
    // The token is in the URL: no referrer at all leaves this page, not even to us.
    let mut r = render_status(status, t);
    r.headers_mut().insert(axum::http::header::REFERRER_POLICY, axum::http::HeaderValue::from_static("no-referrer"));
    r
}

fn link_error(l: Lang, e: &AdminError, token: &str) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status.is_server_error() {
        tracing::error!(message = "Expertise link failed.", code = e.code(), error = %e);
    }
    let msg = match e {
        AdminError::NotFound(_) | AdminError::Conflict(_) | AdminError::Forbidden(_) => text(l).link_invalid.to_owned(),
        e => e.to_string(),
    };
    link_page(status, l, None, Some(msg), token)
}

async fn link(State(state): State<AppState>, headers: HeaderMap, Path(token): Path<String>) -> Response {
    let l = visitor_lang(&headers);
    let tz = chrono_tz::Europe::Paris;
    match state.admin.expertise_by_link(&token).await {
        Ok(x) => link_page(StatusCode::OK, l, Some(request_view(l, tz, &x)), None, &token),
        Err(e) => link_error(l, &e, &token),
    }
}

#[derive(Debug, Deserialize)]
struct LinkAnswerForm {
    id: i64,
    advice: String,
}

async fn link_answer(
    State(state): State<AppState>,
    headers: HeaderMap,
    ClientAddr(peer): ClientAddr,
    Path(token): Path<String>,
    Form(f): Form<LinkAnswerForm>,
) -> Response {
    let l = visitor_lang(&headers);
    if !same_origin(&headers) {
        tracing::info!(message = "Expertise link answer refused: cross-site post.");
        return link_page(StatusCode::FORBIDDEN, l, None, Some(text(l).link_invalid.to_owned()), &token);
    }
    let origin = origin(&headers, peer, state.settings.trust_forwarded_for);
    match state.admin.answer_expertise(Answerer::Link { token: &token, origin: Some(&origin) }, f.id, &f.advice).await {
        Ok(_) => link_page(StatusCode::OK, l, None, Some(text(l).thanks.to_owned()), &token),
        Err(e) => link_error(l, &e, &token),
    }
}

/// `/expertise`, `/expertise/{id}`, `/expertise/link/{token}`.
pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/expertise", get(inbox))
        .route("/expertise/{id}", get(request).post(answer))
        .route("/expertise/link/{token}", get(link).post(link_answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_visitor_reads_french_unless_they_prefer_english() {
        let mut h = HeaderMap::new();
        assert_eq!(visitor_lang(&h), Lang::Fr);
        h.insert(header::ACCEPT_LANGUAGE, "en-GB,en;q=0.9".parse().unwrap());
        assert_eq!(visitor_lang(&h), Lang::En);
        assert_eq!(text(Lang::En).advice, "Advice");
    }
}
