//! # vitalwatch-admin
//!
//! Administration of vitalwatch behind ONE service layer, used by the CLI
//! subcommands (`vitalwatch patient|device|rules-config|physician|care-team|alert|api-token`)
//! and by the HTTP admin API (`vitalwatch api`, and inside `vitalwatch run`):
//!
//! - [`actor`]: who is acting ([`Actor`]) and the pure authorization [`policy`];
//! - [`service`]: the operations ([`AdminService`]); each takes an [`Actor`],
//!   checks it, applies the change through the stores and writes the admin audit trail;
//! - [`store`]: API tokens and the append-only admin audit (PostgreSQL, SQLite),
//!   plus the paged, scoped queries the API lists need;
//! - [`http`]: the axum router, bearer authentication and the OpenAPI document;
//! - [`model`]: the request and response bodies (JSON, OpenAPI schemas);
//! - [`token`]: generation and hashing of bearer tokens;
//! - [`report`]: the monthly activity report, pure (figures, CSV);
//! - [`account`]: user accounts of the web workspace (roles, Argon2id passwords);
//!   sessions and sign-in are in [`service::accounts`];
//! - [`fhir`]: the FHIR R4 read API (`/fhir/r4`), the patient export and the
//!   read-access log's store.

pub mod account;
pub mod actor;
pub mod error;
pub mod fhir;
pub mod http;
pub mod model;
pub mod policy;
pub mod report;
pub mod service;
pub mod settings;
pub mod store;
pub mod token;

pub use actor::{Actor, Role};
pub use error::AdminError;
pub use service::AdminService;
