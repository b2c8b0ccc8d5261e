//! Attacks on the alerting role's acknowledgment ways in (issue #13, defects 1 and 2):
//! `POST /sms/inbound` (forged, unsigned and replayed webhook calls for every provider,
//! brute force of SMS codes, the "is this number registered?" oracle) and `POST /ack`
//! (tampered, replayed, expired links and a link older than an escalation).
//!
//! Each test starts the real `vitalwatch run` (embedded: SQLite, file transport: emails
//! are `.eml` files and SMS JSON lines in `{data}/alerts`), seeds a physician, a care team
//! and an episode through the alerting store on the same SQLite file, reads the link and
//! the SMS code the binary sent, attacks over HTTP and checks that the database is unchanged.
//! One test starts `vitalwatch alerting` to show that it refuses to start without a secret.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chrono::Utc;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use vitalwatch_alerting::ack::AckCodeGenerator;
use vitalwatch_alerting::caps::CapPolicy;
use vitalwatch_alerting::episode::{EpisodeId, EpisodeState};
use vitalwatch_alerting::policy::EscalationPolicy;
use vitalwatch_alerting::severity::{Channel, Severity};
use vitalwatch_alerting::store::tables::SqlAlertStore;
use vitalwatch_alerting::store::{Action, AlertStore, TransitionOptions};
use vitalwatch_alerting::team::{
    CareTeam, ChannelPreferences, EmailAddress, PhoneNumber, Physician, PhysicianId, TimeZone,
};
use vitalwatch_schemas::PatientId;
use vitalwatch_schemas::proto::{AlertEvent, AlertEventKind, EvidenceReading};

use crate::common::{Proc, bin, free_port, path_str, wait_until};

const MOBILE: &str = "+33600000001";
const OTHER_MOBILE: &str = "+33600000099";
const PATIENT: &str = "pt-sec";
const DOCTOR: &str = "dr-sec";

// ------------------------------------------------------------------ HTTP

/// A form POST: (status, body).
async fn post(addr: &str, path: &str, headers: &[(&str, String)], body: &str) -> (u16, String) {
    let mut all = vec![("Content-Type", "application/x-www-form-urlencoded".to_owned())];
    all.extend(headers.iter().cloned());
    let r = crate::common::http::request(addr, "POST", path, &all, Some(body)).await;
    (r.status, r.body)
}

fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

fn sms_form(from: &str, text: &str) -> String {
    form(&[("From", from), ("Body", text), ("MessageSid", &format!("SM{}", rand_hex()))])
}

fn rand_hex() -> String {
    let n: u64 = rand::random();
    format!("{n:016x}")
}

fn hmac_hex(secret: &[u8], data: &[u8]) -> String {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).unwrap();
    m.update(data);
    m.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// Headers of the generic webhook scheme: `X-Vitalwatch-Timestamp` (Unix seconds) and
/// `X-Vitalwatch-Signature: sha256=<hex HMAC-SHA256(secret, "{timestamp}.{body}")>`.
fn webhook_headers(secret: &[u8], timestamp: i64, body: &str) -> Vec<(&'static str, String)> {
    let sig = hmac_hex(secret, format!("{timestamp}.{body}").as_bytes());
    vec![("X-Vitalwatch-Timestamp", timestamp.to_string()), ("X-Vitalwatch-Signature", format!("sha256={sig}"))]
}

// ------------------------------------------------------------------ the running binary

struct Embedded {
    proc: Proc,
    dir: tempfile::TempDir,
    addr: String,
    store: SqlAlertStore,
}

