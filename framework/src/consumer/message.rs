//! What a client sends: text or binary data frames.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use tokio_tungstenite::tungstenite::Utf8Bytes;

pub use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::error::{Error, Result};

/// A data frame from the client. Pings, pongs and close frames are handled for you.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text frame (always valid UTF-8).
    Text(Utf8Bytes),
    /// A binary frame.
    Binary(Bytes),
}

impl Message {
    /// The text, or [`Error::BinaryFrame`] for a binary frame.
    pub fn as_text(&self) -> Result<&str> {
        match self {
            Message::Text(text) => Ok(text.as_str()),
            Message::Binary(_) => Err(Error::BinaryFrame),
        }
    }

    /// The text as an owned `String`, or [`Error::BinaryFrame`].
    pub fn into_text(self) -> Result<String> {
        self.as_text().map(str::to_owned)
    }

    /// The bytes of a binary frame, or [`Error::TextFrame`].
    pub fn into_bytes(self) -> Result<Bytes> {
        match self {
            Message::Binary(bytes) => Ok(bytes),
            Message::Text(_) => Err(Error::TextFrame),
        }
    }

    /// Decodes a text frame as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        Ok(serde_json::from_str(self.as_text()?)?)
    }
}

impl From<&str> for Message {
    fn from(text: &str) -> Message {
        Message::Text(text.into())
    }
}

impl From<String> for Message {
    fn from(text: String) -> Message {
        Message::Text(text.into())
    }
}

impl From<Bytes> for Message {
    fn from(bytes: Bytes) -> Message {
        Message::Binary(bytes)
    }
}
