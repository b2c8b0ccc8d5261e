//! `vitalwatch run`: ingest, persist and rules (and, as it lands,
//! alerting) in one process on embedded defaults, so a newcomer's first command
//! works on a fresh machine with only Rust installed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::config::{Profile, Settings};
use anyhow::Context as _;
use clap::Args;
use vitalwatch_ingest::persist::{self, PersistStats};
use vitalwatch_ingest::worker::{self, IngestStats, SharedRegistry, broker_address};
use vitalwatch_platform::bus::watch::Progress;
use vitalwatch_platform::tasks::TaskSet;
use vitalwatch_platform::{private_fs, shutdown, store, telemetry};
use vitalwatch_rules::worker::{self as rules_worker, RulesStats};

use super::wiring::{Bus, Checks};
use crate::{embedded_broker, sim};

/// Options of `vitalwatch run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Data folder (SQLite database, alert files).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Address of the embedded MQTT broker (overrides mqtt.url).
    #[arg(long)]
    pub mqtt_listen: Option<SocketAddr>,
    /// Also start N simulated patients (devices and manual entries, some deteriorating).
    #[arg(long, value_name = "N")]
    pub simulate: Option<usize>,
    /// Seconds between two readings of one simulated patient.
    #[arg(long, default_value_t = 5.0)]
    pub simulate_interval: f64,
}

