//! The `ingest` role: MQTT (shared subscription, QoS 1, persistent session,
//! manual acknowledgments) -> pure pipeline -> bus. An MQTT message is
//! acknowledged only after the bus acknowledged everything it produced, in
//! the order messages arrived, so a crash loses nothing: the broker redelivers
//! what was not acknowledged. In-flight work is bounded (`max_in_flight`):
//! when the bus is slow, ingest stops reading and the broker queues.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::settings::IngestConfig;
use chrono::Utc;
use futures::stream::FuturesOrdered;
use futures::{FutureExt as _, StreamExt};
use rumqttc::{AsyncClient, Event, EventLoop, Packet, PubAck, Publish, QoS};
use tokio::sync::mpsc;
use vitalwatch_platform::bus::{BusError, Producer};
use vitalwatch_platform::retry::Backoff;
use vitalwatch_platform::shutdown::CancellationToken;
use vitalwatch_schemas::ObservationId;

use crate::acks::{AckQueue, Push};
use crate::membership::Membership;
use crate::normalize::Limits;
use crate::pipeline::Processed;
use crate::ratelimit::{RateLimit, RateLimiter};
use crate::registry::{Gate, GateConfig, RefreshConfig, Verdict};
use crate::reject::Reason;
use crate::step::Core;

/// Reconnecting to the MQTT broker: from 100 ms, doubling, at most 5 s apart.
const RECONNECT_BACKOFF: Backoff = Backoff::exponential(Duration::from_millis(100), Duration::from_secs(5));
/// Re-sending a message the bus did not acknowledge: from 100 ms, at most 10 s apart.
const BUS_BACKOFF: Backoff = Backoff::exponential(Duration::from_millis(100), Duration::from_secs(10));

/// Counters of the ingest role (no patient data).
#[derive(Debug, Default)]
pub struct IngestStats {
    /// MQTT messages received.
    pub messages: AtomicU64,
    /// Messages acknowledged to the broker.
    pub acked: AtomicU64,
    /// Observations produced to the bus.
    pub observations: AtomicU64,
    /// Observations dropped as already produced.
    pub duplicates: AtomicU64,
    /// Device status events produced.
    pub statuses: AtomicU64,
    /// Rejections, by reason (index = position in `Reason::ALL`).
    pub rejections: [AtomicU64; Reason::ALL.len()],
    /// Bus retries.
    pub bus_retries: AtomicU64,
    /// True while the MQTT connection is up (readiness).
    pub connected: std::sync::atomic::AtomicBool,
}

impl IngestStats {
    /// Total rejections.
    pub fn rejected(&self) -> u64 {
        self.rejections.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    pub(crate) fn count_rejection(&self, r: Reason) {
        if let Some(i) = Reason::ALL.iter().position(|x| *x == r) {
            self.rejections[i].fetch_add(1, Ordering::Relaxed);
        }
        metrics::counter!("vitalwatch_ingest_rejections_total", "reason" => r.as_str()).increment(1);
    }
}

/// Where the role sends its output.
#[derive(Clone)]
pub struct Outputs {
    /// The bus.
    pub producer: Arc<dyn Producer>,
    /// Observations topic.
    pub observations_topic: String,
    /// Dead-letter topic.
    pub rejected_topic: String,
    /// Device status topic.
    pub status_topic: String,
}

/// Parses `mqtt://host:port` (or `embedded://host:port`).
pub fn broker_address(url: &str) -> anyhow::Result<(String, u16)> {
    use vitalwatch_platform::redact::redact_url;
    let rest = url
        .strip_prefix("mqtt://")
        .or_else(|| url.strip_prefix("embedded://"))
        .or_else(|| url.strip_prefix("tcp://"))
        .ok_or_else(|| anyhow::anyhow!("MQTT URL {:?} must start with mqtt://", redact_url(url)))?;
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (
            h.to_owned(),
            p.trim_end_matches('/').parse().map_err(|_| anyhow::anyhow!("bad port in {:?}", redact_url(url)))?,
        ),
        None => (rest.trim_end_matches('/').to_owned(), 1883),
    };
    Ok((host, port))
}

