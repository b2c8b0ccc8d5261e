//! OpenID Connect sign-in through the workspace itself, in a real Chromium
//! against a real provider (oidc-provider on 127.0.0.2, another site): the
//! sign-in button, the provider's form, the callback, the session; the first
//! sign-in binds the identity to the account with the same verified e-mail;
//! an identity without an account, a cancelled sign-in and a replayed callback
//! are refused with a message.

use secrecy::SecretString;
use vitalwatch_testkit::{Browser, OidcProvider, ProviderConfig, TestClient, TestUser};
use vitalwatch_web::WebSettings;
use vitalwatch_web::auth::oidc::{OidcSettings, TokenEndpointAuth};

use crate::support::{App, Engine};

#[tokio::test]
async fn a_physician_signs_in_through_the_identity_provider() {
    let started = App::start_configured(Engine::Sqlite, |addr| {
        let callback = format!("http://{addr}/auth/oidc/callback");
        let config = ProviderConfig {
            clients: vec![TestClient::new("vitalwatch", "rp-secret", &callback)],
            users: vec![
                TestUser::new("psc-8001234567", "correct horse")
                    .claim("email", "dr-o@example.invalid")
                    .claim("email_verified", true)
                    .claim("name", "Dr O"),
                TestUser::new("psc-unknown", "battery staple")
                    .claim("email", "nobody@example.invalid")
                    .claim("email_verified", true),
            ],
            host: Some("127.0.0.2".into()),
            ..ProviderConfig::default()
        };
        let provider = OidcProvider::start(&config)?;
        let oidc = OidcSettings {
            issuer: provider.issuer.clone(),
            client_id: "vitalwatch".into(),
            client_secret: SecretString::from("rp-secret"),
            scopes: vec!["openid".into(), "email".into(), "profile".into()],
            role_claim: "groups".into(),
            redirect_url: callback,
            acr_values: None,
            token_endpoint_auth: TokenEndpointAuth::ClientSecretBasic,
        };
        Some((WebSettings { oidc: Some(oidc), ..WebSettings::default() }, provider))
    })
    .await;
    let Some((app, provider)) = started else { return };
    let Some(browser) = Browser::start_with_lang("fr").await else { return };
    app.physician("dr-o").await;
    // The account exists (made by operations) with the same e-mail; no subject bound yet.
    app.account("dr-o", "physician", Some("dr-o"), "fr").await;
    let base = format!("http://{}", app.addr);

    browser.goto(&format!("{base}/account")).await.unwrap();
    browser.wait_for_url(&format!("{base}/login?next=/account")).await.unwrap();
    browser.click("#oidc-login").await.unwrap();
    browser.wait_for_url(&provider.issuer).await.unwrap();
    browser.fill("#username", "psc-8001234567").await.unwrap();
    browser.fill("#password", "correct horse").await.unwrap();
    browser.click("#login").await.unwrap();
    browser.wait_for_url(&format!("{base}/account")).await.unwrap_or_else(|e| panic!("{e}\n{}", provider.log()));
    assert_eq!(browser.text("#user-name").await.unwrap(), "User dr-o", "signed in as the bound account");
    let accounts = app.admin.list_accounts(&crate::support::ops()).await.unwrap();
    let bound = accounts.iter().find(|a| a.id == "dr-o").unwrap();
    assert_eq!(bound.oidc_subject.as_deref(), Some("psc-8001234567"), "the subject is bound on first sign-in");
    let q = vitalwatch_admin::model::AuditQuery { target: Some("dr-o".into()), ..Default::default() };
    let audit = app.admin.audit(&crate::support::ops(), &q).await.unwrap().items;
    let login = audit.iter().find(|a| a.action == "user.login").expect("audited sign-in");
    assert_eq!(login.details.get("method").and_then(|m| m.as_str()), Some("oidc"));
    assert_eq!(login.actor, "dr-o");

    // Signed out, then an identity without an account here: back at the sign-in page, told why.
    browser.click("form[action='/logout'] button").await.unwrap();
    browser.wait_for_url(&format!("{base}/login")).await.unwrap();
    let other = Browser::start_with_lang("fr").await.unwrap();
    other.goto(&format!("{base}/login")).await.unwrap();
    other.click("#oidc-login").await.unwrap();
    other.wait_for_url(&provider.issuer).await.unwrap();
    other.fill("#username", "psc-unknown").await.unwrap();
    other.fill("#password", "battery staple").await.unwrap();
    other.click("#login").await.unwrap();
    other.wait_for_url(&format!("{base}/login?error=oidc_no_account")).await.unwrap();
    assert!(other.text("#login-error").await.unwrap().contains("aucun compte"), "French message");

    // A callback replayed (same state and code) or opened in another browser is refused.
    let mut c = app.client();
    let r = c.get("/auth/oidc/callback?code=abc&state=forged-state").await;
    assert_eq!(r.status, 303);
    assert!(r.header("location").unwrap_or("").starts_with("/login?error=oidc_failed"), "{:?}", r.header("location"));
    other.close().await;
    browser.close().await;
}
