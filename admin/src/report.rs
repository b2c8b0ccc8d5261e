//! The monthly télésurveillance activity report, pure: the month's window in
//! the team's time zone, and the figures per patient and for the care team,
//! computed from the per-table aggregates the store reads (one query per
//! table for the whole report, see `store::report`). No I/O here.
//!
//! French télésurveillance médicale (CSS L162-48 ff., common-law regime since
//! 1 July 2023) asks the digital medical device to transmit the data needed
//! for the follow-up and to "allow data extraction for checks of its effective
//! use" (shared reference clinical.md §5). Which minimum number of days with
//! transmitted data a monthly forfait needs is not in that reference: the
//! report gives the count, and a `min_days` the team chooses turns it into a
//! flag (none by default). Definitions: docs/activity-report.md.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDate, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::AdminError;

/// Time zone of the report when none is given: the calendar month is the
/// team's, and the teams this serves are French.
pub const DEFAULT_REPORT_TIME_ZONE: &str = "Europe/Paris";

/// LOINC 85354-9 "Blood pressure panel with all children optional": a
/// blood-pressure reading (systolic 8480-6 + diastolic 8462-4 at one time)
/// counts once under it (https://loinc.org/85354-9).
pub const BP_PANEL: &str = "85354-9";
const SYSTOLIC: &str = "8480-6";
const DIASTOLIC: &str = "8462-4";

/// Episode severities, most severe first (the stored names).
pub const SEVERITIES: [&str; 5] = ["critical", "high", "medium", "low", "info"];

/// Close outcomes (`episode_notes.outcome`), in the workspace's order.
pub const OUTCOMES: [&str; 5] =
    ["patient_called", "treatment_adjusted", "consultation_scheduled", "sent_to_emergency", "no_action_needed"];

/// The reading types of the CSV columns, in order (BP as its panel; other
/// stored codes go to `readings_other`).
pub const READING_COLUMNS: [&str; 7] = [BP_PANEL, "8867-4", "59408-5", "29463-7", "8310-5", "41653-7", "9279-1"];

/// At most this many constant-offset segments in a month (a calendar month
/// holds at most one daylight-saving change in every IANA zone in use; three
/// leaves room for a rule change).
pub const MAX_SEGMENTS: usize = 3;

/// A calendar month, `YYYY-MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Month {
    /// Year.
    pub year: i32,
    /// 1 to 12.
    pub month: u32,
}

impl Month {
    /// Parses `YYYY-MM` (years 2000 to 2200).
    ///
    /// # Errors
    ///
    /// [`AdminError::Invalid`] with the expected form.
    pub fn parse(s: &str) -> Result<Month, AdminError> {
        let bad = || AdminError::Invalid(format!("month must be YYYY-MM (e.g. 2026-11), got {:?}", truncate(s)));
        let (y, m) = s.split_once('-').ok_or_else(bad)?;
        if y.len() != 4 || m.len() != 2 {
            return Err(bad());
        }
        let year: i32 = y.parse().map_err(|_| bad())?;
        let month: u32 = m.parse().map_err(|_| bad())?;
        if !(2000..=2200).contains(&year) || !(1..=12).contains(&month) {
            return Err(bad());
        }
        Ok(Month { year, month })
    }

