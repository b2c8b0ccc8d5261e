//! A private PostgreSQL 15 cluster for fault tests (a hung or stopped
//! database): `initdb` into a temporary folder, started on a free port. Never
//! stop or pause the shared cluster on 5432; pause this one.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use super::{free_port, in_ci};

const BIN: &str = "/usr/lib/postgresql/15/bin";

/// A running private cluster, stopped (immediate) and removed on drop.
pub struct PrivatePostgres {
    dir: tempfile::TempDir,
    /// Port on 127.0.0.1.
    pub port: u16,
    /// `postgres://postgres@127.0.0.1:PORT/postgres`
    pub url: String,
}

/// Runs a PostgreSQL program as the `postgres` user when we are root
/// (initdb refuses to run as root).
fn pg_command(program: &str) -> Command {
    let path = format!("{BIN}/{program}");
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } == 0 {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", &path]);
        c
    } else {
        Command::new(path)
    }
}

impl PrivatePostgres {
    /// Starts one; `None` (skip) if PostgreSQL 15 is not installed, outside CI.
    pub fn start() -> Option<PrivatePostgres> {
        if !std::path::Path::new(&format!("{BIN}/initdb")).exists() {
            let msg = format!("PostgreSQL 15 server binaries are not installed in {BIN}");
            if in_ci() {
                panic!("CI requires {msg}");
            }
            eprintln!("SKIPPED (not in CI): {msg}");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        // SAFETY: getuid has no preconditions.
        if unsafe { libc::getuid() } == 0 {
            let ok = Command::new("chown").arg("postgres").arg(dir.path()).status().is_ok_and(|s| s.success());
            assert!(ok, "chown postgres {}", dir.path().display());
        }
        let data = dir.path().join("data");
        let out = pg_command("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "--no-sync"])
            .output()
            .expect("run initdb");
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        let port = free_port();
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off",
            dir.path().display()
        );
        let out = pg_command("pg_ctl")
            .arg("-D")
            .arg(&data)
            .args(["-o", &opts, "-l"])
            .arg(dir.path().join("log"))
            .args(["-w", "-t", "30", "start"])
            .output()
            .expect("run pg_ctl");
        assert!(out.status.success(), "pg_ctl start failed: {}", String::from_utf8_lossy(&out.stderr));
        Some(PrivatePostgres { dir, port, url: format!("postgres://postgres@127.0.0.1:{port}/postgres") })
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The postmaster and every process it started (backends, background workers).
    fn pids(&self) -> Vec<i32> {
        let text = std::fs::read_to_string(self.data().join("postmaster.pid")).unwrap_or_default();
        let Some(main) = text.lines().next().and_then(|l| l.trim().parse::<i32>().ok()) else { return Vec::new() };
        let mut pids = vec![main];
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for e in entries.flatten() {
                let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                // Field 4 (after the parenthesised command) is the parent pid.
                let ppid =
                    stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok());
                if ppid == Some(main) {
                    pids.push(pid);
                }
            }
        }
        pids
    }

    fn signal(&self, sig: i32) {
        for pid in self.pids() {
            // SAFETY: kill(2) on processes of our own private cluster.
            unsafe {
                libc::kill(pid, sig);
            }
        }
    }

    /// Hangs the database: SIGSTOP to the postmaster and all its children.
    /// Connections stay open, nothing answers, new connections are not served.
    pub fn hang(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Resumes after [`PrivatePostgres::hang`].
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.resume();
        let _ = pg_command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "-t", "10", "stop"])
            .output();
        let until = Instant::now() + Duration::from_secs(5);
        while self.data().join("postmaster.pid").exists() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
