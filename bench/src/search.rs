//! The search for the highest rate a server sustains: double until a step fails and the step
//! above it fails too, then bisect between the best pass and the lowest failure until they are
//! within `precision` of each other.
//!
//! One failure does not end the doubling because pass/fail is not monotonic near a server's
//! knee: at the rate where its core saturates, latency is at its worst, and at twice that rate
//! the same server batches more per wake-up and can pass again (the reference server, 1×1000:
//! p99 98.6 ms at 400 000/s, 84 ms at 800 000/s). Stopping at the first failure would measure
//! the knee's noise, not the maximum.

/// What a step must show to pass.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PassBar {
    /// Highest acceptable loss, as a fraction (0.001 = 0.1 %).
    pub max_loss: f64,
    /// Highest acceptable p99 latency, in microseconds.
    pub max_p99_us: u64,
}

impl PassBar {
    /// Whether a step with this loss and p99 passes.
    pub fn passes(&self, loss: f64, p99_us: u64) -> bool {
        loss <= self.max_loss && p99_us <= self.max_p99_us
    }
}

/// The state of a maximum-rate search, in offered deliveries per second.
#[derive(Debug, Clone, PartialEq)]
pub struct RateSearch {
    start: f64,
    min: f64,
    max: f64,
    factor: f64,
    precision: f64,
    /// Highest rate that passed.
    best_pass: Option<f64>,
    /// Lowest rate that failed above the best pass.
    lowest_fail: Option<f64>,
    /// Whether a rate above `lowest_fail` failed too.
    confirmed: bool,
}

impl RateSearch {
    /// A search that first tries `start`, never goes below `min` nor above `max`, multiplies
    /// by `factor` while steps pass, and stops when the bracket is narrower than `precision`
    /// (relative).
    pub fn new(start: f64, min: f64, max: f64, factor: f64, precision: f64) -> RateSearch {
        RateSearch {
            start: start.clamp(min, max),
            min,
            max,
            factor: factor.max(1.01),
            precision: precision.max(1e-6),
            best_pass: None,
            lowest_fail: None,
            confirmed: false,
        }
    }

    /// Records the outcome of a step at `rate`.
    pub fn record(&mut self, rate: f64, passed: bool) {
        if passed {
            if self.best_pass.is_none_or(|best| rate > best) {
                self.best_pass = Some(rate);
            }
            // A pass above a failure: that failure was the knee, not the limit.
            if self.lowest_fail.is_some_and(|low| low <= rate) {
                self.lowest_fail = None;
                self.confirmed = false;
            }
            return;
        }
        if self.best_pass.is_some_and(|best| rate <= best) {
            return;
        }
        match self.lowest_fail {
            None => self.lowest_fail = Some(rate),
            Some(low) if rate < low => {
                self.lowest_fail = Some(rate);
                self.confirmed = true;
            }
            Some(_) => self.confirmed = true,
        }
    }

    /// The highest rate that passed so far.
    pub fn best(&self) -> Option<f64> {
        self.best_pass
    }

    /// The rate to try next; `None` when the search is over.
    pub fn next(&self) -> Option<f64> {
        match (self.best_pass, self.lowest_fail) {
            (None, None) => Some(self.start),
            (Some(pass), None) => (pass < self.max).then(|| (pass * self.factor).min(self.max)),
            (None, Some(fail)) => (fail > self.min).then(|| (fail / self.factor).max(self.min)),
            (Some(_), Some(fail)) if !self.confirmed && fail < self.max => {
                Some((fail * self.factor).min(self.max))
            }
            (Some(pass), Some(fail)) => {
                let narrow = fail <= pass || (fail - pass) / pass <= self.precision;
                (!narrow).then(|| (pass + fail) / 2.0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a search against a server that sustains everything up to `limit`.
    fn run(search: &mut RateSearch, limit: f64) -> Vec<f64> {
        let mut tried = Vec::new();
        while let Some(rate) = search.next() {
            tried.push(rate);
            search.record(rate, rate <= limit);
            assert!(tried.len() < 100, "the search does not end: {tried:?}");
        }
        tried
    }

    #[test]
    fn doubles_then_bisects_to_the_limit() {
        let mut search = RateSearch::new(1_000.0, 100.0, 1e9, 2.0, 0.05);
        let tried = run(&mut search, 10_000.0);
        assert_eq!(
            &tried[..6],
            &[1_000.0, 2_000.0, 4_000.0, 8_000.0, 16_000.0, 32_000.0],
            "a failure is confirmed by the step above it"
        );
        assert_eq!(tried[6], 12_000.0);
        let best = search.best().unwrap();
        assert!((10_000.0 / 1.05..=10_000.0).contains(&best), "{best}");
    }

    #[test]
    fn steps_down_when_the_first_step_fails() {
        let mut search = RateSearch::new(1_000.0, 100.0, 1e9, 2.0, 0.05);
        let tried = run(&mut search, 300.0);
        assert_eq!(&tried[..3], &[1_000.0, 500.0, 250.0]);
        let best = search.best().unwrap();
        assert!((285.0..=300.0).contains(&best), "{best}");
    }

    #[test]
    fn a_failure_at_the_knee_does_not_end_the_doubling() {
        let mut search = RateSearch::new(50_000.0, 1_000.0, 1e9, 2.0, 0.05);
        let mut tried = Vec::new();
        while let Some(rate) = search.next() {
            tried.push(rate);
            // Fails at its knee (400 000) but sustains up to 1 000 000.
            search.record(rate, rate != 400_000.0 && rate <= 1_000_000.0);
            assert!(tried.len() < 100, "the search does not end: {tried:?}");
        }
        assert_eq!(
            &tried[..7],
            &[50e3, 100e3, 200e3, 400e3, 800e3, 1_600e3, 3_200e3]
        );
        let best = search.best().unwrap();
        assert!((1_000_000.0 / 1.05..=1_000_000.0).contains(&best), "{best}");
    }

    #[test]
    fn stops_at_the_bounds() {
        let mut never = RateSearch::new(1_000.0, 100.0, 1e9, 2.0, 0.05);
        let tried = run(&mut never, 0.0);
        assert_eq!(tried.last(), Some(&100.0));
        assert_eq!(never.best(), None);

        let mut always = RateSearch::new(1_000.0, 100.0, 5_000.0, 2.0, 0.05);
        let tried = run(&mut always, f64::INFINITY);
        assert_eq!(tried, [1_000.0, 2_000.0, 4_000.0, 5_000.0]);
        assert_eq!(always.best(), Some(5_000.0));
    }

    #[test]
    fn pass_bar_checks_loss_and_p99() {
        let bar = PassBar {
            max_loss: 0.001,
            max_p99_us: 100_000,
        };
        assert!(bar.passes(0.001, 100_000));
        assert!(!bar.passes(0.0011, 1));
        assert!(!bar.passes(0.0, 100_001));
    }
}
