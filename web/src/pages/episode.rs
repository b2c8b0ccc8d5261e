//! The episode page (`/episodes/{id}`): evidence, readings, timeline (events,
//! pages, acknowledgments), notes and tele-expertise, and the actions:
//! acknowledge, snooze, close with an outcome and a note, add a note, forward
//! to a specialist. Every action goes through the admin service (its audit
//! entry records who, when and the origin) and redirects back (303).

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use vitalwatch_admin::model::{AlertAction, SnoozeInput};
use vitalwatch_admin::service::expertise::{ExpertiseTarget, ForwardInput};
use vitalwatch_admin::service::worklist::{EpisodeView, OUTCOMES};

use super::worklist::{self as wl, PageLine, severity_label, urlencode};
use crate::auth::{CsrfForm, Viewer};
use crate::fmt;
use crate::i18n::Lang;
use crate::pages::{Nav, PageCtx, admin_error, render, see_other};
use crate::state::AppState;

/// The episode page's texts.
pub(crate) struct EpisodeText {
    pub title: &'static str,
    pub patient: &'static str,
    pub program: &'static str,
    pub code: &'static str,
    pub status: &'static str,
    pub opened: &'static str,
    pub last_event: &'static str,
    pub evidence: &'static str,
    pub current: &'static str,
    pub previous: &'static str,
    pub mean_7d: &'static str,
    pub threshold: &'static str,
    pub baseline: &'static str,
    pub readings: &'static str,
    pub time: &'static str,
    pub value: &'static str,
    pub chart_alt: &'static str,
    pub escalation: &'static str,
    pub next_step: &'static str,
    pub none: &'static str,
    pub acknowledgments: &'static str,
    pub snoozed_until: &'static str,
    pub timeline: &'static str,
    pub event: &'static str,
    pub actions: &'static str,
    pub acknowledge: &'static str,
    pub snooze: &'static str,
    pub minutes: &'static str,
    pub close: &'static str,
    pub outcome: &'static str,
    pub note: &'static str,
    pub add_note: &'static str,
    pub notes: &'static str,
    pub no_notes: &'static str,
    pub forward: &'static str,
    pub to_specialist: &'static str,
    pub to_email: &'static str,
    pub specialist_account: &'static str,
    pub email: &'static str,
    pub question: &'static str,
    pub send: &'static str,
    pub expertise: &'static str,
    pub asked_by: &'static str,
    pub answer: &'static str,
    pub awaiting: &'static str,
    pub answered_by: &'static str,
    pub confirm_close: &'static str,
    pub done_ack: &'static str,
    pub done_snooze: &'static str,
    pub done_close: &'static str,
    pub done_note: &'static str,
    pub done_forward: &'static str,
    pub done_forward_unsent: &'static str,
    pub outcomes: [&'static str; 5],
    pub open: &'static str,
    pub resolved: &'static str,
    pub closed: &'static str,
    pub ev_opened: &'static str,
    pub ev_raised: &'static str,
    pub ev_resolved: &'static str,
    pub ev_ignored: &'static str,
    pub ev_acknowledged: &'static str,
    pub ev_snoozed: &'static str,
    pub ev_snooze_broken: &'static str,
    pub ev_planned: &'static str,
    pub ev_held: &'static str,
    pub ev_digested: &'static str,
    pub ev_unreachable: &'static str,
    pub ev_attempt: &'static str,
    pub ev_fallback: &'static str,
    pub ev_digest: &'static str,
    pub ev_failed: &'static str,
    pub via_link: &'static str,
    pub via_sms: &'static str,
    pub via_web: &'static str,
    /// "Rules" (the version of the rules that opened the episode).
    pub rules: &'static str,
    /// "rules v" before the version number.
    pub rules_v: &'static str,
    /// Version 0: the program's default rules.
    pub rules_defaults: &'static str,
}

const FR: EpisodeText = EpisodeText {
    title: "Épisode",
    patient: "Patient",
    program: "Programme",
    code: "Mesure",
    status: "Statut",
    opened: "Ouvert",
    last_event: "Dernier événement",
    evidence: "Éléments",
    current: "Valeur actuelle",
    previous: "Valeur précédente",
    mean_7d: "Moyenne des 7 jours précédents",
    threshold: "Seuil",
    baseline: "Référence",
    readings: "Mesures",
    time: "Heure",
    value: "Valeur",
    chart_alt: "Courbe des mesures autour de l'épisode",
    escalation: "Escalade",
    next_step: "Prochaine étape",
    none: "Aucune",
    acknowledgments: "Prises en compte",
    snoozed_until: "En sourdine jusqu'à",
    timeline: "Chronologie",
    event: "Événement",
    actions: "Actions",
    acknowledge: "Prendre en compte",
    snooze: "Mettre en sourdine",
    minutes: "Minutes",
    close: "Clore l'épisode",
    outcome: "Issue",
    note: "Note",
    add_note: "Ajouter la note",
    notes: "Notes",
    no_notes: "Aucune note.",
    forward: "Demander un avis (télé-expertise)",
    to_specialist: "À un spécialiste (compte)",
    to_email: "À une adresse e-mail",
    specialist_account: "Compte du spécialiste",
    email: "Adresse e-mail",
    question: "Question",
    send: "Envoyer la demande",
    expertise: "Télé-expertise",
    asked_by: "demandé par",
    answer: "Avis",
    awaiting: "En attente de réponse",
    answered_by: "répondu par",
    confirm_close: "Clore cet épisode ?",
    done_ack: "Épisode pris en compte.",
    done_snooze: "Épisode mis en sourdine.",
    done_close: "Épisode clos.",
    done_note: "Note ajoutée.",
    done_forward: "Demande d'avis envoyée.",
    done_forward_unsent: "Demande enregistrée, mais l'e-mail n'a pas pu être envoyé : renvoyez la demande.",
    outcomes: [
        "Patient appelé",
        "Traitement ajusté",
        "Consultation programmée",
        "Adressé aux urgences",
        "Aucune action nécessaire",
    ],
    open: "ouvert",
    resolved: "résolu",
    closed: "clos",
    ev_opened: "Épisode ouvert",
    ev_raised: "Gravité relevée",
    ev_resolved: "Épisode résolu",
    ev_ignored: "Événement ignoré",
    ev_acknowledged: "Pris en compte",
    ev_snoozed: "Mis en sourdine",
    ev_snooze_broken: "Sourdine levée (gravité relevée)",
    ev_planned: "Alerte planifiée",
    ev_held: "Alerte retenue",
    ev_digested: "Regroupée dans le résumé",
    ev_unreachable: "Destinataire injoignable",
    ev_attempt: "Tentative d'envoi",
    ev_fallback: "Repli sur l'autre canal",
    ev_digest: "Résumé",
    ev_failed: "Échec d'envoi",
    via_link: "lien",
    via_sms: "réponse SMS",
    via_web: "application",
    rules: "Règles",
    rules_v: "règles v",
    rules_defaults: "règles par défaut du programme",
};

const EN: EpisodeText = EpisodeText {
    title: "Episode",
    patient: "Patient",
    program: "Program",
    code: "Measurement",
    status: "Status",
    opened: "Opened",
    last_event: "Last event",
    evidence: "Evidence",
    current: "Current value",
    previous: "Previous value",
    mean_7d: "Mean of the previous 7 days",
    threshold: "Threshold",
    baseline: "Baseline",
    readings: "Readings",
    time: "Time",
    value: "Value",
    chart_alt: "Chart of the readings around the episode",
    escalation: "Escalation",
    next_step: "Next step",
    none: "None",
    acknowledgments: "Acknowledgments",
    snoozed_until: "Snoozed until",
    timeline: "Timeline",
    event: "Event",
    actions: "Actions",
    acknowledge: "Acknowledge",
    snooze: "Snooze",
    minutes: "Minutes",
    close: "Close the episode",
    outcome: "Outcome",
    note: "Note",
    add_note: "Add the note",
    notes: "Notes",
    no_notes: "No notes.",
    forward: "Ask for advice (tele-expertise)",
    to_specialist: "To a specialist (account)",
    to_email: "To an email address",
    specialist_account: "Specialist's account",
    email: "Email address",
    question: "Question",
    send: "Send the request",
    expertise: "Tele-expertise",
    asked_by: "asked by",
    answer: "Advice",
    awaiting: "Awaiting an answer",
    answered_by: "answered by",
    confirm_close: "Close this episode?",
    done_ack: "Episode acknowledged.",
    done_snooze: "Episode snoozed.",
    done_close: "Episode closed.",
    done_note: "Note added.",
    done_forward: "Advice request sent.",
    done_forward_unsent: "Request stored, but the email could not be sent: send the request again.",
    outcomes: [
        "Patient called",
        "Treatment adjusted",
        "Consultation scheduled",
        "Sent to the emergency department",
        "No action needed",
    ],
    open: "open",
    resolved: "resolved",
    closed: "closed",
    ev_opened: "Episode opened",
    ev_raised: "Severity raised",
    ev_resolved: "Episode resolved",
    ev_ignored: "Event ignored",
    ev_acknowledged: "Acknowledged",
    ev_snoozed: "Snoozed",
    ev_snooze_broken: "Snooze broken (severity rose)",
    ev_planned: "Page planned",
    ev_held: "Page held",
    ev_digested: "Folded into the digest",
    ev_unreachable: "Recipient unreachable",
    ev_attempt: "Delivery attempt",
    ev_fallback: "Fallback to the other channel",
    ev_digest: "Digest",
    ev_failed: "Delivery failed",
    via_link: "link",
    via_sms: "SMS reply",
    via_web: "web app",
    rules: "Rules",
    rules_v: "rules v",
    rules_defaults: "program default rules",
};

pub(crate) fn text(l: Lang) -> &'static EpisodeText {
    match l {
        Lang::Fr => &FR,
        Lang::En => &EN,
    }
}

