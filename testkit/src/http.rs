//! A real HTTP/1.1 server standing in for a provider (an SMS gateway, a
//! webhook): it answers a script and records every request.

use std::sync::{Arc, Mutex};
use std::time::Instant;

/// One request received by the stub.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Method (`POST`).
    pub method: String,
    /// Path, without the query.
    pub path: String,
    /// Headers as sent (names lower-case).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
    /// When it arrived.
    pub at: Instant,
}

impl Recorded {
    /// A header's value (any case of `name`).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body as `application/x-www-form-urlencoded` pairs.
    pub fn form(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(&self.body).into_owned().collect()
    }
}

/// Starts a real HTTP/1.1 server on a free port answering with the scripted (status, body) list in
/// order (the last one repeats), recording every request. Returns its base URL
/// (`http://127.0.0.1:PORT`) and the requests seen.
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
