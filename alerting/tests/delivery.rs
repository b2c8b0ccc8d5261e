//! Delivery against real services: aiosmtpd for SMTP, a real HTTP server
//! speaking Twilio's Messages API and a JSON webhook, and the file transports.

use crate::common;

use std::sync::Arc;
use std::time::Duration as StdDuration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use common::*;
use mailparse::{MailHeaderMap, ParsedMail};
use vitalwatch_alerting::transport::file::{FileEmailTransport, FileSmsTransport};
use vitalwatch_alerting::transport::smtp::{SmtpConfig, SmtpSecurity, SmtpTransport};
use vitalwatch_alerting::transport::twilio::{TwilioConfig, TwilioTransport};
use vitalwatch_alerting::transport::webhook::{WebhookConfig, WebhookTransport};
use vitalwatch_alerting::transport::{Secret, Transport};
use vitalwatch_alerting::*;
use vitalwatch_schemas::proto::AlertEventKind;

const ACK_BASE: &str = "https://vw.example/ack";

struct Fixture {
    ep: EpisodeState,
    martin: Physician,
    plan: Plan,
    history: Vec<(DateTime<Utc>, f64)>,
}

fn fixture() -> Fixture {
    let now = Utc::now();
    let (ep, _) = EpisodeState::from_event(&event("e1", AlertEventKind::Opened, Severity::High, now), now).unwrap();
    let martin = physician("dr-martin", None);
    let dir = directory(vec![martin.clone(), physician("dr-chen", None)]);
    let plan = plan_now(&ep, &team(), &dir, now);
    assert_eq!(plan.notifications.len(), 2);
    Fixture { history: history(now), ep, martin, plan }
}

impl Fixture {
    fn on(&self, channel: Channel) -> Notification {
        self.plan.notifications.iter().find(|n| n.channel == channel).unwrap().clone()
    }
    fn ctx(&self) -> DeliveryContext<'_> {
        DeliveryContext { episode: &self.ep, recipient: &self.martin, ack_code: None, history: &self.history }
    }
}

fn notifier(email: Arc<dyn Transport>, sms: Option<Arc<dyn Transport>>, retry: RetryPolicy) -> Notifier {
    Notifier::new(
        NotifierConfig {
            from: "vitalwatch <alerts@hospital.example>".into(),
            ack_base_url: ACK_BASE.into(),
            ack_link_ttl_hours: 72,
            id_domain: "vitalwatch.hospital.example".into(),
            retry,
            default_language: Language::Fr,
        },
        AckSigner::new(SECRET).unwrap(),
        AckCodeGenerator::new(SECRET, 6).unwrap(),
        email,
        sms,
    )
    .unwrap()
}

/// Retries starting at `base_ms`, capped at 1 s, for `horizon_ms` in all.
fn fast_retry(horizon_ms: u64, base_ms: u64) -> RetryPolicy {
    RetryPolicy { base_delay_ms: base_ms, max_delay_ms: 1_000, horizon_ms, fallback_after_ms: horizon_ms }
}

fn smtp(port: u16) -> Arc<dyn Transport> {
    Arc::new(
        SmtpTransport::new(&SmtpConfig {
            host: "127.0.0.1".into(),
            port,
            security: SmtpSecurity::None,
            username: None,
            password: None,
            hello_name: "vitalwatch.test".into(),
            timeout_secs: 5,
        })
        .unwrap(),
    )
}

fn walk<'a>(m: &'a ParsedMail<'a>, out: &mut Vec<&'a ParsedMail<'a>>) {
    out.push(m);
    for s in &m.subparts {
        walk(s, out);
    }
}

