//! Episode semantics: no re-alerting, escalation, hysteresis, physician close,
//! determinism across replays, checkpoints and rebuilds.

use crate::common;

use chrono::{DateTime, Utc};
use common::*;
use vitalwatch_rules_core::{AlertEvent, ConfigError, Engine, EngineSettings, PatientRules, Program};
use vitalwatch_schemas::proto::{AlertEventKind, Severity as PSeverity};
use vitalwatch_schemas::{Code, Observation};

const P: &str = "p-001";

#[test]
fn repeated_triggers_escalation_and_hysteresis() {
    let mut s = Sim::program(P, Program::Diabetes);
    let mut t = t0();
    // Readings 30 min apart: within the 60-min confirmation window, so a
    // second low confirms the first.
    let mut step = |s: &mut Sim, v: f64| {
        s.read(P, Code::BloodGlucose, v, t);
        t += hours(0.5);
    };
    step(&mut s, 65.0);
    assert!(s.events.is_empty(), "a single level-1 reading waits for confirmation");
    step(&mut s, 60.0);
    step(&mut s, 66.0);
    assert_eq!(s.kinds("threshold.glucose.low"), vec![AlertEventKind::Opened], "no re-alert");
    let values: Vec<f64> = s.events[0].readings.iter().map(|r| r.value).collect();
    assert_eq!(values, vec![65.0, 60.0], "the first reading and the confirming one are the evidence");
    assert!(s.events[0].summary.contains("confirmed by a second reading"), "{}", s.events[0].summary);
    step(&mut s, 50.0);
    let ev = s.of_rule("threshold.glucose.low");
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[1].kind, AlertEventKind::Escalated as i32);
    assert_eq!(ev[1].severity, PSeverity::Critical as i32, "ADA level 2 escalates at once");
    assert_eq!(ev[1].previous_severity, PSeverity::Medium as i32);
    assert_eq!(ev[1].episode_id, ev[0].episode_id);
    assert_ne!(ev[1].event_id, ev[0].event_id);
    step(&mut s, 62.0); // lower severity: no event
    step(&mut s, 75.0); // above the trigger (70) but below the clear threshold (80)
    step(&mut s, 79.0);
    assert_eq!(s.of_rule("threshold.glucose.low").len(), 2, "hysteresis: still open");
    step(&mut s, 85.0);
    let ev = s.of_rule("threshold.glucose.low");
    assert_eq!(ev.len(), 3);
    assert_eq!(ev[2].kind, AlertEventKind::Resolved as i32);
    assert_eq!(ev[2].severity, PSeverity::Critical as i32);
    assert!(ev[2].summary.starts_with("Resolved"), "{}", ev[2].summary);
    // A new, confirmed trigger opens a new episode.
    step(&mut s, 60.0);
    step(&mut s, 61.0);
    let ev = s.of_rule("threshold.glucose.low");
    assert_eq!(ev.len(), 4);
    assert_eq!(ev[3].kind, AlertEventKind::Opened as i32);
    assert_ne!(ev[3].episode_id, ev[0].episode_id);
}

#[test]
fn physician_close() {
    let mut s = Sim::program(P, Program::Diabetes);
    s.read(P, Code::BloodGlucose, 65.0, t0());
    s.read(P, Code::BloodGlucose, 64.0, t0() + hours(0.1));
    let closed = s.engine.close_episode(&pid(P), "threshold.glucose.low", t0() + hours(1.0)).expect("open episode");
    assert_eq!(closed.kind, AlertEventKind::Resolved as i32);
    assert_eq!(closed.episode_id, s.events[0].episode_id);
    assert!(closed.summary.contains("physician"));
    assert!(s.engine.close_episode(&pid(P), "threshold.glucose.low", t0()).is_err());
    assert!(s.engine.close_episode(&pid(P), "nope", t0()).is_err());
    s.read(P, Code::BloodGlucose, 66.0, t0() + hours(2.0));
    assert_eq!(s.events.len(), 1, "same severity after close: quiet");
    s.read(P, Code::BloodGlucose, 50.0, t0() + hours(3.0));
    assert_eq!(s.kinds("threshold.glucose.low"), vec![AlertEventKind::Opened, AlertEventKind::Opened]);
    assert_ne!(s.events[1].episode_id, s.events[0].episode_id);
}

