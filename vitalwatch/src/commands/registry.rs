//! Registry and database administration subcommands.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use vitalwatch_platform::config::{Profile, Settings};
use vitalwatch_platform::store::{self, Store};
use vitalwatch_schemas::{DeviceId, PatientId};

/// Which store an admin command works on.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Use the embedded defaults of `vitalwatch run` (the SQLite file in the data folder).
    #[arg(long, global = true)]
    pub embedded: bool,
    /// Data folder (embedded mode).
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
}

impl StoreArgs {
    pub(crate) fn settings(&self, config: Option<&Path>) -> anyhow::Result<Settings> {
        let profile = if self.embedded { Profile::Embedded } else { Profile::Service };
        let mut s = Settings::load(profile, config)?;
        if let Some(d) = &self.data_dir {
            if s.database.url.starts_with("sqlite://") && self.embedded {
                s.database.url = format!("sqlite://{}/vitalwatch.db", d.display());
            }
            s.data_dir = d.clone();
        }
        vitalwatch_platform::telemetry::init(s.log_format, "warn");
        Ok(s)
    }

    pub(crate) async fn store(&self, config: Option<&Path>) -> anyhow::Result<std::sync::Arc<dyn Store>> {
        let s = self.settings(config)?;
        let st = store::open(&s.database.url, s.database.insert_chunk).await.context("opening the database")?;
        if self.embedded {
            st.migrate().await.context("migrating the embedded database")?;
        }
        Ok(st)
    }
}

/// `vitalwatch patient ...`
#[derive(Debug, Subcommand)]
pub enum PatientCommand {
    /// Register patients (pseudonymous ids only; never names or national numbers).
    Add {
        /// Patient ids.
        #[arg(required = true)]
        ids: Vec<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List active patients.
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// `vitalwatch device ...`
#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Register devices.
    Add {
        /// Device ids.
        #[arg(required = true)]
        ids: Vec<String>,
        /// Device kind (scale, bp_cuff, oximeter, glucometer, thermometer, ...).
        #[arg(long, default_value = "generic")]
        kind: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Enrol a device to a patient from a time on (closes its previous enrolment then).
    Enrol {
        /// Device id.
        device: String,
        /// Patient id.
        patient: String,
        /// Start of the enrolment, RFC 3339 (default: now).
        #[arg(long)]
        from: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// End a device's current enrolment.
    Unenrol {
        /// Device id.
        device: String,
        /// End time, RFC 3339 (default: now).
        #[arg(long)]
        at: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Retire a device: its readings are rejected from then on.
    Retire {
        /// Device id.
        device: String,
        /// Retirement time, RFC 3339 (default: now).
        #[arg(long)]
        at: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List devices with their enrolments.
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
}

fn when(s: &Option<String>) -> anyhow::Result<DateTime<Utc>> {
    match s {
        None => Ok(Utc::now()),
        Some(t) => Ok(DateTime::parse_from_rfc3339(t)
            .with_context(|| format!("{t:?} is not an RFC 3339 time, e.g. 2026-11-26T08:00:00+01:00"))?
            .with_timezone(&Utc)),
    }
}

/// `vitalwatch migrate`.
pub async fn migrate(config: Option<&Path>, args: StoreArgs) -> anyhow::Result<()> {
    let s = args.settings(config)?;
    let st = store::open(&s.database.url, s.database.insert_chunk).await.context("opening the database")?;
    let report = st.migrate().await.context("applying migrations")?;
    println!(
        "migrations applied: {:?}{}",
        report.applied,
        if report.timescale { " (TimescaleDB features on)" } else { "" }
    );
    Ok(())
}

/// `vitalwatch config`.
pub fn show_config(config: Option<&Path>, args: StoreArgs) -> anyhow::Result<()> {
    let s = args.settings(config)?;
    println!("{}", s.redacted_toml());
    Ok(())
}

/// `vitalwatch patient ...`.
pub async fn patient(config: Option<&Path>, cmd: PatientCommand) -> anyhow::Result<()> {
    match cmd {
        PatientCommand::Add { ids, store } => {
            let st = store.store(config).await?;
            for id in ids {
                let p = PatientId::new(id)?;
                let new = st.add_patient(&p).await?;
                println!("{p}: {}", if new { "added" } else { "already registered" });
            }
        }
        PatientCommand::List { store } => {
            let snap = store.store(config).await?.registry().await?;
            let mut ids: Vec<_> = snap.patients.into_iter().collect();
            ids.sort();
            for id in ids {
                println!("{id}");
            }
        }
    }
    Ok(())
}

/// `vitalwatch device ...`.
pub async fn device(config: Option<&Path>, cmd: DeviceCommand) -> anyhow::Result<()> {
    match cmd {
        DeviceCommand::Add { ids, kind, store } => {
            let st = store.store(config).await?;
            for id in ids {
                let d = DeviceId::new(id)?;
                let new = st.add_device(&d, &kind).await?;
                println!("{d}: {}", if new { "added" } else { "already registered" });
            }
        }
        DeviceCommand::Enrol { device, patient, from, store } => {
            let (d, p) = (DeviceId::new(device)?, PatientId::new(patient)?);
            let from = when(&from)?;
            store.store(config).await?.enrol(&d, &p, from).await?;
            println!("{d} enrolled to {p} from {}", from.to_rfc3339());
        }
        DeviceCommand::Unenrol { device, at, store } => {
            let d = DeviceId::new(device)?;
            store.store(config).await?.unenrol(&d, when(&at)?).await?;
            println!("{d}: enrolment ended");
        }
        DeviceCommand::Retire { device, at, store } => {
            let d = DeviceId::new(device)?;
            store.store(config).await?.retire_device(&d, when(&at)?).await?;
            println!("{d}: retired");
        }
        DeviceCommand::List { store } => {
            let snap = store.store(config).await?.registry().await?;
            let mut ids: Vec<_> = snap.devices.into_iter().collect();
            ids.sort_by(|a, b| a.0.cmp(&b.0));
            for (id, d) in ids {
                let status = match d.retired_at {
                    Some(r) => format!("retired {}", r.to_rfc3339()),
                    None => "active".into(),
                };
                println!("{id} ({status})");
                for e in d.enrolments {
                    let to = e.valid_to.map(|t| t.to_rfc3339()).unwrap_or_else(|| "now".into());
                    println!("  {} from {} to {to}", e.patient_id, e.valid_from.to_rfc3339());
                }
            }
        }
    }
    Ok(())
}
