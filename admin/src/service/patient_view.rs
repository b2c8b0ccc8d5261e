//! The clinician's patient page: an overview (last reading per vital,
//! adherence this month, devices with battery and last heartbeat, program and
//! rules, recent episodes), trend series from the hourly / daily aggregates
//! with the patient's threshold bands, and the rules editor's preview (which
//! of the last 30 days' readings candidate rules would have alerted on).
//!
//! Reading any of it is [`Operation::ReadPatients`] (the preview and the
//! thresholds: [`Operation::ReadRules`]), so a physician sees only their
//! patients (someone else's is the same 404 as an unknown one) and a nurse
//! the patients of their care teams. Nothing here writes.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone as _, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use vitalwatch_rules_core::preview::{self, WouldAlert};
use vitalwatch_rules_core::{PatientRules, Program};
use vitalwatch_schemas::{Code, PatientId};

use super::{AdminService, patient_id, unknown_patient};
use crate::actor::Actor;
use crate::error::AdminError;
use crate::model::{AlertView, PatientView};
use crate::policy::Operation;
use crate::store::AlertFilter;
use crate::store::patient_view as store;

/// Time zone of a patient whose care team gives none.
pub const DEFAULT_TIME_ZONE: &str = "Europe/Paris";

/// Days of readings the rules preview replays.
pub const PREVIEW_DAYS: u16 = 30;

/// Recent episodes shown on the patient page.
pub const RECENT_EPISODES: u32 = 20;

/// The newest reading of one vital.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LastReading {
    /// LOINC code.
    pub code: String,
    /// What it measures (English, e.g. "heart rate"; pages translate by code).
    pub name: String,
    /// Value, in `unit`.
    pub value: f64,
    /// UCUM unit.
    pub unit: String,
    /// Measurement time.
    pub time: DateTime<Utc>,
    /// `device` or `manual`.
    pub source: String,
    /// The device, for device readings.
    pub device_id: Option<String>,
}

/// Days with at least one reading this calendar month, in the patient's time zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Adherence {
    /// Days of this month (up to today included) with at least one reading.
    pub days_with_data: u32,
    /// Days of this month so far, today included.
    pub days_elapsed: u32,
    /// The month, `YYYY-MM`.
    pub month: String,
    /// The IANA time zone the days are counted in.
    pub time_zone: String,
}

impl Adherence {
    /// `days_with_data / days_elapsed`, 0 to 1.
    pub fn ratio(&self) -> f64 {
        if self.days_elapsed == 0 { 0.0 } else { f64::from(self.days_with_data) / f64::from(self.days_elapsed) }
    }
}

/// A device enrolled to the patient, with its latest status.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceOverview {
    /// Device id.
    pub device_id: String,
    /// Start of the current enrolment.
    pub enrolled_from: DateTime<Utc>,
    /// Battery, percent (from the latest status that carried one).
    pub battery_percent: Option<f64>,
    /// Radio signal, dBm.
    pub signal_dbm: Option<f64>,
    /// Firmware version.
    pub firmware: Option<String>,
    /// Time of the latest status (heartbeat); `None` if it never sent one.
    pub last_heartbeat: Option<DateTime<Utc>>,
}

/// The patient's program and rules in force.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RulesSummary {
    /// Care program (`heart_failure`, ...).
    pub program: String,
    /// The stored `PatientRules` (the default program's when none is stored).
    pub rules: serde_json::Value,
    /// Effective rule ids.
    pub effective: Vec<String>,
    /// Current version (`None`: no rules stored, the default program applies).
    pub version: Option<i32>,
    /// When the rules in force were set.
    pub updated_at: Option<DateTime<Utc>>,
}

/// Everything the patient page shows at the top.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PatientOverview {
    /// The patient.
    pub patient: PatientView,
    /// The patient's time zone (their responsible physician's; else Europe/Paris).
    pub time_zone: String,
    /// The newest reading per code, by code.
    pub last_readings: Vec<LastReading>,
    /// Adherence this month.
    pub adherence: Adherence,
    /// Devices enrolled now, by id.
    pub devices: Vec<DeviceOverview>,
    /// Program and rules.
    pub rules: RulesSummary,
    /// Recent episodes, newest first, with their status.
    pub episodes: Vec<AlertView>,
}

/// A trend chart's range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum SeriesRange {
    /// 7 days, hourly buckets.
    #[serde(rename = "7d")]
    Week,
    /// 30 days, daily buckets.
    #[serde(rename = "30d")]
    Month,
    /// 90 days, daily buckets.
    #[serde(rename = "90d")]
    Quarter,
}