impl Embedded {
    /// `vitalwatch run` on a fresh data folder, with `env` added.
    async fn start(env: &[(&str, &str)]) -> Embedded {
        let dir = tempfile::tempdir().unwrap();
        let data = path_str(dir.path());
        let http = free_port();
        let addr = format!("127.0.0.1:{http}");
        let mqtt = format!("127.0.0.1:{}", free_port());
        let mut vars: Vec<(String, String)> = vec![
            ("VITALWATCH_ALERTING__HTTP_ADDR".into(), addr.clone()),
            ("VITALWATCH_ALERTING__PUBLIC_BASE_URL".into(), format!("http://{addr}")),
            ("VITALWATCH_ALERTING__OUTBOX_POLL_MS".into(), "100".into()),
            ("VITALWATCH_API__LISTEN".into(), format!("127.0.0.1:{}", free_port())),
            ("VITALWATCH_OPS__LISTEN".into(), "127.0.0.1:0".into()),
        ];
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut proc = Proc::spawn("run", &["run", "--data-dir", &data, "--mqtt-listen", &mqtt], &vars);
        // `run` migrates a fresh SQLite file and creates the first accounts (Argon2id) before it
        // serves: seconds alone, much longer beside a full parallel test run on two cores.
        proc.wait_serving(&addr, "/readyz", Duration::from_secs(180)).await;
        let store = SqlAlertStore::open(&format!("{data}/vitalwatch.db")).expect("open the SQLite file of run");
        Embedded { proc, dir, addr, store }
    }

    fn alerts_dir(&self) -> PathBuf {
        self.dir.path().join("alerts")
    }

    /// The secret `run` generated for inbound SMS (file transport).
    fn inbound_secret(&self) -> Vec<u8> {
        let path = self.alerts_dir().join("sms-inbound.secret");
        std::fs::read_to_string(&path).map(|s| s.trim().as_bytes().to_vec()).unwrap_or_default()
    }

    fn ack_secret(&self) -> Vec<u8> {
        std::fs::read_to_string(self.alerts_dir().join("ack.secret")).unwrap().trim().as_bytes().to_vec()
    }

    /// Seeds the physician (email and SMS for every severity) and the care team.
    async fn seed_team(&self) {
        let physician = Physician {
            id: pid(DOCTOR),
            name: "Dr Sec".into(),
            email: EmailAddress::new("dr-sec@hospital.example").unwrap(),
            mobile: Some(PhoneNumber::new(MOBILE).unwrap()),
            time_zone: TimeZone::new("Europe/Paris").unwrap(),
            quiet_hours: None,
            channels: ChannelPreferences {
                low: vec![Channel::Email, Channel::Sms],
                medium: vec![Channel::Email, Channel::Sms],
                high: vec![Channel::Email, Channel::Sms],
                critical: vec![Channel::Email, Channel::Sms],
            },
            hourly_cap: None,
            // The replies asserted below are the English ones.
            language: Some(vitalwatch_alerting::Language::En),
        };
        self.store.upsert_physician(&physician).await.unwrap();
        let deputy = Physician {
            id: pid("dr-deputy"),
            name: "Dr Deputy".into(),
            email: EmailAddress::new("dr-deputy@hospital.example").unwrap(),
            mobile: Some(PhoneNumber::new("+33600000002").unwrap()),
            channels: ChannelPreferences {
                low: vec![Channel::Email],
                medium: vec![Channel::Email],
                high: vec![Channel::Email],
                critical: vec![Channel::Email],
            },
            ..physician
        };
        self.store.upsert_physician(&deputy).await.unwrap();
        let team = CareTeam {
            patient_id: PatientId::new(PATIENT).unwrap(),
            responsible: pid(DOCTOR),
            deputies: vec![pid("dr-deputy")],
            policy: EscalationPolicy::default(),
        };
        self.store.set_care_team(&team).await.unwrap();
    }

    /// Applies an alert event (opens or raises `episode`) as the consumer of `run` would.
    async fn event(&self, episode: &str, event_id: &str, kind: AlertEventKind, severity: Severity) {
        let codes = AckCodeGenerator::new(&self.ack_secret(), 8).unwrap();
        let options = TransitionOptions { codes: Some(codes), caps: CapPolicy::default() };
        let ev = alert_event(episode, event_id, kind, severity);
        self.store.transition(&ep(episode), Action::Event(Box::new(ev)), &options, Utc::now()).await.unwrap();
    }

    async fn episode(&self, episode: &str) -> EpisodeState {
        self.store.episode(&ep(episode)).await.unwrap().expect("episode exists")
    }

