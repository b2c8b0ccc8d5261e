//! The care team's whole journey in a real browser (headless Chromium over
//! WebDriver, French), against the real workspace on SQLite with a real SMTP
//! server: a physician signs in, sees the worklist, opens a patient and reads
//! the chart, acknowledges an episode, forwards it to a specialist who answers
//! in the app (the physician is e-mailed), closes it with an outcome and a
//! note; changing the URL to another physician's patient or episode shows
//! nothing. Screenshots of each main page at desktop and phone sizes go to
//! `$VW_SCREENSHOT_DIR` (default: a temporary folder; `docs/screenshots` for
//! the README: `VW_SCREENSHOT_DIR=$PWD/docs/screenshots cargo test -p
//! vitalwatch-web --test web journey`).

use std::path::PathBuf;

use chrono::{Duration, Utc};
use vitalwatch_admin::Actor;
use vitalwatch_schemas::Code;
use vitalwatch_testkit::Browser;
use vitalwatch_testkit::browser::{DESKTOP, PHONE};

use crate::support::Engine;
use crate::worklist_pages::Site;

/// Takes a desktop and a phone screenshot of the current page, and checks the
/// phone one does not scroll sideways.
async fn shots(browser: &Browser, dir: &std::path::Path, name: &str) {
    browser.screenshot(&dir.join(format!("{name}-desktop.png")), DESKTOP.0, DESKTOP.1).await.unwrap();
    browser.screenshot(&dir.join(format!("{name}-phone.png")), PHONE.0, PHONE.1).await.unwrap();
    browser.set_viewport(PHONE.0, PHONE.1).await.unwrap();
    assert!(!browser.scrolls_horizontally().await.unwrap(), "{name} scrolls sideways on a phone");
    browser.set_viewport(DESKTOP.0, DESKTOP.1).await.unwrap();
}

