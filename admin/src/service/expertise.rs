//! Tele-expertise (issue #16): a physician or nurse forwards an episode to a
//! specialist (a `specialist` account, or an email address) with a question
//! and an evidence snapshot (the episode's evidence and the readings around
//! it: enough to draw the chart); the specialist answers in the app or,
//! for an email address, through a single-use link; the advice is attached to
//! the episode and to the admin audit trail, and the responsible physician is
//! told by email.
//!
//! The link carries a random 256-bit token; only its SHA-256 is stored, with
//! an expiry ([`LINK_TTL_DAYS`]). Answering uses it up (a conditional update:
//! a second answer through the same link, or a concurrent one, is refused).
//!
//! Emails go out through an alerting [`Transport`] (SMTP, or `.eml` files)
//! right after the change is committed: the alerting outbox is keyed by
//! episode step and physician and its dispatcher renders alert pages, which
//! fits neither an external address nor a message carrying a one-time link
//! (whose token must never be stored). A failed send is reported in the
//! result (`link_emailed`, `notified`) and logged without patient data.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use lettre::message::{Mailbox, header::ContentType};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use vitalwatch_alerting::transport::{EmailOut, Outbound, Transport};
use vitalwatch_alerting::{EmailAddress, Language, Physician};

use super::AdminService;
use super::worklist::MAX_NOTE_CHARS;
use crate::account::AccountRole;
use crate::actor::{Actor, Role};
use crate::error::AdminError;
use crate::policy::Operation;
use crate::store::workspace::{ExpertiseView, NewExpertise, answer_expertise, expertise_by_id, insert_expertise};

/// Lifetime of an emailed link, in days.
pub const LINK_TTL_DAYS: i64 = 7;

/// Readings of the snapshot: this long before the episode opened...
const BEFORE: Duration = Duration::days(14);
/// ...to this long after its last event.
const AFTER: Duration = Duration::days(1);

/// Who a request goes to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum ExpertiseTarget {
    /// A `specialist` account (its id): answers in the app.
    Specialist(String),
    /// An external address: receives a single-use link.
    Email(String),
}

/// A forward request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ForwardInput {
    /// Who.
    pub to: ExpertiseTarget,
    /// The question (1 to 4,000 characters).
    pub question: String,
}

/// The result of a forward.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Forwarded {
    /// The request id.
    pub id: i64,
    /// For an email address: whether the link was emailed (false: the
    /// request is stored but the email failed; forward again for a new link).
    pub link_emailed: bool,
    /// For an account with an email address: whether it was told of the request.
    pub specialist_notified: bool,
}

/// The result of an answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Answered {
    /// The request id.
    pub id: i64,
    /// The episode.
    pub episode_id: String,
    /// Whether the responsible physician was emailed.
    pub notified: bool,
}

/// Who answers.
#[derive(Debug, Clone, Copy)]
pub enum Answerer<'a> {
    /// A signed-in account the request is addressed to.
    Actor(&'a Actor),
    /// The holder of an emailed link: its token, and where the request came from.
    Link {
        /// The token from the link.
        token: &'a str,
        /// Where from (`web <client address>`), for the audit trail.
        origin: Option<&'a str>,
    },
}

/// How the workspace sends its emails (links to external specialists,
/// answers to the responsible physician).
#[derive(Clone)]
pub struct Mailer {
    transport: Arc<dyn Transport>,
    from: Mailbox,
    public_url: String,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer").field("transport", &self.transport.name()).field("from", &self.from).finish()
    }
}

