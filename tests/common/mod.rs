//! Shared helpers for the integration tests: real services only.
//!
//! The service helpers (addresses, `required`, fresh databases, a private
//! PostgreSQL, Mosquitto, SMTP, an HTTP stub) are the workspace's
//! `vitalwatch-testkit`; this module adds what is about the `vitalwatch`
//! binary: spawning roles, their environment, their ops endpoints.
#![allow(unsafe_code)] // libc calls / a counting allocator in test code; each block has a SAFETY note
#![allow(dead_code)]

pub mod episodes;
pub mod http;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use vitalwatch_testkit::*;

/// A private PostgreSQL cluster (re-exported from the testkit under its old path).
pub mod private_pg {
    pub use vitalwatch_testkit::PrivatePostgres;
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

    /// Waits until `GET http://{addr}{path}` answers 200, for at most `timeout`. Panics at once,
    /// with the exit status, if the process ends first (a role that failed to start), and
    /// otherwise when `timeout` passes (a loaded machine: generous timeouts, they cost nothing
    /// when the process comes up quickly).
    pub async fn wait_serving(&mut self, addr: &str, path: &str, timeout: Duration) {
        let until = Instant::now() + timeout;
        loop {
            if get(addr, path).await.0 == 200 {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("vitalwatch {} exited ({status}) before serving {addr}{path}", self.name);
            }
            assert!(Instant::now() < until, "vitalwatch {} did not serve {addr}{path} within {timeout:?}", self.name);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
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
