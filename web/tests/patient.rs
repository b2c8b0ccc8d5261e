//! The patient page, its charts and the rules editor (issue #16), on both
//! engines, over a real socket: seeded observations show as last readings,
//! adherence and chart buckets; the thresholds are on the charts; another
//! physician's patient is a 404; a nurse reads and previews but cannot save;
//! saving makes version N+1 with author and reason and keeps version N.

use chrono::{DateTime, Duration, Utc};
use vitalwatch_admin::model::CareTeamInput;
use vitalwatch_platform::store::DeviceStatusRow;
use vitalwatch_rules_core::{PatientRules, Program};
use vitalwatch_schemas::{Code, DeviceId, Observation, ObservationId, PatientId, Source, TimeSource};

use crate::support::{App, Engine, ops};

async fn engines() -> Vec<App> {
    let mut apps = vec![App::start(Engine::Sqlite).await.expect("sqlite")];
    if let Some(pg) = App::start(Engine::Postgres).await {
        apps.push(pg);
    }
    apps
}

pub(crate) fn reading(p: &str, code: Code, t: DateTime<Utc>, v: f64, device: Option<&str>) -> Observation {
    Observation {
        id: ObservationId::compute(p, code, t.timestamp_micros()),
        patient_id: PatientId::new(p).unwrap(),
        code,
        value: v,
        time: t,
        received_at: t + Duration::seconds(5),
        source: if device.is_some() { Source::Device } else { Source::Manual },
        device_id: device.map(|d| DeviceId::new(d).unwrap()),
        time_source: TimeSource::Device,
        original_value: v,
        original_unit: code.ucum().into(),
        msg_id: None,
        trace_id: "web-test".into(),
    }
}

/// Registers `id` in the care of `responsible`, with `deputy` (the default
/// escalation policy pages a deputy; `App::patient` sets none and is refused).
async fn patient(app: &App, id: &str, responsible: &str, deputy: &str, nurses: Option<Vec<String>>) {
    app.admin.add_patient(&ops(), &vitalwatch_admin::model::NewPatient { id: id.into() }).await.unwrap();
    let team = CareTeamInput { responsible: responsible.into(), deputies: vec![deputy.into()], policy: None, nurses };
    app.admin.set_care_team(&ops(), id, &team).await.unwrap();
}

/// dr-a's patient pat-w1 (deputy dr-z) with a scale (battery 35 %), weights on 5 days
/// (the latest 81.4 kg), one blood pressure 185/95 three days ago and
/// hypertension rules (version 1). Returns the seeded observations.
async fn seed(app: &App) -> Vec<Observation> {
    app.physician("dr-a").await;
    app.physician("dr-z").await;
    patient(app, "pat-w1", "dr-a", "dr-z", None).await;
    let store = vitalwatch_platform::store::open(&app.url, 100).await.unwrap();
    let now = DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap();
    let dev = DeviceId::new("scale-w1").unwrap();
    store.add_device(&dev, "scale").await.unwrap();
    store.enrol(&dev, &PatientId::new("pat-w1").unwrap(), now - Duration::days(40)).await.unwrap();
    let status = DeviceStatusRow {
        device_id: "scale-w1".into(),
        patient_id: Some("pat-w1".into()),
        time: now - Duration::minutes(5),
        received_at: now - Duration::minutes(5),
        battery_percent: Some(35.0),
        signal_dbm: Some(-70.0),
        firmware: Some("4.2".into()),
    };
    store.upsert_device_statuses(&[status]).await.unwrap();
    let mut seeds: Vec<Observation> = (0..5)
        .map(|k| {
            let t = now - Duration::hours(1) - Duration::days(k);
            reading("pat-w1", Code::BodyWeight, t, 81.4 - k as f64 / 10.0, Some("scale-w1"))
        })
        .collect();
    seeds.push(reading("pat-w1", Code::Systolic, now - Duration::days(3), 185.0, None));
    seeds.push(reading("pat-w1", Code::Diastolic, now - Duration::days(3), 95.0, None));
    store.insert_observations(&seeds).await.unwrap();
    let rules = PatientRules::for_program(Program::Hypertension);
    app.admin.set_rules(&ops(), "pat-w1", &rules, Some("enrolment")).await.unwrap();
    seeds
}

