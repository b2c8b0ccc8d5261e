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

/// Counts the `readings` fields (number 2) of a `ReadingBatch` without
/// decoding anything: one pass over the top-level fields, no allocation.
/// `None` if the payload is not well-formed at the top level (the decoder
/// then words the error).
pub fn count_readings(mut b: &[u8]) -> Option<usize> {
    fn varint(b: &mut &[u8]) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = b.split_first()?;
            *b = rest;
            v |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Some(v);
            }
        }
        None
    }
    let mut n = 0;
    while !b.is_empty() {
        let key = varint(&mut b)?;
        let skip = match key & 7 {
            0 => {
                varint(&mut b)?;
                0
            }
            1 => 8,
            2 => {
                if key >> 3 == 2 {
                    n += 1;
                }
                usize::try_from(varint(&mut b)?).ok()?
            }
            5 => 4,
            _ => return None,
        };
        b = b.get(skip..)?;
    }
    Some(n)
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

    #[test]
    fn counts_readings_without_decoding() {
        let b = ReadingBatch {
            msg_id: "x".into(),
            patient_id: "p".into(),
            readings: vec![Reading { unit: "%".into(), value: Some(1.0), ..Default::default() }; 7],
        };
        assert_eq!(count_readings(&b.encode_to_vec()), Some(7));
        assert_eq!(count_readings(&[]), Some(0));
        assert_eq!(count_readings(&[0xff, 0xff, 0xff]), None);
        assert_eq!(count_readings(&[0x12, 0x05, 0x00]), None, "a length past the end");
    }
}
