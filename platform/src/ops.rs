//! Operations endpoints every role serves (see [`OpsSettings`]):
//! - `GET /metrics`: Prometheus text format, from the process-wide
//!   [`metrics`] recorder installed by [`install_metrics`];
//! - `GET /healthz`: the process is alive (liveness);
//! - `GET /readyz`: every registered [`Readiness`] check passes (readiness:
//!   the broker, the bus and the database answer), else 503 naming the
//!   failing checks.
//!
//! Metric labels never carry patient or device identifiers or values: only
//! bounded sets (reason codes, topics, severities, channels, outcomes).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::config::OpsSettings;
use crate::shutdown::CancellationToken;

/// Latency buckets (seconds) for every `*_seconds` histogram: 0.5 ms to 30 s.
const LATENCY_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Size buckets for every `*_size` histogram (batch sizes).
const SIZE_BUCKETS: &[f64] = &[1.0, 5.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0];
/// Delay buckets (seconds) for acknowledgment delays: 10 s to 1 day.
const ACK_DELAY_BUCKETS: &[f64] = &[10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once; later calls return
/// the same handle). `None` if another recorder was installed first.
pub fn install_metrics() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let built = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("vitalwatch_alerting_ack_delay_seconds".into()),
                    ACK_DELAY_BUCKETS,
                )
                .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS))
                .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_size".into()), SIZE_BUCKETS))
                .map_err(|e| e.to_string())
                .and_then(|b| b.install_recorder().map_err(|e| e.to_string()));
            match built {
                Ok(h) => {
                    describe();
                    Some(h)
                }
                Err(e) => {
                    tracing::warn!(message = "Metrics recorder not installed.", error = %e);
                    None
                }
            }
        })
        .clone()
}

/// Help texts of the metrics (the `# HELP` lines).
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!("vitalwatch_ingest_messages_total", "MQTT messages received by ingest, by kind.");
    describe_counter!("vitalwatch_ingest_observations_total", "Observations produced to the bus.");
    describe_counter!("vitalwatch_ingest_duplicates_total", "Observations dropped as already produced.");
    describe_counter!(
        "vitalwatch_ingest_rejections_total",
        "Rejected readings sent to the dead-letter topic, by reason."
    );
    describe_counter!("vitalwatch_ingest_acked_total", "MQTT messages acknowledged to the broker.");
    describe_gauge!("vitalwatch_ingest_in_flight", "MQTT messages taken but not yet acknowledged.");
    describe_gauge!("vitalwatch_mqtt_connected", "1 while the MQTT connection is up.");
    describe_histogram!(
        "vitalwatch_bus_produce_seconds",
        Unit::Seconds,
        "Bus produce latency, send to acknowledgment."
    );
    describe_counter!("vitalwatch_bus_produce_errors_total", "Bus produce failures, by kind.");
    describe_histogram!("vitalwatch_bus_commit_seconds", Unit::Seconds, "Consumer offset commit latency.");
    describe_gauge!("vitalwatch_kafka_consumer_lag", "Messages behind the partition end, per assigned partition.");
    describe_counter!(
        "vitalwatch_kafka_skipped_offsets_total",
        "Records a consumer group jumped over without processing them (must stay 0)."
    );
    describe_histogram!("vitalwatch_consumer_batch_size", "Messages per consumed batch, by role.");
    describe_counter!("vitalwatch_consumer_messages_total", "Messages consumed and committed, by role.");
    describe_histogram!("vitalwatch_persist_write_seconds", Unit::Seconds, "Database write latency of a batch.");
    describe_counter!("vitalwatch_persist_rows_total", "Observation rows newly inserted.");
    describe_counter!("vitalwatch_persist_duplicates_total", "Observations already stored (redeliveries).");
    describe_counter!("vitalwatch_db_retries_total", "Database operations retried, by role.");
    describe_histogram!("vitalwatch_rules_evaluation_seconds", Unit::Seconds, "Rule evaluation time per observation.");
    describe_counter!("vitalwatch_rules_observations_total", "Observations seen by the rules engine, by outcome.");
    describe_counter!("vitalwatch_rules_alert_events_total", "Alert events published, by kind and severity.");
    describe_counter!("vitalwatch_alerting_events_total", "Alert events consumed by alerting, by outcome.");
    describe_counter!("vitalwatch_alerting_notifications_total", "Notification attempts, by channel and outcome.");
    describe_counter!("vitalwatch_alerting_escalations_total", "Escalation steps and reminders issued.");
    describe_counter!(
        "vitalwatch_notification_retries_total",
        "Delivery attempts that failed transiently and were scheduled again, by channel."
    );
    describe_counter!(
        "vitalwatch_notifications_failed_total",
        "Notifications whose delivery ended without success on their channel, by channel and kind \
         (permanent, horizon, no_recipient)."
    );
    describe_gauge!(
        "vitalwatch_notifications_awaiting_retry",
        "Outbox notifications waiting for another attempt after a transient failure."
    );
    describe_histogram!(
        "vitalwatch_alerting_ack_delay_seconds",
        Unit::Seconds,
        "Episode opening to acknowledgment, by channel."
    );
    describe_counter!("vitalwatch_undecodable_total", "Bus messages that did not decode, by role (dead-lettered).");
    describe_counter!(
        "vitalwatch_dead_letters_total",
        "Bus records a consumer role could never process, sent to the dead-letter topic, by role and reason."
    );
    describe_gauge!(
        "vitalwatch_consumer_stalled_seconds",
        Unit::Seconds,
        "Seconds a consumer role has had received, uncommitted records and made no progress (0 otherwise), by role."
    );
}

