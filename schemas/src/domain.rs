//! Canonical domain types: what a normalized reading is.
//!
//! Codes and units come from `shared/reference/clinical.md` §1 (LOINC and the FHIR
//! vital-signs profiles, UCUM `ucum-vitals-common`).

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A kind of reading a device or a patient can send (the `type` field of the
/// canonical JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VitalKind {
    /// Heart rate (pulse).
    HeartRate,
    /// Blood pressure: systolic, diastolic and optionally pulse.
    BloodPressure,
    /// Oxygen saturation by pulse oximetry.
    Spo2,
    /// Body weight.
    BodyWeight,
    /// Body temperature.
    BodyTemperature,
    /// Capillary blood glucose (glucometer).
    BloodGlucose,
    /// Respiratory rate.
    RespiratoryRate,
}

impl VitalKind {
    /// Every kind, in a stable order.
    pub const ALL: [VitalKind; 7] = [
        VitalKind::HeartRate,
        VitalKind::BloodPressure,
        VitalKind::Spo2,
        VitalKind::BodyWeight,
        VitalKind::BodyTemperature,
        VitalKind::BloodGlucose,
        VitalKind::RespiratoryRate,
    ];

    /// The name used in payloads (`heart_rate`, `blood_pressure`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            VitalKind::HeartRate => "heart_rate",
            VitalKind::BloodPressure => "blood_pressure",
            VitalKind::Spo2 => "spo2",
            VitalKind::BodyWeight => "body_weight",
            VitalKind::BodyTemperature => "body_temperature",
            VitalKind::BloodGlucose => "blood_glucose",
            VitalKind::RespiratoryRate => "respiratory_rate",
        }
    }

    /// Parses a payload type name.
    pub fn parse(s: &str) -> Option<VitalKind> {
        Some(match s {
            "heart_rate" => VitalKind::HeartRate,
            "blood_pressure" => VitalKind::BloodPressure,
            "spo2" => VitalKind::Spo2,
            "body_weight" => VitalKind::BodyWeight,
            "body_temperature" => VitalKind::BodyTemperature,
            "blood_glucose" => VitalKind::BloodGlucose,
            "respiratory_rate" => VitalKind::RespiratoryRate,
            _ => return None,
        })
    }
}

impl fmt::Display for VitalKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The LOINC code of one stored observation (one per component).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Code {
    /// 8867-4 Heart rate, `/min`.
    HeartRate,
    /// 8480-6 Systolic blood pressure, `mm[Hg]`.
    Systolic,
    /// 8462-4 Diastolic blood pressure, `mm[Hg]`.
    Diastolic,
    /// 59408-5 Oxygen saturation in arterial blood by pulse oximetry, `%`.
    Spo2,
    /// 29463-7 Body weight, `kg`.
    BodyWeight,
    /// 8310-5 Body temperature, `Cel`.
    BodyTemperature,
    /// 41653-7 Glucose [Mass/volume] in capillary blood by glucometer, `mg/dL`.
    BloodGlucose,
    /// 9279-1 Respiratory rate, `/min`.
    RespiratoryRate,
}

impl Code {
    /// Every code, in a stable order.
    pub const ALL: [Code; 8] = [
        Code::HeartRate,
        Code::Systolic,
        Code::Diastolic,
        Code::Spo2,
        Code::BodyWeight,
        Code::BodyTemperature,
        Code::BloodGlucose,
        Code::RespiratoryRate,
    ];

    /// The LOINC code (clinical.md §1.1, §1.2).
    pub fn loinc(self) -> &'static str {
        match self {
            Code::HeartRate => "8867-4",
            Code::Systolic => "8480-6",
            Code::Diastolic => "8462-4",
            Code::Spo2 => "59408-5",
            Code::BodyWeight => "29463-7",
            Code::BodyTemperature => "8310-5",
            Code::BloodGlucose => "41653-7",
            Code::RespiratoryRate => "9279-1",
        }
    }

    /// The one UCUM unit observations of this code are stored in.
    pub fn ucum(self) -> &'static str {
        match self {
            Code::HeartRate | Code::RespiratoryRate => "/min",
            Code::Systolic | Code::Diastolic => "mm[Hg]",
            Code::Spo2 => "%",
            Code::BodyWeight => "kg",
            Code::BodyTemperature => "Cel",
            Code::BloodGlucose => "mg/dL",
        }
    }

    /// A short human name, for alerts and charts.
    pub fn display(self) -> &'static str {
        match self {
            Code::HeartRate => "heart rate",
            Code::Systolic => "systolic blood pressure",
            Code::Diastolic => "diastolic blood pressure",
            Code::Spo2 => "SpO2",
            Code::BodyWeight => "body weight",
            Code::BodyTemperature => "body temperature",
            Code::BloodGlucose => "blood glucose",
            Code::RespiratoryRate => "respiratory rate",
        }
    }

    /// Looks a code up by its LOINC string. Accepts the equivalent codes a FHIR
    /// sender may use (2708-6 for SpO2, 2339-0 for blood glucose).
    pub fn from_loinc(s: &str) -> Option<Code> {
        Some(match s {
            "8867-4" => Code::HeartRate,
            "8480-6" => Code::Systolic,
            "8462-4" => Code::Diastolic,
            "59408-5" | "2708-6" => Code::Spo2,
            "29463-7" => Code::BodyWeight,
            "8310-5" => Code::BodyTemperature,
            "41653-7" | "2339-0" => Code::BloodGlucose,
            "9279-1" => Code::RespiratoryRate,
            _ => return None,
        })
    }

    /// A compact index (0..8) for per-code arrays in hot paths.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.loinc())
    }
}

