//! The registry of patients and devices as an in-memory snapshot, with the
//! enrolment lookup ingest uses: a device's reading belongs to the patient the
//! device was enrolled to at the reading's time, never to whatever a payload
//! claims.
//!
//! Writing into the past is limited: the reading time is supplied by the
//! device, so a retired device is refused whatever the reading time, and an
//! enrolment that ended (the device was moved to another patient, or
//! unenrolled) accepts nothing more once its end is in effect, even readings
//! dated inside it, unless an audited backfill grant for that device and
//! patient is open.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{DeviceId, PatientId};

/// One enrolment period of a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrolment {
    /// The patient.
    pub patient_id: PatientId,
    /// Start, inclusive.
    pub valid_from: DateTime<Utc>,
    /// End, exclusive; `None` while the device is still enrolled.
    pub valid_to: Option<DateTime<Utc>>,
    /// Why and when the end was recorded; `None` while enrolled.
    #[serde(default)]
    pub ended: Option<EnrolmentEnd>,
}

/// Why an enrolment ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The device was enrolled to another patient.
    Moved,
    /// The enrolment was ended without a new one.
    Unenrolled,
    /// The device was retired.
    Retired,
}

impl EndReason {
    /// The stored name (`moved`, `unenrolled`, `retired`).
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Moved => "moved",
            EndReason::Unenrolled => "unenrolled",
            EndReason::Retired => "retired",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<EndReason> {
        match s {
            "moved" => Some(EndReason::Moved),
            "unenrolled" => Some(EndReason::Unenrolled),
            "retired" => Some(EndReason::Retired),
            _ => None,
        }
    }
}

/// The recorded end of an enrolment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolmentEnd {
    /// Why it ended.
    pub reason: EndReason,
    /// When the end was recorded (wall clock of the change, not `valid_to`,
    /// which may be backdated).
    pub recorded_at: DateTime<Utc>,
}

impl Enrolment {
    /// True if `t` falls in the period.
    pub fn covers(&self, t: DateTime<Utc>) -> bool {
        t >= self.valid_from && self.valid_to.is_none_or(|end| t < end)
    }

    /// The recorded end if it is in effect at wall-clock time `now`: the end
    /// was recorded and its `valid_to` has come (a move scheduled for later
    /// leaves the current enrolment open until then).
    pub fn ended_by(&self, now: DateTime<Utc>) -> Option<EndReason> {
        let end = self.ended?;
        let effective = self.valid_to.map_or(end.recorded_at, |to| to.max(end.recorded_at));
        (now >= effective).then_some(end.reason)
    }
}

/// An audited permission for a device to file readings of one of its ended
/// enrolments (readings stored on the device before a move), until a
/// wall-clock time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackfillGrant {
    /// The patient of the ended enrolment.
    pub patient_id: PatientId,
    /// End of the grant (wall clock, exclusive).
    pub until: DateTime<Utc>,
}

/// A device in the registry.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DeviceEntry {
    /// Set when the device was retired.
    pub retired_at: Option<DateTime<Utc>>,
    /// Enrolment periods, any order.
    pub enrolments: Vec<Enrolment>,
    /// Open backfill grants.
    #[serde(default)]
    pub backfill: Vec<BackfillGrant>,
}

/// Why a device's reading cannot be attributed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attribution {
    /// The device is not registered.
    UnknownDevice,
    /// The device is retired (whatever the reading time), or was retired
    /// before the reading.
    Retired,
    /// No enrolment covers the reading time.
    NotEnrolled,
    /// The enrolment covering the reading time ended because the device was
    /// moved to another patient, and no backfill grant is open.
    Reassigned,
    /// The enrolment covering the reading time was ended (unenrolled), and no
    /// backfill grant is open.
    EnrolmentEnded,
}

