//! The handlers of the ingest credentials (`/v1/ingest-clients`, operators
//! only): the credentials of the HTTP ingestion endpoint (docs/http-ingest.md).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Auth;
use super::error::{ApiError, Body};
use crate::model::ErrorBody;
use crate::service::AdminService;
use crate::service::ingest_clients::{CreatedIngestClient, IngestClientView, NewIngestClientRequest};

type S = State<Arc<AdminService>>;

/// The ingest credentials (`GET /v1/ingest-clients`), by name.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IngestClientList {
    /// Active and revoked credentials (never their secrets).
    pub items: Vec<IngestClientView>,
}

/// The ingest credentials with their grants, never their secrets (operators).
#[utoipa::path(get, path = "/v1/ingest-clients", tag = "ingest",
    responses((status = 200, body = IngestClientList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_ingest_clients(State(s): S, Auth(a): Auth) -> Result<Json<IngestClientList>, ApiError> {
    Ok(Json(IngestClientList { items: s.list_ingest_clients(&a).await? }))
}

/// Creates an ingest credential (operators); the secret is in this answer only.
#[utoipa::path(post, path = "/v1/ingest-clients", tag = "ingest", request_body = NewIngestClientRequest,
    responses((status = 201, body = CreatedIngestClient), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_ingest_client(
    State(s): S,
    Auth(a): Auth,
    Body(b): Body<NewIngestClientRequest>,
) -> Result<(StatusCode, Json<CreatedIngestClient>), ApiError> {
    Ok((StatusCode::CREATED, Json(s.create_ingest_client(&a, &b).await?)))
}

/// Revokes an ingest credential by name (operators); effective within
/// `ingest.http_credentials_refresh_secs`.
#[utoipa::path(post, path = "/v1/ingest-clients/{name}/revoke", tag = "ingest",
    params(("name" = String, Path, description = "credential name")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke_ingest_client(
    State(s): S,
    Auth(a): Auth,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.revoke_ingest_client(&a, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
