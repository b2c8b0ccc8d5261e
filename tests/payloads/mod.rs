//! Test payloads in the four formats, written independently of the code under
//! test: expected canonical values are computed here from the published
//! conversion factors (clinical.md §2.1).
#![allow(dead_code)]

use chrono::{DateTime, SecondsFormat, Utc};
use prost::Message as _;
use vitalwatch_schemas::proto::{Reading, ReadingBatch, ReadingType};

/// The four formats.
pub const FORMATS: [&str; 4] = ["json", "senml", "fhir", "proto"];

/// RFC 3339 with microseconds.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// UCUM unit of a LOINC code.
pub fn ucum_for(code: &str) -> &'static str {
    match code {
        "29463-7" => "kg",
        "8480-6" | "8462-4" => "mm[Hg]",
        "8867-4" | "9279-1" => "/min",
        "59408-5" => "%",
        "8310-5" => "Cel",
        "41653-7" => "mg/dL",
        _ => "?",
    }
}

/// A reading with known expected rows.
#[derive(Debug, Clone)]
pub enum TestReading {
    /// Weight in kg.
    WeightKg(DateTime<Utc>, f64),
    /// Weight in pounds.
    WeightLb(DateTime<Utc>, f64),
    /// Blood pressure in mmHg with pulse.
    Bp(DateTime<Utc>, f64, f64, f64),
    /// SpO2.
    Spo2(DateTime<Utc>, f64),
    /// Temperature in °F.
    TempF(DateTime<Utc>, f64),
    /// Glucose in mmol/L.
    GlucoseMmol(DateTime<Utc>, f64),
}

impl TestReading {
    /// The m-th test reading at time t.
    pub fn nth(m: u32, t: DateTime<Utc>) -> TestReading {
        let f = m as f64;
        match m % 6 {
            0 => TestReading::WeightKg(t, 70.0 + (m % 100) as f64 / 10.0),
            1 => TestReading::WeightLb(t, 150.0 + (m % 50) as f64),
            2 => TestReading::Bp(t, 120.0 + (m % 40) as f64, 70.0 + (m % 20) as f64, 60.0 + (m % 30) as f64),
            3 => TestReading::Spo2(t, 90.0 + (m % 10) as f64),
            4 => TestReading::TempF(t, 97.0 + (m % 30) as f64 / 10.0),
            _ => TestReading::GlucoseMmol(t, 4.0 + (f % 50.0) / 10.0),
        }
    }

    /// The rows it must produce: (LOINC, canonical value).
    pub fn expected_rows(&self) -> Vec<(&'static str, f64)> {
        match *self {
            TestReading::WeightKg(_, v) => vec![("29463-7", v)],
            TestReading::WeightLb(_, v) => vec![("29463-7", v * 0.45359237)],
            TestReading::Bp(_, s, d, p) => vec![("8480-6", s), ("8462-4", d), ("8867-4", p)],
            TestReading::Spo2(_, v) => vec![("59408-5", v)],
            TestReading::TempF(_, v) => vec![("8310-5", (v - 32.0) * 5.0 / 9.0)],
            TestReading::GlucoseMmol(_, v) => vec![("41653-7", v * 18.0156)],
        }
    }

    fn parts(&self) -> (DateTime<Utc>, &'static str, &'static str, &'static str, Vec<f64>) {
        // (time, type, unit as a device writes it, UCUM unit for FHIR, values)
        match *self {
            TestReading::WeightKg(t, v) => (t, "body_weight", "kg", "kg", vec![v]),
            TestReading::WeightLb(t, v) => (t, "body_weight", "lb", "[lb_av]", vec![v]),
            TestReading::Bp(t, s, d, p) => (t, "blood_pressure", "mmHg", "mm[Hg]", vec![s, d, p]),
            TestReading::Spo2(t, v) => (t, "spo2", "%", "%", vec![v]),
            TestReading::TempF(t, v) => (t, "body_temperature", "°F", "[degF]", vec![v]),
            TestReading::GlucoseMmol(t, v) => (t, "blood_glucose", "mmol/L", "mmol/L", vec![v]),
        }
    }

    /// Encodes in `format`.
    pub fn encode(&self, format: &str) -> Vec<u8> {
        let (t, ty, unit, ucum, v) = self.parts();
        match format {
            "json" => {
                let r = if ty == "blood_pressure" {
                    serde_json::json!({"type": ty, "time": rfc3339(t), "unit": unit, "systolic": v[0], "diastolic": v[1], "pulse": v[2]})
                } else {
                    serde_json::json!({"type": ty, "time": rfc3339(t), "unit": unit, "value": v[0]})
                };
                serde_json::to_vec(
                    &serde_json::json!({"msg_id": format!("m-{}", t.timestamp_micros()), "readings": [r]}),
                )
                .unwrap()
            }
            "senml" => {
                // Whole seconds: exact in a JSON number.
                let ts = t.timestamp();
                let recs = if ty == "blood_pressure" {
                    serde_json::json!([
                        {"bn": "urn:dev:test:", "bt": ts, "bu": unit, "n": "systolic", "v": v[0]},
                        {"n": "diastolic", "v": v[1]},
                        {"n": "pulse", "u": "beat/min", "v": v[2]}])
                } else {
                    serde_json::json!([{"bn": "urn:dev:test:", "bt": ts, "n": ty, "u": ucum, "v": v[0]}])
                };
                serde_json::to_vec(&recs).unwrap()
            }
            "fhir" => {
                let code = |c: &str| serde_json::json!({"coding": [{"system": "http://loinc.org", "code": c}]});
                let q =
                    |x: f64, u: &str| serde_json::json!({"value": x, "system": "http://unitsofmeasure.org", "code": u});
                let loinc = match ty {
                    "body_weight" => "29463-7",
                    "blood_pressure" => "85354-9",
                    "spo2" => "59408-5",
                    "body_temperature" => "8310-5",
                    _ => "14743-9",
                };
                let mut o = serde_json::json!({"resourceType": "Observation", "status": "final", "code": code(loinc), "effectiveDateTime": rfc3339(t)});
                if ty == "blood_pressure" {
                    o["component"] = serde_json::json!([
                        {"code": code("8480-6"), "valueQuantity": q(v[0], "mm[Hg]")},
                        {"code": code("8462-4"), "valueQuantity": q(v[1], "mm[Hg]")},
                        {"code": code("8867-4"), "valueQuantity": q(v[2], "/min")}]);
                } else {
                    o["valueQuantity"] = q(v[0], ucum);
                }
                serde_json::to_vec(&o).unwrap()
            }
            _ => {
                let ty = match ty {
                    "body_weight" => ReadingType::BodyWeight,
                    "blood_pressure" => ReadingType::BloodPressure,
                    "spo2" => ReadingType::Spo2,
                    "body_temperature" => ReadingType::BodyTemperature,
                    _ => ReadingType::BloodGlucose,
                };
                let mut r = Reading {
                    r#type: ty as i32,
                    time_unix_micros: t.timestamp_micros(),
                    unit: unit.into(),
                    ..Default::default()
                };
                if v.len() == 3 {
                    (r.systolic, r.diastolic, r.pulse) = (Some(v[0]), Some(v[1]), Some(v[2]));
                } else {
                    r.value = Some(v[0]);
                }
                ReadingBatch { readings: vec![r], ..Default::default() }.encode_to_vec()
            }
        }
    }
}
