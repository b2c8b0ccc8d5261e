//! `vitalwatch`: one binary, one subcommand per role.
//!
//! - `run`: every role in one process on embedded defaults (embedded MQTT
//!   broker, in-process bus, SQLite), for a first look and for development;
//! - `ingest`, `persist`, `rules`: the production roles, against an MQTT broker, Kafka
//!   and PostgreSQL/TimescaleDB;
//! - `migrate`: database migrations;
//! - `simulate`: the load generator;
//! - `patient`, `device`: the registry; `rules-config`: patients' rules;
//! - `alerting`: the alerting role; `physician`, `care-team`, `alert`: care teams and episodes;
//! - `api`: the admin API; `api-token`: its bearer tokens.
//!
//! `run` and `simulate` (with the embedded broker, the simulator and its SMTP
//! sink) are the `dev` feature, on by default; the production image leaves it out.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;
mod config;
#[cfg(feature = "dev")]
mod embedded_broker;
#[cfg(feature = "dev")]
mod sim;

/// mimalloc instead of the system allocator: glibc's malloc and free were 13 %
/// of the ingest role's CPU samples at 20,000 readings/s (`perf record`;
/// docs/performance.md). librdkafka and SQLite keep their own C allocations.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Remote patient monitoring: readings in, significant changes out.
#[derive(Debug, Parser)]
#[command(name = "vitalwatch", version, about, long_about = None)]
struct Cli {
    /// Configuration file (TOML). Environment variables VITALWATCH_<SECTION>__<KEY> override it.
    #[arg(long, short, global = true, env = "VITALWATCH_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Every role in one process on embedded defaults: embedded MQTT broker, in-process bus, SQLite.
    #[cfg(feature = "dev")]
    Run(commands::run::RunArgs),
    /// Not in this build (no `dev` feature): explains so.
    #[cfg(not(feature = "dev"))]
    #[command(hide = true, disable_help_flag = true)]
    Run(DevOnly),
    /// The ingest role: MQTT -> validate and normalize -> Kafka.
    Ingest,
    /// The persist role: Kafka -> TimescaleDB/PostgreSQL.
    Persist,
    /// The rules role: observations and device statuses -> alert events (Kafka) and episodes (database).
    Rules,
    /// Manage patients' care programs and rules (take effect without a restart).
    #[command(subcommand)]
    RulesConfig(commands::rules::RulesConfigCommand),
    /// Apply database migrations (safe to run twice and from several pods at once).
    Migrate(commands::registry::StoreArgs),
    /// Load generator: simulated patients publish readings to a broker; reports throughput and latency.
    #[cfg(feature = "dev")]
    Simulate(sim::load::SimulateArgs),
    /// Not in this build (no `dev` feature): explains so.
    #[cfg(not(feature = "dev"))]
    #[command(hide = true, disable_help_flag = true)]
    Simulate(DevOnly),
    /// Manage patients.
    #[command(subcommand)]
    Patient(commands::registry::PatientCommand),
    /// Manage devices and their enrolments.
    #[command(subcommand)]
    Device(commands::registry::DeviceCommand),
    /// Print the effective configuration (secrets masked) after validation.
    Config(commands::registry::StoreArgs),
    /// The alerting role: alert events -> email/SMS notifications, escalation, acknowledgments.
    Alerting,
    /// Manage physicians (alert recipients).
    #[command(subcommand)]
    Physician(commands::alerting::PhysicianCommand),
    /// Manage patients' care teams (responsible physician, deputies, escalation policy).
    #[command(subcommand)]
    CareTeam(commands::alerting::CareTeamCommand),
    /// Acknowledge, snooze, close or inspect alert episodes.
    #[command(subcommand)]
    Alert(commands::alerting::AlertCommand),
    /// The admin API (HTTP, bearer tokens, OpenAPI at /openapi.json) on `api.listen`.
    Api,
    /// Create, list or revoke admin API bearer tokens.
    #[command(subcommand)]
    ApiToken(commands::admin::ApiTokenCommand),
    /// Create, list, disable or enable accounts of the clinician workspace.
    #[command(subcommand)]
    User(commands::admin::UserCommand),
    /// Create, list or revoke the credentials of the HTTP ingestion endpoint (per device or per app).
    #[command(subcommand)]
    IngestClient(commands::ingest_client::IngestClientCommand),
    /// Reports: the monthly télésurveillance activity (JSON or CSV).
    #[command(subcommand)]
    Report(commands::report::ReportCommand),
}

/// The arguments of a development-only subcommand in a build without the `dev` feature.
#[cfg(not(feature = "dev"))]
#[derive(Debug, clap::Args)]
struct DevOnly {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    _args: Vec<String>,
}

/// The error of `run` and `simulate` in a build without the `dev` feature.
#[cfg(not(feature = "dev"))]
fn dev_only(command: &str) -> anyhow::Result<()> {
    anyhow::bail!(
        "`vitalwatch {command}` is a development tool (embedded MQTT broker, simulator) that this build \
         leaves out (production image: no `dev` feature). Use the roles (ingest, persist, rules, alerting, \
         api) against a broker, Kafka and PostgreSQL, or a build with the default features (`cargo run -- {command}`)."
    )
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let config = cli.config.as_deref();
        match cli.command {
            #[cfg(feature = "dev")]
            Command::Run(args) => commands::run::run(config, args).await,
            #[cfg(not(feature = "dev"))]
            Command::Run(_) => dev_only("run"),
            Command::Ingest => commands::roles::ingest(config).await,
            Command::Persist => commands::roles::persist(config).await,
            Command::Rules => commands::roles::rules(config).await,
            Command::RulesConfig(c) => commands::rules::rules_config(config, c).await,
            Command::Migrate(args) => commands::registry::migrate(config, args).await,
            #[cfg(feature = "dev")]
            Command::Simulate(args) => sim::load::run(args).await,
            #[cfg(not(feature = "dev"))]
            Command::Simulate(_) => dev_only("simulate"),
            Command::Patient(c) => commands::registry::patient(config, c).await,
            Command::Device(c) => commands::registry::device(config, c).await,
            Command::Config(args) => commands::registry::show_config(config, args),
            Command::Alerting => commands::alerting::role(config).await,
            Command::Physician(c) => commands::alerting::physician(config, c).await,
            Command::CareTeam(c) => commands::alerting::care_team(config, c).await,
            Command::Alert(c) => commands::alerting::alert(config, c).await,
            Command::Api => commands::admin::role(config).await,
            Command::ApiToken(c) => commands::admin::api_token(config, c).await,
            Command::User(c) => commands::admin::user(config, c).await,
            Command::IngestClient(c) => commands::ingest_client::ingest_client(config, c).await,
            Command::Report(c) => commands::report::report(config, c).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
