//! The SQLite driver of [`AdminStore`], for the embedded mode. Times are unix
//! microseconds; patient scopes are passed as a JSON array (`json_each`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Row, params};
use vitalwatch_platform::store::sqlite::SharedConnection;
use vitalwatch_platform::store::sqlite::{err, open_connection};

use super::{
    AdminStore, AlertFilter, AlertRow, AuditFilter, EpisodeAuditFilter, NewAuditEntry, NewToken, StoreError, parse_json,
};
use crate::model::{AlertView, AuditView, EpisodeAuditView, PatientView, TokenView};

/// A SQLite-backed admin store.
#[derive(Clone)]
pub struct SqliteAdminStore {
    conn: SharedConnection,
}

impl std::fmt::Debug for SqliteAdminStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteAdminStore").finish_non_exhaustive()
    }
}

fn us(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn from_us(v: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(v).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

fn scope_json(scope: Option<&[String]>) -> Option<String> {
    scope.map(|s| serde_json::to_string(s).unwrap_or_else(|_| "[]".into()))
}

const TOKEN_COLUMNS: &str = "name, role, physician_id, created_at, created_by, revoked_at, expires_at, last_used_at";
const ALERT_COLUMNS: &str = "episode_id, patient_id, rule_id, rule_kind, program, code, severity, status, opened_at, \
                             last_event_at, resolved_at, summary";

fn token(r: &Row<'_>) -> rusqlite::Result<TokenView> {
    Ok(TokenView {
        name: r.get(0)?,
        role: r.get(1)?,
        physician_id: r.get(2)?,
        created_at: from_us(r.get(3)?),
        created_by: r.get(4)?,
        revoked_at: r.get::<_, Option<i64>>(5)?.map(from_us),
        expires_at: r.get::<_, Option<i64>>(6)?.map(from_us),
        last_used_at: r.get::<_, Option<i64>>(7)?.map(from_us),
    })
}

fn alert(r: &Row<'_>) -> rusqlite::Result<AlertView> {
    Ok(AlertView {
        episode_id: r.get(0)?,
        patient_id: r.get(1)?,
        rule_id: r.get(2)?,
        rule_kind: r.get(3)?,
        program: r.get(4)?,
        code: r.get(5)?,
        severity: r.get(6)?,
        status: r.get(7)?,
        opened_at: from_us(r.get(8)?),
        last_event_at: from_us(r.get(9)?),
        resolved_at: r.get::<_, Option<i64>>(10)?.map(from_us),
        summary: r.get(11)?,
    })
}

fn patient(r: &Row<'_>) -> rusqlite::Result<PatientView> {
    Ok(PatientView { id: r.get(0)?, status: r.get(1)?, created_at: from_us(r.get(2)?) })
}

impl SqliteAdminStore {
    /// Opens (creating if needed) the database file; `:memory:` for tests.
    pub fn open(path: &str) -> Result<Self, StoreError> {
        Ok(Self { conn: SharedConnection::new(open_connection(path)?) })
    }
}

#[async_trait]
impl AdminStore for SqliteAdminStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.conn.run(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(err)).await
    }

    async fn create_token(&self, t: &NewToken) -> Result<TokenView, StoreError> {
        let t = t.clone();
        self.conn
            .run(move |c| {
                c.query_row(
                    &format!(
                        "INSERT INTO api_tokens (name, token_hash, role, physician_id, created_at, created_by, expires_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING {TOKEN_COLUMNS}"
                    ),
                    params![t.name, t.hash, t.role, t.physician_id, us(Utc::now()), t.created_by, us(t.expires_at)],
                    token,
                )
                .map_err(|e| match e {
                    rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
                        StoreError::Invalid(format!(
                            "an active token named {:?} already exists; revoke it first",
                            t.name
                        ))
                    }
                    e => err(e),
                })
            })
            .await
    }

    async fn revoke_token(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_owned();
        self.conn
            .run(move |c| {
                let n = c
                    .execute(
                        "UPDATE api_tokens SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
                        params![name, us(Utc::now())],
                    )
                    .map_err(err)?;
                Ok(n > 0)
            })
            .await
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenView>, StoreError> {
        let hash = hash.to_owned();
        self.conn
            .run(move |c| {
                c.query_row(
                    &format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE token_hash = ?1 AND revoked_at IS NULL"),
                    [hash],
                    token,
                )
                .optional()
                .map_err(err)
            })
            .await
    }

    async fn touch_token(&self, hash: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        let hash = hash.to_owned();
        self.conn
            .run(move |c| {
                c.execute("UPDATE api_tokens SET last_used_at = ?2 WHERE token_hash = ?1", params![hash, us(at)])
                    .map_err(err)?;
                Ok(())
            })
            .await
    }

    async fn tokens(&self) -> Result<Vec<TokenView>, StoreError> {
        self.conn
            .run(|c| {
                let mut st = c
                    .prepare(&format!("SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY name, created_at"))
                    .map_err(err)?;
                st.query_map([], token).map_err(err)?.collect::<Result<_, _>>().map_err(err)
            })
            .await
    }

    async fn append_audit(&self, e: &NewAuditEntry) -> Result<i64, StoreError> {
        let e = e.clone();
        self.conn
            .run(move |c| {
                c.execute(
                "INSERT INTO admin_audit (at, actor, actor_role, action, target_kind, target_id, patient_id, details) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    us(e.at),
                    e.actor,
                    e.actor_role,
                    e.action,
                    e.target_kind,
                    e.target_id,
                    e.patient_id,
                    e.details.to_string()
                ],
            )
            .map_err(err)?;
                Ok(c.last_insert_rowid())
            })
            .await
    }

    async fn audit(&self, f: &AuditFilter) -> Result<Vec<AuditView>, StoreError> {
        let f = f.clone();
        self.conn
            .run(move |c| {
                let mut st = c
                    .prepare(
                        "SELECT id, at, actor, actor_role, action, target_kind, target_id, patient_id, details \
                     FROM admin_audit \
                     WHERE (?1 IS NULL OR actor = ?1) AND (?2 IS NULL OR action = ?2) \
                     AND (?3 IS NULL OR target_id = ?3) AND (?4 IS NULL OR patient_id = ?4) \
                     AND (?5 IS NULL OR at >= ?5) AND (?6 IS NULL OR at < ?6) AND (?7 IS NULL OR id < ?7) \
                     AND (?8 IS NULL OR patient_id IN (SELECT value FROM json_each(?8)) OR actor = ?9) \
                     ORDER BY id DESC LIMIT ?10",
                    )
                    .map_err(err)?;
                let rows = st
                    .query_map(
                        params![
                            f.actor,
                            f.action,
                            f.target_id,
                            f.patient_id,
                            f.since.map(us),
                            f.until.map(us),
                            f.before_id,
                            scope_json(f.scope_patients.as_deref()),
                            f.scope_actor,
                            f.limit
                        ],
                        |r| {
                            Ok(AuditView {
                                id: r.get(0)?,
                                at: from_us(r.get(1)?),
                                actor: r.get(2)?,
                                actor_role: r.get(3)?,
                                action: r.get(4)?,
                                target_kind: r.get(5)?,
                                target_id: r.get(6)?,
                                patient_id: r.get(7)?,
                                details: parse_json(&r.get::<_, String>(8)?),
                            })
                        },
                    )
                    .map_err(err)?;
                rows.collect::<Result<_, _>>().map_err(err)
            })
            .await
    }

    async fn episode_audit(&self, f: &EpisodeAuditFilter) -> Result<Vec<EpisodeAuditView>, StoreError> {
        let f = f.clone();
        self.conn
            .run(move |c| {
                let mut st = c
                    .prepare(
                        "SELECT a.id, a.at, a.episode_id, e.patient_id, a.entry_type, a.record \
                     FROM alert_audit a LEFT JOIN alert_episodes e ON e.episode_id = a.episode_id \
                     WHERE (?1 IS NULL OR a.episode_id = ?1) AND (?2 IS NULL OR e.patient_id = ?2) \
                     AND (?3 IS NULL OR a.entry_type = ?3) AND (?4 IS NULL OR a.id < ?4) \
                     AND (?5 IS NULL OR e.patient_id IN (SELECT value FROM json_each(?5))) \
                     ORDER BY a.id DESC LIMIT ?6",
                    )
                    .map_err(err)?;
                let rows = st
                    .query_map(
                        params![
                            f.episode_id,
                            f.patient_id,
                            f.entry_type,
                            f.before_id,
                            scope_json(f.scope_patients.as_deref()),
                            f.limit
                        ],
                        |r| {
                            Ok(EpisodeAuditView {
                                id: r.get(0)?,
                                at: from_us(r.get(1)?),
                                episode_id: r.get(2)?,
                                patient_id: r.get(3)?,
                                entry_type: r.get(4)?,
                                record: parse_json(&r.get::<_, String>(5)?),
                            })
                        },
                    )
                    .map_err(err)?;
                rows.collect::<Result<_, _>>().map_err(err)
            })
            .await
    }

    async fn patients_of(&self, physician: &str) -> Result<Vec<String>, StoreError> {
        let physician = physician.to_owned();
        self.conn
            .run(move |c| {
                let mut st = c
                    .prepare(
                        "SELECT patient_id FROM alert_care_teams WHERE responsible = ?1 \
                     OR EXISTS (SELECT 1 FROM json_each(doc, '$.deputies') WHERE value = ?1) ORDER BY patient_id",
                    )
                    .map_err(err)?;
                st.query_map([physician], |r| r.get(0)).map_err(err)?.collect::<Result<_, _>>().map_err(err)
            })
            .await
    }

    async fn patients(
        &self,
        after: Option<&str>,
        limit: u32,
        scope: Option<&[String]>,
    ) -> Result<Vec<PatientView>, StoreError> {
        let (after, scope) = (after.map(str::to_owned), scope_json(scope));
        self.conn
            .run(move |c| {
                let mut st = c
                    .prepare(
                        "SELECT patient_id, status, created_at FROM patients \
                     WHERE (?1 IS NULL OR patient_id > ?1) \
                     AND (?2 IS NULL OR patient_id IN (SELECT value FROM json_each(?2))) \
                     ORDER BY patient_id LIMIT ?3",
                    )
                    .map_err(err)?;
                st.query_map(params![after, scope, limit], patient).map_err(err)?.collect::<Result<_, _>>().map_err(err)
            })
            .await
    }

    async fn patient(&self, id: &str) -> Result<Option<PatientView>, StoreError> {
        let id = id.to_owned();
        self.conn
            .run(move |c| {
                c.query_row("SELECT patient_id, status, created_at FROM patients WHERE patient_id = ?1", [id], patient)
                    .optional()
                    .map_err(err)
            })
            .await
    }

    async fn alerts(&self, f: &AlertFilter) -> Result<Vec<AlertView>, StoreError> {
        let f = f.clone();
        self.conn
            .run(move |c| {
                let mut st = c
                    .prepare(&format!(
                        "SELECT {ALERT_COLUMNS} FROM alerts \
                     WHERE (?1 IS NULL OR patient_id = ?1) AND (?2 IS NULL OR status = ?2) \
                     AND (?3 IS NULL OR severity = ?3) \
                     AND (?4 IS NULL OR (opened_at, episode_id) < (?4, ?5)) \
                     AND (?6 IS NULL OR patient_id IN (SELECT value FROM json_each(?6))) \
                     ORDER BY opened_at DESC, episode_id DESC LIMIT ?7"
                    ))
                    .map_err(err)?;
                let (bt, bid) = match &f.before {
                    Some((t, id)) => (Some(us(*t)), Some(id.clone())),
                    None => (None, None),
                };
                st.query_map(
                    params![
                        f.patient_id,
                        f.status,
                        f.severity,
                        bt,
                        bid,
                        scope_json(f.scope_patients.as_deref()),
                        f.limit
                    ],
                    alert,
                )
                .map_err(err)?
                .collect::<Result<_, _>>()
                .map_err(err)
            })
            .await
    }

    async fn alert(&self, episode: &str) -> Result<Option<AlertRow>, StoreError> {
        let episode = episode.to_owned();
        self.conn
            .run(move |c| {
                c.query_row(
                    &format!("SELECT {ALERT_COLUMNS}, evidence FROM alerts WHERE episode_id = ?1"),
                    [episode],
                    |r| Ok(AlertRow { view: alert(r)?, evidence: r.get(12)? }),
                )
                .optional()
                .map_err(err)
            })
            .await
    }

    async fn episode_patient(&self, episode: &str) -> Result<Option<String>, StoreError> {
        let episode = episode.to_owned();
        self.conn
            .run(move |c| {
                c.query_row(
                    "SELECT patient_id FROM alerts WHERE episode_id = ?1 \
                 UNION ALL SELECT patient_id FROM alert_episodes WHERE episode_id = ?1 LIMIT 1",
                    [episode],
                    |r| r.get(0),
                )
                .optional()
                .map_err(err)
            })
            .await
    }

    async fn close_alert(&self, episode: &str) -> Result<bool, StoreError> {
        let episode = episode.to_owned();
        self.conn
            .run(move |c| {
                // Closed in `alerts` and a close request for the rules worker, in one transaction.
                let tx = c.transaction().map_err(err)?;
                let n = tx
                    .execute(
                        "UPDATE alerts SET status = 'closed' WHERE episode_id = ?1 AND status = 'open'",
                        [&episode],
                    )
                    .map_err(err)?;
                if n > 0 {
                    let now = chrono::Utc::now().timestamp_micros();
                    tx.execute(
                        "INSERT INTO episode_closes (episode_id, patient_id, rule_id, requested_at) \
                     SELECT episode_id, patient_id, rule_id, ?2 FROM alerts WHERE episode_id = ?1 \
                     ON CONFLICT (episode_id) DO UPDATE SET requested_at = excluded.requested_at, applied_at = NULL",
                        rusqlite::params![episode, now],
                    )
                    .map_err(err)?;
                }
                tx.commit().map_err(err)?;
                Ok(n > 0)
            })
            .await
    }
}
