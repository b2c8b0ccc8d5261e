//! MQTT attacks (issue #13, defect 7 and "encryption and authentication between services"):
//!
//! - registering a device under a patient's id (and the reverse), through the CLI and the admin
//!   API, on PostgreSQL and SQLite: refused, nothing written;
//! - a real Mosquitto running the SHIPPED `deploy/mosquitto/acl.conf` and a copy of the shipped TLS
//!   listener section of `deploy/mosquitto/mosquitto.conf` (password file made here with
//!   `mosquitto_passwd`, certificates with `openssl`): a device cannot publish for another device
//!   or for a patient, nobody reads another one's rejection replies, anonymous, wrong-password and
//!   plaintext connections to the TLS listener are refused, and the (commented) mutual-TLS listener
//!   logs a device in by its certificate only;
//! - the real ingest (`vitalwatch run` against that broker) over `mqtts://`: stores a reading with
//!   the right CA and password, refuses a broker it cannot verify and a wrong password;
//! - the embedded broker of `vitalwatch run`: serves MQTT 5 and 3.1.1 clients on one port, and
//!   with `mqtt.embedded_users` refuses anonymous and wrong-password clients.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::v5::mqttbytes::v5::{Packet as Packet5, PubAckReason};
use rumqttc::v5::{AsyncClient as AsyncClient5, Event as Event5, MqttOptions as MqttOptions5};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;
use vitalwatch_platform::config::MqttSettings;
use vitalwatch_platform::secret::Secret;
use vitalwatch_platform::store::Store as _;
use vitalwatch_platform::store::sqlite::SqliteStore;
use vitalwatch_schemas::PatientId;

use crate::common::*;

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn shipped(file: &str) -> PathBuf {
    Path::new(REPO).join("deploy/mosquitto").join(file)
}

