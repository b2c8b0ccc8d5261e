//! The headless browser loads a page from a real HTTP server and clicks, and goes through a real
//! OpenID provider's authorization endpoint (code flow, PKCE S256) to a redirect URI.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::Digest;
use vitalwatch_testkit::{
    Browser, DESKTOP, OidcProvider, PHONE, ProviderConfig, TestClient, TestUser, spawn_html_server,
};

const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Smoke page</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<script src="/app.js" defer></script></head>
<body><h1>Smoke</h1>
<p id="out">not clicked</p>
<button id="go" type="button">Go</button>
<form action="/submitted" method="get"><label for="q">Query</label>
<input id="q" name="q"><button id="send" type="submit">Send</button></form>
</body></html>"#;

const SCRIPT: &str = r#"document.getElementById('go').addEventListener('click', () => {
  document.getElementById('out').textContent = 'clicked at ' + window.innerWidth + 'px';
});"#;

/// PNG width and height from its IHDR chunk.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let w = u32::from_be_bytes([png[16], png[17], png[18], png[19]]);
    let h = u32::from_be_bytes([png[20], png[21], png[22], png[23]]);
    (w, h)
}

#[tokio::test]
async fn browser_loads_a_page_clicks_submits_and_screenshots() {
    let Some(browser) = Browser::start().await else { return };
    let (base, seen) = spawn_html_server(vec![
        ("/".to_owned(), PAGE.to_owned()),
        ("/app.js".to_owned(), SCRIPT.to_owned()),
        ("/submitted".to_owned(), "<!doctype html><title>Done</title><h1 id=done>Done</h1>".to_owned()),
    ])
    .await;

    browser.goto(&format!("{base}/")).await.unwrap();
    assert_eq!(browser.title().await.unwrap(), "Smoke page");
    assert_eq!(browser.text("#out").await.unwrap(), "not clicked");
    browser.click("#go").await.unwrap();
    assert_eq!(browser.text("#out").await.unwrap(), "clicked at 1280px");

    // Screenshots at the two sizes the workspace is checked at: the PNG is the viewport.
    let dir = tempfile::tempdir().unwrap();
    for (name, (w, h)) in [("desktop", DESKTOP), ("phone", PHONE)] {
        let path = dir.path().join(format!("{name}.png"));
        browser.screenshot(&path, w, h).await.unwrap();
        assert_eq!(png_size(&std::fs::read(&path).unwrap()), (w, h), "{name} screenshot size");
        assert!(!browser.scrolls_horizontally().await.unwrap(), "{name}: the page scrolls sideways");
    }
    browser.click("#go").await.unwrap();
    assert_eq!(browser.text("#out").await.unwrap(), "clicked at 390px");

    // A form submitted by the browser reaches the server with what was typed.
    browser.fill("#q", "héllo wörld").await.unwrap();
    browser.click("#send").await.unwrap();
    browser.wait_for("#done").await.unwrap();
    assert!(browser.current_url().await.unwrap().starts_with(&format!("{base}/submitted?")));
    let requests = seen.lock().unwrap().clone();
    let submitted = requests.iter().find(|r| r.path == "/submitted").expect("the form reached the server");
    assert_eq!(submitted.query_pairs(), vec![("q".to_owned(), "héllo wörld".to_owned())]);
    assert!(requests.iter().any(|r| r.path == "/app.js"), "the page's script was fetched");
    browser.close().await;
}

/// A page that loads the next hop 10 ms after it is parsed, for `RUN_MS` from the first hop
/// (carried in the query), then `/done`: a page that keeps navigating, however slow the
/// machine.
const HOP: &str = r#"<!doctype html><title>Hop</title><p>hop</p><script>
const t0 = Number(new URLSearchParams(location.search).get('t'));
setTimeout(() => location.replace(Date.now() - t0 < RUN_MS ? '/hop?t=' + t0 : '/done'), 10);
</script>"#;
const RUN_MS: u64 = 2_500;

/// The same defect as `wait_for_and_text_look_again_when_chromedriver_aborts_a_lookup`, on
/// chromedriver's own answers: a lookup made while the page hops every 10 ms is "aborted by
/// navigation" about once in 23 here, so this test fails only now and then on a wait that gives
/// up on it (1 run in 3 of a 150-hop version). A wait must outlast any run of navigations
/// within its time (15 s; each run here lasts 2.5 s).
#[tokio::test]
async fn wait_for_outlasts_a_run_of_navigations() {
    const ROUNDS: usize = 3;
    let Some(browser) = Browser::start().await else { return };
    let (base, seen) = spawn_html_server(vec![
        ("/hop".to_owned(), HOP.replace("RUN_MS", &RUN_MS.to_string())),
        ("/done".to_owned(), "<!doctype html><title>Done</title><h1 id=done>Done</h1>".to_owned()),
    ])
    .await;
    for round in 0..ROUNDS {
        let t0 = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
        browser.goto(&format!("{base}/hop?t={t0}")).await.unwrap();
        let done = browser.wait_for("#done").await.unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(done.text().await.unwrap(), "Done");
    }
    let requests = seen.lock().unwrap().clone();
    let hops = requests.iter().filter(|r| r.path == "/hop").count();
    assert!(hops >= ROUNDS * 5, "the page kept navigating during the waits: {hops} hops in {ROUNDS} rounds");
    assert_eq!(requests.iter().filter(|r| r.path == "/done").count(), ROUNDS);
    eprintln!("{hops} hops in {ROUNDS} rounds");
    browser.close().await;
}

