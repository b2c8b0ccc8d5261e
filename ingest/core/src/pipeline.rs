//! The pure per-message step of ingest: topic + payload -> observations,
//! rejections, the reply to the sender and device status. No I/O.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use vitalwatch_schemas::registry::RegistrySnapshot;
use vitalwatch_schemas::{DeviceId, Observation, proto};

use crate::decode;
use crate::normalize::{Context, Limits, Sender, normalize};
use crate::reject::{Reason, Rejection, Reply};
use crate::text;
use crate::topic::{self, Topic};

/// Longest message id kept, characters (longer ones are cut).
pub const MAX_MSG_ID_CHARS: usize = 128;

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
    /// unknown or unenrolled device or patient may just have been registered,
    /// a discharged patient readmitted).
    pub fn depends_on_registry(&self) -> bool {
        self.rejections.iter().any(|r| {
            matches!(
                r.reason,
                Reason::UnknownDevice
                    | Reason::DeviceNotEnrolled
                    | Reason::UnknownPatient
                    | Reason::PatientNotMonitored
            )
        })
    }
}

/// Trace id of a message: a hash of topic and payload, so a redelivered
/// message keeps its trace id.
pub fn trace_id(topic: &str, payload: &[u8]) -> String {
    let mut h = vitalwatch_schemas::domain::StableHasher::new();
    h.write(topic.as_bytes());
    h.write(&[0]);
    h.write(payload);
    // Same text as `format!("{:016x}", ..)`, without the formatting machinery.
    let v = h.finish64();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(16);
    for shift in (0..16).rev() {
        s.push(HEX[((v >> (shift * 4)) & 0xf) as usize] as char);
    }
    s
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
    let mut out = process_topic(&topic, out, payload, received_at, limits, registry);
    // The reply topic is built only when there is something to reply.
    if !out.rejections.is_empty() {
        out.reply_topic = Some(reply_topic(&topic));
    }
    out
}

fn reply_topic(topic: &Topic) -> String {
    match topic {
        Topic::Manual { patient, .. } => vitalwatch_schemas::topics::patient_rejected_topic(patient.as_str()),
        Topic::DeviceReadings { device, .. } | Topic::DeviceStatus { device } => {
            vitalwatch_schemas::topics::device_rejected_topic(device.as_str())
        }
    }
}

/// The outcome of a message refused by its sender's rate limit
/// ([`crate::ratelimit`]): one `rate_limited` rejection and the reply topic;
/// the payload is not decoded.
pub fn rate_limited(topic_str: &str, payload: &[u8]) -> Processed {
    let mut out = Processed { trace_id: trace_id(topic_str, payload), ..Default::default() };
    out.rejections.push(Rejection::message(
        Reason::RateLimited,
        "this sender sent more messages than its rate limit allows; this message was not accepted, send it again later",
    ));
    out.reply_topic = match topic::parse(topic_str) {
        Ok(t) => Some(reply_topic(&t)),
        Err((_, reply)) => reply,
    };
    out
}

/// The one dead letter of a processed message (`None` if nothing was
/// rejected): every rejection in `reasons`, in order, the first one also in
/// `reason`, `message` and `field`; the raw payload once (a rate-limited
/// message too: its readings were not looked at, and the dead letter is the
/// only place they can be recovered from; one copy per message is no
/// amplification).
pub fn dead_letter(topic: &str, payload: &[u8], received_at: DateTime<Utc>, p: &Processed) -> Option<proto::Rejection> {
    let first = p.rejections.first()?;
    Some(proto::Rejection {
        topic: topic.to_owned(),
        raw_payload: payload.to_vec(),
        reason: first.reason.as_str().to_owned(),
        message: first.message.clone(),
        field: first.field.clone().unwrap_or_default(),
        received_at_unix_micros: received_at.timestamp_micros(),
        trace_id: p.trace_id.clone(),
        reasons: p
            .rejections
            .iter()
            .map(|r| proto::RejectionReason {
                reason: r.reason.as_str().to_owned(),
                message: r.message.clone(),
                field: r.field.clone().unwrap_or_default(),
                index: r.index.and_then(|i| u32::try_from(i).ok()),
            })
            .collect(),
        payload_bytes: u32::try_from(payload.len()).unwrap_or(u32::MAX),
    })
}

