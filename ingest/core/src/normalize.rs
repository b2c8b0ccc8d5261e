//! Normalization: a decoded [`RawBatch`] -> validated [`Observation`]s in
//! canonical units, attributed to the right patient, or specific rejections.
//! Pure: no I/O, no clock (the receive time is an argument).

use chrono::{DateTime, Duration, Utc};
use vitalwatch_schemas::registry::{Attribution, RegistrySnapshot};
use vitalwatch_schemas::{Code, DeviceId, Observation, ObservationId, PatientId, Source, TimeSource, VitalKind};

use crate::decode::{RawBatch, RawReading, RawTime};
use crate::reject::{Reason, Rejection};
use crate::units::{Unit, is_plausible, plausible_range};

/// Validation limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// How far in the future a measurement time may be (device clocks drift).
    pub max_future: Duration,
    /// How old a measurement time may be (backfill window).
    pub max_age: Duration,
    /// Largest payload accepted, bytes.
    pub max_payload_bytes: usize,
    /// Most readings in one message.
    pub max_readings: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_future: Duration::minutes(5),
            max_age: Duration::days(90),
            max_payload_bytes: 256 * 1024,
            max_readings: 1000,
        }
    }
}

/// Who sent a message, from its topic.
#[derive(Debug, Clone, Copy)]
pub enum Sender<'a> {
    /// A device (readings are attributed through its enrolments).
    Device(&'a DeviceId),
    /// A patient app (manual entries).
    Patient(&'a PatientId),
}

/// Everything normalization needs besides the batch.
pub struct Context<'a> {
    /// The sender.
    pub sender: Sender<'a>,
    /// When ingest received the message.
    pub received_at: DateTime<Utc>,
    /// Limits.
    pub limits: &'a Limits,
    /// Registry snapshot.
    pub registry: &'a RegistrySnapshot,
    /// Trace id of the message.
    pub trace_id: &'a str,
}

/// Normalizes every reading of `batch`; accepted observations are appended to
/// `out`, rejections to `rejected`. A message-level problem (unknown patient,
/// patient mismatch, too many readings) rejects the whole message.
pub fn normalize(batch: &RawBatch<'_>, ctx: &Context<'_>, out: &mut Vec<Observation>, rejected: &mut Vec<Rejection>) {
    if batch.readings.len() > ctx.limits.max_readings {
        rejected.push(Rejection::message(
            Reason::PayloadTooLarge,
            format!(
                "{} readings in one message; at most {} are accepted",
                batch.readings.len(),
                ctx.limits.max_readings
            ),
        ));
        return;
    }
    if let Sender::Patient(p) = ctx.sender {
        if let Some(claim) = batch.patient_claim.as_deref()
            && claim != p.as_str()
        {
            rejected.push(Rejection {
                reason: Reason::PatientMismatch,
                message: "the payload names another patient than the topic".into(),
                field: Some("patient_id".into()),
                index: None,
            });
            return;
        }
        if ctx.registry.is_discharged(p) {
            rejected.push(Rejection::message(Reason::PatientNotMonitored, NOT_MONITORED));
            return;
        }
        if !ctx.registry.has_patient(p) {
            rejected.push(Rejection::message(Reason::UnknownPatient, "this patient is not registered for monitoring"));
            return;
        }
    }
    for (i, r) in batch.readings.iter().enumerate() {
        if let Err(e) = reading(i, r, batch.msg_id.as_deref(), ctx, out) {
            rejected.push(e);
        }
    }
}

/// The message of a [`Reason::PatientNotMonitored`] rejection (no patient data).
const NOT_MONITORED: &str =
    "this patient's monitoring has ended (discharged); readings are accepted again after a readmission";