pub use crate::registry::SharedRegistry;

/// Runs the ingest role until `shutdown` fires, then drains: every message
/// taken from the broker is produced and acknowledged before returning. With
/// a shared subscription (and `ingest.leave_on_shutdown`), the replica first
/// leaves it and takes what the broker had queued for it, then ends its
/// session, so a stopped replica strands nothing (`crate::membership`).
pub async fn run(
    settings: &IngestConfig,
    outputs: Outputs,
    registry: SharedRegistry,
    stats: Arc<IngestStats>,
    http: Option<crate::http::Server>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut opts = crate::mqtt_client::options(&settings.mqtt, &settings.mqtt.client_id)?;
    opts.set_clean_session(false)
        .set_manual_acks(true)
        .set_keep_alive(Duration::from_secs(settings.mqtt.keep_alive_secs.max(5)))
        .set_max_packet_size(
            settings.ingest.max_payload_bytes + 64 * 1024,
            settings.ingest.max_payload_bytes + 64 * 1024,
        )
        .set_inflight(100);
    let cap = settings.mqtt.max_in_flight;
    let (client, eventloop) = AsyncClient::new(opts, cap * 2 + 1024);
    // Bounded: at most `max_in_flight` messages wait between the connection
    // loop and the processor (and at most `max_in_flight` more are in
    // processing). The broker's per-client in-flight limit
    // (`max_inflight_messages` 1000 in deploy/mosquitto) keeps the queue below
    // that bound, so the connection loop never waits for room and the
    // acknowledgments keep flowing (rumqttc writes requests only from `poll`).
    // With a broker that sends more, the loop waits for room, so it stops
    // reading from the socket (the broker keeps the rest queued); counted in
    // `vitalwatch_ingest_queue_full_total`. No deadlock: the processor frees
    // room without the connection loop (it waits on the bus only).
    let (tx, rx) = mpsc::channel::<(Publish, chrono::DateTime<Utc>)>(cap);

    let membership = Membership::new(
        client.clone(),
        settings.mqtt.share_group.clone(),
        &settings.mqtt.client_id,
        settings.ingest.leave_on_shutdown,
    );
    let acks = Arc::new(AckQueue::default());
    // Set by the connection loop when everything the broker had queued for
    // this replica has been received after it left the shared subscription.
    let drained = Arc::new(AtomicBool::new(false));
    let poller =
        tokio::spawn(poll_loop(eventloop, membership.clone(), tx, acks.clone(), stats.clone(), drained.clone()));

    // Fires when the processor must stop taking messages: at once on shutdown,
    // or, when leaving the shared subscription, once the leave timed out (the
    // connection loop closes the channel first when the leave completes).
    let intake_ends = CancellationToken::new();
    let leaver = {
        let (membership, shutdown, intake_ends) = (membership.clone(), shutdown.clone(), intake_ends.clone());
        let drained = drained.clone();
        let timeout = Duration::from_secs(settings.ingest.drain_timeout_secs);
        tokio::spawn(async move {
            shutdown.cancelled().await;
            if membership.leaves() {
                let _ = tokio::time::timeout(timeout, async {
                    membership.clone().leave().await;
                    std::future::pending::<()>().await
                })
                .await;
                if !drained.load(Ordering::SeqCst) {
                    tracing::warn!(
                        message = "The broker did not hand over this replica's queued messages in time; keeping the MQTT session.",
                        timeout_secs = timeout.as_secs()
                    );
                }
            }
            intake_ends.cancel();
        })
    };

    // Registry reloads, periodic and on demand, off the processing loop.
    let timeouts = settings.database.timeouts();
    let reloader = registry.spawn_refresher(
        RefreshConfig {
            period: Duration::from_secs(settings.ingest.registry_refresh_secs.max(1)),
            min_interval: Duration::from_millis(settings.ingest.registry_min_refresh_ms),
            load_timeout: timeouts.connect + timeouts.statement,
            // Never slower than the periodic reload once the database is back.
            max_backoff: Duration::from_secs(settings.ingest.registry_refresh_secs.max(1)),
        },
        shutdown.clone(),
    );
    let gate = Gate::new(
        registry.clone(),
        GateConfig {
            hold: Duration::from_millis(settings.ingest.registry_hold_ms),
            max_held: settings.ingest.registry_max_held,
            negative_ttl: Duration::from_secs(settings.ingest.registry_negative_ttl_secs),
        },
    );

    let limits = Limits {
        max_future: chrono::Duration::seconds(settings.ingest.max_future_secs),
        max_age: chrono::Duration::days(settings.ingest.max_age_days),
        max_payload_bytes: settings.ingest.max_payload_bytes,
        max_readings: settings.ingest.max_readings,
    };
    let limiter = RateLimiter::new(RateLimit {
        rate: settings.ingest.rate_limit_per_sec,
        burst: settings.ingest.rate_limit_burst,
        max_senders: settings.ingest.rate_limit_senders,
    });
    let core = Arc::new(Core::new(
        outputs,
        stats.clone(),
        limits,
        registry.clone(),
        limiter,
        gate,
        settings.ingest.dedup_capacity,
    ));
    // The HTTP endpoint, when configured, shares the core (same limits, dedup, gate).
    // Stopped with the role, or earlier once the processor is done.
    let http_stop = shutdown.child_token();
    let http_task = http.map(|server| {
        let (core, stop) = (core.clone(), http_stop.clone());
        tokio::spawn(async move { server.run(core, stop).await })
    });
    let max_held = core.max_held().max(1);
    let mut processor = Processor {
        client: client.clone(),
        core,
        registry,
        held: Vec::new(),
        acks,
        cap,
        max_held,
        in_flight: metrics::gauge!("vitalwatch_ingest_in_flight"),
        acked: metrics::counter!("vitalwatch_ingest_acked_total"),
    };
    processor.run(rx, intake_ends).await;
    // Requests in progress finish (their records reach the bus) before the bus closes.
    http_stop.cancel();
    if let Some(task) = http_task {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(message = "HTTP ingestion endpoint failed.", error = %e),
            Err(e) => tracing::error!(message = "HTTP ingestion endpoint task failed.", error = %e),
        }
    }
    reloader.abort();
    leaver.abort();

    // Everything taken is acknowledged (queued in the client or in `acks`,
    // which the connection loop writes before it handles the disconnect
    // request); say goodbye so the acknowledgments go out before the
    // connection closes.
    // Bounded waits: with the broker unreachable the request queue may be full.
    let _ = tokio::time::timeout(Duration::from_secs(2), client.disconnect()).await;
    match tokio::time::timeout(Duration::from_secs(10), poller).await {
        Ok(_) => {}
        Err(_) => tracing::warn!(message = "MQTT connection did not close within 10 s."),
    }
    if drained.load(Ordering::SeqCst) {
        // Everything the session held was received and reached Kafka: end it.
        match end_session(settings).await {
            Ok(()) => tracing::info!(message = "Left the shared subscription and ended the MQTT session."),
            Err(e) => tracing::warn!(
                message = "Left the shared subscription; could not end the MQTT session (it holds nothing new).",
                error = %e
            ),
        }
    }
    tracing::info!(
        message = "Ingest stopped.",
        messages = stats.messages.load(Ordering::Relaxed),
        acked = stats.acked.load(Ordering::Relaxed),
        observations = stats.observations.load(Ordering::Relaxed),
        rejected = stats.rejected()
    );
    Ok(())
}

