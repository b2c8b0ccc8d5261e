//! Issue #14 §1 and §7: late readings are evaluated (per code and device) and
//! raise HISTORICAL alerts; a silent device raises a technical alert.

use crate::common;

use chrono::Duration;
use common::*;
use vitalwatch_rules_core::{AlertEvent, EngineSettings, ObservationOutcome, Program};
use vitalwatch_schemas::Code;
use vitalwatch_schemas::proto::AlertEventKind;

const P: &str = "p-late";

fn opened<'a>(events: &'a [AlertEvent], rule: &str) -> Vec<&'a AlertEvent> {
    events.iter().filter(|e| e.rule_id == rule && e.kind == AlertEventKind::Opened as i32).collect()
}

/// A BP cuff that syncs 1 h 05 min behind the oximeter is evaluated: its
/// crisis reading opens a (current) alert.
#[test]
fn bp_cuff_one_hour_behind_the_oximeter_is_evaluated() {
    let mut s = Sim::program(P, Program::General);
    let ten = t0() + hours(2.0);
    s.read_dev(P, Code::Spo2, 97.0, ten, "oximeter-1");
    s.read_dev(P, Code::HeartRate, 70.0, ten, "oximeter-1");
    // Measured 08:55, received 10:05: 1 h 05 min behind the oximeter's reading.
    let t = ten - hours(1.0) - Duration::minutes(5);
    let mut out = Vec::new();
    for (code, v) in [(Code::Systolic, 200.0), (Code::Diastolic, 100.0)] {
        let mut o = obs_from(P, code, v, t, Some("cuff-1"));
        o.received_at = ten + Duration::minutes(5);
        let outcome = s.engine.on_observation(&o, ten + Duration::minutes(5), &mut out);
        assert_eq!(outcome, ObservationOutcome::Evaluated, "{code:?}");
    }
    let crisis = opened(&out, "threshold.bp.crisis");
    assert_eq!(crisis.len(), 1, "{out:#?}");
    assert_eq!(crisis[0].reading_time_unix_micros, t.timestamp_micros());
}

/// Lateness is per code: a systolic reading 1 h behind the newest SpO2 from
/// the same multi-parameter device is not late, while one 1 h 01 min behind a
/// newer systolic reading of the same device is out of order.
#[test]
fn lateness_is_per_code_and_per_device() {
    let mut s = Sim::program(P, Program::General);
    let ten = t0() + hours(2.0);
    s.read_dev(P, Code::Systolic, 120.0, ten, "cuff-1");
    s.read_dev(P, Code::Diastolic, 80.0, ten, "cuff-1");
    // Another cuff (the spouse's? a clinic device?) syncs a reading taken
    // 1 h 30 min before: out of order for the code, but not for its device.
    let t = ten - hours(1.5);
    let mut o = obs_from(P, Code::Systolic, 125.0, t, Some("cuff-2"));
    o.received_at = ten + Duration::minutes(2);
    assert_eq!(s.engine.on_observation(&o, ten + Duration::minutes(2), &mut s.events), ObservationOutcome::Evaluated);
    // The same device's older reading, 1 h 01 min behind its newest: late.
    let mut o = obs_from(P, Code::Systolic, 124.0, ten - hours(1.0) - Duration::minutes(1), Some("cuff-1"));
    o.received_at = ten + Duration::minutes(3);
    assert_eq!(s.engine.on_observation(&o, ten + Duration::minutes(3), &mut s.events), ObservationOutcome::Late);
    // ... and exactly 1 h behind is still on time (the boundary is inclusive).
    let mut o = obs_from(P, Code::Systolic, 123.0, ten - hours(1.0), Some("cuff-1"));
    o.received_at = ten + Duration::minutes(4);
    assert_eq!(s.engine.on_observation(&o, ten + Duration::minutes(4), &mut s.events), ObservationOutcome::Evaluated);
    assert!(s.events.is_empty(), "{:#?}", s.events);
}

