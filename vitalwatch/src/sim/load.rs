//! `vitalwatch simulate`: the load generator. Simulated patients publish at a
//! fixed total rate over several MQTT connections (QoS 1); optionally the
//! tool watches the database and the observations topic and reports
//! throughput, loss and end-to-end latency (publish -> row visible, publish ->
//! Kafka, publish -> alert event, publish -> alert email accepted by SMTP),
//! plus the CPU seconds of given processes per 100,000 readings.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::Args;
use hdrhistogram::Histogram;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::Mutex;

use super::model::{FORMATS, SimPatient};

/// Options of `vitalwatch simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// MQTT broker.
    #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
    pub broker: String,
    /// Number of simulated patients.
    #[arg(long, default_value_t = 1000)]
    pub patients: usize,
    /// Total readings per second.
    #[arg(long, default_value_t = 1000)]
    pub rate: u64,
    /// Duration, seconds.
    #[arg(long, default_value_t = 60)]
    pub duration: u64,
    /// Payload formats, comma-separated (json, senml, fhir, proto).
    #[arg(long, default_value = "json,senml,fhir,proto", value_delimiter = ',')]
    pub formats: Vec<String>,
    /// Readings per message: each message carries this many readings of one
    /// device, 1 ms apart, the last one at the publish time (a device
    /// uploading its last measurements; FHIR as a collection Bundle). The rate
    /// stays in readings/s; a trend moves one step per message. At most 100:
    /// a FHIR Bundle of 100 blood pressures is about 70 KB, well inside
    /// ingest's 256 KiB payload limit.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=100))]
    pub per_message: u16,
    /// Publisher connections.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// PostgreSQL URL: register the patients and devices first, then measure publish -> row latency and loss.
    #[arg(long)]
    pub database: Option<String>,
    /// Kafka brokers: measure publish -> observation-on-Kafka latency (on
    /// partition 0 of the observations topic only: little added broker load).
    #[arg(long)]
    pub kafka: Option<String>,
    /// Observations topic (with --kafka).
    #[arg(long, default_value = "vitalwatch.observations.v1")]
    pub observations_topic: String,
    /// Alerts topic (with --kafka): measure publish -> alert event latency
    /// (OPENED and ESCALATED events of this run's patients).
    #[arg(long)]
    pub alerts_topic: Option<String>,
    /// Process ids whose CPU time to report per 100,000 readings (repeatable).
    #[arg(long = "measure-pid")]
    pub measure_pids: Vec<u32>,
    /// Id prefix of this run's patients (default: a fresh one).
    #[arg(long)]
    pub prefix: Option<String>,
    /// Listen for SMTP on this address (e.g. 127.0.0.1:2525) and measure
    /// publish -> alert email accepted latency of first pages; point
    /// `alerting.smtp` (security `none`) at it. With --database, registers one
    /// email-only physician and, for every simulated patient, a care team that
    /// pages that physician once per episode.
    #[arg(long)]
    pub smtp_listen: Option<String>,
    /// Deteriorating patients start deteriorating at times spread evenly over
    /// this many seconds, after a 10-second warm-up, so their alerts are
    /// measured while the pipeline carries the load rather than all at once
    /// at the start. Default: the duration minus 20 s; 0: every trend starts
    /// with the first reading (one burst of alerts at the start).
    #[arg(long)]
    pub onsets: Option<u64>,
    /// Seconds to wait for the last rows after publishing ends.
    #[arg(long, default_value_t = 60)]
    pub drain_timeout: u64,
    /// Warm-up before the first onset (see `--onsets`), seconds.
    #[arg(long, default_value_t = 10)]
    pub onset_warmup: u64,
    /// With --database: register the patients and devices, then exit without publishing.
    #[arg(long)]
    pub register_only: bool,
    /// Write every published reading to this file as it is sent (for the fault
    /// suite, which compares it with the stored rows): first one line
    /// `trend,<patient>,<trend>` per deteriorating patient, then one line
    /// `reading,<patient>,<time in microseconds, as stored>,<rows>` per
    /// reading. Flushed every 100 ms.
    #[arg(long)]
    pub record: Option<std::path::PathBuf>,
    /// How readings are sent: `mqtt` (QoS 1 publishes to --broker) or `http`
    /// (POSTs to the ingest role's HTTP endpoint at --http, one keep-alive
    /// connection per --connections, one request at a time each; the topic
    /// becomes the path, docs/http-ingest.md).
    #[arg(long, default_value = "mqtt", value_parser = ["mqtt", "http"])]
    pub transport: String,
    /// The HTTP ingestion endpoint, host:port (with --transport http).
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub http: String,
    /// The bearer credential to post with (with --transport http). Default:
    /// with --database, an app credential granted this run's devices and
    /// patients is created first (`ingest.http_credentials_refresh_secs`
    /// apply: the ingest role looks it up on first use).
    #[arg(long, env = "VW_INGEST_CREDENTIAL", hide_env_values = true)]
    pub http_credential: Option<String>,
}

