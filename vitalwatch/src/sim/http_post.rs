//! A minimal keep-alive HTTP/1.1 client for `vitalwatch simulate --transport
//! http`: one connection, one request at a time (as a phone app or a vendor
//! cloud posts), reconnecting when the server closes. Only what the load
//! generator needs: POST with a body, read the status and a
//! `Content-Length` body.

use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;

/// One keep-alive connection to `addr` (host:port).
pub struct Poster {
    addr: String,
    auth: String,
    conn: Option<BufReader<TcpStream>>,
    buf: Vec<u8>,
}

impl Poster {
    /// A client of `addr` sending `Authorization: Bearer <secret>`.
    pub fn new(addr: &str, secret: &str) -> Poster {
        Poster { addr: addr.to_owned(), auth: format!("Bearer {secret}"), conn: None, buf: Vec::with_capacity(4096) }
    }

    /// POSTs `body` to `path`; the status and the body of the answer.
    ///
    /// # Errors
    ///
    /// Connecting, writing or reading failed (the connection is dropped; the
    /// next call reconnects).
    pub async fn post(&mut self, path: &str, body: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
        let r = self.exchange(path, body).await;
        if r.is_err() {
            self.conn = None;
        }
        r
    }

    async fn exchange(&mut self, path: &str, body: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
        if self.conn.is_none() {
            let s = TcpStream::connect(&self.addr).await.with_context(|| format!("connecting to {}", self.addr))?;
            s.set_nodelay(true)?;
            self.conn = Some(BufReader::new(s));
        }
        let Some(conn) = self.conn.as_mut() else { anyhow::bail!("no connection") };
        self.buf.clear();
        self.buf.extend_from_slice(
            format!(
                "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
                self.addr,
                self.auth,
                body.len()
            )
            .as_bytes(),
        );
        self.buf.extend_from_slice(body);
        conn.get_mut().write_all(&self.buf).await?;
        let mut line = String::new();
        conn.read_line(&mut line).await?;
        let status: u16 = line.split(' ').nth(1).and_then(|s| s.parse().ok()).context("no HTTP status line")?;
        let (mut length, mut close) = (0usize, false);
        loop {
            line.clear();
            if conn.read_line(&mut line).await? == 0 {
                anyhow::bail!("connection closed in the headers");
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().context("bad Content-Length")?;
                } else if k.eq_ignore_ascii_case("connection") && v.trim().eq_ignore_ascii_case("close") {
                    close = true;
                }
            }
        }
        let mut out = vec![0; length];
        tokio::time::timeout(Duration::from_secs(60), conn.read_exact(&mut out)).await??;
        if close {
            self.conn = None;
        }
        Ok((status, out))
    }
}

/// The HTTP path of an MQTT topic: `vitalwatch/v1/...` -> `/ingest/v1/...`.
pub fn path_of_topic(topic: &str) -> String {
    format!("/ingest/{}", topic.strip_prefix("vitalwatch/").unwrap_or(topic))
}
