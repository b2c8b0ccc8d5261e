//! Sign-in, sessions, CSRF, idle timeout, security headers, on both engines.

use chrono::TimeDelta;
use vitalwatch_admin::service::accounts::SessionPolicy;

use crate::support::{App, Engine};

async fn engines() -> Vec<App> {
    let mut apps = vec![App::start(Engine::Sqlite).await.expect("sqlite")];
    if let Some(pg) = App::start(Engine::Postgres).await {
        apps.push(pg);
    }
    apps
}

async fn audit_actions(app: &App, user: &str) -> Vec<String> {
    let q = vitalwatch_admin::model::AuditQuery { target: Some(user.into()), ..Default::default() };
    let page = app.admin.audit(&crate::support::ops(), &q).await.unwrap();
    page.items.into_iter().map(|e| e.action).collect()
}

#[tokio::test]
async fn password_sign_in_opens_a_session_and_wrong_passwords_lock_the_account() {
    for app in engines().await {
        let e = app.engine;
        app.physician("dr-a").await;
        let pw = app.account("dr-a", "physician", Some("dr-a"), "fr").await;

        // A page without a session sends the browser to the sign-in form, keeping where it was going.
        let mut anon = app.client();
        let r = anon.get("/account?x=1").await;
        assert_eq!(r.status, 303, "{e:?}");
        assert_eq!(r.header("location"), Some("/login?next=/account%3Fx%3D1"), "{e:?}");

        // The right password: a session cookie (HttpOnly, SameSite=Lax; not Secure on http://127.0.0.1).
        let mut c = app.client();
        let r = c.login("dr-a", &pw).await;
        assert_eq!(r.status, 303, "{e:?}: {}", r.body);
        assert_eq!(r.header("location"), Some("/account"));
        let cookie = r.headers_named("set-cookie").find(|c| c.starts_with("vw_session=")).expect("session cookie");
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"), "{cookie}");
        let page = c.get("/account").await;
        assert_eq!(page.status, 200);
        assert!(page.body.contains("<html lang=\"fr\">") && page.body.contains("Mon compte"), "{e:?}");
        assert!(page.body.contains("User dr-a"), "the signed-in name is shown");

        // Wrong passwords: the same refusal as for an unknown account; the fifth locks the account,
        // after which even the right password is refused.
        let mut bad = app.client();
        let r = bad.login("nobody", "whatever-password").await;
        assert_eq!(r.status, 401);
        assert!(r.body.contains("Identifiant ou mot de passe incorrect."), "{}", r.body);
        for _ in 0..5 {
            assert_eq!(bad.login("dr-a", "wrong-password-123").await.status, 401);
        }
        assert_eq!(bad.login("dr-a", &pw).await.status, 401, "{e:?}: locked for 15 minutes");
        let actions = audit_actions(&app, "dr-a").await;
        assert!(actions.contains(&"user.login".to_owned()), "{e:?}: {actions:?}");
        assert!(actions.contains(&"user.locked".to_owned()), "{e:?}: {actions:?}");
        assert_eq!(actions.iter().filter(|a| *a == "user.login_failed").count(), 4, "{e:?}: {actions:?}");

        // The session opened before the lock still works; signing out ends it for good.
        let stolen = c.clone();
        assert_eq!(c.post("/logout", &[]).await.status, 303);
        let mut again = stolen;
        assert_eq!(again.get("/account").await.status, 303, "{e:?}: the old cookie no longer opens a page");
    }
}

