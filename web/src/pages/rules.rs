//! The rules editor (`/patients/{id}/rules`): the patient's program and
//! threshold values within the bounds the rules core validates (inputs carry
//! them as `min`/`max`), a preview of which of the last 30 days' readings the
//! candidate would have alerted on (POST `/patients/{id}/rules/preview`,
//! nothing stored), and saving as a new version with who, when and why (POST
//! `/patients/{id}/rules`; the reason is required). Nurses may read and
//! preview, not save (403); a physician reaches only their patients (404).

use std::collections::HashMap;

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use vitalwatch_admin::AdminError;
use vitalwatch_admin::policy::{Operation, Scope, scope};
use vitalwatch_admin::service::patient_view::{Preview, RulesInForce};
use vitalwatch_rules_core::preview::WouldAlert;
use vitalwatch_rules_core::{OxygenPlan, PatientRules, Program, Spo2Target, ThresholdRule, threshold_bounds};
use vitalwatch_schemas::Code;

use super::patient::{decimals, program_name};
use super::{Nav, PageCtx, admin_error, render_status, see_other};
use crate::auth::{CsrfForm, Viewer};
use crate::chart;
use crate::fmt;
use crate::i18n::Lang;
use crate::state::AppState;

/// Texts of the rules editor.
#[derive(Debug)]
pub struct RulesText {
    title: &'static str,
    back: &'static str,
    version: &'static str,
    default_rules: &'static str,
    read_only: &'static str,
    saved: &'static str,
    program: &'static str,
    program_hint: &'static str,
    oxygen_target: &'static str,
    oxygen_none: &'static str,
    oxygen_standard: &'static str,
    oxygen_hypercapnic: &'static str,
    oxygen: &'static str,
    thresholds: &'static str,
    no_thresholds: &'static str,
    trigger: &'static str,
    clear: &'static str,
    between: &'static str,
    and: &'static str,
    reason: &'static str,
    reason_hint: &'static str,
    reason_required: &'static str,
    bad_number: &'static str,
    bad_program: &'static str,
    preview: &'static str,
    save: &'static str,
    preview_title: &'static str,
    preview_summary: &'static str,
    preview_current: &'static str,
    added: &'static str,
    removed: &'static str,
    unchanged: &'static str,
    none: &'static str,
    when: &'static str,
    vital: &'static str,
    value: &'static str,
    severity: &'static str,
    rule: &'static str,
}

const FR: RulesText = RulesText {
    title: "Seuils du patient",
    back: "Retour au patient",
    version: "Version en vigueur :",
    default_rules: "seuils par défaut du programme",
    read_only: "Vous pouvez consulter les seuils et prévisualiser une modification ; seul un médecin peut les enregistrer.",
    saved: "Nouvelle version enregistrée :",
    program: "Programme de télésurveillance",
    program_hint: "Changer de programme repart des seuils par défaut de ce programme.",
    oxygen_target: "Cible de SpO2 (BPCO)",
    oxygen_none: "non renseignée",
    oxygen_standard: "94-98 %",
    oxygen_hypercapnic: "88-92 % (insuffisance respiratoire hypercapnique)",
    oxygen: "Oxygénothérapie à domicile",
    thresholds: "Seuils d'alerte",
    no_thresholds: "Ce programme n'a pas de seuil absolu.",
    trigger: "Déclenchement",
    clear: "Retour à la normale",
    between: "entre",
    and: "et",
    reason: "Motif de la modification (obligatoire pour enregistrer)",
    reason_hint: "Il est conservé avec la nouvelle version, avec votre nom et la date.",
    reason_required: "Indiquez le motif de la modification.",
    bad_number: "Nombre invalide pour",
    bad_program: "Programme inconnu.",
    preview: "Prévisualiser sur 30 jours",
    save: "Enregistrer une nouvelle version",
    preview_title: "Prévisualisation",
    preview_summary: "mesures des 30 derniers jours rejouées ; alertes avec ces seuils :",
    preview_current: "avec les seuils en vigueur :",
    added: "Alertes en plus",
    removed: "Alertes en moins",
    unchanged: "Alertes inchangées",
    none: "Aucune.",
    when: "Date de la mesure",
    vital: "Mesure",
    value: "Valeur",
    severity: "Gravité",
    rule: "Règle",
};

