//! The attack suite of issue #13: starts the real `vitalwatch` binaries (and real Mosquitto,
//! PostgreSQL) and tries what an attacker on the same network would. Every attempt must be
//! refused and leave the database unchanged. One module per way in; the README's security table
//! lists each attack and its result.
//!
//! Run alone: `cargo nextest run -p vitalwatch --test security`.

#[path = "security/admin.rs"]
mod admin;
mod common;
#[path = "security/mqtt.rs"]
mod mqtt;
#[path = "security/secrets.rs"]
mod secrets;
#[path = "security/sms.rs"]
mod sms;
#[path = "security/transport.rs"]
mod transport;