    /// Rows of `alert_acknowledgments` (the link nonces and SMS acknowledgments).
    fn ack_rows(&self) -> i64 {
        let c = rusqlite::Connection::open(self.dir.path().join("vitalwatch.db")).unwrap();
        c.busy_timeout(Duration::from_secs(5)).unwrap();
        c.query_row("SELECT count(*) FROM alert_acknowledgments", [], |r| r.get(0)).unwrap()
    }

    /// `admin_audit` rows with `action`.
    fn admin_audit(&self, action: &str) -> Vec<(String, String, String)> {
        let c = rusqlite::Connection::open(self.dir.path().join("vitalwatch.db")).unwrap();
        c.busy_timeout(Duration::from_secs(5)).unwrap();
        let mut st = c.prepare("SELECT actor, target_kind, target_id FROM admin_audit WHERE action = ?1").unwrap();
        st.query_map([action], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect()
    }

    /// The SMS code sent for `episode` at `severity` (waits for the SMS line).
    async fn sms_code(&self, episode: &str, severity: Severity) -> String {
        let file = self.alerts_dir().join("sms.jsonl");
        let prefix = format!("{episode}:{}.page0:", severity.as_str());
        let mut code = None;
        let ok = wait_until(Duration::from_secs(30), || {
            code = std::fs::read_to_string(&file).unwrap_or_default().lines().find_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).ok()?;
                v["key"].as_str()?.starts_with(&prefix).then(|| code_in(v["body"].as_str().unwrap_or_default()))?
            });
            let done = code.is_some();
            async move { done }
        })
        .await;
        assert!(ok, "no SMS with a code for {prefix} in {}", file.display());
        code.unwrap()
    }

    /// The acknowledgment token of the email sent for `episode` at `severity`.
    async fn link_token(&self, episode: &str, severity: Severity) -> String {
        let key = format!("{episode}:{}.page0:{DOCTOR}:email", severity.as_str());
        let name = format!("{}.eml", key_digest(&key));
        let path = self.alerts_dir().join(name);
        let ok = wait_until(Duration::from_secs(30), || {
            let there = path.exists();
            async move { there }
        })
        .await;
        assert!(ok, "no email {} for {key}", path.display());
        token_in_eml(&path)
    }
}

fn pid(s: &str) -> PhysicianId {
    PhysicianId::new(s).unwrap()
}

fn ep(s: &str) -> EpisodeId {
    EpisodeId::new(s).unwrap()
}

fn key_digest(key: &str) -> String {
    vitalwatch_alerting::notification::NotificationKey::from_raw(key).digest_hex()
}

/// The code in an SMS text ("... ACK 12345678 ...").
fn code_in(text: &str) -> Option<String> {
    let at = text.find("ACK ")?;
    let code: String = text[at + 4..].chars().take_while(|c| c.is_ascii_digit()).collect();
    (!code.is_empty()).then_some(code)
}

fn token_in_eml(path: &Path) -> String {
    let raw = std::fs::read(path).unwrap();
    let mail = mailparse::parse_mail(&raw).unwrap();
    let mut texts = Vec::new();
    fn walk(p: &mailparse::ParsedMail<'_>, out: &mut Vec<String>) {
        if let Ok(b) = p.get_body() {
            out.push(b);
        }
        for s in &p.subparts {
            walk(s, out);
        }
    }
    walk(&mail, &mut texts);
    texts
        .iter()
        .find_map(|t| {
            let at = t.find("ack?t=")?;
            Some(t[at + 6..].chars().take_while(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c)).collect())
        })
        .unwrap_or_else(|| panic!("no acknowledgment link in {}", path.display()))
}

