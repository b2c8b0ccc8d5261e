//! The whole pipeline as four separate processes (`ingest`, `persist`,
//! `rules`, `alerting`) against Mosquitto, the Kafka-protocol broker,
//! PostgreSQL and an SMTP server (aiosmtpd): a deteriorating patient's
//! readings in over MQTT, the responsible physician's email out, then the
//! acknowledgment through the link, which stops the escalation to the deputy.
//! A second patient, not acknowledged, is the control: its episode does
//! escalate to the deputy after the (one-minute) policy delay.

use crate::common;
use crate::payloads;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use common::*;
use payloads::rfc3339;
use rumqttc::{AsyncClient, MqttOptions, QoS};
use vitalwatch_alerting::store::{self as astore, OutboxStatus};
use vitalwatch_alerting::{AckVia, EpisodeId, PhysicianId};

#[derive(Debug, Clone)]
struct Mail {
    rcpt: Vec<String>,
    subject: String,
    text: String,
}

/// Every message the SMTP server received, parsed.
fn mails(sink: &SmtpSink) -> Vec<Mail> {
    sink.messages().into_iter().map(|(raw, rcpt)| Mail::parse(&raw, rcpt)).collect()
}

impl Mail {
    fn parse(raw: &[u8], rcpt: Vec<String>) -> Mail {
        let parsed = mailparse::parse_mail(raw).expect("a MIME message");
        let subject = parsed
            .headers
            .iter()
            .find(|h| h.get_key().eq_ignore_ascii_case("Subject"))
            .map(|h| h.get_value())
            .unwrap_or_default();
        let mut text = String::new();
        let mut stack = vec![&parsed];
        while let Some(p) = stack.pop() {
            if p.ctype.mimetype == "text/plain" {
                text.push_str(&p.get_body().unwrap_or_default());
            }
            stack.extend(p.subparts.iter());
        }
        Mail { rcpt, subject, text }
    }

    fn to(&self, address: &str) -> bool {
        self.rcpt.iter().any(|r| r == address)
    }

    fn ack_link(&self) -> Option<String> {
        let start = self.text.find("Acknowledge: ")? + "Acknowledge: ".len();
        self.text[start..].split_whitespace().next().map(str::to_owned)
    }
}

/// POSTs `t=<token>` to `url` (plain HTTP/1.1); returns the status code.
fn post_ack(url: &str, token: &str) -> u16 {
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap_or((rest, "/".into()));
    let body: String = form_urlencoded_token(token);
    let mut s = std::net::TcpStream::connect(host).expect("connect to the alerting HTTP server");
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// `t=<token>`, percent-encoding anything outside the URL-safe set.
fn form_urlencoded_token(token: &str) -> String {
    let mut out = String::from("t=");
    for b in token.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The token in an ack link (`...?t=TOKEN`), percent-decoded.
fn token_of(link: &str) -> String {
    let q = link.split_once("?t=").expect("t= in the ack link").1;
    let mut out = Vec::new();
    let mut rest = q.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        match (b, tail.get(..2).and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok())) {
            (b'%', Some(v)) => {
                out.push(v);
                rest = &tail[2..];
            }
            _ => {
                out.push(b);
                rest = tail;
            }
        }
    }
    String::from_utf8(out).expect("UTF-8 token")
}

const RESPONSIBLE: &str = "resp@hospital.example";
const DEPUTY: &str = "deputy@hospital.example";

/// HIGH: the responsible physician at once, every deputy one minute later
/// without acknowledgment; no reminders (short delays for the test).
const POLICY: &str = r#"{
  "low":      {"steps": [{"after_minutes": 0, "targets": [{"kind": "responsible"}]}]},
  "medium":   {"steps": [{"after_minutes": 0, "targets": [{"kind": "responsible"}]}]},
  "high":     {"steps": [{"after_minutes": 0, "targets": [{"kind": "responsible"}]},
                         {"after_minutes": 1, "targets": [{"kind": "all_deputies"}]}]},
  "critical": {"steps": [{"after_minutes": 0, "targets": [{"kind": "responsible"}]},
                         {"after_minutes": 1, "targets": [{"kind": "all_deputies"}]}]}
}"#;

