//! The escalation planner: a pure, deterministic function of the episode
//! state, the care team, the recent load and an explicit clock.
//!
//! Given those, [`plan`] returns the notifications due now, the digest entries
//! to add, the audit records, and the next instant at which it must be called
//! again. It never reads the system clock and does no I/O; call it on every
//! alert event, acknowledgment, snooze and at each `next_wakeup`, then store
//! the plan with [`EpisodeState::record_plan`] and the notifications in the
//! outbox under their idempotency keys.
//!
//! Rules:
//! - the ladder of the current severity starts when alerting learned about
//!   that severity; rung *i > 0* is due `after_minutes` after rung *i − 1* went
//!   out without acknowledgment;
//! - after the last rung, everyone paged at that severity is reminded every
//!   `remind_every_minutes`, at most `max_reminders` times (only the latest
//!   reminder is sent if several fell due, e.g. during quiet hours);
//! - an acknowledgment stops everything for the acknowledged severity and below;
//!   a severity rise starts the ladder of the new severity;
//! - a snooze holds pages until it ends; a severity rise breaks it;
//! - quiet hours hold non-urgent pages until the window ends (the next rung
//!   waits for this one); CRITICAL is never held;
//! - over the hourly cap, pages below the cap's severity go to the digest
//!   (reminders are then dropped); INFO only ever goes to the digest;
//! - on resolution, everyone paged gets an all-clear on each channel they were
//!   paged on; an episode that resolved before anyone was told (its page held
//!   by quiet hours) goes to the responsible physician's next digest;
//! - technical alerts (`rule_kind` `device_heartbeat_lost`: a device stopped
//!   sending heartbeats) go by email only, whatever the channel preferences:
//!   they are for the care team, not the physician's pager;
//! - when every notification of a rung failed for good (permanent failure, or
//!   transient failures past the retry horizon, fallback channel included),
//!   the next rung is due at once; after the last rung, the deputies not paged
//!   yet at that severity are paged instead.

use chrono::{DateTime, Utc};

use crate::audit::{AuditEntry, AuditRecord, HoldReason};
use crate::caps::{CapPolicy, DigestEntry, RecentLoad};
use crate::episode::{EpisodeState, Issued};
use crate::notification::{Notification, NotificationKey, Route, Step};
use crate::policy::resolve_targets;
use crate::severity::{Channel, Severity};
use crate::team::{CareTeam, Directory, Physician, PhysicianId};

/// Everything the planner looks at.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    /// The episode.
    pub episode: &'a EpisodeState,
    /// The patient's care team.
    pub team: &'a CareTeam,
    /// Physicians by id.
    pub directory: &'a Directory,
    /// Notifications sent to each physician in the last rolling hour.
    pub load: &'a RecentLoad,
    /// Cap settings.
    pub caps: &'a CapPolicy,
    /// The clock.
    pub now: DateTime<Utc>,
}

/// What the planner decided.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Notifications due now.
    pub notifications: Vec<Notification>,
    /// Entries to add to physicians' digests.
    pub digest: Vec<DigestEntry>,
    /// Audit records of the decisions.
    pub audit: Vec<AuditRecord>,
    /// When to call the planner again (`None`: only on the next external change).
    pub next_wakeup: Option<DateTime<Utc>>,
}

enum Emit {
    Sent,
    AlreadyIssued(DateTime<Utc>),
    Held,
    Suppressed,
}

struct Planner<'a> {
    input: PlanInput<'a>,
    load: RecentLoad,
    plan: Plan,
}

impl<'a> Planner<'a> {
    fn now(&self) -> DateTime<Utc> {
        self.input.now
    }

    fn wake(&mut self, at: DateTime<Utc>) {
        if at > self.now() {
            self.plan.next_wakeup = Some(self.plan.next_wakeup.map_or(at, |w| w.min(at)));
        }
    }

    fn audit(&mut self, entry: AuditEntry) {
        let record = AuditRecord { at: self.now(), episode_id: self.input.episode.episode_id.clone(), entry };
        self.plan.audit.push(record);
    }

    fn issued_at(&self, key: &NotificationKey) -> Option<DateTime<Utc>> {
        self.input.episode.issued.iter().find(|i| &i.key == key).map(|i| i.at)
    }

