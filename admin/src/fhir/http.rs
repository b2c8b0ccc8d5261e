//! The axum handlers of `/fhir/r4`: bearer authentication as the admin API,
//! FHIR JSON (`application/fhir+json`) bodies, errors as OperationOutcome.

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::Value;

use super::map;
use super::search;
use crate::actor::Actor;
use crate::error::AdminError;
use crate::service::AdminService;
use crate::service::fhir::FhirPage;

/// The FHIR media type (<https://hl7.org/fhir/R4/http.html#mime-type>).
pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

type S = State<Arc<AdminService>>;

/// The `/fhir/r4` router (to nest under `/fhir/r4`).
pub fn router() -> Router<Arc<AdminService>> {
    Router::new()
        .route("/metadata", get(metadata))
        .route("/Patient", get(search_patients))
        .route("/Patient/{id}", get(read_patient))
        .route("/Patient/{id}/$everything", get(everything))
        .route("/Device", get(search_devices))
        .route("/Device/{id}", get(read_device))
        .route("/Observation", get(search_observations))
        .route("/Observation/{id}", get(read_observation))
        .route("/DetectedIssue", get(search_issues))
        .route("/DetectedIssue/{id}", get(read_issue))
        .route("/EpisodeOfCare", get(search_care_episodes))
        .route("/EpisodeOfCare/{id}", get(read_care_episode))
        .fallback(unknown_route)
}

/// A FHIR error: an HTTP status and an OperationOutcome.
#[derive(Debug)]
pub struct FhirError {
    status: StatusCode,
    outcome: Value,
}

impl FhirError {
    /// A 400 for a search the server does not support.
    pub fn bad_request(msg: impl AsRef<str>) -> FhirError {
        FhirError { status: StatusCode::BAD_REQUEST, outcome: map::operation_outcome("invalid", msg.as_ref()) }
    }
}

impl From<AdminError> for FhirError {
    fn from(e: AdminError) -> Self {
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        // IssueType codes: https://hl7.org/fhir/R4/valueset-issue-type.html
        let (code, msg) = match &e {
            AdminError::Unauthenticated | AdminError::TokenExpired => ("login", e.to_string()),
            AdminError::Forbidden(_) => ("forbidden", e.to_string()),
            AdminError::NotFound(_) => ("not-found", e.to_string()),
            AdminError::Invalid(_) => ("invalid", e.to_string()),
            AdminError::Conflict(_) => ("conflict", e.to_string()),
            AdminError::Unavailable(_) => {
                let id = crate::http::error::error_id();
                tracing::warn!(message = "FHIR API: database unavailable.", error_id = %id, error = %e);
                ("transient", format!("the database is unavailable; try again later (error id {id})"))
            }
            AdminError::Internal(_) => {
                let id = crate::http::error::error_id();
                tracing::error!(message = "FHIR API internal error.", error_id = %id, error = %e);
                ("exception", format!("internal error (error id {id})"))
            }
        };
        FhirError { status, outcome: map::operation_outcome(code, &msg) }
    }
}

impl IntoResponse for FhirError {
    fn into_response(self) -> Response {
        let mut res = fhir(self.status, &self.outcome);
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"vitalwatch\""));
        }
        res
    }
}

fn fhir(status: StatusCode, body: &Value) -> Response {
    (status, [(header::CONTENT_TYPE, FHIR_JSON)], body.to_string()).into_response()
}

fn ok(body: &Value) -> Response {
    fhir(StatusCode::OK, body)
}

/// The authenticated caller (the admin API's bearer tokens).
#[derive(Debug, Clone)]
pub struct FhirAuth(pub Actor);

impl FromRequestParts<Arc<AdminService>> for FhirAuth {
    type Rejection = FhirError;

    async fn from_request_parts(parts: &mut Parts, service: &Arc<AdminService>) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(crate::http::auth::bearer)
            .ok_or(AdminError::Unauthenticated)?;
        Ok(FhirAuth(service.authenticate(token).await?.with_origin("fhir")))
    }
}

/// The absolute base URL of this FHIR endpoint, from `Host` (and
/// `X-Forwarded-Proto` behind a TLS-terminating proxy).
pub fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c)))
        .unwrap_or("localhost");
    let proto = match headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()) {
        Some("https") => "https",
        _ => "http",
    };
    format!("{proto}://{host}/fhir/r4")
}

fn pairs(q: Option<String>) -> Vec<(String, String)> {
    form_urlencoded::parse(q.unwrap_or_default().as_bytes()).into_owned().collect()
}

fn simple_query(base: &str, kind: &str, s: &search::SimpleSearch, key: &str, cursor: Option<&str>) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    if let Some(p) = &s.patient {
        q.append_pair(key, p);
    }
    if let Some(c) = s.count {
        q.append_pair("_count", &c.to_string());
    }
    if let Some(c) = cursor {
        q.append_pair("_cursor", c);
    }
    let q = q.finish();
    if q.is_empty() { format!("{base}/{kind}") } else { format!("{base}/{kind}?{q}") }
}