/// A consistent snapshot of the registry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrySnapshot {
    /// Devices by id.
    pub devices: HashMap<String, DeviceEntry>,
    /// Active patient ids.
    pub patients: HashSet<String>,
    /// Discharged patient ids (registered, no longer monitored): their
    /// readings are refused with a reason of their own until a readmission.
    #[serde(default)]
    pub discharged: HashSet<String>,
}

impl RegistrySnapshot {
    /// The patient `device` was enrolled to at reading time `t`, judged at
    /// wall-clock time `now` (when the reading arrived): a retired device is
    /// refused whatever `t`; an enrolment whose end is in effect at `now`
    /// accepts nothing more, even for `t` inside it, unless a backfill grant
    /// for its patient is open at `now`.
    pub fn patient_for(
        &self,
        device: &DeviceId,
        t: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<&PatientId, Attribution> {
        let d = self.devices.get(device.as_str()).ok_or(Attribution::UnknownDevice)?;
        if d.retired_at.is_some_and(|r| t >= r || now >= r) {
            return Err(Attribution::Retired);
        }
        let e = d.enrolments.iter().find(|e| e.covers(t)).ok_or(Attribution::NotEnrolled)?;
        let Some(reason) = e.ended_by(now) else { return Ok(&e.patient_id) };
        if d.backfill.iter().any(|g| g.patient_id == e.patient_id && now < g.until) {
            return Ok(&e.patient_id);
        }
        Err(match reason {
            EndReason::Moved => Attribution::Reassigned,
            EndReason::Unenrolled => Attribution::EnrolmentEnded,
            EndReason::Retired => Attribution::Retired,
        })
    }

    /// True if the device is registered.
    pub fn has_device(&self, device: &DeviceId) -> bool {
        self.devices.contains_key(device.as_str())
    }

    /// True if the patient is registered and active.
    pub fn has_patient(&self, patient: &PatientId) -> bool {
        self.patients.contains(patient.as_str())
    }

    /// True if the patient is registered but no longer monitored (discharged).
    pub fn is_discharged(&self, patient: &PatientId) -> bool {
        self.discharged.contains(patient.as_str())
    }

    /// The discharged patient a device's reading at `t` would belong to: the
    /// patient of the enrolment covering `t`, or else of the device's latest
    /// enrolment that began before `t`, if that patient is discharged. A
    /// discharge ends the device's enrolment, so a reading it still sends is
    /// refused as "patient not monitored" rather than "not enrolled".
    pub fn discharged_patient_of(&self, device: &DeviceId, t: DateTime<Utc>) -> Option<&PatientId> {
        let d = self.devices.get(device.as_str())?;
        let e = d
            .enrolments
            .iter()
            .find(|e| e.covers(t))
            .or_else(|| d.enrolments.iter().filter(|e| e.valid_from <= t).max_by_key(|e| e.valid_from))?;
        self.is_discharged(&e.patient_id).then_some(&e.patient_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn enrolment_periods_decide_the_patient() {
        let mut r = RegistrySnapshot::default();
        let dev = DeviceId::new("scale-1").unwrap();
        r.devices.insert(
            "scale-1".into(),
            DeviceEntry {
                retired_at: Some(t("2026-06-01T00:00:00Z")),
                enrolments: vec![
                    Enrolment {
                        patient_id: PatientId::new("a").unwrap(),
                        valid_from: t("2026-01-01T00:00:00Z"),
                        valid_to: Some(t("2026-03-01T00:00:00Z")),
                        ended: None,
                    },
                    Enrolment {
                        patient_id: PatientId::new("b").unwrap(),
                        valid_from: t("2026-03-01T00:00:00Z"),
                        valid_to: None,
                        ended: None,
                    },
                ],
                backfill: Vec::new(),
            },
        );
        // Judged before the retirement (a retirement recorded ahead of time).
        let now = t("2026-05-01T00:00:00Z");
        assert_eq!(r.patient_for(&dev, t("2026-02-28T23:59:59Z"), now).unwrap().as_str(), "a");
        assert_eq!(r.patient_for(&dev, t("2026-03-01T00:00:00Z"), now).unwrap().as_str(), "b");
        assert_eq!(r.patient_for(&dev, t("2025-12-31T00:00:00Z"), now), Err(Attribution::NotEnrolled));
        assert_eq!(r.patient_for(&dev, t("2026-06-01T00:00:00Z"), now), Err(Attribution::Retired));
        assert_eq!(
            r.patient_for(&DeviceId::new("x").unwrap(), t("2026-03-01T00:00:00Z"), now),
            Err(Attribution::UnknownDevice)
        );
    }

    /// dev-1: enrolled to `a` from January, moved to `b` on March 1st (the
    /// move recorded on March 1st at noon), retired (or not) on June 1st.
    fn moved(retired: bool) -> RegistrySnapshot {
        let mut r = RegistrySnapshot::default();
        r.devices.insert(
            "dev-1".into(),
            DeviceEntry {
                retired_at: retired.then(|| t("2026-06-01T00:00:00Z")),
                enrolments: vec![
                    Enrolment {
                        patient_id: PatientId::new("a").unwrap(),
                        valid_from: t("2026-01-01T00:00:00Z"),
                        valid_to: Some(t("2026-03-01T00:00:00Z")),
                        ended: Some(EnrolmentEnd { reason: EndReason::Moved, recorded_at: t("2026-03-01T12:00:00Z") }),
                    },
                    Enrolment {
                        patient_id: PatientId::new("b").unwrap(),
                        valid_from: t("2026-03-01T00:00:00Z"),
                        valid_to: retired.then(|| t("2026-06-01T00:00:00Z")),
                        ended: retired.then(|| EnrolmentEnd {
                            reason: EndReason::Retired,
                            recorded_at: t("2026-06-01T00:00:00Z"),
                        }),
                    },
                ],
                backfill: Vec::new(),
            },
        );
        r
    }

    #[test]
    fn a_retired_device_is_refused_whatever_the_reading_time() {
        let r = moved(true);
        let dev = DeviceId::new("dev-1").unwrap();
        let before_retirement = t("2026-05-31T23:59:59Z");
        // Judged before the retirement: the reading is b's.
        assert_eq!(r.patient_for(&dev, before_retirement, t("2026-05-31T23:59:59Z")).unwrap().as_str(), "b");
        // Judged at or after it: refused, even dated before it.
        for now in [t("2026-06-01T00:00:00Z"), t("2026-08-01T00:00:00Z")] {
            assert_eq!(r.patient_for(&dev, before_retirement, now), Err(Attribution::Retired));
            assert_eq!(r.patient_for(&dev, t("2026-02-01T00:00:00Z"), now), Err(Attribution::Retired));
        }
    }

    #[test]
    fn a_moved_device_cannot_file_for_its_previous_patient_once_the_move_is_recorded() {
        let mut r = moved(false);
        let dev = DeviceId::new("dev-1").unwrap();
        let in_a = t("2026-02-28T23:59:59Z");
        // Before the move was recorded (late upload the morning of the move): a's.
        assert_eq!(r.patient_for(&dev, in_a, t("2026-03-01T11:59:59Z")).unwrap().as_str(), "a");
        // Once recorded: refused, though dated in a's period.
        assert_eq!(r.patient_for(&dev, in_a, t("2026-03-01T12:00:00Z")), Err(Attribution::Reassigned));
        assert_eq!(r.patient_for(&dev, in_a, t("2026-04-01T00:00:00Z")), Err(Attribution::Reassigned));
        // The new patient's readings are unaffected, on both sides of the boundary.
        assert_eq!(r.patient_for(&dev, t("2026-03-01T00:00:00Z"), t("2026-04-01T00:00:00Z")).unwrap().as_str(), "b");
        // A backfill grant for a, open until April 2nd, lets a's readings in; not after it.
        r.devices
            .get_mut("dev-1")
            .unwrap()
            .backfill
            .push(BackfillGrant { patient_id: PatientId::new("a").unwrap(), until: t("2026-04-02T00:00:00Z") });
        assert_eq!(r.patient_for(&dev, in_a, t("2026-04-01T00:00:00Z")).unwrap().as_str(), "a");
        assert_eq!(r.patient_for(&dev, in_a, t("2026-04-02T00:00:00Z")), Err(Attribution::Reassigned));
        // A grant for another patient does not help.
        let mut r = moved(false);
        r.devices
            .get_mut("dev-1")
            .unwrap()
            .backfill
            .push(BackfillGrant { patient_id: PatientId::new("b").unwrap(), until: t("2026-04-02T00:00:00Z") });
        assert_eq!(r.patient_for(&dev, in_a, t("2026-04-01T00:00:00Z")), Err(Attribution::Reassigned));
    }

    #[test]
    fn a_move_scheduled_for_later_leaves_the_enrolment_open_until_then() {
        let mut r = moved(false);
        let e = &mut r.devices.get_mut("dev-1").unwrap().enrolments[0];
        // Recorded in February for March 1st.
        e.ended = Some(EnrolmentEnd { reason: EndReason::Moved, recorded_at: t("2026-02-10T00:00:00Z") });
        let dev = DeviceId::new("dev-1").unwrap();
        assert_eq!(r.patient_for(&dev, t("2026-02-20T00:00:00Z"), t("2026-02-20T00:00:01Z")).unwrap().as_str(), "a");
        assert_eq!(
            r.patient_for(&dev, t("2026-02-20T00:00:00Z"), t("2026-03-01T00:00:00Z")),
            Err(Attribution::Reassigned)
        );
    }

    #[test]
    fn a_discharged_patients_device_is_named_as_such() {
        let mut r = moved(false);
        let dev = DeviceId::new("dev-1").unwrap();
        // b's enrolment is open, b is active: nothing to say.
        assert_eq!(r.discharged_patient_of(&dev, t("2026-04-01T00:00:00Z")), None);
        r.discharged.insert("b".into());
        assert_eq!(r.discharged_patient_of(&dev, t("2026-04-01T00:00:00Z")).map(PatientId::as_str), Some("b"));
        // Before any enrolment: nobody.
        assert_eq!(r.discharged_patient_of(&dev, t("2025-01-01T00:00:00Z")), None);
        // a's period: a is not discharged.
        assert_eq!(r.discharged_patient_of(&dev, t("2026-02-01T00:00:00Z")), None);
        let d = r.devices.get_mut("dev-1").unwrap();
        d.enrolments[1].valid_to = Some(t("2026-05-01T00:00:00Z"));
        // After b's (ended) enrolment: still b's device.
        assert_eq!(r.discharged_patient_of(&dev, t("2026-06-01T00:00:00Z")).map(PatientId::as_str), Some("b"));
        assert!(r.is_discharged(&PatientId::new("b").unwrap()));
    }

    #[test]
    fn an_unenrolled_device_cannot_file_into_its_ended_enrolment() {
        let mut r = moved(false);
        let d = r.devices.get_mut("dev-1").unwrap();
        d.enrolments.truncate(1);
        d.enrolments[0].ended =
            Some(EnrolmentEnd { reason: EndReason::Unenrolled, recorded_at: t("2026-03-01T00:00:00Z") });
        let dev = DeviceId::new("dev-1").unwrap();
        assert_eq!(
            r.patient_for(&dev, t("2026-02-01T00:00:00Z"), t("2026-03-02T00:00:00Z")),
            Err(Attribution::EnrolmentEnded)
        );
        assert_eq!(
            r.patient_for(&dev, t("2026-03-01T00:00:00Z"), t("2026-03-02T00:00:00Z")),
            Err(Attribution::NotEnrolled)
        );
    }
}
