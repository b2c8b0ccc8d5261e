//! The admin service for CLI subcommands, the `api` role and `api-token`.

use std::path::Path;
use std::sync::Arc;

use crate::config::{Profile, Settings};
use anyhow::Context as _;
use clap::Subcommand;
use vitalwatch_admin::{Actor, AdminService};
use vitalwatch_platform::{shutdown, store, telemetry};

use super::registry::StoreArgs;

/// The service layer on the store named by `args` (migrated first in embedded mode).
pub(crate) async fn service(args: &StoreArgs, config: Option<&Path>) -> anyhow::Result<AdminService> {
    let s = args.settings(config)?;
    if args.embedded {
        let st = store::open_settings(&s.database).await.context("opening the database")?;
        st.migrate().await.context("migrating the embedded database")?;
    }
    Ok(AdminService::open_settings(&s.database, s.api.max_page_size)
        .await
        .context("opening the database")?
        .with_token_ttl_days(s.api.token_ttl_days))
}

/// The HTTP application of the `api` role: the JSON admin API (`/v1`, probes,
/// OpenAPI) and, when `web.enabled`, the clinician workspace, both with the
/// `[api]` transport limits.
pub(crate) fn http_app(service: Arc<AdminService>, s: &Settings) -> axum::Router {
    let limits = s.api.limits();
    let api = vitalwatch_admin::http::router(service.clone(), &limits);
    if !s.web.enabled {
        return api;
    }
    let web = vitalwatch_web::router(vitalwatch_web::WebState::new(service, s.web.clone()));
    api.merge(vitalwatch_platform::http::limit(web, &limits))
}

/// `vitalwatch api`: the admin API against the configured database.
pub async fn role(config: Option<&Path>) -> anyhow::Result<()> {
    let s = Settings::load(Profile::Service, config)?;
    telemetry::init(s.log_format, "info");
    let shutdown = shutdown::on_signals();
    let st = store::open_settings(&s.database).await.context("opening the database")?;
    super::wiring::Checks::new().database(st).serve(&s, &shutdown).await?;
    let mailer = vitalwatch_admin::service::expertise::Mailer::from_alerting(&s.alerting, &s.web.public_url)
        .context("the tele-expertise e-mails (alerting.smtp)")?;
    let service = AdminService::open_settings(&s.database, s.api.max_page_size)
        .await
        .context("opening the database")?
        .with_token_ttl_days(s.api.token_ttl_days)
        .with_mailer(mailer);
    let listener =
        tokio::net::TcpListener::bind(&s.api.listen).await.with_context(|| format!("listening on {}", s.api.listen))?;
    tracing::info!(message = "Admin API listening.", addr = %listener.local_addr()?, workspace = s.web.enabled);
    let limits = s.api.limits();
    let app = http_app(Arc::new(service), &s);
    super::roles::supervise(&s, &shutdown, "admin API", |token| async move {
        vitalwatch_platform::http::serve(listener, app, &limits, token).await.context("serving the admin API")
    })
    .await?;
    tracing::info!(message = "Admin API stopped.");
    Ok(())
}

