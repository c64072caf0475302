//! Consumers: one instance per connection, driven one event at a time through `&mut self`.
//!
//! * [`WebsocketConsumer`]: `connect` / `receive` / `event` / `disconnect`, talking through a
//!   [`Websocket`] handle (`accept`, `send_*`, `close`, groups).
//! * [`JsonWebsocketConsumer`]: the same with typed JSON in both directions.
//! * [`handler`]: an async function answering HTTP requests.
//!
//! A consumer never sees the server: it talks to a [`Transport`](crate::transport::Transport),
//! which is a socket in production and in-memory queues under test.

mod app;
mod handle;
mod http;
mod json;
mod message;
mod pings;
pub mod response;
mod runner;
mod websocket;

pub use app::ConsumerApp;
pub use handle::{LogJoin, Websocket};
pub use http::{HttpRequest, handler};
pub use json::{DecodeError, JsonWebsocketConsumer};
pub use message::{CloseCode, Message};
pub use websocket::{NoEvent, WebsocketConsumer};
