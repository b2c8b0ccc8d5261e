//! Building `AlertEvent`s: evidence readings and a short summary without
//! identifying data. This is the only place that allocates, and only when an
//! event is emitted.

use vitalwatch_schemas::proto::{AlertEvent, AlertEventKind, AlertResolution, EvidenceReading};
use vitalwatch_schemas::{Code, ObservationId};

use crate::compiled::{Body, Ctx, Finding, HOUR_US, MINUTE_US};
use crate::config::{ChangeMethod, Direction, Persistence, Severity};
use crate::episodes::{Episode, event_id};
use crate::history::{History, Reading};

/// At most this many evidence readings per event (the newest are kept, plus
/// the reference reading of a window change).
pub(crate) const MAX_EVIDENCE: usize = 32;

/// Why an event is emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cause {
    /// The rule's condition (trigger, escalation, clear).
    Condition,
    /// A physician closed the episode.
    ClosedByPhysician,
    /// The rule was removed from the patient's configuration.
    RuleRemoved,
    /// A pending episode whose single reading nobody re-measured within the
    /// confirmation window (opened by the tick).
    Unconfirmed,
}

/// Everything needed to build one event.
pub(crate) struct Emit<'a> {
    /// The patient id (never put in the summary).
    pub patient: &'a str,
    pub program: &'static str,
    pub body: &'a Body,
    pub hist: &'a History,
    pub floor_us: i64,
    pub kind: AlertEventKind,
    pub episode: Episode,
    pub previous: Option<Severity>,
    pub finding: Option<Finding>,
    /// Measurement time of the reading that caused the event.
    pub reading_us: i64,
    pub now_us: i64,
    pub trace_id: &'a str,
    pub cause: Cause,
    /// The reading arrived late (see `engine`): a historical alert.
    pub historical: bool,
    /// When the reading was received, µs (0: not about a reading).
    pub received_us: i64,
}

/// Builds the event.
pub(crate) fn build(e: &Emit<'_>) -> AlertEvent {
    let rule_id = e.body.id();
    let episode_id = crate::episodes::episode_id(e.patient, rule_id, e.episode.opened_us);
    let severity = e.episode.severity;
    let readings = evidence(e);
    let f = e.finding;
    AlertEvent {
        event_id: event_id(&episode_id, e.kind, severity),
        episode_id,
        patient_id: e.patient.to_owned(),
        rule_id: rule_id.to_owned(),
        rule_kind: e.body.kind_label(e.episode.device_silent).to_owned(),
        kind: e.kind as i32,
        severity: severity.to_proto() as i32,
        program: e.program.to_owned(),
        code: e.body.primary_code().map(|c| c.loinc().to_owned()).unwrap_or_default(),
        reading_time_unix_micros: e.reading_us,
        detected_at_unix_micros: e.now_us,
        readings,
        threshold: f.map(|f| f.threshold),
        baseline: f.and_then(|f| f.baseline),
        summary: summary(e),
        trace_id: e.trace_id.to_owned(),
        previous_severity: e.previous.map_or(0, |p| p.to_proto() as i32),
        historical: e.historical,
        received_at_unix_micros: e.received_us,
        resolution: resolution(e.kind, e.cause) as i32,
        // Named by the engine, which knows the patient's rules version.
        rules_version: 0,
    }
}

/// How a RESOLVED event ends its episode (the stored status comes from it).
fn resolution(kind: AlertEventKind, cause: Cause) -> AlertResolution {
    match (kind, cause) {
        (AlertEventKind::Resolved, Cause::ClosedByPhysician) => AlertResolution::ClosedByPhysician,
        (AlertEventKind::Resolved, Cause::RuleRemoved) => AlertResolution::RuleRemoved,
        (AlertEventKind::Resolved, _) => AlertResolution::Cleared,
        _ => AlertResolution::Unspecified,
    }
}

/// Rule id of the technical heartbeat-loss alert.
pub(crate) const DEVICE_SILENT_RULE: &str = "technical.device_silent";
/// Its `rule_kind`.
pub(crate) const DEVICE_SILENT_KIND: &str = "device_heartbeat_lost";

