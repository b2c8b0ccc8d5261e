//! The one implementation of [`AlertStore`], written once over the
//! platform's [`Db`]; the SQL is in `sql/` (shared statements, with
//! per-engine overrides where they must differ: row locks, advisory locks,
//! arrays). PostgreSQL replicas share the outbox (`FOR UPDATE SKIP LOCKED`
//! and leases); SQLite runs every transaction `BEGIN IMMEDIATE`.

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use vitalwatch_platform::store::DbTimeouts;
use vitalwatch_platform::store::db::{Conn, Db, Row};
use vitalwatch_platform::{args, sql};
use vitalwatch_schemas::PatientId;

use super::engine::{self, Action, Applied, EngineError, TeamContext};
use super::{
    AlertStore, Claimed, Completion, OutboxRow, OutboxStatus, RenderContext, StoreError, TransitionOptions, entry_type,
    from_json, json, lockout_audit,
};
use crate::audit::{AuditEntry, AuditRecord};
use crate::caps::{CapPolicy, DigestDecision, DigestEntry, RecentLoad, digest_due, digest_notification};
use crate::episode::{EpisodeId, EpisodeState};
use crate::inbound::{Admission, GuardPolicy, GuardRow, admit};
use crate::notification::{Notification, NotificationKey};
use crate::severity::Severity;
use crate::team::{CareTeam, Directory, Physician, PhysicianId};

/// PostgreSQL connections of one alerting process: the alert-event consumer
/// applies events of different episodes concurrently and each dispatcher
/// delivers several notifications at once.
const POOL: usize = 4;

/// The alert store, on PostgreSQL or SQLite.
#[derive(Clone)]
pub struct SqlAlertStore {
    db: Db,
}

impl std::fmt::Debug for SqlAlertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlAlertStore").field("db", &self.db).finish()
    }
}

impl SqlAlertStore {
    /// The store on `db` (migrated with the platform store's `migrate`).
    pub fn new(db: Db) -> SqlAlertStore {
        SqlAlertStore { db }
    }

    /// Opens (creating if needed) an embedded database file; `:memory:` for tests.
    ///
    /// # Errors
    ///
    /// When the file cannot be created or opened.
    pub fn open(path: &str) -> Result<SqlAlertStore, StoreError> {
        Ok(SqlAlertStore::new(Db::Sqlite(vitalwatch_platform::store::sqlite::SqliteDb::open(path)?)))
    }

    /// Wraps an open SQLite connection (whose schema is migrated).
    ///
    /// # Errors
    ///
    /// When the connection cannot be set up.
    pub fn from_connection(conn: rusqlite::Connection) -> Result<SqlAlertStore, StoreError> {
        Ok(SqlAlertStore::new(Db::Sqlite(vitalwatch_platform::store::sqlite::SqliteDb::from_connection(conn)?)))
    }

    /// Connects to PostgreSQL (and checks the connection).
    ///
    /// # Errors
    ///
    /// When the server cannot be reached in time or the settings are invalid.
    pub async fn connect(url: &str, timeouts: DbTimeouts) -> Result<SqlAlertStore, StoreError> {
        Ok(SqlAlertStore::new(Db::open(url, timeouts, POOL).await?))
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.db
    }
}

/// Column `i`, a JSON document, parsed.
fn doc<T: serde::de::DeserializeOwned>(r: &Row, i: usize, what: &str) -> Result<T, StoreError> {
    from_json(&r.get::<String>(i)?, what)
}

/// The patient's care team, its physicians and their recent load.
async fn load_team(c: &mut Conn, patient: &str, now: DateTime<Utc>) -> Result<TeamContext, StoreError> {
    let Some(row) = c.query_opt(&sql!("care_team"), &args![patient]).await? else {
        return Ok(TeamContext::default());
    };
    let team: CareTeam = doc(&row, 0, "care team")?;
    let mut ids: Vec<String> = std::iter::once(&team.responsible)
        .chain(team.deputies.iter())
        .chain(team.policy.named_physicians())
        .map(|p| p.to_string())
        .collect();
    ids.sort();
    ids.dedup();
    let mut physicians = Vec::new();
    for r in c.query(&sql!("physicians_of", split), &args![&ids]).await? {
        physicians.push(doc::<Physician>(&r, 0, "physician")?);
    }
    let directory = Directory::new(physicians).map_err(|e| StoreError::Invalid(e.to_string()))?;
    let mut load = RecentLoad::new();
    for r in c.query(&sql!("recent_load", split), &args![&ids, now - Duration::hours(1)]).await? {
        if let Ok(id) = PhysicianId::new(r.get::<String>(0)?) {
            load.set(id, u32::try_from(r.get::<i64>(1)?).unwrap_or(u32::MAX));
        }
    }
    Ok(TeamContext { team: Some(team), directory, load })
}

