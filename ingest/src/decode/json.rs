//! Canonical vitalwatch JSON:
//! `{"msg_id": "...", "readings": [{"type": "...", "time": "RFC 3339", "unit": "...", "value": 1.0}]}`.

use std::borrow::Cow;

use serde::Deserialize;

use super::{RawBatch, RawReading, RawTime, malformed};
use crate::reject::Rejection;
use crate::topic::Format;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch<'a> {
    #[serde(borrow, default)]
    msg_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    patient_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    readings: Vec<Reading<'a>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Reading<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    time: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    unit: Option<Cow<'a, str>>,
    #[serde(default)]
    value: Option<f64>,
    #[serde(default)]
    systolic: Option<f64>,
    #[serde(default)]
    diastolic: Option<f64>,
    #[serde(default)]
    pulse: Option<f64>,
}

/// Decodes canonical JSON.
pub fn decode(payload: &[u8]) -> Result<RawBatch<'_>, Rejection> {
    let b: Batch<'_> = serde_json::from_slice(payload).map_err(|e| malformed(Format::Json, e))?;
    Ok(RawBatch {
        msg_id: b.msg_id,
        patient_claim: b.patient_id,
        readings: b
            .readings
            .into_iter()
            .map(|r| RawReading {
                kind: r.kind,
                time: r.time.map(RawTime::Rfc3339),
                unit: r.unit,
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

    #[test]
    fn decodes_canonical_json() {
        let p = br#"{"msg_id":"m1","readings":[
            {"type":"blood_pressure","time":"2026-11-26T08:00:00+01:00","unit":"mmHg","systolic":130,"diastolic":85,"pulse":70},
            {"type":"body_weight","time":"2026-11-26T08:01:00Z","unit":"kg","value":81.2}]}"#;
        let b = decode(p).unwrap();
        assert_eq!(b.msg_id.as_deref(), Some("m1"));
        assert_eq!(b.readings.len(), 2);
        assert_eq!(b.readings[0].systolic, Some(130.0));
        assert_eq!(b.readings[1].value, Some(81.2));
        assert_eq!(b.readings[1].time, Some(RawTime::Rfc3339("2026-11-26T08:01:00Z".into())));
    }

    #[test]
    fn rejects_typos_and_garbage() {
        let e = decode(br#"{"readings":[{"type":"blood_pressure","sytolic":1}]}"#).unwrap_err();
        assert!(e.message.contains("unknown field `sytolic`"), "{}", e.message);
        assert!(decode(b"not json").is_err());
        assert!(decode(br#"{"readings":{}}"#).is_err());
        assert!(decode(br#"{"readings":[{"type":"spo2","value":"97"}]}"#).is_err());
    }

    #[test]
    fn escaped_strings_decode() {
        let b = decode(br#"{"readings":[{"type":"body_temperature","unit":"\u00b0C","value":37}]}"#).unwrap();
        assert_eq!(b.readings[0].unit.as_deref(), Some("°C"));
    }
}
