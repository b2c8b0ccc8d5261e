//! The worklist, the episode page and tele-expertise over real HTTP, on both
//! engines: order, filters and scoping; the live-refresh fragment's ETag;
//! acknowledge, snooze, note and close-with-outcome landing in the store and
//! the audit trail (with the client address); forward to a specialist
//! account and to an email address, the answer through the single-use link,
//! and the responsible physician emailed (a real SMTP server).

use chrono::{DateTime, Duration, Utc};
use vitalwatch_admin::Actor;
use vitalwatch_admin::account::NewAccount;
use vitalwatch_admin::model::{AuditQuery, CareTeamInput, ChannelsInput, PhysicianInput};
use vitalwatch_admin::service::worklist::WorklistQuery;
use vitalwatch_alerting::store::{Action, TransitionOptions};
use vitalwatch_alerting::{EpisodeId, PhysicianId};
use vitalwatch_schemas::proto::{self, AlertEventKind, Severity};

use crate::support::{App, Client, Engine, ops};

/// The workspace on one engine (with a mailer when an SMTP port is given),
/// seeded with three physicians, a nurse, a specialist and five open episodes.
pub(crate) struct Site {
    app: App,
}

impl std::ops::Deref for Site {
    type Target = App;
    fn deref(&self) -> &App {
        &self.app
    }
}

impl Site {
    pub(crate) async fn start(engine: Engine, smtp_port: Option<u16>) -> Option<Site> {
        let app = match smtp_port {
            Some(port) => App::start_mailing(engine, port).await?,
            None => App::start(engine).await?,
        };
        let site = Site { app };
        site.seed().await;
        Some(site)
    }

    /// dr-a (pat-1, pat-2), dr-b (pat-3), dr-c deputy of all three; accounts for dr-a
    /// and dr-b, a nurse of pat-1 and a specialist; five open episodes.
    async fn seed(&self) {
        for d in ["dr-a", "dr-b", "dr-c"] {
            let input = PhysicianInput {
                name: format!("Dr {d}"),
                email: format!("{d}@hospital.example"),
                mobile: None,
                time_zone: Some("Europe/Paris".into()),
                language: Some("fr".into()),
                quiet_hours: None,
                quiet_hours_bypass: None,
                channels: ChannelsInput::default(),
                hourly_cap: None,
            };
            self.admin.upsert_physician(&ops(), d, &input).await.unwrap();
            if d != "dr-c" {
                self.account(d, "physician", Some(d)).await;
            }
        }
        self.account("ide-1", "nurse", None).await;
        self.account("sp-1", "specialist", None).await;
        for (p, dr, nurses) in
            [("pat-1", "dr-a", vec!["ide-1".to_owned()]), ("pat-2", "dr-a", vec![]), ("pat-3", "dr-b", vec![])]
        {
            self.admin.add_patient(&ops(), &vitalwatch_admin::model::NewPatient { id: p.into() }).await.unwrap();
            let deputies = vec!["dr-c".to_owned()];
            let team = CareTeamInput { responsible: dr.into(), deputies, policy: None, nurses: Some(nurses) };
            self.admin.set_care_team(&ops(), p, &team).await.unwrap();
        }
        let registry = vitalwatch_platform::store::open(&self.url, 100).await.unwrap();
        let alerting = vitalwatch_alerting::store::open(&self.url).await.unwrap();
        let t0 = Utc::now() - Duration::hours(2);
        for (ep, patient, sev, t) in [
            ("ep-crit", "pat-1", Severity::Critical, t0 + Duration::minutes(10)),
            ("ep-high", "pat-2", Severity::High, t0),
            ("ep-med", "pat-1", Severity::Medium, t0 - Duration::minutes(5)),
            ("ep-low", "pat-2", Severity::Low, t0 - Duration::minutes(50)),
            ("ep-other", "pat-3", Severity::Critical, t0),
        ] {
            let ev = event(ep, patient, sev, t);
            registry.record_alert_events(std::slice::from_ref(&ev)).await.unwrap();
            let options = TransitionOptions { codes: None, caps: Default::default() };
            let id = EpisodeId::new(ep).unwrap();
            alerting.transition(&id, Action::Event(Box::new(ev)), &options, Utc::now()).await.unwrap();
        }
    }

