//! The PostgreSQL driver of [`AlertStore`]. Several replicas may share the
//! database: episode transitions lock the episode row (`FOR UPDATE`), and
//! dispatchers claim outbox rows with `FOR UPDATE SKIP LOCKED` and a lease.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use tokio::sync::MutexGuard;
use tokio_postgres::{Client, Transaction};
use vitalwatch_platform::store::DbTimeouts;
use vitalwatch_platform::store::postgres::PgConnection;
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

/// A PostgreSQL-backed alert store on one connection (reconnects when lost).
pub struct PgAlertStore {
    conn: PgConnection,
}

impl std::fmt::Debug for PgAlertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgAlertStore").finish_non_exhaustive()
    }
}

fn classify(e: tokio_postgres::Error) -> StoreError {
    vitalwatch_platform::store::postgres::classify(e).into()
}

/// Connections of one alerting process: the alert-event consumer applies
/// events of different episodes concurrently and each dispatcher delivers
/// several notifications at once; one connection serialized them all.
const POOL: usize = 4;

impl PgAlertStore {
    /// Connects (and checks the connection).
    pub async fn connect(url: &str, timeouts: DbTimeouts) -> Result<Self, StoreError> {
        let s = PgAlertStore { conn: PgConnection::pool(url, POOL).with_timeouts(timeouts) };
        drop(s.client().await?);
        Ok(s)
    }

    async fn client(&self) -> Result<MutexGuard<'_, Option<Client>>, StoreError> {
        self.conn.client().await.map_err(StoreError::from)
    }
}

/// Runs `$body` on a live client, bounded by the statement timeout (see
/// [`PgConnection::run`]); it is the value of the calling function.
macro_rules! with_client {
    ($self:ident, $c:ident => $body:expr) => {{ $self.conn.run(async |$c: &mut Client| -> Result<_, StoreError> { $body }).await }};
}

async fn load_team(tx: &Transaction<'_>, patient: &str, now: DateTime<Utc>) -> Result<TeamContext, StoreError> {
    let Some(row) = tx
        .query_opt("SELECT doc::text FROM alert_care_teams WHERE patient_id = $1", &[&patient])
        .await
        .map_err(classify)?
    else {
        return Ok(TeamContext::default());
    };
    let team: CareTeam = from_json(row.get::<_, &str>(0), "care team")?;
    let mut ids: Vec<String> = std::iter::once(&team.responsible)
        .chain(team.deputies.iter())
        .chain(team.policy.named_physicians())
        .map(|p| p.to_string())
        .collect();
    ids.sort();
    ids.dedup();
    let mut physicians = Vec::new();
    for r in tx
        .query("SELECT doc::text FROM alert_physicians WHERE physician_id = ANY($1)", &[&ids])
        .await
        .map_err(classify)?
    {
        physicians.push(from_json::<Physician>(r.get::<_, &str>(0), "physician")?);
    }
    let directory = Directory::new(physicians).map_err(|e| StoreError::Invalid(e.to_string()))?;
    let mut load = RecentLoad::new();
    for r in tx
        .query(
            "SELECT recipient, count(*) FROM alert_outbox WHERE recipient = ANY($1) AND created_at > $2 \
             AND status <> 'cancelled' GROUP BY recipient",
            &[&ids, &(now - Duration::hours(1))],
        )
        .await
        .map_err(classify)?
    {
        if let Ok(id) = PhysicianId::new(r.get::<_, String>(0)) {
            load.set(id, u32::try_from(r.get::<_, i64>(1)).unwrap_or(u32::MAX));
        }
    }
    Ok(TeamContext { team: Some(team), directory, load })
}

async fn insert_audit(tx: &Transaction<'_>, audit: &[AuditRecord]) -> Result<(), StoreError> {
    for r in audit {
        tx.execute(
            "INSERT INTO alert_audit (at, episode_id, entry_type, record) VALUES ($1, $2, $3, $4::text::jsonb)",
            &[&r.at, &r.episode_id.as_str(), &entry_type(r), &json(r)?],
        )
        .await
        .map_err(classify)?;
    }
    Ok(())
}

