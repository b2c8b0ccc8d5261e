//! The embedded MQTT broker of `vitalwatch run` (rumqttd), on its own threads.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

/// Starts a broker listening on `listen` and waits until it accepts connections.
pub async fn start(listen: SocketAddr, max_payload: usize) -> anyhow::Result<()> {
    // Fail early with a clear message if the port is taken.
    drop(std::net::TcpListener::bind(listen).map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on {listen} for the embedded MQTT broker: {e} (choose another with --mqtt-listen)"
        )
    })?);
    let server = ServerSettings {
        name: "v4".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 60_000,
            max_payload_size: max_payload,
            max_inflight_count: 1000,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: 10_010,
            max_outgoing_packet_count: 1000,
            max_segment_size: 100 * 1024 * 1024,
            max_segment_count: 10,
            ..Default::default()
        },
        v4: Some(HashMap::from([("v4".to_owned(), server)])),
        ..Default::default()
    };
    std::thread::Builder::new().name("mqtt-broker".into()).spawn(move || {
        let mut broker = Broker::new(config);
        if let Err(e) = broker.start() {
            tracing::error!(message = "Embedded MQTT broker stopped.", error = %e);
        }
    })?;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(listen).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("the embedded MQTT broker did not start on {listen}")
}
