//! Shared helpers for the integration tests: real services only.
//!
//! A service that is not reachable makes a test FAIL under `CI=true` and skip
//! (with a notice) elsewhere. Service addresses come from the environment
//! (`VW_TEST_PG`, `VW_TEST_KAFKA`, `VW_TEST_TIMESCALE`), from the file written
//! by `scripts/services.sh`, or from the defaults below.
#![allow(dead_code)]

pub mod episodes;
pub mod http;
pub mod private_pg;

use std::collections::HashMap;
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// True when running under CI.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn services_env() -> HashMap<String, String> {
    let cache = std::env::var("VW_CACHE").map(PathBuf::from).unwrap_or_else(|_| {
        PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into())).join(".cache/vitalwatch")
    });
    let state = std::env::var("VW_STATE").map(PathBuf::from).unwrap_or_else(|_| cache.join("state"));
    let mut m = HashMap::new();
    if let Ok(text) = std::fs::read_to_string(state.join("services.env")) {
        for line in text.lines() {
            let line = line.trim().trim_start_matches("export ");
            if let Some((k, v)) = line.split_once('=') {
                m.insert(k.trim().to_owned(), v.trim().trim_matches('"').trim_matches('\'').to_owned());
            }
        }
    }
    m
}

/// The value of a service variable: environment, then services.env, then `default`.
pub fn service_var(var: &str, default: &str) -> String {
    std::env::var(var).ok().or_else(|| services_env().remove(var)).unwrap_or_else(|| default.to_owned())
}

fn host_port(addr: &str) -> String {
    let a = addr.split("://").last().unwrap_or(addr);
    let a = a.rsplit('@').next().unwrap_or(a);
    a.split('/').next().unwrap_or(a).to_owned()
}

/// Checks that `addr` accepts TCP connections. Panics under CI if not;
/// returns false (skip) elsewhere.
pub fn require(name: &str, addr: &str) -> bool {
    let hp = host_port(addr);
    let ok = hp
        .to_socket_addrs()
        .ok()
        .and_then(|mut it| it.next())
        .is_some_and(|sa| TcpStream::connect_timeout(&sa, Duration::from_secs(2)).is_ok());
    if ok {
        return true;
    }
    required(false, &format!("{name} is not reachable at {hp}; start the services with `bash scripts/services.sh`"))
}

/// A prerequisite of a test: `ok` passes through. When it is missing, panics
/// under CI (a missing service never makes a CI test pass) and elsewhere
/// prints a notice and returns false (skip).
pub fn required(ok: bool, msg: &str) -> bool {
    if !ok {
        assert!(!in_ci(), "CI requires {msg}");
        eprintln!("SKIPPED (not in CI): {msg}");
    }
    ok
}

/// Checks that a program is installed. Panics under CI if not.
pub fn require_program(name: &str) -> bool {
    let ok = Command::new("sh").arg("-c").arg(format!("command -v {name}")).output().is_ok_and(|o| o.status.success());
    required(ok, &format!("{name} is not installed; run `bash scripts/services.sh`"))
}

/// PostgreSQL server URL (maintenance database).
pub fn pg_url() -> String {
    service_var("VW_TEST_PG", "postgres://postgres@127.0.0.1:5432/postgres")
}

/// Kafka bootstrap address.
pub fn kafka() -> String {
    service_var("VW_TEST_KAFKA", "127.0.0.1:9092")
}

/// TimescaleDB (pglite) URL.
pub fn timescale_url() -> String {
    service_var("VW_TEST_TIMESCALE", "postgres://postgres:x@127.0.0.1:55432/postgres")
}

/// A unique name for this test run.
pub fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    format!("{prefix}_{}_{}", std::process::id(), n % 1_000_000_000)
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

