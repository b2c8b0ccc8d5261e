//! The role's HTTP server (axum): acknowledgment links, the inbound SMS
//! webhook and the health probes.
//!
//! - `GET /ack?t=TOKEN`: a confirmation page only (mail scanners prefetch
//!   links; a GET must not acknowledge);
//! - `POST /ack` (form `t=TOKEN`): verifies the signed, expiring token and
//!   acknowledges once (the nonce is recorded; a second use is refused);
//! - `POST /sms/inbound`: Twilio-style form (`From`, `Body`); `ACK <code>` /
//!   `SNOOZE <code> <min>`, or in French `OK <code>` / `ACQ <code>` and
//!   `PAUSE <code> <min>` / `REPORT <code> <min>`. Every call is authenticated ([`crate::inbound`]:
//!   Twilio signature, or HMAC with a timestamp), replays are refused, attempts
//!   are limited per replica and per sender number (lockout audited), and the
//!   answer never tells whether the number is a physician's. A code (like a
//!   link) acknowledges only the severity it was sent for;
//! - `GET /healthz` (process up), `GET /readyz` (database reachable).
//!
//! Languages (issue #16): the pages speak the language of the physician the
//! link was issued to, else the browser's `Accept-Language` (French or
//! English), else `alerting.default_language`; SMS answers speak the sender
//! physician's language once the code matched, and the deployment's before
//! (so that they do not tell whether a number is a physician's).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use vitalwatch_platform::http::HttpLimits;
use vitalwatch_platform::shutdown::CancellationToken;

use super::Alerting;
use crate::ack::{AckError, SmsCommand, parse_sms_reply};
use crate::episode::{AckVia, EpisodeError};
use crate::i18n::{Language, fill};
use crate::inbound::{Admission, sender_key};
use crate::render::escape_html;
use crate::store::{Action, EngineError, StoreError};

/// The router.
pub fn router(a: Arc<Alerting>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/ack", get(ack_page).post(ack_submit))
        .route("/sms/inbound", post(sms_inbound))
        .with_state(a)
}

/// The transport limits used when none are configured: those of
/// [`HttpLimits::default`] with a 64 KiB body limit (an `/ack` form or an
/// inbound SMS webhook is a few hundred bytes).
pub fn default_limits() -> HttpLimits {
    HttpLimits { max_body_bytes: 64 * 1024, ..HttpLimits::default() }
}

/// Serves on `listener` until `shutdown`, with `limits`: header read timeout
/// (slow-loris), request timeout (408), connection cap and body limit (413)
/// on every route (see [`vitalwatch_platform::http`]).
pub async fn serve(
    a: Arc<Alerting>,
    listener: tokio::net::TcpListener,
    limits: &HttpLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    vitalwatch_platform::http::serve(listener, vitalwatch_platform::http::limit(router(a), limits), limits, shutdown)
        .await
}

/// The texts of the acknowledgment pages, one constant per language
/// ([`ACK_PAGE_FR`], [`ACK_PAGE_EN`]).
#[derive(Debug)]
pub struct AckPageText {
    /// Title of the confirmation page.
    pub confirm_title: &'static str,
    /// Question of the confirmation page.
    pub confirm_heading: &'static str,
    /// The button that acknowledges.
    pub button: &'static str,
    /// Title of the "link expired" page.
    pub expired_title: &'static str,
    /// Text of the "link expired" page.
    pub expired_text: &'static str,
    /// Title of the "invalid link" page.
    pub invalid_title: &'static str,
    /// Text of the "invalid link" page.
    pub invalid_text: &'static str,
    /// A link without token.
    pub no_token: &'static str,
    /// Title of a form without token.
    pub invalid_request_title: &'static str,
    /// Title of the success page.
    pub done_title: &'static str,
    /// Text of the success page.
    pub done_text: &'static str,
    /// Title of a link used twice.
    pub used_title: &'static str,
    /// Text of a link used twice.
    pub used_text: &'static str,
    /// Title of an unknown episode.
    pub unknown_title: &'static str,
    /// Text of an unknown episode.
    pub unknown_text: &'static str,
    /// Title of a link sent before the severity rose.
    pub severe_title: &'static str,
    /// Title of an episode already resolved.
    pub resolved_title: &'static str,
    /// Text of an episode already resolved.
    pub resolved_text: &'static str,
    /// Title of a failure to record.
    pub retry_title: &'static str,
    /// Text of a failure to record.
    pub retry_text: &'static str,
}

