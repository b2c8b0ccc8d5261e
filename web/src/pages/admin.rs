//! `/admin/*`: the operators' pages over the same service operations as the
//! JSON API: accounts, physicians, patients with their care teams, devices
//! with their enrolments. Every change is audited by the service layer with
//! the operator and the client address.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use vitalwatch_admin::account::{Account, NewAccount};
use vitalwatch_admin::model::{
    At, CareTeamInput, ChannelsInput, DeviceView, Enrol, NewDevice, NewPatient, PageQuery, PatientView, PhysicianInput,
};

use super::{Nav, PageCtx, admin_error, render, see_other};
use crate::auth::{CsrfForm, Viewer};
use crate::fmt;
use crate::i18n::Lang;
use crate::state::AppState;

/// Texts of the operators' pages.
#[derive(Debug)]
pub struct AdminText {
    title: &'static str,
    users: &'static str,
    physicians: &'static str,
    patients: &'static str,
    devices: &'static str,
    id: &'static str,
    name: &'static str,
    email: &'static str,
    role: &'static str,
    physician: &'static str,
    language: &'static str,
    time_zone: &'static str,
    state: &'static str,
    active: &'static str,
    disabled: &'static str,
    disable: &'static str,
    enable: &'static str,
    create: &'static str,
    new_user: &'static str,
    password: &'static str,
    password_help: &'static str,
    mobile: &'static str,
    new_physician: &'static str,
    new_patient: &'static str,
    patient_id_help: &'static str,
    registered: &'static str,
    care_team: &'static str,
    responsible: &'static str,
    deputies: &'static str,
    nurses: &'static str,
    enrolled_devices: &'static str,
    new_device: &'static str,
    kind: &'static str,
    enrol: &'static str,
    unenrol: &'static str,
    retire: &'static str,
    retired: &'static str,
    current_patient: &'static str,
    next_page: &'static str,
    saved: &'static str,
    none: &'static str,
    confirm_retire: &'static str,
}

const FR: AdminText = AdminText {
    title: "Administration",
    users: "Comptes",
    physicians: "Médecins",
    patients: "Patients",
    devices: "Dispositifs",
    id: "Identifiant",
    name: "Nom",
    email: "Courriel",
    role: "Rôle",
    physician: "Médecin (annuaire)",
    language: "Langue",
    time_zone: "Fuseau horaire",
    state: "État",
    active: "actif",
    disabled: "désactivé",
    disable: "Désactiver",
    enable: "Réactiver",
    create: "Créer",
    new_user: "Nouveau compte",
    password: "Mot de passe initial",
    password_help: "Au moins 12 caractères ; vide pour un compte Pro Santé Connect / OpenID Connect uniquement.",
    mobile: "Mobile (E.164)",
    new_physician: "Ajouter ou remplacer un médecin",
    new_patient: "Inscrire un patient",
    patient_id_help: "Identifiant pseudonyme ; jamais un nom ni un NIR.",
    registered: "Inscrit le",
    care_team: "Équipe de soins",
    responsible: "Médecin responsable",
    deputies: "Suppléants (identifiants séparés par des virgules, dans l'ordre)",
    nurses: "Infirmier·e·s (comptes, séparés par des virgules)",
    enrolled_devices: "Dispositifs attribués",
    new_device: "Enregistrer un dispositif",
    kind: "Type",
    enrol: "Attribuer au patient",
    unenrol: "Retirer du patient",
    retire: "Mettre au rebut",
    retired: "au rebut",
    current_patient: "Patient actuel",
    next_page: "Page suivante",
    saved: "Enregistré.",
    none: "aucun",
    confirm_retire: "Mettre ce dispositif au rebut ? Ses mesures seront refusées.",
};

const EN: AdminText = AdminText {
    title: "Operations",
    users: "Accounts",
    physicians: "Physicians",
    patients: "Patients",
    devices: "Devices",
    id: "Id",
    name: "Name",
    email: "E-mail",
    role: "Role",
    physician: "Physician (directory)",
    language: "Language",
    time_zone: "Time zone",
    state: "State",
    active: "active",
    disabled: "disabled",
    disable: "Disable",
    enable: "Enable",
    create: "Create",
    new_user: "New account",
    password: "Initial password",
    password_help: "At least 12 characters; empty for an OpenID-Connect-only account.",
    mobile: "Mobile (E.164)",
    new_physician: "Add or replace a physician",
    new_patient: "Register a patient",
    patient_id_help: "Pseudonymous id; never a name or a national number.",
    registered: "Registered",
    care_team: "Care team",
    responsible: "Responsible physician",
    deputies: "Deputies (ids separated by commas, in order)",
    nurses: "Nurses (accounts, separated by commas)",
    enrolled_devices: "Enrolled devices",
    new_device: "Register a device",
    kind: "Kind",
    enrol: "Enrol to patient",
    unenrol: "Unenrol",
    retire: "Retire",
    retired: "retired",
    current_patient: "Current patient",
    next_page: "Next page",
    saved: "Saved.",
    none: "none",
    confirm_retire: "Retire this device? Its readings will be refused.",
};