/// A glucometer syncs a level-2 hypoglycaemia 10 h after it was measured:
/// a historical alert with the severity the same reading gets live.
#[test]
fn glucose_40_measured_10_h_before_receipt_raises_an_alert() {
    let mut live = Sim::program(P, Program::Diabetes);
    live.read(P, Code::BloodGlucose, 40.0, t0());
    let live_sev = opened(&live.events, "threshold.glucose.low")[0].severity;

    let mut s = Sim::program(P, Program::Diabetes);
    s.read(P, Code::BloodGlucose, 120.0, t0() - hours(20.0));
    let received = t0() + hours(10.0);
    let mut o = obs(P, Code::BloodGlucose, 40.0, t0());
    o.received_at = received;
    let outcome = s.engine.on_observation(&o, received, &mut s.events);
    assert_eq!(outcome, ObservationOutcome::Late);
    let low = opened(&s.events, "threshold.glucose.low");
    assert_eq!(low.len(), 1, "{:#?}", s.events);
    assert_eq!(low[0].severity, live_sev);
    assert_eq!(low[0].reading_time_unix_micros, t0().timestamp_micros());
    assert_eq!(low[0].detected_at_unix_micros, received.timestamp_micros());
    assert!(low[0].historical, "marked historical");
    assert_eq!(low[0].received_at_unix_micros, received.timestamp_micros());
    // Live alerts are not historical and carry their receive time too.
    let live_low = opened(&live.events, "threshold.glucose.low");
    assert!(!live_low[0].historical);
    assert_eq!(live_low[0].received_at_unix_micros, (t0() + Duration::minutes(1)).timestamp_micros());
    // The boundary: measured exactly max_alert_age (6 h) before processing is
    // still current; 1 minute more is historical.
    for (age, historical) in [(hours(6.0), false), (hours(6.0) + Duration::minutes(1), true)] {
        let mut s = Sim::program(P, Program::Diabetes);
        let mut o = obs(P, Code::BloodGlucose, 40.0, t0());
        o.received_at = t0() + age;
        s.engine.on_observation(&o, t0() + age, &mut s.events);
        let low = opened(&s.events, "threshold.glucose.low");
        assert_eq!(low.len(), 1);
        assert_eq!(low[0].historical, historical, "{age:?}");
    }
    // A newer normal reading does not hide it (upload order must not matter).
    let mut s = Sim::program(P, Program::Diabetes);
    s.read(P, Code::BloodGlucose, 120.0, t0() + hours(8.0));
    let mut o = obs(P, Code::BloodGlucose, 40.0, t0());
    o.received_at = received;
    s.engine.on_observation(&o, received, &mut s.events);
    assert_eq!(s.kinds("threshold.glucose.low"), vec![AlertEventKind::Opened]);
    assert!(s.events[0].historical);
    // ... and the next clearing reading resolves it.
    s.read(P, Code::BloodGlucose, 115.0, received + hours(1.0));
    assert_eq!(s.kinds("threshold.glucose.low"), vec![AlertEventKind::Opened, AlertEventKind::Resolved]);
}

/// A late reading inside an episode already handled (opened and resolved by
/// newer readings) raises nothing; one after it, with no newer contradicting
/// episode, does (checked with the 10 h case above).
#[test]
fn late_reading_inside_a_handled_episode_raises_nothing() {
    let mut s = Sim::program(P, Program::Diabetes);
    s.read(P, Code::BloodGlucose, 60.0, t0());
    s.read(P, Code::BloodGlucose, 61.0, t0() + Duration::seconds(30)); // confirms the level-1 low
    s.read(P, Code::BloodGlucose, 110.0, t0() + hours(2.0));
    assert_eq!(s.kinds("threshold.glucose.low"), vec![AlertEventKind::Opened, AlertEventKind::Resolved]);
    // 10 h later the meter uploads a 50 mg/dL taken during that episode.
    let received = t0() + hours(11.0);
    let mut o = obs(P, Code::BloodGlucose, 50.0, t0() + hours(1.0));
    o.received_at = received;
    s.engine.on_observation(&o, received, &mut s.events);
    assert_eq!(s.kinds("threshold.glucose.low"), vec![AlertEventKind::Opened, AlertEventKind::Resolved]);
    // Also when the episode is still open: no duplicate, no re-page.
    let mut s = Sim::program(P, Program::Diabetes);
    s.read(P, Code::BloodGlucose, 60.0, t0());
    let mut o = obs(P, Code::BloodGlucose, 45.0, t0() - hours(0.5));
    o.received_at = t0() + hours(8.0);
    s.engine.on_observation(&o, t0() + hours(8.0), &mut s.events);
    assert_eq!(s.kinds("threshold.glucose.low"), vec![AlertEventKind::Opened]);
}