/// chromedriver's answer to a lookup that a navigation interrupted, as CI received it
/// (fantoccini: `NotW3C(String("aborted by navigation"))`).
const ABORTED: &str = r#"{"value":"aborted by navigation"}"#;

/// A real HTTP proxy in front of chromedriver (at `driver`): it forwards every WebDriver
/// command, except that while `abort` is above zero it answers an element lookup
/// (`POST /session/<id>/element`) as chromedriver does when a navigation interrupts it, and
/// counts one down. Returns the URL to send the commands to.
fn spawn_webdriver_proxy(driver: &str, abort: Arc<AtomicUsize>) -> String {
    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    let driver = driver.to_owned();
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (driver, client, abort) = (driver.clone(), client.clone(), abort.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (driver, client, abort) = (driver.clone(), client.clone(), abort.clone());
                    async move {
                        // POST /session/<id>/element: a lookup from the page (not inside an element).
                        let segments: Vec<&str> = req.uri().path().split('/').collect();
                        let lookup = req.method() == hyper::Method::POST
                            && matches!(segments[..], ["", "session", _, "element"]);
                        if lookup && abort.fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1)).is_ok() {
                            return hyper::Response::builder()
                                .status(500)
                                .header("content-type", "application/json; charset=utf-8")
                                .body(Full::new(Bytes::from_static(ABORTED.as_bytes())));
                        }
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                        let mut forward = hyper::Request::builder()
                            .method(parts.method)
                            .uri(format!("{driver}{}", parts.uri.path_and_query().map_or("/", |p| p.as_str())));
                        for (k, v) in &parts.headers {
                            if k != hyper::header::HOST {
                                forward = forward.header(k, v);
                            }
                        }
                        let answer = match client.request(forward.body(Full::new(body)).unwrap()).await {
                            Ok(answer) => answer,
                            Err(e) => {
                                return hyper::Response::builder()
                                    .status(502)
                                    .header("content-type", "text/plain")
                                    .body(Full::new(Bytes::from(format!("proxy: chromedriver did not answer: {e}"))));
                            }
                        };
                        let (parts, body) = answer.into_parts();
                        let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                        Ok::<_, hyper::http::Error>(hyper::Response::from_parts(parts, Full::new(body)))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    format!("http://{addr}")
}

