//! Search parameters, pure: the query pairs of a FHIR search -> a typed
//! search, or an error message (400 OperationOutcome). Unknown parameters are
//! refused rather than silently ignored, so a client never mistakes an
//! unfiltered result for a filtered one
//! (<https://hl7.org/fhir/R4/search.html#errors>).

use chrono::{DateTime, Duration, NaiveDate, Utc};

use super::map::{BP_PANEL, stored_codes};

/// Default and largest `_count`.
pub const DEFAULT_COUNT: u32 = 50;

/// Sort order of an Observation search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    /// `_sort=date`: oldest first (the default).
    Asc,
    /// `_sort=-date`: newest first.
    Desc,
}

/// A keyset cursor: (time, grouping code) of the last Observation of the previous page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObsCursor {
    /// Measurement time.
    pub time: DateTime<Utc>,
    /// [`super::map::group_code`] of the last Observation.
    pub group: String,
}

impl ObsCursor {
    /// The opaque text of `_cursor`.
    pub fn encode(&self) -> String {
        format!("{}~{}", self.time.timestamp_micros(), self.group)
    }

    /// Parses `_cursor`.
    pub fn decode(s: &str) -> Option<ObsCursor> {
        let (t, g) = s.split_once('~')?;
        let time = DateTime::from_timestamp_micros(t.parse().ok()?)?;
        let ok = !g.is_empty() && g.len() <= 16 && g.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        ok.then(|| ObsCursor { time, group: g.to_owned() })
    }
}

/// An Observation search.
#[derive(Debug, Clone, PartialEq)]
pub struct ObsSearch {
    /// The patient (required).
    pub patient: String,
    /// The FHIR codes asked for (`code=a,b`); empty: all.
    pub codes: Vec<String>,
    /// The stored codes they select; empty: all.
    pub stored: Vec<String>,
    /// Inclusive lower bound of the measurement time.
    pub since: Option<DateTime<Utc>>,
    /// Exclusive upper bound.
    pub until: Option<DateTime<Utc>>,
    /// Page size.
    pub count: u32,
    /// Order.
    pub sort: Sort,
    /// Where the page starts.
    pub cursor: Option<ObsCursor>,
    /// The `date` parameters as given (for the links).
    pub dates: Vec<String>,
}

/// A patient reference parameter: `p1`, `Patient/p1` or a full URL ending in `Patient/p1`.
pub fn patient_ref(v: &str) -> String {
    match v.rsplit_once("Patient/") {
        Some((_, id)) => id.to_owned(),
        None => v.to_owned(),
    }
}

/// Parses `_count` (1..=max).
pub fn count(v: &str, max: u32) -> Result<u32, String> {
    let n: u32 = v.parse().map_err(|_| format!("_count must be a positive integer, not {v:?}"))?;
    if n == 0 {
        return Err("_count must be at least 1".into());
    }
    Ok(n.min(max))
}

/// A FHIR date or dateTime value -> the (start, end) of the interval it
/// denotes (<https://hl7.org/fhir/R4/search.html#date>): a date is its whole
/// UTC day, a dateTime an instant.
fn interval(v: &str) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    if let Ok(d) = NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        let start = d.and_hms_opt(0, 0, 0)?.and_utc();
        return Some((start, start + Duration::days(1)));
    }
    let t = DateTime::parse_from_rfc3339(v).ok()?.with_timezone(&Utc);
    Some((t, t + Duration::microseconds(1)))
}

/// Applies one `date` parameter (prefix `ge`, `gt`, `le`, `lt`, `eq` or none)
/// to the bounds.
fn date(v: &str, since: &mut Option<DateTime<Utc>>, until: &mut Option<DateTime<Utc>>) -> Result<(), String> {
    let bad = || format!("date {v:?}: expected [ge|gt|le|lt|eq]YYYY-MM-DD or an RFC 3339 dateTime");
    let (prefix, value) =
        if v.len() > 2 && v.as_bytes()[..2].iter().all(u8::is_ascii_lowercase) { v.split_at(2) } else { ("eq", v) };
    let (start, end) = interval(value).ok_or_else(bad)?;
    let lower = |b: DateTime<Utc>, since: &mut Option<DateTime<Utc>>| *since = Some(since.map_or(b, |s| s.max(b)));
    let upper = |b: DateTime<Utc>, until: &mut Option<DateTime<Utc>>| *until = Some(until.map_or(b, |u| u.min(b)));
    match prefix {
        "ge" => lower(start, since),
        "gt" => lower(end, since),
        "lt" => upper(start, until),
        "le" => upper(end, until),
        "eq" => {
            lower(start, since);
            upper(end, until);
        }
        _ => return Err(bad()),
    }
    Ok(())
}

