//! The role's HTTP server (axum): acknowledgment links, the inbound SMS
//! webhook and the health probes.
//!
//! - `GET /ack?t=TOKEN`: a confirmation page only (mail scanners prefetch
//!   links; a GET must not acknowledge);
//! - `POST /ack` (form `t=TOKEN`): verifies the signed, expiring token and
//!   acknowledges once (the nonce is recorded; a second use is refused);
//! - `POST /sms/inbound`: Twilio-style form (`From`, `Body`); `From` must be
//!   a physician's registered mobile; `ACK <code>` / `SNOOZE <code> <min>`;
//!   `X-Twilio-Signature` is verified when an auth token is configured;
//! - `GET /healthz` (process up), `GET /readyz` (database reachable).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use vitalwatch_platform::shutdown::CancellationToken;

use super::Alerting;
use super::twilio_signature;
use crate::ack::{AckError, SmsCommand, parse_sms_reply};
use crate::episode::{AckVia, EpisodeError};
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

/// Serves on `listener` until `shutdown`.
pub async fn serve(
    a: Arc<Alerting>,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(a)).with_graceful_shutdown(async move { shutdown.cancelled().await }).await
}

fn page(status: StatusCode, title: &str, text: &str) -> Response {
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>{t}</title></head><body><h1>{t}</h1><p>{x}</p></body></html>",
        t = escape_html(title),
        x = escape_html(text)
    );
    (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
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

fn token_error(e: &AckError) -> Response {
    match e {
        AckError::Expired(_) => page(
            StatusCode::GONE,
            "Link expired",
            "This acknowledgment link has expired. Acknowledge from a newer message or the application.",
        ),
        _ => page(StatusCode::BAD_REQUEST, "Invalid link", "This acknowledgment link is not valid."),
    }
}

async fn ack_page(State(a): State<Arc<Alerting>>, RawQuery(q): RawQuery) -> Response {
    let pairs = form(q.unwrap_or_default().as_bytes());
    let Some(token) = field(&pairs, "t") else {
        return page(StatusCode::BAD_REQUEST, "Invalid link", "The link has no token.");
    };
    if let Err(e) = a.signer.verify(token, a.clock.now()) {
        return token_error(&e);
    }
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>Acknowledge alert</title></head><body><h1>Acknowledge this alert?</h1>\
         <form method=\"post\" action=\"ack\"><input type=\"hidden\" name=\"t\" value=\"{}\">\
         <button type=\"submit\">Acknowledge</button></form></body></html>",
        escape_html(token)
    );
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

async fn ack_submit(State(a): State<Arc<Alerting>>, body: Bytes) -> Response {
    let pairs = form(&body);
    let Some(token) = field(&pairs, "t") else {
        return page(StatusCode::BAD_REQUEST, "Invalid request", "No token.");
    };
    let now = a.clock.now();
    let claims = match a.signer.verify(token, now) {
        Ok(c) => c,
        Err(e) => return token_error(&e),
    };
    let action = Action::Ack { by: claims.recipient.clone(), via: AckVia::Link, nonce: Some(claims.nonce.clone()) };
    match a.store.transition(&claims.episode_id, action, &a.options, now).await {
        Ok(_) => {
            tracing::debug!(episode = %claims.episode_id, physician = %claims.recipient, "acknowledged by link");
            page(StatusCode::OK, "Acknowledged", "Thank you: the alert is acknowledged and escalation has stopped.")
        }
        Err(e) => store_error(&e),
    }
}

fn store_error(e: &StoreError) -> Response {
    match e {
        StoreError::Engine(EngineError::NonceUsed) => {
            page(StatusCode::CONFLICT, "Already used", "This acknowledgment link was already used.")
        }
        StoreError::Engine(EngineError::UnknownEpisode(_)) => {
            page(StatusCode::NOT_FOUND, "Unknown alert", "This alert is unknown.")
        }
        StoreError::Engine(EngineError::Episode(EpisodeError::AlreadyResolved(_))) => {
            page(StatusCode::CONFLICT, "Already resolved", "This alert episode is already resolved.")
        }
        other => {
            tracing::warn!(message = "Acknowledgment failed.", error = %other);
            page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again",
                "The acknowledgment could not be recorded; please try again.",
            )
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

async fn sms_inbound(State(a): State<Arc<Alerting>>, headers: HeaderMap, body: Bytes) -> Response {
    let pairs = form(&body);
    if let Some(token) = &a.config.twilio_auth_token {
        let sig = headers.get("x-twilio-signature").and_then(|v| v.to_str().ok()).unwrap_or("");
        if !twilio_signature::verify(token.expose(), &a.config.sms_inbound_url, &pairs, sig) {
            tracing::warn!("inbound SMS with an invalid signature refused");
            return (StatusCode::FORBIDDEN, "invalid signature").into_response();
        }
    }
    let (Some(from), Some(text)) = (field(&pairs, "From"), field(&pairs, "Body")) else {
        return (StatusCode::BAD_REQUEST, "From and Body are required").into_response();
    };
    // A literal '+' in a form body decodes to a space: restore it.
    let from = format!("+{}", from.trim().trim_start_matches('+'));
    let physician = match a.store.physician_by_mobile(&from).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            tracing::debug!("inbound SMS from an unregistered number ignored");
            return twiml("This number is not registered with vitalwatch.");
        }
        Err(e) => {
            tracing::warn!(message = "Inbound SMS lookup failed.", error = %e);
            return (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response();
        }
    };
    let command = match parse_sms_reply(text) {
        Ok(c) => c,
        Err(_) => return twiml("Reply \"ACK <code>\" or \"SNOOZE <code> <minutes>\"."),
    };
    let code = match &command {
        SmsCommand::Ack { code } | SmsCommand::Snooze { code, .. } => code.clone(),
    };
    let episode = match a.store.episode_for_code(&physician.id, code.as_str()).await {
        Ok(Some(e)) => e,
        Ok(None) => return twiml("No open alert with this code."),
        Err(e) => {
            tracing::warn!(message = "Inbound SMS lookup failed.", error = %e);
            return (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response();
        }
    };
    let now = a.clock.now();
    let (action, reply) = match command {
        SmsCommand::Ack { .. } => (
            Action::Ack { by: physician.id.clone(), via: AckVia::SmsReply, nonce: None },
            "Acknowledged. Escalation stopped.".to_string(),
        ),
        SmsCommand::Snooze { minutes, .. } => (
            Action::Snooze { by: physician.id.clone(), until: now + chrono::Duration::minutes(i64::from(minutes)) },
            format!("Snoozed for {minutes} min."),
        ),
    };
    match a.store.transition(&episode, action, &a.options, now).await {
        Ok(_) => {
            tracing::debug!(episode = %episode, physician = %physician.id, "SMS command applied");
            twiml(&reply)
        }
        Err(StoreError::Engine(e)) => twiml(&format!("Not applied: {e}.")),
        Err(e) => {
            tracing::warn!(message = "Inbound SMS command failed.", error = %e);
            (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response()
        }
    }
}
