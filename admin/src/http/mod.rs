//! The HTTP admin API (axum): bearer authentication ([`auth`]), JSON errors
//! ([`error`]), the handlers ([`routes`]) and the OpenAPI document
//! ([`openapi`], served at `GET /openapi.json`).
//!
//! Unauthenticated: `GET /healthz`, `GET /readyz` (database reachable),
//! `GET /openapi.json`. Everything under `/v1` needs `Authorization: Bearer <token>`.
//! Request logs carry the method, the route template and the status only
//! (never ids from the path, never bodies).

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use utoipa::OpenApi as _;
use vitalwatch_platform::shutdown::CancellationToken;

use crate::service::AdminService;

pub mod auth;
pub mod error;
pub mod openapi;
pub mod routes;

/// The router over `service`; bodies above `max_body_bytes` get 413.
pub fn router(service: Arc<AdminService>, max_body_bytes: usize) -> Router {
    use routes::*;
    let v1 = Router::new()
        .route("/me", get(me))
        .route("/patients", get(list_patients).post(add_patient))
        .route("/patients/{id}", get(get_patient))
        .route("/patients/{id}/rules", get(get_rules).put(put_rules))
        .route("/patients/{id}/care-team", get(get_care_team).put(put_care_team))
        .route("/devices", get(list_devices).post(add_device))
        .route("/devices/{id}/enrol", post(enrol_device))
        .route("/devices/{id}/unenrol", post(unenrol_device))
        .route("/devices/{id}/retire", post(retire_device))
        .route("/devices/{id}/backfill", post(grant_backfill))
        .route("/physicians", get(list_physicians))
        .route("/physicians/{id}", get(get_physician).put(put_physician))
        .route("/alerts", get(list_alerts))
        .route("/alerts/{id}", get(get_alert))
        .route("/alerts/{id}/ack", post(ack_alert))
        .route("/alerts/{id}/snooze", post(snooze_alert))
        .route("/alerts/{id}/close", post(close_alert))
        .route("/audit", get(list_audit))
        .route("/audit/episodes", get(list_episode_audit));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi_json))
        .nest("/v1", v1)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn(log_request))
        .with_state(service)
}

/// Serves on `listener` until `shutdown`.
pub async fn serve(
    service: Arc<AdminService>,
    max_body_bytes: usize,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(service, max_body_bytes))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

async fn log_request(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned()).unwrap_or_else(|| "-".into());
    let started = std::time::Instant::now();
    let res = next.run(req).await;
    tracing::info!(
        message = "API request.",
        method = %method,
        route = %route,
        status = res.status().as_u16(),
        ms = started.elapsed().as_millis() as u64
    );
    res
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(s): State<Arc<AdminService>>) -> Response {
    match s.ping().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(e) => {
            tracing::debug!(error = %e, "not ready");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
        }
    }
}

async fn openapi_json() -> Response {
    let doc = openapi::ApiDoc::openapi().to_pretty_json().unwrap_or_else(|_| "{}".into());
    ([(header::CONTENT_TYPE, "application/json")], doc).into_response()
}

async fn not_found() -> Response {
    error::ApiError::from(crate::AdminError::NotFound("no such route".into())).into_response()
}
