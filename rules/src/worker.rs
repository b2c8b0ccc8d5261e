//! The `rules` role: the I/O shell around the pure [`Engine`].
//!
//! A consumer-group member (group `rules.group`) on the observations topic and
//! the device-status topic. Both are keyed by patient id, so one partition owns
//! a patient and its messages arrive in order.
//!
//! Per batch:
//! 1. every observation goes to [`Engine::on_observation`] with
//!    `now = received_at` (carried in the Kafka message, so a replacement
//!    worker takes the same decisions); every status with a patient goes to
//!    [`Engine::on_device_status`];
//! 2. rule changes in `patient_rules` are applied every `rules.config_poll_secs`
//!    ([`Engine::set_versioned_rules`]: the version is named in every alert
//!    event, `AlertEvent.rules_version`), and the missing-data rules are
//!    evaluated every `rules.tick_secs` ([`Engine::tick`], see [`TickClock`]);
//! 3. the resulting [`AlertEvent`]s are published to `bus.alerts_topic`
//!    (key = patient id) and their delivery awaited; then, in one database
//!    transaction, stored in `alert_events` (skipping known event ids) with
//!    their episodes upserted in `alerts`; only then are the bus offsets
//!    committed. A crash anywhere before the commit means redelivery, and
//!    redelivered events carry the same ids (consumers drop duplicates by
//!    `event_id`).
//!
//! ## State rebuild
//!
//! The engine holds no state across restarts. The first time this worker sees
//! a patient (after a start or a rebalance, which clears the engine), it loads
//! the patient's rules from `patient_rules` (program defaults of
//! [`EngineSettings::default_program`] without a row) and replays the
//! patient's stored observations of the last `retention_days` received up to
//! the triggering message's `received_at` ([`Engine::replay`]). The patients
//! new in a batch are read together before it is handled
//! ([`Store::rule_state_inputs`], one round trip per [`LOAD_CHUNK`] patients). The replay's
//! `recent_events` (readings taken, or for historical alerts received, within
//! `max_alert_age` of now) are re-published:
//! they may never have been published if the previous owner died between
//! deciding and committing, and the ones that were carry the same ids.
//! Observations already in the store that are redelivered by the bus are
//! duplicates for the engine and ignored.
//!
//! The rebuild reads the store, which the `persist` role fills from its own
//! consumer group. Readings the previous owner consumed *and committed* but
//! that `persist` had not written yet would be neither in the store nor
//! redelivered, and a rebuilt weight window or baseline would lack them. So
//! on each new assignment the worker first waits until `persist` has
//! committed, on every assigned observations partition, at least this group's
//! committed offset (`persist` commits only after its database commit), for
//! at most `rules.store_wait_secs`; after that it rebuilds from what is stored,
//! with a warning and `vitalwatch_rules_store_wait_timeouts_total`.
//!
//! Missing-data rules need every patient of the assigned partitions loaded,
//! including the silent ones (a silent patient is what they are for: after a
//! restart or a rebalance no message would ever load them). So on each new
//! assignment the worker lists the registry's active patients, keeps those
//! whose key maps to an assigned partition ([`partition_for_key`], the
//! producer's partitioner) and loads them in the background,
//! [`EAGER_LOADS_PER_BATCH`] per batch, between batches. A patient registered
//! later is loaded by their first reading or heartbeat, or at the next
//! assignment.
//!
//! ## Discharged patients
//!
//! A discharged patient (end of monitoring) raises no alert at all, missing
//! data included. The worker keeps the set of discharged patients
//! ([`Store::discharged_patients`]), refreshed with the rules poll and
//! before every tick: a newly discharged patient's pending physician closes
//! are applied (their RESOLVED events published), then the patient is
//! dropped from the engine ([`Engine::remove_patient`]) and never loaded
//! again while discharged. Their messages (readings already in flight when
//! the discharge happened) are skipped, after a point check of the store
//! ([`Store::is_discharged`]) that notices a readmission at once.
//!
//! ## Records that can never be processed
//!
//! A message that does not decode, or breaks the contract (an invalid id),
//! goes to the dead-letter topic with the reason ([`DeadLetters`]) and the
//! partition moves on. Alert events the database refuses for good
//! ([`StoreError::Rejected`]) are stored one by one, and the refused ones are
//! dead-lettered (they were published already; alerting decides for itself).
//! Every other store failure is retried.
//!
//! No identifying data in logs: counts at info, patient ids at debug only.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::settings::RulesSettings;
use chrono::{DateTime, Utc};
use prost::Message as _;
use vitalwatch_platform::bus::dead_letter::{DeadLetters, DeadReason};
use vitalwatch_platform::bus::{CommitTracker, Consumer, Producer, next_batch, partition_for_key, positions};
use vitalwatch_platform::retry::{AlwaysTransient, Backoff, retry};
use vitalwatch_platform::shutdown::CancellationToken;
use vitalwatch_platform::store::{EpisodeClose, RuleStateInputs, Store, StoreError};
use vitalwatch_schemas::{DeviceId, Observation, PatientId, proto};

use crate::{AlertEvent, Engine, EngineSettings, EpisodeStatus, ObservationOutcome, PatientRules};