fn process_topic(
    topic: &Topic,
    mut out: Processed,
    payload: &[u8],
    received_at: DateTime<Utc>,
    limits: &Limits,
    registry: &RegistrySnapshot,
) -> Processed {
    let (sender, format) = match topic {
        Topic::DeviceReadings { device, format } => (Sender::Device(device), *format),
        Topic::Manual { patient, format } => (Sender::Patient(patient), *format),
        Topic::DeviceStatus { device } => {
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
    let mut batch = match decode::decode_limited(format, payload, limits.max_readings) {
        Ok(b) => b,
        Err(r) => {
            out.rejections.push(r);
            return out;
        }
    };
    // Before anything is echoed back or produced: no control characters.
    if let Err(r) = text::check_message(&batch) {
        out.rejections.push(r);
        return out;
    }
    // At most 128 characters (cut at a character boundary, no per-char copy),
    // before normalization: every observation carries the message id, so a
    // long one must not be copied per observation.
    if let Some(cut) = batch.msg_id.as_deref().and_then(|s| s.char_indices().nth(MAX_MSG_ID_CHARS)).map(|(c, _)| c) {
        batch.msg_id = batch.msg_id.take().map(|id| match id {
            Cow::Borrowed(s) => Cow::Borrowed(&s[..cut]),
            Cow::Owned(mut s) => {
                s.truncate(cut);
                Cow::Owned(s)
            }
        });
    }
    // An empty message id is no id (Kafka and the database carry "" as none).
    if batch.msg_id.as_deref() == Some("") {
        batch.msg_id = None;
    }
    out.msg_id = batch.msg_id.as_deref().map(str::to_owned);
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
    text::check_firmware(s.firmware.as_deref())?;
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
    let patient = match registry.patient_for(device, received_at, received_at) {
        Ok(p) => p.as_str().to_owned(),
        Err(vitalwatch_schemas::registry::Attribution::UnknownDevice) => {
            return Err(Rejection::message(Reason::UnknownDevice, "this device is not registered"));
        }
        Err(vitalwatch_schemas::registry::Attribution::Retired) => {
            return Err(Rejection::message(Reason::RetiredDevice, "this device has been retired"));
        }
        Err(
            vitalwatch_schemas::registry::Attribution::NotEnrolled
            | vitalwatch_schemas::registry::Attribution::Reassigned
            | vitalwatch_schemas::registry::Attribution::EnrolmentEnded,
        ) => String::new(),
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

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use chrono::{DateTime, Duration, SecondsFormat, Utc};
    use proptest::prelude::*;
    use vitalwatch_schemas::registry::{DeviceEntry, Enrolment, RegistrySnapshot};
    use vitalwatch_schemas::{Code, PatientId, Source, TimeSource};

    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-26T12:00:00Z").unwrap().with_timezone(&Utc)
    }

    fn registry() -> RegistrySnapshot {
        let mut r = RegistrySnapshot::default();
        r.patients.insert("p1".into());
        r.patients.insert("p2".into());
        let enrol = |p: &str| Enrolment {
            patient_id: PatientId::new(p).unwrap(),
            valid_from: now() - Duration::days(365),
            valid_to: None,
            ended: None,
        };
        r.devices.insert("d1".into(), DeviceEntry { enrolments: vec![enrol("p1")], ..Default::default() });
        r.devices.insert(
            "old".into(),
            DeviceEntry {
                retired_at: Some(now() - Duration::days(1)),
                enrolments: vec![enrol("p1")],
                ..Default::default()
            },
        );
        r.devices.insert("spare".into(), DeviceEntry::default());
        // Moved from p1 to p2 a day ago (recorded then).
        let moved_at = now() - Duration::days(1);
        r.devices.insert(
            "moved".into(),
            DeviceEntry {
                enrolments: vec![
                    Enrolment {
                        valid_to: Some(moved_at),
                        ended: Some(vitalwatch_schemas::registry::EnrolmentEnd {
                            reason: vitalwatch_schemas::registry::EndReason::Moved,
                            recorded_at: moved_at,
                        }),
                        ..enrol("p1")
                    },
                    Enrolment { valid_from: moved_at, ..enrol("p2") },
                ],
                ..Default::default()
            },
        );
        // p3 was discharged a day ago: the end of its device's enrolment recorded then.
        r.discharged.insert("p3".into());
        r.devices.insert(
            "gone".into(),
            DeviceEntry {
                enrolments: vec![Enrolment {
                    valid_to: Some(moved_at),
                    ended: Some(vitalwatch_schemas::registry::EnrolmentEnd {
                        reason: vitalwatch_schemas::registry::EndReason::Unenrolled,
                        recorded_at: moved_at,
                    }),
                    ..enrol("p3")
                }],
                ..Default::default()
            },
        );
        r
    }

    fn at(minutes_ago: i64) -> String {
        (now() - Duration::minutes(minutes_ago)).to_rfc3339_opts(SecondsFormat::Secs, true)
    }

    fn run(topic: &str, payload: &str) -> Processed {
        process(topic, payload.as_bytes(), now(), &Limits::default(), &registry())
    }

    fn reason(topic: &str, payload: &str) -> Reason {
        let p = run(topic, payload);
        assert!(p.observations.is_empty(), "{payload}: expected a rejection, got {:?}", p.observations);
        p.rejections.first().unwrap_or_else(|| panic!("{payload}: no rejection")).reason
    }

    #[test]
    fn trace_id_is_the_hex_of_the_hash() {
        for (topic, payload) in [("", &b""[..]), (DEV, b"{}"), ("a/b", &[0xff; 100][..])] {
            let mut h = vitalwatch_schemas::domain::StableHasher::new();
            h.write(topic.as_bytes());
            h.write(&[0]);
            h.write(payload);
            assert_eq!(trace_id(topic, payload), format!("{:016x}", h.finish64()));
        }
    }

    const DEV: &str = "vitalwatch/v1/devices/d1/readings/json";
    const APP: &str = "vitalwatch/v1/patients/p1/manual/json";

    #[test]
    fn every_reason_code_is_reachable_with_a_specific_message() {
        let t = at(10);
        let one = |body: &str| format!(r#"{{"readings":[{body}]}}"#);
        let cases: Vec<(String, String, Reason)> = vec![
            ("other/topic".into(), "{}".into(), Reason::UnknownTopic),
            ("vitalwatch/v1/devices/a b/readings/json".into(), "{}".into(), Reason::InvalidIdentifier),
            ("vitalwatch/v1/devices/d1/readings/xml".into(), "{}".into(), Reason::UnsupportedFormat),
            (DEV.into(), "{".into(), Reason::MalformedPayload),
            (DEV.into(), r#"{"readings":[]}"#.into(), Reason::EmptyBatch),
            (DEV.into(), one(&format!(r#"{{"type":"ecg","time":"{t}","unit":"mV","value":1}}"#)), Reason::UnknownType),
            (
                DEV.into(),
                one(&format!(r#"{{"type":"spo2","time":"{t}","unit":"ppm","value":97}}"#)),
                Reason::UnknownUnit,
            ),
            (DEV.into(), one(&format!(r#"{{"type":"spo2","time":"{t}","unit":"%"}}"#)), Reason::MissingValue),
            (DEV.into(), one(r#"{"type":"spo2","unit":"%","value":97}"#), Reason::MissingTime),
            (DEV.into(), one(r#"{"type":"spo2","time":"yesterday","unit":"%","value":97}"#), Reason::InvalidTime),
            (
                DEV.into(),
                one(r#"{"type":"spo2","time":"2026-11-26T12:00:00","unit":"%","value":97}"#),
                Reason::InvalidTime,
            ),
            (
                DEV.into(),
                one(&format!(r#"{{"type":"spo2","time":"{}","unit":"%","value":97}}"#, at(-6))),
                Reason::TimeInFuture,
            ),
            (
                DEV.into(),
                one(&format!(r#"{{"type":"spo2","time":"{}","unit":"%","value":97}}"#, at(91 * 24 * 60))),
                Reason::TimeTooOld,
            ),
            (
                DEV.into(),
                one(&format!(r#"{{"type":"spo2","time":"{t}","unit":"%","value":100.5}}"#)),
                Reason::ValueOutOfRange,
            ),
            (
                DEV.into(),
                one(&format!(r#"{{"type":"blood_pressure","time":"{t}","unit":"mmHg","systolic":80,"diastolic":80}}"#)),
                Reason::SystolicNotAboveDiastolic,
            ),
            (
                "vitalwatch/v1/devices/ghost/readings/json".into(),
                one(&format!(r#"{{"type":"spo2","time":"{t}","unit":"%","value":97}}"#)),
                Reason::UnknownDevice,
            ),
            (
                "vitalwatch/v1/devices/old/readings/json".into(),
                one(&format!(r#"{{"type":"spo2","time":"{t}","unit":"%","value":97}}"#)),
                Reason::RetiredDevice,
            ),
            (
                "vitalwatch/v1/devices/spare/readings/json".into(),
                one(&format!(r#"{{"type":"spo2","time":"{t}","unit":"%","value":97}}"#)),
                Reason::DeviceNotEnrolled,
            ),
            (
                "vitalwatch/v1/devices/moved/readings/json".into(),
                one(&format!(r#"{{"type":"spo2","time":"{}","unit":"%","value":97}}"#, at(2 * 24 * 60))),
                Reason::DeviceReassigned,
            ),
            (
                "vitalwatch/v1/patients/nobody/manual/json".into(),
                one(r#"{"type":"spo2","unit":"%","value":97}"#),
                Reason::UnknownPatient,
            ),
            (
                "vitalwatch/v1/patients/p3/manual/json".into(),
                one(r#"{"type":"spo2","unit":"%","value":97}"#),
                Reason::PatientNotMonitored,
            ),
            (
                // Dated after the discharge (no enrolment covers it) and during the period (ended).
                "vitalwatch/v1/devices/gone/readings/json".into(),
                one(&format!(r#"{{"type":"spo2","time":"{t}","unit":"%","value":97}}"#)),
                Reason::PatientNotMonitored,
            ),
            (
                "vitalwatch/v1/devices/gone/readings/json".into(),
                one(&format!(r#"{{"type":"spo2","time":"{}","unit":"%","value":97}}"#, at(2 * 24 * 60))),
                Reason::PatientNotMonitored,
            ),
            (
                APP.into(),
                r#"{"patient_id":"p2","readings":[{"type":"spo2","unit":"%","value":97}]}"#.into(),
                Reason::PatientMismatch,
            ),
            (
                DEV.into(),
                format!(
                    r#"{{"msg_id":"m\u0000","readings":[{{"type":"spo2","time":"{}","unit":"%","value":97}}]}}"#,
                    at(1)
                ),
                Reason::InvalidCharacters,
            ),
        ];
        let mut seen = HashSet::new();
        for (topic, payload, want) in &cases {
            assert_eq!(reason(topic, payload), *want, "{topic} {payload}");
            let p = run(topic, payload);
            assert!(!p.rejections[0].message.is_empty());
            seen.insert(*want);
        }
        // Too many readings and an oversized payload.
        let limits = Limits { max_readings: 2, max_payload_bytes: 100_000, ..Limits::default() };
        let three = one(&[r#"{"type":"spo2","unit":"%","value":97}"#; 3].join(","));
        let p = process(APP, three.as_bytes(), now(), &limits, &registry());
        assert_eq!(p.rejections[0].reason, Reason::PayloadTooLarge);
        seen.insert(Reason::PayloadTooLarge);
        let p = process(APP, &vec![b' '; 300_000], now(), &Limits::default(), &registry());
        assert_eq!(p.rejections[0].reason, Reason::PayloadTooLarge);
        // NaN cannot be written in JSON; it can in protobuf.
        use prost::Message as _;
        let batch = vitalwatch_schemas::proto::ReadingBatch {
            readings: vec![vitalwatch_schemas::proto::Reading {
                r#type: vitalwatch_schemas::proto::ReadingType::Spo2 as i32,
                time_unix_micros: (now() - Duration::minutes(1)).timestamp_micros(),
                unit: "%".into(),
                value: Some(f64::NAN),
                ..Default::default()
            }],
            ..Default::default()
        };
        let p = process(
            "vitalwatch/v1/devices/d1/readings/proto",
            &batch.encode_to_vec(),
            now(),
            &Limits::default(),
            &registry(),
        );
        assert_eq!(p.rejections[0].reason, Reason::InvalidValue);
        seen.insert(Reason::InvalidValue);
        let p = rate_limited(DEV, b"{}");
        assert_eq!(p.reply_topic.as_deref(), Some("vitalwatch/v1/devices/d1/rejected"));
        seen.insert(p.rejections[0].reason);
        for r in Reason::ALL {
            assert!(seen.contains(&r), "reason {r} not covered");
        }
    }

    #[test]
    fn a_blood_pressure_reading_gives_three_rows_with_provenance() {
        let p = run(
            DEV,
            &format!(
                r#"{{"msg_id":"x1","readings":[{{"type":"blood_pressure","time":"{}","unit":"kPa","systolic":20,"diastolic":12,"pulse":64}}]}}"#,
                at(1)
            ),
        );
        assert!(p.rejections.is_empty(), "{:?}", p.rejections);
        let codes: Vec<Code> = p.observations.iter().map(|o| o.code).collect();
        assert_eq!(codes, vec![Code::Systolic, Code::Diastolic, Code::HeartRate]);
        let sys = &p.observations[0];
        assert!((sys.value - 150.01276).abs() < 1e-9);
        assert_eq!((sys.original_value, sys.original_unit.as_str()), (20.0, "kPa"));
        assert_eq!(sys.patient_id.as_str(), "p1");
        assert_eq!(sys.source, Source::Device);
        assert_eq!(sys.device_id.as_ref().map(|d| d.as_str()), Some("d1"));
        assert_eq!(sys.time_source, TimeSource::Device);
        assert_eq!(sys.msg_id.as_deref(), Some("x1"));
        assert!(p.reply_json().is_none());
    }

    #[test]
    fn manual_entry_without_time_uses_the_receive_time_and_says_so() {
        let p = run(APP, r#"{"readings":[{"type":"body_temperature","unit":"°F","value":100.4}]}"#);
        let o = &p.observations[0];
        assert_eq!((o.time, o.time_source, o.source), (now(), TimeSource::Received, Source::Manual));
        assert!((o.value - 38.0).abs() < 1e-9);
        assert!(o.device_id.is_none());
    }

    #[test]
    fn good_readings_survive_bad_neighbours_and_the_reply_lists_the_bad_ones() {
        let t = at(5);
        let p = run(
            DEV,
            &format!(
                r#"{{"msg_id":"m7","readings":[
            {{"type":"spo2","time":"{t}","unit":"%","value":96}},
            {{"type":"spo2","time":"{t}","unit":"%","value":160}},
            {{"type":"heart_rate","time":"{t}","unit":"bpm","value":71}}]}}"#
            ),
        );
        assert_eq!(p.observations.len(), 2);
        assert_eq!(p.rejections.len(), 1);
        let reply: serde_json::Value = serde_json::from_slice(&p.reply_json().unwrap()).unwrap();
        assert_eq!(reply["reason"], "value_out_of_range");
        assert_eq!(reply["field"], "readings[1].value");
        assert_eq!(reply["msg_id"], "m7");
        assert_eq!(reply["accepted"], 2);
    }

    #[test]
    fn ten_bad_readings_make_one_dead_letter_with_ten_reasons() {
        let t = at(5);
        let mut rs: Vec<String> =
            (0..10).map(|k| format!(r#"{{"type":"spo2","time":"{t}","unit":"%","value":{}}}"#, 101 + k)).collect();
        rs.insert(3, format!(r#"{{"type":"spo2","time":"{t}","unit":"%","value":97}}"#));
        let payload = format!(r#"{{"msg_id":"m10","readings":[{}]}}"#, rs.join(","));
        let p = run(DEV, &payload);
        assert_eq!((p.observations.len(), p.rejections.len()), (1, 10));
        let dl = dead_letter(DEV, payload.as_bytes(), now(), &p).expect("a dead letter");
        assert_eq!(dl.raw_payload, payload.as_bytes(), "one copy of the payload");
        assert_eq!(dl.payload_bytes as usize, payload.len());
        assert_eq!((dl.reason.as_str(), dl.field.as_str()), ("value_out_of_range", "readings[0].value"));
        assert_eq!(dl.reasons.len(), 10);
        let idx: Vec<Option<u32>> = dl.reasons.iter().map(|r| r.index).collect();
        assert_eq!(idx, [0, 1, 2, 4, 5, 6, 7, 8, 9, 10].map(Some).to_vec());
        assert!(dl.reasons.iter().all(|r| r.reason == "value_out_of_range" && !r.message.is_empty()));
        assert_eq!(dl.reasons[3].field, "readings[4].value");
        // Nothing rejected: no dead letter.
        let ok = run(DEV, &format!(r#"{{"readings":[{}]}}"#, rs[3]));
        assert!(dead_letter(DEV, b"x", now(), &ok).is_none());
        // Rate limited: the reason, and the payload once (to recover it).
        let rl = rate_limited(DEV, payload.as_bytes());
        let dl = dead_letter(DEV, payload.as_bytes(), now(), &rl).unwrap();
        assert_eq!((dl.reason.as_str(), dl.raw_payload.as_slice()), ("rate_limited", payload.as_bytes()));
        assert_eq!((dl.reasons.len(), dl.payload_bytes as usize, dl.reasons[0].index), (1, payload.len(), None));
    }

    #[test]
    fn device_status_is_attributed_and_carries_no_vitals() {
        let p = run("vitalwatch/v1/devices/d1/status", r#"{"battery":87,"rssi":-70,"firmware":"1.2.3"}"#);
        let s = p.status.expect("status");
        assert_eq!((s.device_id.as_str(), s.patient_id.as_str()), ("d1", "p1"));
        assert_eq!(s.battery_percent, Some(87.0));
        let p = run("vitalwatch/v1/devices/ghost/status", "{}");
        assert_eq!(p.rejections[0].reason, Reason::UnknownDevice);
    }

    /// Found by the fuzz smoke (`process`, 2026-12-06): a status payload that is a 1,200-byte
    /// JSON string was rejected with serde's message, which quotes the string: a 1,318-byte reply
    /// echoing the sender's payload. Every rejection message is bounded.
    #[test]
    fn a_status_that_is_a_huge_string_is_rejected_without_echoing_it() {
        let text = "a".repeat(1200);
        let p = run("vitalwatch/v1/devices/d1/status", &format!(r#""{text}""#));
        assert_eq!(p.rejections[0].reason, Reason::MalformedPayload);
        assert!(p.rejections[0].message.len() <= 300, "{} bytes", p.rejections[0].message.len());
        assert!(p.rejections[0].message.starts_with("invalid status payload: "), "{}", p.rejections[0].message);
    }

    /// A JSON message with `msg_id` as the given JSON string literal.
    fn with_msg_id(literal: &str) -> String {
        format!(r#"{{"msg_id":{literal},"readings":[{{"type":"spo2","time":"{}","unit":"%","value":97}}]}}"#, at(1))
    }

    #[test]
    fn a_control_character_in_msg_id_rejects_the_message_without_echoing_it() {
        for escaped in [r#""\u0000""#, r#""a\u0000b""#, r#""tab\t""#, r#""\u001b[31m""#, r#""\u007f""#, r#""\u0085""#] {
            let p = run(DEV, &with_msg_id(escaped));
            assert!(p.observations.is_empty(), "{escaped}");
            assert_eq!(p.rejections[0].reason, Reason::InvalidCharacters, "{escaped}");
            assert_eq!(p.rejections[0].field.as_deref(), Some("msg_id"));
            assert_eq!(p.msg_id, None, "not echoed back");
            let reply: serde_json::Value = serde_json::from_slice(&p.reply_json().unwrap()).unwrap();
            assert_eq!(reply["reason"], "invalid_characters");
        }
        // A lone surrogate in a JSON escape is not a character at all.
        for escaped in [r#""\ud800""#, r#""x\udfff""#, r#""\ud800\u0041""#] {
            assert_eq!(reason(DEV, &with_msg_id(escaped)), Reason::MalformedPayload, "{escaped}");
        }
        // A valid pair is fine.
        assert_eq!(run(DEV, &with_msg_id(r#""\ud83d\ude00""#)).msg_id.as_deref(), Some("\u{1f600}"));
        let status = process(
            "vitalwatch/v1/devices/d1/status",
            br#"{"battery":50,"firmware":"1.0\u0000"}"#,
            now(),
            &Limits::default(),
            &registry(),
        );
        assert_eq!((status.status, status.rejections[0].reason), (None, Reason::InvalidCharacters));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Whatever string a sender puts in `msg_id` (any character, control
        /// characters included, up to 4,000 of them), ingest either rejects
        /// the message with `invalid_characters` or produces observations
        /// whose strings hold no control character and survive the Kafka
        /// encoding unchanged.
        #[test]
        fn every_msg_id_is_rejected_or_survives_kafka(msg_id in proptest::string::string_regex("(.|[\\x00-\\x1f\\x7f-\\x9f]){0,4000}").unwrap()) {
            let p = run(DEV, &with_msg_id(&serde_json::to_string(&msg_id).unwrap()));
            if msg_id.chars().any(char::is_control) {
                prop_assert!(p.observations.is_empty());
                prop_assert_eq!(p.rejections[0].reason, Reason::InvalidCharacters);
            } else {
                prop_assert!(p.rejections.is_empty(), "{:?}", p.rejections);
                // An empty id is no id (Kafka and the database carry "" as none).
                let want: Option<String> = (!msg_id.is_empty()).then(|| msg_id.chars().take(128).collect());
                for o in &p.observations {
                    prop_assert_eq!(o.msg_id.as_deref(), want.as_deref());
                    for s in [o.msg_id.as_deref().unwrap_or(""), &o.original_unit, &o.trace_id, o.patient_id.as_str()] {
                        prop_assert!(!s.chars().any(char::is_control), "{:?}", s);
                    }
                    let bytes = prost::Message::encode_to_vec(&o.to_proto());
                    let back = <proto::Observation as prost::Message>::decode(bytes.as_slice()).unwrap();
                    prop_assert_eq!(&Observation::from_proto(back).unwrap(), o);
                }
            }
        }

        #[test]
        fn never_panics_on_arbitrary_bytes(payload in proptest::collection::vec(any::<u8>(), 0..512), fmt in 0usize..4, which in 0usize..3) {
            let topic = match which {
                0 => format!("vitalwatch/v1/devices/d1/readings/{}", crate::topic::Format::ALL[fmt].as_str()),
                1 => format!("vitalwatch/v1/patients/p1/manual/{}", crate::topic::Format::ALL[fmt].as_str()),
                _ => "vitalwatch/v1/devices/d1/status".to_owned(),
            };
            let _ = process(&topic, &payload, now(), &Limits::default(), &registry());
        }

        #[test]
        fn never_panics_on_json_shaped_input(
            kind in "[a-z_]{0,20}", unit in "\\PC{0,8}", value in any::<f64>(), sys in any::<f64>(), dia in any::<f64>(),
            time in "\\PC{0,40}", secs in any::<i64>(), fmt in 0usize..4,
        ) {
            let v = |x: f64| if x.is_finite() { serde_json::json!(x) } else { serde_json::Value::Null };
            let json = serde_json::json!({"readings": [{"type": kind, "time": time, "unit": unit, "value": v(value), "systolic": v(sys), "diastolic": v(dia)}]});
            let senml = serde_json::json!([{"n": kind, "u": unit, "v": v(value), "t": secs as f64}]);
            let fhir = serde_json::json!({"resourceType": "Observation", "code": {"coding": [{"code": unit}]}, "effectiveDateTime": time, "valueQuantity": {"value": v(value), "code": kind}});
            let body = match fmt { 0 => json, 1 => senml, _ => fhir };
            let f = ["json", "senml", "fhir", "json"][fmt];
            let _ = process(&format!("vitalwatch/v1/devices/d1/readings/{f}"), &serde_json::to_vec(&body).unwrap(), now(), &Limits::default(), &registry());
        }
    }
}
