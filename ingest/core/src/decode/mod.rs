//! Decoders: payload bytes in one of the four formats -> [`RawBatch`]. They
//! check structure only; values, units, times and identities are checked by
//! [`crate::normalize`].

use std::borrow::Cow;

use crate::reject::{Reason, Rejection};
use crate::topic::Format;

pub mod fhir;
pub mod json;
pub mod proto;
pub mod senml;

/// A measurement time as sent.
#[derive(Debug, Clone, PartialEq)]
pub enum RawTime<'a> {
    /// RFC 3339 text (must carry an offset).
    Rfc3339(Cow<'a, str>),
    /// Microseconds since the epoch.
    UnixMicros(i64),
    /// Seconds since the epoch, possibly fractional (SenML).
    UnixSeconds(f64),
    /// Seconds relative to the receive time (SenML times below 2^28).
    RelativeSeconds(f64),
}

/// One reading as decoded, before normalization.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RawReading<'a> {
    /// Reading type name (`heart_rate`, `blood_pressure`, ...).
    pub kind: Cow<'a, str>,
    /// Measurement time, if given.
    pub time: Option<RawTime<'a>>,
    /// Unit as sent.
    pub unit: Option<Cow<'a, str>>,
    /// Value of single-valued types.
    pub value: Option<f64>,
    /// Blood pressure: systolic.
    pub systolic: Option<f64>,
    /// Blood pressure: diastolic.
    pub diastolic: Option<f64>,
    /// Blood pressure: pulse.
    pub pulse: Option<f64>,
}

/// A decoded message.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RawBatch<'a> {
    /// Sender's idempotency key.
    pub msg_id: Option<Cow<'a, str>>,
    /// The patient the payload claims (manual entries; ignored for devices).
    pub patient_claim: Option<Cow<'a, str>>,
    /// Readings, in payload order.
    pub readings: Vec<RawReading<'a>>,
}

/// Decodes a payload in `format`.
pub fn decode(format: Format, payload: &[u8]) -> Result<RawBatch<'_>, Rejection> {
    let batch = match format {
        Format::Json => json::decode(payload)?,
        Format::Senml => senml::decode(payload)?,
        Format::Fhir => fhir::decode(payload)?,
        Format::Proto => proto::decode(payload)?,
    };
    if batch.readings.is_empty() {
        return Err(Rejection::message(Reason::EmptyBatch, "the message holds no readings"));
    }
    Ok(batch)
}

/// Like [`decode`], but a protobuf batch with more than `max_readings`
/// readings is rejected (`payload_too_large`) before it is decoded, so a
/// payload of empty readings (2 bytes each) never becomes a large vector.
/// The JSON formats decode to at most a few dozen bytes per payload byte.
pub fn decode_limited(format: Format, payload: &[u8], max_readings: usize) -> Result<RawBatch<'_>, Rejection> {
    if format == Format::Proto
        && let Some(n) = proto::count_readings(payload)
        && n > max_readings
    {
        return Err(too_many_readings(n, max_readings));
    }
    decode(format, payload)
}

/// The rejection of a message with more than `max` readings.
pub fn too_many_readings(n: usize, max: usize) -> Rejection {
    Rejection::message(Reason::PayloadTooLarge, format!("{n} readings in one message; at most {max} are accepted"))
}

/// `serde_json::from_slice`, validating UTF-8 once for the whole payload
/// instead of once per string. On valid UTF-8 both give the same result; an
/// invalid payload goes through `from_slice`, so its error stays the same.
pub(crate) fn from_json<'a, T: serde::Deserialize<'a>>(payload: &'a [u8]) -> serde_json::Result<T> {
    match std::str::from_utf8(payload) {
        Ok(s) => serde_json::from_str(s),
        Err(_) => serde_json::from_slice(payload),
    }
}

/// Deserializes an optional string, borrowing it from the payload when it has
/// no escapes. (`#[serde(borrow)]` borrows a bare `Cow<str>`, but an
/// `Option<Cow<str>>` would always be copied into a new `String`.)
pub(crate) fn opt_cow_str<'de: 'a, 'a, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Cow<'a, str>>, D::Error> {
    #[derive(serde::Deserialize)]
    struct Borrowed<'a>(#[serde(borrow)] Cow<'a, str>);
    let v: Option<Borrowed<'a>> = serde::Deserialize::deserialize(d)?;
    Ok(v.map(|b| b.0))
}

/// A malformed-payload rejection with a bounded message.
pub(crate) fn malformed(format: Format, detail: impl std::fmt::Display) -> Rejection {
    // Rejection::message bounds the text (a decoder's error may quote the payload).
    Rejection::message(Reason::MalformedPayload, format!("invalid {} payload: {detail}", format.as_str()))
}
