//! The clinician workspace's service and store (issue #16) on both engines:
//! SQLite (a temporary file) and PostgreSQL (a fresh database on
//! `VW_TEST_PG`; under `CI=true` a missing PostgreSQL fails the test).
//!
//! Worklist order, filters, paging, scope and row contents; notes and close
//! outcomes (stored, audited by id, never in the audit text); tele-expertise
//! to an account and to an email address (single-use link, expiry, the
//! responsible physician emailed: a real SMTP server).

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use vitalwatch_admin::account::NewAccount;
use vitalwatch_admin::model::{AlertAction, AuditQuery, SnoozeInput};
use vitalwatch_admin::service::expertise::{Answerer, ExpertiseTarget, ForwardInput, Mailer};
use vitalwatch_admin::service::worklist::{WorklistQuery, WorklistRow};
use vitalwatch_admin::{Actor, AdminError, AdminService};
use vitalwatch_alerting::store::{Action, AlertStore, TransitionOptions};
use vitalwatch_alerting::transport::smtp::{SmtpConfig, SmtpSecurity, SmtpTransport};
use vitalwatch_alerting::{
    CareTeam, ChannelPreferences, EmailAddress, EpisodeId, EscalationPolicy, PhoneNumber, Physician, PhysicianId,
    TimeZone,
};
use vitalwatch_platform::store::Store;
use vitalwatch_schemas::proto::{self, AlertEventKind, Severity as ProtoSeverity};
use vitalwatch_schemas::{Code, Observation, ObservationId, PatientId, Source, TimeSource};

mod common;
use common::{Database, databases};

impl Database {
    /// Lists `nurse` in the care team of `patient`.
    async fn add_nurse(&self, patient: &str, nurse: &str) {
        self.exec(&format!("INSERT INTO care_team_nurses (patient_id, nurse_id) VALUES ('{patient}', '{nurse}')"))
            .await;
    }
}

struct World {
    svc: AdminService,
    registry: Arc<dyn Store>,
    alerting: Arc<dyn AlertStore>,
}

fn doctor(id: &str) -> Physician {
    Physician {
        id: PhysicianId::new(id).unwrap(),
        name: format!("Dr {id}"),
        email: EmailAddress::new(format!("{id}@hospital.example")).unwrap(),
        mobile: Some(
            PhoneNumber::new(format!("+3361111111{}", id.len() % 10 + usize::from(id.as_bytes()[id.len() - 1] - b'a')))
                .unwrap(),
        ),
        time_zone: TimeZone::new("Europe/Paris").unwrap(),
        quiet_hours: None,
        channels: ChannelPreferences::default(),
        hourly_cap: None,
        language: None,
    }
}

fn team(patient: &str, responsible: &str, deputy: &str) -> CareTeam {
    CareTeam {
        patient_id: PatientId::new(patient).unwrap(),
        responsible: PhysicianId::new(responsible).unwrap(),
        deputies: vec![PhysicianId::new(deputy).unwrap()],
        policy: EscalationPolicy::default(),
    }
}

/// Physicians dr-a, dr-b, dr-c; pat-1 and pat-2 are dr-a's (deputy dr-b), pat-3 is dr-b's (deputy dr-c).
async fn world(db: &Database) -> World {
    let w = World {
        svc: AdminService::open(&db.url, 1000, 50).await.expect("admin service"),
        registry: vitalwatch_platform::store::open(&db.url, 1000).await.expect("registry"),
        alerting: vitalwatch_alerting::store::open(&db.url).await.expect("alerting store"),
    };
    for d in ["dr-a", "dr-b", "dr-c"] {
        w.alerting.upsert_physician(&doctor(d)).await.unwrap();
    }
    for p in ["pat-1", "pat-2", "pat-3"] {
        w.registry.add_patient(&PatientId::new(p).unwrap()).await.unwrap();
    }
    w.alerting.set_care_team(&team("pat-1", "dr-a", "dr-b")).await.unwrap();
    w.alerting.set_care_team(&team("pat-2", "dr-a", "dr-b")).await.unwrap();
    w.alerting.set_care_team(&team("pat-3", "dr-b", "dr-c")).await.unwrap();
    w
}

fn event(episode: &str, patient: &str, severity: ProtoSeverity, t: DateTime<Utc>, value: f64) -> proto::AlertEvent {
    proto::AlertEvent {
        event_id: format!("{episode}-opened"),
        episode_id: episode.into(),
        patient_id: patient.into(),
        rule_id: "threshold.spo2.low".into(),
        rule_kind: "threshold".into(),
        kind: AlertEventKind::Opened as i32,
        severity: severity as i32,
        program: if patient == "pat-2" { "heart_failure".into() } else { "copd".into() },
        code: "59408-5".into(),
        reading_time_unix_micros: t.timestamp_micros(),
        detected_at_unix_micros: t.timestamp_micros() + 1_000,
        summary: format!("SpO2 {value} %"),
        threshold: Some(90.0),
        readings: vec![
            proto::EvidenceReading {
                observation_id: format!("{episode}-r0"),
                code: "59408-5".into(),
                value: value + 3.0,
                unit: "%".into(),
                time_unix_micros: (t - Duration::minutes(30)).timestamp_micros(),
            },
            proto::EvidenceReading {
                observation_id: format!("{episode}-r1"),
                code: "59408-5".into(),
                value,
                unit: "%".into(),
                time_unix_micros: t.timestamp_micros(),
            },
        ],
        ..proto::AlertEvent::default()
    }
}

