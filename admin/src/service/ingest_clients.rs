//! Credentials of the HTTP ingestion endpoint (docs/http-ingest.md): per
//! device (may post only for its device) or per app (may post for the devices
//! and the patients' manual entries it was granted). Operators only
//! ([`Operation::ManageIngestClients`]); every change is audited. The secret is
//! returned once and stored as its SHA-256. The `ingest` role reloads the
//! credentials every `ingest.http_credentials_refresh_secs`, so a revocation
//! takes effect within that period.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use vitalwatch_schemas::{DeviceId, PatientId};

use super::AdminService;
use crate::actor::Actor;
use crate::error::AdminError;
use crate::policy::Operation;
use crate::store::ingest_clients::{self, NewIngestClient};
use crate::token;

/// Prefix of every ingest credential (recognizable in secret scanners).
pub const PREFIX: &str = "vwi_";

/// An ingest credential (never its secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct IngestClientView {
    /// Name (unique among active credentials).
    pub name: String,
    /// `device` or `app`.
    pub kind: String,
    /// Creation.
    pub created_at: DateTime<Utc>,
    /// Who created it.
    pub created_by: String,
    /// Revocation.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Devices it may post readings and status for.
    pub devices: Vec<String>,
    /// Patients it may post manual entries for.
    pub patients: Vec<String>,
}

/// A credential to create (`POST /v1/ingest-clients`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewIngestClientRequest {
    /// Name: 1-64 of A-Z a-z 0-9 _ . -
    pub name: String,
    /// True for an app credential; false for a device credential (exactly one device).
    #[serde(default)]
    pub app: bool,
    /// Devices it may post for.
    #[serde(default)]
    pub devices: Vec<String>,
    /// Patients it may post manual entries for (app credentials).
    #[serde(default)]
    pub patients: Vec<String>,
}

/// A created credential: the secret, shown only now.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedIngestClient {
    /// The bearer secret (`vwi_` and 64 hex digits); stored only as a hash.
    pub secret: String,
    /// The credential.
    pub client: IngestClientView,
}

impl AdminService {
    /// Creates an ingest credential; returns the secret (shown once) and its record.
    pub async fn create_ingest_client(
        &self,
        actor: &Actor,
        req: &NewIngestClientRequest,
    ) -> Result<CreatedIngestClient, AdminError> {
        self.allow(actor, Operation::ManageIngestClients)?;
        let name = req.name.as_str();
        if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
            return Err(AdminError::Invalid("ingest client names are 1-64 characters of A-Z a-z 0-9 _ . -".into()));
        }
        let mut devices = Vec::with_capacity(req.devices.len());
        for d in &req.devices {
            devices.push(DeviceId::new(d.clone()).map_err(AdminError::invalid)?.to_string());
        }
        let mut patients = Vec::with_capacity(req.patients.len());
        for p in &req.patients {
            patients.push(PatientId::new(p.clone()).map_err(AdminError::invalid)?.to_string());
        }
        devices.sort();
        devices.dedup();
        patients.sort();
        patients.dedup();
        let kind = if req.app {
            if devices.is_empty() && patients.is_empty() {
                return Err(AdminError::Invalid("an app credential needs at least one --device or --patient".into()));
            }
            "app"
        } else {
            if devices.len() != 1 || !patients.is_empty() {
                return Err(AdminError::Invalid(
                    "a device credential names exactly one --device and no --patient (use --app for more)".into(),
                ));
            }
            "device"
        };
        let secret = format!("{PREFIX}{}", token::generate().trim_start_matches(token::PREFIX));
        let new = NewIngestClient {
            name: name.to_owned(),
            kind: kind.to_owned(),
            hash: token::hash(&secret),
            created_by: actor.name.clone(),
            devices: devices.clone(),
            patients: patients.clone(),
        };
        let details = json!({ "kind": kind, "devices": devices, "patients": patients });
        let entry = self.entry(actor, "ingest_client.create", ("ingest_client", name), None, details);
        self.audited(async |c| {
            ingest_clients::insert(c, &new).await?;
            Ok(((), Some(entry)))
        })
        .await?;
        let client = self
            .list_ingest_clients(actor)
            .await?
            .into_iter()
            .rfind(|c| c.name == name && c.revoked_at.is_none())
            .ok_or_else(|| AdminError::NotFound(format!("ingest client {name:?} vanished")))?;
        Ok(CreatedIngestClient { secret, client })
    }

    /// Revokes the active ingest credential `name`.
    pub async fn revoke_ingest_client(&self, actor: &Actor, name: &str) -> Result<(), AdminError> {
        self.allow(actor, Operation::ManageIngestClients)?;
        let entry = self.entry(actor, "ingest_client.revoke", ("ingest_client", name), None, json!({}));
        self.audited(async |c| {
            if !ingest_clients::revoke(c, name).await? {
                return Err(AdminError::NotFound(format!("no active ingest client named {name:?}")));
            }
            Ok(((), Some(entry)))
        })
        .await
    }

    /// Every ingest credential, revoked ones too (never secrets).
    pub async fn list_ingest_clients(&self, actor: &Actor) -> Result<Vec<IngestClientView>, AdminError> {
        self.allow(actor, Operation::ManageIngestClients)?;
        self.db.run(async |c| Ok::<_, AdminError>(ingest_clients::list(c).await?)).await
    }
}