/// A device's heartbeat-loss episode, as seen by [`build_device_silent`].
pub(crate) struct DeviceSilence {
    /// FNV-1a hash of the device id (the id is not kept).
    pub id_hash: u32,
    /// Codes the device sent (bit `Code::index`).
    pub codes: u8,
    /// Episode opening time: last contact + the silence limit, µs.
    pub opened_us: i64,
    /// Last contact, µs.
    pub last_us: i64,
    /// The silence limit, hours.
    pub after_hours: f64,
}

/// Builds a heartbeat-loss event (OPENED or RESOLVED), severity LOW. The
/// episode id includes the device hash, so each device has its own episode.
pub(crate) fn build_device_silent(
    patient: &str,
    program: &str,
    d: &DeviceSilence,
    kind: AlertEventKind,
    now_us: i64,
) -> AlertEvent {
    let rule_key = format!("{DEVICE_SILENT_RULE}/{:08x}", d.id_hash);
    let episode_id = crate::episodes::episode_id(patient, &rule_key, d.opened_us);
    let severity = Severity::Low;
    let vitals: Vec<&str> =
        Code::ALL.iter().filter(|c| d.codes & (1u8 << c.index()) != 0).map(|c| c.display()).collect();
    let what = if vitals.is_empty() { String::new() } else { format!(" sending {}", vitals.join(", ")) };
    let summary = if kind == AlertEventKind::Resolved {
        format!("Resolved: device ref {:08x}{what} heard from again", d.id_hash)
    } else {
        format!(
            "Technical: device ref {:08x}{what} silent for {} h (no heartbeat, no reading); check battery and connection. Not a missed measurement",
            d.id_hash,
            num(d.after_hours)
        )
    };
    AlertEvent {
        event_id: event_id(&episode_id, kind, severity),
        episode_id,
        patient_id: patient.to_owned(),
        rule_id: DEVICE_SILENT_RULE.to_owned(),
        rule_kind: DEVICE_SILENT_KIND.to_owned(),
        kind: kind as i32,
        severity: severity.to_proto() as i32,
        program: program.to_owned(),
        code: String::new(),
        reading_time_unix_micros: if kind == AlertEventKind::Resolved { d.last_us } else { d.opened_us },
        detected_at_unix_micros: now_us,
        readings: Vec::new(),
        threshold: None,
        baseline: None,
        summary,
        trace_id: String::new(),
        previous_severity: 0,
        historical: false,
        received_at_unix_micros: 0,
        resolution: resolution(kind, Cause::Condition) as i32,
        rules_version: 0,
    }
}

fn evidence_reading(patient: &str, r: Reading) -> EvidenceReading {
    EvidenceReading {
        observation_id: ObservationId::compute(patient, r.code, r.t_us).to_hex(),
        code: r.code.loinc().to_owned(),
        value: r.value,
        unit: r.code.ucum().to_owned(),
        time_unix_micros: r.t_us,
    }
}

