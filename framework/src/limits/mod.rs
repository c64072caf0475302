//! What one client may cost: how fast a WebSocket may send, what happens to a member that does
//! not read, and how many connections one address may hold.
//!
//! These are the knobs; the server ([`ServerConfig`](crate::server::ServerConfig)) sets them for
//! every connection, a route can override the rate limit
//! ([`ConsumerApp::rate_limit`](crate::consumer::ConsumerApp::rate_limit)), and the consumer's
//! loop and the server's accept path enforce them. Every one has a default a person typing in a
//! browser never meets; the table in `docs/security.md` lists them with what a client sees.
//!
//! ```
//! use std::time::Duration;
//! use switchboard::limits::{Rate, RateLimit, SlowClientPolicy};
//!
//! // A route for scripts that may send 2 000 messages a second in bursts of 5 000.
//! let bulk = RateLimit::default().messages(Rate::new(2_000, 5_000));
//! assert_eq!(bulk.messages, Some(Rate::new(2_000, 5_000)));
//!
//! // Members that fall behind are closed with 1013 after 3 s instead of 10 s.
//! let strict = SlowClientPolicy::Disconnect { after: Duration::from_secs(3), max_dropped: None };
//! # let _ = strict;
//! ```

mod bucket;
mod connections;

use std::time::Duration;

pub(crate) use bucket::TokenBucket;
pub(crate) use connections::{Admission, ClientRefusal, ConnectionCounts, Permit};

/// A sustained rate with bursts: a token bucket holding `burst` tokens, refilled at
/// `per_second`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Tokens added per second: the rate that can be kept up forever.
    pub per_second: u32,
    /// The bucket's size: how much may come at once after a quiet spell.
    pub burst: u32,
}

impl Rate {
    /// `per_second` sustained, bursts of `burst` (at least 1).
    pub const fn new(per_second: u32, burst: u32) -> Rate {
        Rate {
            per_second,
            burst: if burst == 0 { 1 } else { burst },
        }
    }
}

/// How fast one WebSocket connection may send, as token buckets for frames and for bytes.
///
/// A frame over either limit is *excess*: the consumer's `receive` is not called for it, its
/// [`rate_limited`](crate::consumer::WebsocketConsumer::rate_limited) hook is (the JSON
/// consumer answers `{"type": "error", "error": "rate limited"}`). A connection with more than
/// [`max_violations`](Self::max_violations) excess frames within
/// [`violation_window`](Self::violation_window) is closed with 1008 (Policy Violation), the rule
/// Centrifugo applies to client errors.
///
/// Every frame counts, pings included (each ping costs the server a pong); bytes are payload
/// bytes. The default lets one connection send bursts of 500 messages and 200 messages a second
/// sustained (1 MiB/s, bursts of 4 MiB), which no person typing comes near and scripts rarely
/// do; a flood of thousands a second is limited and then closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimit {
    /// Frames per second; `None`: not limited.
    pub messages: Option<Rate>,
    /// Payload bytes per second; `None`: not limited.
    pub bytes: Option<Rate>,
    /// Excess frames tolerated within [`violation_window`](Self::violation_window); one more
    /// closes the connection with 1008. Default 20.
    pub max_violations: u32,
    /// See [`max_violations`](Self::max_violations). Default 5 s.
    pub violation_window: Duration,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            messages: Some(Rate::new(200, 500)),
            bytes: Some(Rate::new(1 << 20, 4 << 20)),
            max_violations: 20,
            violation_window: Duration::from_secs(5),
        }
    }
}

impl RateLimit {
    /// No limit at all: every frame reaches the consumer.
    pub const fn unlimited() -> RateLimit {
        RateLimit {
            messages: None,
            bytes: None,
            max_violations: u32::MAX,
            violation_window: Duration::from_secs(5),
        }
    }

    /// Sets the frame rate.
    pub fn messages(mut self, rate: Rate) -> RateLimit {
        self.messages = Some(rate);
        self
    }

    /// Sets the byte rate.
    pub fn bytes(mut self, rate: Rate) -> RateLimit {
        self.bytes = Some(rate);
        self
    }

    /// Closes with 1008 after more than `violations` excess frames within `window`.
    pub fn close_after(mut self, violations: u32, window: Duration) -> RateLimit {
        self.max_violations = violations;
        self.violation_window = window;
        self
    }

    /// Whether anything is limited at all.
    pub fn is_limited(&self) -> bool {
        self.messages.is_some() || self.bytes.is_some()
    }
}

/// What happens to a member whose outbound queue overflows: it does not read (or not fast
/// enough) what the room sends it.
///
/// Either way the other members never wait for it: a full queue drops the message for that
/// member only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SlowClientPolicy {
    /// Close it with 1013 (Try Again Later) and a reason once its queue has kept dropping
    /// messages for `after`, or has dropped more than `max_dropped` in all. A client that reads
    /// again gets what was already on its way, then the close frame; the chat page reconnects
    /// by itself. The default, with `after` 10 s and no count.
    Disconnect {
        /// How long a queue may keep overflowing.
        after: Duration,
        /// How many messages may be dropped in all; `None`: no count.
        max_dropped: Option<u64>,
    },
    /// Keep it connected and drop what does not fit (Channels' layers do this, silently). A
    /// client that reads nothing is still dropped after the keepalive timeout.
    DropNewest,
}

impl Default for SlowClientPolicy {
    fn default() -> Self {
        SlowClientPolicy::Disconnect {
            after: Duration::from_secs(10),
            max_dropped: None,
        }
    }
}

/// Limits per client address, off by default.
///
/// Behind a reverse proxy that is not in
/// [`ServerConfig::forwarded_allow`](crate::server::ServerConfig::forwarded_allow), every
/// connection comes from the proxy's address, so a per-address limit would be a limit on
/// everybody: turn these on only when clients connect directly or the proxy is trusted. IPv6
/// clients are counted per /64 network, the block one subscriber usually holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientLimits {
    /// Open connections per client; more are answered 429. `None`: not limited.
    pub max_connections: Option<usize>,
    /// WebSocket handshakes per second per client; more are answered 429. `None`: not limited.
    pub handshakes: Option<Rate>,
}

impl ClientLimits {
    /// Limits open connections per client.
    pub fn max_connections(mut self, max: usize) -> ClientLimits {
        self.max_connections = Some(max);
        self
    }

    /// Limits WebSocket handshakes per second per client.
    pub fn handshakes(mut self, rate: Rate) -> ClientLimits {
        self.handshakes = Some(rate);
        self
    }

    /// Whether anything is limited.
    pub fn is_limited(&self) -> bool {
        self.max_connections.is_some() || self.handshakes.is_some()
    }
}