    fn digest_entry(
        &mut self,
        key: NotificationKey,
        recipient: &PhysicianId,
        step: Step,
        severity: Severity,
        reason: HoldReason,
    ) {
        if self.plan.digest.iter().any(|d| d.key == key) {
            return;
        }
        let ep = self.input.episode;
        self.plan.digest.push(DigestEntry {
            key: key.clone(),
            episode_id: ep.episode_id.clone(),
            patient_id: ep.patient_id.clone(),
            recipient: recipient.clone(),
            step,
            severity,
            code: ep.details.code,
            value: ep.details.value,
            unit: ep.details.unit.clone(),
            reading_time: ep.details.reading_time,
            summary: ep.details.summary.clone(),
            at: self.now(),
        });
        self.audit(AuditEntry::NotificationDigested { key, recipient: recipient.clone(), reason });
    }

    /// Issues one (step, recipient, channel) unless already issued, held by
    /// quiet hours, or folded/suppressed by the cap.
    #[allow(clippy::too_many_arguments)]
    fn emit(
        &mut self,
        phys: &Physician,
        step: Step,
        channel: Channel,
        due: DateTime<Utc>,
        quiet_severity: Severity,
        capped: bool,
        digestible: bool,
    ) -> Emit {
        let ep = self.input.episode;
        let now = self.now();
        let key = NotificationKey::new(&ep.episode_id, step, &phys.id, Route::Channel(channel));
        let digest_key = NotificationKey::new(&ep.episode_id, step, &phys.id, Route::Digest);
        if let Some(at) = self.issued_at(&key).or_else(|| self.issued_at(&digest_key)) {
            return Emit::AlreadyIssued(at);
        }
        if self.plan.digest.iter().any(|d| d.key == digest_key) {
            return Emit::Sent;
        }
        let mut deferred_from = None;
        if let Some(q) = &phys.quiet_hours {
            let tz = phys.time_zone.tz();
            let release = q.release_time(tz, quiet_severity, now);
            if release > now {
                self.audit(AuditEntry::NotificationHeld {
                    key,
                    recipient: phys.id.clone(),
                    reason: HoldReason::QuietHours,
                    until: Some(release),
                });
                self.wake(release);
                return Emit::Held;
            }
            if q.release_time(tz, quiet_severity, due) > due {
                deferred_from = Some(due);
            }
        }
        if capped && self.input.caps.folds(phys, self.load.count(&phys.id), ep.severity) {
            if digestible {
                self.digest_entry(digest_key, &phys.id, step, ep.severity, HoldReason::HourlyCap);
                return Emit::Sent;
            }
            self.audit(AuditEntry::NotificationHeld {
                key,
                recipient: phys.id.clone(),
                reason: HoldReason::HourlyCap,
                until: None,
            });
            return Emit::Suppressed;
        }
        self.load.bump(&phys.id);
        self.plan.notifications.push(Notification {
            key: key.clone(),
            episode_id: ep.episode_id.clone(),
            patient_id: ep.patient_id.clone(),
            recipient: phys.id.clone(),
            channel,
            step,
            severity: ep.severity,
            due_at: now,
            deferred_from,
            fallback_from: None,
        });
        self.audit(AuditEntry::NotificationPlanned { key, recipient: phys.id.clone(), channel, step });
        Emit::Sent
    }

    /// The channels `phys` is paged on at `severity`: the physician's
    /// preferences, except technical alerts (a device stopped sending
    /// heartbeats), which go by email only, never by SMS (issue #14 §7).
    fn channels(&self, phys: &Physician, severity: Severity) -> Vec<Channel> {
        let list = if self.input.episode.details.is_technical() {
            vec![Channel::Email]
        } else {
            phys.channels.channels_for(severity)
        };
        list.into_iter().filter(|c| phys.reachable_on(*c)).collect()
    }

