//! Sign-in through OpenID Connect (`[web.oidc]`): authorization code with PKCE.
//!
//! - `GET /auth/oidc/start?next=/path`: discovers the provider (first use),
//!   records the sign-in in progress (state, nonce, PKCE verifier) in the
//!   database keyed by its state and bound to this browser by a random
//!   `vw_oidc` cookie (HttpOnly, SameSite=Lax: the provider's redirect back is
//!   a cross-site navigation), then 303 to the provider;
//! - `GET /auth/oidc/callback?code&state` (or `?error=`): takes the sign-in
//!   once (unknown, used, older than 10 minutes or begun in another browser:
//!   refused), exchanges the code and validates the ID token
//!   ([`crate::auth::oidc`]), maps the identity to an account
//!   (`AdminService::login_oidc`: bound subject, else the provider-verified
//!   e-mail of exactly one account) and opens a session.
//!
//! Refusals send the browser back to the sign-in page with a message; the log
//! names the reason (never a token, a code or a claim value).

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use vitalwatch_admin::service::accounts::LoginError;

use super::login::{encode, start_session};
use super::see_other;
use crate::auth::cookies;
use crate::auth::extract::{ClientAddr, origin, safe_next};
use crate::auth::oidc::PendingLogin;
use crate::state::AppState;

/// The browser-binding cookie of a sign-in in progress.
pub const BINDING: &str = "vw_oidc";

/// The routes of OpenID Connect sign-in.
pub fn routes() -> Router<AppState> {
    Router::new().route("/auth/oidc/start", get(start)).route("/auth/oidc/callback", get(callback))
}

#[derive(Debug, Deserialize)]
struct StartQuery {
    #[serde(default)]
    next: Option<String>,
}

/// Back to the sign-in page with the reason code `why` (`oidc_failed`, `oidc_refused`, ...).
fn back_to_login(why: &str, next: &str) -> Response {
    see_other(&format!("/login?error={why}&next={}", encode(if safe_next(next) { next } else { "/" })))
}

async fn start(State(state): State<AppState>, Query(q): Query<StartQuery>) -> Response {
    let next = q.next.filter(|n| safe_next(n)).unwrap_or_else(|| "/".into());
    let client = match state.oidc().await {
        None => return super::error_page(None, StatusCode::NOT_FOUND, None),
        Some(Ok(c)) => c,
        Some(Err(e)) => {
            tracing::warn!(message = "OpenID Connect provider unavailable.", error = %e);
            return back_to_login("oidc_unavailable", &next);
        }
    };
    let (url, pending) = client.begin();
    let binding = vitalwatch_admin::token::generate();
    let pending_json = match serde_json::to_string(&pending) {
        Ok(j) => j,
        Err(e) => {
            tracing::error!(message = "Could not encode an OpenID Connect sign-in.", error = %e);
            return super::error_page(None, StatusCode::INTERNAL_SERVER_ERROR, None);
        }
    };
    if let Err(e) = state.admin.begin_oidc_login(&pending.state, &binding, &pending_json, &next).await {
        tracing::warn!(message = "Could not record an OpenID Connect sign-in.", error = %e);
        return super::error_page(None, StatusCode::SERVICE_UNAVAILABLE, None);
    }
    let mut r = see_other(&url);
    let cookie = format!(
        "{BINDING}={binding}; Path=/auth/oidc/; HttpOnly; SameSite=Lax; Max-Age=600{}",
        if state.settings.secure_cookies() { "; Secure" } else { "" }
    );
    if let Ok(v) = cookie.parse() {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

#[derive(Debug, Deserialize)]
struct CallbackQuery {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

async fn callback(
    State(state): State<AppState>,
    ClientAddr(peer): ClientAddr,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let Some(sign_in_state) = q.state.as_deref() else { return back_to_login("oidc_failed", "/") };
    let binding = cookies::get(&headers, BINDING).unwrap_or("");
    let taken = match state.admin.take_oidc_login(sign_in_state, binding).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(message = "Could not read an OpenID Connect sign-in.", error = %e);
            return super::error_page(None, StatusCode::SERVICE_UNAVAILABLE, None);
        }
    };
    let Some((pending_json, next)) = taken else {
        tracing::info!(
            message = "OpenID Connect callback refused.",
            reason = "unknown, used, expired or another browser's sign-in"
        );
        return back_to_login("oidc_failed", "/");
    };
    if let Some(error) = q.error.as_deref() {
        // The user cancelled or the provider refused (`access_denied`, ...): no code to exchange.
        tracing::info!(message = "OpenID Connect sign-in refused by the provider.", reason = %error.chars().take(40).collect::<String>());
        return back_to_login("oidc_refused", &next);
    }
    let (Some(code), Ok(pending)) = (q.code.as_deref(), serde_json::from_str::<PendingLogin>(&pending_json)) else {
        return back_to_login("oidc_failed", &next);
    };
    let client = match state.oidc().await {
        Some(Ok(c)) => c,
        Some(Err(e)) => {
            tracing::warn!(message = "OpenID Connect provider unavailable.", error = %e);
            return back_to_login("oidc_unavailable", &next);
        }
        None => return super::error_page(None, StatusCode::NOT_FOUND, None),
    };
    let identity = match client.finish(&pending, code, sign_in_state).await {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!(message = "OpenID Connect sign-in failed.", error = %e);
            return back_to_login("oidc_failed", &next);
        }
    };
    let from = origin(&headers, peer, state.settings.trust_forwarded_for);
    let verified = identity.email_verified == Some(true);
    match state.admin.login_oidc(&identity.subject, identity.email.as_deref(), verified, &from).await {
        Ok(account) => {
            let mut r = start_session(&state, &account, &from, &next).await;
            let clear = format!("{BINDING}=; Path=/auth/oidc/; HttpOnly; SameSite=Lax; Max-Age=0");
            if let Ok(v) = clear.parse() {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
            r
        }
        Err(LoginError::NoAccount | LoginError::Refused) => {
            tracing::info!(message = "OpenID Connect identity has no usable account here.");
            back_to_login("oidc_no_account", &next)
        }
        Err(LoginError::Admin(e)) => {
            tracing::warn!(message = "OpenID Connect sign-in failed.", error = %e);
            super::error_page(None, StatusCode::SERVICE_UNAVAILABLE, None)
        }
    }
}
