//! The monthly activity report (issue #17) on both engines: every figure of
//! November 2026 in Paris time for seeded observations, episodes, acks,
//! snoozes, closes, notes, tele-expertise and rules changes across both month
//! boundaries (23:30 Paris on 31 October is October; 23:30 UTC on 30
//! November is already 1 December in Paris); scoping (another physician's
//! patient or team: 404); the JSON API, the CSV (parsed, same figures) and
//! the printable page of a signed-in physician.

use chrono::{DateTime, Utc};
use vitalwatch_admin::model::{AlertAction, CareTeamInput, ChannelsInput, PhysicianInput};
use vitalwatch_admin::report::ActivityReport;
use vitalwatch_admin::service::report::ReportQuery;
use vitalwatch_admin::{Actor, AdminError};
use vitalwatch_alerting::store::{Action, TransitionOptions};
use vitalwatch_alerting::{EpisodeId, PhysicianId};
use vitalwatch_platform::store::db::{Db, Sql, Value};
use vitalwatch_rules_core::{PatientRules, Program};
use vitalwatch_schemas::proto::{self, AlertEventKind, Severity};
use vitalwatch_schemas::{Code, Observation, ObservationId, PatientId, Source, TimeSource};
use vitalwatch_testkit::client::request;

use crate::support::{App, Engine, ops};

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn obs(patient: &str, code: Code, at: &str, v: f64) -> Observation {
    let time = t(at);
    Observation {
        id: ObservationId::compute(patient, code, time.timestamp_micros()),
        patient_id: PatientId::new(patient).unwrap(),
        code,
        value: v,
        time,
        received_at: time,
        source: Source::Manual,
        device_id: None,
        time_source: TimeSource::Device,
        original_value: v,
        original_unit: code.ucum().into(),
        msg_id: None,
        trace_id: String::new(),
    }
}

fn event(episode: &str, patient: &str, severity: Severity, at: &str) -> proto::AlertEvent {
    let us = t(at).timestamp_micros();
    proto::AlertEvent {
        event_id: format!("{episode}-opened"),
        episode_id: episode.into(),
        patient_id: patient.into(),
        rule_id: "threshold.spo2.low".into(),
        rule_kind: "threshold".into(),
        kind: AlertEventKind::Opened as i32,
        severity: severity as i32,
        program: "copd".into(),
        code: "59408-5".into(),
        reading_time_unix_micros: us,
        // Raised 60 s after the reading was measured.
        detected_at_unix_micros: us + 60_000_000,
        summary: "SpO2 low".into(),
        ..proto::AlertEvent::default()
    }
}

/// Runs one statement on the test database (moving an action to its month).
async fn exec(db: &Db, sql: &'static str, args: Vec<Value>) {
    db.run(async |c| c.execute(&Sql::shared(sql), &args).await).await.expect(sql);
}

struct World {
    app: App,
}