fn reading(
    i: usize,
    r: &RawReading<'_>,
    msg_id: Option<&str>,
    ctx: &Context<'_>,
    out: &mut Vec<Observation>,
) -> Result<(), Rejection> {
    let kind = VitalKind::parse(&r.kind).ok_or_else(|| {
        let shown: String = r.kind.chars().take(40).collect();
        Rejection::reading(
            Reason::UnknownType,
            i,
            "type",
            format!(
                "unknown reading type {shown:?}; expected one of heart_rate, blood_pressure, spo2, body_weight, body_temperature, blood_glucose, respiratory_rate"
            ),
        )
    })?;
    let unit_str = r
        .unit
        .as_deref()
        .ok_or_else(|| Rejection::reading(Reason::MissingValue, i, "unit", format!("unit is required for {kind}")))?;
    let unit = Unit::parse(kind, unit_str).ok_or_else(|| {
        let shown: String = unit_str.chars().take(20).collect();
        Rejection::reading(
            Reason::UnknownUnit,
            i,
            "unit",
            format!("unit {shown:?} is not accepted for {kind}; use one of {}", Unit::accepted(kind)),
        )
    })?;
    let (time, time_source) = resolve_time(i, r.time.as_ref(), ctx)?;
    let (patient, device) = match ctx.sender {
        Sender::Patient(p) => (p, None),
        Sender::Device(d) => match ctx.registry.patient_for(d, time, ctx.received_at) {
            Ok(p) if ctx.registry.is_discharged(p) => {
                return Err(Rejection::message(Reason::PatientNotMonitored, NOT_MONITORED));
            }
            Ok(p) => (p, Some(d)),
            Err(Attribution::EnrolmentEnded | Attribution::NotEnrolled)
                if ctx.registry.discharged_patient_of(d, time).is_some() =>
            {
                return Err(Rejection::message(Reason::PatientNotMonitored, NOT_MONITORED));
            }
            Err(Attribution::UnknownDevice) => {
                return Err(Rejection::message(Reason::UnknownDevice, "this device is not registered"));
            }
            Err(Attribution::Retired) => {
                return Err(Rejection::message(Reason::RetiredDevice, "this device has been retired"));
            }
            Err(Attribution::Reassigned) => {
                return Err(Rejection::reading(
                    Reason::DeviceReassigned,
                    i,
                    "time",
                    "the device has been moved to another patient since this reading; readings of the previous \
                     enrolment need a backfill grant",
                ));
            }
            Err(Attribution::EnrolmentEnded) => {
                return Err(Rejection::reading(
                    Reason::DeviceNotEnrolled,
                    i,
                    "time",
                    "the device's enrolment at the reading's time has ended; its readings need a backfill grant",
                ));
            }
            Err(Attribution::NotEnrolled) => {
                return Err(Rejection::reading(
                    Reason::DeviceNotEnrolled,
                    i,
                    "time",
                    "the device was not enrolled to a patient at the reading's time",
                ));
            }
        },
    };
    let source = if device.is_some() { Source::Device } else { Source::Manual };
    let base = Base { patient, device, time, time_source, source, ctx, msg_id };
    if kind == VitalKind::BloodPressure {
        let sys = required(i, "systolic", r.systolic)?;
        let dia = required(i, "diastolic", r.diastolic)?;
        let (sys_c, dia_c) = (unit.to_canonical(sys), unit.to_canonical(dia));
        check(i, "systolic", Code::Systolic, sys_c)?;
        check(i, "diastolic", Code::Diastolic, dia_c)?;
        if sys_c <= dia_c {
            return Err(Rejection::reading(
                Reason::SystolicNotAboveDiastolic,
                i,
                "systolic",
                format!("systolic {sys} must be above diastolic {dia}"),
            ));
        }
        let pulse = match r.pulse {
            Some(p) => {
                check(i, "pulse", Code::HeartRate, p)?;
                Some(p)
            }
            None => None,
        };
        out.push(base.observation(Code::Systolic, sys_c, sys, unit.ucum()));
        out.push(base.observation(Code::Diastolic, dia_c, dia, unit.ucum()));
        if let Some(p) = pulse {
            out.push(base.observation(Code::HeartRate, p, p, "/min"));
        }
    } else {
        let v = required(i, "value", r.value)?;
        let code = match kind {
            VitalKind::HeartRate => Code::HeartRate,
            VitalKind::Spo2 => Code::Spo2,
            VitalKind::BodyWeight => Code::BodyWeight,
            VitalKind::BodyTemperature => Code::BodyTemperature,
            VitalKind::BloodGlucose => Code::BloodGlucose,
            VitalKind::RespiratoryRate => Code::RespiratoryRate,
            // Handled in the branch above.
            VitalKind::BloodPressure => Code::Systolic,
        };
        let c = unit.to_canonical(v);
        check(i, "value", code, c)?;
        out.push(base.observation(code, c, v, unit.ucum()));
    }
    Ok(())
}

