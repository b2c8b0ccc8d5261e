//! A real OpenID Connect provider for tests: panva's `oidc-provider` (OpenID Certified) run by
//! `node testkit/oidc/provider.mjs` from the install `scripts/services.sh` makes
//! (`VW_OIDC_PROVIDER`), one private instance per test on a free port.
//!
//! Authorization code flow with PKCE (S256, required), RS256 ID tokens (ES256 per client), a
//! login form (`#username`, `#password`, `#login`) a WebDriver browser fills in, or an
//! auto-login account; consent is granted for the requested scopes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::env::{require_program, required, service_var};

/// A relying party registered at the provider.
#[derive(Debug, Clone, Serialize)]
pub struct TestClient {
    /// `client_id`.
    pub client_id: String,
    /// `client_secret`.
    pub client_secret: String,
    /// Exact redirect URIs allowed.
    pub redirect_uris: Vec<String>,
    /// `client_secret_basic` (default) or `client_secret_post`.
    pub token_endpoint_auth_method: String,
    /// `RS256` (default) or `ES256`.
    pub id_token_signed_response_alg: String,
}

impl TestClient {
    /// A confidential client (`client_secret_basic`, RS256 ID tokens).
    pub fn new(client_id: &str, client_secret: &str, redirect_uri: &str) -> TestClient {
        TestClient {
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            redirect_uris: vec![redirect_uri.to_owned()],
            token_endpoint_auth_method: "client_secret_basic".to_owned(),
            id_token_signed_response_alg: "RS256".to_owned(),
        }
    }

    /// Authenticates at the token endpoint with `client_secret_post` instead.
    pub fn secret_post(mut self) -> TestClient {
        "client_secret_post".clone_into(&mut self.token_endpoint_auth_method);
        self
    }

    /// Gets its ID tokens signed with `alg` (`RS256` or `ES256`).
    pub fn id_token_alg(mut self, alg: &str) -> TestClient {
        alg.clone_into(&mut self.id_token_signed_response_alg);
        self
    }
}

/// An end-user of the provider. Every field but `password` becomes a claim of the ID token (when
/// the matching scope is asked: `email`, `profile`, `groups`, `roles`).
#[derive(Debug, Clone, Serialize)]
pub struct TestUser {
    /// Subject identifier (`sub`); also accepted as the login name.
    pub sub: String,
    /// Password for the login form.
    pub password: String,
    /// Other claims (`email`, `name`, `preferred_username`, `groups`, `roles`, ...).
    #[serde(flatten)]
    pub claims: serde_json::Map<String, serde_json::Value>,
}

impl TestUser {
    /// A user with a password and no other claims.
    pub fn new(sub: &str, password: &str) -> TestUser {
        TestUser { sub: sub.to_owned(), password: password.to_owned(), claims: serde_json::Map::new() }
    }

    /// Adds a claim (`email`, `name`, `preferred_username`, `groups`, `roles`, any other).
    pub fn claim(mut self, name: &str, value: impl Into<serde_json::Value>) -> TestUser {
        self.claims.insert(name.to_owned(), value.into());
        self
    }
}

/// What the provider knows (serialized to the JSON file `provider.mjs` reads).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProviderConfig {
    /// Registered relying parties (at least one).
    pub clients: Vec<TestClient>,
    /// End-users.
    pub users: Vec<TestUser>,
    /// Loopback address to listen on (default `127.0.0.1`). Another one (`127.0.0.2`) makes the
    /// provider another *site* than a relying party on `127.0.0.1`, as in production: its
    /// redirect back is then a cross-site navigation (`SameSite=Strict` cookies are not sent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// A user's `sub`: the login prompt is answered with that account, no form.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_login: Option<String>,
    /// ID token lifetime in seconds (default 600).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token_ttl: Option<u64>,
    /// `Some(false)`: the ID token carries only `sub` (and the protocol claims), the scopes'
    /// claims are at the userinfo endpoint (default: in the ID token).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claims_in_id_token: Option<bool>,
    /// Shifts the provider's clock by this many seconds (e.g. -3600: its tokens are already expired).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clock_offset_seconds: Option<i64>,
}

/// A running private OpenID provider; killed on drop.
pub struct OidcProvider {
    child: Child,
    /// Issuer URL (`http://<host>:PORT`), also the base of `/.well-known/openid-configuration`.
    pub issuer: String,
    /// Its address.
    pub host: String,
    /// Its port.
    pub port: u16,
    dir: tempfile::TempDir,
    _stdout: ChildStdout,
}