#[tokio::test]
async fn a_physician_triages_reads_the_chart_asks_a_specialist_and_closes_the_episode() {
    let dir = tempfile::tempdir().unwrap();
    let Some(sink) = vitalwatch_testkit::SmtpSink::try_start(dir.path()) else { return };
    let Some(browser) = Browser::start_with_lang("fr").await else { return };
    let site = Site::start(Engine::Sqlite, Some(sink.port)).await.expect("sqlite");
    let shots_dir =
        std::env::var_os("VW_SCREENSHOT_DIR").map(PathBuf::from).unwrap_or_else(|| dir.path().join("shots"));
    std::fs::create_dir_all(&shots_dir).unwrap();
    let base = format!("http://{}", site.addr);

    // Two weeks of oxygen saturation for pat-2, the patient of the episode we triage.
    let store = vitalwatch_platform::store::open(&site.url, 100).await.unwrap();
    let now = Utc::now();
    let readings: Vec<_> = (0..14)
        .map(|d| {
            crate::patient::reading(
                "pat-2",
                Code::Spo2,
                now - Duration::days(d) - Duration::hours(3),
                94.0 - (d % 4) as f64,
                None,
            )
        })
        .collect();
    store.insert_observations(&readings).await.unwrap();

    // Sign in: the worklist, most severe first.
    browser.goto(&format!("{base}/")).await.unwrap();
    browser.wait_for_url(&format!("{base}/login")).await.unwrap();
    shots(&browser, &shots_dir, "login").await;
    browser.fill("#username", "dr-a").await.unwrap();
    browser.fill("#password", "pw-dr-a-0123456789").await.unwrap();
    browser.click("#login-submit").await.unwrap();
    browser.wait_for_url(&format!("{base}/worklist")).await.unwrap();
    browser.wait_for("tr[data-episode]").await.unwrap();
    let first = browser.find("tr[data-episode]").await.unwrap().attr("data-episode").await.unwrap();
    assert_eq!(first.as_deref(), Some("ep-crit"));
    assert!(!browser.source().await.unwrap().contains("ep-other"), "another physician's episode");
    shots(&browser, &shots_dir, "worklist").await;

    // The episode, then its patient and the chart.
    browser.goto(&format!("{base}/episodes/ep-high")).await.unwrap();
    browser.wait_for("#h-evidence").await.unwrap();
    shots(&browser, &shots_dir, "episode").await;
    browser.goto(&format!("{base}/patients/pat-2")).await.unwrap();
    browser.wait_for("#last-readings").await.unwrap();
    let svg = browser.find("figure.chart-figure svg").await.expect("a trend chart").html(false).await.unwrap();
    assert!(svg.contains("SpO"), "the chart names its vital: {svg:.300}");
    assert!(svg.contains('%'), "the chart shows its unit");
    let last = browser.text("#last-readings").await.unwrap();
    assert!(last.contains("94"), "the last reading is shown: {last}");
    shots(&browser, &shots_dir, "patient").await;
    browser.goto(&format!("{base}/patients/pat-2/rules")).await.unwrap();
    browser.wait_for("#save-button").await.unwrap();
    shots(&browser, &shots_dir, "rules").await;

    // Acknowledge.
    browser.goto(&format!("{base}/episodes/ep-high")).await.unwrap();
    browser.click("form[action=\"/episodes/ep-high/ack\"] button").await.unwrap();
    browser.wait_for_url(&format!("{base}/episodes/ep-high?done=ack")).await.unwrap();
    let dr_a = Actor::physician(vitalwatch_alerting::PhysicianId::new("dr-a").unwrap());
    let q = vitalwatch_admin::service::worklist::WorklistQuery { patient: Some("pat-2".into()), ..Default::default() };
    let rows = site.admin.worklist(&dr_a, &q).await.unwrap().items;
    let row = rows.iter().find(|r| r.episode_id == "ep-high").expect("still open");
    assert!(row.acknowledged, "acknowledged from the page");

    // Forward to the specialist account with a question; the specialist answers in the app.
    browser.click("#to-specialist").await.unwrap();
    browser.fill("#fw-specialist", "sp-1").await.unwrap();
    browser.fill("#fw-question", "Faut-il avancer la consultation ?").await.unwrap();
    browser.click("form[action=\"/episodes/ep-high/forward\"] button").await.unwrap();
    browser.wait_for_url(&format!("{base}/episodes/ep-high?done=forward")).await.unwrap();
    let specialist = Browser::start_with_lang("fr").await.unwrap();
    specialist.goto(&format!("{base}/login")).await.unwrap();
    specialist.fill("#username", "sp-1").await.unwrap();
    specialist.fill("#password", "pw-sp-1-0123456789").await.unwrap();
    specialist.click("#login-submit").await.unwrap();
    specialist.wait_for_url(&format!("{base}/expertise")).await.unwrap();
    shots(&specialist, &shots_dir, "expertise-inbox").await;
    specialist.click("main a[href^=\"/expertise/\"]").await.unwrap();
    specialist.wait_for("#advice").await.unwrap();
    assert!(specialist.source().await.unwrap().contains("Faut-il avancer la consultation ?"));
    let chart = specialist.find("#expertise-chart svg").await.expect("the evidence chart").html(false).await.unwrap();
    assert!(chart.contains('%'), "the specialist sees the readings' chart with its unit");
    specialist.fill("#advice", "Oui, sous 48 h ; contrôler la SpO2 au repos.").await.unwrap();
    specialist.click("form button[type=submit]:not(.link)").await.unwrap();
    let answered = vitalwatch_testkit::wait_until(std::time::Duration::from_secs(20), || async {
        let x = site.admin.episode_expertise(&Actor::operator("t"), "ep-high").await.unwrap();
        x.iter().any(|r| r.answer.is_some())
    })
    .await;
    assert!(answered, "the specialist's answer is stored: {}", specialist.source().await.unwrap_or_default());
    // Two e-mails: the specialist told of the request, then the physician told of the answer.
    let mails = sink.wait_for(2);
    let to = |who: &str| mails.iter().find(|(_, rcpt)| rcpt.iter().any(|r| r == who)).map(|(raw, _)| raw.clone());
    assert!(to("sp-1@clinic.example").is_some(), "the specialist is told of the request");
    let raw = to("dr-a@hospital.example").unwrap_or_else(|| {
        let rcpts: Vec<_> = mails.iter().map(|(_, r)| r.clone()).collect();
        panic!("the responsible physician is e-mailed the answer; e-mails went to {rcpts:?}")
    });
    let mail = String::from_utf8_lossy(&raw);
    assert!(!mail.contains("sous 48 h"), "the advice itself stays in the app; the e-mail carries a link");
    browser.goto(&format!("{base}/episodes/ep-high")).await.unwrap();
    assert!(
        browser.source().await.unwrap().contains("Oui, sous 48 h ; contrôler la SpO2 au repos."),
        "the advice is on the episode"
    );

    // Close with an outcome and a note (the form asks for confirmation).
    browser.fill("#close-note", "Patiente rappelée, consultation avancée.").await.unwrap();
    let outcome = browser.find("#close-outcome").await.unwrap();
    outcome.select_by_value("consultation_scheduled").await.unwrap();
    browser.click("form[action=\"/episodes/ep-high/close\"] button").await.unwrap();
    browser.client().accept_alert().await.unwrap();
    browser.wait_for_url(&format!("{base}/episodes/ep-high?done=close")).await.unwrap();
    let audit = site
        .admin
        .audit(
            &Actor::operator("t"),
            &vitalwatch_admin::model::AuditQuery { target: Some("ep-high".into()), ..Default::default() },
        )
        .await
        .unwrap()
        .items;
    let close = audit.iter().find(|a| a.action.starts_with("alert.close")).expect("the close is audited");
    assert_eq!(
        close.details.get("outcome").and_then(|o| o.as_str()),
        Some("consultation_scheduled"),
        "{:?}",
        close.details
    );
    assert_eq!(close.details.get("origin").and_then(|o| o.as_str()), Some("web 127.0.0.1"));
    let notes = site.admin.episode_notes(&Actor::operator("t"), "ep-high").await.unwrap();
    assert!(notes.iter().any(|n| n.body == "Patiente rappelée, consultation avancée."), "{notes:?}");
    // The patient page lists the close, its outcome in words and its note.
    browser.goto(&format!("{base}/patients/pat-2")).await.unwrap();
    let notes = browser.text("#patient-notes").await.unwrap();
    assert!(notes.contains("Patiente rappelée, consultation avancée."), "{notes}");
    assert!(!notes.contains("consultation_scheduled"), "the outcome is in words: {notes}");

    // Another physician's patient and episode: not found, whatever the URL.
    for path in ["/patients/pat-3", "/episodes/ep-other", "/patients/pat-3/rules", "/patients/pat-3/chart/59408-5.svg"]
    {
        browser.goto(&format!("{base}{path}")).await.unwrap();
        let page = browser.source().await.unwrap();
        assert!(page.contains("id=\"error-message\""), "{path}: {page:.400}");
        assert!(!page.contains("87,5"), "{path} shows nothing of the patient");
    }
    specialist.close().await;
    browser.close().await;
}
