//! What every handler shares.

use std::sync::Arc;

use vitalwatch_admin::AdminService;

use crate::auth::oidc::{OidcClient, OidcError};
use crate::settings::WebSettings;

/// The workspace's shared state: the admin service layer (same authorization
/// as the JSON API), the settings, and the OpenID Connect client once
/// discovered.
#[derive(Debug)]
pub struct WebState {
    /// The service layer.
    pub admin: Arc<AdminService>,
    /// `[web]`.
    pub settings: WebSettings,
    /// Discovered on the first OpenID Connect sign-in (a provider outage at
    /// start-up does not stop password sign-in), retried after a failure.
    oidc: tokio::sync::OnceCell<Arc<OidcClient>>,
}

/// The router state.
pub type AppState = Arc<WebState>;

impl WebState {
    /// The state over `admin` with `settings`.
    pub fn new(admin: Arc<AdminService>, settings: WebSettings) -> AppState {
        Arc::new(WebState { admin, settings, oidc: tokio::sync::OnceCell::new() })
    }

    /// Whether OpenID Connect sign-in is configured.
    pub fn oidc_enabled(&self) -> bool {
        self.settings.oidc.is_some()
    }

    /// The OpenID Connect client, discovering the provider on first use;
    /// `None` when not configured.
    pub async fn oidc(&self) -> Option<Result<Arc<OidcClient>, OidcError>> {
        let settings = self.settings.oidc.as_ref()?;
        Some(self.oidc.get_or_try_init(|| async { OidcClient::discover(settings).await.map(Arc::new) }).await.cloned())
    }
}