    /// The first day.
    pub fn first_day(self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year, self.month, 1).unwrap_or_default()
    }

    /// The next month.
    pub fn next(self) -> Month {
        if self.month == 12 { Month { year: self.year + 1, month: 1 } } else { Month { month: self.month + 1, ..self } }
    }

    /// The previous month.
    pub fn previous(self) -> Month {
        if self.month == 1 { Month { year: self.year - 1, month: 12 } } else { Month { month: self.month - 1, ..self } }
    }

    /// Days in the month.
    pub fn days(self) -> u32 {
        let next = self.next().first_day();
        u32::try_from((next - self.first_day()).num_days()).unwrap_or(0)
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

/// Parses an IANA time zone name.
///
/// # Errors
///
/// [`AdminError::Invalid`].
pub fn parse_time_zone(s: &str) -> Result<Tz, AdminError> {
    s.parse::<Tz>()
        .map_err(|_| AdminError::Invalid(format!("unknown time zone {:?} (IANA name, e.g. Europe/Paris)", truncate(s))))
}

/// A month as UTC instants: `[from, to)` and the constant-offset segments the
/// SQL uses to turn a measurement time into its local calendar day
/// (`floor((unix seconds + offset) / 86400)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonthWindow {
    /// Local midnight of the 1st, UTC.
    pub from: DateTime<Utc>,
    /// Local midnight of the 1st of the next month, UTC.
    pub to: DateTime<Utc>,
    /// Ends of the first [`MAX_SEGMENTS`] - 1 segments (`to` when unused).
    pub bounds: [DateTime<Utc>; MAX_SEGMENTS - 1],
    /// UTC offset of each segment, seconds.
    pub offsets: [i64; MAX_SEGMENTS],
}

/// The local midnight starting `day` in `tz` (the first instant of the day
/// where midnight does not exist).
fn local_midnight(tz: Tz, day: NaiveDate) -> DateTime<Utc> {
    let mut t = day.and_hms_opt(0, 0, 0).unwrap_or_default();
    for _ in 0..8 {
        if let Some(dt) = tz.from_local_datetime(&t).earliest() {
            return dt.with_timezone(&Utc);
        }
        t += chrono::TimeDelta::minutes(15);
    }
    Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0).unwrap_or_default())
}

fn offset_at(tz: Tz, t: DateTime<Utc>) -> i64 {
    i64::from(tz.offset_from_utc_datetime(&t.naive_utc()).fix().local_minus_utc())
}

impl MonthWindow {
    /// The window of `month` in `tz`.
    ///
    /// # Errors
    ///
    /// [`AdminError::Invalid`] if the zone changes its offset more than
    /// [`MAX_SEGMENTS`] - 1 times in the month (no zone in use does).
    pub fn new(month: Month, tz: Tz) -> Result<MonthWindow, AdminError> {
        let from = local_midnight(tz, month.first_day());
        let to = local_midnight(tz, month.next().first_day());
        let mut bounds = [to; MAX_SEGMENTS - 1];
        let mut offsets = [offset_at(tz, from); MAX_SEGMENTS];
        let mut seg = 0;
        // Offsets change on quarter hours in every zone.
        let step = chrono::TimeDelta::minutes(15);
        let mut t = from + step;
        while t < to {
            let o = offset_at(tz, t);
            if o != offsets[seg] {
                if seg + 1 >= MAX_SEGMENTS {
                    return Err(AdminError::Invalid(format!(
                        "the time zone {} changes offset too often in {month}",
                        tz.name()
                    )));
                }
                bounds[seg] = t;
                seg += 1;
                offsets[seg] = o;
            }
            t += step;
        }
        let last = offsets[seg];
        for o in offsets.iter_mut().skip(seg + 1) {
            *o = last;
        }
        Ok(MonthWindow { from, to, bounds, offsets })
    }

    /// The local calendar day (days since 1970-01-01, local) of `t`, as the SQL computes it.
    pub fn local_day(&self, t: DateTime<Utc>) -> i64 {
        let i = self.bounds.iter().position(|b| t < *b).unwrap_or(MAX_SEGMENTS - 1);
        (t.timestamp() + self.offsets[i]).div_euclid(86_400)
    }
}

/// One episode opened in the month, as read.
#[derive(Debug, Clone, PartialEq)]
pub struct EpisodeFact {
    /// Patient.
    pub patient_id: String,
    /// Stored severity.
    pub severity: String,
    /// When the platform raised it: the first event's detection time, else the opening reading time.
    pub raised_at: DateTime<Utc>,
    /// The first acknowledgment, if any.
    pub first_ack: Option<DateTime<Utc>>,
}

