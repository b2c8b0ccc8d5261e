//! Registry and database administration subcommands.

use std::path::{Path, PathBuf};

use crate::config::{Profile, Settings};
use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use vitalwatch_admin::Actor;
use vitalwatch_admin::model::ExportFormat;
use vitalwatch_admin::model::{AccessInterface, At, Backfill, Enrol, NewDevice, NewPatient, PageQuery};
use vitalwatch_platform::store;

use super::admin;

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
            if s.database.url.expose().starts_with("sqlite://") && self.embedded {
                s.database.url = format!("sqlite://{}/vitalwatch.db", d.display()).into();
            }
            s.data_dir = d.clone();
        }
        vitalwatch_platform::telemetry::init(s.log_format, "warn");
        Ok(s)
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
    /// Export all data about a patient (GDPR right of access): the FHIR
    /// `Patient/$everything` Bundle or one CSV of observations and episodes.
    /// Recorded in the read-access log (interface `cli`).
    Export {
        /// Patient id.
        id: String,
        /// `fhir` (JSON Bundle) or `csv`.
        #[arg(long, default_value = "fhir", value_parser = ["fhir", "csv"])]
        format: String,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Who read a patient's data, when, through which interface (newest first).
    AccessLog {
        /// Patient id.
        id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Include a patient in a monitoring programme (a readmission after a discharge).
    Include(super::lifecycle::IncludeArgs),
    /// End a patient's monitoring: devices unenrolled, episodes closed, alerts and readings stopped.
    Discharge(super::lifecycle::DischargeArgs),
    /// A patient's monitoring status and periods.
    Periods(super::lifecycle::PeriodsArgs),
    /// Erase or pseudonymise a discharged patient's data (GDPR).
    Erase(super::lifecycle::EraseArgs),
    /// Erase the patients discharged more than --retention-days ago.
    Purge(super::lifecycle::PurgeArgs),
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
    /// Let a moved (or unenrolled) device file the readings it stored for its
    /// previous patient, for a few hours (recorded in the admin audit trail).
    Backfill {
        /// Device id.
        device: String,
        /// The previous patient.
        patient: String,
        /// How long the grant stays open, hours (1 to 72).
        #[arg(long, default_value_t = 24)]
        hours: u32,
        /// Why (recorded in the audit trail; no patient data).
        #[arg(long)]
        reason: String,
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
    let st = store::open_settings(&s.database).await.context("opening the database")?;
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
    let actor = Actor::cli();
    match cmd {
        PatientCommand::Include(a) => return super::lifecycle::include(config, a).await,
        PatientCommand::Discharge(a) => return super::lifecycle::discharge(config, a).await,
        PatientCommand::Periods(a) => return super::lifecycle::periods(config, a).await,
        PatientCommand::Erase(a) => return super::lifecycle::erase(config, a).await,
        PatientCommand::Purge(a) => return super::lifecycle::purge(config, a).await,
        PatientCommand::Add { ids, store } => {
            let svc = admin::service(&store, config).await?;
            for id in ids {
                let c = svc.add_patient(&actor, &NewPatient { id }).await?;
                println!("{}: {}", c.id, if c.created { "added" } else { "already registered" });
            }
        }
        PatientCommand::List { store } => {
            let svc = admin::service(&store, config).await?;
            let mut q = PageQuery { after: None, limit: Some(u32::MAX) };
            loop {
                let page = svc.list_patients(&actor, &q).await?;
                for p in page.items.iter().filter(|p| p.status == "active") {
                    println!("{}", p.id);
                }
                match page.next {
                    Some(n) => q.after = Some(n),
                    None => break,
                }
            }
        }
        PatientCommand::Export { id, format, out, store } => {
            let settings = store.settings(config)?;
            let svc = admin::service(&store, config).await?;
            let format = if format == "csv" { ExportFormat::Csv } else { ExportFormat::Fhir };
            let base = format!("{}/fhir/r4", settings.web.public_url.trim_end_matches('/'));
            let (_, body) = svc.export_patient(&actor, &id, format, AccessInterface::Cli, &base).await?;
            match out {
                Some(path) => {
                    std::fs::write(&path, body.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
                    eprintln!("{id}: exported to {}", path.display());
                }
                None => print!("{body}"),
            }
        }
        PatientCommand::AccessLog { id, store } => {
            let svc = admin::service(&store, config).await?;
            let mut q = PageQuery { after: None, limit: Some(u32::MAX) };
            loop {
                let page = svc.access_log(&actor, &id, &q).await?;
                for e in &page.items {
                    println!("{}\t{}\t{}\t{}\t{}", e.at.to_rfc3339(), e.actor, e.actor_role, e.interface, e.what);
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

/// `vitalwatch device ...`.
pub async fn device(config: Option<&Path>, cmd: DeviceCommand) -> anyhow::Result<()> {
    let actor = Actor::cli();
    match cmd {
        DeviceCommand::Add { ids, kind, store } => {
            let svc = admin::service(&store, config).await?;
            for id in ids {
                let c = svc.add_device(&actor, &NewDevice { id, kind: kind.clone() }).await?;
                println!("{}: {}", c.id, if c.created { "added" } else { "already registered" });
            }
        }
        DeviceCommand::Enrol { device, patient, from, store } => {
            let input = Enrol { patient: patient.clone(), from: Some(when(&from)?) };
            let from = admin::service(&store, config).await?.enrol_device(&actor, &device, &input).await?;
            println!("{device} enrolled to {patient} from {}", from.to_rfc3339());
        }
        DeviceCommand::Unenrol { device, at, store } => {
            let input = At { at: Some(when(&at)?) };
            admin::service(&store, config).await?.unenrol_device(&actor, &device, &input).await?;
            println!("{device}: enrolment ended");
        }
        DeviceCommand::Retire { device, at, store } => {
            let input = At { at: Some(when(&at)?) };
            admin::service(&store, config).await?.retire_device(&actor, &device, &input).await?;
            println!("{device}: retired");
        }
        DeviceCommand::Backfill { device, patient, hours, reason, store } => {
            let input = Backfill { patient: patient.clone(), hours, reason };
            let until = admin::service(&store, config).await?.grant_backfill(&actor, &device, &input).await?;
            println!("{device}: backfill for {patient} open until {}", until.to_rfc3339());
        }
        DeviceCommand::List { store } => {
            let svc = admin::service(&store, config).await?;
            let mut q = PageQuery { after: None, limit: Some(u32::MAX) };
            loop {
                let page = svc.list_devices(&actor, &q).await?;
                for d in &page.items {
                    let status = match d.retired_at {
                        Some(r) => format!("retired {}", r.to_rfc3339()),
                        None => "active".into(),
                    };
                    println!("{} ({status})", d.id);
                    for e in &d.enrolments {
                        let to = e.valid_to.map(|t| t.to_rfc3339()).unwrap_or_else(|| "now".into());
                        println!("  {} from {} to {to}", e.patient_id, e.valid_from.to_rfc3339());
                    }
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
