//! The clinician workspace's store (migration 31): the worklist query, episode
//! notes and close outcomes, and tele-expertise requests. Written once over
//! [`Db`]/[`Conn`]; the SQL is in `sql/` (the worklist and the list arguments
//! differ per engine).

use chrono::{DateTime, Utc};
use vitalwatch_platform::store::db::{Conn, Db, Row, Value};
use vitalwatch_platform::{args, sql};

use super::{StoreError, parse_json};

/// Filters and cursor of the worklist query.
#[derive(Debug, Clone, Default)]
pub struct WorklistFilter {
    /// Scope: only these patients (`None`: all).
    pub scope_patients: Option<Vec<String>>,
    /// One patient.
    pub patient_id: Option<String>,
    /// One severity.
    pub severity: Option<String>,
    /// One care program.
    pub program: Option<String>,
    /// Acknowledged at the current severity (`true`) or not (`false`).
    pub acknowledged: Option<bool>,
    /// Snoozed now (`true`) or not (`false`).
    pub snoozed: Option<bool>,
    /// The clock (snooze state).
    pub now: DateTime<Utc>,
    /// Rows after this (rank, opened_at, episode id) in the worklist order.
    pub after: Option<(i64, DateTime<Utc>, String)>,
    /// Page size.
    pub limit: u32,
}

/// One row of the worklist query, raw.
#[derive(Debug, Clone)]
pub struct WorklistRecord {
    /// Episode.
    pub episode_id: String,
    /// Patient.
    pub patient_id: String,
    /// Care program.
    pub program: String,
    /// LOINC code.
    pub code: String,
    /// Severity.
    pub severity: String,
    /// Opening reading time.
    pub opened_at: DateTime<Utc>,
    /// Last event.
    pub last_event_at: DateTime<Utc>,
    /// Summary.
    pub summary: String,
    /// Evidence JSON.
    pub evidence: serde_json::Value,
    /// Alerting state JSON (`None` before alerting saw the episode).
    pub state: Option<String>,
    /// The scheduler's next wake-up.
    pub next_wakeup: Option<DateTime<Utc>>,
    /// Care team JSON.
    pub team: Option<String>,
    /// Severity rank (critical 5 ... info 1).
    pub rank: i64,
    /// The last reading of the code before the episode.
    pub previous_value: Option<f64>,
    /// Its time.
    pub previous_at: Option<DateTime<Utc>>,
    /// Mean of the 7 days before the episode.
    pub mean_7d: Option<f64>,
    /// An unanswered tele-expertise request exists.
    pub expertise_open: bool,
}

/// One outbox row of a worklist episode.
#[derive(Debug, Clone)]
pub struct PageRecord {
    /// Episode.
    pub episode_id: String,
    /// Notification JSON.
    pub notification: String,
    /// pending, sent, failed, cancelled.
    pub status: String,
    /// Queued at.
    pub created_at: DateTime<Utc>,
    /// Sent at.
    pub sent_at: Option<DateTime<Utc>>,
    /// Recipient (physician id).
    pub recipient: String,
    /// `email` or `sms`.
    pub channel: String,
}

/// An episode note or close outcome to store.
#[derive(Debug, Clone)]
pub struct NewNote<'a> {
    /// Episode.
    pub episode_id: &'a str,
    /// Patient.
    pub patient_id: &'a str,
    /// `note` or `close`.
    pub kind: &'a str,
    /// For closes.
    pub outcome: Option<&'a str>,
    /// Free text (may be empty for a close).
    pub body: &'a str,
    /// Who.
    pub author: &'a str,
    /// Role of who.
    pub author_role: &'a str,
    /// When.
    pub at: DateTime<Utc>,
}

/// A stored note.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct NoteView {
    /// Note id.
    pub id: i64,
    /// Episode.
    pub episode_id: String,
    /// Patient.
    pub patient_id: String,
    /// `note` or `close`.
    pub kind: String,
    /// The close outcome.
    pub outcome: Option<String>,
    /// Text.
    pub body: String,
    /// Who.
    pub author: String,
    /// Role of who.
    pub author_role: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// A tele-expertise request to store.