/// The searchset of a simple search's page, with its `self` and `next` links
/// (`key` is the query parameter that names the patient or the id).
fn paged(base: &str, kind: &str, key: &str, p: &search::SimpleSearch, page: FhirPage<String>) -> Response {
    let this = simple_query(base, kind, p, key, p.cursor.as_deref());
    let next = page.next.as_deref().map(|c| simple_query(base, kind, p, key, Some(c)));
    ok(&map::searchset(base, page.resources, &this, next.as_deref()))
}

async fn metadata(headers: HeaderMap) -> Response {
    ok(&map::capability_statement(&base_url(&headers), env!("CARGO_PKG_VERSION"), chrono::Utc::now()))
}

async fn read_patient(State(s): S, FhirAuth(a): FhirAuth, Path(id): Path<String>) -> Result<Response, FhirError> {
    Ok(ok(&s.fhir_patient(&a, &id).await?))
}

async fn search_patients(
    State(s): S,
    FhirAuth(a): FhirAuth,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, FhirError> {
    let base = base_url(&headers);
    let p = search::simple_search(&pairs(q), &["_id", "_count", "_cursor"], s.max_page_size())
        .map_err(FhirError::bad_request)?;
    let page = s.fhir_patients(&a, &p).await?;
    Ok(paged(&base, "Patient", "_id", &p, page))
}

async fn everything(
    State(s): S,
    FhirAuth(a): FhirAuth,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, FhirError> {
    let base = base_url(&headers);
    let resources = s.fhir_everything(&a, &id).await?;
    Ok(ok(&map::searchset(&base, resources, &format!("{base}/Patient/{id}/$everything"), None)))
}

async fn read_device(State(s): S, FhirAuth(a): FhirAuth, Path(id): Path<String>) -> Result<Response, FhirError> {
    Ok(ok(&s.fhir_device(&a, &id).await?))
}

async fn search_devices(
    State(s): S,
    FhirAuth(a): FhirAuth,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, FhirError> {
    let base = base_url(&headers);
    let p = search::simple_search(&pairs(q), &["patient"], s.max_page_size()).map_err(FhirError::bad_request)?;
    let resources = s.fhir_devices(&a, p.patient.as_deref()).await?;
    Ok(paged(&base, "Device", "patient", &p, FhirPage { resources, next: None }))
}

async fn read_observation(State(s): S, FhirAuth(a): FhirAuth, Path(id): Path<String>) -> Result<Response, FhirError> {
    Ok(ok(&s.fhir_observation(&a, &id).await?))
}

async fn search_observations(
    State(s): S,
    FhirAuth(a): FhirAuth,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, FhirError> {
    let base = base_url(&headers);
    let o = search::observation_search(&pairs(q), s.max_page_size()).map_err(FhirError::bad_request)?;
    let page = s.fhir_observations(&a, &o).await?;
    let this = format!("{base}/Observation?{}", search::observation_query(&o, o.cursor.as_ref()));
    let next = page.next.as_ref().map(|c| format!("{base}/Observation?{}", search::observation_query(&o, Some(c))));
    Ok(ok(&map::searchset(&base, page.resources, &this, next.as_deref())))
}

async fn read_issue(State(s): S, FhirAuth(a): FhirAuth, Path(id): Path<String>) -> Result<Response, FhirError> {
    Ok(ok(&s.fhir_issue(&a, &id).await?))
}

async fn search_issues(
    State(s): S,
    FhirAuth(a): FhirAuth,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, FhirError> {
    let base = base_url(&headers);
    let p = search::simple_search(&pairs(q), &["patient", "_count", "_cursor"], s.max_page_size())
        .map_err(FhirError::bad_request)?;
    let page = s.fhir_issues(&a, &p).await?;
    Ok(paged(&base, "DetectedIssue", "patient", &p, page))
}

async fn read_care_episode(State(s): S, FhirAuth(a): FhirAuth, Path(id): Path<String>) -> Result<Response, FhirError> {
    Ok(ok(&s.fhir_episode_of_care(&a, &id).await?))
}

async fn search_care_episodes(
    State(s): S,
    FhirAuth(a): FhirAuth,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, FhirError> {
    let base = base_url(&headers);
    let p = search::simple_search(&pairs(q), &["patient"], s.max_page_size()).map_err(FhirError::bad_request)?;
    let patient = p.patient.as_deref().ok_or_else(|| FhirError::bad_request("EpisodeOfCare search needs patient="))?;
    let resources = s.fhir_episodes_of_care(&a, patient).await?;
    Ok(paged(&base, "EpisodeOfCare", "patient", &p, FhirPage { resources, next: None }))
}

async fn unknown_route() -> FhirError {
    FhirError {
        status: StatusCode::NOT_FOUND,
        outcome: map::operation_outcome(
            "not-supported",
            "this FHIR interaction is not supported; see /fhir/r4/metadata",
        ),
    }
}