const EN: RulesText = RulesText {
    title: "Patient thresholds",
    back: "Back to the patient",
    version: "Version in force:",
    default_rules: "program default thresholds",
    read_only: "You may read the thresholds and preview a change; only a physician may save them.",
    saved: "New version saved:",
    program: "Monitoring program",
    program_hint: "Changing the program starts again from that program's default thresholds.",
    oxygen_target: "SpO2 target (COPD)",
    oxygen_none: "not set",
    oxygen_standard: "94-98 %",
    oxygen_hypercapnic: "88-92 % (hypercapnic respiratory failure)",
    oxygen: "Home oxygen",
    thresholds: "Alert thresholds",
    no_thresholds: "This program has no absolute threshold.",
    trigger: "Trigger",
    clear: "Back to normal",
    between: "between",
    and: "and",
    reason: "Reason for the change (required to save)",
    reason_hint: "It is kept with the new version, with your name and the date.",
    reason_required: "Give the reason for the change.",
    bad_number: "Invalid number for",
    bad_program: "Unknown program.",
    preview: "Preview over 30 days",
    save: "Save a new version",
    preview_title: "Preview",
    preview_summary: "readings of the last 30 days replayed; alerts with these thresholds:",
    preview_current: "with the thresholds in force:",
    added: "More alerts",
    removed: "Fewer alerts",
    unchanged: "Unchanged alerts",
    none: "None.",
    when: "Reading time",
    vital: "Reading",
    value: "Value",
    severity: "Severity",
    rule: "Rule",
};

fn text(l: Lang) -> &'static RulesText {
    match l {
        Lang::Fr => &FR,
        Lang::En => &EN,
    }
}

// ---------------------------------------------------------------------------
// The form model (pure).
// ---------------------------------------------------------------------------

/// One number input: a trigger level or a clear value of a threshold check.
#[derive(Debug, Clone, PartialEq)]
pub struct NumberField {
    /// Form field name: `t.<rule>.<check>.<level>` or `c.<rule>.<check>`.
    pub name: String,
    /// Value.
    pub value: f64,
    /// Smallest allowed ([`threshold_bounds`] of the code).
    pub min: f64,
    /// Largest allowed.
    pub max: f64,
    /// Input step.
    pub step: f64,
    /// Severity of the level (`None` for the clear value).
    pub severity: Option<String>,
    /// `>=`, `<`, ...
    pub op: String,
}

/// The inputs of one threshold check (one code of one rule).
#[derive(Debug, Clone, PartialEq)]
pub struct CheckFields {
    /// Rule id.
    pub rule_id: String,
    /// The code.
    pub code: Code,
    /// One per level.
    pub levels: Vec<NumberField>,
    /// The clear value.
    pub clear: NumberField,
}

/// Input step of a code's thresholds.
pub fn step(code: Code) -> f64 {
    match code {
        Code::BodyWeight | Code::BodyTemperature => 0.1,
        _ => 1.0,
    }
}

/// The threshold inputs of `rules`: every level and clear value of its
/// effective threshold rules, with the validated bounds.
pub fn fields(rules: &PatientRules) -> Vec<CheckFields> {
    let Ok(set) = rules.effective() else { return Vec::new() };
    let mut out = Vec::new();
    for r in &set.thresholds {
        for (ci, c) in r.checks.iter().enumerate() {
            let (min, max) = threshold_bounds(c.code);
            let field = |name: String, value: f64, severity: Option<String>| NumberField {
                name,
                value,
                min,
                max,
                step: step(c.code),
                severity,
                op: c.op.symbol().to_owned(),
            };
            out.push(CheckFields {
                rule_id: r.id.clone(),
                code: c.code,
                levels: c
                    .levels
                    .iter()
                    .enumerate()
                    .map(|(li, l)| {
                        field(format!("t.{}.{ci}.{li}", r.id), l.value, Some(l.severity.as_str().to_owned()))
                    })
                    .collect(),
                clear: field(format!("c.{}.{ci}", r.id), c.clear, None),
            });
        }
    }
    out
}

