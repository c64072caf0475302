//! # switchboard
//!
//! Django Channels' model for Rust: consumers as trait impls, routers, channel layers with
//! groups, middleware, and a hyper + tokio-tungstenite server — typed, fast, one binary.
//!
//! The pieces, with the names a Channels user knows:
//!
//! | Channels | switchboard |
//! |---|---|
//! | `scope` | [`Scope`](scope::Scope) |
//! | ASGI application | [`Application`] |
//! | `ProtocolTypeRouter`, `URLRouter` | [`ProtocolTypeRouter`](routing::ProtocolTypeRouter), [`URLRouter`](routing::URLRouter) |
//! | `WebsocketConsumer`, `JsonWebsocketConsumer` | [`WebsocketConsumer`](consumer::WebsocketConsumer), [`JsonWebsocketConsumer`](consumer::JsonWebsocketConsumer) |
//! | `as_asgi()` | [`as_app()`](consumer::WebsocketConsumer::as_app) |
//! | channel layer, groups | [`ChannelLayer`](layer::ChannelLayer), [`InMemoryChannelLayer`](layer::InMemoryChannelLayer) |
//! | `AuthMiddlewareStack`, `SessionMiddleware`, `AllowedHostsOriginValidator` | the same names in [`middleware`] |
//! | daphne | [`Server`](server::Server) |
//! | `WebsocketCommunicator`, `HttpCommunicator`, `ApplicationCommunicator` | the same names in [`testing`] |
//!
//! With the crate feature `axum` (or `tower`), `switchboard::tower` mounts an application into
//! an axum router as a tower service, and an axum router into an application.
//!
//! ## A room chat in one file
//!
//! ```no_run
//! use switchboard::prelude::*;
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
//! #[tokio::main]
//! async fn main() -> Result<()> {
//!     let app = ProtocolTypeRouter::new()
//!         .websocket(URLRouter::new().route("/ws/chat/{room:slug}/", ChatConsumer::as_app()));
//!     Server::bind("127.0.0.1:8000").await?.serve(app).await
//! }
//! ```

#![warn(missing_docs)]

pub mod application;
pub mod consumer;
mod error;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzz;
pub mod guide;
pub mod layer;
pub mod limits;
pub mod middleware;
#[cfg(feature = "redis")]
pub mod redis;
pub mod routing;
pub mod scope;
pub mod server;
pub mod testing;
#[cfg(feature = "tower")]
pub mod tower;
pub mod transport;
pub mod worker;

pub use application::{Application, Connection};
pub use consumer::response;
pub use error::{Error, Result};
/// The `http` crate whose types (`Response`, `HeaderMap`, `StatusCode`, …) appear in this API.
pub use http;
pub use tokio_tungstenite::tungstenite::Utf8Bytes;

/// Everything an application author usually needs, in one import.
pub mod prelude {
    pub use crate::application::{Application, Connection, HttpResponse};
    pub use crate::consumer::{
        CloseCode, ConsumerApp, DecodeError, HttpRequest, JsonWebsocketConsumer, Message, NoEvent,
        Websocket, WebsocketConsumer, handler, response,
    };
    pub use crate::layer::{
        ChannelLayer, Event, InMemoryChannelLayer, LayerStatus, PresenceEvent, SharedLayer,
    };
    pub use crate::middleware::{
        AllowedHostsOriginValidator, AllowedOrigins, AuthBackend, AuthMiddlewareStack,
        CookieMiddleware, OriginValidator, SessionConfig, SessionKey, SessionMiddleware, login,
        logout,
    };
    pub use crate::routing::{ProtocolTypeRouter, URLRouter};
    pub use crate::scope::{Scope, Session, User};
    pub use crate::server::{Server, ServerConfig};
    pub use crate::{Error, Result};
    pub use http::StatusCode;
    pub use serde::{Deserialize, Serialize};
}

#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
mod readme {}
