//! A private PostgreSQL 15 cluster for fault tests (a hung, stopped or
//! restarted database): `initdb` into a temporary folder, started on a free
//! port. Never stop or pause the shared cluster on 5432; use this one.
//! Used by `tests/registry_faults.rs` and the fault suite (`tests/faults/`).
#![allow(unsafe_code)] // libc calls / a counting allocator in test code; each block has a SAFETY note

use std::path::PathBuf;
use std::process::Command;

use crate::env::{free_port, required, service_var};

/// Sends `sig` to `pid` (a process of this private cluster).
fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a process the test started.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// A private PostgreSQL 15 cluster (initdb in a temporary folder, its own
/// port, trust authentication, no fsync: a test cluster).
pub struct PrivatePostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// Port.
    pub port: u16,
    /// `postgres://postgres@127.0.0.1:PORT/postgres`
    pub url: String,
    stopped: bool,
    /// Extra `-c name=value` server settings (see [`PrivatePostgres::start_with`]).
    extra: Vec<String>,
}

impl PrivatePostgres {
    /// Creates and starts one. PostgreSQL's server binaries missing: a failure
    /// under CI, `None` (skip) elsewhere ([`required`]).
    pub fn start() -> Option<PrivatePostgres> {
        Self::start_with(|_| Vec::new())
    }

    /// As [`start`](Self::start), after `setup` has put its files in the
    /// cluster's folder (e.g. a TLS certificate and key; they then belong to
    /// the server's user) and returned extra server settings (`name=value`,
    /// e.g. `ssl=on`).
    pub fn start_with(setup: impl FnOnce(&std::path::Path) -> Vec<String>) -> Option<PrivatePostgres> {
        let bin = PathBuf::from(service_var("VW_PG_BIN", "/usr/lib/postgresql/15/bin"));
        if !required(bin.join("initdb").exists(), &format!("PostgreSQL server binaries in {}", bin.display())) {
            return None;
        }
        let dir = tempfile::Builder::new().prefix("vw-faults-pg").tempdir().expect("tempdir");
        let port = free_port();
        let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
        let extra = setup(dir.path());
        let pg = PrivatePostgres { dir, bin, port, url, stopped: true, extra };
        // initdb refuses to run as root: the cluster belongs to `postgres` then.
        if Self::as_root() {
            let out = Command::new("chown").arg("-R").arg("postgres").arg(pg.dir.path()).output().expect("chown");
            assert!(out.status.success(), "chown postgres {}: {out:?}", pg.dir.path().display());
        }
        let data = pg.data();
        pg.run("initdb", &["-D", &data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]);
        let mut pg = pg;
        pg.start_server();
        Some(pg)
    }

    /// True when the tests run as root (the cluster then belongs to `postgres`).
    pub fn as_root() -> bool {
        // SAFETY: getuid has no preconditions.
        unsafe { libc::getuid() == 0 }
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let exe = self.bin.join(tool);
        let out = if Self::as_root() {
            Command::new("runuser").arg("-u").arg("postgres").arg("--").arg(&exe).args(args).output()
        } else {
            Command::new(&exe).args(args).output()
        }
        .unwrap_or_else(|e| panic!("run {}: {e}", exe.display()));
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts the server (after [`stop`](Self::stop)).
    pub fn start_server(&mut self) {
        let mut opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        for setting in &self.extra {
            opts.push_str(&format!(" -c {setting}"));
        }
        let log = self.dir.path().join("postgres.log").display().to_string();
        self.run("pg_ctl", &["-D", &self.data(), "-o", &opts, "-l", &log, "-w", "-t", "60", "start"]);
        self.stopped = false;
    }

    /// Stops the server (fast shutdown: connections are closed).
    pub fn stop(&mut self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "-t", "60", "stop"]);
        self.stopped = true;
    }

    /// The postmaster and every backend of this cluster.
    fn pids(&self) -> Vec<u32> {
        let Ok(text) = std::fs::read_to_string(self.dir.path().join("data/postmaster.pid")) else {
            return Vec::new();
        };
        let Some(master) = text.lines().next().and_then(|l| l.trim().parse::<u32>().ok()) else {
            return Vec::new();
        };
        let mut pids = vec![master];
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
            let ppid = stat.rfind(')').and_then(|i| stat[i + 2..].split_whitespace().nth(1)?.parse::<u32>().ok());
            if ppid == Some(master) {
                pids.push(pid);
            }
        }
        pids
    }

    /// Hangs the whole cluster (SIGSTOP to the postmaster, then to every backend).
    pub fn hang(&self) {
        for pid in self.pids() {
            signal(pid, libc::SIGSTOP);
        }
    }

    /// Resumes a hung cluster.
    pub fn resume(&self) {
        for pid in self.pids() {
            signal(pid, libc::SIGCONT);
        }
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if !self.stopped {
            self.resume();
            let data = self.data();
            let exe = self.bin.join("pg_ctl");
            let args = ["-D", data.as_str(), "-m", "immediate", "-w", "stop"];
            let _ = if Self::as_root() {
                Command::new("runuser").arg("-u").arg("postgres").arg("--").arg(&exe).args(args).output()
            } else {
                Command::new(&exe).args(args).output()
            };
        }
    }
}
