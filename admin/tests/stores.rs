//! The stores on both engines: every case runs on SQLite (a temporary file)
//! and on PostgreSQL (a fresh test database on `VW_TEST_PG`; under `CI=true`
//! a missing PostgreSQL fails the test, elsewhere only SQLite runs).
//!
//! Covers the three stores the admin layer is built on (registry and
//! observations, alerting, admin) and the admin service's transactions.

use std::collections::HashMap;
use std::path::PathBuf;

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use vitalwatch_admin::model::{NewPatient, PhysicianInput};
use vitalwatch_admin::{Actor, AdminService};
use vitalwatch_schemas::proto::{self, AlertEventKind, Severity as ProtoSeverity};

/// One database of a case.
struct Database {
    /// `sqlite` or `postgres`.
    name: &'static str,
    url: String,
    _dir: Option<tempfile::TempDir>,
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A variable from the environment, else from the services file `scripts/services.sh` writes.
fn service_var(var: &str, default: &str) -> String {
    if let Ok(v) = std::env::var(var) {
        return v;
    }
    let cache = std::env::var("VW_CACHE").map(PathBuf::from).unwrap_or_else(|_| {
        PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into())).join(".cache/vitalwatch")
    });
    let state = std::env::var("VW_STATE").map(PathBuf::from).unwrap_or_else(|_| cache.join("state"));
    let vars: HashMap<String, String> = std::fs::read_to_string(state.join("services.env"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().trim_start_matches("export ").split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().trim_matches('"').trim_matches('\'').to_owned()))
        .collect();
    vars.get(var).cloned().unwrap_or_else(|| default.to_owned())
}

/// A fresh PostgreSQL database (marked for `scripts/test.sh` to drop later),
/// or `None` (SQLite only) when the server is unreachable outside CI.
async fn postgres(case: &str) -> Option<String> {
    let server = service_var("VW_TEST_PG", "postgres://postgres@127.0.0.1:5432/postgres");
    let client = match tokio_postgres::connect(&server, tokio_postgres::NoTls).await {
        Ok((client, conn)) => {
            tokio::spawn(conn);
            client
        }
        Err(e) => {
            assert!(!in_ci(), "CI requires PostgreSQL at {server}: {e}");
            eprintln!("SKIPPED PostgreSQL (not in CI): {e}");
            return None;
        }
    };
    let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let name = format!("vw_stores_{case}_{}_{}", std::process::id(), n % 1_000_000_000);
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create test database");
    client
        .batch_execute(&format!("COMMENT ON DATABASE {name} IS 'vitalwatch test database'"))
        .await
        .expect("comment on test database");
    let base = server.rsplit_once('/').map(|(b, _)| b).unwrap_or(&server);
    Some(format!("{base}/{name}"))
}

/// The databases of a case, migrated: SQLite, and PostgreSQL when available.
async fn databases(case: &str) -> Vec<Database> {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/vitalwatch.db", dir.path().display());
    let mut out = vec![Database { name: "sqlite", url, _dir: Some(dir) }];
    if let Some(url) = postgres(case).await {
        out.push(Database { name: "postgres", url, _dir: None });
    }
    for db in &out {
        vitalwatch_platform::store::open(&db.url, 100).await.expect("open").migrate().await.expect("migrate");
    }
    out
}

impl Database {
    /// Runs SQL on the database, outside the stores (test set-up).
    async fn exec(&self, sql: &str) {
        if let Some(path) = self.url.strip_prefix("sqlite://") {
            rusqlite::Connection::open(path).and_then(|c| c.execute_batch(sql)).expect("sqlite set-up");
        } else {
            let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls).await.expect("connect");
            tokio::spawn(conn);
            client.batch_execute(sql).await.expect("postgres set-up");
        }
    }

    /// From now on, every insert into `admin_audit` fails.
    async fn refuse_admin_audit(&self) {
        if self.name == "sqlite" {
            self.exec(
                "CREATE TRIGGER refuse_admin_audit BEFORE INSERT ON admin_audit \
                 BEGIN SELECT RAISE(ABORT, 'admin audit refused (test)'); END;",
            )
            .await;
        } else {
            self.exec(
                "CREATE FUNCTION refuse_admin_audit() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN RAISE EXCEPTION 'admin audit refused (test)'; END $$; \
                 CREATE TRIGGER refuse_admin_audit BEFORE INSERT ON admin_audit \
                 FOR EACH ROW EXECUTE FUNCTION refuse_admin_audit();",
            )
            .await;
        }
    }
}

fn at(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap()
}

fn alert_event(episode: &str, kind: AlertEventKind, reading: DateTime<Utc>, summary: &str) -> proto::AlertEvent {
    proto::AlertEvent {
        event_id: format!("{episode}-{}", kind as i32),
        episode_id: episode.into(),
        patient_id: "pat-1".into(),
        rule_id: "threshold.spo2.low".into(),
        rule_kind: "threshold".into(),
        kind: kind as i32,
        severity: ProtoSeverity::High as i32,
        program: "copd".into(),
        code: "59408-5".into(),
        reading_time_unix_micros: reading.timestamp_micros(),
        detected_at_unix_micros: reading.timestamp_micros() + 1_000,
        summary: summary.into(),
        ..proto::AlertEvent::default()
    }
}

/// Issue #15: an episode's status is an explicit field of the event, not a
/// guess from its wording. A condition that cleared stays `resolved` even if
/// its summary happens to contain "closed by".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolved_event_whose_summary_says_closed_by_is_not_a_physician_close() {
    for db in databases("status").await {
        let st = vitalwatch_platform::store::open(&db.url, 100).await.expect("open");
        let t = at(1_700_000_000_000_000);
        let events = [
            alert_event("ep-1", AlertEventKind::Opened, t, "SpO2 88 % (threshold 90 %)"),
            alert_event("ep-1", AlertEventKind::Resolved, t + Duration::hours(1), "Resolved: gap closed by a reading"),
        ];
        assert_eq!(st.record_alert_events(&events).await.expect("record"), 2, "{}", db.name);
        let alerts = st.alerts(None).await.expect("alerts");
        assert_eq!(alerts.len(), 1, "{}", db.name);
        assert_eq!(alerts[0].status, "resolved", "{}: a cleared condition was stored as closed", db.name);
    }
}

/// Issue #15: an admin change and its audit entry are one transaction. When
/// the audit entry cannot be written, the change is not stored either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_change_whose_audit_entry_fails_is_not_stored() {
    for db in databases("audit").await {
        db.refuse_admin_audit().await;
        let svc = AdminService::open(&db.url, 100, 50).await.expect("admin service");
        let op = Actor::operator("cli:test");
        let added = svc.add_patient(&op, &NewPatient { id: "pat-audit".into() }).await;
        assert!(added.is_err(), "{}: the change was reported done without its audit entry", db.name);
        let registry = vitalwatch_platform::store::open(&db.url, 100).await.expect("open");
        let patients = registry.registry().await.expect("registry").patients;
        assert!(!patients.contains("pat-audit"), "{}: the patient was stored without its audit entry", db.name);

        let input: PhysicianInput =
            serde_json::from_value(json!({ "name": "Dr A", "email": "a@hospital.example" })).unwrap();
        assert!(svc.upsert_physician(&op, "dr-a", &input).await.is_err(), "{}", db.name);
        let alerting = vitalwatch_alerting::store::open(&db.url).await.expect("alerting store");
        assert!(
            alerting.physicians().await.expect("physicians").is_empty(),
            "{}: the physician was stored without its audit entry",
            db.name
        );
    }
}
