//! SQL migrations, embedded in the binary. The runner lives in
//! `vitalwatch-platform`; this module only holds the text.

/// One migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Monotonic version; recorded in `schema_migrations`.
    pub version: i32,
    /// Short name.
    pub name: &'static str,
    /// SQL text.
    pub sql: &'static str,
    /// Applies only when the TimescaleDB extension is available; each statement
    /// runs on its own, outside a transaction.
    pub timescale_only: bool,
}

/// PostgreSQL / TimescaleDB migrations, in order.
pub const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "registry",
        sql: include_str!("../migrations/postgres/0001_registry.sql"),
        timescale_only: false,
    },
    Migration {
        version: 2,
        name: "observations",
        sql: include_str!("../migrations/postgres/0002_observations.sql"),
        timescale_only: false,
    },
    Migration {
        version: 3,
        name: "timescale_hypertable",
        sql: include_str!("../migrations/postgres/timescale_0001_hypertable.sql"),
        timescale_only: true,
    },
    Migration {
        version: 4,
        name: "aggregates_plain",
        sql: include_str!("../migrations/postgres/0003_aggregates_plain.sql"),
        timescale_only: false,
    },
    Migration {
        version: 5,
        name: "rules",
        sql: include_str!("../migrations/postgres/0005_rules.sql"),
        timescale_only: false,
    },
    Migration {
        version: 10,
        name: "alerting",
        sql: include_str!("../migrations/postgres/0010_alerting.sql"),
        timescale_only: false,
    },
    Migration {
        version: 11,
        name: "alert_digests",
        sql: include_str!("../migrations/postgres/0011_alert_digests.sql"),
        timescale_only: false,
    },
    Migration {
        version: 20,
        name: "admin",
        sql: include_str!("../migrations/postgres/0020_admin.sql"),
        timescale_only: false,
    },
    Migration {
        version: 21,
        name: "episode_closes",
        sql: include_str!("../migrations/postgres/0021_episode_closes.sql"),
        timescale_only: false,
    },
    Migration {
        version: 22,
        name: "enrolment_ends",
        sql: include_str!("../migrations/postgres/0022_enrolment_ends.sql"),
        timescale_only: false,
    },
    Migration {
        version: 23,
        name: "sms_inbound",
        sql: include_str!("../migrations/postgres/0023_sms_inbound.sql"),
        timescale_only: false,
    },
    Migration {
        version: 24,
        name: "api_token_expiry",
        sql: include_str!("../migrations/postgres/0024_api_token_expiry.sql"),
        timescale_only: false,
    },
    Migration {
        version: 25,
        name: "principal_ids",
        sql: include_str!("../migrations/postgres/0025_principal_ids.sql"),
        timescale_only: false,
    },
    Migration {
        version: 30,
        name: "accounts",
        sql: include_str!("../migrations/postgres/0030_accounts.sql"),
        timescale_only: false,
    },
    Migration {
        version: 31,
        name: "worklist",
        sql: include_str!("../migrations/postgres/0031_worklist.sql"),
        timescale_only: false,
    },
    Migration {
        version: 32,
        name: "device_status",
        sql: include_str!("../migrations/postgres/0032_device_status.sql"),
        timescale_only: false,
    },
    Migration {
        version: 33,
        name: "rules_versions",
        sql: include_str!("../migrations/postgres/0033_rules_versions.sql"),
        timescale_only: false,
    },
    Migration {
        version: 34,
        name: "monitoring_periods",
        sql: include_str!("../migrations/postgres/0034_monitoring_periods.sql"),
        timescale_only: false,
    },
    Migration {
        version: 35,
        name: "ingest_clients",
        sql: include_str!("../migrations/postgres/0035_ingest_clients.sql"),
        timescale_only: false,
    },
    Migration {
        version: 36,
        name: "access_log",
        sql: include_str!("../migrations/postgres/0036_access_log.sql"),
        timescale_only: false,
    },
    Migration {
        version: 37,
        name: "rules_version",
        sql: include_str!("../migrations/postgres/0037_rules_version.sql"),
        timescale_only: false,
    },
    Migration {
        version: 38,
        name: "erasure",
        sql: include_str!("../migrations/postgres/0038_erasure.sql"),
        timescale_only: false,
    },
];

/// SQLite migrations, in order.
pub const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../migrations/sqlite/0001_init.sql"),
        timescale_only: false,
    },
    Migration {
        version: 5,
        name: "rules",
        sql: include_str!("../migrations/sqlite/0005_rules.sql"),
        timescale_only: false,
    },
    Migration {
        version: 10,
        name: "alerting",
        sql: include_str!("../migrations/sqlite/0010_alerting.sql"),
        timescale_only: false,
    },
    Migration {
        version: 11,
        name: "alert_digests",
        sql: include_str!("../migrations/sqlite/0011_alert_digests.sql"),
        timescale_only: false,
    },
    Migration {
        version: 20,
        name: "admin",
        sql: include_str!("../migrations/sqlite/0020_admin.sql"),
        timescale_only: false,
    },
    Migration {
        version: 21,
        name: "episode_closes",
        sql: include_str!("../migrations/sqlite/0021_episode_closes.sql"),
        timescale_only: false,
    },
    Migration {
        version: 22,
        name: "enrolment_ends",
        sql: include_str!("../migrations/sqlite/0022_enrolment_ends.sql"),
        timescale_only: false,
    },
    Migration {
        version: 23,
        name: "sms_inbound",
        sql: include_str!("../migrations/sqlite/0023_sms_inbound.sql"),
        timescale_only: false,
    },
    Migration {
        version: 24,
        name: "api_token_expiry",
        sql: include_str!("../migrations/sqlite/0024_api_token_expiry.sql"),
        timescale_only: false,
    },
    Migration {
        version: 25,
        name: "principal_ids",
        sql: include_str!("../migrations/sqlite/0025_principal_ids.sql"),
        timescale_only: false,
    },
    Migration {
        version: 30,
        name: "accounts",
        sql: include_str!("../migrations/sqlite/0030_accounts.sql"),
        timescale_only: false,
    },
    Migration {
        version: 31,
        name: "worklist",
        sql: include_str!("../migrations/sqlite/0031_worklist.sql"),
        timescale_only: false,
    },
    Migration {
        version: 32,
        name: "device_status",
        sql: include_str!("../migrations/sqlite/0032_device_status.sql"),
        timescale_only: false,
    },
    Migration {
        version: 33,
        name: "rules_versions",
        sql: include_str!("../migrations/sqlite/0033_rules_versions.sql"),
        timescale_only: false,
    },
    Migration {
        version: 34,
        name: "monitoring_periods",
        sql: include_str!("../migrations/sqlite/0034_monitoring_periods.sql"),
        timescale_only: false,
    },
    Migration {
        version: 35,
        name: "ingest_clients",
        sql: include_str!("../migrations/sqlite/0035_ingest_clients.sql"),
        timescale_only: false,
    },
    Migration {
        version: 36,
        name: "access_log",
        sql: include_str!("../migrations/sqlite/0036_access_log.sql"),
        timescale_only: false,
    },
    Migration {
        version: 37,
        name: "rules_version",
        sql: include_str!("../migrations/sqlite/0037_rules_version.sql"),
        timescale_only: false,
    },
    Migration {
        version: 38,
        name: "erasure",
        sql: include_str!("../migrations/sqlite/0038_erasure.sql"),
        timescale_only: false,
    },
];

/// Splits a TimescaleDB-only migration into its statements (one per line that
/// is not a comment).
pub fn statements(sql: &str) -> impl Iterator<Item = &str> {
    sql.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with("--"))
}
