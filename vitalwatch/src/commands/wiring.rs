//! Builds the backends a role needs from the settings.

use std::sync::Arc;

use anyhow::Context as _;
use vitalwatch_ingest::worker::Outputs;
use vitalwatch_platform::bus::kafka::{KafkaConsumer, KafkaProducer, ensure_topics};
use vitalwatch_platform::bus::memory::MemoryBus;
use vitalwatch_platform::bus::{Consumer, Producer};
use vitalwatch_platform::config::{BusKind, Settings};

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
                    s.bus.device_status_topic.as_str(),
                    s.bus.alerts_topic.as_str(),
                ];
                let mut delay = std::time::Duration::from_millis(250);
                for attempt in 1..=8 {
                    match ensure_topics(&s.bus, &topics).await {
                        Ok(()) => break,
                        Err(e) if attempt < 8 => {
                            tracing::warn!(message = "Kafka topics not ready; retrying.", error = %e);
                            tokio::time::sleep(delay).await;
                            delay *= 2;
                        }
                        Err(e) => return Err(e).context("creating the Kafka topics"),
                    }
                }
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

    /// A consumer-group member.
    pub fn consumer(&self, s: &Settings, group: &str, topics: &[&str]) -> anyhow::Result<Box<dyn Consumer>> {
        Ok(match self {
            Bus::Memory(m) => Box::new(m.consumer(group, topics)),
            Bus::Kafka => Box::new(KafkaConsumer::new(&s.bus, group, &instance_name(), topics)?),
        })
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
