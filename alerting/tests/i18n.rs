//! Languages of the notifications (issue #16) against real services: a
//! French physician's email through a real SMTP server (aiosmtpd), the SMS
//! through a real HTTP server speaking Twilio's API, the SMS answers and the
//! acknowledgment pages over real HTTP, on a fresh PostgreSQL database.

use std::time::Duration as StdDuration;

use chrono::{DurationRound, Utc};
use vitalwatch_alerting::render::{FOOTER_EN, FOOTER_FR};
use vitalwatch_alerting::service::twilio_signature;
use vitalwatch_alerting::*;

use crate::common::*;
use crate::service::{
    Harness, MARTIN_MOBILE, doctor, eventually, fresh_db, high_event, post_form, settings, smtp_available, token_of,
};

/// GET with request headers; (status, Content-Language, body).
async fn get_with(url: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let client: Client<_, Empty<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = hyper::Request::get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client.request(req.body(Empty::new()).unwrap()).await.unwrap();
    let status = resp.status().as_u16();
    let lang = resp.headers().get("content-language").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let text = resp.into_body().collect().await.unwrap().to_bytes();
    (status, lang, String::from_utf8_lossy(&text).into_owned())
}

/// Subject, text part and HTML part of a raw message.
fn parts(raw: &[u8]) -> (String, String, String) {
    let parsed = mailparse::parse_mail(raw).unwrap();
    let subject = parsed
        .headers
        .iter()
        .find(|h| h.get_key().eq_ignore_ascii_case("Subject"))
        .map(|h| h.get_value())
        .unwrap_or_default();
    let (mut text, mut html) = (String::new(), String::new());
    let mut stack = vec![&parsed];
    while let Some(p) = stack.pop() {
        match p.ctype.mimetype.as_str() {
            "text/plain" => text.push_str(&p.get_body().unwrap()),
            "text/html" => html.push_str(&p.get_body().unwrap()),
            _ => {}
        }
        stack.extend(p.subparts.iter());
    }
    (subject, text, html)
}