/// Regression (CI of 2026-12-07), deterministic: chromedriver answered a lookup that the
/// submit's navigation interrupted with "aborted by navigation", and `wait_for` gave up on that
/// answer instead of looking again. Here a proxy gives that answer to the first lookups; the
/// waits and reads must outlast them and still find the page's element.
#[tokio::test]
async fn wait_for_and_text_look_again_when_chromedriver_aborts_a_lookup() {
    let abort = Arc::new(AtomicUsize::new(0));
    let Some(browser) = Browser::start_through(|driver| spawn_webdriver_proxy(driver, abort.clone())).await else {
        return;
    };
    let (base, _seen) = spawn_html_server(vec![(
        "/done".to_owned(),
        "<!doctype html><title>Done</title><h1 id=done>Done</h1>".to_owned(),
    )])
    .await;
    browser.goto(&format!("{base}/done")).await.unwrap();

    abort.store(3, SeqCst);
    let done = browser.wait_for("#done").await.unwrap();
    assert_eq!(abort.load(SeqCst), 0, "the three aborted answers were given");
    assert_eq!(done.text().await.unwrap(), "Done");

    abort.store(2, SeqCst);
    assert_eq!(browser.text("#done").await.unwrap(), "Done");
    assert_eq!(abort.load(SeqCst), 0, "the two aborted answers were given");

    // A lookup that is refused for another reason still ends the wait at once.
    let started = std::time::Instant::now();
    let e = browser.wait_for("h1[").await.unwrap_err();
    assert!(e.message.contains("invalid selector"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(5), "an invalid selector is not waited on");
    browser.close().await;
}

#[tokio::test]
async fn browser_signs_in_at_the_oidc_provider_and_lands_on_the_redirect_uri_with_a_code() {
    let (rp, seen) = spawn_html_server(vec![(
        "/cb".to_owned(),
        "<!doctype html><title>Back</title><h1 id=back>Back</h1>".to_owned(),
    )])
    .await;
    let redirect = format!("{rp}/cb");
    let config = ProviderConfig {
        clients: vec![TestClient::new("vitalwatch-web", "rp-secret", &redirect)],
        users: vec![
            TestUser::new("dr-martin", "correct horse")
                .claim("email", "martin@example.org")
                .claim("name", "Dr Martin")
                .claim("groups", vec!["physicians"]),
        ],
        // Another site than the callback's 127.0.0.1, as a real provider is.
        host: Some("127.0.0.2".into()),
        ..ProviderConfig::default()
    };
    let Some(provider) = OidcProvider::start(&config) else { return };
    assert!(provider.issuer.starts_with("http://127.0.0.2:"), "{}", provider.issuer);
    let Some(browser) = Browser::start().await else { return };

    let verifier = "smoke-test-code-verifier-0123456789-abcdefghijklmnop";
    let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    let auth = format!(
        "{}/auth?response_type=code&client_id=vitalwatch-web&redirect_uri={}&scope=openid%20email%20profile%20groups\
         &state=st-123&nonce=n-456&code_challenge={challenge}&code_challenge_method=S256",
        provider.issuer,
        form_urlencoded::byte_serialize(redirect.as_bytes()).collect::<String>(),
    );
    browser.goto(&auth).await.unwrap();

    // A wrong password is refused on the provider's page.
    browser.fill("#username", "dr-martin").await.unwrap();
    browser.fill("#password", "wrong").await.unwrap();
    browser.click("#login").await.unwrap();
    assert_eq!(browser.text("#error").await.unwrap(), "Invalid username or password.");
    assert!(seen.lock().unwrap().is_empty(), "no redirect after a wrong password");

    browser.fill("#username", "martin@example.org").await.unwrap();
    browser.fill("#password", "correct horse").await.unwrap();
    browser.click("#login").await.unwrap();
    let landed = browser.wait_for_url(&redirect).await.unwrap();
    browser.wait_for("#back").await.unwrap();

    // (Chromium also asks the callback's host for /favicon.ico.)
    let requests: Vec<_> = seen.lock().unwrap().iter().filter(|r| r.path == "/cb").cloned().collect();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].header("sec-fetch-site"), Some("cross-site"), "the redirect back crosses sites");
    let q = requests[0].query_pairs();
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let code = get("code").expect("a code on the redirect");
    assert!(code.len() >= 20, "{code}");
    assert_eq!(get("state").as_deref(), Some("st-123"));
    assert_eq!(get("iss").as_deref(), Some(provider.issuer.as_str()));
    assert!(landed.contains(&code));

    // The code is real: the token endpoint exchanges it once, with the verifier, for an ID token.
    let body = format!(
        "grant_type=authorization_code&code={code}&redirect_uri={}&code_verifier={verifier}",
        form_urlencoded::byte_serialize(redirect.as_bytes()).collect::<String>()
    );
    let basic = base64::engine::general_purpose::STANDARD.encode("vitalwatch-web:rp-secret");
    let answer = post(&provider.host, provider.port, "/token", &basic, &body).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}\n{}", provider.log());
    let json: serde_json::Value = serde_json::from_str(answer.split_once("\r\n\r\n").unwrap().1).unwrap();
    let id_token = json["id_token"].as_str().expect("an id_token");
    let payload = id_token.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    assert_eq!(claims["sub"], "dr-martin");
    assert_eq!(claims["nonce"], "n-456");
    assert_eq!(claims["aud"], "vitalwatch-web");
    assert_eq!(claims["email"], "martin@example.org");
    assert_eq!(claims["groups"], serde_json::json!(["physicians"]));
    // A second exchange of the same code is refused.
    let again = post(&provider.host, provider.port, "/token", &basic, &body).await;
    assert!(again.starts_with("HTTP/1.1 400"), "{again}");
    browser.close().await;
}

/// A form POST with HTTP Basic authentication over a plain socket: the raw response.
async fn post(host: &str, port: u16, path: &str, basic: &str, body: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect((host, port)).await.unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Basic {basic}\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await.unwrap().unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// Processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                found.push(format!("{}: {cmd}", entry.file_name().to_string_lossy()));
            }
        }
    }
    found
}

#[tokio::test]
async fn a_dropped_browser_leaves_no_chromium_behind() {
    let Some(browser) = Browser::start().await else { return };
    let (base, _) = spawn_html_server(vec![("/".to_owned(), PAGE.to_owned())]).await;
    browser.goto(&format!("{base}/")).await.unwrap();
    let profile = browser.profile_dir().display().to_string();
    assert!(!processes_mentioning(&profile).is_empty(), "Chromium runs with its profile under {profile}");
    drop(browser); // no close(): a failing test unwinds like this
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = processes_mentioning(&profile);
        if left.is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "left behind: {left:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