async fn insert_outbox(tx: &Transaction<'_>, n: &Notification, now: DateTime<Utc>) -> Result<bool, StoreError> {
    let inserted = tx
        .execute(
            "INSERT INTO alert_outbox (key, episode_id, recipient, channel, notification, next_attempt_at, created_at) \
             VALUES ($1, $2, $3, $4, $5::text::jsonb, $6, $7) ON CONFLICT (key) DO NOTHING",
            &[
                &n.key.as_str(),
                &n.episode_id.as_str(),
                &n.recipient.as_str(),
                &n.channel.as_str(),
                &json(n)?,
                &n.due_at.min(now),
                &now,
            ],
        )
        .await
        .map_err(classify)?;
    Ok(inserted == 1)
}

async fn insert_digest_entry(tx: &Transaction<'_>, d: &DigestEntry) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO alert_digest_entries (key, recipient, episode_id, entry, created_at) \
         VALUES ($1, $2, $3, $4::text::jsonb, $5) ON CONFLICT (key) DO NOTHING",
        &[&d.key.as_str(), &d.recipient.as_str(), &d.episode_id.as_str(), &json(d)?, &d.at],
    )
    .await
    .map_err(classify)?;
    Ok(())
}

/// Records the outcome of a delivery in its episode's state (under the
/// episode row lock): a failure for good, a queued fallback (so that
/// reminders and the all-clear use it). Without a fallback after a failure,
/// the episode is due for re-planning at once (escalation).
async fn record_outcome(
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
    let row = tx
        .query_opt(
            "SELECT e.state::text, e.episode_id FROM alert_episodes e JOIN alert_outbox o ON o.episode_id = e.episode_id \
             WHERE o.key = $1 FOR UPDATE OF e",
            &[&key],
        )
        .await
        .map_err(classify)?;
    let Some((Some(text), episode_id)) = row.map(|r| (r.get::<_, Option<String>>(0), r.get::<_, String>(1))) else {
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
        "UPDATE alert_episodes SET state = $2::text::jsonb, updated_at = $3, \
         next_wakeup = CASE WHEN $4 AND resolved_at IS NULL THEN LEAST(next_wakeup, $3) ELSE next_wakeup END \
         WHERE episode_id = $1",
        &[&episode_id, &json(&state)?, &now, &escalate],
    )
    .await
    .map_err(classify)?;
    Ok(())
}

fn entries_of(rows: &[tokio_postgres::Row]) -> Result<Vec<DigestEntry>, StoreError> {
    rows.iter().map(|r| from_json(r.get::<_, &str>(0), "digest entry")).collect()
}

/// Forms the digest of one recipient if due; `None` when not due, empty,
/// or another replica holds it.
async fn form_digest(
    tx: &Transaction<'_>,
    recipient: &str,
    caps: &CapPolicy,
    now: DateTime<Utc>,
) -> Result<Option<Notification>, StoreError> {
    let locked: bool = tx
        .query_one("SELECT pg_try_advisory_xact_lock(hashtextextended('vitalwatch.digest:' || $1, 0))", &[&recipient])
        .await
        .map_err(classify)?
        .get(0);
    if !locked {
        return Ok(None);
    }
    let rows = tx
        .query(
            "SELECT entry::text, key FROM alert_digest_entries WHERE recipient = $1 AND digest_key IS NULL \
             ORDER BY created_at, key FOR UPDATE SKIP LOCKED",
            &[&recipient],
        )
        .await
        .map_err(classify)?;
    let entries = entries_of(&rows)?;
    let Some(oldest) = entries.iter().map(|e| e.at).min() else {
        return Ok(None);
    };
    let Some(doc) = tx
        .query_opt("SELECT doc::text FROM alert_physicians WHERE physician_id = $1", &[&recipient])
        .await
        .map_err(classify)?
    else {
        return Ok(None);
    };
    let physician: Physician = from_json(doc.get::<_, &str>(0), "physician")?;
    let last_sent: Option<DateTime<Utc>> = tx
        .query_one(
            "SELECT max(created_at) FROM alert_outbox WHERE recipient = $1 AND key LIKE 'digest:%'",
            &[&recipient],
        )
        .await
        .map_err(classify)?
        .get(0);
    if digest_due(&physician, caps, Some(oldest), last_sent, now) != DigestDecision::SendNow {
        return Ok(None);
    }
    let Some(n) = digest_notification(&physician.id, &entries, now) else {
        return Ok(None);
    };
    if !insert_outbox(tx, &n, now).await? {
        // This minute's digest exists already: the entries wait for the next one.
        return Ok(None);
    }
    let keys: Vec<String> = rows.iter().map(|r| r.get::<_, String>(1)).collect();
    tx.execute(
        "UPDATE alert_digest_entries SET digest_key = $1 WHERE key = ANY($2) AND digest_key IS NULL",
        &[&n.key.as_str(), &keys],
    )
    .await
    .map_err(classify)?;
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
    insert_audit(tx, &audit).await?;
    Ok(Some(n))
}