/// The English acknowledgment pages.
pub const ACK_PAGE_EN: AckPageText = AckPageText {
    confirm_title: "Acknowledge alert",
    confirm_heading: "Acknowledge this alert?",
    button: "Acknowledge",
    expired_title: "Link expired",
    expired_text: "This acknowledgment link has expired. Acknowledge from a newer message or the application.",
    invalid_title: "Invalid link",
    invalid_text: "This acknowledgment link is not valid.",
    no_token: "The link has no token.",
    invalid_request_title: "Invalid request",
    done_title: "Acknowledged",
    done_text: "Thank you: the alert is acknowledged and escalation has stopped.",
    used_title: "Already used",
    used_text: "This acknowledgment link was already used.",
    unknown_title: "Unknown alert",
    unknown_text: "This alert is unknown.",
    severe_title: "More severe now",
    resolved_title: "Already resolved",
    resolved_text: "This alert episode is already resolved.",
    retry_title: "Try again",
    retry_text: "The acknowledgment could not be recorded; please try again.",
};

/// The French acknowledgment pages.
pub const ACK_PAGE_FR: AckPageText = AckPageText {
    confirm_title: "Acquitter l'alerte",
    confirm_heading: "Acquitter cette alerte ?",
    button: "Acquitter",
    expired_title: "Lien expiré",
    expired_text: "Ce lien d'acquittement a expiré. Acquittez depuis un message plus récent ou depuis l'application.",
    invalid_title: "Lien non valide",
    invalid_text: "Ce lien d'acquittement n'est pas valide.",
    no_token: "Le lien ne contient pas de jeton.",
    invalid_request_title: "Requête non valide",
    done_title: "Alerte acquittée",
    done_text: "Merci : l'alerte est acquittée et l'escalade est arrêtée.",
    used_title: "Lien déjà utilisé",
    used_text: "Ce lien d'acquittement a déjà été utilisé.",
    unknown_title: "Alerte inconnue",
    unknown_text: "Cette alerte est inconnue.",
    severe_title: "Alerte aggravée",
    resolved_title: "Alerte déjà résolue",
    resolved_text: "Cet épisode d'alerte est déjà résolu.",
    retry_title: "Réessayez",
    retry_text: "L'acquittement n'a pas pu être enregistré ; veuillez réessayer.",
};

impl AckPageText {
    /// The texts of `lang`.
    pub fn of(lang: Language) -> &'static AckPageText {
        match lang {
            Language::Fr => &ACK_PAGE_FR,
            Language::En => &ACK_PAGE_EN,
        }
    }
}

/// The answers to inbound SMS replies, one constant per language
/// ([`SMS_REPLY_FR`], [`SMS_REPLY_EN`]).
#[derive(Debug)]
pub struct SmsReplyText {
    /// The one answer for an unknown number, an unknown or wrong code and a
    /// locked-out number: it must not tell which numbers belong to physicians.
    pub not_applied: &'static str,
    /// The answer to a correct code sent before the severity rose.
    pub more_severe: &'static str,
    /// The answer to a reply that is not a command.
    pub help: &'static str,
    /// The answer to an acknowledgment.
    pub acked: &'static str,
    /// The answer to a snooze, `{minutes}`.
    pub snoozed: &'static str,
    /// The answer to a command the episode refused, `{reason}`.
    pub refused: &'static str,
    /// Reason: the episode is already resolved.
    pub reason_resolved: &'static str,
    /// Reason: the snooze is out of range.
    pub reason_snooze: &'static str,
    /// Reason: anything else.
    pub reason_other: &'static str,
}

/// The English SMS answers.
pub const SMS_REPLY_EN: SmsReplyText = SmsReplyText {
    not_applied: "No open alert matches this reply. Acknowledge from the link in the email or in the application.",
    more_severe: "This alert has become more severe since this message; acknowledge from the newest message.",
    help: "Reply \"ACK <code>\" or \"SNOOZE <code> <minutes>\".",
    acked: "Acknowledged. Escalation stopped.",
    snoozed: "Snoozed for {minutes} min.",
    refused: "Not applied: {reason}.",
    reason_resolved: "the alert is already resolved",
    reason_snooze: "the snooze must be 1 to 1440 minutes",
    reason_other: "the command could not be applied",
};

