//! The `vitalwatch alerting` role: the I/O around the pure core.
//!
//! - [`consumer`]: alert events from the bus -> episode transitions (state,
//!   outbox rows and audit in one transaction) -> offset commit;
//! - [`dispatcher`]: claims due outbox rows (lease), sends them, records the
//!   outcome, schedules retries and fallbacks;
//! - [`scheduler`]: re-plans episodes whose wake-up time has passed
//!   (escalation and reminders without new events);
//! - [`http`]: acknowledgment links, the inbound SMS webhook, health probes.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use vitalwatch_platform::bus::Consumer;
use vitalwatch_platform::shutdown::CancellationToken;

use crate::ack::AckSigner;
use crate::caps::CapPolicy;
use crate::inbound::{GlobalLimiter, GuardPolicy, InboundAuth, ReplayCache};
use crate::notifier::Notifier;
use crate::settings::AlertingSettings;
use crate::store::{AlertStore, TransitionOptions};

pub mod clock;
pub mod consumer;
pub mod dispatcher;
pub mod http;
pub mod scheduler;
pub mod wiring;

pub use clock::{Clock, OffsetClock, SystemClock};
/// Twilio's request signature (moved to the pure core; re-exported at its old path).
pub use vitalwatch_alerting_core::twilio_signature;

/// Timing and identity of one replica.
#[derive(Debug, Clone)]
pub struct RoleConfig {
    /// This dispatcher's id in `claimed_by`.
    pub worker_id: String,
    /// Outbox lease.
    pub lease: Duration,
    /// Outbox poll period.
    pub poll: Duration,
    /// Rows claimed at once.
    pub batch: usize,
    /// Scheduler period.
    pub scheduler_poll: Duration,
}

/// Inbound SMS security of one replica (see [`crate::inbound`]).
pub struct InboundGuard {
    /// How calls are authenticated (or `Disabled`).
    pub auth: InboundAuth,
    /// Signatures already accepted (replays within the skew window are refused).
    pub replays: ReplayCache,
    /// Requests per minute over all senders, this replica.
    pub global: GlobalLimiter,
    /// Attempts per sender number (counted in the database).
    pub policy: GuardPolicy,
    /// Key of [`crate::inbound::sender_key`] (the acknowledgment secret).
    pub sender_secret: Vec<u8>,
}

/// Everything the role's tasks share.
pub struct Alerting {
    /// The store.
    pub store: Arc<dyn AlertStore>,
    /// Renders and sends.
    pub notifier: Notifier,
    /// Verifies acknowledgment links.
    pub signer: AckSigner,
    /// Code generator and caps for transitions.
    pub options: TransitionOptions,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Timing.
    pub config: RoleConfig,
    /// Inbound SMS authentication and limits.
    pub inbound: InboundGuard,
    /// Wakes this replica's dispatcher when a transition queued outbox rows,
    /// so a page does not wait for the next `outbox_poll_ms` tick.
    pub outbox_ready: tokio::sync::Notify,
}

impl std::fmt::Debug for InboundGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundGuard").field("auth", &self.auth).field("policy", &self.policy).finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Alerting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alerting")
            .field("notifier", &self.notifier)
            .field("config", &self.config.worker_id)
            .finish_non_exhaustive()
    }
}

/// A dispatcher id unique to this process: host name and process id.
pub fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "vitalwatch".into());
    format!("{host}-{}", std::process::id())
}

