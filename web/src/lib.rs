//! # vitalwatch-web: the clinician workspace
//!
//! Server-rendered pages (askama templates, one small script for live
//! refresh; no JavaScript build chain) for the care team: the worklist of open
//! episodes, each episode with its actions and tele-expertise, each patient
//! with trends and rules, and the operators' pages. French and English.
//!
//! Served by the `api` role next to the JSON admin API (and by `vitalwatch
//! run`), over the same service layer ([`vitalwatch_admin::AdminService`]) and
//! authorization: every page acts as the signed-in user's [`vitalwatch_admin::Actor`].
//!
//! - [`auth`]: session cookies, the [`auth::Viewer`] extractor, CSRF-checked forms;
//! - [`pages`]: one module per area, each with its routes, templates and texts;
//! - [`chart`]: trend charts as accessible SVG (pure);
//! - [`i18n`], [`fmt`]: languages, dates and numbers in the viewer's locale and time zone;
//! - [`settings`]: the `[web]` section; [`state`]: what handlers share.
//!
//! Every response carries a strict Content-Security-Policy (no inline script
//! or style), `X-Frame-Options: DENY`, and pages are `Cache-Control: no-store`
//! (health data must not linger in shared caches).

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;

pub mod assets;
pub mod auth;
pub mod chart;
pub mod fmt;
pub mod i18n;
pub mod pages;
pub mod settings;
pub mod state;

pub use settings::WebSettings;
pub use state::{AppState, WebState};

/// The workspace's routes over `state`, with the security headers.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(pages::home::routes())
        .merge(pages::login::routes())
        .merge(pages::oidc_login::routes())
        .merge(pages::account::routes())
        .merge(pages::worklist::routes())
        .merge(pages::episode::routes())
        .merge(pages::expertise::routes())
        .merge(pages::patient::routes())
        .merge(pages::patients::routes())
        .merge(pages::rules::routes())
        .merge(pages::reports::routes())
        .merge(pages::admin::routes())
        .merge(assets::routes())
        .with_state(state)
        .layer(middleware::from_fn(security_headers))
}

/// The Content-Security-Policy of every page: our own script and stylesheet
/// only, images from us or `data:` (inline SVG charts are markup, not images),
/// no framing, forms only to us.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                       object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // A page may ask for less (the single-use link page: `no-referrer`).
    if !h.contains_key(header::REFERRER_POLICY) {
        h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    }
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}