/// The label of an outcome code.
pub(crate) fn outcome_label(t: &EpisodeText, code: &str) -> String {
    OUTCOMES.iter().position(|o| *o == code).map_or_else(|| code.to_owned(), |i| t.outcomes[i].to_owned())
}

pub(crate) struct Line {
    pub at: String,
    pub what: String,
}

pub(crate) struct NoteLine {
    pub at: String,
    pub author: String,
    pub outcome: Option<String>,
    pub body: String,
}

pub(crate) struct ExpertiseLine {
    pub at: String,
    pub to: String,
    pub by: String,
    pub question: String,
    pub answer: Option<String>,
    pub answered: Option<String>,
}

#[derive(Template)]
#[template(path = "episode.html")]
struct EpisodeTemplate {
    ctx: PageCtx,
    t: &'static EpisodeText,
    w: &'static wl::WorklistText,
    id: String,
    action: String,
    patient_id: String,
    patient_href: String,
    chart_src: String,
    severity: String,
    severity_label: &'static str,
    summary: String,
    program: String,
    /// "rules v3" (the version that opened the episode), if known.
    rules_version: Option<String>,
    /// The patient's rules history.
    rules_href: String,
    code: String,
    status: &'static str,
    is_open: bool,
    opened: String,
    last_event: String,
    current: Option<String>,
    previous: Option<String>,
    mean_7d: Option<String>,
    threshold: Option<String>,
    baseline: Option<String>,
    readings: Vec<Line>,
    pages: Vec<PageLine>,
    next_step: Option<String>,
    acks: Vec<Line>,
    snooze: Option<String>,
    timeline: Vec<Line>,
    notes: Vec<NoteLine>,
    expertise: Vec<ExpertiseLine>,
    outcomes: Vec<(&'static str, &'static str)>,
    done: Option<&'static str>,
}

