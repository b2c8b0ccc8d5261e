//! The pages. Each module owns its routes (`routes()`), its askama templates
//! (under `web/templates/`, extending `base.html` with a `ctx: PageCtx` field)
//! and its texts in French and English.

use askama::Template;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use vitalwatch_admin::AdminError;

use crate::auth::Viewer;
use crate::i18n::{self, Common, Lang};

pub mod account;
pub mod admin;
pub mod episode;
pub mod expertise;
pub mod home;
pub mod login;
pub mod monitoring;
pub mod oidc_login;
pub mod patient;
pub mod patients;
pub mod reports;
pub mod rules;
pub mod worklist;

/// The navigation entries (the active one is marked `aria-current="page"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    /// The worklist.
    Worklist,
    /// Patients.
    Patients,
    /// Tele-expertise.
    Expertise,
    /// Operations (operators).
    Admin,
    /// My account.
    Account,
    /// The monthly activity report.
    Reports,
    /// None (sign-in, errors).
    None,
}

/// What the layout (`base.html`) needs: language, shared texts, who is signed
/// in and what their role may reach, the CSRF token for the sign-out form.
#[derive(Debug, Clone)]
pub struct PageCtx {
    /// `fr` or `en`.
    pub lang: &'static str,
    /// Shared texts.
    pub t: &'static Common,
    /// The signed-in user's display name (empty before sign-in).
    pub user_name: String,
    /// Their role, translated.
    pub role: &'static str,
    /// The CSRF token (sign-out form).
    pub csrf: String,
    /// The active navigation entry.
    pub active: Nav,
    /// Signed in.
    pub signed_in: bool,
    /// Sees the worklist and patients (not specialists).
    pub clinical: bool,
    /// Sees the operations pages.
    pub operator: bool,
    /// Sees the tele-expertise inbox.
    pub expertise: bool,
    /// Version of the static assets (cache busting).
    pub assets: &'static str,
}

impl PageCtx {
    /// The layout context of `v`'s page in section `active`.
    pub fn new(v: &Viewer, active: Nav) -> PageCtx {
        let role = v.user.role.as_str();
        let t = i18n::common(v.lang);
        PageCtx {
            lang: v.lang.code(),
            t,
            user_name: v.user.display_name.clone(),
            role: t.role(role),
            csrf: v.csrf.clone(),
            active,
            signed_in: true,
            clinical: role != "specialist",
            operator: role == "operator",
            expertise: role != "operator",
            assets: crate::assets::version(),
        }
    }

    /// The layout context before sign-in.
    pub fn anonymous(lang: Lang) -> PageCtx {
        PageCtx {
            lang: lang.code(),
            t: i18n::common(lang),
            user_name: String::new(),
            role: "",
            csrf: String::new(),
            active: Nav::None,
            signed_in: false,
            clinical: false,
            operator: false,
            expertise: false,
            assets: crate::assets::version(),
        }
    }

    /// `aria-current="page"` for the active entry (used by `base.html`).
    pub fn current(&self, nav: &str) -> &'static str {
        let is = match nav {
            "worklist" => self.active == Nav::Worklist,
            "patients" => self.active == Nav::Patients,
            "expertise" => self.active == Nav::Expertise,
            "admin" => self.active == Nav::Admin,
            "account" => self.active == Nav::Account,
            "reports" => self.active == Nav::Reports,
            _ => false,
        };
        if is { "page" } else { "false" }
    }
}

/// Renders a page: 200 `text/html`, or the 500 page if the template fails.
pub fn render(t: impl Template) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(message = "Page template failed.", error = %e);
            (StatusCode::INTERNAL_SERVER_ERROR, Html("<!DOCTYPE html><title>500</title><p>500</p>")).into_response()
        }
    }
}

/// Renders a page with `status`.
pub fn render_status(status: StatusCode, t: impl Template) -> Response {
    let mut r = render(t);
    if r.status() == StatusCode::OK {
        *r.status_mut() = status;
    }
    r
}

/// Why an error page is shown.
#[derive(Debug, Clone)]
pub enum ErrorKind {
    /// Unknown, or not the viewer's patient (the same answer on purpose).
    NotFound,
    /// The role does not allow it.
    Forbidden,
    /// CSRF token missing or wrong, or a cross-site post.
    FormExpired,
    /// Invalid input, with the specific reason.
    Invalid(String),
    /// Conflicts with the current state, with the reason.
    Conflict(String),
    /// The database is unavailable.
    Unavailable,
    /// Anything else (logged with details; the page says nothing more).
    Internal,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    ctx: PageCtx,
    message: String,
    detail: String,
}

/// An error page in the viewer's language (French before sign-in).
pub fn error_page(v: Option<&Viewer>, status: StatusCode, kind: Option<ErrorKind>) -> Response {
    let ctx = match v {
        Some(v) => PageCtx::new(v, Nav::None),
        None => PageCtx::anonymous(Lang::default()),
    };
    let t = ctx.t;
    let kind = kind.unwrap_or(match status {
        StatusCode::NOT_FOUND => ErrorKind::NotFound,
        StatusCode::FORBIDDEN => ErrorKind::Forbidden,
        StatusCode::SERVICE_UNAVAILABLE => ErrorKind::Unavailable,
        _ => ErrorKind::Internal,
    });
    let (message, detail) = match kind {
        ErrorKind::NotFound => (t.not_found, String::new()),
        ErrorKind::Forbidden => (t.forbidden, String::new()),
        ErrorKind::FormExpired => (t.form_expired, String::new()),
        ErrorKind::Invalid(d) | ErrorKind::Conflict(d) => (t.error_title, d),
        ErrorKind::Unavailable => (t.unavailable, String::new()),
        ErrorKind::Internal => (t.internal, String::new()),
    };
    render_status(status, ErrorPage { ctx, message: message.into(), detail })
}

/// The error page of a failed service operation.
pub fn admin_error(v: &Viewer, e: AdminError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let kind = match e {
        AdminError::NotFound(_) => ErrorKind::NotFound,
        AdminError::Forbidden(_) => ErrorKind::Forbidden,
        AdminError::Invalid(m) => ErrorKind::Invalid(m),
        AdminError::Conflict(m) => ErrorKind::Conflict(m),
        AdminError::Unavailable(m) => {
            tracing::warn!(message = "Page failed: database unavailable.", error = %m);
            ErrorKind::Unavailable
        }
        AdminError::Internal(m) => {
            tracing::error!(message = "Page failed.", error = %m);
            ErrorKind::Internal
        }
        AdminError::Unauthenticated | AdminError::TokenExpired => ErrorKind::Forbidden,
    };
    error_page(Some(v), status, Some(kind))
}

/// A 303 redirect (after a successful POST).
pub fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_owned())]).into_response()
}
