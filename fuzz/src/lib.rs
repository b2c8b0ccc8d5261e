//! Shared parts of the fuzz targets: the fixed world `process` runs in (clock,
//! limits, registry), the invariants every decoded batch and every processed
//! message must hold, and the per-input CPU-time budget.
//!
//! A broken invariant panics; libFuzzer then saves the input as a crash
//! artifact (`crash-*`) and stops. A too-slow input panics the same way
//! (`slow input: ...`), so "no input takes more than a bounded time per KB" is
//! checked on every input, not only by libFuzzer's coarse `-timeout`.

use std::borrow::Cow;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Duration, Utc};
use vitalwatch_ingest_core::decode::{RawBatch, RawTime};
use vitalwatch_ingest_core::normalize::Limits;
use vitalwatch_ingest_core::pipeline::{Processed, process, trace_id};
use vitalwatch_schemas::PatientId;
use vitalwatch_schemas::registry::{DeviceEntry, Enrolment, RegistrySnapshot};

/// The fixed receive time of every fuzzed message (2026-11-26T12:00:00Z, after
/// the README examples).
pub fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_795_694_400, 0).expect("valid time")
}

/// The production limits (256 KiB payloads, 1,000 readings).
pub fn limits() -> &'static Limits {
    static L: OnceLock<Limits> = OnceLock::new();
    L.get_or_init(Limits::default)
}

/// Patients `p1`, `p2`; device `d1` enrolled to `p1`, `old` retired, `spare`
/// not enrolled.
pub fn registry() -> &'static RegistrySnapshot {
    static R: OnceLock<RegistrySnapshot> = OnceLock::new();
    R.get_or_init(|| {
        let mut r = RegistrySnapshot::default();
        r.patients.insert("p1".into());
        r.patients.insert("p2".into());
        let enrol = |p: &str| Enrolment {
            patient_id: PatientId::new(p).expect("valid id"),
            valid_from: now() - Duration::days(365),
            valid_to: None,
            ended: None,
        };
        r.devices
            .insert("d1".into(), DeviceEntry { retired_at: None, enrolments: vec![enrol("p1")], backfill: Vec::new() });
        r.devices.insert(
            "old".into(),
            DeviceEntry {
                retired_at: Some(now() - Duration::days(1)),
                enrolments: vec![enrol("p1")],
                backfill: Vec::new(),
            },
        );
        r.devices.insert("spare".into(), DeviceEntry { retired_at: None, enrolments: vec![], backfill: Vec::new() });
        r
    })
}

// ------------------------------------------------------------------------------------ time budget

/// CPU time of the calling thread, nanoseconds (immune to the scheduling
/// noise of a shared machine, unlike wall time).
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The budget: `VW_FUZZ_BASE_MS` + `VW_FUZZ_MS_PER_KB` per KiB of input, CPU
/// time (defaults 50 ms + 2 ms/KiB: a 256 KiB payload may take 0.56 s; the
/// linear decoders take well under 0.5 ms/KiB in this instrumented build).
fn budget() -> (f64, f64) {
    static B: OnceLock<(f64, f64)> = OnceLock::new();
    *B.get_or_init(|| (env_f64("VW_FUZZ_BASE_MS", 50.0), env_f64("VW_FUZZ_MS_PER_KB", 2.0)))
}

static SLOWEST_NS: AtomicU64 = AtomicU64::new(0);
static INPUTS: AtomicU64 = AtomicU64::new(0);

/// CPU time of one call of `f`, nanoseconds.
fn cpu_time<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let start = thread_cpu_ns();
    let out = f();
    (out, thread_cpu_ns().saturating_sub(start))
}

/// Runs `f` on `input`, checks the CPU-time budget, and records the slowest
/// input so far: when `VW_FUZZ_STATS_DIR` is set, `<dir>/<target>.slowest`
/// (the input) and `<dir>/<target>.slowest.txt` (`cpu_ms=.. bytes=..
/// ms_per_kib=..`) are rewritten whenever an input is slower than all before.
/// An input that looks like a new slowest or over budget is timed a second
/// time and the faster run counts, so a one-off stall (a page fault, a cache
/// emptied by another process) neither fails the run nor hides the real
/// slowest input. The first input, which pays for lazy initialization, is
/// checked but not recorded.
pub fn timed<T>(target: &str, input: &[u8], f: impl Fn() -> T) -> T {
    let (out, mut ns) = cpu_time(&f);
    let kib = input.len() as f64 / 1024.0;
    let (base, per_kb) = budget();
    let allowed = base + per_kb * kib;
    let first = INPUTS.fetch_add(1, Ordering::Relaxed) == 0;
    if (!first && ns > SLOWEST_NS.load(Ordering::Relaxed)) || ns as f64 / 1e6 > allowed {
        ns = ns.min(cpu_time(&f).1);
    }
    let ms = ns as f64 / 1e6;
    if !first && ns > SLOWEST_NS.load(Ordering::Relaxed) {
        SLOWEST_NS.store(ns, Ordering::Relaxed);
        if let Ok(dir) = std::env::var("VW_FUZZ_STATS_DIR") {
            let _ = std::fs::write(format!("{dir}/{target}.slowest"), input);
            let _ = std::fs::write(
                format!("{dir}/{target}.slowest.txt"),
                format!("cpu_ms={ms:.3} bytes={} ms_per_kib={:.3}\n", input.len(), ms / kib.max(1.0)),
            );
        }
    }
    assert!(ms <= allowed, "slow input: {ms:.1} ms of CPU for {} bytes (budget {allowed:.1} ms)", input.len());
    out
}

// ------------------------------------------------------------------------------------ invariants

