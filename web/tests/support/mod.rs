//! The workspace under test: the real router (JSON API + pages) served on a
//! real socket over a migrated SQLite file or a fresh PostgreSQL database,
//! accounts created through the service layer, and a cookie-keeping client
//! that signs in through the real `/login` form.

#![allow(dead_code)]

use std::sync::Arc;

use vitalwatch_admin::account::NewAccount;
use vitalwatch_admin::model::{CareTeamInput, ChannelsInput, PhysicianInput};
use vitalwatch_admin::{Actor, AdminService};
use vitalwatch_platform::shutdown::CancellationToken;
use vitalwatch_testkit::client::{Resp, request};
use vitalwatch_web::{WebSettings, WebState};

/// Which database engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// A migrated SQLite file in a temporary folder.
    Sqlite,
    /// A fresh database on the test PostgreSQL server.
    Postgres,
}

/// A running workspace.
pub struct App {
    /// `host:port`.
    pub addr: String,
    /// The service layer (for seeding and checking).
    pub admin: Arc<AdminService>,
    /// The database URL.
    pub url: String,
    /// The engine.
    pub engine: Engine,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for App {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The operator acting in test setup.
pub fn ops() -> Actor {
    Actor::operator("test:setup")
}

impl App {
    /// Starts the workspace on `engine`; `None` when PostgreSQL is not
    /// reachable outside CI (under `CI=true` that fails the test instead).
    pub async fn start(engine: Engine) -> Option<App> {
        Self::start_with(engine, WebSettings::default()).await
    }

    /// Starts the workspace with `settings`.
    pub async fn start_with(engine: Engine, settings: WebSettings) -> Option<App> {
        Self::start_configured(engine, move |_| Some((settings, ()))).await.map(|(app, ())| app)
    }

    /// Starts the workspace with the settings `configure` makes once the
    /// listening address (`host:port`) is known (e.g. an OpenID provider whose
    /// client redirects back to it); `configure` may also return what it
    /// started (kept alive by the caller).
    pub async fn start_configured<T>(
        engine: Engine,
        configure: impl FnOnce(&str) -> Option<(WebSettings, T)>,
    ) -> Option<(App, T)> {
        Self::start_full(engine, configure, None).await
    }

    /// Starts the workspace whose tele-expertise e-mails go to the SMTP server on
    /// `127.0.0.1:smtp_port` (a real one: `vitalwatch_testkit::SmtpSink`).
    pub async fn start_mailing(engine: Engine, smtp_port: u16) -> Option<App> {
        let settings = WebSettings::default();
        Self::start_full(engine, move |_| Some((settings, ())), Some(smtp_port)).await.map(|(app, ())| app)
    }

    async fn start_full<T>(
        engine: Engine,
        configure: impl FnOnce(&str) -> Option<(WebSettings, T)>,
        smtp_port: Option<u16>,
    ) -> Option<(App, T)> {
        let dir = tempfile::tempdir().unwrap();
        let url = match engine {
            Engine::Sqlite => format!("sqlite://{}/vw.db", dir.path().display()),
            Engine::Postgres => {
                let pg = vitalwatch_testkit::pg_url();
                let host = pg.split('@').nth(1).and_then(|h| h.split('/').next()).unwrap_or("127.0.0.1:5432");
                if !vitalwatch_testkit::require("PostgreSQL", host) {
                    return None;
                }
                vitalwatch_testkit::fresh_database(&pg, &vitalwatch_testkit::unique("web")).await
            }
        };
        let store = vitalwatch_platform::store::open(&url, 100).await.unwrap();
        store.migrate().await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let mut admin = AdminService::open(&url, 100, 500).await.unwrap();
        if let Some(port) = smtp_port {
            use vitalwatch_alerting::transport::smtp::{SmtpConfig, SmtpSecurity, SmtpTransport};
            let smtp = SmtpConfig {
                host: "127.0.0.1".into(),
                port,
                security: SmtpSecurity::None,
                username: None,
                password: None,
                hello_name: "vitalwatch.test".into(),
                timeout_secs: 10,
            };
            let transport = Arc::new(SmtpTransport::new(&smtp).unwrap());
            let from = "VitalWatch <noreply@vw.example>";
            let mailer = vitalwatch_admin::service::expertise::Mailer::new(transport, from, &format!("http://{addr}"));
            admin = admin.with_mailer(mailer.unwrap());
        }
        let admin = Arc::new(admin);
        let (mut settings, extra) = configure(&addr)?;
        settings.public_url = format!("http://{addr}");
        let limits = vitalwatch_platform::http::HttpLimits::default();
        let api = vitalwatch_admin::http::router(admin.clone(), &limits);
        let web = vitalwatch_web::router(WebState::new(admin.clone(), settings));
        let app = api.merge(web);
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move { vitalwatch_platform::http::serve(listener, app, &limits, stop).await });
        Some((App { addr, admin, url, engine, shutdown, _dir: dir }, extra))
    }

    /// Adds a physician to the directory (language `en` unless given).
    pub async fn physician(&self, id: &str) {
        let input = PhysicianInput {
            name: format!("Dr {id}"),
            email: format!("{id}@example.invalid"),
            mobile: None,
            time_zone: Some("Europe/Paris".into()),
            language: Some("en".into()),
            quiet_hours: None,
            quiet_hours_bypass: None,
            channels: ChannelsInput::default(),
            hourly_cap: None,
        };
        self.admin.upsert_physician(&ops(), id, &input).await.unwrap();
    }

    /// Registers a patient in the care of `responsible` (who must exist).
    pub async fn patient(&self, id: &str, responsible: &str) {
        self.admin.add_patient(&ops(), &vitalwatch_admin::model::NewPatient { id: id.into() }).await.unwrap();
        // The default escalation policy pages a deputy: every team gets one.
        self.physician("dr-backup").await;
        let deputies = vec!["dr-backup".to_owned()];
        let team = CareTeamInput { responsible: responsible.into(), deputies, policy: None, nurses: None };
        self.admin.set_care_team(&ops(), id, &team).await.unwrap();
    }

    /// Creates an account and returns its password.
    pub async fn account(&self, id: &str, role: &str, physician: Option<&str>, lang: &str) -> String {
        let password = format!("pw-{id}-0123456789");
        let new = NewAccount {
            id: id.into(),
            display_name: format!("User {id}"),
            email: Some(format!("{id}@example.invalid")),
            role: role.into(),
            physician_id: physician.map(str::to_owned),
            language: Some(lang.into()),
            time_zone: Some("Europe/Paris".into()),
            password: Some(password.clone()),
        };
        self.admin.create_account(&ops(), &new).await.unwrap();
        password
    }

    /// A client without a session.
    pub fn client(&self) -> Client {
        Client { addr: self.addr.clone(), cookies: Vec::new(), csrf: String::new() }
    }

    /// A client signed in through the real form.
    pub async fn sign_in(&self, id: &str, password: &str) -> Client {
        let mut c = self.client();
        let r = c.login(id, password).await;
        assert_eq!(r.status, 303, "sign-in of {id} failed: {} {}", r.status, r.body);
        let acc = c.get("/account").await;
        assert_eq!(acc.status, 200, "{}", acc.body);
        c
    }
}

/// A browser-like client: keeps cookies, sends the CSRF token of the last
/// page it read with every form.
#[derive(Debug, Clone)]
pub struct Client {
    /// `host:port`.
    pub addr: String,
    /// `name=value` pairs.
    pub cookies: Vec<(String, String)>,
    /// The last `_csrf` value seen in a page.
    pub csrf: String,
}

/// The value of the first `name="_csrf" value="..."` in `html`.
pub fn csrf_of(html: &str) -> Option<String> {
    let i = html.find("name=\"_csrf\" value=\"")? + "name=\"_csrf\" value=\"".len();
    html[i..].split('"').next().map(str::to_owned)
}

/// Percent-encodes a form value.
pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Client {
    fn headers(&self) -> Vec<(&'static str, String)> {
        let mut h = vec![("Accept-Language", "fr-FR,fr;q=0.9".to_owned())];
        if !self.cookies.is_empty() {
            let c: Vec<String> = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
            h.push(("Cookie", c.join("; ")));
        }
        h
    }

    fn absorb(&mut self, r: &Resp) {
        for sc in r.headers_named("set-cookie") {
            let kv = sc.split(';').next().unwrap_or("");
            if let Some((k, v)) = kv.split_once('=') {
                self.cookies.retain(|(n, _)| n != k);
                if !v.is_empty() && !sc.contains("Max-Age=0") {
                    self.cookies.push((k.to_owned(), v.to_owned()));
                }
            }
        }
        if let Some(t) = csrf_of(&r.body) {
            self.csrf = t;
        }
    }

    /// GET `path`.
    pub async fn get(&mut self, path: &str) -> Resp {
        let r = request(&self.addr, "GET", path, &self.headers(), None).await;
        self.absorb(&r);
        r
    }

    /// GET with extra headers.
    pub async fn get_with(&mut self, path: &str, extra: &[(&'static str, String)]) -> Resp {
        let mut h = self.headers();
        h.extend(extra.iter().cloned());
        let r = request(&self.addr, "GET", path, &h, None).await;
        self.absorb(&r);
        r
    }

    /// POSTs a form with the current CSRF token (fetch a page first).
    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Resp {
        let csrf = self.csrf.clone();
        let mut all: Vec<(&str, &str)> = vec![("_csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        self.post_raw(path, &all).await
    }

    /// POSTs exactly these fields (no CSRF token added).
    pub async fn post_raw(&mut self, path: &str, fields: &[(&str, &str)]) -> Resp {
        let body: Vec<String> = fields.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect();
        let body = body.join("&");
        let mut h = self.headers();
        h.push(("Content-Type", "application/x-www-form-urlencoded".into()));
        h.push(("Origin", format!("http://{}", self.addr)));
        let r = request(&self.addr, "POST", path, &h, Some(&body)).await;
        self.absorb(&r);
        r
    }

    /// Signs in through the form (GET /login for its token, then POST).
    pub async fn login(&mut self, id: &str, password: &str) -> Resp {
        let page = self.get("/login").await;
        assert_eq!(page.status, 200, "{}", page.body);
        self.post("/login", &[("username", id), ("password", password), ("next", "/account")]).await
    }
}