fn text(l: Lang) -> &'static AdminText {
    match l {
        Lang::Fr => &FR,
        Lang::En => &EN,
    }
}

/// The routes of the operators' pages.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin", get(|| async { see_other("/admin/users") }))
        .route("/admin/users", get(users).post(create_user))
        .route("/admin/users/{id}/disable", post(disable_user))
        .route("/admin/users/{id}/enable", post(enable_user))
        .route("/admin/physicians", get(physicians).post(save_physician))
        .route("/admin/patients", get(patients).post(add_patient))
        .route("/admin/patients/{id}", get(patient).post(save_care_team))
        .route("/admin/devices", get(devices).post(add_device))
        .route("/admin/devices/{id}/enrol", post(enrol))
        .route("/admin/devices/{id}/unenrol", post(unenrol))
        .route("/admin/devices/{id}/retire", post(retire))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    saved: Option<String>,
}

impl ListQuery {
    fn page(&self) -> PageQuery {
        PageQuery { after: self.after.clone(), limit: Some(100) }
    }
}

fn notice(t: &AdminText, q: &ListQuery) -> String {
    if q.saved.is_some() { t.saved.into() } else { String::new() }
}

// ---------------------------------------------------------------- accounts

#[derive(askama::Template)]
#[template(path = "admin_users.html")]
struct UsersPage {
    ctx: PageCtx,
    t: &'static AdminText,
    notice: String,
    users: Vec<Account>,
}

async fn users(State(s): State<AppState>, v: Viewer, Query(q): Query<ListQuery>) -> Response {
    let t = text(v.lang);
    match s.admin.list_accounts(&v.actor).await {
        Ok(users) => render(UsersPage { ctx: PageCtx::new(&v, Nav::Admin), t, notice: notice(t, &q), users }),
        Err(e) => admin_error(&v, e),
    }
}

#[derive(Debug, Deserialize)]
struct UserForm {
    id: String,
    display_name: String,
    #[serde(default)]
    email: String,
    role: String,
    #[serde(default)]
    physician_id: String,
    language: String,
    time_zone: String,
    #[serde(default)]
    password: String,
}

fn opt(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

fn list(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|x| !x.is_empty()).map(str::to_owned).collect()
}

async fn create_user(State(s): State<AppState>, v: Viewer, CsrfForm(f): CsrfForm<UserForm>) -> Response {
    let new = NewAccount {
        id: f.id.trim().to_ascii_lowercase(),
        display_name: f.display_name,
        email: opt(&f.email),
        role: f.role,
        physician_id: opt(&f.physician_id),
        language: Some(f.language),
        time_zone: Some(f.time_zone.trim().to_owned()),
        password: (!f.password.is_empty()).then_some(f.password),
    };
    match s.admin.create_account(&v.actor, &new).await {
        Ok(_) => see_other("/admin/users?saved=1"),
        Err(e) => admin_error(&v, e),
    }
}

#[derive(Debug, Deserialize)]
struct Empty {}

async fn disable_user(State(s): State<AppState>, v: Viewer, Path(id): Path<String>, _f: CsrfForm<Empty>) -> Response {
    match s.admin.set_account_disabled(&v.actor, &id, true).await {
        Ok(()) => see_other("/admin/users?saved=1"),
        Err(e) => admin_error(&v, e),
    }
}

async fn enable_user(State(s): State<AppState>, v: Viewer, Path(id): Path<String>, _f: CsrfForm<Empty>) -> Response {
    match s.admin.set_account_disabled(&v.actor, &id, false).await {
        Ok(()) => see_other("/admin/users?saved=1"),
        Err(e) => admin_error(&v, e),
    }
}

// ---------------------------------------------------------------- physicians

/// A physician row.
#[derive(Debug)]
struct PhysicianRow {
    id: String,
    name: String,
    email: String,
    mobile: String,
    time_zone: String,
}

