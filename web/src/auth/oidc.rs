//! OpenID Connect sign-in: the relying party side of the authorization code flow.
//!
//! [`OidcClient::discover`] reads the provider's `/.well-known/openid-configuration` and its
//! JWKS; [`OidcClient::begin`] makes the authorization URL with a fresh `state`, `nonce` and PKCE
//! S256 `code_verifier` (kept by the caller in a [`PendingLogin`], e.g. a short-lived signed
//! cookie); [`OidcClient::finish`] checks the returned `state`, exchanges the `code` at the token
//! endpoint (`client_secret_basic` or `client_secret_post`, as registered) and validates the ID token (signature against the provider's keys, RS256/RS384/RS512,
//! PS256/PS384/PS512, ES256/ES384 only; `iss`, `aud`, `azp`, `exp`, `iat` with
//! [`CLOCK_LEEWAY_SECS`] of leeway, `nonce`), then returns the user's [`OidcIdentity`] (claims
//! missing from the ID token are read at the userinfo endpoint when the provider has one).
//!
//! Every failure is a typed [`OidcError`]; nothing here logs a claim value or a token.

use std::sync::RwLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, StatusCode, header};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Seconds of clock difference tolerated between the provider and this server (`exp`, `iat`).
pub const CLOCK_LEEWAY_SECS: i64 = 60;
/// How long a [`PendingLogin`] may wait for the provider's answer.
pub const LOGIN_MAX_AGE_SECS: i64 = 600;
/// Timeout of each request to the provider.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Most bytes read from a provider's answer.
const MAX_BODY: usize = 1024 * 1024;
/// A JWKS is fetched again for an unknown `kid` at most this often (key rotation).
const JWKS_REFRESH_MIN: Duration = Duration::from_secs(30);
/// Signature algorithms accepted on ID tokens (asymmetric only: no `none`, no HMAC).
const ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
];

fn default_scopes() -> Vec<String> {
    vec!["openid".to_owned(), "email".to_owned(), "profile".to_owned()]
}

fn default_role_claim() -> String {
    "groups".to_owned()
}

/// `[web.oidc]`: sign-in with an OpenID Connect provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcSettings {
    /// The provider's issuer URL, exactly as its discovery document names it
    /// (`https://login.example.org/realms/care`). `https` is required, except for a loopback
    /// host (`http://127.0.0.1:8080`, tests and local development).
    pub issuer: String,
    /// This application's client id at the provider.
    pub client_id: String,
    /// Its client secret.
    pub client_secret: SecretString,
    /// Scopes asked for (`openid` is always added). Default `["openid", "email", "profile"]`.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// The claim carrying the user's roles or groups; a dotted path reaches into objects
    /// (`realm_access.roles` for Keycloak). Its value may be a string or a list of strings.
    /// Default `groups`.
    #[serde(default = "default_role_claim")]
    pub role_claim: String,
    /// The callback URL registered at the provider (`https://care.example.org/auth/oidc/callback`).
    pub redirect_url: String,
    /// `acr_values` to ask for (e.g. `eidas1`, which Pro Santé Connect requires); none by default.
    #[serde(default)]
    pub acr_values: Option<String>,
    /// How this client authenticates at the token endpoint, as registered at the provider:
    /// `client_secret_basic` (default) or `client_secret_post`.
    #[serde(default)]
    pub token_endpoint_auth: TokenEndpointAuth,
}

/// Client authentication at the token endpoint (OpenID Connect Core §9).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenEndpointAuth {
    /// HTTP Basic with the form-urlencoded id and secret (RFC 6749 §2.3.1).
    #[default]
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
}

impl TokenEndpointAuth {
    fn name(self) -> &'static str {
        match self {
            TokenEndpointAuth::ClientSecretBasic => "client_secret_basic",
            TokenEndpointAuth::ClientSecretPost => "client_secret_post",
        }
    }
}

/// What the token endpoint answered: the raw ID token (keep it for an RP-initiated logout's
/// `id_token_hint`) and the access token (for the userinfo endpoint). Debug shows neither.
#[derive(Clone)]
pub struct TokenSet {
    /// The ID token (a JWT), not yet validated: see [`OidcClient::validate_id_token`].
    pub id_token: String,
    /// The access token, if any.
    pub access_token: Option<String>,
}

impl std::fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSet").finish_non_exhaustive()
    }
}

/// What [`OidcClient::begin`] hands the caller to keep until the provider redirects back (e.g. in
/// a short-lived signed, HttpOnly cookie): the expected `state` and `nonce` and the PKCE
/// `code_verifier`. Secret-ish: never put it in a URL or a log.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingLogin {
    /// The `state` sent to the provider (CSRF protection of the callback).
    pub state: String,
    /// The `nonce` sent to the provider (binds the ID token to this login).
    pub nonce: String,
    /// The PKCE `code_verifier` (its S256 hash was sent as `code_challenge`).
    pub code_verifier: String,
    /// When the login began (Unix seconds); [`OidcClient::finish`] refuses one older than
    /// [`LOGIN_MAX_AGE_SECS`].
    pub started_at: i64,
}

impl std::fmt::Debug for PendingLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingLogin").field("started_at", &self.started_at).finish_non_exhaustive()
    }
}

