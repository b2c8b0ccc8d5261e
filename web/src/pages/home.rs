//! `/`: where each role starts (the worklist; specialists: their inbox).

use axum::Router;
use axum::response::Response;
use axum::routing::get;

use super::see_other;
use crate::auth::Viewer;
use crate::state::AppState;

/// The routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new().route("/", get(home))
}

async fn home(v: Viewer) -> Response {
    see_other(if v.user.role.as_str() == "specialist" { "/expertise" } else { "/worklist" })
}