/// Who produced a reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Published automatically by an enrolled device.
    Device,
    /// Entered by hand by the patient in the app.
    Manual,
}

impl Source {
    /// The value stored in the `source` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Device => "device",
            Source::Manual => "manual",
        }
    }
}

/// Where the measurement time of a reading came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeSource {
    /// Stamped by the device.
    Device,
    /// Stamped by the patient app (manual entry).
    App,
    /// Not given: the ingest receive time was used (manual entries only).
    Received,
}

impl TimeSource {
    /// The value stored in the `time_source` column.
    pub fn as_str(self) -> &'static str {
        match self {
            TimeSource::Device => "device",
            TimeSource::App => "app",
            TimeSource::Received => "received",
        }
    }
}

/// Error for an identifier that is not acceptable in a topic or a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid identifier {0:?}: expected 1 to 64 characters of A-Z a-z 0-9 _ . -")]
pub struct InvalidId(pub String);

fn validate_id(s: &str) -> Result<(), InvalidId> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok { Ok(()) } else { Err(InvalidId(s.chars().take(80).collect())) }
}

macro_rules! id_type {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps an identifier.
            pub fn new(s: impl Into<String>) -> Result<Self, InvalidId> {
                let s = s.into();
                validate_id(&s)?;
                Ok(Self(s))
            }
            /// The identifier as a string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(s: String) -> Result<Self, InvalidId> {
                Self::new(s)
            }
        }
        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

id_type!(
    /// A pseudonymous patient identifier (never a name or a national number).
    PatientId
);
id_type!(
    /// A device identifier (serial or provisioning id).
    DeviceId
);

/// Deterministic observation id: a 128-bit [`StableHasher`] hash of patient,
/// code and measurement time. The same reading redelivered gets the same id, so every
/// consumer can drop duplicates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObservationId(pub u128);

impl ObservationId {
    /// Computes the id of (patient, code, time).
    pub fn compute(patient: &str, code: Code, time_unix_micros: i64) -> Self {
        let mut h = StableHasher::new();
        h.write(patient.as_bytes());
        h.write(&[0xff]);
        h.write(code.loinc().as_bytes());
        h.write(&[0xff]);
        h.write(&time_unix_micros.to_le_bytes());
        ObservationId(h.finish128())
    }

    /// Lower-case hex, 32 characters.
    pub fn to_hex(self) -> String {
        format!("{:032x}", self.0)
    }

    /// Parses the hex form.
    pub fn from_hex(s: &str) -> Option<Self> {
        u128::from_str_radix(s, 16).ok().map(ObservationId)
    }
}

impl fmt::Display for ObservationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// A fast, stable (same on every platform and version) non-cryptographic
/// hash, 8 bytes at a time, with two independent 64-bit lanes. Used for
/// deterministic ids, never for security.
#[derive(Debug, Clone)]
pub struct StableHasher {
    a: u64,
    b: u64,
    tail: [u8; 8],
    tail_len: usize,
    len: u64,
}

impl Default for StableHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl StableHasher {
    const K1: u64 = 0x9E37_79B9_7F4A_7C15;
    const K2: u64 = 0xC2B2_AE3D_27D4_EB4F;

    /// A fresh hasher.
    pub fn new() -> Self {
        StableHasher { a: 0x243F_6A88_85A3_08D3, b: 0x1319_8A2E_0370_7344, tail: [0; 8], tail_len: 0, len: 0 }
    }