/// Parses the parameters of `GET Observation`.
pub fn observation_search(pairs: &[(String, String)], max: u32) -> Result<ObsSearch, String> {
    let mut s = ObsSearch {
        patient: String::new(),
        codes: Vec::new(),
        stored: Vec::new(),
        since: None,
        until: None,
        count: DEFAULT_COUNT.min(max),
        sort: Sort::Asc,
        cursor: None,
        dates: Vec::new(),
    };
    for (k, v) in pairs {
        match k.as_str() {
            "patient" | "subject" => s.patient = patient_ref(v),
            "code" => {
                for c in v.split(',') {
                    // A token may carry its system: http://loinc.org|8867-4.
                    let code = match c.split_once('|') {
                        Some((sys, code)) if sys.is_empty() || sys == super::map::LOINC => code,
                        Some(_) => return Err(format!("code {c:?}: only LOINC codes (http://loinc.org) are stored")),
                        None => c,
                    };
                    let stored =
                        stored_codes(code).ok_or_else(|| format!("code {code:?} is not a code vitalwatch stores"))?;
                    let fhir = if code == BP_PANEL { BP_PANEL.to_owned() } else { stored[0].to_owned() };
                    s.codes.push(fhir);
                    s.stored.extend(stored.into_iter().map(str::to_owned));
                }
            }
            "date" => {
                date(v, &mut s.since, &mut s.until)?;
                s.dates.push(v.clone());
            }
            "_count" => s.count = count(v, max)?,
            "_sort" => {
                s.sort = match v.as_str() {
                    "date" => Sort::Asc,
                    "-date" => Sort::Desc,
                    _ => return Err(format!("_sort {v:?}: only date and -date are supported")),
                }
            }
            "_cursor" => s.cursor = Some(ObsCursor::decode(v).ok_or("invalid _cursor")?),
            "_format" => format(v)?,
            other => return Err(format!("unsupported search parameter {other:?}")),
        }
    }
    if s.patient.is_empty() {
        return Err("the patient parameter is required".into());
    }
    s.stored.sort();
    s.stored.dedup();
    Ok(s)
}

/// Accepts `_format` only for JSON.
pub fn format(v: &str) -> Result<(), String> {
    match v {
        "json" | "application/json" | "application/fhir+json" => Ok(()),
        _ => Err(format!("_format {v:?}: only JSON is served")),
    }
}

/// The query string of an Observation search's page (for `self` and `next`).
pub fn observation_query(s: &ObsSearch, cursor: Option<&ObsCursor>) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("patient", &s.patient);
    if !s.codes.is_empty() {
        q.append_pair("code", &s.codes.join(","));
    }
    for d in &s.dates {
        q.append_pair("date", d);
    }
    q.append_pair("_count", &s.count.to_string());
    q.append_pair("_sort", if s.sort == Sort::Asc { "date" } else { "-date" });
    if let Some(c) = cursor {
        q.append_pair("_cursor", &c.encode());
    }
    q.finish()
}

/// Simple searches (Patient, Device, DetectedIssue): `patient`, `_id`, `_count`, `_cursor`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SimpleSearch {
    /// `patient` (Device, DetectedIssue) or `_id` (Patient).
    pub patient: Option<String>,
    /// Page size.
    pub count: Option<u32>,
    /// Opaque cursor.
    pub cursor: Option<String>,
}

/// Parses a simple search; `allowed` lists the parameters (besides `_format`).
pub fn simple_search(pairs: &[(String, String)], allowed: &[&str], max: u32) -> Result<SimpleSearch, String> {
    let mut s = SimpleSearch::default();
    for (k, v) in pairs {
        if k == "_format" {
            format(v)?;
            continue;
        }
        if !allowed.contains(&k.as_str()) {
            return Err(format!("unsupported search parameter {k:?}"));
        }
        match k.as_str() {
            "patient" | "subject" | "_id" => s.patient = Some(patient_ref(v)),
            "_count" => s.count = Some(count(v, max)?),
            "_cursor" => s.cursor = Some(v.clone()),
            _ => {}
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &str) -> Vec<(String, String)> {
        form_urlencoded::parse(q.as_bytes()).into_owned().collect()
    }

    #[test]
    fn parses_observation_searches() {
        let s = observation_search(
            &pairs("patient=Patient/p1&code=85354-9,http://loinc.org|8867-4&date=ge2026-01-01&date=lt2026-01-03T00:00:00Z&_count=500&_sort=-date"),
            100,
        )
        .unwrap();
        assert_eq!(s.patient, "p1");
        assert_eq!(s.codes, ["85354-9", "8867-4"]);
        assert_eq!(s.stored, ["8462-4", "8480-6", "8867-4"]);
        assert_eq!(s.since.unwrap().to_rfc3339(), "2026-01-01T00:00:00+00:00");
        assert_eq!(s.until.unwrap().to_rfc3339(), "2026-01-03T00:00:00+00:00");
        assert_eq!((s.count, s.sort), (100, Sort::Desc));
        let q = observation_query(&s, Some(&ObsCursor { time: s.since.unwrap(), group: "85354-9".into() }));
        let again = observation_search(&pairs(&q), 100).unwrap();
        assert_eq!(again.cursor.unwrap().group, "85354-9");
        assert_eq!((again.since, again.until), (s.since, s.until));
        // A bare date is that whole day.
        let d = observation_search(&pairs("patient=p1&date=2026-01-02"), 100).unwrap();
        assert_eq!(d.until.unwrap() - d.since.unwrap(), Duration::days(1));
    }

    #[test]
    fn refuses_what_it_does_not_support() {
        for q in [
            "code=8867-4",
            "patient=p1&code=1234-5",
            "patient=p1&code=http://snomed.info/sct|123",
            "patient=p1&date=yesterday",
            "patient=p1&date=ap2026-01-01",
            "patient=p1&_sort=value",
            "patient=p1&_count=0",
            "patient=p1&_cursor=zz",
            "patient=p1&value-quantity=5",
            "patient=p1&_format=xml",
        ] {
            assert!(observation_search(&pairs(q), 100).is_err(), "{q}");
        }
        assert!(simple_search(&pairs("name=x"), &["patient"], 10).is_err());
        assert_eq!(simple_search(&pairs("patient=p2&_count=3"), &["patient", "_count"], 10).unwrap().count, Some(3));
    }
}