/// A 20-day stream of a heart-failure patient with weight gain, glucose lows,
/// a BP crisis, late (historical) and duplicate readings, and ticks.
fn stream() -> Vec<(Observation, DateTime<Utc>)> {
    let mut rng = Lcg(3);
    let mut v = Vec::new();
    for d in 0..20 {
        let day = t0() + days(d as f64);
        let w = 80.0 + if d >= 14 { 0.9 * (d - 13) as f64 } else { rng.range(-0.2, 0.2) };
        if d != 8 && d != 9 {
            v.push((obs(P, Code::BodyWeight, w, day), day + hours(0.1)));
        }
        for h in [1.0, 13.0] {
            let t = day + hours(h);
            let (sys, dia) =
                if d == 11 && h == 1.0 { (190.0, 118.0) } else { (rng.range(115.0, 140.0), rng.range(70.0, 88.0)) };
            v.push((obs(P, Code::Systolic, sys, t), t + hours(0.01)));
            v.push((obs(P, Code::Diastolic, dia, t), t + hours(0.02)));
            v.push((obs(P, Code::Spo2, rng.range(94.0, 98.0), t), t + hours(0.03)));
        }
        if d == 12 {
            // Late: yesterday's readings again plus an old low SpO2.
            v.push((obs(P, Code::Spo2, 85.0, day - hours(20.0)), day + hours(2.0)));
            v.push((obs(P, Code::Systolic, 200.0, day - hours(20.5)), day + hours(2.0)));
        }
    }
    v
}

fn run(engine: &mut Engine, items: &[(Observation, DateTime<Utc>)], out: &mut Vec<AlertEvent>) {
    let mut last_tick = items.first().map(|(_, n)| *n).unwrap_or_default();
    run_from(engine, items, &mut last_tick, out);
}

/// Feeds readings, ticking every 6 h of processing time.
fn run_from(
    engine: &mut Engine,
    items: &[(Observation, DateTime<Utc>)],
    last_tick: &mut DateTime<Utc>,
    out: &mut Vec<AlertEvent>,
) {
    for (o, now) in items {
        while *now - *last_tick >= hours(6.0) {
            *last_tick += hours(6.0);
            engine.tick(*last_tick, out);
        }
        engine.on_observation(o, *now, out);
    }
}

fn engine_for(program: Program) -> Engine {
    let mut e = Engine::new(EngineSettings::default()).expect("settings");
    let mut r = PatientRules::for_program(program);
    r.monitoring_since = Some(t0());
    e.set_patient_rules(&pid(P), r, t0()).expect("rules");
    e
}

#[test]
fn replaying_the_same_stream_gives_identical_events() {
    let items = stream();
    let mut a = Vec::new();
    run(&mut engine_for(Program::HeartFailure), &items, &mut a);
    let mut b = Vec::new();
    run(&mut engine_for(Program::HeartFailure), &items, &mut b);
    assert!(a.len() >= 3, "the stream must produce alerts: {a:#?}");
    assert_eq!(a, b);
    let kinds: Vec<&str> = a.iter().map(|e| e.rule_id.as_str()).collect();
    assert!(kinds.contains(&"hf.weight_gain_3d"), "{kinds:?}");
    assert!(kinds.contains(&"threshold.bp.crisis"), "{kinds:?}");
    assert!(kinds.contains(&"missing.body_weight"), "{kinds:?}");
    // Issue #14 §1: the late readings are evaluated; their alerts are historical.
    let late: Vec<&AlertEvent> = a
        .iter()
        .filter(|e| e.kind == AlertEventKind::Opened as i32)
        .filter(|e| e.readings.iter().any(|r| r.value == 85.0 || r.value == 200.0))
        .collect();
    assert!(!late.is_empty(), "late data is evaluated");
    assert!(late.iter().all(|e| e.historical), "{late:#?}");
}