/// Creates an app credential for the run's devices and patients (`--transport http`).
async fn create_credential(
    url: &str,
    prefix: &str,
    patients: usize,
    formats: &[&'static str],
) -> anyhow::Result<String> {
    use vitalwatch_admin::service::ingest_clients::NewIngestClientRequest;
    let db = vitalwatch_platform::store::db::Db::open(url, vitalwatch_platform::store::DbTimeouts::default(), 1)
        .await
        .context("opening the database")?;
    let admin = vitalwatch_admin::AdminService::new(db, 1000, 100);
    let (mut devices, mut manual) = (Vec::new(), Vec::new());
    for i in 0..patients {
        let p = SimPatient::new(prefix, i, formats);
        if p.manual {
            manual.push(p.id.clone());
        }
        devices.extend(p.devices().map(|(d, _)| d));
    }
    let req = NewIngestClientRequest { name: format!("{prefix}-app"), app: true, devices, patients: manual };
    let created = admin.create_ingest_client(&vitalwatch_admin::Actor::cli(), &req).await?;
    Ok(created.secret)
}

/// The step at which the `k`-th patient of a connection starts its trend:
/// onsets spread evenly over `spread_secs` after `warmup_secs` (0: at once).
fn onset_step(k: usize, per_conn: usize, spread_secs: u64, warmup_secs: u64, steps_per_sec: f64) -> u64 {
    if spread_secs == 0 {
        return 0;
    }
    // A fixed permutation of k (odd multiplier mod n), so that every trend
    // kind (patients i % 10 == 3, 5, 7) is spread over the whole window.
    let n = per_conn.max(1);
    let slot = (k.wrapping_mul(7919) % n) as f64 / n as f64;
    ((warmup_secs as f64 + slot * spread_secs as f64) * steps_per_sec) as u64
}

/// One published reading for `--record`: (patient, stored time in microseconds, rows).
type Recorded = (String, i64, u64);

/// Writes `--record`: the deteriorating patients, then every reading the
/// publishers send, flushed every 100 ms so a reader sees what was published.
fn spawn_recorder(
    path: &std::path::Path,
    patients: usize,
    prefix: &str,
    formats: &[&'static str],
) -> anyhow::Result<(tokio::sync::mpsc::UnboundedSender<Recorded>, tokio::task::JoinHandle<std::io::Result<()>>)> {
    use std::io::Write as _;
    let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    for i in 0..patients {
        let p = SimPatient::new(prefix, i, formats);
        if p.trend != super::model::Trend::Stable {
            writeln!(out, "trend,{},{:?}", p.id, p.trend)?;
        }
    }
    out.flush()?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Recorded>();
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                r = rx.recv() => match r {
                    Some((p, t, rows)) => writeln!(out, "reading,{p},{t},{rows}")?,
                    None => break,
                },
                _ = tick.tick() => out.flush()?,
            }
        }
        out.flush()
    });
    Ok((tx, task))
}

/// The time of a reading as the database stores it: payloads carry whole
/// microseconds (and the database keeps no more), while `Utc::now()` has
/// nanoseconds; SenML times are microseconds of a float, rounded like ingest does.
fn stored_micros(p: &SimPatient, t: DateTime<Utc>) -> i64 {
    if p.format == "senml" && !p.manual {
        ((t.timestamp_micros() as f64 / 1e6) * 1e6).round() as i64
    } else {
        t.timestamp_micros()
    }
}

