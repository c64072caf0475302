//! The handle a consumer talks through.

use std::collections::VecDeque;
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
use crate::layer::{Envelope, Event, Position, PresenceEvent, PresenceTracker, SharedLayer};
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
    /// Whether the connection tracked or watched presence, and so has to be forgotten by the
    /// layer's tracker when it ends.
    pub(crate) presence: bool,
    /// What joining logged groups left to do; boxed, as most connections join none.
    pub(crate) log: Option<Box<LogJoins>>,
}

/// The seams between what a consumer read from group logs and what it receives live.
#[derive(Default)]
pub(crate) struct LogJoins {
    /// Recovered messages not yet handed to `event()`: they go before any live message.
    pub(crate) replay: VecDeque<Arc<Envelope>>,
    /// The heads of the logs read. A live message at or before one of them (same epoch) was in
    /// the read already; the first one past it shows nothing older can follow, and removes it.
    /// Matched by epoch alone: epochs are random per log.
    pub(crate) seams: Vec<Position>,
}

impl LogJoins {
    /// Whether a live message was part of a log read already (and so must not be handed over
    /// again).
    pub(crate) fn already_read(&mut self, envelope: &Envelope) -> bool {
        let Some(position) = envelope.position() else {
            return false;
        };
        let Some(at) = self
            .seams
            .iter()
            .position(|head| head.epoch == position.epoch)
        else {
            return false;
        };
        if position.offset <= self.seams[at].offset {
            return true;
        }
        self.seams.swap_remove(at);
        false
    }
}

/// What [`Websocket::group_add_with_log`] found in the group's log.
#[derive(Debug)]
pub enum LogJoin {
    /// Every message after the position asked for is on its way to
    /// [`event()`](super::WebsocketConsumer::event), in order, before any live message.
    Recovered,
    /// The newest messages of the log (oldest first, each with its
    /// [position](Envelope::position)); live messages after them follow in `event()`.
    History {
        /// The messages.
        messages: Vec<Arc<Envelope>>,
        /// A position was asked for and could not be honoured: another epoch, a position the
        /// log has forgotten, or a group whose log is gone. The client missed messages.
        since_lost: bool,
    },
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
            presence: false,
            log: None,
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

    /// Joins a group that keeps a [log](crate::layer::log) and reads the log, with no gap and no
    /// duplicate between what was read and what then arrives live (Centrifugo's recovery).
    ///
    /// With `since` (the last position the client saw), when the log still holds every message
    /// after it, those messages are handed to [`event()`](super::WebsocketConsumer::event) in
    /// order before any live one, and the answer is [`LogJoin::Recovered`]. Otherwise — no
    /// `since`, another epoch, a position older than the log keeps — the answer is the newest
    /// `recent` messages, for the consumer to send as it likes ([`LogJoin::History`]). Either
    /// way, live messages that were part of the read are not handed over again.
    ///
    /// ```
    /// use switchboard::consumer::LogJoin;
    /// use switchboard::prelude::*;
    ///
    /// #[derive(Default)]
    /// struct Room;
    ///
    /// impl WebsocketConsumer for Room {
    ///     type Event = serde_json::Value;
    ///
    ///     async fn connect(&mut self, ws: &mut Websocket) -> Result<()> {
    ///         let since = ws.scope().query().get("since").and_then(|s| s.parse().ok());
    ///         let joined = ws.group_add_with_log("chat_lobby", since.as_ref(), 100).await?;
    ///         ws.accept().await?;
    ///         if let LogJoin::History { messages, .. } = joined {
    ///             for message in messages {
    ///                 ws.send_text(message.text()).await?;
    ///             }
    ///         }
    ///         Ok(())
    ///     }
    ///
    ///     async fn event(&mut self, ws: &mut Websocket, event: Event<Self::Event>) -> Result<()> {
    ///         ws.forward(&event).await // with "epoch" and "offset"
    ///     }
    /// }
    /// ```
    pub async fn group_add_with_log(
        &mut self,
        group: &str,
        since: Option<&Position>,
        recent: usize,
    ) -> Result<LogJoin> {
        // Joined first: a message sent after the read below arrives live.
        self.group_add(group).await?;
        let slice = self.layer.group_log(group, since, recent).await?;
        let joins = self.log.get_or_insert_default();
        if let Some(head) = slice.head {
            joins.seams.retain(|seam| seam.epoch != head.epoch);
            joins.seams.push(head);
        }
        if since.is_some() && slice.recovered {
            joins.replay.extend(slice.messages);
            return Ok(LogJoin::Recovered);
        }
        Ok(LogJoin::History {
            messages: slice.messages,
            since_lost: since.is_some(),
        })
    }

