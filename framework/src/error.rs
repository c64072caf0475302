//! The crate's one error type.

use http::StatusCode;

/// Everything that can go wrong inside switchboard, with messages that say what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A channel or group name breaks Channels' naming rules.
    #[error(
        "invalid {kind} name {name:?}: use only ASCII letters, digits, '-', '_' and '.', fewer than 100 characters"
    )]
    InvalidName {
        /// `"group"` or `"channel"`.
        kind: &'static str,
        /// The rejected name (truncated to 120 characters).
        name: String,
    },

    /// A direct `send` found the receiving channel's queue full (Channels' `ChannelFull`).
    #[error("channel {0:?} is full: its consumer is not keeping up")]
    ChannelFull(String),

    /// The URL route has no keyword argument with this name.
    #[error("the URL route has no keyword argument {0:?}: check the route pattern")]
    MissingKwarg(String),

    /// A text operation was asked of a binary frame.
    #[error("expected a text frame, got a binary frame")]
    BinaryFrame,

    /// A binary operation was asked of a text frame.
    #[error("expected a binary frame, got a text frame")]
    TextFrame,

    /// Something was sent before `accept()` or after `close()`.
    #[error("the WebSocket is not open: accept() it first, and do not send after close()")]
    NotOpen,

    /// `accept` or `deny` was called twice, or after the handshake was answered.
    #[error("the handshake was already answered")]
    AlreadyAnswered,

    /// The handshake was refused; carries the HTTP status sent.
    #[error("the handshake was refused with HTTP {0}")]
    Denied(StatusCode),

    /// JSON encoding or decoding failed.
    #[error("JSON error: {0}")]
    Json(#[from] serde_json::Error),

    /// The WebSocket transport failed (the peer went away, a protocol violation, ...).
    #[error("WebSocket error: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),

    /// An I/O error (binding a socket, ...).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),

    /// The channel layer could not do what was asked: a channel that is not the layer's, a
    /// receiver that already exists, a layer that has stopped.
    #[error("channel layer error: {0}")]
    Layer(String),

    /// A backend (Redis, NATS) did not answer or refused a command. Transient: the clients
    /// reconnect on their own, so the same call may succeed later.
    #[error("{service} at {url} is unavailable: {reason}")]
    Unavailable {
        /// What was asked of whom, e.g. `"Redis (session store)"`.
        service: String,
        /// The backend's URL.
        url: String,
        /// What went wrong.
        reason: String,
    },

    /// A configuration value cannot be used: a URL, a secret, an origin pattern, a limit.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// Sessions are missing or misused: no `SessionMiddleware` around the application, a login
    /// with an anonymous user, a session cookie that cannot be made.
    #[error("session error: {0}")]
    Session(String),

    /// A worker's job failed or panicked.
    #[error("worker failed: {0}")]
    Worker(String),

    /// A cookie cannot be put in a response header.
    #[error(
        "cookie {name:?} cannot be sent: its path or domain holds characters not allowed in a header"
    )]
    Cookie {
        /// The cookie's name.
        name: String,
    },

    /// A route pattern could not be registered.
    #[error("invalid route {pattern:?}: {reason}")]
    InvalidRoute {
        /// The pattern as given.
        pattern: String,
        /// Why it was refused.
        reason: String,
    },

    /// An application-defined failure.
    #[error("{0}")]
    Custom(String),
}

impl Error {
    /// An application-defined error with a message.
    pub fn custom(message: impl Into<String>) -> Self {
        Error::Custom(message.into())
    }
}

/// `Result` with switchboard's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