fn alert_event(episode: &str, event_id: &str, kind: AlertEventKind, severity: Severity) -> AlertEvent {
    let micros = Utc::now().timestamp_micros();
    let sev = match severity {
        Severity::Info => vitalwatch_schemas::proto::Severity::Info,
        Severity::Low => vitalwatch_schemas::proto::Severity::Low,
        Severity::Medium => vitalwatch_schemas::proto::Severity::Medium,
        Severity::High => vitalwatch_schemas::proto::Severity::High,
        Severity::Critical => vitalwatch_schemas::proto::Severity::Critical,
    };
    AlertEvent {
        event_id: event_id.into(),
        episode_id: episode.into(),
        patient_id: PATIENT.into(),
        rule_id: "threshold.spo2.low".into(),
        rule_kind: "threshold".into(),
        kind: kind as i32,
        severity: sev as i32,
        program: "copd".into(),
        code: "59408-5".into(),
        reading_time_unix_micros: micros - 60_000_000,
        detected_at_unix_micros: micros,
        readings: vec![EvidenceReading {
            observation_id: "obs-1".into(),
            code: "59408-5".into(),
            value: 87.0,
            unit: "%".into(),
            time_unix_micros: micros - 60_000_000,
        }],
        threshold: Some(90.0),
        baseline: Some(95.0),
        summary: "SpO2 87 % below 90 %".into(),
        trace_id: "trace-sec".into(),
        previous_severity: 0,
        historical: false,
        received_at_unix_micros: micros - 30_000_000,
        resolution: 0,
        rules_version: 0,
    }
}

fn assert_unchanged(before: &EpisodeState, after: &EpisodeState, what: &str) {
    assert!(after.acks.is_empty(), "{what}: the episode was acknowledged: {:?}", after.acks);
    assert_eq!(before.acks, after.acks, "{what}: acknowledgments changed");
    assert_eq!(before.snooze, after.snooze, "{what}: snooze changed");
}

// ------------------------------------------------------------------ defect 1: inbound SMS

/// Unsigned and forged inbound SMS, for the embedded default (file transport, provider
/// `none`), the generic `webhook` provider and `twilio`: each 403, nothing acknowledged.
#[tokio::test]
async fn unsigned_or_forged_inbound_sms_is_refused_for_every_provider() {
    let providers: [(&str, &[(&str, &str)]); 3] = [
        ("none (embedded default)", &[]),
        ("webhook", &[("VITALWATCH_ALERTING__SMS__PROVIDER", "webhook")]),
        (
            "twilio",
            &[
                ("VITALWATCH_ALERTING__SMS__PROVIDER", "twilio"),
                ("VITALWATCH_ALERTING__SMS__TWILIO_AUTH_TOKEN", "twilio-auth-token-of-the-test"),
            ],
        ),
    ];
    for (name, env) in providers {
        let run = Embedded::start(env).await;
        run.seed_team().await;
        run.event("ep-forged", "ev-1", AlertEventKind::Opened, Severity::Critical).await;
        let code = run.sms_code("ep-forged", Severity::Critical).await;
        let before = run.episode("ep-forged").await;
        let rows = run.ack_rows();
        let body = sms_form(MOBILE, &format!("ACK {code}"));
        let wrong_secret = b"not-the-secret-not-the-secret-not-the-secret";
        let attempts: Vec<(&str, Vec<(&str, String)>)> = vec![
            ("unsigned", vec![]),
            ("HMAC with a wrong secret", webhook_headers(wrong_secret, Utc::now().timestamp(), &body)),
            (
                "garbage signature",
                vec![("X-Vitalwatch-Signature", "sha256=00".into()), ("X-Twilio-Signature", "AAAA".into())],
            ),
            (
                "Twilio signature with a wrong token",
                vec![(
                    "X-Twilio-Signature",
                    vitalwatch_alerting::service::twilio_signature::sign(
                        "wrong-token",
                        &format!("http://{}/sms/inbound", run.addr),
                        &form_urlencoded::parse(body.as_bytes())
                            .map(|(k, v)| (k.into_owned(), v.into_owned()))
                            .collect::<Vec<_>>(),
                    ),
                )],
            ),
        ];
        for (what, headers) in attempts {
            let (status, reply) = post(&run.addr, "/sms/inbound", &headers, &body).await;
            assert_eq!(status, 403, "provider {name}, {what}: expected 403, got {status}: {reply}");
        }
        assert_unchanged(&before, &run.episode("ep-forged").await, name);
        assert_eq!(run.ack_rows(), rows, "provider {name}: alert_acknowledgments changed");
        drop(run.proc);
    }
}