/// What `?done=` says after an action.
#[derive(Debug, Default, Deserialize)]
struct Done {
    #[serde(default)]
    done: String,
}

fn num(l: Lang, v: f64, unit: &str) -> String {
    let n = fmt::number(l, v, if v.fract() == 0.0 { 0 } else { 1 });
    if unit.is_empty() { n } else { format!("{n} {unit}") }
}

/// How an acknowledgment arrived, in words.
fn via_label(t: &EpisodeText, via: &str) -> String {
    match via {
        "link" => t.via_link.to_owned(),
        "sms_reply" => t.via_sms.to_owned(),
        "web_app" => t.via_web.to_owned(),
        other => other.to_owned(),
    }
}

/// One timeline entry in words: what happened, and to whom / by whom.
fn timeline_text(v: &Viewer, entry_type: &str, r: &serde_json::Value) -> String {
    let (t, w) = (text(v.lang), wl::text(v.lang));
    let s = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
    let sev = |k: &str| severity_label(w, r[k].as_str().unwrap_or_default());
    let step = || {
        serde_json::from_value::<vitalwatch_alerting::Step>(r["step"].clone())
            .map(|s| s.to_string())
            .unwrap_or_default()
    };
    let join = |label: &str, parts: &[String]| {
        let parts: Vec<&str> = parts.iter().map(String::as_str).filter(|p| !p.is_empty()).collect();
        if parts.is_empty() { label.to_owned() } else { format!("{label} : {}", parts.join(" · ")) }
    };
    match entry_type {
        "episode_opened" => join(t.ev_opened, &[sev("severity").to_owned()]),
        "severity_raised" => format!("{} : {} → {}", t.ev_raised, sev("from"), sev("to")),
        "episode_resolved" => t.ev_resolved.to_owned(),
        "event_ignored" => t.ev_ignored.to_owned(),
        "acknowledged" => join(t.ev_acknowledged, &[s("by"), via_label(t, &s("via")), sev("severity").to_owned()]),
        "snoozed" => {
            let until = r["until"]
                .as_str()
                .and_then(|u| chrono::DateTime::parse_from_rfc3339(u).ok())
                .map(|u| fmt::datetime(v.lang, v.tz, u.with_timezone(&chrono::Utc)))
                .unwrap_or_default();
            join(t.ev_snoozed, &[s("by"), until])
        }
        "snooze_broken" => t.ev_snooze_broken.to_owned(),
        "notification_planned" => join(t.ev_planned, &[s("recipient"), s("channel"), step()]),
        "notification_held" => join(t.ev_held, &[s("recipient"), s("reason")]),
        "notification_digested" => join(t.ev_digested, &[s("recipient")]),
        "recipient_unreachable" => join(t.ev_unreachable, &[s("recipient"), step()]),
        "delivery_attempt" => join(
            t.ev_attempt,
            &[s("channel"), r["attempt"].as_u64().map(|a| format!("#{a}")).unwrap_or_default(), {
                r["outcome"]["status"].as_str().unwrap_or_default().to_owned()
            }],
        ),
        "fallback_scheduled" | "fallback_while_retrying" => {
            join(t.ev_fallback, &[format!("{} → {}", s("from"), s("to"))])
        }
        "digest_formed" | "digest_delivered" => join(t.ev_digest, &[s("recipient")]),
        "delivery_failed" => t.ev_failed.to_owned(),
        other => other.replace('_', " "),
    }
}

