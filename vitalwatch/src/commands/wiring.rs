//! Builds the backends a role needs from the settings.

use std::sync::Arc;
use std::time::Duration;

use crate::config::Settings;
use anyhow::Context as _;
use vitalwatch_ingest::worker::Outputs;
use vitalwatch_platform::bus::dead_letter::DeadLetters;
use vitalwatch_platform::bus::kafka::{KafkaConsumer, KafkaProbe, KafkaProducer, ensure_topics};
use vitalwatch_platform::bus::memory::MemoryBus;
use vitalwatch_platform::bus::watch::{Progress, Watched};
use vitalwatch_platform::bus::{BusError, Consumer, Producer};
use vitalwatch_platform::config::BusKind;
use vitalwatch_platform::ops::{self, Readiness};
use vitalwatch_platform::retry::{AlwaysTransient, Backoff, RetryError, retry};
use vitalwatch_platform::shutdown::CancellationToken;
use vitalwatch_platform::store::Store;

/// The bus of this process.
#[derive(Clone)]
pub enum Bus {
    /// Kafka.
    Kafka,
    /// The in-process log.
    Memory(MemoryBus),
}

/// The process's identity on the bus and the broker.
pub fn instance_name() -> String {
    std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "vitalwatch".into())
}

impl Bus {
    /// Opens the configured bus; for Kafka, creates the topics if needed.
    pub async fn open(s: &Settings) -> anyhow::Result<Bus> {
        match s.bus.kind {
            BusKind::Memory => Ok(Bus::Memory(MemoryBus::new(100_000))),
            BusKind::Kafka => {
                let topics = [
                    s.bus.observations_topic.as_str(),
                    s.bus.rejected_topic.as_str(),
                    s.bus.dead_letter_topic.as_str(),
                    s.bus.device_status_topic.as_str(),
                    s.bus.alerts_topic.as_str(),
                ];
                // 8 attempts, from 250 ms doubling (about 30 s in all): the cluster may be starting.
                let backoff =
                    Backoff::exponential(Duration::from_millis(250), Duration::from_secs(16)).with_max_attempts(8);
                let on_retry =
                    |e: &BusError, _| tracing::warn!(message = "Kafka topics not ready; retrying.", error = %e);
                let (bus, topics) = (&s.bus, &topics[..]);
                retry(&backoff, None, AlwaysTransient, on_retry, move || ensure_topics(bus, topics))
                    .await
                    .map_err(RetryError::into_inner)
                    .context("creating the Kafka topics")?;
                Ok(Bus::Kafka)
            }
        }
    }

    /// A producer.
    pub fn producer(&self, s: &Settings) -> anyhow::Result<Arc<dyn Producer>> {
        Ok(match self {
            Bus::Memory(m) => Arc::new(m.clone()),
            Bus::Kafka => Arc::new(KafkaProducer::new(&s.bus, &instance_name())?),
        })
    }

    /// A producer for a few urgent messages (alert events): no batching delay.
    pub fn urgent_producer(&self, s: &Settings) -> anyhow::Result<Arc<dyn Producer>> {
        Ok(match self {
            Bus::Memory(m) => Arc::new(m.clone()),
            Bus::Kafka => Arc::new(KafkaProducer::low_latency(&s.bus, &instance_name())?),
        })
    }

    /// A consumer-group member.
    pub fn consumer(&self, s: &Settings, group: &str, topics: &[&str]) -> anyhow::Result<Box<dyn Consumer>> {
        Ok(match self {
            Bus::Memory(m) => Box::new(m.consumer(group, topics)),
            Bus::Kafka => Box::new(KafkaConsumer::new(&s.bus, group, &instance_name(), topics)?),
        })
    }

    /// A consumer-group member whose progress is recorded in `progress`
    /// (see [`Checks::consumer`]).
    pub fn watched_consumer(
        &self,
        s: &Settings,
        group: &str,
        topics: &[&str],
        progress: &Arc<Progress>,
    ) -> anyhow::Result<Box<dyn Consumer>> {
        Ok(Box::new(Watched::new(self.consumer(s, group, topics)?, progress.clone())))
    }

