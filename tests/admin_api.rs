//! The admin API against real databases, driven with real HTTP requests:
//! `vitalwatch api` as a subprocess on a fresh PostgreSQL database (roles,
//! 401/403/404, rows changed, alert acknowledge/snooze/close, audit trail with
//! the actor, OpenAPI), and the router in-process on a SQLite file.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::episodes::{open_episode, pg};
use common::http::{Resp, request};
use common::*;

/// One request over a fresh connection, with a bearer token and a JSON body.
async fn http(addr: &str, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> Resp {
    let mut headers = Vec::new();
    if let Some(t) = token {
        headers.push(("Authorization", format!("Bearer {t}")));
    }
    if body.is_some() || method != "GET" {
        headers.push(("Content-Type", "application/json".to_owned()));
    }
    request(addr, method, path, &headers, body).await
}

async fn count(c: &tokio_postgres::Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_subprocess_on_postgres_enforces_roles_and_audits_every_change() {
    if !require("PostgreSQL", &pg_url()) {
        return;
    }
    let url = fresh_database(&pg_url(), &unique("vw_admin_api")).await;
    let env = vec![
        ("VITALWATCH_DATABASE__URL".to_owned(), url.clone()),
        ("VITALWATCH_OPS__LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
    ];
    run_cli(&["migrate"], &env);
    run_cli(&["physician", "add", "dr-a", "--name", "Dr A", "--email", "a@hospital.example"], &env);
    run_cli(&["physician", "add", "dr-b", "--name", "Dr B", "--email", "b@hospital.example"], &env);
    run_cli(&["physician", "add", "dr-c", "--name", "Dr C", "--email", "c@hospital.example"], &env);
    run_cli(&["patient", "add", "p-1", "p-2"], &env);
    run_cli(&["care-team", "set", "p-1", "--responsible", "dr-a", "--deputy", "dr-c"], &env);
    run_cli(&["care-team", "set", "p-2", "--responsible", "dr-b", "--deputy", "dr-a"], &env);
    run_cli(&["patient", "add", "p-9"], &env);
    run_cli(&["care-team", "set", "p-9", "--responsible", "dr-b", "--deputy", "dr-c"], &env);
    let ops = run_cli(&["api-token", "create", "--name", "ops", "--role", "operator"], &env).trim().to_owned();
    let dra =
        run_cli(&["api-token", "create", "--name", "dr-a-phone", "--role", "physician", "--physician", "dr-a"], &env)
            .trim()
            .to_owned();
    assert!(ops.starts_with("vw_") && dra.starts_with("vw_"));
    open_episode(&url, "ep-1", "p-1").await;
    open_episode(&url, "ep-9", "p-9").await;

    let db = pg(&url).await;
    // Tokens are stored hashed only.
    assert_eq!(count(&db, &format!("SELECT count(*) FROM api_tokens WHERE token_hash = '{ops}'")).await, 0);

    let addr = format!("127.0.0.1:{}", free_port());
    let mut env_api = env.clone();
    env_api.push(("VITALWATCH_API__LISTEN".into(), addr.clone()));
    let mut api = Proc::spawn("api", &["api"], &env_api);
    assert!(
        wait_until(Duration::from_secs(30), || async { tokio::net::TcpStream::connect(&addr).await.is_ok() }).await,
        "the API did not listen on {addr}"
    );
    let a = addr.as_str();

    // Probes and the OpenAPI document need no token.
    assert_eq!(http(a, "GET", "/healthz", None, None).await.status, 200);
    assert_eq!(http(a, "GET", "/readyz", None, None).await.status, 200);
    let doc = http(a, "GET", "/openapi.json", None, None).await;
    assert_eq!(doc.status, 200);
    let doc = doc.json();
    for p in ["/v1/patients", "/v1/patients/{id}/rules", "/v1/devices/{id}/enrol", "/v1/alerts/{id}/ack", "/v1/audit"] {
        assert!(doc["paths"].get(p).is_some(), "OpenAPI lacks {p}");
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());

    // 401 without or with a wrong token.
    let r = http(a, "GET", "/v1/patients", None, None).await;
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").is_some_and(|v| v.starts_with("Bearer")));
    assert_eq!(r.json()["error"], "unauthenticated");
    assert_eq!(http(a, "GET", "/v1/patients", Some("vw_0000"), None).await.status, 401);

    // Operator: register a patient (row written), bad bodies are 400/422.
    let r = http(a, "POST", "/v1/patients", Some(&ops), Some(r#"{"id":"p-3"}"#)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(count(&db, "SELECT count(*) FROM patients WHERE patient_id = 'p-3'").await, 1);
    let r = http(a, "POST", "/v1/patients", Some(&ops), Some(r#"{"id":"p-4","name":"Jane"}"#)).await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.json()["error"], "invalid");
    let r = http(a, "POST", "/v1/patients", Some(&ops), Some(r#"{"id":"#)).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["error"], "bad_request");
    assert_eq!(http(a, "POST", "/v1/patients", Some(&ops), Some(r#"{"id":"bad id!"}"#)).await.status, 422);
    // Paging.
    let page = http(a, "GET", "/v1/patients?limit=2", Some(&ops), None).await.json();
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let next = page["next"].as_str().expect("a next page");
    let page2 = http(a, "GET", &format!("/v1/patients?limit=2&after={next}"), Some(&ops), None).await.json();
    assert_eq!(page2["items"][0]["id"], "p-3");
    assert_eq!(http(a, "GET", "/v1/patients?limit=2&colour=red", Some(&ops), None).await.status, 400);

    // Operator: devices (enrol, then move to another patient).
    assert_eq!(
        http(a, "POST", "/v1/devices", Some(&ops), Some(r#"{"id":"cuff-1","kind":"bp_cuff"}"#)).await.status,
        201
    );
    let r = http(
        a,
        "POST",
        "/v1/devices/cuff-1/enrol",
        Some(&ops),
        Some(r#"{"patient":"p-1","from":"2026-01-01T00:00:00Z"}"#),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let r = http(
        a,
        "POST",
        "/v1/devices/cuff-1/enrol",
        Some(&ops),
        Some(r#"{"patient":"p-3","from":"2026-02-01T00:00:00Z"}"#),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(count(&db, "SELECT count(*) FROM enrolments WHERE device_id = 'cuff-1'").await, 2);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM enrolments WHERE device_id = 'cuff-1' AND patient_id = 'p-1' AND valid_to IS NOT NULL"
        )
        .await,
        1
    );
    assert_eq!(http(a, "POST", "/v1/devices/nope/retire", Some(&ops), Some("{}")).await.status, 404);

    // Physician: only their patients (responsible for p-1, deputy for p-2).
    let me = http(a, "GET", "/v1/me", Some(&dra), None).await.json();
    assert_eq!(me["role"], "physician");
    let mine = http(a, "GET", "/v1/patients", Some(&dra), None).await.json();
    let ids: Vec<&str> = mine["items"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["p-1", "p-2"]);
    assert_eq!(http(a, "GET", "/v1/patients/p-1", Some(&dra), None).await.status, 200);
    let r = http(a, "GET", "/v1/patients/p-9", Some(&dra), None).await;
    assert_eq!(r.status, 404, "someone else's patient must look unknown");
    let unknown = http(a, "GET", "/v1/patients/p-404", Some(&dra), None).await;
    assert_eq!((r.status, r.json()["error"].clone()), (unknown.status, unknown.json()["error"].clone()));
    assert_eq!(r.json()["message"], "unknown patient p-9");
    assert_eq!(http(a, "POST", "/v1/devices", Some(&dra), Some(r#"{"id":"x-1"}"#)).await.status, 403);
    assert_eq!(http(a, "GET", "/v1/devices", Some(&dra), None).await.status, 403);
    assert_eq!(http(a, "POST", "/v1/patients", Some(&dra), Some(r#"{"id":"p-7"}"#)).await.status, 403);
    let team = r#"{"responsible":"dr-a"}"#;
    assert_eq!(http(a, "PUT", "/v1/patients/p-9/care-team", Some(&dra), Some(team)).await.status, 403);
    assert_eq!(count(&db, "SELECT count(*) FROM alert_care_teams WHERE responsible = 'dr-a'").await, 1);
    assert_eq!(http(a, "GET", "/v1/physicians/dr-b", Some(&dra), None).await.status, 403);
    assert_eq!(http(a, "GET", "/v1/physicians/dr-a", Some(&dra), None).await.status, 200);

    // Physician: thresholds of their own patient, not of another.
    let rules = r#"{"program":"heart_failure"}"#;
    let r = http(a, "PUT", "/v1/patients/p-1/rules", Some(&dra), Some(rules)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(count(&db, "SELECT count(*) FROM patient_rules WHERE patient_id = 'p-1'").await, 1);
    assert_eq!(http(a, "PUT", "/v1/patients/p-9/rules", Some(&dra), Some(rules)).await.status, 404);
    let r = http(a, "PUT", "/v1/patients/p-1/rules", Some(&dra), Some(r#"{"program":"cardio"}"#)).await;
    assert_eq!(r.status, 422, "{}", r.body);
    // A COPD enrolment states the SpO2 target and oxygen use (issue #14 §6);
    // the refused document leaves the stored rules as they were.
    let r = http(a, "PUT", "/v1/patients/p-1/rules", Some(&dra), Some(r#"{"program":"copd"}"#)).await;
    assert!(r.status == 400 || r.status == 422, "{} {}", r.status, r.body);
    assert!(r.body.contains("oxygen_plan") && r.body.contains("88-92"), "{}", r.body);
    let stored = "SELECT count(*) FROM patient_rules WHERE patient_id = 'p-1' AND rules LIKE '%heart_failure%'";
    assert_eq!(count(&db, stored).await, 1);
    let copd = r#"{"program":"copd","oxygen_plan":{"target":"88-92","supplemental_oxygen":true}}"#;
    let r = http(a, "PUT", "/v1/patients/p-1/rules", Some(&dra), Some(copd)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(count(&db, "SELECT count(*) FROM patient_rules WHERE rules LIKE '%88-92%'").await, 1);
    // An optional reason is kept with the new version (issue #16); earlier versions stay.
    let why = r#"{"program":"heart_failure","reason":"back to the heart failure defaults"}"#;
    let r = http(a, "PUT", "/v1/patients/p-1/rules", Some(&dra), Some(why)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["version"], 3, "{}", r.body);
    let latest = "SELECT count(*) FROM patient_rules_versions WHERE patient_id = 'p-1' AND version = 3 \
                  AND author = 'dr-a' AND reason = 'back to the heart failure defaults'";
    assert_eq!(count(&db, latest).await, 1);
    assert_eq!(count(&db, "SELECT count(*) FROM patient_rules_versions WHERE patient_id = 'p-1'").await, 3);
    // The history through the API: newest first, with author and reason; others' patients 404.
    let h = http(a, "GET", "/v1/patients/p-1/rules/versions", Some(&dra), None).await;
    assert_eq!(h.status, 200, "{}", h.body);
    let versions = h.json()["versions"].as_array().cloned().unwrap_or_default();
    let numbers: Vec<i64> = versions.iter().filter_map(|v| v["version"].as_i64()).collect();
    assert_eq!(numbers, [3, 2, 1], "{}", h.body);
    assert_eq!(versions[0]["reason"], "back to the heart failure defaults");
    assert_eq!(versions[0]["author"], "dr-a");
    assert_eq!(versions[1]["program"], "copd");
    assert_eq!(http(a, "GET", "/v1/patients/p-9/rules/versions", Some(&dra), None).await.status, 404);

    // Alerts: list (own only), snooze, acknowledge, close; others' episodes are 404.
    let list = http(a, "GET", "/v1/alerts?status=open", Some(&dra), None).await.json();
    let eps: Vec<&str> = list["items"].as_array().unwrap().iter().map(|e| e["episode_id"].as_str().unwrap()).collect();
    assert_eq!(eps, ["ep-1"]);
    assert_eq!(http(a, "GET", "/v1/alerts", Some(&ops), None).await.json()["items"].as_array().unwrap().len(), 2);
    assert_eq!(http(a, "POST", "/v1/alerts/ep-9/ack", Some(&dra), Some("{}")).await.status, 404);
    assert_eq!(http(a, "POST", "/v1/alerts/ep-1/ack", Some(&dra), Some(r#"{"by":"dr-b"}"#)).await.status, 403);
    let r = http(a, "POST", "/v1/alerts/ep-1/snooze", Some(&dra), Some(r#"{"minutes":30}"#)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(http(a, "POST", "/v1/alerts/ep-1/snooze", Some(&dra), Some(r#"{"minutes":0}"#)).await.status, 422);
    let r = http(a, "POST", "/v1/alerts/ep-1/ack", Some(&dra), Some("{}")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        count(&db, "SELECT count(*) FROM alert_acknowledgments WHERE episode_id = 'ep-1' AND physician_id = 'dr-a'")
            .await,
        1
    );
    assert_eq!(
        http(a, "POST", "/v1/alerts/ep-9/close", Some(&ops), Some("{}")).await.status,
        422,
        "operators name `by`"
    );
    let r = http(a, "POST", "/v1/alerts/ep-1/close", Some(&dra), Some("{}")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(count(&db, "SELECT count(*) FROM alerts WHERE episode_id = 'ep-1' AND status = 'closed'").await, 1);
    assert_eq!(http(a, "POST", "/v1/alerts/ep-1/close", Some(&dra), Some("{}")).await.status, 409);
    let detail = http(a, "GET", "/v1/alerts/ep-1", Some(&dra), None).await.json();
    assert_eq!(detail["alert"]["status"], "closed");
    assert_eq!(detail["alerting"]["acks"][0]["by"], "dr-a");

    // Audit: every change with its actor; a physician sees only their patients'.
    let audit = http(a, "GET", "/v1/audit?limit=500", Some(&ops), None).await.json();
    let entries = audit["items"].as_array().unwrap();
    let has = |actor: &str, action: &str, target: &str| {
        entries.iter().any(|e| e["actor"] == actor && e["action"] == action && e["target_id"] == target)
    };
    assert!(has("token:ops", "patient.add", "p-3"), "{audit}");
    assert!(has("token:ops", "device.enrol", "cuff-1"));
    assert!(has("dr-a", "rules.set", "p-1"));
    assert!(
        has("dr-a", "alert.snooze", "ep-1") && has("dr-a", "alert.ack", "ep-1") && has("dr-a", "alert.close", "ep-1")
    );
    assert!(entries.iter().any(|e| e["action"] == "care_team.set" && e["actor"].as_str().unwrap().starts_with("cli:")));
    assert!(has(entries[0]["actor"].as_str().unwrap(), "alert.close", "ep-1"), "newest first");
    let moved = entries.iter().find(|e| e["action"] == "device.enrol" && e["patient_id"] == "p-3").unwrap();
    assert_eq!(moved["details"]["moved_from"], "p-1");
    let filtered = http(a, "GET", "/v1/audit?actor=dr-a&action=alert.ack", Some(&ops), None).await.json();
    assert_eq!(filtered["items"].as_array().unwrap().len(), 1);
    let theirs = http(a, "GET", "/v1/audit?limit=500", Some(&dra), None).await.json();
    for e in theirs["items"].as_array().unwrap() {
        assert!(e["patient_id"] != "p-9" && e["patient_id"] != "p-3", "a physician sees another patient's entry: {e}");
    }
    let ep = http(a, "GET", "/v1/audit/episodes?episode=ep-1", Some(&dra), None).await.json();
    let types: Vec<&str> = ep["items"].as_array().unwrap().iter().map(|e| e["entry_type"].as_str().unwrap()).collect();
    assert!(
        types.contains(&"acknowledged") && types.contains(&"snoozed") && types.contains(&"episode_opened"),
        "{types:?}"
    );
    let ep9 = http(a, "GET", "/v1/audit/episodes?episode=ep-9", Some(&dra), None).await.json();
    assert!(ep9["items"].as_array().unwrap().is_empty());

    // The audit trail is append-only.
    assert!(db.execute("UPDATE admin_audit SET actor = 'someone-else'", &[]).await.is_err());
    assert!(db.execute("DELETE FROM admin_audit", &[]).await.is_err());

    // A revoked token stops working at once.
    run_cli(&["api-token", "revoke", "--name", "dr-a-phone"], &env);
    assert_eq!(http(a, "GET", "/v1/me", Some(&dra), None).await.status, 401);
    api.terminate(Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_in_process_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/vitalwatch.db", dir.path().display());
    let st = vitalwatch_platform::store::open(&url, 100).await.unwrap();
    st.migrate().await.unwrap();
    let service = Arc::new(vitalwatch_admin::AdminService::open(&url, 100, 100).await.unwrap());
    let cli = vitalwatch_admin::Actor::cli();
    let (ops, _) = service.create_token(&cli, "ops", "operator", None, None).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let shutdown = vitalwatch_platform::shutdown::CancellationToken::new();
    let limits = vitalwatch_platform::http::HttpLimits { max_body_bytes: 65536, ..Default::default() };
    let server = tokio::spawn({
        let (service, shutdown) = (service.clone(), shutdown.clone());
        async move { vitalwatch_admin::http::serve(service, &limits, listener, shutdown).await }
    });
    let a = addr.as_str();

    assert_eq!(http(a, "GET", "/readyz", None, None).await.status, 200);
    assert_eq!(http(a, "GET", "/v1/patients", None, None).await.status, 401);
    let r = http(a, "PUT", "/v1/physicians/dr-s", Some(&ops), Some(r#"{"name":"Dr S","email":"s@hospital.example"}"#))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = http(a, "PUT", "/v1/physicians/dr-t", Some(&ops), Some(r#"{"name":"Dr T","email":"t@hospital.example"}"#))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(http(a, "POST", "/v1/patients", Some(&ops), Some(r#"{"id":"s-1"}"#)).await.status, 201);
    assert_eq!(http(a, "POST", "/v1/patients", Some(&ops), Some(r#"{"id":"s-1"}"#)).await.status, 200);
    let r =
        http(a, "PUT", "/v1/patients/s-1/care-team", Some(&ops), Some(r#"{"responsible":"dr-s","deputies":["dr-t"]}"#))
            .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(st.registry().await.unwrap().patients.len(), 1);
    open_episode(&url, "ep-s", "s-1").await;

    let (drs, _) = service.create_token(&cli, "dr-s", "physician", Some("dr-s"), None).await.unwrap();
    assert_eq!(http(a, "GET", "/v1/patients", Some(&drs), None).await.json()["items"][0]["id"], "s-1");
    assert_eq!(http(a, "POST", "/v1/devices", Some(&drs), Some(r#"{"id":"d-1"}"#)).await.status, 403);
    let r = http(a, "POST", "/v1/alerts/ep-s/ack", Some(&drs), Some("{}")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let audit = http(a, "GET", "/v1/audit?action=alert.ack", Some(&ops), None).await.json();
    assert_eq!(audit["items"][0]["actor"], "dr-s");
    assert_eq!(audit["items"][0]["patient_id"], "s-1");
    let ep = http(a, "GET", "/v1/audit/episodes?type=acknowledged", Some(&drs), None).await.json();
    assert_eq!(ep["items"].as_array().unwrap().len(), 1);
    let big = format!(r#"{{"id":"{}"}}"#, "x".repeat(70_000));
    assert_eq!(http(a, "POST", "/v1/patients", Some(&ops), Some(&big)).await.status, 413);

    // Append-only on SQLite too.
    let conn = rusqlite::Connection::open(dir.path().join("vitalwatch.db")).unwrap();
    assert!(conn.execute("DELETE FROM admin_audit", []).is_err());
    shutdown.cancel();
    server.await.unwrap().unwrap();
}
