//! Bearer authentication: `Authorization: Bearer <token>`, looked up by its
//! SHA-256 hash. Missing or invalid: 401 with `WWW-Authenticate: Bearer`.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use super::error::ApiError;
use crate::actor::Actor;
use crate::error::AdminError;
use crate::service::AdminService;

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Auth(pub Actor);

/// The token of an `Authorization` header value (`Bearer <token>`, scheme case-insensitive).
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()).then(|| token.trim())
}

impl FromRequestParts<Arc<AdminService>> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, service: &Arc<AdminService>) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer)
            .ok_or(AdminError::Unauthenticated)?;
        Ok(Auth(service.authenticate(token).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::bearer;

    #[test]
    fn parses_bearer_headers() {
        assert_eq!(bearer("Bearer vw_abc"), Some("vw_abc"));
        assert_eq!(bearer("bearer  vw_abc "), Some("vw_abc"));
        assert_eq!(bearer("Basic dXNlcg=="), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("vw_abc"), None);
    }
}
