//! Parsing of the v1 MQTT topics.

use vitalwatch_schemas::{DeviceId, PatientId};

use crate::reject::{Reason, Rejection};

/// A payload format (the last topic segment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Canonical vitalwatch JSON.
    Json,
    /// SenML JSON (RFC 8428).
    Senml,
    /// One FHIR R4 Observation or a Bundle of them, JSON.
    Fhir,
    /// Protobuf `vitalwatch.v1.ReadingBatch`.
    Proto,
}

impl Format {
    /// Parses a topic segment.
    pub fn parse(s: &str) -> Option<Format> {
        Some(match s {
            "json" => Format::Json,
            "senml" => Format::Senml,
            "fhir" => Format::Fhir,
            "proto" => Format::Proto,
            _ => return None,
        })
    }

    /// The topic segment.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Senml => "senml",
            Format::Fhir => "fhir",
            Format::Proto => "proto",
        }
    }

    /// Every format.
    pub const ALL: [Format; 4] = [Format::Json, Format::Senml, Format::Fhir, Format::Proto];
}

/// What a topic addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topic {
    /// `vitalwatch/v1/devices/{device_id}/readings/{format}`
    DeviceReadings {
        /// Device.
        device: DeviceId,
        /// Payload format.
        format: Format,
    },
    /// `vitalwatch/v1/patients/{patient_id}/manual/{format}`
    Manual {
        /// Patient.
        patient: PatientId,
        /// Payload format.
        format: Format,
    },
    /// `vitalwatch/v1/devices/{device_id}/status`
    DeviceStatus {
        /// Device.
        device: DeviceId,
    },
}

/// Parses a topic. On error, returns the rejection and, when the sender could
/// be identified, the topic to reply on.
pub fn parse(topic: &str) -> Result<Topic, (Rejection, Option<String>)> {
    let mut parts = topic.split('/');
    let (Some("vitalwatch"), Some("v1"), Some(kind), Some(id)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err((Rejection::message(Reason::UnknownTopic, "not a vitalwatch/v1 topic"), None));
    };
    let rest: [Option<&str>; 3] = [parts.next(), parts.next(), parts.next()];
    match kind {
        "devices" => {
            let device = DeviceId::new(id)
                .map_err(|e| (Rejection::message(Reason::InvalidIdentifier, format!("device id: {e}")), None))?;
            // The reply topic is only built on error (it costs an allocation).
            let reply = |d: &DeviceId| Some(vitalwatch_schemas::topics::device_rejected_topic(d.as_str()));
            match rest {
                [Some("readings"), Some(fmt), None] => match Format::parse(fmt) {
                    Some(format) => Ok(Topic::DeviceReadings { device, format }),
                    None => Err((unsupported(fmt), reply(&device))),
                },
                [Some("status"), None, None] => Ok(Topic::DeviceStatus { device }),
                _ => Err((Rejection::message(Reason::UnknownTopic, "unknown device topic"), reply(&device))),
            }
        }
        "patients" => {
            let patient = PatientId::new(id)
                .map_err(|e| (Rejection::message(Reason::InvalidIdentifier, format!("patient id: {e}")), None))?;
            let reply = |p: &PatientId| Some(vitalwatch_schemas::topics::patient_rejected_topic(p.as_str()));
            match rest {
                [Some("manual"), Some(fmt), None] => match Format::parse(fmt) {
                    Some(format) => Ok(Topic::Manual { patient, format }),
                    None => Err((unsupported(fmt), reply(&patient))),
                },
                _ => Err((Rejection::message(Reason::UnknownTopic, "unknown patient topic"), reply(&patient))),
            }
        }
        _ => Err((Rejection::message(Reason::UnknownTopic, "not a vitalwatch/v1 topic"), None)),
    }
}

fn unsupported(fmt: &str) -> Rejection {
    let shown: String = fmt.chars().take(32).collect();
    Rejection::message(Reason::UnsupportedFormat, format!("format {shown:?} is not one of json, senml, fhir, proto"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_topic_kind() {
        assert_eq!(
            parse("vitalwatch/v1/devices/cuff-1/readings/senml").unwrap(),
            Topic::DeviceReadings { device: DeviceId::new("cuff-1").unwrap(), format: Format::Senml }
        );
        assert_eq!(
            parse("vitalwatch/v1/patients/p-9/manual/json").unwrap(),
            Topic::Manual { patient: PatientId::new("p-9").unwrap(), format: Format::Json }
        );
        assert_eq!(
            parse("vitalwatch/v1/devices/d/status").unwrap(),
            Topic::DeviceStatus { device: DeviceId::new("d").unwrap() }
        );
    }

    #[test]
    fn rejects_bad_topics_with_reply_where_possible() {
        let (r, reply) = parse("vitalwatch/v1/devices/d1/readings/xml").unwrap_err();
        assert_eq!(r.reason, Reason::UnsupportedFormat);
        assert_eq!(reply.as_deref(), Some("vitalwatch/v1/devices/d1/rejected"));
        let (r, reply) = parse("other/v1/devices/d1/readings/json").unwrap_err();
        assert_eq!(r.reason, Reason::UnknownTopic);
        assert!(reply.is_none());
        let (r, _) = parse("vitalwatch/v1/devices/bad id/readings/json").unwrap_err();
        assert_eq!(r.reason, Reason::InvalidIdentifier);
        let (r, reply) = parse("vitalwatch/v1/patients/p1/other/json").unwrap_err();
        assert_eq!(r.reason, Reason::UnknownTopic);
        assert!(reply.is_some());
        assert!(parse("").is_err());
        assert!(parse("vitalwatch/v1").is_err());
    }
}
