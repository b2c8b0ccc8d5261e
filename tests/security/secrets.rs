//! Secrets and data at rest (issue #13, defects 3 and 5), attacked through the
//! real binary:
//! - find a secret in what vitalwatch prints: `vitalwatch config`, the `run`
//!   banner, its logs, and the error of a failed database connection;
//! - read another user's files: every file `vitalwatch run` writes in its data
//!   folder (acknowledgment secret, alert emails and SMS, the SQLite database
//!   and its WAL, the API token) must be unreadable by other users, even under
//!   the usual umask 022, and a folder found too open is tightened at start.
#![allow(unsafe_code)] // libc calls / a counting allocator in test code; each block has a SAFETY note

use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use chrono::Utc;
use rumqttc::QoS;

use crate::common::*;

/// Secret values planted in the configuration; none may ever be printed.
const DB_USERINFO: &str = "DbUserinfoS3cret";
const DB_QUERY: &str = "DbQueryS3cret";
const DB_SSL: &str = "DbSslKeyS3cret";
const KAFKA_PEM: &str = "KafkaPemS3cretMIIEvQIBADANBgkqhkiG9w0BAQEFAASC";
const KAFKA_SASL: &str = "KafkaSaslS3cret";
const KAFKA_KEYPW: &str = "KafkaKeyPwS3cret";
const KAFKA_OAUTH: &str = "KafkaOauthS3cret";
const KAFKA_KEYSTORE: &str = "KafkaKeystoreS3cret";
const MQTT_PW: &str = "MqttS3cret";
const ACK: &str = "AckS3cret-0123456789abcdef0123456789abcdef";
const SMTP_PW: &str = "SmtpS3cret";
const TWILIO: &str = "TwilioS3cret";
const BEARER: &str = "BearerS3cret";
const SIGNING: &str = "SigningS3cret";

const ALL: &[&str] = &[
    DB_USERINFO,
    DB_QUERY,
    DB_SSL,
    KAFKA_PEM,
    KAFKA_SASL,
    KAFKA_KEYPW,
    KAFKA_OAUTH,
    KAFKA_KEYSTORE,
    MQTT_PW,
    ACK,
    SMTP_PW,
    TWILIO,
    BEARER,
    SIGNING,
];

fn kv(k: &str, v: impl Into<String>) -> (String, String) {
    (k.to_owned(), v.into())
}

fn assert_no_secret(what: &str, text: &str) {
    for s in ALL {
        assert!(!text.contains(s), "{what} printed the secret {s:?}:\n{text}");
    }
}

/// Every secret kind set at once: the database password in the userinfo and
/// the query, Kafka key material and SASL password in the file, the rest in
/// the environment.
#[test]
fn config_output_shows_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vw.toml");
    std::fs::write(
        &file,
        format!(
            "[bus.kafka]\n\
             \"security.protocol\" = \"SASL_SSL\"\n\
             \"sasl.mechanism\" = \"SCRAM-SHA-512\"\n\
             \"sasl.username\" = \"vw-bus\"\n\
             \"sasl.password\" = \"{KAFKA_SASL}\"\n\
             \"ssl.certificate.pem\" = \"-----BEGIN CERTIFICATE-----\\nMIIBpublic\\n-----END CERTIFICATE-----\"\n\
             \"ssl.key.pem\" = \"-----BEGIN PRIVATE KEY-----\\n{KAFKA_PEM}\\n-----END PRIVATE KEY-----\"\n\
             \"ssl.key.password\" = \"{KAFKA_KEYPW}\"\n\
             \"ssl.keystore.password\" = \"{KAFKA_KEYSTORE}\"\n\
             \"sasl.oauthbearer.client.secret\" = \"{KAFKA_OAUTH}\"\n"
        ),
    )
    .unwrap();
    let env = [
        kv(
            "VITALWATCH_DATABASE__URL",
            format!(
                "postgres://vw:{DB_USERINFO}@db.example:5432/vw?sslmode=require&password={DB_QUERY}&sslpassword={DB_SSL}"
            ),
        ),
        kv("VITALWATCH_MQTT__USERNAME", "ingest"),
        kv("VITALWATCH_MQTT__PASSWORD", MQTT_PW),
        kv("VITALWATCH_ALERTING__ACK_SECRET", ACK),
        kv("VITALWATCH_ALERTING__SMTP__USERNAME", "mailer"),
        kv("VITALWATCH_ALERTING__SMTP__PASSWORD", SMTP_PW),
        kv("VITALWATCH_ALERTING__SMS__TWILIO_AUTH_TOKEN", TWILIO),
        kv("VITALWATCH_ALERTING__SMS__WEBHOOK_BEARER_TOKEN", BEARER),
        kv("VITALWATCH_ALERTING__SMS__WEBHOOK_SIGNING_SECRET", SIGNING),
    ];
    let out = Command::new(bin())
        .args(["--config", &path_str(&file), "config"])
        .envs(env.iter().cloned())
        .output()
        .expect("run vitalwatch config");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "vitalwatch config failed:\n{text}");
    assert_no_secret("vitalwatch config", &text);
    // Still useful to an operator: everything but the secrets is shown.
    for shown in ["db.example:5432/vw", "sslmode=require", "SASL_SSL", "SCRAM-SHA-512", "\"ingest\"", "********"] {
        assert!(text.contains(shown), "{shown:?} missing from vitalwatch config:\n{text}");
    }
}

