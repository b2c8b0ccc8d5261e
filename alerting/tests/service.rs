//! The alerting role against real services: PostgreSQL (a fresh database per
//! test), the Kafka-protocol broker, an SMTP server (aiosmtpd), a real HTTP
//! server standing in for Twilio, and the role's own HTTP endpoints.
//!
//! Under CI=true a missing service FAILS the test; elsewhere it is skipped
//! with a notice.

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration as StdDuration, Instant};

use chrono::{Duration, Utc};
use common::*;
use prost::Message as _;
use vitalwatch_alerting::service::twilio_signature;
use vitalwatch_alerting::service::{Alerting, Clock, OffsetClock, consumer, dispatcher};
use vitalwatch_alerting::settings::{AlertTransportKind, AlertingSettings, SmsProviderKind, SmtpSecurityKind};
use vitalwatch_alerting::store::{self as astore, AlertStore, OutboxStatus};
use vitalwatch_alerting::*;
use vitalwatch_platform::bus::Producer;
use vitalwatch_platform::bus::memory::MemoryBus;
use vitalwatch_platform::config::BusSettings;
use vitalwatch_platform::shutdown::CancellationToken;
use vitalwatch_schemas::PatientId;
use vitalwatch_schemas::proto::{AlertEvent, AlertEventKind};

const TOPIC: &str = "vitalwatch.alerts.v1";
static DB_COUNTER: AtomicUsize = AtomicUsize::new(0);

// ---------------------------------------------------------------- services

fn pg_admin_url() -> String {
    std::env::var("VW_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh, migrated database on the PostgreSQL server, or None (skip).
pub(crate) async fn fresh_db() -> Option<String> {
    let admin = pg_admin_url();
    let conn = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await;
    if !require("PostgreSQL", conn.is_ok(), &format!("cannot connect to {admin}")) {
        return None;
    }
    let (client, connection) = conn.unwrap();
    tokio::spawn(connection);
    let name = format!(
        "vw_alerting_{}_{}_{}",
        std::process::id(),
        DB_COUNTER.fetch_add(1, Ordering::SeqCst),
        Utc::now().timestamp_micros() % 1_000_000
    );
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("CREATE DATABASE");
    // Marks it for scripts/test.sh, which drops the previous runs' databases.
    client
        .batch_execute(&format!("COMMENT ON DATABASE {name} IS 'vitalwatch test database'"))
        .await
        .expect("COMMENT ON DATABASE");
    let base = admin.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap();
    let url = format!("{base}/{name}");
    vitalwatch_platform::store::open(&url, 500).await.expect("open").migrate().await.expect("migrate");
    Some(url)
}

pub(crate) fn smtp_available() -> bool {
    require("aiosmtpd", aiosmtpd_available(), "pip install aiosmtpd (or apt-get install python3-aiosmtpd)")
}

fn kafka_available() -> bool {
    let addr = std::env::var("VW_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let ok = addr.parse().ok().is_some_and(|a| TcpStream::connect_timeout(&a, StdDuration::from_secs(2)).is_ok());
    require("Kafka-protocol broker", ok, &format!("nothing listens on {addr}"))
}

// ---------------------------------------------------------------- fixtures

pub(crate) const MARTIN_MOBILE: &str = "+33611111111";
const CHEN_MOBILE: &str = "+33622222222";

/// A physician; with a mobile, HIGH and CRITICAL go by email and SMS,
/// otherwise everything goes by email.
pub(crate) fn doctor(id: &str, mobile: Option<&str>) -> Physician {
    let mut p = physician(id, None);
    p.mobile = mobile.map(|m| PhoneNumber::new(m).unwrap());
    if mobile.is_none() {
        p.channels = ChannelPreferences {
            low: vec![Channel::Email],
            medium: vec![Channel::Email],
            high: vec![Channel::Email],
            critical: vec![Channel::Email],
        };
    }
    p
}

pub(crate) async fn setup_team(store: &dyn AlertStore, with_mobiles: bool) {
    store.upsert_physician(&doctor("dr-martin", with_mobiles.then_some(MARTIN_MOBILE))).await.unwrap();
    store.upsert_physician(&doctor("dr-chen", with_mobiles.then_some(CHEN_MOBILE))).await.unwrap();
    store
        .set_care_team(&CareTeam {
            patient_id: PatientId::new("pt-0042").unwrap(),
            responsible: pid("dr-martin"),
            deputies: vec![pid("dr-chen")],
            policy: EscalationPolicy::default(),
        })
        .await
        .unwrap();
}

/// A HIGH "opened" event of episode `episode`.
pub(crate) fn high_event(event_id: &str, episode: &str) -> AlertEvent {
    let mut e = event(event_id, AlertEventKind::Opened, Severity::High, Utc::now());
    e.episode_id = episode.to_string();
    e
}

pub(crate) fn settings(smtp_port: u16, http_port: u16, twilio_base: Option<&str>) -> AlertingSettings {
    let mut s = AlertingSettings {
        ack_secret: Some(String::from_utf8(SECRET.to_vec()).unwrap().into()),
        transport: AlertTransportKind::Smtp,
        ..AlertingSettings::default()
    };
    s.smtp.host = "127.0.0.1".into();
    s.smtp.port = smtp_port;
    s.smtp.security = SmtpSecurityKind::None;
    s.smtp.from = "vitalwatch <alerts@vitalwatch.test>".into();
    s.smtp.timeout_secs = 5;
    s.http_addr = format!("127.0.0.1:{http_port}");
    s.public_base_url = format!("http://127.0.0.1:{http_port}");
    if let Some(base) = twilio_base {
        s.sms.provider = SmsProviderKind::Twilio;
        s.sms.twilio_base_url = base.into();
        s.sms.twilio_account_sid = "AC0123456789".into();
        s.sms.twilio_auth_token = Some("tok-secret".into());
        s.sms.twilio_from = Some("+15005550006".into());
        s.sms.timeout_secs = 5;
    }
    s.outbox_lease_secs = 3;
    s.outbox_poll_ms = 100;
    s.scheduler_poll_ms = 100;
    s.retry_base_delay_ms = 200;
    s.retry_max_delay_ms = 800;
    s
}

/// The role on a database, with a clock the test can advance.
pub(crate) struct Harness {
    pub(crate) alerting: Arc<Alerting>,
    pub(crate) clock: Arc<OffsetClock>,
    pub(crate) store: Arc<dyn AlertStore>,
    bus: MemoryBus,
    pub(crate) base_url: String,
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Harness {
    /// Builds the role; with `start`, runs the consumer (memory bus),
    /// dispatcher, scheduler and HTTP server.
    pub(crate) async fn new(db: &str, s: &AlertingSettings, start: bool) -> Harness {
        let store = astore::open(db).await.unwrap();
        let clock = Arc::new(OffsetClock::new());
        let alerting = Arc::new(Alerting::from_settings(s, store.clone(), clock.clone()).unwrap());
        let shutdown = CancellationToken::new();
        let bus = MemoryBus::new(1000);
        let mut tasks = Vec::new();
        if start {
            let listener = tokio::net::TcpListener::bind(&s.http_addr).await.unwrap();
            tasks = alerting.spawn_background(Some(listener), &shutdown);
            let mut c = bus.consumer(&s.group, &[TOPIC]);
            let (a, sd) = (alerting.clone(), shutdown.clone());
            tasks.push(tokio::spawn(async move {
                consumer::run(&a, &mut c, &sd).await.unwrap();
            }));
        }
        Harness { alerting, clock, store, bus, base_url: s.public_base_url.clone(), shutdown, tasks }
    }

    pub(crate) async fn publish(&self, e: &AlertEvent) {
        self.bus.send(TOPIC, e.patient_id.as_bytes(), e.encode_to_vec()).await.unwrap().await.unwrap();
    }

    pub(crate) async fn stop(self) {
        self.shutdown.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

pub(crate) fn ep(s: &str) -> EpisodeId {
    EpisodeId::new(s).unwrap()
}

/// Waits until `f` holds (up to `secs`).
pub(crate) async fn eventually<F: AsyncFnMut() -> bool>(secs: u64, mut f: F) -> bool {
    let deadline = Instant::now() + StdDuration::from_secs(secs);
    loop {
        if f().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
}

pub(crate) fn text_of(raw: &[u8]) -> (String, String, String) {
    let parsed = mailparse::parse_mail(raw).unwrap();
    let header = |n: &str| {
        parsed.headers.iter().find(|h| h.get_key().eq_ignore_ascii_case(n)).map(|h| h.get_value()).unwrap_or_default()
    };
    let (to, mid) = (header("To"), header("Message-ID"));
    let mut stack = vec![&parsed];
    let mut text = String::new();
    while let Some(p) = stack.pop() {
        if p.ctype.mimetype == "text/plain" {
            text.push_str(&p.get_body().unwrap());
        }
        stack.extend(p.subparts.iter());
    }
    (to, mid, text)
}

fn ack_link(text: &str) -> String {
    let start = text.find("Acknowledge: ").expect("ack link in the email") + "Acknowledge: ".len();
    text[start..].split_whitespace().next().unwrap().to_string()
}

pub(crate) async fn post_form(url: &str, pairs: &[(&str, &str)], headers: &[(&str, String)]) -> (u16, String) {
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs.iter()).finish();
    let client: Client<_, Full<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = hyper::Request::post(url).header("content-type", "application/x-www-form-urlencoded");
    for (k, v) in headers {
        req = req.header(*k, v.as_str());
    }
    let resp = client.request(req.body(Full::new(bytes::Bytes::from(body))).unwrap()).await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&text).into_owned())
}

pub(crate) async fn get(url: &str) -> (u16, String) {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let client: Client<_, Empty<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let resp = client.get(url.parse().unwrap()).await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&text).into_owned())
}

pub(crate) fn token_of(link: &str) -> String {
    let q = link.split_once('?').unwrap().1;
    form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "t").unwrap().1.into_owned()
}

/// Publishes `e` on a fresh Kafka topic (`vitalwatch.alerts.{name}.…`) and
/// runs the alerting role on it; returns its shutdown token and task.
async fn role_on_kafka(
    s: &AlertingSettings,
    store: Arc<dyn AlertStore>,
    name: &str,
    e: &AlertEvent,
) -> (CancellationToken, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let topic = format!("vitalwatch.alerts.{name}.{}.{}", std::process::id(), Utc::now().timestamp_micros());
    let bus = BusSettings {
        brokers: std::env::var("VW_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into()),
        partitions: 2,
        ..BusSettings::default()
    };
    vitalwatch_platform::bus::kafka::ensure_topics(&bus, &[topic.as_str()]).await.unwrap();
    let producer = vitalwatch_platform::bus::kafka::KafkaProducer::new(&bus, "alerting-test").unwrap();
    producer.send(&topic, e.patient_id.as_bytes(), e.encode_to_vec()).await.unwrap().await.unwrap();
    let mut consumer = vitalwatch_platform::bus::kafka::KafkaConsumer::new(
        &bus,
        &format!("{topic}-g"),
        "alerting-test",
        &[topic.as_str()],
    )
    .unwrap();
    let shutdown = CancellationToken::new();
    let (s, sd) = (s.clone(), shutdown.clone());
    let role = tokio::spawn(async move { vitalwatch_alerting::run(&s, &mut consumer, store, sd).await });
    (shutdown, role)
}

// ---------------------------------------------------------------- tests

/// AlertEvent on Kafka -> the responsible physician's email, received by a
/// real SMTP server, with the right content and a working, single-use ack link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_alert_event_emails_the_responsible_physician_with_an_ack_link() {
    let Some(db) = fresh_db().await else { return };
    if !smtp_available() || !kafka_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let sink = SmtpSink::start(free_port(), tmp.path());
    let s = settings(sink.port, free_port(), None);
    let store = astore::open(&db).await.unwrap();
    setup_team(store.as_ref(), false).await;

    let e = high_event("evt-1", "ep-kafka-1");
    let (shutdown, role) = role_on_kafka(&s, store.clone(), "test", &e).await;

    let msgs = sink.wait_for(1);
    assert_eq!(msgs.len(), 1, "one email");
    let (raw, rcpt) = &msgs[0];
    assert_eq!(rcpt, &vec!["dr-martin@hospital.example".to_string()]);
    let (to, mid, text) = text_of(raw);
    assert!(to.contains("dr-martin@hospital.example"), "{to}");
    assert!(mid.ends_with("@vitalwatch.test>"), "deterministic Message-ID: {mid}");
    assert!(text.contains("pt-0042") && text.contains("HIGH"), "{text}");
    let link = ack_link(&text);
    assert!(link.starts_with(&format!("{}/ack?t=", s.public_base_url)), "{link}");

    // GET only shows a confirmation page; POST acknowledges once.
    let (status, page) = get(&link).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("<form"), "{page}");
    assert!(store.episode(&ep("ep-kafka-1")).await.unwrap().unwrap().acks.is_empty());
    let token = token_of(&link);
    let (status, page) = post_form(&format!("{}/ack", s.public_base_url), &[("t", &token)], &[]).await;
    assert_eq!(status, 200, "{page}");
    let (status, _) = post_form(&format!("{}/ack", s.public_base_url), &[("t", &token)], &[]).await;
    assert_eq!(status, 409, "single use");
    let state = store.episode(&ep("ep-kafka-1")).await.unwrap().unwrap();
    assert_eq!(state.acks.len(), 1);
    assert_eq!(state.acks[0].by, pid("dr-martin"));
    assert_eq!(state.acks[0].via, AckVia::Link);
    let (status, _) = get(&format!("{}/healthz", s.public_base_url)).await;
    assert_eq!(status, 200);
    let (status, _) = get(&format!("{}/readyz", s.public_base_url)).await;
    assert_eq!(status, 200);

    shutdown.cancel();
    role.await.unwrap().unwrap();
}

