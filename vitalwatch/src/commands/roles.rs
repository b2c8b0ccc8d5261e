//! The production roles, one per process.

use std::path::Path;
use std::sync::Arc;

use crate::config::{Profile, Settings};
use anyhow::Context as _;
use vitalwatch_ingest::persist::{self, PersistStats};
use vitalwatch_ingest::worker::{self, IngestStats, SharedRegistry};
use vitalwatch_platform::bus::watch::Progress;
use vitalwatch_platform::config::BusKind;
use vitalwatch_platform::shutdown::CancellationToken;
use vitalwatch_platform::tasks::TaskSet;
use vitalwatch_platform::{shutdown, store, telemetry};
use vitalwatch_rules::worker::{self as rules_worker, RulesStats};

use super::wiring::{Bus, Checks};

/// Runs a role's main loop in a [`TaskSet`]: it stops on SIGTERM/SIGINT, and
/// a loop still draining after `ops.drain_deadline_secs` is reported (error
/// log, non-zero exit) instead of being cut silently.
pub(crate) async fn supervise<F>(
    s: &Settings,
    shutdown: &CancellationToken,
    name: &'static str,
    role: impl FnOnce(CancellationToken) -> F,
) -> anyhow::Result<()>
where
    F: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let mut tasks = TaskSet::new(shutdown.clone(), s.ops.drain_deadline());
    let token = tasks.token(0);
    tasks.spawn(0, name, role(token));
    Ok(tasks.run().await?)
}

fn service_settings(config: Option<&Path>) -> anyhow::Result<Settings> {
    let s = Settings::load(Profile::Service, config)?;
    telemetry::init(s.log_format, "info,rumqttc=warn,librdkafka=warn");
    if s.bus.kind == BusKind::Memory {
        anyhow::bail!("bus.kind = \"memory\" only works inside `vitalwatch run` (one process); use kafka");
    }
    Ok(s)
}

/// `vitalwatch ingest`.
pub async fn ingest(config: Option<&Path>) -> anyhow::Result<()> {
    let s = service_settings(config)?;
    let shutdown = shutdown::on_signals();
    let store = store::open_settings(&s.database).await.context("opening the database")?;
    let stats = Arc::new(IngestStats::default());
    Checks::new().database(store.clone()).bus(&s)?.mqtt(stats.clone()).serve(&s, &shutdown).await?;
    let bus = Bus::open(&s).await?;
    let registry = SharedRegistry::load(store, &shutdown).await?;
    tracing::info!(message = "Ingest starting.", client_id = %s.mqtt.client_id, share_group = %s.mqtt.share_group);
    let (outputs, config) = (bus.outputs(&s)?, s.ingest_config());
    // The HTTP ingestion endpoint, when `ingest.http_listen` is set (docs/http-ingest.md).
    let http = vitalwatch_ingest::http::Server::bind(&config).await?;
    supervise(&s, &shutdown, "ingest", |token| async move {
        worker::run(&config, outputs, registry, stats, http, token).await
    })
    .await
}

/// `vitalwatch persist`.
pub async fn persist(config: Option<&Path>) -> anyhow::Result<()> {
    let s = service_settings(config)?;
    let shutdown = shutdown::on_signals();
    let store = store::open_settings(&s.database).await.context("opening the database")?;
    let progress = Progress::new("persist");
    Checks::new().database(store.clone()).bus(&s)?.consumer(&s, progress.clone()).serve(&s, &shutdown).await?;
    let bus = Bus::open(&s).await?;
    let topics = [s.bus.observations_topic.as_str(), s.bus.device_status_topic.as_str()];
    let mut consumer = bus.watched_consumer(&s, &s.persist.group, &topics, &progress)?;
    let dead_letters = bus.dead_letters(&s, "persist")?;
    tracing::info!(message = "Persist starting.", group = %s.persist.group);
    let (stats, settings, status_topic) =
        (Arc::new(PersistStats::default()), s.persist.clone(), s.bus.device_status_topic.clone());
    supervise(&s, &shutdown, "persist", |token| async move {
        persist::run(consumer.as_mut(), store, &settings, &status_topic, stats, dead_letters, token).await
    })
    .await
}

