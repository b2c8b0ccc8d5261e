//! NEWS2 scoring against every band boundary of RCP chart 1 (clinical.md §3.1)
//! and the aggregate bands of chart 2 (§3.2).

use vitalwatch_rules_core::news2::{
    band, score_consciousness, score_oxygen, score_pulse, score_respiratory_rate, score_spo2, score_systolic,
    score_temperature,
};
use vitalwatch_rules_core::{Consciousness, News2Band, News2Inputs, Spo2Scale, news2_score};

#[test]
fn respiratory_rate_boundaries() {
    for (v, s) in
        [(8.0, 3), (9.0, 1), (11.0, 1), (12.0, 0), (20.0, 0), (21.0, 2), (24.0, 2), (25.0, 3), (0.0, 3), (60.0, 3)]
    {
        assert_eq!(score_respiratory_rate(v), s, "RR {v}");
    }
}

#[test]
fn spo2_scale_1_boundaries() {
    for (v, s) in [(91.0, 3), (92.0, 2), (93.0, 2), (94.0, 1), (95.0, 1), (96.0, 0), (100.0, 0), (50.0, 3)] {
        assert_eq!(score_spo2(v, Spo2Scale::Scale1, false), s, "SpO2 {v} scale 1");
        assert_eq!(score_spo2(v, Spo2Scale::Scale1, true), s, "scale 1 ignores oxygen for the SpO2 score");
    }
}

#[test]
fn spo2_scale_2_boundaries_on_air_and_on_oxygen() {
    // Same on air and on oxygen up to 92.
    for (v, s) in [(83.0, 3), (84.0, 2), (85.0, 2), (86.0, 1), (87.0, 1), (88.0, 0), (92.0, 0)] {
        assert_eq!(score_spo2(v, Spo2Scale::Scale2, false), s, "SpO2 {v} scale 2 air");
        assert_eq!(score_spo2(v, Spo2Scale::Scale2, true), s, "SpO2 {v} scale 2 oxygen");
    }
    // 92/93 on air: both 0; on oxygen 92 -> 0, 93 -> 1.
    for v in [93.0, 94.0, 95.0, 96.0, 97.0, 100.0] {
        assert_eq!(score_spo2(v, Spo2Scale::Scale2, false), 0, "SpO2 {v} scale 2 on air");
    }
    for (v, s) in [(93.0, 1), (94.0, 1), (95.0, 2), (96.0, 2), (97.0, 3), (100.0, 3)] {
        assert_eq!(score_spo2(v, Spo2Scale::Scale2, true), s, "SpO2 {v} scale 2 on oxygen");
    }
}

#[test]
fn systolic_boundaries() {
    for (v, s) in [(90.0, 3), (91.0, 2), (100.0, 2), (101.0, 1), (110.0, 1), (111.0, 0), (219.0, 0), (220.0, 3)] {
        assert_eq!(score_systolic(v), s, "SBP {v}");
    }
}

#[test]
fn pulse_boundaries() {
    for (v, s) in [
        (40.0, 3),
        (41.0, 1),
        (50.0, 1),
        (51.0, 0),
        (90.0, 0),
        (91.0, 1),
        (110.0, 1),
        (111.0, 2),
        (130.0, 2),
        (131.0, 3),
    ] {
        assert_eq!(score_pulse(v), s, "pulse {v}");
    }
}

#[test]
fn temperature_boundaries() {
    for (v, s) in
        [(35.0, 3), (35.1, 1), (36.0, 1), (36.1, 0), (38.0, 0), (38.1, 1), (39.0, 1), (39.1, 2), (42.0, 2), (30.0, 3)]
    {
        assert_eq!(score_temperature(v), s, "temperature {v}");
    }
}

#[test]
fn rounding_rule_for_non_integer_values() {
    // Nearest integer (tenth for temperature), halves away from zero.
    assert_eq!(score_respiratory_rate(8.4), 3);
    assert_eq!(score_respiratory_rate(8.5), 1);
    assert_eq!(score_spo2(91.4, Spo2Scale::Scale1, false), 3);
    assert_eq!(score_spo2(91.5, Spo2Scale::Scale1, false), 2);
    assert_eq!(score_systolic(90.49), 3);
    assert_eq!(score_systolic(90.5), 2);
    assert_eq!(score_pulse(130.4), 2);
    assert_eq!(score_pulse(130.5), 3);
    assert_eq!(score_temperature(38.04), 0);
    assert_eq!(score_temperature(38.06), 1);
    assert_eq!(score_temperature(35.04), 3);
    assert_eq!(score_temperature(35.06), 1);
}

#[test]
fn oxygen_and_consciousness() {
    assert_eq!(score_oxygen(false), 0);
    assert_eq!(score_oxygen(true), 2);
    assert_eq!(score_consciousness(Consciousness::Alert), 0);
    for c in [Consciousness::NewConfusion, Consciousness::Voice, Consciousness::Pain, Consciousness::Unresponsive] {
        assert_eq!(score_consciousness(c), 3);
    }
}

#[test]
fn aggregate_bands() {
    assert_eq!(band(0, false), News2Band::Low);
    assert_eq!(band(4, false), News2Band::Low);
    assert_eq!(band(3, true), News2Band::LowMedium);
    assert_eq!(band(4, true), News2Band::LowMedium);
    assert_eq!(band(5, false), News2Band::Medium);
    assert_eq!(band(6, true), News2Band::Medium);
    assert_eq!(band(7, false), News2Band::High);
    assert_eq!(band(20, true), News2Band::High);
}

#[test]
fn whole_scores() {
    let normal = News2Inputs {
        respiratory_rate: Some(16.0),
        spo2: Some(97.0),
        systolic: Some(125.0),
        pulse: Some(72.0),
        temperature: Some(36.8),
        ..Default::default()
    };
    let n = news2_score(&normal);
    assert_eq!((n.total, n.any_single_3, n.band, n.measured), (0, false, News2Band::Low, 5));
    // Home defaults: alert and on air. Oxygen adds 2.
    let n = news2_score(&News2Inputs { supplemental_oxygen: true, ..normal });
    assert_eq!((n.total, n.band), (2, News2Band::Low));
    let n = news2_score(&News2Inputs { consciousness: Consciousness::Voice, ..normal });
    assert_eq!((n.total, n.any_single_3, n.band), (3, true, News2Band::LowMedium));
    let n = news2_score(&News2Inputs {
        respiratory_rate: Some(22.0),
        pulse: Some(112.0),
        temperature: Some(38.5),
        ..normal
    });
    assert_eq!((n.total, n.band), (5, News2Band::Medium));
    // Maximum (§3.1 aggregate range 0-20): RR 3, SpO2 3 (scale 2, >= 97 % on
    // oxygen), oxygen 2, SBP 3, pulse 3, consciousness 3, temperature 3.
    let worst = News2Inputs {
        respiratory_rate: Some(30.0),
        spo2: Some(99.0),
        scale: Spo2Scale::Scale2,
        supplemental_oxygen: true,
        systolic: Some(80.0),
        pulse: Some(140.0),
        consciousness: Consciousness::Unresponsive,
        temperature: Some(34.0),
    };
    let n = news2_score(&worst);
    assert_eq!((n.total, n.band), (20, News2Band::High));
    // Unmeasured and non-finite parameters score 0.
    let n = news2_score(&News2Inputs { respiratory_rate: Some(f64::NAN), spo2: None, ..Default::default() });
    assert_eq!((n.total, n.measured), (0, 0));
}
