//! Cookies: reading the `Cookie` header and writing `Set-Cookie` values.
//!
//! The session cookie `vw_session` is `HttpOnly`, `SameSite=Lax` (the OpenID
//! Connect callback is a top-level cross-site navigation), `Path=/` and
//! `Secure` whenever the public URL is not plain HTTP on localhost.

use axum::http::HeaderMap;
use axum::http::header;

/// The session cookie.
pub const SESSION: &str = "vw_session";
/// The pre-sign-in CSRF cookie of the login form (double submit).
pub const LOGIN_CSRF: &str = "vw_login";

/// The value of cookie `name`, if sent.
pub fn get<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// A `Set-Cookie` value that sets `name` for the session (no `Max-Age`: the
/// browser forgets it when closed; the server enforces the lifetimes).
pub fn set(name: &str, value: &str, secure: bool) -> String {
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax{}", if secure { "; Secure" } else { "" })
}

/// A `Set-Cookie` value that deletes `name`.
pub fn clear(name: &str, secure: bool) -> String {
    format!("{name}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{}", if secure { "; Secure" } else { "" })
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn reads_and_writes_cookies() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; vw_session=vw_abc"));
        h.append(header::COOKIE, HeaderValue::from_static("vw_login=xyz"));
        assert_eq!(get(&h, SESSION), Some("vw_abc"));
        assert_eq!(get(&h, LOGIN_CSRF), Some("xyz"));
        assert_eq!(get(&h, "b"), None);
        assert_eq!(set(SESSION, "v", true), "vw_session=v; Path=/; HttpOnly; SameSite=Lax; Secure");
        assert!(clear(SESSION, false).contains("Max-Age=0"));
    }
}
