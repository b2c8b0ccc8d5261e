//! Where the test services are, and what a test does when one is missing.
//!
//! Service addresses come from the environment (`VW_TEST_PG`,
//! `VW_TEST_KAFKA`, `VW_TEST_TIMESCALE`, ...), then from the file written by
//! `scripts/services.sh` (`$VW_STATE/services.env`), then from the defaults.
//! A missing service makes a test FAIL under `CI=true` (a missing service
//! never makes a CI test pass) and skip, with a notice, elsewhere.

use std::collections::HashMap;
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// True when running under CI (`CI=true` or `CI=1`).
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

/// Checks that `addr` (an address or URL) accepts TCP connections. Panics
/// under CI if not; returns false (skip) elsewhere.
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
/// under CI and elsewhere prints a notice and returns false (skip).
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

/// A unique name for this test run (`prefix_pid_nanos`), usable as a
/// database, topic or group name.
pub fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    format!("{prefix}_{}_{}", std::process::id(), n % 1_000_000_000)
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}