fn view(v: &Viewer, e: EpisodeView, done: &str) -> EpisodeTemplate {
    let (l, tz, t, w) = (v.lang, v.tz, text(v.lang), wl::text(v.lang));
    let row = wl::row_view(v, &e.row);
    let unit = e.row.unit.clone().unwrap_or_default();
    let a = &e.alert;
    let f = |x: &serde_json::Value| x.as_f64().filter(|x| x.is_finite()).map(|x| num(l, x, &unit));
    let status = match a.status.as_str() {
        "open" => t.open,
        "resolved" => t.resolved,
        _ => t.closed,
    };
    let mut readings: Vec<Line> = e
        .readings
        .iter()
        .rev()
        .take(50)
        .map(|r| Line { at: fmt::datetime(l, tz, r.time), what: num(l, r.value, &unit) })
        .collect();
    readings.shrink_to_fit();
    let done = match done {
        "ack" => Some(t.done_ack),
        "snooze" => Some(t.done_snooze),
        "close" => Some(t.done_close),
        "note" => Some(t.done_note),
        "forward" => Some(t.done_forward),
        "forward_unsent" => Some(t.done_forward_unsent),
        _ => None,
    };
    EpisodeTemplate {
        ctx: PageCtx::new(v, Nav::Worklist),
        t,
        w,
        id: a.episode_id.clone(),
        action: format!("/episodes/{}", urlencode(&a.episode_id)),
        patient_id: a.patient_id.clone(),
        patient_href: row.patient_href.clone(),
        chart_src: format!("/patients/{}/chart/{}.svg?range=7d", urlencode(&a.patient_id), urlencode(&a.code)),
        severity: a.severity.clone(),
        severity_label: severity_label(w, &a.severity),
        summary: a.summary.clone(),
        program: a.program.clone(),
        rules_version: a.rules_version.map(|n| match n {
            0 => t.rules_defaults.to_owned(),
            n => format!("{}{n}", t.rules_v),
        }),
        rules_href: format!("/patients/{}#rules-history", urlencode(&a.patient_id)),
        code: a.code.clone(),
        status,
        is_open: a.status == "open",
        opened: fmt::datetime(l, tz, a.opened_at),
        last_event: fmt::datetime(l, tz, a.last_event_at),
        current: row.current,
        previous: row.previous,
        mean_7d: row.mean_7d,
        threshold: e.evidence.get("threshold").and_then(f),
        baseline: e.evidence.get("baseline").and_then(f),
        readings,
        pages: row.pages,
        next_step: row.next_step,
        acks: e
            .acknowledgments
            .iter()
            .map(|k| Line {
                at: fmt::datetime(l, tz, k.at),
                what: format!("{} · {} · {}", k.by, severity_label(w, &k.severity), via_label(t, &k.via)),
            })
            .collect(),
        snooze: e
            .row
            .snooze
            .as_ref()
            .map(|s| format!("{} {} ({})", t.snoozed_until, fmt::datetime(l, tz, s.until), s.by)),
        timeline: e
            .timeline
            .iter()
            .map(|x| Line {
                at: fmt::datetime(l, tz, x.at),
                what: timeline_text(v, &x.entry_type, x.record.get("entry").unwrap_or(&x.record)),
            })
            .collect(),
        notes: e
            .notes
            .iter()
            .map(|n| NoteLine {
                at: fmt::datetime(l, tz, n.at),
                author: n.author.clone(),
                outcome: n.outcome.as_deref().map(|o| outcome_label(t, o)),
                body: n.body.clone(),
            })
            .collect(),
        expertise: e
            .expertise
            .iter()
            .map(|x| ExpertiseLine {
                at: fmt::datetime(l, tz, x.created_at),
                to: x.to_account.clone().or_else(|| x.to_email.clone()).unwrap_or_default(),
                by: x.requested_by.clone(),
                question: x.question.clone(),
                answer: x.answer.clone(),
                answered: x.answered_at.map(|at| {
                    format!(
                        "{} {} · {}",
                        t.answered_by,
                        x.answered_by.clone().unwrap_or_default(),
                        fmt::datetime(l, tz, at)
                    )
                }),
            })
            .collect(),
        outcomes: OUTCOMES.iter().zip(t.outcomes).map(|(c, l)| (*c, l)).collect(),
        done,
    }
}