/// Why a posted form gives no candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormError {
    /// Unknown program.
    Program,
    /// A number that does not parse (the field's name).
    Number(String),
}

/// A number typed in either locale (`37,5` or `37.5`); `None` if not a finite number.
pub fn parse_number(s: &str) -> Option<f64> {
    let v: f64 = s.trim().replace(',', ".").parse().ok()?;
    v.is_finite().then_some(v)
}

/// The candidate rules of a posted form, on top of `current`. A changed
/// program starts from that program's defaults (the thresholds shown were the
/// old program's); otherwise each threshold rule whose posted values differ
/// from the rules in force becomes a patient override. Validation (bounds,
/// order, hysteresis) is the rules core's, by the service.
pub fn candidate(current: &PatientRules, form: &HashMap<String, String>) -> Result<PatientRules, FormError> {
    let program = match form.get("program") {
        Some(p) => Program::parse(p).ok_or(FormError::Program)?,
        None => current.program,
    };
    let mut rules = if program == current.program {
        current.clone()
    } else {
        PatientRules { oxygen_plan: current.oxygen_plan, ..PatientRules::for_program(program) }
    };
    let target = match form.get("oxygen_target").map(String::as_str) {
        Some("94-98") => Some(Spo2Target::Standard),
        Some("88-92") => Some(Spo2Target::Hypercapnic),
        _ => None,
    };
    if form.contains_key("oxygen_target") {
        rules.oxygen_plan =
            target.map(|target| OxygenPlan { target, supplemental_oxygen: form.contains_key("oxygen") });
        if rules.oxygen_plan.is_some() {
            // The plan gives the NEWS2 scale and oxygen use; nothing may contradict it.
            rules.spo2_scale = Default::default();
            rules.news2_assumptions.supplemental_oxygen = false;
        }
    }
    if program != current.program {
        return Ok(rules);
    }
    let Ok(set) = current.effective() else { return Ok(rules) };
    for r in &set.thresholds {
        let mut changed: ThresholdRule = r.clone();
        for (ci, c) in changed.checks.iter_mut().enumerate() {
            for (li, l) in c.levels.iter_mut().enumerate() {
                let name = format!("t.{}.{ci}.{li}", r.id);
                if let Some(v) = form.get(&name) {
                    l.value = parse_number(v).ok_or(FormError::Number(name))?;
                }
            }
            let name = format!("c.{}.{ci}", r.id);
            if let Some(v) = form.get(&name) {
                c.clear = parse_number(v).ok_or(FormError::Number(name))?;
            }
        }
        if changed != *r {
            match rules.thresholds.iter_mut().find(|t| t.id == r.id) {
                Some(slot) => *slot = changed,
                None => rules.thresholds.push(changed),
            }
        }
    }
    Ok(rules)
}

// ---------------------------------------------------------------------------
// The page.
// ---------------------------------------------------------------------------

#[derive(Debug)]
struct Choice {
    value: &'static str,
    label: &'static str,
    selected: bool,
}

#[derive(Debug)]
struct FieldView {
    id: String,
    name: String,
    value: String,
    min: String,
    max: String,
    step: String,
    label: String,
    hint: String,
}

#[derive(Debug)]
struct CheckView {
    title: String,
    unit: String,
    fields: Vec<FieldView>,
}

#[derive(Debug)]
struct AlertRow {
    when: String,
    vital: &'static str,
    value: String,
    severity: &'static str,
    severity_class: String,
    rule: String,
}

#[derive(Debug)]
struct AlertGroup {
    id: &'static str,
    title: &'static str,
    rows: Vec<AlertRow>,
}

