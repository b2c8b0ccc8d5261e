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
use vitalwatch_platform::config::AlertingSettings;
use vitalwatch_platform::shutdown::CancellationToken;

use crate::ack::AckSigner;
use crate::caps::CapPolicy;
use crate::notifier::Notifier;
use crate::store::{AlertStore, TransitionOptions};

pub mod clock;
pub mod consumer;
pub mod dispatcher;
pub mod http;
pub mod scheduler;
pub mod twilio_signature;
pub mod wiring;

pub use clock::{Clock, OffsetClock, SystemClock};

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
    /// Full URL of the inbound SMS endpoint (for Twilio signatures).
    pub sms_inbound_url: String,
    /// Twilio auth token: when set, inbound SMS must be signed.
    pub twilio_auth_token: Option<vitalwatch_platform::secret::Secret>,
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
    /// Wakes this replica's dispatcher when a transition queued outbox rows,
    /// so a page does not wait for the next `outbox_poll_ms` tick.
    pub outbox_ready: tokio::sync::Notify,
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
                sms_inbound_url: wiring::sms_inbound_url(settings),
                twilio_auth_token: settings.sms.twilio_auth_token.clone(),
            },
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
        let mut tasks = vec![
            tokio::spawn(dispatcher::run(self.clone(), shutdown.clone())),
            tokio::spawn(scheduler::run(self.clone(), shutdown.clone())),
        ];
        if let Some(l) = listener {
            let (a, s) = (self.clone(), shutdown.clone());
            tasks.push(tokio::spawn(async move {
                if let Err(e) = http::serve(a, l, s).await {
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
    let alerting =
        Arc::new(Alerting::from_settings(settings, store, Arc::new(SystemClock)).context("configuring alerting")?);
    let listener = tokio::net::TcpListener::bind(&settings.http_addr)
        .await
        .with_context(|| format!("binding alerting.http_addr {}", settings.http_addr))?;
    tracing::info!(message = "Alerting starting.", http_addr = %settings.http_addr, worker = %alerting.config.worker_id);
    // A local token stops the background tasks when the consumer fails,
    // without cancelling the caller's token.
    let local = CancellationToken::new();
    let forward = {
        let (outer, local) = (shutdown.clone(), local.clone());
        tokio::spawn(async move {
            outer.cancelled().await;
            local.cancel();
        })
    };
    let tasks = alerting.spawn_background(Some(listener), &local);
    let result = consumer::run_with_dead_letters(&alerting, consumer, dead_letters.as_ref(), &local).await;
    local.cancel();
    forward.abort();
    for t in tasks {
        let _ = t.await;
    }
    tracing::info!(message = "Alerting stopped.");
    result
}
