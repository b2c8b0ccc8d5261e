//! `vitalwatch report activity`: the monthly télésurveillance activity report
//! (see docs/activity-report.md), as JSON or CSV, to stdout or a file. Runs as
//! the CLI operator (every patient), through the admin service.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Subcommand;
use vitalwatch_admin::Actor;
use vitalwatch_admin::service::report::ReportQuery;

use super::admin;
use super::registry::StoreArgs;

/// `vitalwatch report ...`
#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// The monthly activity report: days with data, readings per type, alerts by
    /// severity, acknowledgment delays, actions (one patient, a physician's
    /// patients, or every patient).
    Activity {
        /// The calendar month, YYYY-MM.
        #[arg(long)]
        month: String,
        /// One patient.
        #[arg(long, conflicts_with = "physician")]
        patient: Option<String>,
        /// A physician's patients (responsible or deputy).
        #[arg(long)]
        physician: Option<String>,
        /// IANA time zone of the calendar month.
        #[arg(long, default_value = vitalwatch_admin::report::DEFAULT_REPORT_TIME_ZONE)]
        tz: String,
        /// Flag the patients with at least this many days with data.
        #[arg(long)]
        min_days: Option<u32>,
        /// Output format.
        #[arg(long, value_parser = ["json", "csv"], default_value = "json")]
        format: String,
        /// Write to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// `vitalwatch report ...`.
pub async fn report(config: Option<&Path>, cmd: ReportCommand) -> anyhow::Result<()> {
    match cmd {
        ReportCommand::Activity { month, patient, physician, tz, min_days, format, out, store } => {
            let svc = admin::service(&store, config).await?;
            let q = ReportQuery { month, patient, physician, tz: Some(tz), min_days, format: None };
            let report = svc.activity_report(&Actor::cli(), &q).await.context("building the activity report")?;
            let text = if format == "csv" {
                vitalwatch_admin::report::to_csv(&report)
            } else {
                serde_json::to_string_pretty(&report)? + "\n"
            };
            match out {
                Some(path) => {
                    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
                    eprintln!("{} patients, written to {}", report.totals.patients, path.display());
                }
                None => print!("{text}"),
            }
        }
    }
    Ok(())
}