/// A French physician in Martinique (UTC-4 all year) on an English
/// deployment: the email (subject, body, decimal comma, local time, footer,
/// `<html lang="fr">`), the SMS, the SMS answer to a French command and the
/// acknowledgment pages are all French; a wrong code gets the deployment's
/// neutral answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn french_physician_gets_french_email_sms_and_ack_pages() {
    let Some(db) = fresh_db().await else { return };
    if !smtp_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let sink = SmtpSink::start(free_port(), tmp.path());
    let (twilio, log) = spawn_http_server(vec![(201, r#"{"sid":"SM1","status":"queued"}"#.into())]).await;
    let mut s = settings(sink.port, free_port(), Some(&twilio));
    // The deployment is English: French comes from the physician's entry.
    s.default_language = Language::En;
    let h = Harness::new(&db, &s, true).await;
    let mut martin = doctor("dr-martin", Some(MARTIN_MOBILE));
    martin.language = Some(Language::Fr);
    martin.time_zone = TimeZone::new("America/Martinique").unwrap();
    h.store.upsert_physician(&martin).await.unwrap();
    h.store.upsert_physician(&doctor("dr-chen", None)).await.unwrap();
    h.store
        .set_care_team(&CareTeam {
            patient_id: vitalwatch_schemas::PatientId::new("pt-0042").unwrap(),
            responsible: pid("dr-martin"),
            deputies: vec![pid("dr-chen")],
            policy: EscalationPolicy::default(),
        })
        .await
        .unwrap();
    // The stored document keeps the language.
    let stored = h.store.physician(&pid("dr-martin")).await.unwrap().unwrap();
    assert_eq!(stored.language, Some(Language::Fr));

    let mut e = high_event("evt-fr", "ep-fr");
    let at = Utc::now().duration_trunc(chrono::Duration::minutes(1)).unwrap();
    let reading = at - chrono::Duration::minutes(1);
    e.detected_at_unix_micros = at.timestamp_micros();
    e.reading_time_unix_micros = reading.timestamp_micros();
    e.received_at_unix_micros = reading.timestamp_micros();
    e.readings[0].time_unix_micros = reading.timestamp_micros();
    e.readings[0].value = 87.5;
    h.publish(&e).await;

    let msgs = sink.wait_for(1);
    assert_eq!(msgs.len(), 1, "one email");
    let (subject, text, html) = parts(&msgs[0].0);
    assert_eq!(subject, "[vitalwatch] ÉLEVÉE - SpO2 87,5 % - patient pt-0042");
    // Martinique is UTC-4 (no daylight saving time), computed here without chrono-tz.
    let local = (reading - chrono::Duration::hours(4)).format("%d/%m/%Y à %H:%M").to_string();
    for want in [
        "Bonjour Dr dr-martin,".to_string(),
        "Une nouvelle alerte demande votre attention.".to_string(),
        "Valeur : 87,5 %".to_string(),
        "Seuil franchi : 90 %".to_string(),
        format!("Date de mesure : {local} (America/Martinique)"),
        format!("Acquitter : {}/ack?t=", s.public_base_url),
        "Ou répondez « OK ".to_string(),
        FOOTER_FR.to_string(),
    ] {
        assert!(text.contains(&want), "missing {want:?} in:\n{text}");
    }
    for english in ["Dear", "Acknowledge", "Measured", "Value:", FOOTER_EN] {
        assert!(!text.contains(english), "English {english:?} in the French email:\n{text}");
    }
    assert!(html.contains("<html lang=\"fr\">"), "{html}");
    assert!(html.contains(">Acquitter</a>") && !html.contains("lang=\"en\""), "{html}");

    // The SMS (Twilio's API on a real HTTP server).
    assert!(eventually(10, async || log.lock().unwrap().len() == 1).await, "one SMS");
    let form = log.lock().unwrap()[0].form();
    let body = form.iter().find(|(k, _)| k == "Body").map(|(_, v)| v.clone()).unwrap();
    let local_short = (reading - chrono::Duration::hours(4)).format("%d/%m %H:%M").to_string();
    assert!(
        body.starts_with(&format!(
            "vitalwatch ÉLEVÉE : patient pt-0042, SpO2 87,5% (seuil 90) mesurée le {local_short} (actuelle). Répondez OK "
        )),
        "{body}"
    );
    assert!(body.chars().count() <= 160, "{body}");
    let code: String = body[body.find("Répondez OK ").unwrap() + "Répondez OK ".len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();

    // SMS answers: a wrong code gets the deployment's neutral answer (English here,
    // whoever sends it); the right code with a French command, a French answer.
    let url = format!("{}/sms/inbound", h.base_url);
    let sms = async |text: &str| {
        let params = vec![
            ("From".to_string(), MARTIN_MOBILE.to_string()),
            ("To".to_string(), "+15005550006".to_string()),
            ("Body".to_string(), text.to_string()),
        ];
        let pairs: Vec<(&str, &str)> = params.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let sig = twilio_signature::sign("tok-secret", &url, &params);
        post_form(&url, &pairs, &[("X-Twilio-Signature", sig)]).await
    };
    let wrong = if code == "00000000" { "11111111" } else { "00000000" };
    let (status, twiml) = sms(&format!("OK {wrong}")).await;
    assert_eq!(status, 200);
    assert!(twiml.contains("No open alert matches this reply."), "{twiml}");
    let (status, twiml) = sms(&format!("pause {code} 30")).await;
    assert_eq!(status, 200);
    assert!(twiml.contains("Alerte en pause pour 30 min."), "{twiml}");
    let state = h.store.episode(&EpisodeId::new("ep-fr").unwrap()).await.unwrap().unwrap();
    assert!(state.snooze.is_some(), "PAUSE snoozes: {state:?}");

    // The acknowledgment pages: French, whatever the browser prefers.
    let link = text[text.find("Acquitter : ").unwrap() + "Acquitter : ".len()..].split_whitespace().next().unwrap();
    for accept in [None, Some("en-US,en;q=0.9")] {
        let headers: Vec<(&str, &str)> = accept.map(|a| ("accept-language", a)).into_iter().collect();
        let (status, lang, page) = get_with(link, &headers).await;
        assert_eq!((status, lang.as_str()), (200, "fr"), "{page}");
        assert!(page.contains("<html lang=\"fr\">") && page.contains("Acquitter cette alerte ?"), "{page}");
        assert!(page.contains(">Acquitter</button>") && !page.contains("Acknowledge"), "{page}");
    }
    let token = token_of(link);
    let ack_url = format!("{}/ack", h.base_url);
    let en = [("accept-language", "en".to_string())];
    let (status, page) = post_form(&ack_url, &[("t", &token)], &en).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("<html lang=\"fr\">") && page.contains("Alerte acquittée"), "{page}");
    let (status, page) = post_form(&ack_url, &[("t", &token)], &en).await;
    assert_eq!(status, 409, "{page}");
    assert!(page.contains("Ce lien d&#39;acquittement a déjà été utilisé."), "{page}");
    let state = h.store.episode(&EpisodeId::new("ep-fr").unwrap()).await.unwrap().unwrap();
    assert_eq!(state.acks.len(), 1);
    h.stop().await;
}

/// Without a language in the physician's entry, the acknowledgment page
/// follows the browser's Accept-Language (French or English), then the
/// deployment's default; a physician's own language beats the browser, even
/// on the "link expired" page. A link that does not verify follows the browser.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_page_language_is_the_physicians_then_the_browsers_then_the_default() {
    let Some(db) = fresh_db().await else { return };
    let s = settings(free_port(), free_port(), None);
    assert_eq!(s.default_language, Language::Fr, "a French deployment by default");
    let h = Harness::new(&db, &s, true).await;
    let mut chen = doctor("dr-chen", None);
    chen.language = None;
    h.store.upsert_physician(&chen).await.unwrap();
    // `doctor` (the shared fixture) reads English.
    h.store.upsert_physician(&doctor("dr-martin", None)).await.unwrap();
    let signer = AckSigner::new(SECRET).unwrap();
    let token = |who: &str, expires: chrono::DateTime<Utc>| {
        signer.sign(&AckClaims {
            episode_id: EpisodeId::new("ep-lang").unwrap(),
            recipient: pid(who),
            severity: Severity::High,
            nonce: format!("n-{who}"),
            expires_at: expires.timestamp(),
        })
    };
    let later = Utc::now() + chrono::Duration::hours(1);
    let page = async |t: &str, accept: Option<&str>| {
        let url = format!("{}/ack?t={}", h.base_url, form_urlencoded::byte_serialize(t.as_bytes()).collect::<String>());
        let headers: Vec<(&str, &str)> = accept.map(|a| ("accept-language", a)).into_iter().collect();
        get_with(&url, &headers).await
    };

    let chen_token = token("dr-chen", later);
    let (status, lang, body) = page(&chen_token, Some("en-GB,en;q=0.9,fr;q=0.5")).await;
    assert_eq!((status, lang.as_str()), (200, "en"), "{body}");
    assert!(body.contains("<html lang=\"en\">") && body.contains("Acknowledge this alert?"), "{body}");
    let (_, lang, body) = page(&chen_token, Some("fr-CA")).await;
    assert!(lang == "fr" && body.contains("Acquitter cette alerte ?"), "{body}");
    let (_, lang, body) = page(&chen_token, Some("de-DE,de")).await;
    assert!(lang == "fr" && body.contains("Acquitter cette alerte ?"), "German browser: the default: {body}");
    let (_, lang, _) = page(&chen_token, None).await;
    assert_eq!(lang, "fr", "no header: the default");

    let (_, lang, body) = page(&token("dr-martin", later), Some("fr")).await;
    assert!(lang == "en" && body.contains("Acknowledge this alert?"), "the physician's language wins: {body}");
    let expired = token("dr-martin", Utc::now() - chrono::Duration::hours(1));
    let (status, lang, body) = page(&expired, Some("fr")).await;
    assert_eq!((status, lang.as_str()), (410, "en"), "{body}");
    assert!(body.contains("Link expired"), "{body}");

    let (status, lang, body) = page("v1.forged.token", Some("en")).await;
    assert_eq!((status, lang.as_str()), (400, "en"), "{body}");
    assert!(body.contains("Invalid link"), "{body}");
    let (status, _, body) = page("v1.forged.token", None).await;
    assert_eq!(status, 400);
    assert!(body.contains("Lien non valide"), "{body}");
    tokio::time::sleep(StdDuration::from_millis(10)).await;
    h.stop().await;
}