/// Replay reproduces the historical alert with the same ids.
#[test]
fn replay_reproduces_historical_alerts() {
    let mut s = Sim::program(P, Program::Diabetes);
    let mut items = Vec::new();
    for h in [0.0, 6.0, 12.0] {
        items.push(obs(P, Code::BloodGlucose, 110.0, t0() + hours(h)));
    }
    let mut late = obs(P, Code::BloodGlucose, 42.0, t0() + hours(3.0));
    late.received_at = t0() + hours(14.0);
    items.push(late);
    for o in &items {
        let now = o.received_at;
        s.engine.on_observation(o, now, &mut s.events);
    }
    assert_eq!(opened(&s.events, "threshold.glucose.low").len(), 1, "{:#?}", s.events);
    let mut r = Sim::new();
    let rules = vitalwatch_rules_core::PatientRules::for_program(Program::Diabetes);
    let report = r.engine.replay(&pid(P), rules, items.iter(), t0() + hours(14.5)).expect("replay");
    let a: Vec<&str> = s.events.iter().map(|e| e.event_id.as_str()).collect();
    let b: Vec<&str> = report.recent_events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(a, b);
}

fn settings() -> EngineSettings {
    EngineSettings { device_silent_after_secs: 6 * 3600, ..EngineSettings::default() }
}

/// Heartbeats stop: a LOW technical alert exactly at the configured time
/// (6 h by default), not a minute before; resolved on the next heartbeat.
#[test]
fn heartbeat_loss_raises_a_technical_alert_at_the_configured_time() {
    let mut s = Sim::program(P, Program::HeartFailure);
    assert!(settings() == *s.engine.settings());
    let last = t0();
    s.engine.on_device_status(&dev("scale-1"), &pid(P), last - hours(1.0));
    s.engine.on_device_status(&dev("scale-1"), &pid(P), last);
    s.tick(last + hours(6.0) - Duration::minutes(1));
    assert!(s.of_rule("technical.device_silent").is_empty(), "{:#?}", s.events);
    s.tick(last + hours(6.0));
    let ev = s.of_rule("technical.device_silent");
    assert_eq!(ev.len(), 1, "{:#?}", s.events);
    assert_eq!(ev[0].kind, AlertEventKind::Opened as i32);
    assert_eq!(ev[0].severity, vitalwatch_schemas::proto::Severity::Low as i32);
    assert_eq!(ev[0].rule_kind, "device_heartbeat_lost");
    assert_eq!(ev[0].reading_time_unix_micros, (last + hours(6.0)).timestamp_micros());
    // Ticking again does not repeat it.
    s.tick(last + hours(7.0));
    assert_eq!(s.of_rule("technical.device_silent").len(), 1);
    // Heard again: resolved at the next tick, same episode.
    s.engine.on_device_status(&dev("scale-1"), &pid(P), last + hours(7.5));
    s.tick(last + hours(7.6));
    assert_eq!(s.kinds("technical.device_silent"), vec![AlertEventKind::Opened, AlertEventKind::Resolved]);
    let ev = s.of_rule("technical.device_silent");
    assert_eq!(ev[0].episode_id, ev[1].episode_id);
    // The missing-measurement rule is a different alert.
    assert!(s.events.iter().all(|e| e.rule_id != "technical.device_silent" || e.rule_kind == "device_heartbeat_lost"));
}

/// The limit is configurable, and 0 disables the alert.
#[test]
fn heartbeat_limit_is_configurable() {
    for (secs, at, expect) in [(3600, 1.0, 1), (3600, 0.99, 0), (0, 100.0, 0)] {
        let settings = EngineSettings { device_silent_after_secs: secs, ..EngineSettings::default() };
        let mut e = vitalwatch_rules_core::Engine::new(settings).expect("settings");
        e.on_device_status(&dev("hub-1"), &pid(P), t0());
        let mut out = Vec::new();
        e.tick(t0() + hours(at), &mut out);
        assert_eq!(out.iter().filter(|e| e.rule_id == "technical.device_silent").count(), expect, "{secs} {at}");
    }
}

