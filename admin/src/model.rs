//! Request and response bodies of the admin operations (JSON). Inputs reject
//! unknown fields. The OpenAPI schemas are derived from these types.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Paging of a list: `after` is the `next` cursor of the previous page.
#[derive(Debug, Clone, Default, Deserialize, IntoParams, ToSchema)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Cursor: the `next` value of the previous page.
    pub after: Option<String>,
    /// Page size (default 50, capped by `api.max_page_size`).
    pub limit: Option<u32>,
}

macro_rules! page {
    ($name:ident, $item:ty, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
        pub struct $name {
            /// The items of this page.
            pub items: Vec<$item>,
            /// Cursor of the next page (`after=`), absent on the last page.
            pub next: Option<String>,
        }
    };
}

page!(PatientPage, PatientView, "A page of patients.");
page!(DevicePage, DeviceView, "A page of devices.");
page!(AlertPage, AlertView, "A page of alert episodes, newest first.");
page!(AuditPage, AuditView, "A page of admin audit entries, newest first.");
page!(EpisodeAuditPage, EpisodeAuditView, "A page of episode audit records, newest first.");
page!(PhysicianPage, PhysicianView, "A page of physicians.");

/// A patient (pseudonymous id only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PatientView {
    /// Pseudonymous id.
    pub id: String,
    /// `active` or `discharged`.
    pub status: String,
    /// Registration time.
    pub created_at: DateTime<Utc>,
}

/// A patient with their care team, rules and enrolled devices.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PatientDetail {
    /// The patient.
    #[serde(flatten)]
    pub patient: PatientView,
    /// Care team (responsible, deputies, escalation policy), if set.
    #[schema(value_type = Option<Object>)]
    pub care_team: Option<serde_json::Value>,
    /// Care program and thresholds (`PatientRules`), if set.
    #[schema(value_type = Option<Object>)]
    pub rules: Option<serde_json::Value>,
    /// Devices enrolled now.
    pub devices: Vec<String>,
}

/// Register a patient.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPatient {
    /// Pseudonymous id (1-64 of `A-Z a-z 0-9 _ . -`); never a name or national number.
    pub id: String,
}

/// Result of a registration.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Created {
    /// The id.
    pub id: String,
    /// False when it already existed (registration is idempotent).
    pub created: bool,
}

/// A device with its enrolments.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeviceView {
    /// Device id.
    pub id: String,
    /// Retirement time, if retired.
    pub retired_at: Option<DateTime<Utc>>,
    /// Enrolments, oldest first.
    pub enrolments: Vec<EnrolmentView>,
}

/// One enrolment period.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EnrolmentView {
    /// Patient.
    pub patient_id: String,
    /// Start.
    pub valid_from: DateTime<Utc>,
    /// End (absent: still enrolled).
    pub valid_to: Option<DateTime<Utc>>,
}

/// Register a device.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDevice {
    /// Device id.
    pub id: String,
    /// Kind (scale, bp_cuff, oximeter, glucometer, thermometer, generic...).
    #[serde(default = "generic")]
    pub kind: String,
}

fn generic() -> String {
    "generic".into()
}

/// Enrol a device to a patient (moving it: its open enrolment ends then).
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Enrol {
    /// Patient id.
    pub patient: String,
    /// Start (default: now).
    pub from: Option<DateTime<Utc>>,
}

/// A backfill grant: lets a moved device file the readings it stored for its
/// previous patient, for a bounded time.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Backfill {
    /// The previous patient (the device must have an ended enrolment to them).
    pub patient: String,
    /// How long the grant stays open, hours (1 to 72).
    pub hours: u32,
    /// Why (recorded in the audit trail; no patient data).
    pub reason: String,
}

/// A time for unenrol / retire.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct At {
    /// When (default: now).
    pub at: Option<DateTime<Utc>>,
}

/// A patient's stored rules.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RulesView {
    /// Patient.
    pub patient_id: String,
    /// `PatientRules`: program, thresholds, changes, cadence, ...
    #[schema(value_type = Object)]
    pub rules: serde_json::Value,
    /// Effective rule ids.
    pub effective: Vec<String>,
    /// Last change (absent for a change just made).
    pub updated_at: Option<DateTime<Utc>>,
    /// Version of these rules (`patient_rules_versions`; absent when none is recorded).
    #[serde(default)]
    pub version: Option<i32>,
}

/// Channels per severity (`email`, `sms`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelsInput {
    /// LOW alerts (default email).
    pub low: Option<Vec<String>>,
    /// MEDIUM alerts (default email).
    pub medium: Option<Vec<String>>,
    /// HIGH alerts (default email and sms with a mobile).
    pub high: Option<Vec<String>>,
    /// CRITICAL alerts (default email and sms with a mobile).
    pub critical: Option<Vec<String>>,
}

