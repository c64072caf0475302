//! Presence: who is in a group, on every channel layer (Phoenix's `Presence`, Centrifugo's
//! presence).
//!
//! A connection is *tracked* in a group under a key (usually its user) with some metadata; the
//! group's presence is one [`PresenceEntry`] per key, holding every tracked connection's meta,
//! so a user with three tabs open is one entry with three metas. Connections that *watch* a
//! group get its whole state once ([`PresenceEvent::State`]) and then what changes
//! ([`PresenceEvent::Diff`]).
//!
//! Each layer has a [`PresenceTracker`]
//! ([`ChannelLayer::presence_tracker`](super::ChannelLayer::presence_tracker)); consumers use it
//! through [`Websocket::presence_track`](crate::consumer::Websocket::presence_track) and
//! [`Websocket::presence_watch`](crate::consumer::Websocket::presence_watch), and are untracked
//! when their connection ends, however it ends.
//!
//! ```
//! use std::sync::Arc;
//! use switchboard::layer::{ChannelLayer, InMemoryChannelLayer, PresenceEvent};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> switchboard::Result<()> {
//! let layer = Arc::new(InMemoryChannelLayer::new());
//! let tracker = layer.presence_tracker().expect("every built-in layer tracks presence");
//! let mut tab = layer.new_channel().await?;
//! tracker.track("chat_lobby", tab.name(), "amy", serde_json::json!({"device": "phone"})).await?;
//! tracker.watch("chat_lobby", tab.name()).await?;
//!
//! let entries = layer.presence("chat_lobby").await?;
//! assert_eq!((entries[0].key.as_str(), entries[0].metas.len()), ("amy", 1));
//!
//! // The watcher's first presence event is the whole state.
//! let envelope = tab.recv().await.expect("delivered");
//! assert!(matches!(&**envelope.presence_event().unwrap(), PresenceEvent::State { .. }));
//! tracker.forget(tab.name());
//! # Ok(())
//! # }
//! ```
//!
//! # How it works, on every layer alike
//!
//! Presence is built on the layer's own groups, with no storage of its own, as Phoenix's
//! tracker is: each process keeps a replica of the groups its connections track or watch. A
//! process' trackers talk on one group of the layer: at most once per
//! [`interval`](PresenceConfig::interval) each sends what joined and left in all its groups,
//! every [`heartbeat`](PresenceConfig::heartbeat) it says it is alive, and a process not
//! heard from for [`timeout`](PresenceConfig::timeout) is gone: its entries leave every list
//! (so a process killed without a word leaves within the timeout). A process that starts
//! replicating a group, that missed a message, or whose layer came back after an outage asks the
//! others for their entries, which rebuilds every replica.
//!
//! Changes are coalesced: the watchers of a group get at most one diff per interval, netted
//! (a connection that joins and leaves within one interval is nothing), so a thousand members
//! joining at once cost a handful of diffs, not a million.

mod replica;
mod tracker;
mod wire;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use tracker::PresenceTracker;

/// How presence is kept, on [`LayerConfig::presence`](super::LayerConfig::presence).
///
/// ```
/// use std::time::Duration;
/// use switchboard::layer::{LayerConfig, PresenceConfig};
///
/// let config = LayerConfig::default().presence(
///     PresenceConfig::default().interval(Duration::from_millis(500)),
/// );
/// assert_eq!(config.presence.timeout, Duration::from_secs(25));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PresenceConfig {
    /// How often, at most, a group's changes go out: to the other processes, and as one diff
    /// to its watchers (default 200 ms). New watchers get the state within one interval.
    pub interval: Duration,
    /// How often a process tells the others it is alive (default 10 s).
    pub heartbeat: Duration,
    /// How long a process may stay silent before its entries are dropped from every list
    /// (default 25 s: two missed heartbeats and some slack, so a process killed without a
    /// word leaves everyone's lists within 30 s of its last heartbeat).
    pub timeout: Duration,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        PresenceConfig {
            interval: Duration::from_millis(200),
            heartbeat: Duration::from_secs(10),
            timeout: Duration::from_secs(25),
        }
    }
}

impl PresenceConfig {
    /// Sets [`PresenceConfig::interval`] (at least 1 ms).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Sets [`PresenceConfig::heartbeat`] (at least 1 ms).
    pub fn heartbeat(mut self, heartbeat: Duration) -> Self {
        self.heartbeat = heartbeat.max(Duration::from_millis(1));
        self
    }

    /// Sets [`PresenceConfig::timeout`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// One key's presence in a group: every tracked connection's meta (Phoenix's
/// `%{key => %{metas: [...]}}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PresenceEntry {
    /// The key the connections were tracked under, usually a user.
    pub key: String,
    /// One meta per tracked connection, in no particular order.
    pub metas: Vec<Value>,
}

/// What a watcher of a group is told (through
/// [`WebsocketConsumer::presence`](crate::consumer::WebsocketConsumer::presence)).
///
/// Its JSON (`Envelope::json`) is `{"type": "presence.state", "group": ..., "entries": [...]}`
/// or `{"type": "presence.diff", "group": ..., "joins": [...], "leaves": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type")]
#[non_exhaustive]
pub enum PresenceEvent {
    /// The group's whole presence, sent once to a new watcher, or again to one that missed a
    /// diff (its queue was full).
    #[serde(rename = "presence.state")]
    State {
        /// The group.
        group: String,
        /// One entry per key, in key order.
        entries: Vec<PresenceEntry>,
    },
    /// What changed since the last event.
    #[serde(rename = "presence.diff")]
    Diff {
        /// The group.
        group: String,
        /// Keys that appeared or changed (a connection more or less, a new meta), each with
        /// every meta it has now.
        joins: Vec<PresenceEntry>,
        /// Keys that have no connection left.
        leaves: Vec<String>,
    },
}

impl PresenceEvent {
    /// The group the event is about.
    pub fn group(&self) -> &str {
        match self {
            PresenceEvent::State { group, .. } | PresenceEvent::Diff { group, .. } => group,
        }
    }
}