impl Mailer {
    /// Emails through `transport` from `from` (`Name <address>` or an
    /// address); links point to `public_url` (the web's base URL).
    ///
    /// # Errors
    ///
    /// [`AdminError::Invalid`] for an invalid sender or URL.
    pub fn new(transport: Arc<dyn Transport>, from: &str, public_url: &str) -> Result<Mailer, AdminError> {
        let from: Mailbox = from.parse().map_err(|e| AdminError::Invalid(format!("invalid sender {from:?}: {e}")))?;
        let public_url = public_url.trim_end_matches('/').to_owned();
        if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
            return Err(AdminError::Invalid("the public URL must start with http:// or https://".into()));
        }
        Ok(Mailer { transport, from, public_url })
    }

    /// The mailer of a deployment: alerting's email transport (SMTP, or `.eml`
    /// files in `alerting.file_dir` with the file transport) and sender
    /// (`alerting.smtp.from`); links point to the workspace's `public_url`.
    ///
    /// # Errors
    ///
    /// [`AdminError::Invalid`] for invalid alerting settings, sender or URL.
    pub fn from_alerting(
        settings: &vitalwatch_alerting::settings::AlertingSettings,
        public_url: &str,
    ) -> Result<Mailer, AdminError> {
        let (email, _) = vitalwatch_alerting::service::wiring::transports(settings).map_err(AdminError::invalid)?;
        Mailer::new(email, &settings.smtp.from, public_url)
    }

    async fn send(&self, key: String, to: &str, subject: &str, body: String) -> bool {
        let Ok(address) = EmailAddress::new(to) else { return false };
        let Ok(to_box) = to.parse::<Mailbox>() else { return false };
        let message = match lettre::Message::builder()
            .from(self.from.clone())
            .to(to_box)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
        {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(message = "Workspace email not built.", key = %key, error = %e);
                return false;
            }
        };
        let out = Outbound::Email(EmailOut { key: key.clone(), to: address, message });
        match self.transport.send(&out).await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(message = "Workspace email not sent.", key = %key, error = %e);
                false
            }
        }
    }
}

fn link_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unknown_request(id: i64) -> AdminError {
    AdminError::NotFound(format!("unknown expertise request {id}"))
}

fn text(t: &str, what: &str) -> Result<String, AdminError> {
    let t = t.trim();
    if t.is_empty() {
        return Err(AdminError::Invalid(format!("the {what} is empty")));
    }
    if t.chars().count() > MAX_NOTE_CHARS {
        return Err(AdminError::Invalid(format!("the {what} is longer than {MAX_NOTE_CHARS} characters")));
    }
    Ok(t.to_owned())
}

/// The account a request may be addressed to: the actor's own id.
fn account_of(actor: &Actor) -> Option<&str> {
    match &actor.role {
        Role::Specialist(id) | Role::Nurse(id) => Some(id.as_str()),
        Role::Physician(p) => Some(p.as_str()),
        Role::Operator => None,
    }
}

impl AdminService {
    /// Sends the workspace's emails with `mailer`.
    pub fn with_mailer(mut self, mailer: Mailer) -> AdminService {
        self.mailer = Some(mailer);
        self
    }

