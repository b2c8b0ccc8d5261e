//! The HTTP ingestion endpoint of the `ingest` role (docs/http-ingest.md):
//! phone apps and vendor clouds POST readings with a bearer credential
//! ([`credentials`]). The paths mirror the MQTT topics, and a request goes
//! through the same per-message work as an MQTT message ([`crate::step`]):
//!
//! | path | MQTT topic |
//! |---|---|
//! | `POST /ingest/v1/devices/{device}/readings/{format}` | `vitalwatch/v1/devices/{device}/readings/{format}` |
//! | `POST /ingest/v1/devices/{device}/status` | `vitalwatch/v1/devices/{device}/status` |
//! | `POST /ingest/v1/patients/{patient}/manual/{format}` | `vitalwatch/v1/patients/{patient}/manual/{format}` |
//!
//! The answer is synchronous and comes once the bus acknowledged every
//! record the request produced (observations, dead letter, status): `200
//! {"accepted": n, ...}`; when something was rejected, the MQTT reply JSON
//! ([`crate::pipeline::Processed::reply_json`]) with 422 (429 for
//! `rate_limited`, 413 for `payload_too_large`); 503 with `Retry-After` when
//! the bus did not acknowledge in `ingest.http_bus_timeout_ms`. Transport
//! limits (body size = `ingest.max_payload_bytes`, request timeout, connection
//! cap, header read timeout) come from [`vitalwatch_platform::http`]. TLS ends
//! at the ingress, as for the admin API. No identifiers in logs or metric
//! labels: requests are counted by outcome only.

pub mod credentials;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::Utc;
use vitalwatch_platform::http::HttpLimits;
use vitalwatch_platform::shutdown::CancellationToken;
use vitalwatch_platform::store::db::Db;

use crate::registry::Verdict;
use crate::reject::Reason;
use crate::settings::IngestConfig;
use crate::step::Core;
use credentials::{CredentialCache, Target};

/// Seconds a client is told to wait when the bus is unavailable (503).
const RETRY_AFTER_UNAVAILABLE: &str = "5";
/// Seconds a rate-limited client is told to wait (429).
const RETRY_AFTER_RATE_LIMITED: &str = "1";
/// Seconds a client is told to wait while the registry reloads (503).
const RETRY_AFTER_RELOADING: &str = "1";

/// The endpoint, bound and with its credentials loaded; started by
/// [`crate::worker::run`], which shares its [`Core`] with it.
pub struct Server {
    listener: tokio::net::TcpListener,
    credentials: CredentialCache,
    limits: HttpLimits,
    bus_timeout: Duration,
    refresh: Duration,
    min_refresh: Duration,
    load_timeout: Duration,
}

impl Server {
    /// Binds `ingest.http_listen` (None when unset) and loads the credentials.
    ///
    /// # Errors
    ///
    /// The address cannot be bound, or the database cannot be read.
    pub async fn bind(settings: &IngestConfig) -> anyhow::Result<Option<Server>> {
        let Some(addr) = settings.ingest.http_listen.as_deref() else { return Ok(None) };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("HTTP ingestion: listening on {addr}: {e}"))?;
        let db = Db::open(settings.database.url.expose(), settings.database.timeouts(), 2)
            .await
            .map_err(|e| anyhow::anyhow!("HTTP ingestion: opening the database: {e}"))?;
        let credentials = CredentialCache::open(db)
            .await
            .map_err(|e| anyhow::anyhow!("HTTP ingestion: loading the credentials: {e}"))?;
        let i = &settings.ingest;
        let timeouts = settings.database.timeouts();
        Ok(Some(Server {
            listener,
            credentials,
            limits: HttpLimits {
                request_timeout: Duration::from_secs(i.http_request_timeout_secs),
                max_connections: i.http_max_connections,
                max_body_bytes: i.max_payload_bytes,
                ..HttpLimits::default()
            },
            bus_timeout: Duration::from_millis(i.http_bus_timeout_ms),
            refresh: Duration::from_secs(i.http_credentials_refresh_secs.max(1)),
            min_refresh: Duration::from_millis(i.registry_min_refresh_ms),
            load_timeout: timeouts.connect + timeouts.statement,
        }))
    }

    /// The bound address.
    ///
    /// # Errors
    ///
    /// The socket's.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown`, then lets open requests finish (their records
    /// reach the bus before the role closes it).
    ///
    /// # Errors
    ///
    /// The server's.
    pub async fn run(self, core: Arc<Core>, shutdown: CancellationToken) -> anyhow::Result<()> {
        let refresher =
            self.credentials.spawn_refresher(self.refresh, self.min_refresh, self.load_timeout, shutdown.clone());
        tracing::info!(
            message = "HTTP ingestion listening.",
            addr = %self.listener.local_addr()?,
            credentials = self.credentials.get().len()
        );
        let state = Arc::new(Endpoint {
            core,
            credentials: self.credentials,
            max_body: self.limits.max_body_bytes,
            bus_timeout: self.bus_timeout,
            held: AtomicUsize::new(0),
        });
        let app = vitalwatch_platform::http::limit(router(state), &self.limits);
        let served = vitalwatch_platform::http::serve(self.listener, app, &self.limits, shutdown).await;
        refresher.abort();
        Ok(served?)
    }
}