/// dr-a (pat-1, pat-2), dr-b (pat-3), dr-c deputy of all three; the
/// November 2026 activity.
async fn world(engine: Engine) -> Option<World> {
    let app = App::start(engine).await?;
    for d in ["dr-a", "dr-b", "dr-c"] {
        let input = PhysicianInput {
            name: format!("Dr {d}"),
            email: format!("{d}@hospital.example"),
            mobile: None,
            time_zone: Some("Europe/Paris".into()),
            language: Some("fr".into()),
            quiet_hours: None,
            quiet_hours_bypass: None,
            channels: ChannelsInput::default(),
            hourly_cap: None,
        };
        app.admin.upsert_physician(&ops(), d, &input).await.unwrap();
    }
    // dr-c is every team's deputy.
    for (p, dr) in [("pat-1", "dr-a"), ("pat-2", "dr-a"), ("pat-3", "dr-b")] {
        app.admin.add_patient(&ops(), &vitalwatch_admin::model::NewPatient { id: p.into() }).await.unwrap();
        let team = CareTeamInput { responsible: dr.into(), deputies: vec!["dr-c".into()], policy: None, nurses: None };
        app.admin.set_care_team(&ops(), p, &team).await.unwrap();
    }
    let registry = vitalwatch_platform::store::open(&app.url, 100).await.unwrap();
    registry
        .insert_observations(&[
            // 23:30 Paris on 31 October: October.
            obs("pat-1", Code::Spo2, "2026-10-31T22:30:00Z", 95.0),
            // 00:30 Paris on 1 November.
            obs("pat-1", Code::Spo2, "2026-10-31T23:30:00Z", 94.0),
            obs("pat-1", Code::Spo2, "2026-11-01T12:00:00Z", 96.0),
            // One blood pressure reading: systolic, diastolic and the cuff's pulse.
            obs("pat-1", Code::Systolic, "2026-11-05T08:00:00Z", 130.0),
            obs("pat-1", Code::Diastolic, "2026-11-05T08:00:00Z", 80.0),
            obs("pat-1", Code::HeartRate, "2026-11-05T08:00:00Z", 70.0),
            // 23:30 Paris on 30 November: November.
            obs("pat-1", Code::Spo2, "2026-11-30T22:30:00Z", 95.0),
            // 00:30 Paris on 1 December: December.
            obs("pat-1", Code::Spo2, "2026-11-30T23:30:00Z", 95.0),
            obs("pat-2", Code::BodyWeight, "2026-11-15T09:00:00Z", 80.0),
            obs("pat-3", Code::Spo2, "2026-11-20T10:00:00Z", 97.0),
        ])
        .await
        .unwrap();
    let alerting = vitalwatch_alerting::store::open(&app.url).await.unwrap();
    for (ep, patient, sev, at) in [
        ("ep-prev", "pat-1", Severity::High, "2026-10-31T22:30:00Z"),
        ("ep-a1", "pat-1", Severity::Critical, "2026-11-01T08:00:00Z"),
        ("ep-a2", "pat-1", Severity::High, "2026-11-10T10:00:00Z"),
        ("ep-a3", "pat-1", Severity::Medium, "2026-11-20T10:00:00Z"),
        ("ep-next", "pat-1", Severity::High, "2026-11-30T23:30:00Z"),
        ("ep-b1", "pat-3", Severity::Critical, "2026-11-20T10:00:00Z"),
    ] {
        let ev = event(ep, patient, sev, at);
        registry.record_alert_events(std::slice::from_ref(&ev)).await.unwrap();
        let options = TransitionOptions { codes: None, caps: Default::default() };
        alerting
            .transition(&EpisodeId::new(ep).unwrap(), Action::Event(Box::new(ev)), &options, Utc::now())
            .await
            .unwrap();
    }
    let dr_a = Actor::physician(PhysicianId::new("dr-a").unwrap());
    let dr_b = Actor::physician(PhysicianId::new("dr-b").unwrap());
    let svc = &app.admin;
    for ep in ["ep-prev", "ep-a1", "ep-a2"] {
        svc.ack_alert(&dr_a, ep, &AlertAction::default()).await.unwrap();
    }
    svc.ack_alert(&dr_b, "ep-b1", &AlertAction::default()).await.unwrap();
    let close =
        AlertAction { outcome: Some("patient_called".into()), note: Some("rappelé".into()), ..Default::default() };
    svc.close_alert(&dr_a, "ep-a2", &close).await.unwrap();
    svc.add_note(&dr_a, "ep-a3", "à revoir").await.unwrap();
    svc.set_rules(&dr_a, "pat-2", &PatientRules::for_program(Program::HeartFailure), Some("inclusion")).await.unwrap();
    let db = Db::open(&app.url, vitalwatch_platform::config::DatabaseSettings::default().timeouts(), 1).await.unwrap();
    // The actions happened in November (ack delays: 10 min, 30 min, 90 min for pat-3).
    let at = |s: &str| Value::Time(t(s));
    let ep = |s: &str| Value::Text(s.into());
    let ack = "UPDATE alert_acknowledgments SET at = $1 WHERE episode_id = $2";
    exec(&db, ack, vec![at("2026-11-01T00:10:00Z"), ep("ep-prev")]).await;
    exec(&db, ack, vec![at("2026-11-01T08:11:00Z"), ep("ep-a1")]).await;
    exec(&db, ack, vec![at("2026-11-10T10:31:00Z"), ep("ep-a2")]).await;
    exec(&db, ack, vec![at("2026-11-20T11:31:00Z"), ep("ep-b1")]).await;
    exec(&db, "UPDATE episode_notes SET at = $1 WHERE episode_id = $2", vec![at("2026-11-10T11:00:00Z"), ep("ep-a2")])
        .await;
    exec(&db, "UPDATE episode_notes SET at = $1 WHERE episode_id = $2", vec![at("2026-11-20T12:00:00Z"), ep("ep-a3")])
        .await;
    exec(
        &db,
        "UPDATE episode_closes SET requested_at = $1 WHERE episode_id = $2",
        vec![at("2026-11-10T11:00:00Z"), ep("ep-a2")],
    )
    .await;
    exec(
        &db,
        "UPDATE patient_rules_versions SET changed_at = $1 WHERE patient_id = $2",
        vec![at("2026-11-15T10:00:00Z"), ep("pat-2")],
    )
    .await;
    // A snooze of ep-a3 on 20 November (the alerting audit is append-only: recorded as it was).
    exec(
        &db,
        "INSERT INTO alert_audit (at, episode_id, entry_type, record) VALUES ($1, $2, 'snoozed', $3)",
        vec![at("2026-11-20T10:05:00Z"), ep("ep-a3"), Value::Text("{}".into())],
    )
    .await;
    // A tele-expertise request about ep-a3 on 21 November, and one in December.
    let expertise = "INSERT INTO expertise_requests (episode_id, patient_id, requested_by, requested_by_role, \
        to_account, question, snapshot, created_at) VALUES ($1, 'pat-1', 'dr-a', 'physician', 'sp-1', 'avis ?', '{}', $2)";
    exec(&db, expertise, vec![ep("ep-a3"), at("2026-11-21T09:00:00Z")]).await;
    exec(&db, expertise, vec![ep("ep-a3"), at("2026-12-02T09:00:00Z")]).await;
    Some(World { app })
}

