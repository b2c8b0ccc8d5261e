//! The FHIR R4 read API, the patient export and the read-access log, over
//! real HTTP on both engines: SQLite (a temporary file) and PostgreSQL (a
//! fresh database on `VW_TEST_PG`; under `CI=true` a missing PostgreSQL, or a
//! missing FHIR validator, fails the test).
//!
//! Covers: scoping (a physician gets 404 for someone else's patient, on every
//! resource), keyset paging via `next` links (every Observation exactly once,
//! also when readings arrive during the walk), the blood pressure panel, code
//! and date filters, `$everything`, DetectedIssue evidence, the independent
//! validator (PyPI fhir.resources, R4 models), export in both formats, the
//! read-access log (entries with the right interface; a failed log write
//! fails the read with 503), and the round trip through the ingest FHIR
//! decoder.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use vitalwatch_admin::model::{CareTeamInput, Enrol, NewDevice, NewPatient, PhysicianInput};
use vitalwatch_admin::service::lifecycle::InclusionInput;
use vitalwatch_admin::{Actor, AdminService};
use vitalwatch_schemas::proto::{self, AlertEventKind, Severity as ProtoSeverity};
use vitalwatch_schemas::{Code, DeviceId, Observation, ObservationId, PatientId, Source, TimeSource};
use vitalwatch_testkit::client::{Resp, request};

mod common;
use common::{Database, databases};