/// The aggregates read for a report (one query per table).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ActivityFacts {
    /// Patients in scope, sorted.
    pub patients: Vec<String>,
    /// (patient, days with at least one observation).
    pub days: Vec<(String, i64)>,
    /// (patient, LOINC code, observations).
    pub readings: Vec<(String, String, i64)>,
    /// Episodes opened in the month.
    pub episodes: Vec<EpisodeFact>,
    /// (patient, action, detail, count): `ack`, `snooze`, `close` (detail: the
    /// outcome, empty if none), `close_request`, `note`, `expertise`,
    /// `rules_change`.
    pub actions: Vec<(String, String, String, i64)>,
}

/// Alerts (episodes opened in the month) by severity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AlertCounts {
    /// Episodes opened.
    pub total: u64,
    /// Critical.
    pub critical: u64,
    /// High.
    pub high: u64,
    /// Medium.
    pub medium: u64,
    /// Low (technical alerts: device silent).
    pub low: u64,
    /// Info.
    pub info: u64,
}

impl AlertCounts {
    fn add(&mut self, severity: &str) {
        self.total += 1;
        match severity {
            "critical" => self.critical += 1,
            "high" => self.high += 1,
            "medium" => self.medium += 1,
            "low" => self.low += 1,
            _ => self.info += 1,
        }
    }

    fn merge(&mut self, o: &AlertCounts) {
        self.total += o.total;
        self.critical += o.critical;
        self.high += o.high;
        self.medium += o.medium;
        self.low += o.low;
        self.info += o.info;
    }

    /// The count of one severity name.
    pub fn of(&self, severity: &str) -> u64 {
        match severity {
            "critical" => self.critical,
            "high" => self.high,
            "medium" => self.medium,
            "low" => self.low,
            "info" => self.info,
            _ => 0,
        }
    }
}

/// Acknowledgment delays of the episodes opened in the month.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AckDelays {
    /// Episodes acknowledged (at any time up to the report).
    pub acknowledged: u64,
    /// Episodes never acknowledged.
    pub unacknowledged: u64,
    /// Median of (first acknowledgment - raised), seconds (the lower middle of an even count).
    pub median_secs: Option<i64>,
    /// Longest such delay, seconds.
    pub max_secs: Option<i64>,
}

impl AckDelays {
    fn from_delays(mut delays: Vec<i64>, unacknowledged: u64) -> AckDelays {
        delays.sort_unstable();
        let median = if delays.is_empty() { None } else { Some(delays[(delays.len() - 1) / 2]) };
        AckDelays {
            acknowledged: delays.len() as u64,
            unacknowledged,
            median_secs: median,
            max_secs: delays.last().copied(),
        }
    }
}

/// Actions taken in the month (by their own time).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Actions {
    /// Acknowledgments.
    pub acks: u64,
    /// Snoozes.
    pub snoozes: u64,
    /// Episodes closed by a clinician.
    pub closes: u64,
    /// Closes by recorded outcome (`unspecified`: closed without one).
    pub closes_by_outcome: BTreeMap<String, u64>,
    /// Notes on episodes.
    pub notes: u64,
    /// Tele-expertise requests.
    pub expertise_requests: u64,
    /// Changes of the patient's rules (new versions by a person, not `system`).
    pub rules_changes: u64,
}

impl Actions {
    fn merge(&mut self, o: &Actions) {
        self.acks += o.acks;
        self.snoozes += o.snoozes;
        self.closes += o.closes;
        for (k, v) in &o.closes_by_outcome {
            *self.closes_by_outcome.entry(k.clone()).or_insert(0) += v;
        }
        self.notes += o.notes;
        self.expertise_requests += o.expertise_requests;
        self.rules_changes += o.rules_changes;
    }
}

/// One patient's month.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PatientActivity {
    /// Patient.
    pub patient_id: String,
    /// Distinct local calendar days with at least one stored observation (by measurement time).
    pub days_with_data: u32,
    /// `days_with_data >= min_days`, when the request gave `min_days`.
    pub meets_min_days: Option<bool>,
    /// Readings per LOINC code (a blood pressure once, under 85354-9).
    pub readings: BTreeMap<String, u64>,
    /// Sum of `readings`.
    pub readings_total: u64,
    /// Episodes opened in the month, by severity.
    pub alerts: AlertCounts,
    /// Acknowledgment delays of those episodes.
    pub acknowledgment: AckDelays,
    /// Actions taken in the month.
    pub actions: Actions,
}