/// Create or replace a physician.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PhysicianInput {
    /// Display name.
    pub name: String,
    /// Email address.
    pub email: String,
    /// Mobile, E.164.
    pub mobile: Option<String>,
    /// IANA time zone (default Europe/Paris).
    pub time_zone: Option<String>,
    /// Language of their notifications: `fr` or `en` (default: `alerting.default_language`).
    #[serde(default)]
    pub language: Option<String>,
    /// Quiet hours, local time, e.g. `22:00-07:00`.
    pub quiet_hours: Option<String>,
    /// Lowest severity delivered during quiet hours: `high` (default: HIGH
    /// and CRITICAL reach the physician at night) or `critical` (only
    /// CRITICAL); `low` or `medium` let more through.
    #[serde(default)]
    pub quiet_hours_bypass: Option<String>,
    /// Channels per severity.
    #[serde(default)]
    pub channels: ChannelsInput,
    /// Pages per hour below HIGH at most.
    pub hourly_cap: Option<u32>,
}

/// A physician (alert recipient).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PhysicianView {
    /// Id.
    pub id: String,
    /// The directory entry (name, email, mobile, time zone, quiet hours, channels, cap).
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub entry: serde_json::Value,
}

/// Set a patient's care team.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CareTeamInput {
    /// Responsible physician.
    pub responsible: String,
    /// Deputies in rank order.
    #[serde(default)]
    pub deputies: Vec<String>,
    /// Escalation policy (default policy when absent).
    #[schema(value_type = Option<Object>)]
    pub policy: Option<serde_json::Value>,
    /// Nurse accounts of the team (they read and triage the patient; never
    /// paged by the escalation, never change thresholds). Absent: unchanged.
    #[serde(default)]
    pub nurses: Option<Vec<String>>,
}

/// Filters of the alert list.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AlertQuery {
    /// Only this patient.
    pub patient: Option<String>,
    /// `open`, `resolved` or `closed`.
    pub status: Option<String>,
    /// `info`, `low`, `medium`, `high`, `critical`.
    pub severity: Option<String>,
    /// Cursor.
    pub after: Option<String>,
    /// Page size.
    pub limit: Option<u32>,
}

/// An alert episode (rules engine view).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AlertView {
    /// Episode id.
    pub episode_id: String,
    /// Patient.
    pub patient_id: String,
    /// Rule id.
    pub rule_id: String,
    /// Rule kind.
    pub rule_kind: String,
    /// Care program.
    pub program: String,
    /// LOINC code.
    pub code: String,
    /// Severity.
    pub severity: String,
    /// `open`, `resolved` or `closed`.
    pub status: String,
    /// Opening reading time.
    pub opened_at: DateTime<Utc>,
    /// Last event time.
    pub last_event_at: DateTime<Utc>,
    /// Resolving reading time.
    pub resolved_at: Option<DateTime<Utc>>,
    /// Summary of the last event.
    pub summary: String,
    /// The version of the patient's rules that opened the episode
    /// (`GET /v1/patients/{id}/rules/versions`); 0 = the program defaults (no
    /// rules stored for the patient); absent for episodes opened before rules
    /// versions were named in alerts.
    #[serde(default)]
    pub rules_version: Option<u32>,
}

/// An alert episode with its evidence and its alerting state (acknowledgments, snooze).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AlertDetail {
    /// The episode as the rules engine recorded it (absent if only alerting knows it).
    pub alert: Option<AlertView>,
    /// Evidence of the last event (readings, threshold, baseline).
    #[schema(value_type = Option<Object>)]
    pub evidence: Option<serde_json::Value>,
    /// Alerting state: severity, acknowledgments, snooze, resolution.
    #[schema(value_type = Option<Object>)]
    pub alerting: Option<serde_json::Value>,
}

/// Acknowledge or close an episode.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertAction {
    /// Physician acting. Physicians: themselves (default). Operators: required.
    pub by: Option<String>,
    /// Close only: the outcome (`patient_called`, `treatment_adjusted`,
    /// `consultation_scheduled`, `sent_to_emergency`, `no_action_needed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// Close only: a free-text note (needs an outcome), stored with the outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Snooze an episode.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SnoozeInput {
    /// Physician acting. Physicians: themselves (default). Operators: required.
    pub by: Option<String>,
    /// Minutes, 1 to 1440.
    pub minutes: u32,
}

/// Outcome of an alert action.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AlertActionResult {
    /// Episode.
    pub episode_id: String,
    /// What was done: `acknowledged`, `snoozed`, `closed`.
    pub outcome: String,
    /// Snooze end.
    pub until: Option<DateTime<Utc>>,
}

/// Filters of the admin audit trail.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Who (exact).
    pub actor: Option<String>,
    /// Action (exact, e.g. `patient.add`).
    pub action: Option<String>,
    /// Target id (exact).
    pub target: Option<String>,
    /// Patient concerned.
    pub patient: Option<String>,
    /// At or after.
    pub since: Option<DateTime<Utc>>,
    /// Before.
    pub until: Option<DateTime<Utc>>,
    /// Cursor.
    pub after: Option<String>,
    /// Page size.
    pub limit: Option<u32>,
}