/// The admin API (with `/fhir/r4`) in-process on `db`.
struct Api {
    addr: String,
    svc: Arc<AdminService>,
    shutdown: vitalwatch_platform::shutdown::CancellationToken,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Api {
    async fn start(url: &str) -> Api {
        let svc = Arc::new(AdminService::open(url, 100, 100).await.expect("admin service"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let shutdown = vitalwatch_platform::shutdown::CancellationToken::new();
        let limits = vitalwatch_platform::http::HttpLimits::default();
        let server = tokio::spawn({
            let (svc, shutdown) = (svc.clone(), shutdown.clone());
            async move { vitalwatch_admin::http::serve(svc, &limits, listener, shutdown).await }
        });
        Api { addr, svc, shutdown, server }
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Resp {
        let mut headers = Vec::new();
        if let Some(t) = token {
            headers.push(("Authorization", format!("Bearer {t}")));
        }
        request(&self.addr, "GET", path, &headers, None).await
    }

    /// GET that must answer 200 with FHIR JSON.
    async fn fhir(&self, path: &str, token: &str) -> Value {
        let r = self.get(path, Some(token)).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert!(r.header("content-type").unwrap_or("").starts_with("application/fhir+json"), "{path}");
        r.json()
    }

    /// The path of an absolute link of this server.
    fn path_of(&self, url: &str) -> String {
        url.strip_prefix(&format!("http://{}", self.addr)).unwrap_or_else(|| panic!("foreign link {url}")).to_owned()
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.server.await.unwrap().unwrap();
    }
}

fn at(s: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(s, 0).unwrap()
}

/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600;

fn reading(p: &str, code: Code, t: DateTime<Utc>, v: f64, device: Option<&str>) -> Observation {
    Observation {
        id: ObservationId::compute(p, code, t.timestamp_micros()),
        patient_id: PatientId::new(p).unwrap(),
        code,
        value: v,
        time: t,
        received_at: t + Duration::seconds(5),
        source: if device.is_some() { Source::Device } else { Source::Manual },
        device_id: device.map(|d| DeviceId::new(d).unwrap()),
        time_source: if device.is_some() { TimeSource::Device } else { TimeSource::App },
        original_value: v,
        original_unit: code.ucum().into(),
        msg_id: None,
        trace_id: "trace".into(),
    }
}

fn bundle_resources(b: &Value) -> Vec<Value> {
    b["entry"].as_array().map(|e| e.iter().map(|x| x["resource"].clone()).collect()).unwrap_or_default()
}

fn next_link(b: &Value) -> Option<String> {
    b["link"].as_array()?.iter().find(|l| l["relation"] == "next").and_then(|l| l["url"].as_str()).map(str::to_owned)
}

fn kinds(resources: &[Value]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for r in resources {
        *m.entry(r["resourceType"].as_str().unwrap_or("?").to_owned()).or_insert(0) += 1;
    }
    m
}

struct Seed {
    ops: String,
    dra: String,
    drb: String,
}

/// dr-a treats p-a (a cuff, 20 heart rates, 5 blood pressures, a manual
/// weight, an episode), dr-b treats p-b (3 heart rates).
async fn seed(api: &Api, db: &Database) -> Seed {
    let svc = &api.svc;
    let op = Actor::operator("cli:test");
    for (id, name) in [("dr-a", "Dr A"), ("dr-b", "Dr B"), ("dr-c", "Dr C")] {
        let input: PhysicianInput =
            serde_json::from_value(json!({ "name": name, "email": format!("{id}@hospital.example") })).unwrap();
        svc.upsert_physician(&op, id, &input).await.unwrap();
    }
    for (p, dr) in [("p-a", "dr-a"), ("p-b", "dr-b")] {
        svc.add_patient(&op, &NewPatient { id: p.into() }).await.unwrap();
        let team = CareTeamInput { responsible: dr.into(), deputies: vec!["dr-c".into()], policy: None, nurses: None };
        svc.set_care_team(&op, p, &team).await.unwrap();
    }
    // p-a is included in a programme (one monitoring period: an EpisodeOfCare).
    let inclusion = InclusionInput {
        program: "hypertension".into(),
        prescriber: "dr-a".into(),
        start: Some("2025-12-01".into()),
        planned_end: "2026-06-01".into(),
        consent_date: "2025-11-30".into(),
        consent_by: "IDE Martin".into(),
    };
    svc.include_patient(&op, "p-a", &inclusion).await.unwrap();
    svc.add_device(&op, &NewDevice { id: "cuff-1".into(), kind: "bp_cuff".into() }).await.unwrap();
    svc.enrol_device(&op, "cuff-1", &Enrol { patient: "p-a".into(), from: Some(at(T0 - 86_400)) }).await.unwrap();
    let st = vitalwatch_platform::store::open(&db.url, 100).await.unwrap();
    let mut obs = Vec::new();
    for i in 0..20 {
        obs.push(reading("p-a", Code::HeartRate, at(T0 + i * 60), 60.0 + i as f64, Some("cuff-1")));
    }
    for i in 0..5 {
        let t = at(T0 + i * 240 + 30);
        obs.push(reading("p-a", Code::Systolic, t, 120.0 + i as f64, Some("cuff-1")));
        obs.push(reading("p-a", Code::Diastolic, t, 80.0 + i as f64, Some("cuff-1")));
    }
    obs.push(Observation {
        original_value: 180.2,
        original_unit: "[lb_av]".into(),
        ..reading("p-a", Code::BodyWeight, at(T0 + 180), 81.74, None)
    });
    for i in 0..3 {
        obs.push(reading("p-b", Code::HeartRate, at(T0 + i * 60), 70.0, None));
    }
    assert_eq!(st.insert_observations(&obs).await.unwrap(), obs.len() as u64);
    let t_bp = at(T0 + 4 * 240 + 30);
    let ev = |code: Code, v: f64| proto::EvidenceReading {
        observation_id: ObservationId::compute("p-a", code, t_bp.timestamp_micros()).to_hex(),
        code: code.loinc().into(),
        value: v,
        unit: "mm[Hg]".into(),
        time_unix_micros: t_bp.timestamp_micros(),
    };
    let event = proto::AlertEvent {
        event_id: "ep-1-open".into(),
        episode_id: "ep-1".into(),
        patient_id: "p-a".into(),
        rule_id: "threshold.sbp.high".into(),
        rule_kind: "threshold".into(),
        kind: AlertEventKind::Opened as i32,
        severity: ProtoSeverity::High as i32,
        program: "hypertension".into(),
        code: "8480-6".into(),
        reading_time_unix_micros: t_bp.timestamp_micros(),
        detected_at_unix_micros: t_bp.timestamp_micros() + 1_000,
        summary: "SBP 124 mm[Hg] (threshold 120)".into(),
        readings: vec![ev(Code::Systolic, 124.0), ev(Code::Diastolic, 84.0)],
        ..proto::AlertEvent::default()
    };
    assert_eq!(st.record_alert_events(&[event]).await.unwrap(), 1);
    let cli = Actor::cli();
    let (ops, _) = svc.create_token(&cli, "ops", "operator", None, None).await.unwrap();
    let (dra, _) = svc.create_token(&cli, "dra", "physician", Some("dr-a"), None).await.unwrap();
    let (drb, _) = svc.create_token(&cli, "drb", "physician", Some("dr-b"), None).await.unwrap();
    Seed { ops, dra, drb }
}

/// Follows `next` links from `first`; returns every resource in order.
async fn walk(api: &Api, first: &str, token: &str, mut during: impl AsyncFnMut(usize)) -> (Vec<Value>, usize) {
    let mut out = Vec::new();
    let mut path = first.to_owned();
    let mut pages = 0;
    loop {
        let b = api.fhir(&path, token).await;
        assert_eq!(b["type"], "searchset");
        out.extend(bundle_resources(&b));
        pages += 1;
        during(pages).await;
        match next_link(&b) {
            Some(n) => path = api.path_of(&n),
            None => break,
        }
        assert!(pages < 100, "paging does not end");
    }
    (out, pages)
}

/// Validates JSON documents with PyPI fhir.resources (R4 models); false when
/// the validator is missing outside CI.
fn validate(docs: &[(String, Value)]) -> bool {
    let python = vitalwatch_testkit::service_var("VW_FHIR_PYTHON", "");
    let ok = !python.is_empty()
        && std::process::Command::new(&python)
            .args(["-c", "import fhir.resources as f; assert f.__fhir_version__ == '4.0.1'"])
            .status()
            .is_ok_and(|s| s.success());
    if !vitalwatch_testkit::required(ok, "the FHIR R4 validator (VW_FHIR_PYTHON; run `bash scripts/services.sh`)") {
        return false;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (name, doc) in docs {
        let f = dir.path().join(format!("{name}.json"));
        std::fs::write(&f, serde_json::to_vec_pretty(doc).unwrap()).unwrap();
        files.push(f);
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fhir_validate.py");
    let out = std::process::Command::new(&python).arg(script).args(&files).output().expect("run the validator");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the FHIR R4 validator refused:\n{text}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(text.lines().filter(|l| l.starts_with("OK ")).count(), docs.len(), "{text}");
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fhir_api_scopes_pages_maps_validates_exports_and_logs_reads() {
    for db in databases("vw_fhir", "api").await {
        let n = db.name;
        let api = Api::start(&db.url).await;
        let s = seed(&api, &db).await;
        let (ops, dra, drb) = (s.ops.as_str(), s.dra.as_str(), s.drb.as_str());

        // Metadata needs no token and lists exactly what is served.
        let meta = api.get("/fhir/r4/metadata", None).await;
        assert_eq!(meta.status, 200, "{n}");
        let meta = meta.json();
        assert_eq!(meta["fhirVersion"], "4.0.1");
        let types: Vec<&str> =
            meta["rest"][0]["resource"].as_array().unwrap().iter().filter_map(|r| r["type"].as_str()).collect();
        assert_eq!(types, ["Patient", "Device", "Observation", "DetectedIssue", "EpisodeOfCare"], "{n}");

        // Authentication and scoping: 401 without a token, 404 (an OperationOutcome)
        // for someone else's patient exactly as for an unknown one.
        let r = api.get("/fhir/r4/Patient/p-a", None).await;
        assert_eq!((r.status, r.json()["resourceType"].as_str()), (401, Some("OperationOutcome")), "{n}");
        for path in [
            "/fhir/r4/Patient/p-b",
            "/fhir/r4/Patient/nobody",
            "/fhir/r4/Observation?patient=p-b",
            "/fhir/r4/Observation?patient=nobody",
            "/fhir/r4/Device?patient=p-b",
            "/fhir/r4/DetectedIssue?patient=p-b",
            "/fhir/r4/Patient/p-b/$everything",
            "/fhir/r4/Device/cuff-1-x",
            "/fhir/r4/EpisodeOfCare?patient=p-b",
            "/fhir/r4/EpisodeOfCare/mp-999999",
            "/fhir/r4/EpisodeOfCare/x",
        ] {
            let r = api.get(path, Some(dra)).await;
            assert_eq!(r.status, 404, "{n}: {path}: {}", r.body);
            let oo = r.json();
            assert_eq!(
                (oo["resourceType"].as_str(), oo["issue"][0]["code"].as_str()),
                (Some("OperationOutcome"), Some("not-found"))
            );
        }
        assert_eq!(api.get("/fhir/r4/Device/cuff-1", Some(drb)).await.status, 404, "{n}: dr-b's device view");
        assert_eq!(api.get("/fhir/r4/DetectedIssue/ep-1", Some(drb)).await.status, 404, "{n}");
        let bad = api.get("/fhir/r4/Observation?patient=p-a&value-quantity=5", Some(dra)).await;
        assert_eq!((bad.status, bad.json()["issue"][0]["code"].as_str()), (400, Some("invalid")), "{n}");
        let patients = bundle_resources(&api.fhir("/fhir/r4/Patient", dra).await);
        assert_eq!(patients.iter().map(|p| p["id"].as_str().unwrap()).collect::<Vec<_>>(), ["p-a"], "{n}");
        assert_eq!(bundle_resources(&api.fhir("/fhir/r4/Patient?_count=1", ops).await).len(), 1, "{n}");

        // Paging via next links: every Observation exactly once, in order, while
        // a new reading arrives after the first page.
        let st = vitalwatch_platform::store::open(&db.url, 100).await.unwrap();
        let late = reading("p-a", Code::HeartRate, at(T0 + 6_000), 99.0, Some("cuff-1"));
        let (asc, pages) = walk(&api, "/fhir/r4/Observation?patient=p-a&_count=4", dra, async |page| {
            if page == 1 {
                st.insert_observations(std::slice::from_ref(&late)).await.unwrap();
            }
        })
        .await;
        assert_eq!(asc.len(), 27, "{n}: 21 heart rates, 5 panels, 1 weight");
        assert_eq!(pages, 7, "{n}");
        let ids: HashSet<&str> = asc.iter().map(|o| o["id"].as_str().unwrap()).collect();
        assert_eq!(ids.len(), asc.len(), "{n}: an Observation came twice");
        let times: Vec<&str> = asc.iter().map(|o| o["effectiveDateTime"].as_str().unwrap()).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "{n}: not in date order");
        let (desc, _) = walk(&api, "/fhir/r4/Observation?patient=p-a&_count=5&_sort=-date", dra, async |_| {}).await;
        let desc_ids: Vec<&str> = desc.iter().rev().map(|o| o["id"].as_str().unwrap()).collect();
        assert_eq!(desc_ids, asc.iter().map(|o| o["id"].as_str().unwrap()).collect::<Vec<_>>(), "{n}");

        // The blood pressure panel: one Observation, two UCUM components, the device.
        let panels = bundle_resources(&api.fhir("/fhir/r4/Observation?patient=p-a&code=85354-9", dra).await);
        assert_eq!(panels.len(), 5, "{n}");
        let bp = &panels[0];
        assert_eq!(
            bp["code"]["coding"][0],
            json!({"system": "http://loinc.org", "code": "85354-9",
            "display": "Blood pressure panel with all children optional"})
        );
        let comp: Vec<(&str, f64, &str, &str)> = bp["component"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["code"]["coding"][0]["code"].as_str().unwrap(),
                    c["valueQuantity"]["value"].as_f64().unwrap(),
                    c["valueQuantity"]["code"].as_str().unwrap(),
                    c["valueQuantity"]["system"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            comp,
            [
                ("8480-6", 120.0, "mm[Hg]", "http://unitsofmeasure.org"),
                ("8462-4", 80.0, "mm[Hg]", "http://unitsofmeasure.org")
            ],
            "{n}"
        );
        assert_eq!(bp["device"]["reference"], "Device/cuff-1");
        assert_eq!(bp["effectiveDateTime"], "2026-01-01T00:00:30Z");
        assert_eq!(bp["issued"], "2026-01-01T00:00:35Z");
        assert_eq!(bp["category"][0]["coding"][0]["code"], "vital-signs");
        assert_eq!(api.fhir(&format!("/fhir/r4/Observation/{}", bp["id"].as_str().unwrap()), dra).await, *bp, "{n}");
        let r = api.get(&format!("/fhir/r4/Observation/{}", bp["id"].as_str().unwrap()), Some(drb)).await;
        assert_eq!(r.status, 404, "{n}: dr-b reads dr-a's observation");
        // The manual weight: performer = the patient, app time, original unit kept.
        let w =
            bundle_resources(&api.fhir("/fhir/r4/Observation?patient=p-a&code=http://loinc.org%7C29463-7", dra).await);
        assert_eq!(w.len(), 1, "{n}");
        assert_eq!(w[0]["performer"][0]["reference"], "Patient/p-a");
        assert!(w[0].get("device").is_none());
        assert_eq!(
            w[0]["valueQuantity"],
            json!({"value": 81.74, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"})
        );
        let ext: Vec<&Value> = w[0]["extension"].as_array().unwrap().iter().collect();
        assert_eq!(ext[0]["valueCode"], "app");
        assert_eq!(ext[1]["valueQuantity"], json!({"value": 180.2, "unit": "[lb_av]"}));
        // Code and date filters.
        let hr = bundle_resources(&api.fhir("/fhir/r4/Observation?patient=p-a&code=8867-4&_count=100", dra).await);
        assert_eq!(hr.len(), 21, "{n}");
        let window = "/fhir/r4/Observation?patient=p-a&date=ge2026-01-01T00:05:00Z&date=lt2026-01-01T00:10:00Z";
        let win = bundle_resources(&api.fhir(window, dra).await);
        assert_eq!(kinds(&win)["Observation"], 6, "{n}: 5 heart rates and the 00:08:30 panel");
        assert!(bundle_resources(&api.fhir("/fhir/r4/Observation?patient=p-a&date=2025-12-31", dra).await).is_empty());

        // Devices and the episode as a DetectedIssue with its evidence.
        let dev = api.fhir("/fhir/r4/Device/cuff-1", dra).await;
        assert_eq!(
            (dev["patient"]["reference"].as_str(), dev["status"].as_str()),
            (Some("Patient/p-a"), Some("active"))
        );
        assert_eq!(bundle_resources(&api.fhir("/fhir/r4/Device?patient=p-a", dra).await).len(), 1, "{n}");
        let issues = bundle_resources(&api.fhir("/fhir/r4/DetectedIssue?patient=p-a", dra).await);
        assert_eq!(issues.len(), 1, "{n}");
        let di = &issues[0];
        assert_eq!((di["severity"].as_str(), di["status"].as_str()), (Some("high"), Some("preliminary")), "{n}");
        assert_eq!(di["meta"]["tag"][0]["code"], "open");
        assert_eq!(di["identifiedDateTime"], "2026-01-01T00:16:30Z");
        let evidence = di["evidence"][0]["detail"].as_array().unwrap();
        assert_eq!(evidence.len(), 1, "{n}: systolic and diastolic are one panel");
        let ev = api.fhir(&format!("/fhir/r4/{}", evidence[0]["reference"].as_str().unwrap()), dra).await;
        assert_eq!(ev["code"]["coding"][0]["code"], "85354-9", "{n}: the evidence resolves");
        assert_eq!(api.fhir("/fhir/r4/DetectedIssue/ep-1", dra).await, *di, "{n}");

        // The monitoring period as an EpisodeOfCare; dr-b cannot read it.
        let care = bundle_resources(&api.fhir("/fhir/r4/EpisodeOfCare?patient=p-a", dra).await);
        assert_eq!(care.len(), 1, "{n}");
        let eoc = &care[0];
        assert_eq!((eoc["status"].as_str(), eoc["type"][0]["text"].as_str()), (Some("active"), Some("hypertension")));
        assert_eq!(eoc["period"]["start"], "2025-12-01T00:00:00Z", "{n}");
        assert_eq!(eoc["careManager"]["identifier"]["value"], "dr-a", "{n}");
        let eoc_path = format!("/fhir/r4/EpisodeOfCare/{}", eoc["id"].as_str().unwrap());
        assert_eq!(api.fhir(&eoc_path, dra).await, *eoc, "{n}");
        assert_eq!(api.get(&eoc_path, Some(drb)).await.status, 404, "{n}: dr-b reads dr-a's period");
        assert_eq!(api.get("/fhir/r4/EpisodeOfCare", Some(dra)).await.status, 400, "{n}: no patient");

        // $everything.
        let every = api.fhir("/fhir/r4/Patient/p-a/$everything", dra).await;
        let all = bundle_resources(&every);
        let want: BTreeMap<String, usize> =
            [("DetectedIssue", 1), ("Device", 1), ("EpisodeOfCare", 1), ("Observation", 27), ("Patient", 1)]
                .map(|(k, v)| (k.to_owned(), v))
                .into();
        assert_eq!(kinds(&all), want, "{n}");
        let everything_ids: HashSet<&str> =
            all.iter().filter(|r| r["resourceType"] == "Observation").map(|o| o["id"].as_str().unwrap()).collect();
        assert_eq!(everything_ids, ids, "{n}: paging covered exactly the record");

        // Export, both formats (dr-a; dr-b gets 404).
        let csv = api.get("/v1/patients/p-a/export?format=csv", Some(dra)).await;
        assert_eq!(csv.status, 200, "{n}: {}", csv.body);
        assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
        let lines: Vec<&str> = csv.body.lines().collect();
        assert!(lines[0].starts_with("record,id,patient_id,time,code,value,unit,source,device_id,time_source"));
        assert_eq!(
            lines.iter().filter(|l| l.starts_with("observation,")).count(),
            32,
            "{n}: one row per stored component"
        );
        assert_eq!(lines.iter().filter(|l| l.starts_with("episode,ep-1,p-a,")).count(), 1, "{n}");
        assert!(lines.iter().any(|l| l.contains(",29463-7,81.74,kg,manual,,app,") && l.contains(",180.2,[lb_av],")));
        let fx = api.get("/v1/patients/p-a/export?format=fhir", Some(dra)).await;
        assert_eq!(fx.status, 200, "{n}");
        let export = fx.json();
        assert_eq!(export["type"], "collection");
        assert_eq!(kinds(&bundle_resources(&export)), want, "{n}");
        assert_eq!(api.get("/v1/patients/p-a/export?format=csv", Some(drb)).await.status, 404, "{n}");
        assert_eq!(api.get("/v1/patients/p-a/export?format=xml", Some(dra)).await.status, 400, "{n}");

        // The independent validator: every resource kind and the Bundles.
        let panel_read = api.fhir(&format!("/fhir/r4/Observation/{}", bp["id"].as_str().unwrap()), dra).await;
        let docs: Vec<(String, Value)> = vec![
            ("metadata".into(), meta.clone()),
            ("patient".into(), api.fhir("/fhir/r4/Patient/p-a", dra).await),
            ("patients".into(), api.fhir("/fhir/r4/Patient", ops).await),
            ("device".into(), dev.clone()),
            ("devices".into(), api.fhir("/fhir/r4/Device", ops).await),
            ("panel".into(), panel_read),
            ("weight".into(), w[0].clone()),
            ("heart_rate".into(), hr[0].clone()),
            ("observations".into(), api.fhir("/fhir/r4/Observation?patient=p-a&_count=3", dra).await),
            ("issue".into(), di.clone()),
            ("issues".into(), api.fhir("/fhir/r4/DetectedIssue", ops).await),
            ("episode_of_care".into(), eoc.clone()),
            ("episodes_of_care".into(), api.fhir("/fhir/r4/EpisodeOfCare?patient=p-a", ops).await),
            ("everything".into(), every.clone()),
            ("export".into(), export.clone()),
            ("outcome".into(), api.get("/fhir/r4/Patient/p-b", Some(dra)).await.json()),
        ];
        validate(&docs);

        // The read-access log: dr-a's reads through FHIR and the JSON API, and the export.
        assert_eq!(api.get("/v1/patients/p-a", Some(dra)).await.status, 200, "{n}");
        let log = api.get("/v1/patients/p-a/access-log?limit=500", Some(ops)).await;
        assert_eq!(log.status, 200, "{n}: {}", log.body);
        let items = log.json()["items"].as_array().unwrap().clone();
        let has = |actor: &str, iface: &str, what: &str| {
            items.iter().any(|e| {
                e["actor"] == actor && e["interface"] == iface && e["what"] == what && e["patient_id"] == "p-a"
            })
        };
        assert!(has("dr-a", "fhir", "GET Observation"), "{n}");
        assert!(has("dr-a", "fhir", "GET Patient/{id}/$everything"), "{n}");
        assert!(has("dr-a", "fhir", "GET DetectedIssue/{id}"), "{n}");
        assert!(has("dr-a", "fhir", "GET EpisodeOfCare") && has("dr-a", "fhir", "GET EpisodeOfCare/{id}"), "{n}");
        assert!(has("dr-a", "api", "GET /v1/patients/{id}"), "{n}");
        assert!(has("dr-a", "api", "export format=csv"), "{n}");
        assert!(has("dr-a", "api", "export format=fhir"), "{n}");
        assert!(!items.iter().any(|e| e["actor"] == "dr-b"), "{n}: refused reads are not reads");
        assert!(items.iter().all(|e| e["actor_role"] == "physician" || e["actor_role"] == "operator"));
        assert_eq!(api.get("/v1/patients/p-a/access-log", Some(dra)).await.status, 200, "{n}");
        assert_eq!(api.get("/v1/patients/p-a/access-log", Some(drb)).await.status, 404, "{n}");
        let paged = api.get("/v1/patients/p-a/access-log?limit=2", Some(ops)).await.json();
        assert_eq!(paged["items"].as_array().unwrap().len(), 2);
        assert!(paged["next"].is_string(), "{n}");

        // A read whose access record cannot be written is refused (503), not served.
        db.refuse_inserts("access_log").await;
        let r = api.get("/fhir/r4/Patient/p-a", Some(dra)).await;
        assert_eq!(r.status, 503, "{n}: {}", r.body);
        assert_eq!(r.json()["issue"][0]["code"], "transient");
        assert!(!r.body.contains("\"Patient\""), "{n}: data served without its access record");
        assert_eq!(api.get("/v1/patients/p-a", Some(dra)).await.status, 503, "{n}");
        assert_eq!(api.get("/v1/patients/p-a/export?format=csv", Some(dra)).await.status, 503, "{n}");
        api.stop().await;
    }
}

/// What the ingest FHIR decoder accepts comes back out of the FHIR API
/// equivalent (codes, values, units, times), and what the API serves is
/// accepted again by the decoder with the same readings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fhir_round_trip_through_the_ingest_decoder() {
    for db in databases("vw_fhir", "roundtrip").await {
        let n = db.name;
        let api = Api::start(&db.url).await;
        let op = Actor::operator("cli:test");
        api.svc.add_patient(&op, &NewPatient { id: "p-r".into() }).await.unwrap();
        api.svc.add_device(&op, &NewDevice { id: "cuff-r".into(), kind: "bp_cuff".into() }).await.unwrap();
        let now = at(Utc::now().timestamp());
        api.svc
            .enrol_device(&op, "cuff-r", &Enrol { patient: "p-r".into(), from: Some(now - Duration::days(2)) })
            .await
            .unwrap();
        let (ops, _) = api.svc.create_token(&Actor::cli(), "ops", "operator", None, None).await.unwrap();
        let st = vitalwatch_platform::store::open(&db.url, 100).await.unwrap();
        let t1 = now - Duration::hours(3);
        let t2 = now - Duration::hours(2);
        let local = |t: DateTime<Utc>| t.with_timezone(&chrono::FixedOffset::east_opt(3600).unwrap()).to_rfc3339();
        let q = |v: f64, u: &str| json!({ "value": v, "unit": u, "system": "http://unitsofmeasure.org", "code": u });
        let loinc = |c: &str| json!({ "coding": [{ "system": "http://loinc.org", "code": c }] });
        let sent = json!({ "resourceType": "Bundle", "id": "b-rt", "type": "collection", "entry": [
            { "resource": { "resourceType": "Observation", "status": "final", "code": loinc("85354-9"),
                "effectiveDateTime": local(t1),
                "component": [
                    { "code": loinc("8480-6"), "valueQuantity": q(142.0, "mm[Hg]") },
                    { "code": loinc("8462-4"), "valueQuantity": q(91.0, "mm[Hg]") } ] } },
            { "resource": { "resourceType": "Observation", "status": "final", "code": loinc("8867-4"),
                "effectiveDateTime": local(t1 + Duration::seconds(1)), "valueQuantity": q(71.0, "/min") } },
            { "resource": { "resourceType": "Observation", "status": "final", "code": loinc("59408-5"),
                "effectiveDateTime": local(t2), "valueQuantity": q(95.0, "%") } },
            { "resource": { "resourceType": "Observation", "status": "final", "code": loinc("29463-7"),
                "effectiveDateTime": local(t2), "valueQuantity": q(82.5, "kg") } },
            { "resource": { "resourceType": "Observation", "status": "final", "code": loinc("8310-5"),
                "effectiveDateTime": local(t2 + Duration::minutes(1)), "valueQuantity": q(37.2, "Cel") } } ] });
        let ingest = async |topic: &str, payload: &[u8]| {
            let registry = st.registry().await.unwrap();
            let limits = vitalwatch_ingest_core::normalize::Limits::default();
            let out = vitalwatch_ingest_core::pipeline::process(topic, payload, Utc::now(), &limits, &registry);
            assert!(out.rejections.is_empty(), "{n}: {:?}", out.rejections);
            st.insert_observations(&out.observations).await.unwrap();
            out.observations
        };
        let stored = ingest("vitalwatch/v1/devices/cuff-r/readings/fhir", sent.to_string().as_bytes()).await;
        assert_eq!(stored.len(), 6, "{n}: the panel is two rows");

        let got = bundle_resources(&api.fhir("/fhir/r4/Observation?patient=p-r&_count=100", &ops).await);
        // (code, [(component code, value, unit)], time) of what was sent and what came back.
        let norm = |o: &Value| -> (String, Vec<(String, f64, String)>, DateTime<Utc>) {
            let code = o["code"]["coding"][0]["code"].as_str().unwrap().to_owned();
            let t = DateTime::parse_from_rfc3339(o["effectiveDateTime"].as_str().unwrap()).unwrap().with_timezone(&Utc);
            let qty = |c: &Value, v: &Value| {
                (
                    c["coding"][0]["code"].as_str().unwrap().to_owned(),
                    v["value"].as_f64().unwrap(),
                    v["code"].as_str().unwrap().to_owned(),
                )
            };
            let parts = match o["component"].as_array() {
                Some(cs) => cs.iter().map(|c| qty(&c["code"], &c["valueQuantity"])).collect(),
                None => vec![qty(&o["code"], &o["valueQuantity"])],
            };
            (code, parts, t)
        };
        let mut want: Vec<_> = bundle_resources(&sent).iter().map(norm).collect();
        let mut back: Vec<_> = got.iter().map(norm).collect();
        want.sort_by(|a, b| (a.2, &a.0).cmp(&(b.2, &b.0)));
        back.sort_by(|a, b| (a.2, &a.0).cmp(&(b.2, &b.0)));
        assert_eq!(back, want, "{n}: what came back differs from what was ingested");
        assert!(got.iter().all(|o| o["device"]["reference"] == "Device/cuff-r"), "{n}");
        assert!(got.iter().all(|o| o["extension"][0]["valueCode"] == "device"), "{n}");

        // And back in: the API's searchset Bundle, sent again by the cuff, gives the same readings.
        let served = api.fhir("/fhir/r4/Observation?patient=p-r&_count=100", &ops).await;
        let again = ingest("vitalwatch/v1/devices/cuff-r/readings/fhir", served.to_string().as_bytes()).await;
        let key = |o: &Observation| (o.code, o.value.to_bits(), o.time);
        let mut a: Vec<_> = stored.iter().map(key).collect();
        let mut b: Vec<_> = again.iter().map(key).collect();
        a.sort();
        b.sort();
        assert_eq!(a, b, "{n}: the decoder reads the API's output as the same readings");
        api.stop().await;
    }
}
