//! Encryption between services (issue #13): the real binaries against a real PostgreSQL with
//! TLS on, and against a Kafka-protocol broker (tansu) behind a TLS-terminating proxy (tansu
//! 0.6 accepts `--cert/--key` but never uses them: it speaks plaintext only).
//!
//! Attacks, each refused with a clear error and nothing written:
//! - a database server whose certificate a wrong CA signed (an impostor);
//! - a certificate for another host name (a stolen certificate of another server);
//! - a server without TLS where TLS is required (a downgrade: no silent plaintext);
//! - a Kafka broker whose certificate the configured CA did not sign;
//! - a plaintext Kafka broker where TLS is required.
//!
//! Certificates come from the `openssl` command (scripts/services.sh installs it).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::common::private_pg::PrivatePostgres;
use super::common::*;

// ------------------------------------------------------------------------------ certificates

/// A CA, a server certificate it signed (for `localhost` only), and an unrelated CA.
struct Certs {
    dir: PathBuf,
}

impl Certs {
    fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    fn other_ca(&self) -> PathBuf {
        self.dir.join("other-ca.crt")
    }
    fn server_cert(&self) -> PathBuf {
        self.dir.join("server.crt")
    }
    fn server_key(&self) -> PathBuf {
        self.dir.join("server.key")
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("run openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Generates the certificates into `dir`; `None` (skip) without the openssl command outside CI.
fn make_certs(dir: &Path) -> Option<Certs> {
    if !require_program("openssl") {
        return None;
    }
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    let ca_ext = ["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"];
    for (name, cn) in [("ca", "vitalwatch test CA"), ("other-ca", "impostor CA")] {
        let subj = format!("/CN={cn}");
        let (key, crt) = (format!("{name}.key"), format!("{name}.crt"));
        let mut args = vec!["req", "-x509", "-days", "2", "-subj", &subj, "-keyout", &key, "-out", &crt];
        args.extend(ec);
        args.extend(ca_ext);
        openssl(dir, &args);
    }
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let mut args = vec!["req", "-subj", "/CN=localhost", "-keyout", "server.key", "-out", "server.csr"];
    args.extend(ec);
    openssl(dir, &args);
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ],
    );
    Some(Certs { dir: dir.to_owned() })
}

// ------------------------------------------------------------------------------ PostgreSQL

/// A private cluster with `ssl = on` and the server certificate (for `localhost`).
fn tls_postgres(certs: &Certs) -> Option<PrivatePostgres> {
    PrivatePostgres::start_with(|dir| {
        for f in ["server.crt", "server.key"] {
            std::fs::copy(certs.dir.join(f), dir.join(f)).expect("copy certificate");
        }
        // PostgreSQL refuses a key others can read.
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir.join("server.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
        vec![
            "ssl=on".into(),
            format!("ssl_cert_file={}", dir.join("server.crt").display()),
            format!("ssl_key_file={}", dir.join("server.key").display()),
        ]
    })
}

/// `vitalwatch migrate` with these database settings: (success, stderr).
fn migrate(url: &str, extra: &[(&str, String)]) -> (bool, String) {
    let mut cmd = Command::new(bin());
    cmd.arg("migrate").env("VITALWATCH_DATABASE__URL", url).env("VITALWATCH_DATABASE__CONNECT_TIMEOUT_MS", "3000");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run vitalwatch migrate");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// Tables in the public schema of `db` (over a local plaintext connection, as the operator).
async fn tables(admin_url: &str) -> i64 {
    let (c, conn) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls).await.expect("admin connection");
    tokio::spawn(conn);
    c.query_one("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'", &[])
        .await
        .unwrap()
        .get(0)
}

fn tls_env(mode: &str, ca: &Path) -> Vec<(&'static str, String)> {
    vec![("VITALWATCH_DATABASE__SSLMODE", mode.to_owned()), ("VITALWATCH_DATABASE__SSLROOTCERT", path_str(ca))]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_verify_full_stores_and_reads_over_tls_and_the_server_sees_it_encrypted() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(certs) = make_certs(tmp.path()) else { return };
    let Some(pg) = tls_postgres(&certs) else { return };
    let port = pg.port;
    let url = format!("postgres://postgres@localhost:{port}/postgres?application_name=vw-verify-full");

    // The real binary: migrations over verify-full (chain and host name checked).
    let (ok, out) = migrate(&url, &tls_env("verify-full", &certs.ca()));
    assert!(ok, "migrate over sslmode=verify-full failed: {out}");
    assert!(tables(&pg.url).await > 5, "migrations did not create the tables");

    // The store every role uses: write and read back over verify-full, and while its
    // connection is open, the server lists it as encrypted.
    let tls_url = format!("{url}&sslmode=verify-full&sslrootcert={}", path_str(&certs.ca()));
    let st = vitalwatch_platform::store::open(&tls_url, 100).await.expect("open store over TLS");
    let patient = vitalwatch_schemas::PatientId::new("tls-patient").unwrap();
    let obs = heart_rate("tls-patient", chrono::Utc::now(), 61.0);
    st.insert_observations(std::slice::from_ref(&obs)).await.expect("insert over TLS");
    let back = st.observations(&patient, 10).await.expect("read over TLS");
    assert_eq!(back.len(), 1, "the row written over TLS reads back");
    let (c, conn) = tokio_postgres::connect(&pg.url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let ssl: Vec<(bool, String)> = c
        .query(
            "SELECT s.ssl, coalesce(s.version, '') FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = 'vw-verify-full'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(!ssl.is_empty(), "the store's connection is not listed");
    assert!(ssl.iter().all(|(on, v)| *on && v.starts_with("TLSv1.")), "not encrypted: {ssl:?}");

    // sslmode=require (no CA): encrypted too (but see docs/operations.md: no MITM protection).
    let req = format!("postgres://postgres@127.0.0.1:{port}/postgres?application_name=vw-require&sslmode=require");
    let client = vitalwatch_platform::store::postgres::connect_client(&req, Default::default()).await.unwrap();
    let on: bool =
        client.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await.unwrap().get(0);
    assert!(on, "sslmode=require connected without TLS");
}

/// A manual heart-rate reading.
fn heart_rate(patient: &str, t: chrono::DateTime<chrono::Utc>, v: f64) -> vitalwatch_schemas::Observation {
    use vitalwatch_schemas::{Code, Observation, ObservationId, PatientId, Source, TimeSource};
    let code = Code::HeartRate;
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
        trace_id: "tls".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_impostor_wrong_host_and_downgrade_are_refused_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(certs) = make_certs(tmp.path()) else { return };
    let Some(pg) = tls_postgres(&certs) else { return };
    let port = pg.port;
    let at = |host: &str| format!("postgres://postgres@{host}:{port}/postgres");

    // An impostor: the server's certificate is not signed by the CA we trust.
    let (ok, out) = migrate(&at("localhost"), &tls_env("verify-full", &certs.other_ca()));
    assert!(!ok, "migrate trusted a certificate from another CA");
    assert!(out.contains("sslmode=verify-full") && out.contains("invalid peer certificate"), "unclear error: {out}");
    assert!(out.contains("UnknownIssuer"), "unclear error: {out}");

    // The right CA, but the certificate names another host (localhost, not 127.0.0.1).
    let (ok, out) = migrate(&at("127.0.0.1"), &tls_env("verify-full", &certs.ca()));
    assert!(!ok, "migrate accepted a certificate for another host name");
    assert!(out.contains("invalid peer certificate") && out.contains("not valid for name"), "unclear error: {out}");
    assert_eq!(tables(&pg.url).await, 0, "a refused connection wrote something");

    // verify-ca checks the chain only: the same connection is accepted (documented difference).
    let (ok, out) = migrate(&at("127.0.0.1"), &tls_env("verify-ca", &certs.ca()));
    assert!(ok, "verify-ca with the right CA failed: {out}");

    // A downgrade: a server (an impostor, or a misconfigured one) that offers no TLS;
    // sslmode=require must not fall back to plaintext.
    let Some(plain) = PrivatePostgres::start() else { return };
    let at = |host: &str| format!("postgres://postgres@{host}:{}/postgres", plain.port);
    let before = tables(&plain.url).await;
    for mode in ["require", "verify-full"] {
        let url = format!("{}?sslmode={mode}&sslrootcert={}", at("localhost"), path_str(&certs.ca()));
        let (ok, out) = migrate(&url, &[]);
        assert!(!ok, "sslmode={mode} connected to a server without TLS");
        assert!(out.contains("server does not support TLS"), "unclear error for sslmode={mode}: {out}");
    }
    assert_eq!(tables(&plain.url).await, before, "a refused connection changed the schema");
}

// ------------------------------------------------------------------------------ Kafka

/// A TLS-terminating proxy: accepts TLS on `127.0.0.1:port` with the server certificate and
/// forwards the plaintext to `upstream`. Counts handshakes that completed and that failed.
struct TlsProxy {
    port: u16,
    handshakes: Arc<AtomicUsize>,
    failures: Arc<AtomicUsize>,
    /// Why handshakes failed (rustls errors, e.g. the client's alert).
    errors: Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn tls_proxy(certs: &Certs, listener: tokio::net::TcpListener, upstream: String) -> TlsProxy {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(certs.server_cert()).unwrap().collect::<Result<Vec<_>, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_file(certs.server_key()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let port = listener.local_addr().unwrap().port();
    let (handshakes, failures) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (h, f, errs) = (handshakes.clone(), failures.clone(), errors.clone());
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, upstream, h, f, errs) =
                (acceptor.clone(), upstream.clone(), h.clone(), f.clone(), errs.clone());
            tokio::spawn(async move {
                let mut tls = match acceptor.accept(tcp).await {
                    Ok(tls) => tls,
                    Err(e) => {
                        errs.lock().unwrap().push(e.to_string());
                        f.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                };
                h.fetch_add(1, Ordering::SeqCst);
                let Ok(mut up) = tokio::net::TcpStream::connect(&upstream).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
            });
        }
    });
    TlsProxy { port, handshakes, failures, errors, task }
}

/// A plain TCP forwarder to `upstream` that records the first byte each client sends
/// (0x16: a TLS handshake record).
async fn sniffer(upstream: String) -> (u16, Arc<std::sync::Mutex<Vec<u8>>>, tokio::task::JoinHandle<()>) {
    use tokio::io::AsyncReadExt as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let first = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = first.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let (upstream, seen) = (upstream.clone(), seen.clone());
            tokio::spawn(async move {
                let mut b = [0u8; 1];
                if tcp.read_exact(&mut b).await.is_err() {
                    return;
                }
                seen.lock().unwrap().push(b[0]);
                let Ok(mut up) = tokio::net::TcpStream::connect(&upstream).await else { return };
                use tokio::io::AsyncWriteExt as _;
                if up.write_all(&b).await.is_ok() {
                    let _ = tokio::io::copy_bidirectional(&mut tcp, &mut up).await;
                }
            });
        }
    });
    (port, first, task)
}

