//! What can go wrong while a communicator drives an application.

use std::time::Duration;

use http::StatusCode;

use crate::consumer::CloseCode;

/// Why a communicator call failed. The message says what the application did instead of what
/// the test expected, so a failing `?` or `unwrap()` explains itself.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Nothing happened within the timeout.
    #[error("timed out after {timeout:?} waiting for {waiting_for}")]
    Timeout {
        /// What the communicator waited for, e.g. `"a text frame"`.
        waiting_for: &'static str,
        /// How long it waited.
        timeout: Duration,
    },

    /// A frame of another kind than the one asked for arrived.
    #[error("expected {expected}, got {got}")]
    UnexpectedFrame {
        /// What was asked for, e.g. `"a text frame"`.
        expected: &'static str,
        /// What arrived, with a preview of its content.
        got: String,
    },

    /// The application closed the connection (sent a close frame).
    #[error("the application closed the connection with {code}{}", reason_suffix(.reason))]
    Closed {
        /// The close code, e.g. 1011 after a handler returned an error.
        code: CloseCode,
        /// The close reason, possibly empty.
        reason: String,
    },

    /// The application ended the connection without a close frame (a browser reports 1006).
    #[error("the application ended the connection without a close frame")]
    Ended,

    /// The handshake was refused, so there is no connection to use.
    #[error("the application refused the handshake with HTTP {status}: there is no connection")]
    Denied {
        /// The status of the refusal.
        status: StatusCode,
    },

    /// A frame was sent or awaited before [`connect`](super::WebsocketCommunicator::connect).
    #[error("not connected: call connect() first")]
    NotConnected,

    /// [`connect`](super::WebsocketCommunicator::connect) was called twice.
    #[error("connect() was already called: a communicator makes one connection")]
    AlreadyConnected,

    /// The test already called [`disconnect`](super::WebsocketCommunicator::disconnect).
    #[error("the connection is over: disconnect() was called")]
    Disconnected,

    /// The application returned without answering an HTTP request (a server answers 500).
    #[error("the application returned without answering the HTTP request")]
    NoResponse,

    /// The application panicked; carries the panic message.
    #[error("the application panicked: {message}")]
    Panicked {
        /// The panic's message (its `&str` or `String` payload).
        message: String,
    },

    /// A value could not be encoded as JSON to send.
    #[error("could not encode the value to send as JSON: {0}")]
    Encode(#[source] serde_json::Error),

    /// What the application sent is not the JSON the test expected.
    #[error("the application sent {text:?}, which is not the expected JSON: {error}")]
    Decode {
        /// Why it did not decode.
        #[source]
        error: serde_json::Error,
        /// The text received (cut after 200 characters).
        text: String,
    },
}

fn reason_suffix(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    }
}

impl Error {
    pub(super) fn decode(error: serde_json::Error, text: &str) -> Error {
        Error::Decode {
            error,
            text: preview(text),
        }
    }
}

/// The start of a text, for error messages.
pub(super) fn preview(text: &str) -> String {
    const MAX: usize = 200;
    match text.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// So a test returning [`switchboard::Result`](crate::Result) can use `?` on communicator calls.
impl From<Error> for crate::Error {
    fn from(err: Error) -> crate::Error {
        crate::Error::Custom(err.to_string())
    }
}