async fn insert_audit(c: &mut Conn, audit: &[AuditRecord]) -> Result<(), StoreError> {
    for r in audit {
        c.execute(&sql!("insert_audit"), &args![r.at, r.episode_id.as_str(), entry_type(r), json(r)?]).await?;
    }
    Ok(())
}

/// Queues a notification; false if its key is in the outbox already.
async fn insert_outbox(c: &mut Conn, n: &Notification, now: DateTime<Utc>) -> Result<bool, StoreError> {
    let inserted = c
        .execute(
            &sql!("insert_outbox"),
            &args![
                n.key.as_str(),
                n.episode_id.as_str(),
                n.recipient.as_str(),
                n.channel.as_str(),
                json(n)?,
                n.due_at.min(now),
                now
            ],
        )
        .await?;
    Ok(inserted == 1)
}

/// Applies `action` to an episode (see [`AlertStore::transition`]); run it in a transaction.
///
/// # Errors
///
/// As [`AlertStore::transition`].
pub async fn transition(
    c: &mut Conn,
    episode: &EpisodeId,
    action: &Action,
    options: &TransitionOptions,
    now: DateTime<Utc>,
) -> Result<Applied, StoreError> {
    if let Action::Event(event) = action {
        c.execute(&sql!("open_episode"), &args![episode.as_str(), event.patient_id.as_str(), now]).await?;
    }
    let Some(row) = c.query_opt(&sql!("lock_episode", split), &args![episode.as_str()]).await? else {
        return Err(EngineError::UnknownEpisode(episode.to_string()).into());
    };
    let current: Option<EpisodeState> = row.get::<Option<String>>(0)?.map(|s| from_json(&s, "episode")).transpose()?;
    let patient = match (&current, action) {
        (Some(s), _) => s.patient_id.to_string(),
        (None, Action::Event(e)) => e.patient_id.clone(),
        (None, _) => row.get::<String>(1)?,
    };
    let ctx = load_team(c, &patient, now).await?;
    let mut applied = engine::apply(current, action, &ctx, &options.caps, now)?;
    // Defence in depth: a discharged patient is not monitored any more. The
    // rules workers raise nothing for them, but an event already in flight
    // (or a reminder planned before the discharge) must not notify anyone:
    // the episode's state is kept, no notification, digest entry or wakeup.
    if c.query_opt(&sql!("patient_discharged"), &args![patient.as_str()]).await?.is_some() {
        if !applied.outbox.is_empty() || !applied.digest.is_empty() {
            tracing::info!(message = "Notifications suppressed: the patient is discharged.", episode = %episode);
        }
        applied.outbox.clear();
        applied.digest.clear();
        applied.audit.retain(|r| {
            !matches!(r.entry, AuditEntry::NotificationPlanned { .. } | AuditEntry::NotificationDigested { .. })
        });
        applied.next_wakeup = None;
    }
    let Some(state) = &applied.state else {
        return Ok(applied);
    };
    if let Action::Ack { by, via, nonce, .. } = action
        && (applied.ack.is_some() || nonce.is_some())
    {
        let via = json(via)?.trim_matches('"').to_string();
        let n = c
            .execute(
                &sql!("insert_ack"),
                &args![episode.as_str(), by.as_str(), via, state.severity.as_str(), now, nonce.as_deref()],
            )
            .await?;
        if n == 0 {
            return Err(EngineError::NonceUsed.into());
        }
    }
    c.execute(
        &sql!("update_episode"),
        &args![episode.as_str(), json(state)?, state.severity.as_str(), state.resolved_at, applied.next_wakeup, now],
    )
    .await?;
    for d in &applied.digest {
        c.execute(
            &sql!("insert_digest_entry"),
            &args![d.key.as_str(), d.recipient.as_str(), d.episode_id.as_str(), json(d)?, d.at],
        )
        .await?;
    }
    let mut recipients: Vec<&PhysicianId> = Vec::new();
    for n in &applied.outbox {
        insert_outbox(c, n, now).await?;
        if !recipients.contains(&&n.recipient) {
            recipients.push(&n.recipient);
        }
    }
    if let Some(codes) = &options.codes {
        for r in recipients {
            // A code acknowledges the severity it was sent for: a rise needs a new code.
            let have = c.query(&sql!("ack_code_severities"), &args![episode.as_str(), r.as_str()]).await?;
            let mut covered = false;
            for row in &have {
                covered |= Severity::parse(&row.get::<String>(0)?).is_some_and(|s| s >= state.severity);
            }
            if covered {
                continue;
            }
            let mut taken = HashSet::new();
            for row in c.query(&sql!("taken_codes"), &args![r.as_str()]).await? {
                taken.insert(row.get::<String>(0)?);
            }
            match codes.assign(episode, r, |code| taken.contains(code.as_str())) {
                Ok(code) => {
                    c.execute(
                        &sql!("insert_ack_code"),
                        &args![episode.as_str(), r.as_str(), code.as_str(), state.severity.as_str()],
                    )
                    .await?;
                }
                Err(e) => tracing::warn!(episode = %episode, physician = %r, error = %e, "no SMS acknowledgment code"),
            }
        }
    }
    insert_audit(c, &applied.audit).await?;
    Ok(applied)
}

