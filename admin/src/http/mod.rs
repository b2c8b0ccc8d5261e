//! The HTTP admin API (axum): bearer authentication ([`auth`]), JSON errors
//! ([`error`]), the handlers ([`routes`]) and the OpenAPI document
//! ([`openapi`], served at `GET /openapi.json`).
//!
//! Unauthenticated: `GET /healthz`, `GET /readyz` (database reachable),
//! `GET /openapi.json`. Everything under `/v1` needs `Authorization: Bearer <token>`.
//! Request logs carry the method, the route template and the status only
//! (never ids from the path, never bodies).
//!
//! Transport limits ([`vitalwatch_platform::http`]): header read timeout,
//! request timeout (408), connection cap, body size limit (413). Error bodies
//! never carry internal details: a database failure is a generic message and
//! an `error_id` that the log has with the details.

use std::sync::Arc;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use utoipa::OpenApi as _;
use vitalwatch_platform::http::HttpLimits;
use vitalwatch_platform::shutdown::CancellationToken;

use crate::service::AdminService;

pub mod auth;
pub mod error;
pub mod ingest_routes;
pub mod lifecycle;
pub mod openapi;
pub mod routes;

/// The router over `service`; bodies above `limits.max_body_bytes` get 413,
/// requests not answered within `limits.request_timeout` 408.
pub fn router(service: Arc<AdminService>, limits: &HttpLimits) -> Router {
    use routes::*;
    let v1 = Router::new()
        .route("/me", get(me))
        .route("/patients", get(list_patients).post(add_patient))
        .route("/patients/{id}", get(get_patient))
        .route("/patients/{id}/rules", get(get_rules).put(put_rules))
        .route("/patients/{id}/rules/versions", get(get_rules_versions))
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
        .route("/audit/episodes", get(list_episode_audit))
        .route("/tokens", get(list_tokens))
        .route("/patients/{id}/export", get(export_patient))
        .route("/patients/{id}/access-log", get(get_access_log))
        .route("/ingest-clients", get(ingest_routes::list_ingest_clients).post(ingest_routes::create_ingest_client))
        .route("/ingest-clients/{name}/revoke", post(ingest_routes::revoke_ingest_client))
        .route("/patients/{id}/inclusions", post(lifecycle::include_patient))
        .route("/patients/{id}/discharge", post(lifecycle::discharge_patient))
        .route("/patients/{id}/periods", get(lifecycle::patient_periods))
        .route("/patients/{id}/erasure", post(lifecycle::erase_patient))
        .route("/reports/activity", get(activity_report));
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi_json))
        .nest("/v1", v1)
        .nest("/fhir/r4", crate::fhir::http::router())
        .fallback(not_found)
        .with_state(service);
    vitalwatch_platform::http::limit(app, limits).layer(middleware::from_fn(log_request))
}

/// Serves on `listener` until `shutdown`, with the header read timeout and
/// connection cap of `limits` (see [`vitalwatch_platform::http::serve`]).
pub async fn serve(
    service: Arc<AdminService>,
    limits: &HttpLimits,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    vitalwatch_platform::http::serve(listener, router(service, limits), limits, shutdown).await
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
            tracing::warn!(message = "Admin API not ready: database unavailable.", error = %e);
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