/// The provider script (`VW_OIDC_PROVIDER` from `scripts/services.sh`), if installed; else the
/// install in `$VW_CACHE/oidc-*/` made from this checkout's `testkit/oidc/package-lock.json` (a
/// `services.env` written by an older checkout does not name it).
pub fn provider_script() -> Option<PathBuf> {
    let installed = |p: &Path| p.is_file() && p.parent().is_some_and(|d| d.join("node_modules/oidc-provider").is_dir());
    let p = PathBuf::from(service_var("VW_OIDC_PROVIDER", ""));
    if installed(&p) {
        return Some(p);
    }
    let lock = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("oidc/package-lock.json")).ok()?;
    let cache = PathBuf::from(service_var("VW_CACHE", ""));
    std::fs::read_dir(cache)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|d| d.file_name().is_some_and(|n| n.to_string_lossy().starts_with("oidc-")))
        .filter(|d| {
            d.join(".installed").is_file() && std::fs::read(d.join("package-lock.json")).ok().as_ref() == Some(&lock)
        })
        .map(|d| d.join("provider.mjs"))
        .find(|p| installed(p))
}

impl OidcProvider {
    /// Starts one with `config` on a free port and waits until its discovery document answers.
    /// node or the provider missing: under `CI=true` this panics (the test fails, [`required`]);
    /// elsewhere `None` (skip).
    pub fn start(config: &ProviderConfig) -> Option<OidcProvider> {
        if !require_program("node") {
            return None;
        }
        let script = provider_script();
        if !required(
            script.is_some(),
            "the OpenID provider (oidc-provider) is not installed; run `bash scripts/services.sh`",
        ) {
            return None;
        }
        let script = script.unwrap_or_default();
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = dir.path().join("provider.json");
        let mut json = serde_json::to_value(config).expect("provider config to JSON");
        let host = config.host.clone().unwrap_or_else(|| "127.0.0.1".to_owned());
        json["host"] = host.as_str().into();
        json["port"] = 0.into();
        std::fs::write(&conf, serde_json::to_vec_pretty(&json).expect("JSON")).expect("write provider.json");
        let log = std::fs::File::create(dir.path().join("provider.log")).expect("create provider.log");
        let mut child = Command::new("node")
            .arg(&script)
            .arg("--config")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn node provider.mjs");
        let stdout = child.stdout.take().expect("piped stdout");
        // The first line is `LISTENING <issuer>` (read on a thread: a deadline, whatever node does).
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = tx.send((line, reader.into_inner()));
        });
        let log_path = dir.path().join("provider.log");
        let (line, stdout) = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(v) => v,
            Err(_) => {
                let _ = child.kill();
                panic!("the OpenID provider did not start within 30 s: {}", read_log(&log_path));
            }
        };
        let Some(issuer) = line.trim().strip_prefix("LISTENING ").map(str::to_owned) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the OpenID provider failed to start ({:?}): {}", line.trim(), read_log(&log_path));
        };
        let port = issuer.rsplit(':').next().and_then(|p| p.trim_end_matches('/').parse().ok()).unwrap_or(0);
        let provider = OidcProvider { child, issuer, host, port, dir, _stdout: stdout };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match provider.get("/.well-known/openid-configuration") {
                Ok((200, body)) if body.contains("\"authorization_endpoint\"") => break,
                r => assert!(
                    Instant::now() < deadline,
                    "the OpenID provider's discovery document does not answer ({r:?}): {}",
                    provider.log()
                ),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(provider)
    }

    /// Everything the provider wrote on stderr so far (why it refused a request, ...).
    pub fn log(&self) -> String {
        read_log(&self.dir.path().join("provider.log"))
    }

    /// Folder of its configuration and log (removed on drop).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A plain HTTP/1.0 GET of `path` on the provider: (status, body).
    pub fn get(&self, path: &str) -> std::io::Result<(u16, String)> {
        let mut s = TcpStream::connect((self.host.as_str(), self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: {}:{}\r\nAccept: application/json\r\n\r\n", self.host, self.port)?;
        let mut raw = String::new();
        s.read_to_string(&mut raw)?;
        let status = raw.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = raw.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
        Ok((status, body))
    }
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