#[async_trait]
impl AlertStore for PgAlertStore {
    async fn ping(&self) -> Result<(), StoreError> {
        with_client!(self, c => c.simple_query("SELECT 1").await.map(|_| ()).map_err(classify))
    }

    async fn upsert_physician(&self, p: &Physician) -> Result<(), StoreError> {
        p.validate().map_err(|e| StoreError::Invalid(e.to_string()))?;
        let mobile = p.mobile.as_ref().map(|m| m.to_string());
        with_client!(self, c => {
            c.execute(
                "INSERT INTO alert_physicians (physician_id, mobile, doc, updated_at) VALUES ($1, $2, $3::text::jsonb, now()) \
                 ON CONFLICT (physician_id) DO UPDATE SET mobile = EXCLUDED.mobile, doc = EXCLUDED.doc, updated_at = now()",
                &[&p.id.as_str(), &mobile, &json(p)?],
            )
            .await
            .map(|_| ())
            .map_err(classify)
        })
    }

    async fn physicians(&self) -> Result<Vec<Physician>, StoreError> {
        with_client!(self, c => {
            let rows = c
                .query("SELECT doc::text FROM alert_physicians ORDER BY physician_id", &[])
                .await
                .map_err(classify)?;
            rows.iter().map(|r| from_json(r.get::<_, &str>(0), "physician")).collect()
        })
    }

    async fn physician_by_mobile(&self, mobile: &str) -> Result<Option<Physician>, StoreError> {
        with_client!(self, c => {
            let row = c
                .query_opt("SELECT doc::text FROM alert_physicians WHERE mobile = $1", &[&mobile])
                .await
                .map_err(classify)?;
            row.map(|r| from_json(r.get::<_, &str>(0), "physician")).transpose()
        })
    }

    async fn set_care_team(&self, team: &CareTeam) -> Result<(), StoreError> {
        let directory = Directory::new(self.physicians().await?).map_err(|e| StoreError::Invalid(e.to_string()))?;
        team.validate(&directory).map_err(|e| StoreError::Invalid(e.to_string()))?;
        with_client!(self, c => {
            c.execute(
                "INSERT INTO alert_care_teams (patient_id, responsible, doc, updated_at) VALUES ($1, $2, $3::text::jsonb, now()) \
                 ON CONFLICT (patient_id) DO UPDATE SET responsible = EXCLUDED.responsible, doc = EXCLUDED.doc, updated_at = now()",
                &[&team.patient_id.as_str(), &team.responsible.as_str(), &json(team)?],
            )
            .await
            .map(|_| ())
            .map_err(classify)
        })
    }

    async fn care_team(&self, patient: &PatientId) -> Result<Option<CareTeam>, StoreError> {
        with_client!(self, c => {
            let row = c
                .query_opt("SELECT doc::text FROM alert_care_teams WHERE patient_id = $1", &[&patient.as_str()])
                .await
                .map_err(classify)?;
            row.map(|r| from_json(r.get::<_, &str>(0), "care team")).transpose()
        })
    }

