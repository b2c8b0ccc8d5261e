//! The OpenAPI 3.1 document, generated from the handlers and the model types.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::routes::*;
use crate::model::*;

/// The admin API's OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(title = "vitalwatch admin API", description = "Patients, devices, care programs and thresholds, physicians, \
        care teams, alerts and the audit trail. Bearer tokens: operator (everything) or physician (own patients)."),
    paths(
        me, list_patients, add_patient, get_patient, get_rules, put_rules, get_care_team, put_care_team,
        list_devices, add_device, enrol_device, unenrol_device, retire_device, grant_backfill,
        list_physicians, get_physician, put_physician,
        list_alerts, get_alert, ack_alert, snooze_alert, close_alert,
        list_audit, list_episode_audit, list_tokens,
        get_rules_versions,
        export_patient, get_access_log,
        super::ingest_routes::list_ingest_clients, super::ingest_routes::create_ingest_client,
        super::ingest_routes::revoke_ingest_client,
        super::lifecycle::include_patient, super::lifecycle::discharge_patient,
        super::lifecycle::patient_periods, super::lifecycle::erase_patient,
        activity_report,
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