/// The ack link stops escalation: no deputy page after the policy delay;
/// the same delay without acknowledgment pages the deputy (control).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_link_stops_escalation_and_unacked_episode_escalates() {
    let Some(db) = fresh_db().await else { return };
    if !smtp_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let sink = SmtpSink::start(free_port(), tmp.path());
    let s = settings(sink.port, free_port(), None);
    let h = Harness::new(&db, &s, true).await;
    setup_team(h.store.as_ref(), false).await;

    h.publish(&high_event("evt-a", "ep-acked")).await;
    h.publish(&high_event("evt-b", "ep-unacked")).await;
    let msgs = sink.wait_for(2);
    assert_eq!(msgs.len(), 2);
    // Find the email of ep-acked through its token's claims.
    let mut link_of_acked = None;
    for (raw, _) in &msgs {
        let link = ack_link(&text_of(raw).2);
        let claims = h.alerting.signer.verify(&token_of(&link), Utc::now()).unwrap();
        if claims.episode_id == ep("ep-acked") {
            link_of_acked = Some(link);
        }
    }
    let link = link_of_acked.expect("email of ep-acked");
    let (status, page) = post_form(&format!("{}/ack", h.base_url), &[("t", &token_of(&link))], &[]).await;
    assert_eq!(status, 200, "{page}");

    // HIGH escalates to the deputies after 15 min: let 16 min pass.
    h.clock.advance(Duration::minutes(16));
    let chen = sink.wait_for(3);
    assert_eq!(chen.len(), 3, "the unacknowledged episode escalates to the deputy");
    tokio::time::sleep(StdDuration::from_millis(1500)).await;
    let all = sink.messages();
    assert_eq!(all.len(), 3, "no page for the acknowledged episode");
    assert_eq!(all[2].1, vec!["dr-chen@hospital.example".to_string()]);
    let (_, _, text) = text_of(&all[2].0);
    let claims = h.alerting.signer.verify(&token_of(&ack_link(&text)), Utc::now()).unwrap();
    assert_eq!(claims.episode_id, ep("ep-unacked"));

    let rows = h.store.outbox(&ep("ep-acked")).await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let audit = h.store.audit_trail(&ep("ep-acked")).await.unwrap();
    assert!(audit.iter().any(|r| matches!(
        &r.entry,
        AuditEntry::Acknowledged { by, via: AckVia::Link, .. } if *by == pid("dr-martin")
    )));
    assert!(audit.iter().any(|r| matches!(&r.entry, AuditEntry::DeliveryAttempt { .. })));
    h.stop().await;
}

