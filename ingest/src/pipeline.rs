//! The pure per-message step of ingest: topic + payload -> observations,
//! rejections, the reply to the sender and device status. No I/O.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use vitalwatch_schemas::registry::RegistrySnapshot;
use vitalwatch_schemas::{DeviceId, Observation, proto};

use crate::decode;
use crate::normalize::{Context, Limits, Sender, normalize};
use crate::reject::{Reason, Rejection, Reply};
use crate::topic::{self, Topic};

/// The result of processing one MQTT message.
#[derive(Debug, Default)]
pub struct Processed {
    /// Accepted observations.
    pub observations: Vec<Observation>,
    /// Rejections (message-level or per reading).
    pub rejections: Vec<Rejection>,
    /// Where to tell the sender about rejections, if it can be identified.
    pub reply_topic: Option<String>,
    /// The sender's idempotency key, if any.
    pub msg_id: Option<String>,
    /// A device status event.
    pub status: Option<proto::DeviceStatus>,
    /// Trace id of this message.
    pub trace_id: String,
}

impl Processed {
    /// The JSON reply for the sender, if anything was rejected.
    pub fn reply_json(&self) -> Option<Vec<u8>> {
        let first = self.rejections.first()?;
        let reply = Reply {
            msg_id: self.msg_id.as_deref(),
            reason: first.reason,
            message: &first.message,
            field: first.field.as_deref(),
            rejections: &self.rejections,
            accepted: self.observations.len(),
        };
        serde_json::to_vec(&reply).ok()
    }

    /// True if the processing could be different with a fresher registry (an
    /// unknown or unenrolled device or patient may just have been registered).
    pub fn depends_on_registry(&self) -> bool {
        self.rejections.iter().any(|r| {
            matches!(r.reason, Reason::UnknownDevice | Reason::DeviceNotEnrolled | Reason::UnknownPatient)
        })
    }
}

/// Trace id of a message: a hash of topic and payload, so a redelivered
/// message keeps its trace id.
pub fn trace_id(topic: &str, payload: &[u8]) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in topic.as_bytes().iter().chain([0u8].iter()).chain(payload) {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

/// Processes one message.
pub fn process(
    topic_str: &str,
    payload: &[u8],
    received_at: DateTime<Utc>,
    limits: &Limits,
    registry: &RegistrySnapshot,
) -> Processed {
    let mut out = Processed { trace_id: trace_id(topic_str, payload), ..Default::default() };
    let topic = match topic::parse(topic_str) {
        Ok(t) => t,
        Err((rejection, reply)) => {
            out.rejections.push(rejection);
            out.reply_topic = reply;
            return out;
        }
    };
    let (sender, format) = match &topic {
        Topic::DeviceReadings { device, format } => {
            out.reply_topic = Some(vitalwatch_schemas::topics::device_rejected_topic(device.as_str()));
            (Sender::Device(device), *format)
        }
        Topic::Manual { patient, format } => {
            out.reply_topic = Some(vitalwatch_schemas::topics::patient_rejected_topic(patient.as_str()));
            (Sender::Patient(patient), *format)
        }
        Topic::DeviceStatus { device } => {
            out.reply_topic = Some(vitalwatch_schemas::topics::device_rejected_topic(device.as_str()));
            match status(device, payload, received_at, limits, registry) {
                Ok(s) => out.status = Some(s),
                Err(r) => out.rejections.push(r),
            }
            return out;
        }
    };
    if payload.len() > limits.max_payload_bytes {
        out.rejections.push(Rejection::message(
            Reason::PayloadTooLarge,
            format!("payload of {} bytes exceeds the {}-byte limit", payload.len(), limits.max_payload_bytes),
        ));
        return out;
    }
    let batch = match decode::decode(format, payload) {
        Ok(b) => b,
        Err(r) => {
            out.rejections.push(r);
            return out;
        }
    };
    out.msg_id = batch.msg_id.as_deref().map(|s| s.chars().take(128).collect());
    let ctx = Context { sender, received_at, limits, registry, trace_id: &out.trace_id };
    let mut observations = Vec::with_capacity(batch.readings.len() * 2);
    normalize(&batch, &ctx, &mut observations, &mut out.rejections);
    // A device message with an unknown or retired device is one rejection, not one per reading.
    out.rejections.dedup_by(|a, b| a.index.is_none() && b.index.is_none() && a.reason == b.reason);
    out.observations = observations;
    out
}

#[derive(Deserialize)]
struct StatusJson {
    #[serde(default)]
    time: Option<String>,
    #[serde(default, alias = "battery")]
    battery_percent: Option<f64>,
    #[serde(default, alias = "signal", alias = "rssi")]
    signal_dbm: Option<f64>,
    #[serde(default)]
    firmware: Option<String>,
}

fn status(
    device: &DeviceId,
    payload: &[u8],
    received_at: DateTime<Utc>,
    limits: &Limits,
    registry: &RegistrySnapshot,
) -> Result<proto::DeviceStatus, Rejection> {
    if payload.len() > 16 * 1024 {
        return Err(Rejection::message(Reason::PayloadTooLarge, "status messages are limited to 16 KiB"));
    }
    let s: StatusJson = serde_json::from_slice(payload)
        .map_err(|e| Rejection::message(Reason::MalformedPayload, format!("invalid status payload: {e}")))?;
    let time = match &s.time {
        Some(t) => DateTime::parse_from_rfc3339(t).map(|d| d.with_timezone(&Utc)).map_err(|_| Rejection {
            reason: Reason::InvalidTime,
            message: "status time is not RFC 3339 with an offset".into(),
            field: Some("time".into()),
            index: None,
        })?,
        None => received_at,
    };
    // A heartbeat's time only proves liveness at receive time; cap it there.
    let time = if time > received_at + limits.max_future { received_at } else { time };
    let patient = match registry.patient_for(device, received_at) {
        Ok(p) => p.as_str().to_owned(),
        Err(vitalwatch_schemas::registry::Attribution::UnknownDevice) => {
            return Err(Rejection::message(Reason::UnknownDevice, "this device is not registered"));
        }
        Err(vitalwatch_schemas::registry::Attribution::Retired) => {
            return Err(Rejection::message(Reason::RetiredDevice, "this device has been retired"));
        }
        Err(vitalwatch_schemas::registry::Attribution::NotEnrolled) => String::new(),
    };
    let finite = |v: Option<f64>| v.filter(|x| x.is_finite());
    Ok(proto::DeviceStatus {
        device_id: device.as_str().to_owned(),
        patient_id: patient,
        time_unix_micros: time.timestamp_micros(),
        received_at_unix_micros: received_at.timestamp_micros(),
        battery_percent: finite(s.battery_percent).map(|b| b.clamp(0.0, 100.0)),
        signal_dbm: finite(s.signal_dbm),
        firmware: s.firmware.map(|f| f.chars().take(64).collect()).unwrap_or_default(),
    })
}