/// The French SMS answers (GSM 03.38 characters only).
pub const SMS_REPLY_FR: SmsReplyText = SmsReplyText {
    not_applied: "Aucune alerte ouverte ne correspond à cette réponse. Acquittez depuis le lien de l'e-mail ou dans l'application.",
    more_severe: "Cette alerte est devenue plus grave depuis ce message ; acquittez depuis le message le plus récent.",
    help: "Répondez \"OK <code>\" ou \"PAUSE <code> <minutes>\".",
    acked: "Alerte acquittée. Fin de l'escalade.",
    snoozed: "Alerte en pause pour {minutes} min.",
    refused: "Non appliqué : {reason}.",
    reason_resolved: "l'alerte est déjà résolue",
    reason_snooze: "la pause doit durer de 1 à 1440 minutes",
    reason_other: "la commande n'a pas pu s'appliquer",
};

impl SmsReplyText {
    /// The texts of `lang`.
    pub fn of(lang: Language) -> &'static SmsReplyText {
        match lang {
            Language::Fr => &SMS_REPLY_FR,
            Language::En => &SMS_REPLY_EN,
        }
    }

    /// Why the episode refused a command, in this language.
    fn reason(&self, e: &EngineError) -> &'static str {
        match e {
            EngineError::Episode(EpisodeError::AlreadyResolved(_)) => self.reason_resolved,
            EngineError::Episode(EpisodeError::InvalidSnooze { .. }) => self.reason_snooze,
            _ => self.reason_other,
        }
    }
}

/// The language of an acknowledgment page: that of the physician the link was
/// issued to (a token with a valid signature, expired or not), else the
/// browser's `Accept-Language` (French or English), else the deployment's.
async fn page_language(a: &Alerting, headers: &HeaderMap, token: Option<&str>) -> Language {
    if let Some(claims) = token.and_then(|t| a.signer.verify_signature(t).ok()) {
        match a.store.physician(&claims.recipient).await {
            Ok(Some(p)) if p.language.is_some() => return a.notifier.language_of(&p),
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "physician lookup for the page language failed"),
        }
    }
    headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .and_then(Language::from_accept_language)
        .unwrap_or_else(|| a.notifier.default_language())
}

fn page(lang: Language, status: StatusCode, title: &str, text: &str) -> Response {
    let body = format!(
        "<!doctype html><html lang=\"{l}\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>{t}</title></head><body><h1>{t}</h1><p>{x}</p></body></html>",
        l = lang.code(),
        t = escape_html(title),
        x = escape_html(text)
    );
    html_response(status, lang, body)
}

fn html_response(status: StatusCode, lang: Language, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CONTENT_LANGUAGE, lang.code())], body)
        .into_response()
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(a): State<Arc<Alerting>>) -> Response {
    match a.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(e) => {
            tracing::debug!(error = %e, "not ready");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
        }
    }
}