/// One admin change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditView {
    /// Sequence number.
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// Who (`cli:<user>`, `token:<name>`, physician id).
    pub actor: String,
    /// `operator` or `physician`.
    pub actor_role: String,
    /// What (`patient.add`, `device.enrol`, `alert.ack`, ...).
    pub action: String,
    /// Kind of target (`patient`, `device`, `physician`, `episode`, `token`).
    pub target_kind: String,
    /// Target id.
    pub target_id: String,
    /// Patient concerned, if any.
    pub patient_id: Option<String>,
    /// Non-clinical details.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

/// Filters of the episode audit trail (alerting decisions and deliveries).
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EpisodeAuditQuery {
    /// Episode.
    pub episode: Option<String>,
    /// Patient.
    pub patient: Option<String>,
    /// Entry type (`episode_opened`, `acknowledged`, `delivery_attempt`, ...).
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub entry_type: Option<String>,
    /// Cursor.
    pub after: Option<String>,
    /// Page size.
    pub limit: Option<u32>,
}

/// One episode audit record.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EpisodeAuditView {
    /// Sequence number.
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// Episode.
    pub episode_id: String,
    /// Patient.
    pub patient_id: Option<String>,
    /// Entry type.
    pub entry_type: String,
    /// The record.
    #[schema(value_type = Object)]
    pub record: serde_json::Value,
}

/// The caller.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Me {
    /// Name recorded in the audit trail.
    pub name: String,
    /// `operator` or `physician`.
    pub role: String,
    /// Physician id, for physicians.
    pub physician_id: Option<String>,
}

/// An API token (never the secret).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenView {
    /// Name.
    pub name: String,
    /// `operator` or `physician`.
    pub role: String,
    /// Physician, for physician tokens.
    pub physician_id: Option<String>,
    /// Creation.
    pub created_at: DateTime<Utc>,
    /// Who created it.
    pub created_by: String,
    /// Revocation.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Expiry: refused from then on (`token_expired`). `null` only for a row
    /// written by hand without one, which counts as expired.
    pub expires_at: Option<DateTime<Utc>>,
    /// Last authenticated use (updated at most once a minute).
    pub last_used_at: Option<DateTime<Utc>>,
}

impl TokenView {
    /// True when the token is past its expiry (or has none) at `now`.
    pub fn expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|e| e <= now)
    }
}

/// The API tokens (`GET /v1/tokens`), by name.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenList {
    /// Active, expired and revoked tokens (never their secrets).
    pub items: Vec<TokenView>,
}

/// An error body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Stable code: `unauthenticated`, `token_expired`, `forbidden`,
    /// `not_found`, `invalid`, `conflict`, `bad_request`, `payload_too_large`,
    /// `request_timeout`, `unavailable`, `internal`.
    pub error: String,
    /// Human-readable message (never internal details such as database hosts or users).
    pub message: String,
    /// For `unavailable` and `internal`: an opaque id, also logged with the details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_id: Option<String>,
}

/// Through which interface a patient's data was read (read-access log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AccessInterface {
    /// The JSON admin API (`/v1`).
    Api,
    /// The FHIR R4 API (`/fhir/r4`).
    Fhir,
    /// The clinician web workspace (`/app`).
    Web,
    /// The command line.
    Cli,
}

impl AccessInterface {
    /// The stored name (`api`, `fhir`, `web`, `cli`).
    pub fn as_str(self) -> &'static str {
        match self {
            AccessInterface::Api => "api",
            AccessInterface::Fhir => "fhir",
            AccessInterface::Web => "web",
            AccessInterface::Cli => "cli",
        }
    }
}

/// One read of a patient's data: who, when, through which interface, what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AccessLogEntry {
    /// Entry id (increasing).
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// Who: the actor's name (token name, physician id, account, `cli:user`).
    pub actor: String,
    /// The actor's role.
    pub actor_role: String,
    /// The patient whose data was read.
    pub patient_id: String,
    /// `api`, `fhir`, `web` or `cli`.
    pub interface: String,
    /// What was read (route or command; never values).
    pub what: String,
}

/// One page of a patient's read-access log, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AccessLogPage {
    /// Entries.
    pub items: Vec<AccessLogEntry>,
    /// Cursor of the next page (pass as `after`), if any.
    pub next: Option<String>,
}

/// The format of a patient export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// The FHIR `Patient/$everything` Bundle (JSON).
    Fhir,
    /// One CSV of every stored observation (with provenance) and every episode.
    Csv,
}

/// Query of `GET /v1/patients/{id}/export`.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// `fhir` or `csv`.
    pub format: ExportFormat,
}