/// A correctly signed generic-webhook call replayed after the allowed skew (old
/// timestamp) is refused; the same call with a fresh timestamp is accepted.
#[tokio::test]
async fn replayed_webhook_with_an_old_timestamp_is_refused() {
    let run = Embedded::start(&[("VITALWATCH_ALERTING__SMS__PROVIDER", "webhook")]).await;
    run.seed_team().await;
    run.event("ep-replay", "ev-1", AlertEventKind::Opened, Severity::High).await;
    let code = run.sms_code("ep-replay", Severity::High).await;
    let secret = run.inbound_secret();
    let before = run.episode("ep-replay").await;
    let body = sms_form(MOBILE, &format!("ACK {code}"));
    let old = Utc::now().timestamp() - 3600;
    let (status, reply) = post(&run.addr, "/sms/inbound", &webhook_headers(&secret, old, &body), &body).await;
    assert_eq!(status, 403, "a signature one hour old must be refused: {status} {reply}");
    let future = Utc::now().timestamp() + 3600;
    let (status, reply) = post(&run.addr, "/sms/inbound", &webhook_headers(&secret, future, &body), &body).await;
    assert_eq!(status, 403, "a timestamp one hour ahead must be refused: {status} {reply}");
    assert_unchanged(&before, &run.episode("ep-replay").await, "replayed webhook");
    // Control: the genuine, fresh call acknowledges.
    let (status, reply) =
        post(&run.addr, "/sms/inbound", &webhook_headers(&secret, Utc::now().timestamp(), &body), &body).await;
    assert_eq!(status, 200, "{reply}");
    assert!(reply.contains("Acknowledged"), "{reply}");
    assert_eq!(run.episode("ep-replay").await.acks.len(), 1);
}

/// Brute force of codes from the registered number, with valid signatures (the worst
/// case: a compromised gateway): after the lockout even the right code acknowledges
/// nothing, and the lockout is in `admin_audit`.
#[tokio::test]
async fn brute_force_of_sms_codes_is_locked_out_and_audited() {
    let run = Embedded::start(&[("VITALWATCH_ALERTING__SMS__PROVIDER", "webhook")]).await;
    run.seed_team().await;
    run.event("ep-brute", "ev-1", AlertEventKind::Opened, Severity::Critical).await;
    let code = run.sms_code("ep-brute", Severity::Critical).await;
    let secret = run.inbound_secret();
    let before = run.episode("ep-brute").await;
    let rows = run.ack_rows();
    let width = code.len();
    let real: u64 = code.parse().unwrap();
    let modulus = 10u64.pow(width as u32);
    // 40 guesses, the right code at position 20 (as a sequential scan would reach it).
    for i in 0..40u64 {
        let guess = if i == 20 { real } else { (real + 1 + i) % modulus };
        let body = sms_form(MOBILE, &format!("ACK {guess:0width$}"));
        let (status, _) =
            post(&run.addr, "/sms/inbound", &webhook_headers(&secret, Utc::now().timestamp(), &body), &body).await;
        assert_eq!(status, 200, "guess {i}");
    }
    assert_unchanged(&before, &run.episode("ep-brute").await, "brute force");
    assert_eq!(run.ack_rows(), rows, "alert_acknowledgments changed");
    let audit = run.admin_audit("sms_inbound_lockout");
    assert!(!audit.is_empty(), "the lockout is not audited in admin_audit");
    assert!(audit.iter().any(|(_, kind, id)| kind == "physician" && id == DOCTOR), "{audit:?}");
}

