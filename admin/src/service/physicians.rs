//! The physicians' directory (alert recipients). Operators manage it; a
//! physician may read their own entry.

use chrono::NaiveTime;
use serde_json::json;
use vitalwatch_alerting::{
    Channel, ChannelPreferences, EmailAddress, PhoneNumber, Physician, PhysicianId, QuietHours, Severity, TimeZone,
};

use vitalwatch_alerting::store::tables;

use super::AdminService;
use crate::actor::Actor;
use crate::error::AdminError;
use crate::model::{PageQuery, PhysicianInput, PhysicianPage, PhysicianView};
use crate::policy::{Operation, Scope};

/// Parses channel names (`email`, `sms`).
pub fn parse_channels(list: &[String]) -> Result<Vec<Channel>, AdminError> {
    list.iter()
        .map(|c| match c.trim().to_ascii_lowercase().as_str() {
            "email" => Ok(Channel::Email),
            "sms" => Ok(Channel::Sms),
            other => Err(AdminError::Invalid(format!("unknown channel {other:?} (expected email or sms)"))),
        })
        .collect()
}

/// Parses quiet hours like `22:00-07:00`.
pub fn parse_quiet_hours(s: &str) -> Result<QuietHours, AdminError> {
    let (a, b) =
        s.split_once('-').ok_or_else(|| AdminError::Invalid("quiet hours must look like 22:00-07:00".into()))?;
    let t = |x: &str| {
        NaiveTime::parse_from_str(x.trim(), "%H:%M").map_err(|_| AdminError::Invalid(format!("invalid time {x:?}")))
    };
    Ok(QuietHours::new(t(a)?, t(b)?))
}

/// The quiet hours of `input`, with the severity that passes them.
fn quiet_hours(input: &PhysicianInput) -> Result<Option<QuietHours>, AdminError> {
    let Some(mut q) = input.quiet_hours.as_deref().map(parse_quiet_hours).transpose()? else {
        if input.quiet_hours_bypass.is_some() {
            return Err(AdminError::Invalid("quiet_hours_bypass needs quiet_hours".into()));
        }
        return Ok(None);
    };
    if let Some(b) = input.quiet_hours_bypass.as_deref() {
        q.bypass_from = match Severity::parse(b) {
            Some(s) if s > Severity::Info => s,
            _ => {
                return Err(AdminError::Invalid(format!(
                    "quiet_hours_bypass {:?}: expected low, medium, high or critical",
                    b.chars().take(20).collect::<String>()
                )));
            }
        };
    }
    Ok(Some(q))
}

/// Builds and validates a physician from its input.
pub fn build_physician(id: &str, input: &PhysicianInput) -> Result<Physician, AdminError> {
    let mobile = input.mobile.clone().map(PhoneNumber::new).transpose().map_err(AdminError::invalid)?;
    let urgent = |given: &Option<Vec<String>>| -> Result<Vec<Channel>, AdminError> {
        match given {
            Some(g) if !g.is_empty() => parse_channels(g),
            _ => Ok(if mobile.is_some() { vec![Channel::Email, Channel::Sms] } else { vec![Channel::Email] }),
        }
    };
    let plain = |given: &Option<Vec<String>>| match given {
        Some(g) if !g.is_empty() => parse_channels(g),
        _ => Ok(vec![Channel::Email]),
    };
    let c = &input.channels;
    let p = Physician {
        id: PhysicianId::new(id.to_owned()).map_err(AdminError::invalid)?,
        name: input.name.clone(),
        email: EmailAddress::new(input.email.clone()).map_err(AdminError::invalid)?,
        time_zone: TimeZone::new(input.time_zone.as_deref().unwrap_or("Europe/Paris")).map_err(AdminError::invalid)?,
        quiet_hours: quiet_hours(input)?,
        channels: ChannelPreferences {
            low: plain(&c.low)?,
            medium: plain(&c.medium)?,
            high: urgent(&c.high)?,
            critical: urgent(&c.critical)?,
        },
        mobile,
        hourly_cap: input.hourly_cap,
        language: input
            .language
            .as_deref()
            .map(vitalwatch_alerting::Language::parse)
            .transpose()
            .map_err(AdminError::invalid)?,
    };
    p.validate().map_err(AdminError::invalid)?;
    Ok(p)
}

