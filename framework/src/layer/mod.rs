//! Channel layers: how consumers talk to each other (Channels' `channel_layer`).
//!
//! Every consumer gets a unique channel name from the layer. Messages go to one channel
//! ([`ChannelLayer::send`]) or to every channel in a named group ([`ChannelLayer::group_send`]).
//! [`InMemoryChannelLayer`] is the default and serves one process.
//!
//! ```
//! use switchboard::layer::{ChannelLayer, Envelope, InMemoryChannelLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> switchboard::Result<()> {
//! let layer = InMemoryChannelLayer::new();
//! let mut alice = layer.new_channel().await?;
//! layer.group_add("chat_lobby", alice.name()).await?;
//! layer.group_send("chat_lobby", Envelope::encode(&serde_json::json!({"type": "chat.message"}))?).await?;
//! let received = alice.recv().await.expect("delivered");
//! assert_eq!(received.json(), r#"{"type":"chat.message"}"#);
//! # Ok(())
//! # }
//! ```

#[cfg(feature = "channels-redis")]
pub mod channels_redis;
mod envelope;
mod in_memory;
pub mod log;
mod names;
#[cfg(feature = "nats")]
mod nats;
pub mod presence;
mod receiver;
#[cfg(feature = "redis")]
mod redis;

/// The events' JSON in a payload as Redis delivers it (the fuzz targets' way to the wire
/// format).
#[cfg(all(feature = "redis", any(test, feature = "fuzzing")))]
pub(crate) fn redis_wire_parse(payload: &str) -> Result<Vec<&str>, String> {
    redis::wire_events(payload)
}

use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::sync::watch;

#[cfg(feature = "channels-redis")]
pub use channels_redis::{ChannelsRedisConfig, Flavour};
pub use envelope::{Envelope, Event};
pub use in_memory::{InMemoryChannelLayer, LayerConfig};
pub use log::{LogConfig, LogSlice, Position, PositionError};
#[cfg(any(feature = "redis", feature = "nats"))]
pub(crate) use names::owner_process;
pub use names::{MAX_NAME_LENGTH, validate_channel_name, validate_group_name};
#[cfg(feature = "nats")]
pub use nats::{NatsChannelLayer, NatsConfig};
pub use presence::{PresenceConfig, PresenceEntry, PresenceEvent, PresenceTracker};
pub use receiver::ChannelReceiver;
#[cfg(feature = "redis")]
pub use redis::{DEFAULT_PARTITIONS, RedisChannelLayer, RedisConfig, RedisTopology};

use crate::error::Result;

/// A channel layer shared by every consumer of a process.
pub type SharedLayer = Arc<dyn ChannelLayer>;

/// What every channel layer offers (Channels' channel layer specification).
///
/// Methods return boxed futures so that a layer can be chosen at run time
/// (`Arc<dyn ChannelLayer>`); each call is one operation, never one per recipient.
pub trait ChannelLayer: Send + Sync + 'static {
    /// Creates a fresh, unique channel for one consumer and returns its receiving end.
    /// Dropping the receiver releases the name.
    fn new_channel(&self) -> BoxFuture<'_, Result<ChannelReceiver>>;

    /// Sends to one channel. A full queue is [`Error::ChannelFull`](crate::Error::ChannelFull);
    /// a channel nobody listens on silently drops the message, as in Channels.
    fn send<'a>(&'a self, channel: &'a str, message: Arc<Envelope>) -> BoxFuture<'a, Result<()>>;

    /// Adds a channel to a group, creating the group if needed.
    fn group_add<'a>(&'a self, group: &'a str, channel: &'a str) -> BoxFuture<'a, Result<()>>;

    /// Removes a channel from a group; removing a non-member is fine.
    fn group_discard<'a>(&'a self, group: &'a str, channel: &'a str) -> BoxFuture<'a, Result<()>>;

    /// Sends to every member of a group. A member whose queue is full misses this message
    /// (and only this member); the others still receive it.
    fn group_send<'a>(
        &'a self,
        group: &'a str,
        message: Arc<Envelope>,
    ) -> BoxFuture<'a, Result<()>>;

    /// Starts receiving on a fixed channel name such as `"thumbnails-generate"`, for a
    /// background worker (Channels' `runworker`). Anyone can [`send`](Self::send) to that name;
    /// with a layer shared by several processes each message reaches one receiver. Dropping the
    /// receiver stops receiving.
    fn receive_channel<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<ChannelReceiver>>;

    /// Reads the log of `group` (see [`log`]): every message after `since` when the log still
    /// holds them all (`recovered`), else the newest `recent` ones. A group without a log, or a
    /// layer that keeps none, answers [`LogSlice::none`]. Reading joins nothing: to read what
    /// a consumer then receives live without a gap or a duplicate, join first (as
    /// [`Websocket::group_add_with_log`](crate::consumer::Websocket::group_add_with_log) does).
    fn group_log<'a>(
        &'a self,
        group: &'a str,
        since: Option<&'a Position>,
        recent: usize,
    ) -> BoxFuture<'a, Result<LogSlice>> {
        let _ = (group, since, recent);
        Box::pin(async { Ok(LogSlice::none()) })
    }

    /// The layer's [presence](presence) tracker: who is in which group, across processes.
    /// Every built-in layer has one; a layer without answers `None`, and presence calls on it
    /// fail.
    fn presence_tracker(&self) -> Option<&PresenceTracker> {
        None
    }

    /// Who is in `group`: one entry per key (usually a user), each with every tracked
    /// connection's meta, as [`PresenceTracker::list`] answers.
    fn presence<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<Vec<PresenceEntry>>> {
        match self.presence_tracker() {
            Some(tracker) => Box::pin(tracker.list(group)),
            None => Box::pin(async { Err(no_presence()) }),
        }
    }

    /// Follows the layer's connection to its backend, for layers that have one (Redis).
    /// `None` for layers that cannot lose it, such as the in-memory layer.
    fn status(&self) -> Option<watch::Receiver<LayerStatus>> {
        None
    }
}

/// What presence calls answer on a layer without a tracker.
pub(crate) fn no_presence() -> crate::Error {
    crate::Error::Layer(
        "this channel layer keeps no presence: use a built-in layer, or give yours a PresenceTracker"
            .into(),
    )
}

/// The state of a layer's backend connection, as consumers are told about it
/// (Channels' `layer.disconnected` / `layer.reconnected` hooks, actually called).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerStatus {
    /// Connected since start-up.
    Connected,
    /// The backend is unreachable: only members in this process hear each other, and
    /// messages from other processes may be missed.
    Disconnected,
    /// The backend is back; messages sent meanwhile may have been missed.
    Reconnected,
}
