//! Devices: list, register, enrol (move to another patient), unenrol, retire.
//! Operators only: the device fleet is an operations task.

use chrono::{DateTime, Utc};
use serde_json::json;
use vitalwatch_schemas::DeviceId;
use vitalwatch_schemas::registry::RegistrySnapshot;

use vitalwatch_platform::store::registry;

use super::{AdminService, patient_id, unknown_patient};
use crate::actor::Actor;
use crate::error::AdminError;
use crate::model::{At, Backfill, Created, DevicePage, DeviceView, Enrol, EnrolmentView, NewDevice, PageQuery};
use crate::policy::Operation;

/// Longest backfill grant, hours.
pub const MAX_BACKFILL_HOURS: u32 = 72;

fn device_id(id: &str) -> Result<DeviceId, AdminError> {
    DeviceId::new(id.to_owned()).map_err(AdminError::invalid)
}

/// The patient the device is enrolled to at `t`, if any.
fn enrolled_at(snapshot: &RegistrySnapshot, device: &DeviceId, t: DateTime<Utc>) -> Option<String> {
    snapshot
        .devices
        .get(device.as_str())
        .and_then(|d| d.enrolments.iter().find(|e| e.covers(t)))
        .map(|e| e.patient_id.to_string())
}

impl AdminService {
    /// Devices by id with their enrolments, one page.
    pub async fn list_devices(&self, actor: &Actor, q: &PageQuery) -> Result<DevicePage, AdminError> {
        self.allow(actor, Operation::ReadDevices)?;
        let limit = self.limit(q.limit) as usize;
        let snapshot = self.registry.registry().await?;
        let mut ids: Vec<&String> =
            snapshot.devices.keys().filter(|id| q.after.as_ref().is_none_or(|a| *id > a)).collect();
        ids.sort();
        let more = ids.len() > limit;
        ids.truncate(limit);
        let items: Vec<DeviceView> = ids
            .into_iter()
            .map(|id| {
                let d = &snapshot.devices[id];
                let mut enrolments: Vec<EnrolmentView> = d
                    .enrolments
                    .iter()
                    .map(|e| EnrolmentView {
                        patient_id: e.patient_id.to_string(),
                        valid_from: e.valid_from,
                        valid_to: e.valid_to,
                    })
                    .collect();
                enrolments.sort_by_key(|e| e.valid_from);
                DeviceView { id: id.clone(), retired_at: d.retired_at, enrolments }
            })
            .collect();
        let next = if more { items.last().map(|d| d.id.clone()) } else { None };
        Ok(DevicePage { items, next })
    }

    /// Registers a device (idempotent).
    pub async fn add_device(&self, actor: &Actor, input: &NewDevice) -> Result<Created, AdminError> {
        self.allow(actor, Operation::ManageDevices)?;
        let d = device_id(&input.id)?;
        if input.kind.is_empty() || input.kind.len() > 64 {
            return Err(AdminError::Invalid("kind must be 1 to 64 characters".into()));
        }
        let created = self
            .audited(async |c| {
                let created = registry::add_device(c, &d, &input.kind).await.map_err(AdminError::conflict)?;
                let entry =
                    self.entry(actor, "device.add", ("device", d.as_str()), None, json!({ "kind": input.kind }));
                Ok((created, created.then_some(entry)))
            })
            .await?;
        Ok(Created { id: d.to_string(), created })
    }

    /// Enrols a device to a patient from `from` (default now); an open
    /// enrolment to another patient ends then (a move).
    pub async fn enrol_device(&self, actor: &Actor, device: &str, input: &Enrol) -> Result<DateTime<Utc>, AdminError> {
        self.allow(actor, Operation::ManageDevices)?;
        let (d, p) = (device_id(device)?, patient_id(&input.patient)?);
        let from = input.from.unwrap_or_else(Utc::now);
        let snapshot = self.registry.registry().await?;
        if !snapshot.devices.contains_key(d.as_str()) {
            return Err(AdminError::NotFound(format!("unknown device {d}")));
        }
        if !snapshot.patients.contains(p.as_str()) {
            return Err(unknown_patient(p.as_str()));
        }
        let previous = enrolled_at(&snapshot, &d, from);
        let details = json!({ "from": from, "moved_from": previous });
        let entry = self.entry(actor, "device.enrol", ("device", d.as_str()), Some(p.as_str()), details);
        self.audited(async |c| Ok((registry::enrol(c, &d, &p, from).await?, Some(entry)))).await?;
        Ok(from)
    }

    /// Ends a device's open enrolment at `at` (default now).
    pub async fn unenrol_device(&self, actor: &Actor, device: &str, input: &At) -> Result<(), AdminError> {
        let (d, at, previous) = self.device_change(actor, device, input).await?;
        let entry =
            self.entry(actor, "device.unenrol", ("device", d.as_str()), previous.as_deref(), json!({ "at": at }));
        self.audited(async |c| Ok((registry::unenrol(c, &d, at).await?, Some(entry)))).await
    }

    /// Retires a device at `at` (default now): its readings are rejected from then on.
    pub async fn retire_device(&self, actor: &Actor, device: &str, input: &At) -> Result<(), AdminError> {
        let (d, at, previous) = self.device_change(actor, device, input).await?;
        let entry =
            self.entry(actor, "device.retire", ("device", d.as_str()), previous.as_deref(), json!({ "at": at }));
        self.audited(async |c| Ok((registry::retire_device(c, &d, at).await?, Some(entry)))).await
    }

    /// Grants a bounded backfill window: for `input.hours` hours, the device
    /// may file readings of its ended enrolment to `input.patient` (readings
    /// stored on it before it was moved or unenrolled). Recorded in the audit
    /// trail as `device.backfill`. Returns the end of the grant.
    pub async fn grant_backfill(
        &self,
        actor: &Actor,
        device: &str,
        input: &Backfill,
    ) -> Result<DateTime<Utc>, AdminError> {
        self.allow(actor, Operation::ManageDevices)?;
        let (d, p) = (device_id(device)?, patient_id(&input.patient)?);
        if !(1..=MAX_BACKFILL_HOURS).contains(&input.hours) {
            return Err(AdminError::Invalid(format!("hours must be 1 to {MAX_BACKFILL_HOURS}")));
        }
        let reason = input.reason.trim();
        if reason.is_empty() || reason.chars().count() > 200 || reason.chars().any(char::is_control) {
            return Err(AdminError::Invalid("reason must be 1 to 200 printable characters".into()));
        }
        let until = Utc::now() + chrono::Duration::hours(i64::from(input.hours));
        let details = json!({ "until": until, "hours": input.hours, "reason": reason });
        let entry = self.entry(actor, "device.backfill", ("device", d.as_str()), Some(p.as_str()), details);
        self.audited(async |c| Ok((registry::grant_backfill(c, &d, &p, until, reason).await?, Some(entry)))).await?;
        Ok(until)
    }

    /// Checks a change to a known device at `at` (default now); returns the
    /// device, the time and the patient it was enrolled to then.
    async fn device_change(
        &self,
        actor: &Actor,
        device: &str,
        input: &At,
    ) -> Result<(DeviceId, DateTime<Utc>, Option<String>), AdminError> {
        self.allow(actor, Operation::ManageDevices)?;
        let d = device_id(device)?;
        let at = input.at.unwrap_or_else(Utc::now);
        let snapshot = self.registry.registry().await?;
        if !snapshot.devices.contains_key(d.as_str()) {
            return Err(AdminError::NotFound(format!("unknown device {d}")));
        }
        let previous = enrolled_at(&snapshot, &d, at);
        Ok((d, at, previous))
    }
}
