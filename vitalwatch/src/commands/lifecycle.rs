//! `vitalwatch patient include | discharge | periods | erase | purge`: the
//! patient lifecycle and GDPR erasure, through the admin service (same
//! policy and audit as the API; the CLI acts as an operator).

use std::path::Path;

use anyhow::Context as _;
use clap::Args;
use vitalwatch_admin::Actor;
use vitalwatch_admin::service::erasure::{DEFAULT_RETENTION_DAYS, ErasureInput, ErasureMode, ErasureResult};
use vitalwatch_admin::service::lifecycle::{DischargeInput, EndReason, InclusionInput};

use super::admin;
use super::registry::StoreArgs;

/// `vitalwatch patient include`.
#[derive(Debug, Args)]
pub struct IncludeArgs {
    /// Patient id (registered with `patient add`).
    pub id: String,
    /// Monitoring programme (e.g. heart_failure).
    #[arg(long)]
    pub program: String,
    /// Prescribing physician id.
    #[arg(long)]
    pub prescriber: String,
    /// Start, RFC 3339 or YYYY-MM-DD (default: now).
    #[arg(long)]
    pub start: Option<String>,
    /// Planned end, RFC 3339 or YYYY-MM-DD.
    #[arg(long)]
    pub planned_end: String,
    /// Date the consent was obtained, RFC 3339 or YYYY-MM-DD.
    #[arg(long)]
    pub consent_date: String,
    /// Who recorded the consent.
    #[arg(long)]
    pub consent_by: String,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `vitalwatch patient discharge`.
#[derive(Debug, Args)]
pub struct DischargeArgs {
    /// Patient id.
    pub id: String,
    /// discharged, end_of_programme, deceased, transferred or other.
    #[arg(long)]
    pub reason: String,
    /// Free text (required with `other`).
    #[arg(long)]
    pub note: Option<String>,
    /// When, RFC 3339 or YYYY-MM-DD (default: now).
    #[arg(long)]
    pub at: Option<String>,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `vitalwatch patient periods`.
#[derive(Debug, Args)]
pub struct PeriodsArgs {
    /// Patient id.
    pub id: String,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `vitalwatch patient erase`.
#[derive(Debug, Args)]
pub struct EraseArgs {
    /// Patient id (discharged).
    pub id: String,
    /// erase or pseudonymise.
    #[arg(long)]
    pub mode: String,
    /// Why (the request's reference).
    #[arg(long)]
    pub reason: String,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `vitalwatch patient purge`.
#[derive(Debug, Args)]
pub struct PurgeArgs {
    /// Erase patients discharged more than this many days ago. The default,
    /// 7300 (20 years), follows French hospital records (CSP art. R1112-7);
    /// the data controller decides.
    #[arg(long, default_value_t = DEFAULT_RETENTION_DAYS)]
    pub retention_days: u32,
    /// erase or pseudonymise.
    #[arg(long, default_value = "erase")]
    pub mode: String,
    #[command(flatten)]
    pub store: StoreArgs,
}

fn mode(s: &str) -> anyhow::Result<ErasureMode> {
    ErasureMode::parse(s).with_context(|| format!("--mode {s:?}: expected erase or pseudonymise"))
}

fn print_erasure(r: &ErasureResult) {
    let rows: u64 = r.counts.iter().filter(|(t, _)| t.as_str() != "observations_pseudonymised").map(|(_, n)| n).sum();
    println!("{}: {} (erasure {}), {rows} rows deleted", r.patient, r.mode.as_str(), r.erasure_id);
    for (t, n) in r.counts.iter().filter(|(_, n)| **n > 0) {
        println!("  {t}: {n}");
    }
    println!("  not erased: {}", r.remaining);
}

/// `vitalwatch patient include`.
pub async fn include(config: Option<&Path>, a: IncludeArgs) -> anyhow::Result<()> {
    let input = InclusionInput {
        program: a.program,
        prescriber: a.prescriber,
        start: a.start,
        planned_end: a.planned_end,
        consent_date: a.consent_date,
        consent_by: a.consent_by,
    };
    let r = admin::service(&a.store, config).await?.include_patient(&Actor::cli(), &a.id, &input).await?;
    println!(
        "{}: {} (period {}) from {} until {} planned",
        a.id,
        if r.readmission { "readmitted" } else { "included" },
        r.period.id,
        r.period.start.to_rfc3339(),
        r.period.planned_end.map(|t| t.to_rfc3339()).unwrap_or_default()
    );
    Ok(())
}

/// `vitalwatch patient discharge`.
pub async fn discharge(config: Option<&Path>, a: DischargeArgs) -> anyhow::Result<()> {
    let reason = EndReason::parse(&a.reason).with_context(|| {
        format!("--reason {:?}: expected discharged, end_of_programme, deceased, transferred or other", a.reason)
    })?;
    let input = DischargeInput { reason, note: a.note, at: a.at };
    let r = admin::service(&a.store, config).await?.discharge_patient(&Actor::cli(), &a.id, &input).await?;
    println!(
        "{}: discharged at {} ({}); {} enrolment(s) ended, {} episode(s) closed, {} notification(s) cancelled",
        r.patient,
        r.ended_at.to_rfc3339(),
        r.reason.as_str(),
        r.enrolments_ended,
        r.episodes_closed.len(),
        r.notifications_cancelled
    );
    Ok(())
}

/// `vitalwatch patient periods`.
pub async fn periods(config: Option<&Path>, a: PeriodsArgs) -> anyhow::Result<()> {
    let v = admin::service(&a.store, config).await?.patient_periods(&Actor::cli(), &a.id).await?;
    println!("{}: {}", v.patient, v.status);
    for p in &v.periods {
        let end = match (&p.ended_at, &p.end_reason) {
            (Some(t), Some(r)) => format!("ended {} ({r})", t.to_rfc3339()),
            _ => "open".into(),
        };
        println!(
            "  period {}: {} by {} from {}, {end}; consent {} by {}",
            p.id,
            p.program,
            p.prescriber,
            p.start.to_rfc3339(),
            p.consent_date.map(|t| t.date_naive().to_string()).unwrap_or_else(|| "not recorded".into()),
            p.consent_by.as_deref().unwrap_or("-")
        );
    }
    Ok(())
}

/// `vitalwatch patient erase`.
pub async fn erase(config: Option<&Path>, a: EraseArgs) -> anyhow::Result<()> {
    let input = ErasureInput { mode: mode(&a.mode)?, reason: a.reason };
    let r = admin::service(&a.store, config).await?.erase_patient(&Actor::cli(), &a.id, &input).await?;
    print_erasure(&r);
    Ok(())
}

/// `vitalwatch patient purge`.
pub async fn purge(config: Option<&Path>, a: PurgeArgs) -> anyhow::Result<()> {
    let mode = mode(&a.mode)?;
    let done = admin::service(&a.store, config).await?.purge_discharged(&Actor::cli(), a.retention_days, mode).await?;
    for r in &done {
        print_erasure(r);
    }
    println!("{} patient(s) discharged more than {} days ago: {}", done.len(), a.retention_days, mode.as_str());
    Ok(())
}
