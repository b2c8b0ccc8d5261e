//! Serving an axum router with transport limits, for the HTTP servers that
//! face clients (the admin API, the acknowledgment and inbound SMS server).
//!
//! `axum::serve` sets no timer on hyper, so it has no header read timeout: a
//! client that sends its headers one byte at a time (slow-loris) holds a
//! connection forever, and a few thousand such clients exhaust the server.
//! [`serve`] runs hyper's HTTP/1.1 connection itself with
//!
//! - a header read timeout (the connection is closed when the request line
//!   and headers are not complete in time, also on an idle keep-alive
//!   connection);
//! - a cap on open connections (further clients wait in the listen backlog);
//!
//! and [`limit`] adds to the router
//!
//! - a whole-request timeout (`408 Request Timeout` when the handler,
//!   including reading the body, has not answered in time);
//! - a body size limit (`413 Payload Too Large` for every extractor that
//!   reads the body).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::{Semaphore, watch};

use crate::shutdown::CancellationToken;

/// Transport limits of one HTTP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    /// The request line and headers must arrive within this time.
    pub header_read_timeout: Duration,
    /// A request (body included) must be answered within this time, else 408.
    pub request_timeout: Duration,
    /// Open connections at most.
    pub max_connections: usize,
    /// Largest request body, bytes (413 above).
    pub max_body_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 512,
            max_body_bytes: 1024 * 1024,
        }
    }
}

/// `router` with the request timeout (408) and the body size limit (413) of `limits`.
pub fn limit(router: Router, limits: &HttpLimits) -> Router {
    router
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(middleware::from_fn_with_state(limits.request_timeout, request_timeout))
}

async fn request_timeout(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(res) => res,
        Err(_) => {
            tracing::info!(message = "Request timed out.", timeout_secs = limit.as_secs());
            let mut res = (
                StatusCode::REQUEST_TIMEOUT,
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"error":"request_timeout","message":"the request was not complete in time"}"#,
            )
                .into_response();
            res.headers_mut().insert(header::CONNECTION, header::HeaderValue::from_static("close"));
            res
        }
    }
}

/// Serves `router` (already [`limit`]ed, if wanted) on `listener` over
/// HTTP/1.1 with the header read timeout and connection cap of `limits`,
/// until `shutdown`; then lets open requests finish for at most the request
/// timeout.
///
/// # Errors
///
/// None today (accept errors are logged and retried); the signature matches `axum::serve`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: &HttpLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    // Every connection task holds a receiver; `closed()` resolves when all are gone.
    let (open_tx, open_rx) = watch::channel(());
    let header_timeout = limits.header_read_timeout;
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = shutdown.cancelled() => break,
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => (stream, peer),
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(message = "Accepting a connection failed.", error = %e);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let (stream, peer) = stream;
        // The client address, for handlers that record where a request came from
        // (`axum::extract::ConnectInfo<SocketAddr>`; the web workspace's audit "from where").
        let router = router.clone();
        let service = TowerToHyperService::new(tower::util::MapRequest::new(
            router,
            move |mut req: axum::http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                req
            },
        ));
        let (open, stop) = (open_rx.clone(), shutdown.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let _open = open;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(header_timeout);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(message = "Connection ended with an error.", error = %e);
                    }
                    return;
                }
                () = stop.cancelled() => conn.as_mut().graceful_shutdown(),
            }
            let _ = conn.await;
        });
    }
    drop(open_rx);
    drop(listener);
    let grace = limits.request_timeout + Duration::from_secs(1);
    if tokio::time::timeout(grace, open_tx.closed()).await.is_err() {
        tracing::warn!(message = "Connections still open at shutdown were dropped.");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::{get, post};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    async fn start(limits: HttpLimits) -> (String, CancellationToken, tokio::task::JoinHandle<std::io::Result<()>>) {
        let router = Router::new()
            .route("/", get(|| async { "ok" }))
            .route("/echo", post(|b: axum::body::Bytes| async move { b.len().to_string() }))
            .route("/slow", get(|| async { tokio::time::sleep(Duration::from_secs(30)).await }));
        let router = limit(router, &limits);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let stop = stop.clone();
            async move { serve(listener, router, &limits, stop).await }
        });
        (addr, stop, task)
    }

    async fn exchange(addr: &str, raw: &[u8]) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(raw).await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await.unwrap().unwrap();
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn limits_bodies_requests_and_headers() {
        let limits = HttpLimits {
            header_read_timeout: Duration::from_millis(300),
            request_timeout: Duration::from_millis(300),
            max_connections: 4,
            max_body_bytes: 10,
        };
        let (addr, stop, task) = start(limits).await;
        let ok = exchange(&addr, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200") && ok.ends_with("ok"), "{ok}");
        let big = exchange(
            &addr,
            b"POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 11\r\n\r\nhello world",
        )
        .await;
        assert!(big.starts_with("HTTP/1.1 413"), "{big}");
        let slow = exchange(&addr, b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
        assert!(slow.starts_with("HTTP/1.1 408"), "{slow}");
        // Headers never completed: the server closes the connection.
        let partial = exchange(&addr, b"GET / HTTP/1.1\r\nHost: x\r\n").await;
        assert!(!partial.contains("200 OK"), "{partial}");
        stop.cancel();
        task.await.unwrap().unwrap();
    }
}
