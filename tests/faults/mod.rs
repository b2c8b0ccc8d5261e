//! The fault suite of issue #12: for each fault, under a steady load from the
//! load generator (`vitalwatch simulate --record`), on private services and
//! the four roles as processes, check that no reading is lost or stored
//! twice, that every page is delivered once, and measure the time to recover.
//!
//! Each fault runs on fresh services and a fresh database ([`scenario`]);
//! the outcome of each is one row of the table that
//! [`run_suite`] prints (and writes to `VW_FAULT_REPORT` if set).

pub mod scenario;
pub mod services;

use std::time::Duration;

/// The faults of the suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL of ingest, persist, rules and alerting in turn, each restarted a second later.
    SigkillRoles,
    /// PostgreSQL stopped (fast shutdown) for the fault duration, then started.
    PgStop,
    /// PostgreSQL hung (SIGSTOP of every process of the cluster) for the fault duration.
    PgHang,
    /// The Kafka-protocol broker restarted (log kept in PostgreSQL when tansu allows it).
    KafkaRestart,
    /// The Kafka-protocol broker unreachable (SIGSTOP) for the fault duration.
    KafkaHang,
    /// The MQTT broker restarted (persistent sessions, persistence on).
    MqttRestart,
    /// The SMTP server down for the page fault duration.
    SmtpDown,
    /// The SMS gateway answering 503 for the page fault duration.
    Sms503,
    /// A poison record on each topic (observations, device status, alerts).
    Poison,
}

impl Fault {
    /// Every fault, in the order the suite runs them. `KafkaRestart` runs by
    /// default only with a storage that keeps the log (`VW_FAULT_TANSU_STORAGE`,
    /// see [`scenario::tansu_storage`]); name it in `VW_FAULTS` to run it on
    /// memory storage, where the restart loses the log.
    pub const ALL: [Fault; 9] = [
        Fault::SigkillRoles,
        Fault::PgStop,
        Fault::PgHang,
        Fault::KafkaRestart,
        Fault::KafkaHang,
        Fault::MqttRestart,
        Fault::SmtpDown,
        Fault::Sms503,
        Fault::Poison,
    ];

    /// Short name (`VW_FAULTS` selects by these).
    pub fn name(self) -> &'static str {
        match self {
            Fault::SigkillRoles => "sigkill-roles",
            Fault::PgStop => "pg-stop",
            Fault::PgHang => "pg-hang",
            Fault::KafkaRestart => "kafka-restart",
            Fault::KafkaHang => "kafka-hang",
            Fault::MqttRestart => "mqtt-restart",
            Fault::SmtpDown => "smtp-down",
            Fault::Sms503 => "sms-503",
            Fault::Poison => "poison",
        }
    }

    /// A fault of the paging channels (its duration is [`Profile::page_fault`]).
    pub fn is_page_fault(self) -> bool {
        matches!(self, Fault::SmtpDown | Fault::Sms503)
    }
}

/// The faults run unless `VW_FAULTS` names others: all, but the broker
/// restart only on a storage that keeps the log.
fn default_faults() -> Vec<Fault> {
    let keeps_log = !scenario::tansu_storage().starts_with("memory");
    Fault::ALL.into_iter().filter(|f| *f != Fault::KafkaRestart || keeps_log).collect()
}

/// Load and durations of a suite run. Every field can be overridden from the
/// environment (names in [`Profile::from_env`]).
#[derive(Debug, Clone)]
pub struct Profile {
    /// `smoke` or `full`.
    pub name: &'static str,
    /// Faults to run.
    pub faults: Vec<Fault>,
    /// Simulated patients (5 devices each).
    pub patients: usize,
    /// Readings per second, in total.
    pub rate: u64,
    /// Load before the fault, seconds.
    pub warmup: Duration,
    /// Duration of the PostgreSQL and Kafka faults.
    pub fault: Duration,
    /// Duration of the SMTP and SMS faults.
    pub page_fault: Duration,
    /// Load after the fault ends, seconds.
    pub after: Duration,
    /// Longest wait for recovery (and for the last rows and pages) once the fault ends.
    pub recover_timeout: Duration,
}

impl Profile {
    /// The test suite's short run: 5-8 s faults at a low rate (a few minutes in all).
    pub fn smoke() -> Profile {
        Profile {
            name: "smoke",
            faults: default_faults(),
            patients: 200,
            rate: 400,
            warmup: Duration::from_secs(3),
            fault: Duration::from_secs(6),
            page_fault: Duration::from_secs(8),
            after: Duration::from_secs(3),
            recover_timeout: Duration::from_secs(45),
        }
    }

    /// The durations: 60 s PostgreSQL and Kafka faults, 10-minute
    /// SMTP and SMS outages, 1,000 patients at 2,000 readings/s.
    pub fn full() -> Profile {
        Profile {
            name: "full",
            faults: default_faults(),
            patients: 1000,
            rate: 2000,
            warmup: Duration::from_secs(20),
            fault: Duration::from_secs(60),
            page_fault: Duration::from_secs(600),
            after: Duration::from_secs(20),
            recover_timeout: Duration::from_secs(300),
        }
    }

