//! Telling that a member does not keep up with what it is sent, for the slow-client policy.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use crate::layer::ChannelReceiver;
use crate::limits::SlowClientPolicy;

/// The close reason a member closed for not keeping up gets (with 1013, Try Again Later).
pub(crate) const TOO_SLOW: &str = "too slow: messages for this client were dropped";

/// One member under [`SlowClientPolicy::Disconnect`]: its channel's drop count (a number the
/// layer adds to, read without a lock), the count when last looked at, and since when every
/// look found new drops.
#[derive(Debug)]
pub(crate) struct Backlog {
    /// The server's policy, shared (per-connection memory is what bounds a server).
    policy: Arc<SlowClientPolicy>,
    dropped: Arc<AtomicU64>,
    seen: u64,
    since: Option<Instant>,
    /// The timer of the waits watched, made the first time one waits: a timer is over a
    /// hundred bytes, and inline it would be part of every idle connection's task.
    timer: Option<Pin<Box<Sleep>>>,
}

impl Backlog {
    /// The watch over a member's channel; `None` when the policy is to drop and keep it, or
    /// its layer does not count what it drops.
    pub(crate) fn new(
        policy: &Arc<SlowClientPolicy>,
        channel: &ChannelReceiver,
    ) -> Option<Backlog> {
        if !matches!(**policy, SlowClientPolicy::Disconnect { .. }) {
            return None;
        }
        Some(Backlog {
            policy: Arc::clone(policy),
            dropped: channel.drop_counter()?,
            seen: 0,
            since: None,
            timer: None,
        })
    }

    /// Whether the member has overflowed too long or too much. Drops since the last look start
    /// an overflow or continue it. Without new drops it is over only once the member has
    /// caught up: it is reading its queue (not stuck in a handler or a flush, `Look::Waiting`)
    /// and the queue is less than half full. The clock is read only when there were drops.
    pub(crate) fn too_slow(&mut self, look: Look) -> bool {
        let SlowClientPolicy::Disconnect { after, max_dropped } = *self.policy else {
            return false;
        };
        let dropped = self.dropped.load(Ordering::Relaxed);
        if dropped == self.seen {
            if look == (Look::Reading { backed_up: false }) {
                self.since = None;
            }
        } else {
            self.seen = dropped;
            if max_dropped.is_some_and(|max| dropped > max) {
                return true;
            }
            self.since.get_or_insert_with(Instant::now);
        }
        self.since.is_some_and(|since| since.elapsed() >= after)
    }

    /// How long the consumer's loop waits on something that does not finish (a socket that
    /// takes nothing, a handler stuck behind it) before looking again: a tenth of the policy's
    /// time, between 10 ms and 1 s.
    pub(crate) fn look_every(&self) -> Duration {
        let SlowClientPolicy::Disconnect { after, .. } = *self.policy else {
            return Duration::from_secs(1);
        };
        (after / 10).clamp(Duration::from_millis(10), Duration::from_secs(1))
    }
}

impl Backlog {
    /// The timer for the next look, [`look_every`](Self::look_every) from now.
    pub(crate) fn next_look(&mut self) -> Pin<&mut Sleep> {
        let at = Instant::now() + self.look_every();
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        timer.as_mut().reset(at);
        timer.as_mut()
    }

    /// Whether the timer set by [`next_look`](Self::next_look) has fired; registers the task
    /// to be woken when it does otherwise.
    fn look_due(&mut self, cx: &mut Context<'_>) -> bool {
        self.timer
            .as_mut()
            .is_some_and(|timer| timer.as_mut().poll(cx).is_ready())
    }
}

/// Runs a handler to its end, unless it waits (on a client that does not read, most likely)
/// while the member's queue keeps overflowing as long as the slow-client policy allows: then
/// `None`, the member is too slow, and the handler is dropped where it waits.
///
/// A handler that finishes at once, as nearly all do, costs one poll and nothing more: the
/// timer is armed only for one that waits. The handler is pinned by the caller, and this is a
/// plain future of two pointers and a flag rather than an `async fn`: these are in every
/// connection's task, and an `async fn` would keep its argument and the state of its own awaits
/// besides.
pub(crate) fn guarded<'a, F: Future>(
    handler: Pin<&'a mut F>,
    backlog: Option<&'a mut Backlog>,
) -> Guarded<'a, F> {
    Guarded {
        handler,
        backlog,
        waiting: false,
    }
}