    /// Forwards an episode to a specialist with a question and an evidence snapshot.
    pub async fn forward(&self, actor: &Actor, episode: &str, input: &ForwardInput) -> Result<Forwarded, AdminError> {
        let patient = self.episode_patient(actor, Operation::RequestExpertise, episode).await?;
        let question = text(&input.question, "question")?;
        let mut expert_email = None;
        let (to_account, to_email) = match &input.to {
            ExpertiseTarget::Specialist(id) => {
                let (account, email) = self.expert_account(id.trim()).await?;
                expert_email = email;
                (Some(account), None)
            }
            ExpertiseTarget::Email(a) => {
                let a = EmailAddress::new(a.trim()).map_err(AdminError::invalid)?;
                if self.mailer.is_none() {
                    return Err(AdminError::Unavailable(
                        "email is not configured: forward to a specialist account".into(),
                    ));
                }
                (None, Some(a.as_str().to_owned()))
            }
        };
        let snapshot = self.snapshot(episode).await?;
        let now = Utc::now();
        let token = to_email.as_ref().map(|_| link_token());
        let to_kind = if to_email.is_some() { "email" } else { "specialist" };
        let id = self
            .audited(async |c| {
                let x = NewExpertise {
                    episode_id: episode,
                    patient_id: &patient,
                    requested_by: &actor.name,
                    requested_by_role: actor.role.name(),
                    to_account: to_account.as_deref(),
                    to_email: to_email.as_deref(),
                    question: &question,
                    snapshot: snapshot.to_string(),
                    created_at: now,
                    link_hash: token.as_deref().map(crate::token::hash),
                    link_expires_at: token.as_ref().map(|_| now + Duration::days(LINK_TTL_DAYS)),
                };
                let id = insert_expertise(c, &x).await?;
                let details = json!({ "request_id": id, "episode_id": episode, "to": to_kind,
                    "to_account": to_account });
                Ok((
                    id,
                    Some(self.entry(
                        actor,
                        "expertise.forward",
                        ("expertise", &id.to_string()),
                        Some(&patient),
                        details,
                    )),
                ))
            })
            .await?;
        let mut link_emailed = false;
        if let (Some(m), Some(to), Some(token)) = (&self.mailer, &to_email, &token) {
            let url = format!("{}/expertise/link/{token}", m.public_url);
            let body = format!(
                "Bonjour,\n\nUn confrère ({by}) vous demande un avis de télé-expertise sur un épisode d'alerte de \
                 télésurveillance.\nConsultez les éléments et répondez ici (lien à usage unique, valable {LINK_TTL_DAYS} \
                 jours) :\n{url}\n\n---\n\nHello,\n\nA colleague ({by}) asks for your tele-expertise advice on a remote \
                 monitoring alert episode.\nSee the evidence and answer here (single-use link, valid {LINK_TTL_DAYS} \
                 days):\n{url}\n",
                by = actor.name
            );
            link_emailed = m
                .send(format!("expertise-{id}-link"), to, "Demande de télé-expertise / Tele-expertise request", body)
                .await;
        }
        let mut specialist_notified = false;
        if let (Some(m), Some(to)) = (&self.mailer, &expert_email) {
            let url = format!("{}/expertise/{id}", m.public_url);
            let body = format!(
                "Bonjour,\n\nUn confrère ({by}) vous demande un avis de télé-expertise (demande n° {id}) :\n{url}\n\n\
                 ---\n\nHello,\n\nA colleague ({by}) asks for your tele-expertise advice (request #{id}):\n{url}\n",
                by = actor.name
            );
            let subject = "Demande de télé-expertise / Tele-expertise request";
            specialist_notified = m.send(format!("expertise-{id}-request"), to, subject, body).await;
        }
        Ok(Forwarded { id, link_emailed, specialist_notified })
    }

    /// The account a request to `id` is addressed to: a specialist account
    /// (its id), or a physician account (its directory id, which the
    /// physician acts under). Anything else is refused.
    /// Returns it with the account's email address.
    async fn expert_account(&self, id: &str) -> Result<(String, Option<String>), AdminError> {
        let not_expert = || AdminError::Invalid(format!("{id} is not a specialist or physician account"));
        let row = self.db.run(async |c| crate::store::accounts::by_id(c, id).await).await?.ok_or_else(not_expert)?;
        let a = row.account;
        match (a.role, a.disabled) {
            (_, true) => Err(not_expert()),
            (AccountRole::Specialist, false) => Ok((a.id, a.email)),
            (AccountRole::Physician, false) => Ok((a.physician_id.ok_or_else(not_expert)?, a.email)),
            _ => Err(not_expert()),
        }
    }

    /// The evidence snapshot of an episode: the episode, its evidence and the
    /// readings of its code around it.
    async fn snapshot(&self, episode: &str) -> Result<serde_json::Value, AdminError> {
        let Some(row) = self.admin.alert(episode).await? else {
            return Err(AdminError::NotFound(format!("unknown episode {episode}")));
        };
        let a = &row.view;
        let (from, to) = (a.opened_at - BEFORE, a.last_event_at.max(a.opened_at) + AFTER);
        let readings = self.workspace.readings(&a.patient_id, &a.code, from, to).await?;
        let unit = readings.first().map(|r| r.2.clone());
        let points: Vec<serde_json::Value> =
            readings.iter().map(|(t, v, _)| json!({ "time": t, "value": v })).collect();
        Ok(json!({
            "episode": {
                "episode_id": a.episode_id, "patient_id": a.patient_id, "program": a.program, "code": a.code,
                "rule_id": a.rule_id, "rule_kind": a.rule_kind, "severity": a.severity, "status": a.status,
                "opened_at": a.opened_at, "last_event_at": a.last_event_at, "summary": a.summary,
            },
            "evidence": crate::store::parse_json(&row.evidence),
            "unit": unit,
            "readings": points,
            "from": from,
            "to": to,
        }))
    }