#[derive(Debug, Clone)]
pub struct NewExpertise<'a> {
    /// Episode.
    pub episode_id: &'a str,
    /// Patient.
    pub patient_id: &'a str,
    /// Who asks.
    pub requested_by: &'a str,
    /// Their role.
    pub requested_by_role: &'a str,
    /// Specialist account.
    pub to_account: Option<&'a str>,
    /// External address.
    pub to_email: Option<&'a str>,
    /// The question.
    pub question: &'a str,
    /// Evidence snapshot JSON.
    pub snapshot: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// SHA-256 (hex) of the link token (email requests).
    pub link_hash: Option<String>,
    /// Link expiry.
    pub link_expires_at: Option<DateTime<Utc>>,
}

/// A stored tele-expertise request.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ExpertiseView {
    /// Request id.
    pub id: i64,
    /// Episode.
    pub episode_id: String,
    /// Patient.
    pub patient_id: String,
    /// Who asked.
    pub requested_by: String,
    /// Their role.
    pub requested_by_role: String,
    /// Specialist account it is addressed to.
    pub to_account: Option<String>,
    /// External address it is addressed to.
    pub to_email: Option<String>,
    /// The question.
    pub question: String,
    /// When asked.
    pub created_at: DateTime<Utc>,
    /// Link expiry (email requests).
    pub link_expires_at: Option<DateTime<Utc>>,
    /// When the link was used.
    pub link_used_at: Option<DateTime<Utc>>,
    /// The advice.
    pub answer: Option<String>,
    /// Who answered.
    pub answered_by: Option<String>,
    /// When.
    pub answered_at: Option<DateTime<Utc>>,
    /// When the responsible physician was emailed about the answer.
    pub notified_at: Option<DateTime<Utc>>,
    /// The evidence snapshot (episode, evidence, readings); only on single reads.
    #[schema(value_type = Option<Object>)]
    pub snapshot: Option<serde_json::Value>,
}

fn note(r: &Row) -> Result<NoteView, StoreError> {
    Ok(NoteView {
        id: r.get(0)?,
        episode_id: r.get(1)?,
        patient_id: r.get(2)?,
        kind: r.get(3)?,
        outcome: r.get(4)?,
        body: r.get(5)?,
        author: r.get(6)?,
        author_role: r.get(7)?,
        at: r.get(8)?,
    })
}

fn expertise(r: &Row) -> Result<ExpertiseView, StoreError> {
    Ok(ExpertiseView {
        id: r.get(0)?,
        episode_id: r.get(1)?,
        patient_id: r.get(2)?,
        requested_by: r.get(3)?,
        requested_by_role: r.get(4)?,
        to_account: r.get(5)?,
        to_email: r.get(6)?,
        question: r.get(7)?,
        created_at: r.get(8)?,
        link_expires_at: r.get(9)?,
        link_used_at: r.get(10)?,
        answer: r.get(11)?,
        answered_by: r.get(12)?,
        answered_at: r.get(13)?,
        notified_at: r.get(14)?,
        snapshot: match r.value(15) {
            Value::Text(s) => Some(parse_json(s)),
            _ => None,
        },
    })
}

/// Inserts a note (run it in the transaction of the change it belongs to); returns its id.
///
/// # Errors
///
/// The database's.
pub async fn insert_note(c: &mut Conn, n: &NewNote<'_>) -> Result<i64, StoreError> {
    c.query_one(
        &sql!("insert_note"),
        &args![n.episode_id, n.patient_id, n.kind, n.outcome, n.body, n.author, n.author_role, n.at],
    )
    .await?
    .get(0)
}