impl Alerting {
    /// Builds the role from its settings.
    pub fn from_settings(
        settings: &AlertingSettings,
        store: Arc<dyn AlertStore>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, wiring::WiringError> {
        let secret = wiring::ack_secret(settings)?;
        let (signer, codes, notifier) = wiring::notifier(settings, &secret)?;
        let inbound = wiring::inbound_guard(settings, &secret, clock.now())?;
        Ok(Self {
            store,
            notifier,
            signer,
            options: TransitionOptions { codes: Some(codes), caps: CapPolicy::default() },
            clock,
            config: RoleConfig {
                worker_id: default_worker_id(),
                lease: Duration::from_secs(settings.outbox_lease_secs.max(1)),
                poll: Duration::from_millis(settings.outbox_poll_ms.max(10)),
                batch: settings.outbox_batch.max(1),
                scheduler_poll: Duration::from_millis(settings.scheduler_poll_ms.max(10)),
            },
            inbound,
            outbox_ready: tokio::sync::Notify::new(),
        })
    }

    /// Starts the dispatcher and the scheduler (and the HTTP server if a
    /// listener is given) as tasks that stop on `shutdown`.
    pub fn spawn_background(
        self: &Arc<Self>,
        listener: Option<tokio::net::TcpListener>,
        shutdown: &CancellationToken,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        self.spawn_background_with(listener, &http::default_limits(), shutdown)
    }

    /// [`spawn_background`](Self::spawn_background) with the HTTP server's transport `limits`.
    pub fn spawn_background_with(
        self: &Arc<Self>,
        listener: Option<tokio::net::TcpListener>,
        limits: &vitalwatch_platform::http::HttpLimits,
        shutdown: &CancellationToken,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = vec![
            tokio::spawn(dispatcher::run(self.clone(), shutdown.clone())),
            tokio::spawn(scheduler::run(self.clone(), shutdown.clone())),
        ];
        if let Some(l) = listener {
            let (a, s, limits) = (self.clone(), shutdown.clone(), limits.clone());
            tasks.push(tokio::spawn(async move {
                if let Err(e) = http::serve(a, l, &limits, s).await {
                    tracing::error!(message = "Alerting HTTP server stopped.", error = %e);
                }
            }));
        }
        tasks
    }
}

/// Runs the alerting role until `shutdown`: consumes alert events from
/// `consumer` (subscribed to the alerts topic), dispatches the outbox,
/// schedules escalations and serves `alerting.http_addr`. The tables must be
/// migrated (the platform store's `migrate`).
///
/// In embedded mode (`run`): `store` is `store::open(&settings.database.url)`
/// on the SQLite file, `consumer` an in-memory bus consumer of the alerts
/// topic, and `alerting.transport = "file"` writes `.eml` and JSON-lines files.
pub async fn run(
    settings: &AlertingSettings,
    consumer: &mut dyn Consumer,
    store: Arc<dyn AlertStore>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    run_with_dead_letters(settings, consumer, store, None, shutdown).await
}

/// [`run`], sending the alert events that can never be applied (undecodable,
/// invalid, or refused by the database for good) to `dead_letters` (logged
/// and skipped without).
pub async fn run_with_dead_letters(
    settings: &AlertingSettings,
    consumer: &mut dyn Consumer,
    store: Arc<dyn AlertStore>,
    dead_letters: Option<vitalwatch_platform::bus::dead_letter::DeadLetters>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    run_serving(settings, &http::default_limits(), consumer, store, dead_letters, shutdown).await
}

/// [`run_with_dead_letters`], the HTTP server (`/ack`, `/sms/inbound`) with
/// the transport `limits` (`api.header_read_timeout_secs`,
/// `api.request_timeout_secs`, `api.max_connections`, `api.ack_max_body_bytes`).
pub async fn run_serving(
    settings: &AlertingSettings,
    limits: &vitalwatch_platform::http::HttpLimits,
    consumer: &mut dyn Consumer,
    store: Arc<dyn AlertStore>,
    dead_letters: Option<vitalwatch_platform::bus::dead_letter::DeadLetters>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let alerting =
        Arc::new(Alerting::from_settings(settings, store, Arc::new(SystemClock)).context("configuring alerting")?);
    let listener = tokio::net::TcpListener::bind(&settings.http_addr)
        .await
        .with_context(|| format!("binding alerting.http_addr {}", settings.http_addr))?;
    tracing::info!(message = "Alerting starting.", http_addr = %settings.http_addr, worker = %alerting.config.worker_id);
    // A child token stops the background tasks when the consumer fails,
    // without cancelling the caller's token.
    let local = shutdown.child_token();
    let tasks = alerting.spawn_background_with(Some(listener), limits, &local);
    let result = consumer::run_with_dead_letters(&alerting, consumer, dead_letters.as_ref(), &local).await;
    local.cancel();
    for t in tasks {
        let _ = t.await;
    }
    tracing::info!(message = "Alerting stopped.");
    result
}