/// The state of the handlers.
struct Endpoint {
    core: Arc<Core>,
    credentials: CredentialCache,
    max_body: usize,
    bus_timeout: Duration,
    /// Requests waiting for a registry reload.
    held: AtomicUsize,
}

fn router(state: Arc<Endpoint>) -> Router {
    Router::new()
        .route("/ingest/v1/devices/{device}/readings/{format}", post(device_readings))
        .route("/ingest/v1/devices/{device}/status", post(device_status))
        .route("/ingest/v1/patients/{patient}/manual/{format}", post(manual))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "no such ingestion path", Outcome::NotFound) })
        .with_state(state)
}

async fn device_readings(
    State(e): State<Arc<Endpoint>>,
    Path((device, format)): Path<(String, String)>,
    req: Request,
) -> Response {
    if !segment(&device) || !segment(&format) {
        return bad_path();
    }
    let topic = vitalwatch_schemas::topics::device_readings_topic(&device, &format);
    e.handle(Target::Device(&device), &topic, req).await
}

async fn device_status(State(e): State<Arc<Endpoint>>, Path(device): Path<String>, req: Request) -> Response {
    if !segment(&device) {
        return bad_path();
    }
    let topic = vitalwatch_schemas::topics::device_status_topic(&device);
    e.handle(Target::Device(&device), &topic, req).await
}

async fn manual(
    State(e): State<Arc<Endpoint>>,
    Path((patient, format)): Path<(String, String)>,
    req: Request,
) -> Response {
    if !segment(&patient) || !segment(&format) {
        return bad_path();
    }
    let topic = vitalwatch_schemas::topics::patient_manual_topic(&patient, &format);
    e.handle(Target::Patient(&patient), &topic, req).await
}

/// A path segment that maps to one topic level (no `/` once decoded, no MQTT wildcard).
fn segment(s: &str) -> bool {
    !s.is_empty() && !s.contains(['/', '+', '#', '\0'])
}

fn bad_path() -> Response {
    error(StatusCode::NOT_FOUND, "not_found", "a path segment holds '/', '+' or '#'", Outcome::NotFound)
}

/// What happened to a request (the metric label; never an id).
#[derive(Debug, Clone, Copy)]
enum Outcome {
    Accepted,
    Rejected,
    RateLimited,
    Unauthenticated,
    Forbidden,
    TooLarge,
    BadRequest,
    NotFound,
    Unavailable,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Rejected => "rejected",
            Outcome::RateLimited => "rate_limited",
            Outcome::Unauthenticated => "unauthenticated",
            Outcome::Forbidden => "forbidden",
            Outcome::TooLarge => "payload_too_large",
            Outcome::BadRequest => "bad_request",
            Outcome::NotFound => "not_found",
            Outcome::Unavailable => "unavailable",
        }
    }
}

fn count(outcome: Outcome) {
    metrics::counter!("vitalwatch_ingest_http_requests_total", "outcome" => outcome.as_str()).increment(1);
}