async fn poll_loop(
    mut eventloop: EventLoop,
    membership: Arc<Membership>,
    tx: mpsc::Sender<(Publish, chrono::DateTime<Utc>)>,
    acks: Arc<AckQueue>,
    stats: Arc<IngestStats>,
    drained: Arc<AtomicBool>,
) {
    let mut ack_buf = Vec::new();
    // Dropped once the leave completed: the processor then finishes and stops.
    let mut tx = Some(tx);
    // A message the processor no longer took: the session must be kept for it.
    let mut refused = false;
    let mut backoff = RECONNECT_BACKOFF.delays();
    // Registered once: a lookup per message is work per message.
    let (received, queued) =
        (metrics::counter!("vitalwatch_ingest_messages_total"), metrics::gauge!("vitalwatch_ingest_queued"));
    loop {
        let polled = eventloop.poll().await;
        // Between two turns of the event loop, once it has handed out what it
        // had read: write the acknowledgments queued meanwhile, with one flush.
        // (Requests are handled in order and only once the events are handed
        // out, so what was queued before the disconnect request goes first.)
        let disconnecting = matches!(polled, Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)));
        if matches!(polled, Ok(Event::Outgoing(rumqttc::Outgoing::PubAck(_)))) {
            // Only wake-ups go through the client's channel (`AckQueue`).
            acks.wake_written();
        }
        if polled.is_ok() && !disconnecting && eventloop.state.events.is_empty() {
            write_acks(&mut eventloop, &acks, &mut ack_buf).await;
        }
        match polled {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                backoff.reset();
                stats.connected.store(true, Ordering::Relaxed);
                metrics::gauge!("vitalwatch_mqtt_connected").set(1.0);
                tracing::info!(message = "Connected to the MQTT broker.", session_present = ack.session_present);
                // From a task of its own: it waits for room in the client's
                // request queue, which only this loop's polling drains.
                tokio::spawn(membership.clone().on_connected());
            }
            Ok(Event::Incoming(Packet::Publish(p))) if membership.is_marker_topic(&p.topic) => {
                // Our own leave marker, never a reading.
                if membership.is_current_marker(&p) && !refused && tx.is_some() {
                    drained.store(true, Ordering::SeqCst);
                    tx = None;
                }
                membership.acknowledge(&acks, &p);
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                stats.messages.fetch_add(1, Ordering::Relaxed);
                received.increment(1);
                let delivered = match tx.as_ref() {
                    None => false,
                    Some(tx) => match tx.try_send((p, Utc::now())) {
                        Ok(()) => true,
                        Err(mpsc::error::TrySendError::Full(m)) => {
                            // The broker sent more than `max_in_flight` unacknowledged
                            // messages: stop reading until the processor makes room.
                            metrics::counter!("vitalwatch_ingest_queue_full_total").increment(1);
                            tracing::warn!(message = "Ingest queue full; pausing reads from the MQTT broker.");
                            tx.send(m).await.is_ok()
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => false,
                    },
                };
                if !delivered {
                    // Draining: leave it unacknowledged; the broker redelivers
                    // it to this client id, so its session must be kept (a
                    // message after the leave marker should never come).
                    refused = true;
                    drained.store(false, Ordering::SeqCst);
                }
                if let Some(tx) = &tx {
                    queued.set((tx.max_capacity() - tx.capacity()) as f64);
                }
            }
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => {
                // Give the eventloop one more turn to flush, then stop.
                let _ = tokio::time::timeout(Duration::from_millis(200), eventloop.poll()).await;
                return;
            }
            Ok(_) => {}
            Err(e) => {
                stats.connected.store(false, Ordering::Relaxed);
                metrics::gauge!("vitalwatch_mqtt_connected").set(0.0);
                // As rumqttc does with the acknowledgments in its channel: the
                // broker sends those messages again on the next connection.
                acks.clear();
                if tx.as_ref().is_none_or(|tx| tx.is_closed()) {
                    return;
                }
                tracing::warn!(message = "MQTT connection error; reconnecting.", error = %e);
                backoff.wait(None).await;
            }
        }
    }
}

