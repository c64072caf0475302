//! Testing applications in-process, with no socket and no port: Channels' communicators.
//!
//! * [`WebsocketCommunicator`] opens a WebSocket to any [`Application`](crate::Application)
//!   (a consumer, a router, a middleware stack) and exchanges frames with it.
//! * [`HttpCommunicator`] sends one HTTP request and captures the [`Response`].
//! * [`ApplicationCommunicator`] starts from a [`Scope`](crate::scope::Scope) built by hand,
//!   for scope fields no request can set.
//!
//! The application runs in its own task exactly as under the [server](crate::server): the same
//! handshake answer, the same consumer loop, the same channel layer, over in-memory queues.
//! Every wait is bounded by the communicator's timeout, where Channels passes `timeout=` to each
//! call: 1 s unless set when building it
//! ([`WebsocketCommunicator::timeout`], [`HttpCommunicator::timeout`]) or changed mid-test
//! ([`WebsocketCommunicator::set_timeout`]); `receive_nothing` listens for its own
//! [`nothing_timeout`](WebsocketCommunicator::nothing_timeout), 100 ms unless set. The error
//! says what happened instead of what was expected: a refused handshake is an answer with its
//! HTTP status (never a timeout), a close frame comes with its code and reason, a panicking
//! consumer fails the test with its panic message.
//!
//! ```
//! use switchboard::prelude::*;
//! use switchboard::testing::WebsocketCommunicator;
//!
//! #[derive(Clone, Serialize, Deserialize)]
//! #[serde(tag = "type")]
//! enum RoomEvent {
//!     #[serde(rename = "chat.message")]
//!     ChatMessage { message: String },
//! }
//!
//! #[derive(Default)]
//! struct ChatConsumer {
//!     group: String,
//! }
//!
//! impl WebsocketConsumer for ChatConsumer {
//!     type Event = RoomEvent;
//!
//!     async fn connect(&mut self, ws: &mut Websocket) -> Result<()> {
//!         self.group = format!("chat_{}", ws.scope().kwarg("room")?);
//!         ws.group_add(&self.group).await?;
//!         ws.accept().await
//!     }
//!
//!     async fn receive(&mut self, ws: &mut Websocket, message: Message) -> Result<()> {
//!         let message = message.into_text()?;
//!         ws.group_send(&self.group, &RoomEvent::ChatMessage { message }).await
//!     }
//!
//!     async fn event(&mut self, ws: &mut Websocket, event: Event<RoomEvent>) -> Result<()> {
//!         ws.forward(&event).await
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), switchboard::testing::Error> {
//! use std::sync::Arc;
//! use serde_json::{Value, json};
//!
//! let app = Arc::new(URLRouter::new().route("/ws/chat/{room:slug}/", ChatConsumer::as_app()));
//! let layer: SharedLayer = Arc::new(InMemoryChannelLayer::new());
//!
//! let mut alice = WebsocketCommunicator::new(app.clone(), "/ws/chat/lobby/")
//!     .channel_layer(layer.clone());
//! let mut bob = WebsocketCommunicator::new(app.clone(), "/ws/chat/lobby/")
//!     .channel_layer(layer.clone());
//! assert!(alice.connect().await?.is_accepted());
//! assert!(bob.connect().await?.is_accepted());
//!
//! alice.send_text("hi bob").await?;
//! let expected = json!({"type": "chat.message", "message": "hi bob"});
//! assert_eq!(bob.receive_json::<Value>().await?, expected);
//! assert_eq!(alice.receive_json::<Value>().await?, expected);
//!
//! // Rooms that are not slugs are refused by the router, before any consumer runs.
//! let mut lost = WebsocketCommunicator::new(app, "/ws/chat/no%20spaces/");
//! assert_eq!(lost.connect().await?.status(), StatusCode::NOT_FOUND);
//!
//! alice.disconnect(CloseCode::Normal).await?;
//! bob.disconnect(CloseCode::Normal).await?;
//! # Ok(())
//! # }
//! ```
//!
//! Communicator calls return this module's [`Error`], which converts into
//! [`switchboard::Error`](crate::Error), so `?` works in tests returning either.

mod application;
mod error;
mod http;
mod request;
mod task;
mod transport;
mod websocket;

#[cfg(test)]
pub(crate) mod probe;
#[cfg(test)]
mod tests;

use std::time::Duration;

pub use application::ApplicationCommunicator;
pub use error::Error;
pub use http::{HttpCommunicator, Response};
pub use websocket::{Close, Handshake, WebsocketCommunicator};

/// How long a communicator waits for anything, unless told otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

/// How long `receive_nothing` listens, unless told otherwise (Channels' `timeout=0.1`).
const DEFAULT_NOTHING_TIMEOUT: Duration = Duration::from_millis(100);