    /// The requests addressed to the actor (a specialist, or a physician asked
    /// for advice), newest first.
    pub async fn expertise_inbox(&self, actor: &Actor) -> Result<Vec<ExpertiseView>, AdminError> {
        self.allow(actor, Operation::AnswerExpertise)?;
        let Some(me) = account_of(actor) else { return Ok(Vec::new()) };
        Ok(self.workspace.inbox(me, None, self.max_page).await?)
    }

    /// One request with its snapshot: for the account it is addressed to, or
    /// whoever may read the episode. 404 for anyone else.
    pub async fn expertise(&self, actor: &Actor, id: i64) -> Result<ExpertiseView, AdminError> {
        let x = self.workspace.expertise(id).await?.ok_or_else(|| unknown_request(id))?;
        if x.to_account.is_some() && x.to_account.as_deref() == account_of(actor) {
            return Ok(x);
        }
        match self.check_patient(actor, Operation::ReadAlerts, &x.patient_id).await {
            Ok(()) => Ok(x),
            Err(_) => Err(unknown_request(id)),
        }
    }

    /// The request behind an emailed link, with its snapshot (reading does
    /// not use the link up). Refused once answered or expired.
    pub async fn expertise_by_link(&self, token: &str) -> Result<ExpertiseView, AdminError> {
        let x = self
            .workspace
            .expertise_by_link(&crate::token::hash(token))
            .await?
            .ok_or_else(|| AdminError::NotFound("unknown link".into()))?;
        Self::link_usable(&x, Utc::now())?;
        Ok(x)
    }

    fn link_usable(x: &ExpertiseView, now: DateTime<Utc>) -> Result<(), AdminError> {
        if x.link_used_at.is_some() || x.answered_at.is_some() {
            return Err(AdminError::Conflict("this link was already used: the request is answered".into()));
        }
        if x.link_expires_at.is_none_or(|e| e <= now) {
            return Err(AdminError::Forbidden("this link has expired".into()));
        }
        Ok(())
    }

    /// The requests of an episode (with their answers), oldest first.
    pub async fn episode_expertise(&self, actor: &Actor, episode: &str) -> Result<Vec<ExpertiseView>, AdminError> {
        self.episode_patient(actor, Operation::ReadAlerts, episode).await?;
        Ok(self.workspace.episode_expertise(episode).await?)
    }

    /// Answers a request (once); the responsible physician is emailed.
    pub async fn answer_expertise(&self, by: Answerer<'_>, id: i64, advice: &str) -> Result<Answered, AdminError> {
        let advice = text(advice, "advice")?;
        let now = Utc::now();
        let (x, answerer) = match by {
            Answerer::Actor(actor) => {
                self.allow(actor, Operation::AnswerExpertise)?;
                let x = self.workspace.expertise(id).await?.ok_or_else(|| unknown_request(id))?;
                if x.to_account.is_none() || x.to_account.as_deref() != account_of(actor) {
                    // Readable by the requester, but not theirs to answer.
                    return Err(match self.check_patient(actor, Operation::ReadAlerts, &x.patient_id).await {
                        Ok(()) => AdminError::Forbidden("this request is addressed to someone else".into()),
                        Err(_) => unknown_request(id),
                    });
                }
                (x, actor.clone())
            }
            Answerer::Link { token, origin } => {
                let x = self
                    .workspace
                    .expertise_by_link(&crate::token::hash(token))
                    .await?
                    .filter(|x| x.id == id)
                    .ok_or_else(|| AdminError::NotFound("unknown link".into()))?;
                Self::link_usable(&x, now)?;
                let name = format!("email:{}", x.to_email.as_deref().unwrap_or_default());
                let mut actor = Actor { name: name.clone(), role: Role::Specialist(name), origin: None };
                actor.origin = origin.map(str::to_owned);
                (x, actor)
            }
        };
        let patient = x.patient_id.clone();
        let link = matches!(by, Answerer::Link { .. });
        self.audited(async |c| {
            if !answer_expertise(c, id, &advice, &answerer.name, now, link).await? {
                return Err(AdminError::Conflict(if link {
                    "this link was already used: the request is answered".into()
                } else {
                    "this request is already answered".into()
                }));
            }
            // Re-read in the transaction: a link that expired meanwhile is refused.
            if link
                && let Some(x) = expertise_by_id(c, id).await?
                && x.link_expires_at.is_none_or(|e| e <= now)
            {
                return Err(AdminError::Forbidden("this link has expired".into()));
            }
            let details =
                json!({ "request_id": id, "episode_id": x.episode_id, "via": if link { "link" } else { "app" } });
            Ok((
                (),
                Some(self.entry(
                    &answerer,
                    "expertise.answer",
                    ("expertise", &id.to_string()),
                    Some(&patient),
                    details,
                )),
            ))
        })
        .await?;
        let notified = self.notify_answer(&x).await;
        Ok(Answered { id, episode_id: x.episode_id, notified })
    }