struct Base<'a> {
    patient: &'a PatientId,
    device: Option<&'a DeviceId>,
    time: DateTime<Utc>,
    time_source: TimeSource,
    source: Source,
    ctx: &'a Context<'a>,
    msg_id: Option<&'a str>,
}

impl Base<'_> {
    fn observation(&self, code: Code, value: f64, original: f64, original_unit: &str) -> Observation {
        Observation {
            id: ObservationId::compute(self.patient.as_str(), code, self.time.timestamp_micros()),
            patient_id: self.patient.clone(),
            code,
            value,
            time: self.time,
            received_at: self.ctx.received_at,
            source: self.source,
            device_id: self.device.cloned(),
            time_source: self.time_source,
            original_value: original,
            original_unit: original_unit.to_owned(),
            msg_id: self.msg_id.map(str::to_owned),
            trace_id: self.ctx.trace_id.to_owned(),
        }
    }
}

fn required(i: usize, field: &str, v: Option<f64>) -> Result<f64, Rejection> {
    let v = v.ok_or_else(|| Rejection::reading(Reason::MissingValue, i, field, format!("{field} is required")))?;
    if !v.is_finite() {
        return Err(Rejection::reading(Reason::InvalidValue, i, field, format!("{field} is not a finite number")));
    }
    Ok(v)
}

fn check(i: usize, field: &str, code: Code, canonical: f64) -> Result<(), Rejection> {
    if !canonical.is_finite() {
        return Err(Rejection::reading(Reason::InvalidValue, i, field, format!("{field} is not a finite number")));
    }
    if is_plausible(code, canonical) {
        return Ok(());
    }
    let (lo, hi, _) = plausible_range(code);
    Err(Rejection::reading(
        Reason::ValueOutOfRange,
        i,
        field,
        format!(
            "{} of {:.1} {} is outside the possible range ({lo} to {hi} {})",
            code.display(),
            canonical,
            code.ucum(),
            code.ucum()
        ),
    ))
}

fn resolve_time(
    i: usize,
    t: Option<&RawTime<'_>>,
    ctx: &Context<'_>,
) -> Result<(DateTime<Utc>, TimeSource), Rejection> {
    let stamped = match ctx.sender {
        Sender::Device(_) => TimeSource::Device,
        Sender::Patient(_) => TimeSource::App,
    };
    let time = match t {
        None => {
            return match ctx.sender {
                Sender::Device(_) => Err(Rejection::reading(
                    Reason::MissingTime,
                    i,
                    "time",
                    "device readings must carry their measurement time",
                )),
                Sender::Patient(_) => Ok((ctx.received_at, TimeSource::Received)),
            };
        }
        Some(RawTime::Rfc3339(s)) => parse_rfc3339(s).ok_or_else(|| {
            let shown: String = s.chars().take(40).collect();
            Rejection::reading(
                Reason::InvalidTime,
                i,
                "time",
                format!("time {shown:?} is not RFC 3339 with an offset, e.g. 2026-11-26T08:30:00+01:00"),
            )
        })?,
        Some(RawTime::UnixMicros(us)) => DateTime::from_timestamp_micros(*us)
            .ok_or_else(|| Rejection::reading(Reason::InvalidTime, i, "time", "time is out of range"))?,
        Some(RawTime::UnixSeconds(s)) | Some(RawTime::RelativeSeconds(s)) if !s.is_finite() => {
            return Err(Rejection::reading(Reason::InvalidTime, i, "time", "time is not a finite number"));
        }
        Some(RawTime::UnixSeconds(s)) => {
            seconds(*s).ok_or_else(|| Rejection::reading(Reason::InvalidTime, i, "time", "time is out of range"))?
        }
        Some(RawTime::RelativeSeconds(s)) => {
            // |s| < 2^28 (SenML relative times), so the microseconds fit easily.
            let d = Duration::microseconds((*s * 1e6) as i64);
            ctx.received_at
                .checked_add_signed(d)
                .ok_or_else(|| Rejection::reading(Reason::InvalidTime, i, "time", "time is out of range"))?
        }
    };
    if time > ctx.received_at + ctx.limits.max_future {
        return Err(Rejection::reading(
            Reason::TimeInFuture,
            i,
            "time",
            format!(
                "measurement time is {} s in the future (at most {} s of clock drift is accepted); check the device clock",
                (time - ctx.received_at).num_seconds(),
                ctx.limits.max_future.num_seconds()
            ),
        ));
    }
    if time < ctx.received_at - ctx.limits.max_age {
        return Err(Rejection::reading(
            Reason::TimeTooOld,
            i,
            "time",
            format!("measurement time is older than the {}-day backfill window", ctx.limits.max_age.num_days()),
        ));
    }
    Ok((time, stamped))
}

