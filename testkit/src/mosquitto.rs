//! A private Mosquitto broker with the project's zero-loss settings.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::env::{free_port, require_program};

/// A private Mosquitto broker with the project's zero-loss settings, on a free port.
pub struct Mosquitto {
    child: Child,
    /// `mqtt://127.0.0.1:PORT`
    pub url: String,
    /// Port.
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    /// Starts one; `None` (skip) if mosquitto is missing outside CI.
    pub fn start() -> Option<Mosquitto> {
        if !require_program("mosquitto") {
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let conf = dir.path().join("mosquitto.conf");
        // Same queue settings as deploy/mosquitto: never drop QoS 1 messages for a slow subscriber.
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\n\
                 max_queued_messages 0\nmax_queued_bytes 0\nmax_inflight_messages 1000\n\
                 set_tcp_nodelay true\nlog_dest stderr\nlog_type error\nlog_type warning\n",
                dir.path().display()
            ),
        )
        .expect("write mosquitto.conf");
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn mosquitto");
        let until = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < until, "mosquitto did not start on port {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Mosquitto { child, url: format!("mqtt://127.0.0.1:{port}"), port, _dir: dir })
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
