//! The static files: one stylesheet and one small script, compiled into the
//! binary (no build chain). URLs carry a content hash, so they are cached
//! for a year and change when the content does.

use std::sync::OnceLock;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest as _, Sha256};

use crate::state::AppState;

/// The stylesheet.
pub const APP_CSS: &str = include_str!("../static/app.css");
/// The script: worklist refresh, confirmations (progressive enhancement:
/// every page works without it).
pub const APP_JS: &str = include_str!("../static/app.js");

/// A short hash of both files, for cache-busting URLs.
pub fn version() -> &'static str {
    static V: OnceLock<String> = OnceLock::new();
    V.get_or_init(|| {
        let d = Sha256::new().chain_update(APP_CSS).chain_update(APP_JS).finalize();
        d.iter().take(6).map(|b| format!("{b:02x}")).collect()
    })
}

fn asset(body: &'static str, kind: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable"));
    r
}

/// `/static/app.css` and `/static/app.js`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/static/app.css", get(|| async { asset(APP_CSS, "text/css; charset=utf-8") }))
        .route("/static/app.js", get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }))
}
