//! The clinician workspace's integration tests: the real router on a real
//! socket over SQLite and PostgreSQL, driven by real HTTP requests (and, in
//! `browser`, by a real Chromium over WebDriver).

mod support;

mod activity_report;
mod admin_pages;
mod auth;
mod journey;
mod oidc;
mod oidc_sign_in;
mod patient;
mod worklist_browser;
mod worklist_pages;
