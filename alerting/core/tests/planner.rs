//! The escalation planner driven by an explicit clock: timing, acks,
//! resolution, quiet hours across DST, caps and digests, snooze, idempotency.

use crate::common;

use chrono::{DateTime, Duration, Utc};
use common::*;
use vitalwatch_alerting_core::*;
use vitalwatch_schemas::proto::AlertEventKind;

struct World {
    dir: Directory,
    team: CareTeam,
    load: RecentLoad,
    caps: CapPolicy,
    ep: EpisodeState,
}

impl World {
    fn new(ps: Vec<Physician>, severity: Severity, at: DateTime<Utc>) -> World {
        let (ep, audit) = EpisodeState::from_event(&event("e1", AlertEventKind::Opened, severity, at), at).unwrap();
        assert!(matches!(audit[0].entry, AuditEntry::EpisodeOpened { .. }));
        let dir = directory(ps);
        let team = team();
        team.validate(&dir).unwrap();
        World { dir, team, load: RecentLoad::new(), caps: CapPolicy::default(), ep }
    }

    fn plan(&self, now: DateTime<Utc>) -> Plan {
        plan(PlanInput {
            episode: &self.ep,
            team: &self.team,
            directory: &self.dir,
            load: &self.load,
            caps: &self.caps,
            now,
        })
    }

    /// Plans and records, like the dispatcher does.
    fn step(&mut self, now: DateTime<Utc>) -> Plan {
        let p = self.plan(now);
        self.ep.record_plan(&p);
        p
    }
}

fn who(p: &Plan) -> Vec<(String, Channel, Step)> {
    let mut v: Vec<_> = p.notifications.iter().map(|n| (n.recipient.to_string(), n.channel, n.step)).collect();
    v.sort_by_key(|a| (a.0.clone(), a.1));
    v
}

fn default_people() -> Vec<Physician> {
    vec![physician("dr-martin", None), physician("dr-chen", None)]
}

#[test]
fn high_alert_escalates_reminds_and_stops_on_ack() {
    let t0 = t("2026-01-14T12:00:00Z");
    let mut w = World::new(default_people(), Severity::High, t0);
    let high0 = Step::Page { severity: Severity::High, index: 0 };
    let high1 = Step::Page { severity: Severity::High, index: 1 };

    let p = w.step(t0);
    assert_eq!(who(&p), vec![("dr-martin".into(), Channel::Email, high0), ("dr-martin".into(), Channel::Sms, high0)]);
    assert_eq!(p.next_wakeup, Some(t0 + Duration::minutes(15)));
    assert_eq!(p.notifications[0].key.as_str(), "ep-1:high.page0:dr-martin:email");

    // Nothing new before the delay; re-planning is idempotent.
    let p = w.step(t0 + Duration::minutes(14));
    assert!(p.notifications.is_empty());
    assert_eq!(p.next_wakeup, Some(t0 + Duration::minutes(15)));

    let p = w.step(t0 + Duration::minutes(15));
    assert_eq!(who(&p), vec![("dr-chen".into(), Channel::Email, high1), ("dr-chen".into(), Channel::Sms, high1)]);
    assert_eq!(p.next_wakeup, Some(t0 + Duration::minutes(30)));

    // First reminder to everyone paged.
    let p = w.step(t0 + Duration::minutes(30));
    let reminder = Step::Reminder { severity: Severity::High, number: 1 };
    assert_eq!(p.notifications.len(), 4);
    assert!(p.notifications.iter().all(|n| n.step == reminder));
    assert_eq!(p.next_wakeup, Some(t0 + Duration::minutes(45)));

    // Acknowledged: nothing more, no wake-up.
    let rec = w.ep.acknowledge(pid("dr-chen"), AckVia::SmsReply, None, t0 + Duration::minutes(31)).unwrap().unwrap();
    assert!(matches!(rec.entry, AuditEntry::Acknowledged { .. }));
    let p = w.step(t0 + Duration::minutes(50));
    assert!(p.notifications.is_empty());
    assert_eq!(p.next_wakeup, None);

    // A severity rise pages again, on the CRITICAL ladder.
    let audit =
        w.ep.apply_event(
            &event("e2", AlertEventKind::Escalated, Severity::Critical, t0 + Duration::minutes(52)),
            t0 + Duration::minutes(52),
        )
        .unwrap();
    assert!(matches!(audit[0].entry, AuditEntry::SeverityRaised { from: Severity::High, to: Severity::Critical, .. }));
    let p = w.step(t0 + Duration::minutes(52));
    let crit0 = Step::Page { severity: Severity::Critical, index: 0 };
    assert_eq!(who(&p), vec![("dr-martin".into(), Channel::Email, crit0), ("dr-martin".into(), Channel::Sms, crit0)]);
    assert_eq!(p.next_wakeup, Some(t0 + Duration::minutes(57)));
}

