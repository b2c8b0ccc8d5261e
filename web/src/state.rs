//! What every handler shares.

use std::sync::Arc;

use vitalwatch_admin::AdminService;

use crate::settings::WebSettings;

/// The workspace's shared state: the admin service layer (same authorization
/// as the JSON API) and the settings.
#[derive(Debug)]
pub struct WebState {
    /// The service layer.
    pub admin: Arc<AdminService>,
    /// `[web]`.
    pub settings: WebSettings,
}

/// The router state.
pub type AppState = Arc<WebState>;

impl WebState {
    /// Whether OpenID Connect sign-in is configured.
    pub fn oidc_enabled(&self) -> bool {
        false
    }

    /// The state over `admin` with `settings`.
    pub fn new(admin: Arc<AdminService>, settings: WebSettings) -> AppState {
        Arc::new(WebState { admin, settings })
    }
}