/// `vitalwatch api-token ...`
#[derive(Debug, Subcommand)]
pub enum ApiTokenCommand {
    /// Create a bearer token; it is printed once and stored only as a hash.
    Create {
        /// Unique name (recorded in the audit trail as `token:<name>` for operators).
        #[arg(long)]
        name: String,
        /// `operator` (everything) or `physician` (own patients only).
        #[arg(long)]
        role: String,
        /// The physician a physician token stands for.
        #[arg(long)]
        physician: Option<String>,
        /// When the token stops working (RFC 3339, e.g. 2027-01-31T00:00:00Z);
        /// default: `api.token_ttl_days` (90) from now.
        #[arg(long)]
        expires_at: Option<chrono::DateTime<chrono::Utc>>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke a token by name.
    Revoke {
        /// Token name.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List tokens (never their secrets): role, physician, creation, expiry, last use, state.
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// `vitalwatch api-token ...`.
pub async fn api_token(config: Option<&Path>, cmd: ApiTokenCommand) -> anyhow::Result<()> {
    let actor = Actor::cli();
    match cmd {
        ApiTokenCommand::Create { name, role, physician, expires_at, store } => {
            let (secret, view) = service(&store, config)
                .await?
                .create_token(&actor, &name, &role, physician.as_deref(), expires_at)
                .await?;
            let expiry = view.expires_at.map(|e| e.to_rfc3339()).unwrap_or_else(|| "-".into());
            eprintln!("token {name} created, expires {expiry}; it is shown only now, keep it in a secret store:");
            println!("{secret}");
        }
        ApiTokenCommand::Revoke { name, store } => {
            service(&store, config).await?.revoke_token(&actor, &name).await?;
            println!("token {name} revoked");
        }
        ApiTokenCommand::List { store } => {
            let now = chrono::Utc::now();
            for t in service(&store, config).await?.list_tokens(&actor).await? {
                let state = match t.revoked_at {
                    Some(r) => format!("revoked {}", r.to_rfc3339()),
                    None if t.expired(now) => "expired".into(),
                    None => "active".into(),
                };
                println!(
                    "{}\t{}\t{}\tcreated {} by {}\texpires {}\tlast used {}\t{}",
                    t.name,
                    t.role,
                    t.physician_id.as_deref().unwrap_or("-"),
                    t.created_at.to_rfc3339(),
                    t.created_by,
                    t.expires_at.map(|e| e.to_rfc3339()).unwrap_or_else(|| "-".into()),
                    t.last_used_at.map(|e| e.to_rfc3339()).unwrap_or_else(|| "never".into()),
                    state
                );
            }
        }
    }
    Ok(())
}

/// `vitalwatch user ...`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create an account. The password is read from standard input (one line)
    /// with `--password-stdin`; without it the account signs in only through
    /// OpenID Connect (bound on first sign-in by its verified e-mail address).
    Add {
        /// Sign-in name (3–64 of a-z 0-9 . _ @ -).
        id: String,
        /// `operator`, `physician`, `nurse` or `specialist`.
        #[arg(long)]
        role: String,
        /// Shown in the app.
        #[arg(long)]
        name: String,
        /// E-mail address (notifications, OpenID Connect binding).
        #[arg(long)]
        email: Option<String>,
        /// The physician's directory id (physician accounts).
        #[arg(long)]
        physician: Option<String>,
        /// `fr` (default) or `en`.
        #[arg(long)]
        language: Option<String>,
        /// IANA time zone (default Europe/Paris).
        #[arg(long)]
        time_zone: Option<String>,
        /// Read the password from standard input.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List accounts (never passwords).
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Disable an account (its sessions end at once).
    Disable {
        /// Account id.
        id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Enable a disabled account.
    Enable {
        /// Account id.
        id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// `vitalwatch user ...`.
pub async fn user(config: Option<&Path>, cmd: UserCommand) -> anyhow::Result<()> {
    let actor = Actor::cli();
    match cmd {
        UserCommand::Add { id, role, name, email, physician, language, time_zone, password_stdin, store } => {
            let password = if password_stdin {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line).context("reading the password from standard input")?;
                Some(line.trim_end_matches(['\n', '\r']).to_owned())
            } else {
                None
            };
            let new = vitalwatch_admin::account::NewAccount {
                id,
                display_name: name,
                email,
                role,
                physician_id: physician,
                language,
                time_zone,
                password,
            };
            let a = service(&store, config).await?.create_account(&actor, &new).await?;
            println!("account {} created ({})", a.id, a.role.as_str());
        }
        UserCommand::List { store } => {
            for a in service(&store, config).await?.list_accounts(&actor).await? {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    a.id,
                    a.role.as_str(),
                    a.physician_id.as_deref().unwrap_or("-"),
                    a.language,
                    a.time_zone,
                    if a.oidc_subject.is_some() { "oidc" } else { "-" },
                    if a.disabled { "disabled" } else { "active" }
                );
            }
        }
        UserCommand::Disable { id, store } => {
            service(&store, config).await?.set_account_disabled(&actor, &id, true).await?;
            println!("account {id} disabled");
        }
        UserCommand::Enable { id, store } => {
            service(&store, config).await?.set_account_disabled(&actor, &id, false).await?;
            println!("account {id} enabled");
        }
    }
    Ok(())
}
