//! Protobuf `vitalwatch.v1.ReadingBatch`.

use std::borrow::Cow;

use prost::Message;
use vitalwatch_schemas::proto::{ReadingBatch, ReadingType};

use super::{RawBatch, RawReading, RawTime, malformed};
use crate::reject::Rejection;
use crate::topic::Format;

/// Decodes a protobuf `ReadingBatch`.
pub fn decode(payload: &[u8]) -> Result<RawBatch<'static>, Rejection> {
    let b = ReadingBatch::decode(payload).map_err(|e| malformed(Format::Proto, e))?;
    Ok(RawBatch {
        msg_id: (!b.msg_id.is_empty()).then_some(Cow::Owned(b.msg_id)),
        patient_claim: (!b.patient_id.is_empty()).then_some(Cow::Owned(b.patient_id)),
        readings: b
            .readings
            .into_iter()
            .map(|r| RawReading {
                kind: Cow::Borrowed(match ReadingType::try_from(r.r#type) {
                    Ok(ReadingType::HeartRate) => "heart_rate",
                    Ok(ReadingType::BloodPressure) => "blood_pressure",
                    Ok(ReadingType::Spo2) => "spo2",
                    Ok(ReadingType::BodyWeight) => "body_weight",
                    Ok(ReadingType::BodyTemperature) => "body_temperature",
                    Ok(ReadingType::BloodGlucose) => "blood_glucose",
                    Ok(ReadingType::RespiratoryRate) => "respiratory_rate",
                    Ok(ReadingType::Unspecified) | Err(_) => "unspecified",
                }),
                time: (r.time_unix_micros != 0).then_some(RawTime::UnixMicros(r.time_unix_micros)),
                unit: (!r.unit.is_empty()).then_some(Cow::Owned(r.unit)),
                value: r.value,
                systolic: r.systolic,
                diastolic: r.diastolic,
                pulse: r.pulse,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vitalwatch_schemas::proto::Reading;

    #[test]
    fn decodes_protobuf() {
        let b = ReadingBatch {
            msg_id: "x".into(),
            patient_id: String::new(),
            readings: vec![Reading {
                r#type: ReadingType::Spo2 as i32,
                time_unix_micros: 1_700_000_000_000_000,
                unit: "%".into(),
                value: Some(97.0),
                ..Default::default()
            }],
        };
        let raw = decode(&b.encode_to_vec()).unwrap();
        assert_eq!(raw.readings[0].kind, "spo2");
        assert_eq!(raw.readings[0].time, Some(RawTime::UnixMicros(1_700_000_000_000_000)));
        assert!(decode(&[0xff, 0xff, 0xff]).is_err());
    }
}