#[tokio::test]
async fn a_real_smtp_server_receives_the_alert_email() {
    if !require("aiosmtpd", aiosmtpd_available(), "pip install aiosmtpd (or apt-get install python3-aiosmtpd)") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let sink = SmtpSink::start(free_port(), tmp.path());
    let f = fixture();
    let n = f.on(Channel::Email);
    let notifier = notifier(smtp(sink.port), None, fast_retry(10_000, 100));
    let report = notifier.deliver(&n, &f.ctx()).await;
    assert!(report.error.is_none(), "{:?}", report.error);
    let (delivered, receipt) = report.delivered.unwrap();
    assert_eq!(delivered.key, n.key);
    assert!(receipt.provider_message_id.unwrap_or_default().contains("queued"));

    let msgs = sink.wait_for(1);
    assert_eq!(msgs.len(), 1);
    let (raw, rcpt) = &msgs[0];
    assert_eq!(rcpt, &vec!["dr-martin@hospital.example".to_string()]);
    let mail = mailparse::parse_mail(raw).unwrap();
    assert!(mail.headers.get_first_value("To").unwrap().contains("dr-martin@hospital.example"));
    let subject = mail.headers.get_first_value("Subject").unwrap();
    assert_eq!(subject, "[vitalwatch] HIGH - SpO2 87 % - patient pt-0042");
    assert_eq!(mail.ctype.mimetype, "multipart/related");
    let mid = mail.headers.get_first_value("Message-ID").unwrap();
    assert!(mid.contains(&n.key.digest_hex()), "deterministic Message-ID: {mid}");

    let mut parts = Vec::new();
    walk(&mail, &mut parts);
    assert_eq!(parts[1].ctype.mimetype, "multipart/alternative");
    let text = parts.iter().find(|p| p.ctype.mimetype == "text/plain").unwrap().get_body().unwrap();
    let html = parts.iter().find(|p| p.ctype.mimetype == "text/html").unwrap().get_body().unwrap();
    let image = parts.iter().find(|p| p.ctype.mimetype == "image/png").unwrap();
    let png = image.get_body_raw().unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let cid = image.headers.get_first_value("Content-ID").unwrap();
    let cid = cid.trim_start_matches('<').trim_end_matches('>');
    assert!(html.contains(&format!("src=\"cid:{cid}\"")), "HTML references the chart");
    assert!(image.headers.get_first_value("Content-Disposition").unwrap().starts_with("inline"));

    for needle in [
        "pt-0042",
        "SpO2 (LOINC 59408-5)",
        "Value: 87 %",
        "Threshold crossed: 90 %",
        "Baseline: 95 %",
        "(Europe/Paris)",
        "15 (SAMU)",
        "not an emergency service",
        "Dear Dr dr-martin",
    ] {
        assert!(text.contains(needle), "text part lacks {needle:?}:\n{text}");
    }
    // Issue #16: an English reader's email is wholly English (no French footer any more).
    assert!(!text.contains("n'est pas un service d'urgence"), "{text}");
    assert!(html.contains("<html lang=\"en\">"), "{html}");
    let local = f.ep.details.reading_time.with_timezone(&chrono_tz::Europe::Paris).format("%H:%M").to_string();
    assert!(text.contains(&local), "reading time shown in the physician's zone");
    // The ack link is signed and verifies; the SMS code is offered too.
    let link = text.lines().find_map(|l| l.strip_prefix("Acknowledge: ")).unwrap().trim();
    let token = link.strip_prefix(&format!("{ACK_BASE}?t=")).unwrap();
    let claims = AckSigner::new(SECRET).unwrap().verify(token, Utc::now()).unwrap();
    assert_eq!(claims.recipient.as_str(), "dr-martin");
    assert_eq!(claims.nonce, n.key.digest_hex());
    assert!(html.contains(&link.replace('&', "&amp;")));
    let code = AckCodeGenerator::new(SECRET, 6).unwrap().candidate(&n.episode_id, &n.recipient, 0);
    assert!(text.contains(&format!("ACK {code}")));
}

#[tokio::test]
async fn smtp_down_then_up_delivers_exactly_once() {
    if !require("aiosmtpd", aiosmtpd_available(), "pip install aiosmtpd (or apt-get install python3-aiosmtpd)") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let f = Arc::new(fixture());
    let n = f.on(Channel::Email);
    let notifier = Arc::new(notifier(smtp(port), None, fast_retry(10_000, 200)));
    let task = {
        let (f, n, notifier) = (f.clone(), n.clone(), notifier.clone());
        tokio::spawn(async move { notifier.deliver(&n, &f.ctx()).await })
    };
    tokio::time::sleep(StdDuration::from_millis(1_200)).await;
    let sink = SmtpSink::start(port, tmp.path());
    let report = task.await.unwrap();
    assert!(report.delivered.is_some(), "{:?}", report.error);
    assert!(report.attempts >= 2, "failed first: {} attempts", report.attempts);
    let outcomes: Vec<_> = report
        .audit
        .iter()
        .filter_map(|r| match &r.entry {
            AuditEntry::DeliveryAttempt { outcome, .. } => Some(outcome.clone()),
            _ => None,
        })
        .collect();
    assert!(matches!(outcomes[0], AttemptOutcome::Transient { retry_at: Some(_), .. }));
    assert!(matches!(outcomes.last().unwrap(), AttemptOutcome::Delivered { .. }));
    assert!(report.fallback.is_none());
    tokio::time::sleep(StdDuration::from_millis(500)).await;
    assert_eq!(sink.messages().len(), 1, "delivered exactly once");
}

