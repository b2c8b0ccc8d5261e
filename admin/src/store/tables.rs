//! The one implementation of [`AdminStore`], written once over the
//! platform's [`Db`]; the SQL is in `sql/` (the paged, scoped lists differ:
//! PostgreSQL arrays and typed NULLs, SQLite `json_each`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use vitalwatch_platform::store::DbTimeouts;
use vitalwatch_platform::store::db::{Conn, Db, Row, Value};
use vitalwatch_platform::{args, sql};

use super::{
    AdminStore, AlertFilter, AlertRow, AuditFilter, EpisodeAuditFilter, NewAuditEntry, NewToken, StoreError, parse_json,
};
use crate::model::{AlertView, AuditView, EpisodeAuditView, PatientView, TokenView};

/// The admin store, on PostgreSQL or SQLite.
#[derive(Clone)]
pub struct SqlAdminStore {
    db: Db,
}

impl std::fmt::Debug for SqlAdminStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlAdminStore").field("db", &self.db).finish()
    }
}

impl SqlAdminStore {
    /// The store on `db` (migrated with the platform store's `migrate`).
    pub fn new(db: Db) -> SqlAdminStore {
        SqlAdminStore { db }
    }

    /// Opens (creating if needed) an embedded database file; `:memory:` for tests.
    ///
    /// # Errors
    ///
    /// When the file cannot be created or opened.
    pub fn open(path: &str) -> Result<SqlAdminStore, StoreError> {
        Ok(SqlAdminStore::new(Db::Sqlite(vitalwatch_platform::store::sqlite::SqliteDb::open(path)?)))
    }

    /// Connects to PostgreSQL (and checks the connection).
    ///
    /// # Errors
    ///
    /// When the server cannot be reached in time or the settings are invalid.
    pub async fn connect(url: &str, timeouts: DbTimeouts) -> Result<SqlAdminStore, StoreError> {
        Ok(SqlAdminStore::new(Db::open(url, timeouts, 1).await?))
    }
}

fn token(r: &Row) -> Result<TokenView, StoreError> {
    Ok(TokenView {
        name: r.get(0)?,
        role: r.get(1)?,
        physician_id: r.get(2)?,
        created_at: r.get(3)?,
        created_by: r.get(4)?,
        revoked_at: r.get(5)?,
        expires_at: r.get(6)?,
        last_used_at: r.get(7)?,
    })
}

fn alert(r: &Row) -> Result<AlertView, StoreError> {
    Ok(AlertView {
        episode_id: r.get(0)?,
        patient_id: r.get(1)?,
        rule_id: r.get(2)?,
        rule_kind: r.get(3)?,
        program: r.get(4)?,
        code: r.get(5)?,
        severity: r.get(6)?,
        status: r.get(7)?,
        opened_at: r.get(8)?,
        last_event_at: r.get(9)?,
        resolved_at: r.get(10)?,
        summary: r.get(11)?,
        rules_version: r.get::<Option<u32>>(12)?,
    })
}

fn patient(r: &Row) -> Result<PatientView, StoreError> {
    Ok(PatientView { id: r.get(0)?, status: r.get(1)?, created_at: r.get(2)? })
}

/// Appends an admin audit entry; returns its id. Run it in the transaction
/// of the change it records.
///
/// # Errors
///
/// The database's.
pub async fn append_audit(c: &mut Conn, e: &NewAuditEntry) -> Result<i64, StoreError> {
    c.query_one(
        &sql!("append_audit"),
        &args![
            e.at,
            e.actor.as_str(),
            e.actor_role.as_str(),
            e.action.as_str(),
            e.target_kind.as_str(),
            e.target_id.as_str(),
            e.patient_id.as_deref(),
            e.details.to_string()
        ],
    )
    .await?
    .get(0)
}

/// Stores a token (see [`AdminStore::create_token`]).
///
/// # Errors
///
/// [`StoreError::Invalid`] if an active token has the same name; the database's.
pub async fn create_token(c: &mut Conn, t: &NewToken) -> Result<TokenView, StoreError> {
    let row = c
        .query_one(
            &sql!("create_token"),
            &args![
                t.name.as_str(),
                t.hash.as_str(),
                t.role.as_str(),
                t.physician_id.as_deref(),
                t.created_by.as_str(),
                t.expires_at
            ],
        )
        .await
        .map_err(|e| match e {
            // A unique violation: PostgreSQL SQLSTATE 23505, SQLite "UNIQUE constraint failed".
            StoreError::Rejected(m) if m.contains("23505") || m.contains("UNIQUE constraint") => {
                StoreError::Invalid(format!("an active token named {:?} already exists; revoke it first", t.name))
            }
            e => e,
        })?;
    token(&row)
}

/// Revokes the active token `name`; false if there is none.
///
/// # Errors
///
/// The database's.
pub async fn revoke_token(c: &mut Conn, name: &str) -> Result<bool, StoreError> {
    Ok(c.execute(&sql!("revoke_token"), &args![name]).await? > 0)
}

/// Marks an open episode `closed` in `alerts` and files a close request for
/// the rules worker; false if it was not open. Run it in a transaction.
///
/// # Errors
///
/// The database's.
pub async fn close_alert(c: &mut Conn, episode: &str) -> Result<bool, StoreError> {
    if c.execute(&sql!("close_alert"), &args![episode]).await? == 0 {
        return Ok(false);
    }
    c.execute(&sql!("request_close"), &args![episode]).await?;
    Ok(true)
}