/// Creates a fresh database on the PostgreSQL server and returns its URL.
pub async fn fresh_database(server_url: &str, name: &str) -> String {
    let (client, conn) =
        tokio_postgres::connect(server_url, tokio_postgres::NoTls).await.expect("connect to PostgreSQL");
    tokio::spawn(conn);
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create test database");
    // Marks it for scripts/test.sh, which drops the previous runs' databases.
    client
        .batch_execute(&format!("COMMENT ON DATABASE {name} IS 'vitalwatch test database'"))
        .await
        .expect("comment on test database");
    let base = server_url.rsplit_once('/').map(|(b, _)| b).unwrap_or(server_url);
    format!("{base}/{name}")
}

/// Waits until `f` returns true or `timeout` passes.
pub async fn wait_until<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = Instant::now() + timeout;
    while Instant::now() < until {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// A private Mosquitto broker with the project's zero-loss settings, on a free port.
pub struct Mosquitto {
    child: Child,
    /// `mqtt://127.0.0.1:PORT`
    pub url: String,
    /// Port.
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    /// Starts one; `None` (skip) if mosquitto is missing outside CI.
    pub fn start() -> Option<Mosquitto> {
        if !require_program("mosquitto") {
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let conf = dir.path().join("mosquitto.conf");
        // Same queue settings as deploy/mosquitto: never drop QoS 1 messages for a slow subscriber.
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\n\
                 max_queued_messages 0\nmax_queued_bytes 0\nmax_inflight_messages 1000\n\
                 set_tcp_nodelay true\nlog_dest stderr\nlog_type error\nlog_type warning\n",
                dir.path().display()
            ),
        )
        .expect("write mosquitto.conf");
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn mosquitto");
        let until = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < until, "mosquitto did not start on port {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Mosquitto { child, url: format!("mqtt://127.0.0.1:{port}"), port, _dir: dir })
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The vitalwatch binary built for these tests, or `VW_TEST_VITALWATCH_BIN`
/// (a private copy: several worktrees sharing one `CARGO_TARGET_DIR` overwrite
/// `target/debug/vitalwatch` under each other's running tests).
pub fn bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("VW_TEST_VITALWATCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_vitalwatch").to_owned())
    })
}

/// A running vitalwatch subprocess, killed on drop.
pub struct Proc {
    /// The child.
    pub child: Child,
    /// What it is (for messages).
    pub name: String,
}

impl Proc {
    /// Spawns `vitalwatch <args>` with `env`.
    pub fn spawn(name: &str, args: &[&str], env: &[(String, String)]) -> Proc {
        let mut cmd = Command::new(bin());
        cmd.args(args).stdin(Stdio::null()).stdout(Stdio::inherit()).stderr(Stdio::inherit());
        cmd.env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn vitalwatch {name}: {e}"));
        Proc { child, name: name.to_owned() }
    }

    /// Sends SIGKILL and reaps.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for a clean exit (panics on timeout or failure).
    pub fn terminate(&mut self, timeout: Duration) {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let until = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "{} exited with {status} after SIGTERM", self.name);
                return;
            }
            assert!(Instant::now() < until, "{} did not exit within {timeout:?} of SIGTERM", self.name);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `vitalwatch <args>` to completion and returns stdout; panics on failure.