/// The signed-in user, from the validated ID token (and userinfo).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OidcIdentity {
    /// The provider's issuer (with `subject`, the stable identity of the user).
    pub issuer: String,
    /// `sub`: the user's stable identifier at the provider.
    pub subject: String,
    /// `email`, if the provider gave one.
    pub email: Option<String>,
    /// `email_verified`, if the provider said.
    pub email_verified: Option<bool>,
    /// `name`.
    pub name: Option<String>,
    /// `preferred_username`.
    pub preferred_username: Option<String>,
    /// The values of the configured role claim (empty when absent).
    pub roles: Vec<String>,
}

/// Why discovery or a sign-in failed.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The `[web.oidc]` settings are unusable.
    #[error("OpenID Connect settings: {0}")]
    Settings(String),
    /// The provider could not be reached, or answered with an error status.
    #[error("OpenID provider request to {url} failed: {message}")]
    Http {
        /// The URL asked (no secrets in it).
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The discovery document or the JWKS is unusable.
    #[error("OpenID provider discovery: {0}")]
    Discovery(String),
    /// The discovery document names another issuer than the configured one.
    #[error("OpenID provider discovery: issuer is {found:?}, expected {expected:?}")]
    IssuerMismatch {
        /// Configured.
        expected: String,
        /// In the document.
        found: String,
    },
    /// The provider redirected back with an error (`access_denied`, ...).
    #[error("the OpenID provider refused the sign-in: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Denied {
        /// OAuth `error` code.
        error: String,
        /// `error_description`, if any.
        description: Option<String>,
    },
    /// The callback's `state` is not the one this login sent (forged or mixed-up callback).
    #[error("sign-in callback: state does not match")]
    StateMismatch,
    /// The pending login is older than [`LOGIN_MAX_AGE_SECS`].
    #[error("sign-in callback: the login began too long ago")]
    LoginExpired,
    /// The callback carried no usable `code`.
    #[error("sign-in callback: no authorization code")]
    MissingCode,
    /// The token endpoint refused the code.
    #[error("token endpoint answered {status}: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    TokenEndpoint {
        /// HTTP status.
        status: u16,
        /// OAuth `error` code (`invalid_grant`, ...), or a summary of the body.
        error: String,
        /// `error_description`, if any.
        description: Option<String>,
    },
    /// The token response had no `id_token`.
    #[error("token endpoint answered without an id_token")]
    MissingIdToken,
    /// The ID token is not a well-formed JWT or its claims have the wrong types.
    #[error("ID token is malformed: {0}")]
    MalformedToken(String),
    /// The ID token is signed with an algorithm not accepted here (`none`, HMAC, ...).
    #[error("ID token algorithm {0} is not accepted")]
    UnsupportedAlgorithm(String),
    /// No key of the provider's JWKS matches the ID token's `kid` and algorithm.
    #[error("ID token key {kid:?} is not in the provider's JWKS")]
    UnknownKey {
        /// The token's `kid`.
        kid: Option<String>,
    },
    /// The ID token's signature does not verify.
    #[error("ID token signature is invalid")]
    BadSignature,
    /// `iss` is not the provider's issuer.
    #[error("ID token issuer is {found:?}, expected {expected:?}")]
    WrongIssuer {
        /// The provider's issuer.
        expected: String,
        /// In the token.
        found: String,
    },
    /// `aud` does not contain this client, or `azp` names another client.
    #[error("ID token audience {found:?} does not include client {expected:?}")]
    WrongAudience {
        /// This client id.
        expected: String,
        /// The token's `aud` (and `azp`).
        found: Vec<String>,
    },
    /// `exp` has passed (beyond the leeway).
    #[error("ID token expired at {exp} (now {now})")]
    Expired {
        /// `exp`, Unix seconds.
        exp: i64,
        /// Now, Unix seconds.
        now: i64,
    },
    /// `iat` is in the future (beyond the leeway), or too old for a fresh sign-in.
    #[error("ID token issued at {iat} is not acceptable now ({now})")]
    BadIssuedAt {
        /// `iat`, Unix seconds.
        iat: i64,
        /// Now, Unix seconds.
        now: i64,
    },
    /// `nonce` is missing or is not the one this login sent (replayed or substituted token).
    #[error("ID token nonce does not match")]
    NonceMismatch,
    /// A required claim is missing.
    #[error("ID token has no {0} claim")]
    MissingClaim(&'static str),
    /// The userinfo endpoint answered for another subject than the ID token's.
    #[error("userinfo answered for another subject")]
    UserInfoSubjectMismatch,
}

/// The parts of the discovery document used here.
#[derive(Debug, Clone, Deserialize)]
struct ProviderMetadata {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    #[serde(default)]
    userinfo_endpoint: Option<String>,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    code_challenge_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    response_types_supported: Vec<String>,
}

/// The token endpoint's answer (the parts used here).
#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    id_token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
}

#[derive(Deserialize)]
struct OAuthErrorBody {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

struct KeySet {
    keys: Vec<Jwk>,
    fetched: Instant,
}

/// A relying party of one provider, made by [`OidcClient::discover`]; cheap to share (`Arc`).
pub struct OidcClient {
    settings: OidcSettings,
    meta: ProviderMetadata,
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    jwks: RwLock<KeySet>,
}

impl std::fmt::Debug for OidcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcClient")
            .field("issuer", &self.meta.issuer)
            .field("client_id", &self.settings.client_id)
            .finish_non_exhaustive()
    }
}

/// Now, Unix seconds.
fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// `bytes` random bytes from the thread's CSPRNG (ChaCha seeded from the OS), base64url.
fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// A PKCE `code_verifier`: 64 random bytes, 86 characters of `[A-Za-z0-9-_]` (RFC 7636: 43-128).
pub fn new_code_verifier() -> String {
    random_token(64)
}

