//! One fault, end to end: private services, the four roles as processes, the
//! load generator publishing with `--record`, the fault injected and removed,
//! then the checks against what was published.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rumqttc::QoS;

use super::services::{Broker, PrivatePostgres, SmsGateway, Smtp, Tansu, signal};
use super::{Fault, Outcome, Profile};
use crate::common::{Proc, bin, fresh_database, mqtt_publisher, run_cli, service_env, unique, wait_until};

/// The roles, in the order the SIGKILL fault kills them.
const ROLES: [&str; 4] = ["ingest", "persist", "rules", "alerting"];

/// The physician every simulated patient's care team pages (email and SMS).
const PHYSICIAN_EMAIL: &str = "oncall@faults.vitalwatch.example";

/// What the load generator published (`vitalwatch simulate --record`).
#[derive(Debug, Default)]
struct Record {
    /// Rows expected per (patient, time in microseconds).
    rows: HashMap<(String, i64), u64>,
    /// Readings published.
    published: u64,
}

impl Record {
    fn read(path: &Path) -> Record {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        // A line still being written has no newline yet.
        let complete = text.rfind('\n').map_or("", |i| &text[..i]);
        let mut r = Record::default();
        for line in complete.lines() {
            let f: Vec<&str> = line.split(',').collect();
            if let ["reading", p, t, n] = f.as_slice() {
                let (Ok(t), Ok(n)) = (t.parse::<i64>(), n.parse::<u64>()) else { continue };
                *r.rows.entry((p.to_string(), t)).or_default() += n;
                r.published += 1;
            }
        }
        r
    }

    fn expected_rows(&self) -> u64 {
        self.rows.values().sum()
    }

    fn rows_until(&self, micros: i64) -> u64 {
        self.rows.iter().filter(|((_, t), _)| *t <= micros).map(|(_, n)| n).sum()
    }
}

/// A short-lived connection with a bounded connect (a hung server must not hang the suite).
async fn connect(url: &str) -> Option<tokio_postgres::Client> {
    let (c, conn) = tokio::time::timeout(Duration::from_secs(3), tokio_postgres::connect(url, tokio_postgres::NoTls))
        .await
        .ok()?
        .ok()?;
    tokio::spawn(conn);
    Some(c)
}

/// `SELECT count(*) ...` with a bound on the whole exchange; `None` on any failure.
async fn count(url: &str, sql: &str, params: &[&(dyn tokio_postgres::types::ToSql + Sync)]) -> Option<u64> {
    let c = connect(url).await?;
    let row = tokio::time::timeout(Duration::from_secs(10), c.query_one(sql, params)).await.ok()?.ok()?;
    Some(row.get::<_, i64>(0) as u64)
}

/// Rows of the run's patients stored with a time at or before `until`.
async fn stored_until(db: &str, prefix: &str, until: DateTime<Utc>) -> Option<u64> {
    let pattern = format!("{prefix}-%");
    count(db, "SELECT count(*) FROM observations WHERE patient_id LIKE $1 AND time <= $2", &[&pattern, &until]).await
}

/// Outbox rows created at or before `until` that are neither sent nor cancelled.
async fn pages_pending_until(db: &str, until: DateTime<Utc>) -> Option<u64> {
    count(
        db,
        "SELECT count(*) FROM alert_outbox WHERE created_at <= $1 AND status NOT IN ('sent', 'cancelled')",
        &[&until],
    )
    .await
}

/// Patients with a stored reading past a threshold of the general program
/// (SpO2 < 90 %, systolic > 180 or diastolic > 120 mmHg) and no alert episode.
async fn patients_missed(db: &str, prefix: &str) -> Option<u64> {
    let pattern = format!("{prefix}-%");
    count(
        db,
        "SELECT count(*) FROM (SELECT DISTINCT patient_id FROM observations WHERE patient_id LIKE $1 \
         AND ((code = '59408-5' AND value < 90) OR (code = '8480-6' AND value > 180) \
         OR (code = '8462-4' AND value > 120)) EXCEPT SELECT patient_id FROM alert_episodes) m",
        &[&pattern],
    )
    .await
}

