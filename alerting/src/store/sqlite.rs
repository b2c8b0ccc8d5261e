//! The SQLite driver of [`AlertStore`], for the embedded mode (one process).
//! Transitions run in `BEGIN IMMEDIATE` transactions; the outbox lease works
//! as on PostgreSQL (a single writer makes `SKIP LOCKED` unnecessary).

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use vitalwatch_platform::store::sqlite::SharedConnection;
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

/// A SQLite-backed alert store.
#[derive(Clone)]
pub struct SqliteAlertStore {
    conn: SharedConnection,
}

impl std::fmt::Debug for SqliteAlertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteAlertStore").finish_non_exhaustive()
    }
}

fn err(e: rusqlite::Error) -> StoreError {
    vitalwatch_platform::store::sqlite::err(e).into()
}

fn us(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn from_us(v: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(v).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

impl SqliteAlertStore {
    /// Opens (creating if needed) the database file; `:memory:` for tests.
    pub fn open(path: &str) -> Result<Self, StoreError> {
        Ok(Self { conn: SharedConnection::new(vitalwatch_platform::store::sqlite::open_connection(path)?) })
    }

    /// Wraps an open connection (whose schema is migrated).
    pub fn from_connection(conn: Connection) -> Self {
        Self { conn: SharedConnection::new(conn) }
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.conn.call(f).await.map_err(|e| StoreError::Transient(format!("database task: {e}")))?
    }
}

fn load_team(tx: &Transaction<'_>, patient: &str, now: DateTime<Utc>) -> Result<TeamContext, StoreError> {
    let doc: Option<String> = tx
        .query_row("SELECT doc FROM alert_care_teams WHERE patient_id = ?1", [patient], |r| r.get(0))
        .optional()
        .map_err(err)?;
    let Some(doc) = doc else {
        return Ok(TeamContext::default());
    };
    let team: CareTeam = from_json(&doc, "care team")?;
    let mut ids: Vec<String> = std::iter::once(&team.responsible)
        .chain(team.deputies.iter())
        .chain(team.policy.named_physicians())
        .map(|p| p.to_string())
        .collect();
    ids.sort();
    ids.dedup();
    let mut physicians = Vec::new();
    let mut load = RecentLoad::new();
    for id in &ids {
        let doc: Option<String> = tx
            .query_row("SELECT doc FROM alert_physicians WHERE physician_id = ?1", [id], |r| r.get(0))
            .optional()
            .map_err(err)?;
        if let Some(doc) = doc {
            physicians.push(from_json::<Physician>(&doc, "physician")?);
        }
        let count: i64 = tx
            .query_row(
                "SELECT count(*) FROM alert_outbox WHERE recipient = ?1 AND created_at > ?2 AND status <> 'cancelled'",
                params![id, us(now - Duration::hours(1))],
                |r| r.get(0),
            )
            .map_err(err)?;
        if let Ok(pid) = PhysicianId::new(id.clone()) {
            load.set(pid, u32::try_from(count).unwrap_or(u32::MAX));
        }
    }
    let directory = Directory::new(physicians).map_err(|e| StoreError::Invalid(e.to_string()))?;
    Ok(TeamContext { team: Some(team), directory, load })
}

fn insert_audit(tx: &Transaction<'_>, audit: &[AuditRecord]) -> Result<(), StoreError> {
    for r in audit {
        tx.execute(
            "INSERT INTO alert_audit (at, episode_id, entry_type, record) VALUES (?1, ?2, ?3, ?4)",
            params![us(r.at), r.episode_id.as_str(), entry_type(r), json(r)?],
        )
        .map_err(err)?;
    }
    Ok(())
}

fn insert_outbox(tx: &Transaction<'_>, n: &Notification, now: DateTime<Utc>) -> Result<bool, StoreError> {
    let inserted = tx
        .execute(
            "INSERT INTO alert_outbox (key, episode_id, recipient, channel, notification, next_attempt_at, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (key) DO NOTHING",
            params![
                n.key.as_str(),
                n.episode_id.as_str(),
                n.recipient.as_str(),
                n.channel.as_str(),
                json(n)?,
                us(n.due_at.min(now)),
                us(now)
            ],
        )
        .map_err(err)?;
    Ok(inserted == 1)
}

fn transition_tx(
    c: &mut Connection,
    episode: &EpisodeId,
    action: &Action,
    options: &TransitionOptions,
    now: DateTime<Utc>,
) -> Result<Applied, StoreError> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(err)?;
    if let Action::Event(event) = action {
        tx.execute(
            "INSERT INTO alert_episodes (episode_id, patient_id, updated_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            params![episode.as_str(), event.patient_id, us(now)],
        )
        .map_err(err)?;
    }
    let row: Option<(Option<String>, String)> = tx
        .query_row("SELECT state, patient_id FROM alert_episodes WHERE episode_id = ?1", [episode.as_str()], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()
        .map_err(err)?;
    let Some((state, patient)) = row else {
        return Err(EngineError::UnknownEpisode(episode.to_string()).into());
    };
    let current: Option<EpisodeState> = state.as_deref().map(|s| from_json(s, "episode")).transpose()?;
    let ctx = load_team(&tx, &patient, now)?;
    let applied = engine::apply(current, action, &ctx, &options.caps, now)?;
    let Some(state) = &applied.state else {
        return Ok(applied);
    };
    if let Action::Ack { by, via, nonce, .. } = action
        && (applied.ack.is_some() || nonce.is_some())
    {
        let via = json(via)?.trim_matches('"').to_string();
        let n = tx
            .execute(
                "INSERT INTO alert_acknowledgments (episode_id, physician_id, via, severity, at, nonce) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (nonce) DO NOTHING",
                params![episode.as_str(), by.as_str(), via, state.severity.as_str(), us(now), nonce],
            )
            .map_err(err)?;
        if n == 0 {
            return Err(EngineError::NonceUsed.into());
        }
    }
    tx.execute(
        "UPDATE alert_episodes SET state = ?2, severity = ?3, resolved_at = ?4, next_wakeup = ?5, updated_at = ?6 \
         WHERE episode_id = ?1",
        params![
            episode.as_str(),
            json(state)?,
            state.severity.as_str(),
            state.resolved_at.map(us),
            applied.next_wakeup.map(us),
            us(now)
        ],
    )
    .map_err(err)?;
    for d in &applied.digest {
        tx.execute(
            "INSERT INTO alert_digest_entries (key, recipient, episode_id, entry, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (key) DO NOTHING",
            params![d.key.as_str(), d.recipient.as_str(), d.episode_id.as_str(), json(d)?, us(d.at)],
        )
        .map_err(err)?;
    }
    let mut recipients: Vec<&PhysicianId> = Vec::new();
    for n in &applied.outbox {
        insert_outbox(&tx, n, now)?;
        if !recipients.contains(&&n.recipient) {
            recipients.push(&n.recipient);
        }
    }
    if let Some(codes) = &options.codes {
        for r in recipients {
            // A code acknowledges the severity it was sent for: a rise needs a new code.
            let have: Vec<String> = {
                let mut st = tx
                    .prepare("SELECT severity FROM alert_ack_codes WHERE episode_id = ?1 AND physician_id = ?2")
                    .map_err(err)?;
                st.query_map(params![episode.as_str(), r.as_str()], |row| row.get::<_, String>(0))
                    .map_err(err)?
                    .collect::<Result<_, _>>()
                    .map_err(err)?
            };
            if have.iter().filter_map(|s| Severity::parse(s)).any(|s| s >= state.severity) {
                continue;
            }
            let taken: HashSet<String> = {
                let mut st = tx
                    .prepare(
                        "SELECT a.code FROM alert_ack_codes a JOIN alert_episodes e ON e.episode_id = a.episode_id \
                         WHERE a.physician_id = ?1 AND e.resolved_at IS NULL",
                    )
                    .map_err(err)?;
                st.query_map([r.as_str()], |row| row.get::<_, String>(0))
                    .map_err(err)?
                    .collect::<Result<_, _>>()
                    .map_err(err)?
            };
            match codes.assign(episode, r, |c| taken.contains(c.as_str())) {
                Ok(code) => {
                    tx.execute(
                        "INSERT INTO alert_ack_codes (episode_id, physician_id, code, severity) VALUES (?1, ?2, ?3, ?4) \
                         ON CONFLICT DO NOTHING",
                        params![episode.as_str(), r.as_str(), code.as_str(), state.severity.as_str()],
                    )
                    .map_err(err)?;
                }
                Err(e) => {
                    tracing::warn!(episode = %episode, physician = %r, error = %e, "no SMS acknowledgment code")
                }
            }
        }
    }
    insert_audit(&tx, &applied.audit)?;
    tx.commit().map_err(err)?;
    Ok(applied)
}

/// Records the outcome of a delivery in its episode's state: a failure for
/// good, a queued fallback (so that reminders and the all-clear use it).
/// Without a fallback after a failure, the episode is due for re-planning at
/// once (escalation).
fn record_outcome(
    tx: &Transaction<'_>,
    key: &str,
    completion: &Completion,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let (failed, fallback) = match completion {
        Completion::Failed { fallback, .. } => (true, fallback.as_ref()),
        Completion::Retry { fallback: Some(f), .. } => (false, Some(f)),
        _ => return Ok(()),
    };
    let row: Option<(Option<String>, String)> = tx
        .query_row(
            "SELECT e.state, e.episode_id FROM alert_episodes e JOIN alert_outbox o ON o.episode_id = e.episode_id \
             WHERE o.key = ?1",
            [key],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(err)?;
    let Some((Some(text), episode_id)) = row else {
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
    tx.execute(
        "UPDATE alert_episodes SET state = ?2, updated_at = ?3, \
         next_wakeup = CASE WHEN ?4 AND resolved_at IS NULL AND (next_wakeup IS NULL OR next_wakeup > ?3) \
         THEN ?3 ELSE next_wakeup END WHERE episode_id = ?1",
        params![episode_id, json(&state)?, us(now), escalate],
    )
    .map_err(err)?;
    Ok(())
}

fn digest_rows(c: &Connection, sql: &str, arg: &str) -> Result<Vec<(String, DigestEntry)>, StoreError> {
    let mut st = c.prepare(sql).map_err(err)?;
    let rows: Vec<(String, String)> =
        st.query_map([arg], |r| Ok((r.get(0)?, r.get(1)?))).map_err(err)?.collect::<Result<_, _>>().map_err(err)?;
    rows.into_iter().map(|(key, doc)| Ok((key, from_json(&doc, "digest entry")?))).collect()
}

const PENDING_DIGEST: &str = "SELECT key, entry FROM alert_digest_entries WHERE recipient = ?1 AND digest_key IS NULL \
                              ORDER BY created_at, key";

fn form_digest(
    c: &mut Connection,
    recipient: &str,
    caps: &CapPolicy,
    now: DateTime<Utc>,
) -> Result<Option<Notification>, StoreError> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(err)?;
    let rows = digest_rows(&tx, PENDING_DIGEST, recipient)?;
    let Some(oldest) = rows.iter().map(|(_, e)| e.at).min() else {
        return Ok(None);
    };
    let doc: Option<String> = tx
        .query_row("SELECT doc FROM alert_physicians WHERE physician_id = ?1", [recipient], |r| r.get(0))
        .optional()
        .map_err(err)?;
    let Some(physician) = parse_physician(doc)? else {
        return Ok(None);
    };
    let last_sent: Option<i64> = tx
        .query_row(
            "SELECT max(created_at) FROM alert_outbox WHERE recipient = ?1 AND key LIKE 'digest:%'",
            [recipient],
            |r| r.get(0),
        )
        .map_err(err)?;
    if digest_due(&physician, caps, Some(oldest), last_sent.map(from_us), now) != DigestDecision::SendNow {
        return Ok(None);
    }
    let entries: Vec<DigestEntry> = rows.iter().map(|(_, e)| e.clone()).collect();
    let Some(n) = digest_notification(&physician.id, &entries, now) else {
        return Ok(None);
    };
    if !insert_outbox(&tx, &n, now)? {
        return Ok(None);
    }
    for (key, _) in &rows {
        tx.execute(
            "UPDATE alert_digest_entries SET digest_key = ?1 WHERE key = ?2 AND digest_key IS NULL",
            params![n.key.as_str(), key],
        )
        .map_err(err)?;
    }
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
    insert_audit(&tx, &audit)?;
    tx.commit().map_err(err)?;
    Ok(Some(n))
}

fn parse_physician(doc: Option<String>) -> Result<Option<Physician>, StoreError> {
    doc.map(|d| from_json(&d, "physician")).transpose()
}

#[async_trait]
impl AlertStore for SqliteAlertStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.run(|c| c.execute_batch("SELECT 1").map_err(err)).await
    }

    async fn upsert_physician(&self, p: &Physician) -> Result<(), StoreError> {
        p.validate().map_err(|e| StoreError::Invalid(e.to_string()))?;
        let (id, mobile, doc) = (p.id.to_string(), p.mobile.as_ref().map(|m| m.to_string()), json(p)?);
        self.run(move |c| {
            c.execute(
                "INSERT INTO alert_physicians (physician_id, mobile, doc, updated_at) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (physician_id) DO UPDATE SET mobile = excluded.mobile, doc = excluded.doc, updated_at = excluded.updated_at",
                params![id, mobile, doc, us(Utc::now())],
            )
            .map(|_| ())
            .map_err(err)
        })
        .await
    }

    async fn physicians(&self) -> Result<Vec<Physician>, StoreError> {
        self.run(|c| {
            let mut st = c.prepare("SELECT doc FROM alert_physicians ORDER BY physician_id").map_err(err)?;
            let docs: Vec<String> =
                st.query_map([], |r| r.get(0)).map_err(err)?.collect::<Result<_, _>>().map_err(err)?;
            docs.iter().map(|d| from_json(d, "physician")).collect()
        })
        .await
    }

    async fn physician_by_mobile(&self, mobile: &str) -> Result<Option<Physician>, StoreError> {
        let mobile = mobile.to_string();
        self.run(move |c| {
            let doc: Option<String> = c
                .query_row("SELECT doc FROM alert_physicians WHERE mobile = ?1", [mobile], |r| r.get(0))
                .optional()
                .map_err(err)?;
            parse_physician(doc)
        })
        .await
    }

    async fn set_care_team(&self, team: &CareTeam) -> Result<(), StoreError> {
        let directory = Directory::new(self.physicians().await?).map_err(|e| StoreError::Invalid(e.to_string()))?;
        team.validate(&directory).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let (patient, responsible, doc) = (team.patient_id.to_string(), team.responsible.to_string(), json(team)?);
        self.run(move |c| {
            c.execute(
                "INSERT INTO alert_care_teams (patient_id, responsible, doc, updated_at) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (patient_id) DO UPDATE SET responsible = excluded.responsible, doc = excluded.doc, updated_at = excluded.updated_at",
                params![patient, responsible, doc, us(Utc::now())],
            )
            .map(|_| ())
            .map_err(err)
        })
        .await
    }

    async fn care_team(&self, patient: &PatientId) -> Result<Option<CareTeam>, StoreError> {
        let patient = patient.to_string();
        self.run(move |c| {
            let doc: Option<String> = c
                .query_row("SELECT doc FROM alert_care_teams WHERE patient_id = ?1", [patient], |r| r.get(0))
                .optional()
                .map_err(err)?;
            doc.map(|d| from_json(&d, "care team")).transpose()
        })
        .await
    }

    async fn transition(
        &self,
        episode: &EpisodeId,
        action: Action,
        options: &TransitionOptions,
        now: DateTime<Utc>,
    ) -> Result<Applied, StoreError> {
        let (episode, options) = (episode.clone(), options.clone());
        self.run(move |c| transition_tx(c, &episode, &action, &options, now)).await
    }

    async fn due_episodes(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<EpisodeId>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run(move |c| {
            let mut st = c
                .prepare(
                    "SELECT episode_id FROM alert_episodes WHERE next_wakeup <= ?1 AND state IS NOT NULL \
                     ORDER BY next_wakeup LIMIT ?2",
                )
                .map_err(err)?;
            let ids: Vec<String> = st
                .query_map(params![us(now), limit], |r| r.get(0))
                .map_err(err)?
                .collect::<Result<_, _>>()
                .map_err(err)?;
            Ok(ids.into_iter().filter_map(|s| EpisodeId::new(s).ok()).collect())
        })
        .await
    }

    async fn episode_for_code(
        &self,
        physician: &PhysicianId,
        code: &str,
    ) -> Result<Option<(EpisodeId, Severity)>, StoreError> {
        let (physician, code) = (physician.to_string(), code.to_string());
        self.run(move |c| {
            let row: Option<(String, String)> = c
                .query_row(
                    "SELECT a.episode_id, a.severity FROM alert_ack_codes a JOIN alert_episodes e ON e.episode_id = a.episode_id \
                     WHERE a.physician_id = ?1 AND a.code = ?2 AND e.resolved_at IS NULL \
                     ORDER BY e.updated_at DESC LIMIT 1",
                    params![physician, code],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(err)?;
            Ok(row.and_then(|(id, sev)| Some((EpisodeId::new(id).ok()?, Severity::parse(&sev)?))))
        })
        .await
    }

    async fn sms_admit(
        &self,
        sender_key: &str,
        physician: Option<&PhysicianId>,
        policy: &GuardPolicy,
        now: DateTime<Utc>,
    ) -> Result<Admission, StoreError> {
        let (key, physician, policy) = (sender_key.to_string(), physician.cloned(), *policy);
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(err)?;
            let current: Option<GuardRow> = tx
                .query_row(
                    "SELECT window_start, failures, locked_until, lockouts FROM sms_inbound_guard WHERE sender_key = ?1",
                    [&key],
                    |r| {
                        Ok(GuardRow {
                            window_start: from_us(r.get(0)?),
                            failures: r.get(1)?,
                            locked_until: r.get::<_, Option<i64>>(2)?.map(from_us),
                            lockouts: r.get(3)?,
                        })
                    },
                )
                .optional()
                .map_err(err)?;
            let (next, admission) = admit(current, &policy, now);
            tx.execute(
                "INSERT INTO sms_inbound_guard (sender_key, window_start, failures, locked_until, lockouts) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (sender_key) DO UPDATE SET window_start = excluded.window_start, \
                 failures = excluded.failures, locked_until = excluded.locked_until, lockouts = excluded.lockouts",
                params![key, us(next.window_start), next.failures, next.locked_until.map(us), next.lockouts],
            )
            .map_err(err)?;
            if let Admission::Locked { until, new_lockout: true } = admission {
                let a = lockout_audit(&key, physician.as_ref(), &next, until);
                tx.execute(
                    "INSERT INTO admin_audit (at, actor, actor_role, action, target_kind, target_id, patient_id, details) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, ?7)",
                    params![us(now), a.actor, a.actor_role, a.action, a.target_kind, a.target_id, a.details],
                )
                .map_err(err)?;
            }
            tx.commit().map_err(err)?;
            Ok(admission)
        })
        .await
    }

    async fn sms_succeeded(&self, sender_key: &str) -> Result<(), StoreError> {
        let key = sender_key.to_string();
        self.run(move |c| {
            c.execute("UPDATE sms_inbound_guard SET failures = 0 WHERE sender_key = ?1", [key]).map_err(err)?;
            Ok(())
        })
        .await
    }

    async fn episode(&self, episode: &EpisodeId) -> Result<Option<EpisodeState>, StoreError> {
        let episode = episode.to_string();
        self.run(move |c| {
            let s: Option<Option<String>> = c
                .query_row("SELECT state FROM alert_episodes WHERE episode_id = ?1", [episode], |r| r.get(0))
                .optional()
                .map_err(err)?;
            s.flatten().map(|s| from_json(&s, "episode")).transpose()
        })
        .await
    }

    async fn claim(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Claimed>, StoreError> {
        let worker = worker.to_string();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(err)?;
            let rows: Vec<(String, String, i64)> = {
                let mut st = tx
                    .prepare(
                        "SELECT key, notification, attempts FROM alert_outbox WHERE status = 'pending' AND next_attempt_at <= ?1 \
                         AND (claimed_until IS NULL OR claimed_until <= ?1) ORDER BY next_attempt_at LIMIT ?2",
                    )
                    .map_err(err)?;
                st.query_map(params![us(now), limit], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .map_err(err)?
                    .collect::<Result<_, _>>()
                    .map_err(err)?
            };
            let mut out = Vec::with_capacity(rows.len());
            for (key, doc, attempts) in rows {
                tx.execute(
                    "UPDATE alert_outbox SET claimed_by = ?2, claimed_until = ?3 WHERE key = ?1",
                    params![key, worker, us(lease_until)],
                )
                .map_err(err)?;
                out.push(Claimed {
                    notification: from_json(&doc, "notification")?,
                    attempts: u32::try_from(attempts).unwrap_or(0),
                });
            }
            tx.commit().map_err(err)?;
            Ok(out)
        })
        .await
    }

    async fn render_context(&self, n: &Notification) -> Result<RenderContext, StoreError> {
        let episode = self.episode(&n.episode_id).await?;
        let (ep_id, recipient, severity) = (n.episode_id.to_string(), n.recipient.to_string(), n.severity);
        let query = episode.as_ref().and_then(|e| {
            e.details.code.map(|code| {
                let end = e.details.reading_time.max(e.details.detected_at);
                (e.patient_id.to_string(), code.loinc().to_string(), end)
            })
        });
        let (recipient, ack_code, history) = self
            .run(move |c| {
                let doc: Option<String> = c
                    .query_row(
                        "SELECT doc FROM alert_physicians WHERE physician_id = ?1",
                        [&recipient],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(err)?;
                let code: Vec<(String, Option<Severity>)> = {
                    let mut st = c
                        .prepare("SELECT code, severity FROM alert_ack_codes WHERE episode_id = ?1 AND physician_id = ?2")
                        .map_err(err)?;
                    st.query_map(params![ep_id, recipient], |r| {
                        Ok((r.get::<_, String>(0)?, Severity::parse(&r.get::<_, String>(1)?)))
                    })
                    .map_err(err)?
                    .collect::<Result<_, _>>()
                    .map_err(err)?
                };
                let mut history = Vec::new();
                if let Some((patient, code, end)) = query {
                    let rows = c
                        .prepare(
                            "SELECT time, value FROM observations WHERE patient_id = ?1 AND code = ?2 AND time > ?3 AND time <= ?4 \
                             ORDER BY time LIMIT 5000",
                        )
                        .and_then(|mut st| {
                            st.query_map(
                                params![patient, code, us(end - Duration::days(14)), us(end)],
                                |r| Ok((from_us(r.get(0)?), r.get::<_, f64>(1)?)),
                            )?
                            .collect::<Result<Vec<_>, _>>()
                        });
                    match rows {
                        Ok(r) => history = r,
                        Err(e) => tracing::debug!(error = %e, "no history for the chart"),
                    }
                }
                Ok((parse_physician(doc)?, code, history))
            })
            .await?;
        Ok(RenderContext { episode, recipient, ack_code: super::code_for(ack_code, severity), history })
    }

    async fn complete(
        &self,
        key: &NotificationKey,
        attempt: u32,
        completion: Completion,
        audit: &[AuditRecord],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let key = key.to_string();
        let audit = audit.to_vec();
        let attempts = i64::from(attempt);
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(err)?;
            // Rows changed: 0 when the row was completed already (another
            // dispatcher took it over after the lease): nothing more to do then.
            let changed = match &completion {
                Completion::Sent { provider_message_id } => tx.execute(
                    "UPDATE alert_outbox SET status = 'sent', sent_at = ?2, provider_message_id = ?3, attempts = ?4, \
                     claimed_by = NULL, claimed_until = NULL, last_error = NULL WHERE key = ?1 AND status = 'pending'",
                    params![key, us(now), provider_message_id, attempts],
                ),
                Completion::Retry { retry_at, error, .. } => tx.execute(
                    "UPDATE alert_outbox SET attempts = ?2, next_attempt_at = ?3, last_error = ?4, \
                     claimed_by = NULL, claimed_until = NULL WHERE key = ?1 AND status = 'pending'",
                    params![key, attempts, us(*retry_at), error],
                ),
                Completion::Failed { error, .. } => tx.execute(
                    "UPDATE alert_outbox SET status = 'failed', attempts = ?2, last_error = ?3, \
                     claimed_by = NULL, claimed_until = NULL WHERE key = ?1 AND status = 'pending'",
                    params![key, attempts, error],
                ),
                Completion::Cancelled { reason } => tx.execute(
                    "UPDATE alert_outbox SET status = 'cancelled', last_error = ?2, \
                     claimed_by = NULL, claimed_until = NULL WHERE key = ?1 AND status = 'pending'",
                    params![key, reason],
                ),
            }
            .map_err(err)?;
            if changed == 1 {
                if let Completion::Failed { fallback: Some(f), .. } | Completion::Retry { fallback: Some(f), .. } =
                    &completion
                {
                    insert_outbox(&tx, f, now)?;
                }
                record_outcome(&tx, &key, &completion, now)?;
            }
            insert_audit(&tx, &audit)?;
            tx.commit().map_err(err)
        })
        .await
    }

    async fn awaiting_retry(&self) -> Result<u64, StoreError> {
        self.run(|c| {
            let n: i64 = c
                .query_row("SELECT count(*) FROM alert_outbox WHERE status = 'pending' AND attempts > 0", [], |r| {
                    r.get(0)
                })
                .map_err(err)?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    async fn form_digests(
        &self,
        caps: &CapPolicy,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Notification>, StoreError> {
        let caps = *caps;
        self.run(move |c| {
            let recipients: Vec<String> = {
                let mut st = c
                    .prepare(
                        "SELECT recipient FROM alert_digest_entries WHERE digest_key IS NULL \
                         GROUP BY recipient ORDER BY min(created_at)",
                    )
                    .map_err(err)?;
                st.query_map([], |r| r.get(0)).map_err(err)?.collect::<Result<_, _>>().map_err(err)?
            };
            let mut out = Vec::new();
            for r in recipients {
                if out.len() >= limit {
                    break;
                }
                if let Some(n) = form_digest(c, &r, &caps, now)? {
                    out.push(n);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn digest_entries(&self, digest: &NotificationKey) -> Result<Vec<DigestEntry>, StoreError> {
        let digest = digest.to_string();
        self.run(move |c| {
            let rows = digest_rows(
                c,
                "SELECT key, entry FROM alert_digest_entries WHERE digest_key = ?1 ORDER BY created_at, key",
                &digest,
            )?;
            Ok(rows.into_iter().map(|(_, e)| e).collect())
        })
        .await
    }

    async fn pending_digest(&self, recipient: &PhysicianId) -> Result<Vec<DigestEntry>, StoreError> {
        let recipient = recipient.to_string();
        self.run(move |c| Ok(digest_rows(c, PENDING_DIGEST, &recipient)?.into_iter().map(|(_, e)| e).collect())).await
    }

    async fn outbox(&self, episode: &EpisodeId) -> Result<Vec<OutboxRow>, StoreError> {
        let episode = episode.to_string();
        self.run(move |c| {
            let mut st = c
                .prepare(
                    "SELECT notification, status, attempts, provider_message_id, last_error FROM alert_outbox \
                     WHERE episode_id = ?1 ORDER BY created_at, key",
                )
                .map_err(err)?;
            type Row = (String, String, i64, Option<String>, Option<String>);
            let rows: Vec<Row> = st
                .query_map([episode], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
                .map_err(err)?
                .collect::<Result<_, _>>()
                .map_err(err)?;
            rows.into_iter()
                .map(|(doc, status, attempts, pmid, last_error)| {
                    Ok(OutboxRow {
                        notification: from_json(&doc, "notification")?,
                        status: OutboxStatus::parse(&status)
                            .ok_or_else(|| StoreError::Invalid("unknown outbox status".into()))?,
                        attempts: u32::try_from(attempts).unwrap_or(0),
                        provider_message_id: pmid,
                        last_error,
                    })
                })
                .collect()
        })
        .await
    }

    async fn audit_trail(&self, episode: &EpisodeId) -> Result<Vec<AuditRecord>, StoreError> {
        let episode = episode.to_string();
        self.run(move |c| {
            let mut st = c.prepare("SELECT record FROM alert_audit WHERE episode_id = ?1 ORDER BY id").map_err(err)?;
            let docs: Vec<String> =
                st.query_map([episode], |r| r.get(0)).map_err(err)?.collect::<Result<_, _>>().map_err(err)?;
            docs.iter().map(|d| from_json(d, "audit record")).collect()
        })
        .await
    }
}
