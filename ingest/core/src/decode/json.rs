//! Canonical vitalwatch JSON:
//! `{"msg_id": "...", "readings": [{"type": "...", "time": "RFC 3339", "unit": "...", "value": 1.0}]}`.

use std::borrow::Cow;

use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{Deserializer, SeqAccess, Visitor};

use super::{RawBatch, RawReading, RawTime, malformed};
use crate::reject::Rejection;
use crate::topic::Format;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch<'a> {
    #[serde(borrow, default, deserialize_with = "super::opt_cow_str")]
    msg_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "super::opt_cow_str")]
    patient_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    readings: Readings<'a>,
}

/// The readings, deserialized straight into [`RawReading`]s (no intermediate
/// vector of [`Reading`]s).
struct Readings<'a>(Vec<RawReading<'a>>);

impl<'de: 'a, 'a> Deserialize<'de> for Readings<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Readings<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // Same wording as serde's `Vec` visitor.
                f.write_str("a sequence")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
                while let Some(r) = seq.next_element::<Reading<'a>>()? {
                    v.push(RawReading {
                        kind: r.kind,
                        time: r.time.map(RawTime::Rfc3339),
                        unit: r.unit,
                        value: r.value,
                        systolic: r.systolic,
                        diastolic: r.diastolic,
                        pulse: r.pulse,
                    });
                }
                Ok(Readings(v))
            }
        }
        d.deserialize_seq(V(PhantomData))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Reading<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default, deserialize_with = "super::opt_cow_str")]
    time: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "super::opt_cow_str")]
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
    if let Some(b) = std::str::from_utf8(payload).ok().and_then(|s| Fast::new(s).batch()) {
        return Ok(b);
    }
    decode_serde(payload)
}

/// The general path: serde, which also words every error.
fn decode_serde(payload: &[u8]) -> Result<RawBatch<'_>, Rejection> {
    let b: Batch<'_> = super::from_json(payload).map_err(|e| malformed(Format::Json, e))?;
    Ok(RawBatch { msg_id: b.msg_id, patient_claim: b.patient_id, readings: b.readings.0 })
}

/// A fast path for the common, simple shape of canonical JSON: strings
/// without escapes or control characters, plain decimal numbers (at most 15
/// significant digits, no exponent) or `null`, each known field at most
/// once. It gives exactly the [`RawBatch`] serde would; anything else (unknown
/// or duplicate fields, escapes, exponents, errors of any kind) returns
/// `None`, and the payload goes through serde, which then decides and words
/// any rejection.
struct Fast<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
}

/// Exact powers of ten (10^22 is the largest exactly representable one).
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
    1e21, 1e22,
];

impl<'a> Fast<'a> {
    fn new(s: &'a str) -> Self {
        Fast { s, b: s.as_bytes(), i: 0 }
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    /// Skips whitespace and consumes `c` if it comes next.
    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// A string without escapes or control characters.
    fn str(&mut self) -> Option<&'a str> {
        if !self.eat(b'"') {
            return None;
        }
        let start = self.i;
        loop {
            match *self.b.get(self.i)? {
                b'"' => break,
                b'\\' | 0..=0x1f => return None,
                _ => self.i += 1,
            }
        }
        let out = &self.s[start..self.i];
        self.i += 1;
        Some(out)
    }

