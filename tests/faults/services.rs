//! The fault suite's private services, each on its own port, each one that a
//! fault may stop, restart or hang (SIGSTOP): a PostgreSQL cluster, a
//! Kafka-protocol broker (tansu), a Mosquitto broker with persistence, an
//! SMTP server (aiosmtpd) and an SMS gateway (a real HTTP server that answers
//! 503 on demand). The shared services of `scripts/services.sh` are never
//! touched.
#![allow(unsafe_code)] // libc calls / a counting allocator in test code; each block has a SAFETY note

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{free_port, service_var};

/// Waits until 127.0.0.1:`port` accepts connections (panics after `timeout`).
pub fn wait_port(what: &str, port: u16, timeout: Duration) {
    let until = Instant::now() + timeout;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < until, "{what} did not listen on port {port} within {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends `sig` to `pid` (our own child or its process tree).
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a process this suite started.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

pub use crate::common::private_pg::PrivatePostgres;
pub use crate::common::required;

/// A private tansu broker (Kafka wire protocol) on its own port.
pub struct Tansu {
    child: Option<Child>,
    /// Port.
    pub port: u16,
    storage: String,
    log: PathBuf,
}

impl Tansu {
    /// The tansu binary (`VW_TANSU_BIN`, from scripts/services.sh).
    pub fn binary() -> Option<String> {
        let bin = service_var("VW_TANSU_BIN", "");
        required(!bin.is_empty() && Path::new(&bin).exists(), "VW_TANSU_BIN (tansu, built by scripts/services.sh)")
            .then_some(bin)
    }

    /// Starts one with `storage` (`memory://tansu/` or `postgres://...`), logging to `log`.
    pub fn start(storage: &str, log: &Path) -> Option<Tansu> {
        let mut t = Tansu { child: None, port: free_port(), storage: storage.to_owned(), log: log.to_path_buf() };
        t.spawn()?;
        Some(t)
    }

    fn spawn(&mut self) -> Option<()> {
        let bin = Self::binary()?;
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("tansu log");
        let child = Command::new(bin)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", &self.storage])
            .env_remove("SCHEMA_REGISTRY")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("CLUSTER_ID")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn tansu");
        self.child = Some(child);
        wait_port("tansu", self.port, Duration::from_secs(30));
        Some(())
    }

    /// `127.0.0.1:PORT`
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops it (SIGTERM, then SIGKILL after 10 s).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(c.id(), libc::SIGTERM);
            let until = Instant::now() + Duration::from_secs(10);
            while matches!(c.try_wait(), Ok(None)) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and storage.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn().expect("tansu binary");
    }

    /// SIGSTOP / SIGCONT.
    pub fn pause(&self, on: bool) {
        if let Some(c) = &self.child {
            signal(c.id(), if on { libc::SIGSTOP } else { libc::SIGCONT });
        }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.pause(false);
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A private Mosquitto with the settings of deploy/mosquitto/mosquitto-test.conf
/// (unlimited QoS 1 queues, persistent sessions) and persistence in its own
/// folder, on its own port; restartable.
pub struct Broker {
    child: Option<Child>,
    /// Port.
    pub port: u16,
    conf: PathBuf,
    _dir: tempfile::TempDir,
}

impl Broker {
    /// Starts one; `None` (skip) if mosquitto is missing outside CI.
    pub fn start() -> Option<Broker> {
        if !crate::common::require_program("mosquitto") {
            return None;
        }
        let dir = tempfile::Builder::new().prefix("vw-faults-mqtt").tempdir().expect("tempdir");
        let port = free_port();
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/mosquitto/mosquitto-test.conf");
        let base = std::fs::read_to_string(&base).unwrap_or_else(|e| panic!("{}: {e}", base.display()));
        let mut conf: String = base
            .lines()
            .filter(|l| {
                let key = l.split_whitespace().next().unwrap_or_default();
                !matches!(key, "listener" | "persistence_location" | "log_dest" | "user")
            })
            .map(|l| format!("{l}\n"))
            .collect();
        conf.push_str(&format!(
            "listener {port} 127.0.0.1\npersistence_location {}/\nlog_dest file {}/mosquitto.log\n",
            dir.path().display(),
            dir.path().display()
        ));
        if PrivatePostgres::as_root() {
            conf.push_str("user root\n");
        }
        let path = dir.path().join("mosquitto.conf");
        std::fs::write(&path, conf).expect("write mosquitto.conf");
        let mut b = Broker { child: None, port, conf: path, _dir: dir };
        b.spawn();
        Some(b)
    }

    fn spawn(&mut self) {
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mosquitto");
        self.child = Some(child);
        wait_port("mosquitto", self.port, Duration::from_secs(30));
    }

    /// `mqtt://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Restarts it: SIGTERM (Mosquitto saves its sessions and queued messages
    /// on the way out), then starts again on the same port and store.
    pub fn restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(c.id(), libc::SIGTERM);
            let _ = c.wait();
        }
        // The port may linger a moment.
        let until = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.spawn();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// An email received by the SMTP server.
#[derive(Debug, Clone)]
pub struct Mail {
    /// Message-ID (derived from the notification's idempotency key).
    pub message_id: String,
    /// Envelope recipients.
    pub rcpt: Vec<String>,
}

/// The SMTP server of the fault suite: the testkit's aiosmtpd on a free
/// port, which can be stopped for a while and started again.
pub struct Smtp(vitalwatch_testkit::SmtpSink);

impl Smtp {
    /// Starts one writing under `dir`; `None` (skip) if aiosmtpd is missing outside CI.
    pub fn start(dir: &Path) -> Option<Smtp> {
        vitalwatch_testkit::SmtpSink::try_start(dir).map(Smtp)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.0.port
    }

    /// Starts the server (after [`down`](Self::down)).
    pub fn up(&mut self) {
        self.0.up();
    }

    /// Stops the server: connections are refused until [`up`](Self::up).
    pub fn down(&mut self) {
        self.0.down();
    }

    /// Every message received so far.
    pub fn messages(&self) -> Vec<Mail> {
        self.0
            .messages()
            .into_iter()
            .map(|(raw, rcpt)| {
                let message_id = mailparse::parse_headers(&raw)
                    .ok()
                    .and_then(|(h, _)| {
                        h.iter().find(|h| h.get_key().eq_ignore_ascii_case("Message-ID")).map(|h| h.get_value())
                    })
                    .unwrap_or_default();
                Mail { message_id, rcpt }
            })
            .collect()
    }
}

/// What the SMS gateway saw.
#[derive(Debug, Default)]
pub struct SmsLog {
    /// Idempotency keys of the messages accepted (200), in order, repeats included.
    pub accepted: Vec<String>,
    /// Requests answered 503.
    pub refused: u64,
}

/// The SMS gateway: a real HTTP/1.1 server implementing the `webhook`
/// provider's API (`POST` JSON `{to, body, idempotency_key}`, answer
/// `{"id": ...}`), that answers `503 Service Unavailable` while `failing`.
pub struct SmsGateway {
    /// Port.
    pub port: u16,
    /// While true, every request gets a 503.
    pub failing: Arc<std::sync::atomic::AtomicBool>,
    /// Requests seen.
    pub log: Arc<Mutex<SmsLog>>,
    task: tokio::task::JoinHandle<()>,
}

impl SmsGateway {
    /// Starts it on a free port.
    pub async fn start() -> SmsGateway {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind SMS gateway");
        let port = listener.local_addr().expect("addr").port();
        let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let log = Arc::new(Mutex::new(SmsLog::default()));
        let (f, l) = (failing.clone(), log.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (f, l) = (f.clone(), l.clone());
                tokio::spawn(async move {
                    let _ = sms_connection(stream, &f, &l).await;
                });
            }
        });
        SmsGateway { port, failing, log, task }
    }

    /// The webhook URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/sms", self.port)
    }
}

impl Drop for SmsGateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves the requests of one (keep-alive) connection.
async fn sms_connection(
    stream: tokio::net::TcpStream,
    failing: &std::sync::atomic::AtomicBool,
    log: &Mutex<SmsLog>,
) -> std::io::Result<()> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).await? == 0 {
                return Ok(());
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; len];
        r.read_exact(&mut body).await?;
        let resp = if failing.load(std::sync::atomic::Ordering::SeqCst) {
            log.lock().unwrap_or_else(|e| e.into_inner()).refused += 1;
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
                .to_owned()
        } else {
            let key = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["idempotency_key"].as_str().map(str::to_owned))
                .unwrap_or_default();
            let mut l = log.lock().unwrap_or_else(|e| e.into_inner());
            l.accepted.push(key);
            let reply = format!("{{\"id\":\"SM{}\"}}", l.accepted.len());
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{reply}",
                reply.len()
            )
        };
        w.write_all(resp.as_bytes()).await?;
    }
}