    async fn transition(
        &self,
        episode: &EpisodeId,
        action: Action,
        options: &TransitionOptions,
        now: DateTime<Utc>,
    ) -> Result<Applied, StoreError> {
        with_client!(self, c => {
            let tx = c.transaction().await.map_err(classify)?;
            if let Action::Event(event) = &action {
                tx.execute(
                    "INSERT INTO alert_episodes (episode_id, patient_id, updated_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    &[&episode.as_str(), &event.patient_id, &now],
                )
                .await
                .map_err(classify)?;
            }
            let row = tx
                .query_opt(
                    "SELECT state::text, patient_id FROM alert_episodes WHERE episode_id = $1 FOR UPDATE",
                    &[&episode.as_str()],
                )
                .await
                .map_err(classify)?;
            let Some(row) = row else {
                return Err(EngineError::UnknownEpisode(episode.to_string()).into());
            };
            let current: Option<EpisodeState> = row
                .get::<_, Option<&str>>(0)
                .map(|s| from_json(s, "episode"))
                .transpose()?;
            let patient = match (&current, &action) {
                (Some(s), _) => s.patient_id.to_string(),
                (None, Action::Event(e)) => e.patient_id.clone(),
                (None, _) => row.get::<_, String>(1),
            };
            let ctx = load_team(&tx, &patient, now).await?;
            let applied = engine::apply(current, &action, &ctx, &options.caps, now)?;
            let Some(state) = &applied.state else {
                return Ok(applied);
            };
            if let Action::Ack { by, via, nonce, .. } = &action
                && (applied.ack.is_some() || nonce.is_some())
            {
                let via = json(via)?.trim_matches('"').to_string();
                let n = tx
                    .execute(
                        "INSERT INTO alert_acknowledgments (episode_id, physician_id, via, severity, at, nonce) \
                         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (nonce) DO NOTHING",
                        &[&episode.as_str(), &by.as_str(), &via, &state.severity.as_str(), &now, nonce],
                    )
                    .await
                    .map_err(classify)?;
                if n == 0 {
                    return Err(EngineError::NonceUsed.into());
                }
            }
            tx.execute(
                "UPDATE alert_episodes SET state = $2::text::jsonb, severity = $3, resolved_at = $4, next_wakeup = $5, updated_at = $6 \
                 WHERE episode_id = $1",
                &[
                    &episode.as_str(),
                    &json(state)?,
                    &state.severity.as_str(),
                    &state.resolved_at,
                    &applied.next_wakeup,
                    &now,
                ],
            )
            .await
            .map_err(classify)?;
            for d in &applied.digest {
                insert_digest_entry(&tx, d).await?;
            }
            let mut recipients: Vec<&PhysicianId> = Vec::new();
            for n in &applied.outbox {
                insert_outbox(&tx, n, now).await?;
                if !recipients.contains(&&n.recipient) {
                    recipients.push(&n.recipient);
                }
            }
            if let Some(codes) = &options.codes {
                for r in recipients {
                    // A code acknowledges the severity it was sent for: a rise needs a new code.
                    let have = tx
                        .query(
                            "SELECT severity FROM alert_ack_codes WHERE episode_id = $1 AND physician_id = $2",
                            &[&episode.as_str(), &r.as_str()],
                        )
                        .await
                        .map_err(classify)?;
                    if have.iter().filter_map(|row| Severity::parse(row.get::<_, &str>(0))).any(|s| s >= state.severity) {
                        continue;
                    }
                    let taken: HashSet<String> = tx
                        .query(
                            "SELECT a.code FROM alert_ack_codes a JOIN alert_episodes e ON e.episode_id = a.episode_id \
                             WHERE a.physician_id = $1 AND e.resolved_at IS NULL",
                            &[&r.as_str()],
                        )
                        .await
                        .map_err(classify)?
                        .iter()
                        .map(|row| row.get::<_, String>(0))
                        .collect();
                    match codes.assign(episode, r, |c| taken.contains(c.as_str())) {
                        Ok(code) => {
                            tx.execute(
                                "INSERT INTO alert_ack_codes (episode_id, physician_id, code, severity) VALUES ($1, $2, $3, $4) \
                                 ON CONFLICT DO NOTHING",
                                &[&episode.as_str(), &r.as_str(), &code.as_str(), &state.severity.as_str()],
                            )
                            .await
                            .map_err(classify)?;
                        }
                        Err(e) => tracing::warn!(episode = %episode, physician = %r, error = %e, "no SMS acknowledgment code"),
                    }
                }
            }
            insert_audit(&tx, &applied.audit).await?;
            tx.commit().await.map_err(classify)?;
            Ok(applied)
        })
    }

    async fn due_episodes(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<EpisodeId>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        with_client!(self, c => {
            let rows = c
                .query(
                    "SELECT episode_id FROM alert_episodes WHERE next_wakeup <= $1 AND state IS NOT NULL \
                     ORDER BY next_wakeup LIMIT $2",
                    &[&now, &limit],
                )
                .await
                .map_err(classify)?;
            Ok(rows.iter().filter_map(|r| EpisodeId::new(r.get::<_, String>(0)).ok()).collect())
        })
    }