/// The four roles as processes, logging to the run's folder; restartable.
struct Roles {
    env: Vec<(String, String)>,
    dir: PathBuf,
    procs: Vec<Proc>,
    spawned: usize,
    /// Roles found dead (and restarted, as a supervisor would).
    exits: Vec<String>,
}

impl Roles {
    fn start(env: Vec<(String, String)>, dir: &Path) -> Roles {
        let mut r = Roles { env, dir: dir.to_path_buf(), procs: Vec::new(), spawned: 0, exits: Vec::new() };
        for role in ROLES {
            let p = r.spawn(role);
            r.procs.push(p);
        }
        r
    }

    fn spawn(&mut self, role: &str) -> Proc {
        self.spawned += 1;
        let log = self.dir.join(format!("{role}-{}.log", self.spawned));
        Proc::spawn_logged(role, &[role], &self.env, &log)
    }

    /// SIGKILL role `i`, and start it again after a second.
    async fn kill_and_restart(&mut self, i: usize) {
        self.procs[i].kill9();
        tokio::time::sleep(Duration::from_secs(1)).await;
        self.procs[i] = self.spawn(ROLES[i]);
    }

    /// Restarts any role that exited (a supervisor's job), noting it.
    fn supervise(&mut self) {
        for (i, role) in ROLES.iter().enumerate() {
            if let Ok(Some(status)) = self.procs[i].child.try_wait() {
                self.exits.push(format!("{role} exited ({status})"));
                self.procs[i] = self.spawn(role);
            }
        }
    }

    fn stop(&mut self) {
        for p in &mut self.procs {
            signal(p.child.id(), libc::SIGTERM);
        }
        let until = Instant::now() + Duration::from_secs(20);
        for p in &mut self.procs {
            while matches!(p.child.try_wait(), Ok(None)) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(50));
            }
            p.kill9();
        }
    }
}

/// Storage of the private tansu: memory, unless `VW_FAULT_TANSU_STORAGE`
/// names one that keeps the log across a restart (a `postgres://` database
/// holding tansu's schema). tansu-storage 0.6.0 from crates.io neither ships
/// nor creates its PostgreSQL schema (its `ddl/` is the SQLite dialect of the
/// embedded engines, and the PostgreSQL engine runs no DDL), so the suite
/// cannot make one by itself; the Kafka fault it always runs is the broker
/// unreachable (SIGSTOP), which memory storage survives.
pub fn tansu_storage() -> String {
    std::env::var("VW_FAULT_TANSU_STORAGE").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| "memory://tansu/".into())
}

/// The load generator: `vitalwatch simulate --record`.
fn start_load(
    p: &Profile,
    broker: &str,
    prefix: &str,
    record: &Path,
    secs: u64,
    onset: (u64, u64),
    log: &Path,
) -> Child {
    let log = std::fs::File::create(log).expect("load log");
    Command::new(bin())
        .arg("simulate")
        .args(["--broker", broker, "--prefix", prefix, "--connections", "4", "--drain-timeout", "30"])
        .args(["--patients", &p.patients.to_string(), "--rate", &p.rate.to_string(), "--duration", &secs.to_string()])
        .args(["--onset-warmup", &onset.0.to_string(), "--onsets", &onset.1.to_string()])
        .arg("--record")
        .arg(record)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("spawn vitalwatch simulate")
}