async fn page(
    State(state): State<AppState>,
    v: Viewer,
    Path(id): Path<String>,
    axum::extract::Query(d): axum::extract::Query<Done>,
) -> Response {
    match state.admin.episode_view(&v.actor, &id).await {
        Ok(e) => render(view(&v, e, &d.done)),
        Err(e) => admin_error(&v, e),
    }
}

fn back(id: &str, done: &str) -> Response {
    see_other(&format!("/episodes/{}?done={done}", urlencode(id)))
}

/// A form with nothing but the CSRF field.
#[derive(Debug, Deserialize)]
struct Empty {}

async fn ack(
    State(state): State<AppState>,
    v: Viewer,
    Path(id): Path<String>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Response {
    match state.admin.ack_alert(&v.actor, &id, &AlertAction::default()).await {
        Ok(_) => back(&id, "ack"),
        Err(e) => admin_error(&v, e),
    }
}

#[derive(Debug, Deserialize)]
struct SnoozeForm {
    minutes: u32,
}

async fn snooze(
    State(state): State<AppState>,
    v: Viewer,
    Path(id): Path<String>,
    CsrfForm(f): CsrfForm<SnoozeForm>,
) -> Response {
    match state.admin.snooze_alert(&v.actor, &id, &SnoozeInput { by: None, minutes: f.minutes }).await {
        Ok(_) => back(&id, "snooze"),
        Err(e) => admin_error(&v, e),
    }
}

#[derive(Debug, Deserialize)]
struct CloseForm {
    outcome: String,
    #[serde(default)]
    note: String,
}

async fn close(
    State(state): State<AppState>,
    v: Viewer,
    Path(id): Path<String>,
    CsrfForm(f): CsrfForm<CloseForm>,
) -> Response {
    let input = AlertAction { by: None, outcome: Some(f.outcome), note: Some(f.note) };
    match state.admin.close_alert(&v.actor, &id, &input).await {
        Ok(_) => back(&id, "close"),
        Err(e) => admin_error(&v, e),
    }
}

#[derive(Debug, Deserialize)]
struct NoteForm {
    text: String,
}

async fn note(
    State(state): State<AppState>,
    v: Viewer,
    Path(id): Path<String>,
    CsrfForm(f): CsrfForm<NoteForm>,
) -> Response {
    match state.admin.add_note(&v.actor, &id, &f.text).await {
        Ok(_) => back(&id, "note"),
        Err(e) => admin_error(&v, e),
    }
}

#[derive(Debug, Deserialize)]
struct ForwardForm {
    /// `specialist` or `email`.
    to_kind: String,
    #[serde(default)]
    specialist: String,
    #[serde(default)]
    email: String,
    question: String,
}

async fn forward(
    State(state): State<AppState>,
    v: Viewer,
    Path(id): Path<String>,
    CsrfForm(f): CsrfForm<ForwardForm>,
) -> Response {
    let to =
        if f.to_kind == "email" { ExpertiseTarget::Email(f.email) } else { ExpertiseTarget::Specialist(f.specialist) };
    match state.admin.forward(&v.actor, &id, &ForwardInput { to, question: f.question }).await {
        Ok(r) if f.to_kind == "email" && !r.link_emailed => back(&id, "forward_unsent"),
        Ok(_) => back(&id, "forward"),
        Err(e) => admin_error(&v, e),
    }
}

/// `/episodes/{id}` and its actions.
pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/episodes/{id}", get(page))
        .route("/episodes/{id}/ack", post(ack))
        .route("/episodes/{id}/snooze", post(snooze))
        .route("/episodes/{id}/close", post(close))
        .route("/episodes/{id}/note", post(note))
        .route("/episodes/{id}/forward", post(forward))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_has_a_label_in_both_languages() {
        for l in [Lang::Fr, Lang::En] {
            for o in OUTCOMES {
                assert_ne!(outcome_label(text(l), o), o, "{o}");
            }
        }
        assert_eq!(outcome_label(text(Lang::Fr), "sent_to_emergency"), "Adressé aux urgences");
    }
}
