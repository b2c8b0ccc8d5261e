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
    /// The query string (after `?`), empty if none.
    pub query: String,
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

    /// The query string as decoded pairs.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(self.query.as_bytes()).into_owned().collect()
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
    let script = Arc::new(script);
    serve(move |n, _path| {
        let (status, body) = script.get(n).or(script.last()).cloned().unwrap_or((500, String::new()));
        (status, "application/json", body)
    })
    .await
}

/// Starts a real HTTP/1.1 server on a free port serving HTML pages for a browser: `pages` maps a
/// path (without query) to a document; any other path answers 404 with a small page. Every request
/// is recorded (with its query: an OAuth redirect's `code` and `state`). Returns its base URL
/// (`http://127.0.0.1:PORT`) and the requests seen.
pub async fn spawn_html_server(pages: Vec<(String, String)>) -> (String, Arc<Mutex<Vec<Recorded>>>) {
    let pages = Arc::new(pages);
    serve(move |_n, path| match pages.iter().find(|(p, _)| p == path) {
        Some((_, html)) => (200, "text/html; charset=utf-8", html.clone()),
        None => {
            (404, "text/html; charset=utf-8", "<!doctype html><title>Not found</title><h1>Not found</h1>".to_owned())
        }
    })
    .await
}

/// The server behind [`spawn_http_server`] and [`spawn_html_server`]: `answer(n, path)` gives the
/// n-th request's (status, content type, body).
async fn serve<F>(answer: F) -> (String, Arc<Mutex<Vec<Recorded>>>)
where
    F: Fn(usize, &str) -> (u16, &'static str, String) + Send + Sync + 'static,
{
    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log: Arc<Mutex<Vec<Recorded>>> = Arc::new(Mutex::new(Vec::new()));
    let answer = Arc::new(answer);
    let log2 = log.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let log = log2.clone();
            let answer = answer.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let log = log.clone();
                    let answer = answer.clone();
                    async move {
                        let method = req.method().to_string();
                        let path = req.uri().path().to_string();
                        let query = req.uri().query().unwrap_or("").to_string();
                        let headers = req
                            .headers()
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                            .collect();
                        let body = req.into_body().collect().await.map(|c| c.to_bytes().to_vec()).unwrap_or_default();
                        let n = {
                            let mut l = log.lock().unwrap();
                            l.push(Recorded { method, path: path.clone(), query, headers, body, at: Instant::now() });
                            l.len() - 1
                        };
                        let (status, content_type, body) = answer(n, &path);
                        let resp = hyper::Response::builder()
                            .status(status)
                            .header("content-type", content_type)
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
