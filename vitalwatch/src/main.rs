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

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;
mod config;
mod embedded_broker;
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
    Run(commands::run::RunArgs),
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
    Simulate(sim::load::SimulateArgs),
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
            Command::Run(args) => commands::run::run(config, args).await,
            Command::Ingest => commands::roles::ingest(config).await,
            Command::Persist => commands::roles::persist(config).await,
            Command::Rules => commands::roles::rules(config).await,
            Command::RulesConfig(c) => commands::rules::rules_config(config, c).await,
            Command::Migrate(args) => commands::registry::migrate(config, args).await,
            Command::Simulate(args) => sim::load::run(args).await,
            Command::Patient(c) => commands::registry::patient(config, c).await,
            Command::Device(c) => commands::registry::device(config, c).await,
            Command::Config(args) => commands::registry::show_config(config, args),
            Command::Alerting => commands::alerting::role(config).await,
            Command::Physician(c) => commands::alerting::physician(config, c).await,
            Command::CareTeam(c) => commands::alerting::care_team(config, c).await,
            Command::Alert(c) => commands::alerting::alert(config, c).await,
            Command::Api => commands::admin::role(config).await,
            Command::ApiToken(c) => commands::admin::api_token(config, c).await,
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
