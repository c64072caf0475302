//! The server's knobs, with daphne's defaults where daphne has them.

use std::time::Duration;

/// Limits and timeouts of a [`Server`](super::Server).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
            ping_interval: Duration::from_secs(20),
            ping_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(10),
        }
    }
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
}