/// The reply (status and body) is the same for an unknown number, a wrong code from a
/// registered number and a locked number: it does not tell which numbers are physicians'.
#[tokio::test]
async fn unknown_number_reply_is_identical_to_wrong_code_reply() {
    let run = Embedded::start(&[("VITALWATCH_ALERTING__SMS__PROVIDER", "webhook")]).await;
    run.seed_team().await;
    run.event("ep-oracle", "ev-1", AlertEventKind::Opened, Severity::High).await;
    let code = run.sms_code("ep-oracle", Severity::High).await;
    let secret = run.inbound_secret();
    let wrong = format!("{:0w$}", (code.parse::<u64>().unwrap() + 1) % 10u64.pow(code.len() as u32), w = code.len());
    let send = |from: &'static str, text: String| {
        let (addr, secret) = (run.addr.clone(), secret.clone());
        async move {
            let body = sms_form(from, &text);
            post(&addr, "/sms/inbound", &webhook_headers(&secret, Utc::now().timestamp(), &body), &body).await
        }
    };
    let unknown = send(OTHER_MOBILE, format!("ACK {code}")).await;
    let wrong_code = send(MOBILE, format!("ACK {wrong}")).await;
    assert_eq!(unknown, wrong_code, "unknown number and wrong code must get the same answer");
    assert!(!unknown.1.to_lowercase().contains("regist"), "the reply mentions registration: {}", unknown.1);
    assert!(run.episode("ep-oracle").await.acks.is_empty());
}

/// `vitalwatch alerting` with the generic webhook provider (inbound on) and no inbound
/// secret refuses to start, naming the key.
#[tokio::test]
async fn alerting_refuses_to_start_with_inbound_sms_and_no_secret() {
    let env = [
        ("VITALWATCH_DATABASE__URL", format!("postgres://vitalwatch@127.0.0.1:{}/none", free_port())),
        ("VITALWATCH_ALERTING__ACK_SECRET", "0123456789abcdef0123456789abcdef-test".to_string()),
        ("VITALWATCH_ALERTING__SMS__PROVIDER", "webhook".to_string()),
        ("VITALWATCH_ALERTING__SMS__WEBHOOK_URL", "http://127.0.0.1:9/sms".to_string()),
        ("VITALWATCH_OPS__LISTEN", "127.0.0.1:0".to_string()),
    ];
    let mut cmd = std::process::Command::new(bin());
    cmd.arg("alerting").stdin(std::process::Stdio::null());
    for (k, v) in &env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(30), tokio::process::Command::from(cmd).output())
        .await
        .expect("vitalwatch alerting did not exit within 30 s")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "vitalwatch alerting started without an inbound secret: {stderr}");
    assert!(stderr.contains("alerting.sms.inbound.secret"), "the error does not name the key: {stderr}");
}

// ------------------------------------------------------------------ defect 2: links and codes

/// A MEDIUM email clicked after the episode rose to CRITICAL must not stop the
/// CRITICAL escalation; nor may the MEDIUM SMS code. The newest message does.
#[tokio::test]
async fn old_medium_link_and_code_after_a_rise_to_critical_acknowledge_nothing() {
    let run = Embedded::start(&[("VITALWATCH_ALERTING__SMS__PROVIDER", "webhook")]).await;
    run.seed_team().await;
    run.event("ep-rise", "ev-1", AlertEventKind::Opened, Severity::Medium).await;
    let medium_token = run.link_token("ep-rise", Severity::Medium).await;
    let medium_code = run.sms_code("ep-rise", Severity::Medium).await;
    run.event("ep-rise", "ev-2", AlertEventKind::Escalated, Severity::Critical).await;
    let critical_token = run.link_token("ep-rise", Severity::Critical).await;
    let before = run.episode("ep-rise").await;
    assert_eq!(before.severity, Severity::Critical);
    let rows = run.ack_rows();

    let (status, page) = post(&run.addr, "/ack", &[], &form(&[("t", &medium_token)])).await;
    assert_eq!(status, 409, "old MEDIUM link after a rise to CRITICAL: {status} {page}");
    assert!(page.contains("more severe"), "{page}");
    assert_unchanged(&before, &run.episode("ep-rise").await, "old link");
    assert_eq!(run.ack_rows(), rows);

    let secret = run.inbound_secret();
    let body = sms_form(MOBILE, &format!("ACK {medium_code}"));
    let (status, reply) =
        post(&run.addr, "/sms/inbound", &webhook_headers(&secret, Utc::now().timestamp(), &body), &body).await;
    assert_eq!(status, 200, "{reply}");
    assert!(reply.contains("more severe"), "old MEDIUM code after a rise: {reply}");
    assert_unchanged(&before, &run.episode("ep-rise").await, "old code");
    assert_eq!(run.ack_rows(), rows);

    // The CRITICAL link acknowledges.
    let (status, page) = post(&run.addr, "/ack", &[], &form(&[("t", &critical_token)])).await;
    assert_eq!(status, 200, "{page}");
    let after = run.episode("ep-rise").await;
    assert_eq!(after.acks.len(), 1);
    assert_eq!(after.acks[0].severity, Severity::Critical);
}

