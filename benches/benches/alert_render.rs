//! Rendering of one alert email with its 14-day chart (vitalwatch-alerting-core):
//! text + HTML + chart PNG, assembled into the MIME message and serialized,
//! as the SMTP transport would send it. Also the chart alone and the SMS.
//!
//! Run: `cargo bench -p vitalwatch-benches --bench alert_render`

use std::hint::black_box;

use chrono::{DateTime, Duration, NaiveTime, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use vitalwatch_alerting_core::render::chart::{ChartData, render_chart_png};
use vitalwatch_alerting_core::render::email::{AlertEmailInput, render_alert_email};
use vitalwatch_alerting_core::render::sms::render_sms;
use vitalwatch_alerting_core::{
    AckCodeGenerator, AckSigner, CapPolicy, CareTeam, Channel, ChannelPreferences, Directory, EmailAddress,
    EpisodeState, EscalationPolicy, Language, PhoneNumber, Physician, PhysicianId, PlanInput, QuietHours, RecentLoad,
    TimeZone, plan,
};
use vitalwatch_schemas::PatientId;
use vitalwatch_schemas::proto::{AlertEvent, AlertEventKind, EvidenceReading, Severity};

const SECRET: &[u8] = b"bench-secret-bench-secret-bench-secret!!";

fn physician(id: &str) -> Physician {
    Physician {
        id: PhysicianId::new(id).unwrap(),
        name: "Dr Martin".into(),
        email: EmailAddress::new(format!("{id}@hospital.example")).unwrap(),
        mobile: Some(PhoneNumber::new("+33612345678").unwrap()),
        time_zone: TimeZone::new("Europe/Paris").unwrap(),
        quiet_hours: Some(QuietHours::new(
            NaiveTime::from_hms_opt(22, 0, 0).unwrap(),
            NaiveTime::from_hms_opt(7, 0, 0).unwrap(),
        )),
        channels: ChannelPreferences::default(),
        hourly_cap: None,
        language: None,
    }
}

fn episode(now: DateTime<Utc>) -> EpisodeState {
    let micros = now.timestamp_micros();
    let event = AlertEvent {
        event_id: "ev-1".into(),
        episode_id: "ep-0123456789abcdef".into(),
        patient_id: "pt-0042".into(),
        rule_id: "threshold.spo2.low".into(),
        rule_kind: "threshold".into(),
        kind: AlertEventKind::Opened as i32,
        severity: Severity::Critical as i32,
        program: "copd".into(),
        code: "59408-5".into(),
        reading_time_unix_micros: micros - 60_000_000,
        detected_at_unix_micros: micros,
        readings: vec![EvidenceReading {
            observation_id: "obs-1".into(),
            code: "59408-5".into(),
            value: 87.0,
            unit: "%".into(),
            time_unix_micros: micros - 60_000_000,
        }],
        threshold: Some(90.0),
        baseline: Some(95.0),
        summary: "SpO2 87 % below 90 %".into(),
        trace_id: "trace-1".into(),
        previous_severity: 0,
        historical: false,
        received_at_unix_micros: micros - 30_000_000,
        resolution: 0,
        rules_version: 0,
    };
    EpisodeState::from_event(&event, now).unwrap().0
}

fn bench(c: &mut Criterion) {
    let now: DateTime<Utc> = "2026-07-14T08:30:00Z".parse().unwrap();
    let ep = episode(now);
    let martin = physician("dr-martin");
    let dir = Directory::new([martin.clone(), physician("dr-chen")]).unwrap();
    let team = CareTeam {
        patient_id: PatientId::new("pt-0042").unwrap(),
        responsible: martin.id.clone(),
        deputies: vec![PhysicianId::new("dr-chen").unwrap()],
        policy: EscalationPolicy::default(),
    };
    let load = RecentLoad::new();
    let caps = CapPolicy::default();
    let p = plan(PlanInput { episode: &ep, team: &team, directory: &dir, load: &load, caps: &caps, now });
    let email = p.notifications.iter().find(|n| n.channel == Channel::Email).unwrap().clone();
    let sms = p.notifications.iter().find(|n| n.channel == Channel::Sms).unwrap().clone();
    // 14 days, 4 readings a day.
    let history: Vec<(DateTime<Utc>, f64)> =
        (0..56).map(|i| (now - Duration::hours(6 * i), 94.0 + ((i * 7) % 5) as f64 * 0.5)).collect();
    let signer = AckSigner::new(SECRET).unwrap();
    let code = AckCodeGenerator::new(SECRET, 6).unwrap().candidate(&ep.episode_id, &martin.id, 0);
    let from: vitalwatch_alerting_core::render::email::Mailbox =
        "vitalwatch <alerts@hospital.example>".parse().unwrap();

    c.bench_function("alert_email_with_chart", |b| {
        b.iter(|| {
            let (token, _) = signer.issue(&email, now + Duration::hours(72));
            let link = AckSigner::link("https://vw.example/ack", &token);
            let rendered = render_alert_email(&AlertEmailInput {
                notification: &email,
                episode: &ep,
                recipient: &martin,
                language: Language::Fr,
                ack_link: Some(&link),
                ack_code: Some(&code),
                history: &history,
                id_domain: "vitalwatch.hospital.example",
            })
            .unwrap();
            let message = rendered.to_message(&from, &martin, now).unwrap();
            black_box(message.formatted())
        })
    });

    let chart = ChartData {
        title: "SpO2".into(),
        unit: "%".into(),
        points: history.clone(),
        threshold: Some(90.0),
        baseline: Some(95.0),
        highlight: Some((now, 87.0)),
        end: now,
        days: 14,
    };
    c.bench_function("chart_png_only", |b| {
        b.iter(|| black_box(render_chart_png(&chart, martin.time_zone.tz(), Language::Fr).unwrap()))
    });
    c.bench_function("sms_body", |b| {
        b.iter(|| black_box(render_sms(&sms, &ep, &martin, Language::Fr, Some(&code), now).unwrap()))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