impl SeriesRange {
    /// Every range.
    pub const ALL: [SeriesRange; 3] = [SeriesRange::Week, SeriesRange::Month, SeriesRange::Quarter];

    /// Parses `7d`, `30d` or `90d`.
    pub fn parse(s: &str) -> Option<SeriesRange> {
        SeriesRange::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// `7d`, `30d` or `90d`.
    pub fn as_str(self) -> &'static str {
        match self {
            SeriesRange::Week => "7d",
            SeriesRange::Month => "30d",
            SeriesRange::Quarter => "90d",
        }
    }

    /// Length in days.
    pub fn days(self) -> i64 {
        match self {
            SeriesRange::Week => 7,
            SeriesRange::Month => 30,
            SeriesRange::Quarter => 90,
        }
    }

    /// Bucket width, seconds: an hour for 7 days, a day otherwise.
    pub fn bucket_secs(self) -> i64 {
        match self {
            SeriesRange::Week => 3600,
            SeriesRange::Month | SeriesRange::Quarter => 86_400,
        }
    }
}

/// One bucket of a trend line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesBucket {
    /// Start of the bucket (UTC hour or UTC day).
    pub start: DateTime<Utc>,
    /// Readings in it.
    pub n: i64,
    /// Mean.
    pub mean: f64,
    /// Lowest.
    pub min: f64,
    /// Highest.
    pub max: f64,
}

/// The buckets of one code.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesLine {
    /// LOINC code.
    pub code: String,
    /// What it measures (English).
    pub name: String,
    /// Buckets with readings, oldest first (missing buckets are gaps).
    pub buckets: Vec<SeriesBucket>,
}

/// One trigger level of a threshold rule on a charted code.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThresholdBand {
    /// LOINC code.
    pub code: String,
    /// Rule id.
    pub rule_id: String,
    /// `>`, `>=`, `<` or `<=`.
    pub op: String,
    /// True when high values alert (the band lies above `value`).
    pub upward: bool,
    /// Severity of the level.
    pub severity: String,
    /// Trigger value.
    pub value: f64,
    /// Clear value (hysteresis).
    pub clear: f64,
}

/// A trend chart's data.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    /// Patient.
    pub patient_id: String,
    /// Requested code.
    pub code: String,
    /// UCUM unit of every line.
    pub unit: String,
    /// The range.
    pub range: SeriesRange,
    /// Bucket width, seconds.
    pub bucket_secs: i64,
    /// Start of the chart (the first bucket's start).
    pub from: DateTime<Utc>,
    /// End of the chart (now).
    pub to: DateTime<Utc>,
    /// The patient's time zone (for the time axis).
    pub time_zone: String,
    /// One line per code: blood pressure charts systolic and diastolic.
    pub lines: Vec<SeriesLine>,
    /// The patient's threshold levels on these codes.
    pub thresholds: Vec<ThresholdBand>,
}

/// The rules in force for a patient, typed (the rules editor's starting point).
#[derive(Debug, Clone, PartialEq)]
pub struct RulesInForce {
    /// The stored rules, or the default program's when none is stored.
    pub rules: PatientRules,
    /// Current version (`None`: no rules stored).
    pub version: Option<i32>,
    /// When they were set.
    pub updated_at: Option<DateTime<Utc>>,
    /// The patient's time zone.
    pub time_zone: String,
}

/// What candidate rules would have raised over the patient's recent readings,
/// against the rules in force.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Preview {
    /// First reading time replayed from.
    pub from: DateTime<Utc>,
    /// Replayed up to.
    pub to: DateTime<Utc>,
    /// Readings replayed.
    pub readings: usize,
    /// The candidate's effective rule ids.
    pub effective: Vec<String>,
    /// The version the comparison is against (`None`: default program).
    pub current_version: Option<i32>,
    /// Every reading the candidate would have alerted on, oldest first.
    pub candidate: Vec<WouldAlert>,
    /// Every reading the rules in force alerted on (or would have).
    pub current: Vec<WouldAlert>,
    /// New with the candidate.
    pub added: Vec<WouldAlert>,
    /// No longer with the candidate.
    pub removed: Vec<WouldAlert>,
    /// Raised by both.
    pub unchanged: Vec<WouldAlert>,
}