/// A private tansu on a free port that tells clients to come back through `advertised`.
struct Tansu {
    child: std::process::Child,
    port: u16,
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn private_tansu(advertised: &str) -> Option<Tansu> {
    let exe = service_var("VW_TANSU_BIN", "");
    if !required(!exe.is_empty() && Path::new(&exe).exists(), "the tansu binary (VW_TANSU_BIN, scripts/services.sh)") {
        return None;
    }
    let port = free_port();
    let child = Command::new(&exe)
        .args(["broker", "--listener-url", &format!("tcp://127.0.0.1:{port}")])
        .args(["--advertised-listener-url", advertised, "--storage-engine", "memory://tansu/"])
        .env_remove("SCHEMA_REGISTRY")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("CLUSTER_ID")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start tansu");
    let t = Tansu { child, port };
    let until = std::time::Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < until, "tansu did not listen on {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(t)
}

/// True when this build can do Kafka TLS; under CI a build without it fails the test.
fn kafka_tls_built() -> bool {
    required(
        vitalwatch_platform::bus::kafka_security::tls_available(),
        "a build with `--features vitalwatch/kafka-tls` (scripts/test.sh builds with it)",
    )
}

fn kafka_tls_env(run: &str, db: &str, brokers: String, ca: &Path) -> Vec<(String, String)> {
    let mut env = service_env(run, db, "mqtt://127.0.0.1:1");
    env.retain(|(k, _)| k != "VITALWATCH_BUS__BROKERS");
    env.push(("VITALWATCH_BUS__BROKERS".into(), brokers));
    env.push(("VITALWATCH_BUS__SECURITY_PROTOCOL".into(), "ssl".into()));
    env.push(("VITALWATCH_BUS__SSL_CA_LOCATION".into(), path_str(ca)));
    env
}

async fn stored(db: &str) -> i64 {
    let (c, conn) = tokio_postgres::connect(db, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    c.query_one("SELECT count(*) FROM observations", &[]).await.map(|r| r.get(0)).unwrap_or(-1)
}

/// Produces `n` observations of `patient` to `topic` over TLS through the proxy.
async fn produce_over_tls(brokers: &str, ca: &Path, topic: &str, patient: &str, n: usize) {
    use prost::Message as _;
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let p: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("security.protocol", "ssl")
        .set("ssl.ca.location", path_str(ca))
        .create()
        .expect("TLS producer");
    let now = chrono::Utc::now();
    for i in 0..n {
        let t = now - chrono::Duration::seconds(i as i64 + 1);
        let o = vitalwatch_schemas::proto::Observation {
            patient_id: patient.to_owned(),
            code: "8867-4".into(),
            value: 70.0,
            unit: "/min".into(),
            time_unix_micros: t.timestamp_micros(),
            received_at_unix_micros: now.timestamp_micros(),
            source: vitalwatch_schemas::proto::Source::Manual as i32,
            time_source: vitalwatch_schemas::proto::TimeSource::App as i32,
            original_value: 70.0,
            original_unit: "/min".into(),
            msg_id: format!("tls-{i}"),
            trace_id: "0123456789abcdef".into(),
            ..Default::default()
        };
        p.send(FutureRecord::to(topic).key(patient).payload(&o.encode_to_vec()), Duration::from_secs(20))
            .await
            .expect("produce over TLS");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_over_tls_persist_consumes_and_an_impostor_or_plaintext_broker_is_refused() {
    if !require("PostgreSQL", &pg_url()) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let Some(certs) = make_certs(tmp.path()) else { return };
    let run = unique("kafkatls");
    let db = fresh_database(&pg_url(), &run).await;
    run_cli(&["migrate"], &[("VITALWATCH_DATABASE__URL".into(), db.clone())]);

    if !kafka_tls_built() {
        // This build cannot do TLS: asking for it is refused at start, never plaintext.
        let env = kafka_tls_env(&run, &db, "localhost:1".into(), &certs.ca());
        let out = Command::new(bin()).arg("persist").envs(env).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains("--features kafka-tls"), "{err}");
        return;
    }
    // The proxy's port first: tansu advertises it (clients reconnect to the advertised address).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_port = listener.local_addr().unwrap().port();
    let Some(tansu) = private_tansu(&format!("tcp://localhost:{proxy_port}")) else { return };
    let proxy = tls_proxy(&certs, listener, format!("127.0.0.1:{}", tansu.port)).await;
    let brokers = format!("localhost:{}", proxy.port);
    let topic = format!("{run}.obs");

    // 1. The real persist, over TLS with the right CA: consumes and stores everything.
    let env = kafka_tls_env(&run, &db, brokers.clone(), &certs.ca());
    let log = tmp.path().join("persist.log");
    let mut persist = Proc::spawn_logged("persist", &["persist"], &env, &log);
    produce_over_tls(&brokers, &certs.ca(), &topic, "tls-pat", 20).await;
    let all = wait_until(Duration::from_secs(60), || async { stored(&db).await == 20 }).await;
    assert!(all, "persist over TLS stored {} of 20; log: {}", stored(&db).await, read(&log));
    assert!(proxy.handshakes.load(Ordering::SeqCst) > 0, "nothing went through the TLS proxy");
    persist.terminate(Duration::from_secs(30));

    // 2. An impostor broker: the same proxy, but persist trusts another CA. Refused (handshake
    //    fails), nothing consumed, and the log says why.
    let before = stored(&db).await;
    let failures = proxy.failures.load(Ordering::SeqCst);
    produce_over_tls(&brokers, &certs.ca(), &topic, "tls-pat-2", 5).await;
    // Same topics and group as the first persist: with a working connection it would store
    // the 5 new records.
    let env = kafka_tls_env(&run, &db, brokers.clone(), &certs.other_ca());
    let log2 = tmp.path().join("persist-impostor.log");
    let mut impostor = Proc::spawn_logged("persist", &["persist"], &env, &log2);
    let refused =
        wait_until(Duration::from_secs(20), || async { proxy.failures.load(Ordering::SeqCst) > failures }).await;
    let why = proxy.errors.lock().unwrap().join("; ");
    assert!(refused, "persist did not refuse the untrusted certificate; log: {}", read(&log2));
    // The client aborts the handshake with a TLS alert naming the reason.
    assert!(why.contains("UnknownCA") || why.contains("BadCertificate"), "handshake failed otherwise: {why}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(stored(&db).await, before, "persist consumed through an untrusted broker");
    impostor.kill9();

    // 3. A plaintext broker where TLS is required (tansu itself, no proxy; a forwarder records
    //    what the client sends): it opens with a TLS handshake, never with plaintext Kafka.
    let (plain_port, first_bytes, _sniff) = sniffer(format!("127.0.0.1:{}", tansu.port)).await;
    let mut env = kafka_tls_env(&run, &db, format!("localhost:{plain_port}"), &certs.ca());
    env.push(("VITALWATCH_PERSIST__GROUP".into(), format!("{run}-plain")));
    let log3 = tmp.path().join("persist-plain.log");
    let mut plain = Proc::spawn_logged("persist", &["persist"], &env, &log3);
    let tried = wait_until(Duration::from_secs(20), || async { !first_bytes.lock().unwrap().is_empty() }).await;
    assert!(tried, "persist never connected; log: {}", read(&log3));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let bytes = first_bytes.lock().unwrap().clone();
    assert!(bytes.iter().all(|b| *b == 0x16), "a connection did not start with a TLS handshake: {bytes:02x?}");
    assert_eq!(stored(&db).await, before, "persist consumed over plaintext");
    plain.kill9();
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}
