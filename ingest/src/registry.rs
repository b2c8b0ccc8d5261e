//! The registry as ingest sees it: a snapshot refreshed by a background task,
//! so that the processing loop never waits on the database.
//!
//! - [`SharedRegistry`] holds the current snapshot and runs the refresher
//!   ([`SharedRegistry::spawn_refresher`]): a reload every
//!   `ingest.registry_refresh_secs`, and on demand when a message names an
//!   unknown id (requests are coalesced, at most one reload per
//!   `ingest.registry_min_refresh_ms`, with exponential backoff while the
//!   database fails). Each reload is bounded by the database timeouts; a
//!   failed or timed-out reload keeps the previous snapshot.
//! - [`Gate`] decides, on the hot path and without I/O, what to do with a
//!   message whose outcome could change with a fresher registry (an unknown
//!   device or patient, a device without enrolment): reject it now (the
//!   registry was reloaded after it arrived, the id was confirmed unknown a
//!   moment ago — the negative cache —, the database is failing, or too many
//!   messages already wait), or hold it until the reload it asked for
//!   completes, at most `ingest.registry_hold_ms`.
//!
//! A held message stays in its place in the processing order: the messages
//! after it are processed and produced meanwhile, and only their MQTT
//! acknowledgments (which go out in arrival order) wait for it, for at most
//! the hold time. No patient data in logs or metrics: ids are hashed in the
//! negative cache.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use vitalwatch_platform::retry::{AlwaysTransient, Backoff, retry};
use vitalwatch_platform::shutdown::CancellationToken;
use vitalwatch_platform::store::{Store, StoreError};
use vitalwatch_schemas::registry::RegistrySnapshot;

/// Most ids in the negative cache; beyond, expired entries are dropped, and
/// then all of them (a flood of distinct unknown ids cannot grow memory).
const NEGATIVE_CAPACITY: usize = 100_000;

/// The outcome of one reload attempt, as published to the processing loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// When the attempt began: a snapshot loaded by it reflects the database
    /// at or after this instant.
    pub started: Instant,
    /// True if it replaced the snapshot.
    pub ok: bool,
}

/// How the background refresher works (from `[ingest]` and `[database]`).
#[derive(Debug, Clone, Copy)]
pub struct RefreshConfig {
    /// Periodic reload.
    pub period: Duration,
    /// Least time between two attempts.
    pub min_interval: Duration,
    /// Bound on one attempt (the store's own timeouts apply inside it).
    pub load_timeout: Duration,
    /// Longest wait after failures (backoff doubles from `min_interval`).
    pub max_backoff: Duration,
}

struct Inner {
    current: RwLock<(Arc<RegistrySnapshot>, Instant)>,
    store: Arc<dyn Store>,
    wake: Notify,
    attempts: watch::Sender<Attempt>,
}

/// A registry snapshot shared with its background refresher.
#[derive(Clone)]
pub struct SharedRegistry {
    inner: Arc<Inner>,
}

impl SharedRegistry {
    /// Loads the registry, retrying until the database answers or `shutdown` fires.
    pub async fn load(store: Arc<dyn Store>, shutdown: &CancellationToken) -> anyhow::Result<Self> {
        let backoff = Backoff::exponential(Duration::from_millis(200), Duration::from_secs(5));
        let on_retry =
            |e: &StoreError, _| tracing::warn!(message = "Registry not available yet; retrying.", error = %e);
        let st = &store;
        let load = move || async move {
            let started = Instant::now();
            st.registry().await.map(|s| (s, started))
        };
        match retry(&backoff, Some(shutdown), AlwaysTransient, on_retry, load).await {
            Ok((s, started)) => Ok(Self::from_snapshot(store, s, started)),
            Err(e) => Err(e.into_inner().into()),
        }
    }

    fn from_snapshot(store: Arc<dyn Store>, s: RegistrySnapshot, started: Instant) -> Self {
        let (attempts, _) = watch::channel(Attempt { started, ok: true });
        metrics::gauge!("vitalwatch_ingest_registry_loaded_timestamp_seconds").set(unix_now());
        SharedRegistry {
            inner: Arc::new(Inner {
                current: RwLock::new((Arc::new(s), started)),
                store,
                wake: Notify::new(),
                attempts,
            }),
        }
    }

    /// The current snapshot.
    pub fn get(&self) -> Arc<RegistrySnapshot> {
        self.inner.current.read().unwrap_or_else(|e| e.into_inner()).0.clone()
    }

    /// When the load that produced the current snapshot began.
    pub fn loaded_at(&self) -> Instant {
        self.inner.current.read().unwrap_or_else(|e| e.into_inner()).1
    }

