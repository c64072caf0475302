//! The handle a consumer talks through.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use futures::SinkExt;
use http::{HeaderMap, StatusCode};
use serde::Serialize;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Utf8Bytes};

use super::{CloseCode, Message};
use crate::application::{HandshakeAnswer, WebsocketConnection};
use crate::error::{Error, Result};
use crate::layer::{Envelope, Event, SharedLayer};
use crate::scope::Scope;
use crate::transport::Socket;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// The handshake waits for `accept` or `deny`.
    Connecting,
    /// Accepted: frames flow.
    Open,
    /// Denied before the upgrade, with this status.
    Denied(StatusCode),
    /// The server sent a close frame with this code.
    Closed(CloseCode),
}

/// A consumer's view of its connection: the scope, the socket, and the channel layer.
///
/// Sends are buffered and flushed when the handler returns, so a burst of events costs one
/// write to the socket rather than one per message.
pub struct Websocket {
    scope: Scope,
    channel_name: String,
    layer: SharedLayer,
    conn: WebsocketConnection,
    pub(crate) transport: Option<Socket>,
    pub(crate) state: State,
    pub(crate) groups: Vec<String>,
    pub(crate) unflushed: bool,
}

impl Websocket {
    pub(crate) fn new(scope: Scope, channel_name: String, conn: WebsocketConnection) -> Websocket {
        Websocket {
            scope,
            channel_name,
            layer: Arc::clone(&conn.layer),
            conn,
            transport: None,
            state: State::Connecting,
            groups: Vec::new(),
            unflushed: false,
        }
    }

    /// The connection's scope: path, headers, `url_route`, cookies, user, ...
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The scope, to change it (for example to remember something for later handlers).
    pub fn scope_mut(&mut self) -> &mut Scope {
        &mut self.scope
    }

    /// This consumer's unique channel name in the layer (Channels' `self.channel_name`).
    pub fn channel_name(&self) -> &str {
        &self.channel_name
    }

    /// The channel layer (Channels' `self.channel_layer`).
    pub fn channel_layer(&self) -> &SharedLayer {
        &self.layer
    }

    /// Whether the connection is accepted and not closed.
    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    /// Accepts the handshake: the client gets HTTP 101.
    pub async fn accept(&mut self) -> Result<()> {
        self.accept_with(None, HeaderMap::new()).await
    }

    /// Accepts with a subprotocol (one the client offered in
    /// [`scope().subprotocols`](Scope::subprotocols)) and extra response headers.
    pub async fn accept_with(
        &mut self,
        subprotocol: Option<&str>,
        headers: HeaderMap,
    ) -> Result<()> {
        if self.state != State::Connecting {
            return Err(Error::AlreadyAnswered);
        }
        if let Some(chosen) = subprotocol
            && !self
                .scope
                .subprotocols
                .iter()
                .any(|offered| offered == chosen)
        {
            tracing::warn!(
                subprotocol = chosen,
                "accepting with a subprotocol the client did not offer; it will likely fail the handshake"
            );
        }
        let answer = HandshakeAnswer::Accept {
            subprotocol: subprotocol.map(str::to_owned),
            headers,
        };
        if !self.conn.send_answer(answer) {
            self.state = State::Closed(CloseCode::Abnormal);
            return Err(Error::NotOpen);
        }
        match self.conn.upgraded().await {
            Some(transport) => {
                self.transport = Some(transport);
                self.state = State::Open;
                Ok(())
            }
            None => {
                self.state = State::Closed(CloseCode::Abnormal);
                Err(Error::NotOpen)
            }
        }
    }

    /// Refuses the handshake with HTTP 403, before any upgrade (Channels' `close()` in `connect`).
    pub fn deny(&mut self) -> Result<()> {
        self.deny_with(StatusCode::FORBIDDEN)
    }

    /// Refuses the handshake with another HTTP status (daphne can only say 403).
    pub fn deny_with(&mut self, status: StatusCode) -> Result<()> {
        if self.state != State::Connecting {
            return Err(Error::AlreadyAnswered);
        }
        self.conn.send_answer(HandshakeAnswer::Deny { status });
        self.state = State::Denied(status);
        Ok(())
    }