    async fn account(&self, id: &str, role: &str, physician: Option<&str>) {
        let new = NewAccount {
            id: id.into(),
            display_name: format!("User {id}"),
            email: Some(format!("{id}@clinic.example")),
            role: role.into(),
            physician_id: physician.map(str::to_owned),
            language: Some("fr".into()),
            time_zone: Some("Europe/Paris".into()),
            password: Some(format!("pw-{id}-0123456789")),
        };
        self.admin.create_account(&ops(), &new).await.unwrap();
    }

    async fn sign_in(&self, id: &str) -> Client {
        let mut c = self.client();
        let r = c.login(id, &format!("pw-{id}-0123456789")).await;
        assert_eq!(r.status, 303, "sign-in of {id}: {}", r.body);
        c
    }

    fn client(&self) -> Client {
        Client { addr: self.addr.clone(), cookies: Vec::new(), csrf: String::new() }
    }

    /// Admin audit entries about `target`, newest first.
    async fn audit(&self, target: &str) -> Vec<vitalwatch_admin::model::AuditView> {
        let q = AuditQuery { target: Some(target.into()), ..Default::default() };
        self.admin.audit(&Actor::operator("test"), &q).await.unwrap().items
    }
}

fn event(episode: &str, patient: &str, severity: Severity, t: DateTime<Utc>) -> proto::AlertEvent {
    proto::AlertEvent {
        event_id: format!("{episode}-opened"),
        episode_id: episode.into(),
        patient_id: patient.into(),
        rule_id: "threshold.spo2.low".into(),
        rule_kind: "threshold".into(),
        kind: AlertEventKind::Opened as i32,
        severity: severity as i32,
        program: if patient == "pat-2" { "heart_failure".into() } else { "copd".into() },
        code: "59408-5".into(),
        reading_time_unix_micros: t.timestamp_micros(),
        detected_at_unix_micros: t.timestamp_micros() + 1_000,
        summary: format!("SpO2 low ({episode})"),
        threshold: Some(90.0),
        readings: vec![proto::EvidenceReading {
            observation_id: format!("{episode}-r"),
            code: "59408-5".into(),
            value: 87.5,
            unit: "%".into(),
            time_unix_micros: t.timestamp_micros(),
        }],
        ..proto::AlertEvent::default()
    }
}

async fn sites(smtp_port: Option<u16>) -> Vec<Site> {
    let mut out = vec![Site::start(Engine::Sqlite, smtp_port).await.expect("sqlite")];
    if let Some(pg) = Site::start(Engine::Postgres, smtp_port).await {
        out.push(pg);
    }
    out
}

/// Where each episode appears in a page (`None`: absent).
fn positions<'a>(body: &str, eps: &[&'a str]) -> Vec<(&'a str, Option<usize>)> {
    eps.iter().map(|e| (*e, body.find(&format!("data-episode=\"{e}\"")))).collect()
}

