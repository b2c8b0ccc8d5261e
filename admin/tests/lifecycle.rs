//! The patient lifecycle (inclusion, discharge, readmission) and GDPR erasure
//! on both engines: every case runs on SQLite (a temporary file) and on
//! PostgreSQL (a fresh database on `VW_TEST_PG`; under `CI=true` a missing
//! PostgreSQL fails the test, elsewhere only SQLite runs), as in `stores.rs`.

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use vitalwatch_admin::model::{CareTeamInput, Enrol, NewDevice, NewPatient, PhysicianInput};
use vitalwatch_admin::service::erasure::{ErasureInput, ErasureMode};
use vitalwatch_admin::service::lifecycle::{DischargeInput, EndReason, InclusionInput};
use vitalwatch_admin::store::AuditFilter;
use vitalwatch_admin::{Actor, AdminError, AdminService};
use vitalwatch_alerting::PhysicianId;
use vitalwatch_schemas::proto::{self, AlertEventKind, Severity};
use vitalwatch_schemas::{Code, DeviceId, Observation, ObservationId, PatientId, Source, TimeSource};

mod common;
use common::{Database, databases};

impl Database {
    /// One integer from a query with one text parameter.
    async fn count(&self, sql: &str, arg: &str) -> i64 {
        if let Some(path) = self.url.strip_prefix("sqlite://") {
            let c = rusqlite::Connection::open(path).expect("sqlite");
            c.query_row(&sql.replace("$1", "?1"), [arg], |r| r.get(0)).expect(sql)
        } else {
            let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls).await.expect("connect");
            tokio::spawn(conn);
            client.query_one(sql, &[&arg]).await.expect(sql).get(0)
        }
    }

    /// Every (table, column) of the schema whose text holds `needle`, with
    /// the number of rows: every text-like column of every base table
    /// (PostgreSQL: information_schema; SQLite: sqlite_master + table_info).
    async fn rows_holding(&self, needle: &str) -> Vec<(String, String, i64)> {
        let mut out = Vec::new();
        if let Some(path) = self.url.strip_prefix("sqlite://") {
            let c = rusqlite::Connection::open(path).expect("sqlite");
            let tables: Vec<String> = c
                .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            for t in tables {
                let cols: Vec<String> = c
                    .prepare(&format!("SELECT name FROM pragma_table_info('{t}')"))
                    .unwrap()
                    .query_map([], |r| r.get(0))
                    .unwrap()
                    .map(Result::unwrap)
                    .collect();
                for col in cols {
                    let n: i64 = c
                        .query_row(
                            &format!("SELECT count(*) FROM \"{t}\" WHERE instr(CAST(\"{col}\" AS TEXT), ?1) > 0"),
                            [needle],
                            |r| r.get(0),
                        )
                        .unwrap();
                    if n > 0 {
                        out.push((t.clone(), col, n));
                    }
                }
            }
        } else {
            let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls).await.expect("connect");
            tokio::spawn(conn);
            let cols = client
                .query(
                    "SELECT c.table_name::text, c.column_name::text, c.data_type::text FROM information_schema.columns c \
                     JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
                     WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE' \
                     AND c.data_type IN ('text', 'character varying', 'json', 'jsonb', 'bytea', 'ARRAY')",
                    &[],
                )
                .await
                .unwrap();
            for r in cols {
                let (t, col, ty): (String, String, String) = (r.get(0), r.get(1), r.get(2));
                let expr = match ty.as_str() {
                    "bytea" => format!("position(convert_to($1, 'UTF8') in \"{col}\") > 0"),
                    _ => format!("strpos(\"{col}\"::text, $1) > 0"),
                };
                let n: i64 = client
                    .query_one(&format!("SELECT count(*) FROM \"{t}\" WHERE {expr}"), &[&needle])
                    .await
                    .unwrap()
                    .get(0);
                if n > 0 {
                    out.push((t, col, n));
                }
            }
        }
        out.sort();
        out
    }
}

/// The tables that keep an erased id, and why: append-only audit trails
/// (legal traceability) and the erasure record itself (the tombstone).
/// Append-only traceability records (ids only, never readings): the admin audit, the
/// alerting audit, the read-access log (migration 0036) and the erasure record itself.
const KEEPS_THE_ID: [&str; 4] = ["admin_audit", "alert_audit", "access_log", "patient_erasures"];