/// Ends this client id's persistent session: MQTT 3.1.1 has no session expiry
/// on DISCONNECT, but a connection with clean session = 1 discards the stored
/// session, and its own session ends with the DISCONNECT that follows. Only
/// called once the session holds nothing that is not in Kafka.
async fn end_session(settings: &IngestConfig) -> anyhow::Result<()> {
    let mut opts = crate::mqtt_client::options(&settings.mqtt, &settings.mqtt.client_id)?;
    opts.set_clean_session(true).set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(opts, 10);
    let ended = async {
        loop {
            match eventloop.poll().await? {
                Event::Incoming(Packet::ConnAck(_)) => client.try_disconnect()?,
                Event::Outgoing(rumqttc::Outgoing::Disconnect) => return anyhow::Ok(()),
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), ended).await.map_err(|_| anyhow::anyhow!("timed out after 5 s"))?
}

/// Writes the acknowledgments waiting in `acks` and flushes once. On a write
/// error the connection is dropped and the next `poll` reconnects; the broker
/// then sends the unacknowledged messages again (and ingest's dedup absorbs
/// them). Relies on rumqttc 0.25's public `EventLoop::network`, `state` and
/// `clean`, and is only called between two `poll`s (never cancelling one):
/// recheck on a rumqttc upgrade (`tests/crash_recovery.rs`,
/// `a_stopped_ingest_leaves_nothing_unacknowledged`, fails if acknowledgments
/// stop reaching the broker).
async fn write_acks(eventloop: &mut EventLoop, acks: &AckQueue, buf: &mut Vec<u16>) {
    acks.drain_into(buf);
    if buf.is_empty() {
        return;
    }
    // `network` is None only while disconnected, and the queue is cleared then.
    let Some(network) = eventloop.network.as_mut() else { return };
    let written = async {
        for &pkid in buf.iter() {
            network.write(Packet::PubAck(PubAck::new(pkid))).await?;
        }
        network.flush().await
    };
    let error = match tokio::time::timeout(Duration::from_secs(5), written).await {
        Ok(Ok(())) => return,
        Ok(Err(e)) => e.to_string(),
        Err(_) => "timed out after 5 s".to_owned(),
    };
    tracing::warn!(message = "Could not write MQTT acknowledgments; reconnecting.", count = buf.len(), error = %error);
    eventloop.clean();
}

struct Processor {
    client: AsyncClient,
    /// Rate limits, pipeline, registry gate, dedup and output, shared with
    /// the HTTP endpoint ([`crate::step`]).
    core: Arc<Core>,
    registry: SharedRegistry,
    /// Messages waiting for a reload, in arrival order.
    held: Vec<Held>,
    /// Acknowledgments for the connection loop to write in batches.
    acks: Arc<AckQueue>,
    cap: usize,
    /// Messages held at once at most (`ingest.registry_max_held`, at least 1).
    max_held: usize,
    /// `vitalwatch_ingest_in_flight` and `vitalwatch_ingest_acked_total`.
    in_flight: metrics::Gauge,
    acked: metrics::Counter,
}

/// A message waiting for a registry reload. Its slot in the ordered pending
/// queue waits for `reply`; messages after it are produced meanwhile, only
/// their acknowledgments wait (for at most the hold time).
struct Held {
    publish: Publish,
    received_at: chrono::DateTime<Utc>,
    /// When it looked at the registry.
    arrived: tokio::time::Instant,
    reply: tokio::sync::oneshot::Sender<Pending>,
}

type Pending = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = (Publish, chrono::DateTime<Utc>, Result<Vec<ObservationId>, BusError>)> + Send,
    >,
>;

/// At most this many messages started, or deliveries completed, in one turn
/// of the processor's loop: a burst costs one turn, and neither side waits
/// long for the other.
const TURN: usize = 64;

impl Processor {
    async fn run(&mut self, mut rx: mpsc::Receiver<(Publish, chrono::DateTime<Utc>)>, shutdown: CancellationToken) {
        let mut pending: FuturesOrdered<Pending> = FuturesOrdered::new();
        let mut draining = false;
        let mut attempts = self.registry.attempts();
        loop {
            let hold_until = self.held.first().map(|h| h.arrived + self.core.hold());
            tokio::select! {
                biased;
                Some((publish, received_at, result)) = pending.next(), if !pending.is_empty() => {
                    self.complete(publish, received_at, result).await;
                    // The other deliveries already acknowledged (they come in
                    // batches), without a turn of the loop for each.
                    for _ in 0..TURN {
                        let Some(Some((publish, received_at, result))) = pending.next().now_or_never() else { break };
                        self.complete(publish, received_at, result).await;
                    }
                }
                Ok(()) = attempts.changed(), if !self.held.is_empty() => {
                    let attempt = *attempts.borrow_and_update();
                    self.release_held(|h| h.arrived <= attempt.started, attempt.ok).await;
                }
                _ = tokio::time::sleep_until(hold_until.unwrap_or_else(tokio::time::Instant::now)), if hold_until.is_some() => {
                    let now = tokio::time::Instant::now();
                    let hold = self.core.hold();
                    self.release_held(|h| h.arrived + hold <= now, false).await;
                }
                _ = shutdown.cancelled(), if !draining => {
                    draining = true;
                    rx.close();
                }
                // Not while `max_held` messages wait for a registry reload: a
                // message from a just-registered device is never rejected for
                // want of room to hold it; the broker keeps the rest meanwhile.
                msg = rx.recv(), if self.has_room(pending.len()) => {
                    match msg {
                        Some((publish, received_at)) => {
                            let fut = self.start(publish, received_at, false).await;
                            pending.push_back(fut);
                            // The messages already queued behind it, within the same bounds.
                            for _ in 0..TURN {
                                if !self.has_room(pending.len()) {
                                    break;
                                }
                                let Ok((publish, received_at)) = rx.try_recv() else { break };
                                let fut = self.start(publish, received_at, false).await;
                                pending.push_back(fut);
                            }
                        }
                        None => {
                            // Channel closed and empty: finish what is pending
                            // (held messages are decided now).
                            self.release_held(|_| true, false).await;
                            while let Some((publish, received_at, result)) = pending.next().await {
                                self.complete(publish, received_at, result).await;
                            }
                            return;
                        }
                    }
                }
            }
        }
    }

    /// True if another message may be taken: fewer than `cap` in processing
    /// (`pending` of them) and fewer than `max_held` waiting for a reload.
    fn has_room(&self, pending: usize) -> bool {
        pending < self.cap && self.held.len() < self.max_held
    }

    /// Processes a message and enqueues its output; returns a future that
    /// resolves when the bus acknowledged all of it.
    async fn start(&mut self, publish: Publish, received_at: chrono::DateTime<Utc>, retry: bool) -> Pending {
        // A sender over its rate limit: answered and dead-lettered, not decoded.
        // (Retries of a message already let through are not counted again.)
        // (A rate-limited message never depends on the registry.)
        let arrived = tokio::time::Instant::now();
        let processed = self.core.admit(&publish.topic, &publish.payload, received_at, !retry);
        // Never waits on the database: a message that a fresher registry
        // could change is either final now or held in its slot.
        // (`Full` cannot come from `run`, which reads nothing while the held
        // set is full; held all the same, the set outgrows its bound by one.)
        if !retry
            && processed.depends_on_registry()
            && matches!(self.core.on_miss(&publish.topic, arrived, self.held.len()), Verdict::Hold | Verdict::Full)
        {
            let (reply, answer) = tokio::sync::oneshot::channel::<Pending>();
            self.held.push(Held { publish: publish.clone(), received_at, arrived, reply });
            metrics::gauge!("vitalwatch_ingest_registry_held").set(self.held.len() as f64);
            return Box::pin(async move {
                match answer.await {
                    Ok(fut) => fut.await,
                    // Not decided (cannot happen while the loop runs): `complete` retries it.
                    Err(_) => (publish, received_at, Err(BusError::Transient("held message not decided".into()))),
                }
            });
        }
        self.dispatch(publish, received_at, &processed, retry).await
    }

    /// Processes again, with the current snapshot, the held messages `pick`
    /// selects, and hands their output to their slots. Those still unknown go
    /// to the negative cache if a reload confirmed it (`confirmed`).
    async fn release_held(&mut self, pick: impl Fn(&Held) -> bool, confirmed: bool) {
        let (go, keep): (Vec<Held>, Vec<Held>) = std::mem::take(&mut self.held).into_iter().partition(|h| pick(h));
        self.held = keep;
        metrics::gauge!("vitalwatch_ingest_registry_held").set(self.held.len() as f64);
        for h in go {
            let processed = self.core.reprocess(&h.publish.topic, &h.publish.payload, h.received_at);
            if processed.depends_on_registry() {
                self.core.confirm_miss(&h.publish.topic, confirmed);
            }
            let fut = self.dispatch(h.publish, h.received_at, &processed, false).await;
            let _ = h.reply.send(fut);
        }
    }

    /// Produces a processed message; the future resolves when the bus
    /// acknowledged all of it.
    async fn dispatch(
        &mut self,
        publish: Publish,
        received_at: chrono::DateTime<Utc>,
        processed: &Processed,
        retry: bool,
    ) -> Pending {
        let emitted = self.core.emit(&publish.topic, &publish.payload, received_at, processed, retry).await;
        if let (Some(reply_topic), Some(body)) = (&processed.reply_topic, processed.reply_json()) {
            // Best effort: the dead letter is the record; the reply is a courtesy to the app.
            // Never wait on the client's request queue (see `run`).
            if let Err(e) = self.client.try_publish(reply_topic.clone(), QoS::AtLeastOnce, false, body) {
                tracing::warn!(message = "Could not queue the rejection reply.", error = %e);
            }
        }
        if !retry {
            self.in_flight.increment(1.0);
        }
        Box::pin(async move {
            let (ids, result) = emitted.delivered().await;
            (publish, received_at, result.map(|()| ids))
        })
    }

    async fn complete(
        &mut self,
        publish: Publish,
        received_at: chrono::DateTime<Utc>,
        result: Result<Vec<ObservationId>, BusError>,
    ) {
        let mut result = result;
        let mut delays = BUS_BACKOFF.delays();
        // Retry in place until the bus takes it: ordering and nothing lost
        // (not even on shutdown: no token).
        while let Err(e) = &result {
            self.core.stats.bus_retries.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("vitalwatch_bus_retries_total", "role" => "ingest").increment(1);
            tracing::warn!(message = "Bus did not acknowledge; retrying the message.", error = %e);
            delays.wait(None).await;
            let fut = self.start(publish.clone(), received_at, true).await;
            result = fut.await.2;
        }
        if let Ok(ids) = result {
            self.core.delivered(ids);
        }
        self.acknowledge(&publish);
    }

    /// Hands the message's acknowledgment to the connection loop. Never waits
    /// on the client's request queue (see `run`).
    fn acknowledge(&mut self, publish: &Publish) {
        let queued = match self.acks.push(publish.pkid) {
            Push::Queued => true,
            Push::SendThroughClient => match self.client.try_ack(publish) {
                Ok(()) => true,
                Err(rumqttc::ClientError::TryRequest(_)) => {
                    self.acks.push_queued(publish.pkid);
                    true
                }
                Err(e) => {
                    // Only when the event loop is gone (shutting down): the
                    // broker sends the message again to the next owner.
                    self.acks.push_queued(publish.pkid);
                    tracing::warn!(message = "Could not queue the MQTT acknowledgment.", error = %e);
                    false
                }
            },
        };
        if queued {
            self.core.stats.acked.fetch_add(1, Ordering::Relaxed);
            self.acked.increment(1);
        }
        self.in_flight.decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls() {
        assert_eq!(broker_address("mqtt://127.0.0.1:1883").unwrap(), ("127.0.0.1".into(), 1883));
        assert_eq!(broker_address("embedded://0.0.0.0:18830").unwrap(), ("0.0.0.0".into(), 18830));
        assert_eq!(broker_address("mqtt://broker").unwrap(), ("broker".into(), 1883));
        assert!(broker_address("http://x").is_err());
        assert!(broker_address("mqtt://x:notaport").is_err());
    }
}