/// The care team's (or the report's) totals.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ActivityTotals {
    /// Patients in the report.
    pub patients: u64,
    /// Patients with at least one day of data.
    pub patients_with_data: u64,
    /// Patients meeting `min_days`, when given.
    pub patients_meeting_min_days: Option<u64>,
    /// Sum of the patients' days with data.
    pub days_with_data: u64,
    /// Readings per LOINC code.
    pub readings: BTreeMap<String, u64>,
    /// Every reading.
    pub readings_total: u64,
    /// Episodes by severity.
    pub alerts: AlertCounts,
    /// Acknowledgment delays over every episode of the report.
    pub acknowledgment: AckDelays,
    /// Actions.
    pub actions: Actions,
}

/// The monthly activity report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ActivityReport {
    /// `YYYY-MM`.
    pub month: String,
    /// The time zone of the calendar month.
    pub time_zone: String,
    /// Start of the month (local midnight), UTC.
    pub from: DateTime<Utc>,
    /// End of the month (exclusive), UTC.
    pub to: DateTime<Utc>,
    /// Days in the month.
    pub days_in_month: u32,
    /// The patient asked for, if any.
    pub patient: Option<String>,
    /// The physician whose patients (responsible or deputy) these are, if asked.
    pub physician: Option<String>,
    /// The days-with-data threshold the request gave, if any.
    pub min_days: Option<u32>,
    /// One row per patient, by id.
    pub patients: Vec<PatientActivity>,
    /// Totals.
    pub totals: ActivityTotals,
}