    /// Asks the refresher for a reload (coalesced with pending requests; never waits).
    pub fn request_refresh(&self) {
        self.inner.wake.notify_one();
    }

    /// Reload attempts as they complete.
    pub fn attempts(&self) -> watch::Receiver<Attempt> {
        self.inner.attempts.subscribe()
    }

    /// One reload attempt bounded by `timeout`; keeps the previous snapshot
    /// on failure. Returns true if the snapshot was replaced.
    pub async fn reload(&self, timeout: Duration) -> bool {
        let started = Instant::now();
        let error = match tokio::time::timeout(timeout, self.inner.store.registry()).await {
            Ok(Ok(s)) => {
                *self.inner.current.write().unwrap_or_else(|e| e.into_inner()) = (Arc::new(s), started);
                metrics::counter!("vitalwatch_ingest_registry_reloads_total", "outcome" => "ok").increment(1);
                metrics::gauge!("vitalwatch_ingest_registry_loaded_timestamp_seconds").set(unix_now());
                self.inner.attempts.send_replace(Attempt { started, ok: true });
                return true;
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("timed out after {} ms", timeout.as_millis()),
        };
        metrics::counter!("vitalwatch_ingest_registry_reloads_total", "outcome" => "failed").increment(1);
        tracing::warn!(message = "Registry reload failed; keeping the previous snapshot.", error = %error);
        self.inner.attempts.send_replace(Attempt { started, ok: false });
        false
    }

    /// Starts the background refresher; it ends when `shutdown` fires.
    pub fn spawn_refresher(&self, cfg: RefreshConfig, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut last = Instant::now();
            let mut failures: u32 = 0;
            // Doubling from `min_interval` (at least 100 ms) after the first failure.
            let first = cfg.min_interval.max(Duration::from_millis(100)).saturating_mul(2);
            let schedule = Backoff::exponential(first, cfg.max_backoff).with_jitter(0.0);
            loop {
                let backoff = if failures == 0 { Duration::ZERO } else { schedule.nominal(failures.min(10) - 1) };
                let periodic = last + cfg.period.max(backoff);
                tokio::select! {
                    _ = tokio::time::sleep_until(periodic) => {}
                    _ = this.inner.wake.notified() => {
                        // On demand: not more often than `min_interval`, nor
                        // during a backoff.
                        let earliest = last + cfg.min_interval.max(backoff);
                        tokio::select! {
                            _ = tokio::time::sleep_until(earliest) => {}
                            _ = shutdown.cancelled() => return,
                        }
                    }
                    _ = shutdown.cancelled() => return,
                }
                last = Instant::now();
                if this.reload(cfg.load_timeout).await {
                    failures = 0;
                } else {
                    failures = failures.saturating_add(1);
                }
            }
        })
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// What to do with a message that depends on the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Its outcome with the current snapshot is final: produce it now.
    Final,
    /// Hold it until a reload that began after it arrived completes (or the
    /// hold time passes), then process it again.
    Hold,
    /// It should be held, but `max_held` messages already are: the caller
    /// must not decide it now (a fresher registry may know its id) and must
    /// not hold more; it pushes back on its sender instead (MQTT: stop
    /// reading until held messages are released; HTTP: 503, send again).
    Full,
}

/// How the [`Gate`] decides (from `[ingest]`).
#[derive(Debug, Clone, Copy)]
pub struct GateConfig {
    /// Longest hold.
    pub hold: Duration,
    /// Most messages held at once.
    pub max_held: usize,
    /// How long a confirmed-unknown id is rejected without asking for a reload.
    pub negative_ttl: Duration,
}

/// The hot-path side of the registry: decides without I/O whether a message
/// whose outcome depends on the registry is held or final, and remembers ids
/// a reload confirmed unknown (the negative cache, keyed by a hash of the
/// MQTT topic).
pub struct Gate {
    registry: SharedRegistry,
    cfg: GateConfig,
    negative: HashMap<u64, Instant>,
}

impl Gate {
    /// A gate over `registry`.
    pub fn new(registry: SharedRegistry, cfg: GateConfig) -> Gate {
        Gate { registry, cfg, negative: HashMap::new() }
    }

    /// The hold bound.
    pub fn hold(&self) -> Duration {
        self.cfg.hold
    }

    /// Most messages held at once.
    pub fn max_held(&self) -> usize {
        self.cfg.max_held
    }