    fn block(&mut self, v: u64) {
        self.a = (self.a ^ v).wrapping_mul(Self::K1).rotate_left(29);
        self.b = (self.b ^ v.rotate_left(17)).wrapping_mul(Self::K2).rotate_left(31);
    }

    /// Feeds bytes.
    pub fn write(&mut self, mut bytes: &[u8]) {
        self.len += bytes.len() as u64;
        if self.tail_len > 0 {
            let take = (8 - self.tail_len).min(bytes.len());
            self.tail[self.tail_len..self.tail_len + take].copy_from_slice(&bytes[..take]);
            self.tail_len += take;
            bytes = &bytes[take..];
            if self.tail_len < 8 {
                return;
            }
            let v = u64::from_le_bytes(self.tail);
            self.block(v);
            self.tail_len = 0;
        }
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.block(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        self.tail[..rest.len()].copy_from_slice(rest);
        self.tail_len = rest.len();
    }

    fn mix(mut x: u64) -> u64 {
        // splitmix64 finalizer
        x ^= x >> 30;
        x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x ^= x >> 27;
        x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^ (x >> 31)
    }

    /// 128-bit result.
    pub fn finish128(mut self) -> u128 {
        let mut w = [0u8; 8];
        w[..self.tail_len].copy_from_slice(&self.tail[..self.tail_len]);
        let v = u64::from_le_bytes(w) ^ (self.len << 56);
        self.block(v);
        let (a, b) = (Self::mix(self.a ^ self.b.rotate_left(32)), Self::mix(self.b ^ self.len));
        ((a as u128) << 64) | b as u128
    }

    /// 64-bit result.
    pub fn finish64(self) -> u64 {
        (self.finish128() >> 64) as u64
    }
}

/// A validated, normalized observation: one component of one reading.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// Deterministic id (see [`ObservationId`]).
    pub id: ObservationId,
    /// The patient the reading belongs to (for a device: the patient the device
    /// was enrolled to at the measurement time).
    pub patient_id: PatientId,
    /// LOINC code.
    pub code: Code,
    /// Value in the code's UCUM unit ([`Code::ucum`]).
    pub value: f64,
    /// Measurement time.
    pub time: DateTime<Utc>,
    /// When ingest received the message.
    pub received_at: DateTime<Utc>,
    /// Device or manual entry.
    pub source: Source,
    /// The device, for device readings.
    pub device_id: Option<DeviceId>,
    /// Where `time` came from.
    pub time_source: TimeSource,
    /// The value as sent, before conversion.
    pub original_value: f64,
    /// The unit as sent.
    pub original_unit: String,
    /// Sender's idempotency key, if any.
    pub msg_id: Option<String>,
    /// Trace id that follows the reading through the pipeline.
    pub trace_id: String,
}

impl Observation {
    /// Measurement time in microseconds since the epoch.
    pub fn time_micros(&self) -> i64 {
        self.time.timestamp_micros()
    }

    /// Converts to the protobuf message published on Kafka.
    pub fn to_proto(&self) -> crate::proto::Observation {
        use crate::proto;
        proto::Observation {
            id: self.id.to_hex(),
            patient_id: self.patient_id.as_str().to_owned(),
            code: self.code.loinc().to_owned(),
            value: self.value,
            unit: self.code.ucum().to_owned(),
            time_unix_micros: self.time.timestamp_micros(),
            received_at_unix_micros: self.received_at.timestamp_micros(),
            source: match self.source {
                Source::Device => proto::Source::Device as i32,
                Source::Manual => proto::Source::Manual as i32,
            },
            device_id: self.device_id.as_ref().map(|d| d.as_str().to_owned()).unwrap_or_default(),
            time_source: match self.time_source {
                TimeSource::Device => proto::TimeSource::Device as i32,
                TimeSource::App => proto::TimeSource::App as i32,
                TimeSource::Received => proto::TimeSource::Received as i32,
            },
            original_value: self.original_value,
            original_unit: self.original_unit.clone(),
            msg_id: self.msg_id.clone().unwrap_or_default(),
            trace_id: self.trace_id.clone(),
        }
    }