/// Bytes of the strings the batch owns (copied out of the payload).
fn owned_bytes(c: &Option<Cow<'_, str>>) -> usize {
    match c {
        Some(Cow::Owned(s)) => s.len(),
        _ => 0,
    }
}

/// What any decoder's successful output must satisfy: no amplification. Every
/// reading costs at least two bytes of payload (an empty protobuf `Reading`,
/// a SenML `{}` after a base name), and the strings the batch copies are
/// bounded by the payload plus a short name per reading (SenML and FHIR build
/// names of at most 64 characters).
pub fn check_batch(payload: &[u8], batch: &RawBatch<'_>) {
    assert!(
        batch.readings.len() <= payload.len() / 2,
        "{} readings decoded from {} bytes",
        batch.readings.len(),
        payload.len()
    );
    let mut owned = owned_bytes(&batch.msg_id) + owned_bytes(&batch.patient_claim);
    for r in &batch.readings {
        owned += owned_bytes(&Some(r.kind.clone())) + owned_bytes(&r.unit);
        if let Some(RawTime::Rfc3339(t)) = &r.time {
            owned += owned_bytes(&Some(t.clone()));
        }
    }
    let bound = 2 * payload.len() + 256 * batch.readings.len() + 256;
    assert!(owned <= bound, "{owned} bytes of strings copied out of a {}-byte payload (bound {bound})", payload.len());
}

/// The characters ingest keeps out of the strings that reach storage, as the
/// code under test does it: probed once through `process` with a `msg_id`
/// holding the character; it is kept out if the message is rejected
/// `invalid_characters` or stored without it (cleaned). Empty while ingest
/// has no such rule.
fn refused_chars() -> &'static [char] {
    static C: OnceLock<Vec<char>> = OnceLock::new();
    C.get_or_init(|| {
        let candidates = (0u32..0x20).chain(0x7f..0xa0).filter_map(char::from_u32);
        candidates
            .filter(|&c| {
                let msg_id = serde_json::to_string(&format!("m{c}1")).expect("serializable");
                let payload = format!(
                    r#"{{"msg_id":{msg_id},"readings":[{{"type":"spo2","time":"{}","unit":"%","value":97}}]}}"#,
                    (now() - Duration::minutes(1)).to_rfc3339()
                );
                let p =
                    process("vitalwatch/v1/devices/d1/readings/json", payload.as_bytes(), now(), limits(), registry());
                p.rejections.iter().any(|r| r.reason.as_str() == "invalid_characters")
                    || p.observations.iter().any(|o| o.msg_id.as_deref().is_some_and(|m| !m.contains(c)))
            })
            .collect()
    })
}

fn check_clean(what: &str, s: &str) {
    let refused = refused_chars();
    if !refused.is_empty() {
        assert!(!s.contains(refused), "{what} {s:?} holds a character the ingest rule refuses");
    }
}

/// What every processed message must satisfy.
pub fn check_processed(topic: &str, payload: &[u8], p: &Processed) {
    let limits = limits();
    let now = now();
    assert_eq!(p.trace_id, trace_id(topic, payload));
    assert!(
        !p.observations.is_empty() || !p.rejections.is_empty() || p.status.is_some(),
        "a message ended with no observation, no rejection and no status"
    );
    assert!(p.status.is_none() || p.observations.is_empty(), "a status message produced observations");
    assert!(p.observations.len() <= 3 * limits.max_readings, "{} observations", p.observations.len());
    if let Some(m) = &p.msg_id {
        assert!(m.chars().count() <= 128, "msg_id of {} characters", m.chars().count());
    }
    for o in &p.observations {
        assert!(o.value.is_finite() && o.original_value.is_finite(), "non-finite value {o:?}");
        assert!(vitalwatch_ingest_core::units::is_plausible(o.code, o.value), "implausible value kept: {o:?}");
        assert!(registry().patients.contains(o.patient_id.as_str()), "unknown patient {}", o.patient_id.as_str());
        assert!(o.time <= now + limits.max_future && o.time >= now - limits.max_age, "time out of window: {o:?}");
        assert_eq!(o.received_at, now);
        assert_eq!(o.trace_id, p.trace_id);
        assert_eq!(
            o.msg_id, p.msg_id,
            "an observation carries another msg_id than the message (at most 128 characters)"
        );
        check_clean("unit", &o.original_unit);
        if let Some(m) = &o.msg_id {
            check_clean("msg_id", m);
        }
    }
    for r in &p.rejections {
        assert!(!r.message.is_empty(), "rejection {r:?} without a message");
        // Replies are sent back over MQTT: no echo of a large payload.
        assert!(r.message.len() <= 1024, "rejection message of {} bytes", r.message.len());
        assert!(
            r.field.as_ref().is_none_or(|f| f.len() <= 256),
            "field name of {} bytes",
            r.field.as_ref().map_or(0, String::len)
        );
    }
    if !p.rejections.is_empty() {
        let reply = p.reply_json().expect("a reply for rejections");
        let v: serde_json::Value = serde_json::from_slice(&reply).expect("the reply is JSON");
        assert_eq!(v["accepted"], p.observations.len());
    }
}

/// Decodes with one of the four decoders under the time budget and checks the
/// batch invariants; `Err` is a fine outcome. True if the payload decoded.
pub fn fuzz_decoder<'a, 'b, E>(
    target: &str,
    payload: &'a [u8],
    decode: impl Fn(&'a [u8]) -> Result<RawBatch<'b>, E>,
) -> bool {
    let Ok(batch) = timed(target, payload, || decode(payload)) else { return false };
    check_batch(payload, &batch);
    true
}
