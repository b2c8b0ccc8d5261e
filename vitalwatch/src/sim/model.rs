//! A deterministic model of patients and their home devices. Some patients
//! deteriorate: a heart-failure patient gaining weight, a COPD patient whose
//! SpO2 drifts down, a hypertensive patient whose pressure climbs.

use chrono::{DateTime, SecondsFormat, Utc};
use prost::Message as _;
use vitalwatch_schemas::proto::{Reading, ReadingBatch, ReadingType};
use vitalwatch_schemas::topics;

/// Payload formats a simulated device may use.
pub const FORMATS: [&str; 4] = ["json", "senml", "fhir", "proto"];

/// How a simulated patient evolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trend {
    /// Stable, normal noise.
    Stable,
    /// Heart failure: weight rises.
    WeightGain,
    /// COPD: SpO2 drifts down.
    Spo2Drift,
    /// Hypertension: pressure climbs.
    PressureRise,
}

/// One simulated patient.
#[derive(Debug, Clone)]
pub struct SimPatient {
    /// Patient id.
    pub id: String,
    /// Device id prefix (`{prefix}-scale`, `-cuff`, `-oxi`, `-gluco`, `-thermo`).
    pub device_prefix: String,
    /// Payload format of the devices.
    pub format: &'static str,
    /// Enters readings by hand in the app instead of devices.
    pub manual: bool,
    /// Trend.
    pub trend: Trend,
    /// The step at which the trend starts (0: from the first reading).
    pub onset: u64,
    rng: u64,
}

/// The device kinds of a simulated patient.
pub const DEVICE_KINDS: [(&str, &str); 5] =
    [("scale", "scale"), ("cuff", "bp_cuff"), ("oxi", "oximeter"), ("gluco", "glucometer"), ("thermo", "thermometer")];

