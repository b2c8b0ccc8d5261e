//! The CSV patient export, pure: one file, one header, one row per stored
//! observation component (as stored: codes, UCUM units, provenance) and one
//! row per alert episode; the `record` column says which. Times are RFC 3339
//! UTC. Fields are quoted per RFC 4180 when needed.

use vitalwatch_schemas::{Code, ObservationId};

use super::map::{EpisodeRow, ObsRow, episode_state, fhir_time};

/// The header line.
pub const HEADER: &[&str] = &[
    "record",
    "id",
    "patient_id",
    "time",
    "code",
    "value",
    "unit",
    "source",
    "device_id",
    "time_source",
    "received_at",
    "original_value",
    "original_unit",
    "rule_id",
    "severity",
    "status",
    "resolved_at",
    "summary",
    "evidence",
];

/// One CSV field, quoted when it holds a comma, a quote or a line break. A
/// text field starting with `=`, `+`, `@` or a tab is prefixed with `'` so
/// that spreadsheets do not run it as a formula (CSV injection).
fn field(s: &str, text: bool) -> String {
    let s = if text && s.starts_with(['=', '+', '@', '\t']) { format!("'{s}") } else { s.to_owned() };
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s }
}

fn line(out: &mut String, cells: &[(String, bool)]) {
    let row: Vec<String> = cells.iter().map(|(c, t)| field(c, *t)).collect();
    out.push_str(&row.join(","));
    out.push_str("\r\n");
}

fn pipeline_id(patient: &str, code: &str, t: chrono::DateTime<chrono::Utc>) -> String {
    Code::from_loinc(code)
        .map(|c| ObservationId::compute(patient, c, t.timestamp_micros()).to_hex())
        .unwrap_or_default()
}

/// The export of `observations` and `episodes`.
pub fn export(observations: &[ObsRow], episodes: &[EpisodeRow]) -> String {
    let mut out = String::new();
    out.push_str(&HEADER.join(","));
    out.push_str("\r\n");
    let n = |s: &str| (s.to_owned(), false);
    let t = |s: &str| (s.to_owned(), true);
    for o in observations {
        line(
            &mut out,
            &[
                n("observation"),
                n(&pipeline_id(&o.patient_id, &o.code, o.time)),
                t(&o.patient_id),
                n(&fhir_time(o.time)),
                n(&o.code),
                n(&o.value.to_string()),
                t(&o.unit),
                n(&o.source),
                t(o.device_id.as_deref().unwrap_or("")),
                n(&o.time_source),
                n(&fhir_time(o.received_at)),
                n(&o.original_value.to_string()),
                t(&o.original_unit),
                n(""),
                n(""),
                n(""),
                n(""),
                n(""),
                n(""),
            ],
        );
    }
    for e in episodes {
        let evidence: Vec<String> = e.evidence.iter().map(|(c, at)| pipeline_id(&e.patient_id, c, *at)).collect();
        line(
            &mut out,
            &[
                n("episode"),
                t(&e.id),
                t(&e.patient_id),
                n(&fhir_time(e.opened_at)),
                n(&e.code),
                n(""),
                n(""),
                n(""),
                n(""),
                n(""),
                n(""),
                n(""),
                n(""),
                t(&e.rule_id),
                n(&e.severity),
                n(episode_state(e)),
                n(&e.resolved_at.map(fhir_time).unwrap_or_default()),
                t(&e.summary),
                n(&evidence.join(" ")),
            ],
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_and_defuses_fields() {
        assert_eq!(field("a,b", true), "\"a,b\"");
        assert_eq!(field("say \"hi\"", true), "\"say \"\"hi\"\"\"");
        assert_eq!(field("=cmd()", true), "'=cmd()");
        assert_eq!(field("-5.5", false), "-5.5");
        let csv = export(&[], &[]);
        assert_eq!(csv.lines().count(), 1);
        assert!(csv.starts_with("record,id,patient_id,time,code,value,unit,source,device_id"));
    }
}