/// Runs every role until SIGTERM/SIGINT.
pub async fn run(config: Option<&Path>, args: RunArgs) -> anyhow::Result<()> {
    let mut s = Settings::load(Profile::Embedded, config)?;
    if let Some(d) = &args.data_dir {
        if s.database.url.expose() == format!("sqlite://{}/vitalwatch.db", s.data_dir.display()) {
            s.database.url = format!("sqlite://{}/vitalwatch.db", d.display()).into();
        }
        if s.alerting.file_dir == s.data_dir.join("alerts") {
            s.alerting.file_dir = d.join("alerts");
        }
        s.data_dir = d.clone();
    }
    if let Some(addr) = args.mqtt_listen {
        s.mqtt.url = format!("embedded://{addr}");
    }
    telemetry::init(s.log_format, "info,rumqttd=off,rumqttc=warn,librdkafka=warn");
    // Health data and secrets live here: 0700, files 0600 (a folder found wider is tightened, logged).
    private_fs::prepare_dir(&s.data_dir).with_context(|| format!("preparing {}", s.data_dir.display()))?;
    if !s.alerting.file_dir.starts_with(&s.data_dir) {
        private_fs::prepare_dir(&s.alerting.file_dir)
            .with_context(|| format!("preparing {}", s.alerting.file_dir.display()))?;
    }
    let shutdown = shutdown::on_signals();
    // Stage 0 (the producers: simulator, ingest) stops first; stage 1 (the
    // consumers and the API) once stage 0 has finished and the in-process bus
    // is drained; the first failure stops everything (see `TaskSet`).
    let mut tasks = TaskSet::new(shutdown.clone(), s.ops.drain_deadline());
    let (producers, consumers) = (tasks.token(0), tasks.token(1));

    if s.mqtt.url.starts_with("embedded://") {
        let (host, port) = broker_address(&s.mqtt.url)?;
        let addr: SocketAddr = format!("{host}:{port}").parse().context("embedded broker address")?;
        let users = embedded_users(&mut s);
        let max = s.ingest.max_payload_bytes + 64 * 1024;
        let addr = embedded_broker::start(addr, max, args.mqtt_listen.is_none(), users).await?;
        s.mqtt.url = format!("mqtt://{addr}");
        s.mqtt.share_group.clear();
    }

    let store = store::open_settings(&s.database).await.context("opening the database")?;
    store.migrate().await.context("migrating the database")?;
    let bus = Bus::open(&s).await?;
    let ingest_stats = Arc::new(IngestStats::default());
    // The ops endpoints: like the broker, move off a taken default port.
    if s.ops.listen == "127.0.0.1:9464" && std::net::TcpListener::bind("127.0.0.1:9464").is_err() {
        s.ops.listen = "127.0.0.1:0".into();
    }
    let progress = [Progress::new("persist"), Progress::new("rules"), Progress::new("alerting")];
    let ops_addr = Checks::new()
        .database(store.clone())
        .mqtt(ingest_stats.clone())
        .consumer(&s, progress[0].clone())
        .consumer(&s, progress[1].clone())
        .consumer(&s, progress[2].clone())
        .serve(&s, &consumers)
        .await?;

    let persist_topics = [s.bus.observations_topic.as_str(), s.bus.device_status_topic.as_str()];
    let mut consumer = bus.watched_consumer(&s, &s.persist.group, &persist_topics, &progress[0])?;
    let persist_stats = Arc::new(PersistStats::default());
    {
        let (store, settings, status_topic, stats, dead, shutdown) = (
            store.clone(),
            s.persist.clone(),
            s.bus.device_status_topic.clone(),
            persist_stats.clone(),
            bus.dead_letters(&s, "persist")?,
            consumers.clone(),
        );
        let persist = async move {
            persist::run(consumer.as_mut(), store, &settings, &status_topic, stats, dead, shutdown).await
        };
        tasks.spawn(1, "persist", persist);
    }

    // The acknowledgment server: like the broker, move off a taken default port.
    if s.alerting.http_addr == "127.0.0.1:8080" && std::net::TcpListener::bind("127.0.0.1:8080").is_err() {
        let free = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        tracing::warn!(message = "Port 8080 taken; the acknowledgment server uses another port.", port = free.port());
        if s.alerting.public_base_url == "http://127.0.0.1:8080" {
            s.alerting.public_base_url = format!("http://{free}");
        }
        s.alerting.http_addr = free.to_string();
    }
    // Alerting first, so it is listening before rules produce.
    let mut alert_consumer =
        bus.watched_consumer(&s, &s.alerting.group, &[s.bus.alerts_topic.as_str()], &progress[2])?;
    let alert_store = vitalwatch_alerting::store::open_with(s.database.url.expose(), s.database.timeouts())
        .await
        .context("opening the alerting store")?;
    {
        let (settings, limits, dead, shutdown) =
            (s.alerting.clone(), s.api.ack_limits(), bus.dead_letters(&s, "alerting")?, consumers.clone());
        tasks.spawn(1, "alerting", async move {
            let consumer = alert_consumer.as_mut();
            let (store, dead) = (alert_store, Some(dead));
            vitalwatch_alerting::run_serving(&settings, &limits, consumer, store, dead, shutdown).await
        });
    }

    // The admin API on the same database: like the ack server, move off a taken default port.
    if s.api.listen == "127.0.0.1:8090" && std::net::TcpListener::bind("127.0.0.1:8090").is_err() {
        let free = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        tracing::warn!(message = "Port 8090 taken; the admin API uses another port.", port = free.port());
        s.api.listen = free.to_string();
    }
    if s.web.public_url == vitalwatch_web::WebSettings::default().public_url {
        s.web.public_url = format!("http://{}", s.api.listen);
    }
    // Tele-expertise e-mails go out like the alerts (`alerting.file_dir` in embedded mode).
    let mailer = vitalwatch_admin::service::expertise::Mailer::from_alerting(&s.alerting, &s.web.public_url)
        .context("the tele-expertise e-mails")?;
    let admin = Arc::new(
        vitalwatch_admin::AdminService::open_settings(&s.database, s.api.max_page_size)
            .await
            .context("opening the admin store")?
            .with_token_ttl_days(s.api.token_ttl_days)
            .with_mailer(mailer),
    );
    let token_file = bootstrap_token(&admin, &s.data_dir).await?;
    let api_listener =
        tokio::net::TcpListener::bind(&s.api.listen).await.with_context(|| format!("listening on {}", s.api.listen))?;
    s.api.listen = api_listener.local_addr()?.to_string();
    {
        let (app, limits, shutdown) = (super::admin::http_app(admin.clone(), &s), s.api.limits(), consumers.clone());
        tasks.spawn(1, "admin API", async move {
            vitalwatch_platform::http::serve(api_listener, app, &limits, shutdown).await.context("admin API")
        });
    }

    let rules_topics = [s.bus.observations_topic.as_str(), s.bus.device_status_topic.as_str()];
    let mut rules_consumer = bus.watched_consumer(&s, &s.rules.group, &rules_topics, &progress[1])?;
    let rules_stats = Arc::new(RulesStats::default());
    {
        let (store, producer, cfg, stats, dead, shutdown) = (
            store.clone(),
            bus.urgent_producer(&s)?,
            super::roles::rules_config(&s)?,
            rules_stats.clone(),
            bus.dead_letters(&s, "rules")?,
            consumers.clone(),
        );
        tasks.spawn(1, "rules", async move {
            rules_worker::run(rules_consumer.as_mut(), producer, store, &cfg, stats, dead, shutdown).await
        });
    }

    if let Some(n) = args.simulate {
        sim::trickle::register(store.as_ref(), s.database.url.expose(), n).await?;
    }
    let registry = SharedRegistry::load(store.clone(), &shutdown).await?;
    // The HTTP ingestion endpoint: on by default, on a free local port.
    if s.ingest.http_listen.is_none() {
        s.ingest.http_listen = Some("127.0.0.1:0".into());
    }
    let http = vitalwatch_ingest::http::Server::bind(&s.ingest_config()).await?;
    let http_addr = match &http {
        Some(server) => Some(server.local_addr()?),
        None => None,
    };
    {
        let (config, outputs, stats, shutdown) =
            (s.ingest_config(), bus.outputs(&s)?, ingest_stats.clone(), producers.clone());
        tasks.spawn(0, "ingest", async move { worker::run(&config, outputs, registry, stats, http, shutdown).await });
    }

    if let Some(n) = args.simulate {
        let (mqtt, shutdown) = (s.mqtt.clone(), producers.clone());
        let interval = Duration::from_secs_f64(args.simulate_interval.max(0.05));
        tasks.spawn(0, "simulator", async move { sim::trickle::run(&mqtt, n, interval, shutdown).await });
    }
    // Let persist, rules and alerting take what ingest produced last before they stop.
    if let Bus::Memory(memory) = &bus {
        let memory = memory.clone();
        tasks.before_stage(1, async move {
            while !memory.caught_up() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
    }

    let accounts_file =
        if s.web.enabled { bootstrap_accounts(&admin, &s.data_dir, args.simulate).await? } else { None };
    banner(&s, args.simulate, ops_addr, http_addr, token_file.as_deref(), accounts_file.as_deref());
    {
        let (i, p, r, shutdown) = (ingest_stats.clone(), persist_stats.clone(), rules_stats.clone(), consumers.clone());
        tasks.spawn(1, "progress reporter", async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(10)) => {}
                    _ = shutdown.cancelled() => return Ok(()),
                }
                tracing::info!(
                    message = "Progress.",
                    messages = i.messages.load(Ordering::Relaxed),
                    observations = i.observations.load(Ordering::Relaxed),
                    rejected = i.rejected(),
                    stored = p.inserted.load(Ordering::Relaxed),
                    alert_events = r.events_published.load(Ordering::Relaxed)
                );
            }
        });
    }

    // Until SIGTERM/SIGINT or the first role that fails; then the drain, bounded by `ops.drain_deadline_secs`.
    tasks.run().await?;
    tracing::info!(message = "Stopped cleanly.", stored = persist_stats.inserted.load(Ordering::Relaxed));
    Ok(())
}

