//! The pure mapping core: stored rows -> FHIR R4 JSON. No I/O.
//!
//! Sources of the standard facts used here:
//! - Observation: <https://hl7.org/fhir/R4/observation.html>, vital signs
//!   profile <https://hl7.org/fhir/R4/observation-vitalsigns.html> (category
//!   `vital-signs`, blood pressure panel LOINC 85354-9 "Blood pressure panel
//!   with all children optional" with components 8480-6 systolic and 8462-4
//!   diastolic, UCUM quantities with system `http://unitsofmeasure.org`).
//! - DetectedIssue: <https://hl7.org/fhir/R4/detectedissue.html> (status is
//!   bound to ObservationStatus, severity to high | moderate | low).
//! - EpisodeOfCare: <https://hl7.org/fhir/R4/episodeofcare.html> (status
//!   planned | waitlist | active | onhold | finished | cancelled |
//!   entered-in-error; `careManager` a Reference, here a logical one by
//!   identifier).
//! - Device: <https://hl7.org/fhir/R4/device.html>; Patient:
//!   <https://hl7.org/fhir/R4/patient.html>; Bundle:
//!   <https://hl7.org/fhir/R4/bundle.html>; OperationOutcome:
//!   <https://hl7.org/fhir/R4/operationoutcome.html>.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use vitalwatch_schemas::{Code, ObservationId};

use crate::service::lifecycle::PeriodView;

/// LOINC code system URI (<https://hl7.org/fhir/R4/loinc.html>).
pub const LOINC: &str = "http://loinc.org";
/// UCUM code system URI (<https://hl7.org/fhir/R4/ucum.html>).
pub const UCUM: &str = "http://unitsofmeasure.org";
/// Blood pressure panel (LOINC 85354-9).
pub const BP_PANEL: &str = "85354-9";
/// Our extension: where the measurement time came from (`device`, `app`, `received`).
pub const EXT_TIME_SOURCE: &str = "https://vitalwatch.example/fhir/StructureDefinition/time-source";
/// Our extension: the value and unit as the sender sent them, before conversion.
pub const EXT_ORIGINAL: &str = "https://vitalwatch.example/fhir/StructureDefinition/original-quantity";
/// Our extension: the version of the patient's rules that raised an episode
/// (`GET /v1/patients/{id}/rules/versions`; 0 = the program defaults).
pub const EXT_RULES_VERSION: &str = "https://vitalwatch.example/fhir/StructureDefinition/rules-version";
/// Our extension: the planned end of a monitoring period (the prescription's duration).
pub const EXT_PLANNED_END: &str = "https://vitalwatch.example/fhir/StructureDefinition/planned-end";
/// Our extension: the patient's consent to remote monitoring (sub-extensions
/// `date` and `recordedBy`).
pub const EXT_CONSENT: &str = "https://vitalwatch.example/fhir/StructureDefinition/monitoring-consent";
/// Our extension: why a monitoring period ended (a code of [`CS_END_REASON`]).
pub const EXT_END_REASON: &str = "https://vitalwatch.example/fhir/StructureDefinition/end-reason";
/// Our code system: why monitoring ended (`discharged`, `end_of_programme`,
/// `deceased`, `transferred`, `other`).
pub const CS_END_REASON: &str = "https://vitalwatch.example/fhir/CodeSystem/end-reason";
/// Our code system: the episode's state (`open`, `acknowledged`, `resolved`, `closed`).
pub const CS_EPISODE_STATE: &str = "https://vitalwatch.example/fhir/CodeSystem/episode-state";
/// Our code system: the rule ids that raise episodes.
pub const CS_RULE: &str = "https://vitalwatch.example/fhir/CodeSystem/rule";
/// Identifier system of patients (pseudonymous ids).
pub const ID_PATIENT: &str = "urn:vitalwatch:patient";
/// Identifier system of devices.
pub const ID_DEVICE: &str = "urn:vitalwatch:device";
/// Identifier system of physicians.
pub const ID_PHYSICIAN: &str = "urn:vitalwatch:physician";

