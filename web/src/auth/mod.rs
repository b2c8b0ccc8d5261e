//! Who is signed in: session cookies ([`cookies`]), the [`extract::Viewer`]
//! of a page and the CSRF-checked form extractor ([`extract::CsrfForm`]);
//! OpenID Connect sign-in ([`oidc`]).
//! Accounts, passwords and sessions are stored by the admin service layer
//! (`vitalwatch_admin::service::accounts`).

pub mod cookies;
pub mod extract;
pub mod oidc;

pub use extract::{CsrfForm, Viewer};
