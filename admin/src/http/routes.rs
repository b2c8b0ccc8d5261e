//! The handlers: each authenticates, calls one service operation and returns JSON.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::auth::Auth;
use super::error::{ApiError, Body, Query};
use crate::model::*;
use crate::service::AdminService;
use crate::service::rules::parse_rules_change;

type S = State<Arc<AdminService>>;
type Res<T> = Result<Json<T>, ApiError>;

/// The caller's identity and role.
#[utoipa::path(get, path = "/v1/me", tag = "auth",
    responses((status = 200, body = Me), (status = 401, body = ErrorBody)))]
pub async fn me(State(s): S, Auth(a): Auth) -> Json<Me> {
    Json(s.me(&a))
}

/// Patients (a physician: their own), by id.
#[utoipa::path(get, path = "/v1/patients", tag = "patients", params(PageQuery),
    responses((status = 200, body = PatientPage), (status = 401, body = ErrorBody)))]
pub async fn list_patients(State(s): S, Auth(a): Auth, Query(q): Query<PageQuery>) -> Res<PatientPage> {
    Ok(Json(s.list_patients(&a, &q).await?))
}

/// Registers a patient (operators).
#[utoipa::path(post, path = "/v1/patients", tag = "patients", request_body = NewPatient,
    responses((status = 201, body = Created), (status = 200, body = Created, description = "already registered"),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn add_patient(
    State(s): S,
    Auth(a): Auth,
    Body(b): Body<NewPatient>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    let c = s.add_patient(&a, &b).await?;
    Ok((if c.created { StatusCode::CREATED } else { StatusCode::OK }, Json(c)))
}

/// A patient with care team, rules and enrolled devices.
#[utoipa::path(get, path = "/v1/patients/{id}", tag = "patients", params(("id" = String, Path, description = "patient id")),
    responses((status = 200, body = PatientDetail), (status = 404, body = ErrorBody)))]
pub async fn get_patient(State(s): S, Auth(a): Auth, Path(id): Path<String>) -> Res<PatientDetail> {
    let p = s.patient(&a, &id).await?;
    s.log_access(&a, &id, AccessInterface::Api, "GET /v1/patients/{id}").await?;
    Ok(Json(p))
}

/// A patient's care program and thresholds.
#[utoipa::path(get, path = "/v1/patients/{id}/rules", tag = "rules", params(("id" = String, Path, description = "patient id")),
    responses((status = 200, body = RulesView), (status = 404, body = ErrorBody)))]
pub async fn get_rules(State(s): S, Auth(a): Auth, Path(id): Path<String>) -> Res<RulesView> {
    let r = s.rules(&a, &id).await?;
    s.log_access(&a, &id, AccessInterface::Api, "GET /v1/patients/{id}/rules").await?;
    Ok(Json(r))
}

/// Sets a patient's care program and thresholds (`PatientRules`; operators and the patient's physicians)
/// as a new version; an optional top-level `"reason"` string says why (kept with the version).
#[utoipa::path(put, path = "/v1/patients/{id}/rules", tag = "rules", params(("id" = String, Path, description = "patient id")),
    request_body(content = Object, description = "PatientRules: program, thresholds, changes, cadence, news2, disabled, ...; optional reason"),
    responses((status = 200, body = RulesView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn put_rules(
    State(s): S,
    Auth(a): Auth,
    Path(id): Path<String>,
    Body(v): Body<serde_json::Value>,
) -> Res<RulesView> {
    // Scope first, so a physician probing someone else's patient gets 404, not a validation error.
    s.check_rules_access(&a, &id).await?;
    let (rules, reason) = parse_rules_change(v)?;
    Ok(Json(s.set_rules(&a, &id, &rules, reason.as_deref()).await?))
}

/// A patient's care team.
#[utoipa::path(get, path = "/v1/patients/{id}/care-team", tag = "care teams", params(("id" = String, Path, description = "patient id")),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
pub async fn get_care_team(State(s): S, Auth(a): Auth, Path(id): Path<String>) -> Res<serde_json::Value> {
    let t = s.care_team(&a, &id).await?;
    s.log_access(&a, &id, AccessInterface::Api, "GET /v1/patients/{id}/care-team").await?;
    Ok(Json(t))
}

/// Sets a patient's care team (operators).
#[utoipa::path(put, path = "/v1/patients/{id}/care-team", tag = "care teams", params(("id" = String, Path, description = "patient id")),
    request_body = CareTeamInput,
    responses((status = 200, body = Object), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn put_care_team(
    State(s): S,
    Auth(a): Auth,
    Path(id): Path<String>,
    Body(b): Body<CareTeamInput>,
) -> Res<serde_json::Value> {
    Ok(Json(s.set_care_team(&a, &id, &b).await?))
}

/// Devices with their enrolments (operators).
#[utoipa::path(get, path = "/v1/devices", tag = "devices", params(PageQuery),
    responses((status = 200, body = DevicePage), (status = 403, body = ErrorBody)))]
pub async fn list_devices(State(s): S, Auth(a): Auth, Query(q): Query<PageQuery>) -> Res<DevicePage> {
    Ok(Json(s.list_devices(&a, &q).await?))
}

/// Registers a device (operators).
#[utoipa::path(post, path = "/v1/devices", tag = "devices", request_body = NewDevice,
    responses((status = 201, body = Created), (status = 200, body = Created, description = "already registered"),
        (status = 403, body = ErrorBody)))]
