//! `vitalwatch alerting` (the role) and the care-team administration
//! subcommands: `physician`, `care-team`, `alert`.

use std::path::{Path, PathBuf};

use crate::config::{Profile, Settings};
use anyhow::Context as _;
use clap::Subcommand;
use vitalwatch_admin::Actor;
use vitalwatch_admin::model::{
    AlertAction, CareTeamInput, ChannelsInput, EpisodeAuditQuery, PageQuery, PhysicianInput, SnoozeInput,
};
use vitalwatch_alerting::EpisodeState;
use vitalwatch_alerting::store as astore;
use vitalwatch_platform::bus::watch::Progress;
use vitalwatch_platform::config::BusKind;
use vitalwatch_platform::{shutdown, telemetry};

use super::admin;
use super::registry::StoreArgs;
use super::wiring::{Bus, Checks};

/// `vitalwatch alerting`.
pub async fn role(config: Option<&Path>) -> anyhow::Result<()> {
    let s = Settings::load(Profile::Service, config)?;
    telemetry::init(s.log_format, "info,rumqttc=warn,librdkafka=warn");
    if s.bus.kind == BusKind::Memory {
        anyhow::bail!("bus.kind = \"memory\" only works inside `vitalwatch run` (one process); use kafka");
    }
    // Before any connection: an inbound SMS endpoint without its secret is refused at once.
    vitalwatch_alerting::service::wiring::inbound_auth(&s.alerting).context("configuring inbound SMS")?;
    let shutdown = shutdown::on_signals();
    let store =
        astore::open_with(s.database.url.expose(), s.database.timeouts()).await.context("opening the database")?;
    let progress = Progress::new("alerting");
    Checks::new().alert_database(store.clone()).bus(&s)?.consumer(&s, progress.clone()).serve(&s, &shutdown).await?;
    let bus = Bus::open(&s).await?;
    let mut consumer = bus.watched_consumer(&s, &s.alerting.group, &[s.bus.alerts_topic.as_str()], &progress)?;
    let dead_letters = bus.dead_letters(&s, "alerting")?;
    tracing::info!(message = "Alerting starting.", group = %s.alerting.group);
    let (limits, settings) = (s.api.ack_limits(), s.alerting.clone());
    super::roles::supervise(&s, &shutdown, "alerting", |token| async move {
        let consumer = consumer.as_mut();
        vitalwatch_alerting::run_serving(&settings, &limits, consumer, store, Some(dead_letters), token).await
    })
    .await
}