/// An inbound "ACK <code>" (Twilio-style, signed) stops escalation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_reply_ack_stops_escalation() {
    let Some(db) = fresh_db().await else { return };
    if !smtp_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let sink = SmtpSink::start(free_port(), tmp.path());
    let (twilio, log) = spawn_http_server(vec![(201, r#"{"sid":"SM1","status":"queued"}"#.into())]).await;
    let s = settings(sink.port, free_port(), Some(&twilio));
    let h = Harness::new(&db, &s, true).await;
    setup_team(h.store.as_ref(), true).await;

    h.publish(&high_event("evt-1", "ep-sms")).await;
    assert_eq!(sink.wait_for(1).len(), 1);
    assert!(eventually(10, async || log.lock().unwrap().len() == 1).await, "one SMS to the responsible physician");
    let sms = log.lock().unwrap()[0].form();
    let get_f = |k: &str| sms.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone()).unwrap();
    assert_eq!(get_f("To"), MARTIN_MOBILE);
    let body = get_f("Body");
    let code: String =
        body[body.find("ACK ").expect("code in SMS") + 4..].chars().take_while(|c| c.is_ascii_digit()).collect();
    assert!(code.len() >= 4, "{body}");

    let url = format!("{}/sms/inbound", h.base_url);
    let reply = format!("ack {code}");
    let params = vec![
        ("From".to_string(), MARTIN_MOBILE.to_string()),
        ("To".to_string(), "+15005550006".to_string()),
        ("Body".to_string(), reply.clone()),
    ];
    let pairs: Vec<(&str, &str)> = params.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    // A forged request is refused.
    let (status, _) = post_form(&url, &pairs, &[("X-Twilio-Signature", "bm9wZQ==".into())]).await;
    assert_eq!(status, 403);
    let sig = twilio_signature::sign("tok-secret", &url, &params);
    let (status, twiml) = post_form(&url, &pairs, &[("X-Twilio-Signature", sig)]).await;
    assert_eq!(status, 200);
    assert!(twiml.contains("Acknowledged"), "{twiml}");

    h.clock.advance(Duration::minutes(20));
    tokio::time::sleep(StdDuration::from_millis(1500)).await;
    assert_eq!(sink.messages().len(), 1, "no deputy email");
    assert_eq!(log.lock().unwrap().len(), 1, "no deputy SMS");
    let state = h.store.episode(&ep("ep-sms")).await.unwrap().unwrap();
    assert_eq!(state.acks.len(), 1);
    assert_eq!(state.acks[0].via, AckVia::SmsReply);
    assert_eq!(state.acks[0].by, pid("dr-martin"));
    h.stop().await;
}

/// The same alert event delivered three times (before and after the page
/// went out) pages once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_alert_event_does_not_page_twice() {
    let Some(db) = fresh_db().await else { return };
    if !smtp_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let sink = SmtpSink::start(free_port(), tmp.path());
    let s = settings(sink.port, free_port(), None);
    let h = Harness::new(&db, &s, true).await;
    setup_team(h.store.as_ref(), false).await;
    let e = high_event("evt-dup", "ep-dup");
    h.publish(&e).await;
    h.publish(&e).await;
    assert_eq!(sink.wait_for(1).len(), 1);
    h.publish(&e).await;
    tokio::time::sleep(StdDuration::from_millis(1500)).await;
    assert_eq!(sink.messages().len(), 1, "paged once");
    let rows = h.store.outbox(&ep("ep-dup")).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, OutboxStatus::Sent);
    let opened = h
        .store
        .audit_trail(&ep("ep-dup"))
        .await
        .unwrap()
        .iter()
        .filter(|r| matches!(r.entry, AuditEntry::EpisodeOpened { .. }))
        .count();
    assert_eq!(opened, 1);
    h.stop().await;
}

/// SMTP down for a while: retried with backoff, delivered once when it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_down_then_up_delivers_once() {
    let Some(db) = fresh_db().await else { return };
    if !smtp_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let s = settings(port, free_port(), None);
    let h = Harness::new(&db, &s, true).await;
    setup_team(h.store.as_ref(), false).await;
    h.publish(&high_event("evt-1", "ep-down")).await;
    assert!(
        eventually(10, async || {
            let rows = h.store.outbox(&ep("ep-down")).await.unwrap();
            rows.len() == 1 && rows[0].attempts >= 2 && rows[0].status == OutboxStatus::Pending
        })
        .await,
        "retried while SMTP is down"
    );
    let sink = SmtpSink::start(port, tmp.path());
    assert_eq!(sink.wait_for(1).len(), 1);
    tokio::time::sleep(StdDuration::from_millis(1500)).await;
    assert_eq!(sink.messages().len(), 1, "delivered exactly once");
    let rows = h.store.outbox(&ep("ep-down")).await.unwrap();
    assert_eq!(rows[0].status, OutboxStatus::Sent);
    let audit = h.store.audit_trail(&ep("ep-down")).await.unwrap();
    let transient = audit
        .iter()
        .filter(|r| matches!(&r.entry, AuditEntry::DeliveryAttempt { outcome: AttemptOutcome::Transient { .. }, .. }))
        .count();
    let delivered = audit
        .iter()
        .filter(|r| matches!(&r.entry, AuditEntry::DeliveryAttempt { outcome: AttemptOutcome::Delivered { .. }, .. }))
        .count();
    assert!(transient >= 1 && delivered == 1, "{transient} transient, {delivered} delivered");
    h.stop().await;
}

/// Two dispatchers (two connections, two worker ids) share one outbox: every
/// notification is sent exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_dispatchers_send_each_notification_exactly_once() {
    let Some(db) = fresh_db().await else { return };
    if !smtp_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let sink = SmtpSink::start(free_port(), tmp.path());
    let mut s = settings(sink.port, free_port(), None);
    s.outbox_batch = 2;
    let h = Harness::new(&db, &s, false).await;
    setup_team(h.store.as_ref(), false).await;
    const N: usize = 16;
    for i in 0..N {
        consumer::handle_event(&h.alerting, high_event(&format!("evt-{i}"), &format!("ep-{i}"))).await.unwrap();
    }
    let shutdown = CancellationToken::new();
    let mut tasks = Vec::new();
    for w in 0..2 {
        let store = astore::open(&db).await.unwrap();
        let mut a = Alerting::from_settings(&s, store, h.clock.clone()).unwrap();
        a.config.worker_id = format!("dispatcher-{w}");
        tasks.push(tokio::spawn(dispatcher::run(Arc::new(a), shutdown.clone())));
    }
    assert_eq!(sink.wait_for(N).len(), N);
    tokio::time::sleep(StdDuration::from_millis(1500)).await;
    let msgs = sink.messages();
    assert_eq!(msgs.len(), N, "each notification exactly once");
    let mut ids: Vec<String> = msgs.iter().map(|(raw, _)| text_of(raw).1).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), N, "distinct Message-IDs");
    for i in 0..N {
        let rows = h.store.outbox(&ep(&format!("ep-{i}"))).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].status, OutboxStatus::Sent);
        assert_eq!(rows[0].attempts, 1);
    }
    shutdown.cancel();
    for t in tasks {
        t.await.unwrap();
    }
}

// ------------------------------------------------ SIGKILL during a send

/// A minimal SMTP server that can stall after RCPT TO (mid-conversation,
/// before any message data is accepted) and records the accepted messages.
struct StallingSmtp {
    port: u16,
    stall: Arc<AtomicBool>,
    stalled: Arc<AtomicUsize>,
    accepted: Arc<std::sync::Mutex<Vec<String>>>,
}