    /// `null` (`Some(None)`) or a string.
    fn opt_str(&mut self) -> Option<Option<Cow<'a, str>>> {
        self.ws();
        if self.b[self.i..].starts_with(b"null") {
            self.i += 4;
            return Some(None);
        }
        self.str().map(|s| Some(Cow::Borrowed(s)))
    }

    /// `null` or a plain decimal number, converted exactly as serde_json does
    /// (for these inputs both are the correctly rounded value).
    fn opt_num(&mut self) -> Option<Option<f64>> {
        self.ws();
        if self.b[self.i..].starts_with(b"null") {
            self.i += 4;
            return Some(None);
        }
        let neg = self.b.get(self.i) == Some(&b'-');
        if neg {
            self.i += 1;
        }
        let (mut m, mut digits, mut frac) = (0u64, 0usize, 0usize);
        let int_start = self.i;
        while let Some(&c @ b'0'..=b'9') = self.b.get(self.i) {
            m = m * 10 + (c - b'0') as u64;
            digits += 1;
            self.i += 1;
            if digits > 15 {
                return None;
            }
        }
        let int_len = self.i - int_start;
        if int_len == 0 || (int_len > 1 && self.b[int_start] == b'0') {
            return None;
        }
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            while let Some(&c @ b'0'..=b'9') = self.b.get(self.i) {
                m = m * 10 + (c - b'0') as u64;
                digits += 1;
                frac += 1;
                self.i += 1;
                if digits > 15 {
                    return None;
                }
            }
            if frac == 0 {
                return None;
            }
        }
        // Exponents, and -0 (serde_json reads an integer -0 as +0.0): serde decides.
        if matches!(self.b.get(self.i), Some(b'e' | b'E')) || (neg && m == 0) {
            return None;
        }
        let v = if frac == 0 { m as f64 } else { m as f64 / POW10[frac] };
        Some(Some(if neg { -v } else { v }))
    }

    fn batch(mut self) -> Option<RawBatch<'a>> {
        let (mut msg_id, mut patient, mut readings) = (None, None, None);
        if !self.eat(b'{') {
            return None;
        }
        if !self.eat(b'}') {
            loop {
                let key = self.str()?;
                if !self.eat(b':') {
                    return None;
                }
                match key {
                    "msg_id" if msg_id.is_none() => msg_id = Some(self.opt_str()?),
                    "patient_id" if patient.is_none() => patient = Some(self.opt_str()?),
                    "readings" if readings.is_none() => readings = Some(self.readings()?),
                    _ => return None,
                }
                if self.eat(b'}') {
                    break;
                }
                if !self.eat(b',') {
                    return None;
                }
            }
        }
        self.ws();
        if self.i != self.b.len() {
            return None;
        }
        Some(RawBatch { msg_id: msg_id.flatten(), patient_claim: patient.flatten(), readings: readings? })
    }

    fn readings(&mut self) -> Option<Vec<RawReading<'a>>> {
        if !self.eat(b'[') {
            return None;
        }
        let mut v = Vec::new();
        if self.eat(b']') {
            return Some(v);
        }
        loop {
            v.push(self.reading()?);
            if self.eat(b']') {
                return Some(v);
            }
            if !self.eat(b',') {
                return None;
            }
        }
    }

    fn reading(&mut self) -> Option<RawReading<'a>> {
        if !self.eat(b'{') {
            return None;
        }
        let mut kind = None;
        let (mut time, mut unit) = (None, None);
        let (mut value, mut sys, mut dia, mut pulse) = (None, None, None, None);
        if !self.eat(b'}') {
            loop {
                let key = self.str()?;
                if !self.eat(b':') {
                    return None;
                }
                match key {
                    "type" if kind.is_none() => kind = Some(Cow::Borrowed(self.str()?)),
                    "time" if time.is_none() => time = Some(self.opt_str()?),
                    "unit" if unit.is_none() => unit = Some(self.opt_str()?),
                    "value" if value.is_none() => value = Some(self.opt_num()?),
                    "systolic" if sys.is_none() => sys = Some(self.opt_num()?),
                    "diastolic" if dia.is_none() => dia = Some(self.opt_num()?),
                    "pulse" if pulse.is_none() => pulse = Some(self.opt_num()?),
                    _ => return None,
                }
                if self.eat(b'}') {
                    break;
                }
                if !self.eat(b',') {
                    return None;
                }
            }
        }
        Some(RawReading {
            kind: kind?,
            time: time.flatten().map(RawTime::Rfc3339),
            unit: unit.flatten(),
            value: value.flatten(),
            systolic: sys.flatten(),
            diastolic: dia.flatten(),
            pulse: pulse.flatten(),
        })
    }
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

    /// The fast path must give exactly what serde gives (compared through
    /// `Debug`, so -0.0 and 0.0 differ), or step aside.
    fn agrees(p: &str) -> bool {
        let fast = Fast::new(p).batch();
        if let Some(f) = &fast {
            let slow = decode_serde(p.as_bytes()).unwrap_or_else(|e| panic!("{p}: fast path accepted, serde: {e:?}"));
            assert_eq!(format!("{f:?}"), format!("{slow:?}"), "{p}");
        }
        assert_eq!(format!("{:?}", decode(p.as_bytes())), format!("{:?}", decode_serde(p.as_bytes())), "{p}");
        fast.is_some()
    }

    #[test]
    fn fast_path_agrees_with_serde() {
        let taken = [
            r#"{"msg_id":"m1","readings":[{"type":"heart_rate","time":"2026-11-26T08:00:00Z","unit":"bpm","value":72}]}"#,
            r#" { "readings" : [ { "type" : "spo2" , "value" : 96.5 , "unit" : null , "time" : null } ] , "msg_id" : null } "#,
            "{\"readings\":\n\t[{\"type\":\"blood_pressure\",\"systolic\":130,\"diastolic\":85.25,\"pulse\":70}]\r}",
            r#"{"readings":[],"patient_id":"p1"}"#,
            r#"{"readings":[{"type":"x","value":-12.5}]}"#,
            r#"{"readings":[{"type":"x","value":0.1}]}"#,
            r#"{"readings":[{"type":"x","value":123456789012345}]}"#,
            r#"{"readings":[{"type":"x","value":0.12345678901234}]}"#,
            r#"{"readings":[{"type":"x","value":98.6000000000001}]}"#,
            r#"{"readings":[{"type":"°C ünïcödé","unit":"℃"}]}"#,
            r#"{"readings":[{"type":"x"},{"type":"y","value":1}]}"#,
        ];
        for p in taken {
            assert!(agrees(p), "fast path should take {p}");
        }
        let left = [
            r#"{"readings":[{"type":"x","value":-0}]}"#,
            r#"{"readings":[{"type":"x","value":-0.0}]}"#,
            r#"{"readings":[{"type":"x","value":1e2}]}"#,
            r#"{"readings":[{"type":"x","value":1.5E-2}]}"#,
            r#"{"readings":[{"type":"x","value":01}]}"#,
            r#"{"readings":[{"type":"x","value":1.}]}"#,
            r#"{"readings":[{"type":"x","value":.5}]}"#,
            r#"{"readings":[{"type":"x","value":+1}]}"#,
            r#"{"readings":[{"type":"x","value":1234567890123456}]}"#,
            r#"{"readings":[{"type":"x","value":98.60000000000001}]}"#,
            r#"{"readings":[{"type":"x","value":"97"}]}"#,
            r#"{"readings":[{"type":"x","value":1,"value":2}]}"#,
            r#"{"readings":[{"type":"x","sytolic":1}]}"#,
            r#"{"readings":[{"type":null}]}"#,
            r#"{"readings":[{"value":1}]}"#,
            r#"{"readings":[{"type":"a\"b"}]}"#,
            r#"{"readings":[{"type":"\u00b0C"}]}"#,
            "{\"readings\":[{\"type\":\"a\tb\"}]}",
            r#"{"readings":[{"type":"x"}],"readings":[]}"#,
            r#"{"readings":[{"type":"x"}]} x"#,
            r#"{"readings":[{"type":"x"},]}"#,
            r#"{"readings":[{"type":"x",}]}"#,
            r#"{"readings":[{"type":"x"}],}"#,
            r#"{"msg_id":"m"}"#,
            r#"{"msg_id":1,"readings":[]}"#,
            r#"{"readings":{}}"#,
            r#"{"readings":[{"type":"x","value":nul}]}"#,
            r#"{"readings":[{"type":"x","value":1"#,
            r#"{"readings":[{"type":"x","time":"#,
            "",
            "[]",
            "{\"readings\":[]}\u{a0}",
        ];
        for p in left {
            assert!(!agrees(p), "fast path should leave {p} to serde");
        }
    }

    proptest::proptest! {
        #[test]
        fn fast_path_agrees_with_serde_on_generated_payloads(
            readings in proptest::collection::vec((
                "[a-z_°\\\\\"\t ]{0,12}",
                proptest::option::of("[0-9TZ:+.-]{0,30}"),
                proptest::option::of("[a-zA-Z%/°\\[\\]]{0,8}"),
                proptest::option::of(proptest::prelude::any::<f64>()),
                proptest::option::of(-1_000_000i64..1_000_000),
                proptest::option::of((0u64..10_000_000_000_000_000, 0usize..20)),
            ), 0..4),
            msg_id in proptest::option::of("[a-z0-9\\\\]{0,6}"),
            ws in "[ \t\n]{0,2}",
        ) {
            let rs: Vec<String> = readings
                .iter()
                .map(|(kind, time, unit, v, int, dec)| {
                    let mut fields = vec![format!("\"type\":{}", serde_json::to_string(kind).unwrap())];
                    if let Some(t) = time {
                        fields.push(format!("\"time\"{ws}:{ws}{}", serde_json::to_string(t).unwrap()));
                    }
                    if let Some(u) = unit {
                        fields.push(format!("\"unit\":{}", serde_json::to_string(u).unwrap()));
                    }
                    if let Some(v) = v.filter(|v| v.is_finite()) {
                        fields.push(format!("\"value\":{v}"));
                    }
                    if let Some(i) = int {
                        fields.push(format!("\"systolic\":{i}"));
                    }
                    if let Some((m, k)) = dec {
                        let digits = m.to_string();
                        let s = if *k == 0 || *k >= digits.len() {
                            digits
                        } else {
                            format!("{}.{}", &digits[..digits.len() - k], &digits[digits.len() - k..])
                        };
                        fields.push(format!("\"diastolic\":-{s}"));
                    }
                    format!("{{{ws}{}}}", fields.join(","))
                })
                .collect();
            let mut p = format!("{{\"readings\":[{}]", rs.join(&format!(",{ws}")));
            if let Some(m) = &msg_id {
                p.push_str(&format!(",\"msg_id\":{}", serde_json::to_string(m).unwrap()));
            }
            p.push('}');
            agrees(&p);
        }
    }
}
