//! The signed-in viewer of a page, and forms checked against CSRF.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono_tz::Tz;
use serde::de::DeserializeOwned;
use vitalwatch_admin::Actor;
use vitalwatch_admin::account::Account;

use super::cookies;
use crate::fmt::tz_or;
use crate::i18n::Lang;
use crate::pages::error_page;
use crate::state::AppState;

/// The signed-in user of a request, with what pages need to render for them.
#[derive(Debug, Clone)]
pub struct Viewer {
    /// The account.
    pub user: Account,
    /// The actor the service layer authorizes (origin: `web <client address>`).
    pub actor: Actor,
    /// The account's language.
    pub lang: Lang,
    /// The account's time zone.
    pub tz: Tz,
    /// The session's CSRF token: the hidden `_csrf` field of every form.
    pub csrf: String,
}

/// The session's CSRF token, left in the request by [`Viewer`] for [`CsrfForm`].
#[derive(Debug, Clone)]
struct SessionCsrf(String);

/// Where a request came from, for the audit trail: `web <address>`.
pub fn origin(parts_headers: &HeaderMap, peer: Option<SocketAddr>, trust_forwarded_for: bool) -> String {
    let forwarded = trust_forwarded_for
        .then(|| parts_headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()))
        .flatten()
        .and_then(|v| v.split(',').next())
        .map(str::trim)
        .filter(|v| v.parse::<std::net::IpAddr>().is_ok());
    match (forwarded, peer) {
        (Some(f), _) => format!("web {f}"),
        (None, Some(p)) => format!("web {}", p.ip()),
        (None, None) => "web".into(),
    }
}

/// The client's address, when the server recorded it (`ConnectInfo`).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0)))
    }
}

/// Whether `next` is a safe place to return to after sign-in (a local path).
pub fn safe_next(next: &str) -> bool {
    next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') && !next.contains("://")
}

fn to_login(parts: &Parts) -> Response {
    let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let next = if safe_next(path) { path } else { "/" };
    Redirect::to(&format!("/login?next={}", crate::pages::login::encode(next))).into_response()
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Some(secret) = cookies::get(&parts.headers, cookies::SESSION) else { return Err(to_login(parts)) };
        let policy = state.settings.session_policy();
        let session = match state.admin.session(secret, policy).await {
            Ok(Some(s)) => s,
            Ok(None) => return Err(to_login(parts)),
            Err(e) => {
                tracing::warn!(message = "Session lookup failed.", error = %e);
                return Err(error_page(None, StatusCode::SERVICE_UNAVAILABLE, None));
            }
        };
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
        let origin = origin(&parts.headers, peer, state.settings.trust_forwarded_for);
        let actor = match session.account.actor(&origin) {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(message = "Account cannot act.", error = %e);
                return Err(error_page(None, StatusCode::FORBIDDEN, None));
            }
        };
        parts.extensions.insert(SessionCsrf(session.csrf.clone()));
        Ok(Viewer {
            lang: Lang::parse(&session.account.language).ok().unwrap_or(state.settings.default_language),
            tz: tz_or(&session.account.time_zone, state.settings.default_tz()),
            actor,
            csrf: session.csrf,
            user: session.account,
        })
    }
}

/// Whether a state-changing request comes from our own pages: the
/// `Sec-Fetch-Site` header (sent by every current browser) must not be
/// `cross-site`, and an `Origin` header, when sent, must name the host the
/// request was sent to.
pub fn same_origin(headers: &HeaderMap) -> bool {
    if headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()).is_some_and(|v| v == "cross-site") {
        return false;
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else { return true };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    let origin_host = origin.split_once("://").map_or("", |(_, h)| h).trim_end_matches('/');
    !host.is_empty() && origin_host.eq_ignore_ascii_case(host)
}

/// Constant-time string comparison (CSRF tokens).
pub fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A POSTed form (`application/x-www-form-urlencoded`) whose hidden `_csrf`
/// field matches the session's token and whose origin is ours; otherwise a
/// 403 "form expired" page. Use it after [`Viewer`] in the handler's
/// arguments. `T` must tolerate the extra `_csrf` field (no `deny_unknown_fields`).
#[derive(Debug)]
pub struct CsrfForm<T>(pub T);

#[derive(serde::Deserialize)]
struct CsrfField {
    #[serde(default, rename = "_csrf")]
    csrf: String,
}

impl<T: DeserializeOwned + Send> FromRequest<AppState> for CsrfForm<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let expected = req.extensions().get::<SessionCsrf>().cloned();
        let same = same_origin(req.headers());
        let bytes = axum::body::Bytes::from_request(req, state).await.map_err(IntoResponse::into_response)?;
        let given: CsrfField = serde_urlencoded::from_bytes(&bytes).unwrap_or(CsrfField { csrf: String::new() });
        let ok = same && expected.is_some_and(|e| ct_eq(&e.0, &given.csrf));
        if !ok {
            tracing::info!(message = "Form refused: CSRF token or origin check failed.");
            return Err(error_page(None, StatusCode::FORBIDDEN, Some(crate::pages::ErrorKind::FormExpired)));
        }
        serde_urlencoded::from_bytes::<T>(&bytes).map(CsrfForm).map_err(|e| {
            tracing::info!(message = "Form refused: invalid fields.", error = %e);
            error_page(None, StatusCode::UNPROCESSABLE_ENTITY, Some(crate::pages::ErrorKind::Invalid(e.to_string())))
        })
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn next_must_be_a_local_path() {
        assert!(safe_next("/patients/p1?range=7d"));
        assert!(!safe_next("//evil.example/x"));
        assert!(!safe_next("https://evil.example"));
        assert!(!safe_next("/\\evil.example"));
        assert!(!safe_next("patients"));
    }

    #[test]
    fn cross_site_posts_are_refused() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8090"));
        assert!(same_origin(&h), "no Origin header: older clients, the CSRF token still applies");
        h.insert(header::ORIGIN, HeaderValue::from_static("http://127.0.0.1:8090"));
        assert!(same_origin(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("https://evil.example"));
        assert!(!same_origin(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("http://127.0.0.1:8090"));
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!same_origin(&h));
    }

    #[test]
    fn origin_names_the_client() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.7, 10.0.0.1"));
        let peer: SocketAddr = "10.0.0.1:5555".parse().unwrap();
        assert_eq!(origin(&h, Some(peer), false), "web 10.0.0.1");
        assert_eq!(origin(&h, Some(peer), true), "web 203.0.113.7");
        assert!(ct_eq("abc", "abc") && !ct_eq("abc", "abd") && !ct_eq("abc", "ab"));
    }
}
