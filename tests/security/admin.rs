//! Attacks on the admin API (`vitalwatch api`) and on the acknowledgment
//! server (`/ack`, `/sms/inbound` of the alerting role, here inside
//! `vitalwatch run`): tokens of every role on every route, another
//! physician's ids, expired and revoked tokens, slow and oversized requests,
//! and error bodies with the database down. Each attempt is refused and
//! leaves the database unchanged.

use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::common::episodes::{open_episode, pg};
use crate::common::http::{Resp, parse, request};
use crate::common::private_pg::PrivatePostgres;
use crate::common::*;

/// Header read timeout and whole-request timeout given to the servers under test (seconds).
const HEADER_TIMEOUT: u64 = 2;
const REQUEST_TIMEOUT: u64 = 3;
/// Slack for a loaded CI machine: the outcome (connection closed, 408) is
/// asserted, not the time; the bound only keeps a broken server from hanging the test.
const MARGIN: Duration = Duration::from_secs(8);

/// One request over a fresh connection with a raw `Authorization` header value and a JSON body.
async fn http(addr: &str, method: &str, path: &str, auth: Option<&str>, body: Option<&str>) -> Resp {
    let mut headers = Vec::new();
    if let Some(a) = auth {
        headers.push(("Authorization", a.to_owned()));
    }
    if body.is_some() || method != "GET" {
        headers.push(("Content-Type", "application/json".to_owned()));
    }
    request(addr, method, path, &headers, body).await
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

/// Every table an admin request could change, as (rows, md5 of the rows); API
/// tokens without `last_used_at` (which a valid token's use updates by design).
async fn snapshot(db: &tokio_postgres::Client) -> Vec<(String, i64, String)> {
    let tables = [
        "patients",
        "devices",
        "enrolments",
        "backfill_grants",
        "patient_rules",
        "alerts",
        "alert_physicians",
        "alert_care_teams",
        "alert_episodes",
        "alert_outbox",
        "alert_acknowledgments",
        "alert_audit",
        "episode_closes",
        "admin_audit",
        "(SELECT token_id, name, token_hash, role, physician_id, created_at, created_by, revoked_at FROM api_tokens)",
    ];
    let mut out = Vec::new();
    for t in tables {
        let sql = format!("SELECT count(*), coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), '') FROM {t} x");
        let r = db.query_one(&sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        out.push((t.to_owned(), r.get(0), r.get(1)));
    }
    out
}

/// `vitalwatch api` on `url` with short timeouts; returns it and its address.
async fn start_api(url: &str, extra: &[(&str, String)]) -> (Proc, String, Vec<(String, String)>) {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut env = vec![
        ("VITALWATCH_DATABASE__URL".to_owned(), url.to_owned()),
        ("VITALWATCH_OPS__LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
        ("VITALWATCH_API__LISTEN".to_owned(), addr.clone()),
        ("VITALWATCH_API__MAX_BODY_BYTES".to_owned(), "65536".to_owned()),
        ("VITALWATCH_API__HEADER_READ_TIMEOUT_SECS".to_owned(), HEADER_TIMEOUT.to_string()),
        ("VITALWATCH_API__REQUEST_TIMEOUT_SECS".to_owned(), REQUEST_TIMEOUT.to_string()),
    ];
    env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    let api = Proc::spawn("api", &["api"], &env);
    assert!(
        wait_until(Duration::from_secs(30), || async { TcpStream::connect(&addr).await.is_ok() }).await,
        "the API did not listen on {addr}"
    );
    (api, addr, env)
}

/// A database with two physicians and a patient, device and open episode each:
/// dr-a has p-1 (ep-1, cuff-1), dr-b has p-9 (ep-9, cuff-9); dr-c is both deputies.
async fn seeded_database(prefix: &str) -> (String, Vec<(String, String)>) {
    let url = fresh_database(&pg_url(), &unique(prefix)).await;
    let env = vec![("VITALWATCH_DATABASE__URL".to_owned(), url.clone())];
    run_cli(&["migrate"], &env);
    run_cli(&["physician", "add", "dr-a", "--name", "Dr A", "--email", "a@hospital.example"], &env);
    run_cli(&["physician", "add", "dr-b", "--name", "Dr B", "--email", "b@hospital.example"], &env);
    run_cli(&["physician", "add", "dr-c", "--name", "Dr C", "--email", "c@hospital.example"], &env);
    run_cli(&["patient", "add", "p-1", "p-9"], &env);
    run_cli(&["care-team", "set", "p-1", "--responsible", "dr-a", "--deputy", "dr-c"], &env);
    run_cli(&["care-team", "set", "p-9", "--responsible", "dr-b", "--deputy", "dr-c"], &env);
    for (d, p) in [("cuff-1", "p-1"), ("cuff-9", "p-9")] {
        run_cli(&["device", "add", d, "--kind", "bp_cuff"], &env);
        run_cli(&["device", "enrol", d, p, "--from", "2026-01-01T00:00:00Z"], &env);
    }
    open_episode(&url, "ep-1", "p-1").await;
    open_episode(&url, "ep-9", "p-9").await;
    (url, env)
}

fn create_token(env: &[(String, String)], name: &str, role: &str, extra: &[&str]) -> String {
    let mut args = vec!["api-token", "create", "--name", name, "--role", role];
    args.extend_from_slice(extra);
    run_cli(&args, env).trim().to_owned()
}

/// One route of the admin API with a request that would succeed for an operator.
struct Route {
    method: &'static str,
    path: &'static str,
    body: Option<&'static str>,
    /// Status for an operator token.
    operator: u16,
    /// Status for dr-a's token on these ids (dr-b's patient, device, episode).
    physician: u16,
}

const fn r(
    method: &'static str,
    path: &'static str,
    body: Option<&'static str>,
    operator: u16,
    physician: u16,
) -> Route {
    Route { method, path, body, operator, physician }
}

/// Every route of `admin/src/http/mod.rs`, aimed at dr-b's ids, in an order in
/// which the operator's requests all succeed. The physician column is the
/// policy table (`admin/src/policy.rs`): a role that may not do something gets
/// 403; a physician asking about another physician's patient gets the 404 of
/// an unknown one; lists are filtered to their own patients.
const ROUTES: &[Route] = &[
    r("GET", "/v1/me", None, 200, 200),
    r("GET", "/v1/patients", None, 200, 200),
    r("GET", "/v1/patients/p-9", None, 200, 404),
    r("PUT", "/v1/patients/p-9/rules", Some(r#"{"program":"heart_failure"}"#), 200, 404),
    r("GET", "/v1/patients/p-9/rules", None, 200, 404),
    r("GET", "/v1/patients/p-9/care-team", None, 200, 404),
    r("GET", "/v1/devices", None, 200, 403),
    r("GET", "/v1/physicians", None, 200, 403),
    r("GET", "/v1/physicians/dr-b", None, 200, 403),
    r("GET", "/v1/alerts", None, 200, 200),
    r("GET", "/v1/alerts/ep-9", None, 200, 404),
    r("GET", "/v1/audit?patient=p-9", None, 200, 200),
    r("GET", "/v1/audit/episodes?episode=ep-9", None, 200, 200),
    r("GET", "/v1/tokens", None, 200, 403),
    r("GET", "/v1/reports/activity?month=2026-11&patient=p-9", None, 200, 404),
    r("GET", "/v1/reports/activity?month=2026-11&physician=dr-b", None, 200, 404),
    r("POST", "/v1/alerts/ep-9/snooze", Some(r#"{"by":"dr-b","minutes":30}"#), 200, 404),
    r("POST", "/v1/alerts/ep-9/ack", Some(r#"{"by":"dr-b"}"#), 200, 404),
    r("POST", "/v1/alerts/ep-9/close", Some(r#"{"by":"dr-b"}"#), 200, 404),
    r("POST", "/v1/patients", Some(r#"{"id":"p-new"}"#), 201, 403),
    r("POST", "/v1/devices", Some(r#"{"id":"cuff-new","kind":"bp_cuff"}"#), 201, 403),
    r("POST", "/v1/devices/cuff-9/unenrol", Some("{}"), 204, 403),
    r("POST", "/v1/devices/cuff-9/backfill", Some(r#"{"patient":"p-9","hours":24,"reason":"sync"}"#), 204, 403),
    r("POST", "/v1/devices/cuff-9/enrol", Some(r#"{"patient":"p-9"}"#), 204, 403),
    r("POST", "/v1/devices/cuff-9/retire", Some("{}"), 204, 403),
    r("PUT", "/v1/physicians/dr-b", Some(r#"{"name":"Dr B","email":"b2@hospital.example"}"#), 200, 403),
    r("PUT", "/v1/patients/p-9/care-team", Some(r#"{"responsible":"dr-a","deputies":["dr-c"]}"#), 200, 403),
];

/// Tokens of every role on every route: the policy table's status for each,
/// 401 for no, malformed, expired and revoked tokens, and nothing changes in
/// the database through any refused attempt. A physician's lists never show
/// another physician's patient or episode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_on_every_route_and_physician_scoping() {
    if !require("PostgreSQL", &pg_url()) {
        return;
    }
    let (url, env) = seeded_database("vw_sec_admin_routes").await;
    let ops = create_token(&env, "ops", "operator", &[]);
    let dra = create_token(&env, "dr-a-phone", "physician", &["--physician", "dr-a"]);
    let revoked = create_token(&env, "old-ops", "operator", &[]);
    run_cli(&["api-token", "revoke", "--name", "old-ops"], &env);
    let soon = (Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let expired = create_token(&env, "short-lived", "operator", &["--expires-at", &soon]);
    let (mut api, addr, _) = start_api(&url, &[]).await;
    let a = addr.as_str();
    let db = pg(&url).await;
    assert!(
        wait_until(Duration::from_secs(10), || async {
            http(a, "GET", "/v1/me", Some(&bearer(&expired)), None).await.status == 401
        })
        .await,
        "a token past its expiry still works"
    );

    // Unauthenticated probes and documents.
    for p in ["/healthz", "/readyz", "/openapi.json"] {
        assert_eq!(http(a, "GET", p, None, None).await.status, 200, "{p}");
    }

    let before = snapshot(&db).await;
    let refused: Vec<(String, Option<String>, &str)> = vec![
        ("no token".into(), None, "unauthenticated"),
        ("basic auth".into(), Some("Basic b3BzOm9wcw==".into()), "unauthenticated"),
        ("not a vw_ token".into(), Some(bearer("abc.def.ghi")), "unauthenticated"),
        ("unknown vw_ token".into(), Some(bearer(&format!("vw_{}", "0".repeat(64)))), "unauthenticated"),
        ("oversized token".into(), Some(bearer(&format!("vw_{}", "a".repeat(4000)))), "unauthenticated"),
        ("token without scheme".into(), Some(ops.clone()), "unauthenticated"),
        ("revoked token".into(), Some(bearer(&revoked)), "unauthenticated"),
        ("expired token".into(), Some(bearer(&expired)), "token_expired"),
    ];
    for route in ROUTES {
        for (what, auth, code) in &refused {
            let res = http(a, route.method, route.path, auth.as_deref(), route.body).await;
            assert_eq!(res.status, 401, "{what}: {} {} -> {} {}", route.method, route.path, res.status, res.body);
            assert_eq!(res.json()["error"], *code, "{what}: {} {}", route.method, route.path);
        }
        let res = http(a, route.method, route.path, Some(&bearer(&dra)), route.body).await;
        assert_eq!(res.status, route.physician, "physician dr-a: {} {} -> {}", route.method, route.path, res.body);
        if res.status == 200 {
            assert!(
                !res.body.contains("p-9") && !res.body.contains("ep-9"),
                "physician dr-a sees dr-b's ids through {} {}: {}",
                route.method,
                route.path,
                res.body
            );
        }
        // An unknown id looks the same as someone else's.
        if route.physician == 404 {
            let other = route.path.replace("p-9", "p-404").replace("ep-9", "ep-404");
            let unknown = http(a, route.method, &other, Some(&bearer(&dra)), route.body).await;
            assert_eq!(unknown.status, 404, "{} {other}", route.method);
            assert_eq!(unknown.json()["error"], res.json()["error"]);
        }
    }
    // A fallback path needs no token to be 404 and reveals nothing.
    assert_eq!(http(a, "GET", "/v1/nope", None, None).await.status, 404);
    let after = snapshot(&db).await;
    for (b, af) in before.iter().zip(&after) {
        assert_eq!(b, af, "a refused request changed {}", b.0);
    }

    // The operator may do everything.
    for route in ROUTES {
        let res = http(a, route.method, route.path, Some(&bearer(&ops)), route.body).await;
        assert_eq!(res.status, route.operator, "operator: {} {} -> {}", route.method, route.path, res.body);
    }
    // The physician's own patient works (the positive control of the 404s above).
    assert_eq!(http(a, "GET", "/v1/patients/p-1", Some(&bearer(&dra)), None).await.status, 200);
    assert_eq!(http(a, "GET", "/v1/alerts/ep-1", Some(&bearer(&dra)), None).await.status, 200);
    api.terminate(Duration::from_secs(10));
}

/// Tokens expire (default and per token), an expired token is refused with
/// `token_expired` and changes nothing, and use is recorded in `last_used_at`
/// (at most once a minute), shown by `api-token list` and `GET /v1/tokens`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_expire_and_record_their_last_use() {
    if !require("PostgreSQL", &pg_url()) {
        return;
    }
    let (url, env) = seeded_database("vw_sec_admin_tokens").await;
    let ops = create_token(&env, "ops", "operator", &[]);
    let soon = (Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let short = create_token(&env, "short-lived", "operator", &["--expires-at", &soon]);
    let past = (Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let mut cmd = std::process::Command::new(bin());
    cmd.args(["api-token", "create", "--name", "stale", "--role", "operator", "--expires-at", &past]);
    for (k, v) in &env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "a token expiring in the past was created");
    let db = pg(&url).await;
    // The default expiry: 90 days.
    let days: f64 = db
        .query_one(
            "SELECT extract(epoch FROM expires_at - created_at)::float8 / 86400 FROM api_tokens WHERE name = 'ops'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!((days - 90.0).abs() < 0.01, "default expiry {days} days");

    let (mut api, addr, _) = start_api(&url, &[]).await;
    let a = addr.as_str();
    let last_used = |name: &'static str| {
        let db = &db;
        async move {
            db.query_one("SELECT last_used_at FROM api_tokens WHERE name = $1", &[&name])
                .await
                .unwrap()
                .get::<_, Option<chrono::DateTime<Utc>>>(0)
        }
    };
    assert_eq!(last_used("ops").await, None);
    assert_eq!(http(a, "GET", "/v1/me", Some(&bearer(&ops)), None).await.status, 200);
    assert!(
        wait_until(Duration::from_secs(5), || async { last_used("ops").await.is_some() }).await,
        "last_used_at not set after a call"
    );
    let first = last_used("ops").await;
    assert_eq!(http(a, "GET", "/v1/patients", Some(&bearer(&ops)), None).await.status, 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(last_used("ops").await, first, "last_used_at is written at most once a minute");

    // The short-lived token works, then expires; once expired it changes nothing.
    assert!(
        wait_until(Duration::from_secs(10), || async {
            http(a, "GET", "/v1/me", Some(&bearer(&short)), None).await.status == 401
        })
        .await,
        "a token past its expiry still works"
    );
    let before = snapshot(&db).await;
    let used_before = last_used("short-lived").await;
    let res = http(a, "POST", "/v1/patients", Some(&bearer(&short)), Some(r#"{"id":"p-expired"}"#)).await;
    assert_eq!((res.status, res.json()["error"].as_str()), (401, Some("token_expired")), "{}", res.body);
    assert_eq!(before, snapshot(&db).await, "an expired token changed the database");
    assert_eq!(last_used("short-lived").await, used_before);

    // Expiry and last use are listed (CLI and API), secrets never.
    let list = run_cli(&["api-token", "list"], &env);
    let line = list.lines().find(|l| l.starts_with("ops\t")).unwrap_or_else(|| panic!("{list}"));
    assert!(line.contains("expires ") && line.contains("last used "), "{line}");
    assert!(list.lines().any(|l| l.starts_with("short-lived\t") && l.contains("expired")), "{list}");
    assert!(!list.contains(&ops));
    let tokens = http(a, "GET", "/v1/tokens", Some(&bearer(&ops)), None).await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    let items = tokens.json()["items"].as_array().cloned().unwrap_or_default();
    let me = items.iter().find(|t| t["name"] == "ops").unwrap_or_else(|| panic!("{}", tokens.body));
    assert!(me["expires_at"].is_string() && me["last_used_at"].is_string(), "{me}");
    assert!(!tokens.body.contains(&ops) && !tokens.body.contains("token_hash"));
    api.terminate(Duration::from_secs(10));
}

/// Sends `head` then the bytes of `slow` one at a time every `every`, until the
/// server closes the connection or answers; returns what it answered and when.
async fn dribble(
    addr: &str,
    head: &str,
    slow: &[u8],
    every: Duration,
    give_up: Duration,
) -> Option<(Duration, Vec<u8>)> {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let started = Instant::now();
    s.write_all(head.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut i = 0;
    while started.elapsed() < give_up {
        let mut buf = [0u8; 4096];
        match tokio::time::timeout(every, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some((started.elapsed(), got)),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => {
                if i < slow.len() && s.write_all(&slow[i..=i]).await.is_err() {
                    return Some((started.elapsed(), got));
                }
                i += 1;
            }
        }
    }
    None
}

/// Slow-loris on headers: the server closes the connection once the header
/// read timeout has passed.
async fn assert_slow_headers_cut(addr: &str, what: &str) {
    let head = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n");
    let slow = "X-Slow: ".bytes().chain(std::iter::repeat_n(b'a', 500)).collect::<Vec<_>>();
    let limit = Duration::from_secs(HEADER_TIMEOUT) + MARGIN;
    let closed = dribble(addr, &head, &slow, Duration::from_millis(250), limit).await;
    assert!(closed.is_some(), "{what}: a client sending headers one byte at a time kept its connection for {limit:?}");
}

/// Slow body: a 408 once the request timeout has passed.
async fn assert_slow_body_cut(addr: &str, path: &str, auth: Option<&str>, what: &str) {
    let mut head = format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 1000\r\n");
    if let Some(a) = auth {
        head.push_str(&format!("Authorization: {a}\r\nContent-Type: application/json\r\n"));
    } else {
        head.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
    }
    head.push_str("\r\n");
    let slow = vec![b' '; 1000];
    let limit = Duration::from_secs(REQUEST_TIMEOUT) + MARGIN;
    let answer = dribble(addr, &head, &slow, Duration::from_millis(250), limit).await;
    let (_, raw) =
        answer.unwrap_or_else(|| panic!("{what}: a body sent one byte at a time held the request for {limit:?}"));
    let res = parse(&raw);
    assert_eq!(res.status, 408, "{what}: {}", String::from_utf8_lossy(&raw));
}

/// Oversized, slow-header and slow-body requests on the admin API and on the
/// acknowledgment server (`/ack`, `/sms/inbound`): 413, connection closed,
/// 408; and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_oversized_requests_are_cut_off() {
    if !require("PostgreSQL", &pg_url()) {
        return;
    }
    // The admin API.
    let (url, env) = seeded_database("vw_sec_admin_slow").await;
    let ops = create_token(&env, "ops", "operator", &[]);
    let (mut api, addr, _) = start_api(&url, &[]).await;
    let a = addr.as_str();
    let db = pg(&url).await;
    let before = snapshot(&db).await;
    let big = format!(r#"{{"id":"{}"}}"#, "x".repeat(70_000));
    assert_eq!(http(a, "POST", "/v1/patients", Some(&bearer(&ops)), Some(&big)).await.status, 413);
    let big_rules = format!(r#"{{"program":"copd","note":"{}"}}"#, "x".repeat(70_000));
    assert_eq!(http(a, "PUT", "/v1/patients/p-1/rules", Some(&bearer(&ops)), Some(&big_rules)).await.status, 413);
    assert_slow_headers_cut(a, "admin API").await;
    assert_slow_body_cut(a, "/v1/patients", Some(&bearer(&ops)), "admin API").await;
    // The server still answers after the attacks.
    assert_eq!(http(a, "GET", "/v1/me", Some(&bearer(&ops)), None).await.status, 200);
    assert_eq!(before, snapshot(&db).await, "a cut-off request changed the database");
    api.terminate(Duration::from_secs(10));

    // The acknowledgment server, inside `vitalwatch run`.
    let dir = tempfile::tempdir().unwrap();
    let data = path_str(dir.path());
    let ack = format!("127.0.0.1:{}", free_port());
    let mqtt = format!("127.0.0.1:{}", free_port());
    let env = vec![
        ("VITALWATCH_ALERTING__HTTP_ADDR".to_owned(), ack.clone()),
        ("VITALWATCH_API__LISTEN".to_owned(), format!("127.0.0.1:{}", free_port())),
        ("VITALWATCH_OPS__LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
        ("VITALWATCH_API__HEADER_READ_TIMEOUT_SECS".to_owned(), HEADER_TIMEOUT.to_string()),
        ("VITALWATCH_API__REQUEST_TIMEOUT_SECS".to_owned(), REQUEST_TIMEOUT.to_string()),
    ];
    let mut run = Proc::spawn("run", &["run", "--data-dir", &data, "--mqtt-listen", &mqtt], &env);
    assert!(
        wait_until(Duration::from_secs(60), || async { TcpStream::connect(&ack).await.is_ok() }).await,
        "the acknowledgment server did not listen on {ack}"
    );
    let k = ack.as_str();
    let form = format!("t={}", "x".repeat(70_000));
    for path in ["/ack", "/sms/inbound"] {
        let form_type = [("Content-Type", "application/x-www-form-urlencoded".to_owned())];
        let r = request(k, "POST", path, &form_type, Some(&form)).await;
        assert_eq!(r.status, 413, "{path}: {r:?}");
    }
    assert_slow_headers_cut(k, "acknowledgment server").await;
    assert_slow_body_cut(k, "/ack", None, "acknowledgment server /ack").await;
    assert_slow_body_cut(k, "/sms/inbound", None, "acknowledgment server /sms/inbound").await;
    assert_eq!(http(k, "GET", "/healthz", None, None).await.status, 200);
    run.terminate(Duration::from_secs(30));
}

/// With the database down, no error body names the database user, host,
/// port or name (only a generic message and an error id, which the log has
/// with the details); the same for the API's `/readyz` and the ops `/readyz`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_down_error_bodies_name_no_database_detail() {
    let Some(mut pg_server) = PrivatePostgres::start() else { return };
    let dbname = "vw_secret_dbname";
    pg(&pg_server.url).await.batch_execute(&format!("CREATE DATABASE {dbname}")).await.unwrap();
    let url = format!("postgres://postgres@127.0.0.1:{}/{dbname}", pg_server.port);
    let env = vec![("VITALWATCH_DATABASE__URL".to_owned(), url.clone())];
    run_cli(&["migrate"], &env);
    let ops = create_token(&env, "ops", "operator", &[]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("api.log");
    let addr = format!("127.0.0.1:{}", free_port());
    let ops_listen = format!("127.0.0.1:{}", free_port());
    let env = vec![
        ("VITALWATCH_DATABASE__URL".to_owned(), url.clone()),
        ("VITALWATCH_OPS__LISTEN".to_owned(), ops_listen.clone()),
        ("VITALWATCH_API__LISTEN".to_owned(), addr.clone()),
        ("VITALWATCH_DATABASE__CONNECT_TIMEOUT_MS".to_owned(), "2000".to_owned()),
    ];
    let mut api = Proc::spawn_logged("api", &["api"], &env, &log);
    assert!(
        wait_until(Duration::from_secs(30), || async { TcpStream::connect(&addr).await.is_ok() }).await,
        "the API did not listen on {addr}"
    );
    let a = addr.as_str();
    assert_eq!(http(a, "GET", "/v1/me", Some(&bearer(&ops)), None).await.status, 200);

    pg_server.stop();
    let port = pg_server.port.to_string();
    let secrets = ["postgres", "127.0.0.1", "localhost", port.as_str(), dbname, "5432"];
    let check = |what: &str, status: u16, body: &str| {
        let mut text = body.to_owned();
        if let Ok(v) = serde_json::from_str::<Value>(body)
            && let Some(id) = v["error_id"].as_str()
        {
            text = text.replace(id, "");
        }
        for s in secrets {
            assert!(!text.contains(s), "{what} ({status}) names {s:?}: {body}");
        }
    };
    let unknown = format!("vw_{}", "1".repeat(64));
    let mut ids = Vec::new();
    for (method, path, auth, body) in [
        ("GET", "/v1/me", Some(bearer(&unknown)), None),
        ("GET", "/v1/patients", Some(bearer(&ops)), None),
        ("POST", "/v1/patients", Some(bearer(&ops)), Some(r#"{"id":"p-1"}"#)),
        ("GET", "/v1/alerts/ep-1", Some(bearer(&ops)), None),
        ("GET", "/readyz", None, None),
    ] {
        let res = http(a, method, path, auth.as_deref(), body).await;
        assert!(res.status >= 500, "{method} {path} with the database down: {} {}", res.status, res.body);
        check(&format!("{method} {path}"), res.status, &res.body);
        if path.starts_with("/v1") {
            let v = res.json();
            assert_eq!(v["error"], "unavailable", "{}", res.body);
            ids.push(v["error_id"].as_str().unwrap_or_else(|| panic!("no error_id: {}", res.body)).to_owned());
        }
    }
    let (status, body) = get(&ops_listen, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    check("ops /readyz", status, &body);
    // The log has each error id with the details.
    let logged = std::fs::read_to_string(&log).unwrap();
    for id in &ids {
        let line = logged
            .lines()
            .find(|l| l.contains(id.as_str()))
            .unwrap_or_else(|| panic!("{id} not in the log:\n{logged}"));
        assert!(line.contains("error"), "{line}");
    }
    api.kill9();
}