/// Registers the run's physician (email and mobile, both channels at every
/// severity) and, for every simulated patient, a care team paging them once
/// per severity.
async fn register_care_teams(db: &str, prefix: &str, patients: usize) {
    use vitalwatch_alerting::team::{ChannelPreferences, EmailAddress, PhoneNumber, TimeZone};
    use vitalwatch_alerting::{CareTeam, Channel, EscalationPolicy, Physician, PhysicianId};
    const POLICY: &str = r#"{"low": {"steps": [{"after_minutes": 0, "targets": [{"kind": "responsible"}]}]},
      "medium": {"steps": [{"after_minutes": 0, "targets": [{"kind": "responsible"}]}]},
      "high": {"steps": [{"after_minutes": 0, "targets": [{"kind": "responsible"}]}]},
      "critical": {"steps": [{"after_minutes": 0, "targets": [{"kind": "responsible"}]}]}}"#;
    let store = vitalwatch_alerting::store::open(db).await.expect("alerting store");
    let both = vec![Channel::Email, Channel::Sms];
    let id = PhysicianId::new("dr-oncall").unwrap();
    store
        .upsert_physician(&Physician {
            id: id.clone(),
            name: "Dr On Call".into(),
            email: EmailAddress::new(PHYSICIAN_EMAIL).unwrap(),
            mobile: Some(PhoneNumber::new("+33600000042").unwrap()),
            time_zone: TimeZone::new("Europe/Paris").unwrap(),
            quiet_hours: None,
            channels: ChannelPreferences {
                low: both.clone(),
                medium: both.clone(),
                high: both.clone(),
                critical: both,
            },
            hourly_cap: None,
            language: None,
        })
        .await
        .expect("physician");
    let policy: EscalationPolicy = serde_json::from_str(POLICY).unwrap();
    for i in 0..patients {
        // The load generator's patient ids (vitalwatch/src/sim/model.rs).
        let team = CareTeam {
            patient_id: vitalwatch_schemas::PatientId::new(format!("{prefix}-{i:06}")).unwrap(),
            responsible: id.clone(),
            deputies: Vec::new(),
            policy: policy.clone(),
        };
        store.set_care_team(&team).await.expect("care team");
    }
}

/// Produces the poison records: on each topic, bytes that decode to nothing
/// and a well-formed record with U+0000 in a string field (PostgreSQL
/// refuses it: SQLSTATE 22021).
async fn inject_poison(kafka: &str, run: &str, prefix: &str) -> Vec<String> {
    use prost::Message as _;
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use vitalwatch_schemas::proto;
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka)
        .set("message.timeout.ms", "20000")
        .create()
        .expect("poison producer");
    let now = Utc::now().timestamp_micros();
    let obs = proto::Observation {
        id: "poison-observation".into(),
        patient_id: "poison".into(),
        code: "8867-4".into(),
        value: 60.0,
        unit: "/min".into(),
        time_unix_micros: now,
        received_at_unix_micros: now,
        source: proto::Source::Device as i32,
        device_id: "poison-device".into(),
        time_source: proto::TimeSource::Device as i32,
        original_value: 60.0,
        original_unit: "/min".into(),
        msg_id: "poison\u{0}msg".into(),
        trace_id: String::new(),
    };
    let status = proto::DeviceStatus {
        device_id: format!("{prefix}-000000-oxi"),
        patient_id: format!("{prefix}-000000"),
        time_unix_micros: now,
        received_at_unix_micros: now,
        battery_percent: Some(50.0),
        firmware: "fw\u{0}poison".into(),
        ..Default::default()
    };
    let alert = proto::AlertEvent {
        event_id: "poison-event\u{0}".into(),
        episode_id: "poison-episode\u{0}".into(),
        patient_id: "poison".into(),
        rule_id: "threshold.spo2.low".into(),
        kind: proto::AlertEventKind::Opened as i32,
        severity: proto::Severity::High as i32,
        code: "59408-5".into(),
        reading_time_unix_micros: now,
        detected_at_unix_micros: now,
        summary: "poison\u{0}".into(),
        ..Default::default()
    };
    let garbage: &[u8] = b"\xff\xfe poison \x00\x01\x02 not a record";
    let mut errors = Vec::new();
    for (topic, payload) in [
        (format!("{run}.obs"), garbage.to_vec()),
        (format!("{run}.obs"), obs.encode_to_vec()),
        (format!("{run}.status"), garbage.to_vec()),
        (format!("{run}.status"), status.encode_to_vec()),
        (format!("{run}.alerts"), garbage.to_vec()),
        (format!("{run}.alerts"), alert.encode_to_vec()),
    ] {
        let rec = FutureRecord::to(&topic).key("poison").payload(&payload);
        if let Err((e, _)) = producer.send(rec, Duration::from_secs(20)).await {
            errors.push(format!("producing the poison record to {topic}: {e}"));
        }
    }
    errors
}