#[test]
fn plans_are_deterministic_and_redelivery_pages_nobody_twice() {
    let t0 = t("2026-01-14T12:00:00Z");
    let mut w = World::new(default_people(), Severity::Critical, t0);
    let a = w.plan(t0);
    let b = w.plan(t0);
    assert_eq!(a, b, "same input, same plan");
    w.ep.record_plan(&a);
    // Redelivered OPENED event: no state change, no record, no page.
    let audit =
        w.ep.apply_event(&event("e1", AlertEventKind::Opened, Severity::Critical, t0), t0 + Duration::seconds(3))
            .unwrap();
    assert!(audit.is_empty());
    // A restarted dispatcher that re-plans at the same or a later time.
    assert!(w.plan(t0).notifications.is_empty());
    assert!(w.plan(t0 + Duration::minutes(1)).notifications.is_empty());
    // Keys are unique per (episode, step, recipient, channel).
    let keys: std::collections::HashSet<_> = a.notifications.iter().map(|n| n.key.clone()).collect();
    assert_eq!(keys.len(), a.notifications.len());
    // A lower severity event arriving late is ignored and recorded.
    let audit = w.ep.apply_event(&event("e0", AlertEventKind::Escalated, Severity::High, t0), t0).unwrap();
    assert!(matches!(audit[0].entry, AuditEntry::EventIgnored { .. }));
    assert_eq!(w.ep.severity, Severity::Critical);
}

#[test]
fn resolution_sends_one_all_clear_to_everyone_paged() {
    let t0 = t("2026-01-14T12:00:00Z");
    let mut w = World::new(default_people(), Severity::High, t0);
    w.step(t0);
    w.step(t0 + Duration::minutes(15));
    let at = t0 + Duration::minutes(20);
    w.ep.apply_event(&event("e9", AlertEventKind::Resolved, Severity::High, at), at).unwrap();
    let p = w.step(at);
    assert_eq!(
        who(&p),
        vec![
            ("dr-chen".into(), Channel::Email, Step::Resolved),
            ("dr-chen".into(), Channel::Sms, Step::Resolved),
            ("dr-martin".into(), Channel::Email, Step::Resolved),
            ("dr-martin".into(), Channel::Sms, Step::Resolved),
        ]
    );
    assert_eq!(p.next_wakeup, None);
    assert!(w.step(at + Duration::hours(1)).notifications.is_empty());
    // Events after resolution are ignored.
    let audit = w.ep.apply_event(&event("e10", AlertEventKind::Escalated, Severity::Critical, at), at).unwrap();
    assert!(matches!(audit[0].entry, AuditEntry::EventIgnored { .. }));
}

#[test]
fn quiet_hours_defer_medium_but_not_high_or_critical_across_spring_dst() {
    // Saturday 2026-03-28 23:30 in Paris (CET, UTC+1); the night of the
    // switch to CEST. Quiet hours 22:00-07:00 end at 07:00 CEST = 05:00Z.
    let at = t("2026-03-28T22:30:00Z");
    let people = vec![physician("dr-martin", Some((22, 7))), physician("dr-chen", None)];
    let mut w = World::new(people.clone(), Severity::Medium, at);
    let p = w.step(at);
    assert!(p.notifications.is_empty());
    assert_eq!(p.next_wakeup, Some(t("2026-03-29T05:00:00Z")));
    assert!(
        p.audit.iter().any(|r| matches!(r.entry, AuditEntry::NotificationHeld { reason: HoldReason::QuietHours, .. }))
    );
    // The deputy is not paged while the first rung is held.
    let p = w.step(at + Duration::hours(2));
    assert!(p.notifications.is_empty());
    let p = w.step(t("2026-03-29T05:00:00Z"));
    assert!(!p.notifications.is_empty());
    assert!(p.notifications.iter().all(|n| n.recipient.as_str() == "dr-martin" && n.deferred_from == Some(at)));

    // HIGH (issue #14: what a clinician wants to hear about at night) and
    // CRITICAL go through at once, email and SMS.
    for severity in [Severity::High, Severity::Critical] {
        let mut w = World::new(people.clone(), severity, at);
        let p = w.step(at);
        assert_eq!(p.notifications.len(), 2, "{severity:?}");
        assert!(p.notifications.iter().all(|n| n.deferred_from.is_none()), "{severity:?}");
    }
}

