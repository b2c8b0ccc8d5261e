//! OpenID Connect sign-in against a real provider (panva's oidc-provider, started per test) through
//! a real headless Chromium: authorization code + PKCE, token exchange, ID token validation; and
//! each way a sign-in must fail, with its typed error.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::SecretString;
use vitalwatch_testkit::{Browser, OidcProvider, ProviderConfig, Recorded, TestClient, TestUser, spawn_html_server};
use vitalwatch_web::auth::oidc::{OidcClient, OidcError, OidcSettings, PendingLogin, TokenEndpointAuth};

const CALLBACK_PAGE: &str = "<!doctype html><title>Back</title><h1 id=back>Back at the relying party</h1>";

fn dr_martin() -> TestUser {
    TestUser::new("dr-martin", "correct horse")
        .claim("email", "martin@example.org")
        .claim("email_verified", true)
        .claim("name", "Dr Claire Martin")
        .claim("preferred_username", "cmartin")
        .claim("groups", vec!["physicians", "cardiology"])
}

/// A relying party's callback (a real HTTP server) and the provider's configuration for it.
struct Setup {
    callback: String,
    seen: std::sync::Arc<std::sync::Mutex<Vec<Recorded>>>,
}

async fn callback_server() -> Setup {
    let (base, seen) = spawn_html_server(vec![("/auth/oidc/callback".to_owned(), CALLBACK_PAGE.to_owned())]).await;
    Setup { callback: format!("{base}/auth/oidc/callback"), seen }
}

fn settings(issuer: &str, client_id: &str, secret: &str, callback: &str) -> OidcSettings {
    OidcSettings {
        issuer: issuer.to_owned(),
        client_id: client_id.to_owned(),
        client_secret: SecretString::from(secret),
        scopes: vec!["openid".into(), "email".into(), "profile".into(), "groups".into()],
        role_claim: "groups".into(),
        redirect_url: callback.to_owned(),
        acr_values: None,
        token_endpoint_auth: TokenEndpointAuth::ClientSecretBasic,
    }
}

impl Setup {
    /// The query of the last request to the callback (Chromium also asks the host for /favicon.ico).
    fn last_callback(&self) -> Vec<(String, String)> {
        let seen = self.seen.lock().unwrap();
        let last = seen.iter().rev().find(|r| r.path == "/auth/oidc/callback").expect("the callback was called");
        last.query_pairs()
    }

    /// A parameter of the last callback.
    fn param(&self, name: &str) -> Option<String> {
        self.last_callback().into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }
}

/// The browser signs in at the provider (login form, unless its session is still open) from
/// `auth_url` and lands on the callback;
/// returns the callback's (code, state).
async fn sign_in(browser: &Browser, setup: &Setup, auth_url: &str, user: &str, password: &str) -> (String, String) {
    browser.goto(auth_url).await.unwrap();
    // The provider's session from an earlier sign-in in this browser answers without the form.
    if !browser.current_url().await.unwrap().starts_with(&setup.callback) {
        browser.fill("#username", user).await.unwrap();
        browser.fill("#password", password).await.unwrap();
        browser.click("#login").await.unwrap();
    }
    browser.wait_for_url(&setup.callback).await.unwrap();
    browser.wait_for("#back").await.unwrap();
    (setup.param("code").expect("code on the callback"), setup.param("state").expect("state on the callback"))
}

