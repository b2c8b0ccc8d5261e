//! MQTT topic and Kafka topic contracts (version 1). Other tools depend on these
//! names: change them only with a new version.

/// Prefix of every vitalwatch MQTT topic.
pub const MQTT_PREFIX: &str = "vitalwatch/v1";
/// Subscription filter for device readings.
pub const MQTT_DEVICE_READINGS_FILTER: &str = "vitalwatch/v1/devices/+/readings/+";
/// Subscription filter for manual entries from the patient app.
pub const MQTT_MANUAL_FILTER: &str = "vitalwatch/v1/patients/+/manual/+";
/// Subscription filter for device status and heartbeats.
pub const MQTT_DEVICE_STATUS_FILTER: &str = "vitalwatch/v1/devices/+/status";
/// Default Kafka topic for normalized observations (key = patient id).
pub const KAFKA_OBSERVATIONS: &str = "vitalwatch.observations.v1";
/// Default Kafka topic for dead letters.
pub const KAFKA_REJECTED: &str = "vitalwatch.rejected.v1";
/// Default Kafka topic for consumer dead letters: bus records a consumer role
/// could never process ([`crate::proto::DeadLetter`]).
pub const KAFKA_DEAD_LETTER: &str = "vitalwatch.dead-letter.v1";
/// Default Kafka topic for device status events (key = device id).
pub const KAFKA_DEVICE_STATUS: &str = "vitalwatch.device-status.v1";

/// The topic on which a device is told why its message was rejected.
pub fn device_rejected_topic(device_id: &str) -> String {
    format!("{MQTT_PREFIX}/devices/{device_id}/rejected")
}

/// The topic on which a patient app is told why its message was rejected.
pub fn patient_rejected_topic(patient_id: &str) -> String {
    format!("{MQTT_PREFIX}/patients/{patient_id}/rejected")
}

/// Topic for a device reading in `format`.
pub fn device_readings_topic(device_id: &str, format: &str) -> String {
    format!("{MQTT_PREFIX}/devices/{device_id}/readings/{format}")
}

/// Topic for a manual entry in `format`.
pub fn patient_manual_topic(patient_id: &str, format: &str) -> String {
    format!("{MQTT_PREFIX}/patients/{patient_id}/manual/{format}")
}

/// Topic for a device status message.
pub fn device_status_topic(device_id: &str) -> String {
    format!("{MQTT_PREFIX}/devices/{device_id}/status")
}
