//! Alarm fatigue against detection (issue #14 §5): runs the home-trajectory
//! model (`vitalwatch_benches::home`) through the default rules of every
//! program and prints, per program, the OPENED alerts per stable patient per
//! 30 days and the delay to the first alert of deteriorating patients.
//!
//! `cargo run -p vitalwatch-benches --example noise [-- PATIENTS [DAYS [SEED]]]`
//! (default 1000 patients per program and course, 30 days, seed 14).
//!
//! `... --example noise -- explain PROGRAM INDEX [stable]` prints one
//! patient's readings and events instead (INDEX as in the test failures).
use vitalwatch_benches::home::{self, Detection, DeterioratingStats, Deterioration, StableStats};
use vitalwatch_rules_core::Program;
use vitalwatch_schemas::proto::Severity;

fn arg<T: std::str::FromStr>(i: usize, default: T) -> T {
    std::env::args().nth(i).and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// Median and maximum of the values, as "median / max".
fn med_max(mut v: Vec<f64>) -> String {
    if v.is_empty() {
        return "-".to_owned();
    }
    v.sort_by(f64::total_cmp);
    let med = v.get(v.len() / 2).copied().unwrap_or(f64::NAN);
    let max = v.last().copied().unwrap_or(f64::NAN);
    format!("{med:.1} / {max:.1}")
}

fn delays(d: &[Option<Detection>], f: impl Fn(&Detection) -> Option<f64>) -> String {
    med_max(d.iter().flatten().filter_map(f).collect())
}

/// Prints the readings and events of one patient.
fn explain(program: &str, index: u64, stable: bool) -> Result<(), home::HarnessError> {
    let Some(p) = Program::parse(program) else {
        println!("unknown program {program:?}");
        return Ok(());
    };
    let t = home::trajectory(home::SEED, p, index, !stable, 30);
    println!("onset {:?}; definition met at {:?}", t.onset, t.definition().map(|r| r.time));
    for r in &t.readings {
        let mark = if r.meets_definition { " *" } else { "" };
        println!(
            "{}  {:<16} {:>6.1}  (true {:.1}){mark}",
            r.time.format("%d %H:%M"),
            format!("{:?}", r.code),
            r.value,
            r.truth
        );
    }
    for e in home::run(&t, "x-00000")? {
        println!(
            "{:?} {} {:?} reading {} detected {}: {}",
            e.kind(),
            e.rule_id,
            home::severity(&e),
            e.reading_time_unix_micros / 60_000_000,
            e.detected_at_unix_micros / 60_000_000,
            e.summary
        );
    }
    Ok(())
}

fn main() -> Result<(), home::HarnessError> {
    if std::env::args().nth(1).as_deref() == Some("explain") {
        let stable = std::env::args().nth(4).as_deref() == Some("stable");
        return explain(&std::env::args().nth(2).unwrap_or_default(), arg(3, 0), stable);
    }
    let (n, days, seed): (usize, u32, u64) = (arg(1, 1000), arg(2, 30), arg(3, home::SEED));
    let started = std::time::Instant::now();
    println!("Stable patients: OPENED alerts per patient per {days} days ({n} patients per program, seed {seed})");
    println!(
        "{:<14} {:>7} {:>9} {:>7} {:>7} {:>7} {:>7}  top rules (OPENED count)",
        "program", "total", "critical", "high", "medium", "low", "info"
    );
    let mut det: Vec<(Program, DeterioratingStats)> = Vec::new();
    for p in Program::ALL {
        let (st, de): (StableStats, DeterioratingStats) = home::measure(seed, p, n, days)?;
        let rate = |s| st.per_patient_month(Some(s));
        let top: Vec<String> = st.by_rule.iter().take(4).map(|(r, c)| format!("{r} {c}")).collect();
        println!(
            "{:<14} {:>7.2} {:>9.2} {:>7.2} {:>7.2} {:>7.2} {:>7.2}  {}",
            p.as_str(),
            st.per_patient_month(None),
            rate(Severity::Critical),
            rate(Severity::High),
            rate(Severity::Medium),
            rate(Severity::Low),
            rate(Severity::Info),
            top.join(", ")
        );
        det.push((p, de));
    }
    println!();
    println!("Deteriorating patients ({n} per program): delay to the first OPENED/ESCALATED event of the expected");
    println!("rules, median / max, in hours from onset, and in readings and hours from the first reading meeting");
    println!("the clinical definition (0 readings: on that reading); first at any severity, then at the expected one;");
    println!("in bound: patients alerted within the bound, of those whose course met the definition");
    println!(
        "{:<14} {:<13} {:>8} {:>12} {:>11} {:>12} | {:>11} {:>12} {:>11} {:>12} {:>8}",
        "program",
        "course",
        "alerted",
        "h onset",
        "readings",
        "h def",
        "at sev >=",
        "h onset",
        "readings",
        "h def",
        "in bound"
    );
    for (p, de) in &det {
        let d = Deterioration::of(*p);
        let exp = d.expectation();
        let alerted = de.first_alert.iter().flatten().count();
        let at_sev = de.expected.iter().flatten().count();
        let readings = |x: &Detection| x.readings_from_definition.map(|r| r as f64);
        println!(
            "{:<14} {:<13} {:>8} {:>12} {:>11} {:>12} | {:>11} {:>12} {:>11} {:>12} {:>8}",
            p.as_str(),
            format!("{d:?}"),
            format!("{alerted}/{}", de.patients),
            delays(&de.first_alert, |x| Some(x.hours_from_onset)),
            delays(&de.first_alert, readings),
            delays(&de.first_alert, |x| x.hours_from_definition),
            format!("{}:{at_sev}", exp.min_severity.as_str_name().trim_start_matches("SEVERITY_")),
            delays(&de.expected, |x| Some(x.hours_from_onset)),
            delays(&de.expected, readings),
            delays(&de.expected, |x| x.hours_from_definition),
            format!("{}/{}", de.within_bound(exp.max_readings), de.meeting_definition()),
        );
    }
    println!();
    for p in Program::ALL {
        let e = Deterioration::of(p).expectation();
        println!(
            "{:<14} expected: {} at >= {:?} within {} {:?} reading(s) of: {}",
            p.as_str(),
            e.rules.join(" | "),
            e.min_severity,
            e.max_readings,
            e.code,
            e.definition
        );
    }
    println!("({:.1} s)", started.elapsed().as_secs_f64());
    Ok(())
}