#[derive(askama::Template)]
#[template(path = "admin_physicians.html")]
struct PhysiciansPage {
    ctx: PageCtx,
    t: &'static AdminText,
    notice: String,
    rows: Vec<PhysicianRow>,
    next: String,
}

async fn physicians(State(s): State<AppState>, v: Viewer, Query(q): Query<ListQuery>) -> Response {
    let t = text(v.lang);
    match s.admin.list_physicians(&v.actor, &q.page()).await {
        Ok(page) => {
            let field = |e: &serde_json::Value, k: &str| e.get(k).and_then(|x| x.as_str()).unwrap_or("").to_owned();
            let rows = page
                .items
                .iter()
                .map(|p| PhysicianRow {
                    id: p.id.clone(),
                    name: field(&p.entry, "name"),
                    email: field(&p.entry, "email"),
                    mobile: field(&p.entry, "mobile"),
                    time_zone: field(&p.entry, "time_zone"),
                })
                .collect();
            let next = page.next.unwrap_or_default();
            render(PhysiciansPage { ctx: PageCtx::new(&v, Nav::Admin), t, notice: notice(t, &q), rows, next })
        }
        Err(e) => admin_error(&v, e),
    }
}

#[derive(Debug, Deserialize)]
struct PhysicianForm {
    id: String,
    name: String,
    email: String,
    #[serde(default)]
    mobile: String,
    time_zone: String,
    #[serde(default)]
    language: String,
}

async fn save_physician(State(s): State<AppState>, v: Viewer, CsrfForm(f): CsrfForm<PhysicianForm>) -> Response {
    let input = PhysicianInput {
        name: f.name,
        email: f.email.trim().to_owned(),
        mobile: opt(&f.mobile),
        time_zone: opt(&f.time_zone),
        language: opt(&f.language),
        quiet_hours: None,
        quiet_hours_bypass: None,
        channels: ChannelsInput::default(),
        hourly_cap: None,
    };
    match s.admin.upsert_physician(&v.actor, f.id.trim(), &input).await {
        Ok(_) => see_other("/admin/physicians?saved=1"),
        Err(e) => admin_error(&v, e),
    }
}

// ---------------------------------------------------------------- patients

#[derive(askama::Template)]
#[template(path = "admin_patients.html")]
struct PatientsPage {
    ctx: PageCtx,
    t: &'static AdminText,
    notice: String,
    rows: Vec<(PatientView, String)>,
    next: String,
}

async fn patients(State(s): State<AppState>, v: Viewer, Query(q): Query<ListQuery>) -> Response {
    let t = text(v.lang);
    match s.admin.list_patients(&v.actor, &q.page()).await {
        Ok(page) => {
            let rows = page.items.into_iter().map(|p| (p.clone(), fmt::date(v.lang, v.tz, p.created_at))).collect();
            let next = page.next.unwrap_or_default();
            render(PatientsPage { ctx: PageCtx::new(&v, Nav::Admin), t, notice: notice(t, &q), rows, next })
        }
        Err(e) => admin_error(&v, e),
    }
}

#[derive(Debug, Deserialize)]
struct PatientForm {
    id: String,
}

async fn add_patient(State(s): State<AppState>, v: Viewer, CsrfForm(f): CsrfForm<PatientForm>) -> Response {
    let id = f.id.trim().to_owned();
    match s.admin.add_patient(&v.actor, &NewPatient { id: id.clone() }).await {
        Ok(_) => see_other(&format!("/admin/patients/{}", super::login::encode(&id))),
        Err(e) => admin_error(&v, e),
    }
}

#[derive(askama::Template)]
#[template(path = "admin_patient.html")]
struct PatientPage {
    ctx: PageCtx,
    t: &'static AdminText,
    notice: String,
    id: String,
    responsible: String,
    deputies: String,
    nurses: String,
    devices: Vec<String>,
}

async fn patient(State(s): State<AppState>, v: Viewer, Path(id): Path<String>, Query(q): Query<ListQuery>) -> Response {
    let t = text(v.lang);
    let detail = match s.admin.patient(&v.actor, &id).await {
        Ok(d) => d,
        Err(e) => return admin_error(&v, e),
    };
    let nurses = match s.admin.care_team_nurses(&v.actor, &id).await {
        Ok(n) => n,
        Err(e) => return admin_error(&v, e),
    };
    let team = detail.care_team.unwrap_or_default();
    let responsible = team.get("responsible").and_then(|r| r.as_str()).unwrap_or("").to_owned();
    let deputies = team
        .get("deputies")
        .and_then(|d| d.as_array())
        .map(|d| d.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(", "))
        .unwrap_or_default();
    render(PatientPage {
        ctx: PageCtx::new(&v, Nav::Admin),
        t,
        notice: notice(t, &q),
        id,
        responsible,
        deputies,
        nurses: nurses.join(", "),
        devices: detail.devices,
    })
}