/// Records a published message's readings (`--record`) and returns how many
/// readings and rows it carries.
fn count(
    p: &SimPatient,
    readings: &[super::model::ReadingRows],
    record: Option<&tokio::sync::mpsc::UnboundedSender<Recorded>>,
) -> (u64, u64) {
    if let Some(r) = record {
        for (t, rows) in readings {
            let _ = r.send((p.id.clone(), stored_micros(p, *t), *rows));
        }
    }
    (readings.len() as u64, readings.iter().map(|(_, rows)| rows).sum())
}

/// Sampled readings (patient, LOINC code, time) waiting to be seen in the database.
type Samples = Arc<std::sync::Mutex<Vec<(String, String, DateTime<Utc>)>>>;

fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Runs the load and prints the report.
pub async fn run(args: SimulateArgs) -> anyhow::Result<()> {
    vitalwatch_platform::telemetry::init(vitalwatch_platform::telemetry::LogFormat::Text, "warn");
    let formats: Vec<&'static str> = args
        .formats
        .iter()
        .map(|f| FORMATS.iter().find(|x| **x == f.as_str()).copied().with_context(|| format!("unknown format {f:?}")))
        .collect::<anyhow::Result<_>>()?;
    let prefix = args.prefix.clone().unwrap_or_else(|| format!("p-load-{}", Utc::now().format("%H%M%S")));
    let rows_db = match &args.database {
        Some(url) => {
            let store = vitalwatch_platform::store::open(url, 2000).await.context("opening the database")?;
            eprintln!("registering {} patients and their devices ...", args.patients);
            super::trickle::register_population(store.as_ref(), &prefix, args.patients, &formats).await?;
            if args.smtp_listen.is_some() {
                register_care_teams(url, &prefix, args.patients, &formats).await?;
            }
            if args.register_only {
                return Ok(());
            }
            Some(url.clone())
        }
        None => None,
    };
    let smtp = match &args.smtp_listen {
        Some(addr) => Some(
            super::smtp_sink::start(addr, physician_email(&prefix))
                .await
                .with_context(|| format!("listening for SMTP on {addr}"))?,
        ),
        None => None,
    };
    let start_cpu: Vec<Option<f64>> = args.measure_pids.iter().map(|p| cpu_seconds(*p)).collect();
    let recorder = match &args.record {
        Some(path) => Some(spawn_recorder(path, args.patients, &prefix, &formats)?),
        None => None,
    };

    let published = Arc::new(AtomicU64::new(0));
    let expected_rows = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let row_latency = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    let kafka_latency = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    let rows_seen = Arc::new(AtomicU64::new(0));
    let samples: Samples = Arc::default();
    let kafka_seen = Arc::new(AtomicU64::new(0));

    let watcher = rows_db.map(|url| {
        let (h, seen, done, prefix, samples) =
            (row_latency.clone(), rows_seen.clone(), done.clone(), prefix.clone(), samples.clone());
        tokio::spawn(async move { watch_rows(&url, &prefix, samples, h, seen, done).await })
    });
    let alert_latency = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    let alerts_seen = Arc::new(AtomicU64::new(0));
    let alert_watcher = match (&args.kafka, &args.alerts_topic) {
        (Some(brokers), Some(topic)) => {
            let (h, seen, done, brokers, topic, prefix) = (
                alert_latency.clone(),
                alerts_seen.clone(),
                done.clone(),
                brokers.clone(),
                topic.clone(),
                prefix.clone(),
            );
            Some(tokio::spawn(async move { watch_alerts(&brokers, &topic, &prefix, h, seen, done).await }))
        }
        _ => None,
    };
    let kafka_watcher = args.kafka.clone().map(|brokers| {
        let (h, seen, done, topic, prefix) =
            (kafka_latency.clone(), kafka_seen.clone(), done.clone(), args.observations_topic.clone(), prefix.clone());
        tokio::spawn(async move { watch_kafka(&brokers, &topic, &prefix, h, seen, done).await })
    });

    let http = args.transport == "http";
    let credential = match (&args.http_credential, &args.database) {
        _ if !http => String::new(),
        (Some(c), _) => c.clone(),
        (None, Some(url)) => create_credential(url, &prefix, args.patients, &formats).await?,
        (None, None) => anyhow::bail!("--transport http needs --http-credential (or --database to create one)"),
    };
    let (host, port) = vitalwatch_ingest::worker::broker_address(&args.broker)?;
    let conns = args.connections.max(1);
    let per_conn_rate = (args.rate as f64 / conns as f64).max(1.0);
    let deadline = Instant::now() + Duration::from_secs(args.duration);
    let onsets = args.onsets.unwrap_or(args.duration.saturating_sub(20));
    let args_drain = args.drain_timeout;
    let per_message = usize::from(args.per_message);
    // About one latency sample per 100 readings.
    let sample_every = (100 / per_message as u64).max(1);
    let mut publishers = Vec::new();
    for c in 0..conns {
        let mut patients: Vec<SimPatient> =
            (0..args.patients).filter(|i| i % conns == c).map(|i| SimPatient::new(&prefix, i, &formats)).collect();
        // One step is one message of `per_message` readings per patient.
        let steps_per_sec = per_conn_rate / (patients.len().max(1) * per_message) as f64;
        let per_conn = patients.len();
        for (k, p) in patients.iter_mut().enumerate() {
            p.onset = onset_step(k, per_conn, onsets, args.onset_warmup, steps_per_sec);
        }
        if patients.is_empty() {
            continue;
        }
        if http {
            let (published, expected_rows, samples) = (published.clone(), expected_rows.clone(), samples.clone());
            let record = recorder.as_ref().map(|(tx, _)| tx.clone());
            let mut poster = super::http_post::Poster::new(&args.http, &credential);
            publishers.push(tokio::spawn(async move {
                let acked = Arc::new(AtomicU64::new(0));
                let poller = tokio::spawn(async {});
                let started = Instant::now();
                let (mut sent, mut step, mut idx, mut errors, mut messages) = (0u64, 0u64, 0usize, 0u32, 0u64);
                while Instant::now() < deadline {
                    let due = (started.elapsed().as_secs_f64() * per_conn_rate) as u64;
                    while sent < due && Instant::now() < deadline {
                        let p = &mut patients[idx];
                        let t = Utc::now();
                        let (topic, payload, readings) = p.message(step, t, per_message);
                        if messages.is_multiple_of(sample_every) {
                            let code = ["29463-7", "8480-6", "59408-5", "41653-7", "8310-5"][(step % 5) as usize];
                            let t = DateTime::from_timestamp_micros(stored_micros(p, t)).unwrap_or(t);
                            samples.lock().unwrap_or_else(|e| e.into_inner()).push((p.id.clone(), code.to_owned(), t));
                        }
                        messages += 1;
                        match poster.post(&super::http_post::path_of_topic(&topic), &payload).await {
                            Ok((200..=299, _)) => {
                                acked.fetch_add(readings.len() as u64, Ordering::Relaxed);
                            }
                            Ok((status, body)) => {
                                errors += 1;
                                if errors <= 5 {
                                    eprintln!("HTTP {status}: {}", String::from_utf8_lossy(&body));
                                }
                            }
                            Err(e) => {
                                errors += 1;
                                if errors <= 5 {
                                    eprintln!("HTTP post failed: {e:#}");
                                }
                                tokio::time::sleep(Duration::from_millis(200)).await;
                            }
                        }
                        let (n, rows) = count(p, &readings, record.as_ref());
                        sent += n;
                        published.fetch_add(n, Ordering::Relaxed);
                        expected_rows.fetch_add(rows, Ordering::Relaxed);
                        idx += 1;
                        if idx == patients.len() {
                            idx = 0;
                            step += 1;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                (sent, acked, poller)
            }));
            continue;
        }
        let mut opts = MqttOptions::new(format!("{prefix}-pub-{c}"), host.clone(), port);
        opts.set_keep_alive(Duration::from_secs(30)).set_inflight(1000).set_max_packet_size(1 << 20, 1 << 20);
        // A persistent session, as a device keeps: after a broker restart the
        // session resumes and the client republishes what was not acknowledged
        // (with a clean session rumqttc drops it, and the fault suite counted
        // those readings as lost).
        opts.set_clean_session(false);
        let (client, mut eventloop) = AsyncClient::new(opts, 10_000);
        let acked = Arc::new(AtomicU64::new(0));
        let acked2 = acked.clone();
        let poller = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        // Every message carries `per_message` readings; the report counts readings.
                        acked2.fetch_add(per_message as u64, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("publisher connection error: {e}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        });
        let (published, expected_rows, samples) = (published.clone(), expected_rows.clone(), samples.clone());
        let record = recorder.as_ref().map(|(tx, _)| tx.clone());
        publishers.push(tokio::spawn(async move {
            let started = Instant::now();
            let (mut sent, mut messages) = (0u64, 0u64);
            let mut step = 0u64;
            let mut idx = 0usize;
            while Instant::now() < deadline {
                let due = (started.elapsed().as_secs_f64() * per_conn_rate) as u64;
                while sent < due {
                    let p = &mut patients[idx];
                    let t = Utc::now();
                    let (topic, payload, readings) = p.message(step, t, per_message);
                    if messages.is_multiple_of(sample_every) {
                        // The first row of the reading, keyed as stored (see
                        // `stored_micros`; until 2026-12-05 only the SenML samples
                        // matched: the others were never found, and the watcher
                        // looked for thousands of them).
                        let code = ["29463-7", "8480-6", "59408-5", "41653-7", "8310-5"][(step % 5) as usize];
                        let t = DateTime::from_timestamp_micros(stored_micros(p, t)).unwrap_or(t);
                        samples.lock().unwrap_or_else(|e| e.into_inner()).push((p.id.clone(), code.to_owned(), t));
                    }
                    messages += 1;
                    if client.publish(topic, QoS::AtLeastOnce, false, payload).await.is_err() {
                        return (sent, acked, poller);
                    }
                    let (n, rows) = count(p, &readings, record.as_ref());
                    sent += n;
                    published.fetch_add(n, Ordering::Relaxed);
                    expected_rows.fetch_add(rows, Ordering::Relaxed);
                    idx += 1;
                    if idx == patients.len() {
                        idx = 0;
                        step += 1;
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            // Wait for the broker to acknowledge everything we sent.
            // An overloaded broker may still be reading what we queued: give it the drain time too.
            let until = Instant::now() + Duration::from_secs(args_drain.max(30));
            while acked.load(Ordering::Relaxed) < sent && Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let _ = client.disconnect().await;
            (sent, acked, poller)
        }));
    }

    let t0 = Instant::now();
    let progress = {
        let (published, rows_seen, kafka_seen, done) =
            (published.clone(), rows_seen.clone(), kafka_seen.clone(), done.clone());
        tokio::spawn(async move {
            let mut last = 0;
            while !done.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let p = published.load(Ordering::Relaxed);
                eprintln!(
                    "[{:>4.0}s] published {p} ({} /s), rows visible {}, on kafka (partition 0) {}",
                    t0.elapsed().as_secs_f64(),
                    p - last,
                    rows_seen.load(Ordering::Relaxed),
                    kafka_seen.load(Ordering::Relaxed)
                );
                last = p;
            }
        })
    };

    let mut sent_total = 0;
    let mut acked_total = 0;
    for p in publishers {
        let (sent, acked, poller) = p.await?;
        sent_total += sent;
        acked_total += acked.load(Ordering::Relaxed);
        poller.abort();
    }
    let publish_secs = t0.elapsed().as_secs_f64();
    if let Some((tx, task)) = recorder {
        drop(tx);
        task.await?.context("writing --record")?;
    }
    let expected = expected_rows.load(Ordering::Relaxed);
    if watcher.is_some() {
        let until = Instant::now() + Duration::from_secs(args.drain_timeout);
        while rows_seen.load(Ordering::Relaxed) < expected && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    if let Some(stats) = &smtp {
        // Emails of the last alerts: wait until none arrived for 5 s.
        let until = Instant::now() + Duration::from_secs(args.drain_timeout);
        let (mut last, mut quiet_since) = (u64::MAX, Instant::now());
        while Instant::now() < until && quiet_since.elapsed() < Duration::from_secs(5) {
            let n = stats.emails.load(Ordering::Relaxed);
            if n != last {
                (last, quiet_since) = (n, Instant::now());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let end_secs = t0.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let mut never_found = None;
    if let Some(w) = watcher {
        match w.await {
            Ok(Ok(n)) => never_found = Some(n),
            Ok(Err(e)) => eprintln!("row watcher failed: {e:#}"),
            Err(e) => eprintln!("row watcher failed: {e}"),
        }
    }
    if let Some(w) = kafka_watcher {
        let _ = w.await;
    }
    if let Some(w) = alert_watcher {
        let _ = w.await;
    }
    progress.abort();

    println!("\n=== vitalwatch simulate report ===");
    println!(
        "patients {}  formats {:?}  readings per message {}  connections {conns}  transport {}",
        args.patients, args.formats, args.per_message, args.transport
    );
    println!(
        "published {sent_total} readings in {publish_secs:.1} s = {:.0} readings/s (broker or HTTP 2xx acked {acked_total})",
        sent_total as f64 / publish_secs
    );
    let seen = rows_seen.load(Ordering::Relaxed);
    if args.database.is_some() {
        let h = row_latency.lock().await;
        println!(
            "rows expected {expected}, visible {seen}, missing {}  (all visible after {end_secs:.1} s)",
            expected.saturating_sub(seen)
        );
        println!(
            "publish -> row visible latency: p50 {:.1} ms  p99 {:.1} ms  p99.9 {:.1} ms  max {:.1} ms  \
             (samples {}, never found {})",
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
            h.value_at_quantile(0.999) as f64 / 1000.0,
            h.max() as f64 / 1000.0,
            h.len(),
            never_found.map_or_else(|| "?".to_owned(), |n| n.to_string())
        );
    }
    if args.kafka.is_some() {
        let h = kafka_latency.lock().await;
        println!(
            "publish -> on Kafka latency: p50 {:.1} ms  p99 {:.1} ms  (observations seen on partition 0: {})",
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
            kafka_seen.load(Ordering::Relaxed)
        );
    }
    if args.alerts_topic.is_some() {
        let h = alert_latency.lock().await;
        println!(
            "publish -> alert event on Kafka latency: p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms  (alerts {})",
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
            h.max() as f64 / 1000.0,
            alerts_seen.load(Ordering::Relaxed)
        );
    }
    if let Some(stats) = &smtp {
        let h = stats.first_page_latency.lock().await;
        println!(
            "publish -> alert email accepted by SMTP latency (first pages): p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms  (first pages {}, emails {})",
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
            h.max() as f64 / 1000.0,
            stats.first_pages.load(Ordering::Relaxed),
            stats.emails.load(Ordering::Relaxed)
        );
    }
    for (pid, before) in args.measure_pids.iter().zip(start_cpu) {
        if let (Some(b), Some(a)) = (before, cpu_seconds(*pid)) {
            println!(
                "pid {pid}: {:.2} CPU s total, {:.2} CPU s per 100,000 readings",
                a - b,
                (a - b) * 100_000.0 / sent_total.max(1) as f64
            );
        }
    }
    if acked_total < sent_total {
        // Not a pipeline loss: these never reached the broker (a device would
        // resend them); their rows are counted as missing above all the same.
        println!(
            "WARNING: {} readings were never acknowledged by the MQTT broker (the load generator or the broker \
             was overloaded); the missing rows include theirs",
            sent_total - acked_total
        );
    }
    if args.database.is_some() && seen < expected {
        anyhow::bail!("{} rows missing", expected - seen);
    }
    Ok(())
}

/// The email address of this run's physician (the SMTP sink counts only its messages).
fn physician_email(prefix: &str) -> String {
    format!("{prefix}@sim.vitalwatch.example")
}

/// Every severity pages the responsible physician once (no deputies, no reminders).
const SIM_POLICY: &str = r#"{"low": {"steps": [{"after_minutes": 0, "targets": [{"kind": "responsible"}]}]},
  "medium": {"steps": [{"after_minutes": 0, "targets": [{"kind": "responsible"}]}]},
  "high": {"steps": [{"after_minutes": 0, "targets": [{"kind": "responsible"}]}]},
  "critical": {"steps": [{"after_minutes": 0, "targets": [{"kind": "responsible"}]}]}}"#;

/// One physician for the run, responsible for every simulated patient; one page per episode.
async fn register_care_teams(url: &str, prefix: &str, n: usize, formats: &[&'static str]) -> anyhow::Result<()> {
    use vitalwatch_alerting::{CareTeam, Channel, EmailAddress, EscalationPolicy, Physician, PhysicianId, TimeZone};
    let policy: EscalationPolicy = serde_json::from_str(SIM_POLICY)?;
    let store = vitalwatch_alerting::store::open(url).await.context("opening the alerting store")?;
    let id = PhysicianId::new(format!("{prefix}-dr"))?;
    let physician = Physician {
        id: id.clone(),
        name: "Dr Load".into(),
        email: EmailAddress::new(physician_email(prefix))?,
        mobile: None,
        time_zone: TimeZone::new("Europe/Paris")?,
        quiet_hours: None,
        channels: vitalwatch_alerting::ChannelPreferences {
            low: vec![Channel::Email],
            medium: vec![Channel::Email],
            high: vec![Channel::Email],
            critical: vec![Channel::Email],
        },
        hourly_cap: None,
        language: None,
    };
    store.upsert_physician(&physician).await?;
    eprintln!("registering {n} care teams ...");
    for i in 0..n {
        let p = SimPatient::new(prefix, i, formats);
        let team = CareTeam {
            patient_id: vitalwatch_schemas::PatientId::new(p.id.clone())?,
            responsible: id.clone(),
            deputies: Vec::new(),
            policy: policy.clone(),
        };
        store.set_care_team(&team).await?;
    }
    Ok(())
}

/// Latency is measured on a 1% sample of the readings (every 100th): the
/// watcher polls for the sampled rows and records when each becomes visible.
/// Loss is checked on the total: `count(*)` of this run's rows. Returns how
/// many sampled rows were never found (a key the watcher got wrong, not a
/// loss: the count tells that).
async fn watch_rows(
    url: &str,
    prefix: &str,
    samples: Samples,
    hist: Arc<Mutex<Histogram<u64>>>,
    seen: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
) -> anyhow::Result<usize> {
    let client = vitalwatch_platform::store::postgres::connect_client(url, Default::default()).await?;
    let pattern = format!("{prefix}-%");
    let find = client
        .prepare(
            "SELECT o.patient_id, o.code, o.time FROM observations o \
             JOIN UNNEST($1::text[], $2::text[], $3::timestamptz[]) AS s(p, c, t) \
             ON o.patient_id = s.p AND o.code = s.c AND o.time = s.t",
        )
        .await?;
    let counter = {
        let (url, done) = (url.to_owned(), done.clone());
        tokio::spawn(async move { count_rows(&url, &pattern, &seen, &done).await })
    };
    let mut outstanding: HashSet<(String, String, DateTime<Utc>)> = HashSet::new();
    while !done.load(Ordering::Relaxed) {
        outstanding.extend(samples.lock().unwrap_or_else(|e| e.into_inner()).drain(..));
        if !outstanding.is_empty() {
            let (p, c, t): (Vec<&str>, Vec<&str>, Vec<DateTime<Utc>>) =
                outstanding.iter().map(|(p, c, t)| (p.as_str(), c.as_str(), *t)).collect();
            let rows = client.query(&find, &[&p, &c, &t]).await?;
            let now = Utc::now();
            let mut h = hist.lock().await;
            for r in rows {
                let key: (String, String, DateTime<Utc>) = (r.get(0), r.get(1), r.get(2));
                if outstanding.remove(&key) {
                    let _ = h.record((now - key.2).num_microseconds().unwrap_or(0).max(0) as u64);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    counter.await??;
    Ok(outstanding.len())
}

/// Counts this run's rows (`pattern`: its patient ids) into `seen` every 2 s,
/// and once more when `done` is set. On its own connection: the count scans a
/// million rows and more in a 20k/s run and took seconds, during which the
/// sampled rows were not looked for (their latency grew by that much). Not
/// more often: at every 0.5 s it took a third of a core from the database the
/// pipeline writes to.
async fn count_rows(url: &str, pattern: &str, seen: &AtomicU64, done: &AtomicBool) -> anyhow::Result<()> {
    let client = vitalwatch_platform::store::postgres::connect_client(url, Default::default()).await?;
    let count = client.prepare("SELECT count(*) FROM observations WHERE patient_id LIKE $1").await?;
    loop {
        let finished = done.load(Ordering::Relaxed);
        let n: i64 = client.query_one(&count, &[&pattern]).await?.get(0);
        seen.store(n as u64, Ordering::Relaxed);
        if finished {
            return Ok(());
        }
        let next = std::time::Instant::now() + Duration::from_secs(2);
        while std::time::Instant::now() < next && !done.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// A consumer that reads `topic` from now on, with a short fetch wait so it
/// adds little to the latency it measures.
fn latency_consumer(brokers: &str, group: &str, topic: &str) -> anyhow::Result<rdkafka::consumer::StreamConsumer> {
    use rdkafka::consumer::Consumer as _;
    let c: rdkafka::consumer::StreamConsumer = latency_config(brokers, group).create()?;
    c.subscribe(&[topic])?;
    Ok(c)
}

/// Settings of the latency consumers: from the end, no commits, a short fetch wait.
fn latency_config(brokers: &str, group: &str) -> rdkafka::config::ClientConfig {
    let mut c = rdkafka::config::ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("auto.offset.reset", "latest")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10");
    c
}

async fn watch_alerts(
    brokers: &str,
    topic: &str,
    prefix: &str,
    hist: Arc<Mutex<Histogram<u64>>>,
    seen: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    use prost::Message as _;
    use rdkafka::message::Message as _;
    use vitalwatch_schemas::proto::{AlertEvent, AlertEventKind};
    let c = latency_consumer(brokers, &format!("{prefix}-alert-latency"), topic)?;
    while !done.load(Ordering::Relaxed) {
        let Ok(Ok(m)) = tokio::time::timeout(Duration::from_millis(200), c.recv()).await else { continue };
        let Some(payload) = m.payload() else { continue };
        let Ok(e) = AlertEvent::decode(payload) else { continue };
        let fresh = e.kind == AlertEventKind::Opened as i32 || e.kind == AlertEventKind::Escalated as i32;
        if !e.patient_id.starts_with(prefix) || !fresh {
            continue;
        }
        let lat = Utc::now().timestamp_micros() - e.reading_time_unix_micros;
        let _ = hist.lock().await.record(lat.max(0) as u64);
        seen.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

async fn watch_kafka(
    brokers: &str,
    topic: &str,
    prefix: &str,
    hist: Arc<Mutex<Histogram<u64>>>,
    seen: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    use prost::Message as _;
    use rdkafka::consumer::Consumer as _;
    use rdkafka::message::Message as _;
    // One partition only: reading the whole topic doubled the broker's fetch
    // work during a benchmark (the roles' own consumers read it once), and a
    // partition's readings are as late as any other's. Partition 0 from its
    // end; the topic exists once the roles started.
    let c: rdkafka::consumer::StreamConsumer = latency_config(brokers, &format!("{prefix}-latency")).create()?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, rdkafka::Offset::End)?;
    c.assign(&tpl)?;
    while !done.load(Ordering::Relaxed) {
        let Ok(Ok(m)) = tokio::time::timeout(Duration::from_millis(200), c.recv()).await else { continue };
        let Some(payload) = m.payload() else { continue };
        let Ok(o) = vitalwatch_schemas::proto::Observation::decode(payload) else { continue };
        if !o.patient_id.starts_with(prefix) {
            continue;
        }
        let lat = Utc::now().timestamp_micros() - o.time_unix_micros;
        let _ = hist.lock().await.record(lat.max(0) as u64);
        seen.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}