/// Inserts a tele-expertise request (in the transaction of its audit entry); returns its id.
///
/// # Errors
///
/// The database's.
pub async fn insert_expertise(c: &mut Conn, x: &NewExpertise<'_>) -> Result<i64, StoreError> {
    c.query_one(
        &sql!("insert_expertise"),
        &args![
            x.episode_id,
            x.patient_id,
            x.requested_by,
            x.requested_by_role,
            x.to_account,
            x.to_email,
            x.question,
            x.snapshot.as_str(),
            x.created_at,
            x.link_hash.as_deref(),
            x.link_expires_at
        ],
    )
    .await?
    .get(0)
}

/// Records the answer of request `id` unless it has one (`via_link`: the
/// emailed link is used up too); false if it had one.
///
/// # Errors
///
/// The database's.
pub async fn answer_expertise(
    c: &mut Conn,
    id: i64,
    answer: &str,
    by: &str,
    at: DateTime<Utc>,
    via_link: bool,
) -> Result<bool, StoreError> {
    Ok(c.execute(&sql!("answer_expertise"), &args![id, answer, by, at, via_link.then_some(at)]).await? == 1)
}

/// The request `id`, with its snapshot.
///
/// # Errors
///
/// The database's.
pub async fn expertise_by_id(c: &mut Conn, id: i64) -> Result<Option<ExpertiseView>, StoreError> {
    c.query_opt(&sql!("expertise"), &args![id]).await?.as_ref().map(expertise).transpose()
}

/// The workspace store.
#[derive(Clone, Debug)]
pub struct WorkspaceStore {
    db: Db,
}

impl WorkspaceStore {
    /// The store on `db`.
    pub fn new(db: Db) -> WorkspaceStore {
        WorkspaceStore { db }
    }

    /// The worklist page (at most `filter.limit` rows).
    ///
    /// # Errors
    ///
    /// The database's.
    pub async fn worklist(&self, f: &WorklistFilter) -> Result<Vec<WorklistRecord>, StoreError> {
        let (rank, t, id) = match &f.after {
            Some((r, t, id)) => (Some(*r), Some(*t), Some(id.as_str())),
            None => (None, None, None),
        };
        let args = args![
            f.scope_patients.as_ref(),
            f.patient_id.as_deref(),
            f.severity.as_deref(),
            f.program.as_deref(),
            f.acknowledged,
            f.snoozed,
            f.now,
            rank,
            t,
            id,
            Value::Int(i64::from(f.limit)),
        ];
        let rows = self.db.run(async |c| c.query(&sql!("worklist", split), &args).await).await?;
        rows.iter()
            .map(|r| {
                Ok(WorklistRecord {
                    episode_id: r.get(0)?,
                    patient_id: r.get(1)?,
                    program: r.get(2)?,
                    code: r.get(3)?,
                    severity: r.get(4)?,
                    opened_at: r.get(5)?,
                    last_event_at: r.get(6)?,
                    summary: r.get(7)?,
                    evidence: parse_json(&r.get::<String>(8)?),
                    state: r.get(9)?,
                    next_wakeup: r.get(10)?,
                    team: r.get(11)?,
                    rank: r.get(12)?,
                    previous_value: r.get(13)?,
                    previous_at: r.get(14)?,
                    mean_7d: r.get(15)?,
                    expertise_open: r.get(16)?,
                })
            })
            .collect()
    }

    /// The outbox rows (pages) of `episodes`, oldest first.
    ///
    /// # Errors
    ///
    /// The database's.
    pub async fn pages(&self, episodes: &[String]) -> Result<Vec<PageRecord>, StoreError> {
        if episodes.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self.db.run(async |c| c.query(&sql!("worklist_pages", split), &args![episodes]).await).await?;
        rows.iter()
            .map(|r| {
                Ok(PageRecord {
                    episode_id: r.get(0)?,
                    notification: r.get(1)?,
                    status: r.get(2)?,
                    created_at: r.get(3)?,
                    sent_at: r.get(4)?,
                    recipient: r.get(5)?,
                    channel: r.get(6)?,
                })
            })
            .collect()
    }