/// RFC 3339 with an offset. The common shape
/// (`YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`) is parsed by hand, which is
/// several times faster than the general parser; anything else falls back to
/// chrono's parser, so both accept the same inputs.
pub fn parse_rfc3339(s: &str) -> Option<DateTime<Utc>> {
    fast_rfc3339(s.as_bytes()).or_else(|| DateTime::parse_from_rfc3339(s).ok().map(|d| d.with_timezone(&Utc)))
}

fn fast_rfc3339(b: &[u8]) -> Option<DateTime<Utc>> {
    use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let mut v = 0u32;
        for &c in b.get(r)? {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + (c - b'0') as u32;
        }
        Some(v)
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if second > 59 {
        return None; // leap seconds: let chrono decide
    }
    let mut i = 19;
    let mut nanos = 0u32;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 9 {
                nanos = nanos * 10 + (b[i] - b'0') as u32;
            }
            i += 1;
        }
        let digits = i - start;
        if digits == 0 {
            return None;
        }
        for _ in digits.min(9)..9 {
            nanos *= 10;
        }
    }
    let offset_secs: i64 = match b.get(i..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let d = |c: &u8| if c.is_ascii_digit() { Some((c - b'0') as i64) } else { None };
            let (h, m) = (d(h1)? * 10 + d(h2)?, d(m1)? * 10 + d(m2)?);
            if h > 23 || m > 59 {
                return None;
            }
            let o = h * 3600 + m * 60;
            if *sign == b'-' { -o } else { o }
        }
        _ => return None,
    };
    let date = NaiveDate::from_ymd_opt(year as i32, month, day)?;
    let time = NaiveTime::from_hms_nano_opt(hour, minute, second, nanos)?;
    let local = NaiveDateTime::new(date, time).and_utc();
    local.checked_sub_signed(Duration::seconds(offset_secs))
}

fn seconds(s: f64) -> Option<DateTime<Utc>> {
    if s.abs() > 1e13 {
        return None;
    }
    DateTime::from_timestamp_micros((s * 1e6).round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_rfc3339_agrees_with_chrono() {
        let cases = [
            "2026-11-26T08:30:00Z",
            "2026-11-26T08:30:00+01:00",
            "2026-11-26T08:30:00.123456-05:30",
            "2026-11-26t08:30:00.1z",
            "2026-11-26 08:30:00.123456789123+00:00",
            "2024-02-29T23:59:59.999999999+14:00",
            "2026-11-26T08:30:00",
            "2026-02-30T08:30:00Z",
            "2026-11-26T24:00:00Z",
            "2026-11-26T08:30:60Z",
            "2026-11-26T08:30:00+25:00",
            "2026-11-26T08:30:00.Z",
            "2026-11-26T08:30:00+0100",
            "yesterday",
            "",
            "2026-1-26T08:30:00Z",
        ];
        for c in cases {
            let chrono = DateTime::parse_from_rfc3339(c).ok().map(|d| d.with_timezone(&Utc));
            assert_eq!(parse_rfc3339(c), chrono, "{c}");
        }
    }
}
