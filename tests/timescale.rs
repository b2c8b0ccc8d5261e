//! Migrations and queries proven on TimescaleDB itself: the hypertable,
//! compression segmented by patient, the retention and compression policies,
//! the hourly and daily continuous aggregates, and idempotent re-migration.
//!
//! TimescaleDB here is the WebAssembly build (pglite) started by
//! scripts/services.sh: one backend session shared by all connections, one
//! connection served at a time, so the test uses its connections one after
//! the other.

use crate::common;

use chrono::{DateTime, Utc};
use common::*;
use vitalwatch_platform::store::Store;
use vitalwatch_platform::store::postgres::PgStore;
use vitalwatch_schemas::{Code, Observation, ObservationId, PatientId, Source, TimeSource};

fn obs(patient: &str, code: Code, t: DateTime<Utc>, v: f64) -> Observation {
    Observation {
        id: ObservationId::compute(patient, code, t.timestamp_micros()),
        patient_id: PatientId::new(patient).unwrap(),
        code,
        value: v,
        time: t,
        received_at: t,
        source: Source::Manual,
        device_id: None,
        time_source: TimeSource::App,
        original_value: v,
        original_unit: code.ucum().into(),
        msg_id: None,
        trace_id: "ts".into(),
    }
}

async fn simple(url: &str, sql: &str) -> Vec<Vec<Option<String>>> {
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect to TimescaleDB");
    let h = tokio::spawn(conn);
    let mut out = Vec::new();
    for m in c.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}")) {
        if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
            out.push((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect());
        }
    }
    drop(c);
    let _ = h.await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_build_hypertable_policies_and_continuous_aggregates() {
    let url = timescale_url();
    if !require("TimescaleDB (pglite)", &url) {
        return;
    }
    let patient = unique("ts");
    // Aligned to the hour: three full hourly buckets of 60 readings.
    let hour = (Utc::now().timestamp() / 3600 - 4) * 3600;
    let base = DateTime::from_timestamp(hour, 0).unwrap();
    {
        let store = PgStore::connect(&url, 400).await.expect("connect");
        let report = store.migrate().await.expect("migrate");
        assert!(report.timescale, "TimescaleDB features must be on");
        // Safe to run twice.
        assert!(store.migrate().await.expect("migrate again").applied.is_empty());
        // 3 hours of heart rate every minute, with a duplicate batch.
        let batch: Vec<Observation> = (0..180)
            .map(|m| obs(&patient, Code::HeartRate, base + chrono::Duration::minutes(m), 60.0 + (m % 3) as f64))
            .collect();
        assert_eq!(store.insert_observations(&batch).await.unwrap(), 180);
        assert_eq!(store.insert_observations(&batch[..50]).await.unwrap(), 0, "duplicates skipped");
    }

    let ht = simple(&url, "SELECT hypertable_name, compression_enabled::text FROM timescaledb_information.hypertables WHERE hypertable_name = 'observations'").await;
    assert_eq!(ht.len(), 1, "observations is a hypertable");
    assert_eq!(ht[0][1].as_deref(), Some("true"), "compression enabled");

    let seg = simple(&url, "SELECT attname FROM timescaledb_information.compression_settings WHERE hypertable_name = 'observations' AND segmentby_column_index IS NOT NULL").await;
    assert_eq!(seg, vec![vec![Some("patient_id".to_owned())]], "compression segmented by patient");

    let jobs = simple(&url, "SELECT proc_name FROM timescaledb_information.jobs ORDER BY proc_name").await;
    let jobs: Vec<String> = jobs.into_iter().filter_map(|r| r[0].clone()).collect();
    for want in ["policy_compression", "policy_retention", "policy_refresh_continuous_aggregate"] {
        assert!(jobs.iter().any(|j| j == want), "job {want} missing: {jobs:?}");
    }

    let caggs =
        simple(&url, "SELECT view_name FROM timescaledb_information.continuous_aggregates ORDER BY view_name").await;
    let caggs: Vec<String> = caggs.into_iter().filter_map(|r| r[0].clone()).collect();
    assert!(
        caggs.contains(&"observations_hourly".to_owned()) && caggs.contains(&"observations_daily".to_owned()),
        "{caggs:?}"
    );

    // Real-time aggregation answers for data not yet materialized: 3 hourly buckets of 60 readings.
    let hourly = simple(
        &url,
        &format!("SELECT n::text, round(mean::numeric, 3)::text FROM observations_hourly WHERE patient_id = '{patient}' AND code = '8867-4' ORDER BY bucket"),
    )
    .await;
    let total: i64 = hourly.iter().map(|r| r[0].as_deref().unwrap_or("0").parse::<i64>().unwrap()).sum();
    assert_eq!(total, 180, "hourly aggregate counts every reading once: {hourly:?}");
    assert!(hourly.iter().all(|r| r[1].as_deref() == Some("61.000")), "hourly means: {hourly:?}");
    let daily =
        simple(&url, &format!("SELECT sum(n)::text FROM observations_daily WHERE patient_id = '{patient}'")).await;
    assert_eq!(daily[0][0].as_deref(), Some("180"));
    // The patient page's trend series reads the continuous aggregates (issue #16).
    {
        // One connection at a time (the PGlite server serves one): the store's is closed first.
        let store = PgStore::connect(&url, 400).await.expect("connect");
        store.add_patient(&PatientId::new(patient.clone()).unwrap()).await.unwrap();
        drop(store);
        let admin = vitalwatch_admin::AdminService::open(&url, 100, 50).await.expect("admin service");
        let op = vitalwatch_admin::Actor::operator("test:timescale");
        let week = vitalwatch_admin::service::patient_view::SeriesRange::Week;
        let series = admin.patient_series(&op, &patient, "8867-4", week).await.expect("series");
        let buckets = &series.lines[0].buckets;
        assert_eq!(buckets.iter().map(|b| b.n).collect::<Vec<_>>(), [60, 60, 60], "{buckets:?}");
        assert!(buckets.iter().all(|b| (b.mean - 61.0).abs() < 1e-9 && b.min == 60.0 && b.max == 62.0));
        assert_eq!(buckets[0].start, base);
    }

    // Compression works on a chunk of this data.
    let compressed = simple(
        &url,
        "SELECT count(*)::text FROM (SELECT compress_chunk(c, if_not_compressed => true) FROM show_chunks('observations') c) x",
    )
    .await;
    assert!(compressed[0][0].as_deref().unwrap_or("0") != "0", "a chunk was compressed");
    let after = simple(&url, &format!("SELECT count(*)::text FROM observations WHERE patient_id = '{patient}'")).await;
    assert_eq!(after[0][0].as_deref(), Some("180"), "compressed data still reads back");
}