fn weight(p: &str, t: DateTime<Utc>, v: f64, device: Option<&str>) -> Observation {
    Observation {
        id: ObservationId::compute(p, Code::BodyWeight, t.timestamp_micros()),
        patient_id: PatientId::new(p).unwrap(),
        code: Code::BodyWeight,
        value: v,
        time: t,
        received_at: t + Duration::seconds(2),
        source: if device.is_some() { Source::Device } else { Source::Manual },
        device_id: device.map(|d| DeviceId::new(d).unwrap()),
        time_source: TimeSource::Device,
        original_value: v,
        original_unit: "kg".into(),
        msg_id: Some(format!("m-{}", t.timestamp())),
        trace_id: "trace".into(),
    }
}

fn opened(episode: &str, patient: &str, t: DateTime<Utc>) -> proto::AlertEvent {
    proto::AlertEvent {
        event_id: format!("{episode}-opened"),
        episode_id: episode.into(),
        patient_id: patient.into(),
        rule_id: "missing.body_weight".into(),
        rule_kind: "missing".into(),
        kind: AlertEventKind::Opened as i32,
        severity: Severity::Medium as i32,
        program: "heart_failure".into(),
        code: "29463-7".into(),
        reading_time_unix_micros: t.timestamp_micros(),
        detected_at_unix_micros: t.timestamp_micros() + 1_000,
        summary: "No weight for 40 h".into(),
        ..proto::AlertEvent::default()
    }
}

fn inclusion(start: Option<DateTime<Utc>>) -> InclusionInput {
    let start_t = start.unwrap_or_else(Utc::now);
    InclusionInput {
        program: "heart_failure".into(),
        prescriber: "dr-a".into(),
        start: start.map(|t| t.to_rfc3339()),
        planned_end: (start_t + Duration::days(180)).to_rfc3339(),
        consent_date: (start_t - Duration::days(1)).format("%Y-%m-%d").to_string(),
        consent_by: "IDE Martin".into(),
    }
}