/// The episode as the rules engine records it (`alerts`) and as alerting applies it (pages).
async fn open(w: &World, ev: proto::AlertEvent) {
    w.registry.record_alert_events(std::slice::from_ref(&ev)).await.unwrap();
    let id = EpisodeId::new(ev.episode_id.clone()).unwrap();
    let options = TransitionOptions { codes: None, caps: Default::default() };
    w.alerting.transition(&id, Action::Event(Box::new(ev)), &options, Utc::now()).await.unwrap();
}

fn spo2(patient: &str, t: DateTime<Utc>, v: f64) -> Observation {
    Observation {
        id: ObservationId::compute(patient, Code::Spo2, t.timestamp_micros()),
        patient_id: PatientId::new(patient).unwrap(),
        code: Code::Spo2,
        value: v,
        time: t,
        received_at: t + Duration::seconds(2),
        source: Source::Manual,
        device_id: None,
        time_source: TimeSource::Device,
        original_value: v,
        original_unit: "%".into(),
        msg_id: None,
        trace_id: "trace".into(),
    }
}

/// Now, to the microsecond (the stores' precision).
fn now_us() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap()
}

fn dr(id: &str) -> Actor {
    Actor::physician(PhysicianId::new(id).unwrap())
}

fn ids(rows: &[WorklistRow]) -> Vec<&str> {
    rows.iter().map(|r| r.episode_id.as_str()).collect()
}