    fn physician(&mut self, id: &PhysicianId, step: Step) -> Option<&'a Physician> {
        let found = self.input.directory.get(id);
        if found.is_none() {
            self.audit(AuditEntry::RecipientUnreachable { recipient: id.clone(), step });
        }
        found
    }

    fn resolved(&mut self) {
        let ep = self.input.episode;
        let resolved_at = ep.resolved_at.unwrap_or(self.now());
        if ep.issued.is_empty() && ep.severity > Severity::Info {
            // Nobody was told (its page was held by quiet hours until it
            // resolved): the responsible physician learns of it in the next
            // digest instead of never (issue #14).
            let step = Step::Page { severity: ep.severity, index: 0 };
            let recipient = self.input.team.responsible.clone();
            let key = NotificationKey::new(&ep.episode_id, step, &recipient, Route::Digest);
            if !ep.was_issued(&key) && self.physician(&recipient, step).is_some() {
                self.digest_entry(key, &recipient, step, ep.severity, HoldReason::QuietHours);
            }
            return;
        }
        for (recipient, channel) in ep.paged() {
            let Some(phys) = self.physician(&recipient, Step::Resolved) else {
                continue;
            };
            // The all-clear may cross quiet hours when the pages did.
            let highest = ep
                .issued
                .iter()
                .filter(|i| i.recipient == recipient)
                .filter_map(|i| i.step.severity())
                .max()
                .unwrap_or(Severity::Low);
            self.emit(phys, Step::Resolved, channel, resolved_at, highest, false, false);
        }
    }

    fn info(&mut self) {
        let ep = self.input.episode;
        let step = Step::Page { severity: Severity::Info, index: 0 };
        let recipient = self.input.team.responsible.clone();
        let key = NotificationKey::new(&ep.episode_id, step, &recipient, Route::Digest);
        if !ep.was_issued(&key) {
            self.digest_entry(key, &recipient, step, Severity::Info, HoldReason::InfoSeverity);
        }
    }

    /// Pages, at step `index` (after the ladder's last rung), every deputy
    /// not paged yet at `severity`.
    fn deputies_instead(&mut self, severity: Severity, index: u32) {
        let ep = self.input.episode;
        let step = Step::Page { severity, index };
        for deputy in &self.input.team.deputies {
            let paged = ep.issued.iter().any(|i| {
                &i.recipient == deputy && i.step.severity() == Some(severity) && matches!(i.step, Step::Page { .. })
            });
            if paged && !ep.issued.iter().any(|i| &i.recipient == deputy && i.step == step) {
                continue;
            }
            let Some(phys) = self.physician(deputy, step) else {
                continue;
            };
            for channel in self.channels(phys, severity) {
                self.emit(phys, step, channel, self.now(), severity, false, false);
            }
        }
    }

    fn ladder(&mut self) {
        let ep = self.input.episode;
        let now = self.now();
        let severity = ep.severity;
        let Some(ladder) = self.input.team.policy.ladder(severity) else {
            return;
        };
        let mut previous: Option<DateTime<Utc>> = None;
        for (i, rung) in ladder.steps.iter().enumerate() {
            let due = match (i, previous) {
                (0, _) => ep.severity_since + ladder.delay(0),
                // Nobody could be told at the previous rung (every channel
                // failed for good): this one is due at once.
                (_, Some(prev)) if ep.step_undeliverable(Step::Page { severity, index: rung_index(i - 1) }) => prev,
                (_, Some(prev)) => prev + ladder.delay(i),
                (_, None) => return,
            };
            if due > now {
                self.wake(due);
                return;
            }
            let step = Step::Page { severity, index: rung_index(i) };
            let mut went_out: Option<DateTime<Utc>> = None;
            for recipient in resolve_targets(rung, self.input.team) {
                let Some(phys) = self.physician(&recipient, step) else {
                    continue;
                };
                let channels = self.channels(phys, severity);
                if channels.is_empty() {
                    self.audit(AuditEntry::RecipientUnreachable { recipient: recipient.clone(), step });
                    continue;
                }
                for channel in channels {
                    let at = match self.emit(phys, step, channel, due, severity, true, true) {
                        Emit::Sent | Emit::Suppressed => Some(now),
                        Emit::AlreadyIssued(at) => Some(at),
                        Emit::Held => None,
                    };
                    went_out = match (went_out, at) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
            }
            match went_out {
                Some(t) => previous = Some(t),
                None => return,
            }
        }
        // Every rung went out. If nobody could be told at the last one, the
        // deputies not paged yet at this severity are, at once.
        let last_rung = Step::Page { severity, index: rung_index(ladder.steps.len().saturating_sub(1)) };
        if ep.step_undeliverable(last_rung) {
            self.deputies_instead(severity, rung_index(ladder.steps.len()));
        }
        // Reminders.
        let (Some(last), Some(interval)) = (previous, ladder.reminder_interval()) else {
            return;
        };
        let elapsed = now - last;
        let due_count = (elapsed.num_seconds() / interval.num_seconds().max(1)).max(0);
        let number = u32::try_from(due_count).unwrap_or(u32::MAX).min(ladder.max_reminders);
        if number < ladder.max_reminders {
            self.wake(last + interval * (i32::try_from(number).unwrap_or(i32::MAX - 1) + 1));
        }
        if number == 0 {
            return;
        }
        let step = Step::Reminder { severity, number };
        let paged: Vec<(PhysicianId, Channel)> = ep
            .issued
            .iter()
            .filter(|i: &&Issued| i.step.severity() == Some(severity) && matches!(i.step, Step::Page { .. }))
            .filter_map(|i| match i.route {
                Route::Channel(c) if !ep.channel_failed(&i.recipient, c) => Some((i.recipient.clone(), c)),
                Route::Channel(_) | Route::Digest => None,
            })
            .fold(Vec::new(), |mut acc, p| {
                if !acc.contains(&p) {
                    acc.push(p);
                }
                acc
            });
        let reminder_due = last + interval * i32::try_from(number).unwrap_or(i32::MAX);
        for (recipient, channel) in paged {
            let Some(phys) = self.physician(&recipient, step) else {
                continue;
            };
            self.emit(phys, step, channel, reminder_due, severity, true, false);
        }
    }
}

