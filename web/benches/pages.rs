//! Page loads for a care team of 5,000 patients (issue #16: "page loads stay
//! under 200 ms at the server"). A benchmark, not a test: run it with
//!
//! ```text
//! source scripts/services.sh
//! cargo bench -p vitalwatch-web --bench pages
//! ```
//!
//! It seeds a fresh PostgreSQL database (web/benches/seed_pg.sql: 5,000
//! patients in one physician's care team, 1.35 M readings over 90 days, 600
//! open episodes with pages sent), serves the workspace on a local socket as
//! the `api` role does (release build), signs in as the physician, and times
//! each page over real HTTP (one request at a time, after a warm-up). The
//! time is measured at the client on loopback, so it bounds the server's.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::{App, Engine};

const WARMUP: usize = 10;
const SAMPLES: usize = 200;

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let Some(app) = App::start(Engine::Postgres).await else {
        eprintln!("PostgreSQL unreachable: run `source scripts/services.sh` first");
        std::process::exit(2);
    };
    let started = Instant::now();
    app.physician("dr-bench").await;
    let password = app.account("dr-bench", "physician", Some("dr-bench"), "fr").await;
    let (client, conn) = tokio_postgres::connect(&app.url, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(conn);
    client.batch_execute(include_str!("seed_pg.sql")).await.expect("seed");
    let rules = serde_json::to_string(&vitalwatch_rules_core::PatientRules::for_program(
        vitalwatch_rules_core::Program::Hypertension,
    ))
    .unwrap();
    client
        .execute("INSERT INTO patient_rules (patient_id, rules) SELECT patient_id, $1 FROM patients", &[&rules])
        .await
        .expect("rules");
    eprintln!("seeded 5,000 patients in {:.1} s", started.elapsed().as_secs_f64());

    let mut c = app.sign_in("dr-bench", &password).await;
    let pages = [
        ("worklist (600 open episodes)", "/worklist"),
        ("worklist refresh fragment", "/worklist/rows"),
        ("patient list (first page)", "/patients"),
        ("patient page, 30 days", "/patients/pb-00007"),
        ("patient page, 90 days", "/patients/pb-00007?range=90d"),
        ("episode page", "/episodes/ep-bench-1"),
        ("rules editor", "/patients/pb-00007/rules"),
    ];
    println!("| page | p50 ms | p95 ms | p99 ms | max ms | bytes |");
    println!("|---|---|---|---|---|---|");
    for (name, path) in pages {
        let mut times = Vec::with_capacity(SAMPLES);
        let mut bytes = 0;
        for i in 0..WARMUP + SAMPLES {
            let t = Instant::now();
            let r = c.get(path).await;
            let d = t.elapsed();
            if r.status != 200 {
                println!("| {name} | status {} | | | | |", r.status);
                break;
            }
            bytes = r.body.len();
            if i >= WARMUP {
                times.push(d);
            }
        }
        if times.is_empty() {
            continue;
        }
        times.sort();
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {:.1} | {bytes} |",
            pct(&times, 0.50),
            pct(&times, 0.95),
            pct(&times, 0.99),
            times.last().unwrap().as_secs_f64() * 1000.0
        );
    }
}
