//! Dead letters of the consumer roles (`persist`, `rules`, `alerting`): a bus
//! record a role can never process (it does not decode, or the database
//! refuses its data for good) goes to `bus.dead_letter_topic` as a
//! [`proto::DeadLetter`] carrying the original topic, partition, offset, key
//! and payload, the role and the reason; then the partition moves on. Every
//! dead letter is counted in `vitalwatch_dead_letters_total{role,reason}` and
//! logged with its position (never its payload).

use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;
use vitalwatch_schemas::proto;

use super::{BusError, Message, Producer};
use crate::retry::{Backoff, Class, RetryError, retry};
use crate::shutdown::CancellationToken;

/// Sending a dead letter: from 100 ms, doubling, at most 10 s apart.
const SEND_BACKOFF: Backoff = Backoff::exponential(Duration::from_millis(100), Duration::from_secs(10));

/// Why a consumer role gave up on a record: the `reason` of the dead letter
/// and the metric label. Never rename one: tools switch on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeadReason {
    /// The payload is not the message the topic carries.
    Undecodable,
    /// The payload decodes but breaks the contract (an invalid id, a value
    /// the role cannot apply).
    InvalidRecord,
    /// The database refuses the record's data for good (a data exception or
    /// an integrity violation), while other records go in.
    PermanentStoreError,
}

impl DeadReason {
    /// The reason code.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadReason::Undecodable => "undecodable",
            DeadReason::InvalidRecord => "invalid_record",
            DeadReason::PermanentStoreError => "permanent_store_error",
        }
    }

    /// Every reason (metrics pre-registration, docs).
    pub const ALL: [DeadReason; 3] =
        [DeadReason::Undecodable, DeadReason::InvalidRecord, DeadReason::PermanentStoreError];
}

impl std::fmt::Display for DeadReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Longest explanation kept in a dead letter.
const MAX_MESSAGE: usize = 500;

/// Sends a consumer role's dead letters. Clone it to share.
#[derive(Clone)]
pub struct DeadLetters {
    producer: Arc<dyn Producer>,
    topic: String,
    role: &'static str,
}

impl DeadLetters {
    /// Dead letters of `role` (`persist`, `rules`, `alerting`) to `topic`.
    pub fn new(producer: Arc<dyn Producer>, topic: impl Into<String>, role: &'static str) -> Self {
        for r in DeadReason::ALL {
            metrics::counter!("vitalwatch_dead_letters_total", "role" => role, "reason" => r.as_str()).increment(0);
        }
        DeadLetters { producer, topic: topic.into(), role }
    }

    /// The role these dead letters are of.
    pub fn role(&self) -> &'static str {
        self.role
    }

    /// The dead letter of `m` (built, not sent).
    pub fn letter(&self, m: &Message, reason: DeadReason, detail: &str) -> proto::DeadLetter {
        let mut message = detail.to_owned();
        if message.len() > MAX_MESSAGE {
            let mut cut = MAX_MESSAGE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        proto::DeadLetter {
            source_topic: m.topic.clone(),
            partition: m.partition,
            offset: m.offset,
            key: m.key.clone().unwrap_or_default(),
            raw_payload: m.payload.clone(),
            role: self.role.to_owned(),
            reason: reason.as_str().to_owned(),
            message,
            dead_lettered_at_unix_micros: chrono::Utc::now().timestamp_micros(),
        }
    }

    /// Sends the dead letter of `m` and waits until the bus has it, retrying
    /// transient failures with backoff. Call before committing past `m`.
    ///
    /// # Errors
    ///
    /// [`BusError::Closed`] when `shutdown` fires before the bus took it
    /// (then do not commit past `m`: it will be redelivered).
    pub async fn send(
        &self,
        m: &Message,
        reason: DeadReason,
        detail: &str,
        shutdown: &CancellationToken,
    ) -> Result<(), BusError> {
        let mut letter = self.letter(m, reason, detail);
        let key = m.key.clone().unwrap_or_default();
        loop {
            let payload = letter.encode_to_vec();
            // Too large with the envelope: a permanent refusal while it still carries the payload.
            let strippable = !letter.raw_payload.is_empty();
            let classify = move |e: &BusError| match e {
                BusError::Permanent(_) if strippable => Class::Permanent,
                _ => Class::Transient,
            };
            let on_retry = |e: &BusError, _| {
                tracing::warn!(message = "Dead letter not delivered; retrying.", role = self.role, error = %e);
            };
            let (producer, topic, key) = (&self.producer, self.topic.as_str(), key.as_slice());
            let send = || {
                let payload = payload.clone();
                async move { producer.send(topic, key, payload).await?.await }
            };
            match retry(&SEND_BACKOFF, Some(shutdown), classify, on_retry, send).await {
                Ok(()) => break,
                Err(RetryError::Permanent(BusError::Permanent(e))) => {
                    // Keep the position, drop the payload (it stays readable at its offset until retention).
                    tracing::warn!(message = "Dead letter refused; sending it without the payload.", error = %e);
                    letter.raw_payload.clear();
                    letter.message = format!("payload omitted ({e}); {}", letter.message);
                }
                Err(_) => return Err(BusError::Closed),
            }
        }
        metrics::counter!("vitalwatch_dead_letters_total", "role" => self.role, "reason" => reason.as_str())
            .increment(1);
        // Position and reason only: the payload may hold patient data.
        tracing::error!(
            message = "Record dead-lettered.",
            role = self.role,
            reason = reason.as_str(),
            topic = %m.topic,
            partition = m.partition,
            offset = m.offset,
            error = %letter.message
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::memory::MemoryBus;

    #[tokio::test]
    async fn a_dead_letter_carries_the_record_and_the_reason() {
        let bus = MemoryBus::new(100);
        let dl = DeadLetters::new(Arc::new(bus.clone()), "dead", "persist");
        let m = Message {
            topic: "obs".into(),
            partition: 2,
            offset: 41,
            key: Some(b"p1".to_vec()),
            payload: vec![1, 2, 3],
        };
        dl.send(&m, DeadReason::Undecodable, &"x".repeat(2000), &CancellationToken::new()).await.unwrap();
        let got = bus.snapshot("dead");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, b"p1");
        let d = proto::DeadLetter::decode(got[0].1.as_slice()).unwrap();
        assert_eq!((d.source_topic.as_str(), d.partition, d.offset), ("obs", 2, 41));
        assert_eq!((d.key.as_slice(), d.raw_payload.as_slice()), (&b"p1"[..], &[1u8, 2, 3][..]));
        assert_eq!((d.role.as_str(), d.reason.as_str()), ("persist", "undecodable"));
        assert_eq!(d.message.len(), MAX_MESSAGE);
    }
}
