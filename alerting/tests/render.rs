//! Rendering: SMS length and content, chart PNG, HTML escaping, digests.

mod common;

use chrono::Duration;
use common::*;
use vitalwatch_alerting::render::chart::{CHART_SIZE, ChartData, render_chart_png};
use vitalwatch_alerting::render::email::{AlertEmailInput, render_alert_email, render_digest_email};
use vitalwatch_alerting::render::sms::{is_gsm7, render_sms};
use vitalwatch_alerting::*;
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
    let p = plan(PlanInput {
        episode: &ep,
        team: &team,
        directory: &dir,
        load: &RecentLoad::new(),
        caps: &CapPolicy::default(),
        now: t0,
    });
    (ep, p, martin)
}

#[test]
fn sms_fits_one_gsm7_segment() {
    let code =
        AckCodeGenerator::new(SECRET, 6).unwrap().candidate(&EpisodeId::new("ep-1").unwrap(), &pid("dr-martin"), 0);
    let (ep, p, martin) = setup("pt-0042", "s");
    let n = p.notifications.iter().find(|n| n.channel == Channel::Sms).unwrap();
    let body = render_sms(n, &ep, &martin, Some(&code), t("2026-07-14T08:30:00Z")).unwrap();
    assert_eq!(
        body,
        format!("vitalwatch CRITICAL: patient pt-0042, SpO2 87% (limit 90) at 14/07 10:29. Reply ACK {code}")
    );
    // Worst case: a 64-character patient id still fits, dropping detail first.
    let long = "p".repeat(64);
    let (ep, p, martin) = setup(&long, "s");
    let n = p.notifications.iter().find(|n| n.channel == Channel::Sms).unwrap();
    let body = render_sms(n, &ep, &martin, Some(&code), t("2026-07-14T08:30:00Z")).unwrap();
    assert!(body.chars().count() <= 160, "{body}");
    assert!(body.contains(&long) && body.contains(&format!("ACK {code}")));
    assert!(body.chars().all(is_gsm7));
    // The all-clear needs no code.
    let mut resolved = n.clone();
    resolved.step = Step::Resolved;
    let body = render_sms(&resolved, &ep, &martin, None, t("2026-07-14T08:30:00Z")).unwrap();
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
    let png = render_chart_png(&data, chrono_tz::Europe::Paris).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let w = u32::from_be_bytes([png[16], png[17], png[18], png[19]]);
    let h = u32::from_be_bytes([png[20], png[21], png[22], png[23]]);
    assert_eq!((w, h), CHART_SIZE);
    let empty = ChartData { points: vec![], threshold: None, baseline: None, highlight: None, ..data };
    assert_eq!(&render_chart_png(&empty, chrono_tz::UTC).unwrap()[..4], b"\x89PNG");
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
    let d = render_digest_email(&martin, &lines, "digest:dr-martin:20260714T0800", "vw.example");
    assert!(d.text.contains("LOW - patient pt-0042 - SpO2 87 %"));
    assert!(d.subject.contains("2 alert(s), 1 open"), "{}", d.subject);
    assert_eq!(d.text.matches("Acknowledge: https://vw.example/ack?t=d1").count(), 1, "{}", d.text);
    assert!(d.text.contains("acknowledged by dr-martin"), "{}", d.text);
    assert!(d.text.contains("15 (SAMU)"));
}
