//! JSON errors (`{"error": code, "message": ...}`) and the body/query
//! extractors that turn malformed input into them.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use crate::error::AdminError;
use crate::model::ErrorBody;

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    error_id: Option<String>,
}

/// A new opaque error id: 16 random hex digits, in the body and in the log.
pub fn error_id() -> String {
    use rand::RngCore as _;
    format!("{:016x}", rand::rng().next_u64())
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        // The details of a database or internal failure (hosts, users, database
        // names, SQL) go to the log only, under an id the caller can quote.
        let (message, error_id) = match &e {
            AdminError::Internal(_) => {
                let id = error_id();
                tracing::error!(message = "Admin API internal error.", error_id = %id, error = %e);
                ("internal error".to_owned(), Some(id))
            }
            AdminError::Unavailable(_) => {
                let id = error_id();
                tracing::warn!(message = "Admin API: database unavailable.", error_id = %id, error = %e);
                ("the database is unavailable; try again later".to_owned(), Some(id))
            }
            other => (other.to_string(), None),
        };
        ApiError { status, code: e.code(), message, error_id }
    }
}

impl ApiError {
    fn bad_request(status: StatusCode, message: String) -> Self {
        let code = match status {
            StatusCode::UNPROCESSABLE_ENTITY => "invalid",
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            _ => "bad_request",
        };
        ApiError { status, code, message, error_id: None }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: self.code.into(), message: self.message, error_id: self.error_id };
        let mut res = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"vitalwatch\""));
        }
        res
    }
}

/// A JSON body; malformed JSON is 400, a body that does not fit the type
/// (unknown or missing field, wrong type) is 422, a wrong content type 415.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(e) => Err(json_rejection(e)),
        }
    }
}

fn json_rejection(e: JsonRejection) -> ApiError {
    ApiError::bad_request(e.status(), e.body_text())
}

/// Query parameters; unknown or malformed parameters are 400.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(e) => Err(query_rejection(e)),
        }
    }
}

fn query_rejection(e: QueryRejection) -> ApiError {
    ApiError::bad_request(StatusCode::BAD_REQUEST, e.body_text())
}
