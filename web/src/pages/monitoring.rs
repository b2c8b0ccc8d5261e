//! The patient page's monitoring section (the lifecycle): whether the
//! patient is monitored, and their monitoring periods (programme, prescriber,
//! start, planned end, consent, end and its reason).

use chrono_tz::Tz;
use vitalwatch_admin::service::lifecycle::PeriodsView;

use crate::fmt;
use crate::i18n::Lang;

/// The section's texts.
#[derive(Debug)]
pub struct MonitoringText {
    pub(crate) title: &'static str,
    pub(crate) monitored: &'static str,
    pub(crate) discharged: &'static str,
    pub(crate) no_periods: &'static str,
    pub(crate) program: &'static str,
    pub(crate) prescriber: &'static str,
    pub(crate) start: &'static str,
    pub(crate) planned_end: &'static str,
    pub(crate) consent: &'static str,
    pub(crate) end: &'static str,
    pub(crate) open: &'static str,
    pub(crate) not_recorded: &'static str,
}

const FR: MonitoringText = MonitoringText {
    title: "Télésurveillance",
    monitored: "Patient télésurveillé",
    discharged: "Télésurveillance terminée : aucune alerte, mesures refusées",
    no_periods: "Aucune période d'inclusion enregistrée.",
    program: "Programme",
    prescriber: "Prescripteur",
    start: "Début",
    planned_end: "Fin prévue",
    consent: "Consentement",
    end: "Fin",
    open: "en cours",
    not_recorded: "non enregistré",
};

const EN: MonitoringText = MonitoringText {
    title: "Remote monitoring",
    monitored: "Patient under monitoring",
    discharged: "Monitoring ended: no alerts, readings refused",
    no_periods: "No monitoring period recorded.",
    program: "Programme",
    prescriber: "Prescriber",
    start: "Start",
    planned_end: "Planned end",
    consent: "Consent",
    end: "End",
    open: "ongoing",
    not_recorded: "not recorded",
};

/// One period, formatted.
#[derive(Debug)]
pub struct PeriodRow {
    pub(crate) program: String,
    pub(crate) prescriber: String,
    pub(crate) start: String,
    pub(crate) planned_end: String,
    pub(crate) consent: String,
    pub(crate) end: String,
}

/// The section, ready to render.
#[derive(Debug)]
pub struct MonitoringView {
    /// Texts.
    pub t: &'static MonitoringText,
    /// True while monitored.
    pub active: bool,
    /// Periods, newest first.
    pub periods: Vec<PeriodRow>,
}

fn end_reason(l: Lang, r: &str) -> &'static str {
    match l {
        Lang::Fr => match r {
            "discharged" => "sortie",
            "end_of_programme" => "fin du programme",
            "deceased" => "décès",
            "transferred" => "transfert",
            _ => "autre",
        },
        Lang::En => match r {
            "discharged" => "discharged",
            "end_of_programme" => "end of programme",
            "deceased" => "deceased",
            "transferred" => "transferred",
            _ => "other",
        },
    }
}

/// The section of `v`, in `l`, times in `tz`.
pub fn view(v: &PeriodsView, l: Lang, tz: Tz) -> MonitoringView {
    let t = match l {
        Lang::Fr => &FR,
        Lang::En => &EN,
    };
    let periods = v
        .periods
        .iter()
        .rev()
        .map(|p| PeriodRow {
            program: p.program.clone(),
            prescriber: p.prescriber.clone(),
            start: fmt::date(l, tz, p.start),
            planned_end: p.planned_end.map_or_else(|| "–".into(), |e| fmt::date(l, tz, e)),
            consent: match (&p.consent_date, &p.consent_by) {
                (Some(d), Some(by)) => format!("{} ({by})", fmt::date(l, tz, *d)),
                (Some(d), None) => fmt::date(l, tz, *d),
                _ => t.not_recorded.to_owned(),
            },
            end: match (&p.ended_at, &p.end_reason) {
                (Some(e), Some(r)) => {
                    let note = p.end_note.as_deref().map(|n| format!(" – {n}")).unwrap_or_default();
                    format!("{} ({}){note}", fmt::date(l, tz, *e), end_reason(l, r))
                }
                _ => t.open.to_owned(),
            },
        })
        .collect();
    MonitoringView { t, active: v.status == "active", periods }
}