fn query(patient: Option<&str>, physician: Option<&str>) -> ReportQuery {
    ReportQuery {
        month: "2026-11".into(),
        patient: patient.map(str::to_owned),
        physician: physician.map(str::to_owned),
        min_days: Some(2),
        ..Default::default()
    }
}

/// Every figure of dr-a's team in November 2026.
fn check_team(r: &ActivityReport, n: &str) {
    assert_eq!((r.month.as_str(), r.time_zone.as_str(), r.days_in_month), ("2026-11", "Europe/Paris", 30), "{n}");
    assert_eq!((r.from, r.to), (t("2026-10-31T23:00:00Z"), t("2026-11-30T23:00:00Z")), "{n}: Paris midnights");
    let ids: Vec<&str> = r.patients.iter().map(|p| p.patient_id.as_str()).collect();
    assert_eq!(ids, ["pat-1", "pat-2"], "{n}");
    let p1 = &r.patients[0];
    assert_eq!(p1.days_with_data, 3, "{n}: 1, 5 and 30 November (Paris)");
    assert_eq!(p1.meets_min_days, Some(true), "{n}");
    let readings: Vec<(&str, u64)> = p1.readings.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(readings, [("59408-5", 3), ("85354-9", 1), ("8867-4", 1)], "{n}: BP once per panel");
    assert_eq!(p1.readings_total, 5, "{n}");
    let a = &p1.alerts;
    assert_eq!((a.total, a.critical, a.high, a.medium, a.low, a.info), (3, 1, 1, 1, 0, 0), "{n}");
    let k = &p1.acknowledgment;
    assert_eq!((k.acknowledged, k.unacknowledged, k.median_secs, k.max_secs), (2, 1, Some(600), Some(1800)), "{n}");
    let x = &p1.actions;
    assert_eq!(
        (x.acks, x.snoozes, x.closes, x.notes, x.expertise_requests, x.rules_changes),
        (3, 1, 1, 1, 1, 0),
        "{n}"
    );
    assert_eq!(x.closes_by_outcome.get("patient_called"), Some(&1), "{n}");
    let p2 = &r.patients[1];
    assert_eq!((p2.days_with_data, p2.meets_min_days, p2.readings_total), (1, Some(false), 1), "{n}");
    assert_eq!((p2.alerts.total, p2.actions.rules_changes), (0, 1), "{n}");
    let tt = &r.totals;
    assert_eq!(
        (tt.patients, tt.patients_with_data, tt.patients_meeting_min_days, tt.days_with_data),
        (2, 2, Some(1), 4)
    );
    assert_eq!((tt.readings_total, tt.alerts.total, tt.actions.acks, tt.actions.rules_changes), (6, 3, 3, 1), "{n}");
}