#[tokio::test]
async fn code_flow_with_pkce_signs_in_and_a_code_works_once() {
    let setup = callback_server().await;
    let config = ProviderConfig {
        clients: vec![TestClient::new("vitalwatch-web", "rp-secret", &setup.callback)],
        users: vec![dr_martin()],
        // Another site than the relying party (127.0.0.1), as in production.
        host: Some("127.0.0.2".into()),
        ..ProviderConfig::default()
    };
    let Some(provider) = OidcProvider::start(&config) else { return };
    let Some(browser) = Browser::start().await else { return };
    let client = OidcClient::discover(&settings(&provider.issuer, "vitalwatch-web", "rp-secret", &setup.callback))
        .await
        .unwrap();
    assert_eq!(client.issuer(), provider.issuer);

    let (url, pending) = client.begin();
    assert!(url.starts_with(&format!("{}/auth?", provider.issuer)), "{url}");
    assert!(url.contains("code_challenge_method=S256"));
    let (code, state) = sign_in(&browser, &setup, &url, "martin@example.org", "correct horse").await;
    assert_eq!(state, pending.state);

    // The pending login survives a trip through a cookie (serde).
    let pending: PendingLogin = serde_json::from_str(&serde_json::to_string(&pending).unwrap()).unwrap();
    let id = client.finish(&pending, &code, &state).await.unwrap_or_else(|e| panic!("{e}\n{}", provider.log()));
    assert_eq!(id.issuer, provider.issuer);
    assert_eq!(id.subject, "dr-martin");
    assert_eq!(id.email.as_deref(), Some("martin@example.org"));
    assert_eq!(id.email_verified, Some(true));
    assert_eq!(id.name.as_deref(), Some("Dr Claire Martin"));
    assert_eq!(id.preferred_username.as_deref(), Some("cmartin"));
    assert_eq!(id.roles, vec!["physicians", "cardiology"]);

    // A code is single-use.
    let again = client.finish(&pending, &code, &state).await.unwrap_err();
    assert!(
        matches!(&again, OidcError::TokenEndpoint { status: 400, error, .. } if error == "invalid_grant"),
        "{again}"
    );

    // A second sign-in in the same browser: the provider's session answers at once, new code.
    let (url2, pending2) = client.begin();
    assert_ne!(pending2.state, pending.state);
    assert_ne!(pending2.code_verifier, pending.code_verifier);
    browser.goto(&url2).await.unwrap();
    browser.wait_for_url(&setup.callback).await.unwrap();
    let code2 = setup.param("code").unwrap();
    assert_ne!(code2, code);
    // ... and the verifier of another login does not redeem it (PKCE).
    let crossed = PendingLogin { state: pending2.state.clone(), ..pending.clone() };
    let e = client.finish(&crossed, &code2, &pending2.state).await.unwrap_err();
    assert!(matches!(&e, OidcError::TokenEndpoint { error, .. } if error == "invalid_grant"), "{e}");
    assert!(provider.log().contains("PKCE verification failed"), "{}", provider.log());
    browser.close().await;
}

#[tokio::test]
async fn client_secret_post_es256_and_claims_from_userinfo() {
    let setup = callback_server().await;
    let config = ProviderConfig {
        clients: vec![TestClient::new("rp-post", "post-secret", &setup.callback).secret_post().id_token_alg("ES256")],
        users: vec![dr_martin()],
        auto_login: Some("dr-martin".into()),
        claims_in_id_token: Some(false),
        ..ProviderConfig::default()
    };
    let Some(provider) = OidcProvider::start(&config) else { return };
    let Some(browser) = Browser::start().await else { return };
    let mut s = settings(&provider.issuer, "rp-post", "post-secret", &setup.callback);
    s.token_endpoint_auth = TokenEndpointAuth::ClientSecretPost;
    let client = OidcClient::discover(&s).await.unwrap();
    let (url, pending) = client.begin();
    browser.goto(&url).await.unwrap(); // auto-login: straight back to the callback
    browser.wait_for_url(&setup.callback).await.unwrap();
    let code = setup.param("code").unwrap();

    let tokens = client.exchange(&pending, &code).await.unwrap_or_else(|e| panic!("{e}\n{}", provider.log()));
    let header = tokens.id_token.split('.').next().unwrap();
    let header: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    assert_eq!(header["alg"], "ES256");
    let claims = client.validate_id_token(&tokens.id_token, &pending.nonce).await.unwrap();
    assert!(claims.get("email").is_none(), "this provider keeps the profile at userinfo");

    // finish() does the same and completes the identity at userinfo (a fresh login: codes are single-use).
    let (url, pending) = client.begin();
    browser.goto(&url).await.unwrap();
    browser.wait_for_url(&setup.callback).await.unwrap();
    let get = |k: &str| setup.param(k).unwrap();
    let id = client.finish(&pending, &get("code"), &get("state")).await.unwrap();
    assert_eq!(id.subject, "dr-martin");
    assert_eq!(id.email.as_deref(), Some("martin@example.org"));
    assert_eq!(id.roles, vec!["physicians", "cardiology"]);
    browser.close().await;
}

