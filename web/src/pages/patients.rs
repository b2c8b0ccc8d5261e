//! `/patients`: the patients the viewer may see (a physician's or a nurse's
//! care teams; everyone for operators), by id, with their open episodes.

use axum::Router;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use vitalwatch_admin::model::{AlertQuery, PageQuery};

use super::{Nav, PageCtx, admin_error, render};
use crate::auth::Viewer;
use crate::i18n::Lang;
use crate::state::AppState;

/// Texts of the patient list.
#[derive(Debug)]
pub struct PatientsText {
    title: &'static str,
    id: &'static str,
    status: &'static str,
    open_episodes: &'static str,
    empty: &'static str,
    next_page: &'static str,
    active: &'static str,
    discharged: &'static str,
}

const FR: PatientsText = PatientsText {
    title: "Mes patients",
    id: "Patient",
    status: "Statut",
    open_episodes: "Alertes ouvertes",
    empty: "Aucun patient dans vos équipes de soins.",
    next_page: "Page suivante",
    active: "suivi en cours",
    discharged: "sorti",
};

const EN: PatientsText = PatientsText {
    title: "My patients",
    id: "Patient",
    status: "Status",
    open_episodes: "Open alerts",
    empty: "No patient in your care teams.",
    next_page: "Next page",
    active: "monitored",
    discharged: "discharged",
};

fn text(l: Lang) -> &'static PatientsText {
    match l {
        Lang::Fr => &FR,
        Lang::En => &EN,
    }
}

/// One row.
#[derive(Debug)]
struct Row {
    id: String,
    active: bool,
    open: usize,
}

#[derive(askama::Template)]
#[template(path = "patients.html")]
struct PatientsPage {
    ctx: PageCtx,
    t: &'static PatientsText,
    rows: Vec<Row>,
    next: String,
}

/// The routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new().route("/patients", get(list))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    #[serde(default)]
    after: Option<String>,
}

async fn list(State(s): State<AppState>, v: Viewer, Query(q): Query<ListQuery>) -> Response {
    let page = match s.admin.list_patients(&v.actor, &PageQuery { after: q.after, limit: Some(100) }).await {
        Ok(p) => p,
        Err(e) => return admin_error(&v, e),
    };
    // Open episodes of the viewer's patients (one query), counted per patient.
    let open = match s
        .admin
        .list_alerts(&v.actor, &AlertQuery { status: Some("open".into()), limit: Some(500), ..Default::default() })
        .await
    {
        Ok(a) => a.items,
        Err(e) => return admin_error(&v, e),
    };
    let rows = page
        .items
        .into_iter()
        .map(|p| Row {
            open: open.iter().filter(|a| a.patient_id == p.id).count(),
            active: p.status == "active",
            id: p.id,
        })
        .collect();
    render(PatientsPage {
        ctx: PageCtx::new(&v, Nav::Patients),
        t: text(v.lang),
        rows,
        next: page.next.unwrap_or_default(),
    })
}
