//! Units people and devices really send, and their conversion to the one UCUM
//! unit per code (`Code::ucum`).
//!
//! Factors: shared/reference/clinical.md §2.1, derived from UCUM
//! (ucum-org/ucum:ucum-essence.xml, release 2.2).

use vitalwatch_schemas::VitalKind;

/// A recognised input unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Per minute (heart rate, respiratory rate).
    PerMinute,
    /// Millimetres of mercury.
    MmHg,
    /// Kilopascal (1 kPa = 7.500638 mmHg).
    KPa,
    /// Percent.
    Percent,
    /// Kilogram.
    Kg,
    /// Gram.
    G,
    /// Avoirdupois pound (0.45359237 kg exactly).
    Lb,
    /// Avoirdupois ounce (28.349523125 g).
    Oz,
    /// Degree Celsius.
    Cel,
    /// Degree Fahrenheit.
    DegF,
    /// Milligram per decilitre (glucose).
    MgPerDl,
    /// Millimole per litre (glucose; 1 mmol/L = 18.0156 mg/dL).
    MmolPerL,
}

/// 1 kPa in mmHg (clinical.md §2.1: `m[Hg]` = 133.3220 kPa).
pub const MMHG_PER_KPA: f64 = 7.500638;
/// 1 lb in kg, exact (clinical.md §2.1).
pub const KG_PER_LB: f64 = 0.45359237;
/// 1 oz in kg (clinical.md §2.1: 28.349523125 g).
pub const KG_PER_OZ: f64 = 0.028349523125;
/// Glucose: 1 mmol/L in mg/dL, from the molar mass 180.156 g/mol (clinical.md §2.1, LOINC LG7967-5).
pub const MGDL_PER_MMOLL: f64 = 18.0156;

impl Unit {
    /// Recognises a unit string as sent (UCUM codes and the common spellings),
    /// for the given kind. Matching ignores ASCII case.
    pub fn parse(kind: VitalKind, s: &str) -> Option<Unit> {
        let s = s.trim();
        let is = |alts: &[&str]| alts.iter().any(|a| a.eq_ignore_ascii_case(s));
        let u = match kind {
            VitalKind::HeartRate => {
                if is(&["/min", "bpm", "{beats}/min", "beats/min", "beat/min", "1/min", "min-1", "{beat}/min"]) {
                    Unit::PerMinute
                } else {
                    return None;
                }
            }
            VitalKind::RespiratoryRate => {
                if is(&["/min", "{breaths}/min", "breaths/min", "breath/min", "rpm", "1/min", "min-1", "br/min"]) {
                    Unit::PerMinute
                } else {
                    return None;
                }
            }
            VitalKind::BloodPressure => {
                if is(&["mm[Hg]", "mmHg", "mm Hg", "torr"]) {
                    Unit::MmHg
                } else if is(&["kPa"]) {
                    Unit::KPa
                } else {
                    return None;
                }
            }
            VitalKind::Spo2 => {
                if is(&["%", "percent", "%{saturation}", "%O2"]) {
                    Unit::Percent
                } else {
                    return None;
                }
            }
            VitalKind::BodyWeight => {
                if is(&["kg", "kilogram", "kilograms"]) {
                    Unit::Kg
                } else if s == "g" || is(&["gram", "grams"]) {
                    Unit::G
                } else if is(&["[lb_av]", "lb", "lbs", "pound", "pounds"]) {
                    Unit::Lb
                } else if is(&["[oz_av]", "oz"]) {
                    Unit::Oz
                } else {
                    return None;
                }
            }
            VitalKind::BodyTemperature => {
                if is(&["Cel", "°C", "degC", "C", "celsius", "℃"]) {
                    Unit::Cel
                } else if is(&["[degF]", "°F", "degF", "F", "fahrenheit", "℉"]) {
                    Unit::DegF
                } else {
                    return None;
                }
            }
            VitalKind::BloodGlucose => {
                if is(&["mg/dL", "mg/dl", "mg%"]) {
                    Unit::MgPerDl
                } else if is(&["mmol/L", "mmol/l", "mM"]) {
                    Unit::MmolPerL
                } else {
                    return None;
                }
            }
        };
        Some(u)
    }