    /// Sends a text frame.
    pub async fn send_text(&mut self, text: impl Into<Utf8Bytes>) -> Result<()> {
        self.feed(tungstenite::Message::Text(text.into())).await
    }

    /// Sends a binary frame.
    pub async fn send_bytes(&mut self, bytes: impl Into<Bytes>) -> Result<()> {
        self.feed(tungstenite::Message::Binary(bytes.into())).await
    }

    /// Sends a value as a JSON text frame.
    pub async fn send_json<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        let text = serde_json::to_string(value)?;
        self.send_text(text).await
    }

    /// Sends a [`Message`] as it is (text stays text, binary stays binary).
    pub async fn send_message(&mut self, message: Message) -> Result<()> {
        match message {
            Message::Text(text) => self.send_text(text).await,
            Message::Binary(bytes) => self.send_bytes(bytes).await,
        }
    }

    /// Sends a layer event to the client exactly as it was encoded by its sender: the bytes are
    /// shared with every other member that forwards it, nothing is encoded again.
    pub async fn forward<T>(&mut self, event: &Event<T>) -> Result<()> {
        self.send_text(event.envelope().text()).await
    }

    /// Closes the connection with a code and reason (Channels' `close(code)`). Before the
    /// handshake is accepted this denies it with 403 instead. The consumer stops once the
    /// current handler returns; `disconnect` then runs with `code`.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<()> {
        match self.state {
            State::Connecting => self.deny(),
            State::Open => {
                let frame = CloseFrame {
                    code,
                    reason: truncate_reason(reason).into(),
                };
                self.state = State::Closed(code);
                let transport = self.transport.as_mut().ok_or(Error::NotOpen)?;
                transport
                    .send(tungstenite::Message::Close(Some(frame)))
                    .await?;
                self.unflushed = false;
                Ok(())
            }
            State::Denied(_) | State::Closed(_) => Ok(()),
        }
    }

    /// Joins a group; the membership is left automatically when the connection ends.
    pub async fn group_add(&mut self, group: &str) -> Result<()> {
        self.layer.group_add(group, &self.channel_name).await?;
        if !self.groups.iter().any(|g| g == group) {
            // Most consumers join one or two groups; a doubling Vec would start at four.
            self.groups.reserve_exact(1);
            self.groups.push(group.to_owned());
        }
        Ok(())
    }

    /// Leaves a group.
    pub async fn group_discard(&mut self, group: &str) -> Result<()> {
        self.groups.retain(|g| g != group);
        self.layer.group_discard(group, &self.channel_name).await
    }

    /// Sends a message to every member of a group, this consumer included if it is a member.
    /// The message is encoded once, whatever the number of members.
    pub async fn group_send<T: Serialize + ?Sized>(
        &mut self,
        group: &str,
        message: &T,
    ) -> Result<()> {
        self.layer
            .group_send(group, Envelope::encode(message)?)
            .await
    }

    /// Sends a message to one channel name (another consumer, or a worker).
    pub async fn send<T: Serialize + ?Sized>(&mut self, channel: &str, message: &T) -> Result<()> {
        self.layer.send(channel, Envelope::encode(message)?).await
    }

    async fn feed(&mut self, message: tungstenite::Message) -> Result<()> {
        if self.state != State::Open {
            return Err(Error::NotOpen);
        }
        let transport = self.transport.as_mut().ok_or(Error::NotOpen)?;
        transport.feed(message).await?;
        self.unflushed = true;
        Ok(())
    }

    /// Writes out everything buffered by the sends of the last handler. The flag is cleared
    /// only once the write is done, so a flush dropped while pending is simply made again.
    pub(crate) async fn flush(&mut self) -> Result<()> {
        if self.unflushed {
            if let Some(transport) = self.transport.as_mut() {
                transport.flush().await?;
            }
            self.unflushed = false;
        }
        Ok(())
    }

    pub(crate) fn conn(&mut self) -> &mut WebsocketConnection {
        &mut self.conn
    }
}

/// Close reasons must fit a control frame (123 bytes); cut at a character boundary.
fn truncate_reason(reason: &str) -> &str {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

impl fmt::Debug for Websocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Websocket")
            .field("path", &self.scope.path)
            .field("channel_name", &self.channel_name)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}