/// Records the outcome of a delivery in its episode's state (under the
/// episode row lock): a failure for good, a queued fallback (so that
/// reminders and the all-clear use it). Without a fallback after a failure,
/// the episode is due for re-planning at once (escalation).
async fn record_outcome(
    c: &mut Conn,
    key: &str,
    completion: &Completion,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let (failed, fallback) = match completion {
        Completion::Failed { fallback, .. } => (true, fallback.as_ref()),
        Completion::Retry { fallback: Some(f), .. } => (false, Some(f)),
        _ => return Ok(()),
    };
    let Some(row) = c.query_opt(&sql!("outcome_episode", split), &args![key]).await? else {
        return Ok(());
    };
    let (Some(text), episode_id) = (row.get::<Option<String>>(0)?, row.get::<String>(1)?) else {
        return Ok(());
    };
    let mut state: EpisodeState = from_json(&text, "episode")?;
    let escalate = failed && fallback.is_none();
    if failed {
        state.record_failed(&NotificationKey::from_raw(key));
    }
    match fallback {
        Some(f) if failed => state.record_fallback(f),
        Some(f) => state.record_standby_fallback(f),
        None => {}
    }
    c.execute(&sql!("record_outcome", split), &args![episode_id, json(&state)?, now, escalate]).await?;
    Ok(())
}

/// Forms the digest of one recipient if due; `None` when not due, empty,
/// or another replica holds it. Run it in a transaction.
async fn form_digest(
    c: &mut Conn,
    recipient: &str,
    caps: &CapPolicy,
    now: DateTime<Utc>,
) -> Result<Option<Notification>, StoreError> {
    if !c.query_one(&sql!("digest_lock", split), &args![recipient]).await?.get::<bool>(0)? {
        return Ok(None);
    }
    let rows = c.query(&sql!("lock_pending_digest", split), &args![recipient]).await?;
    let entries: Vec<DigestEntry> = rows.iter().map(|r| doc(r, 0, "digest entry")).collect::<Result<_, _>>()?;
    let Some(oldest) = entries.iter().map(|e| e.at).min() else {
        return Ok(None);
    };
    let Some(row) = c.query_opt(&sql!("physician"), &args![recipient]).await? else {
        return Ok(None);
    };
    let physician: Physician = doc(&row, 0, "physician")?;
    let last_sent: Option<DateTime<Utc>> = c.query_one(&sql!("last_digest"), &args![recipient]).await?.get(0)?;
    if digest_due(&physician, caps, Some(oldest), last_sent, now) != DigestDecision::SendNow {
        return Ok(None);
    }
    let Some(n) = digest_notification(&physician.id, &entries, now) else {
        return Ok(None);
    };
    if !insert_outbox(c, &n, now).await? {
        // This minute's digest exists already: the entries wait for the next one.
        return Ok(None);
    }
    let keys: Vec<String> = rows.iter().map(|r| r.get::<String>(1)).collect::<Result<_, _>>()?;
    c.execute(&sql!("assign_digest", split), &args![n.key.as_str(), keys]).await?;
    let audit: Vec<AuditRecord> = entries
        .iter()
        .map(|e| AuditRecord {
            at: now,
            episode_id: e.episode_id.clone(),
            entry: AuditEntry::DigestFormed {
                digest: n.key.clone(),
                key: e.key.clone(),
                recipient: physician.id.clone(),
            },
        })
        .collect();
    insert_audit(c, &audit).await?;
    Ok(Some(n))
}