/// One stored observation row (one component of a reading).
#[derive(Debug, Clone, PartialEq)]
pub struct ObsRow {
    /// The patient.
    pub patient_id: String,
    /// Measurement time.
    pub time: DateTime<Utc>,
    /// LOINC code as stored.
    pub code: String,
    /// Value in `unit`.
    pub value: f64,
    /// UCUM unit as stored.
    pub unit: String,
    /// `device` or `manual`.
    pub source: String,
    /// The device, for device readings.
    pub device_id: Option<String>,
    /// When ingest received it.
    pub received_at: DateTime<Utc>,
    /// `device`, `app` or `received`.
    pub time_source: String,
    /// The value as sent.
    pub original_value: f64,
    /// The unit as sent.
    pub original_unit: String,
}

/// The FHIR grouping key of a stored code: systolic and diastolic belong to
/// the blood pressure panel, every other code stands alone.
pub fn group_code(code: &str) -> &str {
    match code {
        "8480-6" | "8462-4" => BP_PANEL,
        c => c,
    }
}

/// The stored codes a FHIR `code` search token selects (`85354-9`: both
/// blood-pressure components). `None` for a code we never store.
pub fn stored_codes(fhir_code: &str) -> Option<Vec<&'static str>> {
    if fhir_code == BP_PANEL {
        return Some(vec![Code::Systolic.loinc(), Code::Diastolic.loinc()]);
    }
    Code::from_loinc(fhir_code).map(|c| vec![c.loinc()])
}

/// The FHIR Observation id of a reading: `{time µs}-{ObservationId hex}`, the
/// hex being the pipeline's deterministic id of (patient, code, time) (for a
/// blood pressure panel: of its systolic component). Stable, and reversible
/// to (time, code) given the candidate patients ([`parse_obs_id`]).
pub fn obs_id(patient: &str, code: &str, time: DateTime<Utc>) -> String {
    let code = match code {
        "8462-4" | BP_PANEL => "8480-6",
        c => c,
    };
    let t = time.timestamp_micros();
    match Code::from_loinc(code) {
        Some(c) => format!("{t}-{}", ObservationId::compute(patient, c, t).to_hex()),
        // Not a code the pipeline stores: never produced in practice.
        None => format!("{t}-{}", code.replace(|c: char| !c.is_ascii_alphanumeric(), ".")),
    }
}

/// Splits an Observation id into (time, hash). `None` when malformed.
pub fn parse_obs_id(id: &str) -> Option<(DateTime<Utc>, ObservationId)> {
    let (t, hex) = id.rsplit_once('-')?;
    if hex.len() != 32 {
        return None;
    }
    let t = DateTime::from_timestamp_micros(t.parse().ok()?)?;
    Some((t, ObservationId::from_hex(hex)?))
}

/// Which stored code (if any) of `patient` at `time` has the pipeline id `h`.
pub fn match_obs_id(patient: &str, time: DateTime<Utc>, h: ObservationId) -> Option<Code> {
    let t = time.timestamp_micros();
    Code::ALL.into_iter().find(|c| ObservationId::compute(patient, *c, t) == h)
}

/// FHIR `dateTime` / `instant` text: RFC 3339 in UTC, fractional seconds only when present.
pub fn fhir_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Groups rows (sorted by patient, time, [`group_code`], code) into FHIR
/// Observations: a systolic and a diastolic at the same time of the same
/// patient become one panel; every other row is its own Observation.
pub fn group_rows(rows: &[ObsRow]) -> Vec<Vec<&ObsRow>> {
    let mut out: Vec<Vec<&ObsRow>> = Vec::new();
    for r in rows {
        if let Some(last) = out.last_mut()
            && let Some(first) = last.first()
            && group_code(&r.code) == BP_PANEL
            && group_code(&first.code) == BP_PANEL
            && first.time == r.time
            && first.patient_id == r.patient_id
            && last.iter().all(|x| x.code != r.code)
        {
            last.push(r);
            continue;
        }
        out.push(vec![r]);
    }
    out
}

fn display(code: &str) -> &'static str {
    // LOINC long common names (https://loinc.org), shortened as in the FHIR vital signs profile.
    match code {
        "8867-4" => "Heart rate",
        "8480-6" => "Systolic blood pressure",
        "8462-4" => "Diastolic blood pressure",
        "59408-5" => "Oxygen saturation in Arterial blood by Pulse oximetry",
        "29463-7" => "Body weight",
        "8310-5" => "Body temperature",
        "41653-7" => "Glucose [Mass/volume] in Capillary blood by Glucometer",
        "9279-1" => "Respiratory rate",
        BP_PANEL => "Blood pressure panel with all children optional",
        _ => "",
    }
}

