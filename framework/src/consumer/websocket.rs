//! The WebSocket consumer trait.

use std::future::Future;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{CloseCode, ConsumerApp, Message, Websocket};
use crate::error::Result;
use crate::layer::{Event, LayerStatus, PresenceEvent};

/// One WebSocket connection's logic (Channels' `WebsocketConsumer`).
///
/// A fresh value serves each connection; its methods run one at a time, in order, so state lives
/// in plain fields with no locks. Every method has a default, so a consumer implements only what
/// it needs:
///
/// * [`connect`](Self::connect) runs *before* the HTTP 101 answer: call
///   [`ws.accept()`](Websocket::accept) (the default does) or [`ws.deny()`](Websocket::deny)
///   (a real HTTP 403). Returning without either refuses the connection with 403.
/// * [`receive`](Self::receive) gets each text or binary frame.
/// * [`event`](Self::event) gets each message sent to this consumer's channel or its groups
///   through the channel layer, decoded as [`Self::Event`](Self::Event). A message that does not
///   decode (an unknown `"type"`) is logged and dropped, never a crash.
/// * [`presence`](Self::presence) gets the presence of the groups it
///   [watches](Websocket::presence_watch): the whole state, then diffs.
/// * [`disconnect`](Self::disconnect) runs exactly once after `connect`, however the
///   connection ends; groups are left and presence untracked after it.
///
/// An `Err` from a handler is logged and closes the connection with 1011 (or refuses the
/// handshake with 500 if it was not accepted yet). To stop on purpose, call
/// [`ws.close()`](Websocket::close): the consumer ends once the handler returns.
///
/// ```
/// use switchboard::prelude::*;
///
/// /// What travels between the members of a room.
/// #[derive(Clone, Serialize, Deserialize)]
/// #[serde(tag = "type")]
/// enum RoomEvent {
///     #[serde(rename = "chat.message")]
///     ChatMessage { message: String },
/// }
///
/// #[derive(Default)]
/// struct ChatConsumer {
///     group: String,
/// }
///
/// impl WebsocketConsumer for ChatConsumer {
///     type Event = RoomEvent;
///
///     async fn connect(&mut self, ws: &mut Websocket) -> Result<()> {
///         self.group = format!("chat_{}", ws.scope().kwarg("room_name")?);
///         ws.group_add(&self.group).await?;
///         ws.accept().await
///     }
///
///     async fn receive(&mut self, ws: &mut Websocket, message: Message) -> Result<()> {
///         let message = message.into_text()?;
///         ws.group_send(&self.group, &RoomEvent::ChatMessage { message }).await
///     }
///
///     async fn event(&mut self, ws: &mut Websocket, event: Event<RoomEvent>) -> Result<()> {
///         // Sends the bytes the group message was encoded into: no re-encoding per member.
///         ws.forward(&event).await
///     }
/// }
///
/// let route = URLRouter::new().route("/ws/chat/{room_name:slug}/", ChatConsumer::as_app());
/// ```
pub trait WebsocketConsumer: Send + Sized + 'static {
    /// The channel-layer messages this consumer handles, usually an enum with
    /// `#[serde(tag = "type")]`; [`NoEvent`] when it handles none.
    type Event: DeserializeOwned + Send + Sync + 'static;

    /// Groups joined before `connect` and left after `disconnect` (Channels' `groups`).
    fn groups(&self) -> Vec<String> {
        Vec::new()
    }

    /// A client asks to connect. The default accepts.
    fn connect(&mut self, ws: &mut Websocket) -> impl Future<Output = Result<()>> + Send {
        async move { ws.accept().await }
    }

    /// A text or binary frame arrived. The default ignores it.
    fn receive(
        &mut self,
        _ws: &mut Websocket,
        _message: Message,
    ) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }

    /// A frame arrived faster than the connection's [`RateLimit`](crate::limits::RateLimit)
    /// allows: [`receive`](Self::receive) is not called for it, this is. The default drops it:
    /// a plain consumer has no protocol to tell its client in (the JSON consumer's default
    /// answers an error event). Whatever this does, a client that keeps exceeding is closed
    /// with 1008.
    fn rate_limited(
        &mut self,
        _ws: &mut Websocket,
        _message: Message,
    ) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }

    /// A message arrived through the channel layer. The default logs and drops it.
    fn event(
        &mut self,
        _ws: &mut Websocket,
        event: Event<Self::Event>,
    ) -> impl Future<Output = Result<()>> + Send {
        async move {
            unhandled_event::<Self, _>(&event);
            Ok(())
        }
    }

    /// The [presence](crate::layer::presence) of a group this consumer
    /// [watches](Websocket::presence_watch) changed: first the whole state
    /// ([`PresenceEvent::State`]), then what joined and left ([`PresenceEvent::Diff`]).
    /// [`ws.forward(&event)`](Websocket::forward) sends it to the client as the framework
    /// encodes it, [`ws.forward_presence`](Websocket::forward_presence) in an encoding of your
    /// own. The default ignores it.
    fn presence(
        &mut self,
        _ws: &mut Websocket,
        _event: Event<PresenceEvent>,
    ) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }

    /// The channel layer lost or regained its backend (Redis): Channels' `layer.disconnected`
    /// and `layer.reconnected`. While disconnected, only members in this process hear each
    /// other; after a reconnection, messages sent meanwhile may be missing, so this is the
    /// place to tell the client to resync. The default does nothing.
    fn layer_status(
        &mut self,
        _ws: &mut Websocket,
        _status: LayerStatus,
    ) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }

    /// The connection ended with `code`. Runs exactly once.
    fn disconnect(
        &mut self,
        _ws: &mut Websocket,
        _code: CloseCode,
    ) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }

    /// An application that serves each connection with a fresh `Self::default()`
    /// (Channels' `as_asgi()`). Use [`ConsumerApp::new`] to build consumers from shared state.
    fn as_app() -> ConsumerApp<Self>
    where
        Self: Default,
    {
        ConsumerApp::new(Self::default)
    }
}

/// What the default `event()` of both consumer traits does: log the event and drop it.
pub(crate) fn unhandled_event<C, T>(event: &Event<T>) {
    tracing::warn!(
        consumer = std::any::type_name::<C>(),
        event = event.envelope().json(),
        "event() not implemented: event dropped"
    );
}

/// The event type of a consumer that handles no channel-layer messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NoEvent {}
