//! The stores on both engines: every case runs on SQLite (a temporary file)
//! and on PostgreSQL (a fresh test database on `VW_TEST_PG`; under `CI=true`
//! a missing PostgreSQL fails the test, elsewhere only SQLite runs).
//!
//! Covers the three stores the admin layer is built on (registry and
//! observations, alerting, admin) and the admin service's transactions.

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use vitalwatch_admin::model::{NewPatient, PhysicianInput};
use vitalwatch_admin::{Actor, AdminService};
use vitalwatch_schemas::proto::{self, AlertEventKind, Severity as ProtoSeverity};

mod common;
use common::{Database, databases};

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
    for db in databases("vw_stores", "status").await {
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
    for db in databases("vw_stores", "audit").await {
        db.refuse_inserts("admin_audit").await;
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

// ---------------------------------------------------------------------------
// Conformance: the same cases on both engines.
// ---------------------------------------------------------------------------

use vitalwatch_admin::store::{AdminStore, AlertFilter, AuditFilter, EpisodeAuditFilter, NewAuditEntry, NewToken};
use vitalwatch_alerting::inbound::{Admission, GuardPolicy};
use vitalwatch_alerting::store::{
    Action, AlertStore, Completion, EngineError, OutboxStatus, StoreError as AlertStoreError, TransitionOptions,
};
use vitalwatch_alerting::{
    AckCodeGenerator, AckVia, CapPolicy, CareTeam, ChannelPreferences, EmailAddress, EpisodeId, EscalationPolicy,
    PhoneNumber, Physician, PhysicianId, Severity, TimeZone,
};
use vitalwatch_platform::store::{Store, StoreError};
use vitalwatch_schemas::{Code, DeviceId, Observation, ObservationId, PatientId, Source, TimeSource};

struct Stores {
    registry: std::sync::Arc<dyn Store>,
    alerting: std::sync::Arc<dyn AlertStore>,
    admin: std::sync::Arc<dyn AdminStore>,
}

async fn stores(db: &Database) -> Stores {
    Stores {
        registry: vitalwatch_platform::store::open(&db.url, 3).await.expect("registry store"),
        alerting: vitalwatch_alerting::store::open(&db.url).await.expect("alerting store"),
        admin: vitalwatch_admin::store::open(&db.url).await.expect("admin store"),
    }
}

fn pat(s: &str) -> PatientId {
    PatientId::new(s).unwrap()
}

fn dev(s: &str) -> DeviceId {
    DeviceId::new(s).unwrap()
}

fn obs(p: &str, t: DateTime<Utc>, v: f64, device: Option<&str>) -> Observation {
    Observation {
        id: ObservationId::compute(p, Code::BodyWeight, t.timestamp_micros()),
        patient_id: pat(p),
        code: Code::BodyWeight,
        value: v,
        time: t,
        received_at: t + Duration::seconds(2),
        source: if device.is_some() { Source::Device } else { Source::Manual },
        device_id: device.map(dev),
        time_source: TimeSource::Device,
        original_value: v * 2.2,
        original_unit: "[lb_av]".into(),
        msg_id: Some(format!("m-{}", t.timestamp())),
        trace_id: "trace".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_migrations_and_observations() {
    for db in databases("vw_stores", "obs").await {
        let s = stores(&db).await;
        let n = db.name;
        assert!(s.registry.migrate().await.expect("migrate again").applied.is_empty(), "{n}");
        s.registry.ping().await.expect("ping");
        let t0 = at(1_700_000_000_000_000);
        // 7 readings with a chunk of 3 (PostgreSQL: three statements); one duplicate.
        let batch: Vec<Observation> =
            (0..7).map(|i| obs("pat-o", t0 + Duration::minutes(i), 80.0 + i as f64, Some("dev-o"))).collect();
        assert_eq!(s.registry.insert_observations(&batch).await.unwrap(), 7, "{n}");
        assert_eq!(s.registry.insert_observations(&batch[5..]).await.unwrap(), 0, "{n}: duplicates skipped");
        assert_eq!(s.registry.insert_observations(&[]).await.unwrap(), 0, "{n}");
        assert_eq!(s.registry.count_observations().await.unwrap(), 7, "{n}");
        let stored = s.registry.observations(&pat("pat-o"), 3).await.unwrap();
        assert_eq!(stored.len(), 3, "{n}");
        assert_eq!((stored[0].time, stored[0].value, stored[0].unit.as_str()), (t0, 80.0, "kg"), "{n}");
        assert_eq!(stored[0].device_id.as_deref(), Some("dev-o"), "{n}");
        let recent = s.registry.recent_observations(&pat("pat-o"), t0 + Duration::minutes(5)).await.unwrap();
        assert_eq!(recent, batch[5..].to_vec(), "{n}: every field round-trips");
        // The batched rebuild read equals the per-patient reads.
        s.registry.set_patient_rules(&pat("pat-o"), r#"{"program":"heart_failure"}"#).await.unwrap();
        let inputs = s.registry.rule_state_inputs(&[pat("pat-none"), pat("pat-o")], t0).await.unwrap();
        assert_eq!(inputs.len(), 2, "{n}");
        assert!(inputs[0].rules.is_none() && inputs[0].observations.is_empty(), "{n}");
        assert_eq!(inputs[1].observations, batch, "{n}");
        assert_eq!(inputs[1].rules.as_ref().map(|r| r.rules.as_str()), Some(r#"{"program":"heart_failure"}"#), "{n}");
        let rules = s.registry.patient_rules(&pat("pat-o")).await.unwrap().expect("rules");
        let changed = s.registry.patient_rules_changed_since(rules.updated_at).await.unwrap();
        assert_eq!(changed.iter().map(|r| r.patient_id.as_str()).collect::<Vec<_>>(), ["pat-o"], "{n}");
        assert!(
            s.registry.patient_rules_changed_since(rules.updated_at + Duration::seconds(1)).await.unwrap().is_empty()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_registry() {
    for db in databases("vw_stores", "registry").await {
        let s = stores(&db).await;
        let n = db.name;
        let (p1, p2, d) = (pat("pat-r1"), pat("pat-r2"), dev("dev-r1"));
        let invalid = |r: Result<(), StoreError>| matches!(r, Err(StoreError::Invalid(_)));
        assert!(invalid(s.registry.enrol(&d, &p1, at(10)).await), "{n}: unknown device");
        assert!(s.registry.add_patient(&p1).await.unwrap(), "{n}");
        assert!(!s.registry.add_patient(&p1).await.unwrap(), "{n}: idempotent");
        assert!(s.registry.add_device(&d, "scale").await.unwrap(), "{n}");
        assert!(!s.registry.add_device(&d, "scale").await.unwrap(), "{n}");
        assert!(invalid(s.registry.enrol(&d, &p2, at(10)).await), "{n}: unknown patient");
        s.registry.add_patient(&p2).await.unwrap();
        // Device and patient ids share one namespace.
        match s.registry.add_device(&dev("pat-r1"), "scale").await {
            Err(StoreError::Invalid(m)) => assert!(m.contains("already a patient id"), "{n}: {m}"),
            other => panic!("{n}: a device under a patient's id: {other:?}"),
        }
        s.registry.enrol(&d, &p1, at(10)).await.unwrap();
        assert!(invalid(s.registry.enrol(&d, &p2, at(5)).await), "{n}: starts before the open enrolment");
        s.registry.enrol(&d, &p2, at(20)).await.unwrap_or_else(|e| panic!("{n}: {e}"));
        let snap = s.registry.registry().await.unwrap();
        assert!(snap.patients.contains("pat-r1") && snap.patients.contains("pat-r2"), "{n}");
        let e = &snap.devices["dev-r1"].enrolments;
        assert_eq!(e.len(), 2, "{n}");
        let moved = e.iter().find(|x| x.patient_id == p1).unwrap();
        assert_eq!(moved.valid_to, Some(at(20)), "{n}");
        assert!(moved.ended.is_some(), "{n}: the move is recorded");
        assert!(invalid(s.registry.grant_backfill(&d, &pat("pat-r3"), Utc::now(), "x").await), "{n}");
        s.registry
            .grant_backfill(&d, &p1, Utc::now() + Duration::hours(2), "readings stored before the move")
            .await
            .unwrap();
        s.registry.unenrol(&d, at(30)).await.unwrap();
        let snap = s.registry.registry().await.unwrap();
        assert_eq!(snap.devices["dev-r1"].backfill.len(), 1, "{n}");
        assert!(snap.devices["dev-r1"].enrolments.iter().all(|x| x.valid_to.is_some()), "{n}");
        assert!(invalid(s.registry.retire_device(&dev("dev-none"), at(40)).await), "{n}");
        s.registry.retire_device(&d, at(40)).await.unwrap();
        assert_eq!(s.registry.registry().await.unwrap().devices["dev-r1"].retired_at, Some(at(40)), "{n}");
        assert!(invalid(s.registry.enrol(&d, &p1, at(50)).await), "{n}: retired");
        assert!(invalid(s.registry.grant_backfill(&d, &p1, Utc::now(), "x").await), "{n}: retired");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_alert_episodes_and_closes() {
    for db in databases("vw_stores", "episodes").await {
        let s = stores(&db).await;
        let n = db.name;
        let t = at(1_700_000_000_000_000);
        let opened = alert_event("ep-c1", AlertEventKind::Opened, t, "SpO2 88 %");
        let mut escalated = alert_event("ep-c1", AlertEventKind::Escalated, t + Duration::minutes(5), "SpO2 84 %");
        escalated.severity = ProtoSeverity::Critical as i32;
        assert_eq!(s.registry.record_alert_events(&[opened.clone(), escalated.clone()]).await.unwrap(), 2, "{n}");
        assert_eq!(s.registry.record_alert_events(&[opened]).await.unwrap(), 0, "{n}: redelivery");
        let a = &s.registry.alerts(Some(&pat("pat-1"))).await.unwrap()[0];
        assert_eq!((a.status.as_str(), a.severity.as_str(), a.last_event_id.as_str()), ("open", "critical", "ep-c1-2"));
        assert!(a.evidence.contains("\"rule_id\""), "{n}: {}", a.evidence);
        assert!(s.registry.alerts(Some(&pat("pat-other"))).await.unwrap().is_empty(), "{n}");
        // Admin close: closed, and a close request for the rules worker.
        assert!(s.admin.close_alert("ep-c1").await.unwrap(), "{n}");
        assert!(!s.admin.close_alert("ep-c1").await.unwrap(), "{n}: not open any more");
        let pending = s.registry.pending_episode_closes().await.unwrap();
        assert_eq!(pending.len(), 1, "{n}");
        assert_eq!((pending[0].episode_id.as_str(), pending[0].applied), ("ep-c1", false), "{n}");
        s.registry.mark_episode_closes_applied(&["ep-c1".to_owned()]).await.unwrap();
        assert!(s.registry.pending_episode_closes().await.unwrap().is_empty(), "{n}");
        assert!(s.registry.episode_closes(&pat("pat-1")).await.unwrap()[0].applied, "{n}");
        // The rules worker's RESOLVED event for the physician close: status closed,
        // severity as it was while open.
        let mut close = alert_event("ep-c1", AlertEventKind::Resolved, t + Duration::minutes(9), "Episode closed");
        close.resolution = proto::AlertResolution::ClosedByPhysician as i32;
        close.severity = ProtoSeverity::Info as i32;
        s.registry.record_alert_events(&[close]).await.unwrap();
        let a = &s.registry.alerts(None).await.unwrap()[0];
        assert_eq!((a.status.as_str(), a.severity.as_str()), ("closed", "critical"), "{n}");
        assert_eq!(a.resolved_at, Some(t + Duration::minutes(9)), "{n}");
        // Admin views of the same rows.
        let row = s.admin.alert("ep-c1").await.unwrap().expect("alert row");
        assert_eq!(row.view.status, "closed", "{n}");
        assert_eq!(s.admin.episode_patient("ep-c1").await.unwrap().as_deref(), Some("pat-1"), "{n}");
        let f = AlertFilter { status: Some("closed".into()), limit: 10, ..Default::default() };
        assert_eq!(s.admin.alerts(&f).await.unwrap().len(), 1, "{n}");
        let f = AlertFilter { scope_patients: Some(vec!["pat-x".into()]), limit: 10, ..Default::default() };
        assert!(s.admin.alerts(&f).await.unwrap().is_empty(), "{n}: scope");
        let f = AlertFilter { before: Some((t, "ep-c1".into())), limit: 10, ..Default::default() };
        assert!(s.admin.alerts(&f).await.unwrap().is_empty(), "{n}: cursor");
    }
}

fn doctor(id: &str, mobile: &str, cap: Option<u32>) -> Physician {
    Physician {
        id: PhysicianId::new(id).unwrap(),
        name: format!("Dr {id}"),
        email: EmailAddress::new(format!("{id}@hospital.example")).unwrap(),
        mobile: Some(PhoneNumber::new(mobile).unwrap()),
        time_zone: TimeZone::new("Europe/Paris").unwrap(),
        quiet_hours: None,
        channels: ChannelPreferences::default(),
        hourly_cap: cap,
        language: None,
    }
}

fn care_team(patient: &str) -> CareTeam {
    CareTeam {
        patient_id: pat(patient),
        responsible: PhysicianId::new("dr-a").unwrap(),
        deputies: vec![PhysicianId::new("dr-b").unwrap()],
        policy: EscalationPolicy::default(),
    }
}

fn codes() -> TransitionOptions {
    TransitionOptions {
        codes: Some(AckCodeGenerator::new(b"0123456789abcdef0123456789abcdef-test", 6).unwrap()),
        caps: CapPolicy::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_alerting_directory_and_transitions() {
    for db in databases("vw_stores", "alerting").await {
        let s = stores(&db).await;
        let n = db.name;
        let a = &s.alerting;
        a.ping().await.unwrap();
        a.upsert_physician(&doctor("dr-a", "+33611111111", None)).await.unwrap();
        assert!(matches!(a.set_care_team(&care_team("pat-1")).await, Err(AlertStoreError::Invalid(_))), "{n}");
        a.upsert_physician(&doctor("dr-b", "+33622222222", None)).await.unwrap();
        a.set_care_team(&care_team("pat-1")).await.unwrap();
        assert_eq!(a.physicians().await.unwrap().len(), 2, "{n}");
        assert_eq!(
            a.physician_by_mobile("+33622222222").await.unwrap().map(|p| p.id.to_string()).as_deref(),
            Some("dr-b")
        );
        assert_eq!(a.care_team(&pat("pat-1")).await.unwrap(), Some(care_team("pat-1")), "{n}");
        assert_eq!(s.admin.patients_of("dr-b").await.unwrap(), ["pat-1"], "{n}: deputies count");

        let ep = EpisodeId::new("ep-t1").unwrap();
        let now = Utc::now();
        let unknown = a.transition(&EpisodeId::new("ep-none").unwrap(), Action::Replan, &codes(), now).await;
        assert!(matches!(unknown, Err(AlertStoreError::Engine(EngineError::UnknownEpisode(_)))), "{n}");
        let event = alert_event("ep-t1", AlertEventKind::Opened, now - Duration::minutes(1), "SpO2 88 %");
        let applied = a.transition(&ep, Action::Event(Box::new(event)), &codes(), now).await.unwrap();
        assert!(applied.planned && !applied.outbox.is_empty(), "{n}: the responsible physician is paged");
        let state = a.episode(&ep).await.unwrap().expect("episode state");
        assert_eq!(state.severity, Severity::High, "{n}");
        let outbox = a.outbox(&ep).await.unwrap();
        assert_eq!(outbox.len(), applied.outbox.len(), "{n}");
        assert!(outbox.iter().all(|r| r.status == OutboxStatus::Pending), "{n}");
        assert!(!a.audit_trail(&ep).await.unwrap().is_empty(), "{n}");
        // The SMS code printed in the page finds the episode.
        let first = &outbox[0].notification;
        let ctx = a.render_context(first).await.unwrap();
        assert_eq!(ctx.recipient.as_ref().map(|p| p.id.clone()), Some(first.recipient.clone()), "{n}");
        let code = ctx.ack_code.expect("an SMS code for the recipient");
        let found = a.episode_for_code(&first.recipient, code.as_str()).await.unwrap();
        assert_eq!(found, Some((ep.clone(), Severity::High)), "{n}");
        // Due episodes: the next wake-up (a reminder) is in the future.
        assert!(a.due_episodes(now, 10).await.unwrap().is_empty(), "{n}");
        let later = applied.next_wakeup.expect("a wake-up");
        assert_eq!(a.due_episodes(later, 10).await.unwrap(), std::slice::from_ref(&ep), "{n}");
        // A link acknowledgment is single use.
        let ack = |nonce: &str| Action::Ack {
            by: PhysicianId::new("dr-a").unwrap(),
            via: AckVia::Link,
            nonce: Some(nonce.to_owned()),
            sent_for: None,
        };
        a.transition(&ep, ack("n-1"), &codes(), now).await.unwrap();
        assert!(a.episode(&ep).await.unwrap().unwrap().is_acknowledged(), "{n}");
        let again = a.transition(&ep, ack("n-1"), &codes(), now).await;
        assert!(matches!(again, Err(AlertStoreError::Engine(EngineError::NonceUsed))), "{n}: {again:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_alerting_outbox_claims_and_completions() {
    for db in databases("vw_stores", "outbox").await {
        let s = stores(&db).await;
        let n = db.name;
        let a = &s.alerting;
        a.upsert_physician(&doctor("dr-a", "+33611111111", None)).await.unwrap();
        a.upsert_physician(&doctor("dr-b", "+33622222222", None)).await.unwrap();
        a.set_care_team(&care_team("pat-1")).await.unwrap();
        let ep = EpisodeId::new("ep-o1").unwrap();
        let now = Utc::now();
        let event = alert_event("ep-o1", AlertEventKind::Opened, now - Duration::minutes(1), "SpO2 88 %");
        a.transition(&ep, Action::Event(Box::new(event)), &codes(), now).await.unwrap();
        let queued = a.outbox(&ep).await.unwrap().len();
        let claimed = a.claim("w1", now, now + Duration::minutes(1), 100).await.unwrap();
        assert_eq!(claimed.len(), queued, "{n}");
        assert!(a.claim("w2", now, now + Duration::minutes(1), 100).await.unwrap().is_empty(), "{n}: leased");
        // The lease ends: another worker takes the rows over.
        assert_eq!(
            a.claim("w2", now + Duration::minutes(2), now + Duration::minutes(3), 100).await.unwrap().len(),
            queued
        );
        let key = claimed[0].notification.key.clone();
        let retry = Completion::Retry { retry_at: now + Duration::minutes(5), error: "busy".into(), fallback: None };
        a.complete(&key, 1, retry, &[], now).await.unwrap();
        assert_eq!(a.awaiting_retry().await.unwrap(), 1, "{n}");
        a.complete(&key, 2, Completion::Sent { provider_message_id: Some("pm-1".into()) }, &[], now).await.unwrap();
        let row = a.outbox(&ep).await.unwrap().into_iter().find(|r| r.notification.key == key).unwrap();
        assert_eq!(
            (row.status, row.attempts, row.provider_message_id.as_deref()),
            (OutboxStatus::Sent, 2, Some("pm-1"))
        );
        assert_eq!(a.awaiting_retry().await.unwrap(), 0, "{n}");
        // Completing again changes nothing (another dispatcher did it).
        a.complete(&key, 3, Completion::Cancelled { reason: "late".into() }, &[], now).await.unwrap();
        let row = a.outbox(&ep).await.unwrap().into_iter().find(|r| r.notification.key == key).unwrap();
        assert_eq!(row.status, OutboxStatus::Sent, "{n}");
        // A failure without fallback makes the episode due at once (escalation).
        if let Some(other) = claimed.get(1) {
            let failed = Completion::Failed { error: "refused".into(), fallback: None };
            a.complete(&other.notification.key, 1, failed, &[], now).await.unwrap();
            assert_eq!(a.due_episodes(now, 10).await.unwrap(), std::slice::from_ref(&ep), "{n}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_alerting_sms_guard_and_digests() {
    for db in databases("vw_stores", "guard").await {
        let s = stores(&db).await;
        let n = db.name;
        let a = &s.alerting;
        let policy = GuardPolicy::default();
        let now = Utc::now();
        let dr = PhysicianId::new("dr-a").unwrap();
        for i in 0..policy.max_failures {
            let r = a.sms_admit("sender-1", Some(&dr), &policy, now + Duration::seconds(i.into())).await.unwrap();
            assert_eq!(r, Admission::Allowed, "{n}: attempt {i}");
        }
        let locked = a.sms_admit("sender-1", Some(&dr), &policy, now + Duration::seconds(30)).await.unwrap();
        assert!(matches!(locked, Admission::Locked { new_lockout: true, .. }), "{n}: {locked:?}");
        let f = AuditFilter {
            action: Some(vitalwatch_alerting::store::LOCKOUT_ACTION.into()),
            limit: 10,
            ..Default::default()
        };
        let audit = s.admin.audit(&f).await.unwrap();
        assert_eq!(audit.len(), 1, "{n}");
        assert_eq!((audit[0].target_kind.as_str(), audit[0].target_id.as_str()), ("physician", "dr-a"), "{n}");
        a.sms_succeeded("sender-2").await.unwrap();

        // Digests: a capped physician's second MEDIUM page folds into the digest.
        a.upsert_physician(&doctor("dr-a", "+33611111111", Some(1))).await.unwrap();
        a.upsert_physician(&doctor("dr-b", "+33622222222", Some(1))).await.unwrap();
        for (p, ep) in [("pat-d1", "ep-d1"), ("pat-d2", "ep-d2")] {
            a.set_care_team(&care_team(p)).await.unwrap();
            let mut e = alert_event(ep, AlertEventKind::Opened, now - Duration::minutes(1), "Weight +2 kg");
            e.patient_id = p.into();
            e.severity = ProtoSeverity::Medium as i32;
            let id = EpisodeId::new(ep).unwrap();
            a.transition(&id, Action::Event(Box::new(e)), &codes(), now).await.unwrap();
        }
        let pending = a.pending_digest(&dr).await.unwrap();
        assert!(!pending.is_empty(), "{n}: the second page is folded");
        assert!(a.form_digests(&CapPolicy::default(), now, 10).await.unwrap().is_empty(), "{n}: not due yet");
        let later = now + Duration::hours(2);
        let digests = a.form_digests(&CapPolicy::default(), later, 10).await.unwrap();
        let mine = digests.iter().find(|d| d.recipient == dr).expect("a digest for dr-a");
        assert_eq!(a.digest_entries(&mine.key).await.unwrap(), pending, "{n}");
        assert!(a.pending_digest(&dr).await.unwrap().is_empty(), "{n}");
        assert!(a.form_digests(&CapPolicy::default(), later, 10).await.unwrap().is_empty(), "{n}: formed once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_admin_tokens_audit_and_patients() {
    for db in databases("vw_stores", "admin").await {
        let s = stores(&db).await;
        let n = db.name;
        let ad = &s.admin;
        ad.ping().await.unwrap();
        let new = NewToken {
            name: "ops".into(),
            hash: "h-1".into(),
            role: "operator".into(),
            physician_id: None,
            created_by: "cli:test".into(),
            expires_at: Utc::now() + Duration::days(1),
        };
        let view = ad.create_token(&new).await.unwrap();
        assert_eq!((view.name.as_str(), view.role.as_str()), ("ops", "operator"), "{n}");
        match ad.create_token(&NewToken { hash: "h-2".into(), ..new.clone() }).await {
            Err(StoreError::Invalid(m)) => assert!(m.contains("already exists"), "{n}: {m}"),
            other => panic!("{n}: a second active token named ops: {other:?}"),
        }
        assert_eq!(ad.token_by_hash("h-1").await.unwrap().map(|t| t.name).as_deref(), Some("ops"), "{n}");
        let used = Utc::now();
        ad.touch_token("h-1", used).await.unwrap();
        let last = ad.tokens().await.unwrap()[0].last_used_at.unwrap();
        assert!((last - used).num_milliseconds().abs() < 1, "{n}");
        assert!(ad.revoke_token("ops").await.unwrap(), "{n}");
        assert!(!ad.revoke_token("ops").await.unwrap(), "{n}");
        assert!(ad.token_by_hash("h-1").await.unwrap().is_none(), "{n}");
        ad.create_token(&NewToken { hash: "h-3".into(), ..new }).await.expect("the name is free again");
        assert_eq!(ad.tokens().await.unwrap().len(), 2, "{n}");

        let t0 = Utc::now();
        for (i, p) in ["pat-a1", "pat-a2", "pat-a3"].iter().enumerate() {
            s.registry.add_patient(&pat(p)).await.unwrap();
            let id = ad
                .append_audit(&NewAuditEntry {
                    at: t0 + Duration::seconds(i as i64),
                    actor: if i == 2 { "dr-x".into() } else { "cli:test".into() },
                    actor_role: "operator".into(),
                    action: "patient.add".into(),
                    target_kind: "patient".into(),
                    target_id: (*p).into(),
                    patient_id: Some((*p).into()),
                    details: json!({ "n": i }),
                })
                .await
                .unwrap();
            assert!(id > 0, "{n}");
        }
        let all = ad.audit(&AuditFilter { limit: 10, ..Default::default() }).await.unwrap();
        assert_eq!(all.iter().map(|a| a.target_id.as_str()).collect::<Vec<_>>(), ["pat-a3", "pat-a2", "pat-a1"]);
        assert_eq!(all[0].details, json!({ "n": 2 }), "{n}");
        let page = AuditFilter { before_id: Some(all[0].id), limit: 1, ..Default::default() };
        assert_eq!(ad.audit(&page).await.unwrap()[0].target_id, "pat-a2", "{n}");
        let since = AuditFilter {
            since: Some(t0 + Duration::seconds(1)),
            until: Some(t0 + Duration::seconds(2)),
            limit: 10,
            ..Default::default()
        };
        assert_eq!(ad.audit(&since).await.unwrap().len(), 1, "{n}");
        let scoped = AuditFilter {
            scope_patients: Some(vec!["pat-a1".into()]),
            scope_actor: Some("dr-x".into()),
            limit: 10,
            ..Default::default()
        };
        let mut ids: Vec<String> = ad.audit(&scoped).await.unwrap().into_iter().map(|a| a.target_id).collect();
        ids.sort();
        assert_eq!(ids, ["pat-a1", "pat-a3"], "{n}: own patients or own entries");
        assert!(ad.episode_audit(&EpisodeAuditFilter { limit: 10, ..Default::default() }).await.unwrap().is_empty());

        let page = ad.patients(None, 2, None).await.unwrap();
        assert_eq!(page.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), ["pat-a1", "pat-a2"], "{n}");
        let next = ad.patients(Some("pat-a2"), 2, None).await.unwrap();
        assert_eq!(next.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), ["pat-a3"], "{n}");
        let scope = ["pat-a2".to_owned()];
        assert_eq!(ad.patients(None, 10, Some(&scope)).await.unwrap().len(), 1, "{n}");
        let one = ad.patient("pat-a1").await.unwrap().expect("patient");
        assert_eq!(one.status, "active", "{n}");
        assert!((one.created_at - Utc::now()).num_minutes().abs() < 5, "{n}: {}", one.created_at);
        assert!(ad.patient("pat-none").await.unwrap().is_none(), "{n}");
    }
}

/// The admin service's changes are stored with their audit entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_admin_changes_are_audited() {
    for db in databases("vw_stores", "service").await {
        let n = db.name;
        let svc = AdminService::open(&db.url, 100, 50).await.expect("admin service");
        let op = Actor::operator("cli:test");
        assert!(svc.add_patient(&op, &NewPatient { id: "pat-s1".into() }).await.unwrap().created, "{n}");
        assert!(!svc.add_patient(&op, &NewPatient { id: "pat-s1".into() }).await.unwrap().created, "{n}");
        let input: PhysicianInput =
            serde_json::from_value(json!({ "name": "Dr A", "email": "a@hospital.example" })).unwrap();
        svc.upsert_physician(&op, "dr-a", &input).await.unwrap();
        let admin = vitalwatch_admin::store::open(&db.url).await.unwrap();
        let actions: Vec<String> = admin
            .audit(&AuditFilter { limit: 10, ..Default::default() })
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.action)
            .collect();
        assert_eq!(actions, ["physician.upsert", "patient.add"], "{n}: one entry per change, none for a no-op");
    }
}

// ---------------------------------------------------------------------------
// Patient page (issue #16): device status, rules versions, overview, trend
// series, rules preview, and who may see or change them.
// ---------------------------------------------------------------------------

mod patient_page {
    use super::*;
    use vitalwatch_admin::AdminError;
    use vitalwatch_admin::service::patient_view::{SeriesRange, adherence};
    use vitalwatch_platform::store::DeviceStatusRow;
    use vitalwatch_rules_core::{PatientRules, Program};

    fn reading(p: &str, code: Code, t: DateTime<Utc>, v: f64, device: Option<&str>) -> Observation {
        Observation {
            id: ObservationId::compute(p, code, t.timestamp_micros()),
            code,
            original_value: v,
            original_unit: code.ucum().into(),
            ..obs(p, t, v, device)
        }
    }

    fn status(device: &str, t: DateTime<Utc>, battery: Option<f64>, firmware: Option<&str>) -> DeviceStatusRow {
        DeviceStatusRow {
            device_id: device.into(),
            patient_id: Some("pat-v1".into()),
            time: t,
            received_at: t + Duration::seconds(1),
            battery_percent: battery,
            signal_dbm: Some(-71.5),
            firmware: firmware.map(str::to_owned),
        }
    }

    /// Whole seconds (PostgreSQL keeps microseconds, so do the seeds).
    fn now_s() -> DateTime<Utc> {
        DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conformance_device_status_keeps_the_latest_per_device() {
        for db in databases("vw_stores", "devstatus").await {
            let s = stores(&db).await;
            let n = db.name;
            let t = now_s() - Duration::hours(1);
            let batch = [
                status("dev-s1", t, Some(80.0), Some("1.0")),
                status("dev-s1", t + Duration::minutes(20), None, None),
                status("dev-s1", t + Duration::minutes(10), Some(50.0), Some("0.9")),
                status("dev-s2", t, Some(10.0), None),
            ];
            assert!(s.registry.upsert_device_statuses(&batch).await.unwrap() >= 3, "{n}");
            // Redelivered and older: no change; whatever the order, the same row.
            s.registry.upsert_device_statuses(&batch[..1]).await.unwrap();
            // The same statuses newest first, one call each (another device): the same row.
            for st in batch[..3].iter().rev() {
                let st = DeviceStatusRow { device_id: "dev-s3".into(), ..st.clone() };
                s.registry.upsert_device_statuses(&[st]).await.unwrap();
            }
            let rows = s.registry.device_statuses(&["dev-s1".into(), "dev-s2".into(), "dev-x".into()]).await.unwrap();
            assert_eq!(rows.len(), 2, "{n}");
            assert_eq!(rows[0].time, t + Duration::minutes(20), "{n}: the newest status time wins");
            assert_eq!(rows[0].battery_percent, Some(50.0), "{n}: the newest status that carried a battery");
            assert_eq!(rows[0].firmware.as_deref(), Some("0.9"), "{n}");
            assert_eq!((rows[1].device_id.as_str(), rows[1].battery_percent), ("dev-s2", Some(10.0)), "{n}");
            assert_eq!(rows[1].signal_dbm, Some(-71.5), "{n}");
            assert!(s.registry.device_statuses(&[]).await.unwrap().is_empty(), "{n}");
            let r3 = s.registry.device_statuses(&["dev-s3".into()]).await.unwrap();
            let key = |r: &DeviceStatusRow| (r.time, r.battery_percent, r.firmware.clone(), r.signal_dbm);
            assert_eq!(key(&r3[0]), key(&rows[0]), "{n}: the order statuses arrive in does not matter");
        }
    }

    /// A patient with a care team (dr-a responsible, nurse-n listed), an
    /// enrolled scale with a status, weights on 11 days and two blood
    /// pressures, and an episode.
    async fn seed(db: &Database, svc: &AdminService, now: DateTime<Utc>) -> Vec<Observation> {
        let s = stores(db).await;
        let op = Actor::operator("cli:test");
        svc.add_patient(&op, &NewPatient { id: "pat-v1".into() }).await.unwrap();
        svc.add_patient(&op, &NewPatient { id: "pat-v2".into() }).await.unwrap();
        s.alerting.upsert_physician(&doctor("dr-a", "+33611111111", None)).await.unwrap();
        s.alerting.upsert_physician(&doctor("dr-b", "+33622222222", None)).await.unwrap();
        s.alerting.upsert_physician(&doctor("dr-c", "+33633333333", None)).await.unwrap();
        s.alerting.set_care_team(&care_team("pat-v1")).await.unwrap();
        s.alerting
            .set_care_team(&CareTeam { responsible: PhysicianId::new("dr-c").unwrap(), ..care_team("pat-v2") })
            .await
            .unwrap();
        db.exec("INSERT INTO care_team_nurses (patient_id, nurse_id) VALUES ('pat-v1', 'nurse-n')").await;
        s.registry.add_device(&dev("dev-v1"), "scale").await.unwrap();
        s.registry.enrol(&dev("dev-v1"), &pat("pat-v1"), now - Duration::days(60)).await.unwrap();
        s.registry
            .upsert_device_statuses(&[status("dev-v1", now - Duration::minutes(10), Some(55.0), Some("2.3"))])
            .await
            .unwrap();
        let mut seeds: Vec<Observation> = (0..11)
            .map(|k| {
                reading(
                    "pat-v1",
                    Code::BodyWeight,
                    now - Duration::days(k) - Duration::hours(1),
                    80.0 + k as f64 / 10.0,
                    Some("dev-v1"),
                )
            })
            .collect();
        for (days, sys, dia) in [(3, 185.0, 95.0), (2, 130.0, 85.0)] {
            let t = now - Duration::days(days);
            seeds.push(reading("pat-v1", Code::Systolic, t, sys, None));
            seeds.push(reading("pat-v1", Code::Diastolic, t, dia, None));
        }
        s.registry.insert_observations(&seeds).await.unwrap();
        let mut ev = alert_event("ep-v1", AlertEventKind::Opened, now - Duration::days(3), "BP 185/95");
        ev.patient_id = "pat-v1".into();
        s.registry.record_alert_events(&[ev]).await.unwrap();
        seeds
    }

    fn hypertension(crisis_systolic: f64) -> PatientRules {
        let mut r = PatientRules::for_program(Program::Hypertension);
        let mut crisis = vitalwatch_rules_core::programs::defaults(Program::Hypertension, Default::default(), false)
            .thresholds
            .into_iter()
            .find(|t| t.id == "threshold.bp.crisis")
            .unwrap();
        crisis.checks[0].levels[0].value = crisis_systolic;
        r.thresholds.push(crisis);
        r
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conformance_patient_overview_series_and_preview() {
        for db in databases("vw_stores", "patientpage").await {
            let n = db.name;
            let svc = AdminService::open(&db.url, 100, 50).await.expect("admin service");
            let now = now_s();
            let seeds = seed(&db, &svc, now).await;
            let op = Actor::operator("cli:test");
            svc.set_rules(&op, "pat-v1", &PatientRules::for_program(Program::Hypertension), Some("enrolment"))
                .await
                .unwrap();

            let o = svc.patient_overview(&op, "pat-v1").await.expect("overview");
            assert_eq!(o.time_zone, "Europe/Paris", "{n}: the responsible physician's zone");
            let weight = o.last_readings.iter().find(|r| r.code == "29463-7").expect("weight");
            assert_eq!((weight.value, weight.unit.as_str(), weight.source.as_str()), (80.0, "kg", "device"), "{n}");
            assert_eq!((weight.time, weight.device_id.as_deref()), (now - Duration::hours(1), Some("dev-v1")), "{n}");
            let sys = o.last_readings.iter().find(|r| r.code == "8480-6").expect("systolic");
            assert_eq!(
                (sys.value, sys.source.as_str(), sys.name.as_str()),
                (130.0, "manual", "systolic blood pressure")
            );
            assert_eq!(o.last_readings.len(), 3, "{n}");
            let tz = chrono_tz::Europe::Paris;
            let buckets: Vec<i64> = seeds.iter().map(|s| s.time.timestamp().div_euclid(900)).collect();
            assert_eq!(o.adherence, adherence(Utc::now(), tz, &buckets), "{n}");
            assert!(o.adherence.days_with_data >= 1 && o.adherence.days_with_data <= o.adherence.days_elapsed, "{n}");
            assert_eq!(o.devices.len(), 1, "{n}");
            let d = &o.devices[0];
            assert_eq!(
                (d.device_id.as_str(), d.battery_percent, d.firmware.as_deref()),
                ("dev-v1", Some(55.0), Some("2.3"))
            );
            assert_eq!(d.last_heartbeat, Some(now - Duration::minutes(10)), "{n}");
            assert_eq!((o.rules.program.as_str(), o.rules.version), ("hypertension", Some(1)), "{n}");
            assert_eq!(o.episodes.len(), 1, "{n}");
            assert_eq!((o.episodes[0].episode_id.as_str(), o.episodes[0].status.as_str()), ("ep-v1", "open"), "{n}");

            // Daily buckets over 30 days: one per weight day; hourly over 7 days: the 7 latest.
            let month = svc.patient_series(&op, "pat-v1", "29463-7", SeriesRange::Month).await.unwrap();
            assert_eq!((month.unit.as_str(), month.bucket_secs, month.lines.len()), ("kg", 86_400, 1), "{n}");
            assert_eq!(month.lines[0].buckets.len(), 11, "{n}: {:?}", month.lines[0].buckets);
            let last = month.lines[0].buckets.last().unwrap();
            assert_eq!((last.n, last.mean, last.min, last.max), (1, 80.0, 80.0, 80.0), "{n}");
            let week = svc.patient_series(&op, "pat-v1", "29463-7", SeriesRange::Week).await.unwrap();
            assert_eq!((week.bucket_secs, week.lines[0].buckets.len()), (3600, 7), "{n}");
            assert!(week.lines[0].buckets.iter().all(|b| b.start >= week.from && b.start <= week.to), "{n}");
            // Blood pressure charts both codes, with the crisis thresholds of both.
            let bp = svc.patient_series(&op, "pat-v1", "8462-4", SeriesRange::Quarter).await.unwrap();
            let codes: Vec<&str> = bp.lines.iter().map(|l| l.code.as_str()).collect();
            assert_eq!(codes, ["8480-6", "8462-4"], "{n}");
            assert!(bp.lines.iter().all(|l| l.buckets.len() == 2), "{n}");
            assert!(
                bp.thresholds
                    .iter()
                    .any(|t| t.rule_id == "threshold.bp.crisis" && t.code == "8480-6" && t.value == 180.0)
            );
            assert!(bp.thresholds.iter().any(|t| t.code == "8462-4" && t.value == 120.0 && t.upward), "{n}");
            assert!(matches!(
                svc.patient_series(&op, "pat-v1", "1234-5", SeriesRange::Week).await,
                Err(AdminError::NotFound(_))
            ));

            // Preview: a crisis trigger at 190 would not have alerted on the 185.
            let p = svc.preview_rules(&op, "pat-v1", &hypertension(190.0)).await.expect("preview");
            assert_eq!(p.readings, 15, "{n}");
            assert_eq!(p.current_version, Some(1), "{n}");
            assert!(
                p.current.iter().any(|a| a.rule_id == "threshold.bp.crisis" && a.value == Some(185.0)),
                "{n}: {p:?}"
            );
            assert_eq!(
                p.removed.iter().map(|a| (a.rule_id.as_str(), a.value)).collect::<Vec<_>>(),
                [("threshold.bp.crisis", Some(185.0))]
            );
            assert!(p.added.is_empty(), "{n}: {:?}", p.added);
            let lower = svc.preview_rules(&op, "pat-v1", &hypertension(184.0)).await.unwrap();
            assert!(lower.removed.is_empty() && lower.unchanged.len() == lower.current.len(), "{n}: {lower:?}");
            match svc.preview_rules(&op, "pat-v1", &hypertension(450.0)).await {
                Err(AdminError::Invalid(m)) => assert!(m.contains("outside the allowed range 0 to 400 mm[Hg]"), "{m}"),
                other => panic!("{n}: an out-of-bounds threshold was not refused: {other:?}"),
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conformance_rules_versions_and_who_may_see_or_change_them() {
        for db in databases("vw_stores", "rulesversions").await {
            let n = db.name;
            let svc = AdminService::open(&db.url, 100, 50).await.expect("admin service");
            seed(&db, &svc, now_s()).await;
            let op = Actor::operator("cli:test");
            let dr_a = Actor::physician(PhysicianId::new("dr-a").unwrap());
            assert!(svc.rules_history(&op, "pat-v1").await.unwrap().is_empty(), "{n}: nothing set yet");
            let v1 = svc
                .set_rules(&op, "pat-v1", &PatientRules::for_program(Program::Hypertension), Some("enrolment"))
                .await
                .unwrap();
            assert_eq!(v1.version, Some(1), "{n}");
            let v2 =
                svc.set_rules(&dr_a, "pat-v1", &hypertension(175.0), Some("  lower crisis trigger  ")).await.unwrap();
            assert_eq!(v2.version, Some(2), "{n}");
            let h = svc.rules_history(&dr_a, "pat-v1").await.unwrap();
            assert_eq!(h.iter().map(|v| v.version).collect::<Vec<_>>(), [2, 1], "{n}");
            assert_eq!(
                (h[0].author.as_str(), h[0].author_role.as_str(), h[0].reason.as_deref()),
                ("dr-a", "physician", Some("lower crisis trigger"))
            );
            assert_eq!(
                (h[1].author.as_str(), h[1].reason.as_deref(), h[1].program.as_deref()),
                ("cli:test", Some("enrolment"), Some("hypertension"))
            );
            assert!(h[1].rules["thresholds"].as_array().is_some_and(|t| t.is_empty()), "{n}: version 1 kept as it was");
            assert!(h[0].changed_at >= h[1].changed_at, "{n}");
            assert_eq!(svc.rules(&op, "pat-v1").await.unwrap().version, Some(2), "{n}");
            // Rules written around the service are kept as a version at the next change.
            let s = stores(&db).await;
            s.registry.set_patient_rules(&pat("pat-v1"), r#"{"program":"general"}"#).await.unwrap();
            assert_eq!(
                svc.set_rules(&op, "pat-v1", &PatientRules::for_program(Program::Hypertension), None)
                    .await
                    .unwrap()
                    .version,
                Some(4)
            );
            let h = svc.rules_history(&op, "pat-v1").await.unwrap();
            assert_eq!(
                (h[1].version, h[1].author.as_str(), h[1].program.as_deref()),
                (3, "system", Some("general")),
                "{n}"
            );
            assert_eq!(h[0].reason, None, "{n}");
            let audit = s
                .admin
                .audit(&AuditFilter { action: Some("rules.set".into()), limit: 10, ..Default::default() })
                .await
                .unwrap();
            assert_eq!(audit.len(), 3, "{n}");
            assert_eq!(audit[0].details["version"], 4, "{n}");
            assert!(!audit.iter().any(|a| a.details.to_string().contains("crisis")), "{n}: no reason in the audit");

            // Another physician's patient: the same 404 as an unknown one.
            let dr_c = Actor::physician(PhysicianId::new("dr-c").unwrap());
            for result in [
                svc.patient_overview(&dr_c, "pat-v1").await.map(drop),
                svc.rules_history(&dr_c, "pat-v1").await.map(drop),
                svc.patient_series(&dr_c, "pat-v1", "29463-7", SeriesRange::Week).await.map(drop),
                svc.preview_rules(&dr_c, "pat-v1", &hypertension(175.0)).await.map(drop),
                svc.set_rules(&dr_c, "pat-v1", &hypertension(175.0), Some("x")).await.map(drop),
                svc.patient_overview(&dr_c, "pat-unknown").await.map(drop),
            ] {
                assert!(matches!(result, Err(AdminError::NotFound(_))), "{n}: {result:?}");
            }
            assert!(svc.patient_overview(&dr_c, "pat-v2").await.is_ok(), "{n}");
            // A nurse of the care team reads and previews, and may not change the rules.
            let nurse = Actor::nurse("nurse-n");
            assert!(svc.patient_overview(&nurse, "pat-v1").await.is_ok(), "{n}");
            assert_eq!(svc.rules_history(&nurse, "pat-v1").await.unwrap().len(), 4, "{n}");
            assert!(svc.preview_rules(&nurse, "pat-v1", &hypertension(175.0)).await.is_ok(), "{n}");
            let refused = svc.set_rules(&nurse, "pat-v1", &hypertension(175.0), Some("x")).await.unwrap_err();
            assert_eq!(refused.status(), 403, "{n}: {refused}");
            assert_eq!(svc.rules_history(&op, "pat-v1").await.unwrap().len(), 4, "{n}: nothing stored");
            assert!(matches!(svc.patient_overview(&nurse, "pat-v2").await, Err(AdminError::NotFound(_))), "{n}");
            // Invalid reasons.
            let long = "x".repeat(1001);
            for bad in [long.as_str(), "a\u{7}b"] {
                assert!(
                    matches!(
                        svc.set_rules(&op, "pat-v1", &hypertension(175.0), Some(bad)).await,
                        Err(AdminError::Invalid(_))
                    ),
                    "{n}"
                );
            }
        }
    }

    #[test]
    fn the_json_api_takes_an_optional_reason_next_to_the_rules() {
        use vitalwatch_admin::service::rules::parse_rules_change;
        let (r, why) = parse_rules_change(json!({ "program": "copd", "reason": "new oxygen plan",
            "oxygen_plan": { "target": "88-92", "supplemental_oxygen": true } }))
        .unwrap();
        assert_eq!((r.program, why.as_deref()), (Program::Copd, Some("new oxygen plan")));
        let (_, why) = parse_rules_change(json!({ "program": "general" })).unwrap();
        assert_eq!(why, None);
        assert!(parse_rules_change(json!({ "program": "general", "reason": 3 })).is_err());
        assert!(parse_rules_change(json!({ "program": "general", "why": "x" })).is_err());
    }
}

// ---------------------------------------------------------------------------
// Credentials of the HTTP ingestion endpoint (docs/http-ingest.md).
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_ingest_clients_are_hashed_granted_audited_and_operator_only() {
    use vitalwatch_admin::AdminError;
    use vitalwatch_admin::service::ingest_clients::NewIngestClientRequest;
    for db in databases("vw_stores", "ingest_clients").await {
        let n = db.name;
        let svc = AdminService::open(&db.url, 100, 50).await.expect("admin service");
        let op = Actor::operator("cli:test");
        let req = |name: &str, app: bool, devices: &[&str], patients: &[&str]| NewIngestClientRequest {
            name: name.into(),
            app,
            devices: devices.iter().map(|s| s.to_string()).collect(),
            patients: patients.iter().map(|s| s.to_string()).collect(),
        };
        let dev = svc.create_ingest_client(&op, &req("cuff-1", false, &["cuff-1"], &[])).await.unwrap();
        assert!(dev.secret.starts_with("vwi_") && dev.secret.len() == 68, "{n}");
        assert_eq!((dev.client.kind.as_str(), dev.client.devices.as_slice()), ("device", &["cuff-1".to_owned()][..]));
        let app = svc.create_ingest_client(&op, &req("app", true, &["s-2", "s-1", "s-1"], &["p-1"])).await.unwrap();
        assert_eq!(app.client.devices, ["s-1", "s-2"], "{n}: sorted, once each");
        assert_ne!(app.secret, dev.secret);
        // Refused: a second active name, a device credential with two devices or a patient,
        // an app without grants, a bad id; a physician may not manage them.
        for bad in [
            req("cuff-1", false, &["cuff-9"], &[]),
            req("two", false, &["a", "b"], &[]),
            req("dp", false, &["a"], &["p"]),
            req("none", true, &[], &[]),
            req("bad id", false, &["a"], &[]),
            req("badgrant", true, &["a/b"], &[]),
        ] {
            let e = svc.create_ingest_client(&op, &bad).await.unwrap_err();
            assert!(matches!(e, AdminError::Invalid(_)), "{n}: {} -> {e:?}", bad.name);
        }
        let dr = Actor::physician(vitalwatch_alerting::PhysicianId::new("dr-x").unwrap());
        assert!(matches!(svc.list_ingest_clients(&dr).await, Err(AdminError::Forbidden(_))), "{n}");
        // The database holds the hash only.
        let listed = svc.list_ingest_clients(&op).await.unwrap();
        assert_eq!(listed.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["app", "cuff-1"], "{n}");
        assert_eq!(listed[0].patients, ["p-1"]);
        let dump = serde_json::to_string(&listed).unwrap();
        assert!(!dump.contains(&dev.secret) && !dump.contains(&app.secret));
        // Revoke: once; the name can then be reused.
        svc.revoke_ingest_client(&op, "cuff-1").await.unwrap();
        assert!(matches!(svc.revoke_ingest_client(&op, "cuff-1").await, Err(AdminError::NotFound(_))), "{n}");
        svc.create_ingest_client(&op, &req("cuff-1", false, &["cuff-1"], &[])).await.unwrap();
        let listed = svc.list_ingest_clients(&op).await.unwrap();
        let cuffs: Vec<_> = listed.iter().filter(|c| c.name == "cuff-1").map(|c| c.revoked_at.is_some()).collect();
        assert_eq!(cuffs, [true, false], "{n}");
        let admin = vitalwatch_admin::store::open(&db.url).await.unwrap();
        let actions: Vec<String> = admin
            .audit(&AuditFilter { limit: 10, ..Default::default() })
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.action)
            .collect();
        assert_eq!(
            actions,
            ["ingest_client.create", "ingest_client.revoke", "ingest_client.create", "ingest_client.create"],
            "{n}"
        );
    }
}