#[tokio::test]
async fn the_worklist_shows_my_open_episodes_in_order_with_filters_scoping_and_a_refresh_fragment() {
    for site in sites(None).await {
        let e = site.engine;
        let mut a = site.sign_in("dr-a").await;
        let page = a.get("/worklist").await;
        assert_eq!(page.status, 200, "{e:?}: {}", page.body);
        let pos = positions(&page.body, &["ep-crit", "ep-high", "ep-med", "ep-low", "ep-other"]);
        let found: Vec<usize> = pos.iter().filter_map(|(_, p)| *p).collect();
        assert_eq!(found.len(), 4, "{e:?}: dr-a sees their 4 episodes, not dr-b's: {pos:?}");
        assert!(pos[4].1.is_none(), "{e:?}: another physician's episode");
        assert!(found.windows(2).all(|w| w[0] < w[1]), "{e:?}: severity then age: {pos:?}");
        // The row's contents: French labels, the value in French notation, the page sent, the next step.
        assert!(page.body.contains("Liste de travail") && page.body.contains("87,5 %"), "{e:?}");
        assert!(page.body.contains("Non pris en compte"), "{e:?}");
        assert!(page.body.contains("data-poll=\"/worklist/rows\""), "{e:?}");

        // Filters.
        let high = a.get("/worklist?severity=high").await.body;
        assert!(high.contains("data-episode=\"ep-high\"") && !high.contains("data-episode=\"ep-crit\""), "{e:?}");
        let hf = a.get("/worklist?program=heart_failure").await.body;
        assert!(hf.contains("data-episode=\"ep-low\"") && !hf.contains("data-episode=\"ep-med\""), "{e:?}");
        assert_eq!(a.get("/worklist?severity=huge").await.status, 422, "{e:?}");

        // The refresh fragment: an ETag, 304 while nothing changes, new rows after an acknowledgment.
        let rows = a.get("/worklist/rows").await;
        assert_eq!(rows.status, 200, "{e:?}");
        assert!(!rows.body.contains("<html"), "{e:?}: a fragment");
        let etag = rows.header("etag").expect("an ETag").to_owned();
        let same = a.get_with("/worklist/rows", &[("If-None-Match", etag.clone())]).await;
        assert_eq!((same.status, same.body.as_str()), (304, ""), "{e:?}");
        site.admin
            .ack_alert(&Actor::physician(PhysicianId::new("dr-a").unwrap()), "ep-med", &Default::default())
            .await
            .unwrap();
        let changed = a.get_with("/worklist/rows", &[("If-None-Match", etag.clone())]).await;
        assert_eq!(changed.status, 200, "{e:?}");
        assert_ne!(changed.header("etag"), Some(etag.as_str()), "{e:?}");
        let unacked = a.get("/worklist/rows?acknowledged=no").await.body;
        assert!(!unacked.contains("data-episode=\"ep-med\"") && unacked.contains("data-episode=\"ep-crit\""));

        // Scoping: another physician's episode is a 404 like an unknown one; a nurse sees
        // her team's patient only; a specialist has no worklist.
        assert_eq!(a.get("/episodes/ep-other").await.status, 404, "{e:?}");
        assert_eq!(a.get("/episodes/ep-nope").await.status, 404, "{e:?}");
        let mut nurse = site.sign_in("ide-1").await;
        let nl = nurse.get("/worklist").await.body;
        let pos = positions(&nl, &["ep-crit", "ep-med", "ep-high"]);
        assert!(pos[0].1.is_some() && pos[1].1.is_some() && pos[2].1.is_none(), "{e:?}: {pos:?}");
        assert_eq!(nurse.get("/episodes/ep-high").await.status, 404, "{e:?}");
        let mut sp = site.sign_in("sp-1").await;
        assert_eq!(sp.get("/worklist").await.status, 403, "{e:?}");
        assert_eq!(sp.get("/episodes/ep-crit").await.status, 403, "{e:?}");
    }
}

