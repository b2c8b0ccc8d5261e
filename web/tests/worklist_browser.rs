//! The worklist and the episode page in a real browser (headless Chromium over
//! WebDriver): a physician signs in, sees their open episodes most severe
//! first, the worklist refreshes itself when an episode is acknowledged
//! elsewhere (app.js polling `/worklist/rows`, no reload), the page does not
//! scroll sideways at phone width (cards), and a note is added from the
//! episode page. One engine (SQLite): the HTTP tests cover both.

use std::time::{Duration, Instant};

use vitalwatch_admin::Actor;
use vitalwatch_alerting::PhysicianId;
use vitalwatch_testkit::Browser;

use crate::support::Engine;
use crate::worklist_pages::Site;

#[tokio::test]
async fn a_physician_triages_from_the_worklist_in_a_browser() {
    let Some(browser) = Browser::start_with_lang("fr").await else { return };
    let site = Site::start(Engine::Sqlite, None).await.expect("sqlite");
    let base = format!("http://{}", site.addr);

    browser.goto(&format!("{base}/login?next=/worklist")).await.unwrap();
    browser.fill("#username", "dr-a").await.unwrap();
    browser.fill("#password", "pw-dr-a-0123456789").await.unwrap();
    browser.click("form button[type=submit]").await.unwrap();
    browser.wait_for_url(&format!("{base}/worklist")).await.unwrap();
    browser.wait_for("tr[data-episode]").await.unwrap();
    let mut order = Vec::new();
    for row in browser.find_all("tr[data-episode]").await.unwrap() {
        order.push(row.attr("data-episode").await.unwrap().unwrap_or_default());
    }
    assert_eq!(order, ["ep-crit", "ep-high", "ep-med", "ep-low"], "severity then age, my patients only");
    let ack_cell = "tr[data-episode=\"ep-crit\"] td[data-label=\"Prise en compte\"]";
    assert_eq!(browser.text(ack_cell).await.unwrap(), "Non pris en compte");

    // Acknowledged elsewhere (another device): the open page shows it without a reload.
    let marker = browser.eval("window.vwMarker = 42; return 1;", vec![]).await.unwrap();
    assert_eq!(marker, 1);
    site.admin
        .ack_alert(&Actor::physician(PhysicianId::new("dr-a").unwrap()), "ep-crit", &Default::default())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        // The rows are replaced while we read them: a stale element is read again.
        let text = browser.text(ack_cell).await.map_err(|e| format!("{e:?}"));
        if text.as_deref().is_ok_and(|t| t.contains("par dr-a")) {
            break;
        }
        assert!(Instant::now() < deadline, "the worklist did not refresh itself: {text:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let same_page = browser.eval("return window.vwMarker || 0;", vec![]).await.unwrap();
    assert_eq!(same_page, 42, "refreshed in place, not reloaded");

    // Phone width: cards, no sideways scrolling.
    browser.set_viewport(375, 800).await.unwrap();
    assert!(!browser.scrolls_horizontally().await.unwrap(), "the worklist scrolls sideways at 375 px");
    browser.set_viewport(1280, 800).await.unwrap();

    // The episode page: a note typed in the form lands on the page and in the store.
    browser.click("tr[data-episode=\"ep-high\"] td[data-label=\"Alerte\"] a").await.unwrap();
    browser.wait_for_url(&format!("{base}/episodes/ep-high")).await.unwrap();
    browser.fill("#note-text", "Patiente rappelée, œdèmes stables.").await.unwrap();
    browser.click("form[action=\"/episodes/ep-high/note\"] button").await.unwrap();
    browser.wait_for_url(&format!("{base}/episodes/ep-high?done=note")).await.unwrap();
    assert!(browser.source().await.unwrap().contains("Patiente rappelée, œdèmes stables."));
    let notes = site.admin.episode_notes(&Actor::operator("t"), "ep-high").await.unwrap();
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].body, "Patiente rappelée, œdèmes stables.");
    browser.close().await;
}