/// Spawns `vitalwatch <args>` under umask 022 (the usual default), logging (JSON,
/// info) and its banner to `log`.
fn spawn_run(args: &[&str], env: &[(String, String)], log: &Path) -> Proc {
    let file = std::fs::File::create(log).unwrap();
    let mut cmd = Command::new(bin());
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::from(file));
    cmd.env("RUST_LOG", "info").env("VITALWATCH_LOG_FORMAT", "json");
    cmd.envs(env.iter().cloned());
    // SAFETY: umask(2) is async-signal-safe; nothing else runs in the child before exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0o022);
            Ok(())
        });
    }
    Proc { child: cmd.spawn().expect("spawn vitalwatch run"), name: "run".into() }
}

/// Free ports for everything `run` listens on.
fn run_env() -> Vec<(String, String)> {
    vec![
        kv("VITALWATCH_OPS__LISTEN", "127.0.0.1:0"),
        kv("VITALWATCH_API__LISTEN", format!("127.0.0.1:{}", free_port())),
        kv("VITALWATCH_ALERTING__HTTP_ADDR", format!("127.0.0.1:{}", free_port())),
    ]
}

async fn wait_for_text(log: &Path, needle: &str, timeout: Duration) -> bool {
    wait_until(timeout, || {
        let found = std::fs::read_to_string(log).unwrap_or_default().contains(needle);
        async move { found }
    })
    .await
}

/// `run` against PostgreSQL with the password both in the userinfo and in the
/// query: the banner and every log line show the database without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_banner_and_logs_show_no_database_password() {
    let pg = pg_url();
    if !require("postgres", &pg) {
        return;
    }
    let db = fresh_database(&pg, &unique("sec_banner")).await;
    // The test server trusts local connections: the passwords are carried, not checked.
    let (scheme, rest) = db.split_once("://").unwrap();
    let (user, host_db) = rest.split_once('@').unwrap();
    let user = user.split(':').next().unwrap();
    let url = format!("{scheme}://{user}:{DB_USERINFO}@{host_db}?password={DB_QUERY}&application_name=vw-sec");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("run.log");
    let data = path_str(&dir.path().join("data"));
    let listen = format!("127.0.0.1:{}", free_port());
    let mut env = run_env();
    env.push(kv("VITALWATCH_DATABASE__URL", url));
    let mut run = spawn_run(&["run", "--data-dir", &data, "--mqtt-listen", &listen], &env, &log);
    let up = wait_for_text(&log, "vitalwatch is running", Duration::from_secs(60)).await;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(up, "no banner:\n{text}");
    run.terminate(Duration::from_secs(30));
    let text = std::fs::read_to_string(&log).unwrap();
    assert_no_secret("the run banner and logs", &text);
    let host = host_db.split('/').next().unwrap();
    assert!(text.contains(&format!("{host}/")), "the banner names the database server {host}:\n{text}");
}