pub async fn add_device(
    State(s): S,
    Auth(a): Auth,
    Body(b): Body<NewDevice>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    let c = s.add_device(&a, &b).await?;
    Ok((if c.created { StatusCode::CREATED } else { StatusCode::OK }, Json(c)))
}

/// Enrols a device to a patient, or moves it (its open enrolment ends then).
#[utoipa::path(post, path = "/v1/devices/{id}/enrol", tag = "devices", params(("id" = String, Path, description = "device id")),
    request_body = Enrol, responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn enrol_device(
    State(s): S,
    Auth(a): Auth,
    Path(id): Path<String>,
    Body(b): Body<Enrol>,
) -> Result<StatusCode, ApiError> {
    s.enrol_device(&a, &id, &b).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Ends a device's current enrolment.
#[utoipa::path(post, path = "/v1/devices/{id}/unenrol", tag = "devices", params(("id" = String, Path, description = "device id")),
    request_body = At, responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn unenrol_device(
    State(s): S,
    Auth(a): Auth,
    Path(id): Path<String>,
    Body(b): Body<At>,
) -> Result<StatusCode, ApiError> {
    s.unenrol_device(&a, &id, &b).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Retires a device: its readings are rejected from then on.
#[utoipa::path(post, path = "/v1/devices/{id}/retire", tag = "devices", params(("id" = String, Path, description = "device id")),
    request_body = At, responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn retire_device(
    State(s): S,
    Auth(a): Auth,
    Path(id): Path<String>,
    Body(b): Body<At>,
) -> Result<StatusCode, ApiError> {
    s.retire_device(&a, &id, &b).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Grants a moved (or unenrolled) device a bounded window to file the readings
/// it stored for its previous patient (audited as `device.backfill`).
#[utoipa::path(post, path = "/v1/devices/{id}/backfill", tag = "devices", params(("id" = String, Path, description = "device id")),
    request_body = Backfill, responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    (status = 422, body = ErrorBody)))]
pub async fn grant_backfill(
    State(s): S,
    Auth(a): Auth,
    Path(id): Path<String>,
    Body(b): Body<Backfill>,
) -> Result<StatusCode, ApiError> {
    s.grant_backfill(&a, &id, &b).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The physicians' directory (operators).
#[utoipa::path(get, path = "/v1/physicians", tag = "physicians", params(PageQuery),
    responses((status = 200, body = PhysicianPage), (status = 403, body = ErrorBody)))]
pub async fn list_physicians(State(s): S, Auth(a): Auth, Query(q): Query<PageQuery>) -> Res<PhysicianPage> {
    Ok(Json(s.list_physicians(&a, &q).await?))
}