/// Creates or replaces a physician (validated first).
///
/// # Errors
///
/// [`StoreError::Invalid`] for an invalid entry; the database's.
pub async fn upsert_physician(c: &mut Conn, p: &Physician) -> Result<(), StoreError> {
    p.validate().map_err(|e| StoreError::Invalid(e.to_string()))?;
    let mobile = p.mobile.as_ref().map(|m| m.to_string());
    c.execute(&sql!("upsert_physician"), &args![p.id.as_str(), mobile, json(p)?]).await?;
    Ok(())
}

async fn physicians(c: &mut Conn) -> Result<Vec<Physician>, StoreError> {
    c.query(&sql!("physicians"), &[]).await?.iter().map(|r| doc(r, 0, "physician")).collect()
}

/// Creates or replaces a patient's care team (validated against the directory).
///
/// # Errors
///
/// [`StoreError::Invalid`] for a team the directory refutes; the database's.
pub async fn set_care_team(c: &mut Conn, team: &CareTeam) -> Result<(), StoreError> {
    let directory = Directory::new(physicians(c).await?).map_err(|e| StoreError::Invalid(e.to_string()))?;
    team.validate(&directory).map_err(|e| StoreError::Invalid(e.to_string()))?;
    c.execute(&sql!("set_care_team"), &args![team.patient_id.as_str(), team.responsible.as_str(), json(team)?]).await?;
    Ok(())
}