#[derive(Debug)]
struct PreviewView {
    summary: String,
    groups: Vec<AlertGroup>,
}

#[derive(Template)]
#[template(path = "rules.html")]
struct RulesPage {
    ctx: PageCtx,
    t: &'static RulesText,
    patient_id: String,
    version: String,
    can_edit: bool,
    saved: String,
    error: String,
    programs: Vec<Choice>,
    oxygen_targets: Vec<Choice>,
    oxygen: bool,
    checks: Vec<CheckView>,
    reason: String,
    csrf: String,
    preview: Option<PreviewView>,
}

/// The routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/patients/{id}/rules", get(editor).post(save))
        .route("/patients/{id}/rules/preview", post(preview))
}

/// A number for an `<input type="number">` (always a decimal point).
fn input_number(v: f64) -> String {
    let s = format!("{v}");
    if s.contains('e') { format!("{v:.3}") } else { s }
}

fn check_views(l: Lang, rules: &PatientRules) -> Vec<CheckView> {
    let (t, common) = (text(l), crate::i18n::common(l));
    fields(rules)
        .into_iter()
        .map(|c| {
            let unit = chart::unit_label(c.code.ucum()).to_owned();
            let dec = decimals(c.code.ucum());
            let view = |f: &NumberField| {
                let label = match &f.severity {
                    Some(s) => {
                        format!("{} {} ({})", t.trigger, f.op.replace(">=", "≥").replace("<=", "≤"), common.severity(s))
                    }
                    None => t.clear.to_owned(),
                };
                FieldView {
                    id: f.name.replace('.', "-"),
                    name: f.name.clone(),
                    value: input_number(f.value),
                    min: input_number(f.min),
                    max: input_number(f.max),
                    step: input_number(f.step),
                    label,
                    hint: format!(
                        "{} {} {} {} {unit}",
                        t.between,
                        fmt::number(l, f.min, dec),
                        t.and,
                        fmt::number(l, f.max, dec)
                    ),
                }
            };
            let mut fields: Vec<FieldView> = c.levels.iter().map(view).collect();
            fields.push(view(&c.clear));
            CheckView { title: format!("{} · {}", chart::vital_name(l, c.code.loinc()), c.rule_id), unit, fields }
        })
        .collect()
}

fn alert_rows(l: Lang, tz: chrono_tz::Tz, alerts: &[WouldAlert]) -> Vec<AlertRow> {
    let common = crate::i18n::common(l);
    alerts
        .iter()
        .map(|a| AlertRow {
            when: fmt::datetime(l, tz, a.time),
            vital: if a.code.is_empty() { "NEWS2" } else { chart::vital_name(l, &a.code) },
            value: a.value.map_or_else(
                || "–".into(),
                |v| format!("{} {}", fmt::number(l, v, decimals(&a.unit)), chart::unit_label(&a.unit)),
            ),
            severity: common.severity(a.severity.as_str()),
            severity_class: a.severity.as_str().to_owned(),
            rule: a.rule_id.clone(),
        })
        .collect()
}

fn preview_view(l: Lang, tz: chrono_tz::Tz, p: &Preview) -> PreviewView {
    let t = text(l);
    PreviewView {
        summary: format!(
            "{} {} {} {} {}.",
            p.readings,
            t.preview_summary,
            p.candidate.len(),
            t.preview_current,
            p.current.len()
        ),
        groups: vec![
            AlertGroup { id: "preview-added", title: t.added, rows: alert_rows(l, tz, &p.added) },
            AlertGroup { id: "preview-removed", title: t.removed, rows: alert_rows(l, tz, &p.removed) },
            AlertGroup { id: "preview-unchanged", title: t.unchanged, rows: alert_rows(l, tz, &p.unchanged) },
        ],
    }
}

/// What a render of the editor shows besides the rules.
#[derive(Default)]
struct Extra {
    saved: String,
    error: String,
    reason: String,
    preview: Option<PreviewView>,
}