/// What the worker needs besides its backends.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The `rules` settings section.
    pub settings: RulesSettings,
    /// Engine settings.
    pub engine: EngineSettings,
    /// Observations topic (input).
    pub observations_topic: String,
    /// Device-status topic (input).
    pub status_topic: String,
    /// Alerts topic (output).
    pub alerts_topic: String,
    /// Consumer group of the `persist` role (see [`RulesSettings::store_wait_secs`]).
    pub persist_group: String,
}

/// Counters of the rules role.
#[derive(Debug, Default)]
pub struct RulesStats {
    /// Batches committed.
    pub batches: AtomicU64,
    /// Observations evaluated (not late, not duplicate).
    pub evaluated: AtomicU64,
    /// Observations stored in history without evaluation (late).
    pub late: AtomicU64,
    /// Observations already seen (redelivery, replay).
    pub duplicates: AtomicU64,
    /// Observations rejected by the engine.
    pub rejected: AtomicU64,
    /// Device statuses applied.
    pub statuses: AtomicU64,
    /// Messages that could not be decoded or broke the contract (dead-lettered).
    pub undecodable: AtomicU64,
    /// Alert events the database refused for good (dead-lettered).
    pub refused_events: AtomicU64,
    /// Patients whose state was rebuilt from the store.
    pub rebuilds: AtomicU64,
    /// Rule changes applied without a restart.
    pub rule_updates: AtomicU64,
    /// Messages of discharged patients, skipped.
    pub not_monitored: AtomicU64,
    /// Alert events published (re-publications included).
    pub events_published: AtomicU64,
    /// Alert events new to the database.
    pub events_stored: AtomicU64,
    /// Bus or database retries.
    pub retries: AtomicU64,
}

/// Decides the `now` of [`Engine::tick`] and when to tick.
///
/// While the worker is catching up on a backlog, `now` is the highest
/// `received_at` consumed (a backlog must not look like missing data); once it
/// is caught up (its last batch was not full), the wall clock, but never
/// earlier than what was consumed. Never goes backwards.
#[derive(Debug, Clone)]
pub struct TickClock {
    every: Duration,
    next: Instant,
    caught_up: bool,
    max_received: Option<DateTime<Utc>>,
    last: Option<DateTime<Utc>>,
}

impl TickClock {
    /// A clock ticking every `every`, first at `start + every`.
    pub fn new(every: Duration, start: Instant) -> Self {
        TickClock { every, next: start + every, caught_up: false, max_received: None, last: None }
    }

    /// Records a batch of `len` messages received with a batch limit of `max`.
    pub fn batch(&mut self, len: usize, max: usize) {
        self.caught_up = len < max;
    }

    /// Records a consumed message received (by ingest) at `received_at`.
    pub fn saw(&mut self, received_at: DateTime<Utc>) {
        self.max_received = Some(self.max_received.map_or(received_at, |m| m.max(received_at)));
    }

    /// True when a tick is due at `at`.
    pub fn due(&self, at: Instant) -> bool {
        at >= self.next
    }

    /// The `now` of the tick at `at` (wall clock `wall`); schedules the next.
    pub fn take(&mut self, at: Instant, wall: DateTime<Utc>) -> DateTime<Utc> {
        self.next = at + self.every;
        let now = tick_now(self.caught_up, self.max_received, wall, self.last);
        self.last = Some(now);
        now
    }
}

/// The tick time: see [`TickClock`].
pub fn tick_now(
    caught_up: bool,
    max_received: Option<DateTime<Utc>>,
    wall: DateTime<Utc>,
    last: Option<DateTime<Utc>>,
) -> DateTime<Utc> {
    let now = match (caught_up, max_received) {
        (true, Some(m)) => wall.max(m),
        (true, None) | (false, None) => wall,
        (false, Some(m)) => m,
    };
    match last {
        Some(l) if l > now => l,
        _ => now,
    }
}

/// How far back the rules poll looks before its last mark (transactions that
/// committed late, clock differences between hosts).
const POLL_MARGIN: chrono::TimeDelta = chrono::TimeDelta::seconds(30);

/// Store calls and alert publication: from 100 ms, doubling, at most 10 s apart.
const RETRY_BACKOFF: Backoff = Backoff::exponential(Duration::from_millis(100), Duration::from_secs(10));

/// Retries a store call with backoff until it succeeds; `None` once shutdown
/// fires while it fails.
async fn store_retrying<T, Fut>(
    stats: &RulesStats,
    shutdown: &CancellationToken,
    what: &'static str,
    call: impl FnMut() -> Fut,
) -> Option<T>
where
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let on_retry = |e: &StoreError, _| {
        stats.retries.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("vitalwatch_db_retries_total", "role" => "rules").increment(1);
        tracing::warn!(message = what, error = %e);
    };
    retry(&RETRY_BACKOFF, Some(shutdown), AlwaysTransient, on_retry, call).await.ok()
}

/// Patients of a new assignment loaded per batch (see the module docs), so
/// that consumption goes on while a large assignment is loaded.
const EAGER_LOADS_PER_BATCH: usize = 200;
/// Patients whose rebuild inputs are read in one store call.
const LOAD_CHUNK: usize = 500;