fn evidence(e: &Emit<'_>) -> Vec<EvidenceReading> {
    let t = e.reading_us;
    let ctx = Ctx { hist: e.hist, t_us: t, floor_us: e.floor_us };
    let mut out: Vec<Reading> = Vec::new();
    let resolved = e.kind == AlertEventKind::Resolved;
    let window = |code: Code, from: i64, out: &mut Vec<Reading>| out.extend(e.hist.readings(code, from, t));
    match e.body {
        Body::Threshold(rule) => {
            let trigger_code = e.finding.and_then(|f| f.code);
            if let (false, Some(code)) = (resolved, trigger_code) {
                match rule.persistence {
                    Persistence::Immediate => {}
                    Persistence::Confirmed(c) => {
                        window(code, ctx.back(i64::from(c.within_minutes).saturating_mul(MINUTE_US)), &mut out)
                    }
                    Persistence::Consecutive { readings } => {
                        let mut prev: Vec<Reading> =
                            e.hist.readings(code, e.floor_us, t).rev().take(usize::from(readings)).collect();
                        prev.reverse();
                        out.extend(prev);
                    }
                    Persistence::Sustained { minutes } => {
                        window(code, ctx.back(i64::from(minutes).saturating_mul(MINUTE_US)), &mut out)
                    }
                }
            }
            for c in &rule.checks {
                if let Some(r) = e.hist.at(c.code, t)
                    && !out.contains(&r)
                {
                    out.push(r);
                }
            }
        }
        Body::Change(rule) => {
            let back = match rule.method {
                ChangeMethod::WindowChange { window_hours, tolerance_hours, .. } => {
                    (i64::from(window_hours) + i64::from(tolerance_hours)).saturating_mul(HOUR_US)
                }
                ChangeMethod::Baseline { recent_hours, .. } => i64::from(recent_hours).saturating_mul(HOUR_US),
                ChangeMethod::WindowMean { window_hours } => i64::from(window_hours).saturating_mul(HOUR_US),
                ChangeMethod::SameTimeOfDay { days, tolerance_hours, .. } => {
                    (i64::from(days) * 24 + i64::from(tolerance_hours)).saturating_mul(HOUR_US)
                }
            };
            window(rule.code, ctx.back(back), &mut out);
            if out.len() > MAX_EVIDENCE {
                // Keep the reference (extreme) reading of a window change and the newest ones.
                let reference =
                    e.finding.and_then(|f| f.baseline).and_then(|b| out.iter().copied().find(|r| r.value == b));
                let tail = out.split_off(out.len() - (MAX_EVIDENCE - 1));
                out.clear();
                out.extend(reference);
                out.extend(tail.into_iter().filter(|r| Some(*r) != reference));
            }
        }
        Body::News2(rule) => out.extend(crate::news2::parameters(rule, &ctx).into_iter().flatten()),
        Body::Cadence(rule) => out.extend(e.hist.latest(rule.code, i64::MAX)),
    }
    out.sort_by_key(|r| (r.t_us, r.code));
    if out.len() > MAX_EVIDENCE {
        out.drain(..out.len() - MAX_EVIDENCE);
    }
    out.into_iter().map(|r| evidence_reading(e.patient, r)).collect()
}

/// Formats a number with at most two decimals, dropping useless zeros.
pub(crate) fn num(v: f64) -> String {
    let r = (v * 100.0).round() / 100.0;
    if (r - r.round()).abs() < 1e-9 {
        format!("{r:.0}")
    } else if ((r * 10.0) - (r * 10.0).round()).abs() < 1e-9 {
        format!("{r:.1}")
    } else {
        format!("{r:.2}")
    }
}

fn unit(code: Code) -> &'static str {
    match code.ucum() {
        "mm[Hg]" => "mmHg",
        "Cel" => "°C",
        u => u,
    }
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

fn span(hours: u32) -> String {
    match hours {
        24 => "1 day".to_owned(),
        h if h % 24 == 0 => format!("{} days", h / 24),
        h => format!("{h} h"),
    }
}

fn summary(e: &Emit<'_>) -> String {
    match e.cause {
        Cause::ClosedByPhysician => return "Episode closed by the physician".to_owned(),
        Cause::RuleRemoved => {
            return "Resolved: rule removed from the patient's configuration".to_owned();
        }
        Cause::Condition | Cause::Unconfirmed => {}
    }
    let mut body = condition_summary(e);
    let window = e.body.confirm_window_us() / MINUTE_US;
    if e.kind == AlertEventKind::Opened && window > 0 {
        if e.cause == Cause::Unconfirmed {
            let within =
                if window >= 120 && window % 60 == 0 { format!("{} h", window / 60) } else { format!("{window} min") };
            body.push_str(&format!("; single reading, not re-measured within {within}"));
        } else if e.episode.last_us > e.episode.opened_us {
            body.push_str("; confirmed by a second reading");
        }
    }
    match e.kind {
        AlertEventKind::Escalated => {
            format!("Escalated to {}: {body}", e.episode.severity.as_str())
        }
        AlertEventKind::Resolved => format!("Resolved: {body}"),
        _ => body,
    }
}