/// The PKCE S256 `code_challenge` of a verifier: base64url(SHA-256(verifier)).
pub fn code_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Equality that takes the same time wherever the first difference is.
fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether a URL host is a loopback one (`localhost`, `127.0.0.0/8`, `::1`).
fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || bare.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Checks that `url` is absolute `https`, or `http` on a loopback host; returns it parsed.
fn check_url(what: &str, url: &str) -> Result<hyper::Uri, OidcError> {
    let uri: hyper::Uri = url.parse().map_err(|e| OidcError::Settings(format!("{what} {url:?} is not a URL: {e}")))?;
    let host = uri.host().unwrap_or("");
    match uri.scheme_str() {
        Some("https") if !host.is_empty() => Ok(uri),
        Some("http") if is_loopback(host) => Ok(uri),
        _ => Err(OidcError::Settings(format!("{what} {url:?} must be an https URL (http only on a loopback host)"))),
    }
}

/// The issuer without a trailing `/` (the discovery URL is `<issuer>/.well-known/...`).
fn trim_issuer(issuer: &str) -> &str {
    issuer.trim_end_matches('/')
}

/// The authorization URL for `pending` (pure).
fn authorization_url(meta_endpoint: &str, settings: &OidcSettings, pending: &PendingLogin) -> String {
    let mut scopes: Vec<&str> = vec!["openid"];
    for s in settings.scopes.iter().flat_map(|s| s.split_whitespace()) {
        if !scopes.contains(&s) {
            scopes.push(s);
        }
    }
    let mut query = form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("response_type", "code")
        .append_pair("client_id", &settings.client_id)
        .append_pair("redirect_uri", &settings.redirect_url)
        .append_pair("scope", &scopes.join(" "))
        .append_pair("state", &pending.state)
        .append_pair("nonce", &pending.nonce)
        .append_pair("code_challenge", &code_challenge(&pending.code_verifier))
        .append_pair("code_challenge_method", "S256");
    if let Some(acr) = settings.acr_values.as_deref().filter(|a| !a.trim().is_empty()) {
        query.append_pair("acr_values", acr);
    }
    let query = query.finish();
    let sep = if meta_endpoint.contains('?') { '&' } else { '?' };
    format!("{meta_endpoint}{sep}{query}")
}

/// What an ID token must match (besides its signature).
struct Expected<'a> {
    issuer: &'a str,
    client_id: &'a str,
    nonce: &'a str,
    now: i64,
}

/// A claim as a string, or an error naming it.
fn str_claim<'a>(claims: &'a Map<String, Value>, name: &'static str) -> Result<Option<&'a str>, OidcError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(OidcError::MalformedToken(format!("{name} is not a string"))),
    }
}

/// A claim as whole seconds (JSON number, possibly with a fraction).
fn time_claim(claims: &Map<String, Value>, name: &'static str) -> Result<i64, OidcError> {
    match claims.get(name) {
        None | Some(Value::Null) => Err(OidcError::MissingClaim(name)),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
            .ok_or_else(|| OidcError::MalformedToken(format!("{name} is not a time"))),
        Some(_) => Err(OidcError::MalformedToken(format!("{name} is not a number"))),
    }
}

/// The ID token claim checks of OpenID Connect Core §3.1.3.7 (signature aside): `iss`, `aud`,
/// `azp`, `exp`, `iat`, `nonce`, `sub` (pure).
fn check_claims(claims: &Map<String, Value>, want: &Expected<'_>) -> Result<(), OidcError> {
    let iss = str_claim(claims, "iss")?.ok_or(OidcError::MissingClaim("iss"))?;
    if iss != want.issuer {
        return Err(OidcError::WrongIssuer { expected: want.issuer.to_owned(), found: iss.to_owned() });
    }
    let aud: Vec<String> = match claims.get("aud") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
        None | Some(Value::Null) => return Err(OidcError::MissingClaim("aud")),
        Some(_) => return Err(OidcError::MalformedToken("aud is not a string or a list".into())),
    };
    let azp = str_claim(claims, "azp")?;
    let wrong_aud = || {
        let mut found = aud.clone();
        found.extend(azp.map(|a| format!("azp={a}")));
        OidcError::WrongAudience { expected: want.client_id.to_owned(), found }
    };
    if !aud.iter().any(|a| a == want.client_id) {
        return Err(wrong_aud());
    }
    // Several audiences: the token must say it was issued to this client (azp).
    if (aud.len() > 1 && azp.is_none()) || azp.is_some_and(|a| a != want.client_id) {
        return Err(wrong_aud());
    }
    let exp = time_claim(claims, "exp")?;
    if exp + CLOCK_LEEWAY_SECS <= want.now {
        return Err(OidcError::Expired { exp, now: want.now });
    }
    let iat = time_claim(claims, "iat")?;
    // Not from the future; and, for a login that began at most LOGIN_MAX_AGE_SECS ago, not older.
    if iat > want.now + CLOCK_LEEWAY_SECS || iat < want.now - LOGIN_MAX_AGE_SECS - CLOCK_LEEWAY_SECS {
        return Err(OidcError::BadIssuedAt { iat, now: want.now });
    }
    match str_claim(claims, "nonce")? {
        Some(n) if constant_time_eq(n, want.nonce) => {}
        _ => return Err(OidcError::NonceMismatch),
    }
    match str_claim(claims, "sub")? {
        Some(s) if !s.is_empty() => Ok(()),
        _ => Err(OidcError::MissingClaim("sub")),
    }
}

