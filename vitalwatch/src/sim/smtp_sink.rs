//! A minimal SMTP server for `vitalwatch simulate --smtp-listen`: accepts
//! every message (no TLS, no auth), and for each one records the instant its
//! DATA was accepted (the `250` after the final dot). The alert email's
//! `X-Vitalwatch-Reading-Time` header (the triggering reading's measurement
//! time, which the load generator sets to the publish time) and
//! `X-Vitalwatch-Step` map the email back to its reading, so publish -> email
//! accepted latency is `accepted - reading time`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

/// What the sink measured.
#[derive(Debug)]
pub struct SmtpStats {
    /// Publish -> accepted latency (microseconds) of first pages (`*.page0`).
    pub first_page_latency: Mutex<Histogram<u64>>,
    /// Every message accepted for this run's recipient.
    pub emails: AtomicU64,
    /// First pages among them.
    pub first_pages: AtomicU64,
}

/// Starts the sink on `addr`; counts only messages whose recipient contains `recipient_tag`.
pub async fn start(addr: &str, recipient_tag: String) -> anyhow::Result<Arc<SmtpStats>> {
    let listener = TcpListener::bind(addr).await?;
    let stats = Arc::new(SmtpStats {
        first_page_latency: Mutex::new(Histogram::new(3)?),
        emails: AtomicU64::new(0),
        first_pages: AtomicU64::new(0),
    });
    let s = stats.clone();
    let tag = Arc::new(recipient_tag);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (s, tag) = (s.clone(), tag.clone());
            tokio::spawn(async move {
                let _ = session(stream, &s, &tag).await;
            });
        }
    });
    Ok(stats)
}

async fn session(stream: TcpStream, stats: &SmtpStats, tag: &str) -> std::io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    w.write_all(b"220 vitalwatch-simulate ESMTP\r\n").await?;
    let mut line = String::new();
    let mut ours = false;
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_ascii_uppercase();
        if cmd.starts_with("EHLO") {
            w.write_all(b"250-vitalwatch-simulate\r\n250 8BITMIME\r\n").await?;
        } else if cmd.starts_with("RCPT") {
            ours |= line.contains(tag);
            w.write_all(b"250 OK\r\n").await?;
        } else if cmd.starts_with("MAIL") || cmd.starts_with("RSET") {
            ours = false;
            w.write_all(b"250 OK\r\n").await?;
        } else if cmd == "DATA" {
            w.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
            let (mut reading_time, mut step) = (None::<DateTime<Utc>>, String::new());
            let mut in_headers = true;
            loop {
                line.clear();
                if r.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                let l = line.trim_end_matches(['\r', '\n']);
                if l == "." {
                    break;
                }
                if in_headers {
                    if l.is_empty() {
                        in_headers = false;
                    } else if let Some((k, v)) = l.split_once(':') {
                        if k.eq_ignore_ascii_case("X-Vitalwatch-Reading-Time") {
                            reading_time = v.trim().parse().ok();
                        } else if k.eq_ignore_ascii_case("X-Vitalwatch-Step") {
                            step = v.trim().to_owned();
                        }
                    }
                }
            }
            let accepted = Utc::now();
            if ours {
                stats.emails.fetch_add(1, Ordering::Relaxed);
                if let (Some(t), true) = (reading_time, step.ends_with(".page0")) {
                    stats.first_pages.fetch_add(1, Ordering::Relaxed);
                    let lat = (accepted - t).num_microseconds().unwrap_or(0).max(0) as u64;
                    let _ = stats.first_page_latency.lock().await.record(lat);
                }
            }
            w.write_all(b"250 OK accepted\r\n").await?;
            ours = false;
        } else if cmd == "QUIT" {
            w.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else {
            w.write_all(b"250 OK\r\n").await?;
        }
    }
}