fn condition_summary(e: &Emit<'_>) -> String {
    let Some(f) = e.finding else {
        return e.body.id().to_owned();
    };
    let resolved = e.kind == AlertEventKind::Resolved;
    match e.body {
        Body::Threshold(rule) => {
            let code = f.code.or_else(|| rule.checks.first().map(|c| c.code)).unwrap_or(Code::HeartRate);
            let u = unit(code);
            let base = format!("{} {} {u}", capitalized(code.display()), num(f.amount));
            let sustained = match rule.persistence {
                Persistence::Immediate => String::new(),
                Persistence::Consecutive { readings } => {
                    format!(", {readings} consecutive readings")
                }
                Persistence::Sustained { minutes } => format!(", sustained {minutes} min"),
                Persistence::Confirmed(_) => String::new(),
            };
            if resolved {
                format!("{base}, past the clear threshold {} {u}", num(f.threshold))
            } else {
                format!("{base} (threshold {} {} {u}{sustained})", f.op.symbol(), num(f.threshold))
            }
        }
        Body::Change(rule) => {
            let u = unit(rule.code);
            let name = capitalized(rule.code.display());
            match rule.method {
                ChangeMethod::WindowChange { direction, window_hours, .. } => {
                    let sign = if direction == Direction::Rise { "+" } else { "-" };
                    let thr = if resolved { "clear" } else { "threshold" };
                    format!(
                        "{name} {sign}{} {u} in {} ({thr} {} {u})",
                        num(f.amount),
                        span(window_hours),
                        num(f.threshold)
                    )
                }
                ChangeMethod::Baseline { direction, recent_hours, baseline_hours, .. } => {
                    let dir = if direction == Direction::Rise { "above" } else { "below" };
                    let now = match (recent_hours, f.reading) {
                        (0, Some(v)) => format!("{name} {} {u}", num(v)),
                        _ => format!("{name} median over {}", span(recent_hours)),
                    };
                    let thr = if resolved { "clear" } else { "threshold" };
                    format!(
                        "{now}: {} {u} {dir} the {} baseline {} {u} ({thr} {} {u})",
                        num(f.amount),
                        span(baseline_hours),
                        num(f.baseline.unwrap_or(f.amount)),
                        num(f.threshold)
                    )
                }
                ChangeMethod::SameTimeOfDay { direction, days, .. } => {
                    let sign = if direction == Direction::Rise { "+" } else { "-" };
                    let thr = if resolved { "clear" } else { "threshold" };
                    format!(
                        "{name} {sign}{} {u} in {}, same time of day ({thr} {} {u})",
                        num(f.amount),
                        span(days * 24),
                        num(f.threshold)
                    )
                }
                ChangeMethod::WindowMean { window_hours } => {
                    let thr = if resolved { "clear" } else { "threshold" };
                    format!(
                        "{name} mean {} {u} over {} ({thr} {} {} {u})",
                        num(f.amount),
                        span(window_hours),
                        f.op.symbol(),
                        num(f.threshold)
                    )
                }
            }
        }
        Body::News2(rule) if resolved && f.reading.is_some() => format!(
            "NEWS2 no longer computable: {} of the {} parameters it needs measured within {} min",
            num(f.reading.unwrap_or(0.0)),
            rule.min_parameters,
            rule.window_minutes
        ),
        Body::News2(_) => {
            let band = match f.amount {
                x if x >= 7.0 => "high",
                x if x >= 5.0 => "medium",
                _ if resolved => "low",
                _ => "low-medium, a single parameter scored 3",
            };
            format!(
                "NEWS2 {} ({band} risk) from home readings; assumed alert and on air unless configured",
                num(f.amount)
            )
        }
        Body::Cadence(rule) => {
            let name = rule.code.display();
            if resolved {
                format!("{} reading received", capitalized(name))
            } else {
                let why = if e.episode.device_silent {
                    "device silent (no reading and no heartbeat)"
                } else {
                    "patient did not measure"
                };
                format!(
                    "No {name} reading for {} h (expected every {} h): {why}",
                    num(f.amount.floor()),
                    rule.every_hours
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(num(2.4000000001), "2.4");
        assert_eq!(num(90.0), "90");
        assert_eq!(num(1.36), "1.36");
        assert_eq!(span(72), "3 days");
        assert_eq!(span(78), "78 h");
    }
}
