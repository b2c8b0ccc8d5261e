//! librdkafka's main queue, signalled on a socket: the producer's delivery
//! reports are served by a tokio task that librdkafka wakes when the queue
//! gets an event (`rd_kafka_queue_io_event_enable`), instead of by a thread
//! of rdkafka's own that polls it and then wakes the task waiting for the
//! delivery. One thread hand-off per produce response instead of two: ingest
//! costs 7–10 % less CPU per reading (docs/performance.md, "closing issue #18").
//!
//! The only `unsafe` in vitalwatch's production code: four calls into
//! librdkafka that the rdkafka crate does not wrap, each with its SAFETY note.
#![allow(unsafe_code)]

use std::os::fd::AsRawFd as _;
use std::os::unix::net::UnixStream;

use rdkafka::bindings as rd;
use rdkafka::producer::{BaseProducer, Producer as _, ProducerContext};

/// A handle on a producer's main queue, which signals a socket when an event
/// lands in it while it is empty. Drop it before the producer (librdkafka
/// wants every queue handle destroyed before its client).
pub(super) struct MainQueue {
    queue: *mut rd::rd_kafka_queue_t,
    /// The end librdkafka writes to, open while the queue may signal.
    _signal: UnixStream,
}

// SAFETY: librdkafka's queue handles are thread-safe; the pointer is only
// read by `rd_kafka_queue_length` and destroyed once, in `Drop`.
unsafe impl Send for MainQueue {}
// SAFETY: as above.
unsafe impl Sync for MainQueue {}

impl MainQueue {
    /// The main queue of `producer`, and the non-blocking socket that becomes
    /// readable when it has events.
    pub(super) fn signalled<C: ProducerContext + 'static>(
        producer: &BaseProducer<C>,
    ) -> std::io::Result<(MainQueue, UnixStream)> {
        let (signal, wake) = UnixStream::pair()?;
        // librdkafka's broker threads write the signal: they must never block.
        signal.set_nonblocking(true)?;
        wake.set_nonblocking(true)?;
        const WAKE: &[u8] = b"w";
        // SAFETY: the client is valid for the call; the returned handle is
        // owned by `MainQueue`, destroyed once in `Drop`. librdkafka copies the
        // payload, and the descriptor stays open (in `_signal`) until `Drop`
        // switches the signal off.
        let queue = unsafe {
            let queue = rd::rd_kafka_queue_get_main(producer.client().native_ptr());
            rd::rd_kafka_queue_io_event_enable(queue, signal.as_raw_fd(), WAKE.as_ptr().cast(), WAKE.len());
            queue
        };
        Ok((MainQueue { queue, _signal: signal }, wake))
    }

    /// Events waiting in the queue.
    pub(super) fn len(&self) -> usize {
        // SAFETY: `queue` is a valid handle until `drop`.
        unsafe { rd::rd_kafka_queue_length(self.queue) }
    }
}

impl Drop for MainQueue {
    fn drop(&mut self) {
        // SAFETY: a valid handle, destroyed exactly once; the signal is
        // switched off first, so librdkafka never writes to a closed socket.
        unsafe {
            rd::rd_kafka_queue_io_event_enable(self.queue, -1, std::ptr::null(), 0);
            rd::rd_kafka_queue_destroy(self.queue);
        }
    }
}