#[tokio::test]
async fn every_form_needs_the_session_csrf_token_and_a_same_origin_post() {
    for app in engines().await {
        let e = app.engine;
        let pw = app.account("ide-b", "nurse", None, "fr").await;
        let mut c = app.sign_in("ide-b", &pw).await;
        let token = c.csrf.clone();
        assert!(!token.is_empty());

        // No token, a wrong token, or a cross-site origin: 403, nothing changed.
        let r = c.post_raw("/account/prefs", &[("language", "en"), ("time_zone", "Europe/London")]).await;
        assert_eq!(r.status, 403, "{e:?}");
        assert!(r.body.contains("Le formulaire a expiré"), "{}", r.body);
        let r = c.post_raw("/account/prefs", &[("_csrf", "vw_forged"), ("language", "en"), ("time_zone", "UTC")]).await;
        assert_eq!(r.status, 403);
        let body = format!("_csrf={token}&language=en&time_zone=UTC");
        let mut h = vec![
            ("Cookie", c.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")),
            ("Content-Type", "application/x-www-form-urlencoded".to_owned()),
            ("Origin", "https://evil.example".to_owned()),
        ];
        let r = vitalwatch_testkit::client::request(&app.addr, "POST", "/account/prefs", &h, Some(&body)).await;
        assert_eq!(r.status, 403, "{e:?}: cross-origin post");
        h.pop();
        h.push(("Sec-Fetch-Site", "cross-site".to_owned()));
        let r = vitalwatch_testkit::client::request(&app.addr, "POST", "/account/prefs", &h, Some(&body)).await;
        assert_eq!(r.status, 403, "{e:?}: cross-site fetch metadata");
        assert!(c.get("/account").await.body.contains("<html lang=\"fr\">"), "{e:?}: unchanged");

        // With the token: saved, and the next page is in English in the new time zone.
        let r = c.post("/account/prefs", &[("language", "en"), ("time_zone", "Europe/London")]).await;
        assert_eq!(r.status, 303, "{e:?}: {}", r.body);
        let page = c.get("/account?saved=1").await;
        assert!(page.body.contains("<html lang=\"en\">") && page.body.contains("Preferences saved."), "{e:?}");
        assert!(page.body.contains("value=\"Europe/London\""));
        // An invalid time zone is refused with the specific reason.
        let r = c.post("/account/prefs", &[("language", "en"), ("time_zone", "Mars/Olympus")]).await;
        assert_eq!(r.status, 422);
        assert!(r.body.contains("unknown time zone"), "{}", r.body);

        // The login form has its own double-submit token: a post without the form's cookie is refused.
        let mut fresh = app.client();
        let r = fresh.post_raw("/login", &[("_csrf", "x"), ("username", "ide-b"), ("password", &pw)]).await;
        assert_eq!(r.status, 403, "{e:?}: login CSRF");
    }
}

#[tokio::test]
async fn idle_sessions_end_and_pages_carry_the_security_headers() {
    for app in engines().await {
        let e = app.engine;
        let pw = app.account("ops-c", "operator", None, "en").await;
        let mut c = app.sign_in("ops-c", &pw).await;
        let r = c.get("/account").await;
        assert!(r.body.contains("<html lang=\"en\">"), "{e:?}");
        let csp = r.header("content-security-policy").unwrap_or("");
        assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "no inline script or style: {csp}");
        assert_eq!(r.header("x-frame-options"), Some("DENY"));
        assert_eq!(r.header("cache-control"), Some("no-store"), "health data is never cached");
        let css = c.get("/static/app.css").await;
        assert_eq!(css.status, 200);
        assert!(css.header("cache-control").unwrap_or("").contains("immutable"));

        // The session is idle-checked on every request: with a 1 s idle limit,
        // a session unused for more than that is gone (and deleted).
        let secret = c.cookies.iter().find(|(k, _)| k == "vw_session").map(|(_, v)| v.clone()).unwrap();
        let short = SessionPolicy { idle: TimeDelta::seconds(1), absolute: TimeDelta::hours(1) };
        assert!(app.admin.session(&secret, short).await.unwrap().is_some(), "{e:?}");
        tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
        assert!(app.admin.session(&secret, short).await.unwrap().is_none(), "{e:?}: idle session ended");
        assert_eq!(c.get("/account").await.status, 303, "{e:?}: and stays ended");

        // `next` never leaves the site.
        let mut d = app.client();
        d.get("/login?next=//evil.example/x").await;
        let r = d.post("/login", &[("username", "ops-c"), ("password", &pw), ("next", "//evil.example/x")]).await;
        assert_eq!(r.status, 303);
        assert_eq!(r.header("location"), Some("/"), "{e:?}");
    }
}

#[tokio::test]
async fn a_physicians_language_follows_them_into_their_notifications() {
    for app in engines().await {
        let e = app.engine;
        app.physician("dr-l").await; // directory language: en (support::App::physician)
        let pw = app.account("dr-l", "physician", Some("dr-l"), "en").await;
        let mut c = app.sign_in("dr-l", &pw).await;
        let r = c.post("/account/prefs", &[("language", "fr"), ("time_zone", "America/Martinique")]).await;
        assert_eq!(r.status, 303, "{e:?}: {}", r.body);
        let entry = app.admin.physician(&crate::support::ops(), "dr-l").await.unwrap().entry;
        assert_eq!(entry.get("language").and_then(|l| l.as_str()), Some("fr"), "{e:?}: {entry}");
        assert_eq!(
            entry.get("time_zone").and_then(|l| l.as_str()),
            Some("Europe/Paris"),
            "{e:?}: quiet hours unchanged"
        );
    }
}