    /// `base` with the environment's overrides: `VW_FAULTS` (comma-separated
    /// fault names), `VW_FAULT_PATIENTS`, `VW_FAULT_RATE`, `VW_FAULT_WARMUP_SECS`,
    /// `VW_FAULT_SECS`, `VW_FAULT_PAGE_SECS`, `VW_FAULT_AFTER_SECS`,
    /// `VW_FAULT_RECOVER_SECS`.
    pub fn from_env(mut p: Profile) -> Profile {
        let num = |k: &str| std::env::var(k).ok().and_then(|v| v.trim().parse::<u64>().ok());
        let secs = |k: &str, d: Duration| num(k).map(Duration::from_secs).unwrap_or(d);
        if let Ok(list) = std::env::var("VW_FAULTS")
            && !list.trim().is_empty()
        {
            p.faults = list
                .split(',')
                .map(|n| {
                    let n = n.trim();
                    *Fault::ALL.iter().find(|f| f.name() == n).unwrap_or_else(|| panic!("unknown fault {n:?}"))
                })
                .collect();
        }
        p.patients = num("VW_FAULT_PATIENTS").map(|n| n as usize).unwrap_or(p.patients);
        p.rate = num("VW_FAULT_RATE").unwrap_or(p.rate);
        p.warmup = secs("VW_FAULT_WARMUP_SECS", p.warmup);
        p.fault = secs("VW_FAULT_SECS", p.fault);
        p.page_fault = secs("VW_FAULT_PAGE_SECS", p.page_fault);
        p.after = secs("VW_FAULT_AFTER_SECS", p.after);
        p.recover_timeout = secs("VW_FAULT_RECOVER_SECS", p.recover_timeout);
        p
    }

    /// Duration of `fault`.
    pub fn duration_of(&self, fault: Fault) -> Duration {
        if fault.is_page_fault() { self.page_fault } else { self.fault }
    }
}

/// What one fault run measured.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Fault name.
    pub fault: String,
    /// What was done, e.g. "stopped 60 s".
    pub what: String,
    /// Load: readings published and rows expected.
    pub published: u64,
    /// Rows the published readings must give.
    pub expected_rows: u64,
    /// Rows of published readings that are not stored.
    pub lost: u64,
    /// Rows stored more than once, or stored without having been published.
    pub stored_twice: u64,
    /// Pages (email and SMS notifications) the alerting role planned.
    pub pages_expected: u64,
    /// Distinct pages the SMTP server and SMS gateway received.
    pub pages_delivered: u64,
    /// Pages received more than once.
    pub duplicate_pages: u64,
    /// Outbox rows that ended `failed`.
    pub pages_failed: u64,
    /// Patients with a stored reading past a general-program threshold and no alert episode.
    pub patients_missed: u64,
    /// Seconds from the end of the fault until every reading published before
    /// it was stored and every page planned before it was sent; `None`: not
    /// within the timeout.
    pub recover_secs: Option<f64>,
    /// Anything else that went wrong (setup, a role that died).
    pub notes: Vec<String>,
}

impl Outcome {
    /// True when nothing was lost, duplicated or left undelivered, and it recovered.
    pub fn passed(&self) -> bool {
        self.lost == 0
            && self.stored_twice == 0
            && self.duplicate_pages == 0
            && self.pages_failed == 0
            && self.patients_missed == 0
            && self.pages_delivered == self.pages_expected
            && self.recover_secs.is_some()
            && self.notes.is_empty()
    }

    /// One Markdown table row.
    pub fn row(&self, p: &Profile) -> String {
        format!(
            "| {} | {} | {} readings/s, {} patients ({} readings, {} rows) | {} | {} stored, {} pages | {}/{} ({} failed, {} patients missed) | {} | {}{} |",
            self.fault,
            self.what,
            p.rate,
            p.patients,
            self.published,
            self.expected_rows,
            self.lost,
            self.stored_twice,
            self.duplicate_pages,
            self.pages_delivered,
            self.pages_expected,
            self.pages_failed,
            self.patients_missed,
            self.recover_secs.map_or_else(|| "not recovered".to_owned(), |s| format!("{s:.1} s")),
            if self.passed() { "PASS" } else { "FAIL" },
            if self.notes.is_empty() { String::new() } else { format!(": {}", self.notes.join("; ")) },
        )
    }
}

/// Header of the table.
pub const TABLE_HEADER: &str = "| fault | injected | load | readings lost | duplicates | pages delivered | time to recover | result |\n|---|---|---|---|---|---|---|---|";

/// Runs every fault of `profile` in turn and returns the outcomes (printed
/// as a table, and written to `VW_FAULT_REPORT` if set). `None`: a service
/// is missing (outside CI).
pub async fn run_suite(profile: &Profile) -> Option<Vec<Outcome>> {
    let mut outcomes = Vec::new();
    for &fault in &profile.faults {
        eprintln!("\n=== fault {} ({} profile) ===", fault.name(), profile.name);
        let o = scenario::run(profile, fault).await?;
        eprintln!("{TABLE_HEADER}\n{}", o.row(profile));
        outcomes.push(o);
    }
    let table = format!("{TABLE_HEADER}\n{}\n", outcomes.iter().map(|o| o.row(profile)).collect::<Vec<_>>().join("\n"));
    println!("\n=== fault suite ({} profile) ===\n{table}", profile.name);
    if let Ok(path) = std::env::var("VW_FAULT_REPORT") {
        let _ = std::fs::write(&path, &table);
    }
    Some(outcomes)
}
