//! Joining and leaving the MQTT shared subscription, so that ingest can scale
//! down without stranding readings (issue #12, defect 7).
//!
//! Mosquitto assigns each message of a shared subscription to one member's
//! session, also while that member is offline (eclipse-mosquitto#1747): a
//! replica that just disconnects keeps receiving its share into its
//! persistent session, where it waits until the same client id comes back.
//! So on shutdown a replica leaves instead:
//!
//! 1. it UNSUBSCRIBEs its shared filters: the broker routes nothing new to it;
//! 2. it takes and acknowledges what the broker had already queued for it:
//!    after an UNSUBSCRIBE Mosquitto still sends what sits in the session
//!    (in flight and queued), but MQTT has no "queue empty" signal, so the
//!    replica publishes a marker (QoS 1) to a topic only it subscribes to,
//!    right after the UNSUBSCRIBE on the same connection. A session's queue
//!    is first in, first out: when the marker comes back, everything queued
//!    before it has been received (and is then processed and acknowledged);
//! 3. it ends its session (`worker::end_session`: a connection with
//!    clean session = 1, which discards the session, then DISCONNECT), so no
//!    session waits for a client id that may never return.
//!
//! Verified on Mosquitto 2.0.11 with the project's broker settings: a member
//! holding 1,000 unacknowledged messages and 1,000 more queued unsubscribed;
//! the next 1,000 published all went to the other member, the 2,000 of the
//! leaving member's session still reached it as it acknowledged, and its
//! marker came last (position 2,000 of 2,001). MQTT 3.1.1 cannot give a
//! session an expiry on DISCONNECT (MQTT 5 can), hence the clean connection.
//!
//! A replica killed without SIGTERM (SIGKILL, OOM, node loss) cannot leave:
//! its share waits in its session until the same client id returns (the
//! StatefulSet restarts the pod under its name) or the session expires
//! (`persistent_client_expiration`): docs/operations.md.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rumqttc::{AsyncClient, Publish, QoS};
use vitalwatch_schemas::topics;

use crate::acks::{AckQueue, Push};

/// The shared filters ingest consumes.
const FILTERS: [&str; 3] =
    [topics::MQTT_DEVICE_READINGS_FILTER, topics::MQTT_MANUAL_FILTER, topics::MQTT_DEVICE_STATUS_FILTER];

/// One replica's membership of the shared subscription.
pub struct Membership {
    client: AsyncClient,
    share: String,
    leave_enabled: bool,
    /// `vitalwatch/v1/ingest/<client id>/drain`: the leave marker's topic.
    drain_topic: String,
    /// Unique to this process: a marker an earlier process left in the
    /// session (a leave that timed out) is never taken for this one's.
    run_id: String,
    /// Leave sequences sent so far; only the latest one's marker counts.
    attempt: AtomicU64,
    leaving: AtomicBool,
    /// Serializes the subscribe and leave request sequences, so a subscribe
    /// started on a CONNACK never lands after the UNSUBSCRIBE of a leave.
    requests: tokio::sync::Mutex<()>,
}

impl Membership {
    /// `share` empty: a plain (not shared) subscription, which is never left
    /// (its session keeps queueing for the replica's return). `leave_enabled`
    /// is `ingest.leave_on_shutdown`.
    pub fn new(client: AsyncClient, share: String, client_id: &str, leave_enabled: bool) -> Arc<Membership> {
        let safe_id: String = client_id.chars().map(|c| if matches!(c, '+' | '#' | '/') { '_' } else { c }).collect();
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        Arc::new(Membership {
            client,
            leave_enabled: leave_enabled && !share.is_empty(),
            share,
            drain_topic: format!("{}/ingest/{safe_id}/drain", topics::MQTT_PREFIX),
            run_id: format!("{}-{nanos}", std::process::id()),
            attempt: AtomicU64::new(0),
            leaving: AtomicBool::new(false),
            requests: tokio::sync::Mutex::new(()),
        })
    }

    /// True when this replica leaves the shared subscription on shutdown.
    pub fn leaves(&self) -> bool {
        self.leave_enabled
    }

    fn filter(&self, f: &str) -> String {
        if self.share.is_empty() { f.to_owned() } else { format!("$share/{}/{f}", self.share) }
    }

    /// After a CONNACK: subscribes, or, once leaving, sends the leave
    /// sequence again (a resumed session may still hold the subscription if
    /// the UNSUBSCRIBE was lost with the previous connection).
    ///
    /// Waits for room in the client's request queue: after a reconnect under
    /// load that queue can be full of acknowledgments, and a non-blocking
    /// subscribe was seen failing ("Failed to send mqtt requests to
    /// eventloop"): with a lost session, ingest would then have stayed
    /// connected and subscribed to nothing. The connection loop goes on
    /// polling meanwhile, which is what drains the queue; call this from a
    /// task of its own.
    pub async fn on_connected(self: Arc<Self>) {
        let _turn = self.requests.lock().await;
        if self.leaving.load(Ordering::SeqCst) {
            self.send_leave().await;
            return;
        }
        for f in FILTERS {
            if let Err(e) = self.client.subscribe(self.filter(f), QoS::AtLeastOnce).await {
                // Only when the event loop is gone (shutting down).
                tracing::warn!(message = "Subscribe request not sent.", error = %e);
            }
        }
    }