/// Splits the CSV into rows of fields (no field of this report is quoted).
fn csv_rows(body: &str) -> Vec<Vec<String>> {
    assert!(body.starts_with('\u{feff}'), "UTF-8 byte-order mark");
    body.trim_start_matches('\u{feff}')
        .split("\r\n")
        .filter(|l| !l.is_empty())
        .map(|l| l.split(';').map(str::to_owned).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monthly_activity_report_on_both_engines() {
    for engine in [Engine::Sqlite, Engine::Postgres] {
        let Some(w) = world(engine).await else { continue };
        let n = format!("{engine:?}");
        let app = &w.app;
        let dr_a = Actor::physician(PhysicianId::new("dr-a").unwrap());
        let dr_b = Actor::physician(PhysicianId::new("dr-b").unwrap());

        // The service: dr-a's own patients, as a team and by physician id.
        check_team(&app.admin.activity_report(&dr_a, &query(None, None)).await.unwrap(), &n);
        check_team(&app.admin.activity_report(&dr_a, &query(None, Some("dr-a"))).await.unwrap(), &n);
        let op = Actor::operator("ops");
        check_team(&app.admin.activity_report(&op, &query(None, Some("dr-a"))).await.unwrap(), &n);
        let all = app.admin.activity_report(&op, &query(None, None)).await.unwrap();
        assert_eq!(all.patients.len(), 3, "{n}: operators see every patient");
        let p3 = &all.patients[2];
        assert_eq!((p3.patient_id.as_str(), p3.acknowledgment.median_secs), ("pat-3", Some(5400)), "{n}");
        assert_eq!(all.totals.acknowledgment.median_secs, Some(1800), "{n}: 10, 30 and 90 min");
        let one = app.admin.activity_report(&dr_a, &query(Some("pat-2"), None)).await.unwrap();
        assert_eq!(one.patients.len(), 1, "{n}");
        // October: the 23:30 Paris reading and its episode.
        let oct = ReportQuery { month: "2026-10".into(), patient: Some("pat-1".into()), ..Default::default() };
        let oct = app.admin.activity_report(&dr_a, &oct).await.unwrap();
        assert_eq!((oct.patients[0].days_with_data, oct.patients[0].alerts.total), (1, 1), "{n}");
        // Scoping: another physician's patient or team is unknown; bad input is 422.
        for q in [query(Some("pat-3"), None), query(None, Some("dr-b")), query(Some("nobody"), None)] {
            let r = app.admin.activity_report(&dr_a, &q).await;
            assert!(matches!(r, Err(AdminError::NotFound(_))), "{n}: {q:?} {r:?}");
        }
        assert_eq!(app.admin.activity_report(&dr_b, &query(None, None)).await.unwrap().patients.len(), 1, "{n}");
        let dr_c = Actor::physician(PhysicianId::new("dr-c").unwrap());
        let deputy = app.admin.activity_report(&dr_c, &query(None, Some("dr-c"))).await.unwrap();
        assert_eq!(deputy.patients.len(), 3, "{n}: a deputy's patients count");
        for bad in ["2026-13", "nov", ""] {
            let q = ReportQuery { month: bad.into(), ..Default::default() };
            assert!(matches!(app.admin.activity_report(&dr_a, &q).await, Err(AdminError::Invalid(_))), "{n}");
        }
        let sp = Actor::specialist("sp-1");
        assert!(matches!(app.admin.activity_report(&sp, &query(None, None)).await, Err(AdminError::Forbidden(_))));

        // The JSON API with dr-a's token; the CSV with the same figures.
        let (token, _) = app.admin.create_token(&ops(), "dr-a-report", "physician", Some("dr-a"), None).await.unwrap();
        let auth = [("Authorization", format!("Bearer {token}"))];
        let r = request(&app.addr, "GET", "/v1/reports/activity?month=2026-11&min_days=2", &auth, None).await;
        assert_eq!(r.status, 200, "{n}: {}", r.body);
        let json: ActivityReport = serde_json::from_str(&r.body).unwrap();
        check_team(&json, &n);
        let r = request(&app.addr, "GET", "/v1/reports/activity?month=2026-11&patient=pat-3", &auth, None).await;
        assert_eq!(r.status, 404, "{n}: {}", r.body);
        assert!(r.json()["error"].is_string(), "{n}: {}", r.body);
        let r = request(&app.addr, "GET", "/v1/reports/activity?month=2026-11&format=xml", &auth, None).await;
        assert_eq!(r.status, 422, "{n}: {}", r.body);
        let path = "/v1/reports/activity?month=2026-11&physician=dr-a&min_days=2&format=csv";
        let r = request(&app.addr, "GET", path, &auth, None).await;
        assert_eq!(r.status, 200, "{n}: {}", r.body);
        assert!(r.header("content-type").is_some_and(|c| c.starts_with("text/csv")), "{n}");
        let cd = r.header("content-disposition").unwrap_or_default();
        assert!(cd.starts_with("attachment;") && cd.contains("activity-2026-11-dr-a.csv"), "{n}: {cd}");
        let rows = csv_rows(&r.body);
        assert_eq!(rows.len(), 4, "{n}: header, two patients, total");
        let col = |name: &str| rows[0].iter().position(|h| h == name).unwrap_or_else(|| panic!("column {name}"));
        let cell = |row: usize, name: &str| rows[row][col(name)].clone();
        assert_eq!(cell(1, "patient_id"), "pat-1");
        for (name, want) in [
            ("days_with_data", "3"),
            ("meets_min_days", "yes"),
            ("readings_total", "5"),
            ("readings_85354-9", "1"),
            ("readings_59408-5", "3"),
            ("alerts_total", "3"),
            ("alerts_critical", "1"),
            ("unacknowledged", "1"),
            ("ack_median_min", "10"),
            ("ack_max_min", "30"),
            ("acks", "3"),
            ("snoozes", "1"),
            ("closes_patient_called", "1"),
            ("notes", "1"),
            ("expertise_requests", "1"),
        ] {
            assert_eq!(cell(1, name), want, "{n}: pat-1 {name}");
        }
        assert_eq!((cell(2, "patient_id"), cell(2, "rules_changes")), ("pat-2".into(), "1".into()), "{n}");
        assert_eq!((cell(3, "patient_id"), cell(3, "days_with_data")), ("TOTAL".into(), "4".into()), "{n}");

        // The printable page of a signed-in physician (French).
        let pw = app.account("u-dr-a", "physician", Some("dr-a"), "fr").await;
        let mut c = app.sign_in("u-dr-a", &pw).await;
        let page = c.get("/reports/activity?month=2026-11").await;
        assert_eq!(page.status, 200, "{n}: {}", page.body);
        let html = &page.body;
        assert!(html.contains("Activité mensuelle de télésurveillance"), "{n}");
        assert!(html.contains("href=\"/reports/activity\" aria-current=\"page\""), "{n}: in the navigation");
        let row = html.split("data-patient=\"pat-1\"").nth(1).and_then(|s| s.split("</tr>").next()).unwrap_or_default();
        for want in ["3 / 30", "<strong>5</strong>", "PA 1", "3 (1 C, 1 H, 1 M)", "10 / 30 min", "1 clôtures"] {
            assert!(row.contains(want), "{n}: {want:?} in {row}");
        }
        assert!(!html.contains("data-patient=\"pat-3\""), "{n}: not dr-a's patient");
        assert!(html.contains("href=\"/reports/activity.csv?month=2026-11\""), "{n}");
        let csv = c.get("/reports/activity.csv?month=2026-11").await;
        assert_eq!((csv.status, csv_rows(&csv.body).len()), (200, 4), "{n}");
        assert_eq!(c.get("/reports/activity?month=2026-11&patient=pat-3").await.status, 404, "{n}");
    }
}