    /// The UCUM code of this input unit (stored as `original_unit`).
    pub fn ucum(self) -> &'static str {
        match self {
            Unit::PerMinute => "/min",
            Unit::MmHg => "mm[Hg]",
            Unit::KPa => "kPa",
            Unit::Percent => "%",
            Unit::Kg => "kg",
            Unit::G => "g",
            Unit::Lb => "[lb_av]",
            Unit::Oz => "[oz_av]",
            Unit::Cel => "Cel",
            Unit::DegF => "[degF]",
            Unit::MgPerDl => "mg/dL",
            Unit::MmolPerL => "mmol/L",
        }
    }

    /// Converts a value in this unit to the canonical unit of its code.
    pub fn to_canonical(self, v: f64) -> f64 {
        match self {
            Unit::PerMinute | Unit::MmHg | Unit::Percent | Unit::Kg | Unit::Cel | Unit::MgPerDl => v,
            Unit::KPa => v * MMHG_PER_KPA,
            Unit::G => v / 1000.0,
            Unit::Lb => v * KG_PER_LB,
            Unit::Oz => v * KG_PER_OZ,
            // clinical.md §2.1: °C = (°F − 32) × 5/9.
            Unit::DegF => (v - 32.0) * 5.0 / 9.0,
            Unit::MmolPerL => v * MGDL_PER_MMOLL,
        }
    }

    /// The accepted spellings, for error messages.
    pub fn accepted(kind: VitalKind) -> &'static str {
        match kind {
            VitalKind::HeartRate => "/min, bpm, {beats}/min",
            VitalKind::RespiratoryRate => "/min, {breaths}/min",
            VitalKind::BloodPressure => "mm[Hg], mmHg, kPa",
            VitalKind::Spo2 => "%",
            VitalKind::BodyWeight => "kg, g, [lb_av], lb, [oz_av], oz",
            VitalKind::BodyTemperature => "Cel, °C, [degF], °F",
            VitalKind::BloodGlucose => "mg/dL, mmol/L",
        }
    }
}

/// Physiological plausibility limits, exclusive, in canonical units: a value
/// outside is a device or entry error, not a clinical finding. These are
/// deliberately wide; clinical alert thresholds live in the rules engine.
///
/// Sources (clinical.md §2.2): MIMIC-IV cleaning rules
/// (MIT-LCP/mimic-code:mimic-iv/concepts/measurement/vitalsign.sql): HR 0–300,
/// SBP 0–400, DBP 0–300, RR 0–70, temperature 10–50 °C, SpO2 0–100 (inclusive
/// upper), glucose > 0.
///
/// Where the reference is silent or wrong for our use we chose, and say so:
/// - glucose upper bound 3,000 mg/dL (MIMIC has none; real readings above 2,000
///   have been reported, none near 3,000);
/// - body weight 0–700 kg. The Littman 2012 rule (34–272 kg) is an adult-cohort
///   *cleaning* rule: rejecting with it would drop real readings of frail or
///   bariatric patients, so it is not used as a plausibility limit.
pub fn plausible_range(code: vitalwatch_schemas::Code) -> (f64, f64, bool) {
    use vitalwatch_schemas::Code;
    // (low exclusive, high, high inclusive?)
    match code {
        Code::HeartRate => (0.0, 300.0, false),
        Code::Systolic => (0.0, 400.0, false),
        Code::Diastolic => (0.0, 300.0, false),
        Code::RespiratoryRate => (0.0, 70.0, false),
        Code::BodyTemperature => (10.0, 50.0, false),
        Code::Spo2 => (0.0, 100.0, true),
        Code::BloodGlucose => (0.0, 3000.0, false),
        Code::BodyWeight => (0.0, 700.0, false),
    }
}