/// Adherence at `now` in `tz`, from the 15-minute buckets (unix time / 900)
/// that hold readings: distinct local days of this month up to today.
pub fn adherence(now: DateTime<Utc>, tz: Tz, buckets: &[i64]) -> Adherence {
    let today = now.with_timezone(&tz).date_naive();
    let mut days: Vec<NaiveDate> = buckets
        .iter()
        .filter_map(|b| DateTime::from_timestamp(b.saturating_mul(store::ADHERENCE_BUCKET_SECS), 0))
        .map(|t| t.with_timezone(&tz).date_naive())
        .filter(|d| d.year() == today.year() && d.month() == today.month() && *d <= today)
        .collect();
    days.sort();
    days.dedup();
    Adherence {
        days_with_data: days.len() as u32,
        days_elapsed: today.day(),
        month: format!("{:04}-{:02}", today.year(), today.month()),
        time_zone: tz.name().to_owned(),
    }
}

/// Start of the local month of `now` in `tz`, as UTC (the first instant of
/// the 1st when midnight does not exist, e.g. a DST change at midnight).
pub fn month_start(now: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
    let local = now.with_timezone(&tz).date_naive();
    let first = local.with_day(1).unwrap_or(local);
    let mut t = first.and_hms_opt(0, 0, 0).unwrap_or_default();
    for _ in 0..4 {
        if let Some(start) = tz.from_local_datetime(&t).earliest() {
            return start.with_timezone(&Utc);
        }
        t += Duration::minutes(30);
    }
    now - Duration::days(i64::from(local.day()))
}

/// The codes a chart of `code` draws: both blood-pressure components for
/// either of them (clinical.md §1.1: systolic and diastolic are separate codes).
pub fn chart_codes(code: Code) -> Vec<Code> {
    match code {
        Code::Systolic | Code::Diastolic => vec![Code::Systolic, Code::Diastolic],
        c => vec![c],
    }
}

/// The threshold levels of `rules` on `codes`.
pub fn threshold_bands(rules: &PatientRules, codes: &[Code]) -> Vec<ThresholdBand> {
    let Ok(set) = rules.effective() else { return Vec::new() };
    let mut out = Vec::new();
    for r in &set.thresholds {
        for c in r.checks.iter().filter(|c| codes.contains(&c.code)) {
            for l in &c.levels {
                out.push(ThresholdBand {
                    code: c.code.loinc().to_owned(),
                    rule_id: r.id.clone(),
                    op: c.op.symbol().to_owned(),
                    upward: c.op.is_upward(),
                    severity: l.severity.as_str().to_owned(),
                    value: l.value,
                    clear: c.clear,
                });
            }
        }
    }
    out
}

/// The rules in force of a stored JSON (the default program when none or unreadable).
fn rules_or_default(stored: Option<&str>) -> PatientRules {
    stored.and_then(|s| serde_json::from_str(s).ok()).unwrap_or_else(|| PatientRules::for_program(Program::General))
}

impl AdminService {
    /// The patient's time zone: their responsible physician's, else [`DEFAULT_TIME_ZONE`].
    pub(crate) async fn patient_time_zone(&self, p: &PatientId) -> Tz {
        let team = self.alerting.care_team(p).await.ok().flatten();
        let physician = match team {
            Some(t) => self
                .alerting
                .physicians()
                .await
                .ok()
                .and_then(|all| all.into_iter().find(|d| d.id == t.responsible).map(|d| d.time_zone.tz())),
            None => None,
        };
        physician.unwrap_or(chrono_tz::Europe::Paris)
    }

