//! Rendering: SMS length and content, chart PNG, HTML escaping, digests.

use crate::common;

use chrono::Duration;
use common::*;
use vitalwatch_alerting_core::render::chart::{CHART_SIZE, ChartData, render_chart_png};
use vitalwatch_alerting_core::render::email::{AlertEmailInput, render_alert_email, render_digest_email};
use vitalwatch_alerting_core::render::sms::{is_gsm7, render_sms};
use vitalwatch_alerting_core::*;
use vitalwatch_schemas::proto::AlertEventKind;

fn setup(patient: &str, summary: &str) -> (EpisodeState, Plan, Physician) {
    let t0 = t("2026-07-14T08:30:00Z");
    let mut e = event("e1", AlertEventKind::Opened, Severity::Critical, t0);
    e.patient_id = patient.into();
    e.summary = summary.into();
    let (ep, _) = EpisodeState::from_event(&e, t0).unwrap();
    let martin = physician("dr-martin", None);
    let dir = directory(vec![martin.clone(), physician("dr-chen", None)]);
    let mut team = team();
    team.patient_id = vitalwatch_schemas::PatientId::new(patient).unwrap();
    let p = plan_now(&ep, &team, &dir, t0);
    (ep, p, martin)
}

#[test]
fn sms_fits_one_gsm7_segment() {
    let code =
        AckCodeGenerator::new(SECRET, 6).unwrap().candidate(&EpisodeId::new("ep-1").unwrap(), &pid("dr-martin"), 0);
    let (ep, p, martin) = setup("pt-0042", "s");
    let n = p.notifications.iter().find(|n| n.channel == Channel::Sms).unwrap();
    let body = render_sms(n, &ep, &martin, Language::En, Some(&code), t("2026-07-14T08:30:00Z")).unwrap();
    assert_eq!(
        body,
        format!(
            "vitalwatch CRITICAL: patient pt-0042, SpO2 87% (limit 90) measured 14/07 10:29 (current). Reply ACK {code}"
        )
    );
    // Worst case: a 64-character patient id still fits, dropping detail first.
    let long = "p".repeat(64);
    let (ep, p, martin) = setup(&long, "s");
    let n = p.notifications.iter().find(|n| n.channel == Channel::Sms).unwrap();
    let body = render_sms(n, &ep, &martin, Language::En, Some(&code), t("2026-07-14T08:30:00Z")).unwrap();
    assert!(body.chars().count() <= 160, "{body}");
    assert!(body.contains(&long) && body.contains(&format!("ACK {code}")));
    assert!(body.chars().all(is_gsm7));
    // The all-clear needs no code.
    let mut resolved = n.clone();
    resolved.step = Step::Resolved;
    let body = render_sms(&resolved, &ep, &martin, Language::En, None, t("2026-07-14T08:30:00Z")).unwrap();
    assert!(body.contains("RESOLVED") && !body.contains("ACK"));
}

#[test]
fn chart_is_a_png_even_with_bad_data() {
    let end = t("2026-07-14T08:30:00Z");
    let mut points = history(end);
    points.push((end, f64::NAN));
    points.push((end - Duration::days(40), 10.0)); // out of window
    let data = ChartData {
        title: "SpO2".into(),
        unit: "%".into(),
        points,
        threshold: Some(90.0),
        baseline: Some(95.0),
        highlight: Some((end, 87.0)),
        end,
        days: 14,
    };
    let png = render_chart_png(&data, chrono_tz::Europe::Paris, Language::En).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let w = u32::from_be_bytes([png[16], png[17], png[18], png[19]]);
    let h = u32::from_be_bytes([png[20], png[21], png[22], png[23]]);
    assert_eq!((w, h), CHART_SIZE);
    let empty = ChartData { points: vec![], threshold: None, baseline: None, highlight: None, ..data };
    assert_eq!(&render_chart_png(&empty, chrono_tz::UTC, Language::Fr).unwrap()[..4], b"\x89PNG");
}