async fn episode_of(db: &str, patient: &str) -> Option<EpisodeId> {
    let (c, conn) = tokio_postgres::connect(db, tokio_postgres::NoTls).await.ok()?;
    tokio::spawn(conn);
    let row = c
        .query_opt("SELECT episode_id FROM alert_episodes WHERE patient_id = $1 AND state IS NOT NULL", &[&patient])
        .await
        .ok()??;
    EpisodeId::new(row.get::<_, String>(0)).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deteriorating_patient_emails_the_physician_and_the_ack_stops_escalation() {
    let Some(mosq) = Mosquitto::start() else { return };
    if !require("PostgreSQL", &pg_url()) || !require("Kafka-protocol broker", &kafka()) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let Some(sink) = SmtpSink::try_start(&tmp.path().join("mail")) else { return };
    let run = unique("fullpipe");
    let db = fresh_database(&pg_url(), &run).await;
    let http_port = free_port();
    let base = format!("http://127.0.0.1:{http_port}");
    let mut env = service_env(&run, &db, &mosq.url);
    let kv = |k: &str, v: String| (k.to_owned(), v);
    env.extend([
        kv("VITALWATCH_ALERTING__GROUP", format!("{run}-alerting")),
        kv("VITALWATCH_ALERTING__HTTP_ADDR", format!("127.0.0.1:{http_port}")),
        kv("VITALWATCH_ALERTING__PUBLIC_BASE_URL", base.clone()),
        kv("VITALWATCH_ALERTING__ACK_SECRET", "0123456789abcdef0123456789abcdef-full-pipeline".into()),
        kv("VITALWATCH_ALERTING__TRANSPORT", "smtp".into()),
        kv("VITALWATCH_ALERTING__SMTP__HOST", "127.0.0.1".into()),
        kv("VITALWATCH_ALERTING__SMTP__PORT", sink.port.to_string()),
        kv("VITALWATCH_ALERTING__SMTP__SECURITY", "none".into()),
        kv("VITALWATCH_ALERTING__SMTP__FROM", "vitalwatch <alerts@vitalwatch.test>".into()),
        kv("VITALWATCH_ALERTING__OUTBOX_POLL_MS", "100".into()),
        kv("VITALWATCH_ALERTING__SCHEDULER_POLL_MS", "500".into()),
        // The assertions below read the English email (the default is French).
        kv("VITALWATCH_ALERTING__DEFAULT_LANGUAGE", "en".into()),
    ]);

    // Registry, care program, physicians and care team, all through the CLI.
    run_cli(&["migrate"], &env);
    run_cli(&["patient", "add", "pt-ack", "pt-esc", "probe"], &env);
    let since = rfc3339(Utc::now() - TimeDelta::days(1));
    for (device, patient) in [("oxi-ack", "pt-ack"), ("oxi-esc", "pt-esc")] {
        run_cli(&["device", "add", device, "--kind", "oximeter"], &env);
        run_cli(&["device", "enrol", device, patient, "--from", &since], &env);
        run_cli(&["rules-config", "set", patient, "--program", "general"], &env);
    }
    run_cli(&["physician", "add", "dr-resp", "--name", "Dr Resp", "--email", RESPONSIBLE], &env);
    run_cli(&["physician", "add", "dr-deputy", "--name", "Dr Deputy", "--email", DEPUTY], &env);
    let policy = tmp.path().join("policy.json");
    std::fs::write(&policy, POLICY).unwrap();
    for patient in ["pt-ack", "pt-esc"] {
        run_cli(
            &[
                "care-team",
                "set",
                patient,
                "--responsible",
                "dr-resp",
                "--deputy",
                "dr-deputy",
                "--policy",
                &path_str(&policy),
            ],
            &env,
        );
    }

    let mut procs = [
        Proc::spawn("ingest", &["ingest"], &env),
        Proc::spawn("persist", &["persist"], &env),
        Proc::spawn("rules", &["rules"], &env),
        Proc::spawn("alerting", &["alerting"], &env),
    ];

    let mut opts = MqttOptions::new(format!("{run}-pub"), "127.0.0.1", mosq.port);
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(opts, 1000);
    tokio::spawn(async move {
        loop {
            if eventloop.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    let st = vitalwatch_platform::store::open(&db, 100).await.unwrap();
    let probe = vitalwatch_schemas::PatientId::new("probe").unwrap();
    let live = wait_until(Duration::from_secs(90), || async {
        let body = format!(
            r#"{{"readings":[{{"type":"heart_rate","time":"{}","unit":"/min","value":60}}]}}"#,
            rfc3339(Utc::now())
        );
        let _ = client.publish("vitalwatch/v1/patients/probe/manual/json", QoS::AtLeastOnce, false, body).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        !st.observations(&probe, 1).await.unwrap_or_default().is_empty()
    })
    .await;
    assert!(live, "pipeline never became live");

    // SpO2 96 -> 94 -> 92 -> 88 % over 40 minutes, from each patient's oximeter, the 88 %
    // re-measured a minute later (a single low reading waits for confirmation).
    let now = Utc::now();
    for device in ["oxi-ack", "oxi-esc"] {
        for (i, (mins, v)) in [(40, 96.0), (30, 94.0), (20, 92.0), (2, 88.0), (1, 88.0)].into_iter().enumerate() {
            let body = serde_json::json!({
                "msg_id": format!("{device}-{i}"),
                "readings": [{"type": "spo2", "time": rfc3339(now - TimeDelta::minutes(mins)), "unit": "%", "value": v}]
            });
            client
                .publish(
                    format!("vitalwatch/v1/devices/{device}/readings/json"),
                    QoS::AtLeastOnce,
                    false,
                    serde_json::to_vec(&body).unwrap(),
                )
                .await
                .unwrap();
        }
    }

    // The responsible physician's emails, one per patient.
    let about = |m: &Mail, patient: &str| m.subject.contains(&format!("patient {patient}"));
    let got = wait_until(Duration::from_secs(120), || async {
        let m = mails(&sink);
        ["pt-ack", "pt-esc"].iter().all(|p| m.iter().any(|x| x.to(RESPONSIBLE) && about(x, p)))
    })
    .await;
    let msgs = mails(&sink);
    assert!(got, "no email for both patients: {msgs:#?}");
    let first_page_at = Instant::now();
    let email = msgs.iter().find(|m| m.to(RESPONSIBLE) && about(m, "pt-ack")).unwrap();
    assert_eq!(email.rcpt, vec![RESPONSIBLE.to_string()]);
    assert!(email.subject.contains("HIGH") && email.subject.contains("SpO2 88 %"), "{}", email.subject);
    assert!(email.text.contains("Value: 88 %") && email.text.contains("threshold.spo2.low"), "{}", email.text);
    let link = email.ack_link().expect("an ack link");
    assert!(link.starts_with(&format!("{base}/ack?t=")), "{link}");

    // Acknowledge through the link (POST, as the confirmation page does).
    assert_eq!(post_ack(&format!("{base}/ack"), &token_of(&link)), 200);
    let episode = episode_of(&db, "pt-ack").await.expect("episode of pt-ack");
    let astore = astore::open(&db).await.unwrap();
    let state = astore.episode(&episode).await.unwrap().unwrap();
    assert_eq!(state.acks.len(), 1, "{:?}", state.acks);
    assert_eq!(state.acks[0].by, PhysicianId::new("dr-resp").unwrap());
    assert_eq!(state.acks[0].via, AckVia::Link);

    // The control escalates to the deputy after the one-minute delay...
    let escalated = wait_until(Duration::from_secs(150), || async {
        mails(&sink).iter().any(|m| m.to(DEPUTY) && about(m, "pt-esc"))
    })
    .await;
    assert!(escalated, "the unacknowledged episode escalates to the deputy: {:#?}", mails(&sink));
    // ...the acknowledged one does not (give the scheduler a few more polls).
    while first_page_at.elapsed() < Duration::from_secs(75) {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let all = mails(&sink);
    assert!(
        !all.iter().any(|m| m.to(DEPUTY) && about(m, "pt-ack")),
        "deputy paged for the acknowledged episode: {all:#?}"
    );
    let rows = astore.outbox(&episode).await.unwrap();
    assert!(rows.iter().all(|r| r.notification.recipient.as_str() == "dr-resp"), "{rows:?}");
    assert!(rows.iter().any(|r| r.status == OutboxStatus::Sent));

    for p in procs.iter_mut().rev() {
        p.terminate(Duration::from_secs(30));
    }
}