pub fn run_cli(args: &[&str], env: &[(String, String)]) -> String {
    let mut cmd = Command::new(bin());
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run vitalwatch");
    assert!(
        out.status.success(),
        "vitalwatch {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Path helper.
pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}

/// Environment for vitalwatch roles isolated to one test run: own database,
/// own Kafka topics and groups, own MQTT client ids and share group.
pub fn service_env(run: &str, db: &str, mqtt_url: &str) -> Vec<(String, String)> {
    let kv = |k: &str, v: String| (k.to_owned(), v);
    vec![
        kv("VITALWATCH_DATABASE__URL", db.to_owned()),
        kv("VITALWATCH_BUS__BROKERS", kafka()),
        kv("VITALWATCH_BUS__OBSERVATIONS_TOPIC", format!("{run}.obs")),
        kv("VITALWATCH_BUS__REJECTED_TOPIC", format!("{run}.rejected")),
        kv("VITALWATCH_BUS__DEAD_LETTER_TOPIC", format!("{run}.dead")),
        kv("VITALWATCH_BUS__DEVICE_STATUS_TOPIC", format!("{run}.status")),
        kv("VITALWATCH_BUS__ALERTS_TOPIC", format!("{run}.alerts")),
        kv("VITALWATCH_BUS__PARTITIONS", "4".into()),
        kv("VITALWATCH_MQTT__URL", mqtt_url.to_owned()),
        kv("VITALWATCH_MQTT__CLIENT_ID", format!("{run}-ingest")),
        kv("VITALWATCH_MQTT__SHARE_GROUP", format!("{run}-g")),
        kv("VITALWATCH_PERSIST__GROUP", format!("{run}-persist")),
        kv("VITALWATCH_RULES__GROUP", format!("{run}-rules")),
        kv("VITALWATCH_RULES__TICK_SECS", "2".into()),
        kv("VITALWATCH_RULES__CONFIG_POLL_SECS", "1".into()),
        kv("VITALWATCH_INGEST__REGISTRY_REFRESH_SECS", "2".into()),
        // Tests publish thousands of messages per device within seconds, far
        // above any real device: no per-sender rate limit (tests/ingest_limits.rs
        // tests the limit with its own settings).
        kv("VITALWATCH_INGEST__RATE_LIMIT_PER_SEC", "0".into()),
        // Every process its own free port; it logs the address ("Ops endpoints listening.").
        kv("VITALWATCH_OPS__LISTEN", "127.0.0.1:0".into()),
    ]
}

impl Proc {
    /// Spawns `vitalwatch <args>` with `env`, logging (info) to `log`.
    pub fn spawn_logged(name: &str, args: &[&str], env: &[(String, String)], log: &Path) -> Proc {
        let file = std::fs::File::create(log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let mut cmd = Command::new(bin());
        cmd.args(args).stdin(Stdio::null()).stdout(Stdio::null());
        cmd.stderr(Stdio::from(file));
        cmd.env("RUST_LOG", "info").env("VITALWATCH_LOG_FORMAT", "json");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn vitalwatch {name}: {e}"));
        Proc { child, name: name.to_owned() }
    }
}

/// An MQTT client (`{run}-pub`, QoS 1 window 500) for the broker on
/// `127.0.0.1:port`, its event loop polled in the background, reconnecting.
pub fn mqtt_publisher(run: &str, port: u16) -> rumqttc::AsyncClient {
    let mut opts = rumqttc::MqttOptions::new(format!("{run}-pub"), "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(30)).set_inflight(500);
    let (client, mut eventloop) = rumqttc::AsyncClient::new(opts, 20_000);
    tokio::spawn(async move {
        loop {
            if eventloop.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    client
}

/// The ops address a role logged at startup (`ops.listen` = 127.0.0.1:0).
pub async fn ops_addr(log: &Path) -> String {
    let mut found = None;
    let ok = wait_until(Duration::from_secs(60), || {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        found = text.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).find_map(|v| {
            (v["message"] == "Ops endpoints listening.").then(|| v["addr"].as_str().unwrap_or_default().to_owned())
        });
        let done = found.is_some();
        async move { done }
    })
    .await;
    assert!(ok, "no ops address in {}:\n{}", log.display(), std::fs::read_to_string(log).unwrap_or_default());
    found.unwrap()
}

/// A plain HTTP/1.1 GET: (status, body).
pub async fn get(addr: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return (0, String::new());
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return (0, String::new());
    }
    let mut out = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out)).await;
    let status = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// The value of a sample `name{labels}` (or `name` without labels) in a scrape; 0 if absent.
pub fn sample(scrape: &str, series: &str) -> f64 {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}