#[tokio::test]
async fn the_patient_page_shows_last_readings_adherence_devices_and_charts_with_thresholds() {
    for app in engines().await {
        let e = app.engine;
        let seeds = seed(&app).await;
        let pw = app.account("dr-a", "physician", Some("dr-a"), "fr").await;
        let mut c = app.sign_in("dr-a", &pw).await;

        let r = c.get("/patients/pat-w1").await;
        assert_eq!(r.status, 200, "{e:?}: {}", r.body);
        // The read-access log has the page read, through the web interface.
        let log = app.admin.access_log(&ops(), "pat-w1", &Default::default()).await.unwrap();
        assert!(
            log.items.iter().any(|a| a.actor == "dr-a" && a.interface == "web" && a.what == "GET /app/patients/{id}"),
            "{e:?}: {:?}",
            log.items
        );
        let b = &r.body;
        assert!(b.contains("Dernières mesures") && b.contains("81,4 kg"), "{e:?}: the latest weight, French decimals");
        // The lifecycle section: registered without an inclusion, monitored, no period yet.
        assert!(
            b.contains("id=\"monitoring\"") && b.contains("Patient télésurveillé") && b.contains("Aucune période"),
            "{e:?}: the monitoring section"
        );
        assert!(b.contains("185 mmHg") && b.contains("95 mmHg"), "{e:?}: the blood pressure components");
        assert!(b.contains("appareil scale-w1") && b.contains("saisie manuelle"), "{e:?}: the sources");
        // Adherence: the days with readings this month in the patient's time zone.
        let tz = chrono_tz::Europe::Paris;
        let buckets: Vec<i64> = seeds.iter().map(|o| o.time.timestamp().div_euclid(900)).collect();
        let a = vitalwatch_admin::service::patient_view::adherence(Utc::now(), tz, &buckets);
        let line = format!(
            "<strong>{}</strong> jours avec au moins une mesure sur <strong>{}</strong>",
            a.days_with_data, a.days_elapsed
        );
        assert!(b.contains(&line), "{e:?}: {line} in {b}");
        assert!(b.contains("35 %") && b.contains("4.2"), "{e:?}: the device's battery and firmware");
        assert!(b.contains("Hypertension artérielle") && b.contains("enrolment"), "{e:?}: program and history");
        // Two charts (weight; blood pressure with both components), inline and accessible.
        assert_eq!(b.matches("role=\"img\"").count(), 2, "{e:?}");
        assert!(b.contains("<title id=\"chart-29463-7-title\">Poids (kg), 30 jours</title>"), "{e:?}");

        // The chart alone: one bucket per day with readings, the crisis thresholds on both codes.
        let svg = c.get("/patients/pat-w1/chart/29463-7.svg?range=30d").await;
        assert_eq!(svg.status, 200, "{e:?}");
        assert_eq!(svg.header("content-type"), Some("image/svg+xml; charset=utf-8"));
        assert_eq!(svg.body.matches("class=\"bucket\"").count(), 5, "{e:?}: {}", svg.body);
        let bp = c.get("/patients/pat-w1/chart/8480-6.svg?range=7d").await;
        assert_eq!(bp.status, 200);
        assert_eq!(bp.body.matches("class=\"bucket\"").count(), 2, "{e:?}: systolic and diastolic hours");
        assert!(bp.body.contains("data-value=\"180\"") && bp.body.contains("data-value=\"120\""), "{}", bp.body);
        assert!(bp.body.contains("Pression artérielle (mmHg), 7 jours"), "{e:?}");
        assert_eq!(c.get("/patients/pat-w1/chart/0000-0.svg").await.status, 404, "{e:?}: unknown code");
        assert_eq!(c.get("/patients/pat-w1/chart/29463-7.png").await.status, 404, "{e:?}");
    }
}

#[tokio::test]
async fn another_physicians_patient_is_not_found_and_a_nurse_previews_but_cannot_save() {
    for app in engines().await {
        let e = app.engine;
        seed(&app).await;
        app.physician("dr-b").await;
        patient(&app, "pat-w2", "dr-b", "dr-z", None).await;
        let nurse_pw = app.account("ide-n", "nurse", None, "fr").await;
        let team = CareTeamInput {
            responsible: "dr-a".into(),
            deputies: vec!["dr-z".into()],
            policy: None,
            nurses: Some(vec!["ide-n".into()]),
        };
        app.admin.set_care_team(&ops(), "pat-w1", &team).await.unwrap();

        // dr-b: every page and action on dr-a's patient is the same 404 as an unknown patient.
        let pw = app.account("dr-b", "physician", Some("dr-b"), "en").await;
        let mut b = app.sign_in("dr-b", &pw).await;
        assert_eq!(b.get("/patients/pat-w2/rules").await.status, 200, "{e:?}: their own patient");
        for path in
            ["/patients/pat-w1", "/patients/pat-w1/chart/29463-7.svg", "/patients/pat-w1/rules", "/patients/nobody"]
        {
            assert_eq!(b.get(path).await.status, 404, "{e:?}: {path}");
        }
        b.get("/patients/pat-w2/rules").await;
        let fields = [("program", "hypertension"), ("reason", "probe")];
        assert_eq!(b.post("/patients/pat-w1/rules", &fields).await.status, 404, "{e:?}");
        assert_eq!(b.post("/patients/pat-w1/rules/preview", &fields).await.status, 404, "{e:?}");

        // The nurse of the care team: reads, previews, may not save.
        let mut n = app.sign_in("ide-n", &nurse_pw).await;
        assert_eq!(n.get("/patients/pat-w1").await.status, 200, "{e:?}");
        let editor = n.get("/patients/pat-w1/rules").await;
        assert_eq!(editor.status, 200);
        assert!(editor.body.contains("id=\"read-only\"") && !editor.body.contains("id=\"save-button\""), "{e:?}");
        let change = [("program", "hypertension"), ("t.threshold.bp.crisis.0.0", "190"), ("reason", "essai")];
        let p = n.post("/patients/pat-w1/rules/preview", &change).await;
        assert_eq!(p.status, 200, "{e:?}: {}", p.body);
        assert!(p.body.contains("id=\"preview-removed\""), "{e:?}");
        let refused = n.post("/patients/pat-w1/rules", &change).await;
        assert_eq!(refused.status, 403, "{e:?}: {}", refused.body);
        let versions = app.admin.rules_history(&ops(), "pat-w1").await.unwrap();
        assert_eq!(versions.len(), 1, "{e:?}: nothing stored");
        assert_eq!(n.get("/patients/pat-w2").await.status, 404, "{e:?}: not the nurse's patient");
    }
}

