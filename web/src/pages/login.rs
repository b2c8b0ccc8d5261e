//! Sign-in and sign-out.
//!
//! - `GET /login?next=/path&lang=fr|en`: the form (language: `lang`, else the
//!   browser's `Accept-Language`, else `web.default_language`);
//! - `POST /login`: local password sign-in (when `web.local_accounts`). The
//!   form is protected by a double-submit token (cookie `vw_login` and hidden
//!   field) plus the same-origin check, against login CSRF;
//! - `POST /logout`: ends the session (CSRF-checked like every form).

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use vitalwatch_admin::service::accounts::LoginError;

use super::{PageCtx, render_status, see_other};
use crate::auth::cookies;
use crate::auth::extract::{ClientAddr, CsrfForm, Viewer, ct_eq, origin, safe_next, same_origin};
use crate::i18n::Lang;
use crate::state::AppState;

/// Texts of the sign-in page.
#[derive(Debug)]
pub struct LoginText {
    title: &'static str,
    username: &'static str,
    password: &'static str,
    submit: &'static str,
    oidc: &'static str,
    or_local: &'static str,
    refused: &'static str,
    expired: &'static str,
    signed_out: &'static str,
    unavailable: &'static str,
    oidc_failed: &'static str,
    oidc_refused: &'static str,
    oidc_unavailable: &'static str,
    oidc_no_account: &'static str,
}

const FR: LoginText = LoginText {
    title: "Connexion",
    username: "Identifiant",
    password: "Mot de passe",
    submit: "Se connecter",
    oidc: "Se connecter avec Pro Santé Connect / l'annuaire de l'établissement",
    or_local: "ou avec un compte local :",
    refused: "Identifiant ou mot de passe incorrect.",
    expired: "Le formulaire a expiré ; recommencez.",
    signed_out: "Vous êtes déconnecté·e.",
    unavailable: "Service momentanément indisponible ; réessayez dans un instant.",
    oidc_failed: "La connexion par le fournisseur d'identité a échoué ; recommencez.",
    oidc_refused: "Connexion annulée auprès du fournisseur d'identité.",
    oidc_unavailable: "Le fournisseur d'identité ne répond pas ; réessayez plus tard ou utilisez un compte local.",
    oidc_no_account: "Cette identité n'est liée à aucun compte vitalwatch ; demandez à l'exploitation de vous en créer un.",
};

const EN: LoginText = LoginText {
    title: "Sign in",
    username: "User name",
    password: "Password",
    submit: "Sign in",
    oidc: "Sign in with Pro Santé Connect / your organisation's directory",
    or_local: "or with a local account:",
    refused: "Wrong user name or password.",
    expired: "The form has expired; please try again.",
    signed_out: "You are signed out.",
    unavailable: "Service unavailable for a moment; try again shortly.",
    oidc_failed: "Sign-in through the identity provider failed; please try again.",
    oidc_refused: "Sign-in cancelled at the identity provider.",
    oidc_unavailable: "The identity provider does not answer; try later or use a local account.",
    oidc_no_account: "This identity is not linked to a vitalwatch account; ask operations to create one.",
};

fn text(l: Lang) -> &'static LoginText {
    match l {
        Lang::Fr => &FR,
        Lang::En => &EN,
    }
}

#[derive(askama::Template)]
#[template(path = "login.html")]
struct LoginPage {
    ctx: PageCtx,
    t: &'static LoginText,
    csrf: String,
    next: String,
    next_enc: String,
    username: String,
    error: String,
    notice: String,
    oidc: bool,
    local: bool,
}

/// The sign-in routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/login", get(form).post(submit)).route("/logout", post(logout))
}

#[derive(Debug, Deserialize)]
struct LoginQuery {
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    lang: Option<String>,
    #[serde(default)]
    signed_out: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

/// The language of a page before sign-in.
pub fn request_lang(state: &AppState, asked: Option<&str>, headers: &HeaderMap) -> Lang {
    asked
        .and_then(|l| Lang::parse(l).ok())
        .or_else(|| {
            headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()).and_then(Lang::from_accept_language)
        })
        .unwrap_or(state.settings.default_language)
}

/// Percent-encodes a local path for a query parameter.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

struct FormState<'a> {
    lang: Lang,
    next: &'a str,
    username: &'a str,
    error: &'static str,
    notice: &'static str,
}

