//! `/account`: the signed-in user's language, time zone and password.

use axum::Router;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;

use super::{Nav, PageCtx, admin_error, render, see_other};
use crate::auth::{CsrfForm, Viewer};
use crate::i18n::Lang;
use crate::state::AppState;

/// Texts of the account page.
#[derive(Debug)]
pub struct AccountText {
    title: &'static str,
    account_id: &'static str,
    role: &'static str,
    email: &'static str,
    prefs: &'static str,
    language: &'static str,
    time_zone: &'static str,
    time_zone_help: &'static str,
    password_title: &'static str,
    current_password: &'static str,
    new_password: &'static str,
    password_help: &'static str,
    change_password: &'static str,
    saved: &'static str,
}

const FR: AccountText = AccountText {
    title: "Mon compte",
    account_id: "Identifiant",
    role: "Rôle",
    email: "Courriel",
    prefs: "Langue et fuseau horaire",
    language: "Langue",
    time_zone: "Fuseau horaire",
    time_zone_help: "Nom IANA, par exemple Europe/Paris ou America/Martinique.",
    password_title: "Mot de passe",
    current_password: "Mot de passe actuel",
    new_password: "Nouveau mot de passe",
    password_help: "Au moins 12 caractères. Vos autres sessions seront fermées.",
    change_password: "Changer le mot de passe",
    saved: "Préférences enregistrées.",
};

const EN: AccountText = AccountText {
    title: "My account",
    account_id: "User name",
    role: "Role",
    email: "E-mail",
    prefs: "Language and time zone",
    language: "Language",
    time_zone: "Time zone",
    time_zone_help: "IANA name, e.g. Europe/Paris or America/Martinique.",
    password_title: "Password",
    current_password: "Current password",
    new_password: "New password",
    password_help: "At least 12 characters. Your other sessions will be closed.",
    change_password: "Change password",
    saved: "Preferences saved.",
};

fn text(l: Lang) -> &'static AccountText {
    match l {
        Lang::Fr => &FR,
        Lang::En => &EN,
    }
}

#[derive(askama::Template)]
#[template(path = "account.html")]
struct AccountPage {
    ctx: PageCtx,
    t: &'static AccountText,
    id: String,
    email: String,
    time_zone: String,
    notice: String,
    local: bool,
}

/// The routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/account", get(page))
        .route("/account/prefs", post(prefs))
        .route("/account/password", post(password))
}

#[derive(Debug, Deserialize)]
struct Notice {
    #[serde(default)]
    saved: Option<String>,
}

async fn page(State(state): State<AppState>, v: Viewer, Query(n): Query<Notice>) -> Response {
    let t = text(v.lang);
    render(AccountPage {
        ctx: PageCtx::new(&v, Nav::Account),
        t,
        id: v.user.id.clone(),
        email: v.user.email.clone().unwrap_or_default(),
        time_zone: v.user.time_zone.clone(),
        notice: if n.saved.is_some() { t.saved.into() } else { String::new() },
        local: state.settings.local_accounts,
    })
}

#[derive(Debug, Deserialize)]
struct Prefs {
    language: String,
    time_zone: String,
}

async fn prefs(State(state): State<AppState>, v: Viewer, CsrfForm(f): CsrfForm<Prefs>) -> Response {
    match state.admin.set_account_prefs(&v.actor, &v.user, &f.language, f.time_zone.trim()).await {
        Ok(()) => see_other("/account?saved=1"),
        Err(e) => admin_error(&v, e),
    }
}

#[derive(Debug, Deserialize)]
struct Password {
    #[serde(default)]
    current: String,
    new_password: String,
}

async fn password(State(state): State<AppState>, v: Viewer, CsrfForm(f): CsrfForm<Password>) -> Response {
    let current = (!f.current.is_empty()).then_some(f.current.as_str());
    match state.admin.set_account_password(&v.actor, &v.user, current, &f.new_password).await {
        // Every session of the account ended (this one too): sign in again.
        Ok(()) => see_other("/login?signed_out=1"),
        Err(e) => admin_error(&v, e),
    }
}
