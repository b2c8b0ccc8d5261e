//! SenML JSON (RFC 8428): an array of records. Names resolve as base name +
//! name; the last segment after `:` or `/` selects the reading type
//! (`heart_rate`, `spo2`, `body_weight`/`weight`, `body_temperature`/`temp`,
//! `blood_glucose`/`glucose`, `respiratory_rate`, or `systolic`, `diastolic`
//! and `pulse`, which group into one blood pressure per time). LOINC codes
//! are accepted as names too. Times resolve as base time + time; values below
//! 2^28 are relative to the receive time (RFC 8428 §4.5.3).

use std::borrow::Cow;
use std::collections::HashMap;

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

/// Longest base name (`bn`) or name (`n`) accepted, bytes. Real names are a
/// device URN plus a short measurement name (`urn:dev:mac:0024befffe804ff1:`,
/// `systolic`); the bound keeps the work per record constant.
pub const MAX_NAME_BYTES: usize = 256;

/// Longest unit (`bu` or `u`) accepted, bytes (real ones are below 16).
pub const MAX_UNIT_BYTES: usize = 64;

/// Rejects a name or unit longer than `max` bytes.
fn bounded<'a>(v: Option<Cow<'a, str>>, i: usize, field: &str, max: usize) -> Result<Option<Cow<'a, str>>, Rejection> {
    match v {
        Some(s) if s.len() > max => {
            let mut r = malformed(
                Format::Senml,
                format_args!("record {i}: {field} is {} bytes long; at most {max} are accepted", s.len()),
            );
            r.field = Some(format!("[{i}].{field}"));
            Err(r)
        }
        v => Ok(v),
    }
}

/// The last segment (after `:` or `/`) of the resolved name `bn` + `n`,
/// without building the resolved name: if `n` has a separator, its own last
/// segment; otherwise the base name's last segment followed by `n`.
fn resolve(bn: &str, n: &str) -> Part {
    const SEP: [char; 2] = [':', '/'];
    if let Some(pos) = n.rfind(SEP) {
        return classify(&n[pos + 1..]);
    }
    let tail = bn.rfind(SEP).map_or(bn, |pos| &bn[pos + 1..]);
    if tail.is_empty() {
        return classify(n);
    }
    // The known names are short: a long tail + name is unknown for sure.
    if tail.len() + n.len() > 32 {
        return Part::Unknown;
    }
    let mut buf = [0u8; 32];
    buf[..tail.len()].copy_from_slice(tail.as_bytes());
    buf[tail.len()..tail.len() + n.len()].copy_from_slice(n.as_bytes());
    // Both parts are whole strings, so the concatenation is UTF-8.
    std::str::from_utf8(&buf[..tail.len() + n.len()]).map_or(Part::Unknown, classify)
}

/// At most 64 characters of the resolved name, for an unknown type.
fn shown_name(bn: &str, n: &str) -> String {
    bn.chars().chain(n.chars()).take(64).collect()
}

/// Hash key of a resolved time for blood-pressure grouping: times group when
/// they are equal as numbers (so 0.0 and -0.0 are one key); NaN never groups.
fn time_key(t: f64) -> Option<u64> {
    if t.is_nan() {
        None
    } else if t == 0.0 {
        Some(0)
    } else {
        Some(t.to_bits())
    }
}