/// The values of the role claim at a dotted `path` (string or list of strings; absent: none).
fn roles_at(claims: &Map<String, Value>, path: &str) -> Vec<String> {
    let mut parts = path.split('.');
    let mut cur = parts.next().and_then(|p| claims.get(p));
    for p in parts {
        cur = cur.and_then(|v| v.get(p));
    }
    match cur {
        Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
        Some(Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
        _ => Vec::new(),
    }
}

/// The identity from validated claims (pure).
fn identity(issuer: &str, claims: &Map<String, Value>, role_claim: &str) -> OidcIdentity {
    let s = |k: &str| claims.get(k).and_then(Value::as_str).map(str::to_owned);
    OidcIdentity {
        issuer: issuer.to_owned(),
        subject: s("sub").unwrap_or_default(),
        email: s("email"),
        email_verified: claims.get("email_verified").and_then(|v| {
            v.as_bool().or_else(|| v.as_str().and_then(|t| t.parse().ok())) // some providers send "true"
        }),
        name: s("name"),
        preferred_username: s("preferred_username"),
        roles: roles_at(claims, role_claim),
    }
}

/// The algorithm named in a JWT header, if accepted here.
fn accepted_algorithm(alg: Algorithm) -> Result<Algorithm, OidcError> {
    if ALGORITHMS.contains(&alg) { Ok(alg) } else { Err(OidcError::UnsupportedAlgorithm(format!("{alg:?}"))) }
}

/// Whether a JWK may verify a token signed with `alg` and key id `kid`.
fn key_matches(jwk: &Jwk, alg: Algorithm, kid: Option<&str>) -> bool {
    use jsonwebtoken::jwk::{AlgorithmParameters, PublicKeyUse};
    if kid.is_some() && jwk.common.key_id.as_deref() != kid {
        return false;
    }
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return false;
    }
    if let Some(ka) = jwk.common.key_algorithm
        && ka.to_string() != format!("{alg:?}")
    {
        return false;
    }
    let rsa = matches!(
        alg,
        Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 | Algorithm::PS256 | Algorithm::PS384 | Algorithm::PS512
    );
    match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => rsa,
        AlgorithmParameters::EllipticCurve(_) => matches!(alg, Algorithm::ES256 | Algorithm::ES384),
        _ => false,
    }
}

/// The keys of a JWKS document that this crate can use (others are skipped, not fatal).
fn parse_jwks(body: &[u8]) -> Result<Vec<Jwk>, OidcError> {
    #[derive(Deserialize)]
    struct Doc {
        keys: Vec<Value>,
    }
    let doc: Doc =
        serde_json::from_slice(body).map_err(|e| OidcError::Discovery(format!("the JWKS is not a key set: {e}")))?;
    Ok(doc.keys.into_iter().filter_map(|k| serde_json::from_value::<Jwk>(k).ok()).collect())
}

impl OidcClient {
    /// Reads the provider's discovery document (`<issuer>/.well-known/openid-configuration`) and
    /// its keys; checks the settings and that the provider supports the code flow with PKCE S256.
    pub async fn discover(settings: &OidcSettings) -> Result<OidcClient, OidcError> {
        // One crypto backend for jsonwebtoken whatever features other crates enable.
        let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
        check_url("issuer", &settings.issuer)?;
        check_url("redirect_url", &settings.redirect_url)?;
        if settings.client_id.trim().is_empty() {
            return Err(OidcError::Settings("client_id is empty".into()));
        }
        if settings.role_claim.trim().is_empty() {
            return Err(OidcError::Settings("role_claim is empty".into()));
        }
        let http = http_client()?;
        let url = format!("{}/.well-known/openid-configuration", trim_issuer(&settings.issuer));
        let body = get(&http, &url, None).await?;
        let meta: ProviderMetadata = serde_json::from_slice(&body)
            .map_err(|e| OidcError::Discovery(format!("{url} is not a discovery document: {e}")))?;
        if trim_issuer(&meta.issuer) != trim_issuer(&settings.issuer) {
            return Err(OidcError::IssuerMismatch { expected: settings.issuer.clone(), found: meta.issuer });
        }
        for (what, u) in [
            ("authorization_endpoint", &meta.authorization_endpoint),
            ("token_endpoint", &meta.token_endpoint),
            ("jwks_uri", &meta.jwks_uri),
        ] {
            check_url(what, u).map_err(|e| OidcError::Discovery(e.to_string()))?;
        }
        if let Some(u) = &meta.userinfo_endpoint {
            check_url("userinfo_endpoint", u).map_err(|e| OidcError::Discovery(e.to_string()))?;
        }
        if !meta.response_types_supported.is_empty() && !meta.response_types_supported.iter().any(|r| r == "code") {
            return Err(OidcError::Discovery("the provider does not support response_type=code".into()));
        }
        if let Some(m) = &meta.code_challenge_methods_supported
            && !m.iter().any(|m| m == "S256")
        {
            return Err(OidcError::Discovery("the provider does not support PKCE with S256".into()));
        }
        // Absent, the list means client_secret_basic only (OpenID Connect Discovery §3).
        let method = settings.token_endpoint_auth.name();
        let supported = match &meta.token_endpoint_auth_methods_supported {
            Some(m) => m.iter().any(|m| m == method),
            None => method == "client_secret_basic",
        };
        if !supported {
            return Err(OidcError::Discovery(format!("the token endpoint does not support {method}")));
        }
        let keys = parse_jwks(&get(&http, &meta.jwks_uri, None).await?)?;
        if keys.is_empty() {
            return Err(OidcError::Discovery(format!("the JWKS at {} has no usable signing key", meta.jwks_uri)));
        }
        Ok(OidcClient {
            settings: settings.clone(),
            meta,
            http,
            jwks: RwLock::new(KeySet { keys, fetched: Instant::now() }),
        })
    }

