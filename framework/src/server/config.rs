//! The server's knobs, with daphne's defaults where daphne has them.

use std::time::Duration;

use super::ForwardedAllow;
use crate::limits::{ClientLimits, RateLimit, SlowClientPolicy};

/// Limits and timeouts of a [`Server`](super::Server).
///
/// Every limit is on by default, at a level a browser never reaches; `docs/security.md` lists
/// them all with what a client sees when it goes over.
///
/// ```
/// use std::time::Duration;
/// use switchboard::limits::ClientLimits;
/// use switchboard::server::ServerConfig;
///
/// let config = ServerConfig::default()
///     .max_connections(5_000)
///     .client_limits(ClientLimits::default().max_connections(50))
///     .forwarded_allow("127.0.0.1".parse().unwrap());
/// assert_eq!(config.header_read_timeout, Duration::from_secs(10));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Largest WebSocket message accepted; a larger one closes the connection with 1009.
    /// Default 64 KiB.
    pub max_message_size: usize,
    /// Largest WebSocket frame accepted. Default 64 KiB.
    pub max_frame_size: usize,
    /// Per-connection read buffer: small, because per-connection memory is what bounds how many
    /// clients one process holds. Default 4 KiB (tungstenite's default is 128 KiB).
    pub read_buffer_size: usize,
    /// Outgoing bytes buffered before a write to the socket. Default 8 KiB.
    pub write_buffer_size: usize,
    /// Largest HTTP request body read. Default 1 MiB; larger is refused with 413.
    pub max_body_size: usize,
    /// Longest request line (`GET /path?query HTTP/1.1`); longer is answered 414 URI Too Long
    /// as soon as it is seen. Default 8 KiB.
    pub max_request_line: usize,
    /// Largest header section (every header line after the request line); larger is answered
    /// 431 Request Header Fields Too Large as soon as it is seen. Default 16 KiB.
    pub max_header_bytes: usize,
    /// Most headers in a request; more is answered 431. Default 100 (hyper's).
    pub max_headers: usize,
    /// Time a client has to send a whole request head; a connection that has not is closed
    /// (a client sending its head a byte a second holds nothing for long). Default 10 s.
    pub header_read_timeout: Duration,
    /// Connections served at once; one more is answered 503 with `Retry-After`, and far more
    /// are closed unanswered, so the process never runs out of file descriptors. Default: the
    /// open-file limit less a reserve for Redis, logs and the listener (1/32 of it, at least 64
    /// and at most 1 024); 10 000 where there is no such limit to read.
    pub max_connections: usize,
    /// Connection limits per client address (off by default; see [`ClientLimits`]).
    pub client_limits: ClientLimits,
    /// What `Retry-After` says in a 503 or 429 answer. Default 1 s.
    pub retry_after: Duration,
    /// Peers whose `Forwarded` / `X-Forwarded-For` / `X-Forwarded-Proto` are believed. Default:
    /// none (see [`ForwardedAllow`]).
    pub forwarded_allow: ForwardedAllow,
    /// How fast each WebSocket may send (see [`RateLimit`]; a route can override it).
    pub rate_limit: RateLimit,
    /// What happens to a member that does not read what it is sent. Default: closed with 1013
    /// once its queue has overflowed for 10 s.
    pub slow_client: SlowClientPolicy,
    /// Keepalive ping interval (daphne `--ping-interval`). Default 20 s.
    pub ping_interval: Duration,
    /// Silence after which a client is dropped (daphne `--ping-timeout`). Default 30 s.
    pub ping_timeout: Duration,
    /// Time `connect()` has to accept or deny (daphne `--websocket_connect_timeout`). Default 5 s.
    pub connect_timeout: Duration,
    /// How long a graceful shutdown waits for connections to finish. Default 10 s.
    pub shutdown_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_message_size: 64 << 10,
            max_frame_size: 64 << 10,
            read_buffer_size: 4 << 10,
            write_buffer_size: 8 << 10,
            max_body_size: 1 << 20,
            max_request_line: 8 << 10,
            max_header_bytes: 16 << 10,
            max_headers: 100,
            header_read_timeout: Duration::from_secs(10),
            max_connections: default_max_connections(),
            client_limits: ClientLimits::default(),
            retry_after: Duration::from_secs(1),
            forwarded_allow: ForwardedAllow::none(),
            rate_limit: RateLimit::default(),
            slow_client: SlowClientPolicy::default(),
            ping_interval: Duration::from_secs(20),
            ping_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

/// The open-file limit less a reserve (see [`ServerConfig::max_connections`]).
fn default_max_connections() -> usize {
    match open_file_limit() {
        Some(limit) => {
            let reserve = (limit / 32).clamp(64, 1024);
            limit.saturating_sub(reserve).max(1)
        }
        None => 10_000,
    }
}

#[cfg(unix)]
fn open_file_limit() -> Option<usize> {
    let (soft, _hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).ok()?;
    if soft == rlimit::INFINITY {
        return None;
    }
    usize::try_from(soft).ok()
}

#[cfg(not(unix))]
fn open_file_limit() -> Option<usize> {
    None
}

impl ServerConfig {
    /// Sets both the message and the frame size limit.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self.max_frame_size = bytes;
        self
    }

    /// Sets the keepalive ping interval and the silence after which a client is dropped.
    pub fn keepalive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.ping_interval = interval;
        self.ping_timeout = timeout;
        self
    }

    /// Sets the time `connect()` has to accept or deny.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets how long a graceful shutdown waits for connections to finish.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Sets the largest HTTP request body read.
    pub fn max_body_size(mut self, bytes: usize) -> Self {
        self.max_body_size = bytes;
        self
    }

    /// Sets the request head limits: the request line, the header section, the number of
    /// headers.
    pub fn request_head(
        mut self,
        request_line: usize,
        header_bytes: usize,
        headers: usize,
    ) -> Self {
        self.max_request_line = request_line;
        self.max_header_bytes = header_bytes;
        self.max_headers = headers;
        self
    }

    /// Sets the time a client has to send its request head.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// Sets how many connections are served at once.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = max;
        self
    }

    /// Sets the limits per client address.
    pub fn client_limits(mut self, limits: ClientLimits) -> Self {
        self.client_limits = limits;
        self
    }

    /// Sets the peers whose forwarding headers are believed.
    pub fn forwarded_allow(mut self, allow: ForwardedAllow) -> Self {
        self.forwarded_allow = allow;
        self
    }

    /// Sets how fast each WebSocket may send.
    pub fn rate_limit(mut self, limit: RateLimit) -> Self {
        self.rate_limit = limit;
        self
    }

    /// Sets what happens to members that do not read.
    pub fn slow_client(mut self, policy: SlowClientPolicy) -> Self {
        self.slow_client = policy;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_limit_leaves_a_reserve_under_the_open_file_limit() {
        let max = ServerConfig::default().max_connections;
        if let Some(limit) = open_file_limit() {
            assert!(max + 64 <= limit, "{max} of {limit}");
            assert!(max >= limit.saturating_sub(1024), "{max} of {limit}");
        }
    }
}