/// True if `v` (canonical unit) is physiologically possible for `code`.
pub fn is_plausible(code: vitalwatch_schemas::Code, v: f64) -> bool {
    let (lo, hi, hi_inclusive) = plausible_range(code);
    v > lo && (v < hi || (hi_inclusive && v == hi))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vitalwatch_schemas::Code;

    fn conv(kind: VitalKind, unit: &str, v: f64) -> f64 {
        Unit::parse(kind, unit).unwrap_or_else(|| panic!("{unit} not accepted")).to_canonical(v)
    }

    #[test]
    fn weight_conversions() {
        assert_eq!(conv(VitalKind::BodyWeight, "kg", 80.0), 80.0);
        assert!((conv(VitalKind::BodyWeight, "lb", 176.37) - 80.0).abs() < 0.001);
        assert!((conv(VitalKind::BodyWeight, "[lb_av]", 1.0) - 0.45359237).abs() < 1e-12);
        assert!((conv(VitalKind::BodyWeight, "g", 80500.0) - 80.5).abs() < 1e-9);
        assert!((conv(VitalKind::BodyWeight, "oz", 16.0) - 0.45359237).abs() < 1e-9);
        assert_eq!(Unit::parse(VitalKind::BodyWeight, "G"), None, "G is not grams");
    }

    #[test]
    fn temperature_conversions() {
        assert_eq!(conv(VitalKind::BodyTemperature, "Cel", 37.0), 37.0);
        assert_eq!(conv(VitalKind::BodyTemperature, "°C", 37.0), 37.0);
        assert!((conv(VitalKind::BodyTemperature, "[degF]", 98.6) - 37.0).abs() < 1e-9);
        assert!((conv(VitalKind::BodyTemperature, "°F", 100.4) - 38.0).abs() < 1e-9);
        assert!((conv(VitalKind::BodyTemperature, "degF", 32.0)).abs() < 1e-12);
    }

    #[test]
    fn pressure_and_glucose_conversions() {
        assert!((conv(VitalKind::BloodPressure, "kPa", 16.0) - 120.010208).abs() < 1e-6);
        assert_eq!(conv(VitalKind::BloodPressure, "mmHg", 120.0), 120.0);
        assert_eq!(conv(VitalKind::BloodPressure, "mm[Hg]", 120.0), 120.0);
        assert!((conv(VitalKind::BloodGlucose, "mmol/L", 5.5) - 99.0858).abs() < 1e-9);
        assert_eq!(conv(VitalKind::BloodGlucose, "mg/dL", 90.0), 90.0);
    }

    #[test]
    fn rates() {
        for u in ["/min", "bpm", "BPM", "{beats}/min", "beats/min"] {
            assert_eq!(conv(VitalKind::HeartRate, u, 72.0), 72.0, "{u}");
        }
        assert_eq!(conv(VitalKind::RespiratoryRate, "{breaths}/min", 16.0), 16.0);
        assert_eq!(Unit::parse(VitalKind::HeartRate, "kg"), None);
        assert_eq!(Unit::parse(VitalKind::Spo2, "mmHg"), None);
    }

    #[test]
    fn plausibility_boundaries() {
        assert!(!is_plausible(Code::HeartRate, 0.0));
        assert!(is_plausible(Code::HeartRate, 0.1));
        assert!(is_plausible(Code::HeartRate, 299.9));
        assert!(!is_plausible(Code::HeartRate, 300.0));
        assert!(is_plausible(Code::Spo2, 100.0));
        assert!(!is_plausible(Code::Spo2, 100.1));
        assert!(!is_plausible(Code::Spo2, 0.0));
        assert!(!is_plausible(Code::BodyTemperature, 10.0));
        assert!(is_plausible(Code::BodyTemperature, 10.01));
        assert!(!is_plausible(Code::BodyTemperature, 50.0));
        assert!(!is_plausible(Code::Systolic, 400.0));
        assert!(is_plausible(Code::Systolic, 399.0));
        assert!(!is_plausible(Code::Diastolic, 300.0));
        assert!(!is_plausible(Code::RespiratoryRate, 70.0));
        assert!(is_plausible(Code::RespiratoryRate, 69.0));
        assert!(!is_plausible(Code::BloodGlucose, 0.0));
        assert!(is_plausible(Code::BloodGlucose, 2999.0));
        assert!(!is_plausible(Code::BodyWeight, 700.0));
        assert!(!is_plausible(Code::BodyWeight, f64::NAN));
    }
}