    /// Decides for a message on `topic` that looked at the registry at
    /// `arrived` and found an unknown id, with `held` messages already held.
    /// Asks for a reload when useful.
    pub fn on_miss(&mut self, topic: &str, arrived: Instant, held: usize) -> Verdict {
        if self.registry.loaded_at() >= arrived {
            // A reload that began after the message arrived already confirmed it.
            return Verdict::Final;
        }
        let key = key(topic);
        if self.negative.get(&key).is_some_and(|t| arrived.saturating_duration_since(*t) < self.cfg.negative_ttl) {
            metrics::counter!("vitalwatch_ingest_registry_negative_hits_total").increment(1);
            return Verdict::Final;
        }
        self.registry.request_refresh();
        let failing = !self.registry.inner.attempts.borrow().ok;
        if failing || self.cfg.hold.is_zero() || self.cfg.max_held == 0 {
            metrics::counter!("vitalwatch_ingest_registry_not_held_total").increment(1);
            return Verdict::Final;
        }
        if held >= self.cfg.max_held {
            metrics::counter!("vitalwatch_ingest_registry_held_full_total").increment(1);
            return Verdict::Full;
        }
        Verdict::Hold
    }

    /// Records that a reload (or the hold bound) left `topic`'s id unknown:
    /// further messages on it are final at once for the negative TTL.
    /// `confirmed` is false when no reload succeeded (the database failing):
    /// then nothing is cached, so the id is looked up again once it answers.
    pub fn confirm_miss(&mut self, topic: &str, confirmed: bool) {
        if !confirmed {
            return;
        }
        let now = Instant::now();
        if self.negative.len() >= NEGATIVE_CAPACITY {
            let ttl = self.cfg.negative_ttl;
            self.negative.retain(|_, t| now.saturating_duration_since(*t) < ttl);
            if self.negative.len() >= NEGATIVE_CAPACITY {
                self.negative.clear();
            }
        }
        self.negative.insert(key(topic), now);
    }
}