/// A readiness check: resolves to `Err(reason)` when a dependency is down.
pub type Check = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// The readiness checks of a process.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Vec<(&'static str, Check)>,
}

/// How long one readiness check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

impl Readiness {
    /// No checks (always ready).
    pub fn new() -> Self {
        Readiness::default()
    }

    /// Adds a named check.
    pub fn add<F, Fut>(&mut self, name: &'static str, f: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.checks.push((name, Arc::new(move || Box::pin(f()))));
    }

    /// Runs every check concurrently; the failures, by name.
    pub async fn failures(&self) -> Vec<(&'static str, String)> {
        let runs = self.checks.iter().map(|(name, check)| {
            let fut = check();
            async move {
                match tokio::time::timeout(CHECK_TIMEOUT, fut).await {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some((*name, e)),
                    Err(_) => Some((*name, format!("no answer within {} s", CHECK_TIMEOUT.as_secs()))),
                }
            }
        });
        futures::future::join_all(runs).await.into_iter().flatten().collect()
    }
}

#[derive(Clone)]
struct OpsState {
    readiness: Readiness,
    metrics: Option<PrometheusHandle>,
}

/// The `/metrics`, `/healthz` and `/readyz` routes.
pub fn router(readiness: Readiness) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(OpsState { readiness, metrics: install_metrics() })
}

async fn metrics_text(State(s): State<OpsState>) -> Response {
    match &s.metrics {
        Some(h) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], h.render()).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "metrics recorder not installed\n").into_response(),
    }
}

async fn readyz(State(s): State<OpsState>) -> Response {
    let failures = s.readiness.failures().await;
    if failures.is_empty() {
        return (StatusCode::OK, "ready\n").into_response();
    }
    let mut body = String::from("not ready\n");
    for (name, why) in &failures {
        tracing::debug!(message = "Readiness check failed.", check = name, error = %why);
        body.push_str(&format!("{name}: {why}\n"));
    }
    (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
}

/// An error starting the operations server.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} for the ops endpoints (ops.listen): {source}")]
pub struct OpsError {
    addr: String,
    source: std::io::Error,
}

/// The operations server of a process, serving until `shutdown` fires.
pub struct OpsServer {
    /// The bound address (useful when port 0 was asked for).
    pub addr: std::net::SocketAddr,
    /// The serving task.
    pub task: tokio::task::JoinHandle<()>,
}

/// Binds `settings.listen` and serves [`router`] until `shutdown`; also runs
/// the recorder's upkeep. `Ok(None)` when the endpoints are disabled.
///
/// # Errors
///
/// The address cannot be bound.
pub async fn serve(
    settings: &OpsSettings,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> Result<Option<OpsServer>, OpsError> {
    if settings.listen.is_empty() {
        return Ok(None);
    }
    let listener = tokio::net::TcpListener::bind(&settings.listen)
        .await
        .map_err(|source| OpsError { addr: settings.listen.clone(), source })?;
    serve_on(listener, readiness, shutdown).map(Some)
}

/// Serves on an already bound listener (see [`serve`]).
///
/// # Errors
///
/// The listener's address cannot be read.
pub fn serve_on(
    listener: tokio::net::TcpListener,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> Result<OpsServer, OpsError> {
    let addr = listener.local_addr().map_err(|source| OpsError { addr: "?".into(), source })?;
    if let Some(h) = install_metrics() {
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = every.tick() => h.run_upkeep(),
                    _ = stop.cancelled() => return,
                }
            }
        });
    }
    let app = router(readiness);
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await }).await;
        if let Err(e) = served {
            tracing::error!(message = "Ops server failed.", error = %e);
        }
    });
    tracing::info!(message = "Ops endpoints listening.", addr = %addr);
    Ok(OpsServer { addr, task })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn readiness_names_the_failing_checks() {
        let mut r = Readiness::new();
        r.add("database", || async { Ok(()) });
        r.add("bus", || async { Err("connection refused".to_owned()) });
        assert_eq!(r.failures().await, vec![("bus", "connection refused".to_owned())]);
    }

    #[tokio::test]
    async fn endpoints_over_http() {
        install_metrics();
        metrics::counter!("vitalwatch_ingest_rejections_total", "reason" => "unit_unknown").increment(3);
        let mut r = Readiness::new();
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let flag = up.clone();
        r.add("mqtt", move || {
            let ok = flag.load(std::sync::atomic::Ordering::Relaxed);
            async move { if ok { Ok(()) } else { Err("disconnected".into()) } }
        });
        let stop = CancellationToken::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = serve_on(listener, r, stop.clone()).unwrap();
        let get = |path: &'static str| async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        };
        let m = get("/metrics").await;
        assert!(m.starts_with("HTTP/1.1 200"), "{m}");
        assert!(m.contains("vitalwatch_ingest_rejections_total{reason=\"unit_unknown\"} 3"), "{m}");
        assert!(m.contains("# HELP vitalwatch_ingest_rejections_total"), "{m}");
        assert!(get("/healthz").await.starts_with("HTTP/1.1 200"));
        assert!(get("/readyz").await.starts_with("HTTP/1.1 200"));
        up.store(false, std::sync::atomic::Ordering::Relaxed);
        let r = get("/readyz").await;
        assert!(r.starts_with("HTTP/1.1 503") && r.contains("mqtt: disconnected"), "{r}");
        stop.cancel();
    }
}