fn limit(n: u32) -> Value {
    Value::Int(i64::from(n))
}

#[async_trait]
impl AdminStore for SqlAdminStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.db.run(async |c| c.query(&sql!("ping"), &[]).await.map(drop)).await
    }

    async fn create_token(&self, t: &NewToken) -> Result<TokenView, StoreError> {
        self.db.run(async |c| create_token(c, t).await).await
    }

    async fn revoke_token(&self, name: &str) -> Result<bool, StoreError> {
        self.db.run(async |c| revoke_token(c, name).await).await
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenView>, StoreError> {
        let row = self.db.run(async |c| c.query_opt(&sql!("token_by_hash"), &args![hash]).await).await?;
        row.as_ref().map(token).transpose()
    }

    async fn tokens(&self) -> Result<Vec<TokenView>, StoreError> {
        self.db.run(async |c| c.query(&sql!("tokens"), &[]).await).await?.iter().map(token).collect()
    }

    async fn touch_token(&self, hash: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.db.run(async |c| c.execute(&sql!("touch_token"), &args![hash, at]).await.map(drop)).await
    }

    async fn append_audit(&self, entry: &NewAuditEntry) -> Result<i64, StoreError> {
        self.db.run(async |c| append_audit(c, entry).await).await
    }

    async fn audit(&self, f: &AuditFilter) -> Result<Vec<AuditView>, StoreError> {
        let args = args![
            f.actor.as_deref(),
            f.action.as_deref(),
            f.target_id.as_deref(),
            f.patient_id.as_deref(),
            f.since,
            f.until,
            f.before_id,
            f.scope_patients.as_ref(),
            f.scope_actor.as_deref(),
            limit(f.limit),
        ];
        let rows = self.db.run(async |c| c.query(&sql!("audit", split), &args).await).await?;
        rows.iter()
            .map(|r| {
                Ok(AuditView {
                    id: r.get(0)?,
                    at: r.get(1)?,
                    actor: r.get(2)?,
                    actor_role: r.get(3)?,
                    action: r.get(4)?,
                    target_kind: r.get(5)?,
                    target_id: r.get(6)?,
                    patient_id: r.get(7)?,
                    details: parse_json(&r.get::<String>(8)?),
                })
            })
            .collect()
    }

    async fn episode_audit(&self, f: &EpisodeAuditFilter) -> Result<Vec<EpisodeAuditView>, StoreError> {
        let args = args![
            f.episode_id.as_deref(),
            f.patient_id.as_deref(),
            f.entry_type.as_deref(),
            f.before_id,
            f.scope_patients.as_ref(),
            limit(f.limit),
        ];
        let rows = self.db.run(async |c| c.query(&sql!("episode_audit", split), &args).await).await?;
        rows.iter()
            .map(|r| {
                Ok(EpisodeAuditView {
                    id: r.get(0)?,
                    at: r.get(1)?,
                    episode_id: r.get(2)?,
                    patient_id: r.get(3)?,
                    entry_type: r.get(4)?,
                    record: parse_json(&r.get::<String>(5)?),
                })
            })
            .collect()
    }

    async fn patients_of(&self, physician: &str) -> Result<Vec<String>, StoreError> {
        let rows = self.db.run(async |c| c.query(&sql!("patients_of", split), &args![physician]).await).await?;
        rows.iter().map(|r| r.get(0)).collect()
    }

    async fn patients(
        &self,
        after: Option<&str>,
        n: u32,
        scope: Option<&[String]>,
    ) -> Result<Vec<PatientView>, StoreError> {
        let args = args![after, scope, limit(n)];
        self.db.run(async |c| c.query(&sql!("patients", split), &args).await).await?.iter().map(patient).collect()
    }

    async fn patient(&self, id: &str) -> Result<Option<PatientView>, StoreError> {
        let row = self.db.run(async |c| c.query_opt(&sql!("patient"), &args![id]).await).await?;
        row.as_ref().map(patient).transpose()
    }

    async fn alerts(&self, f: &AlertFilter) -> Result<Vec<AlertView>, StoreError> {
        let (before_t, before_id) = match &f.before {
            Some((t, id)) => (Some(*t), Some(id.as_str())),
            None => (None, None),
        };
        let args = args![
            f.patient_id.as_deref(),
            f.status.as_deref(),
            f.severity.as_deref(),
            before_t,
            before_id,
            f.scope_patients.as_ref(),
            limit(f.limit),
        ];
        self.db.run(async |c| c.query(&sql!("alerts", split), &args).await).await?.iter().map(alert).collect()
    }

    async fn alert(&self, episode: &str) -> Result<Option<AlertRow>, StoreError> {
        let row = self.db.run(async |c| c.query_opt(&sql!("alert"), &args![episode]).await).await?;
        row.map(|r| Ok(AlertRow { view: alert(&r)?, evidence: r.get(13)? })).transpose()
    }

    async fn episode_patient(&self, episode: &str) -> Result<Option<String>, StoreError> {
        let row = self.db.run(async |c| c.query_opt(&sql!("episode_patient"), &args![episode]).await).await?;
        row.map(|r| r.get(0)).transpose()
    }

    async fn close_alert(&self, episode: &str) -> Result<bool, StoreError> {
        self.db.transaction(async |c| close_alert(c, episode).await).await
    }
}