/// The open heartbeat-loss episode survives a checkpoint/restore: it resolves
/// with the same episode id.
#[test]
fn heartbeat_episode_survives_checkpoint() {
    let mut s = Sim::program(P, Program::HeartFailure);
    s.engine.on_device_status(&dev("scale-1"), &pid(P), t0());
    s.tick(t0() + hours(6.0));
    let bytes = s.engine.checkpoint(&pid(P)).expect("known");
    let mut r = Sim::new();
    r.engine.restore(&pid(P), &bytes).expect("restore");
    r.engine.on_device_status(&dev("scale-1"), &pid(P), t0() + hours(8.0));
    r.tick(t0() + hours(8.0));
    assert_eq!(r.kinds("technical.device_silent"), vec![AlertEventKind::Resolved]);
    assert_eq!(r.of_rule("technical.device_silent")[0].episode_id, s.of_rule("technical.device_silent")[0].episode_id);
}

/// A reading counts as contact too.
#[test]
fn a_reading_from_the_device_counts_as_contact() {
    let mut s = Sim::program(P, Program::HeartFailure);
    s.engine.on_device_status(&dev("scale-1"), &pid(P), t0());
    s.read_dev(P, Code::BodyWeight, 80.0, t0() + hours(5.0), "scale-1");
    s.tick(t0() + hours(6.0));
    s.tick(t0() + hours(11.0) - Duration::minutes(1));
    assert!(s.of_rule("technical.device_silent").is_empty(), "{:#?}", s.events);
    s.tick(t0() + hours(11.0));
    assert_eq!(s.kinds("technical.device_silent"), vec![AlertEventKind::Opened]);
}

/// No technical alert for a device that never sent a heartbeat (readings
/// only) nor for a manual-entry patient.
#[test]
fn no_heartbeat_alert_without_heartbeats() {
    let mut s = Sim::program(P, Program::HeartFailure);
    s.read_dev(P, Code::BodyWeight, 80.0, t0(), "scale-1");
    s.read("p-manual", Code::BodyWeight, 80.0, t0());
    s.tick(t0() + hours(20.0));
    assert!(s.of_rule("technical.device_silent").is_empty(), "{:#?}", s.events);
}

/// The handled-span boundaries (opening reading t0, resolving reading
/// t0 + 2 h; a reading at exactly those times would be a duplicate of them).
/// The span starts the allowed lateness (1 h) before the opening reading (same
/// onset): 59 min before raises nothing, 61 min before is news. It ends at
/// the resolving reading: 1 min before raises nothing, 1 min after (a relapse
/// after a normal reading) opens a historical episode.
#[test]
fn handled_span_boundaries() {
    let cases = [
        (Duration::minutes(-61), true),
        (Duration::minutes(-59), false),
        (Duration::minutes(1), false),
        (hours(2.0) - Duration::minutes(1), false),
        (hours(2.0) + Duration::minutes(1), true),
    ];
    for (at, expect_new) in cases {
        let mut s = Sim::program(P, Program::Diabetes);
        s.read(P, Code::BloodGlucose, 60.0, t0());
        s.read(P, Code::BloodGlucose, 61.0, t0() + Duration::seconds(30)); // confirms the level-1 low
        s.read(P, Code::BloodGlucose, 110.0, t0() + hours(2.0));
        let mut o = obs(P, Code::BloodGlucose, 50.0, t0() + at);
        o.received_at = t0() + hours(12.0);
        s.engine.on_observation(&o, t0() + hours(12.0), &mut s.events);
        let opened = opened(&s.events, "threshold.glucose.low");
        assert_eq!(opened.len(), if expect_new { 2 } else { 1 }, "{at:?}: {:#?}", s.events);
        if expect_new {
            assert!(opened[1].historical);
            assert_ne!(opened[1].episode_id, opened[0].episode_id);
        }
    }
    // Closed by the physician, then cleared: the span is remembered too.
    let mut s = Sim::program(P, Program::Diabetes);
    s.read(P, Code::BloodGlucose, 60.0, t0());
    s.read(P, Code::BloodGlucose, 61.0, t0() + Duration::seconds(30));
    s.engine.close_episode(&pid(P), "threshold.glucose.low", t0() + hours(0.5)).expect("open episode");
    s.read(P, Code::BloodGlucose, 110.0, t0() + hours(2.0));
    let mut o = obs(P, Code::BloodGlucose, 45.0, t0() + hours(1.0));
    o.received_at = t0() + hours(12.0);
    s.engine.on_observation(&o, t0() + hours(12.0), &mut s.events);
    assert_eq!(opened(&s.events, "threshold.glucose.low").len(), 1, "{:#?}", s.events);
}