    /// Converts from the protobuf message (taking its strings, no copy); fails
    /// with a description of the first bad field.
    pub fn from_proto(p: crate::proto::Observation) -> Result<Self, String> {
        use crate::proto;
        let patient_id = PatientId::new(p.patient_id).map_err(|e| e.to_string())?;
        let code = Code::from_loinc(&p.code).ok_or_else(|| format!("unknown code {:?}", p.code))?;
        let time = DateTime::from_timestamp_micros(p.time_unix_micros).ok_or("time out of range")?;
        let received_at =
            DateTime::from_timestamp_micros(p.received_at_unix_micros).ok_or("received_at out of range")?;
        let source = match proto::Source::try_from(p.source) {
            Ok(proto::Source::Device) => Source::Device,
            Ok(proto::Source::Manual) => Source::Manual,
            _ => return Err(format!("unknown source {}", p.source)),
        };
        let time_source = match proto::TimeSource::try_from(p.time_source) {
            Ok(proto::TimeSource::Device) => TimeSource::Device,
            Ok(proto::TimeSource::App) => TimeSource::App,
            Ok(proto::TimeSource::Received) => TimeSource::Received,
            _ => return Err(format!("unknown time source {}", p.time_source)),
        };
        let device_id =
            if p.device_id.is_empty() { None } else { Some(DeviceId::new(p.device_id).map_err(|e| e.to_string())?) };
        let id = ObservationId::from_hex(&p.id)
            .unwrap_or_else(|| ObservationId::compute(patient_id.as_str(), code, p.time_unix_micros));
        Ok(Observation {
            id,
            patient_id,
            code,
            value: p.value,
            time,
            received_at,
            source,
            device_id,
            time_source,
            original_value: p.original_value,
            original_unit: p.original_unit,
            msg_id: (!p.msg_id.is_empty()).then_some(p.msg_id),
            trace_id: p.trace_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loinc_round_trip() {
        for c in Code::ALL {
            assert_eq!(Code::from_loinc(c.loinc()), Some(c));
        }
        assert_eq!(Code::from_loinc("2708-6"), Some(Code::Spo2));
        assert_eq!(Code::from_loinc("1234-5"), None);
    }

    #[test]
    fn kinds_round_trip() {
        for k in VitalKind::ALL {
            assert_eq!(VitalKind::parse(k.as_str()), Some(k));
        }
    }

    #[test]
    fn ids_are_validated() {
        assert!(PatientId::new("p-001").is_ok());
        assert!(PatientId::new("").is_err());
        assert!(PatientId::new("a/b").is_err());
        assert!(PatientId::new("+").is_err());
        assert!(PatientId::new("x".repeat(65)).is_err());
    }

    #[test]
    fn observation_id_is_deterministic_and_distinct() {
        let a = ObservationId::compute("p1", Code::Systolic, 1_000);
        assert_eq!(a, ObservationId::compute("p1", Code::Systolic, 1_000));
        assert_ne!(a, ObservationId::compute("p1", Code::Diastolic, 1_000));
        assert_ne!(a, ObservationId::compute("p1", Code::Systolic, 1_001));
        assert_ne!(a, ObservationId::compute("p2", Code::Systolic, 1_000));
        assert_eq!(ObservationId::from_hex(&a.to_hex()), Some(a));
    }

    #[test]
    fn stable_hasher_is_chunking_independent_and_sensitive() {
        let data: Vec<u8> = (0..100u8).collect();
        let mut one = StableHasher::new();
        one.write(&data);
        let whole = one.finish128();
        for split in [0, 1, 7, 8, 9, 50, 99, 100] {
            let mut h = StableHasher::new();
            h.write(&data[..split]);
            h.write(&data[split..]);
            assert_eq!(h.finish128(), whole, "split at {split}");
        }
        let mut other = StableHasher::new();
        other.write(&data[..99]);
        assert_ne!(other.finish128(), whole);
        let (mut x, mut y) = (StableHasher::new(), StableHasher::new());
        x.write(b"ab");
        y.write(b"ba");
        assert_ne!(x.finish128(), y.finish128());
        // Pinned value: ids must not change between releases.
        assert_eq!(ObservationId::compute("p1", Code::Systolic, 1_000).to_hex(), "0fdf9bc13522dc23ebb5647eb7bd337b");
    }

    #[test]
    fn proto_round_trip() {
        let t = DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap();
        let o = Observation {
            id: ObservationId::compute("p1", Code::BodyWeight, t.timestamp_micros()),
            patient_id: PatientId::new("p1").unwrap(),
            code: Code::BodyWeight,
            value: 80.5,
            time: t,
            received_at: t,
            source: Source::Device,
            device_id: Some(DeviceId::new("scale-1").unwrap()),
            time_source: TimeSource::Device,
            original_value: 177.47,
            original_unit: "lb".into(),
            msg_id: Some("m1".into()),
            trace_id: "abc".into(),
        };
        assert_eq!(Observation::from_proto(o.to_proto()).unwrap(), o);
    }
}