fn page(state: &AppState, f: FormState<'_>, status: StatusCode) -> Response {
    let csrf = vitalwatch_admin::token::generate();
    let next = if safe_next(f.next) { f.next } else { "/" };
    let t = text(f.lang);
    let mut r = render_status(
        status,
        LoginPage {
            ctx: PageCtx::anonymous(f.lang),
            t,
            csrf: csrf.clone(),
            next: next.to_owned(),
            next_enc: encode(next),
            username: f.username.to_owned(),
            error: f.error.to_owned(),
            notice: f.notice.to_owned(),
            oidc: state.oidc_enabled(),
            local: state.settings.local_accounts,
        },
    );
    if let Ok(v) = cookies::set(cookies::LOGIN_CSRF, &csrf, state.settings.secure_cookies()).parse() {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

async fn form(State(state): State<AppState>, Query(q): Query<LoginQuery>, headers: HeaderMap) -> Response {
    let lang = request_lang(&state, q.lang.as_deref(), &headers);
    let t = text(lang);
    let notice = if q.signed_out.is_some() { t.signed_out } else { "" };
    let error = match q.error.as_deref() {
        Some("oidc_refused") => t.oidc_refused,
        Some("oidc_unavailable") => t.oidc_unavailable,
        Some("oidc_no_account") => t.oidc_no_account,
        Some(_) => t.oidc_failed,
        None => "",
    };
    let next = q.next.as_deref().unwrap_or("/");
    page(&state, FormState { lang, next, username: "", error, notice }, StatusCode::OK)
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    #[serde(default, rename = "_csrf")]
    csrf: String,
    #[serde(default)]
    next: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

async fn submit(
    State(state): State<AppState>,
    ClientAddr(peer): ClientAddr,
    headers: HeaderMap,
    axum::Form(f): axum::Form<LoginForm>,
) -> Response {
    let lang = request_lang(&state, None, &headers);
    let t = text(lang);
    let next = if safe_next(&f.next) { f.next.as_str() } else { "/" };
    let cookie = cookies::get(&headers, cookies::LOGIN_CSRF).unwrap_or("");
    if !same_origin(&headers) || cookie.is_empty() || !ct_eq(cookie, &f.csrf) {
        let st = FormState { lang, next, username: &f.username, error: t.expired, notice: "" };
        return page(&state, st, StatusCode::FORBIDDEN);
    }
    if !state.settings.local_accounts {
        return super::error_page(None, StatusCode::FORBIDDEN, None);
    }
    let from = origin(&headers, peer, state.settings.trust_forwarded_for);
    let username = f.username.trim().to_ascii_lowercase();
    match state.admin.login_password(&username, &f.password, &from).await {
        Ok(account) => start_session(&state, &account, &from, next).await,
        Err(LoginError::Refused | LoginError::NoAccount) => {
            let st = FormState { lang, next, username: &username, error: t.refused, notice: "" };
            page(&state, st, StatusCode::UNAUTHORIZED)
        }
        Err(LoginError::Admin(e)) => {
            tracing::warn!(message = "Sign-in failed.", error = %e);
            let st = FormState { lang, next, username: &username, error: t.unavailable, notice: "" };
            page(&state, st, StatusCode::SERVICE_UNAVAILABLE)
        }
    }
}

/// Opens a session for `account` and redirects to `next` with the cookie set
/// (and the login-form cookie cleared).
pub async fn start_session(
    state: &AppState,
    account: &vitalwatch_admin::account::Account,
    from: &str,
    next: &str,
) -> Response {
    match state.admin.open_session(account, state.settings.session_policy(), from).await {
        Ok(s) => {
            let secure = state.settings.secure_cookies();
            let mut r = see_other(if safe_next(next) { next } else { "/" });
            for c in [cookies::set(cookies::SESSION, &s.secret, secure), cookies::clear(cookies::LOGIN_CSRF, secure)] {
                if let Ok(v) = c.parse() {
                    r.headers_mut().append(header::SET_COOKIE, v);
                }
            }
            r
        }
        Err(e) => {
            tracing::warn!(message = "Could not open a session.", error = %e);
            super::error_page(None, StatusCode::SERVICE_UNAVAILABLE, None)
        }
    }
}

#[derive(Debug, Deserialize)]
struct Empty {}

async fn logout(State(state): State<AppState>, _v: Viewer, headers: HeaderMap, _f: CsrfForm<Empty>) -> Response {
    if let Some(secret) = cookies::get(&headers, cookies::SESSION)
        && let Err(e) = state.admin.close_session(secret).await
    {
        tracing::warn!(message = "Could not end a session.", error = %e);
    }
    let mut r = see_other("/login?signed_out=1");
    if let Ok(v) = cookies::clear(cookies::SESSION, state.settings.secure_cookies()).parse() {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r.into_response()
}
