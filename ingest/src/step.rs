//! The per-message work shared by the two ingest drivers, the MQTT one
//! ([`crate::worker`]) and the HTTP one ([`crate::http`]): the sender's rate
//! limit, the pure pipeline ([`crate::pipeline::process`]), the registry gate,
//! the dedup of observation ids, and producing the observations, the one dead
//! letter and the device status to the bus. Both drivers of one process share
//! one [`Core`]: the same rate limits, the same dedup, the same negative cache.
//!
//! What differs is how a message waits and is answered: MQTT keeps messages
//! in arrival order and acknowledges after the bus; HTTP answers each request
//! after the bus acknowledged what it produced.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use chrono::{DateTime, Utc};
use foldhash::{HashSet, HashSetExt as _};
use prost::Message as _;
use vitalwatch_platform::bus::{BusError, DeliveryGroup};
use vitalwatch_schemas::ObservationId;

use crate::dedup::Dedup;
use crate::normalize::Limits;
use crate::pipeline::{Processed, dead_letter, process, rate_limited};
use crate::ratelimit::{RateLimiter, sender_key};
use crate::registry::{Gate, SharedRegistry};
use crate::worker::{IngestStats, Outputs};

/// Observation ids already produced (the dedup) or being produced.
struct Seen {
    dedup: Dedup,
    /// Ids produced but not yet acknowledged by the bus: a duplicate arriving
    /// meanwhile is not produced again (the original is delivered or retried).
    inflight: HashSet<u128>,
}

/// What one message put on the bus.
pub struct Emitted {
    /// Its records (observations, dead letter, status), awaited together
    /// (a record the bus refused outright fails the group).
    group: DeliveryGroup,
    /// The observations produced (duplicates left out).
    pub ids: Vec<ObservationId>,
    /// Observations left out as already produced.
    pub duplicates: usize,
}

impl Emitted {
    /// Resolves when the bus acknowledged every record: the first error, if any.
    pub async fn delivered(self) -> (Vec<ObservationId>, Result<(), BusError>) {
        (self.ids, self.group.delivered().await)
    }
}

/// The shared per-message state and logic of the ingest role.
pub struct Core {
    /// Where the output goes.
    pub outputs: Outputs,
    /// Counters (no patient data).
    pub stats: Arc<IngestStats>,
    /// Validation limits.
    pub limits: Limits,
    /// The registry snapshot and its refresher.
    pub registry: SharedRegistry,
    limiter: Mutex<RateLimiter>,
    gate: Mutex<Gate>,
    /// The gate's hold bound and hold set size (constants: read without its lock).
    hold: std::time::Duration,
    max_held: usize,
    seen: Mutex<Seen>,
    /// `vitalwatch_ingest_observations_total`, registered once.
    observations: metrics::Counter,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // No code path panics while holding these locks; a poisoned one is still consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Core {
    /// A core over its parts.
    pub fn new(
        outputs: Outputs,
        stats: Arc<IngestStats>,
        limits: Limits,
        registry: SharedRegistry,
        limiter: RateLimiter,
        gate: Gate,
        dedup_capacity: usize,
    ) -> Core {
        Core {
            outputs,
            stats,
            limits,
            registry,
            limiter: Mutex::new(limiter),
            hold: gate.hold(),
            max_held: gate.max_held(),
            gate: Mutex::new(gate),
            seen: Mutex::new(Seen { dedup: Dedup::new(dedup_capacity), inflight: HashSet::new() }),
            observations: metrics::counter!("vitalwatch_ingest_observations_total"),
        }
    }

    /// The sender's rate limit, then the pipeline against the current
    /// registry snapshot. A sender over its limit gets one `rate_limited`
    /// rejection, and its payload is not decoded. `check_rate` is false for
    /// retries of a message already let through (not counted again).
    pub fn admit(&self, topic: &str, payload: &[u8], received_at: DateTime<Utc>, check_rate: bool) -> Processed {
        if check_rate && sender_key(topic).is_some_and(|k| !locked(&self.limiter).allow(k, Instant::now())) {
            return rate_limited(topic, payload);
        }
        self.reprocess(topic, payload, received_at)
    }