    /// The patient page's overview (see [`PatientOverview`]).
    pub async fn patient_overview(&self, actor: &Actor, patient: &str) -> Result<PatientOverview, AdminError> {
        self.check_patient(actor, Operation::ReadPatients, patient).await?;
        let p = patient_id(patient)?;
        let view = self.admin.patient(p.as_str()).await?.ok_or_else(|| unknown_patient(patient))?;
        let now = Utc::now();
        let tz = self.patient_time_zone(&p).await;

        let last_readings = store::last_readings(&self.db, p.as_str())
            .await?
            .into_iter()
            .map(|r| LastReading {
                name: Code::from_loinc(&r.code).map_or_else(|| r.code.clone(), |c| c.display().to_owned()),
                code: r.code,
                value: r.value,
                unit: r.unit,
                time: r.time,
                source: r.source,
                device_id: r.device_id,
            })
            .collect();
        let buckets = store::reading_buckets(&self.db, p.as_str(), month_start(now, tz), now).await?;
        let adherence = adherence(now, tz, &buckets);

        let snapshot = self.registry.registry().await?;
        let mut enrolled: Vec<(String, DateTime<Utc>)> = snapshot
            .devices
            .iter()
            .filter_map(|(id, d)| {
                d.enrolments.iter().find(|e| e.patient_id == p && e.covers(now)).map(|e| (id.clone(), e.valid_from))
            })
            .collect();
        enrolled.sort();
        let ids: Vec<String> = enrolled.iter().map(|(id, _)| id.clone()).collect();
        let statuses = self.registry.device_statuses(&ids).await?;
        let devices = enrolled
            .into_iter()
            .map(|(device_id, enrolled_from)| {
                let st = statuses.iter().find(|s| s.device_id == device_id);
                DeviceOverview {
                    battery_percent: st.and_then(|s| s.battery_percent),
                    signal_dbm: st.and_then(|s| s.signal_dbm),
                    firmware: st.and_then(|s| s.firmware.clone()),
                    last_heartbeat: st.map(|s| s.time),
                    device_id,
                    enrolled_from,
                }
            })
            .collect();

        let stored = self.registry.patient_rules(&p).await?;
        let rules = rules_or_default(stored.as_ref().map(|r| r.rules.as_str()));
        let version = store::rules_versions(&self.db, p.as_str()).await?.first().map(|v| v.version);
        let rules = RulesSummary {
            program: rules.program.as_str().to_owned(),
            effective: rules.effective().map(|s| s.ids().map(str::to_owned).collect()).unwrap_or_default(),
            rules: serde_json::to_value(&rules).unwrap_or_default(),
            version: stored.as_ref().and(version),
            updated_at: stored.as_ref().map(|r| r.updated_at),
        };
        let filter = AlertFilter { patient_id: Some(p.to_string()), limit: RECENT_EPISODES, ..Default::default() };
        let episodes = self.admin.alerts(&filter).await?;
        Ok(PatientOverview {
            patient: view,
            time_zone: tz.name().to_owned(),
            last_readings,
            adherence,
            devices,
            rules,
            episodes,
        })
    }

    /// The rules in force for `patient` (the default program's when none is
    /// stored), with their version ([`Operation::ReadRules`]).
    pub async fn rules_in_force(&self, actor: &Actor, patient: &str) -> Result<RulesInForce, AdminError> {
        self.check_patient(actor, Operation::ReadRules, patient).await?;
        let p = patient_id(patient)?;
        if self.admin.patient(p.as_str()).await?.is_none() {
            return Err(unknown_patient(patient));
        }
        let stored = self.registry.patient_rules(&p).await?;
        let version = match &stored {
            Some(_) => store::rules_versions(&self.db, p.as_str()).await?.first().map(|v| v.version),
            None => None,
        };
        Ok(RulesInForce {
            rules: rules_or_default(stored.as_ref().map(|r| r.rules.as_str())),
            version,
            updated_at: stored.map(|r| r.updated_at),
            time_zone: self.patient_time_zone(&p).await.name().to_owned(),
        })
    }

    /// A trend chart's data: hourly buckets over 7 days, daily over 30 or 90
    /// (PostgreSQL: the `observations_hourly` / `observations_daily`
    /// aggregates), min / mean / max per bucket, with the patient's threshold
    /// levels. `code` is a LOINC code; either blood-pressure code gives both.
    pub async fn patient_series(
        &self,
        actor: &Actor,
        patient: &str,
        code: &str,
        range: SeriesRange,
    ) -> Result<Series, AdminError> {
        self.check_patient(actor, Operation::ReadPatients, patient).await?;
        let p = patient_id(patient)?;
        if self.admin.patient(p.as_str()).await?.is_none() {
            return Err(unknown_patient(patient));
        }
        let code = Code::from_loinc(code).ok_or_else(|| AdminError::NotFound(format!("unknown code {code:?}")))?;
        let to = Utc::now();
        let width = range.bucket_secs();
        let start = to.timestamp() - range.days() * 86_400;
        // The first whole bucket: the chart covers `range` buckets ending with the current one.
        let from = DateTime::from_timestamp(start - start.rem_euclid(width) + width, 0).unwrap_or(to);
        let codes = chart_codes(code);
        let mut lines = Vec::with_capacity(codes.len());
        for c in &codes {
            let rows = store::series(&self.db, p.as_str(), c.loinc(), from, width == 3600).await?;
            lines.push(SeriesLine {
                code: c.loinc().to_owned(),
                name: c.display().to_owned(),
                buckets: rows
                    .into_iter()
                    .filter(|r| r.start >= from && r.start <= to)
                    .map(|r| SeriesBucket { start: r.start, n: r.n, mean: r.mean, min: r.min, max: r.max })
                    .collect(),
            });
        }
        let stored = self.registry.patient_rules(&p).await?;
        let rules = rules_or_default(stored.as_ref().map(|r| r.rules.as_str()));
        let tz = self.patient_time_zone(&p).await;
        Ok(Series {
            patient_id: p.to_string(),
            code: code.loinc().to_owned(),
            unit: code.ucum().to_owned(),
            range,
            bucket_secs: width,
            from,
            to,
            time_zone: tz.name().to_owned(),
            lines,
            thresholds: threshold_bands(&rules, &codes),
        })
    }