/// Runs `fault` under load and checks the outcome. `None`: a service is missing (outside CI).
pub async fn run(p: &Profile, fault: Fault) -> Option<Outcome> {
    let run = unique(&format!("flt_{}", fault.name().replace('-', "_")));
    let dir = std::env::temp_dir().join("vitalwatch-faults").join(&run);
    std::fs::create_dir_all(&dir).expect("run folder");
    eprintln!("logs in {}", dir.display());
    let mut pg = PrivatePostgres::start()?;
    let storage = tansu_storage();
    let mut tansu = Tansu::start(&storage, &dir.join("tansu.log"))?;
    let mut broker = Broker::start()?;
    let mut smtp = Smtp::start(&dir)?;
    let sms = SmsGateway::start().await;
    let db = fresh_database(&pg.url, &run).await;

    let kv = |k: &str, v: String| (k.to_owned(), v);
    let mut env = service_env(&run, &db, &broker.url());
    env.extend([
        kv("VITALWATCH_BUS__BROKERS", tansu.addr()),
        kv("VITALWATCH_ALERTING__GROUP", format!("{run}-alerting")),
        kv("VITALWATCH_ALERTING__HTTP_ADDR", "127.0.0.1:0".into()),
        kv("VITALWATCH_ALERTING__ACK_SECRET", "0123456789abcdef0123456789abcdef-fault-suite".into()),
        kv("VITALWATCH_ALERTING__TRANSPORT", "smtp".into()),
        kv("VITALWATCH_ALERTING__SMTP__HOST", "127.0.0.1".into()),
        kv("VITALWATCH_ALERTING__SMTP__PORT", smtp.port().to_string()),
        kv("VITALWATCH_ALERTING__SMTP__SECURITY", "none".into()),
        kv("VITALWATCH_ALERTING__SMTP__TIMEOUT_SECS", "5".into()),
        kv("VITALWATCH_ALERTING__SMS__PROVIDER", "webhook".into()),
        kv("VITALWATCH_ALERTING__SMS__WEBHOOK_URL", sms.url()),
        kv("VITALWATCH_ALERTING__SMS__TIMEOUT_SECS", "5".into()),
        // The scenario never replies by SMS: inbound off (on, it would need alerting.sms.inbound.secret).
        kv("VITALWATCH_ALERTING__SMS__INBOUND__ENABLED", "false".into()),
        kv("VITALWATCH_ALERTING__OUTBOX_POLL_MS", "200".into()),
        kv("VITALWATCH_ALERTING__SCHEDULER_POLL_MS", "500".into()),
    ]);
    run_cli(&["migrate"], &env);
    run_cli(&["patient", "add", "probe"], &env);
    let prefix = format!("pf{}", &run[run.len() - 6..]);
    run_cli(
        &["simulate", "--database", &db, "--register-only", "--prefix", &prefix, "--patients", &p.patients.to_string()],
        &[],
    );
    register_care_teams(&db, &prefix, p.patients).await;

    let mut roles = Roles::start(env.clone(), &dir);
    // Live end to end: a probe reading is stored.
    let probe = mqtt_publisher(&run, broker.port);
    let live = wait_until(Duration::from_secs(120), || async {
        let body = format!(
            r#"{{"readings":[{{"type":"heart_rate","time":"{}","unit":"/min","value":60}}]}}"#,
            Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        );
        let _ = probe.publish("vitalwatch/v1/patients/probe/manual/json", QoS::AtLeastOnce, false, body).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        count(&db, "SELECT count(*) FROM observations WHERE patient_id = 'probe'", &[]).await.unwrap_or(0) > 0
    })
    .await;
    let _ = probe.disconnect().await;
    let mut out = Outcome { fault: fault.name().to_owned(), ..Outcome::default() };
    if !live {
        out.notes.push("the pipeline never became live".into());
        roles.stop();
        return Some(out);
    }

    let length = p.duration_of(fault);
    let fault_at = if fault.is_page_fault() { Duration::from_secs(1) } else { p.warmup };
    // Trends start so that alerts (pages) fall during the fault.
    let onsets = if fault.is_page_fault() {
        (0, length.as_secs().saturating_sub(8))
    } else {
        (p.warmup.as_secs(), length.as_secs())
    };
    let load_secs = (fault_at + length + p.after).as_secs();
    let record_path = dir.join("published.csv");
    let mut load = start_load(p, &broker.url(), &prefix, &record_path, load_secs, onsets, &dir.join("load.log"));
    let t0 = Instant::now();
    tokio::time::sleep(fault_at).await;

    // The fault.
    let secs = length.as_secs();
    out.what = match fault {
        Fault::SigkillRoles => {
            let gap = (length / ROLES.len() as u32).max(Duration::from_secs(1));
            for i in 0..ROLES.len() {
                roles.kill_and_restart(i).await;
                tokio::time::sleep(gap.saturating_sub(Duration::from_secs(1))).await;
            }
            "SIGKILL ingest, persist, rules, alerting in turn, each restarted 1 s later".into()
        }
        Fault::PgStop => {
            pg.stop();
            tokio::time::sleep(length).await;
            pg.start_server();
            format!("PostgreSQL stopped {secs} s")
        }
        Fault::PgHang => {
            pg.hang();
            tokio::time::sleep(length).await;
            pg.resume();
            format!("PostgreSQL hung (SIGSTOP) {secs} s")
        }
        Fault::KafkaRestart => {
            tansu.restart();
            let kind = if storage.starts_with("memory") { "memory storage: the log is lost" } else { "log kept" };
            format!("tansu restarted ({kind})")
        }
        Fault::KafkaHang => {
            tansu.pause(true);
            tokio::time::sleep(length).await;
            tansu.pause(false);
            format!("tansu unreachable (SIGSTOP) {secs} s")
        }
        Fault::MqttRestart => {
            broker.restart();
            "Mosquitto restarted (persistent sessions)".into()
        }
        Fault::SmtpDown => {
            smtp.down();
            tokio::time::sleep(length).await;
            smtp.up();
            format!("SMTP down {secs} s")
        }
        Fault::Sms503 => {
            sms.failing.store(true, std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(length).await;
            sms.failing.store(false, std::sync::atomic::Ordering::SeqCst);
            format!("SMS gateway 503 for {secs} s")
        }
        Fault::Poison => {
            out.notes.extend(inject_poison(&tansu.addr(), &run, &prefix).await);
            "poison records on observations, device status, alerts".into()
        }
    };
    let fault_end = Utc::now();
    let ended = Instant::now();
    eprintln!("fault {} ended {:.1} s into the load", fault.name(), t0.elapsed().as_secs_f64());

    // Recovery: every reading published before the end of the fault stored,
    // every page planned before it sent.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = Record::read(&record_path).rows_until(fault_end.timestamp_micros());
    let until = ended + p.recover_timeout;
    while Instant::now() < until {
        roles.supervise();
        let rows = stored_until(&db, &prefix, fault_end).await;
        let pending = pages_pending_until(&db, fault_end).await;
        if rows.is_some_and(|n| n >= before) && pending == Some(0) {
            out.recover_secs = Some(ended.elapsed().as_secs_f64());
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The rest of the load, then everything stored and delivered (or the timeout).
    let load_until = Instant::now() + Duration::from_secs(load_secs + 60);
    while matches!(load.try_wait(), Ok(None)) && Instant::now() < load_until {
        roles.supervise();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if matches!(load.try_wait(), Ok(None)) {
        out.notes.push("the load generator did not finish".into());
        let _ = load.kill();
        let _ = load.wait();
    }
    let record = Record::read(&record_path);
    let expected = record.expected_rows();
    let far = Utc::now() + chrono::Duration::days(1);
    // Not recovered: a short look only (the table says so already).
    let drain = if out.recover_secs.is_some() { p.recover_timeout } else { Duration::from_secs(5) };
    let drain_until = Instant::now() + drain;
    while Instant::now() < drain_until {
        roles.supervise();
        let rows = stored_until(&db, &prefix, far).await.unwrap_or(0);
        let pending = pages_pending_until(&db, far).await;
        let sent = count(&db, "SELECT count(*) FROM alert_outbox WHERE status = 'sent'", &[]).await.unwrap_or(0);
        let received = delivered(&smtp, &sms).0;
        let missed = patients_missed(&db, &prefix).await;
        if rows >= expected && pending == Some(0) && received >= sent && missed == Some(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Late duplicates, if any, arrive now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    check(&mut out, &db, &prefix, &record, &smtp, &sms).await;
    out.notes.extend(roles.exits.iter().cloned());
    roles.stop();
    let logs = dir.display().to_string();
    drop((tansu, broker, smtp, pg));
    if out.passed() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!("{} FAILED: logs kept in {logs}", fault.name());
    }
    Some(out)
}

/// (distinct pages delivered, pages delivered more than once): emails to
/// the run's physician by Message-ID, SMS by idempotency key.
fn delivered(smtp: &Smtp, sms: &SmsGateway) -> (u64, u64) {
    let mails: Vec<String> = smtp
        .messages()
        .into_iter()
        .filter(|m| m.rcpt.iter().any(|r| r == PHYSICIAN_EMAIL))
        .map(|m| m.message_id)
        .collect();
    let texts = sms.log.lock().unwrap_or_else(|e| e.into_inner()).accepted.clone();
    let distinct = |v: &[String]| v.iter().collect::<HashSet<_>>().len() as u64;
    let (dm, ds) = (distinct(&mails), distinct(&texts));
    (dm + ds, (mails.len() as u64 - dm) + (texts.len() as u64 - ds))
}

/// Compares the stored rows with the record, and the pages received with the outbox.
async fn check(out: &mut Outcome, db: &str, prefix: &str, record: &Record, smtp: &Smtp, sms: &SmsGateway) {
    out.published = record.published;
    out.expected_rows = record.expected_rows();
    let Some(c) = connect(db).await else {
        out.notes.push("the database is unreachable at the end".into());
        return;
    };
    let pattern = format!("{prefix}-%");
    let rows = c
        .query(
            "SELECT patient_id, (extract(epoch FROM time) * 1000000)::bigint, count(*) FROM observations \
             WHERE patient_id LIKE $1 GROUP BY 1, 2",
            &[&pattern],
        )
        .await
        .expect("stored rows");
    let mut stored: HashMap<(String, i64), u64> = HashMap::new();
    for r in rows {
        stored.insert((r.get(0), r.get(1)), r.get::<_, i64>(2) as u64);
    }
    out.lost = record.rows.iter().map(|(k, n)| n.saturating_sub(stored.get(k).copied().unwrap_or(0))).sum();
    out.stored_twice = stored.iter().map(|(k, n)| n.saturating_sub(record.rows.get(k).copied().unwrap_or(0))).sum();

    let outbox = c.query("SELECT channel, status FROM alert_outbox", &[]).await.expect("outbox");
    out.pages_expected = outbox.iter().filter(|r| r.get::<_, String>(1) != "cancelled").count() as u64;
    out.pages_failed = outbox.iter().filter(|r| r.get::<_, String>(1) == "failed").count() as u64;
    (out.pages_delivered, out.duplicate_pages) = delivered(smtp, sms);

    out.patients_missed = patients_missed(db, prefix).await.unwrap_or(u64::MAX);
}