fn loinc(code: &str) -> Value {
    let d = display(code);
    if d.is_empty() {
        json!({ "coding": [{ "system": LOINC, "code": code }] })
    } else {
        json!({ "coding": [{ "system": LOINC, "code": code, "display": d }], "text": d })
    }
}

fn quantity(value: f64, unit: &str) -> Value {
    json!({ "value": value, "unit": unit, "system": UCUM, "code": unit })
}

fn original(r: &ObsRow) -> Value {
    // The unit as sent may not be UCUM (e.g. "lbs"): unit text only, no system.
    json!({ "url": EXT_ORIGINAL, "valueQuantity": { "value": r.original_value, "unit": r.original_unit } })
}

/// A reference to a resource type and id.
pub fn reference(kind: &str, id: &str) -> Value {
    json!({ "reference": format!("{kind}/{id}") })
}

/// One FHIR Observation from a group of rows of [`group_rows`].
pub fn observation(group: &[&ObsRow]) -> Value {
    let Some(first) = group.first() else { return Value::Null };
    let panel = group.len() > 1;
    let code = if panel { BP_PANEL } else { first.code.as_str() };
    let mut o = json!({
        "resourceType": "Observation",
        "id": obs_id(&first.patient_id, code, first.time),
        "status": "final",
        "category": [{ "coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "vital-signs", "display": "Vital Signs" }] }],
        "code": loinc(code),
        "subject": reference("Patient", &first.patient_id),
        "effectiveDateTime": fhir_time(first.time),
        "issued": fhir_time(first.received_at),
        "extension": [{ "url": EXT_TIME_SOURCE, "valueCode": first.time_source }],
    });
    let Some(map) = o.as_object_mut() else { return o };
    match first.device_id.as_deref() {
        Some(d) if first.source == "device" => {
            map.insert("device".into(), reference("Device", d));
        }
        // A manual entry: the patient measured and typed it in.
        _ => {
            map.insert("performer".into(), json!([reference("Patient", &first.patient_id)]));
        }
    }
    if panel {
        // Systolic first, as in the vital signs profile's example.
        let mut parts: Vec<&&ObsRow> = group.iter().collect();
        parts.sort_by_key(|r| if r.code == "8480-6" { 0 } else { 1 });
        let components: Vec<Value> = parts
            .iter()
            .map(|r| {
                json!({ "code": loinc(&r.code), "valueQuantity": quantity(r.value, &r.unit),
                        "extension": [original(r)] })
            })
            .collect();
        map.insert("component".into(), Value::Array(components));
    } else {
        map.insert("valueQuantity".into(), quantity(first.value, &first.unit));
        if let Some(Value::Array(ext)) = map.get_mut("extension") {
            ext.push(original(first));
        }
    }
    o
}

/// A patient row.
#[derive(Debug, Clone, PartialEq)]
pub struct PatientRow {
    /// Pseudonymous id.
    pub id: String,
    /// `active` or `discharged`.
    pub status: String,
}

/// FHIR Patient: the pseudonymous id only (vitalwatch stores no names).
pub fn patient(p: &PatientRow) -> Value {
    json!({
        "resourceType": "Patient",
        "id": p.id,
        "identifier": [{ "system": ID_PATIENT, "value": p.id }],
        "active": p.status == "active",
    })
}

/// A device with the patient it is currently enrolled to (when visible).
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceRow {
    /// Device id.
    pub id: String,
    /// Kind (scale, bp_cuff, ...).
    pub kind: String,
    /// `active` or `retired`.
    pub status: String,
    /// The patient it is enrolled to now, if the reader may see them.
    pub patient: Option<String>,
}

/// FHIR Device.
pub fn device(d: &DeviceRow) -> Value {
    let mut v = json!({
        "resourceType": "Device",
        "id": d.id,
        "identifier": [{ "system": ID_DEVICE, "value": d.id }],
        // FHIRDeviceStatus: active | inactive | entered-in-error | unknown.
        "status": if d.status == "active" { "active" } else { "inactive" },
        "type": { "text": d.kind },
    });
    if let (Some(p), Some(m)) = (&d.patient, v.as_object_mut()) {
        m.insert("patient".into(), reference("Patient", p));
    }
    v
}

/// The EpisodeOfCare id of a monitoring period.
pub fn episode_of_care_id(period: i64) -> String {
    format!("mp-{period}")
}

/// The period id of an EpisodeOfCare id (`mp-{id}`).
pub fn parse_episode_of_care_id(id: &str) -> Option<i64> {
    id.strip_prefix("mp-")?.parse().ok().filter(|n| *n > 0)
}

/// FHIR EpisodeOfCare: one monitoring period (télésurveillance inclusion,
/// French Health Code art. L6316-1) with its programme, prescriber, consent
/// and end reason. Status at `now`: `finished` once ended, `planned` before
/// its start, `active` otherwise.
pub fn episode_of_care(patient: &str, p: &PeriodView, now: DateTime<Utc>) -> Value {
    let status = match p.ended_at {
        Some(_) => "finished",
        None if p.start > now => "planned",
        None => "active",
    };
    let mut period = json!({ "start": fhir_time(p.start) });
    if let (Some(end), Some(m)) = (p.ended_at, period.as_object_mut()) {
        m.insert("end".into(), Value::String(fhir_time(end)));
    }
    let mut ext = Vec::new();
    if let Some(t) = p.planned_end {
        ext.push(json!({ "url": EXT_PLANNED_END, "valueDateTime": fhir_time(t) }));
    }
    if p.consent_date.is_some() || p.consent_by.is_some() {
        let mut sub = Vec::new();
        if let Some(t) = p.consent_date {
            sub.push(json!({ "url": "date", "valueDateTime": fhir_time(t) }));
        }
        if let Some(by) = &p.consent_by {
            sub.push(json!({ "url": "recordedBy", "valueString": by }));
        }
        ext.push(json!({ "url": EXT_CONSENT, "extension": sub }));
    }
    if let Some(r) = &p.end_reason {
        ext.push(json!({ "url": EXT_END_REASON, "valueCoding": { "system": CS_END_REASON, "code": r } }));
    }
    let mut v = json!({
        "resourceType": "EpisodeOfCare",
        "id": episode_of_care_id(p.id),
        "status": status,
        "type": [{ "text": p.program }],
        "patient": reference("Patient", patient),
        "period": period,
        "careManager": {
            "identifier": { "system": ID_PHYSICIAN, "value": p.prescriber },
            "display": p.prescriber,
        },
    });
    if let (false, Some(m)) = (ext.is_empty(), v.as_object_mut()) {
        m.insert("extension".into(), Value::Array(ext));
    }
    v
}

/// An alert episode with what the DetectedIssue needs.
#[derive(Debug, Clone, PartialEq)]
pub struct EpisodeRow {
    /// Episode id.
    pub id: String,
    /// Patient.
    pub patient_id: String,
    /// Rule id.
    pub rule_id: String,
    /// LOINC code the rule watches.
    pub code: String,
    /// `info`, `low`, `medium`, `high`, `critical`.
    pub severity: String,
    /// `open`, `resolved`, `closed`.
    pub status: String,
    /// Acknowledged at its current severity (alerting state).
    pub acknowledged: bool,
    /// Opening reading time.
    pub opened_at: DateTime<Utc>,
    /// Resolving reading time.
    pub resolved_at: Option<DateTime<Utc>>,
    /// Summary of the last event.
    pub summary: String,
    /// Evidence readings: (code, time).
    pub evidence: Vec<(String, DateTime<Utc>)>,
    /// Acknowledgments: (physician, time).
    pub acks: Vec<(String, DateTime<Utc>)>,
    /// The version of the patient's rules that opened the episode (absent for
    /// episodes opened before alerts named it).
    pub rules_version: Option<u32>,
}

/// The episode state shown on a DetectedIssue: `open`, `acknowledged`, `resolved` or `closed`.
pub fn episode_state(e: &EpisodeRow) -> &'static str {
    match e.status.as_str() {
        "closed" => "closed",
        "resolved" => "resolved",
        _ if e.acknowledged => "acknowledged",
        _ => "open",
    }
}

/// DetectedIssue.severity (high | moderate | low) of an episode severity.
pub fn issue_severity(s: &str) -> &'static str {
    match s {
        "critical" | "high" => "high",
        "medium" => "moderate",
        _ => "low",
    }
}