#[derive(Debug, Deserialize)]
struct CareTeamForm {
    responsible: String,
    #[serde(default)]
    deputies: String,
    #[serde(default)]
    nurses: String,
}

async fn save_care_team(
    State(s): State<AppState>,
    v: Viewer,
    Path(id): Path<String>,
    CsrfForm(f): CsrfForm<CareTeamForm>,
) -> Response {
    // The escalation policy is kept as it is (edited through the API or the CLI).
    let policy = match s.admin.care_team(&v.actor, &id).await {
        Ok(team) => team.get("policy").cloned(),
        Err(vitalwatch_admin::AdminError::NotFound(_)) => None,
        Err(e) => return admin_error(&v, e),
    };
    let input = CareTeamInput {
        responsible: f.responsible.trim().to_owned(),
        deputies: list(&f.deputies),
        policy,
        nurses: Some(list(&f.nurses)),
    };
    match s.admin.set_care_team(&v.actor, &id, &input).await {
        Ok(_) => see_other(&format!("/admin/patients/{}?saved=1", super::login::encode(&id))),
        Err(e) => admin_error(&v, e),
    }
}

// ---------------------------------------------------------------- devices

/// A device row: id, kind-less view, current patient.
#[derive(Debug)]
struct DeviceRow {
    id: String,
    retired: bool,
    patient: String,
}

fn device_row(d: &DeviceView) -> DeviceRow {
    DeviceRow {
        id: d.id.clone(),
        retired: d.retired_at.is_some(),
        patient: d
            .enrolments
            .iter()
            .rev()
            .find(|e| e.valid_to.is_none())
            .map(|e| e.patient_id.clone())
            .unwrap_or_default(),
    }
}

#[derive(askama::Template)]
#[template(path = "admin_devices.html")]
struct DevicesPage {
    ctx: PageCtx,
    t: &'static AdminText,
    notice: String,
    rows: Vec<DeviceRow>,
    next: String,
}

async fn devices(State(s): State<AppState>, v: Viewer, Query(q): Query<ListQuery>) -> Response {
    let t = text(v.lang);
    match s.admin.list_devices(&v.actor, &q.page()).await {
        Ok(page) => {
            let rows = page.items.iter().map(device_row).collect();
            let next = page.next.unwrap_or_default();
            render(DevicesPage { ctx: PageCtx::new(&v, Nav::Admin), t, notice: notice(t, &q), rows, next })
        }
        Err(e) => admin_error(&v, e),
    }
}

#[derive(Debug, Deserialize)]
struct DeviceForm {
    id: String,
    kind: String,
}

async fn add_device(State(s): State<AppState>, v: Viewer, CsrfForm(f): CsrfForm<DeviceForm>) -> Response {
    match s.admin.add_device(&v.actor, &NewDevice { id: f.id.trim().to_owned(), kind: f.kind }).await {
        Ok(_) => see_other("/admin/devices?saved=1"),
        Err(e) => admin_error(&v, e),
    }
}

#[derive(Debug, Deserialize)]
struct EnrolForm {
    patient: String,
}

async fn enrol(
    State(s): State<AppState>,
    v: Viewer,
    Path(id): Path<String>,
    CsrfForm(f): CsrfForm<EnrolForm>,
) -> Response {
    match s.admin.enrol_device(&v.actor, &id, &Enrol { patient: f.patient.trim().to_owned(), from: None }).await {
        Ok(_) => see_other("/admin/devices?saved=1"),
        Err(e) => admin_error(&v, e),
    }
}

async fn unenrol(State(s): State<AppState>, v: Viewer, Path(id): Path<String>, _f: CsrfForm<Empty>) -> Response {
    match s.admin.unenrol_device(&v.actor, &id, &At::default()).await {
        Ok(()) => see_other("/admin/devices?saved=1"),
        Err(e) => admin_error(&v, e),
    }
}

async fn retire(State(s): State<AppState>, v: Viewer, Path(id): Path<String>, _f: CsrfForm<Empty>) -> Response {
    match s.admin.retire_device(&v.actor, &id, &At::default()).await {
        Ok(()) => see_other("/admin/devices?saved=1"),
        Err(e) => admin_error(&v, e),
    }
}