    /// Emails the responsible physician that a request was answered (no
    /// clinical content: a link to the episode page).
    async fn notify_answer(&self, x: &ExpertiseView) -> bool {
        let Some(m) = &self.mailer else { return false };
        let physician = match self.workspace.responsible_of(&x.patient_id).await {
            Ok(Some(doc)) => serde_json::from_str::<Physician>(&doc).ok(),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(message = "Responsible physician not found for an expertise answer.", error = %e);
                None
            }
        };
        let Some(p) = physician else { return false };
        let url = format!("{}/episodes/{}", m.public_url, x.episode_id);
        let (name, id) = (&p.name, x.id);
        let fr = format!(
            "Bonjour {name},\n\nLa demande de télé-expertise n° {id} a reçu une réponse. L'avis est joint à \
             l'épisode :\n{url}\n"
        );
        let en = format!(
            "Hello {name},\n\nTele-expertise request #{id} has been answered. The advice is attached to the \
             episode:\n{url}\n"
        );
        // In the physician's language when the directory says it, else in both.
        let (subject, body) = match p.language {
            Some(Language::Fr) => ("Avis de télé-expertise reçu", fr),
            Some(Language::En) => ("Tele-expertise advice received", en),
            None => ("Avis de télé-expertise reçu / Tele-expertise advice received", format!("{fr}\n---\n\n{en}")),
        };
        let sent = m.send(format!("expertise-{}-answer", x.id), p.email.as_str(), subject, body).await;
        if sent && let Err(e) = self.workspace.mark_notified(x.id, Utc::now()).await {
            tracing::warn!(message = "Expertise notification not recorded.", error = %e);
        }
        sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With alerting's file transport (embedded mode), the workspace's emails are
    /// `.eml` files in `alerting.file_dir`.
    #[tokio::test]
    async fn the_deployment_mailer_uses_alerting_s_transport_and_sender() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = vitalwatch_alerting::settings::AlertingSettings {
            transport: vitalwatch_alerting::settings::AlertTransportKind::File,
            file_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        s.smtp.from = "VitalWatch <noreply@vw.example>".into();
        let m = Mailer::from_alerting(&s, "https://vw.example/").unwrap();
        assert_eq!(m.public_url, "https://vw.example");
        assert!(m.send("expertise-1-answer".into(), "dr-a@hospital.example", "Sujet", "Corps".into()).await);
        let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().filter_map(Result::ok).collect();
        assert_eq!(files.len(), 1);
        let raw = std::fs::read_to_string(files[0].path()).unwrap();
        assert!(raw.contains("To: dr-a@hospital.example") && raw.contains("noreply@vw.example"), "{raw}");
        assert!(!m.send("k".into(), "not an address", "s", "b".into()).await, "an invalid address is not sent");
        assert!(Mailer::from_alerting(&s, "ftp://x").is_err());
    }
}