    /// The provider's issuer (as its discovery document names it).
    pub fn issuer(&self) -> &str {
        &self.meta.issuer
    }

    /// Starts a sign-in: the URL to redirect the browser to, and what to keep until the callback.
    pub fn begin(&self) -> (String, PendingLogin) {
        let pending = PendingLogin {
            state: random_token(32),
            nonce: random_token(32),
            code_verifier: new_code_verifier(),
            started_at: unix_now(),
        };
        (authorization_url(&self.meta.authorization_endpoint, &self.settings, &pending), pending)
    }

    /// Completes a sign-in from the callback's `code` and `state`: checks the state, exchanges
    /// the code (with the PKCE verifier) and validates the ID token.
    pub async fn finish(&self, pending: &PendingLogin, code: &str, state: &str) -> Result<OidcIdentity, OidcError> {
        if !constant_time_eq(state, &pending.state) {
            return Err(OidcError::StateMismatch);
        }
        let now = unix_now();
        if now - pending.started_at > LOGIN_MAX_AGE_SECS || pending.started_at > now + CLOCK_LEEWAY_SECS {
            return Err(OidcError::LoginExpired);
        }
        if code.is_empty() || code.len() > 4096 {
            return Err(OidcError::MissingCode);
        }
        let tokens = self.exchange(pending, code).await?;
        let mut claims = self.validate_id_token(&tokens.id_token, &pending.nonce).await?;
        // Claims a provider keeps at userinfo (ID token with `sub` only, e.g. oidc-provider's default).
        let wanted = ["email", "name", "preferred_username"];
        let missing =
            wanted.iter().any(|k| !claims.contains_key(*k)) || roles_at(&claims, &self.settings.role_claim).is_empty();
        if let (true, Some(endpoint), Some(at)) = (missing, &self.meta.userinfo_endpoint, &tokens.access_token) {
            let info = self.userinfo(endpoint, at).await?;
            if info.get("sub").and_then(Value::as_str) != claims.get("sub").and_then(Value::as_str) {
                return Err(OidcError::UserInfoSubjectMismatch);
            }
            for (k, v) in info {
                claims.entry(k).or_insert(v);
            }
        }
        Ok(identity(&self.meta.issuer, &claims, &self.settings.role_claim))
    }

    /// Validates an ID token issued to this client for a login that sent `nonce`: signature with
    /// the provider's keys, then the claims. Returns its claims.
    pub async fn validate_id_token(&self, id_token: &str, nonce: &str) -> Result<Map<String, Value>, OidcError> {
        let claims = self.verify_signature(id_token).await?;
        let want = Expected { issuer: &self.meta.issuer, client_id: &self.settings.client_id, nonce, now: unix_now() };
        check_claims(&claims, &want)?;
        Ok(claims)
    }

