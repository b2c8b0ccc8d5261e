//! The attack suite of issue #13: starts the real `vitalwatch` binaries (and real Mosquitto,
//! PostgreSQL) and tries what an attacker on the same network would. Every attempt must be
//! refused and leave the database unchanged. One module per way in; the README's security table
//! lists each attack and its result.
//!
//! Run alone: `cargo nextest run -p vitalwatch --test integration security::`.

mod admin;
use crate::common;
mod mqtt;
mod secrets;
mod sms;
mod transport;