fn json(status: StatusCode, body: Vec<u8>, outcome: Outcome) -> Response {
    count(outcome);
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// An error in the admin API's `ErrorBody` shape (`error`, `message`).
fn error(status: StatusCode, code: &str, message: &str, outcome: Outcome) -> Response {
    let body = serde_json::json!({ "error": code, "message": message });
    json(status, body.to_string().into_bytes(), outcome)
}

fn with_retry_after(mut r: Response, secs: &'static str) -> Response {
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(secs));
    r
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The HTTP status of a processed message with rejections, by its first reason.
fn rejection_status(reason: Reason) -> (StatusCode, Outcome) {
    match reason {
        Reason::RateLimited => (StatusCode::TOO_MANY_REQUESTS, Outcome::RateLimited),
        Reason::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, Outcome::TooLarge),
        _ => (StatusCode::UNPROCESSABLE_ENTITY, Outcome::Rejected),
    }
}

impl Endpoint {
    async fn handle(&self, target: Target<'_>, topic: &str, req: Request) -> Response {
        let arrived = tokio::time::Instant::now();
        // Authentication and authorization before the body is read.
        let Some(secret) = bearer(req.headers()).map(str::to_owned) else {
            return error(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "missing bearer credential (Authorization: Bearer ...)",
                Outcome::Unauthenticated,
            );
        };
        let Some(credential) = self.credentials.authenticate(&secret, arrived, self.core.hold()).await else {
            return error(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "unknown or revoked credential",
                Outcome::Unauthenticated,
            );
        };
        if !credential.may_post(target) {
            tracing::info!(message = "HTTP ingestion: credential not granted for this path.", credential = %credential.name);
            let what = match target {
                Target::Device(_) => "this credential may not post for this device",
                Target::Patient(_) => "this credential may not post for this patient",
            };
            return error(StatusCode::FORBIDDEN, "forbidden", what, Outcome::Forbidden);
        }
        let body = match axum::body::to_bytes(req.into_body(), self.max_body).await {
            Ok(b) => b,
            Err(e) => {
                // Over the limit (the limit layer's error), or the client went away.
                let too_large = std::error::Error::source(&e)
                    .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
                    || e.to_string().contains("length limit");
                return if too_large {
                    let msg = format!("the body is larger than ingest.max_payload_bytes ({} bytes)", self.max_body);
                    error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", &msg, Outcome::TooLarge)
                } else {
                    error(StatusCode::BAD_REQUEST, "bad_request", "the body could not be read", Outcome::BadRequest)
                };
            }
        };
        self.ingest(topic, &body, arrived).await
    }

    /// The same per-message work as an MQTT message; answers after the bus.
    async fn ingest(&self, topic: &str, payload: &[u8], arrived: tokio::time::Instant) -> Response {
        let core = &self.core;
        let received_at = Utc::now();
        let mut processed = core.admit(topic, payload, received_at, true);
        // An unknown device or patient may have just been registered: wait
        // for the reload it asks for, as an MQTT message is held (bounded by
        // `ingest.registry_hold_ms` and `ingest.registry_max_held`).
        if processed.depends_on_registry() {
            let slot = HeldSlot::take(&self.held);
            let verdict = core.on_miss(topic, arrived, slot.before);
            if verdict == Verdict::Hold {
                let confirmed = self.wait_reload(arrived).await;
                processed = core.reprocess(topic, payload, received_at);
                if processed.depends_on_registry() {
                    core.confirm_miss(topic, confirmed);
                }
            }
            drop(slot);
            if verdict == Verdict::Full {
                // As many requests as may be held already wait for the reload:
                // not a rejection (a fresher registry may know the id), and
                // nothing was produced; the client sends the same request again.
                let r = error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "registry_reloading",
                    "the device or patient is not known yet and the registry is reloading; send the same request again",
                    Outcome::Unavailable,
                );
                return with_retry_after(r, RETRY_AFTER_RELOADING);
            }
        }
        let emitted = core.emit(topic, payload, received_at, &processed, false).await;
        let duplicates = emitted.duplicates;
        // Until the bus answers, the ids are in flight: a request cut off
        // meanwhile (the client went away, the request timeout) abandons them,
        // so that the client's retry is produced again, not taken for a duplicate.
        let produced = InFlight { core, ids: emitted.ids.clone() };
        let (ids, result) = match tokio::time::timeout(self.bus_timeout, emitted.delivered()).await {
            Ok(r) => r,
            Err(_) => {
                // What reached the bus meanwhile is absorbed by idempotency when the client retries.
                tracing::warn!(message = "HTTP ingestion: the bus did not acknowledge in time.");
                let r = error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the message bus did not acknowledge in time; nothing is guaranteed stored, send the same request again",
                    Outcome::Unavailable,
                );
                // No longer in flight (`produced` is dropped): the client's retry is produced again.
                return with_retry_after(r, RETRY_AFTER_UNAVAILABLE);
            }
        };
        if let Err(e) = result {
            drop(produced);
            tracing::warn!(message = "HTTP ingestion: the bus did not acknowledge.", error = %e);
            let r = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the message bus did not acknowledge; nothing is guaranteed stored, send the same request again",
                Outcome::Unavailable,
            );
            return with_retry_after(r, RETRY_AFTER_UNAVAILABLE);
        }
        produced.delivered(ids);
        match (processed.rejections.first(), processed.reply_json()) {
            (Some(first), Some(body)) => {
                let (status, outcome) = rejection_status(first.reason);
                let r = json(status, body, outcome);
                if first.reason == Reason::RateLimited { with_retry_after(r, RETRY_AFTER_RATE_LIMITED) } else { r }
            }
            _ => {
                let body = serde_json::json!({
                    "accepted": processed.observations.len(),
                    "duplicates": duplicates,
                    "msg_id": processed.msg_id,
                    "trace_id": processed.trace_id,
                });
                json(StatusCode::OK, body.to_string().into_bytes(), Outcome::Accepted)
            }
        }
    }

    /// Waits for a registry reload that began after `arrived` (true if it
    /// succeeded), at most the hold time.
    async fn wait_reload(&self, arrived: tokio::time::Instant) -> bool {
        let mut attempts = self.core.registry.attempts();
        let waited = tokio::time::timeout(self.core.hold(), async {
            loop {
                let a = *attempts.borrow_and_update();
                if a.started >= arrived {
                    return a.ok;
                }
                if attempts.changed().await.is_err() {
                    return false;
                }
            }
        })
        .await;
        waited.unwrap_or(false)
    }
}

