//! # vitalwatch-testkit
//!
//! What every integration test of the workspace needs, written once: real
//! services only, no mocks.
//!
//! - [`env`]: where the services are (`scripts/services.sh` writes their
//!   addresses), and the rule that a missing service FAILS a test under
//!   `CI=true` and skips it elsewhere ([`required`]);
//! - [`db`]: a fresh, marked PostgreSQL database per test ([`fresh_database`]);
//! - [`private_pg`]: a private PostgreSQL cluster a test may stop, hang or
//!   restart ([`PrivatePostgres`]);
//! - [`mosquitto`]: a private Mosquitto broker ([`Mosquitto`]);
//! - [`smtp`]: a real SMTP server (aiosmtpd) writing each message to a file
//!   ([`SmtpSink`]);
//! - [`http`]: a real HTTP/1.1 server answering a script and recording every
//!   request ([`spawn_http_server`]), standing in for an SMS gateway or a webhook;
//! - [`wait`]: polling with a deadline ([`wait_until`]);
//! - [`client`]: a raw HTTP/1.1 client (any method, header or body);
//! - [`browser`]: a headless Chromium over WebDriver ([`Browser`]) for the web workspace;
//! - [`oidc`]: a private OpenID Connect provider, panva's oidc-provider ([`OidcProvider`]).

pub mod browser;
pub mod client;
pub mod db;
pub mod env;
pub mod http;
pub mod mosquitto;
pub mod oidc;
pub mod private_pg;
pub mod smtp;
pub mod wait;

pub use browser::{Browser, BrowserError, DESKTOP, PHONE};
pub use db::fresh_database;
pub use env::{
    free_port, in_ci, kafka, pg_url, require, require_program, required, service_var, timescale_url, unique,
};
pub use http::{Recorded, spawn_html_server, spawn_http_server};
pub use mosquitto::Mosquitto;
pub use oidc::{OidcProvider, ProviderConfig, TestClient, TestUser};
pub use private_pg::PrivatePostgres;
pub use smtp::{SmtpSink, aiosmtpd_available};
pub use wait::wait_until;