/// `vitalwatch physician ...`
#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per command-line invocation
pub enum PhysicianCommand {
    /// Add or replace a physician (alert recipient).
    Add {
        /// Physician id (A-Z a-z 0-9 _ . -).
        id: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// Email address.
        #[arg(long)]
        email: String,
        /// Mobile number, E.164 (e.g. +33612345678).
        #[arg(long)]
        mobile: Option<String>,
        /// IANA time zone.
        #[arg(long, default_value = "Europe/Paris")]
        time_zone: String,
        /// Language of their notifications: fr or en (default: alerting.default_language).
        #[arg(long)]
        language: Option<String>,
        /// Quiet hours in local time, e.g. 22:00-07:00 (HIGH and CRITICAL go through by default).
        #[arg(long)]
        quiet_hours: Option<String>,
        /// Lowest severity delivered during quiet hours: high (default) or critical
        /// (CRITICAL always goes through).
        #[arg(long, requires = "quiet_hours")]
        quiet_hours_bypass: Option<String>,
        /// Channels for LOW alerts (comma-separated: email,sms).
        #[arg(long, value_delimiter = ',', default_value = "email")]
        low: Vec<String>,
        /// Channels for MEDIUM alerts.
        #[arg(long, value_delimiter = ',', default_value = "email")]
        medium: Vec<String>,
        /// Channels for HIGH alerts (default email,sms with a mobile, else email).
        #[arg(long, value_delimiter = ',')]
        high: Vec<String>,
        /// Channels for CRITICAL alerts (default email,sms with a mobile, else email).
        #[arg(long, value_delimiter = ',')]
        critical: Vec<String>,
        /// At most this many pages per hour below HIGH (the rest go to a digest).
        #[arg(long)]
        hourly_cap: Option<u32>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List physicians.
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// `vitalwatch care-team ...`
#[derive(Debug, Subcommand)]
pub enum CareTeamCommand {
    /// Set a patient's responsible physician, deputies and escalation policy.
    Set {
        /// Patient id.
        patient: String,
        /// Responsible physician id.
        #[arg(long)]
        responsible: String,
        /// Deputy physician ids, in rank order (repeat the option).
        #[arg(long = "deputy")]
        deputies: Vec<String>,
        /// Nurse account ids of the team (repeat the option; they read and triage
        /// the patient in the workspace). Without any, the team's nurses are unchanged.
        #[arg(long = "nurse")]
        nurses: Vec<String>,
        /// `default` or a JSON file with an escalation policy.
        #[arg(long, default_value = "default")]
        policy: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Show a patient's care team (JSON).
    Show {
        /// Patient id.
        patient: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// `vitalwatch alert ...`
#[derive(Debug, Subcommand)]
pub enum AlertCommand {
    /// Acknowledge an episode on behalf of a physician (stops escalation).
    Ack {
        /// Episode id.
        episode: String,
        /// Physician id.
        #[arg(long)]
        by: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Snooze an episode (a severity rise breaks the snooze).
    Snooze {
        /// Episode id.
        episode: String,
        /// Physician id.
        #[arg(long)]
        by: String,
        /// Minutes (1 to 1440).
        #[arg(long, default_value_t = 30)]
        minutes: u32,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Close an episode on behalf of a physician: acknowledged and marked closed
    /// (a severity rise reopens it).
    Close {
        /// Episode id.
        episode: String,
        /// Physician id.
        #[arg(long)]
        by: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Show an episode: state, outbox and audit trail (JSON lines).
    Show {
        /// Episode id.
        episode: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// `vitalwatch physician ...`
pub async fn physician(config: Option<&Path>, cmd: PhysicianCommand) -> anyhow::Result<()> {
    let actor = Actor::cli();
    match cmd {
        PhysicianCommand::Add {
            id,
            name,
            email,
            mobile,
            time_zone,
            language,
            quiet_hours,
            quiet_hours_bypass,
            low,
            medium,
            high,
            critical,
            hourly_cap,
            store,
        } => {
            let some = |v: Vec<String>| (!v.is_empty()).then_some(v);
            let input = PhysicianInput {
                name,
                email,
                mobile,
                time_zone: Some(time_zone),
                language,
                quiet_hours,
                quiet_hours_bypass,
                channels: ChannelsInput {
                    low: some(low),
                    medium: some(medium),
                    high: some(high),
                    critical: some(critical),
                },
                hourly_cap,
            };
            let p = admin::service(&store, config).await?.upsert_physician(&actor, &id, &input).await?;
            println!("physician {} saved", p.id);
        }
        PhysicianCommand::List { store } => {
            let svc = admin::service(&store, config).await?;
            let mut q = PageQuery { after: None, limit: Some(u32::MAX) };
            loop {
                let page = svc.list_physicians(&actor, &q).await?;
                for p in &page.items {
                    let field = |k: &str| p.entry.get(k).and_then(|v| v.as_str()).unwrap_or("-").to_owned();
                    println!(
                        "{}\t{}\t{}\t{}\t{}",
                        p.id,
                        field("name"),
                        field("email"),
                        field("mobile"),
                        field("time_zone")
                    );
                }
                match page.next {
                    Some(n) => q.after = Some(n),
                    None => break,
                }
            }
        }
    }
    Ok(())
}

/// `vitalwatch care-team ...`
pub async fn care_team(config: Option<&Path>, cmd: CareTeamCommand) -> anyhow::Result<()> {
    let actor = Actor::cli();
    match cmd {
        CareTeamCommand::Set { patient, responsible, deputies, nurses, policy, store } => {
            let policy = if policy == "default" {
                None
            } else {
                let path = PathBuf::from(&policy);
                let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
                Some(serde_json::from_str(&text).with_context(|| format!("parsing the policy {}", path.display()))?)
            };
            let nurses = (!nurses.is_empty()).then_some(nurses);
            let input = CareTeamInput { responsible, deputies, policy, nurses };
            admin::service(&store, config).await?.set_care_team(&actor, &patient, &input).await?;
            println!("care team of {patient} saved");
        }
        CareTeamCommand::Show { patient, store } => {
            let team = admin::service(&store, config).await?.care_team(&actor, &patient).await?;
            println!("{}", serde_json::to_string_pretty(&team)?);
        }
    }
    Ok(())
}

/// `vitalwatch alert ...`
pub async fn alert(config: Option<&Path>, cmd: AlertCommand) -> anyhow::Result<()> {
    let actor = Actor::cli();
    match cmd {
        AlertCommand::Ack { episode, by, store } => {
            let input = AlertAction { by: Some(by), ..Default::default() };
            admin::service(&store, config).await?.ack_alert(&actor, &episode, &input).await?;
            println!("episode {episode} acknowledged");
        }
        AlertCommand::Snooze { episode, by, minutes, store } => {
            let input = SnoozeInput { by: Some(by), minutes };
            let r = admin::service(&store, config).await?.snooze_alert(&actor, &episode, &input).await?;
            println!("episode {episode} snoozed until {}", r.until.map(|t| t.to_string()).unwrap_or_default());
        }
        AlertCommand::Close { episode, by, store } => {
            let input = AlertAction { by: Some(by), ..Default::default() };
            admin::service(&store, config).await?.close_alert(&actor, &episode, &input).await?;
            println!("episode {episode} closed");
        }
        AlertCommand::Show { episode, store } => {
            let svc = admin::service(&store, config).await?;
            let detail = svc.alert(&actor, &episode).await?;
            let state: EpisodeState =
                serde_json::from_value(detail.alerting.context("alerting does not know this episode")?)
                    .context("the episode state does not parse")?;
            let acked = state.acks.iter().map(|a| format!("{} via {:?} at {}", a.by, a.via, a.at)).collect::<Vec<_>>();
            println!(
                "episode {} severity {} resolved {} acknowledged [{}]",
                state.episode_id,
                state.severity,
                state.resolved_at.map(|t| t.to_rfc3339()).unwrap_or_else(|| "no".into()),
                acked.join(", ")
            );
            for r in svc.alert_outbox(&actor, &episode).await? {
                println!("outbox {} {} attempts={}", r.notification.key, r.status.as_str(), r.attempts);
            }
            let mut q =
                EpisodeAuditQuery { episode: Some(episode.clone()), limit: Some(u32::MAX), ..Default::default() };
            let mut records = Vec::new();
            loop {
                let page = svc.episode_audit(&actor, &q).await?;
                records.extend(page.items);
                match page.next {
                    Some(n) => q.after = Some(n),
                    None => break,
                }
            }
            for r in records.iter().rev() {
                println!("{}", serde_json::to_string(&r.record)?);
            }
        }
    }
    Ok(())
}