/// A request counted among those waiting for a registry reload; uncounted
/// when dropped, also when the request is cut off while it waits (a count
/// left behind would answer every later request `registry_reloading`).
struct HeldSlot<'a> {
    count: &'a AtomicUsize,
    /// Requests held before this one.
    before: usize,
}

impl<'a> HeldSlot<'a> {
    fn take(count: &'a AtomicUsize) -> Self {
        HeldSlot { count, before: count.fetch_add(1, Ordering::SeqCst) }
    }
}

impl Drop for HeldSlot<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Observation ids produced and not yet acknowledged by the bus: abandoned
/// ([`Core::abandoned`]) when dropped before [`InFlight::delivered`].
struct InFlight<'a> {
    core: &'a Core,
    ids: Vec<vitalwatch_schemas::ObservationId>,
}

impl InFlight<'_> {
    /// The bus acknowledged them: remembered as produced.
    fn delivered(mut self, ids: Vec<vitalwatch_schemas::ObservationId>) {
        self.ids.clear();
        self.core.delivered(ids);
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.ids.is_empty() {
            self.core.abandoned(&self.ids);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_slot_is_given_back_however_the_request_ends() {
        let count = AtomicUsize::new(0);
        let first = HeldSlot::take(&count);
        let second = HeldSlot::take(&count);
        assert_eq!((first.before, second.before, count.load(Ordering::SeqCst)), (0, 1, 2));
        drop(first);
        // A request cut off while it waits: its future, and the slot, are dropped.
        let cut_off = async move {
            let _slot = second;
            std::future::pending::<()>().await;
        };
        let waker = futures::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        let mut cut_off = Box::pin(cut_off);
        assert!(cut_off.as_mut().poll(&mut cx).is_pending());
        assert_eq!(count.load(Ordering::SeqCst), 1);
        drop(cut_off);
        assert_eq!(count.load(Ordering::SeqCst), 0, "nothing left counted");
    }

    #[test]
    fn bearer_and_segments() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer vwi_abc"));
        assert_eq!(bearer(&h), Some("vwi_abc"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
        assert!(segment("cuff-1") && !segment("a/b") && !segment("+") && !segment(""));
        assert_eq!(rejection_status(Reason::RateLimited).0, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(rejection_status(Reason::UnknownDevice).0, StatusCode::UNPROCESSABLE_ENTITY);
    }
}