#[async_trait]
impl AlertStore for SqlAlertStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.db.run(async |c| c.query(&sql!("ping"), &[]).await.map(drop)).await.map_err(StoreError::from)
    }

    async fn upsert_physician(&self, p: &Physician) -> Result<(), StoreError> {
        self.db.run(async |c| upsert_physician(c, p).await).await
    }

    async fn physicians(&self) -> Result<Vec<Physician>, StoreError> {
        self.db.run(async |c| physicians(c).await).await
    }

    async fn physician(&self, id: &PhysicianId) -> Result<Option<Physician>, StoreError> {
        let row = self.db.run(async |c| c.query_opt(&sql!("physician"), &args![id.as_str()]).await).await?;
        row.map(|r| doc(&r, 0, "physician")).transpose()
    }

    async fn physician_by_mobile(&self, mobile: &str) -> Result<Option<Physician>, StoreError> {
        let row = self.db.run(async |c| c.query_opt(&sql!("physician_by_mobile"), &args![mobile]).await).await?;
        row.map(|r| doc(&r, 0, "physician")).transpose()
    }

    async fn set_care_team(&self, team: &CareTeam) -> Result<(), StoreError> {
        self.db.run(async |c| set_care_team(c, team).await).await
    }

    async fn care_team(&self, patient: &PatientId) -> Result<Option<CareTeam>, StoreError> {
        let row = self.db.run(async |c| c.query_opt(&sql!("care_team"), &args![patient.as_str()]).await).await?;
        row.map(|r| doc(&r, 0, "care team")).transpose()
    }

    async fn transition(
        &self,
        episode: &EpisodeId,
        action: Action,
        options: &TransitionOptions,
        now: DateTime<Utc>,
    ) -> Result<Applied, StoreError> {
        self.db.transaction(async |c| transition(c, episode, &action, options, now).await).await
    }

    async fn due_episodes(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<EpisodeId>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.db.run(async |c| c.query(&sql!("due_episodes"), &args![now, limit]).await).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.extend(EpisodeId::new(r.get::<String>(0)?).ok());
        }
        Ok(out)
    }

    async fn episode_for_code(
        &self,
        physician: &PhysicianId,
        code: &str,
    ) -> Result<Option<(EpisodeId, Severity)>, StoreError> {
        let row = self
            .db
            .run(async |c| c.query_opt(&sql!("episode_for_code"), &args![physician.as_str(), code]).await)
            .await?;
        let Some(r) = row else { return Ok(None) };
        Ok(EpisodeId::new(r.get::<String>(0)?).ok().zip(Severity::parse(&r.get::<String>(1)?)))
    }

    async fn sms_admit(
        &self,
        sender_key: &str,
        physician: Option<&PhysicianId>,
        policy: &GuardPolicy,
        now: DateTime<Utc>,
    ) -> Result<Admission, StoreError> {
        self.db
            .transaction(async |c| {
                c.execute(&sql!("guard_init"), &args![sender_key, now]).await?;
                let row = c.query_one(&sql!("guard_lock", split), &args![sender_key]).await?;
                let current = GuardRow {
                    window_start: row.get(0)?,
                    failures: row.get(1)?,
                    locked_until: row.get(2)?,
                    lockouts: row.get(3)?,
                };
                let (next, admission) = admit(Some(current), policy, now);
                c.execute(
                    &sql!("guard_update"),
                    &args![
                        sender_key,
                        next.window_start,
                        i64::from(next.failures),
                        next.locked_until,
                        i64::from(next.lockouts)
                    ],
                )
                .await?;
                if let Admission::Locked { until, new_lockout: true } = admission {
                    let a = lockout_audit(sender_key, physician, &next, until);
                    c.execute(
                        &sql!("lockout_audit"),
                        &args![now, a.actor, a.actor_role, a.action, a.target_kind, a.target_id, a.details],
                    )
                    .await?;
                }
                Ok(admission)
            })
            .await
    }

    async fn sms_succeeded(&self, sender_key: &str) -> Result<(), StoreError> {
        self.db.run(async |c| c.execute(&sql!("sms_succeeded"), &args![sender_key]).await.map(drop)).await?;
        Ok(())
    }

    async fn episode(&self, episode: &EpisodeId) -> Result<Option<EpisodeState>, StoreError> {
        let row = self.db.run(async |c| c.query_opt(&sql!("episode"), &args![episode.as_str()]).await).await?;
        match row {
            Some(r) => r.get::<Option<String>>(0)?.map(|s| from_json(&s, "episode")).transpose(),
            None => Ok(None),
        }
    }

    async fn claim(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Claimed>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .db
            .transaction(async |c| c.query(&sql!("claim", split), &args![worker, lease_until, now, limit]).await)
            .await?;
        rows.iter().map(|r| Ok(Claimed { notification: doc(r, 0, "notification")?, attempts: r.get(1)? })).collect()
    }

    async fn render_context(&self, n: &Notification) -> Result<RenderContext, StoreError> {
        let episode = self.episode(&n.episode_id).await?;
        let chart = episode.as_ref().and_then(|e| {
            e.details
                .code
                .map(|code| (e.patient_id.to_string(), code, e.details.reading_time.max(e.details.detected_at)))
        });
        let (recipient, codes, history) = self
            .db
            .run(async |c| {
                let recipient = c.query_opt(&sql!("physician"), &args![n.recipient.as_str()]).await?;
                let codes = c.query(&sql!("ack_codes"), &args![n.episode_id.as_str(), n.recipient.as_str()]).await?;
                let mut history = Vec::new();
                if let Some((patient, code, end)) = &chart {
                    // The observations table belongs to the persist role; without it there is no chart.
                    match c
                        .query(
                            &sql!("history"),
                            &args![patient.as_str(), code.loinc(), *end - Duration::days(14), *end],
                        )
                        .await
                    {
                        Ok(rows) => history = rows,
                        Err(e) => tracing::debug!(episode = %n.episode_id, error = %e, "no history for the chart"),
                    }
                }
                Ok::<_, StoreError>((recipient, codes, history))
            })
            .await?;
        let recipient = recipient.map(|r| doc::<Physician>(&r, 0, "physician")).transpose()?;
        let codes: Vec<(String, Option<Severity>)> = codes
            .iter()
            .map(|r| Ok((r.get::<String>(0)?, Severity::parse(&r.get::<String>(1)?))))
            .collect::<Result<_, StoreError>>()?;
        let history = history.iter().map(|r| Ok((r.get(0)?, r.get(1)?))).collect::<Result<_, StoreError>>()?;
        Ok(RenderContext { episode, recipient, ack_code: super::code_for(codes, n.severity), history })
    }

    async fn complete(
        &self,
        key: &NotificationKey,
        attempt: u32,
        completion: Completion,
        audit: &[AuditRecord],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (key, attempts) = (key.as_str(), i64::from(attempt));
        self.db
            .transaction(async |c| {
                // Rows changed: 0 when the row was completed already (another
                // dispatcher took it over after the lease): nothing more to do then.
                let changed = match &completion {
                    Completion::Sent { provider_message_id } => {
                        c.execute(&sql!("outbox_sent"), &args![key, now, provider_message_id.as_deref(), attempts])
                            .await?
                    }
                    Completion::Retry { retry_at, error, .. } => {
                        c.execute(&sql!("outbox_retry"), &args![key, attempts, *retry_at, error.as_str()]).await?
                    }
                    Completion::Failed { error, .. } => {
                        c.execute(&sql!("outbox_failed"), &args![key, attempts, error.as_str()]).await?
                    }
                    Completion::Cancelled { reason } => {
                        c.execute(&sql!("outbox_cancelled"), &args![key, reason.as_str()]).await?
                    }
                };
                if changed == 1 {
                    if let Completion::Failed { fallback: Some(f), .. } | Completion::Retry { fallback: Some(f), .. } =
                        &completion
                    {
                        insert_outbox(c, f, now).await?;
                    }
                    record_outcome(c, key, &completion, now).await?;
                }
                insert_audit(c, audit).await
            })
            .await
    }

    async fn awaiting_retry(&self) -> Result<u64, StoreError> {
        let n: i64 = self.db.run(async |c| c.query_one(&sql!("awaiting_retry"), &[]).await?.get(0)).await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn form_digests(
        &self,
        caps: &CapPolicy,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Notification>, StoreError> {
        let rows = self.db.run(async |c| c.query(&sql!("digest_recipients"), &[]).await).await?;
        let mut out = Vec::new();
        for r in &rows {
            if out.len() >= limit {
                break;
            }
            let recipient: String = r.get(0)?;
            if let Some(n) = self.db.transaction(async |c| form_digest(c, &recipient, caps, now).await).await? {
                out.push(n);
            }
        }
        Ok(out)
    }

    async fn digest_entries(&self, digest: &NotificationKey) -> Result<Vec<DigestEntry>, StoreError> {
        let rows = self.db.run(async |c| c.query(&sql!("digest_entries"), &args![digest.as_str()]).await).await?;
        rows.iter().map(|r| doc(r, 0, "digest entry")).collect()
    }

    async fn pending_digest(&self, recipient: &PhysicianId) -> Result<Vec<DigestEntry>, StoreError> {
        let rows = self.db.run(async |c| c.query(&sql!("pending_digest"), &args![recipient.as_str()]).await).await?;
        rows.iter().map(|r| doc(r, 0, "digest entry")).collect()
    }

    async fn outbox(&self, episode: &EpisodeId) -> Result<Vec<OutboxRow>, StoreError> {
        let rows = self.db.run(async |c| c.query(&sql!("outbox"), &args![episode.as_str()]).await).await?;
        rows.iter()
            .map(|r| {
                Ok(OutboxRow {
                    notification: doc(r, 0, "notification")?,
                    status: OutboxStatus::parse(&r.get::<String>(1)?)
                        .ok_or_else(|| StoreError::Invalid("unknown outbox status".into()))?,
                    attempts: r.get(2)?,
                    provider_message_id: r.get(3)?,
                    last_error: r.get(4)?,
                })
            })
            .collect()
    }

    async fn audit_trail(&self, episode: &EpisodeId) -> Result<Vec<AuditRecord>, StoreError> {
        let rows = self.db.run(async |c| c.query(&sql!("audit_trail"), &args![episode.as_str()]).await).await?;
        rows.iter().map(|r| doc(r, 0, "audit record")).collect()
    }
}
