//! The PostgreSQL driver of [`AdminStore`] (one connection, reconnected when lost).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::MutexGuard;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Row};
use vitalwatch_platform::store::DbTimeouts;
use vitalwatch_platform::store::postgres::PgConnection;
use vitalwatch_platform::store::postgres::classify;

use super::{
    AdminStore, AlertFilter, AlertRow, AuditFilter, EpisodeAuditFilter, NewAuditEntry, NewToken, StoreError, parse_json,
};
use crate::model::{AlertView, AuditView, EpisodeAuditView, PatientView, TokenView};

/// A PostgreSQL-backed admin store.
pub struct PgAdminStore {
    conn: PgConnection,
}

impl std::fmt::Debug for PgAdminStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgAdminStore").finish_non_exhaustive()
    }
}

impl PgAdminStore {
    /// Connects (and checks the connection).
    pub async fn connect(url: &str, timeouts: DbTimeouts) -> Result<Self, StoreError> {
        let s = PgAdminStore { conn: PgConnection::new(url).with_timeouts(timeouts) };
        drop(s.client().await?);
        Ok(s)
    }

    async fn client(&self) -> Result<MutexGuard<'_, Option<Client>>, StoreError> {
        self.conn.client().await
    }
}

/// Runs `$body` on a live client, bounded by the statement timeout (see
/// [`PgConnection::run`]); it is the value of the calling function.
macro_rules! with_client {
    ($self:ident, $c:ident => $body:expr) => {{ $self.conn.run(async |$c: &mut Client| -> Result<_, StoreError> { $body }).await }};
}

const TOKEN_COLUMNS: &str = "name, role, physician_id, created_at, created_by, revoked_at, expires_at, last_used_at";
const ALERT_COLUMNS: &str = "episode_id, patient_id, rule_id, rule_kind, program, code, severity, status, opened_at, \
                             last_event_at, resolved_at, summary";

fn token(r: &Row) -> TokenView {
    TokenView {
        name: r.get(0),
        role: r.get(1),
        physician_id: r.get(2),
        created_at: r.get(3),
        created_by: r.get(4),
        revoked_at: r.get(5),
        expires_at: r.get(6),
        last_used_at: r.get(7),
    }
}

fn alert(r: &Row) -> AlertView {
    AlertView {
        episode_id: r.get(0),
        patient_id: r.get(1),
        rule_id: r.get(2),
        rule_kind: r.get(3),
        program: r.get(4),
        code: r.get(5),
        severity: r.get(6),
        status: r.get(7),
        opened_at: r.get(8),
        last_event_at: r.get(9),
        resolved_at: r.get(10),
        summary: r.get(11),
    }
}

fn limit(n: u32) -> i64 {
    i64::from(n)
}

#[async_trait]
impl AdminStore for PgAdminStore {
    async fn ping(&self) -> Result<(), StoreError> {
        with_client!(self, c => c.simple_query("SELECT 1").await.map(|_| ()).map_err(classify))
    }

