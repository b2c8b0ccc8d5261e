//! The credentials of the HTTP ingestion endpoint (`ingest_clients`,
//! `ingest_client_grants`; migration 0035): written here by operators, read
//! by the `ingest` role (vitalwatch_ingest::http::credentials).

use chrono::{DateTime, Utc};
use vitalwatch_platform::store::StoreError;
use vitalwatch_platform::store::db::Conn;
use vitalwatch_platform::{args, sql};

use crate::service::ingest_clients::IngestClientView;

/// A credential to store (its secret only as a hash).
#[derive(Debug, Clone)]
pub struct NewIngestClient {
    /// Unique among active credentials.
    pub name: String,
    /// `device` or `app`.
    pub kind: String,
    /// SHA-256 of the secret, hex.
    pub hash: String,
    /// Who created it.
    pub created_by: String,
    /// Devices it may post for.
    pub devices: Vec<String>,
    /// Patients it may post manual entries for.
    pub patients: Vec<String>,
}

/// Stores a credential and its grants. Run it in a transaction.
///
/// # Errors
///
/// [`StoreError::Invalid`] if an active credential has the same name; the database's.
pub async fn insert(c: &mut Conn, n: &NewIngestClient) -> Result<(), StoreError> {
    let row = c
        .query_one(
            &sql!("ingest_client_insert"),
            &args![n.name.as_str(), n.kind.as_str(), n.hash.as_str(), n.created_by.as_str()],
        )
        .await
        .map_err(|e| match e {
            // A unique violation: PostgreSQL SQLSTATE 23505, SQLite "UNIQUE constraint failed".
            StoreError::Rejected(m) if m.contains("23505") || m.contains("UNIQUE constraint") => {
                StoreError::Invalid(format!("an active ingest client is already named {:?}", n.name))
            }
            e => e,
        })?;
    let id: i64 = row.get(0)?;
    for (kind, ids) in [("device", &n.devices), ("patient", &n.patients)] {
        for t in ids {
            c.execute(&sql!("ingest_client_grant"), &args![id, kind, t.as_str()]).await?;
        }
    }
    Ok(())
}

/// Revokes the active credential `name`; false if there is none.
///
/// # Errors
///
/// The database's.
pub async fn revoke(c: &mut Conn, name: &str) -> Result<bool, StoreError> {
    Ok(c.execute(&sql!("ingest_client_revoke"), &args![name]).await? > 0)
}

/// Every credential, revoked ones too, with their grants (never secrets).
///
/// # Errors
///
/// The database's.
pub async fn list(c: &mut Conn) -> Result<Vec<IngestClientView>, StoreError> {
    let rows = c.query(&sql!("ingest_clients"), &args![]).await?;
    let mut out: Vec<(i64, IngestClientView)> = Vec::new();
    for r in &rows {
        let id: i64 = r.get(0)?;
        if out.last().is_none_or(|(last, _)| *last != id) {
            let view = IngestClientView {
                name: r.get(1)?,
                kind: r.get(2)?,
                created_at: r.get::<DateTime<Utc>>(3)?,
                created_by: r.get(4)?,
                revoked_at: r.get(5)?,
                devices: Vec::new(),
                patients: Vec::new(),
            };
            out.push((id, view));
        }
        let Some((_, view)) = out.last_mut() else { continue };
        match (r.get::<Option<String>>(6)?.as_deref(), r.get::<Option<String>>(7)?) {
            (Some("device"), Some(t)) => view.devices.push(t),
            (Some("patient"), Some(t)) => view.patients.push(t),
            _ => {}
        }
    }
    Ok(out.into_iter().map(|(_, v)| v).collect())
}