fn form(bytes: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(bytes).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn token_error(lang: Language, e: &AckError) -> Response {
    let tx = AckPageText::of(lang);
    match e {
        AckError::Expired(_) => page(lang, StatusCode::GONE, tx.expired_title, tx.expired_text),
        _ => page(lang, StatusCode::BAD_REQUEST, tx.invalid_title, tx.invalid_text),
    }
}

async fn ack_page(State(a): State<Arc<Alerting>>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let pairs = form(q.unwrap_or_default().as_bytes());
    let token = field(&pairs, "t");
    let lang = page_language(&a, &headers, token).await;
    let tx = AckPageText::of(lang);
    let Some(token) = token else {
        return page(lang, StatusCode::BAD_REQUEST, tx.invalid_title, tx.no_token);
    };
    if let Err(e) = a.signer.verify(token, a.clock.now()) {
        return token_error(lang, &e);
    }
    let body = format!(
        "<!doctype html><html lang=\"{l}\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>{title}</title></head><body><h1>{heading}</h1>\
         <form method=\"post\" action=\"ack\"><input type=\"hidden\" name=\"t\" value=\"{t}\">\
         <button type=\"submit\">{button}</button></form></body></html>",
        l = lang.code(),
        title = escape_html(tx.confirm_title),
        heading = escape_html(tx.confirm_heading),
        button = escape_html(tx.button),
        t = escape_html(token)
    );
    html_response(StatusCode::OK, lang, body)
}

async fn ack_submit(State(a): State<Arc<Alerting>>, headers: HeaderMap, body: Bytes) -> Response {
    let pairs = form(&body);
    let token = field(&pairs, "t");
    let lang = page_language(&a, &headers, token).await;
    let tx = AckPageText::of(lang);
    let Some(token) = token else {
        return page(lang, StatusCode::BAD_REQUEST, tx.invalid_request_title, tx.no_token);
    };
    let now = a.clock.now();
    let claims = match a.signer.verify(token, now) {
        Ok(c) => c,
        Err(e) => return token_error(lang, &e),
    };
    let action = Action::Ack {
        by: claims.recipient.clone(),
        via: AckVia::Link,
        nonce: Some(claims.nonce.clone()),
        sent_for: Some(claims.severity),
    };
    match a.store.transition(&claims.episode_id, action, &a.options, now).await {
        Ok(_) => {
            tracing::debug!(episode = %claims.episode_id, physician = %claims.recipient, "acknowledged by link");
            page(lang, StatusCode::OK, tx.done_title, tx.done_text)
        }
        Err(e) => store_error(lang, &e),
    }
}

fn store_error(lang: Language, e: &StoreError) -> Response {
    let tx = AckPageText::of(lang);
    match e {
        StoreError::Engine(EngineError::NonceUsed) => page(lang, StatusCode::CONFLICT, tx.used_title, tx.used_text),
        StoreError::Engine(EngineError::UnknownEpisode(_)) => {
            page(lang, StatusCode::NOT_FOUND, tx.unknown_title, tx.unknown_text)
        }
        StoreError::Engine(EngineError::Episode(EpisodeError::SeverityRose { .. })) => {
            page(lang, StatusCode::CONFLICT, tx.severe_title, SmsReplyText::of(lang).more_severe)
        }
        StoreError::Engine(EngineError::Episode(EpisodeError::AlreadyResolved(_))) => {
            page(lang, StatusCode::CONFLICT, tx.resolved_title, tx.resolved_text)
        }
        other => {
            tracing::warn!(message = "Acknowledgment failed.", error = %other);
            page(lang, StatusCode::SERVICE_UNAVAILABLE, tx.retry_title, tx.retry_text)
        }
    }
}

fn twiml(text: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Message>{}</Message></Response>",
        escape_html(text)
    );
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/xml; charset=utf-8")], body).into_response()
}

fn refused(status: StatusCode, reason: &'static str) -> Response {
    metrics::counter!("vitalwatch_alerting_sms_inbound_refused_total", "reason" => reason).increment(1);
    (status, "refused").into_response()
}

