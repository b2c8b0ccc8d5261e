//! Why a message or a reading was rejected: a stable reason code, a human
//! message and the offending field. Rejections go to the dead-letter topic with
//! the raw payload and back to the sender on its `rejected` topic.

use serde::Serialize;

/// Stable, machine-readable rejection reasons (the `reason` field). Never
/// rename one: apps switch on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The topic is not a vitalwatch v1 topic.
    UnknownTopic,
    /// An id in the topic is not a valid identifier.
    InvalidIdentifier,
    /// The `{format}` topic segment is not json, senml, fhir or proto.
    UnsupportedFormat,
    /// The payload is larger than the configured limit.
    PayloadTooLarge,
    /// The payload could not be decoded in its format.
    MalformedPayload,
    /// The message holds no readings.
    EmptyBatch,
    /// The reading type (or FHIR/SenML code) is not one vitalwatch knows.
    UnknownType,
    /// The unit is not accepted for this type.
    UnknownUnit,
    /// A required value (or a unit) is missing.
    MissingValue,
    /// A device reading without a measurement time.
    MissingTime,
    /// A time that is not RFC 3339 with an offset.
    InvalidTime,
    /// A measurement time too far in the future.
    TimeInFuture,
    /// A measurement time older than the accepted backfill window.
    TimeTooOld,
    /// A value that is not a finite number.
    InvalidValue,
    /// A physiologically impossible value.
    ValueOutOfRange,
    /// A blood pressure whose systolic is not above its diastolic.
    SystolicNotAboveDiastolic,
    /// The device is not in the registry.
    UnknownDevice,
    /// The device has been retired.
    RetiredDevice,
    /// The device was not enrolled to any patient at the reading's time.
    DeviceNotEnrolled,
    /// The patient is not in the registry.
    UnknownPatient,
    /// A manual entry whose payload names another patient than its topic.
    PatientMismatch,
    /// A text field (msg_id, patient id, type, unit, firmware) holds a
    /// control character (U+0000 to U+001F, U+007F to U+009F).
    InvalidCharacters,
    /// The sender (device or patient) sent more messages than its rate limit
    /// allows (`ingest.rate_limit_per_sec`, `ingest.rate_limit_burst`).
    RateLimited,
    /// The device was moved to another patient after the reading's time: it
    /// can no longer file readings for the previous patient (except through
    /// an audited backfill grant).
    DeviceReassigned,
    /// The patient is registered but no longer monitored (discharged, end of
    /// the monitoring period); readings are accepted again after a
    /// readmission (a new monitoring period).
    PatientNotMonitored,
}

impl Reason {
    /// The reason code as a string (also the metric label value).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::UnknownTopic => "unknown_topic",
            Reason::InvalidIdentifier => "invalid_identifier",
            Reason::UnsupportedFormat => "unsupported_format",
            Reason::PayloadTooLarge => "payload_too_large",
            Reason::MalformedPayload => "malformed_payload",
            Reason::EmptyBatch => "empty_batch",
            Reason::UnknownType => "unknown_type",
            Reason::UnknownUnit => "unknown_unit",
            Reason::MissingValue => "missing_value",
            Reason::MissingTime => "missing_time",
            Reason::InvalidTime => "invalid_time",
            Reason::TimeInFuture => "time_in_future",
            Reason::TimeTooOld => "time_too_old",
            Reason::InvalidValue => "invalid_value",
            Reason::ValueOutOfRange => "value_out_of_range",
            Reason::SystolicNotAboveDiastolic => "systolic_not_above_diastolic",
            Reason::UnknownDevice => "unknown_device",
            Reason::RetiredDevice => "retired_device",
            Reason::DeviceNotEnrolled => "device_not_enrolled",
            Reason::UnknownPatient => "unknown_patient",
            Reason::PatientMismatch => "patient_mismatch",
            Reason::InvalidCharacters => "invalid_characters",
            Reason::RateLimited => "rate_limited",
            Reason::DeviceReassigned => "device_reassigned",
            Reason::PatientNotMonitored => "patient_not_monitored",
        }
    }

    /// Every reason, for metrics pre-registration and docs.
    pub const ALL: [Reason; 25] = [
        Reason::UnknownTopic,
        Reason::InvalidIdentifier,
        Reason::UnsupportedFormat,
        Reason::PayloadTooLarge,
        Reason::MalformedPayload,
        Reason::EmptyBatch,
        Reason::UnknownType,
        Reason::UnknownUnit,
        Reason::MissingValue,
        Reason::MissingTime,
        Reason::InvalidTime,
        Reason::TimeInFuture,
        Reason::TimeTooOld,
        Reason::InvalidValue,
        Reason::ValueOutOfRange,
        Reason::SystolicNotAboveDiastolic,
        Reason::UnknownDevice,
        Reason::RetiredDevice,
        Reason::DeviceNotEnrolled,
        Reason::UnknownPatient,
        Reason::PatientMismatch,
        Reason::InvalidCharacters,
        Reason::RateLimited,
        Reason::DeviceReassigned,
        Reason::PatientNotMonitored,
    ];
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One rejection: of a whole message (`index` = None) or of one reading.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rejection {
    /// Reason code.
    pub reason: Reason,
    /// Human message, safe to show to the patient (no other patient's data).
    pub message: String,
    /// The offending field, e.g. `readings[2].value`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Index of the reading in the message, if the rejection is per reading.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
}

/// Longest rejection message, in bytes. Messages are sent back to the sender
/// over MQTT; one that quotes the payload (a decoder's error) is cut here.
pub const MAX_MESSAGE_BYTES: usize = 300;

/// `message`, cut to [`MAX_MESSAGE_BYTES`] on a character boundary.
fn bounded(message: impl Into<String>) -> String {
    let mut message = message.into();
    if message.len() > MAX_MESSAGE_BYTES {
        let mut cut = MAX_MESSAGE_BYTES;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
    }
    message
}

impl Rejection {
    /// A rejection of the whole message (the message cut to [`MAX_MESSAGE_BYTES`]).
    pub fn message(reason: Reason, message: impl Into<String>) -> Self {
        Rejection { reason, message: bounded(message), field: None, index: None }
    }

    /// A rejection of one reading and one field.
    pub fn reading(reason: Reason, index: usize, field: &str, message: impl Into<String>) -> Self {
        Rejection {
            reason,
            message: bounded(message),
            field: Some(format!("readings[{index}].{field}")),
            index: Some(index),
        }
    }
}

/// The JSON reply published to the sender's `rejected` topic.
#[derive(Debug, Serialize)]
pub struct Reply<'a> {
    /// The sender's idempotency key, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msg_id: Option<&'a str>,
    /// Reason code of the first rejection.
    pub reason: Reason,
    /// Human message.
    pub message: &'a str,
    /// Offending field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'a str>,
    /// Every rejection in the message (several readings can fail).
    pub rejections: &'a [Rejection],
    /// How many readings of the message were accepted.
    pub accepted: usize,
}