#[test]
fn an_episode_held_by_quiet_hours_and_resolved_before_morning_reaches_the_digest() {
    // Issue #14: a confirmed MEDIUM alert (e.g. a level-1 hypoglycaemia) held
    // by quiet hours and resolved during the night must not vanish: the
    // physician learns of it in the next digest, once.
    let at = t("2026-01-14T23:00:00Z"); // 00:00 in Paris, quiet hours 22:00-07:00
    let people = vec![physician("dr-martin", Some((22, 7))), physician("dr-chen", None)];
    let mut w = World::new(people, Severity::Medium, at);
    let p = w.step(at);
    assert!(p.notifications.is_empty() && p.digest.is_empty(), "held");
    let resolved = at + Duration::hours(3);
    w.ep.apply_event(&event("e9", AlertEventKind::Resolved, Severity::Medium, resolved), resolved).unwrap();
    let p = w.step(resolved);
    assert!(p.notifications.is_empty(), "no all-clear for a page nobody received");
    assert_eq!(p.digest.len(), 1, "{:#?}", p.digest);
    assert_eq!(p.digest[0].recipient.as_str(), "dr-martin");
    assert_eq!(p.digest[0].severity, Severity::Medium);
    assert!(
        p.audit
            .iter()
            .any(|r| matches!(r.entry, AuditEntry::NotificationDigested { reason: HoldReason::QuietHours, .. }))
    );
    // Once only.
    let again = w.step(resolved + Duration::minutes(5));
    assert!(again.digest.is_empty() && again.notifications.is_empty());
    // A resolved episode that was paged gets its all-clear and no digest entry.
    let mut w = World::new(default_people(), Severity::High, at);
    assert!(!w.step(at).notifications.is_empty());
    w.ep.apply_event(&event("e9", AlertEventKind::Resolved, Severity::High, resolved), resolved).unwrap();
    let p = w.step(resolved);
    assert!(p.digest.is_empty());
    assert!(p.notifications.iter().all(|n| n.step == Step::Resolved));
}

#[test]
fn quiet_hours_end_in_local_time_across_autumn_dst() {
    // 2026-10-24 23:00 CEST (UTC+2); 07:00 on the 25th is CET (UTC+1) = 06:00Z.
    let at = t("2026-10-24T21:00:00Z");
    let w = World::new(vec![physician("dr-martin", Some((22, 7))), physician("dr-chen", None)], Severity::Medium, at);
    assert_eq!(w.plan(at).next_wakeup, Some(t("2026-10-25T06:00:00Z")));
    // In the afternoon nothing is held.
    let day = t("2026-10-25T13:00:00Z");
    let w = World::new(vec![physician("dr-martin", Some((22, 7))), physician("dr-chen", None)], Severity::Medium, day);
    assert_eq!(w.plan(day).notifications.len(), 1, "MEDIUM goes by email only");
}

