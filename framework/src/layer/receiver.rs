//! The receiving end of a consumer's channel.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::Envelope;

type OnDrop = Box<dyn FnOnce(&str) + Send + Sync>;

/// A channel's name and its bounded queue of incoming messages.
///
/// Dropping it releases the channel name in its layer.
pub struct ChannelReceiver {
    name: String,
    queue: mpsc::Receiver<Arc<Envelope>>,
    expiry: Duration,
    on_drop: Option<OnDrop>,
    /// Messages created before this have expired (`None`: none can have, the clock is younger
    /// than the expiry); worked out from the clock when it is read, and how many more messages
    /// may be judged against it before the clock is read again (see [`ChannelReceiver::fresh`]).
    expired_before: Option<Instant>,
    judged: u8,
    /// Messages the layer dropped because this queue was full, if the layer counts them.
    dropped: Option<Arc<AtomicU64>>,
}

/// Messages drained without waiting that share one clock read.
const JUDGED_PER_CLOCK_READ: u8 = 64;

impl ChannelReceiver {
    /// Wraps a layer's queue. `on_drop` runs once with the name when the receiver goes away.
    pub fn new(
        name: String,
        queue: mpsc::Receiver<Arc<Envelope>>,
        expiry: Duration,
        on_drop: impl FnOnce(&str) + Send + Sync + 'static,
    ) -> ChannelReceiver {
        ChannelReceiver {
            name,
            queue,
            expiry,
            on_drop: Some(Box::new(on_drop)),
            expired_before: None,
            judged: JUDGED_PER_CLOCK_READ,
            dropped: None,
        }
    }

    /// Shares the layer's count of messages dropped for this channel because its queue was
    /// full, so that its consumer can tell it is falling behind (see
    /// [`ChannelReceiver::dropped`]). A layer adds one to `counter` for each message it drops.
    pub fn counting_drops(mut self, counter: Arc<AtomicU64>) -> ChannelReceiver {
        self.dropped = Some(counter);
        self
    }

    /// The drop count itself, for a consumer's loop to watch without going through the
    /// receiver.
    pub(crate) fn drop_counter(&self) -> Option<Arc<AtomicU64>> {
        self.dropped.clone()
    }

    /// Whether at least half the queue is taken: a consumer that finds it so is still behind.
    pub(crate) fn is_backed_up(&self) -> bool {
        self.queue.len() * 2 >= self.queue.max_capacity()
    }

    /// How many messages the layer has dropped for this channel so far because its queue was
    /// full: the consumer is not keeping up. Always 0 for a layer that does not count them.
    pub fn dropped(&self) -> u64 {
        self.dropped
            .as_ref()
            .map_or(0, |dropped| dropped.load(Ordering::Relaxed))
    }

    /// The channel's name (Channels' `self.channel_name`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The next message that has not outlived the layer's expiry; `None` once the layer is gone.
    pub async fn recv(&mut self) -> Option<Arc<Envelope>> {
        loop {
            let envelope = self.queue.recv().await?;
            // After a wait, always a fresh clock.
            self.judged = JUDGED_PER_CLOCK_READ;
            if self.fresh(&envelope) {
                return Some(envelope);
            }
            tracing::debug!(channel = %self.name, "dropped a message older than the layer's expiry");
        }
    }
}

impl ChannelReceiver {
    /// The next unexpired message if one is already queued, without waiting.
    ///
    /// Expiry is judged against the clock read when the current drain began (the last
    /// `recv()`, or the first `try_recv()` after one that found the queue empty), read again
    /// every 64 messages.
    pub fn try_recv(&mut self) -> Option<Arc<Envelope>> {
        while let Ok(envelope) = self.queue.try_recv() {
            if self.fresh(&envelope) {
                return Some(envelope);
            }
        }
        // The drain is over: the next message gets a fresh clock.
        self.judged = JUDGED_PER_CLOCK_READ;
        None
    }

    /// Whether a message has not outlived the expiry. The clock is read once per wake-up and
    /// once per [`JUDGED_PER_CLOCK_READ`] messages drained behind it, not once per message: a
    /// burst is drained in microseconds, and expiry is counted in seconds.
    fn fresh(&mut self, envelope: &Envelope) -> bool {
        if self.judged >= JUDGED_PER_CLOCK_READ {
            self.expired_before = Instant::now().checked_sub(self.expiry);
            self.judged = 0;
        }
        self.judged += 1;
        self.expired_before
            .is_none_or(|before| envelope.created() >= before)
    }
}

impl Drop for ChannelReceiver {
    fn drop(&mut self) {
        if let Some(on_drop) = self.on_drop.take() {
            on_drop(&self.name);
        }
    }
}

impl fmt::Debug for ChannelReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelReceiver")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}