#[test]
fn email_escapes_html_and_labels_delayed_readings() {
    let (mut ep, p, martin) = setup("pt-0042", "<script>alert(1)</script> & co");
    ep.details.reading_time = ep.details.detected_at - Duration::hours(5);
    let n = p.notifications.iter().find(|n| n.channel == Channel::Email).unwrap();
    let r = render_alert_email(&AlertEmailInput {
        notification: n,
        episode: &ep,
        recipient: &martin,
        language: Language::En,
        ack_link: Some("https://vw.example/ack?t=a&b"),
        ack_code: None,
        history: &[],
        id_domain: "vw.example",
    })
    .unwrap();
    assert!(!r.html.contains("<script>"));
    assert!(r.html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; co"));
    assert!(r.html.contains("href=\"https://vw.example/ack?t=a&amp;b\""));
    assert!(r.text.contains("taken 5 h 0 min before it was processed"));
    assert!(r.chart_png.is_some());
    assert!(r.subject.starts_with("[vitalwatch] CRITICAL"));

    let entries = vec![DigestEntry {
        key: n.key.clone(),
        episode_id: ep.episode_id.clone(),
        patient_id: ep.patient_id.clone(),
        recipient: martin.id.clone(),
        step: n.step,
        severity: Severity::Low,
        code: ep.details.code,
        value: Some(87.0),
        unit: "%".into(),
        reading_time: ep.details.reading_time,
        summary: "x".into(),
        at: ep.opened_at,
    }];
    let mut lines: Vec<DigestLine> = entries
        .into_iter()
        .map(|entry| DigestLine {
            entry,
            status: DigestItemStatus::Open,
            ack_link: Some("https://vw.example/ack?t=d1".into()),
        })
        .collect();
    let mut acked = lines[0].clone();
    acked.status = DigestItemStatus::Acknowledged { by: martin.id.clone(), at: ep.opened_at };
    acked.ack_link = None;
    lines.push(acked);
    let d = render_digest_email(&martin, Language::En, &lines, "digest:dr-martin:20260714T0800", "vw.example");
    assert!(d.text.contains("LOW - patient pt-0042 - SpO2 87 %"));
    assert!(d.subject.contains("2 alert(s), 1 open"), "{}", d.subject);
    assert_eq!(d.text.matches("Acknowledge: https://vw.example/ack?t=d1").count(), 1, "{}", d.text);
    assert!(d.text.contains("acknowledged by dr-martin"), "{}", d.text);
    assert!(d.text.contains("15 (SAMU)"));
}

// ------------------------------------------------ issue #14: historical and technical alerts

fn setup_event(e: AlertEvent) -> (EpisodeState, Plan, Physician) {
    setup_event_for(e, physician("dr-martin", None))
}

/// The plan of `e` at 08:30 for a team led by `martin` (deputy dr-chen).
fn setup_event_for(e: AlertEvent, martin: Physician) -> (EpisodeState, Plan, Physician) {
    let t0 = t("2026-07-14T08:30:00Z");
    let (ep, _) = EpisodeState::from_event(&e, t0).unwrap();
    let dir = directory(vec![martin.clone(), physician("dr-chen", None)]);
    let p = plan_now(&ep, &team(), &dir, t0);
    (ep, p, martin)
}

/// A glucose of 40 mg/dL measured at 00:30 UTC and received 10 h later.
fn historical_glucose(patient: &str) -> AlertEvent {
    let t0 = t("2026-07-14T08:30:00Z");
    let mut e = event("e-h", AlertEventKind::Opened, Severity::Critical, t0);
    e.patient_id = patient.into();
    e.rule_id = "threshold.glucose.low".into();
    e.code = "2339-0".into();
    e.reading_time_unix_micros = t("2026-07-13T22:30:00Z").timestamp_micros();
    e.received_at_unix_micros = t("2026-07-14T08:29:00Z").timestamp_micros();
    e.readings = vec![vitalwatch_schemas::proto::EvidenceReading {
        observation_id: "obs-h".into(),
        code: "2339-0".into(),
        value: 40.0,
        unit: "mg/dL".into(),
        time_unix_micros: e.reading_time_unix_micros,
    }];
    e.threshold = Some(54.0);
    e.baseline = None;
    e.summary = "Blood glucose 40 mg/dL (threshold < 54 mg/dL)".into();
    e.historical = true;
    e
}

use vitalwatch_schemas::proto::AlertEvent;

fn email_of(ep: &EpisodeState, p: &Plan, martin: &Physician) -> render::email::RenderedEmail {
    let n = p.notifications.iter().find(|n| n.channel == Channel::Email).unwrap();
    render_alert_email(&AlertEmailInput {
        notification: n,
        episode: ep,
        recipient: martin,
        language: Language::En,
        ack_link: Some("https://vw.example/ack?t=a"),
        ack_code: None,
        history: &[],
        id_domain: "vw.example",
    })
    .unwrap()
}

#[test]
fn historical_email_says_measured_and_received_never_the_present() {
    let (ep, p, martin) = setup_event(historical_glucose("pt-0042"));
    let r = email_of(&ep, &p, &martin);
    assert!(
        r.subject.starts_with("[vitalwatch] CRITICAL - HISTORICAL reading - blood glucose 40 mg/dL"),
        "{}",
        r.subject
    );
    // Paris is UTC+2 in July.
    assert!(
        r.text.contains("A HISTORICAL reading needs your attention: it was measured at Tue 14 Jul 2026 00:30 CEST (Europe/Paris) and received at Tue 14 Jul 2026 10:29 CEST (Europe/Paris). It describes the patient at that time, not now."),
        "{}",
        r.text
    );
    assert!(r.text.contains("Reading: HISTORICAL (arrived late; not the patient's current state)\n"), "{}", r.text);
    assert!(r.text.contains("Measured at: Tue 14 Jul 2026 00:30 CEST (Europe/Paris)\n"));
    assert!(r.text.contains("Received at: Tue 14 Jul 2026 10:29 CEST (Europe/Paris)\n"));
    assert!(r.text.contains("received 9 h 59 min later"), "{}", r.text);
    assert!(!r.text.contains("A new alert needs your attention"));
    assert!(!r.text.contains("Reading: current"));
    assert!(r.html.contains("HISTORICAL"));
}

#[test]
fn current_email_says_current_and_when_received() {
    let mut e = event("e1", AlertEventKind::Opened, Severity::Critical, t("2026-07-14T08:30:00Z"));
    e.received_at_unix_micros = t("2026-07-14T08:29:30Z").timestamp_micros();
    let (ep, p, martin) = setup_event(e);
    let r = email_of(&ep, &p, &martin);
    assert!(r.text.contains("Reading: current\n"), "{}", r.text);
    assert!(r.text.contains("Measured at: Tue 14 Jul 2026 10:29 CEST (Europe/Paris)\n"), "{}", r.text);
    assert!(r.text.contains("Received at: Tue 14 Jul 2026 10:29 CEST (Europe/Paris)\n"), "{}", r.text);
    assert!(!r.text.contains("HISTORICAL") && !r.subject.contains("HISTORICAL"));
}

#[test]
fn historical_sms_says_so_and_fits_one_segment() {
    let code =
        AckCodeGenerator::new(SECRET, 6).unwrap().candidate(&EpisodeId::new("ep-1").unwrap(), &pid("dr-martin"), 0);
    let (ep, p, martin) = setup_event(historical_glucose("pt-0042"));
    let n = p.notifications.iter().find(|n| n.channel == Channel::Sms).unwrap();
    let body = render_sms(n, &ep, &martin, Language::En, Some(&code), t("2026-07-14T08:30:00Z")).unwrap();
    assert_eq!(
        body,
        format!(
            "vitalwatch CRITICAL HISTORICAL: patient pt-0042, blood glucose 40mg/dL (limit 54) measured 14/07 00:30, received 14/07 10:29. Reply ACK {code}"
        )
    );
    assert!(body.chars().count() <= 160 && body.chars().all(is_gsm7));
    // A 64-character id: details are dropped, "HISTORICAL" never is.
    let long = "p".repeat(64);
    let (ep, p, martin) = setup_event(historical_glucose(&long));
    let n = p.notifications.iter().find(|n| n.channel == Channel::Sms).unwrap();
    let body = render_sms(n, &ep, &martin, Language::En, Some(&code), t("2026-07-14T08:30:00Z")).unwrap();
    assert!(body.chars().count() <= 160, "{body}");
    assert!(body.contains("HISTORICAL") && body.contains(&long) && body.contains(&format!("ACK {code}")), "{body}");
}

/// A device heartbeat-loss alert goes to the responsible physician by email
/// only, even when the physician asked for LOW alerts by SMS too.
#[test]
fn technical_alert_goes_by_email_only() {
    let t0 = t("2026-07-14T08:30:00Z");
    let mut e = event("e-t", AlertEventKind::Opened, Severity::Low, t0);
    e.rule_id = "technical.device_silent".into();
    e.rule_kind = "device_heartbeat_lost".into();
    e.code = String::new();
    e.readings.clear();
    e.threshold = None;
    e.baseline = None;
    e.summary = "Technical: device ref 0a1b2c3d sending body weight silent for 6 h (no heartbeat, no reading)".into();
    let mut martin = physician("dr-martin", None);
    martin.channels.low = vec![Channel::Email, Channel::Sms];
    let (ep, p, martin) = setup_event_for(e, martin);
    let routes: Vec<(String, Channel)> =
        p.notifications.iter().map(|n| (n.recipient.as_str().to_string(), n.channel)).collect();
    assert_eq!(routes, vec![("dr-martin".to_string(), Channel::Email)]);
    let r = email_of(&ep, &p, &martin);
    assert!(r.subject.contains("device heartbeat"), "{}", r.subject);
    assert!(r.text.contains("technical alert for the care team"), "{}", r.text);
    assert!(r.text.contains("Silent since: "), "{}", r.text);
    assert!(!r.text.contains("Measured at"));
    // A clinical LOW alert still follows the preferences (email and SMS here).
    let (_, p2, _) = setup_event_for(event("e-c", AlertEventKind::Opened, Severity::Low, t0), martin);
    assert_eq!(p2.notifications.iter().filter(|n| n.channel == Channel::Sms).count(), 1);
}