    /// The dead letters of consumer role `role`, to `bus.dead_letter_topic`.
    pub fn dead_letters(&self, s: &Settings, role: &'static str) -> anyhow::Result<DeadLetters> {
        Ok(DeadLetters::new(self.producer(s)?, s.bus.dead_letter_topic.clone(), role))
    }

    /// The ingest outputs on this bus.
    pub fn outputs(&self, s: &Settings) -> anyhow::Result<Outputs> {
        Ok(Outputs {
            producer: self.producer(s)?,
            observations_topic: s.bus.observations_topic.clone(),
            rejected_topic: s.bus.rejected_topic.clone(),
            status_topic: s.bus.device_status_topic.clone(),
        })
    }
}

/// Readiness checks of a role: what it must reach to do its work.
#[derive(Default)]
pub struct Checks {
    readiness: Readiness,
    consumers: Vec<Arc<Progress>>,
}

/// The reason `/readyz` shows for a failed dependency: a fixed word, never the
/// error (which can name hosts, users, database names); the error is logged.
fn not_ready(check: &str, reason: &str, error: &dyn std::fmt::Display) -> String {
    tracing::warn!(message = "Readiness check failed.", check, error = %error);
    reason.to_owned()
}

impl Checks {
    /// No checks yet.
    pub fn new() -> Self {
        Checks::default()
    }

    /// The database answers.
    pub fn database(mut self, store: Arc<dyn Store>) -> Self {
        self.readiness.add("database", move || {
            let store = store.clone();
            async move { store.ping().await.map_err(|e| not_ready("database", "unavailable", &e)) }
        });
        self
    }

    /// The alerting database answers.
    pub fn alert_database(mut self, store: Arc<dyn vitalwatch_alerting::store::AlertStore>) -> Self {
        self.readiness.add("database", move || {
            let store = store.clone();
            async move { store.ping().await.map_err(|e| not_ready("database", "unavailable", &e)) }
        });
        self
    }

    /// The Kafka cluster answers a metadata request (nothing to check for the in-process bus).
    pub fn bus(mut self, s: &Settings) -> anyhow::Result<Self> {
        if s.bus.kind == BusKind::Kafka {
            let probe = KafkaProbe::new(&s.bus, &instance_name())?;
            self.readiness.add("kafka", move || {
                let probe = probe.clone();
                async move { probe.check().await.map_err(|e| not_ready("kafka", "unreachable", &e)) }
            });
        }
        Ok(self)
    }

    /// The MQTT connection is up.
    pub fn mqtt(mut self, connected: Arc<vitalwatch_ingest::worker::IngestStats>) -> Self {
        self.readiness.add("mqtt", move || {
            let up = connected.connected.load(std::sync::atomic::Ordering::Relaxed);
            async move { if up { Ok(()) } else { Err("not connected to the MQTT broker".to_owned()) } }
        });
        self
    }

    /// A consumer role makes progress: not ready once it has had received,
    /// uncommitted records and no commit for `ops.stall_secs`; also publishes
    /// `vitalwatch_consumer_stalled_seconds{role}` (from [`Checks::serve`]).
    pub fn consumer(mut self, s: &Settings, progress: Arc<Progress>) -> Self {
        let stall = std::time::Duration::from_secs(s.ops.stall_secs.max(1));
        let p = progress.clone();
        self.readiness.add(progress.role(), move || {
            let verdict = p.check(stall);
            async move { verdict }
        });
        self.consumers.push(progress);
        self
    }

    /// Serves `/metrics`, `/healthz` and `/readyz` on `ops.listen` until `shutdown`.
    /// Returns the bound address (`None` when `ops.listen` is empty).
    pub async fn serve(
        self,
        s: &Settings,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Option<std::net::SocketAddr>> {
        ops::install_metrics();
        for p in &self.consumers {
            p.spawn_gauge(shutdown.clone());
        }
        Ok(ops::serve(&s.ops, self.readiness, shutdown.clone()).await?.map(|o| o.addr))
    }
}
