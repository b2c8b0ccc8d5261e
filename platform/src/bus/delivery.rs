//! Waiting for the deliveries of several records together: a
//! [`DeliveryGroup`] counts the records handed to the bus and wakes its
//! waiter once, when the last one is settled, instead of a future, a
//! channel and a wake-up per record.
//!
//! Ingest produces one to a few records per MQTT message (the observations,
//! perhaps a dead letter and a device status) and acknowledges the message
//! only once the bus has taken all of them: one group per message.

use std::future::poll_fn;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Instant;

use futures::task::AtomicWaker;

use super::BusError;

/// The records of one unit of work whose deliveries are awaited together.
///
/// Hand records to it with [`Producer::send_grouped`](super::Producer::send_grouped),
/// then wait with [`delivered`](DeliveryGroup::delivered). Cloning shares the
/// group (the backend's delivery callbacks hold a clone per record).
#[derive(Clone)]
pub struct DeliveryGroup(Arc<GroupState>);

/// The shared state of a [`DeliveryGroup`].
pub(crate) struct GroupState {
    /// Records handed to the bus and not yet settled, plus one while the
    /// group is open (so it cannot complete while records are still added).
    pending: AtomicUsize,
    /// The first delivery that failed, if any.
    failed: Mutex<Option<BusError>>,
    waker: AtomicWaker,
    /// When the group was opened: the produce latency of its records.
    pub(crate) started: Instant,
}

impl Default for DeliveryGroup {
    fn default() -> Self {
        Self::new()
    }
}

impl DeliveryGroup {
    /// An open group with no record yet.
    pub fn new() -> Self {
        DeliveryGroup(Arc::new(GroupState {
            pending: AtomicUsize::new(1),
            failed: Mutex::new(None),
            waker: AtomicWaker::new(),
            started: Instant::now(),
        }))
    }

    /// The state a backend attaches to one record, after [`expect`](Self::expect).
    pub(crate) fn state(&self) -> Arc<GroupState> {
        self.0.clone()
    }

    /// One more record is about to be handed to the bus. Call before handing
    /// it over (its delivery may be reported at once, from another thread),
    /// and [`forget`](Self::forget) it if the bus refused it there and then.
    pub(crate) fn expect(&self) {
        self.0.pending.fetch_add(1, Ordering::AcqRel);
    }

    /// The record announced by [`expect`](Self::expect) was not taken (the
    /// caller got the error): the group does not wait for it.
    pub(crate) fn forget(&self) {
        self.0.settle(Ok(()));
    }

    /// A record the bus refused outright (the caller got `error`): the group
    /// fails with it, unless an earlier record already failed it.
    pub(crate) fn refuse(&self, error: BusError) {
        self.0.fail(error);
    }

    /// Closes the group and resolves once the bus settled every record in
    /// it: the first failure, if any record failed.
    ///
    /// # Errors
    ///
    /// The first record the bus did not take.
    pub async fn delivered(self) -> Result<(), BusError> {
        let state = self.0;
        // Release the open hold.
        state.settle(Ok(()));
        poll_fn(|cx| {
            if state.pending.load(Ordering::Acquire) == 0 {
                return Poll::Ready(());
            }
            state.waker.register(cx.waker());
            if state.pending.load(Ordering::Acquire) == 0 { Poll::Ready(()) } else { Poll::Pending }
        })
        .await;
        match state.failed.lock().unwrap_or_else(|e| e.into_inner()).take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl GroupState {
    /// Keeps `error` as the group's failure, unless it already has one.
    fn fail(&self, error: BusError) {
        let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        if failed.is_none() {
            *failed = Some(error);
        }
    }

    /// One record settled (delivered, or failed with `result`'s error).
    pub(crate) fn settle(&self, result: Result<(), BusError>) {
        if let Err(e) = result {
            self.fail(e);
        }
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn an_empty_group_is_delivered_at_once() {
        assert!(DeliveryGroup::new().delivered().await.is_ok());
    }

    #[tokio::test]
    async fn resolves_only_after_the_last_record_and_reports_the_first_failure() {
        let group = DeliveryGroup::new();
        let (a, b, c) = (group.state(), group.state(), group.state());
        for _ in 0..3 {
            group.expect();
        }
        let waiter = tokio::spawn(group.delivered());
        a.settle(Ok(()));
        b.settle(Err(BusError::Transient("first".into())));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "one record is still in flight");
        // Settled from another thread, as librdkafka's delivery callbacks are.
        std::thread::spawn(move || c.settle(Err(BusError::Permanent("second".into())))).join().unwrap();
        let result = tokio::time::timeout(Duration::from_secs(5), waiter).await.expect("woken").unwrap();
        assert!(matches!(&result, Err(BusError::Transient(m)) if m == "first"), "{result:?}");
    }

    #[tokio::test]
    async fn a_refused_record_is_not_waited_for() {
        let group = DeliveryGroup::new();
        group.expect();
        group.forget();
        assert!(tokio::time::timeout(Duration::from_secs(5), group.delivered()).await.expect("not waiting").is_ok());
    }
}