struct Worker<'a> {
    engine: Engine,
    /// Patients of the assigned partitions not loaded yet.
    to_load: std::collections::VecDeque<PatientId>,
    store: Arc<dyn Store>,
    cfg: &'a WorkerConfig,
    stats: Arc<RulesStats>,
    shutdown: CancellationToken,
    /// Patients whose state was rebuilt since the last (re)assignment.
    loaded: HashSet<PatientId>,
    /// `updated_at` of the rules applied per patient.
    rules_seen: HashMap<String, DateTime<Utc>>,
    poll_mark: DateTime<Utc>,
    /// Physician closes applied to the engine, to mark applied once their
    /// RESOLVED events are published and stored.
    closes_applied: Vec<String>,
    dead_letters: DeadLetters,
    /// Discharged patients: never loaded, their messages skipped.
    discharged: HashSet<PatientId>,
}

/// Runs until `shutdown` fires. The batch in flight when it fires is finished
/// and committed first, unless the bus or the database is down (then nothing
/// is committed and the bus redelivers).
///
/// # Errors
///
/// Invalid engine settings.
pub async fn run(
    consumer: &mut dyn Consumer,
    producer: Arc<dyn Producer>,
    store: Arc<dyn Store>,
    cfg: &WorkerConfig,
    stats: Arc<RulesStats>,
    dead_letters: DeadLetters,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let engine = Engine::new(cfg.engine.clone())?;
    let s = &cfg.settings;
    let mut w = Worker {
        engine,
        store,
        cfg,
        stats: stats.clone(),
        shutdown: shutdown.clone(),
        loaded: HashSet::new(),
        to_load: std::collections::VecDeque::new(),
        rules_seen: HashMap::new(),
        poll_mark: Utc::now() - POLL_MARGIN,
        closes_applied: Vec::new(),
        dead_letters,
        discharged: HashSet::new(),
    };
    let wait = Duration::from_millis(s.batch_wait_ms);
    let poll_every = Duration::from_secs(s.config_poll_secs);
    let mut next_poll = Instant::now() + poll_every;
    let mut clock = TickClock::new(Duration::from_secs(s.tick_secs), Instant::now());
    // Empty, so that the first assignment counts as a change (eager loading).
    let mut assignment: Vec<(String, i32)> = Vec::new();
    // Asynchronous commits: the next batch does not wait for the broker's
    // round trip (it was a quarter of the loop at 10k/s). Batches take what
    // has arrived without waiting for more (`rules.batch_wait_ms` 0), so they
    // are many and small: at most one commit request per interval.
    let mut commits = CommitTracker::at_most_every(COMMIT_EVERY);
    while !shutdown.is_cancelled() {
        let mut phase = Phases::start();
        let Some(batch) = next_batch(consumer, s.batch_size, wait, &shutdown).await else {
            break;
        };
        phase.end("receive");
        let now_assignment = sorted(consumer.assignment());
        if now_assignment != assignment {
            // Partitions moved: state of patients now owned elsewhere would go
            // stale (and tick about them). Forget everything; patients are
            // rebuilt from the store as their messages arrive.
            if !w.loaded.is_empty() {
                tracing::info!(
                    message = "Partition assignment changed; rule state will be rebuilt.",
                    patients = w.loaded.len()
                );
            }
            w.engine = Engine::new(cfg.engine.clone())?;
            w.loaded.clear();
            assignment = now_assignment;
            w.poll_discharged(&mut Vec::new()).await;
            w.wait_for_store(consumer, &assignment).await;
            w.to_load = w.owned_patients(consumer, &assignment).await.into();
            tracing::info!(
                message = "Watching the patients of the assigned partitions.",
                partitions = assignment.len(),
                patients = w.to_load.len()
            );
        }
        clock.batch(batch.len(), s.batch_size);
        if !batch.is_empty() {
            metrics::histogram!("vitalwatch_consumer_batch_size", "role" => "rules").record(batch.len() as f64);
        }
        let mut events: Vec<AlertEvent> = Vec::new();
        phase.end("assignment");
        let mut complete = w.prefetch(&batch, &mut events).await;
        phase.end("load");
        if complete {
            for m in &batch {
                if !w.handle(m, &mut clock, &mut events).await {
                    complete = false;
                    break;
                }
            }
        }
        phase.end("evaluate");
        if !complete || !w.load_some(&mut events).await {
            break; // shutting down while the database is unavailable: commit nothing
        }
        phase.end("load");
        if Instant::now() >= next_poll {
            next_poll = Instant::now() + poll_every;
            w.poll_rules(&mut events).await;
            w.poll_closes(&mut events).await;
            w.poll_discharged(&mut events).await;
        }
        if clock.due(Instant::now()) {
            // No missing-data alert for a patient discharged since the last poll.
            w.poll_discharged(&mut events).await;
            let now = clock.take(Instant::now(), Utc::now());
            w.engine.tick(now, &mut events);
        }
        phase.end("poll");
        if !events.is_empty() {
            if !w.publish(producer.as_ref(), &events).await {
                break;
            }
            phase.end("publish");
            let Some(new) = w.record(&events).await else {
                break;
            };
            phase.end("record");
            stats.events_stored.fetch_add(new, Ordering::Relaxed);
            tracing::info!(message = "Alert events published.", events = events.len(), new);
        }
        w.mark_closes().await;
        phase.end("record");
        if batch.is_empty() {
            // Idle: commit what the interval held back.
            if let Err(e) = commits.flush(consumer).await {
                tracing::warn!(message = "Offset commit failed.", error = %e);
            }
            continue;
        }
        if let Err(e) = commits.after_batch(consumer, &positions(&batch)).await {
            // Events are published and stored: a failed commit only means
            // redelivery, which yields the same event ids.
            tracing::warn!(message = "Offset commit failed.", error = %e);
        }
        phase.end("commit");
        stats.batches.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("vitalwatch_consumer_messages_total", "role" => "rules").increment(batch.len() as u64);
    }
    if let Err(e) = commits.finish(consumer).await {
        tracing::warn!(message = "Final offset commit failed; the last messages will be redelivered.", error = %e);
    }
    tracing::info!(
        message = "Rules stopped.",
        batches = stats.batches.load(Ordering::Relaxed),
        evaluated = stats.evaluated.load(Ordering::Relaxed),
        events = stats.events_published.load(Ordering::Relaxed),
        rebuilds = stats.rebuilds.load(Ordering::Relaxed)
    );
    Ok(())
}

