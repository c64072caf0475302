//! The token bucket behind every rate in [`limits`](super).

use std::time::Duration;

use super::Rate;

/// Tokens left in a bucket of some [`Rate`]; the rate itself is kept by whoever owns the bucket
/// (one per server or route, not one per connection), and so is the time of the last refill,
/// which the buckets of one connection share.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct TokenBucket {
    tokens: f64,
}

impl TokenBucket {
    /// A bucket holding a whole burst.
    pub(crate) fn full(rate: Rate) -> TokenBucket {
        TokenBucket {
            tokens: f64::from(rate.burst),
        }
    }

    /// A bucket for a rate that is not limited: never asked.
    pub(crate) fn empty() -> TokenBucket {
        TokenBucket { tokens: 0.0 }
    }

    /// Adds what `elapsed` earned at `rate`, up to the burst.
    pub(crate) fn refill(&mut self, rate: Rate, elapsed: Duration) {
        let earned = elapsed.as_secs_f64() * f64::from(rate.per_second);
        self.tokens = (self.tokens + earned).min(f64::from(rate.burst));
    }

    /// Takes `n` tokens if there are that many.
    pub(crate) fn take(&mut self, rate: Rate, n: u64) -> bool {
        let has = self.has(rate, n);
        if has {
            self.tokens -= cost(rate, n);
        }
        has
    }

    /// Whether `n` tokens are there to take. A cost larger than the whole burst needs a full
    /// bucket (so it passes once in a while instead of never).
    pub(crate) fn has(&self, rate: Rate, n: u64) -> bool {
        self.tokens >= cost(rate, n)
    }

    /// Whether the bucket is full again, so forgetting it changes nothing.
    pub(crate) fn is_full(&self, rate: Rate) -> bool {
        self.tokens >= f64::from(rate.burst)
    }
}

fn cost(rate: Rate, n: u64) -> f64 {
    (n as f64).min(f64::from(rate.burst))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let rate = Rate::new(10, 5);
        let mut bucket = TokenBucket::full(rate);
        for _ in 0..5 {
            assert!(bucket.take(rate, 1));
        }
        assert!(!bucket.take(rate, 1), "the burst is spent");
        bucket.refill(rate, Duration::from_millis(100));
        assert!(bucket.take(rate, 1), "a tenth of a second earns one");
        assert!(!bucket.take(rate, 1));
        bucket.refill(rate, Duration::from_secs(60));
        assert!(bucket.is_full(rate), "never more than the burst");
        assert!(bucket.take(rate, 5) && !bucket.take(rate, 1));
    }

    #[test]
    fn a_cost_over_the_burst_takes_a_full_bucket() {
        let rate = Rate::new(1_000, 4_096);
        let mut bucket = TokenBucket::full(rate);
        assert!(bucket.take(rate, 10_000));
        assert!(!bucket.take(rate, 1));
    }
}