/// The rules worker's configuration from the settings: `[rules]` (the
/// worker's keys and the engine's, already validated by
/// [`Settings::validate`]) and the topics and group it works with.
///
/// # Errors
///
/// Out-of-range engine settings (when `s` was not validated).
pub fn rules_config(s: &Settings) -> anyhow::Result<rules_worker::WorkerConfig> {
    let r = &s.rules;
    r.engine.validate().map_err(|e| anyhow::anyhow!("rules engine settings: {e}"))?;
    Ok(rules_worker::WorkerConfig {
        settings: r.clone(),
        engine: r.engine.clone(),
        observations_topic: s.bus.observations_topic.clone(),
        status_topic: s.bus.device_status_topic.clone(),
        alerts_topic: s.bus.alerts_topic.clone(),
        persist_group: s.persist.group.clone(),
    })
}

/// `vitalwatch rules`.
pub async fn rules(config: Option<&Path>) -> anyhow::Result<()> {
    let s = service_settings(config)?;
    let cfg = rules_config(&s)?;
    let shutdown = shutdown::on_signals();
    let store = store::open_settings(&s.database).await.context("opening the database")?;
    let progress = Progress::new("rules");
    Checks::new().database(store.clone()).bus(&s)?.consumer(&s, progress.clone()).serve(&s, &shutdown).await?;
    let bus = Bus::open(&s).await?;
    let producer = bus.urgent_producer(&s)?;
    let topics = [s.bus.observations_topic.as_str(), s.bus.device_status_topic.as_str()];
    let mut consumer = bus.watched_consumer(&s, &s.rules.group, &topics, &progress)?;
    let dead_letters = bus.dead_letters(&s, "rules")?;
    tracing::info!(message = "Rules starting.", group = %s.rules.group);
    let stats = Arc::new(RulesStats::default());
    supervise(&s, &shutdown, "rules", |token| async move {
        let result =
            rules_worker::run(consumer.as_mut(), producer.clone(), store, &cfg, stats, dead_letters, token).await;
        let _ = producer.flush(std::time::Duration::from_secs(10)).await;
        result
    })
    .await
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closure signature
mod tests {
    use super::*;

    #[test]
    fn engine_settings_come_from_the_rules_section() {
        let s = Settings::defaults(Profile::Service);
        let d = rules_config(&s).unwrap().engine;
        assert_eq!((d.retention_days, d.default_program), (14, vitalwatch_rules::Program::General));
        figment::Jail::expect_with(|jail| {
            jail.set_env("VITALWATCH_RULES__RETENTION_DAYS", "30");
            jail.set_env("VITALWATCH_RULES__ALLOWED_LATENESS_SECS", "600");
            jail.set_env("VITALWATCH_RULES__DEFAULT_PROGRAM", "heart_failure");
            let s = Settings::load(Profile::Service, None).unwrap();
            let e = rules_config(&s).unwrap().engine;
            assert_eq!(e.retention_days, 30);
            assert_eq!(e.allowed_lateness_secs, 600);
            assert_eq!(e.default_program, vitalwatch_rules::Program::HeartFailure);
            jail.set_env("VITALWATCH_RULES__DEFAULT_PROGRAM", "cardio");
            let err = Settings::load(Profile::Service, None).unwrap_err().to_string();
            assert!(err.contains("cardio"), "{err}");
            jail.set_env("VITALWATCH_RULES__DEFAULT_PROGRAM", "general");
            jail.set_env("VITALWATCH_RULES__RETENTION_DAYS", "0");
            let err = Settings::load(Profile::Service, None).unwrap_err().to_string();
            assert!(err.contains("retention"), "{err}");
            Ok(())
        });
        let mut s = Settings::defaults(Profile::Service);
        s.rules.engine.retention_days = 0;
        assert!(rules_config(&s).unwrap_err().to_string().contains("retention"));
    }
}