async fn sms_inbound(State(a): State<Arc<Alerting>>, headers: HeaderMap, body: Bytes) -> Response {
    let g = &a.inbound;
    if !g.auth.enabled() {
        return (StatusCode::NOT_FOUND, "inbound SMS is disabled").into_response();
    }
    let pairs = form(&body);
    let now = a.clock.now();
    let signature = match g.auth.verify(|n| headers.get(n).and_then(|v| v.to_str().ok()), &body, &pairs, now) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(message = "Inbound SMS refused.", reason = %e);
            return refused(StatusCode::FORBIDDEN, "signature");
        }
    };
    if !g.replays.first_use(&signature, now) {
        tracing::warn!(message = "Inbound SMS refused.", reason = "replayed call");
        return refused(StatusCode::FORBIDDEN, "replay");
    }
    if !g.global.try_take(now) {
        tracing::warn!(message = "Inbound SMS refused.", reason = "global rate limit");
        return refused(StatusCode::TOO_MANY_REQUESTS, "rate_limit");
    }
    let (Some(from), Some(text)) = (field(&pairs, "From"), field(&pairs, "Body")) else {
        return (StatusCode::BAD_REQUEST, "From and Body are required").into_response();
    };
    // A literal '+' in a form body decodes to a space: restore it.
    let from = format!("+{}", from.trim().trim_start_matches('+'));
    // Answers that must not tell whether the number is a physician's (help, unknown
    // number, wrong code, lockout) are in the deployment's language for everyone;
    // once the code matched, the physician's own language.
    let neutral = SmsReplyText::of(a.notifier.default_language());
    let Ok(command) = parse_sms_reply(text) else {
        return twiml(neutral.help);
    };
    let unavailable = |e: &StoreError| {
        tracing::warn!(message = "Inbound SMS lookup failed.", error = %e);
        (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response()
    };
    let physician = match a.store.physician_by_mobile(&from).await {
        Ok(p) => p,
        Err(e) => return unavailable(&e),
    };
    // Every attempt is counted per sender number BEFORE the code is checked, known
    // number or not, so the answers and the limits are the same for everyone.
    let sender = sender_key(&g.sender_secret, &from);
    match a.store.sms_admit(&sender, physician.as_ref().map(|p| &p.id), &g.policy, now).await {
        Ok(Admission::Allowed) => {}
        Ok(Admission::Locked { new_lockout, .. }) => {
            if new_lockout {
                tracing::warn!(message = "An SMS sender was locked out after repeated failed codes (see admin_audit).");
            }
            metrics::counter!("vitalwatch_alerting_sms_inbound_refused_total", "reason" => "locked").increment(1);
            return twiml(neutral.not_applied);
        }
        Err(e) => return unavailable(&e),
    }
    let Some(physician) = physician else {
        return twiml(neutral.not_applied);
    };
    let code = match &command {
        SmsCommand::Ack { code } | SmsCommand::Snooze { code, .. } => code.clone(),
    };
    let (episode, sent_for) = match a.store.episode_for_code(&physician.id, code.as_str()).await {
        Ok(Some(e)) => e,
        Ok(None) => return twiml(neutral.not_applied),
        Err(e) => return unavailable(&e),
    };
    // The code was right: whatever the outcome, it was not a guess.
    if let Err(e) = a.store.sms_succeeded(&sender).await {
        tracing::warn!(message = "Could not clear the SMS attempt count.", error = %e);
    }
    let own = SmsReplyText::of(a.notifier.language_of(&physician));
    let (action, reply) = match command {
        SmsCommand::Ack { .. } => (
            Action::Ack { by: physician.id.clone(), via: AckVia::SmsReply, nonce: None, sent_for: Some(sent_for) },
            own.acked.to_string(),
        ),
        SmsCommand::Snooze { minutes, .. } => (
            Action::Snooze {
                by: physician.id.clone(),
                until: now + chrono::Duration::minutes(i64::from(minutes)),
                sent_for: Some(sent_for),
            },
            fill(own.snoozed, &[("minutes", &minutes.to_string())]),
        ),
    };
    match a.store.transition(&episode, action, &a.options, now).await {
        Ok(_) => {
            tracing::debug!(episode = %episode, physician = %physician.id, "SMS command applied");
            twiml(&reply)
        }
        Err(StoreError::Engine(EngineError::Episode(EpisodeError::SeverityRose { .. }))) => twiml(own.more_severe),
        Err(StoreError::Engine(e)) => twiml(&fill(own.refused, &[("reason", own.reason(&e))])),
        Err(e) => {
            tracing::warn!(message = "Inbound SMS command failed.", error = %e);
            (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::i18n::placeholders;
    use crate::render::sms::is_gsm7;

    fn replies(t: &SmsReplyText) -> [&'static str; 9] {
        let SmsReplyText {
            not_applied,
            more_severe,
            help,
            acked,
            snoozed,
            refused,
            reason_resolved,
            reason_snooze,
            reason_other,
        } = t;
        [not_applied, more_severe, help, acked, snoozed, refused, reason_resolved, reason_snooze, reason_other]
    }

    #[test]
    fn sms_answers_agree_on_arguments_and_are_gsm7() {
        for (fr, en) in replies(&SMS_REPLY_FR).into_iter().zip(replies(&SMS_REPLY_EN)) {
            assert_eq!(placeholders(fr), placeholders(en), "{fr:?} vs {en:?}");
            for s in [fr, en] {
                assert!(s.chars().filter(|c| !matches!(c, '{' | '}')).all(is_gsm7), "{s:?} is not GSM-7");
            }
        }
        let reason = SMS_REPLY_FR.reason(&EngineError::Episode(EpisodeError::AlreadyResolved("ep-1".into())));
        assert_eq!(fill(SMS_REPLY_FR.refused, &[("reason", reason)]), "Non appliqué : l'alerte est déjà résolue.");
    }

    #[test]
    fn pages_name_their_language() {
        for lang in Language::ALL {
            let r =
                page(lang, StatusCode::GONE, AckPageText::of(lang).expired_title, AckPageText::of(lang).expired_text);
            assert_eq!(r.status(), StatusCode::GONE);
            assert_eq!(r.headers()[header::CONTENT_LANGUAGE], lang.code());
        }
        assert_ne!(ACK_PAGE_FR.confirm_heading, ACK_PAGE_EN.confirm_heading);
    }
}