impl SimPatient {
    /// The i-th patient of a population named `prefix`.
    pub fn new(prefix: &str, i: usize, formats: &[&'static str]) -> SimPatient {
        let trend = match i % 10 {
            3 => Trend::WeightGain,
            5 => Trend::Spo2Drift,
            7 => Trend::PressureRise,
            _ => Trend::Stable,
        };
        SimPatient {
            id: format!("{prefix}-{i:06}"),
            device_prefix: format!("{prefix}-{i:06}"),
            format: formats[i % formats.len().max(1)],
            manual: i % 5 == 4,
            trend,
            onset: 0,
            rng: 0x9E37_79B9_7F4A_7C15 ^ (i as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9),
        }
    }

    /// Device ids and kinds.
    pub fn devices(&self) -> impl Iterator<Item = (String, &'static str)> + '_ {
        DEVICE_KINDS.iter().map(|(suffix, kind)| (format!("{}-{suffix}", self.device_prefix), *kind))
    }

    fn noise(&mut self) -> f64 {
        // xorshift64*: deterministic, fast, good enough for noise.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let x = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (x >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    }

    /// The `step`-th reading as (MQTT topic, payload, rows it will store).
    pub fn reading(&mut self, step: u64, time: DateTime<Utc>) -> (String, Vec<u8>, u64) {
        let (topic, payload, readings) = self.message(step, time, 1);
        (topic, payload, readings.iter().map(|(_, rows)| rows).sum())
    }

    /// The `step`-th message: `n` readings of the same kind from the same
    /// device (a device uploading its last `n` measurements, 1 ms apart, the
    /// last one at `time`), as (MQTT topic, payload, each reading's time and
    /// the rows it will store). FHIR: one Observation, or a collection
    /// Bundle of `n`.
    pub fn message(&mut self, step: u64, time: DateTime<Utc>, n: usize) -> (String, Vec<u8>, Vec<ReadingRows>) {
        let n = n.max(1);
        let kind = step % 5;
        let readings: Vec<SimReading> = (0..n)
            .map(|j| {
                let t = time - chrono::Duration::milliseconds((n - 1 - j) as i64);
                let (ty, unit, values) = self.values(step, kind);
                SimReading { ty, unit, values, t }
            })
            .collect();
        let times = readings.iter().map(|r| (r.t, r.values.len() as u64)).collect();
        if self.manual {
            let topic = topics::patient_manual_topic(&self.id, "json");
            return (topic, canonical_json_many(&readings), times);
        }
        let device = format!("{}-{}", self.device_prefix, DEVICE_KINDS[kind as usize].0);
        let topic = topics::device_readings_topic(&device, self.format);
        let payload = match self.format {
            "senml" => senml(&readings),
            "fhir" if n == 1 => serde_json::to_vec(&fhir(&readings[0])).unwrap_or_default(),
            "fhir" => {
                let entry: Vec<_> = readings.iter().map(|r| serde_json::json!({ "resource": fhir(r) })).collect();
                serde_json::to_vec(&serde_json::json!({"resourceType": "Bundle", "type": "collection", "entry": entry}))
                    .unwrap_or_default()
            }
            "proto" => proto(&readings),
            _ => canonical_json_many(&readings),
        };
        (topic, payload, times)
    }

    /// One reading's type, unit and values at `step` (trend from the onset, noise).
    fn values(&mut self, step: u64, kind: u64) -> (&'static str, &'static str, Vec<f64>) {
        let s = step.saturating_sub(self.onset) as f64;
        let n = self.noise();
        match kind {
            0 => {
                let w = 82.0 + n * 0.6 + if self.trend == Trend::WeightGain { 0.05 * s } else { 0.0 };
                ("body_weight", "kg", vec![(w * 10.0).round() / 10.0])
            }
            1 => {
                // Fast enough that `run --simulate` shows an alert within a couple of minutes.
                let rise = if self.trend == Trend::PressureRise { 3.0 * s } else { 0.0 };
                let sys = (128.0 + n * 10.0 + rise).round().min(260.0);
                let dia = (80.0 + n * 6.0 + rise * 0.5).round().min(sys - 10.0);
                ("blood_pressure", "mmHg", vec![sys, dia, (70.0 + n * 8.0).round()])
            }
            2 => {
                let drift = if self.trend == Trend::Spo2Drift { 0.5 * s } else { 0.0 };
                ("spo2", "%", vec![(96.0 + n * 2.0 - drift).round().clamp(80.0, 100.0)])
            }
            3 => ("blood_glucose", "mg/dL", vec![(110.0 + n * 30.0).round()]),
            _ => ("body_temperature", "Cel", vec![((36.8 + n * 0.4) * 10.0).round() / 10.0]),
        }
    }
}

/// A reading's time and the rows it will store.
pub type ReadingRows = (DateTime<Utc>, u64);

/// One simulated reading: type, unit, values (blood pressure: systolic,
/// diastolic, pulse), time.
struct SimReading {
    ty: &'static str,
    unit: &'static str,
    values: Vec<f64>,
    t: DateTime<Utc>,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn canonical_reading(ty: &str, unit: &str, v: &[f64], t: DateTime<Utc>) -> serde_json::Value {
    if ty == "blood_pressure" {
        serde_json::json!({"type": ty, "time": rfc3339(t), "unit": unit, "systolic": v[0], "diastolic": v[1], "pulse": v[2]})
    } else {
        serde_json::json!({"type": ty, "time": rfc3339(t), "unit": unit, "value": v[0]})
    }
}

/// Canonical JSON for a message of several readings.
fn canonical_json_many(readings: &[SimReading]) -> Vec<u8> {
    let list: Vec<_> = readings.iter().map(|r| canonical_reading(r.ty, r.unit, &r.values, r.t)).collect();
    serde_json::to_vec(&serde_json::json!({ "readings": list })).unwrap_or_default()
}

/// SenML (RFC 8428): each reading's first record sets the base time (its
/// own time: the stored time is then the same float as for a single
/// reading), the first record the base name.
fn senml(readings: &[SimReading]) -> Vec<u8> {
    let mut records = Vec::new();
    for (i, r) in readings.iter().enumerate() {
        let bt = r.t.timestamp_micros() as f64 / 1e6;
        let v = &r.values;
        let mut first = if r.ty == "blood_pressure" {
            serde_json::json!({"bt": bt, "bu": r.unit, "n": "systolic", "v": v[0]})
        } else {
            serde_json::json!({"bt": bt, "n": r.ty, "u": r.unit, "v": v[0]})
        };
        if i == 0 {
            first["bn"] = serde_json::json!("urn:dev:sim:");
        }
        records.push(first);
        if r.ty == "blood_pressure" {
            records.push(serde_json::json!({"n": "diastolic", "v": v[1]}));
            records.push(serde_json::json!({"n": "pulse", "u": "/min", "v": v[2]}));
        }
    }
    serde_json::to_vec(&records).unwrap_or_default()
}

fn loinc(ty: &str) -> &'static str {
    match ty {
        "body_weight" => "29463-7",
        "blood_pressure" => "85354-9",
        "spo2" => "59408-5",
        "blood_glucose" => "41653-7",
        "body_temperature" => "8310-5",
        "respiratory_rate" => "9279-1",
        _ => "8867-4",
    }
}

fn fhir(r: &SimReading) -> serde_json::Value {
    let (ty, unit, v, t) = (r.ty, r.unit, &r.values, r.t);
    let code = |c: &str| serde_json::json!({"coding": [{"system": "http://loinc.org", "code": c}]});
    let q =
        |x: f64, u: &str| serde_json::json!({"value": x, "unit": u, "system": "http://unitsofmeasure.org", "code": u});
    let mut o = serde_json::json!({
        "resourceType": "Observation", "status": "final", "code": code(loinc(ty)), "effectiveDateTime": rfc3339(t)
    });
    if ty == "blood_pressure" {
        o["component"] = serde_json::json!([
            {"code": code("8480-6"), "valueQuantity": q(v[0], "mm[Hg]")},
            {"code": code("8462-4"), "valueQuantity": q(v[1], "mm[Hg]")},
            {"code": code("8867-4"), "valueQuantity": q(v[2], "/min")}
        ]);
    } else {
        o["valueQuantity"] = q(v[0], unit);
    }
    o
}

fn proto(readings: &[SimReading]) -> Vec<u8> {
    let readings = readings.iter().map(proto_reading).collect();
    ReadingBatch { readings, ..Default::default() }.encode_to_vec()
}

fn proto_reading(sr: &SimReading) -> Reading {
    let (ty, unit, v, t) = (sr.ty, sr.unit, &sr.values, sr.t);
    let r#type = match ty {
        "body_weight" => ReadingType::BodyWeight,
        "blood_pressure" => ReadingType::BloodPressure,
        "spo2" => ReadingType::Spo2,
        "blood_glucose" => ReadingType::BloodGlucose,
        "body_temperature" => ReadingType::BodyTemperature,
        "respiratory_rate" => ReadingType::RespiratoryRate,
        _ => ReadingType::HeartRate,
    } as i32;
    let mut r = Reading { r#type, time_unix_micros: t.timestamp_micros(), unit: unit.to_owned(), ..Default::default() };
    if ty == "blood_pressure" {
        (r.systolic, r.diastolic, r.pulse) = (Some(v[0]), Some(v[1]), Some(v[2]));
    } else {
        r.value = Some(v[0]);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use vitalwatch_ingest::decode::decode;
    use vitalwatch_ingest::topic::Format;

    /// Every format carries `n` readings per message, each at its own time,
    /// and decodes to them (blood pressure: one reading of three rows).
    #[test]
    fn messages_of_several_readings_decode_in_every_format() {
        let t = DateTime::parse_from_rfc3339("2026-12-07T10:00:00.123456Z").unwrap().with_timezone(&Utc);
        for (i, (name, format)) in
            [("json", Format::Json), ("senml", Format::Senml), ("fhir", Format::Fhir), ("proto", Format::Proto)]
                .into_iter()
                .enumerate()
        {
            // Patient i of a population with this one format (i % 5 != 4: a device sender).
            let mut p = SimPatient::new("p-t", i, &[name]);
            for step in [0, 1] {
                let (topic, payload, readings) = p.message(step, t, 10);
                assert!(topic.ends_with(name), "{topic}");
                let times: Vec<_> = readings.iter().map(|(t, _)| *t).collect();
                assert_eq!(times.len(), 10);
                assert_eq!(times[9], t);
                assert!(times.windows(2).all(|w| w[1] - w[0] == chrono::Duration::milliseconds(1)));
                let rows: u64 = readings.iter().map(|(_, r)| r).sum();
                assert_eq!(rows, if step == 1 { 30 } else { 10 }, "{name} step {step}");
                let batch = decode(format, &payload).unwrap_or_else(|e| panic!("{name}: {e:?}"));
                assert_eq!(batch.readings.len(), 10, "{name} step {step}");
                let kinds: Vec<_> = batch.readings.iter().map(|r| r.kind.to_string()).collect();
                let want = if step == 1 { "blood_pressure" } else { "body_weight" };
                assert!(kinds.iter().all(|k| k == want), "{name}: {kinds:?}");
                if step == 1 {
                    assert!(
                        batch
                            .readings
                            .iter()
                            .all(|r| r.systolic.is_some() && r.diastolic.is_some() && r.pulse.is_some())
                    );
                }
            }
            // One reading per message is the single-reading payload.
            let (_, one, readings) = p.message(2, t, 1);
            assert_eq!(readings.len(), 1);
            assert_eq!(decode(format, &one).unwrap().readings.len(), 1);
        }
    }
}
