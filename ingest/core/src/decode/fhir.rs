//! FHIR R4 JSON: one `Observation`, or a `Bundle` whose entries are
//! Observations. The LOINC coding selects the reading type; the blood-pressure
//! panel (85354-9, or 55284-4) carries systolic (8480-6) and diastolic
//! (8462-4) components, and optionally a heart-rate component (8867-4).
//! `valueQuantity.code` (UCUM) is preferred over `valueQuantity.unit`.
//! `subject` is reported as the patient claim; for device topics it is ignored.

use std::borrow::Cow;

use serde_json::Value;

use super::{RawBatch, RawReading, RawTime, malformed};
use crate::reject::Rejection;
use crate::topic::Format;

const LOINC: &str = "http://loinc.org";

/// Decodes one Observation or a Bundle of them.
pub fn decode(payload: &[u8]) -> Result<RawBatch<'static>, Rejection> {
    let v: Value = super::from_json(payload).map_err(|e| malformed(Format::Fhir, e))?;
    let mut batch = RawBatch::default();
    match v.get("resourceType").and_then(Value::as_str) {
        Some("Observation") => observation(&v, &mut batch, "")?,
        Some("Bundle") => {
            if let Some(id) = v.get("id").and_then(Value::as_str) {
                batch.msg_id = Some(Cow::Owned(id.to_owned()));
            }
            let entries = v
                .get("entry")
                .and_then(Value::as_array)
                .ok_or_else(|| malformed(Format::Fhir, "Bundle has no entry array"))?;
            for (i, e) in entries.iter().enumerate() {
                let r =
                    e.get("resource").ok_or_else(|| malformed(Format::Fhir, format!("entry[{i}] has no resource")))?;
                if r.get("resourceType").and_then(Value::as_str) != Some("Observation") {
                    return Err(malformed(Format::Fhir, format!("entry[{i}] is not an Observation")));
                }
                observation(r, &mut batch, &format!("entry[{i}]."))?;
            }
        }
        Some(other) => {
            let shown: String = other.chars().take(40).collect();
            return Err(malformed(Format::Fhir, format!("resourceType {shown:?} is not Observation or Bundle")));
        }
        None => return Err(malformed(Format::Fhir, "missing resourceType")),
    }
    Ok(batch)
}

fn loinc_codes(concept: &Value) -> impl Iterator<Item = &str> {
    concept
        .get("coding")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| c.get("system").and_then(Value::as_str).is_none_or(|s| s == LOINC))
        .filter_map(|c| c.get("code").and_then(Value::as_str))
}

fn kind_of(code: &str) -> Option<&'static str> {
    Some(match code {
        "8867-4" => "heart_rate",
        "85354-9" | "55284-4" => "blood_pressure",
        "59408-5" | "2708-6" => "spo2",
        "29463-7" => "body_weight",
        "8310-5" => "body_temperature",
        "41653-7" | "2339-0" | "14743-9" | "15074-8" => "blood_glucose",
        "9279-1" => "respiratory_rate",
        _ => return None,
    })
}

fn quantity(q: Option<&Value>) -> (Option<f64>, Option<Cow<'static, str>>) {
    let Some(q) = q else { return (None, None) };
    let value = q.get("value").and_then(Value::as_f64);
    let unit = q
        .get("code")
        .and_then(Value::as_str)
        .or_else(|| q.get("unit").and_then(Value::as_str))
        .map(|s| Cow::Owned(s.to_owned()));
    (value, unit)
}