/// The evidence readings of an episode's evidence JSON: (code, time).
pub fn evidence_readings(evidence: &Value) -> Vec<(String, DateTime<Utc>)> {
    evidence
        .get("readings")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let code = r.get("code")?.as_str()?.to_owned();
            let t = DateTime::from_timestamp_micros(r.get("time_unix_micros")?.as_i64()?)?;
            Some((code, t))
        })
        .collect()
}

/// FHIR DetectedIssue of an alert episode. An episode is a clinical issue the
/// rules detected, with evidence readings and a severity: what DetectedIssue
/// models (Flag is a standing administrative warning without evidence).
pub fn detected_issue(e: &EpisodeRow) -> Value {
    let state = episode_state(e);
    // DetectedIssue.status is bound to ObservationStatus: an open episode may
    // still change severity (preliminary); resolved and closed are final.
    let status = match state {
        "resolved" | "closed" => "final",
        _ => "preliminary",
    };
    let mut refs: Vec<String> = Vec::new();
    for (code, t) in &e.evidence {
        let id = obs_id(&e.patient_id, code, *t);
        if !refs.contains(&id) {
            refs.push(id);
        }
    }
    let mut v = json!({
        "resourceType": "DetectedIssue",
        "id": e.id,
        "meta": { "tag": [{ "system": CS_EPISODE_STATE, "code": state }] },
        "status": status,
        "code": { "coding": [{ "system": CS_RULE, "code": e.rule_id }], "text": e.rule_id },
        "severity": issue_severity(&e.severity),
        "patient": reference("Patient", &e.patient_id),
        "identifiedDateTime": fhir_time(e.opened_at),
        "detail": e.summary,
    });
    let Some(m) = v.as_object_mut() else { return v };
    if let Some(version) = e.rules_version {
        m.insert("extension".into(), json!([{ "url": EXT_RULES_VERSION, "valueInteger": version }]));
    }
    if !refs.is_empty() {
        let detail: Vec<Value> = refs.iter().map(|id| reference("Observation", id)).collect();
        m.insert("evidence".into(), json!([{ "code": [loinc(group_code(&e.code))], "detail": detail }]));
    }
    if !e.acks.is_empty() {
        let mitigation: Vec<Value> = e
            .acks
            .iter()
            .map(|(by, at)| {
                json!({ "action": { "text": "acknowledged" }, "date": fhir_time(*at),
                        "author": { "identifier": { "system": ID_PHYSICIAN, "value": by } } })
            })
            .collect();
        m.insert("mitigation".into(), Value::Array(mitigation));
    }
    v
}

