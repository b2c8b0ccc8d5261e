//! SenML JSON (RFC 8428): an array of records. Names resolve as base name +
//! name; the last segment after `:` or `/` selects the reading type
//! (`heart_rate`, `spo2`, `body_weight`/`weight`, `body_temperature`/`temp`,
//! `blood_glucose`/`glucose`, `respiratory_rate`, or `systolic`, `diastolic`
//! and `pulse`, which group into one blood pressure per time). LOINC codes
//! are accepted as names too. Times resolve as base time + time; values below
//! 2^28 are relative to the receive time (RFC 8428 §4.5.3).

use std::borrow::Cow;

use serde::Deserialize;

use super::{RawBatch, RawReading, RawTime, malformed};
use crate::reject::Rejection;
use crate::topic::Format;

#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow, default, deserialize_with = "super::opt_cow_str")]
    bn: Option<Cow<'a, str>>,
    #[serde(default)]
    bt: Option<f64>,
    #[serde(borrow, default, deserialize_with = "super::opt_cow_str")]
    bu: Option<Cow<'a, str>>,
    #[serde(default)]
    bv: Option<f64>,
    #[serde(borrow, default, deserialize_with = "super::opt_cow_str")]
    n: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "super::opt_cow_str")]
    u: Option<Cow<'a, str>>,
    #[serde(default)]
    v: Option<f64>,
    #[serde(default)]
    t: Option<f64>,
}

/// RFC 8428 §4.5.3: times below 2^28 s are relative to "now".
const RELATIVE_LIMIT: f64 = 268_435_456.0;