    /// Whether recovered messages wait to be handed to `event()`.
    pub(crate) fn replaying(&self) -> bool {
        self.log
            .as_ref()
            .is_some_and(|joins| !joins.replay.is_empty())
    }

    /// The next recovered message still to hand to `event()`.
    pub(crate) fn next_replayed(&mut self) -> Option<Arc<Envelope>> {
        self.log.as_mut()?.replay.pop_front()
    }

    /// Whether a live message was part of a log read already.
    pub(crate) fn already_read(&mut self, envelope: &Envelope) -> bool {
        self.log
            .as_mut()
            .is_some_and(|joins| joins.already_read(envelope))
    }

    /// Tracks this connection's [presence](crate::layer::presence) in `group` under `key`
    /// (usually the user), with `meta` (anything serializable, `()` for nothing). Several
    /// connections tracked under one key are one entry with several metas: a user with three
    /// tabs open is present once. Tracking again replaces the key and meta. Untracked
    /// automatically when the connection ends, however it ends.
    ///
    /// ```
    /// use switchboard::prelude::*;
    ///
    /// #[derive(Default)]
    /// struct Room;
    ///
    /// impl WebsocketConsumer for Room {
    ///     type Event = NoEvent;
    ///
    ///     async fn connect(&mut self, ws: &mut Websocket) -> Result<()> {
    ///         let user = ws.scope().user.username().unwrap_or("guest").to_owned();
    ///         ws.presence_track("chat_lobby", &user, &serde_json::json!({"device": "web"})).await?;
    ///         ws.presence_watch("chat_lobby").await?;
    ///         ws.accept().await
    ///     }
    ///
    ///     async fn presence(&mut self, ws: &mut Websocket, event: Event<PresenceEvent>) -> Result<()> {
    ///         ws.forward(&event).await // {"type": "presence.state", ...}, then "presence.diff"
    ///     }
    /// }
    /// ```
    pub async fn presence_track<M: Serialize + ?Sized>(
        &mut self,
        group: &str,
        key: &str,
        meta: &M,
    ) -> Result<()> {
        let meta = serde_json::to_value(meta)?;
        let tracker = self.tracker()?;
        tracker.track(group, &self.channel_name, key, meta).await?;
        self.presence = true;
        Ok(())
    }

    /// Stops tracking this connection in `group` (it keeps watching if it does).
    pub async fn presence_untrack(&mut self, group: &str) -> Result<()> {
        let tracker = self.tracker()?;
        tracker.untrack(group, &self.channel_name).await
    }

    /// Watches `group`'s presence: within one interval
    /// [`presence()`](super::WebsocketConsumer::presence) gets the whole state
    /// ([`PresenceEvent::State`]), then a [`PresenceEvent::Diff`] (coalesced, at most one per
    /// interval) whenever someone comes or goes. Stops when the connection ends.
    pub async fn presence_watch(&mut self, group: &str) -> Result<()> {
        let tracker = self.tracker()?;
        tracker.watch(group, &self.channel_name).await?;
        self.presence = true;
        Ok(())
    }

    /// Sends a presence event to the client in the encoding `encode` makes of it, made once per
    /// event: every member of the group that sends the same event in this process sends the
    /// same bytes (a state of a thousand entries is encoded once, not once per member). Every
    /// watcher of a process must use the same `encode`: the first one's text is kept.
    pub async fn forward_presence(
        &mut self,
        event: &Event<PresenceEvent>,
        encode: impl FnOnce(&PresenceEvent) -> Result<String>,
    ) -> Result<()> {
        let text = match event.envelope().presence_text(encode) {
            Some(text) => text?,
            None => event.envelope().text(),
        };
        self.send_text(text).await
    }

    fn tracker(&self) -> Result<&PresenceTracker> {
        self.layer
            .presence_tracker()
            .ok_or_else(crate::layer::no_presence)
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