#[tokio::test]
async fn episode_actions_land_in_the_store_and_the_audit_trail_with_their_origin() {
    for site in sites(None).await {
        let e = site.engine;
        let mut a = site.sign_in("dr-a").await;
        let page = a.get("/episodes/ep-crit").await;
        assert_eq!(page.status, 200, "{e:?}: {}", page.body);
        assert!(page.body.contains("SpO2 low (ep-crit)") && page.body.contains("Prendre en compte"), "{e:?}");
        // Without the CSRF token: refused, nothing changes.
        let r = a.post_raw("/episodes/ep-crit/ack", &[]).await;
        assert_eq!(r.status, 403, "{e:?}");
        assert!(site.audit("ep-crit").await.is_empty(), "{e:?}");

        let r = a.post("/episodes/ep-crit/ack", &[]).await;
        assert_eq!((r.status, r.header("location")), (303, Some("/episodes/ep-crit?done=ack")), "{e:?}: {}", r.body);
        a.get("/episodes/ep-crit").await;
        assert_eq!(a.post("/episodes/ep-crit/snooze", &[("minutes", "45")]).await.status, 303, "{e:?}");
        assert_eq!(a.post("/episodes/ep-crit/note", &[("text", "Rappelée, se sent bien.")]).await.status, 303);
        let bad = a.post("/episodes/ep-crit/close", &[("outcome", "cured"), ("note", "")]).await;
        assert_eq!(bad.status, 422, "{e:?}");
        let r = a.post("/episodes/ep-crit/close", &[("outcome", "sent_to_emergency"), ("note", "SAMU appelé.")]).await;
        assert_eq!(r.status, 303, "{e:?}: {}", r.body);

        // In the store.
        let dr_a = Actor::physician(PhysicianId::new("dr-a").unwrap());
        let view = site.admin.episode_view(&dr_a, "ep-crit").await.unwrap();
        assert_eq!(view.alert.status, "closed", "{e:?}");
        assert_eq!(view.acknowledgments.first().map(|k| (k.by.as_str(), k.via.as_str())), Some(("dr-a", "web_app")));
        assert_eq!(view.notes.len(), 2, "{e:?}");
        assert_eq!(view.notes[0].body, "Rappelée, se sent bien.", "{e:?}");
        assert_eq!(
            (view.notes[1].outcome.as_deref(), view.notes[1].body.as_str()),
            (Some("sent_to_emergency"), "SAMU appelé.")
        );
        let open = site.admin.worklist(&dr_a, &WorklistQuery::default()).await.unwrap();
        assert!(open.items.iter().all(|r| r.episode_id != "ep-crit"), "{e:?}: closed, off the worklist");

        // In the audit trail: who, what, from where; the note's text never.
        let audit = site.audit("ep-crit").await;
        let actions: Vec<&str> = audit.iter().map(|x| x.action.as_str()).collect();
        assert_eq!(actions, ["alert.close", "alert.note", "alert.snooze", "alert.ack"], "{e:?}");
        for x in &audit {
            assert_eq!(x.actor, "dr-a", "{e:?}");
            assert_eq!(x.details["origin"], "web 127.0.0.1", "{e:?}: {x:?}");
        }
        assert_eq!(audit[0].details["outcome"], "sent_to_emergency", "{e:?}");
        assert_eq!(audit[0].details["note_id"], view.notes[1].id, "{e:?}");
        let text = serde_json::to_string(&audit).unwrap();
        assert!(!text.contains("SAMU") && !text.contains("Rappelée"), "{e:?}: {text}");

        // The page shows the outcome and the notes; no actions once closed.
        let page = a.get("/episodes/ep-crit?done=close").await.body;
        assert!(
            page.contains("Adressé aux urgences") && page.contains("SAMU appelé.") && page.contains("Épisode clos.")
        );
        assert!(!page.contains("/episodes/ep-crit/ack"), "{e:?}");
        // The timeline in words: opened, paged, acknowledged.
        assert!(page.contains("Épisode ouvert : Critique"), "{e:?}");
        assert!(page.contains("Alerte planifiée : dr-a"), "{e:?}");
        assert!(page.contains("Pris en compte : dr-a · application · Critique"), "{e:?}");
        // Someone else's episode: the actions are 404s too.
        assert_eq!(a.post("/episodes/ep-other/ack", &[]).await.status, 404, "{e:?}");
    }
}

fn email_text(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw).replace("=\r\n", "");
    // Quoted-printable or 8bit: enough to find URLs (ASCII) in either.
    s.replace("=3D", "=")
}

fn link_token(mail: &str) -> String {
    let start = mail.find("/expertise/link/").expect("a link") + "/expertise/link/".len();
    mail[start..].chars().take_while(char::is_ascii_hexdigit).collect()
}