/// One physician (physicians: themselves only).
#[utoipa::path(get, path = "/v1/physicians/{id}", tag = "physicians", params(("id" = String, Path, description = "physician id")),
    responses((status = 200, body = PhysicianView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_physician(State(s): S, Auth(a): Auth, Path(id): Path<String>) -> Res<PhysicianView> {
    Ok(Json(s.physician(&a, &id).await?))
}

/// Creates or replaces a physician (operators).
#[utoipa::path(put, path = "/v1/physicians/{id}", tag = "physicians", params(("id" = String, Path, description = "physician id")),
    request_body = PhysicianInput,
    responses((status = 200, body = PhysicianView), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn put_physician(
    State(s): S,
    Auth(a): Auth,
    Path(id): Path<String>,
    Body(b): Body<PhysicianInput>,
) -> Res<PhysicianView> {
    Ok(Json(s.upsert_physician(&a, &id, &b).await?))
}

/// Alert episodes, newest first (physicians: their patients').
#[utoipa::path(get, path = "/v1/alerts", tag = "alerts", params(AlertQuery),
    responses((status = 200, body = AlertPage), (status = 401, body = ErrorBody)))]
pub async fn list_alerts(State(s): S, Auth(a): Auth, Query(q): Query<AlertQuery>) -> Res<AlertPage> {
    Ok(Json(s.list_alerts(&a, &q).await?))
}

/// One alert episode with evidence and alerting state.
#[utoipa::path(get, path = "/v1/alerts/{id}", tag = "alerts", params(("id" = String, Path, description = "episode id")),
    responses((status = 200, body = AlertDetail), (status = 404, body = ErrorBody)))]
pub async fn get_alert(State(s): S, Auth(a): Auth, Path(id): Path<String>) -> Res<AlertDetail> {
    let d = s.alert(&a, &id).await?;
    if let Some(p) = d.alert.as_ref().map(|v| v.patient_id.clone()) {
        s.log_access(&a, &p, AccessInterface::Api, "GET /v1/alerts/{id}").await?;
    }
    Ok(Json(d))
}