    /// Starts leaving: from now on [`on_connected`](Self::on_connected) leaves
    /// instead of subscribing. Waits for room in the client's request queue.
    pub async fn leave(self: Arc<Self>) {
        let _turn = self.requests.lock().await;
        self.leaving.store(true, Ordering::SeqCst);
        self.send_leave().await;
    }

    /// SUBSCRIBE marker topic, UNSUBSCRIBE the shared filters, PUBLISH the
    /// marker: in this order on one connection, so the broker puts the marker
    /// in the session after the last message of the shared subscription.
    async fn send_leave(&self) {
        let attempt = self.attempt.fetch_add(1, Ordering::SeqCst) + 1;
        let sent = async {
            self.client.subscribe(self.drain_topic.clone(), QoS::AtLeastOnce).await?;
            for f in FILTERS {
                self.client.unsubscribe(self.filter(f)).await?;
            }
            self.client.publish(self.drain_topic.clone(), QoS::AtLeastOnce, false, self.marker(attempt)).await
        };
        match sent.await {
            Ok(()) => tracing::info!(message = "Leaving the shared subscription.", attempt),
            Err(e) => tracing::warn!(message = "Leave requests not sent.", error = %e),
        }
    }

    fn marker(&self, attempt: u64) -> String {
        format!("{}/{attempt}", self.run_id)
    }

    /// True for a message on this replica's marker topic (never a reading).
    pub fn is_marker_topic(&self, topic: &str) -> bool {
        topic == self.drain_topic
    }

    /// True when `p` is the marker of the latest leave sequence: everything
    /// the broker had queued for this replica has been received.
    pub fn is_current_marker(&self, p: &Publish) -> bool {
        self.leaving.load(Ordering::SeqCst)
            && self.is_marker_topic(&p.topic)
            && p.payload == self.marker(self.attempt.load(Ordering::SeqCst)).as_bytes()
    }

    /// Acknowledges a marker through the same batched path as the readings'
    /// acknowledgments (`acks`), keeping their order.
    pub fn acknowledge(&self, acks: &AckQueue, p: &Publish) {
        if acks.push(p.pkid) == Push::SendThroughClient && self.client.try_ack(p).is_err() {
            acks.push_queued(p.pkid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The event loop is returned to keep the client's request queue open.
    fn membership(share: &str, client_id: &str, leave: bool) -> (Arc<Membership>, rumqttc::EventLoop) {
        let (client, eventloop) = AsyncClient::new(rumqttc::MqttOptions::new("t", "127.0.0.1", 1), 10);
        (Membership::new(client, share.into(), client_id, leave), eventloop)
    }

    fn publish(topic: &str, payload: &str) -> Publish {
        Publish::new(topic, QoS::AtLeastOnce, payload.to_owned())
    }

    #[test]
    fn only_a_shared_subscription_is_left() {
        assert!(membership("g", "ingest-0", true).0.leaves());
        assert!(!membership("", "ingest-0", true).0.leaves(), "a plain subscription keeps queueing for the replica");
        assert!(!membership("g", "ingest-0", false).0.leaves());
    }

    #[test]
    fn the_marker_topic_is_the_replicas_own_and_never_a_wildcard() {
        let (m, _el) = membership("g", "vitalwatch-ingest-2", true);
        assert!(m.is_marker_topic("vitalwatch/v1/ingest/vitalwatch-ingest-2/drain"));
        assert!(!m.is_marker_topic("vitalwatch/v1/ingest/vitalwatch-ingest-1/drain"));
        let (odd, _el) = membership("g", "a+b#c/d", true);
        assert!(odd.is_marker_topic("vitalwatch/v1/ingest/a_b_c_d/drain"));
    }

    #[tokio::test]
    async fn only_the_latest_leave_sequence_marker_counts() {
        let (m, _el) = membership("g", "i", true);
        let topic = "vitalwatch/v1/ingest/i/drain";
        let first = m.marker(1);
        assert!(!m.is_current_marker(&publish(topic, &first)), "not leaving yet");
        // The client's request queue holds 10: room for a leave sequence (5 requests).
        m.clone().leave().await;
        assert!(m.is_current_marker(&publish(topic, &first)));
        m.clone().on_connected().await; // a reconnect while leaving sends a new sequence
        assert!(!m.is_current_marker(&publish(topic, &first)), "a marker sent before the reconnect");
        assert!(m.is_current_marker(&publish(topic, &m.marker(2))));
        assert!(!m.is_current_marker(&publish(topic, "12-34/2")), "another process's marker");
        assert!(!m.is_current_marker(&publish("vitalwatch/v1/ingest/j/drain", &m.marker(2))));
    }
}
