//! Writes the committed seed corpus, fuzz/corpus/<target>/, from the test
//! payloads (tests/payloads/mod.rs, every test reading in every format) and
//! the payload examples in the README, plus a few hand-written shapes the
//! tests do not cover (FHIR Bundle, SenML relative times, device status).
//!
//! ```sh
//! cargo run --manifest-path fuzz/Cargo.toml --example seeds -- fuzz/corpus
//! ```

#[path = "../../tests/payloads/mod.rs"]
mod payloads;

use std::path::{Path, PathBuf};

use chrono::Duration;
use payloads::{FORMATS, TestReading};
use vitalwatch_fuzz::now;

/// The `process` target's selector byte for a device (`d1`) reading topic in
/// `format`, and for a patient (`p1`) manual topic (see fuzz_targets/process.rs).
fn device_selector(format: usize) -> u8 {
    format as u8
}
fn manual_selector(format: usize) -> u8 {
    192 + format as u8
}
const STATUS_SELECTOR: u8 = 128;
const TOPIC_IN_INPUT: u8 = 0xf0;

struct Out {
    root: PathBuf,
    n: usize,
}

impl Out {
    fn put(&mut self, target: &str, bytes: &[u8]) {
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir).expect("create corpus dir");
        self.n += 1;
        std::fs::write(dir.join(format!("seed-{:03}", self.n)), bytes).expect("write seed");
    }

    /// A payload in format index `f`, for its decoder and for `process`.
    fn payload(&mut self, f: usize, bytes: &[u8]) {
        self.put(FORMATS[f], bytes);
        for sel in [device_selector(f), manual_selector(f)] {
            let mut p = vec![sel];
            p.extend_from_slice(bytes);
            self.put("process", &p);
        }
    }
}

/// The ```json blocks of the README that are payloads (not replies).
fn readme_examples(readme: &Path) -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(readme).expect("read README.md");
    let mut out = Vec::new();
    let mut block: Option<String> = None;
    for line in text.lines() {
        match (&mut block, line.trim_start()) {
            (None, "```json") => block = Some(String::new()),
            (Some(b), "```") => {
                let b = std::mem::take(b);
                block = None;
                if serde_json::from_str::<serde_json::Value>(&b).is_err() {
                    continue; // an abbreviated example (`[ ... ]`)
                }
                if b.trim_start().starts_with('[') {
                    out.push((1, b));
                } else if b.contains("\"readings\"") {
                    out.push((0, b));
                } else if b.contains("\"resourceType\"") {
                    out.push((2, b));
                }
            }
            (Some(b), _) => {
                b.push_str(line);
                b.push('\n');
            }
            (None, _) => {}
        }
    }
    out
}

fn main() {
    let root = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "fuzz/corpus".into()));
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut out = Out { root, n: 0 };

    // Every test reading kind, in every format, a few minutes before the fuzz clock.
    let t = now() - Duration::minutes(10);
    for m in 0..6 {
        let r = TestReading::nth(m, t);
        for (f, format) in FORMATS.iter().enumerate() {
            out.payload(f, &r.encode(format));
        }
    }
    for (f, body) in readme_examples(&repo.join("README.md")) {
        out.payload(f, body.as_bytes());
    }

    // Shapes the test payloads do not have.
    let iso = (now() - Duration::minutes(3)).to_rfc3339();
    let secs = (now() - Duration::minutes(3)).timestamp();
    out.payload(
        0,
        format!(
            r#"{{"msg_id":"m\u00e9-1","patient_id":"p1","readings":[{{"type":"heart_rate","time":"{iso}","unit":"bpm","value":7.2e1}},{{"type":"respiratory_rate","time":null,"unit":"/min","value":16}}]}}"#
        )
        .as_bytes(),
    );
    out.payload(1, br#"[{"bn":"dev1/","n":"hr","u":"/min","v":71,"t":-30},{"n":"rr","v":15,"t":-30},{"n":"8310-5","u":"Cel","v":37.1}]"#);
    out.payload(
        1,
        format!(r#"[{{"bn":"x:","bt":{secs},"bv":100,"n":"sys","u":"mmHg","v":20}},{{"n":"dia","v":-20}},{{"n":"pulse","v":-30,"t":0}}]"#)
            .as_bytes(),
    );
    let obs = |code: &str, v: f64, unit: &str| {
        serde_json::json!({"resource": {"resourceType": "Observation", "status": "final",
            "subject": {"reference": "Patient/p1"},
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "effectivePeriod": {"start": iso}, "valueQuantity": {"value": v, "unit": unit}}})
    };
    let bundle = serde_json::json!({"resourceType": "Bundle", "id": "b-1", "type": "collection",
        "entry": [obs("8867-4", 64.0, "/min"), obs("2708-6", 97.0, "%"), obs("9279-1", 14.0, "/min"), obs("1234-5", 1.0, "x")]});
    out.payload(2, &serde_json::to_vec(&bundle).expect("json"));

    // Device status, and a topic taken from the input.
    for status in
        [r#"{"battery":87,"rssi":-70,"firmware":"1.2.3"}"#, &format!(r#"{{"time":"{iso}","signal_dbm":-90}}"#)]
    {
        let mut p = vec![STATUS_SELECTOR];
        p.extend_from_slice(status.as_bytes());
        out.put("process", &p);
    }
    let mut p = vec![TOPIC_IN_INPUT];
    p.extend_from_slice(b"vitalwatch/v1/devices/d1/readings/json\n");
    p.extend_from_slice(&TestReading::nth(2, t).encode("json"));
    out.put("process", &p);
    println!("{} seeds in {}", out.n, out.root.display());
}