/// A database URL tokio-postgres cannot parse (`sslpassword` is unknown to it),
/// and one whose server refuses the connection: each error names the server,
/// never the password.
#[test]
fn connection_error_shows_no_database_password() {
    let port = free_port(); // nothing listens there
    for url in [
        format!("postgres://vw:{DB_USERINFO}@127.0.0.1:{port}/vw?password={DB_QUERY}&sslpassword={DB_SSL}"),
        format!("postgres://vw:{DB_USERINFO}@127.0.0.1:{port}/vw?password={DB_QUERY}"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(bin())
            .args(["run", "--data-dir", &path_str(&dir.path().join("data"))])
            .env("VITALWATCH_DATABASE__URL", &url)
            .envs(run_env())
            .env("VITALWATCH_DATABASE__CONNECT_TIMEOUT_MS", "2000")
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .output()
            .expect("run vitalwatch run");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!out.status.success(), "run started without its database:\n{text}");
        assert_no_secret("the connection error", &text);
        assert!(text.contains(&format!("127.0.0.1:{port}")), "the error names the server:\n{text}");
    }
}

/// Every entry under `root`, the root included.
fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.to_owned()];
    if root.is_dir() {
        for e in std::fs::read_dir(root).unwrap().flatten() {
            out.extend(walk(&e.path()));
        }
    }
    out
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
}

/// Another local user tries to read the data folder: folders 0700, files 0600.
fn assert_private_tree(root: &Path) {
    let mut bad = Vec::new();
    for p in walk(root) {
        let m = mode(&p);
        let ok = if p.is_dir() { m == 0o700 } else { m & 0o077 == 0 };
        if !ok {
            bad.push(format!("{} {m:o}", p.display()));
        }
    }
    assert!(bad.is_empty(), "readable by other users: {bad:#?}");
}

/// `run --simulate` in a fresh folder under umask 022, one critical reading
/// published so an alert email is written: the acknowledgment secret, the
/// `.eml`, the database and its WAL are 0600 and the folders 0700.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_files_are_private() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("run.log");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let data_s = path_str(&data);
    let args = ["run", "--data-dir", &data_s, "--mqtt-listen", &listen, "--simulate", "2", "--simulate-interval", "1"];
    let mut run = spawn_run(&args, &run_env(), &log);
    assert!(
        wait_for_text(&log, "vitalwatch is running", Duration::from_secs(60)).await,
        "no banner:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let client = mqtt_publisher(&unique("sec-files"), port);
    let alerts = data.join("alerts");
    let has_eml = || {
        std::fs::read_dir(&alerts)
            .map(|rd| rd.flatten().any(|e| e.file_name().to_string_lossy().ends_with(".eml")))
            .unwrap_or(false)
    };
    for _ in 0..60 {
        let body = format!(
            r#"{{"readings":[{{"type":"spo2","time":"{}","unit":"%","value":80}}]}}"#,
            Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        client.publish("vitalwatch/v1/patients/p-sim-000000/manual/json", QoS::AtLeastOnce, false, body).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        if has_eml() {
            break;
        }
    }
    assert!(has_eml(), "no alert email in {}:\n{}", alerts.display(), std::fs::read_to_string(&log).unwrap());
    for f in ["vitalwatch.db", "vitalwatch.db-wal", "vitalwatch.db-shm", "api-token", "alerts/ack.secret"] {
        assert!(data.join(f).exists(), "{f} missing");
    }
    assert_private_tree(&data);
    run.terminate(Duration::from_secs(30));
    assert_private_tree(&data);
}

/// A data folder left world-readable (an older version, a copy): `run`
/// tightens it and what is in it before serving, and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_data_folder_is_tightened_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let alerts = data.join("alerts");
    std::fs::create_dir_all(&alerts).unwrap();
    std::fs::write(alerts.join("ack.secret"), "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
        .unwrap();
    std::fs::write(alerts.join("old.eml"), "Subject: p-001 SpO2 80%\r\n\r\n").unwrap();
    for (p, m) in
        [(&data, 0o755), (&alerts, 0o775), (&alerts.join("ack.secret"), 0o644), (&alerts.join("old.eml"), 0o666)]
    {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    }
    let log = dir.path().join("run.log");
    let listen = format!("127.0.0.1:{}", free_port());
    let data_s = path_str(&data);
    let mut run = spawn_run(&["run", "--data-dir", &data_s, "--mqtt-listen", &listen], &run_env(), &log);
    assert!(
        wait_for_text(&log, "vitalwatch is running", Duration::from_secs(60)).await,
        "no banner:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert_private_tree(&data);
    run.terminate(Duration::from_secs(30));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("tightened"), "the tightening is not logged:\n{text}");
    assert!(!text.contains("old.eml"), "file names (patient data may be in them) are not logged:\n{text}");
}