    /// The notes of an episode, oldest first.
    ///
    /// # Errors
    ///
    /// The database's.
    pub async fn episode_notes(&self, episode: &str) -> Result<Vec<NoteView>, StoreError> {
        let rows = self.db.run(async |c| c.query(&sql!("episode_notes"), &args![episode]).await).await?;
        rows.iter().map(note).collect()
    }

    /// The notes of a patient, newest first, ids below `before`.
    ///
    /// # Errors
    ///
    /// The database's.
    pub async fn patient_notes(
        &self,
        patient: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<NoteView>, StoreError> {
        let args = args![patient, before, Value::Int(i64::from(limit))];
        let rows = self.db.run(async |c| c.query(&sql!("patient_notes"), &args).await).await?;
        rows.iter().map(note).collect()
    }

    /// One request, with its snapshot.
    ///
    /// # Errors
    ///
    /// The database's.
    pub async fn expertise(&self, id: i64) -> Result<Option<ExpertiseView>, StoreError> {
        self.db.run(async |c| expertise_by_id(c, id).await).await
    }

    /// The request whose link token hashes to `hash`, with its snapshot.
    ///
    /// # Errors
    ///
    /// The database's.
    pub async fn expertise_by_link(&self, hash: &str) -> Result<Option<ExpertiseView>, StoreError> {
        let row = self.db.run(async |c| c.query_opt(&sql!("expertise_by_link"), &args![hash]).await).await?;
        row.as_ref().map(expertise).transpose()
    }

    /// The requests of an episode, oldest first (without snapshots).
    ///
    /// # Errors
    ///
    /// The database's.
    pub async fn episode_expertise(&self, episode: &str) -> Result<Vec<ExpertiseView>, StoreError> {
        let rows = self.db.run(async |c| c.query(&sql!("expertise_of_episode"), &args![episode]).await).await?;
        rows.iter().map(expertise).collect()
    }

    /// The requests addressed to a specialist account, newest first.
    ///
    /// # Errors
    ///
    /// The database's.
    pub async fn inbox(
        &self,
        account: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<ExpertiseView>, StoreError> {
        let args = args![account, before, Value::Int(i64::from(limit))];
        let rows = self.db.run(async |c| c.query(&sql!("expertise_inbox"), &args).await).await?;
        rows.iter().map(expertise).collect()
    }

    /// Records that the responsible physician was emailed about the answer.
    ///
    /// # Errors
    ///
    /// The database's.
    pub async fn mark_notified(&self, id: i64, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.db.run(async |c| c.execute(&sql!("expertise_notified"), &args![id, at]).await.map(drop)).await
    }

    /// Readings of a patient's code between two times (at most 5,000), oldest first.
    ///
    /// # Errors
    ///
    /// The database's.
    pub async fn readings(
        &self,
        patient: &str,
        code: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(DateTime<Utc>, f64, String)>, StoreError> {
        let rows =
            self.db.run(async |c| c.query(&sql!("episode_readings"), &args![patient, code, from, to]).await).await?;
        rows.iter().map(|r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).collect()
    }

    /// The scheduler's next wake-up of an episode.
    ///
    /// # Errors
    ///
    /// The database's.
    pub async fn next_wakeup(&self, episode: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row = self.db.run(async |c| c.query_opt(&sql!("next_wakeup"), &args![episode]).await).await?;
        Ok(row.map(|r| r.get(0)).transpose()?.flatten())
    }

    /// The responsible physician of a patient (directory JSON).
    ///
    /// # Errors
    ///
    /// The database's.
    pub async fn responsible_of(&self, patient: &str) -> Result<Option<String>, StoreError> {
        let row = self.db.run(async |c| c.query_opt(&sql!("responsible_of"), &args![patient]).await).await?;
        row.map(|r| r.get(0)).transpose()
    }
}