/// Shortest time between two offset commits of the rules group (a crash
/// redelivers at most this much, which yields the same event ids).
const COMMIT_EVERY: Duration = Duration::from_millis(100);

/// How many partitions `persist` has not stored up to where this group
/// resumes: this group committed an offset there and `persist` committed none
/// or a smaller one.
pub fn partitions_behind(ours: &[Option<i64>], persisted: &[Option<i64>]) -> usize {
    ours.iter().zip(persisted).filter(|(o, p)| matches!((o, p), (Some(o), p) if p.is_none_or(|p| p < *o))).count()
}

fn sorted(mut a: Vec<(String, i32)>) -> Vec<(String, i32)> {
    a.sort();
    a
}

/// Time spent in each phase of the batch loop, in
/// `vitalwatch_rules_phase_microseconds_total{phase}`: where a batch's time goes
/// when alerts are late (receive = waiting for messages).
struct Phases(Instant);

impl Phases {
    fn start() -> Self {
        Phases(Instant::now())
    }

    fn end(&mut self, phase: &'static str) {
        let now = Instant::now();
        metrics::counter!("vitalwatch_rules_phase_microseconds_total", "phase" => phase)
            .increment(u64::try_from((now - self.0).as_micros()).unwrap_or(u64::MAX));
        self.0 = now;
    }
}

fn micros(us: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros(us)
}