impl StallingSmtp {
    fn start() -> StallingSmtp {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stall = Arc::new(AtomicBool::new(true));
        let stalled = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (st, sd, ac) = (stall.clone(), stalled.clone(), accepted.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (st, sd, ac) = (st.clone(), sd.clone(), ac.clone());
                std::thread::spawn(move || {
                    let _ = Self::session(stream, &st, &sd, &ac);
                });
            }
        });
        StallingSmtp { port, stall, stalled, accepted }
    }

    fn session(
        stream: TcpStream,
        stall: &AtomicBool,
        stalled: &AtomicUsize,
        accepted: &std::sync::Mutex<Vec<String>>,
    ) -> std::io::Result<()> {
        let mut w = stream.try_clone()?;
        let mut r = BufReader::new(stream);
        w.write_all(b"220 stall.test ESMTP\r\n")?;
        let mut line = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let cmd = line.trim_end().to_ascii_uppercase();
            if cmd.starts_with("EHLO") || cmd.starts_with("HELO") {
                w.write_all(b"250 stall.test\r\n")?;
            } else if cmd.starts_with("RCPT") {
                if stall.load(Ordering::SeqCst) {
                    stalled.fetch_add(1, Ordering::SeqCst);
                    // Hold the conversation until the client goes away.
                    while r.read_line(&mut line)? != 0 {}
                    return Ok(());
                }
                w.write_all(b"250 OK\r\n")?;
            } else if cmd.starts_with("DATA") {
                w.write_all(b"354 go ahead\r\n")?;
                let mut data = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line)? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" {
                        break;
                    }
                    data.push_str(&line);
                }
                accepted.lock().unwrap().push(data);
                w.write_all(b"250 OK queued\r\n")?;
            } else if cmd.starts_with("QUIT") {
                w.write_all(b"221 bye\r\n")?;
                return Ok(());
            } else {
                w.write_all(b"250 OK\r\n")?;
            }
        }
    }
}

/// Not a test on its own: the dispatcher process that the SIGKILL test
/// starts (this test binary re-executed with VW_CHILD_DB set).
#[tokio::test]
#[ignore = "child process of dispatcher_killed_mid_send_does_not_page_twice"]
async fn child_dispatcher() {
    let (Ok(db), Ok(port)) = (std::env::var("VW_CHILD_DB"), std::env::var("VW_CHILD_SMTP_PORT")) else {
        return;
    };
    let s = settings(port.parse().unwrap(), free_port(), None);
    let store = astore::open(&db).await.unwrap();
    let mut a = Alerting::from_settings(&s, store, Arc::new(service::SystemClock)).unwrap();
    a.config.worker_id = "child-dispatcher".into();
    dispatcher::run(Arc::new(a), CancellationToken::new()).await;
}

/// A dispatcher SIGKILLed in the middle of an SMTP conversation: after the
/// lease another dispatcher sends the page, and it arrives exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatcher_killed_mid_send_does_not_page_twice() {
    let Some(db) = fresh_db().await else { return };
    let smtp = StallingSmtp::start();
    let s = settings(smtp.port, free_port(), None);
    let h = Harness::new(&db, &s, false).await;
    setup_team(h.store.as_ref(), false).await;
    consumer::handle_event(&h.alerting, high_event("evt-1", "ep-kill")).await.unwrap();

    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "service::child_dispatcher", "--ignored", "--nocapture"])
        .env("VW_CHILD_DB", &db)
        .env("VW_CHILD_SMTP_PORT", smtp.port.to_string())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        eventually(30, async || smtp.stalled.load(Ordering::SeqCst) >= 1).await,
        "the child dispatcher started sending"
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    smtp.stall.store(false, Ordering::SeqCst);
    let rows = h.store.outbox(&ep("ep-kill")).await.unwrap();
    assert_eq!(rows[0].status, OutboxStatus::Pending, "the killed send was not recorded");

    let shutdown = CancellationToken::new();
    let task = tokio::spawn(dispatcher::run(h.alerting.clone(), shutdown.clone()));
    assert!(eventually(15, async || smtp.accepted.lock().unwrap().len() == 1).await, "sent after the lease");
    tokio::time::sleep(StdDuration::from_millis(1500)).await;
    assert_eq!(smtp.accepted.lock().unwrap().len(), 1, "exactly one page");
    let rows = h.store.outbox(&ep("ep-kill")).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, OutboxStatus::Sent);
    shutdown.cancel();
    task.await.unwrap();
}

// ------------------------------------------------ embedded mode

/// SQLite + in-memory bus + file transports: `run` writes the email as an
/// .eml file and the SMS as a JSON line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_mode_writes_eml_and_sms_files() {
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/vitalwatch.db", tmp.path().display());
    vitalwatch_platform::store::open(&url, 500).await.unwrap().migrate().await.unwrap();
    let store = astore::open(&url).await.unwrap();
    setup_team(store.as_ref(), true).await;
    let mut s = AlertingSettings {
        transport: AlertTransportKind::File,
        file_dir: tmp.path().join("alerts"),
        ..AlertingSettings::default()
    };
    let port = free_port();
    s.http_addr = format!("127.0.0.1:{port}");
    s.public_base_url = format!("http://127.0.0.1:{port}");
    s.outbox_poll_ms = 100;
    let bus = MemoryBus::new(100);
    let mut consumer = bus.consumer(&s.group, &[TOPIC]);
    let shutdown = CancellationToken::new();
    let role = {
        let (s, store, sd) = (s.clone(), store.clone(), shutdown.clone());
        tokio::spawn(async move { vitalwatch_alerting::run(&s, &mut consumer, store, sd).await })
    };
    let e = high_event("evt-1", "ep-embedded");
    bus.send(TOPIC, e.patient_id.as_bytes(), e.encode_to_vec()).await.unwrap().await.unwrap();
    let dir = s.file_dir.clone();
    assert!(
        eventually(15, async || {
            let emls = std::fs::read_dir(&dir)
                .map(|d| d.filter_map(Result::ok).filter(|f| f.path().extension().is_some_and(|x| x == "eml")).count())
                .unwrap_or(0);
            let sms = std::fs::read_to_string(dir.join("sms.jsonl")).unwrap_or_default();
            emls == 1 && sms.lines().count() == 1
        })
        .await,
        "one .eml and one SMS line"
    );
    assert!(dir.join("ack.secret").exists(), "embedded secret created");
    let sms = std::fs::read_to_string(dir.join("sms.jsonl")).unwrap();
    assert!(sms.contains(MARTIN_MOBILE), "{sms}");
    // The files are written before the dispatcher records each send.
    assert!(
        eventually(10, async || {
            let rows = store.outbox(&ep("ep-embedded")).await.unwrap();
            rows.len() == 2 && rows.iter().all(|r| r.status == OutboxStatus::Sent)
        })
        .await,
        "{:?}",
        store.outbox(&ep("ep-embedded")).await.unwrap()
    );
    shutdown.cancel();
    role.await.unwrap().unwrap();
}

// ------------------------------------------------ audit trail

/// The audit table refuses UPDATE and DELETE (database triggers), on
/// PostgreSQL and on SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_trail_is_append_only() {
    // SQLite.
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("a.db");
    let url = format!("sqlite://{}", path.display());
    vitalwatch_platform::store::open(&url, 500).await.unwrap().migrate().await.unwrap();
    let s = settings(free_port(), free_port(), None);
    let h = Harness::new(&url, &s, false).await;
    setup_team(h.store.as_ref(), false).await;
    consumer::handle_event(&h.alerting, high_event("evt-1", "ep-audit")).await.unwrap();
    assert!(h.store.audit_trail(&ep("ep-audit")).await.unwrap().len() >= 2);
    let c = rusqlite::Connection::open(&path).unwrap();
    assert!(c.execute("UPDATE alert_audit SET entry_type = 'x'", []).is_err());
    assert!(c.execute("DELETE FROM alert_audit", []).is_err());

    // PostgreSQL.
    let Some(db) = fresh_db().await else { return };
    let h = Harness::new(&db, &s, false).await;
    setup_team(h.store.as_ref(), false).await;
    consumer::handle_event(&h.alerting, high_event("evt-1", "ep-audit")).await.unwrap();
    let (client, conn) = tokio_postgres::connect(&db, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    assert!(client.execute("UPDATE alert_audit SET entry_type = 'x'", &[]).await.is_err());
    assert!(client.execute("DELETE FROM alert_audit", &[]).await.is_err());
    let n: i64 = client.query_one("SELECT count(*) FROM alert_audit", &[]).await.unwrap().get(0);
    assert!(n >= 2);
}