/// Runs `vitalwatch <args>` and returns (success, stdout + stderr).
fn cli(args: &[&str], env: &[(String, String)]) -> (bool, String) {
    let mut cmd = Command::new(bin());
    cmd.args(args).env("RUST_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run vitalwatch");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

// ------------------------------------------------------------------ defect 7: colliding ids

/// The refusal must say what collides, so an operator knows what to do.
fn assert_collision_refused(what: &str, ok: bool, text: &str) {
    assert!(!ok, "{what} was accepted; it must be refused (device and patient ids share the MQTT namespace):\n{text}");
    assert!(text.contains("already") && text.contains("id"), "{what}: unclear error:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn colliding_device_and_patient_ids_are_refused_on_postgres_cli_and_api() {
    if !require("PostgreSQL", &pg_url()) {
        return;
    }
    let url = fresh_database(&pg_url(), &unique("vw_sec_mqtt_ids")).await;
    let env = vec![
        ("VITALWATCH_DATABASE__URL".to_owned(), url.clone()),
        ("VITALWATCH_OPS__LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
    ];
    run_cli(&["migrate"], &env);
    run_cli(&["patient", "add", "p-1"], &env);
    run_cli(&["device", "add", "d-1"], &env);

    // CLI, both directions.
    let (ok, text) = cli(&["device", "add", "p-1"], &env);
    assert_collision_refused("CLI `device add p-1` (p-1 is a patient)", ok, &text);
    let (ok, text) = cli(&["patient", "add", "d-1"], &env);
    assert_collision_refused("CLI `patient add d-1` (d-1 is a device)", ok, &text);

    // Admin API, both directions: 409 with a clear message.
    let ops = run_cli(&["api-token", "create", "--name", "ops", "--role", "operator"], &env).trim().to_owned();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut env_api = env.clone();
    env_api.push(("VITALWATCH_API__LISTEN".into(), addr.clone()));
    let _api = Proc::spawn("api", &["api"], &env_api);
    assert!(
        wait_until(Duration::from_secs(30), || async { tokio::net::TcpStream::connect(&addr).await.is_ok() }).await,
        "the API did not listen on {addr}"
    );
    let (status, body) = post(&addr, "/v1/devices", &ops, r#"{"id":"p-1","kind":"scale"}"#).await;
    assert_eq!(status, 409, "POST /v1/devices with a patient's id: {body}");
    assert!(body.contains("already") && body.contains("conflict"), "{body}");
    let (status, body) = post(&addr, "/v1/patients", &ops, r#"{"id":"d-1"}"#).await;
    assert_eq!(status, 409, "POST /v1/patients with a device's id: {body}");
    assert!(body.contains("already"), "{body}");

    // The database itself refuses (another writer than the CLI/API, e.g. a script).
    let (db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let e = db.execute("INSERT INTO devices (device_id) VALUES ('p-1')", &[]).await.unwrap_err();
    assert!(e.to_string().contains("already") || format!("{e:?}").contains("already"), "{e:?}");
    assert!(db.execute("INSERT INTO patients (patient_id) VALUES ('d-1')", &[]).await.is_err());

    // Nothing changed.
    let n = |sql: &'static str| {
        let db = &db;
        async move { db.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    assert_eq!(n("SELECT count(*) FROM devices WHERE device_id = 'p-1'").await, 0);
    assert_eq!(n("SELECT count(*) FROM patients WHERE patient_id = 'd-1'").await, 0);
    assert_eq!(n("SELECT count(*) FROM devices").await, 1);
    assert_eq!(n("SELECT count(*) FROM patients").await, 1);
    // Idempotent re-registration of the same kind still works.
    run_cli(&["device", "add", "d-1"], &env);
    run_cli(&["patient", "add", "p-1"], &env);
}

#[tokio::test]
async fn colliding_device_and_patient_ids_are_refused_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let data = path_str(dir.path());
    let args = |a: &[&'static str]| -> Vec<String> {
        a.iter().map(|s| s.to_string()).chain(["--embedded".into(), "--data-dir".into(), data.clone()]).collect()
    };
    let run = |a: &[&'static str]| {
        let v = args(a);
        let refs: Vec<&str> = v.iter().map(String::as_str).collect();
        cli(&refs, &[])
    };
    assert!(run(&["patient", "add", "p-1"]).0);
    assert!(run(&["device", "add", "d-1"]).0);
    let (ok, text) = run(&["device", "add", "p-1"]);
    assert_collision_refused("`device add p-1 --embedded`", ok, &text);
    let (ok, text) = run(&["patient", "add", "d-1"]);
    assert_collision_refused("`patient add d-1 --embedded`", ok, &text);
    let db = rusqlite::Connection::open(dir.path().join("vitalwatch.db")).unwrap();
    assert!(db.execute("INSERT INTO devices (device_id, created_at) VALUES ('p-1', 0)", []).is_err());
    let count = |sql: &str| db.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
    assert_eq!(count("SELECT count(*) FROM devices WHERE device_id = 'p-1'"), 0);
    assert_eq!(count("SELECT count(*) FROM patients WHERE patient_id = 'd-1'"), 0);
}

async fn post(addr: &str, path: &str, token: &str, body: &str) -> (u16, String) {
    let headers = [("Authorization", format!("Bearer {token}")), ("Content-Type", "application/json".to_owned())];
    let r = crate::common::http::request(addr, "POST", path, &headers, Some(body)).await;
    (r.status, r.body)
}

// ------------------------------------------------------------------ a real Mosquitto, shipped ACLs

/// Test certificates made with the openssl CLI: a CA, a server certificate for localhost /
/// 127.0.0.1 signed by it, and an unrelated CA.
struct Pki {
    ca: PathBuf,
    other_ca: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().expect("run openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn make_pki(dir: &Path) -> Pki {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    for (name, cn) in [("ca", "vitalwatch test CA"), ("other-ca", "an unrelated CA")] {
        let (key, crt, subj) = (format!("{name}.key"), format!("{name}.crt"), format!("/CN={cn}"));
        let mut a = vec!["req", "-x509"];
        a.extend(ec);
        a.extend(["-keyout", &key, "-out", &crt, "-days", "2", "-subj", &subj]);
        openssl(dir, &a);
    }
    let mut a = vec!["req"];
    a.extend(ec);
    a.extend(["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]);
    openssl(dir, &a);
    std::fs::write(dir.join("san.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    );
    // A device certificate (CN = its id) for the mutual-TLS listener.
    std::fs::write(dir.join("client.ext"), "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n").unwrap();
    let mut a = vec!["req"];
    a.extend(ec);
    a.extend(["-keyout", "dev-a.key", "-out", "dev-a.csr", "-subj", "/CN=dev-a"]);
    openssl(dir, &a);
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "dev-a.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "dev-a.crt",
            "-days",
            "2",
            "-extfile",
            "client.ext",
        ],
    );
    Pki { ca: dir.join("ca.crt"), other_ca: dir.join("other-ca.crt") }
}

/// The commented mutual-TLS listener of the shipped `mosquitto.conf` (from `#listener 8884` to
/// `#use_identity_as_username true`), uncommented, on `port`, the device CA being the test CA.
fn shipped_mtls_section(port: u16, certs: &Path) -> String {
    let conf = std::fs::read_to_string(shipped("mosquitto.conf")).expect("read the shipped mosquitto.conf");
    let start = conf.find("#listener 8884").expect("the shipped mosquitto.conf has a mutual-TLS listener");
    let end = conf[start..].find("#use_identity_as_username true").expect("use_identity_as_username") + start;
    let section: String =
        conf[start..end + "#use_identity_as_username true".len()].lines().map(|l| format!("{}\n", &l[1..])).collect();
    section
        .replace("listener 8884", &format!("listener {port} 127.0.0.1"))
        .replace("device-ca.crt", "ca.crt")
        .replace("/mosquitto/certs/", &format!("{}/", certs.display()))
}

/// The TLS listener section of the shipped `mosquitto.conf` (between its `BEGIN TLS LISTENER` and
/// `END TLS LISTENER` markers), moved to `port` on 127.0.0.1 with the certificates in `certs`.
fn shipped_tls_section(port: u16, certs: &Path) -> String {
    let conf = std::fs::read_to_string(shipped("mosquitto.conf")).expect("read the shipped mosquitto.conf");
    let start = conf.find("BEGIN TLS LISTENER").expect("the shipped mosquitto.conf marks its TLS listener");
    let end = conf.find("END TLS LISTENER").expect("END TLS LISTENER marker");
    let section = &conf[start..end];
    let section = section.split_once('\n').map(|(_, rest)| rest).unwrap_or_default();
    assert!(section.contains("\nlistener 8883") || section.starts_with("listener 8883"), "{section}");
    section
        .replace("listener 8883", &format!("listener {port} 127.0.0.1"))
        .replace("/mosquitto/certs/", &format!("{}/", certs.display()))
}

/// Users of the test broker: (username, password).
const USERS: &[(&str, &str)] = &[
    ("dev-a", "pw-dev-a"),
    ("dev-b", "pw-dev-b"),
    ("pat-a", "pw-pat-a"),
    ("pat-b", "pw-pat-b"),
    ("vitalwatch-ingest", "pw-ingest"),
];

fn password(user: &str) -> &'static str {
    USERS.iter().find(|(u, _)| *u == user).map(|(_, p)| *p).unwrap()
}

/// Mosquitto with the shipped ACL file, a password file, no anonymous access, a plain listener on
/// 127.0.0.1 (the in-cluster one) and the shipped TLS listener.
struct SecureBroker {
    child: Child,
    plain: u16,
    tls: u16,
    mtls: u16,
    pki: Pki,
    dir: tempfile::TempDir,
}

impl SecureBroker {
    fn start() -> Option<SecureBroker> {
        if !require_program("mosquitto") || !require_program("mosquitto_passwd") || !require_program("openssl") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let pki = make_pki(dir.path());
        let passwd = dir.path().join("passwd");
        std::fs::write(&passwd, "").unwrap();
        for (u, p) in USERS {
            let st = Command::new("mosquitto_passwd").arg("-b").arg(&passwd).args([u, p]).status().unwrap();
            assert!(st.success(), "mosquitto_passwd {u}");
        }
        let (plain, tls, mtls) = (free_port(), free_port(), free_port());
        let user = Command::new("id").arg("-un").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
        let conf = format!(
            "per_listener_settings false\nallow_anonymous false\npassword_file {}\nacl_file {}\n\
             user {}\npersistence false\nlog_dest file {}/mosquitto.log\nlog_type all\nconnection_messages true\n\
             listener {plain} 127.0.0.1\n{}\n{}",
            passwd.display(),
            shipped("acl.conf").display(),
            user.unwrap_or_else(|_| "root".into()),
            dir.path().display(),
            shipped_tls_section(tls, dir.path()),
            shipped_mtls_section(mtls, dir.path()),
        );
        std::fs::write(dir.path().join("mosquitto.conf"), conf).unwrap();
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(dir.path().join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn mosquitto");
        let until = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", plain)).is_err()
            || std::net::TcpStream::connect(("127.0.0.1", tls)).is_err()
            || std::net::TcpStream::connect(("127.0.0.1", mtls)).is_err()
        {
            assert!(Instant::now() < until, "mosquitto did not start:\n{}", self_log(dir.path()));
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(SecureBroker { child, plain, tls, mtls, pki, dir })
    }

    fn log(&self) -> String {
        self_log(self.dir.path())
    }
}

fn self_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("mosquitto.log")).unwrap_or_default()
}

impl Drop for SecureBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An MQTT 5 client on the plain listener as `user`: every event goes to the returned channel.
async fn client5(port: u16, user: &str, id: &str) -> (AsyncClient5, mpsc::UnboundedReceiver<Event5>) {
    let mut opts = MqttOptions5::new(id, "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(10)).set_credentials(user, password(user));
    let (client, mut eventloop) = AsyncClient5::new(opts, 100);
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(ev) = eventloop.poll().await {
            if tx.send(ev).is_err() {
                return;
            }
        }
    });
    (client, rx)
}

/// Waits for the next packet matching `f`, up to 10 s.
async fn next5<T>(rx: &mut mpsc::UnboundedReceiver<Event5>, mut f: impl FnMut(&Packet5) -> Option<T>) -> Option<T> {
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(until, rx.recv()).await {
            Ok(Some(Event5::Incoming(p))) => {
                if let Some(t) = f(&p) {
                    return Some(t);
                }
            }
            Ok(Some(_)) => {}
            _ => return None,
        }
    }
}

fn publish_topic(p: &Packet5) -> Option<String> {
    match p {
        Packet5::Publish(p) => Some(String::from_utf8_lossy(&p.topic).into_owned()),
        _ => None,
    }
}

async fn connected5(rx: &mut mpsc::UnboundedReceiver<Event5>) {
    assert!(next5(rx, |p| matches!(p, Packet5::ConnAck(_)).then_some(())).await.is_some(), "no CONNACK");
}

async fn subscribed5(rx: &mut mpsc::UnboundedReceiver<Event5>) {
    assert!(next5(rx, |p| matches!(p, Packet5::SubAck(_)).then_some(())).await.is_some(), "no SUBACK");
}

/// Publishes at QoS 1 and returns the broker's PUBACK reason.
async fn publish5(c: &AsyncClient5, rx: &mut mpsc::UnboundedReceiver<Event5>, topic: &str) -> PubAckReason {
    c.publish(topic, QoS5::AtLeastOnce, false, br#"{"readings":[]}"#.to_vec()).await.unwrap();
    next5(rx, |p| match p {
        Packet5::PubAck(a) => Some(a.reason),
        _ => None,
    })
    .await
    .expect("a PUBACK")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_acl_a_device_cannot_publish_for_another_device_or_a_patient() {
    let Some(broker) = SecureBroker::start() else { return };
    // The ingest's view: everything under vitalwatch/v1/.
    let (ingest, mut seen) = client5(broker.plain, "vitalwatch-ingest", "ingest-0").await;
    connected5(&mut seen).await;
    ingest.subscribe("vitalwatch/v1/#", QoS5::AtLeastOnce).await.unwrap();
    subscribed5(&mut seen).await;

    let (dev, mut dev_rx) = client5(broker.plain, "dev-a", "dev-a").await;
    connected5(&mut dev_rx).await;
    let forbidden = [
        "vitalwatch/v1/devices/dev-b/readings/json",   // another device
        "vitalwatch/v1/devices/dev-b/status",          // another device's status
        "vitalwatch/v1/patients/pat-a/manual/json",    // a patient's manual entry
        "vitalwatch/v1/devices/dev-a/readings/json/x", // an extra level
        "vitalwatch/v1/devices/dev-a/rejected",        // forging its own rejection
        "vitalwatch/v1/patients/dev-a-x/manual/json",  // a patient subtree
        "vitalwatch/v1/ingest/ingest-0/drain",         // the ingest's leave marker
    ];
    for t in forbidden {
        assert_eq!(publish5(&dev, &mut dev_rx, t).await, PubAckReason::NotAuthorized, "dev-a publishing {t}");
    }
    // A patient app cannot publish for another patient, nor as a device.
    let (pat, mut pat_rx) = client5(broker.plain, "pat-a", "pat-a-app").await;
    connected5(&mut pat_rx).await;
    for t in ["vitalwatch/v1/patients/pat-b/manual/json", "vitalwatch/v1/devices/dev-a/readings/json"] {
        assert_eq!(publish5(&pat, &mut pat_rx, t).await, PubAckReason::NotAuthorized, "pat-a publishing {t}");
    }
    // Their own topics work; being the last publishes, they are also the last deliveries: nothing
    // forbidden reached the ingest before them.
    let own_pat = "vitalwatch/v1/patients/pat-a/manual/json";
    assert_ne!(publish5(&pat, &mut pat_rx, own_pat).await, PubAckReason::NotAuthorized);
    let own = "vitalwatch/v1/devices/dev-a/readings/json";
    assert_ne!(publish5(&dev, &mut dev_rx, own).await, PubAckReason::NotAuthorized);
    let mut got = Vec::new();
    while got.len() < 2 {
        let t = next5(&mut seen, publish_topic).await;
        let Some(t) = t else { break };
        got.push(t);
    }
    got.sort();
    assert_eq!(got, vec![own.to_owned(), own_pat.to_owned()], "what the ingest received");
    // Nothing else arrives.
    assert_eq!(
        tokio::time::timeout(Duration::from_millis(500), async { next5(&mut seen, publish_topic).await })
            .await
            .ok()
            .flatten(),
        None
    );
    // The reason the namespaces must not collide: the ACL patterns apply to every username, so a
    // device registered under a patient's id WOULD publish that patient's manual entries. The
    // registry refuses such ids (see the colliding_* tests).
    assert!(
        std::fs::read_to_string(shipped("acl.conf"))
            .unwrap()
            .contains("pattern write vitalwatch/v1/patients/%u/manual/+")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_acl_nobody_reads_another_ones_rejections() {
    let Some(broker) = SecureBroker::start() else { return };
    let (ingest, mut ingest_rx) = client5(broker.plain, "vitalwatch-ingest", "ingest-r").await;
    connected5(&mut ingest_rx).await;
    // dev-b tries to read dev-a's and pat-a's rejections (and its own, the sentinel).
    let (spy, mut spy_rx) = client5(broker.plain, "dev-b", "dev-b").await;
    connected5(&mut spy_rx).await;
    for f in [
        "vitalwatch/v1/devices/dev-a/rejected",
        "vitalwatch/v1/patients/pat-a/rejected",
        "vitalwatch/v1/devices/+/rejected",
        "vitalwatch/v1/#",
    ] {
        spy.subscribe(f, QoS5::AtLeastOnce).await.unwrap();
        subscribed5(&mut spy_rx).await;
    }
    spy.subscribe("vitalwatch/v1/devices/dev-b/rejected", QoS5::AtLeastOnce).await.unwrap();
    subscribed5(&mut spy_rx).await;
    // dev-a reads its own.
    let (owner, mut owner_rx) = client5(broker.plain, "dev-a", "dev-a").await;
    connected5(&mut owner_rx).await;
    owner.subscribe("vitalwatch/v1/devices/dev-a/rejected", QoS5::AtLeastOnce).await.unwrap();
    subscribed5(&mut owner_rx).await;

    for t in [
        "vitalwatch/v1/devices/dev-a/rejected",
        "vitalwatch/v1/patients/pat-a/rejected",
        "vitalwatch/v1/devices/dev-b/rejected",
    ] {
        assert_eq!(publish5(&ingest, &mut ingest_rx, t).await, PubAckReason::Success, "ingest writes {t}");
    }
    assert_eq!(next5(&mut owner_rx, publish_topic).await.as_deref(), Some("vitalwatch/v1/devices/dev-a/rejected"));
    // The spy's first delivery is its own rejection, published last: the others never came. It
    // may come once per matching subscription (its own topic, `devices/+/rejected`, `#`), never
    // another topic.
    let own = "vitalwatch/v1/devices/dev-b/rejected";
    assert_eq!(next5(&mut spy_rx, publish_topic).await.as_deref(), Some(own));
    let mut more = Vec::new();
    while let Ok(Some(t)) =
        tokio::time::timeout(Duration::from_millis(500), async { next5(&mut spy_rx, publish_topic).await }).await
    {
        more.push(t);
    }
    assert!(more.iter().all(|t| t == own), "dev-b received {more:?}");
    // Nothing changed for the owner either: exactly its one rejection.
    assert_eq!(
        tokio::time::timeout(Duration::from_millis(200), async { next5(&mut owner_rx, publish_topic).await })
            .await
            .ok()
            .flatten(),
        None
    );
}

/// Connects with MQTT 3.1.1 to the TLS listener (`ca` set) or the plain one and returns the
/// outcome of the first connection attempt.
async fn try_connect(port: u16, ca: Option<&Path>, creds: Option<(&str, &str)>) -> Result<(), String> {
    try_connect_cert(port, ca, creds, None).await
}

/// As [`try_connect`], with a client certificate and key (mutual TLS).
async fn try_connect_cert(
    port: u16,
    ca: Option<&Path>,
    creds: Option<(&str, &str)>,
    cert: Option<(&Path, &Path)>,
) -> Result<(), String> {
    // vitalwatch's own client options (what the ingest uses): mqtts:// with the CA file.
    let settings = MqttSettings {
        url: format!("{}://localhost:{port}", if ca.is_some() { "mqtts" } else { "mqtt" }),
        ca_file: ca.map(Path::to_path_buf),
        username: creds.map(|(u, _)| u.to_owned()),
        password: creds.map(|(_, p)| Secret::new(p)),
        client_cert_file: cert.map(|(c, _)| c.to_path_buf()),
        client_key_file: cert.map(|(_, k)| k.to_path_buf()),
        ..Default::default()
    };
    let mut opts = vitalwatch_ingest::mqtt_client::options(&settings, &unique("probe")).map_err(|e| e.to_string())?;
    opts.set_keep_alive(Duration::from_secs(5));
    let (_client, mut eventloop) = AsyncClient::new(opts, 10);
    match tokio::time::timeout(Duration::from_secs(5), eventloop.poll()).await {
        Ok(Ok(Event::Incoming(Packet::ConnAck(a)))) if a.code == rumqttc::ConnectReturnCode::Success => Ok(()),
        Ok(Ok(other)) => Err(format!("{other:?}")),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 5 s".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_tls_listener_refuses_plaintext_anonymous_and_wrong_passwords() {
    let Some(broker) = SecureBroker::start() else { return };
    let ca = broker.pki.ca.clone();
    let good = Some(("dev-a", "pw-dev-a"));
    try_connect(broker.tls, Some(&ca), good).await.unwrap_or_else(|e| panic!("{e}\n{}", broker.log()));
    // Plain MQTT on the TLS port: no session.
    assert!(try_connect(broker.tls, None, good).await.is_err());
    // Anonymous and wrong passwords, over TLS and on the plain listener.
    for port_ca in [(broker.tls, Some(ca.as_path())), (broker.plain, None)] {
        let anon = try_connect(port_ca.0, port_ca.1, None).await;
        assert!(
            anon.as_ref().is_err_and(|e| e.contains("NotAuthorized") || e.contains("BadUserNamePassword")),
            "{anon:?}"
        );
        let wrong = try_connect(port_ca.0, port_ca.1, Some(("dev-a", "pw-dev-b"))).await;
        assert!(
            wrong.as_ref().is_err_and(|e| e.contains("NotAuthorized") || e.contains("BadUserNamePassword")),
            "{wrong:?}"
        );
    }
    // A client that trusts another CA does not talk to the broker.
    assert!(try_connect(broker.tls, Some(&broker.pki.other_ca), good).await.is_err());
    // The shipped mutual-TLS listener: a device certificate (CN dev-a) is the login; no
    // certificate, no session, even with a right password.
    let d = broker.dir.path();
    let cert = Some((d.join("dev-a.crt"), d.join("dev-a.key")));
    let cert = cert.as_ref().map(|(c, k)| (c.as_path(), k.as_path()));
    try_connect_cert(broker.mtls, Some(&ca), None, cert).await.unwrap_or_else(|e| panic!("{e}\n{}", broker.log()));
    assert!(try_connect_cert(broker.mtls, Some(&ca), good, None).await.is_err());
}

// ------------------------------------------------------------------ the real ingest over mqtts://

/// `vitalwatch run` (SQLite, in-memory bus) with its ingest connected to `mqtt_env`'s broker.
struct RunUnder {
    proc: Proc,
    log: PathBuf,
    data: tempfile::TempDir,
}

fn registry_for_p1(data: &str) {
    let args = ["--embedded", "--data-dir", data];
    run_cli(&[&["patient", "add", "pat-a"][..], &args[..]].concat(), &[]);
    run_cli(&[&["device", "add", "dev-a", "--kind", "scale"][..], &args[..]].concat(), &[]);
    run_cli(&[&["device", "enrol", "dev-a", "pat-a", "--from", "2020-01-01T00:00:00Z"][..], &args[..]].concat(), &[]);
}

fn start_run(mqtt_env: &[(&str, String)], config: Option<&str>) -> RunUnder {
    let data = tempfile::tempdir().unwrap();
    let d = path_str(data.path());
    registry_for_p1(&d);
    let mut env: Vec<(String, String)> = mqtt_env.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
    env.push(("VITALWATCH_OPS__LISTEN".into(), "127.0.0.1:0".into()));
    env.push(("VITALWATCH_API__LISTEN".into(), format!("127.0.0.1:{}", free_port())));
    env.push(("VITALWATCH_ALERTING__HTTP_ADDR".into(), format!("127.0.0.1:{}", free_port())));
    let log = data.path().join("run.log");
    let mut args = vec!["run".to_owned(), "--data-dir".to_owned(), d.clone()];
    if let Some(c) = config {
        let path = data.path().join("vitalwatch.toml");
        std::fs::write(&path, c).unwrap();
        args.splice(0..0, ["--config".to_owned(), path_str(&path)]);
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let proc = Proc::spawn_logged("run", &refs, &env, &log);
    RunUnder { proc, log, data }
}

impl RunUnder {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn stored(&self) -> usize {
        let Ok(store) = SqliteStore::open(&format!("{}/vitalwatch.db", self.data.path().display())) else { return 0 };
        store.observations(&PatientId::new("pat-a").unwrap(), 100).await.map(|v| v.len()).unwrap_or(0)
    }
}

const MANUAL: &str = r#"{"readings":[{"type":"body_weight","unit":"kg","value":81.4}]}"#;

/// `mosquitto_pub` as pat-a on the TLS listener (an independent client), `-V` = protocol.
fn mosquitto_pub_tls(broker: &SecureBroker, protocol: &str, msg_id: &str) -> bool {
    let msg = MANUAL.replace("{\"readings\"", &format!("{{\"msg_id\":\"{msg_id}\",\"readings\""));
    Command::new("mosquitto_pub")
        .args(["-h", "localhost", "-p", &broker.tls.to_string(), "--cafile"])
        .arg(&broker.pki.ca)
        .args(["-u", "pat-a", "-P", password("pat-a"), "-V", protocol, "-q", "1"])
        .args(["-t", "vitalwatch/v1/patients/pat-a/manual/json", "-m", &msg])
        .status()
        .is_ok_and(|s| s.success())
}

fn mqtts_env(broker: &SecureBroker, ca: &Path, password: &str) -> Vec<(&'static str, String)> {
    vec![
        ("VITALWATCH_MQTT__URL", format!("mqtts://localhost:{}", broker.tls)),
        ("VITALWATCH_MQTT__CA_FILE", path_str(ca)),
        ("VITALWATCH_MQTT__USERNAME", "vitalwatch-ingest".into()),
        ("VITALWATCH_MQTT__PASSWORD", password.into()),
        ("VITALWATCH_MQTT__CLIENT_ID", unique("ingest")),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_over_mqtts_stores_with_the_right_ca_and_refuses_a_wrong_ca_or_password() {
    let Some(broker) = SecureBroker::start() else { return };
    // Right CA and password: a reading published over TLS is stored.
    let mut run = start_run(&mqtts_env(&broker, &broker.pki.ca, password("vitalwatch-ingest")), None);
    let r = &run;
    let stored = wait_until(Duration::from_secs(60), || {
        assert!(mosquitto_pub_tls(&broker, "mqttv311", "tls-1"), "mosquitto_pub over TLS failed:\n{}", broker.log());
        async move { r.stored().await > 0 }
    })
    .await;
    assert!(stored, "nothing stored over mqtts://\nrun log:\n{}\nbroker log:\n{}", run.log(), broker.log());
    run.proc.terminate(Duration::from_secs(20));

    // A broker certificate from an unknown CA: no connection, a clear TLS error, nothing stored.
    let env = mqtts_env(&broker, &broker.pki.other_ca, password("vitalwatch-ingest"));
    let client_id = env[4].1.clone();
    let run = start_run(&env, None);
    let refused = wait_until(Duration::from_secs(30), || {
        let l = run.log();
        async move { l.contains("MQTT connection error") && (l.contains("UnknownIssuer") || l.contains("certificate")) }
    })
    .await;
    assert!(refused, "no TLS refusal logged:\n{}", run.log());
    for i in 0..3 {
        assert!(mosquitto_pub_tls(&broker, "mqttv5", &format!("ca-{i}")));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(run.stored().await, 0);
    // The broker never saw an MQTT session of that client (no plaintext fallback either).
    assert!(!broker.log().contains(&format!(" as {client_id} ")), "{}", broker.log());
    drop(run);

    // A wrong password: refused by the broker, named in the log.
    let run = start_run(&mqtts_env(&broker, &broker.pki.ca, "not-the-password"), None);
    let refused = wait_until(Duration::from_secs(30), || {
        let l = run.log();
        async move {
            l.contains("MQTT connection error")
                && (l.contains("NotAuthorized") || l.contains("BadUserNamePassword") || l.contains("credentials"))
        }
    })
    .await;
    assert!(refused, "no credential refusal logged:\n{}", run.log());
    assert_eq!(run.stored().await, 0);

    // A CA file given with a plaintext URL is a configuration error, never a silent downgrade.
    let mut env = mqtts_env(&broker, &broker.pki.ca, "x");
    env[0].1 = format!("mqtt://127.0.0.1:{}", broker.plain);
    let env: Vec<(String, String)> = env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    let (ok, text) = cli(&["config"], &env);
    assert!(!ok && text.contains("mqtt.ca_file"), "{text}");
}

// ------------------------------------------------------------------ the embedded broker

fn embedded_run(config: Option<&str>) -> (RunUnder, u16) {
    let port = free_port();
    let run = start_run(&[("VITALWATCH_MQTT__URL", format!("embedded://127.0.0.1:{port}"))], config);
    (run, port)
}

async fn wait_listening(port: u16, run: &RunUnder) {
    let addr = format!("127.0.0.1:{port}");
    assert!(
        wait_until(Duration::from_secs(30), || async { tokio::net::TcpStream::connect(&addr).await.is_ok() }).await,
        "the embedded broker did not open {addr}:\n{}",
        run.log()
    );
}

/// An MQTT 5 client publishing manual entries of pat-a until one is stored.
async fn v5_publishes_until_stored(run: &RunUnder, port: u16, creds: Option<(&str, &str)>) -> bool {
    let mut opts = MqttOptions5::new(unique("v5-app"), "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(10));
    if let Some((u, p)) = creds {
        opts.set_credentials(u, p);
    }
    let (client, mut eventloop) = AsyncClient5::new(opts, 100);
    let poller = tokio::spawn(async move {
        loop {
            if eventloop.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    let mut i = 0;
    let ok = wait_until(Duration::from_secs(30), || {
        i += 1;
        let msg = MANUAL.replace("{\"readings\"", &format!("{{\"msg_id\":\"v5-{i}\",\"readings\""));
        let client = client.clone();
        async move {
            let _ = client.publish("vitalwatch/v1/patients/pat-a/manual/json", QoS5::AtLeastOnce, false, msg).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            run.stored().await > 0
        }
    })
    .await;
    poller.abort();
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_broker_serves_mqtt5_clients() {
    let (mut run, port) = embedded_run(None);
    wait_listening(port, &run).await;
    assert!(
        v5_publishes_until_stored(&run, port, None).await,
        "an MQTT 5 client's reading was not stored:\n{}",
        run.log()
    );
    // MQTT 3.1.1 on the same port still works.
    try_connect_embedded(port, None).await.expect("MQTT 3.1.1 client on the same port");
    run.proc.terminate(Duration::from_secs(20));
}

async fn try_connect_embedded(port: u16, creds: Option<(&str, &str)>) -> Result<(), String> {
    let mut opts = MqttOptions::new(unique("v4-probe"), "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(5));
    if let Some((u, p)) = creds {
        opts.set_credentials(u, p);
    }
    let (_client, mut eventloop) = AsyncClient::new(opts, 10);
    match tokio::time::timeout(Duration::from_secs(5), eventloop.poll()).await {
        Ok(Ok(Event::Incoming(Packet::ConnAck(a)))) if a.code == rumqttc::ConnectReturnCode::Success => Ok(()),
        Ok(Ok(other)) => Err(format!("{other:?}")),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 5 s".into()),
    }
}

async fn try_connect_embedded5(port: u16, creds: Option<(&str, &str)>) -> Result<(), String> {
    let mut opts = MqttOptions5::new(unique("v5-probe"), "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(5));
    if let Some((u, p)) = creds {
        opts.set_credentials(u, p);
    }
    let (_client, mut eventloop) = AsyncClient5::new(opts, 10);
    match tokio::time::timeout(Duration::from_secs(5), eventloop.poll()).await {
        Ok(Ok(Event5::Incoming(Packet5::ConnAck(a))))
            if a.code == rumqttc::v5::mqttbytes::v5::ConnectReturnCode::Success =>
        {
            Ok(())
        }
        Ok(Ok(other)) => Err(format!("{other:?}")),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 5 s".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_broker_with_credentials_refuses_anonymous_and_wrong_passwords() {
    let config = "[mqtt]\nembedded_users = { \"pat-a\" = \"pw-pat-a\" }\n";
    let (mut run, port) = embedded_run(Some(config));
    wait_listening(port, &run).await;
    for (what, creds) in [
        ("anonymous", None),
        ("wrong password", Some(("pat-a", "nope"))),
        ("unknown user", Some(("pat-z", "pw-pat-a"))),
    ] {
        let r4 = try_connect_embedded(port, creds).await;
        assert!(
            r4.as_ref().is_err_and(|e| e.contains("NotAuthorized") || e.contains("BadUserNamePassword")),
            "3.1.1 {what}: {r4:?}"
        );
        let r5 = try_connect_embedded5(port, creds).await;
        assert!(
            r5.as_ref().is_err_and(|e| e.contains("NotAuthorized") || e.contains("BadUserNamePassword")),
            "5 {what}: {r5:?}"
        );
    }
    // An anonymous publisher's reading is not stored.
    {
        let mut opts = MqttOptions::new(unique("anon"), "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(5));
        let (client, mut eventloop) = AsyncClient::new(opts, 10);
        let poller = tokio::spawn(async move {
            for _ in 0..20 {
                let _ = eventloop.poll().await;
            }
        });
        let _ = client.publish("vitalwatch/v1/patients/pat-a/manual/json", QoS::AtLeastOnce, false, MANUAL).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        poller.abort();
        assert_eq!(run.stored().await, 0);
    }
    try_connect_embedded(port, Some(("pat-a", "pw-pat-a"))).await.expect("right credentials, 3.1.1");
    assert!(v5_publishes_until_stored(&run, port, Some(("pat-a", "pw-pat-a"))).await, "{}", run.log());
    run.proc.terminate(Duration::from_secs(20));
}
