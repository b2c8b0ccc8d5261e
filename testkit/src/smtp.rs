//! A real SMTP server for tests: aiosmtpd with the handler in
//! `testkit/smtp_sink.py`, which writes each message to `<n>.eml` (raw bytes)
//! and its envelope recipients to `<n>.rcpt`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::env::{free_port, required};

/// Whether `python3 -m aiosmtpd` can run (`scripts/services.sh` installs it).
pub fn aiosmtpd_available() -> bool {
    Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A running aiosmtpd on a fixed port, writing every message under `dir`. It
/// can be stopped ([`down`](Self::down)) and started again
/// ([`up`](Self::up)): the first run writes into `dir`, run `k` into
/// `dir/run-k`; [`messages`](Self::messages) reads them all, in order.
pub struct SmtpSink {
    child: Option<Child>,
    /// Port.
    pub port: u16,
    /// Folder of the first run.
    pub dir: PathBuf,
    runs: usize,
    reject: Vec<String>,
}

impl SmtpSink {
    /// Starts one on `port` writing into `dir`; panics if it does not listen
    /// within 15 s (check [`aiosmtpd_available`] first, or use [`try_start`](Self::try_start)).
    pub fn start(port: u16, dir: &Path) -> SmtpSink {
        Self::start_rejecting(port, dir, &[])
    }

    /// Like [`start`](Self::start), but RCPT TO any of `reject` is refused
    /// with a permanent `550 5.1.1 mailbox unavailable`.
    pub fn start_rejecting(port: u16, dir: &Path, reject: &[&str]) -> SmtpSink {
        let mut s = SmtpSink {
            child: None,
            port,
            dir: dir.to_path_buf(),
            runs: 0,
            reject: reject.iter().map(|r| (*r).to_owned()).collect(),
        };
        s.up();
        s
    }

    /// Starts one on a free port. aiosmtpd missing: under `CI=true` this
    /// panics (the test fails, [`required`]); elsewhere `None` (skip).
    pub fn try_start(dir: &Path) -> Option<SmtpSink> {
        if !required(aiosmtpd_available(), "python3 -m aiosmtpd is not installed; run `bash scripts/services.sh`") {
            return None;
        }
        Some(Self::start(free_port(), dir))
    }

    fn run_dir(&self, run: usize) -> PathBuf {
        if run == 0 { self.dir.clone() } else { self.dir.join(format!("run-{run}")) }
    }

    /// Starts the server (again, after [`down`](Self::down)).
    pub fn up(&mut self) {
        if self.child.is_some() {
            return;
        }
        let out = self.run_dir(self.runs);
        self.runs += 1;
        let child = Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{}", self.port), "-c", "smtp_sink.Sink"])
            .arg(out)
            .env("PYTHONPATH", env!("CARGO_MANIFEST_DIR"))
            .env("VW_SMTP_REJECT", self.reject.join(","))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn python3 -m aiosmtpd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "aiosmtpd did not start listening on port {}", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server: connections are refused until [`up`](Self::up).
    pub fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Every message received so far, in order: (raw bytes, envelope recipients).
    pub fn messages(&self) -> Vec<(Vec<u8>, Vec<String>)> {
        let mut out = Vec::new();
        for run in 0..self.runs {
            let dir = self.run_dir(run);
            for n in 0.. {
                let Ok(raw) = std::fs::read(dir.join(format!("{n}.eml"))) else { break };
                let rcpt = std::fs::read_to_string(dir.join(format!("{n}.rcpt"))).unwrap_or_default();
                out.push((raw, rcpt.lines().map(str::to_owned).collect()));
            }
        }
        out
    }

    /// Waits (at most 15 s) until `count` messages arrived; returns what came.
    pub fn wait_for(&self, count: usize) -> Vec<(Vec<u8>, Vec<String>)> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let m = self.messages();
            if m.len() >= count || Instant::now() > deadline {
                return m;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.down();
    }
}
