//! The keepalive timer of one connection's loop.

use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep, sleep_until};

/// Ticks every `interval`, measured from the last tick (a late tick delays the next one).
///
/// The consumer loop polls every branch on every turn, and a busy member turns once per batch
/// of deliveries; polling a `Sleep` re-registers the task's waker with the timer each time
/// (a compare-and-swap and a waker comparison), which showed as ~3 % of the server's CPU at
/// fan-out rates. Once the timer holds this task's waker it wakes the task when it fires, so
/// until then a turn only checks whether it has fired.
///
/// That relies on the timer being polled from one task for its whole life, which holds for the
/// loop of a spawned connection task, and on tokio's cooperative budget (checked below).
pub(crate) struct PingTimer {
    sleep: Pin<Box<Sleep>>,
    interval: Duration,
    /// The timer holds this task's waker: until it fires, nothing to poll.
    registered: bool,
}

impl PingTimer {
    /// A timer whose first tick is one `interval` from now.
    pub(crate) fn new(interval: Duration) -> PingTimer {
        PingTimer {
            sleep: Box::pin(sleep_until(Instant::now() + interval)),
            interval,
            registered: false,
        }
    }

    /// The next tick; never completes without a timer.
    pub(crate) async fn tick(timer: &mut Option<PingTimer>) {
        match timer {
            Some(timer) => poll_fn(|cx| timer.poll_tick(cx)).await,
            None => std::future::pending().await,
        }
    }

    fn poll_tick(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.registered && !self.sleep.is_elapsed() {
            return Poll::Pending;
        }
        // Out of coop budget, the `Sleep` returns `Pending` without registering with the timer
        // (it asks to be polled again instead), so that `Pending` proves nothing.
        let budgeted = tokio::task::coop::has_budget_remaining();
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.registered = false;
                let next = Instant::now() + self.interval;
                self.sleep.as_mut().reset(next);
                Poll::Ready(())
            }
            Poll::Pending => {
                self.registered = budgeted;
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn ticks_once_per_interval_from_the_last_tick() {
        let start = Instant::now();
        let mut timer = Some(PingTimer::new(Duration::from_secs(20)));
        PingTimer::tick(&mut timer).await;
        assert_eq!(start.elapsed(), Duration::from_secs(20));
        // A tick seen late (a busy loop) delays the next one rather than bunching them up.
        tokio::time::advance(Duration::from_secs(25)).await;
        PingTimer::tick(&mut timer).await;
        assert_eq!(start.elapsed(), Duration::from_secs(45));
        PingTimer::tick(&mut timer).await;
        assert_eq!(start.elapsed(), Duration::from_secs(65));
    }

    #[tokio::test(start_paused = true)]
    async fn a_turn_that_was_not_due_leaves_the_next_tick_in_place() {
        let start = Instant::now();
        let mut timer = Some(PingTimer::new(Duration::from_secs(20)));
        for _ in 0..3 {
            let early = tokio::time::timeout(Duration::from_secs(1), PingTimer::tick(&mut timer));
            assert!(early.await.is_err(), "ticked before its interval");
        }
        PingTimer::tick(&mut timer).await;
        assert_eq!(start.elapsed(), Duration::from_secs(20));
    }

    #[tokio::test(start_paused = true)]
    async fn no_timer_never_ticks() {
        let mut timer = None;
        let ticked =
            tokio::time::timeout(Duration::from_secs(3600), PingTimer::tick(&mut timer)).await;
        assert!(ticked.is_err());
    }
}
