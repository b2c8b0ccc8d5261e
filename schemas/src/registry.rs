//! The registry of patients and devices as an in-memory snapshot, with the
//! enrolment lookup ingest uses: a device's reading belongs to the patient the
//! device was enrolled to at the reading's time, never to whatever a payload
//! claims.

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
}

impl Enrolment {
    /// True if `t` falls in the period.
    pub fn covers(&self, t: DateTime<Utc>) -> bool {
        t >= self.valid_from && self.valid_to.is_none_or(|end| t < end)
    }
}

/// A device in the registry.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DeviceEntry {
    /// Set when the device was retired.
    pub retired_at: Option<DateTime<Utc>>,
    /// Enrolment periods, any order.
    pub enrolments: Vec<Enrolment>,
}

/// Why a device's reading cannot be attributed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attribution {
    /// The device is not registered.
    UnknownDevice,
    /// The device was retired before the reading.
    Retired,
    /// No enrolment covers the reading time.
    NotEnrolled,
}

/// A consistent snapshot of the registry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrySnapshot {
    /// Devices by id.
    pub devices: HashMap<String, DeviceEntry>,
    /// Active patient ids.
    pub patients: HashSet<String>,
}

impl RegistrySnapshot {
    /// The patient `device` was enrolled to at `t`.
    pub fn patient_for(&self, device: &DeviceId, t: DateTime<Utc>) -> Result<&PatientId, Attribution> {
        let d = self.devices.get(device.as_str()).ok_or(Attribution::UnknownDevice)?;
        if d.retired_at.is_some_and(|r| t >= r) {
            return Err(Attribution::Retired);
        }
        d.enrolments.iter().find(|e| e.covers(t)).map(|e| &e.patient_id).ok_or(Attribution::NotEnrolled)
    }

    /// True if the device is registered.
    pub fn has_device(&self, device: &DeviceId) -> bool {
        self.devices.contains_key(device.as_str())
    }

    /// True if the patient is registered and active.
    pub fn has_patient(&self, patient: &PatientId) -> bool {
        self.patients.contains(patient.as_str())
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
                    },
                    Enrolment {
                        patient_id: PatientId::new("b").unwrap(),
                        valid_from: t("2026-03-01T00:00:00Z"),
                        valid_to: None,
                    },
                ],
            },
        );
        assert_eq!(r.patient_for(&dev, t("2026-02-28T23:59:59Z")).unwrap().as_str(), "a");
        assert_eq!(r.patient_for(&dev, t("2026-03-01T00:00:00Z")).unwrap().as_str(), "b");
        assert_eq!(r.patient_for(&dev, t("2025-12-31T00:00:00Z")), Err(Attribution::NotEnrolled));
        assert_eq!(r.patient_for(&dev, t("2026-06-01T00:00:00Z")), Err(Attribution::Retired));
        assert_eq!(
            r.patient_for(&DeviceId::new("x").unwrap(), t("2026-03-01T00:00:00Z")),
            Err(Attribution::UnknownDevice)
        );
    }
}