/// A RESOLVED event sends the all-clear to everyone paged and stops escalation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolved_event_sends_all_clear_and_stops_escalation() {
    let Some(db) = fresh_db().await else { return };
    if !smtp_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let sink = SmtpSink::start(free_port(), tmp.path());
    let s = settings(sink.port, free_port(), None);
    let h = Harness::new(&db, &s, true).await;
    setup_team(h.store.as_ref(), false).await;
    h.publish(&high_event("evt-1", "ep-res")).await;
    assert_eq!(sink.wait_for(1).len(), 1);
    let mut resolved = event("evt-2", AlertEventKind::Resolved, Severity::High, Utc::now());
    resolved.episode_id = "ep-res".into();
    h.publish(&resolved).await;
    let msgs = sink.wait_for(2);
    assert_eq!(msgs.len(), 2, "all-clear");
    assert_eq!(msgs[1].1, vec!["dr-martin@hospital.example".to_string()]);
    h.clock.advance(Duration::minutes(30));
    tokio::time::sleep(StdDuration::from_millis(1500)).await;
    assert_eq!(sink.messages().len(), 2, "no escalation after resolution");
    let state = h.store.episode(&ep("ep-res")).await.unwrap().unwrap();
    assert!(state.resolved_at.is_some());
    h.stop().await;
}

/// A permanent SMS failure (Twilio 400) falls back to email through the
/// outbox, and the fallback is audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_sms_failure_falls_back_to_email() {
    let Some(db) = fresh_db().await else { return };
    if !smtp_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let sink = SmtpSink::start(free_port(), tmp.path());
    let (twilio, log) = spawn_http_server(vec![(400, r#"{"code":21211,"message":"invalid To"}"#.into())]).await;
    let s = settings(sink.port, free_port(), Some(&twilio));
    let h = Harness::new(&db, &s, true).await;
    setup_team(h.store.as_ref(), true).await;
    // dr-martin wants HIGH alerts by SMS only.
    let mut martin = doctor("dr-martin", Some(MARTIN_MOBILE));
    martin.channels.high = vec![Channel::Sms];
    h.store.upsert_physician(&martin).await.unwrap();

    h.publish(&high_event("evt-1", "ep-fallback")).await;
    let msgs = sink.wait_for(1);
    assert_eq!(msgs.len(), 1, "fallback email");
    assert_eq!(msgs[0].1, vec!["dr-martin@hospital.example".to_string()]);
    assert_eq!(log.lock().unwrap().len(), 1, "a permanent failure is not retried");
    // The SMTP server has the email before the dispatcher records the send.
    assert!(
        eventually(10, async || {
            let rows = h.store.outbox(&ep("ep-fallback")).await.unwrap();
            rows.iter().any(|r| r.notification.channel == Channel::Email && r.status == OutboxStatus::Sent)
        })
        .await,
        "the fallback email is recorded as sent"
    );
    let rows = h.store.outbox(&ep("ep-fallback")).await.unwrap();
    let by_channel = |c: Channel| rows.iter().find(|r| r.notification.channel == c).unwrap();
    assert_eq!(by_channel(Channel::Sms).status, OutboxStatus::Failed);
    assert_eq!(by_channel(Channel::Email).status, OutboxStatus::Sent);
    assert_eq!(by_channel(Channel::Email).notification.fallback_from, Some(Channel::Sms));
    let audit = h.store.audit_trail(&ep("ep-fallback")).await.unwrap();
    assert!(audit.iter().any(|r| matches!(r.entry, AuditEntry::FallbackScheduled { .. })));
    h.stop().await;
}

// ------------------------------------------------ digests and fallbacks

/// A MEDIUM "opened" event of `episode`.
fn medium_event(event_id: &str, episode: &str) -> AlertEvent {
    let mut e = event(event_id, AlertEventKind::Opened, Severity::Medium, Utc::now());
    e.episode_id = episode.to_string();
    e
}

fn header_of(raw: &[u8], name: &str) -> String {
    let parsed = mailparse::parse_mail(raw).unwrap();
    parsed.headers.iter().find(|h| h.get_key().eq_ignore_ascii_case(name)).map(|h| h.get_value()).unwrap_or_default()
}

/// The hourly cap folds notifications into a digest; at the end of the cap
/// window ONE digest email goes out (even with `replicas` alerting replicas
/// on the same database), listing the open episode with an ack link and the
/// one acknowledged meanwhile as acknowledged; the digest's link acknowledges.
async fn digest_scenario(db: &str, replicas: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let sink = SmtpSink::start(free_port(), tmp.path());
    let mut hs = Vec::new();
    for _ in 0..replicas {
        hs.push(Harness::new(db, &settings(sink.port, free_port(), None), true).await);
    }
    let h = &hs[0];
    setup_team(h.store.as_ref(), false).await;
    let mut martin = doctor("dr-martin", None);
    martin.hourly_cap = Some(1);
    h.store.upsert_physician(&martin).await.unwrap();
    let martin_id = pid("dr-martin");

    h.publish(&medium_event("evt-1", "ep-d1")).await;
    assert_eq!(sink.wait_for(1).len(), 1, "the first page goes out and reaches the cap");
    h.publish(&medium_event("evt-2", "ep-d2")).await;
    assert!(eventually(15, async || h.store.pending_digest(&martin_id).await.unwrap().len() == 1).await);
    h.publish(&medium_event("evt-3", "ep-d3")).await;
    assert!(
        eventually(15, async || h.store.pending_digest(&martin_id).await.unwrap().len() == 2).await,
        "two notifications folded into the digest"
    );
    // ep-d3 is acknowledged (web app) before the digest goes out.
    let ack = astore::Action::Ack { by: martin_id.clone(), via: AckVia::WebApp, nonce: None, sent_for: None };
    h.store.transition(&ep("ep-d3"), ack, &h.alerting.options, h.clock.now()).await.unwrap();
    tokio::time::sleep(StdDuration::from_millis(1500)).await;
    assert_eq!(sink.messages().len(), 1, "no digest before the end of the cap window");

    for h in &hs {
        h.clock.advance(Duration::minutes(61));
    }
    let msgs = sink.wait_for(2);
    assert_eq!(msgs.len(), 2, "the digest email");
    // Every replica ticks several times more: still exactly one digest.
    tokio::time::sleep(StdDuration::from_millis(2500)).await;
    let msgs = sink.messages();
    assert_eq!(msgs.len(), 2, "exactly one digest email");
    let (raw, rcpt) = &msgs[1];
    assert_eq!(rcpt, &vec!["dr-martin@hospital.example".to_string()]);
    let subject = header_of(raw, "Subject");
    assert!(subject.contains("Digest - 2 alert(s), 1 open"), "{subject}");
    let (_, _, text) = text_of(raw);
    assert!(text.contains("MEDIUM - patient pt-0042 - SpO2 87 %"), "{text}");
    assert!(text.contains("(Europe/Paris)"), "times in the physician's zone: {text}");
    assert!(text.contains("acknowledged by dr-martin"), "{text}");
    assert_eq!(text.matches("Acknowledge: ").count(), 1, "a link for the open episode only: {text}");
    let link = ack_link(&text);
    let claims = h.alerting.signer.verify(&token_of(&link), h.clock.now()).unwrap();
    assert_eq!(claims.episode_id, ep("ep-d2"));
    assert_eq!(claims.recipient, martin_id);
    let (status, page) = post_form(&format!("{}/ack", h.base_url), &[("t", &token_of(&link))], &[]).await;
    assert_eq!(status, 200, "{page}");
    let d2 = h.store.episode(&ep("ep-d2")).await.unwrap().unwrap();
    assert!(d2.acks.iter().any(|a| a.by == martin_id && a.via == AckVia::Link), "{:?}", d2.acks);

    // Durable and audited: one sent digest row; both episodes' trails show it.
    assert!(h.store.pending_digest(&martin_id).await.unwrap().is_empty());
    let digests: Vec<_> = h
        .store
        .outbox(&ep("ep-d2"))
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.notification.step == Step::Digest)
        .collect();
    assert_eq!(digests.len(), 1, "{digests:?}");
    assert_eq!(digests[0].status, OutboxStatus::Sent);
    assert_eq!(h.store.digest_entries(&digests[0].notification.key).await.unwrap().len(), 2);
    for (episode, status) in [("ep-d2", "open"), ("ep-d3", "acknowledged")] {
        let audit = h.store.audit_trail(&ep(episode)).await.unwrap();
        assert!(audit.iter().any(|r| matches!(r.entry, AuditEntry::NotificationDigested { .. })), "{episode}");
        assert!(audit.iter().any(|r| matches!(r.entry, AuditEntry::DigestFormed { .. })), "{episode}");
        assert!(
            audit.iter().any(|r| matches!(&r.entry, AuditEntry::DigestDelivered { status: s, .. } if s == status)),
            "{episode}: {audit:?}"
        );
    }
    for h in hs {
        h.stop().await;
    }
}

/// Digest on PostgreSQL with two alerting replicas sharing the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capped_notifications_go_out_as_one_digest_with_two_replicas() {
    let Some(db) = fresh_db().await else { return };
    if !smtp_available() {
        return;
    }
    digest_scenario(&db, 2).await;
}