    /// Validates `candidate` (the rules core's validation: a threshold out of
    /// its code's bounds is refused with the value and the range) and replays
    /// the patient's last [`PREVIEW_DAYS`] days of stored readings through the
    /// rules engine with it and with the rules in force: which readings would
    /// have alerted, and what changes. Nothing is stored.
    pub async fn preview_rules(
        &self,
        actor: &Actor,
        patient: &str,
        candidate: &PatientRules,
    ) -> Result<Preview, AdminError> {
        self.check_patient(actor, Operation::ReadRules, patient).await?;
        let p = patient_id(patient)?;
        let set = candidate.effective().map_err(|e| AdminError::Invalid(format!("the rules are not valid: {e}")))?;
        candidate.check_enrolment().map_err(|e| AdminError::Invalid(format!("the rules are not valid: {e}")))?;
        if self.admin.patient(p.as_str()).await?.is_none() {
            return Err(unknown_patient(patient));
        }
        let to = Utc::now();
        let from = to - Duration::days(i64::from(PREVIEW_DAYS));
        let readings = self.registry.recent_observations(&p, from).await?;
        let stored = self.registry.patient_rules(&p).await?;
        let current = rules_or_default(stored.as_ref().map(|r| r.rules.as_str()));
        let current_version = match stored {
            Some(_) => store::rules_versions(&self.db, p.as_str()).await?.first().map(|v| v.version),
            None => None,
        };
        // CPU-bound (thousands of readings, two replays): off the async workers.
        let (pc, cand) = (p.clone(), candidate.clone());
        let diff =
            tokio::task::spawn_blocking(move || preview::compare(&pc, &cand, &current, &readings, to, PREVIEW_DAYS))
                .await
                .map_err(|e| AdminError::Internal(format!("the preview failed: {e}")))?
                .map_err(|e| AdminError::Invalid(format!("the rules are not valid: {e}")))?;
        Ok(Preview {
            from,
            to,
            readings: diff.readings,
            effective: set.ids().map(str::to_owned).collect(),
            current_version,
            candidate: diff.candidate,
            current: diff.current,
            added: diff.added,
            removed: diff.removed,
            unchanged: diff.unchanged,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn bucket(s: &str) -> i64 {
        at(s).timestamp() / store::ADHERENCE_BUCKET_SECS
    }

    #[test]
    fn adherence_counts_local_days_of_this_month() {
        let paris = chrono_tz::Europe::Paris;
        let now = at("2026-12-07T10:00:00Z");
        // 30 Nov 23:30 UTC is 1 Dec 00:30 in Paris: a December day there.
        let b = [
            bucket("2026-11-30T23:30:00Z"),
            bucket("2026-12-01T08:00:00Z"),
            bucket("2026-12-03T07:00:00Z"),
            bucket("2026-12-03T19:00:00Z"),
            bucket("2026-11-29T12:00:00Z"),
        ];
        let a = adherence(now, paris, &b);
        assert_eq!((a.days_with_data, a.days_elapsed, a.month.as_str()), (2, 7, "2026-12"));
        assert!((a.ratio() - 2.0 / 7.0).abs() < 1e-9);
        // In UTC the 30 Nov reading is November's.
        let a = adherence(now, chrono_tz::UTC, &b);
        assert_eq!(a.days_with_data, 2);
        assert_eq!(month_start(now, paris), at("2026-11-30T23:00:00Z"));
        assert_eq!(month_start(now, chrono_tz::UTC), at("2026-12-01T00:00:00Z"));
    }

    #[test]
    fn ranges_parse_and_blood_pressure_charts_both_codes() {
        assert_eq!(SeriesRange::parse("30d"), Some(SeriesRange::Month));
        assert_eq!(SeriesRange::parse("1y"), None);
        assert_eq!(SeriesRange::Week.bucket_secs(), 3600);
        assert_eq!(chart_codes(Code::Diastolic), vec![Code::Systolic, Code::Diastolic]);
        let bands = threshold_bands(&PatientRules::for_program(Program::Hypertension), &chart_codes(Code::Systolic));
        assert!(bands.iter().any(|b| b.rule_id == "threshold.bp.crisis" && b.code == "8462-4" && b.value == 120.0));
        assert!(bands.iter().all(|b| b.code == "8480-6" || b.code == "8462-4"));
    }
}
