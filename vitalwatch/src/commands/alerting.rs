//! `vitalwatch alerting` (the role) and the care-team administration
//! subcommands: `physician`, `care-team`, `alert`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use chrono::{NaiveTime, Utc};
use clap::Subcommand;
use vitalwatch_alerting::store::{self as astore, Action, AlertStore, TransitionOptions};
use vitalwatch_alerting::{
    AckVia, CareTeam, Channel, ChannelPreferences, EmailAddress, EpisodeId, EscalationPolicy, PhoneNumber, Physician,
    PhysicianId, QuietHours, TimeZone,
};
use vitalwatch_platform::config::{BusKind, Profile, Settings};
use vitalwatch_platform::{shutdown, store, telemetry};
use vitalwatch_schemas::PatientId;

use super::registry::StoreArgs;
use super::wiring::{Bus, Checks};

/// `vitalwatch alerting`.
pub async fn role(config: Option<&Path>) -> anyhow::Result<()> {
    let s = Settings::load(Profile::Service, config)?;
    telemetry::init(s.log_format, "info,rumqttc=warn,librdkafka=warn");
    if s.bus.kind == BusKind::Memory {
        anyhow::bail!("bus.kind = \"memory\" only works inside `vitalwatch run` (one process); use kafka");
    }
    let shutdown = shutdown::on_signals();
    let store = astore::open(&s.database.url).await.context("opening the database")?;
    Checks::new().alert_database(store.clone()).bus(&s)?.serve(&s, &shutdown).await?;
    let bus = Bus::open(&s).await?;
    let mut consumer = bus.consumer(&s, &s.alerting.group, &[s.bus.alerts_topic.as_str()])?;
    tracing::info!(message = "Alerting starting.", group = %s.alerting.group);
    vitalwatch_alerting::run(&s.alerting, consumer.as_mut(), store, shutdown).await
}

/// The alerting store of an admin command (migrated first in embedded mode).
async fn admin_store(args: &StoreArgs, config: Option<&Path>) -> anyhow::Result<Arc<dyn AlertStore>> {
    let profile = if args.embedded { Profile::Embedded } else { Profile::Service };
    let mut s = Settings::load(profile, config)?;
    if let Some(d) = &args.data_dir
        && s.database.url.starts_with("sqlite://")
        && args.embedded
    {
        s.database.url = format!("sqlite://{}/vitalwatch.db", d.display());
    }
    telemetry::init(s.log_format, "warn");
    if args.embedded {
        let st = store::open(&s.database.url, s.database.insert_chunk).await.context("opening the database")?;
        st.migrate().await.context("migrating the embedded database")?;
    }
    astore::open(&s.database.url).await.context("opening the database")
}

fn parse_channels(list: &[String]) -> anyhow::Result<Vec<Channel>> {
    list.iter()
        .map(|c| match c.trim().to_ascii_lowercase().as_str() {
            "email" => Ok(Channel::Email),
            "sms" => Ok(Channel::Sms),
            other => anyhow::bail!("unknown channel {other:?} (expected email or sms)"),
        })
        .collect()
}

fn parse_quiet_hours(s: &str) -> anyhow::Result<QuietHours> {
    let (a, b) = s.split_once('-').context("quiet hours must look like 22:00-07:00")?;
    let t = |x: &str| NaiveTime::parse_from_str(x.trim(), "%H:%M").with_context(|| format!("invalid time {x:?}"));
    Ok(QuietHours::new(t(a)?, t(b)?))
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
        /// Quiet hours in local time, e.g. 22:00-07:00 (CRITICAL always goes through).
        #[arg(long)]
        quiet_hours: Option<String>,
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
    match cmd {
        PhysicianCommand::Add {
            id,
            name,
            email,
            mobile,
            time_zone,
            quiet_hours,
            low,
            medium,
            high,
            critical,
            hourly_cap,
            store,
        } => {
            let mobile = mobile.map(PhoneNumber::new).transpose()?;
            let urgent = |given: &[String]| -> anyhow::Result<Vec<Channel>> {
                if given.is_empty() {
                    Ok(if mobile.is_some() { vec![Channel::Email, Channel::Sms] } else { vec![Channel::Email] })
                } else {
                    parse_channels(given)
                }
            };
            let p = Physician {
                id: PhysicianId::new(id)?,
                name,
                email: EmailAddress::new(email)?,
                time_zone: TimeZone::new(&time_zone)?,
                quiet_hours: quiet_hours.as_deref().map(parse_quiet_hours).transpose()?,
                channels: ChannelPreferences {
                    low: parse_channels(&low)?,
                    medium: parse_channels(&medium)?,
                    high: urgent(&high)?,
                    critical: urgent(&critical)?,
                },
                mobile,
                hourly_cap,
            };
            p.validate()?;
            admin_store(&store, config).await?.upsert_physician(&p).await?;
            println!("physician {} saved", p.id);
        }
        PhysicianCommand::List { store } => {
            for p in admin_store(&store, config).await?.physicians().await? {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    p.id,
                    p.name,
                    p.email,
                    p.mobile.as_ref().map(|m| m.to_string()).unwrap_or_else(|| "-".into()),
                    p.time_zone.name()
                );
            }
        }
    }
    Ok(())
}

