//! `vitalwatch run --simulate N`: N patients publishing at a gentle pace.

use std::time::Duration;

use chrono::Utc;
use rumqttc::{AsyncClient, QoS};
use vitalwatch_platform::config::MqttSettings;
use vitalwatch_platform::shutdown::CancellationToken;
use vitalwatch_platform::store::Store;
use vitalwatch_schemas::{DeviceId, PatientId};

use super::model::{FORMATS, SimPatient};

/// Prefix of simulated patient and device ids in `run`.
pub const PREFIX: &str = "p-sim";

/// Registers the simulated patients and their devices (idempotent), gives
/// each the care program its trend calls for, and puts them in the care of a
/// demo physician, so `run --simulate` shows real alerts within minutes.
pub async fn register(store: &dyn Store, alert_store_url: &str, n: usize) -> anyhow::Result<()> {
    use vitalwatch_alerting::team::{ChannelPreferences, EmailAddress, PhoneNumber, TimeZone};
    use vitalwatch_alerting::{CareTeam, Channel, EscalationPolicy, Physician, PhysicianId};
    use vitalwatch_rules::{OxygenPlan, PatientRules, Program, Spo2Target};

    register_population(store, PREFIX, n, &FORMATS).await?;
    let alerts = vitalwatch_alerting::store::open(alert_store_url).await?;
    let both = vec![Channel::Email, Channel::Sms];
    let doctor = Physician {
        id: PhysicianId::new("dr-demo")?,
        name: "Dr Demo".into(),
        email: EmailAddress::new("dr.demo@example.invalid")?,
        mobile: Some(PhoneNumber::new("+33600000000")?),
        time_zone: TimeZone::new("Europe/Paris")?,
        quiet_hours: None,
        channels: ChannelPreferences {
            low: vec![Channel::Email],
            medium: vec![Channel::Email],
            high: both.clone(),
            critical: both,
        },
        hourly_cap: None,
        language: None,
    };
    alerts.upsert_physician(&doctor).await?;
    let deputy = Physician {
        id: PhysicianId::new("dr-deputy")?,
        name: "Dr Deputy".into(),
        email: EmailAddress::new("dr.deputy@example.invalid")?,
        mobile: Some(PhoneNumber::new("+33600000001")?),
        ..doctor.clone()
    };
    alerts.upsert_physician(&deputy).await?;
    for i in 0..n {
        let p = SimPatient::new(PREFIX, i, &FORMATS);
        let pid = PatientId::new(p.id.clone())?;
        let program = match p.trend {
            super::model::Trend::WeightGain => Program::HeartFailure,
            super::model::Trend::Spo2Drift => Program::Copd,
            super::model::Trend::PressureRise => Program::Hypertension,
            super::model::Trend::Stable => Program::General,
        };
        let mut rules = PatientRules::for_program(program);
        if program == Program::Copd {
            // A COPD enrolment states the SpO2 target and oxygen use: the
            // simulated COPD patients are on air with the usual 94-98 % target.
            rules.oxygen_plan = Some(OxygenPlan { target: Spo2Target::Standard, supplemental_oxygen: false });
        }
        store.set_patient_rules(&pid, &serde_json::to_string(&rules)?).await?;
        alerts
            .set_care_team(&CareTeam {
                patient_id: pid,
                responsible: doctor.id.clone(),
                deputies: vec![deputy.id.clone()],
                policy: EscalationPolicy::default(),
            })
            .await?;
    }
    Ok(())
}

/// Registers `n` patients named `prefix` with their devices enrolled.
pub async fn register_population(
    store: &dyn Store,
    prefix: &str,
    n: usize,
    formats: &[&'static str],
) -> anyhow::Result<()> {
    let since = Utc::now() - chrono::Duration::days(365);
    let snapshot = store.registry().await?;
    for i in 0..n {
        let p = SimPatient::new(prefix, i, formats);
        let pid = PatientId::new(p.id.clone())?;
        store.add_patient(&pid).await?;
        for (device, kind) in p.devices() {
            let did = DeviceId::new(device)?;
            if snapshot.patient_for(&did, Utc::now(), Utc::now()).is_ok_and(|q| *q == pid) {
                continue;
            }
            store.add_device(&did, kind).await?;
            store.enrol(&did, &pid, since).await?;
        }
    }
    Ok(())
}

/// Publishes one reading per patient every `interval` until `shutdown`.
pub async fn run(mqtt: &MqttSettings, n: usize, interval: Duration, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut opts = vitalwatch_ingest::mqtt_client::options(mqtt, "vitalwatch-simulator")?;
    opts.set_keep_alive(Duration::from_secs(30)).set_inflight(200);
    let (client, mut eventloop) = AsyncClient::new(opts, 1000);
    let poller = tokio::spawn(async move {
        loop {
            if eventloop.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    });
    let mut patients: Vec<SimPatient> = (0..n).map(|i| SimPatient::new(PREFIX, i, &FORMATS)).collect();
    let mut step = 0u64;
    let pause = interval / (n.max(1) as u32);
    'outer: loop {
        for p in patients.iter_mut() {
            let (topic, payload, _) = p.reading(step, Utc::now());
            if client.publish(topic, QoS::AtLeastOnce, false, payload).await.is_err() {
                break 'outer;
            }
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.cancelled() => break 'outer,
            }
        }
        step += 1;
    }
    let _ = client.disconnect().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    poller.abort();
    Ok(())
}