/// See [`guarded`].
pub(crate) struct Guarded<'a, F> {
    handler: Pin<&'a mut F>,
    backlog: Option<&'a mut Backlog>,
    waiting: bool,
}

impl<F: Future> Future for Guarded<'_, F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Poll::Ready(done) = this.handler.as_mut().poll(cx) {
            return Poll::Ready(Some(done));
        }
        let Some(backlog) = this.backlog.as_deref_mut() else {
            return Poll::Pending;
        };
        if !this.waiting {
            this.waiting = true;
            backlog.next_look();
        }
        while backlog.look_due(cx) {
            if backlog.too_slow(Look::Waiting) {
                return Poll::Ready(None);
            }
            backlog.next_look();
        }
        Poll::Pending
    }
}

/// When the overflow is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Look {
    /// The consumer is stuck in a handler or a flush: nothing reads its queue.
    Waiting,
    /// The consumer woke up to read its queue, which is `backed_up` when half full or more.
    Reading { backed_up: bool },
}

/// The one place a member closed for not keeping up is logged (and, later, counted).
pub(crate) fn closed_as_slow(path: &str, channel: &str, dropped: u64) {
    tracing::warn!(
        %path,
        %channel,
        dropped,
        "client does not keep up with what it is sent: closing with 1013"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::{ChannelLayer, Envelope, InMemoryChannelLayer, LayerConfig};

    /// A member whose queue holds one message, and a way to overflow it.
    async fn member() -> (InMemoryChannelLayer, ChannelReceiver) {
        let layer = InMemoryChannelLayer::with_config(LayerConfig::default().capacity(1));
        let channel = layer.new_channel().await.unwrap();
        layer.group_add("g", channel.name()).await.unwrap();
        (layer, channel)
    }

    async fn overflow(layer: &InMemoryChannelLayer) {
        let message = Envelope::from_json(r#"{"type":"x"}"#);
        layer.group_send("g", message).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn too_slow_after_overflowing_for_the_policy_time() {
        let policy = SlowClientPolicy::Disconnect {
            after: Duration::from_secs(10),
            max_dropped: None,
        };
        let (layer, channel) = member().await;
        let mut backlog = Backlog::new(&Arc::new(policy), &channel).unwrap();
        assert_eq!(backlog.look_every(), Duration::from_secs(1));
        overflow(&layer).await; // fills the queue
        assert!(!backlog.too_slow(Look::Reading { backed_up: false }));
        overflow(&layer).await;
        assert!(
            !backlog.too_slow(Look::Reading { backed_up: false }),
            "the overflow starts"
        );
        tokio::time::advance(Duration::from_secs(6)).await;
        overflow(&layer).await;
        assert!(!backlog.too_slow(Look::Reading { backed_up: false }));
        // Read at a wake-up, without new drops: it keeps up, the overflow is over.
        assert!(!backlog.too_slow(Look::Reading { backed_up: false }));
        overflow(&layer).await;
        assert!(!backlog.too_slow(Look::Waiting), "a new overflow starts");
        // Stuck, nothing reads its queue: the overflow goes on without new drops; woken to a
        // queue still half full, it is still behind.
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(!backlog.too_slow(Look::Waiting));
        assert!(!backlog.too_slow(Look::Reading { backed_up: true }));
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(!backlog.too_slow(Look::Waiting));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(backlog.too_slow(Look::Waiting));
        assert_eq!(channel.dropped(), 3);
    }

    #[tokio::test]
    async fn or_after_too_many_drops_and_never_when_dropping_is_the_policy() {
        let counted = SlowClientPolicy::Disconnect {
            after: Duration::from_secs(10),
            max_dropped: Some(2),
        };
        let (layer, channel) = member().await;
        let mut backlog = Backlog::new(&Arc::new(counted), &channel).unwrap();
        for _ in 0..3 {
            overflow(&layer).await;
        }
        assert!(
            !backlog.too_slow(Look::Reading { backed_up: false }),
            "two dropped"
        );
        overflow(&layer).await;
        assert!(
            backlog.too_slow(Look::Reading { backed_up: false }),
            "three dropped"
        );
        assert!(Backlog::new(&Arc::new(SlowClientPolicy::DropNewest), &channel).is_none());
    }
}