/// `vitalwatch care-team ...`
pub async fn care_team(config: Option<&Path>, cmd: CareTeamCommand) -> anyhow::Result<()> {
    match cmd {
        CareTeamCommand::Set { patient, responsible, deputies, policy, store } => {
            let policy = if policy == "default" {
                EscalationPolicy::default()
            } else {
                let path = PathBuf::from(&policy);
                let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
                serde_json::from_str(&text).with_context(|| format!("parsing the policy {}", path.display()))?
            };
            let team = CareTeam {
                patient_id: PatientId::new(patient)?,
                responsible: PhysicianId::new(responsible)?,
                deputies: deputies.into_iter().map(PhysicianId::new).collect::<Result<_, _>>()?,
                policy,
            };
            admin_store(&store, config).await?.set_care_team(&team).await?;
            println!("care team of {} saved", team.patient_id);
        }
        CareTeamCommand::Show { patient, store } => {
            let patient = PatientId::new(patient)?;
            match admin_store(&store, config).await?.care_team(&patient).await? {
                Some(t) => println!("{}", serde_json::to_string_pretty(&t)?),
                None => anyhow::bail!("patient {patient} has no care team"),
            }
        }
    }
    Ok(())
}

/// `vitalwatch alert ...`
pub async fn alert(config: Option<&Path>, cmd: AlertCommand) -> anyhow::Result<()> {
    let options = TransitionOptions { codes: None, caps: Default::default() };
    match cmd {
        AlertCommand::Ack { episode, by, store } => {
            let episode = EpisodeId::new(episode)?;
            let action = Action::Ack { by: PhysicianId::new(by)?, via: AckVia::WebApp, nonce: None };
            admin_store(&store, config).await?.transition(&episode, action, &options, Utc::now()).await?;
            println!("episode {episode} acknowledged");
        }
        AlertCommand::Snooze { episode, by, minutes, store } => {
            let episode = EpisodeId::new(episode)?;
            let until = Utc::now() + chrono::Duration::minutes(i64::from(minutes));
            let action = Action::Snooze { by: PhysicianId::new(by)?, until };
            admin_store(&store, config).await?.transition(&episode, action, &options, Utc::now()).await?;
            println!("episode {episode} snoozed until {until}");
        }
        AlertCommand::Show { episode, store } => {
            let episode = EpisodeId::new(episode)?;
            let st = admin_store(&store, config).await?;
            let state = st.episode(&episode).await?.with_context(|| format!("unknown episode {episode}"))?;
            let acked = state.acks.iter().map(|a| format!("{} via {:?} at {}", a.by, a.via, a.at)).collect::<Vec<_>>();
            println!(
                "episode {} severity {} resolved {} acknowledged [{}]",
                state.episode_id,
                state.severity,
                state.resolved_at.map(|t| t.to_rfc3339()).unwrap_or_else(|| "no".into()),
                acked.join(", ")
            );
            for r in st.outbox(&episode).await? {
                println!("outbox {} {} attempts={}", r.notification.key, r.status.as_str(), r.attempts);
            }
            for r in st.audit_trail(&episode).await? {
                println!("{}", serde_json::to_string(&r)?);
            }
        }
    }
    Ok(())
}