    /// A JWT's claims once its signature verifies with one of the provider's keys (fetched again
    /// once for an unknown `kid`); no claim checked.
    async fn verify_signature(&self, id_token: &str) -> Result<Map<String, Value>, OidcError> {
        let header =
            jsonwebtoken::decode_header(id_token).map_err(|e| OidcError::MalformedToken(format!("header: {e}")))?;
        let alg = accepted_algorithm(header.alg)?;
        let kid = header.kid.as_deref();
        let key = match self.find_key(alg, kid) {
            Some(k) => k,
            None => {
                self.refresh_keys().await?;
                self.find_key(alg, kid).ok_or(OidcError::UnknownKey { kid: header.kid.clone() })?
            }
        };
        let mut validation = Validation::new(alg);
        // Time, audience and issuer are checked below (typed errors, leeway, azp).
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<Map<String, Value>>(id_token, &key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::InvalidSignature => OidcError::BadSignature,
                ErrorKind::InvalidAlgorithm | ErrorKind::UnsupportedAlgorithm => {
                    OidcError::UnsupportedAlgorithm(format!("{alg:?}"))
                }
                _ => OidcError::MalformedToken(e.to_string()),
            }
        })?;
        Ok(data.claims)
    }

    fn find_key(&self, alg: Algorithm, kid: Option<&str>) -> Option<DecodingKey> {
        let set = self.jwks.read().unwrap_or_else(|p| p.into_inner());
        set.keys.iter().filter(|k| key_matches(k, alg, kid)).find_map(|k| DecodingKey::from_jwk(k).ok())
    }

    /// Fetches the JWKS again (a rotated key), at most every [`JWKS_REFRESH_MIN`].
    async fn refresh_keys(&self) -> Result<(), OidcError> {
        {
            let set = self.jwks.read().unwrap_or_else(|p| p.into_inner());
            if set.fetched.elapsed() < JWKS_REFRESH_MIN {
                return Ok(());
            }
        }
        let keys = parse_jwks(&get(&self.http, &self.meta.jwks_uri, None).await?)?;
        let mut set = self.jwks.write().unwrap_or_else(|p| p.into_inner());
        *set = KeySet { keys, fetched: Instant::now() };
        Ok(())
    }

    /// The authorization code grant at the token endpoint (the code and the PKCE verifier, the
    /// client authenticated as configured). The first half of [`finish`](Self::finish), which
    /// checks the state before; the ID token is not validated yet.
    pub async fn exchange(&self, pending: &PendingLogin, code: &str) -> Result<TokenSet, OidcError> {
        let url = &self.meta.token_endpoint;
        let req = self.token_request(pending, code)?;
        let (status, body) = send(&self.http, url, req).await?;
        if !status.is_success() {
            let (error, description) = match serde_json::from_slice::<OAuthErrorBody>(&body) {
                Ok(b) => (b.error, b.error_description),
                Err(_) => (format!("HTTP {status}"), None),
            };
            return Err(OidcError::TokenEndpoint { status: status.as_u16(), error, description });
        }
        let tokens: TokenResponse = serde_json::from_slice(&body).map_err(|e| OidcError::Http {
            url: url.clone(),
            message: format!("the token response is not JSON: {e}"),
        })?;
        Ok(TokenSet { id_token: tokens.id_token.ok_or(OidcError::MissingIdToken)?, access_token: tokens.access_token })
    }

    /// The token request (built before any await: the form serializer is not `Send`).
    fn token_request(&self, pending: &PendingLogin, code: &str) -> Result<Request<Full<Bytes>>, OidcError> {
        let id = &self.settings.client_id;
        let secret = self.settings.client_secret.expose_secret();
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "authorization_code")
            .append_pair("code", code)
            .append_pair("redirect_uri", &self.settings.redirect_url)
            .append_pair("code_verifier", &pending.code_verifier);
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(&self.meta.token_endpoint)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json");
        match self.settings.token_endpoint_auth {
            TokenEndpointAuth::ClientSecretBasic => {
                let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
                let basic = STANDARD.encode(format!("{}:{}", enc(id), enc(secret)));
                req = req.header(header::AUTHORIZATION, format!("Basic {basic}"));
            }
            TokenEndpointAuth::ClientSecretPost => {
                form.append_pair("client_id", id).append_pair("client_secret", secret);
            }
        }
        req.body(Full::new(Bytes::from(form.finish())))
            .map_err(|e| OidcError::Http { url: self.meta.token_endpoint.clone(), message: e.to_string() })
    }

    /// The userinfo endpoint's claims for an access token: a JSON object, or a signed JWT
    /// (`application/jwt`, as Pro Santé Connect answers) verified with the provider's keys.
    async fn userinfo(&self, endpoint: &str, access_token: &str) -> Result<Map<String, Value>, OidcError> {
        let body = get(&self.http, endpoint, Some(access_token)).await?;
        let text = std::str::from_utf8(&body).unwrap_or("").trim();
        if !text.starts_with('{') && text.split('.').count() == 3 {
            return self.verify_signed_userinfo(text).await;
        }
        serde_json::from_slice(&body).map_err(|e| OidcError::Http {
            url: endpoint.to_owned(),
            message: format!("userinfo is neither a JSON object nor a JWT: {e}"),
        })
    }

    /// A signed userinfo: the provider's signature, and `iss`/`aud` when present.
    async fn verify_signed_userinfo(&self, jwt: &str) -> Result<Map<String, Value>, OidcError> {
        let claims = self.verify_signature(jwt).await?;
        if let Some(iss) = str_claim(&claims, "iss")?
            && iss != self.meta.issuer
        {
            return Err(OidcError::WrongIssuer { expected: self.meta.issuer.clone(), found: iss.to_owned() });
        }
        let aud_ok = match claims.get("aud") {
            None | Some(Value::Null) => true,
            Some(Value::String(a)) => a == &self.settings.client_id,
            Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(self.settings.client_id.as_str())),
            Some(_) => false,
        };
        if !aud_ok {
            return Err(OidcError::WrongAudience { expected: self.settings.client_id.clone(), found: vec![] });
        }
        Ok(claims)
    }
}