    async fn create_token(&self, t: &NewToken) -> Result<TokenView, StoreError> {
        with_client!(self, c => {
            let r = c
                .query_one(
                    &format!(
                        "INSERT INTO api_tokens (name, token_hash, role, physician_id, created_by, expires_at) \
                         VALUES ($1, $2, $3, $4, $5, $6) RETURNING {TOKEN_COLUMNS}"
                    ),
                    &[&t.name, &t.hash, &t.role, &t.physician_id, &t.created_by, &t.expires_at],
                )
                .await
                .map_err(|e| {
                    if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
                        StoreError::Invalid(format!("an active token named {:?} already exists; revoke it first", t.name))
                    } else {
                        classify(e)
                    }
                })?;
            Ok(token(&r))
        })
    }

    async fn revoke_token(&self, name: &str) -> Result<bool, StoreError> {
        with_client!(self, c => {
            let n = c
                .execute("UPDATE api_tokens SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL", &[&name])
                .await
                .map_err(classify)?;
            Ok(n > 0)
        })
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenView>, StoreError> {
        with_client!(self, c => {
            let r = c
                .query_opt(
                    &format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL"),
                    &[&hash],
                )
                .await
                .map_err(classify)?;
            Ok(r.as_ref().map(token))
        })
    }

    async fn touch_token(&self, hash: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        with_client!(self, c => {
            c.execute("UPDATE api_tokens SET last_used_at = $2 WHERE token_hash = $1", &[&hash, &at])
                .await
                .map_err(classify)?;
            Ok(())
        })
    }

    async fn tokens(&self) -> Result<Vec<TokenView>, StoreError> {
        with_client!(self, c => {
            let rows = c
                .query(&format!("SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY name, created_at"), &[])
                .await
                .map_err(classify)?;
            Ok(rows.iter().map(token).collect())
        })
    }

    async fn append_audit(&self, e: &NewAuditEntry) -> Result<i64, StoreError> {
        let details = e.details.to_string();
        with_client!(self, c => {
            let r = c
                .query_one(
                    "INSERT INTO admin_audit (at, actor, actor_role, action, target_kind, target_id, patient_id, details) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text::jsonb) RETURNING id",
                    &[&e.at, &e.actor, &e.actor_role, &e.action, &e.target_kind, &e.target_id, &e.patient_id, &details],
                )
                .await
                .map_err(classify)?;
            Ok(r.get(0))
        })
    }

    async fn audit(&self, f: &AuditFilter) -> Result<Vec<AuditView>, StoreError> {
        with_client!(self, c => {
            let rows = c
                .query(
                    "SELECT id, at, actor, actor_role, action, target_kind, target_id, patient_id, details::text \
                     FROM admin_audit \
                     WHERE ($1::text IS NULL OR actor = $1) AND ($2::text IS NULL OR action = $2) \
                     AND ($3::text IS NULL OR target_id = $3) AND ($4::text IS NULL OR patient_id = $4) \
                     AND ($5::timestamptz IS NULL OR at >= $5) AND ($6::timestamptz IS NULL OR at < $6) \
                     AND ($7::bigint IS NULL OR id < $7) \
                     AND ($8::text[] IS NULL OR patient_id = ANY($8) OR actor = $9::text) \
                     ORDER BY id DESC LIMIT $10",
                    &[
                        &f.actor,
                        &f.action,
                        &f.target_id,
                        &f.patient_id,
                        &f.since,
                        &f.until,
                        &f.before_id,
                        &f.scope_patients,
                        &f.scope_actor,
                        &limit(f.limit),
                    ],
                )
                .await
                .map_err(classify)?;
            Ok(rows
                .iter()
                .map(|r| AuditView {
                    id: r.get(0),
                    at: r.get(1),
                    actor: r.get(2),
                    actor_role: r.get(3),
                    action: r.get(4),
                    target_kind: r.get(5),
                    target_id: r.get(6),
                    patient_id: r.get(7),
                    details: parse_json(r.get(8)),
                })
                .collect())
        })
    }

    async fn episode_audit(&self, f: &EpisodeAuditFilter) -> Result<Vec<EpisodeAuditView>, StoreError> {
        with_client!(self, c => {
            let rows = c
                .query(
                    "SELECT a.id, a.at, a.episode_id, e.patient_id, a.entry_type, a.record::text \
                     FROM alert_audit a LEFT JOIN alert_episodes e ON e.episode_id = a.episode_id \
                     WHERE ($1::text IS NULL OR a.episode_id = $1) AND ($2::text IS NULL OR e.patient_id = $2) \
                     AND ($3::text IS NULL OR a.entry_type = $3) AND ($4::bigint IS NULL OR a.id < $4) \
                     AND ($5::text[] IS NULL OR e.patient_id = ANY($5)) \
                     ORDER BY a.id DESC LIMIT $6",
                    &[&f.episode_id, &f.patient_id, &f.entry_type, &f.before_id, &f.scope_patients, &limit(f.limit)],
                )
                .await
                .map_err(classify)?;
            Ok(rows
                .iter()
                .map(|r| EpisodeAuditView {
                    id: r.get(0),
                    at: r.get(1),
                    episode_id: r.get(2),
                    patient_id: r.get(3),
                    entry_type: r.get(4),
                    record: parse_json(r.get(5)),
                })
                .collect())
        })
    }

    async fn patients_of(&self, physician: &str) -> Result<Vec<String>, StoreError> {
        with_client!(self, c => {
            let rows = c
                .query(
                    "SELECT patient_id FROM alert_care_teams \
                     WHERE responsible = $1 OR jsonb_exists(doc->'deputies', $1) ORDER BY patient_id",
                    &[&physician],
                )
                .await
                .map_err(classify)?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    async fn patients(
        &self,
        after: Option<&str>,
        n: u32,
        scope: Option<&[String]>,
    ) -> Result<Vec<PatientView>, StoreError> {
        with_client!(self, c => {
            let rows = c
                .query(
                    "SELECT patient_id, status, created_at FROM patients \
                     WHERE ($1::text IS NULL OR patient_id > $1) AND ($2::text[] IS NULL OR patient_id = ANY($2)) \
                     ORDER BY patient_id LIMIT $3",
                    &[&after, &scope, &limit(n)],
                )
                .await
                .map_err(classify)?;
            Ok(rows.iter().map(|r| PatientView { id: r.get(0), status: r.get(1), created_at: r.get(2) }).collect())
        })
    }

    async fn patient(&self, id: &str) -> Result<Option<PatientView>, StoreError> {
        with_client!(self, c => {
            let r = c
                .query_opt("SELECT patient_id, status, created_at FROM patients WHERE patient_id = $1", &[&id])
                .await
                .map_err(classify)?;
            Ok(r.map(|r| PatientView { id: r.get(0), status: r.get(1), created_at: r.get(2) }))
        })
    }

    async fn alerts(&self, f: &AlertFilter) -> Result<Vec<AlertView>, StoreError> {
        let (before_t, before_id): (Option<DateTime<Utc>>, Option<&str>) = match &f.before {
            Some((t, id)) => (Some(*t), Some(id.as_str())),
            None => (None, None),
        };
        with_client!(self, c => {
            let rows = c
                .query(
                    &format!(
                        "SELECT {ALERT_COLUMNS} FROM alerts \
                         WHERE ($1::text IS NULL OR patient_id = $1) AND ($2::text IS NULL OR status = $2) \
                         AND ($3::text IS NULL OR severity = $3) \
                         AND ($4::timestamptz IS NULL OR (opened_at, episode_id) < ($4, $5::text)) \
                         AND ($6::text[] IS NULL OR patient_id = ANY($6)) \
                         ORDER BY opened_at DESC, episode_id DESC LIMIT $7"
                    ),
                    &[&f.patient_id, &f.status, &f.severity, &before_t, &before_id, &f.scope_patients, &limit(f.limit)],
                )
                .await
                .map_err(classify)?;
            Ok(rows.iter().map(alert).collect())
        })
    }

    async fn alert(&self, episode: &str) -> Result<Option<AlertRow>, StoreError> {
        with_client!(self, c => {
            let r = c
                .query_opt(
                    &format!("SELECT {ALERT_COLUMNS}, evidence::text FROM alerts WHERE episode_id = $1"),
                    &[&episode],
                )
                .await
                .map_err(classify)?;
            Ok(r.map(|r| AlertRow { view: alert(&r), evidence: r.get(12) }))
        })
    }

    async fn episode_patient(&self, episode: &str) -> Result<Option<String>, StoreError> {
        with_client!(self, c => {
            let r = c
                .query_opt(
                    "SELECT patient_id FROM alerts WHERE episode_id = $1 \
                     UNION ALL SELECT patient_id FROM alert_episodes WHERE episode_id = $1 LIMIT 1",
                    &[&episode],
                )
                .await
                .map_err(classify)?;
            Ok(r.map(|r| r.get(0)))
        })
    }

    async fn close_alert(&self, episode: &str) -> Result<bool, StoreError> {
        with_client!(self, c => {
            // Closed in `alerts` and, in the same statement, a close request
            // for the rules worker that owns the patient (episode_closes).
            let n = c
                .execute(
                    "WITH up AS (UPDATE alerts SET status = 'closed' WHERE episode_id = $1 AND status = 'open' \
                     RETURNING episode_id, patient_id, rule_id) \
                     INSERT INTO episode_closes (episode_id, patient_id, rule_id, requested_at) \
                     SELECT episode_id, patient_id, rule_id, now() FROM up \
                     ON CONFLICT (episode_id) DO UPDATE SET requested_at = now(), applied_at = NULL",
                    &[&episode],
                )
                .await
                .map_err(classify)?;
            Ok(n > 0)
        })
    }
}