impl Worker<'_> {
    /// The registry's active patients whose messages go to the assigned
    /// partitions of the observations topic. Empty (with a warning) if the
    /// partition count or the registry cannot be read now: patients then load
    /// on their first message.
    async fn owned_patients(&self, consumer: &mut dyn Consumer, assignment: &[(String, i32)]) -> Vec<PatientId> {
        let topic = &self.cfg.observations_topic;
        let mine: HashSet<i32> = assignment.iter().filter(|(t, _)| t == topic).map(|(_, p)| *p).collect();
        if mine.is_empty() {
            return Vec::new();
        }
        let Some(partitions) = consumer.partition_count(topic).await else {
            tracing::warn!(message = "Partition count unknown; silent patients are not watched until they send.");
            return Vec::new();
        };
        let registry = match self.store.registry().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(message = "Registry unavailable; silent patients are not watched until they send.", error = %e);
                return Vec::new();
            }
        };
        let mut owned: Vec<PatientId> = registry
            .patients
            .iter()
            .filter(|p| mine.contains(&partition_for_key(p.as_bytes(), partitions)))
            .filter_map(|p| PatientId::new(p.clone()).ok())
            .collect();
        owned.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        owned
    }

    /// Waits, at most `rules.store_wait_secs`, until the `persist` group has
    /// committed on every assigned observations partition at least what this
    /// group committed there: everything the previous owners consumed is then
    /// in the store, and rebuilt states lack nothing. (Without it, readings a
    /// previous owner consumed while `persist` lagged were neither redelivered
    /// nor stored yet, and a rebuilt weight window or baseline missed them.)
    async fn wait_for_store(&self, consumer: &mut dyn Consumer, assignment: &[(String, i32)]) {
        let wait = Duration::from_secs(self.cfg.settings.store_wait_secs);
        let parts: Vec<(String, i32)> =
            assignment.iter().filter(|(t, _)| *t == self.cfg.observations_topic).cloned().collect();
        if wait.is_zero() || parts.is_empty() {
            return;
        }
        let started = Instant::now();
        let mut behind = None;
        loop {
            let ours = consumer.committed(None, &parts).await;
            let stored = consumer.committed(Some(&self.cfg.persist_group), &parts).await;
            match (ours, stored) {
                (Ok(ours), Ok(stored)) => {
                    let n = partitions_behind(&ours, &stored);
                    if n == 0 {
                        if behind.is_some() {
                            tracing::info!(
                                message = "Persist caught up with the assigned partitions; rebuilding rule state.",
                                waited_ms = started.elapsed().as_millis() as u64
                            );
                        }
                        return;
                    }
                    behind = Some(n);
                }
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(message = "Could not read committed offsets to wait for persist.", error = %e);
                }
            }
            if started.elapsed() >= wait || self.shutdown.is_cancelled() {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = self.shutdown.cancelled() => {}
            }
        }
        metrics::counter!("vitalwatch_rules_store_wait_timeouts_total").increment(1);
        tracing::warn!(
            message = "Persist is behind on the assigned partitions; rule state is rebuilt from what is stored.",
            partitions_behind = behind,
            waited_secs = wait.as_secs()
        );
    }

    /// Loads up to [`EAGER_LOADS_PER_BATCH`] patients of the assignment. False
    /// only when shutting down with the database unavailable.
    async fn load_some(&mut self, events: &mut Vec<AlertEvent>) -> bool {
        let now = Utc::now();
        let mut next = Vec::new();
        while next.len() < EAGER_LOADS_PER_BATCH {
            let Some(p) = self.to_load.pop_front() else { break };
            if !self.loaded.contains(&p) {
                next.push((p, now));
            }
        }
        self.load_many(&next, events).await
    }

    /// Loads, in as few store calls as possible, every patient of `batch`
    /// not loaded yet, as of their first message in it. (Without this a
    /// worker's first batches after a start or a rebalance paid three
    /// sequential database round trips per patient.) False only when
    /// shutting down with the database unavailable.
    async fn prefetch(&mut self, batch: &[vitalwatch_platform::bus::Message], events: &mut Vec<AlertEvent>) -> bool {
        let mut seen = HashSet::new();
        let mut first = Vec::new();
        for m in batch {
            // Messages are keyed by patient: in steady state every key is
            // loaded already, and the payload need not be decoded twice.
            let key = m.key.as_deref().and_then(|k| std::str::from_utf8(k).ok());
            if key.and_then(|k| PatientId::new(k).ok()).is_some_and(|p| self.loaded.contains(&p)) {
                continue;
            }
            let Some((patient, received)) = self.patient_of(m) else { continue };
            if !self.loaded.contains(&patient) && seen.insert(patient.clone()) {
                first.push((patient, received));
            }
        }
        self.load_many(&first, events).await
    }

    /// The patient a message makes [`Worker::handle`] load, and as of when:
    /// the same decoding, so a patient is loaded exactly as `handle` would
    /// have. `None` for messages `handle` skips (errors are reported there).
    fn patient_of(&self, m: &vitalwatch_platform::bus::Message) -> Option<(PatientId, DateTime<Utc>)> {
        if m.topic == self.cfg.observations_topic {
            let p = proto::Observation::decode(m.payload.as_slice()).ok()?;
            let o = Observation::from_proto(p).ok()?;
            Some((o.patient_id, o.received_at))
        } else if m.topic == self.cfg.status_topic {
            let st = proto::DeviceStatus::decode(m.payload.as_slice()).ok()?;
            let received = micros(st.received_at_unix_micros).unwrap_or_else(Utc::now);
            DeviceId::new(st.device_id).ok()?;
            Some((PatientId::new(st.patient_id).ok()?, received))
        } else {
            None
        }
    }

    /// Processes one message. False only when shutting down with the
    /// database unavailable.
    async fn handle(
        &mut self,
        m: &vitalwatch_platform::bus::Message,
        clock: &mut TickClock,
        events: &mut Vec<AlertEvent>,
    ) -> bool {
        if m.topic == self.cfg.observations_topic {
            let obs = match proto::Observation::decode(m.payload.as_slice())
                .map_err(|e| e.to_string())
                .and_then(Observation::from_proto)
            {
                Ok(o) => o,
                Err(e) => return self.dead_letter(m, DeadReason::Undecodable, &e).await,
            };
            clock.saw(obs.received_at);
            if self.skip_discharged(&obs.patient_id).await {
                return true;
            }
            if !self.ensure_loaded(&obs.patient_id, obs.received_at, events).await {
                return false;
            }
            let started = Instant::now();
            let outcome = self.engine.on_observation(&obs, obs.received_at, events);
            metrics::histogram!("vitalwatch_rules_evaluation_seconds").record(started.elapsed().as_secs_f64());
            let (counter, label) = match outcome {
                ObservationOutcome::Evaluated => (&self.stats.evaluated, "evaluated"),
                ObservationOutcome::Late => (&self.stats.late, "late"),
                ObservationOutcome::Duplicate => (&self.stats.duplicates, "duplicate"),
                ObservationOutcome::Rejected(_) => (&self.stats.rejected, "rejected"),
            };
            counter.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("vitalwatch_rules_observations_total", "outcome" => label).increment(1);
        } else if m.topic == self.cfg.status_topic {
            let st = match proto::DeviceStatus::decode(m.payload.as_slice()) {
                Ok(s) => s,
                Err(e) => return self.dead_letter(m, DeadReason::Undecodable, &e.to_string()).await,
            };
            let received = micros(st.received_at_unix_micros).unwrap_or_else(Utc::now);
            clock.saw(received);
            if st.patient_id.is_empty() {
                return true;
            }
            let (Ok(patient), Ok(device)) =
                (PatientId::new(st.patient_id.clone()), DeviceId::new(st.device_id.clone()))
            else {
                return self.dead_letter(m, DeadReason::InvalidRecord, "invalid patient or device id").await;
            };
            let time = match st.time_unix_micros {
                0 => received,
                t => micros(t).unwrap_or(received),
            };
            if self.skip_discharged(&patient).await {
                return true;
            }
            if !self.ensure_loaded(&patient, received, events).await {
                return false;
            }
            self.engine.on_device_status(&device, &patient, time.min(received));
            self.stats.statuses.fetch_add(1, Ordering::Relaxed);
        }
        true
    }

    /// Sends a message this worker can never process to the dead-letter
    /// topic. False only when shutting down before the bus took it.
    async fn dead_letter(&self, m: &vitalwatch_platform::bus::Message, reason: DeadReason, error: &str) -> bool {
        self.stats.undecodable.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("vitalwatch_undecodable_total", "role" => "rules").increment(1);
        self.dead_letters.send(m, reason, error, &self.shutdown).await.is_ok()
    }

    /// Rebuilds the patient's state from the store the first time it is seen.
    /// False only when shutting down with the database unavailable.
    async fn ensure_loaded(&mut self, patient: &PatientId, now: DateTime<Utc>, events: &mut Vec<AlertEvent>) -> bool {
        if self.loaded.contains(patient) {
            return true;
        }
        self.load_many(&[(patient.clone(), now)], events).await
    }

    /// Rebuilds the state of patients not loaded yet, each as of its own
    /// `now` (the `received_at` of its first message, or the wall clock for
    /// eager loads), [`LOAD_CHUNK`] patients per store call. False only when
    /// shutting down with the database unavailable.
    async fn load_many(&mut self, patients: &[(PatientId, DateTime<Utc>)], events: &mut Vec<AlertEvent>) -> bool {
        let retention = chrono::TimeDelta::days(i64::from(self.cfg.engine.retention_days));
        for chunk in patients.chunks(LOAD_CHUNK) {
            let chunk: Vec<&(PatientId, DateTime<Utc>)> =
                chunk.iter().filter(|(p, _)| !self.loaded.contains(p) && !self.discharged.contains(p)).collect();
            let Some(since) = chunk.iter().map(|(_, now)| *now - retention).min() else {
                continue;
            };
            let ids: Vec<PatientId> = chunk.iter().map(|(p, _)| p.clone()).collect();
            let (store, ids) = (&self.store, &ids);
            let load = move || async move { store.rule_state_inputs(ids, since).await };
            let Some(inputs) =
                store_retrying(&self.stats, &self.shutdown, "Loading rule state failed; retrying.", load).await
            else {
                return false;
            };
            for ((patient, now), input) in chunk.into_iter().zip(inputs) {
                self.rebuild(patient, *now, input, events);
            }
        }
        true
    }

    /// Rebuilds one patient's state from what the store holds, as of `now`.
    fn rebuild(
        &mut self,
        patient: &PatientId,
        now: DateTime<Utc>,
        input: RuleStateInputs,
        events: &mut Vec<AlertEvent>,
    ) {
        let since = now - chrono::TimeDelta::days(i64::from(self.cfg.engine.retention_days));
        let RuleStateInputs { rules: row, observations: mut obs, closes } = input;
        let default = PatientRules::for_program(self.cfg.engine.default_program);
        // 0: the program defaults (no rules stored for the patient).
        let version = row.as_ref().map_or(0, |r| u32::try_from(r.version).unwrap_or(0));
        let rules = match &row {
            Some(r) => {
                self.rules_seen.insert(r.patient_id.clone(), r.updated_at);
                parse_rules(patient, &r.rules).unwrap_or_else(|| default.clone())
            }
            None => default.clone(),
        };
        // Later readings (persisted ahead of this worker) arrive from the bus in order.
        obs.retain(|o| o.received_at <= now && o.time >= since);
        let report = match self.engine.replay_versioned(patient, rules, version, obs.iter(), now) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(message = "Stored rules rejected by the engine; using the program defaults.", error = %e);
                tracing::debug!(message = "Stored rules rejected.", patient = %patient.as_str());
                self.engine.replay(patient, default, obs.iter(), now).unwrap_or_default()
            }
        };
        tracing::debug!(
            message = "Patient state rebuilt.",
            patient = %patient.as_str(),
            observations = report.observations,
            open_episodes = report.open_episodes,
            republished = report.recent_events.len()
        );
        let republished_from = events.len();
        events.extend(report.recent_events);
        // Physician closes survive a rebuild: re-apply those whose episode is
        // open again in the replayed state (published already if applied),
        // and do not re-publish the events of closed episodes.
        if !closes.is_empty() {
            let closed: HashSet<&str> = closes.iter().map(|c| c.episode_id.as_str()).collect();
            let mut i = republished_from;
            while i < events.len() {
                if closed.contains(events[i].episode_id.as_str()) {
                    events.remove(i);
                } else {
                    i += 1;
                }
            }
        }
        for c in &closes {
            self.apply_close(patient, c, now, events);
        }
        self.loaded.insert(patient.clone());
        self.stats.rebuilds.fetch_add(1, Ordering::Relaxed);
    }

    /// Applies rules changed since the last poll to loaded patients.
    /// Applies a physician's close to the engine: the episode's RESOLVED event
    /// (unless already published) and the rule quiet until its condition
    /// clears or gets more severe. A close of an episode that is no longer
    /// open (resolved meanwhile) only needs marking.
    fn apply_close(&mut self, patient: &PatientId, c: &EpisodeClose, now: DateTime<Utc>, events: &mut Vec<AlertEvent>) {
        let open = self
            .engine
            .open_episodes(patient)
            .iter()
            .any(|e| e.episode_id == c.episode_id && e.status == EpisodeStatus::Open);
        if open {
            match self.engine.close_episode(patient, &c.rule_id, now) {
                Ok(ev) if !c.applied => {
                    tracing::info!(
                        message = "Episode closed by a physician.",
                        episode_id = %c.episode_id,
                        rule_id = %c.rule_id
                    );
                    events.push(ev);
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(message = "Physician close not applied.", episode_id = %c.episode_id, error = %e)
                }
            }
        }
        if !c.applied {
            self.closes_applied.push(c.episode_id.clone());
        }
    }

    /// Marks applied closes (after their events were published and stored).
    /// On failure they stay pending and are applied again (idempotent).
    async fn mark_closes(&mut self) {
        if self.closes_applied.is_empty() {
            return;
        }
        match self.store.mark_episode_closes_applied(&self.closes_applied).await {
            Ok(()) => self.closes_applied.clear(),
            Err(e) => tracing::warn!(message = "Marking physician closes failed; will retry.", error = %e),
        }
    }

    /// Physician closes for patients owned here (others are applied by their
    /// owner, or when the patient is loaded).
    async fn poll_closes(&mut self, events: &mut Vec<AlertEvent>) {
        let pending = match self.store.pending_episode_closes().await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(message = "Polling physician closes failed; will retry.", error = %e);
                return;
            }
        };
        let now = Utc::now();
        for c in pending {
            let Ok(patient) = PatientId::new(c.patient_id.clone()) else {
                continue;
            };
            if self.loaded.contains(&patient) && !self.closes_applied.contains(&c.episode_id) {
                self.apply_close(&patient, &c, now, events);
            }
        }
    }

    /// True if `patient` is discharged: the message is skipped. A patient in
    /// the discharged set is checked in the store first (a readmission is
    /// noticed at their first message, not at the next poll); if the store
    /// is unavailable the set is trusted.
    async fn skip_discharged(&mut self, patient: &PatientId) -> bool {
        if !self.discharged.contains(patient) {
            return false;
        }
        match self.store.is_discharged(patient).await {
            Ok(false) => {
                self.discharged.remove(patient);
                false
            }
            Ok(true) | Err(_) => {
                self.stats.not_monitored.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("vitalwatch_rules_observations_total", "outcome" => "not_monitored").increment(1);
                true
            }
        }
    }

    /// Refreshes the discharged set; newly discharged patients get their
    /// pending physician closes applied (RESOLVED events into `events`), then
    /// leave the engine. On failure the previous set is kept.
    async fn poll_discharged(&mut self, events: &mut Vec<AlertEvent>) {
        let ids = match self.store.discharged_patients().await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(message = "Polling discharged patients failed; will retry.", error = %e);
                return;
            }
        };
        let now: HashSet<PatientId> = ids.into_iter().filter_map(|p| PatientId::new(p).ok()).collect();
        let leaving: Vec<PatientId> =
            now.iter().filter(|p| !self.discharged.contains(*p) && self.loaded.contains(*p)).cloned().collect();
        if !leaving.is_empty() {
            self.poll_closes(events).await;
            for p in &leaving {
                self.engine.remove_patient(p);
                self.loaded.remove(p);
                tracing::debug!(message = "Discharged patient dropped from the engine.", patient = %p.as_str());
            }
            tracing::info!(message = "Discharged patients dropped from the engine.", patients = leaving.len());
        }
        self.discharged = now;
    }

    async fn poll_rules(&mut self, events: &mut Vec<AlertEvent>) {
        let rows = match self.store.patient_rules_changed_since(self.poll_mark - POLL_MARGIN).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(message = "Polling patient rules failed; will retry.", error = %e);
                return;
            }
        };
        for row in rows {
            self.poll_mark = self.poll_mark.max(row.updated_at);
            if self.rules_seen.get(&row.patient_id) == Some(&row.updated_at) {
                continue;
            }
            let Ok(patient) = PatientId::new(row.patient_id.clone()) else {
                continue;
            };
            if !self.loaded.contains(&patient) {
                continue; // loaded with its current rules when its first message arrives
            }
            self.rules_seen.insert(row.patient_id.clone(), row.updated_at);
            let Some(rules) = parse_rules(&patient, &row.rules) else {
                continue;
            };
            let version = u32::try_from(row.version).unwrap_or(0);
            match self.engine.set_versioned_rules(&patient, rules, version, Utc::now()) {
                Ok(ev) => {
                    events.extend(ev);
                    self.stats.rule_updates.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(message = "Patient rules updated.", patient = %patient.as_str());
                }
                Err(e) => {
                    tracing::warn!(message = "Changed rules rejected by the engine; previous rules kept.", error = %e);
                    tracing::debug!(message = "Changed rules rejected.", patient = %patient.as_str());
                }
            }
        }
    }

    /// Publishes and awaits delivery of every event. False only when shutting
    /// down with the bus unavailable.
    async fn publish(&self, producer: &dyn Producer, events: &[AlertEvent]) -> bool {
        let topic = self.cfg.alerts_topic.as_str();
        let on_retry = |e: &vitalwatch_platform::bus::BusError, _| {
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(message = "Publishing alert events failed; retrying.", error = %e);
        };
        let send = move || publish_once(producer, topic, events);
        match retry(&RETRY_BACKOFF, Some(&self.shutdown), AlwaysTransient, on_retry, send).await {
            Ok(()) => {
                self.stats.events_published.fetch_add(events.len() as u64, Ordering::Relaxed);
                for e in events {
                    metrics::counter!(
                        "vitalwatch_rules_alert_events_total",
                        "kind" => e.kind().as_str_name(),
                        "severity" => e.severity().as_str_name(),
                        "rule_kind" => e.rule_kind.clone()
                    )
                    .increment(1);
                    // No patient data: ids of the episode, the event and the reading's trace.
                    tracing::info!(
                        message = "Alert event published.",
                        trace_id = %e.trace_id,
                        episode_id = %e.episode_id,
                        event_id = %e.event_id,
                        rule_id = %e.rule_id,
                        kind = e.kind().as_str_name(),
                        severity = e.severity().as_str_name()
                    );
                }
                true
            }
            Err(_) => false,
        }
    }

    /// Stores the events and their episodes in one transaction; the number of
    /// new events. If the database refuses the data for good, stores them one
    /// by one and dead-letters the refused ones. `None` only when shutting
    /// down with the database down (or before a dead letter was taken).
    async fn record(&self, events: &[AlertEvent]) -> Option<u64> {
        match self.record_retrying(events).await? {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::warn!(
                    message = "The database refused alert events; storing them one by one.",
                    events = events.len(),
                    error = %e
                );
                let mut new = 0;
                for ev in events {
                    match self.record_retrying(std::slice::from_ref(ev)).await? {
                        Ok(n) => new += n,
                        Err(e) => {
                            self.stats.refused_events.fetch_add(1, Ordering::Relaxed);
                            let m = vitalwatch_platform::bus::Message {
                                topic: self.cfg.alerts_topic.clone(),
                                partition: -1,
                                offset: -1,
                                key: Some(ev.patient_id.clone().into_bytes()),
                                payload: ev.encode_to_vec(),
                            };
                            let reason = DeadReason::PermanentStoreError;
                            self.dead_letters.send(&m, reason, &e.to_string(), &self.shutdown).await.ok()?;
                        }
                    }
                }
                Some(new)
            }
        }
    }

    /// [`Store::record_alert_events`], retried until it succeeds or the data
    /// is refused for good (`Some(Err)`); `None` when shutting down.
    async fn record_retrying(&self, events: &[AlertEvent]) -> Option<Result<u64, StoreError>> {
        let store = &self.store;
        let record = move || async move {
            match store.record_alert_events(events).await {
                Err(e @ StoreError::Rejected(_)) => Ok(Err(e)),
                other => other.map(Ok),
            }
        };
        store_retrying(&self.stats, &self.shutdown, "Storing alert events failed; retrying.", record).await
    }
}