#[tokio::test]
async fn forwarding_to_a_specialist_and_answering_through_the_single_use_link_notifies_the_physician() {
    let dir = tempfile::tempdir().unwrap();
    let Some(sink) = vitalwatch_testkit::SmtpSink::try_start(dir.path()) else { return };
    let mut sent = 0;
    for site in sites(Some(sink.port)).await {
        let e = site.engine;
        let mut a = site.sign_in("dr-a").await;
        a.get("/episodes/ep-high").await;

        // To a specialist account: their inbox, the request page, the answer in the app.
        let r = a
            .post(
                "/episodes/ep-high/forward",
                &[("to_kind", "specialist"), ("specialist", "sp-1"), ("email", ""), ("question", "Diurétique ?")],
            )
            .await;
        assert_eq!(
            (r.status, r.header("location")),
            (303, Some("/episodes/ep-high?done=forward")),
            "{e:?}: {}",
            r.body
        );
        sent += 1; // the specialist is told
        let mails = sink.wait_for(sent);
        assert_eq!(mails.last().unwrap().1, ["sp-1@clinic.example"], "{e:?}");
        let mut sp = site.sign_in("sp-1").await;
        let inbox = sp.get("/expertise").await;
        assert_eq!(inbox.status, 200, "{e:?}");
        let i = inbox.body.find("href=\"/expertise/").expect("a request in the inbox") + "href=\"".len();
        let href: String = inbox.body[i..].chars().take_while(|c| *c != '"').collect();
        let req = sp.get(&href).await;
        assert!(req.status == 200 && req.body.contains("Diurétique ?") && req.body.contains("87,5 %"), "{e:?}");
        let r = sp.post(&href, &[("advice", "Augmenter le furosémide.")]).await;
        assert_eq!(r.status, 303, "{e:?}: {}", r.body);
        sent += 1; // dr-a is told
        let mails = sink.wait_for(sent);
        let (raw, rcpt) = mails.last().unwrap();
        assert_eq!(rcpt, &["dr-a@hospital.example".to_owned()], "{e:?}");
        let body = email_text(raw);
        assert!(body.contains(&format!("http://{}/episodes/ep-high", site.addr)), "{e:?}");
        assert!(body.contains("Bonjour Dr dr-a") && !body.contains("Hello"), "{e:?}: in the physician's language");
        assert!(!body.contains("furos"), "{e:?}: no advice in the email");
        assert_eq!(sp.get("/episodes/ep-high").await.status, 403, "{e:?}: a specialist sees the request only");
        let page = a.get("/episodes/ep-high").await.body;
        assert!(page.contains("Augmenter le furosémide."), "{e:?}: the advice on the episode page");

        // To an email address: the link, answered once without an account.
        a.get("/episodes/ep-high").await;
        let r = a
            .post(
                "/episodes/ep-high/forward",
                &[("to_kind", "email"), ("specialist", ""), ("email", "cardio@ext.example"), ("question", "ECG ?")],
            )
            .await;
        assert_eq!(r.header("location"), Some("/episodes/ep-high?done=forward"), "{e:?}: {}", r.body);
        sent += 1;
        let mails = sink.wait_for(sent);
        let (raw, rcpt) = mails.last().unwrap();
        assert_eq!(rcpt, &["cardio@ext.example".to_owned()], "{e:?}");
        let token = link_token(&email_text(raw));
        assert_eq!(token.len(), 64, "{e:?}");
        let mut ext = site.client();
        let link = format!("/expertise/link/{token}");
        let page = ext.get(&link).await;
        assert_eq!(page.status, 200, "{e:?}: {}", page.body);
        assert!(page.body.contains("ECG ?") && page.body.contains("87,5 %"), "{e:?}");
        assert_eq!(page.header("referrer-policy"), Some("no-referrer"), "{e:?}: the token never leaves in a Referer");
        let id = {
            let i = page.body.find("name=\"id\" value=\"").unwrap() + "name=\"id\" value=\"".len();
            page.body[i..].chars().take_while(char::is_ascii_digit).collect::<String>()
        };
        let r = ext.post_raw(&link, &[("id", &id), ("advice", "ECG normal, pas d'urgence.")]).await;
        assert_eq!(r.status, 200, "{e:?}: {}", r.body);
        assert!(r.body.contains("Merci"), "{e:?}");
        sent += 1;
        let mails = sink.wait_for(sent);
        assert_eq!(mails.last().unwrap().1, ["dr-a@hospital.example"], "{e:?}: the physician is told");
        // Single use.
        let again = ext.post_raw(&link, &[("id", &id), ("advice", "Autre avis")]).await;
        assert_eq!(again.status, 409, "{e:?}");
        assert_eq!(ext.get(&link).await.status, 409, "{e:?}");
        let view =
            site.admin.episode_view(&Actor::physician(PhysicianId::new("dr-a").unwrap()), "ep-high").await.unwrap();
        let answered: Vec<_> = view.expertise.iter().filter_map(|x| x.answer.as_deref()).collect();
        assert_eq!(answered, ["Augmenter le furosémide.", "ECG normal, pas d'urgence."], "{e:?}");
        let q = AuditQuery { action: Some("expertise.answer".into()), ..Default::default() };
        let audit = site.admin.audit(&Actor::operator("t"), &q).await.unwrap().items;
        assert_eq!(audit[0].actor, "email:cardio@ext.example", "{e:?}");
        assert_eq!(audit[0].details["origin"], "web 127.0.0.1", "{e:?}");
        assert_eq!(audit[1].actor, "sp-1", "{e:?}");
        // A made-up link: the same refusal.
        assert_eq!(ext.get(&format!("/expertise/link/{}", "0".repeat(64))).await.status, 404, "{e:?}");
    }
}