/// The HTTPS client: the system's CA certificates (an in-house provider's CA), else the Mozilla
/// roots; ring as the TLS crypto provider.
fn http_client() -> Result<Client<HttpsConnector<HttpConnector>, Full<Bytes>>, OidcError> {
    let provider = || rustls::crypto::ring::default_provider();
    let builder = match hyper_rustls::HttpsConnectorBuilder::new().with_provider_and_native_roots(provider()) {
        Ok(b) => b,
        Err(_) => hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(provider())
            .map_err(|e| OidcError::Settings(format!("TLS setup failed: {e}")))?,
    };
    let https = builder.https_or_http().enable_http1().build();
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

/// GET `url` (with a bearer token if given); the body of a 2xx answer.
async fn get(
    http: &Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    url: &str,
    bearer: Option<&str>,
) -> Result<Bytes, OidcError> {
    let mut req = Request::builder().method(Method::GET).uri(url).header(header::ACCEPT, "application/json");
    if let Some(t) = bearer {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = req
        .body(Full::new(Bytes::new()))
        .map_err(|e| OidcError::Http { url: url.to_owned(), message: e.to_string() })?;
    let (status, body) = send(http, url, req).await?;
    if !status.is_success() {
        return Err(OidcError::Http { url: url.to_owned(), message: format!("HTTP {status}") });
    }
    Ok(body)
}

/// Sends a request with [`HTTP_TIMEOUT`]; reads at most [`MAX_BODY`] bytes of the answer.
async fn send(
    http: &Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    url: &str,
    req: Request<Full<Bytes>>,
) -> Result<(StatusCode, Bytes), OidcError> {
    let err = |message: String| OidcError::Http { url: url.to_owned(), message };
    let exchange = async {
        let resp = http.request(req).await.map_err(|e| err(format!("request failed: {e}")))?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| err(format!("reading the answer failed: {e}")))?
            .to_bytes();
        Ok::<_, OidcError>((status, body))
    };
    tokio::time::timeout(HTTP_TIMEOUT, exchange).await.map_err(|_| err(format!("no answer within {HTTP_TIMEOUT:?}")))?
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn settings() -> OidcSettings {
        OidcSettings {
            issuer: "https://login.example.org/realms/care".into(),
            client_id: "vitalwatch".into(),
            client_secret: SecretString::from("s3cret"),
            scopes: vec!["email".into(), "profile groups".into(), "openid".into()],
            role_claim: "groups".into(),
            redirect_url: "https://care.example.org/auth/oidc/callback".into(),
            acr_values: None,
            token_endpoint_auth: TokenEndpointAuth::ClientSecretBasic,
        }
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    const NOW: i64 = 1_800_000_000;

    fn good() -> Value {
        json!({
            "iss": "https://login.example.org/realms/care", "aud": "vitalwatch", "sub": "u-1",
            "exp": NOW + 300, "iat": NOW - 5, "nonce": "n-1", "email": "a@example.org",
            "groups": ["physicians", "nurses"]
        })
    }

    fn want() -> Expected<'static> {
        Expected { issuer: "https://login.example.org/realms/care", client_id: "vitalwatch", nonce: "n-1", now: NOW }
    }

    fn with(mut v: Value, k: &str, x: Value) -> Map<String, Value> {
        if x.is_null() {
            v.as_object_mut().unwrap().remove(k);
        } else {
            v[k] = x;
        }
        claims(v)
    }

    #[test]
    fn pkce_s256_matches_rfc7636_appendix_b() {
        assert_eq!(
            code_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn code_verifiers_are_long_unreserved_and_distinct() {
        let a = new_code_verifier();
        let b = new_code_verifier();
        assert_ne!(a, b);
        assert!((43..=128).contains(&a.len()), "{}", a.len());
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'), "{a}");
    }

    #[test]
    fn authorization_url_has_every_parameter_once_and_encoded() {
        let p = PendingLogin { state: "st".into(), nonce: "n+/=".into(), code_verifier: "v".repeat(50), started_at: 0 };
        let url = authorization_url("https://login.example.org/auth?kc_idp_hint=x", &settings(), &p);
        let (base, query) = url.split_once("?").unwrap();
        assert_eq!(base, "https://login.example.org/auth");
        let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
        let get = |k: &str| {
            let v: Vec<&String> = pairs.iter().filter(|(n, _)| n == k).map(|(_, v)| v).collect();
            assert_eq!(v.len(), 1, "{k} in {url}");
            v[0].clone()
        };
        assert_eq!(get("kc_idp_hint"), "x");
        assert_eq!(get("response_type"), "code");
        assert_eq!(get("client_id"), "vitalwatch");
        assert_eq!(get("redirect_uri"), "https://care.example.org/auth/oidc/callback");
        assert_eq!(get("scope"), "openid email profile groups");
        assert_eq!(get("state"), "st");
        assert_eq!(get("nonce"), "n+/=");
        assert_eq!(get("code_challenge"), code_challenge(&"v".repeat(50)));
        assert_eq!(get("code_challenge_method"), "S256");
        assert!(!url.contains("acr_values"));
        assert!(!url.contains("s3cret"));
        assert!(!url.contains(&"v".repeat(50)), "the verifier never leaves in the URL");
    }

    #[test]
    fn acr_values_are_sent_when_configured() {
        let p = PendingLogin { state: "st".into(), nonce: "n".into(), code_verifier: "v".repeat(50), started_at: 0 };
        let s = OidcSettings { acr_values: Some("eidas1".into()), ..settings() };
        let url = authorization_url("https://psc.example/auth", &s, &p);
        assert!(url.contains("&acr_values=eidas1"), "{url}");
    }

    #[test]
    fn good_claims_pass_and_give_the_identity() {
        check_claims(&claims(good()), &want()).unwrap();
        let id = identity("https://login.example.org/realms/care", &claims(good()), "groups");
        assert_eq!(id.subject, "u-1");
        assert_eq!(id.email.as_deref(), Some("a@example.org"));
        assert_eq!(id.roles, vec!["physicians", "nurses"]);
        assert_eq!(id.name, None);
    }

    #[test]
    fn each_claim_check_has_its_error() {
        let w = want();
        let e = |c: Map<String, Value>| check_claims(&c, &w).unwrap_err();
        assert!(matches!(e(with(good(), "iss", json!("https://evil.example"))), OidcError::WrongIssuer { .. }));
        assert!(matches!(e(with(good(), "iss", Value::Null)), OidcError::MissingClaim("iss")));
        assert!(matches!(e(with(good(), "aud", json!("other"))), OidcError::WrongAudience { .. }));
        assert!(matches!(e(with(good(), "aud", json!(["other", "vitalwatch"]))), OidcError::WrongAudience { .. }));
        assert!(matches!(e(with(good(), "azp", json!("other"))), OidcError::WrongAudience { .. }));
        check_claims(&with(with(good(), "aud", json!(["other", "vitalwatch"])).into(), "azp", json!("vitalwatch")), &w)
            .unwrap();
        assert!(matches!(e(with(good(), "exp", json!(NOW - 61))), OidcError::Expired { .. }));
        check_claims(&with(good(), "exp", json!(NOW - 59)), &w).unwrap(); // within the leeway
        assert!(matches!(e(with(good(), "exp", Value::Null)), OidcError::MissingClaim("exp")));
        assert!(matches!(e(with(good(), "exp", json!("soon"))), OidcError::MalformedToken(_)));
        assert!(matches!(e(with(good(), "iat", json!(NOW + 120))), OidcError::BadIssuedAt { .. }));
        assert!(matches!(e(with(good(), "iat", json!(NOW - 3600))), OidcError::BadIssuedAt { .. }));
        assert!(matches!(e(with(good(), "iat", Value::Null)), OidcError::MissingClaim("iat")));
        assert!(matches!(e(with(good(), "nonce", json!("n-2"))), OidcError::NonceMismatch));
        assert!(matches!(e(with(good(), "nonce", Value::Null)), OidcError::NonceMismatch));
        assert!(matches!(e(with(good(), "sub", json!(""))), OidcError::MissingClaim("sub")));
        assert!(matches!(e(with(good(), "sub", json!(12))), OidcError::MalformedToken(_)));
    }

    #[test]
    fn roles_come_from_a_dotted_path_a_string_or_a_list() {
        let c = claims(json!({"realm_access": {"roles": ["operator"]}, "role": "physician nurse", "n": 3}));
        assert_eq!(roles_at(&c, "realm_access.roles"), vec!["operator"]);
        assert_eq!(roles_at(&c, "role"), vec!["physician", "nurse"]);
        assert!(roles_at(&c, "n").is_empty());
        assert!(roles_at(&c, "missing.path").is_empty());
    }

    #[test]
    fn urls_must_be_https_except_on_loopback() {
        check_url("issuer", "https://login.example.org").unwrap();
        check_url("issuer", "http://127.0.0.1:8080").unwrap();
        check_url("issuer", "http://localhost:8080/x").unwrap();
        check_url("issuer", "http://127.0.0.2:8080").unwrap();
        check_url("issuer", "http://[::1]:8080").unwrap();
        assert!(matches!(check_url("issuer", "http://128.0.0.1"), Err(OidcError::Settings(_))));
        assert!(matches!(check_url("issuer", "http://localhost.example.org"), Err(OidcError::Settings(_))));
        assert!(matches!(check_url("issuer", "http://login.example.org"), Err(OidcError::Settings(_))));
        assert!(matches!(check_url("issuer", "login.example.org"), Err(OidcError::Settings(_))));
        assert!(matches!(check_url("issuer", "ftp://x"), Err(OidcError::Settings(_))));
    }

    #[test]
    fn only_asymmetric_algorithms_are_accepted() {
        assert!(accepted_algorithm(Algorithm::RS256).is_ok());
        assert!(accepted_algorithm(Algorithm::ES256).is_ok());
        assert!(matches!(accepted_algorithm(Algorithm::HS256), Err(OidcError::UnsupportedAlgorithm(_))));
        assert!(matches!(accepted_algorithm(Algorithm::EdDSA), Err(OidcError::UnsupportedAlgorithm(_))));
    }

    #[test]
    fn settings_reject_unknown_keys_and_keep_the_secret_out_of_debug() {
        let ok: OidcSettings = serde_json::from_value(json!({
            "issuer": "https://x", "client_id": "c", "client_secret": "hunter2", "redirect_url": "https://y/cb"
        }))
        .unwrap();
        assert_eq!(ok.scopes, vec!["openid", "email", "profile"]);
        assert_eq!(ok.role_claim, "groups");
        assert_eq!(ok.token_endpoint_auth, TokenEndpointAuth::ClientSecretBasic);
        let post: OidcSettings = serde_json::from_value(json!({
            "issuer": "https://x", "client_id": "c", "client_secret": "s", "redirect_url": "https://y/cb",
            "token_endpoint_auth": "client_secret_post"
        }))
        .unwrap();
        assert_eq!(post.token_endpoint_auth, TokenEndpointAuth::ClientSecretPost);
        assert!(!format!("{ok:?}").contains("hunter2"));
        let bad = serde_json::from_value::<OidcSettings>(json!({
            "issuer": "https://x", "client_id": "c", "client_secret": "s", "redirect_url": "https://y/cb", "scope": "x"
        }));
        assert!(bad.is_err());
    }

    #[test]
    fn pending_login_round_trips_and_hides_its_secrets_in_debug() {
        let p =
            PendingLogin { state: "st".into(), nonce: "nn".into(), code_verifier: "verifier".into(), started_at: 7 };
        let back: PendingLogin = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
        let dbg = format!("{p:?}");
        assert!(!dbg.contains("verifier") && !dbg.contains("nn"), "{dbg}");
    }

    /// The futures are `Send` (axum handlers need it) and the client is shareable.
    #[allow(dead_code)]
    fn futures_are_send(c: &OidcClient, p: &PendingLogin, s: &OidcSettings) {
        fn send<T: Send>(_: T) {}
        fn shared<T: Send + Sync>() {}
        send(OidcClient::discover(s));
        send(c.finish(p, "code", "state"));
        send(c.exchange(p, "code"));
        send(c.validate_id_token("t", "n"));
        shared::<OidcClient>();
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "ab"));
        assert!(constant_time_eq("", ""));
    }
}