/// Decodes a SenML pack. Work and memory are linear in the payload size: the
/// resolved name is never built per record (names and units are bounded),
/// and blood-pressure parts are grouped through a hash map by time.
pub fn decode(payload: &[u8]) -> Result<RawBatch<'_>, Rejection> {
    let records: Vec<Record<'_>> = super::from_json(payload).map_err(|e| malformed(Format::Senml, e))?;
    let mut bn: Cow<'_, str> = Cow::Borrowed("");
    let mut bt = 0.0;
    let mut bu: Option<Cow<'_, str>> = None;
    let mut bv = 0.0;
    let mut have_bt = false;
    let mut readings: Vec<RawReading<'_>> = Vec::with_capacity(records.len());
    // Open blood pressure readings by resolved time (index into readings).
    let mut bp_at: HashMap<u64, usize> = HashMap::new();
    let mut pulses: Vec<(f64, Option<f64>, Option<Cow<'_, str>>)> = Vec::new();

    for (i, r) in records.into_iter().enumerate() {
        if let Some(b) = bounded(r.bn, i, "bn", MAX_NAME_BYTES)? {
            bn = b;
        }
        if let Some(t) = r.bt {
            bt = t;
        }
        if let Some(u) = bounded(r.bu, i, "bu", MAX_UNIT_BYTES)? {
            bu = Some(u);
        }
        if let Some(v) = r.bv {
            bv = v;
        }
        let n = bounded(r.n, i, "n", MAX_NAME_BYTES)?;
        let u = bounded(r.u, i, "u", MAX_UNIT_BYTES)?;
        if n.is_none() && bn.is_empty() {
            return Err(malformed(Format::Senml, "a record has no name (n or bn)"));
        }
        let n = n.as_deref().unwrap_or("");
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
        let unit = u.or_else(|| bu.clone());
        let value = r.v.map(|v| v + bv);
        match resolve(&bn, n) {
            Part::Single(kind) => {
                readings.push(RawReading { kind: Cow::Borrowed(kind), time, unit, value, ..Default::default() })
            }
            part @ (Part::Systolic | Part::Diastolic) => {
                let key = time_key(t);
                let idx = match key.and_then(|k| bp_at.get(&k)) {
                    Some(i) => *i,
                    None => {
                        readings.push(RawReading {
                            kind: Cow::Borrowed("blood_pressure"),
                            time,
                            unit: unit.clone(),
                            ..Default::default()
                        });
                        if let Some(k) = key {
                            bp_at.insert(k, readings.len() - 1);
                        }
                        readings.len() - 1
                    }
                };
                let reading = &mut readings[idx];
                if matches!(part, Part::Systolic) {
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
                kind: Cow::Owned(shown_name(&bn, n)),
                time,
                unit,
                value,
                ..Default::default()
            }),
        }
    }
    // A pulse at the time of a blood pressure belongs to it; otherwise it is a heart rate.
    for (t, value, unit) in pulses {
        match time_key(t).and_then(|k| bp_at.get(&k)) {
            Some(i) => readings[*i].pulse = value,
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
    fn long_names_and_units_are_rejected_with_the_bound() {
        let bn = "x".repeat(MAX_NAME_BYTES + 1);
        let e = decode(format!(r#"[{{"bn":"{bn}","n":"hr","v":1}}]"#).as_bytes()).unwrap_err();
        assert_eq!(e.reason, crate::reject::Reason::MalformedPayload);
        assert_eq!(e.field.as_deref(), Some("[0].bn"));
        assert!(e.message.contains("bn is 257 bytes long; at most 256"), "{}", e.message);
        let n = "y".repeat(MAX_NAME_BYTES + 1);
        let e = decode(format!(r#"[{{"n":"hr","v":1}},{{"n":"{n}","v":1}}]"#).as_bytes()).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("[1].n"));
        let u = "z".repeat(MAX_UNIT_BYTES + 1);
        let e = decode(format!(r#"[{{"bu":"{u}","n":"hr","v":1}}]"#).as_bytes()).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("[0].bu"));
        // At the bound: accepted, and the type still comes from the last segment.
        let bn = format!("{}:", "x".repeat(MAX_NAME_BYTES - 1));
        let p = format!(r#"[{{"bn":"{bn}","n":"weight","u":"kg","v":80,"t":1.7e9}}]"#);
        let b = decode(p.as_bytes()).unwrap();
        assert_eq!(b.readings[0].kind, "body_weight");
    }

    #[test]
    fn names_resolve_like_the_concatenation() {
        for (bn, n, want) in [
            ("urn:dev:x:", "systolic", "blood_pressure"),
            ("urn:dev:x:", "a/b:spo2", "spo2"),
            ("urn:dev:heart", "_rate", "heart_rate"),
            ("urn:dev:WEI", "GHT", "body_weight"),
            ("", "urn:x:temp", "body_temperature"),
            ("urn:dev:x:", "co2", "urn:dev:x:co2"),
        ] {
            let p = format!(r#"[{{"bn":"{bn}","n":"{n}","v":120,"t":1.7e9}},{{"n":"dia","v":80,"t":1.7e9}}]"#);
            let b = decode(p.as_bytes()).unwrap();
            assert_eq!(b.readings[0].kind, want, "{bn} + {n}");
        }
        // No name: the base name alone.
        let b = decode(br#"[{"bn":"urn:dev:x:glucose","v":5,"t":1.7e9}]"#).unwrap();
        assert_eq!(b.readings[0].kind, "blood_glucose");
        // An unknown name is shown with at most 64 characters.
        let p = format!(r#"[{{"bn":"{}","n":"q","t":1.7e9}}]"#, "k".repeat(100));
        let b = decode(p.as_bytes()).unwrap();
        assert_eq!(b.readings[0].kind.chars().count(), 64);
    }

    #[test]
    fn blood_pressure_parts_group_by_time_across_a_large_pack() {
        // Systolic at every time, then diastolic and pulse in reverse order.
        let n = 2000;
        let mut recs: Vec<String> = (0..n).map(|k| format!(r#"{{"n":"sys","v":{},"t":{k}}}"#, 100 + k % 50)).collect();
        recs.extend((0..n).rev().map(|k| format!(r#"{{"n":"dia","v":70,"t":{k}}}"#)));
        recs.extend((0..n).rev().map(|k| format!(r#"{{"n":"pulse","v":60,"t":{k}}}"#)));
        recs.push(r#"{"n":"pulse","v":61,"t":-0.5}"#.to_owned());
        recs.push(r#"{"n":"sys","v":130,"t":-0.0}"#.to_owned());
        let p = format!("[{}]", recs.join(","));
        let b = decode(p.as_bytes()).unwrap();
        // n blood pressures (the one at -0.0 joins the one at 0) and one lone pulse.
        assert_eq!(b.readings.len(), n + 1);
        for (k, r) in b.readings[..n].iter().enumerate() {
            assert_eq!(r.kind, "blood_pressure");
            assert_eq!(r.time, Some(RawTime::RelativeSeconds(k as f64)));
            let sys = if k == 0 { 130.0 } else { (100 + k % 50) as f64 };
            assert_eq!((r.systolic, r.diastolic, r.pulse), (Some(sys), Some(70.0), Some(60.0)), "{k}");
        }
        assert_eq!(b.readings[n].kind, "heart_rate");
        assert_eq!(b.readings[n].value, Some(61.0));
    }

    #[test]
    fn lone_pulse_is_heart_rate() {
        let b = decode(br#"[{"n":"pulse","u":"beat/min","v":64,"t":1.7e9}]"#).unwrap();
        assert_eq!(b.readings[0].kind, "heart_rate");
        assert_eq!(b.readings[0].value, Some(64.0));
    }
}