/// Digest on SQLite (embedded mode store).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capped_notifications_go_out_as_a_digest_on_sqlite() {
    if !smtp_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", tmp.path().join("digest.db").display());
    vitalwatch_platform::store::open(&url, 500).await.unwrap().migrate().await.unwrap();
    digest_scenario(&url, 1).await;
}

/// After a permanent SMS failure fell back to email, the reminder and the
/// all-clear reach the physician by email, and the failed channel is not
/// tried again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_channel_receives_reminders_and_the_all_clear() {
    let Some(db) = fresh_db().await else { return };
    if !smtp_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let sink = SmtpSink::start(free_port(), tmp.path());
    let (twilio, log) = spawn_http_server(vec![(400, r#"{"code":21211,"message":"invalid To"}"#.into())]).await;
    let s = settings(sink.port, free_port(), Some(&twilio));
    let h = Harness::new(&db, &s, true).await;
    setup_team(h.store.as_ref(), true).await;
    let mut martin = doctor("dr-martin", Some(MARTIN_MOBILE));
    martin.channels.high = vec![Channel::Sms];
    h.store.upsert_physician(&martin).await.unwrap();
    h.store.upsert_physician(&doctor("dr-chen", None)).await.unwrap();
    let to_martin = |msgs: &[(Vec<u8>, Vec<String>)]| -> Vec<String> {
        msgs.iter()
            .filter(|(_, r)| r == &vec!["dr-martin@hospital.example".to_string()])
            .map(|(raw, _)| header_of(raw, "Subject"))
            .collect()
    };

    h.publish(&high_event("evt-1", "ep-fb")).await;
    assert_eq!(sink.wait_for(1).len(), 1, "fallback email");
    let state = h.store.episode(&ep("ep-fb")).await.unwrap().unwrap();
    assert!(
        state.issued.iter().any(|i| i.route == Route::Channel(Channel::Email)
            && i.recipient == pid("dr-martin")
            && i.fallback_from == Some(Channel::Sms)),
        "the fallback is in the episode's issued list: {:?}",
        state.issued
    );
    assert!(state.paged().contains(&(pid("dr-martin"), Channel::Email)));
    assert!(!state.paged().contains(&(pid("dr-martin"), Channel::Sms)));

    // Rung 1 (deputy) after 15 min, then the first reminder 15 min later.
    h.clock.advance(Duration::minutes(16));
    assert_eq!(sink.wait_for(2).len(), 2, "deputy page");
    h.clock.advance(Duration::minutes(16));
    let msgs = sink.wait_for(4);
    assert_eq!(msgs.len(), 4, "reminders to both physicians");
    let subjects = to_martin(&msgs);
    assert!(subjects.iter().any(|s| s.contains("REMINDER HIGH")), "{subjects:?}");

    let mut resolved = event("evt-2", AlertEventKind::Resolved, Severity::High, Utc::now());
    resolved.episode_id = "ep-fb".into();
    h.publish(&resolved).await;
    let msgs = sink.wait_for(6);
    assert_eq!(msgs.len(), 6, "all-clear to both physicians");
    let subjects = to_martin(&msgs);
    assert!(subjects.iter().any(|s| s.contains("RESOLVED")), "{subjects:?}");
    tokio::time::sleep(StdDuration::from_millis(1000)).await;
    assert_eq!(log.lock().unwrap().len(), 1, "the failed SMS channel is not tried again");
    assert_eq!(sink.messages().len(), 6);
    h.stop().await;
}

// ------------------------------------------------ outages (issue #12, defect 3)

/// The value of a counter or gauge in the process's Prometheus exposition
/// whose labels include every one of `labels` (0 when absent).
fn metric(name: &str, labels: &[(&str, &str)]) -> f64 {
    let Some(h) = vitalwatch_platform::ops::install_metrics() else { return 0.0 };
    h.render()
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

/// Attempts made so far on the outbox rows of `episodes` still pending.
async fn pending_attempts(h: &Harness, episodes: &[&str]) -> (usize, u32) {
    let (mut pending, mut attempts) = (0, 0);
    for e in episodes {
        for r in h.store.outbox(&ep(e)).await.unwrap() {
            if r.status == OutboxStatus::Pending {
                pending += 1;
                attempts += r.attempts;
            }
        }
    }
    (pending, attempts)
}

/// Lets `minutes` of an outage pass on the role's clock, in 15 s steps; after
/// each step, waits (bounded) until the dispatcher made another attempt on a
/// pending row of `episodes`, so retries really happen all along.
async fn outage(h: &Harness, episodes: &[&str], minutes: i64) {
    for _ in 0..minutes * 4 {
        let (_, before) = pending_attempts(h, episodes).await;
        h.clock.advance(Duration::seconds(15));
        eventually(5, async || {
            let (pending, attempts) = pending_attempts(h, episodes).await;
            pending == 0 || attempts > before
        })
        .await;
    }
}

/// SMTP down (port closed) for 10 minutes when a LOW and a MEDIUM page are
/// due, far longer than the old fixed attempt budget: both pages keep being
/// retried (pending, attempts counted, audited, in the metric), the MEDIUM
/// escalation to the deputy is queued on time meanwhile, and once the server
/// is back every page is delivered exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_down_for_ten_minutes_delivers_low_and_medium_pages_once() {
    let Some(db) = fresh_db().await else { return };
    vitalwatch_platform::ops::install_metrics();
    if !smtp_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let s = settings(port, free_port(), None);
    let h = Harness::new(&db, &s, true).await;
    setup_team(h.store.as_ref(), false).await;
    let mut low = event("evt-low", AlertEventKind::Opened, Severity::Low, Utc::now());
    low.episode_id = "ep-out-low".into();
    h.publish(&low).await;
    h.publish(&medium_event("evt-med", "ep-out-med")).await;
    let episodes = ["ep-out-low", "ep-out-med"];
    assert!(
        eventually(15, async || {
            let (pending, attempts) = pending_attempts(&h, &episodes).await;
            pending == 2 && attempts >= 2
        })
        .await,
        "both pages are tried while SMTP is down"
    );

    outage(&h, &episodes, 10).await;
    for e in episodes {
        let rows = h.store.outbox(&ep(e)).await.unwrap();
        assert_eq!(rows.len(), 1, "{e}: {rows:?}");
        assert_eq!(rows[0].status, OutboxStatus::Pending, "{e}: still retried after 10 minutes: {rows:?}");
        assert!(rows[0].attempts >= 30, "{e}: retried all along: {} attempts", rows[0].attempts);
        assert!(rows[0].last_error.is_some(), "{e}");
    }
    assert_eq!(h.store.awaiting_retry().await.unwrap(), 2);
    assert!(
        eventually(10, async || metric("vitalwatch_notifications_awaiting_retry", &[]) >= 2.0).await,
        "the gauge shows the pages awaiting a retry"
    );
    // The MEDIUM ladder escalates to the deputy after 2 h even though the
    // first page is still being retried.
    h.clock.advance(Duration::minutes(121));
    assert!(
        eventually(15, async || {
            h.store.outbox(&ep("ep-out-med")).await.unwrap().iter().any(|r| r.notification.recipient == pid("dr-chen"))
        })
        .await,
        "the escalation to the deputy does not wait for the retries"
    );

    let sink = SmtpSink::start(port, tmp.path());
    let msgs = sink.wait_for(3);
    assert_eq!(msgs.len(), 3, "LOW and MEDIUM pages and the deputy's page, once the server is back");
    assert!(eventually(15, async || pending_attempts(&h, &episodes).await.0 == 0).await, "every row recorded as sent");
    tokio::time::sleep(StdDuration::from_millis(1500)).await;
    let msgs = sink.messages();
    assert_eq!(msgs.len(), 3, "each page delivered exactly once");
    let mut rcpts: Vec<String> = msgs.iter().map(|(_, r)| r.join(",")).collect();
    rcpts.sort();
    assert_eq!(rcpts, ["dr-chen@hospital.example", "dr-martin@hospital.example", "dr-martin@hospital.example"]);
    for e in episodes {
        for r in h.store.outbox(&ep(e)).await.unwrap() {
            assert_eq!(r.status, OutboxStatus::Sent, "{e}: {r:?}");
        }
        let audit = h.store.audit_trail(&ep(e)).await.unwrap();
        let transient = audit
            .iter()
            .filter(|r| {
                matches!(
                    &r.entry,
                    AuditEntry::DeliveryAttempt { outcome: AttemptOutcome::Transient { retry_at: Some(_), .. }, .. }
                )
            })
            .count();
        assert!(transient >= 30, "{e}: every failed attempt is audited with its retry time ({transient})");
        assert!(!audit.iter().any(|r| matches!(r.entry, AuditEntry::DeliveryFailed { .. })), "{e}");
    }
    assert!(metric("vitalwatch_notification_retries_total", &[("channel", "email")]) >= 60.0);
    h.stop().await;
}

/// The SMS gateway answers 503 for 10 minutes, then 201: the SMS is retried
/// all along and delivered exactly once; meanwhile the page also went out on
/// the fallback channel (email).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_gateway_503_for_ten_minutes_then_delivers_once() {
    let Some(db) = fresh_db().await else { return };
    vitalwatch_platform::ops::install_metrics();
    if !smtp_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let sink = SmtpSink::start(free_port(), tmp.path());
    let mut script = vec![(503, r#"{"code":20503,"message":"Service Unavailable"}"#.to_string()); 40];
    script.push((201, r#"{"sid":"SM-after-outage","status":"queued"}"#.into()));
    let (twilio, log) = spawn_http_server(script).await;
    let s = settings(sink.port, free_port(), Some(&twilio));
    let h = Harness::new(&db, &s, true).await;
    setup_team(h.store.as_ref(), true).await;
    // dr-martin wants HIGH alerts by SMS only.
    let mut martin = doctor("dr-martin", Some(MARTIN_MOBILE));
    martin.channels.high = vec![Channel::Sms];
    h.store.upsert_physician(&martin).await.unwrap();

    h.publish(&high_event("evt-1", "ep-sms-503")).await;
    let is_sms =
        |r: &astore::OutboxRow| r.notification.channel == Channel::Sms && r.notification.recipient == pid("dr-martin");
    assert!(
        eventually(15, async || {
            h.store.outbox(&ep("ep-sms-503")).await.unwrap().iter().any(|r| is_sms(r) && r.attempts >= 1)
        })
        .await
    );
    for _ in 0..40 {
        let before = log.lock().unwrap().len();
        h.clock.advance(Duration::seconds(15));
        eventually(5, async || {
            let rows = h.store.outbox(&ep("ep-sms-503")).await.unwrap();
            log.lock().unwrap().len() > before || !rows.iter().any(|r| is_sms(r) && r.status == OutboxStatus::Pending)
        })
        .await;
    }
    assert!(
        eventually(15, async || {
            h.store.outbox(&ep("ep-sms-503")).await.unwrap().iter().any(|r| is_sms(r) && r.status == OutboxStatus::Sent)
        })
        .await,
        "the SMS is delivered after the outage: {:?}",
        h.store.outbox(&ep("ep-sms-503")).await.unwrap()
    );
    tokio::time::sleep(StdDuration::from_millis(1500)).await;
    let reqs = log.lock().unwrap().clone();
    assert_eq!(reqs.len(), 41, "40 refused attempts, then exactly one accepted SMS");
    let rows = h.store.outbox(&ep("ep-sms-503")).await.unwrap();
    let sms = rows.iter().find(|r| is_sms(r)).unwrap();
    assert_eq!(sms.provider_message_id.as_deref(), Some("SM-after-outage"));
    assert_eq!(sms.attempts, 41);
    // The fallback email went out while the gateway was down, once.
    let to_martin =
        sink.messages().iter().filter(|(_, r)| r == &vec!["dr-martin@hospital.example".to_string()]).count();
    assert_eq!(to_martin, 1, "the fallback email, once");
    let audit = h.store.audit_trail(&ep("ep-sms-503")).await.unwrap();
    assert!(
        audit.iter().any(|r| matches!(
            r.entry,
            AuditEntry::FallbackWhileRetrying { from: Channel::Sms, to: Channel::Email, .. }
        ))
    );
    assert!(!audit.iter().any(|r| matches!(r.entry, AuditEntry::DeliveryFailed { .. })));
    assert!(metric("vitalwatch_notification_retries_total", &[("channel", "sms")]) >= 40.0);
    h.stop().await;
}

/// The SMTP server refuses the responsible physician's address with 550
/// (permanent): the row is failed at once (not retried), audited, counted, and
/// the page goes out by SMS instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_550_fails_the_email_and_sends_the_fallback_sms() {
    let Some(db) = fresh_db().await else { return };
    vitalwatch_platform::ops::install_metrics();
    if !smtp_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let sink = SmtpSink::start_rejecting(free_port(), tmp.path(), &["dr-martin@hospital.example"]);
    let (twilio, log) = spawn_http_server(vec![(201, r#"{"sid":"SM-fallback","status":"queued"}"#.into())]).await;
    let s = settings(sink.port, free_port(), Some(&twilio));
    let h = Harness::new(&db, &s, true).await;
    setup_team(h.store.as_ref(), true).await;
    let failed_before = metric("vitalwatch_notifications_failed_total", &[("channel", "email"), ("kind", "permanent")]);

    h.publish(&medium_event("evt-1", "ep-550")).await;
    assert!(
        eventually(15, async || {
            let rows = h.store.outbox(&ep("ep-550")).await.unwrap();
            rows.iter().any(|r| r.notification.channel == Channel::Sms && r.status == OutboxStatus::Sent)
        })
        .await,
        "the fallback SMS is sent"
    );
    let rows = h.store.outbox(&ep("ep-550")).await.unwrap();
    let email = rows.iter().find(|r| r.notification.channel == Channel::Email).unwrap();
    assert_eq!(email.status, OutboxStatus::Failed);
    assert_eq!(email.attempts, 1, "a permanent failure is not retried");
    assert!(email.last_error.as_deref().unwrap_or_default().contains("550"), "{email:?}");
    let sms = rows.iter().find(|r| r.notification.channel == Channel::Sms).unwrap();
    assert_eq!(sms.notification.fallback_from, Some(Channel::Email));
    let reqs = log.lock().unwrap().clone();
    assert_eq!(reqs.len(), 1);
    let to = reqs[0].form().into_iter().find(|(k, _)| k == "To").unwrap().1;
    assert_eq!(to, MARTIN_MOBILE);
    assert!(sink.messages().is_empty(), "nothing accepted by the SMTP server");
    let audit = h.store.audit_trail(&ep("ep-550")).await.unwrap();
    assert!(audit.iter().any(|r| matches!(&r.entry,
        AuditEntry::DeliveryAttempt { channel: Channel::Email, outcome: AttemptOutcome::Permanent { error }, .. } if error.contains("550"))));
    assert!(
        audit
            .iter()
            .any(|r| matches!(r.entry, AuditEntry::FallbackScheduled { from: Channel::Email, to: Channel::Sms, .. }))
    );
    assert!(
        metric("vitalwatch_notifications_failed_total", &[("channel", "email"), ("kind", "permanent")]) > failed_before
    );
    h.stop().await;
}

/// The responsible physician's only channel fails permanently (550, no
/// mobile): the deputy is paged at once instead of after the ladder's 2 h.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_failure_without_fallback_pages_the_deputy_at_once() {
    let Some(db) = fresh_db().await else { return };
    if !smtp_available() {
        return;
    }
    deputy_scenario(&db).await;
}

/// The same on SQLite (embedded mode store).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_failure_without_fallback_pages_the_deputy_at_once_on_sqlite() {
    if !smtp_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", tmp.path().join("deputy.db").display());
    vitalwatch_platform::store::open(&url, 500).await.unwrap().migrate().await.unwrap();
    deputy_scenario(&url).await;
}

async fn deputy_scenario(db: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let sink = SmtpSink::start_rejecting(free_port(), tmp.path(), &["dr-martin@hospital.example"]);
    let s = settings(sink.port, free_port(), None);
    let h = Harness::new(db, &s, true).await;
    setup_team(h.store.as_ref(), false).await;

    h.publish(&medium_event("evt-1", "ep-550-deputy")).await;
    let msgs = sink.wait_for(1);
    assert_eq!(msgs.len(), 1, "the deputy is paged without waiting for the 2 h rung");
    assert_eq!(msgs[0].1, vec!["dr-chen@hospital.example".to_string()]);
    let rows = h.store.outbox(&ep("ep-550-deputy")).await.unwrap();
    let martin = rows.iter().find(|r| r.notification.recipient == pid("dr-martin")).unwrap();
    assert_eq!(martin.status, OutboxStatus::Failed);
    let audit = h.store.audit_trail(&ep("ep-550-deputy")).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|r| matches!(&r.entry, AuditEntry::DeliveryFailed { key, .. } if key == &martin.notification.key))
    );
    h.stop().await;
    drop(sink);
}

/// Issue #13: inbound SMS attempts are counted per sender in PostgreSQL, so replicas
/// share the limit: 20 concurrent attempts of one sender (as from several replicas)
/// admit exactly `max_failures`; the lockout is appended to `admin_audit` once.
#[tokio::test]
async fn sms_attempts_are_shared_by_replicas_and_the_lockout_is_audited_on_postgres() {
    use vitalwatch_alerting::inbound::{Admission, GuardPolicy};
    let Some(db) = fresh_db().await else { return };
    // Four connections, as four replicas would have.
    let mut replicas = Vec::new();
    for _ in 0..4 {
        replicas.push(astore::open(&db).await.unwrap());
    }
    let store = replicas[0].clone();
    let policy = GuardPolicy::default();
    let t = Utc::now();
    let dr = pid("dr-martin");
    let attempts = (0..20).map(|i| replicas[i % 4].sms_admit("sender-a", Some(&dr), &policy, t));
    let results: Vec<Admission> = futures::future::join_all(attempts).await.into_iter().map(Result::unwrap).collect();
    assert_eq!(results.iter().filter(|a| **a == Admission::Allowed).count(), 5, "{results:?}");
    let new_lockouts = results.iter().filter(|a| matches!(a, Admission::Locked { new_lockout: true, .. })).count();
    assert_eq!(new_lockouts, 1, "{results:?}");
    // Another sender is not affected; a right code clears a sender's count.
    assert_eq!(store.sms_admit("sender-b", None, &policy, t).await.unwrap(), Admission::Allowed);
    store.sms_succeeded("sender-b").await.unwrap();
    for _ in 0..5 {
        assert_eq!(store.sms_admit("sender-b", None, &policy, t).await.unwrap(), Admission::Allowed);
    }
    // After the lockout, a new window.
    let later = t + Duration::hours(1) + Duration::seconds(1);
    assert_eq!(store.sms_admit("sender-a", Some(&dr), &policy, later).await.unwrap(), Admission::Allowed);
    let (client, conn) = tokio_postgres::connect(&db, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let rows = client
        .query(
            "SELECT actor, target_kind, target_id, details::text FROM admin_audit WHERE action = 'sms_inbound_lockout'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, &str>(0), "alerting");
    assert_eq!(rows[0].get::<_, &str>(1), "physician");
    assert_eq!(rows[0].get::<_, &str>(2), "dr-martin");
    assert!(rows[0].get::<_, &str>(3).contains("sender-a"), "{}", rows[0].get::<_, &str>(3));
}

// ------------------------------------------------ issue #14: historical alerts

/// End to end from the rules engine: a glucometer syncs a 40 mg/dL reading
/// measured 10 h before it is received; the engine raises a HISTORICAL alert,
/// which goes over Kafka to the alerting role (PostgreSQL) and out by SMTP:
/// the email says "HISTORICAL", when it was measured and when received.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn historical_glucose_alert_email_says_measured_and_received() {
    use vitalwatch_rules::{Engine, EngineSettings, PatientRules, Program};
    use vitalwatch_schemas::{Code, Observation, ObservationId, Source, TimeSource};
    let Some(db) = fresh_db().await else { return };
    if !smtp_available() || !kafka_available() {
        return;
    }
    // The rules engine, as the rules role runs it.
    let patient = PatientId::new("pt-0042").unwrap();
    let received = Utc::now() - Duration::minutes(1);
    let measured = received - Duration::hours(10);
    let mut engine = Engine::new(EngineSettings::default()).unwrap();
    engine.set_patient_rules(&patient, PatientRules::for_program(Program::Diabetes), measured).unwrap();
    let obs = Observation {
        id: ObservationId::compute("pt-0042", Code::BloodGlucose, measured.timestamp_micros()),
        patient_id: patient.clone(),
        code: Code::BloodGlucose,
        value: 40.0,
        time: measured,
        received_at: received,
        source: Source::Device,
        device_id: None,
        time_source: TimeSource::Device,
        original_value: 40.0,
        original_unit: "mg/dL".into(),
        msg_id: None,
        trace_id: "trace-hist".into(),
    };
    let mut events = Vec::new();
    engine.on_observation(&obs, received, &mut events);
    assert_eq!(events.len(), 1, "{events:#?}");
    let e = events.remove(0);
    assert!(e.historical && e.rule_id == "threshold.glucose.low", "{e:#?}");

    let tmp = tempfile::tempdir().unwrap();
    let sink = SmtpSink::start(free_port(), tmp.path());
    let s = settings(sink.port, free_port(), None);
    let store = astore::open(&db).await.unwrap();
    setup_team(store.as_ref(), false).await;
    let (shutdown, role) = role_on_kafka(&s, store.clone(), "hist", &e).await;
    let msgs = sink.wait_for(1);
    assert_eq!(msgs.len(), 1, "one email");
    let (raw, rcpt) = &msgs[0];
    assert_eq!(rcpt, &vec!["dr-martin@hospital.example".to_string()]);
    let subject = header_of(raw, "Subject");
    assert!(subject.contains("HISTORICAL reading - blood glucose 40 mg/dL"), "{subject}");
    let (_, _, text) = text_of(raw);
    let tz = chrono_tz::Europe::Paris;
    let local =
        |t: chrono::DateTime<Utc>| format!("{} (Europe/Paris)", t.with_timezone(&tz).format("%a %d %b %Y %H:%M %Z"));
    assert!(text.contains("A HISTORICAL reading needs your attention"), "{text}");
    assert!(text.contains(&format!("Measured at: {}", local(measured))), "{text}");
    assert!(text.contains(&format!("Received at: {}", local(received))), "{text}");
    assert!(text.contains("received 10 h 0 min later"), "{text}");
    shutdown.cancel();
    role.await.unwrap().unwrap();
}