#[tokio::test]
async fn wrong_state_wrong_nonce_wrong_audience_and_tampered_tokens_are_refused() {
    let setup = callback_server().await;
    let config = ProviderConfig {
        clients: vec![
            TestClient::new("vitalwatch-web", "rp-secret", &setup.callback),
            TestClient::new("other-app", "other-secret", &setup.callback),
        ],
        users: vec![dr_martin()],
        ..ProviderConfig::default()
    };
    let Some(provider) = OidcProvider::start(&config) else { return };
    let Some(browser) = Browser::start().await else { return };
    let client = OidcClient::discover(&settings(&provider.issuer, "vitalwatch-web", "rp-secret", &setup.callback))
        .await
        .unwrap();
    let other =
        OidcClient::discover(&settings(&provider.issuer, "other-app", "other-secret", &setup.callback)).await.unwrap();

    // Wrong state: refused before the code is spent (it still works afterwards).
    let (url, pending) = client.begin();
    let (code, state) = sign_in(&browser, &setup, &url, "dr-martin", "correct horse").await;
    let e = client.finish(&pending, &code, "forged-state").await.unwrap_err();
    assert!(matches!(e, OidcError::StateMismatch), "{e}");
    let e = client.finish(&pending, &code, "").await.unwrap_err();
    assert!(matches!(e, OidcError::StateMismatch), "{e}");

    // Wrong nonce: the ID token was issued for another login.
    let swapped = PendingLogin { nonce: "a-nonce-this-login-never-sent".into(), ..pending.clone() };
    let e = client.finish(&swapped, &code, &state).await.unwrap_err();
    assert!(matches!(e, OidcError::NonceMismatch), "{e}");

    // An expired pending login.
    let (url, pending) = client.begin();
    let (code, state) = sign_in(&browser, &setup, &url, "dr-martin", "correct horse").await;
    let stale = PendingLogin { started_at: pending.started_at - 3600, ..pending.clone() };
    assert!(matches!(client.finish(&stale, &code, &state).await, Err(OidcError::LoginExpired)));
    let tokens = client.exchange(&pending, &code).await.unwrap();
    client.validate_id_token(&tokens.id_token, &pending.nonce).await.unwrap();

    // Tampered: a payload changed under the provider's signature.
    let parts: Vec<&str> = tokens.id_token.split('.').collect();
    let mut claims: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["sub"] = "someone-else".into();
    let forged = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(claims.to_string()), parts[2]);
    let e = client.validate_id_token(&forged, &pending.nonce).await.unwrap_err();
    assert!(matches!(e, OidcError::BadSignature), "{e}");
    // ... a signature cut short, an `alg: none` token, an HMAC token, garbage.
    let cut = format!("{}.{}.{}", parts[0], parts[1], &parts[2][..parts[2].len() / 2]);
    assert!(matches!(
        client.validate_id_token(&cut, &pending.nonce).await,
        Err(OidcError::BadSignature | OidcError::MalformedToken(_))
    ));
    let none = format!("{}.{}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#), parts[1]);
    let e = client.validate_id_token(&none, &pending.nonce).await.unwrap_err();
    assert!(matches!(e, OidcError::MalformedToken(_) | OidcError::UnsupportedAlgorithm(_)), "{e}");
    let hs = format!("{}.{}.{}", URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#), parts[1], parts[2]);
    let e = client.validate_id_token(&hs, &pending.nonce).await.unwrap_err();
    assert!(matches!(e, OidcError::UnsupportedAlgorithm(_)), "{e}");
    for junk in ["", "a.b", "not a token", "....", "\u{0}\u{0}.é.💥"] {
        let e = client.validate_id_token(junk, &pending.nonce).await.unwrap_err();
        assert!(matches!(e, OidcError::MalformedToken(_)), "{junk:?}: {e}");
    }
    // An unknown key id (another provider's key, or a rotated one not in the JWKS).
    let mut header: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    header["kid"] = "no-such-key".into();
    let unknown = format!("{}.{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), parts[1], parts[2]);
    let e = client.validate_id_token(&unknown, &pending.nonce).await.unwrap_err();
    assert!(matches!(&e, OidcError::UnknownKey { kid: Some(k) } if k == "no-such-key"), "{e}");

    // Wrong audience: a genuine token of this provider, issued to another client.
    let (url, pending) = other.begin();
    let (code, _) = sign_in(&browser, &setup, &url, "dr-martin", "correct horse").await;
    let tokens = other.exchange(&pending, &code).await.unwrap();
    let e = client.validate_id_token(&tokens.id_token, &pending.nonce).await.unwrap_err();
    assert!(
        matches!(&e, OidcError::WrongAudience { expected, found } if expected == "vitalwatch-web" && found == &["other-app"]),
        "{e}"
    );
    other.validate_id_token(&tokens.id_token, &pending.nonce).await.unwrap();

    // Wrong client secret: the token endpoint refuses the client.
    let bad = OidcClient::discover(&settings(&provider.issuer, "vitalwatch-web", "not-the-secret", &setup.callback))
        .await
        .unwrap();
    let (url, pending) = bad.begin();
    let (code, state) = sign_in(&browser, &setup, &url, "dr-martin", "correct horse").await;
    let e = bad.finish(&pending, &code, &state).await.unwrap_err();
    assert!(matches!(&e, OidcError::TokenEndpoint { status: 401, error, .. } if error == "invalid_client"), "{e}");
    browser.close().await;
}

#[tokio::test]
async fn tokens_from_a_provider_with_a_skewed_clock_are_refused() {
    let setup = callback_server().await;
    for (offset, ttl) in [(-120, 1), (300, 600)] {
        let config = ProviderConfig {
            clients: vec![TestClient::new("vitalwatch-web", "rp-secret", &setup.callback)],
            users: vec![dr_martin()],
            auto_login: Some("dr-martin".into()),
            id_token_ttl: Some(ttl),
            clock_offset_seconds: Some(offset),
            ..ProviderConfig::default()
        };
        let Some(provider) = OidcProvider::start(&config) else { return };
        let Some(browser) = Browser::start().await else { return };
        let client = OidcClient::discover(&settings(&provider.issuer, "vitalwatch-web", "rp-secret", &setup.callback))
            .await
            .unwrap();
        let (url, pending) = client.begin();
        browser.goto(&url).await.unwrap();
        browser.wait_for_url(&setup.callback).await.unwrap_or_else(|e| panic!("{e}\n{}", provider.log()));
        let get = |k: &str| setup.param(k).unwrap();
        let e = client.finish(&pending, &get("code"), &get("state")).await.unwrap_err();
        if offset < 0 {
            // Issued two minutes ago for one second: expired beyond the leeway.
            assert!(matches!(e, OidcError::Expired { .. }), "{e}");
        } else {
            // Issued five minutes from now.
            assert!(matches!(e, OidcError::BadIssuedAt { .. }), "{e}");
        }
        browser.close().await;
    }
}

#[tokio::test]
async fn discovery_failures_are_typed() {
    let setup = callback_server().await;
    let config = ProviderConfig {
        clients: vec![TestClient::new("vitalwatch-web", "rp-secret", &setup.callback)],
        users: vec![dr_martin()],
        ..ProviderConfig::default()
    };
    let Some(provider) = OidcProvider::start(&config) else { return };
    // The same provider under another name: its document names its real issuer.
    let alias = provider.issuer.replace("127.0.0.1", "localhost");
    let e = OidcClient::discover(&settings(&alias, "vitalwatch-web", "rp-secret", &setup.callback)).await.unwrap_err();
    assert!(matches!(e, OidcError::IssuerMismatch { .. }), "{e}");
    // Nothing listening.
    let port = vitalwatch_testkit::free_port();
    let e = OidcClient::discover(&settings(&format!("http://127.0.0.1:{port}"), "c", "s", &setup.callback))
        .await
        .unwrap_err();
    assert!(matches!(e, OidcError::Http { .. }), "{e}");
    // Plain http to a remote host, and a client_secret_post client against basic-only settings.
    let e = OidcClient::discover(&settings("http://login.example.org", "c", "s", &setup.callback)).await.unwrap_err();
    assert!(matches!(e, OidcError::Settings(_)), "{e}");
    // A page that is not a discovery document.
    let (base, _) =
        spawn_html_server(vec![("/.well-known/openid-configuration".to_owned(), "<html>".to_owned())]).await;
    let e = OidcClient::discover(&settings(&base, "c", "s", &setup.callback)).await.unwrap_err();
    assert!(matches!(e, OidcError::Discovery(_)), "{e}");
}

#[tokio::test]
async fn cancelling_at_the_provider_comes_back_as_access_denied() {
    let setup = callback_server().await;
    let config = ProviderConfig {
        clients: vec![TestClient::new("vitalwatch-web", "rp-secret", &setup.callback)],
        users: vec![dr_martin()],
        ..ProviderConfig::default()
    };
    let Some(provider) = OidcProvider::start(&config) else { return };
    let Some(browser) = Browser::start().await else { return };
    let client = OidcClient::discover(&settings(&provider.issuer, "vitalwatch-web", "rp-secret", &setup.callback))
        .await
        .unwrap();
    let (url, pending) = client.begin();
    browser.goto(&url).await.unwrap();
    browser.fill("#username", "dr-martin").await.unwrap();
    browser.fill("#password", "wrong").await.unwrap();
    browser.click("#login").await.unwrap();
    assert_eq!(browser.text("#error").await.unwrap(), "Invalid username or password.");
    browser.click("#abort").await.unwrap();
    browser.wait_for_url(&setup.callback).await.unwrap();
    let get = |k: &str| setup.param(k);
    assert_eq!(get("error").as_deref(), Some("access_denied"));
    assert_eq!(get("state").as_deref(), Some(pending.state.as_str()));
    assert_eq!(get("code"), None);
    browser.close().await;
}