/// Acknowledges an episode (stops escalation at its severity).
#[utoipa::path(post, path = "/v1/alerts/{id}/ack", tag = "alerts", params(("id" = String, Path, description = "episode id")),
    request_body = AlertAction,
    responses((status = 200, body = AlertActionResult), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn ack_alert(
    State(s): S,
    Auth(a): Auth,
    Path(id): Path<String>,
    Body(b): Body<AlertAction>,
) -> Res<AlertActionResult> {
    Ok(Json(s.ack_alert(&a, &id, &b).await?))
}

/// Snoozes an episode (a severity rise breaks the snooze).
#[utoipa::path(post, path = "/v1/alerts/{id}/snooze", tag = "alerts", params(("id" = String, Path, description = "episode id")),
    request_body = SnoozeInput,
    responses((status = 200, body = AlertActionResult), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn snooze_alert(
    State(s): S,
    Auth(a): Auth,
    Path(id): Path<String>,
    Body(b): Body<SnoozeInput>,
) -> Res<AlertActionResult> {
    Ok(Json(s.snooze_alert(&a, &id, &b).await?))
}

/// Closes an episode (acknowledged and marked closed; a severity rise reopens it).
#[utoipa::path(post, path = "/v1/alerts/{id}/close", tag = "alerts", params(("id" = String, Path, description = "episode id")),
    request_body = AlertAction,
    responses((status = 200, body = AlertActionResult), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn close_alert(
    State(s): S,
    Auth(a): Auth,
    Path(id): Path<String>,
    Body(b): Body<AlertAction>,
) -> Res<AlertActionResult> {
    Ok(Json(s.close_alert(&a, &id, &b).await?))
}

/// The admin audit trail, newest first (physicians: about their patients or by them).
#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 400, body = ErrorBody)))]
pub async fn list_audit(State(s): S, Auth(a): Auth, Query(q): Query<AuditQuery>) -> Res<AuditPage> {
    Ok(Json(s.audit(&a, &q).await?))
}

/// The episode audit trail (alerting decisions, deliveries, acknowledgments), newest first.
#[utoipa::path(get, path = "/v1/audit/episodes", tag = "audit", params(EpisodeAuditQuery),
    responses((status = 200, body = EpisodeAuditPage), (status = 400, body = ErrorBody)))]
pub async fn list_episode_audit(
    State(s): S,
    Auth(a): Auth,
    Query(q): Query<EpisodeAuditQuery>,
) -> Res<EpisodeAuditPage> {
    Ok(Json(s.episode_audit(&a, &q).await?))
}

/// The API tokens with their expiry and last use, never their secrets (operators).
#[utoipa::path(get, path = "/v1/tokens", tag = "auth",
    responses((status = 200, body = TokenList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_tokens(State(s): S, Auth(a): Auth) -> Res<TokenList> {
    Ok(Json(TokenList { items: s.list_tokens(&a).await? }))
}

/// Exports all data about a patient (GDPR right of access): `format=fhir`
/// (the `Patient/$everything` Bundle, type collection) or `format=csv` (every
/// stored observation with its provenance, and every episode). Logged in the
/// read-access log.
#[utoipa::path(get, path = "/v1/patients/{id}/export", tag = "patients",
    params(("id" = String, Path, description = "patient id"), ExportQuery),
    responses((status = 200, description = "application/fhir+json Bundle or text/csv"),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn export_patient(
    State(s): S,
    Auth(a): Auth,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    Query(q): Query<ExportQuery>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse as _;
    let base = crate::fhir::http::base_url(&headers);
    let (content_type, body) = s.export_patient(&a, &id, q.format, AccessInterface::Api, &base).await?;
    let ext = match q.format {
        ExportFormat::Fhir => "json",
        ExportFormat::Csv => "csv",
    };
    let disposition = format!("attachment; filename=\"patient-{id}.{ext}\"");
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, content_type.to_owned()),
            (axum::http::header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response())
}

/// Who read a patient's data, when and through which interface (operators;
/// physicians: their own patients), newest first.
#[utoipa::path(get, path = "/v1/patients/{id}/access-log", tag = "patients",
    params(("id" = String, Path, description = "patient id"), PageQuery),
    responses((status = 200, body = AccessLogPage), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_access_log(
    State(s): S,
    Auth(a): Auth,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Res<AccessLogPage> {
    Ok(Json(s.access_log(&a, &id, &q).await?))
}

/// Every version of a patient's care program and thresholds, newest first: the
/// rules, who changed them, when and why (`{"versions": [...]}`; empty when none
/// was ever set and the program defaults apply).
#[utoipa::path(get, path = "/v1/patients/{id}/rules/versions", tag = "rules", params(("id" = String, Path, description = "patient id")),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
pub async fn get_rules_versions(State(s): S, Auth(a): Auth, Path(id): Path<String>) -> Res<serde_json::Value> {
    let versions = s.rules_history(&a, &id).await?;
    Ok(Json(serde_json::json!({ "patient_id": id, "versions": versions })))
}
/// The monthly télésurveillance activity report (operators: every patient; physicians and nurses:
/// their own): days with data, readings per type, alerts by severity, acknowledgment delays,
/// actions. `format=csv`: a `;`-separated UTF-8 CSV with a byte-order mark, as an attachment.
#[utoipa::path(get, path = "/v1/reports/activity", tag = "reports", params(crate::service::report::ReportQuery),
    responses((status = 200, body = crate::report::ActivityReport, description = "JSON, or CSV with format=csv"),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn activity_report(
    State(s): S,
    Auth(a): Auth,
    Query(q): Query<crate::service::report::ReportQuery>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let csv = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => return Err(crate::error::AdminError::Invalid("format must be json or csv".into()).into()),
    };
    let report = s.activity_report(&a, &q).await?;
    if !csv {
        return Ok(Json(report).into_response());
    }
    let name = match (&report.patient, &report.physician) {
        (Some(p), _) => format!("activity-{}-{p}.csv", report.month),
        (None, Some(d)) => format!("activity-{}-{d}.csv", report.month),
        (None, None) => format!("activity-{}.csv", report.month),
    };
    // Ids are [A-Za-z0-9._-]; anything else is dropped from the file name.
    let name: String = name.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')).collect();
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (axum::http::header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
        ],
        crate::report::to_csv(&report),
    )
        .into_response())
}