#[tokio::test]
async fn the_editor_previews_refuses_out_of_bounds_values_and_saves_version_n_plus_one() {
    for app in engines().await {
        let e = app.engine;
        seed(&app).await;
        let pw = app.account("dr-a", "physician", Some("dr-a"), "fr").await;
        let mut c = app.sign_in("dr-a", &pw).await;

        let editor = c.get("/patients/pat-w1/rules").await;
        assert_eq!(editor.status, 200, "{e:?}");
        let input = r#"name="t.threshold.bp.crisis.0.0" type="number" inputmode="decimal" value="180" min="0" max="400" step="1""#;
        assert!(editor.body.contains(input), "{e:?}: the input carries the validated bounds: {}", editor.body);
        assert!(editor.body.contains("<label for=\"reason\">"), "{e:?}");

        // Preview: with a crisis trigger at 190 the 185 of three days ago would not have alerted.
        let higher = [("program", "hypertension"), ("t.threshold.bp.crisis.0.0", "190"), ("reason", "")];
        let p = c.post("/patients/pat-w1/rules/preview", &higher).await;
        assert_eq!(p.status, 200, "{e:?}: {}", p.body);
        assert!(p.body.contains("Alertes en moins (1)") && p.body.contains("185 mmHg"), "{e:?}: {}", p.body);
        assert!(p.body.contains("Alertes en plus (0)"), "{e:?}");
        // Out of bounds: the rules core's specific message, nothing stored.
        let absurd = [("program", "hypertension"), ("t.threshold.bp.crisis.0.0", "450"), ("reason", "x")];
        let r = c.post("/patients/pat-w1/rules/preview", &absurd).await;
        assert_eq!(r.status, 422, "{e:?}");
        assert!(r.body.contains("outside the allowed range 0 to 400 mm[Hg]"), "{e:?}: {}", r.body);
        assert_eq!(c.post("/patients/pat-w1/rules", &absurd).await.status, 422, "{e:?}");
        // Saving needs a reason.
        let r = c.post("/patients/pat-w1/rules", &higher).await;
        assert_eq!(r.status, 422, "{e:?}");
        assert!(r.body.contains("Indiquez le motif de la modification."), "{e:?}");

        let why = "Seuil relevé après avis du cardiologue";
        let save = [("program", "hypertension"), ("t.threshold.bp.crisis.0.0", "190"), ("reason", why)];
        let r = c.post("/patients/pat-w1/rules", &save).await;
        assert_eq!(r.status, 303, "{e:?}: {}", r.body);
        assert_eq!(r.header("location"), Some("/patients/pat-w1/rules?saved=2"));
        let after = c.get("/patients/pat-w1/rules?saved=2").await;
        assert!(after.body.contains("Nouvelle version enregistrée : 2"), "{e:?}");
        assert!(
            after.body.contains(r#"name="t.threshold.bp.crisis.0.0" type="number" inputmode="decimal" value="190""#)
        );

        let versions = app.admin.rules_history(&ops(), "pat-w1").await.unwrap();
        assert_eq!(versions.iter().map(|v| v.version).collect::<Vec<_>>(), [2, 1], "{e:?}");
        assert_eq!((versions[0].author.as_str(), versions[0].reason.as_deref()), ("dr-a", Some(why)), "{e:?}");
        assert_eq!(versions[0].rules["thresholds"][0]["checks"][0]["levels"][0]["value"], 190.0, "{e:?}");
        assert_eq!(versions[1].reason.as_deref(), Some("enrolment"), "{e:?}: version 1 stays");
        assert!(versions[1].rules["thresholds"].as_array().is_some_and(|t| t.is_empty()), "{e:?}");
        let page = c.get("/patients/pat-w1").await;
        assert!(page.body.contains(why) && page.body.contains("enrolment"), "{e:?}: both versions in the history");
        // The audit trail has the change, from the web, without the reason.
        let q = vitalwatch_admin::model::AuditQuery { action: Some("rules.set".into()), ..Default::default() };
        let audit = app.admin.audit(&ops(), &q).await.unwrap().items;
        let web = audit.iter().find(|a| a.actor == "dr-a").expect("audit entry");
        assert!(web.details["origin"].as_str().is_some_and(|o| o.starts_with("web")), "{e:?}: {:?}", web.details);
        assert!(!web.details.to_string().contains("cardiologue"), "{e:?}");
    }
}