    async fn episode_for_code(
        &self,
        physician: &PhysicianId,
        code: &str,
    ) -> Result<Option<(EpisodeId, Severity)>, StoreError> {
        with_client!(self, c => {
            let row = c
                .query_opt(
                    "SELECT a.episode_id, a.severity FROM alert_ack_codes a JOIN alert_episodes e ON e.episode_id = a.episode_id \
                     WHERE a.physician_id = $1 AND a.code = $2 AND e.resolved_at IS NULL \
                     ORDER BY e.updated_at DESC LIMIT 1",
                    &[&physician.as_str(), &code],
                )
                .await
                .map_err(classify)?;
            Ok(row.and_then(|r| {
                Some((EpisodeId::new(r.get::<_, String>(0)).ok()?, Severity::parse(r.get::<_, &str>(1))?))
            }))
        })
    }

    async fn sms_admit(
        &self,
        sender_key: &str,
        physician: Option<&PhysicianId>,
        policy: &GuardPolicy,
        now: DateTime<Utc>,
    ) -> Result<Admission, StoreError> {
        let (key, physician, policy) = (sender_key.to_string(), physician.cloned(), *policy);
        with_client!(self, c => {
            let tx = c.transaction().await.map_err(classify)?;
            tx.execute(
                "INSERT INTO sms_inbound_guard (sender_key, window_start) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&key, &now],
            )
            .await
            .map_err(classify)?;
            let row = tx
                .query_one(
                    "SELECT window_start, failures, locked_until, lockouts FROM sms_inbound_guard WHERE sender_key = $1 FOR UPDATE",
                    &[&key],
                )
                .await
                .map_err(classify)?;
            let current = GuardRow {
                window_start: row.get(0),
                failures: u32::try_from(row.get::<_, i32>(1)).unwrap_or(0),
                locked_until: row.get(2),
                lockouts: u32::try_from(row.get::<_, i32>(3)).unwrap_or(0),
            };
            let (next, admission) = admit(Some(current), &policy, now);
            tx.execute(
                "UPDATE sms_inbound_guard SET window_start = $2, failures = $3, locked_until = $4, lockouts = $5 WHERE sender_key = $1",
                &[
                    &key,
                    &next.window_start,
                    &i32::try_from(next.failures).unwrap_or(i32::MAX),
                    &next.locked_until,
                    &i32::try_from(next.lockouts).unwrap_or(i32::MAX),
                ],
            )
            .await
            .map_err(classify)?;
            if let Admission::Locked { until, new_lockout: true } = admission {
                let audit = lockout_audit(&key, physician.as_ref(), &next, until);
                tx.execute(
                    "INSERT INTO admin_audit (at, actor, actor_role, action, target_kind, target_id, patient_id, details) \
                     VALUES ($1, $2, $3, $4, $5, $6, NULL, $7::text::jsonb)",
                    &[&now, &audit.actor, &audit.actor_role, &audit.action, &audit.target_kind, &audit.target_id, &audit.details],
                )
                .await
                .map_err(classify)?;
            }
            tx.commit().await.map_err(classify)?;
            Ok(admission)
        })
    }

    async fn sms_succeeded(&self, sender_key: &str) -> Result<(), StoreError> {
        let key = sender_key.to_string();
        with_client!(self, c => {
            c.execute("UPDATE sms_inbound_guard SET failures = 0 WHERE sender_key = $1", &[&key])
                .await
                .map_err(classify)?;
            Ok(())
        })
    }

    async fn episode(&self, episode: &EpisodeId) -> Result<Option<EpisodeState>, StoreError> {
        with_client!(self, c => {
            let row = c
                .query_opt("SELECT state::text FROM alert_episodes WHERE episode_id = $1", &[&episode.as_str()])
                .await
                .map_err(classify)?;
            Ok(match row.and_then(|r| r.get::<_, Option<String>>(0)) {
                Some(s) => Some(from_json(&s, "episode")?),
                None => None,
            })
        })
    }

