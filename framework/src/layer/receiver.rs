//! The receiving end of a consumer's channel.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

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
}

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
        }
    }

    /// The channel's name (Channels' `self.channel_name`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The next message that has not outlived the layer's expiry; `None` once the layer is gone.
    pub async fn recv(&mut self) -> Option<Arc<Envelope>> {
        loop {
            let envelope = self.queue.recv().await?;
            if envelope.created().elapsed() <= self.expiry {
                return Some(envelope);
            }
            tracing::debug!(channel = %self.name, "dropped a message older than the layer's expiry");
        }
    }
}

impl ChannelReceiver {
    /// The next unexpired message if one is already queued, without waiting.
    pub fn try_recv(&mut self) -> Option<Arc<Envelope>> {
        while let Ok(envelope) = self.queue.try_recv() {
            if envelope.created().elapsed() <= self.expiry {
                return Some(envelope);
            }
        }
        None
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