/// What the report is about (the month, the zone, the selection).
#[derive(Debug, Clone)]
pub struct ReportHeader {
    /// Month.
    pub month: Month,
    /// Zone.
    pub tz: Tz,
    /// Window.
    pub window: MonthWindow,
    /// Patient selection.
    pub patient: Option<String>,
    /// Physician selection.
    pub physician: Option<String>,
    /// Days-with-data threshold.
    pub min_days: Option<u32>,
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Computes the report from the facts read.
pub fn build(h: &ReportHeader, facts: &ActivityFacts) -> ActivityReport {
    let mut rows: BTreeMap<&str, PatientActivity> = facts
        .patients
        .iter()
        .map(|p| (p.as_str(), PatientActivity { patient_id: p.clone(), ..PatientActivity::default() }))
        .collect();
    for (p, d) in &facts.days {
        if let Some(r) = rows.get_mut(p.as_str()) {
            r.days_with_data = u32::try_from(*d).unwrap_or(0);
        }
    }
    // Blood pressure: one panel per systolic/diastolic pair (the larger of the two counts, should one be missing).
    let mut bp: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for (p, code, n) in &facts.readings {
        let Some(r) = rows.get_mut(p.as_str()) else { continue };
        match code.as_str() {
            SYSTOLIC => bp.entry(p.as_str()).or_default().0 += count(*n),
            DIASTOLIC => bp.entry(p.as_str()).or_default().1 += count(*n),
            c => *r.readings.entry(c.to_owned()).or_insert(0) += count(*n),
        }
    }
    for (p, (s, d)) in bp {
        if let Some(r) = rows.get_mut(p) {
            r.readings.insert(BP_PANEL.to_owned(), s.max(d));
        }
    }
    let mut delays: BTreeMap<&str, (Vec<i64>, u64)> = BTreeMap::new();
    let mut all_delays = Vec::new();
    let mut all_unacked = 0;
    for e in &facts.episodes {
        let Some(r) = rows.get_mut(e.patient_id.as_str()) else { continue };
        r.alerts.add(&e.severity);
        let d = delays.entry(e.patient_id.as_str()).or_default();
        match e.first_ack {
            Some(a) => {
                let secs = (a - e.raised_at).num_seconds().max(0);
                d.0.push(secs);
                all_delays.push(secs);
            }
            None => {
                d.1 += 1;
                all_unacked += 1;
            }
        }
    }
    for (p, (v, un)) in delays {
        if let Some(r) = rows.get_mut(p) {
            r.acknowledgment = AckDelays::from_delays(v, un);
        }
    }
    let mut close_requests: BTreeMap<&str, u64> = BTreeMap::new();
    for (p, action, detail, n) in &facts.actions {
        let Some(r) = rows.get_mut(p.as_str()) else { continue };
        let n = count(*n);
        let a = &mut r.actions;
        match action.as_str() {
            "ack" => a.acks += n,
            "snooze" => a.snoozes += n,
            "close" if !detail.is_empty() => *a.closes_by_outcome.entry(detail.clone()).or_insert(0) += n,
            "close" => *a.closes_by_outcome.entry("unspecified".into()).or_insert(0) += n,
            "close_request" => *close_requests.entry(p.as_str()).or_insert(0) += n,
            "note" => a.notes += n,
            "expertise" => a.expertise_requests += n,
            "rules_change" => a.rules_changes += n,
            _ => {}
        }
    }
    // A close is one episode_closes row; its outcome, if recorded, is in the close note.
    for r in rows.values_mut() {
        let recorded: u64 = r.actions.closes_by_outcome.values().sum();
        let requests = close_requests.get(r.patient_id.as_str()).copied().unwrap_or(0);
        if requests > recorded {
            *r.actions.closes_by_outcome.entry("unspecified".into()).or_insert(0) += requests - recorded;
        }
        r.actions.closes = r.actions.closes_by_outcome.values().sum();
        r.readings_total = r.readings.values().sum();
        r.meets_min_days = h.min_days.map(|m| r.days_with_data >= m);
    }
    let patients: Vec<PatientActivity> = rows.into_values().collect();
    let mut t = ActivityTotals { patients: patients.len() as u64, ..ActivityTotals::default() };
    for r in &patients {
        t.patients_with_data += u64::from(r.days_with_data > 0);
        t.days_with_data += u64::from(r.days_with_data);
        for (k, v) in &r.readings {
            *t.readings.entry(k.clone()).or_insert(0) += v;
        }
        t.readings_total += r.readings_total;
        t.alerts.merge(&r.alerts);
        t.actions.merge(&r.actions);
    }
    t.patients_meeting_min_days =
        h.min_days.map(|_| patients.iter().filter(|r| r.meets_min_days == Some(true)).count() as u64);
    t.acknowledgment = AckDelays::from_delays(all_delays, all_unacked);
    ActivityReport {
        month: h.month.to_string(),
        time_zone: h.tz.name().to_owned(),
        from: h.window.from,
        to: h.window.to,
        days_in_month: h.month.days(),
        patient: h.patient.clone(),
        physician: h.physician.clone(),
        min_days: h.min_days,
        patients,
        totals: t,
    }
}

/// CSV field separator: `;`, what a spreadsheet in a French locale expects
/// (`,` is its decimal separator).
pub const CSV_SEPARATOR: char = ';';

fn csv_field(s: &str) -> String {
    if s.contains([CSV_SEPARATOR, '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_owned() }
}

/// Whole minutes, rounded to the nearest.
fn minutes(secs: Option<i64>) -> String {
    secs.map(|s| ((s + 30) / 60).to_string()).unwrap_or_default()
}

/// The CSV columns, in order.
pub fn csv_header() -> Vec<String> {
    let mut h: Vec<String> = ["month", "patient_id", "days_with_data", "meets_min_days", "readings_total"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    h.extend(READING_COLUMNS.iter().map(|c| format!("readings_{c}")));
    h.push("readings_other".into());
    h.push("alerts_total".into());
    h.extend(SEVERITIES.iter().map(|s| format!("alerts_{s}")));
    h.extend(
        ["acknowledged", "unacknowledged", "ack_median_min", "ack_max_min", "acks", "snoozes", "closes"]
            .map(String::from),
    );
    h.extend(OUTCOMES.iter().map(|o| format!("closes_{o}")));
    h.push("closes_unspecified".into());
    h.extend(["notes", "expertise_requests", "rules_changes"].map(String::from));
    h
}

#[allow(clippy::too_many_arguments)]
fn csv_row(
    month: &str,
    id: &str,
    days: u64,
    meets: Option<String>,
    readings: &BTreeMap<String, u64>,
    total: u64,
    alerts: &AlertCounts,
    ack: &AckDelays,
    a: &Actions,
) -> Vec<String> {
    let mut r = vec![month.to_owned(), id.to_owned(), days.to_string(), meets.unwrap_or_default(), total.to_string()];
    for c in READING_COLUMNS {
        r.push(readings.get(c).copied().unwrap_or(0).to_string());
    }
    let other: u64 = readings.iter().filter(|(k, _)| !READING_COLUMNS.contains(&k.as_str())).map(|(_, v)| v).sum();
    r.push(other.to_string());
    r.push(alerts.total.to_string());
    r.extend(SEVERITIES.iter().map(|s| alerts.of(s).to_string()));
    r.push(ack.acknowledged.to_string());
    r.push(ack.unacknowledged.to_string());
    r.push(minutes(ack.median_secs));
    r.push(minutes(ack.max_secs));
    r.extend([a.acks, a.snoozes, a.closes].map(|n| n.to_string()));
    r.extend(OUTCOMES.iter().map(|o| a.closes_by_outcome.get(*o).copied().unwrap_or(0).to_string()));
    r.push(a.closes_by_outcome.get("unspecified").copied().unwrap_or(0).to_string());
    r.extend([a.notes, a.expertise_requests, a.rules_changes].map(|n| n.to_string()));
    r
}

/// The report as CSV: UTF-8 with a byte-order mark (so a spreadsheet reads
/// the accents right), `;`-separated, CRLF line ends (RFC 4180), one row per
/// patient then a `TOTAL` row; delays in whole minutes.
pub fn to_csv(r: &ActivityReport) -> String {
    let mut out = String::from('\u{feff}');
    let mut line = |fields: Vec<String>| {
        let f: Vec<String> = fields.iter().map(|s| csv_field(s)).collect();
        out.push_str(&f.join(&CSV_SEPARATOR.to_string()));
        out.push_str("\r\n");
    };
    line(csv_header());
    let yes_no = |b: Option<bool>| b.map(|b| if b { "yes".to_owned() } else { "no".to_owned() });
    for p in &r.patients {
        line(csv_row(
            &r.month,
            &p.patient_id,
            u64::from(p.days_with_data),
            yes_no(p.meets_min_days),
            &p.readings,
            p.readings_total,
            &p.alerts,
            &p.acknowledgment,
            &p.actions,
        ));
    }
    let t = &r.totals;
    line(csv_row(
        &r.month,
        "TOTAL",
        t.days_with_data,
        t.patients_meeting_min_days.map(|n| n.to_string()),
        &t.readings,
        t.readings_total,
        &t.alerts,
        &t.acknowledgment,
        &t.actions,
    ));
    out
}

/// Month of `t` in `tz` (the default month of a report: the previous one is
/// what a team bills, so callers usually pass `now - 1 month`).
pub fn month_of(t: DateTime<Utc>, tz: Tz) -> Month {
    let l = t.with_timezone(&tz);
    Month { year: l.year(), month: l.month() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn months_parse_and_refuse_garbage() {
        assert_eq!(Month::parse("2026-11").unwrap(), Month { year: 2026, month: 11 });
        for bad in ["2026-13", "2026-1", "26-11", "2026/11", "", "2026-00", "abcd-ef", "2026-11-01"] {
            assert!(Month::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Month::parse("2026-12").unwrap().next().to_string(), "2027-01");
        assert_eq!(Month::parse("2026-02").unwrap().days(), 28);
        assert_eq!(Month::parse("2028-02").unwrap().days(), 29);
    }

    #[test]
    fn the_month_is_the_paris_calendar_month_across_dst() {
        let tz: Tz = "Europe/Paris".parse().unwrap();
        // October 2026: CEST (+2) until 25 Oct 01:00 UTC, then CET (+1).
        let w = MonthWindow::new(Month::parse("2026-10").unwrap(), tz).unwrap();
        assert_eq!(w.from, t("2026-09-30T22:00:00Z"));
        assert_eq!(w.to, t("2026-10-31T23:00:00Z"));
        assert_eq!(w.bounds[0], t("2026-10-25T01:00:00Z"));
        assert_eq!((w.offsets[0], w.offsets[1]), (7200, 3600));
        // November: CET all month; 23:30 UTC on the 30th is 1 December in Paris.
        let w = MonthWindow::new(Month::parse("2026-11").unwrap(), tz).unwrap();
        assert_eq!((w.from, w.to), (t("2026-10-31T23:00:00Z"), t("2026-11-30T23:00:00Z")));
        assert!(t("2026-11-30T23:30:00Z") >= w.to);
        assert_eq!(w.local_day(t("2026-11-01T00:30:00Z")), w.local_day(t("2026-10-31T23:10:00Z")));
        assert_ne!(w.local_day(t("2026-11-01T22:59:00Z")), w.local_day(t("2026-11-01T23:00:00Z")));
    }

    #[test]
    fn figures_per_patient_and_totals() {
        let tz: Tz = "Europe/Paris".parse().unwrap();
        let month = Month::parse("2026-11").unwrap();
        let h = ReportHeader {
            month,
            tz,
            window: MonthWindow::new(month, tz).unwrap(),
            patient: None,
            physician: None,
            min_days: Some(2),
        };
        let at = t("2026-11-10T10:00:00Z");
        let ep = |p: &str, sev: &str, ack_min: Option<i64>| EpisodeFact {
            patient_id: p.into(),
            severity: sev.into(),
            raised_at: at,
            first_ack: ack_min.map(|m| at + chrono::TimeDelta::minutes(m)),
        };
        let facts = ActivityFacts {
            patients: vec!["a".into(), "b".into(), "c".into()],
            days: vec![("a".into(), 3), ("b".into(), 1)],
            readings: vec![
                ("a".into(), SYSTOLIC.into(), 4),
                ("a".into(), DIASTOLIC.into(), 4),
                ("a".into(), "8867-4".into(), 5),
                ("b".into(), "29463-7".into(), 2),
            ],
            episodes: vec![
                ep("a", "critical", Some(10)),
                ep("a", "high", Some(30)),
                ep("a", "high", None),
                ep("b", "low", Some(90)),
            ],
            actions: vec![
                ("a".into(), "ack".into(), String::new(), 2),
                ("a".into(), "close".into(), "patient_called".into(), 1),
                ("a".into(), "close_request".into(), String::new(), 2),
                ("b".into(), "rules_change".into(), String::new(), 2),
                ("zz".into(), "note".into(), String::new(), 9),
            ],
        };
        let r = build(&h, &facts);
        let a = &r.patients[0];
        assert_eq!(a.readings[BP_PANEL], 4);
        assert_eq!(a.readings_total, 9);
        assert_eq!((a.alerts.total, a.alerts.critical, a.alerts.high), (3, 1, 2));
        assert_eq!(
            a.acknowledgment,
            AckDelays { acknowledged: 2, unacknowledged: 1, median_secs: Some(600), max_secs: Some(1800) }
        );
        assert_eq!((a.actions.closes, a.actions.closes_by_outcome["unspecified"]), (2, 1));
        assert_eq!(a.meets_min_days, Some(true));
        assert_eq!(r.patients[1].meets_min_days, Some(false));
        assert_eq!(r.patients[2].days_with_data, 0);
        assert_eq!(r.totals.patients_with_data, 2);
        assert_eq!(r.totals.patients_meeting_min_days, Some(1));
        assert_eq!(r.totals.acknowledgment.median_secs, Some(1800));
        assert_eq!(r.totals.actions.notes, 0, "a patient out of scope is ignored");
        let csv = to_csv(&r);
        assert!(csv.starts_with('\u{feff}'));
        let lines: Vec<&str> = csv.trim_start_matches('\u{feff}').split("\r\n").filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 5);
        assert!(lines.iter().all(|l| l.split(';').count() == csv_header().len()));
        assert!(lines[4].starts_with("2026-11;TOTAL;4;1;"));
    }
}
