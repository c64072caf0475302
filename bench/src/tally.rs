//! Counting one measurement phase: what was sent inside the window, what arrived, how late.
//!
//! A phase sends from its start, but only messages *scheduled* inside the measurement window
//! (after the warm-up) count: every member of the sender's room must receive each of them, so
//! `expected = Σ rooms sent_in_window(room) × members(room)`. Arrivals are accepted until the
//! grace period after the last send is over; whatever has not arrived by then is lost.

use hdrhistogram::Histogram;

/// Latencies are recorded in microseconds, from 1 µs to 60 s, to 3 significant digits.
pub const LATENCY_MAX_US: u64 = 60_000_000;

/// The measurement window of a phase, in the load generator's clock (nanoseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// First scheduled send time that counts.
    pub start_ns: u64,
    /// First scheduled send time that no longer counts.
    pub end_ns: u64,
}

impl Window {
    /// Whether a message scheduled at `sent_ns` counts.
    pub fn contains(&self, sent_ns: u64) -> bool {
        (self.start_ns..self.end_ns).contains(&sent_ns)
    }

    /// The window's length in seconds.
    pub fn seconds(&self) -> f64 {
        (self.end_ns - self.start_ns) as f64 / 1e9
    }
}

/// Everything counted for one phase.
#[derive(Debug, Clone)]
pub struct Tally {
    /// The phase's measurement window.
    pub window: Window,
    /// Messages scheduled inside the window, per room.
    pub sent_in_window: Vec<u64>,
    /// Messages sent in the whole phase (warm-up and tail included).
    pub sent_total: u64,
    /// Scheduled messages a dead sender could not send (they count as lost).
    pub unsent: u64,
    /// Deliveries of in-window messages to the right room's members.
    pub received: u64,
    /// Deliveries of this phase's messages outside the window (warm-up, tail).
    pub received_outside: u64,
    /// Deliveries to a member of another room than the sender's: a routing bug.
    pub misrouted: u64,
    /// Latency of every counted delivery, in microseconds.
    pub latency_us: Histogram<u64>,
}

impl Tally {
    /// An empty tally for `rooms` rooms.
    pub fn new(window: Window, rooms: usize) -> Tally {
        Tally {
            window,
            sent_in_window: vec![0; rooms],
            sent_total: 0,
            unsent: 0,
            received: 0,
            received_outside: 0,
            misrouted: 0,
            latency_us: Histogram::new_with_bounds(1, LATENCY_MAX_US, 3)
                .expect("constant histogram bounds are valid"),
        }
    }

    /// A message of `room` scheduled at `sent_ns` went out (or was due and could not).
    pub fn on_sent(&mut self, room: usize, sent_ns: u64) {
        self.sent_total += 1;
        if self.window.contains(sent_ns)
            && let Some(count) = self.sent_in_window.get_mut(room)
        {
            *count += 1;
        }
    }

    /// A member of `member_room` received a message of `sender_room` scheduled at `sent_ns`,
    /// at `now_ns`.
    pub fn on_received(
        &mut self,
        member_room: usize,
        sender_room: usize,
        sent_ns: u64,
        now_ns: u64,
    ) {
        if member_room != sender_room {
            self.misrouted += 1;
            return;
        }
        if !self.window.contains(sent_ns) {
            self.received_outside += 1;
            return;
        }
        self.received += 1;
        let latency_us = now_ns.saturating_sub(sent_ns) / 1_000;
        self.latency_us.saturating_record(latency_us.max(1));
    }

    /// Deliveries owed for the in-window messages, given each room's member count.
    pub fn expected(&self, members: &[u64]) -> u64 {
        self.sent_in_window
            .iter()
            .zip(members)
            .map(|(sent, members)| sent * members)
            .sum()
    }

    /// The share of owed deliveries that never arrived (0 when nothing was owed). Deliveries
    /// beyond what was owed (duplicates) do not hide losses elsewhere: they are reported apart.
    pub fn loss(&self, members: &[u64]) -> f64 {
        loss(self.expected(members), self.received)
    }
}

/// `1 - received / expected`, never negative; 0 when nothing was expected.
pub fn loss(expected: u64, received: u64) -> f64 {
    if expected == 0 {
        return 0.0;
    }
    expected.saturating_sub(received) as f64 / expected as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window() -> Window {
        Window {
            start_ns: 1_000,
            end_ns: 2_000,
        }
    }

    #[test]
    fn only_in_window_sends_are_owed() {
        let mut tally = Tally::new(window(), 2);
        tally.on_sent(0, 500); // warm-up
        tally.on_sent(0, 1_000);
        tally.on_sent(0, 1_999);
        tally.on_sent(1, 1_500);
        tally.on_sent(1, 2_000); // tail
        assert_eq!(tally.sent_total, 5);
        assert_eq!(tally.sent_in_window, [2, 1]);
        // Room 0 has 3 members, room 1 has 10.
        assert_eq!(tally.expected(&[3, 10]), 2 * 3 + 10);
    }

    #[test]
    fn loss_counts_what_did_not_arrive() {
        let mut tally = Tally::new(window(), 1);
        tally.on_sent(0, 1_200);
        tally.on_sent(0, 1_300);
        // Two members: four deliveries owed, three arrive, one warm-up delivery does not count.
        tally.on_received(0, 0, 1_200, 5_000_000);
        tally.on_received(0, 0, 1_200, 6_000_000);
        tally.on_received(0, 0, 1_300, 7_000_000);
        tally.on_received(0, 0, 900, 7_000_000);
        assert_eq!(tally.received, 3);
        assert_eq!(tally.received_outside, 1);
        assert!((tally.loss(&[2]) - 0.25).abs() < 1e-12);
        assert_eq!(tally.latency_us.len(), 3);
        // 3 significant digits: the maximum is 6 998 µs to within 0.1 %.
        assert!(tally.latency_us.max().abs_diff(6_998) <= 7);
    }

    #[test]
    fn misrouted_deliveries_are_not_counted_as_received() {
        let mut tally = Tally::new(window(), 2);
        tally.on_sent(1, 1_100);
        tally.on_received(0, 1, 1_100, 1_200);
        assert_eq!(tally.misrouted, 1);
        assert_eq!(tally.received, 0);
        assert_eq!(tally.loss(&[1, 1]), 1.0);
    }

    #[test]
    fn loss_is_never_negative() {
        assert_eq!(loss(0, 0), 0.0);
        assert_eq!(loss(10, 12), 0.0);
        assert!((loss(1000, 999) - 0.001).abs() < 1e-12);
    }
}