fn view(p: &Physician) -> PhysicianView {
    let mut entry = serde_json::to_value(p).unwrap_or_default();
    if let Some(o) = entry.as_object_mut() {
        o.remove("id");
    }
    PhysicianView { id: p.id.to_string(), entry }
}

impl AdminService {
    /// The directory by id, one page. Operators only.
    pub async fn list_physicians(&self, actor: &Actor, q: &PageQuery) -> Result<PhysicianPage, AdminError> {
        self.allow(actor, Operation::ListPhysicians)?;
        let limit = self.limit(q.limit) as usize;
        let mut all: Vec<Physician> = self
            .alerting
            .physicians()
            .await?
            .into_iter()
            .filter(|p| q.after.as_deref().is_none_or(|a| p.id.as_str() > a))
            .collect();
        all.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
        let more = all.len() > limit;
        all.truncate(limit);
        let items: Vec<PhysicianView> = all.iter().map(view).collect();
        let next = if more { items.last().map(|p| p.id.clone()) } else { None };
        Ok(PhysicianPage { items, next })
    }

    /// One physician (a physician: only themselves).
    pub async fn physician(&self, actor: &Actor, id: &str) -> Result<PhysicianView, AdminError> {
        if self.allow(actor, Operation::ReadPhysician)? == Scope::OwnEntry
            && actor.physician_id().is_none_or(|me| me.as_str() != id)
        {
            return Err(AdminError::Forbidden("physicians may only read their own entry".into()));
        }
        let all = self.alerting.physicians().await?;
        all.iter()
            .find(|p| p.id.as_str() == id)
            .map(view)
            .ok_or_else(|| AdminError::NotFound(format!("unknown physician {id}")))
    }

    /// Creates or replaces a physician. Operators only.
    pub async fn upsert_physician(
        &self,
        actor: &Actor,
        id: &str,
        input: &PhysicianInput,
    ) -> Result<PhysicianView, AdminError> {
        self.allow(actor, Operation::ManagePhysicians)?;
        let p = build_physician(id, input)?;
        let entry = self.entry(actor, "physician.upsert", ("physician", p.id.as_str()), None, json!({}));
        self.audited(async |c| Ok((tables::upsert_physician(c, &p).await?, Some(entry)))).await?;
        Ok(view(&p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(quiet: Option<&str>, bypass: Option<&str>) -> PhysicianInput {
        serde_json::from_value(json!({
            "name": "Dr Martin",
            "email": "martin@hospital.example",
            "quiet_hours": quiet,
            "quiet_hours_bypass": bypass,
        }))
        .unwrap()
    }

    #[test]
    fn quiet_hours_let_high_through_by_default_and_the_physician_chooses() {
        let p = build_physician("dr-martin", &input(Some("22:00-07:00"), None)).unwrap();
        assert_eq!(p.quiet_hours.map(|q| q.bypass_from), Some(Severity::High));
        let p = build_physician("dr-martin", &input(Some("22:00-07:00"), Some("critical"))).unwrap();
        let q = p.quiet_hours.unwrap();
        assert!(!q.bypasses(Severity::High) && q.bypasses(Severity::Critical));
        for bad in ["info", "urgent"] {
            let e = build_physician("dr-martin", &input(Some("22:00-07:00"), Some(bad))).unwrap_err();
            assert!(e.to_string().contains("quiet_hours_bypass"), "{e}");
        }
        assert!(build_physician("dr-martin", &input(None, Some("critical"))).is_err());
    }
}
