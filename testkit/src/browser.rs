//! A real browser for the web workspace's tests: Debian's Chromium, headless, driven over
//! WebDriver (`chromedriver` on a free port, the `fantoccini` client). One browser per test, each
//! with a fresh profile; chromedriver (and the Chromium it started) are killed on drop.
#![allow(unsafe_code)] // kill(2) of the chromedriver process group; the block has a SAFETY note

use std::fmt;
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::error::{CmdError, ErrorStatus};
use fantoccini::{Client, ClientBuilder, Locator};

use crate::env::{free_port, required, service_var};

/// Desktop viewport (width, height) for [`Browser::screenshot`].
pub const DESKTOP: (u32, u32) = (1280, 800);
/// Phone viewport (width, height) for [`Browser::screenshot`].
pub const PHONE: (u32, u32) = (390, 844);

/// How long [`Browser::wait_for`] and friends wait.
pub const WAIT: Duration = Duration::from_secs(15);

/// How often [`Browser::wait_for`] and friends look again.
pub const POLL: Duration = Duration::from_millis(50);

/// The Chromium flags every session gets (as root, in a closed network): no sandbox, no GPU, no
/// QUIC, no first-run UI and no background connections to Google's hosts.
pub const CHROMIUM_ARGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
];

/// A browser action that failed, with what was asked (selector, URL).
#[derive(Debug)]
pub struct BrowserError {
    /// What was attempted (`click "#login"`).
    pub action: String,
    /// WebDriver's answer.
    pub message: String,
}

impl fmt::Display for BrowserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "browser: {} failed: {}", self.action, self.message)
    }
}

impl std::error::Error for BrowserError {}

fn err(action: impl Into<String>) -> impl FnOnce(CmdError) -> BrowserError {
    let action = action.into();
    move |e| BrowserError { action, message: e.to_string() }
}

/// Whether the page changed under the command: a navigation interrupted it, or the element it
/// found is gone (stale: replaced by a navigation or by the page's own script). chromedriver
/// answers an interrupted command with the bare string "aborted by navigation" (not a W3C error
/// object: fantoccini's `NotW3C`), or with an error whose message names it.
fn page_changed_under(e: &CmdError) -> bool {
    match e {
        CmdError::NotW3C(serde_json::Value::String(s)) => s.contains("aborted by navigation"),
        // chromedriver 156 also wraps it: "timeout\nfrom aborted by navigation: loader has
        // changed while resolving nodes", seen while a page kept replacing itself.
        CmdError::Standard(w) => {
            w.error == ErrorStatus::StaleElementReference || w.message.contains("aborted by navigation")
        }
        _ => false,
    }
}

/// Runs `look` until it succeeds, every [`POLL`] for at most `wait`, as long as it fails only
/// because the element is not there yet or the page changed under it ([`page_changed_under`]).
/// Any other failure ends the wait at once.
async fn keep_looking<T, F, Fut>(action: String, wait: Duration, mut look: F) -> Result<T, BrowserError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, CmdError>>,
{
    // tokio's clock, which the unit tests pause.
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match look().await {
            Ok(found) => return Ok(found),
            Err(e) if e.is_no_such_element() || page_changed_under(&e) => {
                if tokio::time::Instant::now() >= deadline {
                    return Err(BrowserError { action, message: format!("still failing after {wait:?}: {e}") });
                }
                tokio::time::sleep(POLL).await;
            }
            Err(e) => return Err(BrowserError { action, message: e.to_string() }),
        }
    }
}

/// The Chromium binary (`VW_CHROMIUM`, default `/usr/bin/chromium`).
pub fn chromium_path() -> PathBuf {
    PathBuf::from(service_var("VW_CHROMIUM", "/usr/bin/chromium"))
}

/// The chromedriver binary (`VW_CHROMEDRIVER`, default `/usr/bin/chromedriver`).
pub fn chromedriver_path() -> PathBuf {
    PathBuf::from(service_var("VW_CHROMEDRIVER", "/usr/bin/chromedriver"))
}