/// On the first run (no API token at all), creates an operator token and
/// writes it to `{data_dir}/api-token` (mode 0600). Returns the file if created.
async fn bootstrap_token(admin: &vitalwatch_admin::AdminService, data_dir: &Path) -> anyhow::Result<Option<PathBuf>> {
    let actor = vitalwatch_admin::Actor::operator("run:bootstrap");
    if !admin.list_tokens(&actor).await?.is_empty() {
        return Ok(None);
    }
    let (secret, _) = admin.create_token(&actor, "run-operator", "operator", None, None).await?;
    let path = data_dir.join("api-token");
    private_fs::write_file(&path, format!("{secret}\n").as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(Some(path))
}

/// On the first run (no workspace account at all), creates the workspace's
/// accounts with random passwords and writes them to `{data_dir}/web-accounts`
/// (mode 0600): an operator (`admin`), one account per physician of the
/// directory (their directory id), and with `--simulate` a demo nurse
/// (`ide-demo`) in every simulated patient's care team and a demo specialist
/// (`specialist-demo`). Returns the file if created.
async fn bootstrap_accounts(
    admin: &vitalwatch_admin::AdminService,
    data_dir: &Path,
    simulate: Option<usize>,
) -> anyhow::Result<Option<PathBuf>> {
    use vitalwatch_admin::account::NewAccount;
    let actor = vitalwatch_admin::Actor::operator("run:bootstrap");
    if !admin.list_accounts(&actor).await?.is_empty() {
        return Ok(None);
    }
    let password = || vitalwatch_admin::token::generate()[3..23].to_owned();
    let mut lines = String::from("# vitalwatch workspace accounts (first run); user name and password\n");
    let mut add = async |new: NewAccount| -> anyhow::Result<()> {
        let pw = new.password.clone().unwrap_or_default();
        admin.create_account(&actor, &new).await.with_context(|| format!("creating account {}", new.id))?;
        lines.push_str(&format!("{} {pw}\n", new.id));
        Ok(())
    };
    add(NewAccount {
        id: "admin".into(),
        display_name: "Exploitation".into(),
        role: "operator".into(),
        password: Some(password()),
        ..NewAccount::default()
    })
    .await?;
    for p in admin.list_physicians(&actor, &Default::default()).await?.items {
        add(NewAccount {
            id: p.id.clone(),
            display_name: p.entry.get("name").and_then(|n| n.as_str()).unwrap_or(&p.id).to_owned(),
            email: p.entry.get("email").and_then(|n| n.as_str()).map(str::to_owned),
            role: "physician".into(),
            physician_id: Some(p.id.clone()),
            password: Some(password()),
            ..NewAccount::default()
        })
        .await?;
    }
    if let Some(n) = simulate {
        add(NewAccount {
            id: "ide-demo".into(),
            display_name: "IDE Demo".into(),
            role: "nurse".into(),
            password: Some(password()),
            ..NewAccount::default()
        })
        .await?;
        add(NewAccount {
            id: "specialist-demo".into(),
            display_name: "Dr Spécialiste".into(),
            email: Some("specialist.demo@example.invalid".into()),
            role: "specialist".into(),
            password: Some(password()),
            ..NewAccount::default()
        })
        .await?;
        for i in 0..n {
            let patient = sim::model::SimPatient::new(sim::trickle::PREFIX, i, &sim::model::FORMATS).id;
            admin.set_care_team_nurses(&actor, &patient, &["ide-demo".to_owned()]).await?;
        }
    }
    let path = data_dir.join("web-accounts");
    private_fs::write_file(&path, lines.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    Ok(Some(path))
}

/// The embedded broker's accounts (`mqtt.embedded_users`). When there are any, `run`'s own
/// clients (ingest, simulator) need one too: `mqtt.username`/`mqtt.password` if both are set
/// (added to the table), else a random internal account for this process only.
fn embedded_users(s: &mut Settings) -> embedded_broker::Users {
    let mut users: embedded_broker::Users =
        s.mqtt.embedded_users.iter().map(|(u, p)| (u.clone(), p.expose().to_owned())).collect();
    if users.is_empty() {
        return users;
    }
    match (&s.mqtt.username, &s.mqtt.password) {
        (Some(u), Some(p)) => {
            users.insert(u.clone(), p.expose().to_owned());
        }
        _ => {
            let password: String = rand::random::<[u8; 32]>().iter().map(|b| format!("{b:02x}")).collect();
            users.insert(INTERNAL_USER.to_owned(), password.clone());
            s.mqtt.username = Some(INTERNAL_USER.to_owned());
            s.mqtt.password = Some(vitalwatch_platform::secret::Secret::new(password));
        }
    }
    users
}

/// The account of `run`'s own MQTT clients when the embedded broker requires credentials and
/// `mqtt.username` is not set.
const INTERNAL_USER: &str = "vitalwatch-run";

fn banner(
    s: &Settings,
    simulate: Option<usize>,
    ops: Option<SocketAddr>,
    http_ingest: Option<SocketAddr>,
    token_file: Option<&Path>,
    accounts_file: Option<&Path>,
) {
    let addr = s.mqtt.url.trim_start_matches("mqtt://");
    let (host, port) = addr.rsplit_once(':').unwrap_or((addr, "1883"));
    eprintln!(
        "\nvitalwatch is running (embedded mode)\n\
         \x20 MQTT broker : {addr}\n\
         \x20 HTTP ingest : {}\n\
         \x20 database    : {}\n\
         \x20 data folder : {}\n\
         \x20 metrics     : {}\n\
         \x20 admin API   : http://{}/v1 (OpenAPI: /openapi.json){}\n\
         \x20 workspace   : {}{}\n{}\n\
         Try a manual entry (register the patient first: vitalwatch patient add p-demo --embedded):\n\
         \x20 mosquitto_pub -h {host} -p {port} -q 1 -t vitalwatch/v1/patients/p-demo/manual/json \\\n\
         \x20   -m '{{\"readings\":[{{\"type\":\"body_weight\",\"unit\":\"kg\",\"value\":81.4}}]}}'\n\
         Stop with Ctrl-C (nothing is lost).\n",
        http_ingest.map_or_else(|| "off".to_owned(), |a| format!("http://{a}/ingest/v1 (docs/http-ingest.md)")),
        s.database.url,
        s.data_dir.display(),
        ops.map_or_else(|| "off".to_owned(), |a| format!("http://{a}/metrics")),
        s.api.listen,
        match token_file {
            Some(f) => format!("\n  API token   : operator token written to {} (mode 0600)", f.display()),
            None => String::new(),
        },
        if s.web.enabled { format!("{}/", s.web.public_url.trim_end_matches('/')) } else { "off".to_owned() },
        match accounts_file {
            Some(f) => format!("\n  sign-in     : accounts and passwords written to {} (mode 0600)", f.display()),
            None => String::new(),
        },
        match simulate {
            Some(n) => format!("  simulation  : {n} patients publishing"),
            None => String::new(),
        }
    );
}
