//! `vitalwatch patient export` and `vitalwatch patient access-log`: the real
//! binary on the embedded SQLite store and on a fresh PostgreSQL database
//! writes the FHIR Bundle and the CSV to files, and the access log shows the
//! command line's reads (interface `cli`).

use crate::common;

use chrono::{DateTime, Utc};
use common::*;
use vitalwatch_schemas::{Code, Observation, ObservationId, PatientId, Source, TimeSource};

fn weight(p: &str, t: DateTime<Utc>) -> Observation {
    Observation {
        id: ObservationId::compute(p, Code::BodyWeight, t.timestamp_micros()),
        patient_id: PatientId::new(p).unwrap(),
        code: Code::BodyWeight,
        value: 80.5,
        time: t,
        received_at: t,
        source: Source::Manual,
        device_id: None,
        time_source: TimeSource::App,
        original_value: 80.5,
        original_unit: "kg".into(),
        msg_id: None,
        trace_id: "t".into(),
    }
}

async fn export_and_read_the_log(url: &str, args: &[&str], env: &[(String, String)]) {
    // The store arguments (`--embedded --data-dir D`) go after the command's own.
    let full = |cmd: &[&str]| -> Vec<String> { cmd.iter().chain(args).map(|s| (*s).to_owned()).collect() };
    let run = |cmd: &[&str]| run_cli(&full(cmd).iter().map(String::as_str).collect::<Vec<_>>(), env);
    run(&["patient", "add", "p-exp"]);
    let st = vitalwatch_platform::store::open(url, 100).await.unwrap();
    st.migrate().await.unwrap();
    let t = DateTime::from_timestamp(1_767_225_600, 0).unwrap();
    st.insert_observations(&[weight("p-exp", t)]).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("p-exp.csv");
    let json = dir.path().join("p-exp.json");
    let (csv_path, json_path) = (path_str(&csv), path_str(&json));
    run(&["patient", "export", "p-exp", "--format", "csv", "--out", &csv_path]);
    run(&["patient", "export", "p-exp", "--format", "fhir", "--out", &json_path]);
    let csv = std::fs::read_to_string(&csv).expect("the CSV file");
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), 2, "{csv}");
    assert!(
        rows[1].starts_with("observation,") && rows[1].contains(",p-exp,2026-01-01T00:00:00Z,29463-7,80.5,kg,manual,")
    );
    let bundle: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).expect("the JSON file")).unwrap();
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "collection");
    let kinds: Vec<&str> =
        bundle["entry"].as_array().unwrap().iter().map(|e| e["resource"]["resourceType"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["Patient", "Observation"]);
    let log = run(&["patient", "access-log", "p-exp"]);
    let cli: Vec<&str> = log.lines().filter(|l| l.contains("\toperator\tcli\t")).collect();
    assert_eq!(cli.len(), 2, "{log}");
    assert!(cli[0].ends_with("export format=fhir") && cli[1].ends_with("export format=csv"), "{log}");
    // An unknown patient: a clear failure, no file.
    let out = std::process::Command::new(bin())
        .args(full(&["patient", "export", "nobody", "--out", &path_str(&dir.path().join("x"))]))
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown patient nobody"));
    assert!(!dir.path().join("x").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_export_writes_files_and_the_access_log_shows_cli_reads_on_sqlite() {
    let data = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/vitalwatch.db", data.path().display());
    let d = path_str(data.path());
    export_and_read_the_log(&url, &["--embedded", "--data-dir", &d], &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_export_writes_files_and_the_access_log_shows_cli_reads_on_postgres() {
    if !require("PostgreSQL", &pg_url()) {
        return;
    }
    let url = fresh_database(&pg_url(), &unique("vw_export_cli")).await;
    let env = vec![("VITALWATCH_DATABASE__URL".to_owned(), url.clone())];
    run_cli(&["migrate"], &env);
    export_and_read_the_log(&url, &[], &env).await;
}
