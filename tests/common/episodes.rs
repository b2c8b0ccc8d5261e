//! Alert episodes opened the way the pipeline opens them, for tests of the admin API and the
//! acknowledgment paths.

use chrono::Utc;
use vitalwatch_alerting::EpisodeId;
use vitalwatch_alerting::store::{Action, TransitionOptions};
use vitalwatch_schemas::proto::{AlertEvent, AlertEventKind, Severity};

/// The OPENED event of a high SpO2 threshold episode measured a minute ago.
pub fn event(episode: &str, patient: &str) -> AlertEvent {
    let now = Utc::now().timestamp_micros();
    AlertEvent {
        event_id: format!("{episode}-opened"),
        episode_id: episode.into(),
        patient_id: patient.into(),
        rule_id: "threshold.spo2.low".into(),
        rule_kind: "threshold".into(),
        kind: AlertEventKind::Opened as i32,
        severity: Severity::High as i32,
        program: "copd".into(),
        code: "59408-5".into(),
        reading_time_unix_micros: now - 60_000_000,
        detected_at_unix_micros: now,
        summary: "SpO2 below threshold".into(),
        ..AlertEvent::default()
    }
}

/// Opens an episode the way the pipeline does: the rules engine's row and the alerting episode.
pub async fn open_episode(url: &str, episode: &str, patient: &str) {
    let st = vitalwatch_platform::store::open(url, 100).await.unwrap();
    st.record_alert_events(&[event(episode, patient)]).await.unwrap();
    let alerts = vitalwatch_alerting::store::open(url).await.unwrap();
    let options = TransitionOptions { codes: None, caps: Default::default() };
    alerts
        .transition(
            &EpisodeId::new(episode).unwrap(),
            Action::Event(Box::new(event(episode, patient))),
            &options,
            Utc::now(),
        )
        .await
        .unwrap();
}

/// A plain client of a test PostgreSQL database.
pub async fn pg(url: &str) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    c
}