fn observation(o: &Value, batch: &mut RawBatch<'static>, at: &str) -> Result<(), Rejection> {
    if let Some(status) = o.get("status").and_then(Value::as_str)
        && matches!(status, "entered-in-error" | "cancelled")
    {
        return Err(malformed(Format::Fhir, format!("{at}status {status:?} cannot be ingested")));
    }
    if let Some(subject) = o.pointer("/subject/reference").and_then(Value::as_str)
        && let Some(id) = subject.strip_prefix("Patient/")
    {
        batch.patient_claim = Some(Cow::Owned(id.to_owned()));
    }
    let code = o.get("code").ok_or_else(|| malformed(Format::Fhir, format!("{at}code is missing")))?;
    let codes: Vec<&str> = loinc_codes(code).collect();
    let kind = codes.iter().find_map(|c| kind_of(c));
    let time = o
        .get("effectiveDateTime")
        .or_else(|| o.pointer("/effectivePeriod/start"))
        .or_else(|| o.get("effectiveInstant"))
        .and_then(Value::as_str)
        .map(|s| RawTime::Rfc3339(Cow::Owned(s.to_owned())));
    let Some(kind) = kind else {
        let shown = codes.first().copied().unwrap_or("(no LOINC coding)");
        batch.readings.push(RawReading {
            kind: Cow::Owned(format!("loinc:{}", shown.chars().take(20).collect::<String>())),
            time,
            ..Default::default()
        });
        return Ok(());
    };
    let mut r = RawReading { kind: Cow::Borrowed(kind), time, ..Default::default() };
    if kind == "blood_pressure" {
        for c in o.get("component").and_then(Value::as_array).into_iter().flatten() {
            let Some(ccode) = c.get("code") else { continue };
            let (value, unit) = quantity(c.get("valueQuantity"));
            for cc in loinc_codes(ccode) {
                match cc {
                    "8480-6" => r.systolic = value,
                    "8462-4" => r.diastolic = value,
                    "8867-4" => {
                        r.pulse = value;
                        continue;
                    }
                    _ => continue,
                }
                if r.unit.is_none() {
                    r.unit = unit.clone();
                }
            }
        }
    } else {
        let (value, unit) = quantity(o.get("valueQuantity"));
        r.value = value;
        r.unit = unit;
    }
    batch.readings.push(r);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_bp_panel_and_bundle() {
        let p = br#"{"resourceType":"Bundle","id":"b-1","type":"collection","entry":[
          {"resource":{"resourceType":"Observation","status":"final",
            "code":{"coding":[{"system":"http://loinc.org","code":"85354-9"}]},
            "subject":{"reference":"Patient/p1"},
            "effectiveDateTime":"2026-11-26T07:30:00+01:00",
            "component":[
              {"code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]},"valueQuantity":{"value":150,"unit":"mmHg","system":"http://unitsofmeasure.org","code":"mm[Hg]"}},
              {"code":{"coding":[{"system":"http://loinc.org","code":"8462-4"}]},"valueQuantity":{"value":95,"unit":"mmHg","code":"mm[Hg]"}}]}},
          {"resource":{"resourceType":"Observation","status":"final",
            "code":{"coding":[{"system":"http://loinc.org","code":"29463-7"}]},
            "effectiveDateTime":"2026-11-26T07:31:00+01:00",
            "valueQuantity":{"value":180.2,"unit":"lbs","code":"[lb_av]"}}}]}"#;
        let b = decode(p).unwrap();
        assert_eq!(b.msg_id.as_deref(), Some("b-1"));
        assert_eq!(b.patient_claim.as_deref(), Some("p1"));
        assert_eq!(b.readings.len(), 2);
        assert_eq!(b.readings[0].kind, "blood_pressure");
        assert_eq!((b.readings[0].systolic, b.readings[0].diastolic), (Some(150.0), Some(95.0)));
        assert_eq!(b.readings[0].unit.as_deref(), Some("mm[Hg]"));
        assert_eq!(b.readings[1].unit.as_deref(), Some("[lb_av]"));
    }

    #[test]
    fn rejects_non_observations() {
        assert!(decode(br#"{"resourceType":"Patient"}"#).is_err());
        assert!(decode(br#"{"resourceType":"Bundle"}"#).is_err());
        assert!(decode(br#"[]"#).is_err());
        let e = decode(br#"{"resourceType":"Observation","status":"entered-in-error","code":{}}"#).unwrap_err();
        assert!(e.message.contains("entered-in-error"));
    }

    #[test]
    fn unknown_code_becomes_unknown_type() {
        let b = decode(br#"{"resourceType":"Observation","code":{"coding":[{"system":"http://loinc.org","code":"1234-5"}]},"valueQuantity":{"value":1}}"#).unwrap();
        assert_eq!(b.readings[0].kind, "loinc:1234-5");
    }
}