async fn worklist(w: &World, actor: &Actor, q: WorklistQuery) -> Vec<String> {
    w.svc.worklist(actor, &q).await.unwrap().items.into_iter().map(|r| r.episode_id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worklist_orders_filters_pages_and_scopes_open_episodes() {
    for db in databases("vw_workspace", "worklist").await {
        let n = db.name;
        let w = world(&db).await;
        let t0 = now_us() - Duration::hours(3);
        // History before the episodes: 7 days of readings of pat-1, the last one 95.
        let history: Vec<Observation> =
            (1..=7).map(|d| spo2("pat-1", t0 - Duration::days(8 - d), if d == 7 { 95.0 } else { 97.0 })).collect();
        w.registry.insert_observations(&history).await.unwrap();
        open(&w, event("ep-high-old", "pat-2", ProtoSeverity::High, t0, 88.0)).await;
        open(&w, event("ep-high-new", "pat-1", ProtoSeverity::High, t0 + Duration::minutes(5), 87.0)).await;
        open(&w, event("ep-crit", "pat-1", ProtoSeverity::Critical, t0 + Duration::minutes(10), 82.0)).await;
        open(&w, event("ep-low", "pat-1", ProtoSeverity::Low, t0 - Duration::minutes(30), 91.0)).await;
        open(&w, event("ep-other", "pat-3", ProtoSeverity::Critical, t0, 80.0)).await;
        // A resolved episode is not on the worklist.
        let mut gone = event("ep-gone", "pat-1", ProtoSeverity::Critical, t0, 80.0);
        w.registry.record_alert_events(std::slice::from_ref(&gone)).await.unwrap();
        gone.kind = AlertEventKind::Resolved as i32;
        gone.event_id = "ep-gone-resolved".into();
        w.registry.record_alert_events(&[gone]).await.unwrap();

        let a = dr("dr-a");
        let page = w.svc.worklist(&a, &WorklistQuery::default()).await.unwrap();
        assert_eq!(ids(&page.items), ["ep-crit", "ep-high-old", "ep-high-new", "ep-low"], "{n}: severity then age");
        assert!(page.next.is_none(), "{n}");
        let crit = &page.items[0];
        assert_eq!(
            (crit.patient_id.as_str(), crit.severity.as_str(), crit.program.as_str()),
            ("pat-1", "critical", "copd")
        );
        assert_eq!(crit.current.as_ref().map(|c| c.value), Some(82.0), "{n}: the triggering reading");
        assert_eq!(crit.unit.as_deref(), Some("%"), "{n}");
        let prev = crit.previous.as_ref().expect("a previous value");
        assert_eq!((prev.value, prev.at), (95.0, Some(t0 - Duration::days(1))), "{n}: the last reading before");
        // The 7 days before the opening reading (t0 + 10 min): the readings of days -6 to -1.
        let mean = crit.mean_7d.expect("a 7-day mean");
        assert!((mean - (97.0 * 5.0 + 95.0) / 6.0).abs() < 1e-9, "{n}: {mean}");
        assert!(page.items[1].previous.is_none(), "{n}: pat-2 has no history");
        // Escalation: dr-a paged (pending), next rung dr-b (every deputy) at the scheduler's wake-up.
        assert!(!crit.pages.is_empty(), "{n}: the responsible physician was paged");
        assert!(
            crit.pages.iter().all(|p| p.recipient == "dr-a" && p.step == "critical.page0"),
            "{n}: {:?}",
            crit.pages
        );
        assert!(crit.pages.iter().all(|p| p.status == "pending" && ["email", "sms"].contains(&p.channel.as_str())));
        let next = crit.next_step.as_ref().expect("a next step");
        assert_eq!(
            (next.kind.as_str(), next.step.as_str(), next.targets.as_slice()),
            ("page", "critical.page1", &["dr-b".to_owned()][..])
        );
        assert!(next.at.is_some(), "{n}");
        assert!(!crit.acknowledged && crit.acknowledgment.is_none() && crit.snooze.is_none(), "{n}");
        assert!(!crit.expertise_open, "{n}");

        // Keyset paging.
        let p1 = w.svc.worklist(&a, &WorklistQuery { limit: Some(3), ..Default::default() }).await.unwrap();
        assert_eq!(ids(&p1.items), ["ep-crit", "ep-high-old", "ep-high-new"], "{n}");
        let q2 = WorklistQuery { limit: Some(3), after: p1.next.clone(), ..Default::default() };
        let p2 = w.svc.worklist(&a, &q2).await.unwrap();
        assert_eq!((ids(&p2.items), p2.next.is_none()), (vec!["ep-low"], true), "{n}");
        let bad = w.svc.worklist(&a, &WorklistQuery { after: Some("nope".into()), ..Default::default() }).await;
        assert!(matches!(bad, Err(AdminError::Invalid(_))), "{n}");

        // Filters.
        let q = |f: fn(&mut WorklistQuery)| {
            let mut q = WorklistQuery::default();
            f(&mut q);
            q
        };
        assert_eq!(worklist(&w, &a, q(|q| q.severity = Some("high".into()))).await, ["ep-high-old", "ep-high-new"]);
        assert_eq!(worklist(&w, &a, q(|q| q.program = Some("heart_failure".into()))).await, ["ep-high-old"]);
        assert_eq!(worklist(&w, &a, q(|q| q.patient = Some("pat-2".into()))).await, ["ep-high-old"]);
        assert_eq!(worklist(&w, &a, q(|q| q.patient = Some("pat-3".into()))).await, Vec::<String>::new(), "{n}: scope");
        assert!(matches!(
            w.svc.worklist(&a, &q(|q| q.severity = Some("huge".into()))).await,
            Err(AdminError::Invalid(_))
        ));
        w.svc.ack_alert(&a, "ep-crit", &AlertAction::default()).await.unwrap();
        w.svc.snooze_alert(&a, "ep-high-new", &SnoozeInput { by: None, minutes: 30 }).await.unwrap();
        assert_eq!(worklist(&w, &a, q(|q| q.acknowledged = Some(true))).await, ["ep-crit"], "{n}");
        assert_eq!(
            worklist(&w, &a, q(|q| q.acknowledged = Some(false))).await,
            ["ep-high-old", "ep-high-new", "ep-low"],
            "{n}"
        );
        assert_eq!(worklist(&w, &a, q(|q| q.snoozed = Some(true))).await, ["ep-high-new"], "{n}");
        assert_eq!(worklist(&w, &a, q(|q| q.snoozed = Some(false))).await, ["ep-crit", "ep-high-old", "ep-low"]);
        let page = w.svc.worklist(&a, &WorklistQuery::default()).await.unwrap();
        let crit = &page.items[0];
        let ack = crit.acknowledgment.as_ref().expect("acknowledgment");
        assert_eq!((ack.by.as_str(), ack.severity.as_str(), ack.via.as_str()), ("dr-a", "critical", "web_app"), "{n}");
        assert!(crit.acknowledged && crit.next_step.is_none(), "{n}: no escalation once acknowledged");
        let snoozed = page.items.iter().find(|r| r.episode_id == "ep-high-new").unwrap();
        let s = snoozed.snooze.as_ref().expect("snooze");
        assert_eq!(s.by, "dr-a", "{n}");
        assert!(s.until > Utc::now() + Duration::minutes(29), "{n}");

        // Scope: dr-c (deputy of pat-3 only) sees pat-3's episode; dr-b (deputy of pat-1
        // and pat-2, responsible for pat-3) all; a nurse of pat-1's team, pat-1's; a specialist nothing.
        assert_eq!(worklist(&w, &dr("dr-c"), WorklistQuery::default()).await, ["ep-other"], "{n}");
        assert_eq!(worklist(&w, &dr("dr-b"), WorklistQuery::default()).await.len(), 5, "{n}: deputies count");
        db.add_nurse("pat-1", "nurse-1").await;
        let nurse = Actor::nurse("nurse-1");
        assert_eq!(worklist(&w, &nurse, WorklistQuery::default()).await, ["ep-crit", "ep-high-new", "ep-low"]);
        w.svc.ack_alert(&nurse, "ep-low", &AlertAction::default()).await.unwrap();
        let low = w.svc.worklist(&nurse, &q(|q| q.severity = Some("low".into()))).await.unwrap();
        assert_eq!(low.items[0].acknowledgment.as_ref().map(|a| a.by.as_str()), Some("nurse-1"), "{n}");
        assert!(matches!(
            w.svc.ack_alert(&nurse, "ep-other", &AlertAction::default()).await,
            Err(AdminError::NotFound(_))
        ));
        let sp = Actor::specialist("sp-1");
        assert!(matches!(w.svc.worklist(&sp, &WorklistQuery::default()).await, Err(AdminError::Forbidden(_))));
        let all = worklist(&w, &Actor::operator("ops"), WorklistQuery::default()).await;
        assert_eq!(all, ["ep-other", "ep-crit", "ep-high-old", "ep-high-new", "ep-low"], "{n}: operators see all");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notes_and_close_outcomes_are_stored_and_audited_by_id_only() {
    for db in databases("vw_workspace", "notes").await {
        let n = db.name;
        let w = world(&db).await;
        let t0 = now_us() - Duration::hours(1);
        open(&w, event("ep-n1", "pat-1", ProtoSeverity::High, t0, 88.0)).await;
        open(&w, event("ep-n2", "pat-1", ProtoSeverity::Medium, t0, 91.0)).await;
        let a = dr("dr-a").with_origin("web 192.0.2.7");

        w.registry
            .insert_observations(&[spo2("pat-1", t0 - Duration::hours(5), 94.0), spo2("pat-1", t0, 88.0)])
            .await
            .unwrap();
        let note = w.svc.add_note(&a, "ep-n1", "  Called the patient: feels fine, device slipped.  ").await.unwrap();
        // The episode page's view: evidence, readings, pages, timeline, notes.
        let view = w.svc.episode_view(&a, "ep-n1").await.unwrap();
        assert_eq!((view.alert.episode_id.as_str(), view.alert.status.as_str()), ("ep-n1", "open"), "{n}");
        assert_eq!(view.row.current.as_ref().map(|c| c.value), Some(88.0), "{n}");
        assert_eq!(view.row.previous.as_ref().map(|p| p.value), Some(94.0), "{n}");
        assert_eq!(view.readings.iter().map(|r| r.value).collect::<Vec<_>>(), [94.0, 88.0], "{n}");
        assert!(!view.row.pages.is_empty() && view.row.next_step.is_some(), "{n}");
        assert!(view.timeline.first().is_some_and(|e| e.entry_type.contains("opened")), "{n}: {:?}", view.timeline);
        assert_eq!(view.notes.len(), 1, "{n}");
        assert_eq!(view.evidence["threshold"], 90.0, "{n}");
        assert!(matches!(w.svc.episode_view(&dr("dr-c"), "ep-n1").await, Err(AdminError::NotFound(_))), "{n}");
        assert_eq!(note.body, "Called the patient: feels fine, device slipped.", "{n}");
        assert!(matches!(w.svc.add_note(&a, "ep-n1", "   ").await, Err(AdminError::Invalid(_))), "{n}");
        assert!(matches!(w.svc.add_note(&dr("dr-c"), "ep-n1", "x").await, Err(AdminError::NotFound(_))), "{n}");
        let sp = Actor::specialist("sp-1");
        assert!(matches!(w.svc.add_note(&sp, "ep-n1", "x").await, Err(AdminError::Forbidden(_))), "{n}");

        // Close: an unknown outcome, or a note without an outcome, is refused and changes nothing.
        let close = |outcome: Option<&str>, note: Option<&str>| AlertAction {
            by: None,
            outcome: outcome.map(str::to_owned),
            note: note.map(str::to_owned),
        };
        let bad = w.svc.close_alert(&a, "ep-n1", &close(Some("cured"), None)).await;
        assert!(matches!(bad, Err(AdminError::Invalid(_))), "{n}: {bad:?}");
        let bad = w.svc.close_alert(&a, "ep-n1", &close(None, Some("text"))).await;
        assert!(matches!(bad, Err(AdminError::Invalid(_))), "{n}");
        assert_eq!(w.svc.alert(&a, "ep-n1").await.unwrap().alert.unwrap().status, "open", "{n}");
        let input = close(Some("treatment_adjusted"), Some("Diuretic dose doubled."));
        assert_eq!(w.svc.close_alert(&a, "ep-n1", &input).await.unwrap().outcome, "closed", "{n}");
        assert_eq!(w.svc.alert(&a, "ep-n1").await.unwrap().alert.unwrap().status, "closed", "{n}");
        let again = w.svc.close_alert(&a, "ep-n1", &close(Some("no_action_needed"), None)).await;
        assert!(matches!(again, Err(AdminError::Conflict(_))), "{n}: {again:?}");
        // The JSON API's close without an outcome still works.
        w.svc.close_alert(&a, "ep-n2", &AlertAction::default()).await.unwrap();

        let notes = w.svc.episode_notes(&a, "ep-n1").await.unwrap();
        assert_eq!(notes.len(), 2, "{n}");
        assert_eq!((notes[0].kind.as_str(), notes[0].author.as_str()), ("note", "dr-a"), "{n}");
        assert_eq!(
            (notes[1].kind.as_str(), notes[1].outcome.as_deref(), notes[1].body.as_str()),
            ("close", Some("treatment_adjusted"), "Diuretic dose doubled."),
            "{n}"
        );
        assert!(matches!(w.svc.episode_notes(&dr("dr-c"), "ep-n1").await, Err(AdminError::NotFound(_))), "{n}");
        let by_patient = w.svc.patient_notes(&a, "pat-1", None, Some(1)).await.unwrap();
        assert_eq!((by_patient.items.len(), by_patient.items[0].kind.as_str()), (1, "close"), "{n}: newest first");
        let rest = w.svc.patient_notes(&a, "pat-1", by_patient.next.as_deref(), Some(1)).await.unwrap();
        assert_eq!((rest.items[0].id, rest.next.is_none()), (note.id, true), "{n}");
        assert!(matches!(w.svc.patient_notes(&dr("dr-c"), "pat-1", None, None).await, Err(AdminError::NotFound(_))));

        // The audit trail: action, outcome, note id and origin; never the text.
        let (ops, q) = (Actor::operator("ops"), AuditQuery { target: Some("ep-n1".into()), ..Default::default() });
        let audit = w.svc.audit(&ops, &q).await.unwrap().items;
        let text = serde_json::to_string(&audit).unwrap();
        assert!(!text.contains("Diuretic") && !text.contains("slipped"), "{n}: clinical text in the audit: {text}");
        let close_entry = audit.iter().find(|e| e.action == "alert.close").expect("close audited");
        assert_eq!(close_entry.details["outcome"], "treatment_adjusted", "{n}");
        assert_eq!(close_entry.details["note_id"], notes[1].id, "{n}");
        assert_eq!(close_entry.details["origin"], "web 192.0.2.7", "{n}");
        let note_entry = audit.iter().find(|e| e.action == "alert.note").expect("note audited");
        assert_eq!(
            (note_entry.details["note_id"].as_i64(), note_entry.patient_id.as_deref()),
            (Some(note.id), Some("pat-1"))
        );
    }
}

/// An answer through the link with `token`, from a web client.
fn link(token: &str) -> Answerer<'_> {
    Answerer::Link { token, origin: Some("web 198.51.100.4") }
}

/// Plain text of a raw email (its first text part, decoded).
fn email_text(raw: &[u8]) -> String {
    let m = mailparse::parse_mail(raw).expect("a parsable email");
    if m.subparts.is_empty() { m.get_body().unwrap() } else { m.subparts[0].get_body().unwrap() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tele_expertise_to_an_account_and_through_a_single_use_link() {
    let dir = tempfile::tempdir().unwrap();
    let Some(sink) = vitalwatch_testkit::SmtpSink::try_start(dir.path()) else { return };
    let smtp = SmtpConfig {
        host: "127.0.0.1".into(),
        port: sink.port,
        security: SmtpSecurity::None,
        username: None,
        password: None,
        hello_name: "vitalwatch.test".into(),
        timeout_secs: 10,
    };
    let mut sent = 0;
    for db in databases("vw_workspace", "expertise").await {
        let n = db.name;
        let mut w = world(&db).await;
        let transport = Arc::new(SmtpTransport::new(&smtp).unwrap());
        let mailer =
            Mailer::new(transport, "VitalWatch <noreply@vitalwatch.example>", "http://127.0.0.1:8080/").unwrap();
        w.svc = w.svc.with_mailer(mailer);
        let t0 = now_us() - Duration::hours(2);
        w.registry
            .insert_observations(&[spo2("pat-1", t0 - Duration::days(2), 96.0), spo2("pat-1", t0, 86.0)])
            .await
            .unwrap();
        open(&w, event("ep-x1", "pat-1", ProtoSeverity::High, t0, 86.0)).await;
        let a = dr("dr-a").with_origin("web 192.0.2.7");
        let sp = Actor::specialist("sp-pneumo");
        let ops = Actor::operator("ops");
        for (id, role) in [("sp-pneumo", "specialist"), ("nurse-x", "nurse")] {
            let new = NewAccount {
                id: id.into(),
                display_name: format!("{id} name"),
                email: Some(format!("{id}@clinic.example")),
                role: role.into(),
                password: Some("a long enough password 1".into()),
                ..Default::default()
            };
            w.svc.create_account(&ops, &new).await.unwrap();
        }
        for not_an_expert in ["nurse-x", "nobody"] {
            let input = ForwardInput { to: ExpertiseTarget::Specialist(not_an_expert.into()), question: "?".into() };
            let r = w.svc.forward(&a, "ep-x1", &input).await;
            assert!(matches!(r, Err(AdminError::Invalid(_))), "{n}: {not_an_expert}: {r:?}");
        }

        // To a specialist account: told by email, their inbox, the snapshot, one answer.
        let input = ForwardInput {
            to: ExpertiseTarget::Specialist("sp-pneumo".into()),
            question: "SpO2 drop: oxygen therapy?".into(),
        };
        assert!(matches!(w.svc.forward(&dr("dr-c"), "ep-x1", &input).await, Err(AdminError::NotFound(_))), "{n}");
        assert!(matches!(w.svc.forward(&sp, "ep-x1", &input).await, Err(AdminError::Forbidden(_))), "{n}");
        let f = w.svc.forward(&a, "ep-x1", &input).await.unwrap();
        assert!(!f.link_emailed && f.specialist_notified, "{n}: no link for an account, a notice");
        sent += 1;
        let mails = sink.wait_for(sent);
        let (raw, rcpt) = mails.last().expect("the specialist's notice");
        assert_eq!(rcpt, &["sp-pneumo@clinic.example".to_owned()], "{n}");
        assert!(email_text(raw).contains(&format!("http://127.0.0.1:8080/expertise/{}", f.id)), "{n}");
        assert!(!email_text(raw).contains("oxygen"), "{n}: no question in the email");
        let rows = w.svc.worklist(&a, &WorklistQuery::default()).await.unwrap().items;
        assert!(rows[0].expertise_open, "{n}: the worklist shows the open request");
        let inbox = w.svc.expertise_inbox(&sp).await.unwrap();
        assert_eq!((inbox.len(), inbox[0].id, inbox[0].question.as_str()), (1, f.id, "SpO2 drop: oxygen therapy?"));
        assert!(w.svc.expertise_inbox(&Actor::specialist("sp-other")).await.unwrap().is_empty(), "{n}");
        let x = w.svc.expertise(&sp, f.id).await.unwrap();
        let snap = x.snapshot.expect("snapshot");
        assert_eq!(snap["episode"]["episode_id"], "ep-x1", "{n}");
        assert_eq!(snap["evidence"]["readings"].as_array().map(Vec::len), Some(2), "{n}");
        let values: Vec<f64> =
            snap["readings"].as_array().unwrap().iter().map(|r| r["value"].as_f64().unwrap()).collect();
        assert_eq!(values, [96.0, 86.0], "{n}: the readings around the episode, for the chart");
        assert!(matches!(w.svc.expertise(&Actor::specialist("sp-other"), f.id).await, Err(AdminError::NotFound(_))));
        assert!(matches!(w.svc.expertise(&dr("dr-c"), f.id).await, Err(AdminError::NotFound(_))), "{n}");
        assert!(w.svc.expertise(&a, f.id).await.is_ok(), "{n}: the requester reads it");
        assert!(matches!(w.svc.answer_expertise(Answerer::Actor(&a), f.id, "x").await, Err(AdminError::Forbidden(_))));
        let done = w.svc.answer_expertise(Answerer::Actor(&sp), f.id, "Start 2 L/min oxygen, recheck in 1 h.").await;
        let done = done.unwrap();
        assert_eq!(done.episode_id, "ep-x1", "{n}");
        assert!(done.notified, "{n}: the responsible physician is emailed");
        sent += 1;
        let again = w.svc.answer_expertise(Answerer::Actor(&sp), f.id, "Other advice").await;
        assert!(matches!(again, Err(AdminError::Conflict(_))), "{n}: {again:?}");
        let on_episode = w.svc.episode_expertise(&a, "ep-x1").await.unwrap();
        assert_eq!(on_episode[0].answer.as_deref(), Some("Start 2 L/min oxygen, recheck in 1 h."), "{n}");
        assert_eq!(on_episode[0].answered_by.as_deref(), Some("sp-pneumo"), "{n}");
        assert!(on_episode[0].notified_at.is_some(), "{n}");
        let mails = sink.wait_for(sent);
        let (raw, rcpt) = mails.last().expect("the physician's email");
        assert_eq!(rcpt, &["dr-a@hospital.example".to_owned()], "{n}");
        let body = email_text(raw);
        assert!(body.contains("http://127.0.0.1:8080/episodes/ep-x1"), "{n}: {body}");
        assert!(!body.contains("oxygen"), "{n}: no advice text in the email");

        // To an email address: a single-use link.
        let input = ForwardInput {
            to: ExpertiseTarget::Email("cardio@clinic.example".into()),
            question: "Heart failure decompensation?".into(),
        };
        let f = w.svc.forward(&a, "ep-x1", &input).await.unwrap();
        assert!(f.link_emailed && !f.specialist_notified, "{n}");
        sent += 1;
        let mails = sink.wait_for(sent);
        let (raw, rcpt) = mails.last().expect("the link email");
        assert_eq!(rcpt, &["cardio@clinic.example".to_owned()], "{n}");
        let body = email_text(raw);
        let start = body.find("/expertise/link/").expect("a link") + "/expertise/link/".len();
        let token: String = body[start..].chars().take_while(char::is_ascii_hexdigit).collect();
        assert_eq!(token.len(), 64, "{n}: 32 random bytes");
        let view = w.svc.expertise_by_link(&token).await.unwrap();
        assert_eq!((view.id, view.question.as_str()), (f.id, "Heart failure decompensation?"), "{n}");
        assert!(view.snapshot.is_some(), "{n}");
        assert!(matches!(w.svc.expertise_by_link("00").await, Err(AdminError::NotFound(_))), "{n}");
        assert!(matches!(w.svc.answer_expertise(link(&token), f.id + 1, "x").await, Err(AdminError::NotFound(_))));
        let done = w.svc.answer_expertise(link(&token), f.id, "Increase furosemide.").await.unwrap();
        assert!(done.notified, "{n}");
        sent += 1;
        let second = w.svc.answer_expertise(link(&token), f.id, "Another answer").await;
        assert!(matches!(second, Err(AdminError::Conflict(_))), "{n}: a link is single use: {second:?}");
        assert!(matches!(w.svc.expertise_by_link(&token).await, Err(AdminError::Conflict(_))), "{n}");
        let x = w.svc.expertise(&a, f.id).await.unwrap();
        assert_eq!(
            (x.answer.as_deref(), x.answered_by.as_deref()),
            (Some("Increase furosemide."), Some("email:cardio@clinic.example"))
        );
        assert!(x.link_used_at.is_some(), "{n}");
        sink.wait_for(sent);

        // An expired link is refused.
        let f = w.svc.forward(&a, "ep-x1", &input).await.unwrap();
        sent += 1;
        let mails = sink.wait_for(sent);
        let body = email_text(&mails.last().unwrap().0);
        let start = body.find("/expertise/link/").unwrap() + "/expertise/link/".len();
        let token: String = body[start..].chars().take_while(char::is_ascii_hexdigit).collect();
        let past = if n == "sqlite" { "0".to_owned() } else { "now() - interval '1 hour'".to_owned() };
        db.exec(&format!("UPDATE expertise_requests SET link_expires_at = {past} WHERE id = {}", f.id)).await;
        let expired = w.svc.answer_expertise(Answerer::Link { token: &token, origin: None }, f.id, "late").await;
        assert!(matches!(expired, Err(AdminError::Forbidden(_))), "{n}: {expired:?}");
        assert!(w.svc.expertise(&a, f.id).await.unwrap().answer.is_none(), "{n}");

        // The audit trail: forward and answer, by id, with origin; never the question or the advice.
        let (ops, q) = (Actor::operator("ops"), AuditQuery { patient: Some("pat-1".into()), ..Default::default() });
        let audit = w.svc.audit(&ops, &q).await.unwrap().items;
        let text = serde_json::to_string(&audit).unwrap();
        assert!(!text.contains("furosemide") && !text.contains("oxygen"), "{n}: {text}");
        let answers: Vec<_> = audit.iter().filter(|e| e.action == "expertise.answer").collect();
        assert_eq!(answers.len(), 2, "{n}");
        assert_eq!(answers[0].actor, "email:cardio@clinic.example", "{n}: newest first");
        assert_eq!(answers[0].details["origin"], "web 198.51.100.4", "{n}");
        assert_eq!(audit.iter().filter(|e| e.action == "expertise.forward").count(), 3, "{n}");
    }
}

/// The worklist of a physician with 5,000 patients (10,000 open episodes,
/// 5,000 resolved ones, 300,000 readings, pages and acknowledgments): the
/// first page and the filtered ones hold the right rows, on both engines.
/// How fast they are is measured by the benchmark (`web/benches/pages.rs`),
/// not here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worklist_page_of_a_5000_patient_care_team_holds_the_right_rows() {
    for db in databases("vw_workspace", "worklist_perf").await {
        let n = db.name;
        let w = world(&db).await;
        // One real episode gives the state and outbox JSON every seeded episode copies.
        open(&w, event("ep-real", "pat-1", ProtoSeverity::High, Utc::now() - Duration::hours(1), 88.0)).await;
        let now = Utc::now().timestamp_micros();
        let seed = if n == "sqlite" {
            format!(
                "WITH RECURSIVE i(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM i WHERE x < 15000)
                 INSERT INTO alerts SELECT 'ep-' || x, 'p-' || (x % 5000 + 1), 'threshold.spo2.low', 'threshold',
                   CASE x % 2 WHEN 0 THEN 'copd' ELSE 'heart_failure' END, '59408-5',
                   CASE x % 4 WHEN 0 THEN 'low' WHEN 1 THEN 'medium' WHEN 2 THEN 'high' ELSE 'critical' END,
                   CASE WHEN x % 3 = 0 THEN 'resolved' ELSE 'open' END, {now} - x * 60000000, {now}, NULL,
                   'SpO2 88 %', '{{\"readings\":[{{\"code\":\"59408-5\",\"value\":88.0,\"unit\":\"%\",\"time_unix_micros\":1}}]}}',
                   'ev-' || x, NULL FROM i;
                 WITH RECURSIVE i(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM i WHERE x < 5000)
                 INSERT INTO alert_care_teams SELECT 'p-' || x, 'dr-a',
                   json_object('patient_id', 'p-' || x, 'responsible', 'dr-a', 'deputies', json_array('dr-b')), {now} FROM i;
                 WITH RECURSIVE i(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM i WHERE x < 300000)
                 INSERT INTO observations SELECT {now} - 86400000000 * 31 + (x / 5000) * 43200000000, 'p-' || (x % 5000 + 1),
                   '59408-5', 90 + x % 8, '%', 'manual', NULL, {now}, 'device', 90 + x % 8, '%', NULL, NULL FROM i;"
            )
        } else {
            "INSERT INTO alerts SELECT 'ep-' || x, 'p-' || (x % 5000 + 1), 'threshold.spo2.low', 'threshold',
               CASE x % 2 WHEN 0 THEN 'copd' ELSE 'heart_failure' END, '59408-5',
               (ARRAY['low', 'medium', 'high', 'critical'])[x % 4 + 1],
               CASE WHEN x % 3 = 0 THEN 'resolved' ELSE 'open' END, now() - x * interval '1 minute', now(), NULL,
               'SpO2 88 %', '{\"readings\":[{\"code\":\"59408-5\",\"value\":88.0,\"unit\":\"%\",\"time_unix_micros\":1}]}',
               'ev-' || x, NULL FROM generate_series(1, 15000) x;
             INSERT INTO alert_care_teams SELECT 'p-' || x, 'dr-a',
               jsonb_build_object('patient_id', 'p-' || x, 'responsible', 'dr-a', 'deputies', jsonb_build_array('dr-b')), now()
               FROM generate_series(1, 5000) x;
             INSERT INTO observations SELECT now() - interval '31 days' + (x / 5000) * interval '12 hours', 'p-' || (x % 5000 + 1),
               '59408-5', 90 + x % 8, '%', 'manual', NULL, now(), 'device', 90 + x % 8, '%', NULL, NULL
               FROM generate_series(1, 300000) x;
             ANALYZE;"
                .to_owned()
        };
        db.exec(&seed).await;
        db.exec(
            "INSERT INTO alert_episodes (episode_id, patient_id, state, severity, next_wakeup, updated_at)
               SELECT episode_id, patient_id, (SELECT state FROM alert_episodes WHERE episode_id = 'ep-real'), severity,
                 (SELECT next_wakeup FROM alert_episodes WHERE episode_id = 'ep-real'),
                 (SELECT updated_at FROM alert_episodes WHERE episode_id = 'ep-real')
               FROM alerts WHERE episode_id LIKE 'ep-%' AND episode_id <> 'ep-real';
             INSERT INTO alert_outbox (key, episode_id, recipient, channel, notification, status, attempts,
                 next_attempt_at, created_at)
               SELECT 'k-' || episode_id, episode_id, 'dr-a', 'email',
                 (SELECT notification FROM alert_outbox WHERE episode_id = 'ep-real' LIMIT 1), 'sent', 1,
                 (SELECT next_attempt_at FROM alert_outbox WHERE episode_id = 'ep-real' LIMIT 1),
                 (SELECT created_at FROM alert_outbox WHERE episode_id = 'ep-real' LIMIT 1)
               FROM alerts WHERE episode_id <> 'ep-real';
             INSERT INTO alert_acknowledgments (episode_id, physician_id, via, severity, at)
               SELECT episode_id, 'dr-a', 'web_app', severity, opened_at FROM alerts
               WHERE episode_id LIKE 'ep-%0';",
        )
        .await;
        if n == "postgres" {
            db.exec("ANALYZE").await;
        }
        let a = dr("dr-a");
        let queries = [
            ("first page", WorklistQuery::default()),
            (
                "acknowledged, high",
                WorklistQuery { acknowledged: Some(true), severity: Some("high".into()), ..Default::default() },
            ),
            ("snoozed", WorklistQuery { snoozed: Some(true), ..Default::default() }),
        ];
        for (what, q) in queries {
            let page = w.svc.worklist(&a, &q).await.unwrap();
            assert!(!page.items.is_empty() || what != "first page", "{n}: {what}");
            if what == "acknowledged, high" {
                assert!(page.items.iter().all(|r| r.severity == "high"), "{n}: {what}");
            }
            if what == "first page" {
                assert_eq!(page.items.len(), 50, "{n}");
                assert!(page.items.iter().all(|r| r.severity == "critical"), "{n}");
                assert!(page.items.windows(2).all(|p| p[0].opened_at <= p[1].opened_at), "{n}: oldest first");
                assert!(page.items.iter().all(|r| r.previous.is_some() && !r.pages.is_empty()), "{n}");
            }
        }
    }
}