/// A registered patient, `dr-a` responsible, with an observation and an open
/// episode (rules `alerts`, alerting `alert_episodes` with a pending
/// notification and a wakeup), a device enrolled.
async fn seed(db: &Database, svc: &AdminService, p: &str, device: &str) {
    let op = Actor::operator("cli:test");
    svc.add_patient(&op, &NewPatient { id: p.into() }).await.unwrap();
    let dr: PhysicianInput = serde_json::from_value(json!({ "name": "Dr A", "email": "a@hospital.example" })).unwrap();
    svc.upsert_physician(&op, "dr-a", &dr).await.unwrap();
    svc.upsert_physician(&op, "dr-c", &dr).await.unwrap();
    let team = CareTeamInput { responsible: "dr-a".into(), deputies: vec!["dr-c".into()], policy: None, nurses: None };
    svc.set_care_team(&op, p, &team).await.unwrap();
    svc.add_device(&op, &NewDevice { id: device.into(), kind: "scale".into() }).await.unwrap();
    let from = Utc::now() - Duration::days(3);
    svc.enrol_device(&op, device, &Enrol { patient: p.into(), from: Some(from) }).await.unwrap();
    let st = vitalwatch_platform::store::open(&db.url, 100).await.unwrap();
    let t = Utc::now() - Duration::days(2);
    st.insert_observations(&[weight(p, t, 81.0, Some(device)), weight(p, t + Duration::hours(1), 81.2, None)])
        .await
        .unwrap();
    let episode = format!("ep-{p}");
    st.record_alert_events(&[opened(&episode, p, t)]).await.unwrap();
    let wake = (Utc::now() + Duration::minutes(10)).timestamp_micros();
    let later = if db.name == "sqlite" { wake.to_string() } else { format!("to_timestamp({wake}::float8 / 1e6)") };
    let now_sql = if db.name == "sqlite" { Utc::now().timestamp_micros().to_string() } else { "now()".into() };
    db.exec(&format!(
        "INSERT INTO alert_episodes (episode_id, patient_id, state, severity, next_wakeup, updated_at) \
         VALUES ('{episode}', '{p}', NULL, 'medium', {later}, {now_sql}); \
         INSERT INTO alert_outbox (key, episode_id, recipient, channel, notification, next_attempt_at, created_at) \
         VALUES ('k-{p}', '{episode}', 'dr-a', 'sms', '{{}}', {now_sql}, {now_sql});"
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_include_discharge_readmit() {
    for db in databases("vw_lifecycle", "cycle").await {
        let n = db.name;
        let svc = AdminService::open(&db.url, 100, 50).await.expect("admin service");
        let op = Actor::operator("cli:test");
        seed(&db, &svc, "pat-lc1", "scale-lc1").await;
        let st = vitalwatch_platform::store::open(&db.url, 100).await.unwrap();

        // Inclusion: a period; a second one while monitored is a 409.
        let start = Utc::now() - Duration::days(3);
        let inc = svc.include_patient(&op, "pat-lc1", &inclusion(Some(start))).await.unwrap();
        assert!(!inc.readmission, "{n}");
        assert_eq!(inc.period.program, "heart_failure");
        assert_eq!(inc.period.consent_by.as_deref(), Some("IDE Martin"));
        let again = svc.include_patient(&op, "pat-lc1", &inclusion(None)).await.unwrap_err();
        assert!(matches!(&again, AdminError::Conflict(m) if m.contains("already under monitoring")), "{n}: {again}");
        assert_eq!(again.status(), 409);
        // Validation: unknown prescriber, planned end before start.
        let mut bad = inclusion(None);
        bad.prescriber = "dr-nobody".into();
        assert!(matches!(svc.include_patient(&op, "pat-lc1", &bad).await, Err(AdminError::Invalid(_))), "{n}");
        // Scoping: a physician outside the care team gets 404; a nurse 403; the team's physician may.
        let other = Actor::physician(PhysicianId::new("dr-b").unwrap());
        let out = svc.discharge_patient(&other, "pat-lc1", &discharge(EndReason::Discharged)).await.unwrap_err();
        assert_eq!(out.status(), 404, "{n}");
        let nurse = Actor::nurse("ide-1");
        assert_eq!(
            svc.discharge_patient(&nurse, "pat-lc1", &discharge(EndReason::Discharged)).await.unwrap_err().status(),
            403
        );
        // Erasure refuses a monitored patient.
        let e = svc.erase_patient(&op, "pat-lc1", &erase(ErasureMode::Erase)).await.unwrap_err();
        assert_eq!(e.status(), 409, "{n}: {e}");
        // And physicians may never erase.
        let dr = Actor::physician(PhysicianId::new("dr-a").unwrap());
        assert_eq!(svc.erase_patient(&dr, "pat-lc1", &erase(ErasureMode::Erase)).await.unwrap_err().status(), 403);

        // Discharge by the prescribing physician.
        let d = svc.discharge_patient(&dr, "pat-lc1", &discharge(EndReason::Discharged)).await.unwrap();
        assert_eq!(d.period_id, Some(inc.period.id), "{n}");
        assert_eq!(d.enrolments_ended, 1, "{n}");
        assert_eq!(d.episodes_closed, vec!["ep-pat-lc1".to_owned()], "{n}");
        assert_eq!(d.notifications_cancelled, 1, "{n}");
        let snap = st.registry().await.unwrap();
        assert!(snap.discharged.contains("pat-lc1") && !snap.patients.contains("pat-lc1"), "{n}");
        assert!(st.is_discharged(&PatientId::new("pat-lc1").unwrap()).await.unwrap(), "{n}");
        assert_eq!(st.discharged_patients().await.unwrap(), vec!["pat-lc1".to_owned()], "{n}");
        let e = &snap.devices["scale-lc1"].enrolments[0];
        assert!(e.valid_to.is_some() && e.ended.is_some_and(|x| x.reason.as_str() == "unenrolled"), "{n}: {e:?}");
        let q = |s: &'static str| s;
        assert_eq!(
            db.count(q("SELECT count(*) FROM alerts WHERE patient_id = $1 AND status = 'closed'"), "pat-lc1").await,
            1
        );
        assert_eq!(
            db.count(q("SELECT count(*) FROM episode_closes WHERE patient_id = $1 AND applied_at IS NULL"), "pat-lc1")
                .await,
            1,
            "{n}: the rules worker is asked to close the episode"
        );
        assert_eq!(
            db.count(
                q("SELECT count(*) FROM episode_notes WHERE patient_id = $1 AND kind = 'close' AND body LIKE '%end of monitoring (discharged)%'"),
                "pat-lc1"
            )
            .await,
            1,
            "{n}: the close records its reason"
        );
        assert_eq!(
            db.count(q("SELECT count(*) FROM alert_outbox WHERE key = $1 AND status = 'cancelled'"), "k-pat-lc1").await,
            1
        );
        assert_eq!(
            db.count(q("SELECT count(*) FROM alert_episodes WHERE patient_id = $1 AND next_wakeup IS NULL"), "pat-lc1")
                .await,
            1
        );
        // Data kept.
        assert_eq!(st.observations(&PatientId::new("pat-lc1").unwrap(), 100).await.unwrap().len(), 2, "{n}");
        // A second discharge: 409.
        assert_eq!(
            svc.discharge_patient(&op, "pat-lc1", &discharge(EndReason::Deceased)).await.unwrap_err().status(),
            409
        );
        // `other` needs a note.
        let e = svc.discharge_patient(&op, "pat-lc1", &discharge(EndReason::Other)).await.unwrap_err();
        assert_eq!(e.status(), 422);

        // Readmission: a new period, history kept, the patient monitored again.
        let re = svc.include_patient(&op, "pat-lc1", &inclusion(None)).await.unwrap();
        assert!(re.readmission, "{n}");
        let periods = svc.patient_periods(&op, "pat-lc1").await.unwrap();
        assert_eq!(periods.status, "active");
        assert_eq!(periods.periods.len(), 2, "{n}");
        assert_eq!(periods.periods[0].end_reason.as_deref(), Some("discharged"));
        assert!(periods.periods[1].ended_at.is_none());
        let snap = st.registry().await.unwrap();
        assert!(snap.patients.contains("pat-lc1") && !snap.discharged.contains("pat-lc1"), "{n}");

        // Every change audited, ids only.
        let admin = vitalwatch_admin::store::open(&db.url).await.unwrap();
        let actions: Vec<String> = admin
            .audit(&AuditFilter { patient_id: Some("pat-lc1".into()), limit: 20, ..Default::default() })
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.action)
            .collect();
        assert_eq!(actions[..3], ["patient.include", "patient.discharge", "patient.include"], "{n}: {actions:?}");
        assert!(
            !admin
                .audit(&AuditFilter { limit: 50, ..Default::default() })
                .await
                .unwrap()
                .iter()
                .any(|a| a.details.to_string().contains("heart_failure"))
        );
    }
}

fn discharge(reason: EndReason) -> DischargeInput {
    DischargeInput { reason, note: None, at: None }
}

fn erase(mode: ErasureMode) -> ErasureInput {
    ErasureInput { mode, reason: "request ref. DPO-2026-17".into() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_erase_leaves_no_row_with_the_patient_id() {
    for db in databases("vw_lifecycle", "erase").await {
        let n = db.name;
        let svc = AdminService::open(&db.url, 100, 50).await.expect("admin service");
        let op = Actor::operator("dpo");
        let p = "pat-erase-7f3a";
        seed(&db, &svc, p, "scale-er1").await;
        svc.include_patient(&op, p, &inclusion(Some(Utc::now() - Duration::days(3)))).await.unwrap();
        svc.discharge_patient(&op, p, &discharge(EndReason::EndOfProgramme)).await.unwrap();
        // More rows about the patient: rules and versions, notes.
        let st = vitalwatch_platform::store::open(&db.url, 100).await.unwrap();
        st.set_patient_rules(&PatientId::new(p).unwrap(), r#"{"program":"heart_failure"}"#).await.unwrap();
        assert!(!db.rows_holding(p).await.is_empty());

        let r = svc.erase_patient(&op, p, &erase(ErasureMode::Erase)).await.unwrap();
        assert_eq!(r.counts["observations"], 2, "{n}");
        assert_eq!(r.counts["patients"], 1, "{n}");
        assert_eq!(r.counts["alerts"], 1, "{n}");
        assert!(r.remaining.contains("retention.ms"), "{n}: the record tells the operator about Kafka");
        let left: Vec<_> =
            db.rows_holding(p).await.into_iter().filter(|(t, _, _)| !KEEPS_THE_ID.contains(&t.as_str())).collect();
        assert!(left.is_empty(), "{n}: rows still holding the erased id: {left:?}");
        // The erasure is recorded and audited; the id cannot come back.
        assert_eq!(
            db.count("SELECT count(*) FROM patient_erasures WHERE patient_id = $1 AND mode = 'erase'", p).await,
            1
        );
        let admin = vitalwatch_admin::store::open(&db.url).await.unwrap();
        let audit =
            admin.audit(&AuditFilter { patient_id: Some(p.into()), limit: 1, ..Default::default() }).await.unwrap();
        assert_eq!(audit[0].action, "patient.erase", "{n}");
        let again = svc.add_patient(&op, &NewPatient { id: p.into() }).await.unwrap_err();
        assert!(matches!(&again, AdminError::Conflict(m) if m.contains("never reused")), "{n}: {again}");
        assert!(st.add_patient(&PatientId::new(p).unwrap()).await.is_err(), "{n}: the database refuses it too");
        assert_eq!(svc.erase_patient(&op, p, &erase(ErasureMode::Erase)).await.unwrap_err().status(), 409);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_pseudonymise_keeps_the_readings_under_a_pseudonym() {
    for db in databases("vw_lifecycle", "pseudo").await {
        let n = db.name;
        let svc = AdminService::open(&db.url, 100, 50).await.expect("admin service");
        let op = Actor::operator("dpo");
        let p = "pat-ps-91c2";
        seed(&db, &svc, p, "scale-ps1").await;
        svc.discharge_patient(&op, p, &discharge(EndReason::Transferred)).await.unwrap();
        let r = svc.erase_patient(&op, p, &erase(ErasureMode::Pseudonymise)).await.unwrap();
        assert_eq!(r.counts["observations_pseudonymised"], 2, "{n}");
        assert_eq!(r.counts["observations"], 0, "{n}");
        let left: Vec<_> =
            db.rows_holding(p).await.into_iter().filter(|(t, _, _)| !KEEPS_THE_ID.contains(&t.as_str())).collect();
        assert!(left.is_empty(), "{n}: rows still holding the id: {left:?}");
        // The readings, under one pseudonym, without device, message or trace ids.
        assert_eq!(
            db.count("SELECT count(*) FROM observations WHERE patient_id LIKE 'pseudo-%' AND device_id IS NULL AND msg_id IS NULL AND CAST($1 AS TEXT) <> ''", p).await,
            2,
            "{n}"
        );
        assert_eq!(
            db.count("SELECT count(DISTINCT patient_id) FROM observations WHERE patient_id LIKE 'pseudo-%' AND CAST($1 AS TEXT) <> ''", p).await,
            1
        );
        // The link is gone: the erasure record does not name the pseudonym.
        assert_eq!(
            db.count(
                "SELECT count(*) FROM patient_erasures WHERE counts LIKE '%pseudo-%' AND CAST($1 AS TEXT) <> ''",
                p
            )
            .await,
            0
        );
        assert_eq!(db.count("SELECT count(*) FROM admin_audit WHERE CAST(details AS TEXT) LIKE '%pseudo-%' AND CAST($1 AS TEXT) <> ''", p).await, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_purge_erases_patients_discharged_before_the_retention() {
    for db in databases("vw_lifecycle", "purge").await {
        let n = db.name;
        let svc = AdminService::open(&db.url, 100, 50).await.expect("admin service");
        let op = Actor::operator("dpo");
        for p in ["pat-old", "pat-recent", "pat-active"] {
            svc.add_patient(&op, &NewPatient { id: p.into() }).await.unwrap();
        }
        let dr: PhysicianInput =
            serde_json::from_value(json!({ "name": "Dr A", "email": "a@hospital.example" })).unwrap();
        svc.upsert_physician(&op, "dr-a", &dr).await.unwrap();
        let long_ago = Utc::now() - Duration::days(400);
        svc.include_patient(&op, "pat-old", &inclusion(Some(long_ago))).await.unwrap();
        let at = (long_ago + Duration::days(30)).to_rfc3339();
        svc.discharge_patient(
            &op,
            "pat-old",
            &DischargeInput { reason: EndReason::Discharged, note: None, at: Some(at) },
        )
        .await
        .unwrap();
        svc.include_patient(&op, "pat-recent", &inclusion(Some(long_ago))).await.unwrap();
        svc.discharge_patient(&op, "pat-recent", &discharge(EndReason::Discharged)).await.unwrap();
        svc.include_patient(&op, "pat-active", &inclusion(Some(long_ago))).await.unwrap();
        let done = svc.purge_discharged(&op, 365, ErasureMode::Erase).await.unwrap();
        let ids: Vec<&str> = done.iter().map(|r| r.patient.as_str()).collect();
        assert_eq!(ids, ["pat-old"], "{n}");
        assert!(done[0].counts["monitoring_periods"] == 1, "{n}");
        assert!(svc.purge_discharged(&op, 365, ErasureMode::Erase).await.unwrap().is_empty(), "{n}: idempotent");
        assert_eq!(
            svc.purge_discharged(&Actor::nurse("ide-1"), 365, ErasureMode::Erase).await.unwrap_err().status(),
            403
        );
    }
}