fn twilio(base: &str) -> Arc<dyn Transport> {
    Arc::new(
        TwilioTransport::new(&TwilioConfig {
            base_url: base.into(),
            account_sid: "AC0123456789".into(),
            auth_token: Secret("tok-secret".into()),
            from: Some(PhoneNumber::new("+15005550006").unwrap()),
            messaging_service_sid: None,
            timeout_secs: 5,
        })
        .unwrap(),
    )
}

#[tokio::test]
async fn twilio_503_then_201_is_retried_with_backoff() {
    let (base, log) =
        spawn_http_server(vec![(503, "{}".into()), (201, r#"{"sid":"SM42","status":"queued"}"#.into())]).await;
    let tmp = tempfile::tempdir().unwrap();
    let f = fixture();
    let n = f.on(Channel::Sms);
    let notifier =
        notifier(Arc::new(FileEmailTransport::new(tmp.path())), Some(twilio(&base)), fast_retry(10_000, 400));
    let report = notifier.deliver(&n, &f.ctx()).await;
    let (done, receipt) = report.delivered.clone().expect("delivered");
    assert_eq!(done.channel, Channel::Sms);
    assert_eq!(receipt.provider_message_id.as_deref(), Some("SM42"));
    assert_eq!(report.attempts, 2);

    let reqs = log.lock().unwrap().clone();
    assert_eq!(reqs.len(), 2);
    let gap = reqs[1].at - reqs[0].at;
    assert!(gap >= StdDuration::from_millis(200), "backoff waited {gap:?}");
    for r in &reqs {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/2010-04-01/Accounts/AC0123456789/Messages.json");
        let expected = base64::engine::general_purpose::STANDARD.encode("AC0123456789:tok-secret");
        assert_eq!(r.header("authorization"), Some(format!("Basic {expected}").as_str()));
        assert_eq!(r.header("content-type"), Some("application/x-www-form-urlencoded"));
        let form = r.form();
        let get = |k: &str| form.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone()).unwrap();
        assert_eq!(get("To"), "+33612345678");
        assert_eq!(get("From"), "+15005550006");
        let body = get("Body");
        assert!(body.chars().count() <= 160, "{} chars: {body}", body.chars().count());
        assert!(body.contains("pt-0042") && body.contains("HIGH") && body.contains("Reply ACK "), "{body}");
        assert!(!body.contains("Dr "), "no names in SMS: {body}");
    }
    assert!(std::fs::read_dir(tmp.path()).map(|d| d.count()).unwrap_or(0) == 0, "no email fallback");
}

#[tokio::test]
async fn twilio_400_is_permanent_and_falls_back_to_email() {
    let (base, log) =
        spawn_http_server(vec![(400, r#"{"code":21211,"message":"Invalid 'To' Phone Number"}"#.into())]).await;
    let tmp = tempfile::tempdir().unwrap();
    let f = fixture();
    let n = f.on(Channel::Sms);
    let eml = FileEmailTransport::new(tmp.path());
    let notifier = notifier(Arc::new(eml.clone()), Some(twilio(&base)), fast_retry(10_000, 100));
    let report = notifier.deliver(&n, &f.ctx()).await;
    assert_eq!(log.lock().unwrap().len(), 1, "a permanent failure is not retried");
    let fallback = report.fallback.clone().expect("fallback planned");
    assert_eq!(fallback.channel, Channel::Email);
    assert_eq!(fallback.fallback_from, Some(Channel::Sms));
    assert_eq!(
        fallback.key.as_str(),
        "ep-1:high.page0:dr-martin:email",
        "same key as the planned email: deduplicated by the outbox"
    );
    let (done, _) = report.delivered.clone().expect("delivered by email");
    assert_eq!(done.channel, Channel::Email);
    assert!(eml.path_for(fallback.key.as_str()).exists());
    assert!(report.audit.iter().any(|r| matches!(&r.entry, AuditEntry::DeliveryAttempt { outcome: AttemptOutcome::Permanent { error }, .. } if error.contains("400") && error.contains("21211"))));
    assert!(
        report
            .audit
            .iter()
            .any(|r| matches!(r.entry, AuditEntry::FallbackScheduled { from: Channel::Sms, to: Channel::Email, .. }))
    );
}

#[tokio::test]
async fn webhook_provider_posts_signed_json() {
    let (base, log) = spawn_http_server(vec![(202, r#"{"id":"wh-7"}"#.into())]).await;
    let hook = WebhookTransport::new(&WebhookConfig {
        url: format!("{base}/sms/send"),
        bearer_token: Some(Secret("bearer-123".into())),
        signing_secret: Some(Secret("sign-me".into())),
        timeout_secs: 5,
    })
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let f = fixture();
    let n = f.on(Channel::Sms);
    let notifier =
        notifier(Arc::new(FileEmailTransport::new(tmp.path())), Some(Arc::new(hook)), fast_retry(10_000, 100));
    let report = notifier.deliver(&n, &f.ctx()).await;
    assert_eq!(report.delivered.unwrap().1.provider_message_id.as_deref(), Some("wh-7"));
    let r = log.lock().unwrap()[0].clone();
    assert_eq!(r.path, "/sms/send");
    assert_eq!(r.header("authorization"), Some("Bearer bearer-123"));
    assert_eq!(r.header("idempotency-key"), Some(n.key.as_str()));
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["to"], "+33612345678");
    assert_eq!(v["idempotency_key"], n.key.as_str());
    assert!(v["body"].as_str().unwrap().len() <= 160);
    use hmac::{KeyInit, Mac};
    let mut m = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(b"sign-me").unwrap();
    m.update(&r.body);
    let sig: String = m.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(r.header("x-vitalwatch-signature"), Some(format!("sha256={sig}").as_str()));
}

#[tokio::test]
async fn unreachable_gateway_is_transient_and_classified() {
    let port = free_port();
    let t = twilio(&format!("http://127.0.0.1:{port}"));
    let f = fixture();
    let n = f.on(Channel::Sms);
    let notifier = notifier(
        Arc::new(FileEmailTransport::new(tempfile::tempdir().unwrap().path())),
        Some(t.clone()),
        fast_retry(0, 10),
    );
    let msg = notifier.compose(&n, &f.ctx(), Utc::now()).unwrap();
    let err = t.send(&msg).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::Transient, "{err}");
    assert_eq!(transport::classify_http_status(429), Some(FailureKind::Transient));
    assert_eq!(transport::classify_http_status(408), Some(FailureKind::Transient));
    assert_eq!(transport::classify_http_status(500), Some(FailureKind::Transient));
    assert_eq!(transport::classify_http_status(400), Some(FailureKind::Permanent));
    assert_eq!(transport::classify_http_status(401), Some(FailureKind::Permanent));
    assert_eq!(transport::classify_http_status(503), Some(FailureKind::Transient));
    assert_eq!(transport::classify_http_status(404), Some(FailureKind::Permanent));
    assert_eq!(transport::classify_http_status(201), None);
}

#[tokio::test]
async fn file_transports_write_once_per_key() {
    let tmp = tempfile::tempdir().unwrap();
    let eml = FileEmailTransport::new(tmp.path().join("mail"));
    let sms = FileSmsTransport::new(tmp.path().join("sms/out.jsonl"));
    let f = fixture();
    let notifier = notifier(Arc::new(eml.clone()), Some(Arc::new(sms)), fast_retry(0, 10));
    for _ in 0..2 {
        for n in &f.plan.notifications {
            assert!(notifier.deliver(n, &f.ctx()).await.delivered.is_some());
        }
    }
    let e = f.on(Channel::Email);
    let raw = std::fs::read(eml.path_for(e.key.as_str())).unwrap();
    let parsed = mailparse::parse_mail(&raw).unwrap();
    assert_eq!(parsed.ctype.mimetype, "multipart/related");
    assert_eq!(std::fs::read_dir(tmp.path().join("mail")).unwrap().count(), 1);
    let lines = std::fs::read_to_string(tmp.path().join("sms/out.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 1, "{lines}");
    let line: serde_json::Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    assert_eq!(line["to"], "+33612345678");
    assert_eq!(line["key"], f.on(Channel::Sms).key.as_str());
    // A fresh transport on the same file still knows what was sent.
    let sms2 = FileSmsTransport::new(tmp.path().join("sms/out.jsonl"));
    let msg = notifier.compose(&f.on(Channel::Sms), &f.ctx(), Utc::now()).unwrap();
    sms2.send(&msg).await.unwrap();
    assert_eq!(std::fs::read_to_string(tmp.path().join("sms/out.jsonl")).unwrap().lines().count(), 1);
    // Patient data: readable by the service user only (0600 files in 0700 folders).
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&tmp.path().join("mail")), 0o700);
    assert_eq!(mode(&tmp.path().join("sms")), 0o700);
    assert_eq!(mode(&eml.path_for(e.key.as_str())), 0o600);
    assert_eq!(mode(&tmp.path().join("sms/out.jsonl")), 0o600);
}
