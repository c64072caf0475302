//! Telling that a member does not keep up with what it is sent, for the slow-client policy.

use std::time::Duration;

use tokio::time::Instant;

use crate::limits::SlowClientPolicy;

/// The close reason a member closed for not keeping up gets (with 1013, Try Again Later).
pub(crate) const TOO_SLOW: &str = "too slow: messages for this client were dropped";

/// A member's overflow so far: the drop count of its channel when last looked at, and since when
/// every look found new drops.
#[derive(Debug, Default)]
pub(crate) struct Backlog {
    seen: u64,
    since: Option<Instant>,
}

impl Backlog {
    /// Looks at the channel's drop count (a number the layer adds to, read without a lock) and
    /// says whether the policy wants the member closed. Drops since the last look continue the
    /// overflow (or start one); none end it. The clock is read only when there were drops.
    pub(crate) fn overflowing_too_long(&mut self, dropped: u64, policy: &SlowClientPolicy) -> bool {
        let SlowClientPolicy::Disconnect { after, max_dropped } = *policy else {
            return false;
        };
        if dropped == self.seen {
            self.since = None;
            return false;
        }
        self.seen = dropped;
        if max_dropped.is_some_and(|max| dropped > max) {
            return true;
        }
        let now = Instant::now();
        let since = *self.since.get_or_insert(now);
        now.saturating_duration_since(since) >= after
    }

    /// How long the consumer's loop waits on a socket that takes nothing before looking again:
    /// a tenth of the policy's time, between 10 ms and 1 s.
    pub(crate) fn look_every(policy: &SlowClientPolicy) -> Option<Duration> {
        match *policy {
            SlowClientPolicy::Disconnect { after, .. } => {
                Some((after / 10).clamp(Duration::from_millis(10), Duration::from_secs(1)))
            }
            SlowClientPolicy::DropNewest => None,
        }
    }
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

    #[tokio::test(start_paused = true)]
    async fn closes_after_overflowing_for_the_policy_time() {
        let policy = SlowClientPolicy::Disconnect {
            after: Duration::from_secs(10),
            max_dropped: None,
        };
        let mut backlog = Backlog::default();
        assert!(!backlog.overflowing_too_long(0, &policy));
        assert!(!backlog.overflowing_too_long(5, &policy));
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(!backlog.overflowing_too_long(9, &policy));
        // A look without new drops: it caught up, the overflow is over.
        assert!(!backlog.overflowing_too_long(9, &policy));
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(!backlog.overflowing_too_long(12, &policy));
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(!backlog.overflowing_too_long(20, &policy));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(backlog.overflowing_too_long(21, &policy));
    }

    #[tokio::test(start_paused = true)]
    async fn or_after_too_many_drops_and_never_when_dropping_is_the_policy() {
        let counted = SlowClientPolicy::Disconnect {
            after: Duration::from_secs(10),
            max_dropped: Some(100),
        };
        let mut backlog = Backlog::default();
        assert!(!backlog.overflowing_too_long(100, &counted));
        assert!(backlog.overflowing_too_long(101, &counted));
        let mut backlog = Backlog::default();
        for dropped in 1..100 {
            tokio::time::advance(Duration::from_secs(1)).await;
            assert!(!backlog.overflowing_too_long(dropped, &SlowClientPolicy::DropNewest));
        }
        assert_eq!(Backlog::look_every(&SlowClientPolicy::DropNewest), None);
        assert_eq!(Backlog::look_every(&counted), Some(Duration::from_secs(1)));
    }
}