    async fn claim(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Claimed>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        with_client!(self, c => {
            let rows = c
                .query(
                    "UPDATE alert_outbox SET claimed_by = $1, claimed_until = $2 WHERE key IN ( \
                       SELECT key FROM alert_outbox WHERE status = 'pending' AND next_attempt_at <= $3 \
                       AND (claimed_until IS NULL OR claimed_until <= $3) \
                       ORDER BY next_attempt_at LIMIT $4 FOR UPDATE SKIP LOCKED) \
                     RETURNING notification::text, attempts",
                    &[&worker, &lease_until, &now, &limit],
                )
                .await
                .map_err(classify)?;
            rows.iter()
                .map(|r| {
                    Ok(Claimed {
                        notification: from_json(r.get::<_, &str>(0), "notification")?,
                        attempts: u32::try_from(r.get::<_, i32>(1)).unwrap_or(0),
                    })
                })
                .collect()
        })
    }

    async fn render_context(&self, n: &Notification) -> Result<RenderContext, StoreError> {
        let episode = self.episode(&n.episode_id).await?;
        with_client!(self, c => {
            let recipient = c
                .query_opt("SELECT doc::text FROM alert_physicians WHERE physician_id = $1", &[&n.recipient.as_str()])
                .await
                .map_err(classify)?
                .map(|r| from_json::<Physician>(r.get::<_, &str>(0), "physician"))
                .transpose()?;
            let codes: Vec<(String, Option<Severity>)> = c
                .query(
                    "SELECT code, severity FROM alert_ack_codes WHERE episode_id = $1 AND physician_id = $2",
                    &[&n.episode_id.as_str(), &n.recipient.as_str()],
                )
                .await
                .map_err(classify)?
                .iter()
                .map(|r| (r.get::<_, String>(0), Severity::parse(r.get::<_, &str>(1))))
                .collect();
            let ack_code = super::code_for(codes, n.severity);
            let mut history = Vec::new();
            if let Some(code) = episode.as_ref().and_then(|e| e.details.code.map(|c| (e, c))) {
                let (ep, code) = code;
                let end = ep.details.reading_time.max(ep.details.detected_at);
                // The observations table belongs to the persist role; without it there is no chart.
                match c
                    .query(
                        "SELECT time, value FROM observations WHERE patient_id = $1 AND code = $2 AND time > $3 AND time <= $4 \
                         ORDER BY time LIMIT 5000",
                        &[&ep.patient_id.as_str(), &code.loinc(), &(end - Duration::days(14)), &end],
                    )
                    .await
                {
                    Ok(rows) => history = rows.iter().map(|r| (r.get(0), r.get(1))).collect(),
                    Err(e) => tracing::debug!(episode = %n.episode_id, error = %e, "no history for the chart"),
                }
            }
            Ok(RenderContext { episode, recipient, ack_code, history })
        })
    }

    async fn complete(
        &self,
        key: &NotificationKey,
        attempt: u32,
        completion: Completion,
        audit: &[AuditRecord],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let attempts = i32::try_from(attempt).unwrap_or(i32::MAX);
        with_client!(self, c => {
            let tx = c.transaction().await.map_err(classify)?;
            // Rows changed: 0 when the row was completed already (another
            // dispatcher took it over after the lease): nothing more to do then.
            let changed = match &completion {
                Completion::Sent { provider_message_id } => {
                    tx.execute(
                        "UPDATE alert_outbox SET status = 'sent', sent_at = $2, provider_message_id = $3, attempts = $4, \
                         claimed_by = NULL, claimed_until = NULL, last_error = NULL WHERE key = $1 AND status = 'pending'",
                        &[&key.as_str(), &now, provider_message_id, &attempts],
                    )
                    .await
                    .map_err(classify)?
                }
                Completion::Retry { retry_at, error, .. } => {
                    tx.execute(
                        "UPDATE alert_outbox SET attempts = $2, next_attempt_at = $3, last_error = $4, \
                         claimed_by = NULL, claimed_until = NULL WHERE key = $1 AND status = 'pending'",
                        &[&key.as_str(), &attempts, retry_at, error],
                    )
                    .await
                    .map_err(classify)?
                }
                Completion::Failed { error, .. } => {
                    tx.execute(
                        "UPDATE alert_outbox SET status = 'failed', attempts = $2, last_error = $3, \
                         claimed_by = NULL, claimed_until = NULL WHERE key = $1 AND status = 'pending'",
                        &[&key.as_str(), &attempts, error],
                    )
                    .await
                    .map_err(classify)?
                }
                Completion::Cancelled { reason } => {
                    tx.execute(
                        "UPDATE alert_outbox SET status = 'cancelled', last_error = $2, \
                         claimed_by = NULL, claimed_until = NULL WHERE key = $1 AND status = 'pending'",
                        &[&key.as_str(), reason],
                    )
                    .await
                    .map_err(classify)?
                }
            };
            if changed == 1 {
                if let Completion::Failed { fallback: Some(f), .. } | Completion::Retry { fallback: Some(f), .. } = &completion {
                    insert_outbox(&tx, f, now).await?;
                }
                record_outcome(&tx, key.as_str(), &completion, now).await?;
            }
            insert_audit(&tx, audit).await?;
            tx.commit().await.map_err(classify)
        })
    }