#[test]
fn hourly_cap_folds_low_severity_into_the_digest() {
    let t0 = t("2026-01-14T12:00:00Z");
    let mut martin = physician("dr-martin", None);
    martin.hourly_cap = Some(3);
    let mut w = World::new(vec![martin.clone(), physician("dr-chen", None)], Severity::Medium, t0);
    w.load.set(pid("dr-martin"), 3);
    let p = w.step(t0);
    assert!(p.notifications.is_empty());
    assert_eq!(p.digest.len(), 1);
    assert_eq!(p.digest[0].key.as_str(), "ep-1:medium.page0:dr-martin:digest");
    assert!(
        p.audit
            .iter()
            .any(|r| matches!(r.entry, AuditEntry::NotificationDigested { reason: HoldReason::HourlyCap, .. }))
    );
    // The digest entry counts as the rung having gone out; not repeated.
    assert!(w.step(t0 + Duration::minutes(1)).digest.is_empty());

    // HIGH is never capped.
    let mut w = World::new(vec![martin.clone(), physician("dr-chen", None)], Severity::High, t0);
    w.load.set(pid("dr-martin"), 50);
    assert_eq!(w.plan(t0).notifications.len(), 2);

    // Under the cap, the plan itself counts what it sends.
    let mut w = World::new(vec![martin.clone(), physician("dr-chen", None)], Severity::Medium, t0);
    w.load.set(pid("dr-martin"), 2);
    assert_eq!(w.plan(t0).notifications.len(), 1);

    // INFO only ever goes to the digest.
    let w = World::new(default_people(), Severity::Info, t0);
    let p = w.plan(t0);
    assert!(p.notifications.is_empty());
    assert_eq!(p.digest.len(), 1);

    // Digest timing: hourly, and after quiet hours.
    let caps = CapPolicy::default();
    assert_eq!(digest_due(&martin, &caps, None, None, t0), DigestDecision::Nothing);
    // Due one interval after the oldest folded entry...
    assert_eq!(
        digest_due(&martin, &caps, Some(t0 - Duration::minutes(10)), None, t0),
        DigestDecision::WaitUntil(t0 + Duration::minutes(50))
    );
    assert_eq!(digest_due(&martin, &caps, Some(t0 - Duration::minutes(60)), None, t0), DigestDecision::SendNow);
    // ...and not sooner than one interval after the previous digest.
    assert_eq!(
        digest_due(&martin, &caps, Some(t0 - Duration::minutes(90)), Some(t0 - Duration::minutes(20)), t0),
        DigestDecision::WaitUntil(t0 + Duration::minutes(40))
    );
    let sleepy = physician("dr-sleepy", Some((22, 7)));
    assert_eq!(
        digest_due(&sleepy, &caps, Some(t("2026-01-14T21:30:00Z")), None, t("2026-01-14T23:00:00Z")),
        DigestDecision::WaitUntil(t("2026-01-15T06:00:00Z"))
    );
    assert_eq!(digest_key(&pid("dr-martin"), t0), "digest:dr-martin:20260114T1200");
}

#[test]
fn snooze_holds_pages_and_a_severity_rise_breaks_it() {
    let t0 = t("2026-01-14T12:00:00Z");
    let mut w = World::new(default_people(), Severity::High, t0);
    w.step(t0);
    let until = t0 + Duration::minutes(60);
    w.ep.snooze(pid("dr-martin"), until, t0 + Duration::minutes(5)).unwrap();
    // The deputy rung would be due at +15: held by the snooze.
    let p = w.step(t0 + Duration::minutes(20));
    assert!(p.notifications.is_empty());
    assert_eq!(p.next_wakeup, Some(until));
    // A snooze cannot be longer than 24 h or in the past.
    assert!(w.ep.clone().snooze(pid("dr-martin"), t0 + Duration::hours(30), t0).is_err());
    assert!(w.ep.clone().snooze(pid("dr-martin"), t0, t0 + Duration::minutes(1)).is_err());

    // CRITICAL breaks the snooze at once.
    let at = t0 + Duration::minutes(25);
    let audit = w.ep.apply_event(&event("e2", AlertEventKind::Escalated, Severity::Critical, at), at).unwrap();
    assert!(
        audit
            .iter()
            .any(|r| matches!(r.entry, AuditEntry::SnoozeBroken { snoozed: Severity::High, now: Severity::Critical }))
    );
    let p = w.step(at);
    assert_eq!(p.notifications.len(), 2);
    assert!(p.notifications.iter().all(|n| n.severity == Severity::Critical));
}