fn page(
    v: &Viewer,
    id: &str,
    current: &RulesInForce,
    shown: &PatientRules,
    extra: Extra,
    status: StatusCode,
) -> Response {
    let (l, t) = (v.lang, text(v.lang));
    let can_edit = scope(&v.actor.role, Operation::EditRules) != Scope::Denied;
    let programs = Program::ALL
        .into_iter()
        .map(|p| Choice { value: p.as_str(), label: program_name(l, p.as_str()), selected: p == shown.program })
        .collect();
    let target = shown.oxygen_plan.map(|p| p.target);
    let oxygen_targets = vec![
        Choice { value: "", label: t.oxygen_none, selected: target.is_none() },
        Choice { value: "94-98", label: t.oxygen_standard, selected: target == Some(Spo2Target::Standard) },
        Choice { value: "88-92", label: t.oxygen_hypercapnic, selected: target == Some(Spo2Target::Hypercapnic) },
    ];
    render_status(
        status,
        RulesPage {
            ctx: PageCtx::new(v, Nav::Patients),
            t,
            patient_id: id.to_owned(),
            version: current.version.map_or_else(|| t.default_rules.to_owned(), |n| n.to_string()),
            can_edit,
            saved: extra.saved,
            error: extra.error,
            programs,
            oxygen_targets,
            oxygen: shown.oxygen_plan.is_some_and(|p| p.supplemental_oxygen),
            checks: check_views(l, shown),
            reason: extra.reason,
            csrf: v.csrf.clone(),
            preview: extra.preview,
        },
    )
}

#[derive(Debug, Deserialize)]
struct SavedQuery {
    #[serde(default)]
    saved: Option<i32>,
}

async fn editor(State(s): State<AppState>, v: Viewer, Path(id): Path<String>, Query(q): Query<SavedQuery>) -> Response {
    let current = match s.admin.rules_in_force(&v.actor, &id).await {
        Ok(c) => c,
        Err(e) => return admin_error(&v, e),
    };
    let saved = q.saved.map(|n| format!("{} {n}", text(v.lang).saved)).unwrap_or_default();
    page(&v, &id, &current, &current.rules, Extra { saved, ..Extra::default() }, StatusCode::OK)
}

/// The candidate of a posted form, or why it is refused.
fn posted(l: Lang, current: &RulesInForce, form: &HashMap<String, String>) -> Result<PatientRules, String> {
    let t = text(l);
    candidate(&current.rules, form).map_err(|e| match e {
        FormError::Program => t.bad_program.to_owned(),
        FormError::Number(name) => format!("{} {name}", t.bad_number),
    })
}

/// The editor again, with the reason the form is refused (422).
fn refused(
    v: &Viewer,
    id: &str,
    current: &RulesInForce,
    shown: &PatientRules,
    error: String,
    reason: String,
) -> Response {
    page(v, id, current, shown, Extra { error, reason, ..Extra::default() }, StatusCode::UNPROCESSABLE_ENTITY)
}