    async fn awaiting_retry(&self) -> Result<u64, StoreError> {
        with_client!(self, c => {
            let n: i64 = c
                .query_one("SELECT count(*) FROM alert_outbox WHERE status = 'pending' AND attempts > 0", &[])
                .await
                .map_err(classify)?
                .get(0);
            Ok(u64::try_from(n).unwrap_or(0))
        })
    }

    async fn form_digests(
        &self,
        caps: &CapPolicy,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Notification>, StoreError> {
        with_client!(self, c => {
            let recipients: Vec<String> = c
                .query(
                    "SELECT recipient FROM alert_digest_entries WHERE digest_key IS NULL \
                     GROUP BY recipient ORDER BY min(created_at)",
                    &[],
                )
                .await
                .map_err(classify)?
                .iter()
                .map(|r| r.get(0))
                .collect();
            let mut out = Vec::new();
            for r in recipients {
                if out.len() >= limit {
                    break;
                }
                let tx = c.transaction().await.map_err(classify)?;
                if let Some(n) = form_digest(&tx, &r, caps, now).await? {
                    tx.commit().await.map_err(classify)?;
                    out.push(n);
                }
            }
            Ok(out)
        })
    }

    async fn digest_entries(&self, digest: &NotificationKey) -> Result<Vec<DigestEntry>, StoreError> {
        with_client!(self, c => {
            let rows = c
                .query(
                    "SELECT entry::text FROM alert_digest_entries WHERE digest_key = $1 ORDER BY created_at, key",
                    &[&digest.as_str()],
                )
                .await
                .map_err(classify)?;
            entries_of(&rows)
        })
    }

    async fn pending_digest(&self, recipient: &PhysicianId) -> Result<Vec<DigestEntry>, StoreError> {
        with_client!(self, c => {
            let rows = c
                .query(
                    "SELECT entry::text FROM alert_digest_entries WHERE recipient = $1 AND digest_key IS NULL \
                     ORDER BY created_at, key",
                    &[&recipient.as_str()],
                )
                .await
                .map_err(classify)?;
            entries_of(&rows)
        })
    }

    async fn outbox(&self, episode: &EpisodeId) -> Result<Vec<OutboxRow>, StoreError> {
        with_client!(self, c => {
            let rows = c
                .query(
                    "SELECT notification::text, status, attempts, provider_message_id, last_error FROM alert_outbox \
                     WHERE episode_id = $1 ORDER BY created_at, key",
                    &[&episode.as_str()],
                )
                .await
                .map_err(classify)?;
            rows.iter()
                .map(|r| {
                    Ok(OutboxRow {
                        notification: from_json(r.get::<_, &str>(0), "notification")?,
                        status: OutboxStatus::parse(r.get(1))
                            .ok_or_else(|| StoreError::Invalid("unknown outbox status".into()))?,
                        attempts: u32::try_from(r.get::<_, i32>(2)).unwrap_or(0),
                        provider_message_id: r.get(3),
                        last_error: r.get(4),
                    })
                })
                .collect()
        })
    }

    async fn audit_trail(&self, episode: &EpisodeId) -> Result<Vec<AuditRecord>, StoreError> {
        with_client!(self, c => {
            let rows = c
                .query(
                    "SELECT record::text FROM alert_audit WHERE episode_id = $1 ORDER BY id",
                    &[&episode.as_str()],
                )
                .await
                .map_err(classify)?;
            rows.iter().map(|r| from_json(r.get::<_, &str>(0), "audit record")).collect()
        })
    }
}

/// Counts of outbox rows by status (for tests and status views).
pub fn count_by_status(rows: &[OutboxRow]) -> HashMap<&'static str, usize> {
    let mut m = HashMap::new();
    for r in rows {
        *m.entry(r.status.as_str()).or_insert(0) += 1;
    }
    m
}