/// Tampered claims, a bad signature, a second use and an expired link: all refused,
/// the database unchanged.
#[tokio::test]
async fn tampered_replayed_and_expired_links_are_refused() {
    let run = Embedded::start(&[]).await;
    run.seed_team().await;
    run.event("ep-link", "ev-1", AlertEventKind::Opened, Severity::Medium).await;
    run.event("ep-other", "ev-o", AlertEventKind::Opened, Severity::High).await;
    let token = run.link_token("ep-link", Severity::Medium).await;
    let before = run.episode("ep-link").await;
    let other_before = run.episode("ep-other").await;
    let rows = run.ack_rows();

    let (body, sig) = token.rsplit_once('.').unwrap();
    let payload = B64.decode(body.trim_start_matches("v1.")).unwrap();
    let mut claims: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    let resign = |c: &serde_json::Value, key: Option<&[u8]>| {
        let b = format!("v1.{}", B64.encode(serde_json::to_vec(c).unwrap()));
        let s = match key {
            Some(k) => {
                let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(k).unwrap();
                m.update(b.as_bytes());
                B64.encode(m.finalize().into_bytes())
            }
            None => sig.to_string(),
        };
        format!("{b}.{s}")
    };
    // Changed claims, original signature: another episode, a later expiry, a higher severity.
    let mut tampered = Vec::new();
    let mut c = claims.clone();
    c["episode_id"] = "ep-other".into();
    tampered.push(("episode changed", resign(&c, None)));
    let mut c = claims.clone();
    c["expires_at"] = (Utc::now().timestamp() + 10 * 365 * 86400).into();
    tampered.push(("expiry extended", resign(&c, None)));
    let mut c = claims.clone();
    c["severity"] = "critical".into();
    tampered.push(("severity raised", resign(&c, None)));
    // Signed with another key.
    tampered.push(("wrong key", resign(&claims, Some(b"an-attacker-key-an-attacker-key-an-attacker-key"))));
    // Signature bytes flipped.
    let mut flipped = token.clone();
    let last = flipped.pop().unwrap();
    flipped.push(if last == 'A' { 'B' } else { 'A' });
    tampered.push(("signature flipped", flipped));
    for (what, t) in &tampered {
        let (status, page) = post(&run.addr, "/ack", &[], &form(&[("t", t)])).await;
        assert_eq!(status, 400, "{what}: {status} {page}");
    }
    // Expired: genuine key, expiry in the past.
    claims["expires_at"] = (Utc::now().timestamp() - 60).into();
    let expired = resign(&claims, Some(&run.ack_secret()));
    let (status, page) = post(&run.addr, "/ack", &[], &form(&[("t", &expired)])).await;
    assert_eq!(status, 410, "expired: {status} {page}");
    assert_unchanged(&before, &run.episode("ep-link").await, "tampered or expired link");
    assert_unchanged(&other_before, &run.episode("ep-other").await, "tampered link on another episode");
    assert_eq!(run.ack_rows(), rows);

    // Genuine use, then a replay.
    let (status, page) = post(&run.addr, "/ack", &[], &form(&[("t", &token)])).await;
    assert_eq!(status, 200, "{page}");
    let acked = run.episode("ep-link").await;
    assert_eq!(acked.acks.len(), 1);
    let rows = run.ack_rows();
    let (status, page) = post(&run.addr, "/ack", &[], &form(&[("t", &token)])).await;
    assert_eq!(status, 409, "replayed link: {status} {page}");
    assert_eq!(run.episode("ep-link").await.acks, acked.acks);
    assert_eq!(run.ack_rows(), rows);
}