fn key(topic: &str) -> u64 {
    // Ids are never kept in clear (no identifiers in memory dumps of the cache).
    let mut h = vitalwatch_schemas::domain::StableHasher::new();
    h.write(topic.as_bytes());
    h.finish64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use chrono::{DateTime, Utc};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use vitalwatch_platform::store::{
        EpisodeClose, MigrationReport, StoreError, StoredAlert, StoredObservation, StoredPatientRules,
    };
    use vitalwatch_schemas::{DeviceId, Observation, PatientId, proto};

    /// A store whose registry call hangs while `hung` is set.
    #[derive(Default)]
    struct SlowStore {
        hung: AtomicBool,
        calls: AtomicUsize,
    }

    #[async_trait]
    impl Store for SlowStore {
        async fn ping(&self) -> Result<(), StoreError> {
            Ok(())
        }
        async fn migrate(&self) -> Result<MigrationReport, StoreError> {
            Ok(MigrationReport::default())
        }
        async fn insert_observations(&self, _: &[Observation]) -> Result<u64, StoreError> {
            Ok(0)
        }
        async fn registry(&self) -> Result<RegistrySnapshot, StoreError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.hung.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            Ok(RegistrySnapshot::default())
        }
        async fn add_patient(&self, _: &PatientId) -> Result<bool, StoreError> {
            Ok(true)
        }
        async fn add_device(&self, _: &DeviceId, _: &str) -> Result<bool, StoreError> {
            Ok(true)
        }
        async fn enrol(&self, _: &DeviceId, _: &PatientId, _: DateTime<Utc>) -> Result<(), StoreError> {
            Ok(())
        }
        async fn unenrol(&self, _: &DeviceId, _: DateTime<Utc>) -> Result<(), StoreError> {
            Ok(())
        }
        async fn retire_device(&self, _: &DeviceId, _: DateTime<Utc>) -> Result<(), StoreError> {
            Ok(())
        }
        async fn grant_backfill(
            &self,
            _: &DeviceId,
            _: &PatientId,
            _: DateTime<Utc>,
            _: &str,
        ) -> Result<(), StoreError> {
            Ok(())
        }
        async fn observations(&self, _: &PatientId, _: i64) -> Result<Vec<StoredObservation>, StoreError> {
            Ok(Vec::new())
        }
        async fn count_observations(&self) -> Result<i64, StoreError> {
            Ok(0)
        }
        async fn recent_observations(&self, _: &PatientId, _: DateTime<Utc>) -> Result<Vec<Observation>, StoreError> {
            Ok(Vec::new())
        }
        async fn set_patient_rules(&self, _: &PatientId, _: &str) -> Result<(), StoreError> {
            Ok(())
        }
        async fn patient_rules(&self, _: &PatientId) -> Result<Option<StoredPatientRules>, StoreError> {
            Ok(None)
        }
        async fn patient_rules_changed_since(&self, _: DateTime<Utc>) -> Result<Vec<StoredPatientRules>, StoreError> {
            Ok(Vec::new())
        }
        async fn pending_episode_closes(&self) -> Result<Vec<EpisodeClose>, StoreError> {
            Ok(Vec::new())
        }
        async fn episode_closes(&self, _: &PatientId) -> Result<Vec<EpisodeClose>, StoreError> {
            Ok(Vec::new())
        }
        async fn mark_episode_closes_applied(&self, _: &[String]) -> Result<(), StoreError> {
            Ok(())
        }
        async fn record_alert_events(&self, _: &[proto::AlertEvent]) -> Result<u64, StoreError> {
            Ok(0)
        }
        async fn alerts(&self, _: Option<&PatientId>) -> Result<Vec<StoredAlert>, StoreError> {
            Ok(Vec::new())
        }
        async fn upsert_device_statuses(
            &self,
            _: &[vitalwatch_platform::store::DeviceStatusRow],
        ) -> Result<u64, StoreError> {
            Ok(0)
        }
        async fn device_statuses(
            &self,
            _: &[String],
        ) -> Result<Vec<vitalwatch_platform::store::DeviceStatusRow>, StoreError> {
            Ok(Vec::new())
        }
    }

    fn cfg() -> GateConfig {
        GateConfig { hold: Duration::from_secs(2), max_held: 2, negative_ttl: Duration::from_millis(300) }
    }

    async fn pause() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    #[tokio::test]
    async fn misses_are_held_then_cached_and_a_failing_database_is_not_waited_for() {
        let store = Arc::new(SlowStore::default());
        let reg = SharedRegistry::load(store.clone(), &CancellationToken::new()).await.unwrap();
        let mut gate = Gate::new(reg.clone(), cfg());
        pause().await;
        let t = "vitalwatch/v1/devices/ghost/readings/json";
        // Loaded before the message arrived: hold (and a reload is asked for).
        assert_eq!(gate.on_miss(t, Instant::now(), 0), Verdict::Hold);
        assert_eq!(gate.on_miss(t, Instant::now(), 2), Verdict::Full, "at most max_held, then push back");
        // A reload that began after the arrival confirms it.
        let arrived = Instant::now();
        pause().await;
        assert!(reg.reload(Duration::from_secs(5)).await);
        assert_eq!(gate.on_miss(t, arrived, 0), Verdict::Final);
        // Confirmed: the negative cache answers for the TTL, then lets it through again.
        gate.confirm_miss(t, true);
        pause().await;
        assert_eq!(gate.on_miss(t, Instant::now(), 0), Verdict::Final);
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert_eq!(gate.on_miss(t, Instant::now(), 0), Verdict::Hold);
        // Not confirmed (no reload succeeded): not cached.
        gate.confirm_miss("vitalwatch/v1/devices/other/readings/json", false);
        assert_eq!(gate.on_miss("vitalwatch/v1/devices/other/readings/json", Instant::now(), 0), Verdict::Hold);
        // A hung database: the reload times out, and misses are not held meanwhile.
        store.hung.store(true, Ordering::SeqCst);
        assert!(!reg.reload(Duration::from_millis(100)).await);
        assert_eq!(gate.on_miss("vitalwatch/v1/devices/third/readings/json", Instant::now(), 0), Verdict::Final);
    }

    #[tokio::test]
    async fn refresh_requests_are_coalesced_and_back_off_while_failing() {
        let store = Arc::new(SlowStore::default());
        let reg = SharedRegistry::load(store.clone(), &CancellationToken::new()).await.unwrap();
        let shutdown = CancellationToken::new();
        let cfg = RefreshConfig {
            period: Duration::from_secs(30),
            min_interval: Duration::from_millis(50),
            load_timeout: Duration::from_millis(50),
            max_backoff: Duration::from_secs(30),
        };
        let task = reg.spawn_refresher(cfg, shutdown.clone());
        let mut attempts = reg.attempts();
        for _ in 0..100 {
            reg.request_refresh();
        }
        tokio::time::timeout(Duration::from_secs(10), attempts.changed()).await.unwrap().unwrap();
        assert!(attempts.borrow_and_update().ok);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(store.calls.load(Ordering::SeqCst), 2, "100 requests, one reload (after the initial load)");
        // Failing: each attempt times out, and the next waits longer and longer.
        store.hung.store(true, Ordering::SeqCst);
        let mut starts = Vec::new();
        for _ in 0..4 {
            reg.request_refresh();
            tokio::time::timeout(Duration::from_secs(30), attempts.changed()).await.unwrap().unwrap();
            let a = *attempts.borrow_and_update();
            assert!(!a.ok);
            starts.push(a.started);
        }
        let gaps: Vec<Duration> = starts.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.windows(2).all(|g| g[1] > g[0]), "no backoff: {gaps:?}");
        shutdown.cancel();
        task.await.unwrap();
    }
}