async fn preview(
    State(s): State<AppState>,
    v: Viewer,
    Path(id): Path<String>,
    CsrfForm(form): CsrfForm<HashMap<String, String>>,
) -> Response {
    let current = match s.admin.rules_in_force(&v.actor, &id).await {
        Ok(c) => c,
        Err(e) => return admin_error(&v, e),
    };
    let reason = form.get("reason").cloned().unwrap_or_default();
    let cand = match posted(v.lang, &current, &form) {
        Ok(c) => c,
        Err(m) => return refused(&v, &id, &current, &current.rules, m, reason),
    };
    let tz = current.time_zone.parse().unwrap_or(v.tz);
    match s.admin.preview_rules(&v.actor, &id, &cand).await {
        Ok(p) => {
            let extra = Extra { reason, preview: Some(preview_view(v.lang, tz, &p)), ..Extra::default() };
            page(&v, &id, &current, &cand, extra, StatusCode::OK)
        }
        Err(AdminError::Invalid(m)) => page(
            &v,
            &id,
            &current,
            &cand,
            Extra { error: m, reason, ..Extra::default() },
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        Err(e) => admin_error(&v, e),
    }
}

async fn save(
    State(s): State<AppState>,
    v: Viewer,
    Path(id): Path<String>,
    CsrfForm(form): CsrfForm<HashMap<String, String>>,
) -> Response {
    // Access first: someone else's patient is a 404, a nurse a 403, before any validation.
    if let Err(e) = s.admin.check_rules_access(&v.actor, &id).await {
        return admin_error(&v, e);
    }
    let current = match s.admin.rules_in_force(&v.actor, &id).await {
        Ok(c) => c,
        Err(e) => return admin_error(&v, e),
    };
    let reason = form.get("reason").map(|r| r.trim().to_owned()).unwrap_or_default();
    let cand = match posted(v.lang, &current, &form) {
        Ok(c) => c,
        Err(m) => return refused(&v, &id, &current, &current.rules, m, reason),
    };
    if reason.is_empty() {
        return refused(&v, &id, &current, &cand, text(v.lang).reason_required.to_owned(), reason);
    }
    match s.admin.set_rules(&v.actor, &id, &cand, Some(&reason)).await {
        Ok(view) => see_other(&format!("/patients/{id}/rules?saved={}", view.version.unwrap_or_default())),
        Err(AdminError::Invalid(m)) => page(
            &v,
            &id,
            &current,
            &cand,
            Extra { error: m, reason, ..Extra::default() },
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        Err(e) => admin_error(&v, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn inputs_carry_the_values_and_the_validated_bounds() {
        let f = fields(&PatientRules::for_program(Program::Hypertension));
        let crisis: Vec<&CheckFields> = f.iter().filter(|c| c.rule_id == "threshold.bp.crisis").collect();
        assert_eq!(crisis.len(), 2, "systolic and diastolic");
        let sys = crisis.iter().find(|c| c.code == Code::Systolic).unwrap();
        assert_eq!((sys.levels[0].value, sys.levels[0].min, sys.levels[0].max), (180.0, 0.0, 400.0));
        assert_eq!(sys.levels[0].name, "t.threshold.bp.crisis.0.0");
        assert_eq!(sys.clear.name, "c.threshold.bp.crisis.0");
        let temp = f.iter().find(|c| c.code == Code::BodyTemperature).unwrap();
        assert_eq!((temp.levels[0].min, temp.levels[0].max, temp.levels[0].step), (10.0, 50.0, 0.1));
    }

    #[test]
    fn a_changed_value_becomes_an_override_and_a_changed_program_starts_from_its_defaults() {
        let current = PatientRules::for_program(Program::Hypertension);
        let same = candidate(&current, &form(&[("program", "hypertension"), ("t.threshold.bp.crisis.0.0", "180")]));
        assert_eq!(same.unwrap(), current, "unchanged values add no override");
        let c =
            candidate(&current, &form(&[("program", "hypertension"), ("t.threshold.bp.crisis.0.0", "175,5")])).unwrap();
        assert_eq!(c.thresholds.len(), 1);
        assert_eq!(c.thresholds[0].checks[0].levels[0].value, 175.5);
        assert!(c.effective().is_ok());
        let c =
            candidate(&current, &form(&[("program", "copd"), ("oxygen_target", "88-92"), ("oxygen", "1")])).unwrap();
        assert_eq!(c.program, Program::Copd);
        assert!(c.thresholds.is_empty());
        assert!(c.check_enrolment().is_ok(), "the oxygen plan is set");
        assert_eq!(candidate(&current, &form(&[("program", "cardio")])), Err(FormError::Program));
        assert_eq!(
            candidate(&current, &form(&[("t.threshold.bp.crisis.0.0", "high")])),
            Err(FormError::Number("t.threshold.bp.crisis.0.0".into()))
        );
        assert_eq!(parse_number(" 37,5 "), Some(37.5));
        assert_eq!(parse_number("NaN"), None);
    }
}
