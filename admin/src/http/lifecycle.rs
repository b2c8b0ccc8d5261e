//! Handlers of the patient lifecycle (inclusion, discharge, periods) and of
//! GDPR erasure.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::auth::Auth;
use super::error::{ApiError, Body};
use crate::model::ErrorBody;
use crate::service::AdminService;
use crate::service::erasure::{ErasureInput, ErasureResult};
use crate::service::lifecycle::{DischargeInput, DischargeResult, InclusionInput, InclusionResult, PeriodsView};

type S = State<Arc<AdminService>>;

/// Includes a patient in a monitoring programme (a new period; a readmission after a discharge).
/// Operators, and physicians for their own patients. 409 if the patient is already monitored.
#[utoipa::path(post, path = "/v1/patients/{id}/inclusions", tag = "lifecycle",
    params(("id" = String, Path, description = "patient id")), request_body = InclusionInput,
    responses((status = 201, body = InclusionResult), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn include_patient(
    State(s): S,
    Auth(a): Auth,
    Path(id): Path<String>,
    Body(b): Body<InclusionInput>,
) -> Result<(StatusCode, Json<InclusionResult>), ApiError> {
    Ok((StatusCode::CREATED, Json(s.include_patient(&a, &id, &b).await?)))
}

/// Ends a patient's monitoring: period ended, devices unenrolled, open episodes closed,
/// alerts and readings stopped; the data is kept. 409 if not monitored.
#[utoipa::path(post, path = "/v1/patients/{id}/discharge", tag = "lifecycle",
    params(("id" = String, Path, description = "patient id")), request_body = DischargeInput,
    responses((status = 200, body = DischargeResult), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn discharge_patient(
    State(s): S,
    Auth(a): Auth,
    Path(id): Path<String>,
    Body(b): Body<DischargeInput>,
) -> Result<Json<DischargeResult>, ApiError> {
    Ok(Json(s.discharge_patient(&a, &id, &b).await?))
}

/// A patient's monitoring status and periods, oldest first.
#[utoipa::path(get, path = "/v1/patients/{id}/periods", tag = "lifecycle",
    params(("id" = String, Path, description = "patient id")),
    responses((status = 200, body = PeriodsView), (status = 404, body = ErrorBody)))]
pub async fn patient_periods(
    State(s): S,
    Auth(a): Auth,
    Path(id): Path<String>,
) -> Result<Json<PeriodsView>, ApiError> {
    Ok(Json(s.patient_periods(&a, &id).await?))
}

/// Erases or pseudonymises a discharged patient's data (operators: the DPO). 409 while monitored.
#[utoipa::path(post, path = "/v1/patients/{id}/erasure", tag = "lifecycle",
    params(("id" = String, Path, description = "patient id")), request_body = ErasureInput,
    responses((status = 200, body = ErasureResult), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn erase_patient(
    State(s): S,
    Auth(a): Auth,
    Path(id): Path<String>,
    Body(b): Body<ErasureInput>,
) -> Result<Json<ErasureResult>, ApiError> {
    Ok(Json(s.erase_patient(&a, &id, &b).await?))
}
