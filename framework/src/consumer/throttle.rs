//! A connection's inbound rate limit, as its consumer's loop applies it to each frame.

use std::time::Duration;

use crate::limits::{RateLimit, TokenBucket};

/// What is left of one connection's [`RateLimit`]: its buckets. The limit itself is the
/// server's or the route's, shared by every connection, and the time of the last refill is the
/// consumer loop's own record of the last frame (this is per-connection memory).
#[derive(Debug)]
pub(crate) struct Throttle {
    messages: TokenBucket,
    bytes: TokenBucket,
    /// Excess frames still tolerated: `max_violations` at most, earned back at
    /// `max_violations` per `violation_window`, so that more than that many within a window
    /// closes the connection.
    tolerance: f64,
}

/// What to do with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Within the limit: to the consumer.
    Pass,
    /// Over it: to the consumer's `rate_limited`, not `receive`.
    Excess,
    /// Over it once too often: close with 1008.
    Close,
}

impl Throttle {
    /// Full buckets.
    pub(crate) fn new(limit: &RateLimit) -> Throttle {
        let full = |rate: Option<_>| rate.map_or(TokenBucket::empty(), TokenBucket::full);
        Throttle {
            messages: full(limit.messages),
            bytes: full(limit.bytes),
            tolerance: f64::from(limit.max_violations),
        }
    }

    /// Judges a frame of `bytes` payload bytes that arrived `elapsed` after the previous frame
    /// (or the start). No clock read of its own (the loop's), no system call, no lock: a few
    /// float operations.
    pub(crate) fn admit(&mut self, limit: &RateLimit, bytes: usize, elapsed: Duration) -> Verdict {
        let bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
        let most = f64::from(limit.max_violations);
        let window = limit.violation_window.as_secs_f64();
        if window > 0.0 {
            self.tolerance = (self.tolerance + elapsed.as_secs_f64() * most / window).min(most);
        }
        let mut within = true;
        if let Some(rate) = limit.messages {
            self.messages.refill(rate, elapsed);
            within &= self.messages.has(rate, 1);
        }
        if let Some(rate) = limit.bytes {
            self.bytes.refill(rate, elapsed);
            within &= self.bytes.has(rate, bytes);
        }
        if within {
            if let Some(rate) = limit.messages {
                self.messages.take(rate, 1);
            }
            if let Some(rate) = limit.bytes {
                self.bytes.take(rate, bytes);
            }
            return Verdict::Pass;
        }
        if self.tolerance >= 1.0 {
            self.tolerance -= 1.0;
            Verdict::Excess
        } else {
            Verdict::Close
        }
    }
}

/// The one place a connection closed for its rate is logged (and, later, counted).
pub(crate) fn closed_for_rate(path: &str, limit: &RateLimit) {
    tracing::info!(
        %path,
        max_violations = limit.max_violations,
        window_secs = limit.violation_window.as_secs_f64(),
        "client kept sending over its rate limit: closing with 1008"
    );
}

#[cfg(test)]
mod tests {
    use tokio::time::Instant;

    use super::*;
    use crate::limits::Rate;

    /// Frames judged as the loop judges them: each with the time since the one before.
    struct Frames {
        throttle: Throttle,
        last: Instant,
    }

    impl Frames {
        fn new(limit: &RateLimit, start: Instant) -> Frames {
            Frames {
                throttle: Throttle::new(limit),
                last: start,
            }
        }

        fn admit(&mut self, limit: &RateLimit, bytes: usize, now: Instant) -> Verdict {
            let elapsed = now.saturating_duration_since(self.last);
            self.last = now;
            self.throttle.admit(limit, bytes, elapsed)
        }
    }

    #[test]
    fn excess_frames_then_a_close() {
        let limit = RateLimit::default()
            .messages(Rate::new(10, 3))
            .close_after(2, Duration::from_secs(5));
        let start = Instant::now();
        let mut throttle = Frames::new(&limit, start);
        let verdicts: Vec<Verdict> = (0..6).map(|_| throttle.admit(&limit, 10, start)).collect();
        use Verdict::*;
        assert_eq!(verdicts, [Pass, Pass, Pass, Excess, Excess, Close]);
    }

    #[test]
    fn the_violation_window_forgets() {
        let limit = RateLimit::default()
            .messages(Rate::new(1, 1))
            .close_after(1, Duration::from_secs(5));
        let start = Instant::now();
        let mut throttle = Frames::new(&limit, start);
        assert_eq!(throttle.admit(&limit, 1, start), Verdict::Pass);
        assert_eq!(throttle.admit(&limit, 1, start), Verdict::Excess);
        // Six seconds later: a fresh window, and tokens again.
        let later = start + Duration::from_secs(6);
        assert_eq!(throttle.admit(&limit, 1, later), Verdict::Pass);
        assert_eq!(throttle.admit(&limit, 1, later), Verdict::Excess);
        assert_eq!(throttle.admit(&limit, 1, later), Verdict::Close);
    }

    #[test]
    fn bytes_are_limited_too_and_an_excess_frame_takes_nothing() {
        let limit = RateLimit::unlimited()
            .bytes(Rate::new(100, 1_000))
            .messages(Rate::new(1_000, 3));
        let start = Instant::now();
        let mut throttle = Frames::new(&limit, start);
        assert_eq!(throttle.admit(&limit, 900, start), Verdict::Pass);
        assert_eq!(throttle.admit(&limit, 200, start), Verdict::Excess);
        // The excess frame took no message token: two are left.
        assert_eq!(throttle.admit(&limit, 50, start), Verdict::Pass);
        assert_eq!(throttle.admit(&limit, 50, start), Verdict::Pass);
        assert_eq!(throttle.admit(&limit, 0, start), Verdict::Excess);
    }

    #[test]
    fn the_default_lets_a_burst_of_500_and_200_a_second_through() {
        let limit = RateLimit::default();
        let start = Instant::now();
        let mut throttle = Frames::new(&limit, start);
        for _ in 0..500 {
            assert_eq!(throttle.admit(&limit, 100, start), Verdict::Pass);
        }
        // Then 200 a second, one every 5 ms, for ten seconds.
        for n in 1..=2_000 {
            let at = start + Duration::from_millis(5 * n);
            assert_eq!(
                throttle.admit(&limit, 100, at),
                Verdict::Pass,
                "message {n}"
            );
        }
    }
}