#[test]
fn checkpoint_restore_mid_stream_gives_the_same_events() {
    let items = stream();
    let mut whole = Vec::new();
    run(&mut engine_for(Program::HeartFailure), &items, &mut whole);
    let mut continued_with_events = 0;
    for cut in [40usize, 77, 101, 120, items.len() - 5] {
        let (first, second) = items.split_at(cut);
        let mut e1 = engine_for(Program::HeartFailure);
        let mut out = Vec::new();
        let mut last_tick = items[0].1;
        run_from(&mut e1, first, &mut last_tick, &mut out);
        let bytes = e1.checkpoint(&pid(P)).expect("known patient");
        drop(e1);
        let mut e2 = Engine::new(EngineSettings::default()).expect("settings");
        e2.restore(&pid(P), &bytes).expect("restore");
        let mut rest = Vec::new();
        run_from(&mut e2, second, &mut last_tick, &mut rest);
        continued_with_events += usize::from(!rest.is_empty());
        out.extend(rest);
        assert_eq!(out, whole, "cut at {cut}");
    }
    assert!(continued_with_events >= 3, "the cuts must fall before alerts");
}

#[test]
fn checkpoint_is_compact_json_and_rejects_garbage() {
    let items = stream();
    let mut e = engine_for(Program::HeartFailure);
    run(&mut e, &items, &mut Vec::new());
    let bytes = e.checkpoint(&pid(P)).expect("known");
    assert!(bytes.len() < 8 * 1024, "{} bytes", bytes.len());
    let mut e2 = Engine::new(EngineSettings::default()).expect("settings");
    assert!(e2.restore(&pid(P), b"{not json").is_err());
    let bumped = String::from_utf8(bytes.clone()).expect("utf8").replacen("\"version\":1", "\"version\":99", 1);
    assert!(e2.restore(&pid(P), bumped.as_bytes()).is_err());
    // PatientState is serde too.
    let state = e.patient_state(&pid(P)).expect("known");
    let json = serde_json::to_string(state).expect("serialize");
    let back: vitalwatch_rules_core::PatientState = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back.reading_count(), state.reading_count());
}

#[test]
fn replay_rebuilds_open_episodes_without_realerting() {
    // Live: a glucose low opens an episode at the last reading.
    let mut live = Sim::program(P, Program::Diabetes);
    let mut history = Vec::new();
    let mut t = t0();
    for i in 0..20 {
        let v = if i == 19 { 50.0 } else { 120.0 };
        history.push(obs(P, Code::BloodGlucose, v, t));
        live.read(P, Code::BloodGlucose, v, t);
        t += hours(6.0);
    }
    assert_eq!(live.events.len(), 1);
    // Restart: rebuild from the stored observations.
    let now = t;
    let mut e = Engine::new(EngineSettings::default()).expect("settings");
    let report = e.replay(&pid(P), PatientRules::for_program(Program::Diabetes), &history, now).expect("replay");
    assert_eq!(report.observations, 20);
    assert_eq!(report.open_episodes, 1);
    assert_eq!(report.recent_events.len(), 1, "recent event, safe to re-publish");
    assert_eq!(report.recent_events[0].event_id, live.events[0].event_id);
    let eps = e.open_episodes(&pid(P));
    assert_eq!(eps.len(), 1);
    assert_eq!(eps[0].episode_id, live.events[0].episode_id);
    // Continuing: a further low does not re-open; recovery resolves the same episode.
    let mut out = Vec::new();
    e.on_observation(&obs(P, Code::BloodGlucose, 62.0, t), t + hours(0.1), &mut out);
    assert!(out.is_empty());
    e.on_observation(&obs(P, Code::BloodGlucose, 110.0, t + hours(1.0)), t + hours(1.1), &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].kind, AlertEventKind::Resolved as i32);
    assert_eq!(out[0].episode_id, live.events[0].episode_id);
    // An old history replays without any recent event.
    let mut e = Engine::new(EngineSettings::default()).expect("settings");
    let report =
        e.replay(&pid(P), PatientRules::for_program(Program::Diabetes), &history, now + days(2.0)).expect("replay");
    assert!(report.recent_events.is_empty());
}

