//! The embedded MQTT broker of `vitalwatch run` (rumqttd), on its own threads.
//!
//! rumqttd serves one protocol per listener (a 3.1.1 listener drops an MQTT 5 CONNECT without an
//! answer), so the port clients use is a small front: it reads each connection's CONNECT,
//! refuses missing or wrong credentials with a CONNACK "not authorized" (when
//! `mqtt.embedded_users` is set), and hands the connection to rumqttd's MQTT 3.1.1 or MQTT 5
//! listener on 127.0.0.1 (internal ports, which check the same credentials).

pub mod connect;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// Who may connect: username -> password. Empty: anyone (no credentials asked).
pub type Users = HashMap<String, String>;

/// How long a new connection may take to send its CONNECT.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Starts a broker listening on `listen` and waits until it accepts
/// connections. If the address is taken and `fallback` is set (the user did
/// not ask for this address), a free port on the same host is used instead.
/// With `users` not empty, clients must give one of those username/password pairs.
/// Returns the address the broker listens on.
pub async fn start(listen: SocketAddr, max_payload: usize, fallback: bool, users: Users) -> anyhow::Result<SocketAddr> {
    let front = match TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) if fallback && e.kind() == std::io::ErrorKind::AddrInUse => {
            let l = TcpListener::bind(SocketAddr::new(listen.ip(), 0)).await?;
            tracing::warn!(
                message = "MQTT port taken (another broker?); the embedded broker uses another port.",
                port = l.local_addr()?.port()
            );
            l
        }
        Err(e) => {
            anyhow::bail!(
                "cannot listen on {listen} for the embedded MQTT broker: {e} (choose another with --mqtt-listen)"
            )
        }
    };
    let listen = front.local_addr()?;
    let (v4, v5) = (free_loopback()?, free_loopback()?);
    let auth = (!users.is_empty()).then(|| users.clone());
    let server = |name: &str, addr: SocketAddr| ServerSettings {
        name: name.into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 60_000,
            max_payload_size: max_payload,
            max_inflight_count: 1000,
            auth: auth.clone(),
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
        v4: Some(HashMap::from([("v4".to_owned(), server("v4", v4))])),
        v5: Some(HashMap::from([("v5".to_owned(), server("v5", v5))])),
        ..Default::default()
    };
    std::thread::Builder::new().name("mqtt-broker".into()).spawn(move || {
        let mut broker = Broker::new(config);
        if let Err(e) = broker.start() {
            tracing::error!(message = "Embedded MQTT broker stopped.", error = %e);
        }
    })?;
    for addr in [v4, v5] {
        let mut up = false;
        for _ in 0..100 {
            if TcpStream::connect(addr).await.is_ok() {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::ensure!(up, "the embedded MQTT broker did not start on {addr}");
    }
    let front_state = Arc::new(Front { users, v4, v5, max_connect: max_payload + 1024 });
    tokio::spawn(async move {
        loop {
            match front.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(front_state.clone().serve(stream));
                }
                Err(e) => {
                    tracing::warn!(message = "Embedded MQTT broker: accept failed.", error = %e);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    });
    Ok(listen)
}

/// A free port on 127.0.0.1 for an internal listener.
fn free_loopback() -> std::io::Result<SocketAddr> {
    std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()
}

struct Front {
    users: Users,
    v4: SocketAddr,
    v5: SocketAddr,
    max_connect: usize,
}

impl Front {
    /// One client connection: CONNECT, credentials, then a byte pipe to rumqttd.
    async fn serve(self: Arc<Self>, mut client: TcpStream) {
        let _ = client.set_nodelay(true);
        let mut buf = Vec::with_capacity(256);
        let connect = tokio::time::timeout(CONNECT_TIMEOUT, async {
            loop {
                match connect::parse(&buf, self.max_connect) {
                    Ok(Some(c)) => return Ok(c),
                    Ok(None) => {}
                    Err(e) => return Err(e.to_string()),
                }
                let mut chunk = [0u8; 1024];
                match client.read(&mut chunk).await {
                    Ok(0) | Err(_) => return Err("closed before CONNECT".to_owned()),
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
        })
        .await;
        let connect = match connect {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                tracing::debug!(message = "Embedded MQTT broker: connection dropped.", reason = %e);
                return;
            }
            Err(_) => return,
        };
        if !self.allowed(&connect) {
            // No username in the log: it may be a patient id.
            tracing::warn!(message = "Embedded MQTT broker: client refused (no or wrong credentials).");
            let _ = client.write_all(connect::not_authorized(connect.level)).await;
            let _ = client.shutdown().await;
            return;
        }
        let backend = if connect.level == connect::MQTT5 { self.v5 } else { self.v4 };
        let Ok(mut server) = TcpStream::connect(backend).await else { return };
        let _ = server.set_nodelay(true);
        if server.write_all(&buf).await.is_err() {
            return;
        }
        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
    }

    fn allowed(&self, c: &connect::Connect) -> bool {
        if self.users.is_empty() {
            return true;
        }
        let (Some(user), Some(given)) = (&c.username, &c.password) else { return false };
        self.users.get(user).is_some_and(|expected| constant_time_eq(expected.as_bytes(), given))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
