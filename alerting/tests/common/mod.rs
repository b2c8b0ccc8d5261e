//! Real-service helpers of the alerting role's integration tests; the pure
//! fixtures are shared with the core's tests (alerting/core/tests/common).
#![allow(dead_code)]

use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "../../core/tests/common/mod.rs"]
mod fixtures;
pub use fixtures::*;

/// Whether the test may use a service; under CI=true a missing service is a failure.
pub fn require(service: &str, available: bool, how: &str) -> bool {
    if available {
        return true;
    }
    if std::env::var("CI").map(|v| v == "true" || v == "1").unwrap_or(false) {
        panic!("{service} is required under CI but is not available: {how}");
    }
    eprintln!("SKIPPED: {service} is not available ({how}); set CI=true to make this a failure");
    false
}

pub fn aiosmtpd_available() -> bool {
    Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running aiosmtpd process that writes every message into `dir`.
pub struct SmtpSink {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
}

impl SmtpSink {
    pub fn start(port: u16, dir: &Path) -> SmtpSink {
        Self::start_rejecting(port, dir, &[])
    }

    /// Like [`SmtpSink::start`], but RCPT TO any of `reject` is refused with a
    /// permanent `550 5.1.1 mailbox unavailable`.
    pub fn start_rejecting(port: u16, dir: &Path, reject: &[&str]) -> SmtpSink {
        let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
        let child = Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "smtp_sink.Sink"])
            .arg(dir)
            .env("PYTHONPATH", &tests)
            .env("VW_SMTP_REJECT", reject.join(","))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn python3 -m aiosmtpd");
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "aiosmtpd did not start listening on port {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        SmtpSink { child, port, dir: dir.to_path_buf() }
    }

    /// Raw messages received so far, in order.
    pub fn messages(&self) -> Vec<(Vec<u8>, Vec<String>)> {
        let mut out = Vec::new();
        for n in 0.. {
            let eml = self.dir.join(format!("{n}.eml"));
            let Ok(raw) = std::fs::read(&eml) else { break };
            let rcpt = std::fs::read_to_string(self.dir.join(format!("{n}.rcpt"))).unwrap_or_default();
            out.push((raw, rcpt.lines().map(str::to_string).collect()));
        }
        out
    }

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
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request received by the fake provider.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn form(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(&self.body).into_owned().collect()
    }
}

/// A real HTTP/1.1 server answering with the scripted (status, body) list in
/// order (the last one repeats), recording every request.
pub async fn spawn_http_server(script: Vec<(u16, String)>) -> (String, Arc<Mutex<Vec<Recorded>>>) {
    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log: Arc<Mutex<Vec<Recorded>>> = Arc::new(Mutex::new(Vec::new()));
    let script = Arc::new(script);
    let log2 = log.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let log = log2.clone();
            let script = script.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let log = log.clone();
                    let script = script.clone();
                    async move {
                        let method = req.method().to_string();
                        let path = req.uri().path().to_string();
                        let headers = req
                            .headers()
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                            .collect();
                        let body = req.into_body().collect().await.map(|c| c.to_bytes().to_vec()).unwrap_or_default();
                        let n = {
                            let mut l = log.lock().unwrap();
                            l.push(Recorded { method, path, headers, body, at: Instant::now() });
                            l.len() - 1
                        };
                        let (status, body) = script.get(n).or(script.last()).cloned().unwrap_or((500, String::new()));
                        let resp = hyper::Response::builder()
                            .status(status)
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(body)))
                            .unwrap();
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    (format!("http://{addr}"), log)
}