enum Part {
    Single(&'static str),
    Systolic,
    Diastolic,
    Pulse,
    Unknown,
}

fn classify(name: &str) -> Part {
    let last = name.rsplit([':', '/']).next().unwrap_or(name);
    match last.to_ascii_lowercase().as_str() {
        "heart_rate" | "heartrate" | "hr" | "8867-4" => Part::Single("heart_rate"),
        "spo2" | "59408-5" | "2708-6" => Part::Single("spo2"),
        "body_weight" | "weight" | "29463-7" => Part::Single("body_weight"),
        "body_temperature" | "temperature" | "temp" | "8310-5" => Part::Single("body_temperature"),
        "blood_glucose" | "glucose" | "41653-7" | "2339-0" => Part::Single("blood_glucose"),
        "respiratory_rate" | "rr" | "9279-1" => Part::Single("respiratory_rate"),
        "systolic" | "sys" | "8480-6" => Part::Systolic,
        "diastolic" | "dia" | "8462-4" => Part::Diastolic,
        "pulse" => Part::Pulse,
        _ => Part::Unknown,
    }
}

/// Decodes a SenML pack.
pub fn decode(payload: &[u8]) -> Result<RawBatch<'_>, Rejection> {
    let records: Vec<Record<'_>> = super::from_json(payload).map_err(|e| malformed(Format::Senml, e))?;
    let mut bn: Cow<'_, str> = Cow::Borrowed("");
    let mut bt = 0.0;
    let mut bu: Option<Cow<'_, str>> = None;
    let mut bv = 0.0;
    let mut have_bt = false;
    let mut readings: Vec<RawReading<'_>> = Vec::with_capacity(records.len());
    // Open blood pressure readings keyed by resolved time (index into readings).
    let mut bp_at: Vec<(f64, usize)> = Vec::new();
    let mut pulses: Vec<(f64, Option<f64>, Option<Cow<'_, str>>)> = Vec::new();

    for r in records {
        if let Some(b) = r.bn {
            bn = b;
        }
        if let Some(t) = r.bt {
            bt = t;
        }
        if let Some(u) = r.bu {
            bu = Some(u);
        }
        if let Some(v) = r.bv {
            bv = v;
        }
        let Some(n) = r.n.as_deref().map(|n| format!("{bn}{n}")).or_else(|| (!bn.is_empty()).then(|| bn.to_string()))
        else {
            return Err(malformed(Format::Senml, "a record has no name (n or bn)"));
        };
        if r.bt.is_some() {
            have_bt = true;
        }
        let t = bt + r.t.unwrap_or(0.0);
        let time = if r.t.is_none() && !have_bt {
            None
        } else if t.abs() < RELATIVE_LIMIT {
            Some(RawTime::RelativeSeconds(t))
        } else {
            Some(RawTime::UnixSeconds(t))
        };
        let unit = r.u.or_else(|| bu.clone());
        let value = r.v.map(|v| v + bv);
        match classify(&n) {
            Part::Single(kind) => {
                readings.push(RawReading { kind: Cow::Borrowed(kind), time, unit, value, ..Default::default() })
            }
            Part::Systolic | Part::Diastolic => {
                let idx = match bp_at.iter().find(|(bt2, _)| *bt2 == t) {
                    Some((_, i)) => *i,
                    None => {
                        readings.push(RawReading {
                            kind: Cow::Borrowed("blood_pressure"),
                            time,
                            unit: unit.clone(),
                            ..Default::default()
                        });
                        bp_at.push((t, readings.len() - 1));
                        readings.len() - 1
                    }
                };
                let reading = &mut readings[idx];
                if matches!(classify(&n), Part::Systolic) {
                    reading.systolic = value;
                } else {
                    reading.diastolic = value;
                }
                if reading.unit.is_none() {
                    reading.unit = unit;
                }
            }
            Part::Pulse => pulses.push((t, value, unit)),
            Part::Unknown => readings.push(RawReading {
                kind: Cow::Owned(n.chars().take(64).collect()),
                time,
                unit,
                value,
                ..Default::default()
            }),
        }
    }
    // A pulse at the time of a blood pressure belongs to it; otherwise it is a heart rate.
    for (t, value, unit) in pulses {
        match bp_at.iter().find(|(bt2, _)| *bt2 == t) {
            Some((_, i)) => readings[*i].pulse = value,
            None => readings.push(RawReading {
                kind: Cow::Borrowed("heart_rate"),
                time: Some(if t.abs() < RELATIVE_LIMIT {
                    RawTime::RelativeSeconds(t)
                } else {
                    RawTime::UnixSeconds(t)
                }),
                unit: unit.or(Some(Cow::Borrowed("/min"))),
                value,
                ..Default::default()
            }),
        }
    }
    Ok(RawBatch { msg_id: None, patient_claim: None, readings })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_blood_pressure_and_resolves_base_fields() {
        let p = br#"[
          {"bn":"urn:dev:mac:0024befffe804ff1:","bt":1.7e9,"bu":"mmHg","n":"systolic","v":142},
          {"n":"diastolic","v":91},
          {"n":"pulse","u":"/min","v":77},
          {"n":"weight","u":"kg","v":82.4,"t":60}
        ]"#;
        let b = decode(p).unwrap();
        assert_eq!(b.readings.len(), 2);
        let bp = &b.readings[0];
        assert_eq!(bp.kind, "blood_pressure");
        assert_eq!((bp.systolic, bp.diastolic, bp.pulse), (Some(142.0), Some(91.0), Some(77.0)));
        assert_eq!(bp.unit.as_deref(), Some("mmHg"));
        assert_eq!(bp.time, Some(RawTime::UnixSeconds(1.7e9)));
        assert_eq!(b.readings[1].kind, "body_weight");
        assert_eq!(b.readings[1].time, Some(RawTime::UnixSeconds(1.7e9 + 60.0)));
    }

    #[test]
    fn unknown_names_and_garbage() {
        let b = decode(br#"[{"n":"co2","v":1,"t":1.7e9}]"#).unwrap();
        assert_eq!(b.readings[0].kind, "co2");
        assert!(decode(br#"{"n":"x"}"#).is_err());
        assert!(decode(br#"[{"v":1}]"#).is_err());
    }

    #[test]
    fn lone_pulse_is_heart_rate() {
        let b = decode(br#"[{"n":"pulse","u":"beat/min","v":64,"t":1.7e9}]"#).unwrap();
        assert_eq!(b.readings[0].kind, "heart_rate");
        assert_eq!(b.readings[0].value, Some(64.0));
    }
}