async fn publish_once(
    producer: &dyn Producer,
    topic: &str,
    events: &[AlertEvent],
) -> Result<(), vitalwatch_platform::bus::BusError> {
    let group = vitalwatch_platform::bus::DeliveryGroup::new();
    for e in events {
        producer.send_grouped(&group, topic, e.patient_id.as_bytes(), e.encode_to_vec()).await?;
    }
    group.delivered().await
}

fn parse_rules(patient: &PatientId, json: &str) -> Option<PatientRules> {
    match serde_json::from_str::<PatientRules>(json) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(message = "Stored patient rules do not parse; ignored.", error = %e);
            tracing::debug!(message = "Unparsable rules.", patient = %patient.as_str());
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    #[test]
    fn partitions_behind_counts_where_persist_has_not_reached_our_offset() {
        // Nothing committed by us: nothing to wait for, whatever persist did.
        assert_eq!(partitions_behind(&[None, None], &[None, Some(5)]), 0);
        // Persist at or past our offset: caught up.
        assert_eq!(partitions_behind(&[Some(10), Some(3)], &[Some(10), Some(7)]), 0);
        // Persist behind, or never committed where we did.
        assert_eq!(partitions_behind(&[Some(10), Some(3), Some(1)], &[Some(9), None, Some(1)]), 2);
    }

    #[test]
    fn backlog_ticks_at_the_consumed_time() {
        assert_eq!(tick_now(false, Some(t(10)), t(500), None), t(10));
    }

    #[test]
    fn caught_up_ticks_at_the_wall_clock_never_before_what_was_consumed() {
        assert_eq!(tick_now(true, Some(t(10)), t(500), None), t(500));
        assert_eq!(tick_now(true, Some(t(600)), t(500), None), t(600), "ingest clock ahead");
        assert_eq!(tick_now(true, None, t(500), None), t(500));
        assert_eq!(tick_now(false, None, t(500), None), t(500));
    }

    #[test]
    fn tick_time_never_goes_backwards() {
        assert_eq!(tick_now(false, Some(t(10)), t(500), Some(t(400))), t(400));
    }

    #[test]
    fn clock_schedules_and_tracks_batches() {
        let start = Instant::now();
        let mut c = TickClock::new(Duration::from_secs(60), start);
        assert!(!c.due(start));
        assert!(c.due(start + Duration::from_secs(60)));
        c.saw(t(5));
        c.saw(t(3));
        c.batch(100, 100); // full batch: backlog
        assert_eq!(c.take(start + Duration::from_secs(60), t(1000)), t(5));
        assert!(!c.due(start + Duration::from_secs(61)));
        c.batch(3, 100); // caught up
        assert_eq!(c.take(start + Duration::from_secs(120), t(1000)), t(1000));
        c.batch(100, 100);
        assert_eq!(c.take(start + Duration::from_secs(180), t(2000)), t(1000), "monotonic");
    }
}