fn rung_index(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

/// Plans the notifications of one episode at `input.now`. Pure and
/// deterministic: the same input always gives the same plan.
pub fn plan(input: PlanInput<'_>) -> Plan {
    let mut p = Planner { input, load: input.load.clone(), plan: Plan::default() };
    let ep = input.episode;
    if ep.resolved_at.is_some() {
        p.resolved();
    } else if ep.severity == Severity::Info {
        p.info();
    } else if ep.is_acknowledged() {
        // Stopped until a severity rise.
    } else if ep.is_snoozed(input.now) {
        if let Some(s) = &ep.snooze {
            p.wake(s.until);
        }
    } else {
        p.ladder();
    }
    p.plan
}

impl EpisodeState {
    /// Records what a plan issued, so the next plan does not issue it again.
    pub fn record_plan(&mut self, plan: &Plan) {
        for n in &plan.notifications {
            self.record_issued(n);
        }
        for d in &plan.digest {
            if !self.was_issued(&d.key) {
                self.issued.push(Issued {
                    key: d.key.clone(),
                    recipient: d.recipient.clone(),
                    step: d.step,
                    route: Route::Digest,
                    at: d.at,
                    fallback_from: None,
                    failed: false,
                });
            }
        }
    }

    /// Records a fallback queued after a permanent failure: as issued, or, if
    /// the same (step, recipient, channel) was issued anyway, marks it as
    /// replacing the failed channel.
    pub fn record_fallback(&mut self, f: &Notification) {
        match self.issued.iter_mut().find(|i| i.key == f.key) {
            Some(i) => i.fallback_from = i.fallback_from.or(f.fallback_from),
            None => self.record_issued(f),
        }
    }

    /// Records a fallback queued while the first channel is still retried
    /// (transient failures): issued, but the first channel is not marked as
    /// failed, so reminders and the all-clear still use both.
    pub fn record_standby_fallback(&mut self, f: &Notification) {
        if !self.was_issued(&f.key) {
            self.record_issued(&Notification { fallback_from: None, ..f.clone() });
        }
    }

    /// Records one issued notification (for example a fallback: the stores
    /// call this when they queue one, so reminders and the all-clear reach
    /// the recipient on the channel that works).
    pub fn record_issued(&mut self, n: &Notification) {
        if !self.was_issued(&n.key) {
            self.issued.push(Issued {
                key: n.key.clone(),
                recipient: n.recipient.clone(),
                step: n.step,
                route: Route::Channel(n.channel),
                at: n.due_at,
                fallback_from: n.fallback_from,
                failed: false,
            });
        }
    }
}