/// A searchset Bundle: `base` is the absolute FHIR base URL; `self_url` and
/// `next_url` absolute URLs.
pub fn searchset(base: &str, resources: Vec<Value>, self_url: &str, next_url: Option<&str>) -> Value {
    let entries: Vec<Value> = resources
        .into_iter()
        .map(|r| {
            let full = format!(
                "{base}/{}/{}",
                r.get("resourceType").and_then(Value::as_str).unwrap_or(""),
                r.get("id").and_then(Value::as_str).unwrap_or("")
            );
            json!({ "fullUrl": full, "resource": r, "search": { "mode": "match" } })
        })
        .collect();
    let mut links = vec![json!({ "relation": "self", "url": self_url })];
    if let Some(n) = next_url {
        links.push(json!({ "relation": "next", "url": n }));
    }
    json!({ "resourceType": "Bundle", "type": "searchset", "link": links, "entry": entries })
}

/// An OperationOutcome with one issue (`code`: an IssueType, e.g. `not-found`,
/// `invalid`, `login`, `forbidden`, `transient`, `exception`).
pub fn operation_outcome(code: &str, diagnostics: &str) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": [{ "severity": "error", "code": code, "diagnostics": diagnostics }],
    })
}

/// The search parameters of each resource type, as served (and listed in the CapabilityStatement).
pub const SEARCH_PARAMS: &[(&str, &[(&str, &str)])] = &[
    ("Patient", &[("_id", "token"), ("_count", "number")]),
    ("Device", &[("patient", "reference")]),
    (
        "Observation",
        &[("patient", "reference"), ("code", "token"), ("date", "date"), ("_count", "number"), ("_sort", "special")],
    ),
    ("DetectedIssue", &[("patient", "reference"), ("_count", "number")]),
    ("EpisodeOfCare", &[("patient", "reference")]),
];

