//! The FHIR R4 read API (`/fhir/r4`, JSON `application/fhir+json`) and the
//! patient export, in four parts:
//!
//! - [`map`]: the PURE mapping core, stored rows -> FHIR JSON (Patient,
//!   Device, Observation with the blood pressure panel, DetectedIssue,
//!   Bundle, OperationOutcome, CapabilityStatement);
//! - [`search`]: pure parsing of search parameters and keyset cursors;
//! - [`csv`]: the pure CSV export;
//! - [`store`]: the SQL (observations in FHIR order, devices with
//!   enrolments, the read-access log);
//! - [`http`]: the axum handlers (authentication and scoping are the admin
//!   API's; the operations are in [`crate::service::fhir`]).
//!
//! See `docs/fhir.md` for the endpoints, the mapping table and the choices.

pub mod csv;
pub mod http;
pub mod map;
pub mod search;
pub mod store;