/// A headless Chromium session over WebDriver.
pub struct Browser {
    client: Option<Client>,
    driver: Child,
    profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium session (desktop viewport,
    /// `Accept-Language: en`). Chromium or chromedriver missing: under `CI=true` this panics (the
    /// test fails, [`required`]); elsewhere `None` (skip).
    pub async fn start() -> Option<Browser> {
        Self::start_with_lang("en").await
    }

    /// Like [`start`](Self::start), with `lang` (`fr`, `en-GB`, ...) as the browser's language
    /// (its `Accept-Language` and `navigator.language`).
    pub async fn start_with_lang(lang: &str) -> Option<Browser> {
        Self::start_inner(lang, |driver| driver.to_owned()).await
    }

    /// Like [`start`](Self::start) (in English), with the session's WebDriver commands sent to
    /// the URL that `route` gives for chromedriver's (`http://127.0.0.1:<port>`): a test's proxy
    /// in front of chromedriver, which can answer a command as chromedriver does only rarely (a
    /// lookup "aborted by navigation") to test that the helpers outlast it.
    pub async fn start_through(route: impl FnOnce(&str) -> String) -> Option<Browser> {
        Self::start_inner("en", route).await
    }

    async fn start_inner(lang: &str, route: impl FnOnce(&str) -> String) -> Option<Browser> {
        let (chromium, chromedriver) = (chromium_path(), chromedriver_path());
        let ok = chromium.is_file() && chromedriver.is_file();
        if !required(ok, "chromium and chromedriver are not installed; run `bash scripts/services.sh`") {
            return None;
        }
        let profile = tempfile::tempdir().expect("tempdir");
        let log_path = profile.path().join("chromedriver.log");
        let log = std::fs::File::create(&log_path).expect("create chromedriver.log");
        let port = free_port();
        // Its own process group: drop kills chromedriver and the Chromium processes it started.
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("spawn chromedriver");
        let mut browser = Browser { client: None, driver, profile };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on port {port} within 20 s: {}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let user_data = browser.profile.path().join("chromium-profile");
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|a| (*a).to_owned()).collect();
        args.push(format!("--user-data-dir={}", user_data.display()));
        args.push(format!("--window-size={},{}", DESKTOP.0, DESKTOP.1));
        args.push(format!("--lang={lang}"));
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".to_owned(),
            serde_json::json!({
                "binary": chromium.display().to_string(),
                "args": args,
                "prefs": { "intl.accept_languages": lang },
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&route(&format!("http://127.0.0.1:{port}")))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "chromedriver could not start a Chromium session: {e}\n{}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                )
            });
        browser.client = Some(client);
        Some(browser)
    }

    /// This browser's temporary folder (Chromium's `--user-data-dir` is under it; removed on drop).
    pub fn profile_dir(&self) -> &Path {
        self.profile.path()
    }

    /// The WebDriver client, for what the helpers below do not cover.
    pub fn client(&self) -> &Client {
        self.client.as_ref().expect("browser session is open")
    }

    /// Loads `url` (waits for the page's load event).
    pub async fn goto(&self, url: &str) -> Result<(), BrowserError> {
        self.client().goto(url).await.map_err(err(format!("goto {url}")))
    }

    /// The current URL.
    pub async fn current_url(&self) -> Result<String, BrowserError> {
        self.client().current_url().await.map(|u| u.to_string()).map_err(err("current_url"))
    }

    /// The page's HTML source.
    pub async fn source(&self) -> Result<String, BrowserError> {
        self.client().source().await.map_err(err("source"))
    }

    /// The page's `<title>`.
    pub async fn title(&self) -> Result<String, BrowserError> {
        self.client().title().await.map_err(err("title"))
    }

    /// The first element matching the CSS selector (now, no waiting).
    pub async fn find(&self, css: &str) -> Result<Element, BrowserError> {
        self.client().find(Locator::Css(css)).await.map_err(err(format!("find {css:?}")))
    }

    /// Every element matching the CSS selector (now; may be empty).
    pub async fn find_all(&self, css: &str) -> Result<Vec<Element>, BrowserError> {
        self.client().find_all(Locator::Css(css)).await.map_err(err(format!("find_all {css:?}")))
    }

    /// Waits until an element matches the CSS selector; returns it. A lookup that finds nothing,
    /// or that a navigation of the page interrupts, is made again every [`POLL`] for [`WAIT`].
    /// One lookup can take longer than that: chromedriver holds it while a navigation is pending.
    pub async fn wait_for(&self, css: &str) -> Result<Element, BrowserError> {
        keep_looking(format!("wait_for {css:?}"), WAIT, || self.client().find(Locator::Css(css))).await
    }

    /// Waits (at most [`WAIT`]) until the current URL starts with `prefix`; returns it.
    pub async fn wait_for_url(&self, prefix: &str) -> Result<String, BrowserError> {
        let action = || format!("wait_for_url {prefix:?}");
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let url = match self.client().current_url().await {
                Ok(url) => url.to_string(),
                Err(e) if page_changed_under(&e) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(BrowserError {
                            action: action(),
                            message: format!("still failing after {WAIT:?}: {e}"),
                        });
                    }
                    tokio::time::sleep(POLL).await;
                    continue;
                }
                Err(e) => return Err(err(action())(e)),
            };
            if url.starts_with(prefix) {
                return Ok(url);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(BrowserError { action: action(), message: format!("still at {url} after {WAIT:?}") });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Types `text` into the field matching the CSS selector (waiting for it), after clearing it.
    pub async fn fill(&self, css: &str, text: &str) -> Result<(), BrowserError> {
        let e = self.wait_for(css).await?;
        e.clear().await.map_err(err(format!("clear {css:?}")))?;
        e.send_keys(text).await.map_err(err(format!("type into {css:?}")))
    }

    /// Clicks the element matching the CSS selector (waiting for it).
    pub async fn click(&self, css: &str) -> Result<(), BrowserError> {
        let e = self.wait_for(css).await?;
        e.click().await.map_err(err(format!("click {css:?}")))
    }

    /// The visible text of the element matching the CSS selector (waiting for it).
    /// Reading has no effect on the page, so a navigation that replaces the element between
    /// the lookup and the read is outlasted as in [`wait_for`](Self::wait_for).
    pub async fn text(&self, css: &str) -> Result<String, BrowserError> {
        keep_looking(format!("text of {css:?}"), WAIT, || async {
            self.client().find(Locator::Css(css)).await?.text().await
        })
        .await
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) in the page; returns its value.
    pub async fn eval(&self, script: &str, args: Vec<serde_json::Value>) -> Result<serde_json::Value, BrowserError> {
        self.client().execute(script, args).await.map_err(err("execute script"))
    }

    /// Sets the viewport (the page's `innerWidth` x `innerHeight`, not the window) to
    /// `width` x `height` CSS pixels.
    pub async fn set_viewport(&self, width: u32, height: u32) -> Result<(), BrowserError> {
        let c = self.client();
        c.set_window_size(width, height).await.map_err(err(format!("set window size {width}x{height}")))?;
        // The window may be larger than its viewport (headless Chromium has no toolbars, but say
        // so rather than assume): grow the window by the difference once.
        let inner = self.eval("return [window.innerWidth, window.innerHeight];", vec![]).await?;
        let (w, h) = (inner[0].as_u64().unwrap_or(0) as u32, inner[1].as_u64().unwrap_or(0) as u32);
        if (w, h) != (width, height) && w > 0 && h > 0 {
            let (ww, wh) = (width + width.saturating_sub(w), height + height.saturating_sub(h));
            c.set_window_size(ww, wh).await.map_err(err(format!("set window size {ww}x{wh}")))?;
        }
        Ok(())
    }

    /// Sets the viewport to `width` x `height` ([`DESKTOP`], [`PHONE`]) and writes a PNG of it to
    /// `path` (folders created).
    pub async fn screenshot(&self, path: &Path, width: u32, height: u32) -> Result<(), BrowserError> {
        self.set_viewport(width, height).await?;
        let png = self.client().screenshot().await.map_err(err("screenshot"))?;
        let write = || -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(path, &png)
        };
        write().map_err(|e| BrowserError { action: format!("write {}", path.display()), message: e.to_string() })
    }

    /// Whether the page scrolls horizontally (its content is wider than the viewport).
    pub async fn scrolls_horizontally(&self) -> Result<bool, BrowserError> {
        let v = self
            .eval("return document.documentElement.scrollWidth > document.documentElement.clientWidth;", vec![])
            .await?;
        Ok(v.as_bool().unwrap_or(false))
    }

    /// Ends the session (Chromium exits) and stops chromedriver.
    pub async fn close(mut self) {
        if let Some(c) = self.client.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), c.close()).await;
        }
        self.kill();
    }

    fn kill(&mut self) {
        if let Ok(pgid) = i32::try_from(self.driver.id()) {
            // SAFETY: kill(2) of the process group this browser started (chromedriver is its
            // leader, Chromium its children); no memory is touched.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use fantoccini::error::WebDriver;

    use super::*;

    fn no_such_element() -> CmdError {
        CmdError::Standard(WebDriver::new(ErrorStatus::NoSuchElement, "no such element: #done"))
    }

    /// chromedriver's answer to a lookup a navigation interrupted, as CI received it.
    fn aborted() -> CmdError {
        CmdError::NotW3C(serde_json::Value::String("aborted by navigation".into()))
    }

    /// Runs `keep_looking` over scripted answers; returns its result and how many looks it took.
    async fn look_through(answers: Vec<Result<u32, CmdError>>, wait: Duration) -> (Result<u32, BrowserError>, usize) {
        let mut answers = VecDeque::from(answers);
        let mut looks = 0;
        let result = keep_looking("wait_for \"#done\"".into(), wait, || {
            looks += 1;
            let next = answers.pop_front().unwrap_or_else(|| Err(no_such_element()));
            async move { next }
        })
        .await;
        (result, looks)
    }

    #[test]
    fn interruptions_and_stale_elements_are_recognised_and_other_failures_are_not() {
        assert!(page_changed_under(&aborted()));
        let unknown =
            WebDriver::new(ErrorStatus::UnknownError, "unknown error: aborted by navigation: loader has changed");
        assert!(page_changed_under(&CmdError::Standard(unknown)));
        assert!(page_changed_under(&CmdError::Standard(WebDriver::new(ErrorStatus::StaleElementReference, "stale"))));
        assert!(!page_changed_under(&no_such_element()));
        assert!(!page_changed_under(&CmdError::NotW3C(serde_json::Value::String("session deleted".into()))));
        let wrapped = WebDriver::new(
            ErrorStatus::Timeout,
            "timeout\nfrom aborted by navigation: loader has changed while resolving nodes",
        );
        assert!(page_changed_under(&CmdError::Standard(wrapped)));
        let other = WebDriver::new(ErrorStatus::UnknownError, "unknown error: cannot determine loading status");
        assert!(!page_changed_under(&CmdError::Standard(other)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_outlasts_lookups_a_navigation_interrupted() {
        let (found, looks) =
            look_through(vec![Err(aborted()), Err(no_such_element()), Err(aborted()), Ok(7)], WAIT).await;
        assert_eq!(found.unwrap(), 7);
        assert_eq!(looks, 4);
    }

    #[tokio::test(start_paused = true)]
    async fn any_other_failure_ends_the_wait_at_once() {
        let invalid = CmdError::Standard(WebDriver::new(ErrorStatus::InvalidSelector, "invalid selector: ##"));
        let (result, looks) = look_through(vec![Err(aborted()), Err(invalid), Ok(7)], WAIT).await;
        let e = result.unwrap_err();
        assert_eq!(looks, 2);
        assert_eq!(e.action, "wait_for \"#done\"");
        assert!(e.message.contains("invalid selector"), "{}", e.message);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_ends_with_the_last_failure_once_its_time_is_up() {
        let wait = Duration::from_secs(1);
        let (result, looks) = look_through(vec![Err(aborted())], wait).await;
        let e = result.unwrap_err();
        assert!(e.message.starts_with("still failing after 1s: "), "{}", e.message);
        assert!(e.message.contains("no such element"), "{}", e.message);
        // One look at once, then one every POLL until the deadline.
        let expected = (wait.as_millis() / POLL.as_millis()) as usize + 1;
        assert!((expected..=expected + 1).contains(&looks), "{looks} looks, expected about {expected}");
    }
}