    /// The pipeline again, with the current snapshot (after a registry reload).
    pub fn reprocess(&self, topic: &str, payload: &[u8], received_at: DateTime<Utc>) -> Processed {
        process(topic, payload, received_at, &self.limits, &self.registry.get())
    }

    /// The registry gate ([`Gate::on_miss`]).
    pub fn on_miss(&self, topic: &str, arrived: tokio::time::Instant, held: usize) -> crate::registry::Verdict {
        locked(&self.gate).on_miss(topic, arrived, held)
    }

    /// Most messages held at once for a registry reload (`ingest.registry_max_held`).
    pub fn max_held(&self) -> usize {
        self.max_held
    }

    /// The registry gate ([`Gate::confirm_miss`]).
    pub fn confirm_miss(&self, topic: &str, confirmed: bool) {
        locked(&self.gate).confirm_miss(topic, confirmed);
    }

    /// The longest hold of a message waiting for a registry reload.
    pub fn hold(&self) -> std::time::Duration {
        self.hold
    }

    /// Produces a processed message: its observations not already produced
    /// (unless `retry`: a message already let through is produced again in
    /// full), its one dead letter (every rejection, one copy of the payload)
    /// and its device status. Counts rejections.
    pub async fn emit(
        &self,
        topic: &str,
        payload: &[u8],
        received_at: DateTime<Utc>,
        p: &Processed,
        retry: bool,
    ) -> Emitted {
        let out = &self.outputs;
        // One group for the message's records: one wake-up when the bus took them all.
        // A record refused outright fails the group: its error is not needed here.
        let group = DeliveryGroup::new();
        let mut ids = Vec::with_capacity(p.observations.len());
        let mut duplicates = 0;
        for o in &p.observations {
            if !self.claim(o.id, retry) {
                duplicates += 1;
                self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("vitalwatch_ingest_duplicates_total").increment(1);
                continue;
            }
            ids.push(o.id);
            let bytes = o.to_proto().encode_to_vec();
            let key = o.patient_id.as_str().as_bytes();
            let _ = out.producer.send_grouped(&group, &out.observations_topic, key, bytes).await;
        }
        for r in &p.rejections {
            self.stats.count_rejection(r.reason);
        }
        if let Some(dl) = dead_letter(topic, payload, received_at, p) {
            metrics::counter!("vitalwatch_ingest_dead_letters_total").increment(1);
            let _ = out.producer.send_grouped(&group, &out.rejected_topic, topic.as_bytes(), dl.encode_to_vec()).await;
        }
        if let Some(s) = &p.status {
            let key = if s.patient_id.is_empty() { s.device_id.clone() } else { s.patient_id.clone() };
            let _ = out.producer.send_grouped(&group, &out.status_topic, key.as_bytes(), s.encode_to_vec()).await;
        }
        if !p.observations.is_empty() {
            tracing::debug!(message = "Message accepted.", trace_id = %p.trace_id, observations = p.observations.len());
        }
        if !p.rejections.is_empty() {
            tracing::debug!(
                message = "Message rejected.",
                trace_id = %p.trace_id,
                reason = p.rejections[0].reason.as_str(),
                rejections = p.rejections.len()
            );
        }
        Emitted { group, ids, duplicates }
    }

    /// True if `id` is to be produced now (and marks it in flight).
    fn claim(&self, id: ObservationId, retry: bool) -> bool {
        let mut seen = locked(&self.seen);
        if !retry && (seen.dedup.contains(id) || seen.inflight.contains(&id.0)) {
            return false;
        }
        seen.inflight.insert(id.0);
        true
    }

    /// The bus acknowledged `ids`: remembered as produced, counted.
    pub fn delivered(&self, ids: Vec<ObservationId>) {
        let n = ids.len() as u64;
        {
            let mut seen = locked(&self.seen);
            for id in ids {
                seen.inflight.remove(&id.0);
                seen.dedup.insert(id);
            }
        }
        self.stats.observations.fetch_add(n, Ordering::Relaxed);
        self.observations.increment(n);
    }

    /// The bus did not acknowledge `ids` and the sender will send them again
    /// (HTTP: 503): no longer in flight, not remembered as produced.
    pub fn abandoned(&self, ids: &[ObservationId]) {
        let mut seen = locked(&self.seen);
        for id in ids {
            seen.inflight.remove(&id.0);
        }
    }
}