#[test]
fn snooze_expiry_resumes_the_ladder() {
    let t0 = t("2026-01-14T12:00:00Z");
    let mut w = World::new(default_people(), Severity::High, t0);
    w.step(t0);
    let until = t0 + Duration::minutes(40);
    w.ep.snooze(pid("dr-martin"), until, t0 + Duration::minutes(1)).unwrap();
    let p = w.step(until);
    assert_eq!(p.notifications.len(), 2, "overdue deputy rung goes out when the snooze ends");
    assert!(p.notifications.iter().all(|n| n.recipient.as_str() == "dr-chen"));
}

#[test]
fn unknown_recipient_is_audited_not_panicking() {
    let t0 = t("2026-01-14T12:00:00Z");
    let (ep, _) = EpisodeState::from_event(&event("e1", AlertEventKind::Opened, Severity::High, t0), t0).unwrap();
    let dir = directory(vec![physician("dr-chen", None)]);
    let p = plan_now(&ep, &team(), &dir, t0);
    assert!(p.notifications.is_empty());
    assert!(p.audit.iter().any(|r| matches!(r.entry, AuditEntry::RecipientUnreachable { .. })));
}

#[test]
fn invalid_events_are_rejected_with_clear_errors() {
    let t0 = t("2026-01-14T12:00:00Z");
    let mut e = event("e1", AlertEventKind::Opened, Severity::High, t0);
    e.severity = 0;
    let err = EpisodeState::from_event(&e, t0).unwrap_err();
    assert!(err.to_string().contains("severity"), "{err}");
    let mut e = event("e1", AlertEventKind::Opened, Severity::High, t0);
    e.patient_id = "John Doe".into();
    assert!(EpisodeState::from_event(&e, t0).unwrap_err().to_string().contains("patient_id"));
    let mut e = event("e1", AlertEventKind::Opened, Severity::High, t0);
    e.detected_at_unix_micros = 0;
    assert!(EpisodeState::from_event(&e, t0).is_err());
    let (mut ep, _) = EpisodeState::from_event(&event("e1", AlertEventKind::Opened, Severity::High, t0), t0).unwrap();
    let mut other = event("x", AlertEventKind::Escalated, Severity::Critical, t0);
    other.episode_id = "ep-2".into();
    assert!(matches!(ep.apply_event(&other, t0), Err(EpisodeError::WrongEpisode { .. })));
    // State round-trips through JSON (it is stored as JSON).
    let json = serde_json::to_string(&ep).unwrap();
    assert_eq!(serde_json::from_str::<EpisodeState>(&json).unwrap(), ep);
}

/// When every channel of a rung failed for good, the next rung is due at
/// once; one channel still in flight (or failed with a fallback pending)
/// keeps the ladder's delay. After the last rung (LOW has one), the deputy
/// is paged instead.
#[test]
fn undeliverable_rung_escalates_at_once() {
    let t0 = t("2026-01-14T12:00:00Z");
    let mut w = World::new(default_people(), Severity::High, t0);
    let high0 = Step::Page { severity: Severity::High, index: 0 };
    let high1 = Step::Page { severity: Severity::High, index: 1 };
    let p = w.step(t0);
    assert_eq!(p.notifications.len(), 2, "email and SMS to dr-martin");
    let later = t0 + Duration::minutes(1);
    // The email failed for good; the SMS is still being tried: wait.
    w.ep.record_failed(&p.notifications[0].key);
    assert!(!w.ep.step_undeliverable(high0));
    assert!(w.step(later).notifications.is_empty());
    // The SMS failed for good too: nobody was told, the deputy is paged now.
    w.ep.record_failed(&p.notifications[1].key);
    assert!(w.ep.step_undeliverable(high0));
    let p = w.step(later);
    assert_eq!(who(&p), vec![("dr-chen".into(), Channel::Email, high1), ("dr-chen".into(), Channel::Sms, high1)]);

    // LOW: a single rung; the deputy is paged after it failed.
    let mut w = World::new(default_people(), Severity::Low, t0);
    let p = w.step(t0);
    assert_eq!(p.notifications.len(), 1);
    w.ep.record_failed(&p.notifications[0].key);
    let p = w.step(later);
    let low1 = Step::Page { severity: Severity::Low, index: 1 };
    assert_eq!(who(&p), vec![("dr-chen".into(), Channel::Email, low1)]);
    assert!(w.step(later + Duration::minutes(1)).notifications.is_empty(), "once");
}
