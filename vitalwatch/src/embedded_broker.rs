//! The embedded MQTT broker of `vitalwatch run` (rumqttd), on its own threads.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

/// Starts a broker listening on `listen` and waits until it accepts
/// connections. If the address is taken and `fallback` is set (the user did
/// not ask for this address), a free port on the same host is used instead.
/// Returns the address the broker listens on.
pub async fn start(listen: SocketAddr, max_payload: usize, fallback: bool) -> anyhow::Result<SocketAddr> {
    let listen = match std::net::TcpListener::bind(listen) {
        Ok(l) => {
            drop(l);
            listen
        }
        Err(e) if fallback && e.kind() == std::io::ErrorKind::AddrInUse => {
            let free = std::net::TcpListener::bind(SocketAddr::new(listen.ip(), 0))?.local_addr()?;
            tracing::warn!(
                message = "MQTT port taken (another broker?); the embedded broker uses another port.",
                port = free.port()
            );
            free
        }
        Err(e) => {
            anyhow::bail!(
                "cannot listen on {listen} for the embedded MQTT broker: {e} (choose another with --mqtt-listen)"
            )
        }
    };
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
            return Ok(listen);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("the embedded MQTT broker did not start on {listen}")
}