#[test]
fn rule_changes_take_effect_without_restart() {
    let mut s = Sim::program(P, Program::Diabetes);
    s.read(P, Code::BloodGlucose, 65.0, t0());
    s.read(P, Code::BloodGlucose, 64.0, t0() + hours(0.1));
    assert_eq!(s.events.len(), 1);
    // The physician lowers the level-1 threshold to 60: the open episode is kept.
    let mut r = PatientRules::for_program(Program::Diabetes);
    let mut low =
        Program::Diabetes.defaults().thresholds.into_iter().find(|t| t.id == "threshold.glucose.low").expect("default");
    low.checks[0].levels[0].value = 60.0;
    low.checks[0].clear = 70.0;
    r.thresholds.push(low);
    assert!(s.engine.set_patient_rules(&pid(P), r.clone(), t0() + hours(1.0)).expect("valid").is_empty());
    s.read(P, Code::BloodGlucose, 72.0, t0() + hours(2.0));
    assert_eq!(
        s.kinds("threshold.glucose.low"),
        vec![AlertEventKind::Opened, AlertEventKind::Resolved],
        "new clear threshold 70"
    );
    s.read(P, Code::BloodGlucose, 65.0, t0() + hours(3.0));
    assert_eq!(s.events.len(), 2, "65 is no longer below the patient's threshold");
    // Disabling a rule resolves its open episode.
    s.read(P, Code::BloodGlucose, 300.0, t0() + hours(4.0));
    s.read(P, Code::BloodGlucose, 290.0, t0() + hours(4.1));
    assert_eq!(s.kinds("threshold.glucose.high"), vec![AlertEventKind::Opened]);
    r.disabled.push("threshold.glucose.high".into());
    let ev = s.engine.set_patient_rules(&pid(P), r, t0() + hours(5.0)).expect("valid");
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].kind, AlertEventKind::Resolved as i32);
    assert!(ev[0].summary.contains("rule removed"));
}

#[test]
fn config_validation_and_serde() {
    // Missing-data alerts cannot be disabled for heart failure and diabetes (§5.2).
    for (p, id) in [(Program::HeartFailure, "missing.body_weight"), (Program::Diabetes, "missing.blood_glucose")] {
        let mut r = PatientRules::for_program(p);
        r.disabled.push(id.into());
        let err = r.effective().expect_err("mandatory");
        assert!(matches!(err, ConfigError::MandatoryMissingDataDisabled { .. }), "{err}");
        assert!(err.to_string().contains("cannot be disabled"));
        let mut r = PatientRules::for_program(p);
        let mut c = p.defaults().cadence.into_iter().find(|c| c.id == id).expect("default");
        c.every_hours = 24 * 30;
        r.cadence.push(c);
        assert!(matches!(r.effective(), Err(ConfigError::MandatoryMissingDataTooLax { .. })));
    }
    let mut r = PatientRules::for_program(Program::Hypertension);
    r.disabled.push("missing.blood_pressure".into());
    assert!(r.effective().expect("optional").cadence.is_empty());
    r.disabled.push("nope".into());
    assert!(matches!(r.effective(), Err(ConfigError::UnknownDisabledRule(_))));
    // Levels on the wrong side of the clear threshold.
    let mut r = PatientRules::for_program(Program::Diabetes);
    let mut low =
        Program::Diabetes.defaults().thresholds.into_iter().find(|t| t.id == "threshold.glucose.low").expect("default");
    low.checks[0].clear = 60.0;
    r.thresholds.push(low);
    assert!(matches!(r.effective(), Err(ConfigError::ClearOnWrongSide { .. })));
    let mut e = Engine::new(EngineSettings::default()).expect("settings");
    assert!(e.set_patient_rules(&pid(P), r, t0()).is_err());
    // JSON round trip, and unknown fields rejected.
    let mut r = PatientRules::for_program(Program::Copd);
    r.spo2_scale = vitalwatch_rules_core::Spo2Scale::Scale2;
    r.thresholds = Program::HeartFailure.defaults().thresholds;
    let json = serde_json::to_string(&r).expect("serialize");
    assert_eq!(serde_json::from_str::<PatientRules>(&json).expect("deserialize"), r);
    assert!(serde_json::from_str::<PatientRules>(r#"{"program":"copd","bogus":1}"#).is_err());
    assert!(Engine::new(EngineSettings { retention_days: 0, ..Default::default() }).is_err());
}