/// The CapabilityStatement: exactly what this server supports.
pub fn capability_statement(base: &str, version: &str, now: DateTime<Utc>) -> Value {
    let resources: Vec<Value> = SEARCH_PARAMS
        .iter()
        .map(|(kind, params)| {
            let mut r = json!({
                "type": kind,
                "interaction": [{ "code": "read" }, { "code": "search-type" }],
                "searchParam": params.iter().map(|(n, t)| json!({ "name": n, "type": t })).collect::<Vec<_>>(),
            });
            if *kind == "Patient"
                && let Some(m) = r.as_object_mut()
            {
                m.insert(
                    "operation".into(),
                    json!([{ "name": "everything",
                             "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything" }]),
                );
            }
            r
        })
        .collect();
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": fhir_time(now),
        "kind": "instance",
        "software": { "name": "vitalwatch", "version": version },
        "implementation": { "description": "vitalwatch FHIR R4 read API", "url": base },
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "security": {
                "service": [{ "coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                    "code": "OAuth" }], "text": "Bearer tokens of the admin API" }],
                "description": "Authorization: Bearer <token>; physicians and nurses see only their own patients."
            },
            "resource": resources,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(code: &str, t: i64, v: f64, device: Option<&str>) -> ObsRow {
        let time = DateTime::from_timestamp(t, 0).unwrap();
        ObsRow {
            patient_id: "p1".into(),
            time,
            code: code.into(),
            value: v,
            unit: Code::from_loinc(code).map(|c| c.ucum()).unwrap_or("1").into(),
            source: if device.is_some() { "device" } else { "manual" }.into(),
            device_id: device.map(str::to_owned),
            received_at: time + chrono::Duration::seconds(3),
            time_source: if device.is_some() { "device" } else { "app" }.into(),
            original_value: v,
            original_unit: "mmHg".into(),
        }
    }

    #[test]
    fn systolic_and_diastolic_at_the_same_time_become_one_panel() {
        let rows = [
            row("8462-4", 100, 80.0, Some("cuff")),
            row("8480-6", 100, 130.0, Some("cuff")),
            row("8867-4", 100, 70.0, None),
        ];
        let groups = group_rows(&rows);
        assert_eq!(groups.len(), 2);
        let bp = observation(&groups[0]);
        assert_eq!(bp["code"]["coding"][0]["code"], BP_PANEL);
        assert_eq!(bp["component"][0]["code"]["coding"][0]["code"], "8480-6");
        assert_eq!(bp["component"][0]["valueQuantity"]["value"], 130.0);
        assert_eq!(bp["component"][1]["valueQuantity"]["code"], "mm[Hg]");
        assert_eq!(bp["component"][1]["valueQuantity"]["system"], UCUM);
        assert_eq!(bp["device"]["reference"], "Device/cuff");
        assert!(bp.get("valueQuantity").is_none() && bp.get("performer").is_none());
        let hr = observation(&groups[1]);
        assert_eq!(hr["performer"][0]["reference"], "Patient/p1");
        assert_eq!(hr["extension"][0]["valueCode"], "app");
        assert_eq!(hr["issued"], "1970-01-01T00:01:43Z");
    }

    #[test]
    fn observation_ids_are_stable_and_reversible() {
        let t = DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap();
        let id = obs_id("p1", "8867-4", t);
        assert_eq!(id, obs_id("p1", "8867-4", t));
        assert!(id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        let (t2, h) = parse_obs_id(&id).unwrap();
        assert_eq!(t2, t);
        assert_eq!(match_obs_id("p1", t2, h), Some(Code::HeartRate));
        assert_eq!(match_obs_id("p2", t2, h), None);
        // The panel's id is its systolic component's.
        assert_eq!(obs_id("p1", BP_PANEL, t), obs_id("p1", "8462-4", t));
        assert!(parse_obs_id("nonsense").is_none() && parse_obs_id("12-zz").is_none());
        let neg = obs_id("p1", "8867-4", DateTime::from_timestamp_micros(-5).unwrap());
        assert_eq!(parse_obs_id(&neg).map(|x| x.0.timestamp_micros()), Some(-5));
    }

    #[test]
    fn episodes_map_state_severity_and_evidence() {
        let t = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let mut e = EpisodeRow {
            id: "ep-1".into(),
            patient_id: "p1".into(),
            rule_id: "threshold.sbp.high".into(),
            code: "8480-6".into(),
            severity: "critical".into(),
            status: "open".into(),
            acknowledged: false,
            opened_at: t,
            resolved_at: None,
            summary: "SBP 190".into(),
            evidence: vec![("8480-6".into(), t), ("8462-4".into(), t)],
            acks: vec![],
            rules_version: None,
        };
        let v = detected_issue(&e);
        assert!(v.get("extension").is_none(), "no version recorded, none claimed");
        assert_eq!((v["status"].as_str(), v["severity"].as_str()), (Some("preliminary"), Some("high")));
        assert_eq!(v["meta"]["tag"][0]["code"], "open");
        let detail = v["evidence"][0]["detail"].as_array().unwrap();
        assert_eq!(detail.len(), 1, "both components are one panel Observation");
        assert_eq!(detail[0]["reference"], format!("Observation/{}", obs_id("p1", BP_PANEL, t)));
        e.acknowledged = true;
        e.acks.push(("dr-a".into(), t));
        let v = detected_issue(&e);
        assert_eq!(v["meta"]["tag"][0]["code"], "acknowledged");
        assert_eq!(v["mitigation"][0]["author"]["identifier"]["value"], "dr-a");
        e.status = "closed".into();
        assert_eq!(detected_issue(&e)["status"], "final");
        // The alert's evidence names the rules version that raised it.
        e.rules_version = Some(3);
        let v = detected_issue(&e);
        assert_eq!(v["extension"][0]["url"], EXT_RULES_VERSION);
        assert_eq!(v["extension"][0]["valueInteger"], 3);
        assert_eq!(issue_severity("medium"), "moderate");
        assert_eq!(issue_severity("info"), "low");
    }

    #[test]
    fn monitoring_periods_become_episodes_of_care() {
        let t = |s: i64| DateTime::from_timestamp(1_767_225_600 + s, 0).unwrap();
        let mut p = PeriodView {
            id: 7,
            program: "heart_failure".into(),
            prescriber: "dr-a".into(),
            start: t(0),
            planned_end: Some(t(86_400 * 180)),
            consent_date: Some(t(-86_400)),
            consent_by: Some("IDE Martin".into()),
            recorded_by: "op".into(),
            recorded_at: t(0),
            ended_at: None,
            end_reason: None,
            end_note: None,
        };
        let v = episode_of_care("p-1", &p, t(60));
        assert_eq!(v["id"], "mp-7");
        assert_eq!(parse_episode_of_care_id("mp-7"), Some(7));
        assert_eq!(parse_episode_of_care_id("mp-x"), None);
        assert_eq!(parse_episode_of_care_id("7"), None);
        assert_eq!(v["status"], "active");
        assert_eq!(v["patient"]["reference"], "Patient/p-1");
        assert_eq!(v["period"], json!({ "start": "2026-01-01T00:00:00Z" }));
        assert_eq!(v["careManager"]["identifier"]["value"], "dr-a");
        assert_eq!(v["extension"][0]["valueDateTime"], "2026-06-30T00:00:00Z");
        assert_eq!(v["extension"][1]["extension"][1]["valueString"], "IDE Martin");
        assert_eq!(episode_of_care("p-1", &p, t(-60))["status"], "planned");
        p.ended_at = Some(t(3_600));
        p.end_reason = Some("deceased".into());
        let v = episode_of_care("p-1", &p, t(60));
        assert_eq!(v["status"], "finished");
        assert_eq!(v["period"]["end"], "2026-01-01T01:00:00Z");
        assert_eq!(v["extension"][2]["valueCoding"]["code"], "deceased");
        // A period opened by the migration: no planned end, no consent.
        let bare = PeriodView { planned_end: None, consent_date: None, consent_by: None, ..p };
        assert_eq!(episode_of_care("p-1", &bare, t(60))["extension"].as_array().unwrap().len(), 1);
    }
}
