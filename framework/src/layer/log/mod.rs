//! Group logs: a bounded log of what was sent to a group, so that a member can recover what it
//! missed while disconnected, and a joiner can read the recent messages (Centrifugo's history
//! and recovery, in Channels' vocabulary).
//!
//! A group whose name matches a pattern given to [`LayerConfig::group_log`] keeps a log. Every
//! message sent to it gets a [`Position`]: the log's *epoch* (a random name, new whenever the log
//! cannot be trusted to be complete: a new process for the in-memory layer, a Redis that lost
//! its data, a log forgotten after its time to live or evicted to stay in its budget) and an
//! *offset* that grows by one per message within the epoch. Members receive the position with
//! the message ([`Envelope::position`]); a consumer that forwards the message to its client
//! sends it with `"epoch"` and `"offset"` keys added to the JSON object.
//!
//! A consumer joins a logged group with
//! [`Websocket::group_add_with_log`](crate::consumer::Websocket::group_add_with_log): given the
//! position its client saw last, it either gets every message after it, in order, before the
//! live ones, none twice and none missing — or is told that this cannot be done, and gets the
//! newest messages instead.
//!
//! [`LayerConfig::group_log`]: super::LayerConfig::group_log

pub(crate) mod memory;
pub(crate) mod position;

use std::sync::Arc;
use std::time::Duration;

pub use position::{Position, PositionError};

use super::Envelope;

/// How one pattern of groups keeps its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogConfig {
    /// Most messages a group's log holds; the oldest go first.
    pub size: usize,
    /// A group without a message for this long forgets its log (its next message starts a new
    /// epoch). On Redis the keys carry this TTL, renewed by every write.
    pub ttl: Duration,
}

impl LogConfig {
    /// A log of `size` messages (at least 1) forgotten after `ttl` without a message.
    pub fn new(size: usize, ttl: Duration) -> LogConfig {
        LogConfig {
            size: size.max(1),
            ttl,
        }
    }
}

/// What a read of a group's log found.
#[derive(Debug, Clone, Default)]
pub struct LogSlice {
    /// The log's newest position when it was read; `None` when the group has no log yet (nothing
    /// was sent to it, or it was forgotten).
    pub head: Option<Position>,
    /// Messages, oldest first, each carrying its position.
    pub messages: Vec<Arc<Envelope>>,
    /// Whether `messages` is every message after the position asked for. When `false` (no
    /// position asked, another epoch, or older than the log keeps), `messages` is the newest
    /// ones instead.
    pub recovered: bool,
}

impl LogSlice {
    /// What a layer without logs answers: no log, nothing recovered.
    pub fn none() -> LogSlice {
        LogSlice::default()
    }
}

/// The log patterns of a layer and their total budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPatterns {
    /// `(pattern, config)` in the order they were added: a group name, or a prefix followed by
    /// `*`; the first that matches wins.
    pub patterns: Vec<(String, LogConfig)>,
    /// Bytes all in-memory logs of a process may hold together (default 256 MiB); the logs of
    /// the groups idle longest are forgotten first to stay under it.
    pub budget: usize,
}

impl Default for LogPatterns {
    fn default() -> Self {
        LogPatterns {
            patterns: Vec::new(),
            budget: 256 << 20,
        }
    }
}

impl LogPatterns {
    /// The log configuration of `group`, if it keeps one.
    pub fn config_of(&self, group: &str) -> Option<LogConfig> {
        self.patterns
            .iter()
            .find(|(pattern, _)| match pattern.strip_suffix('*') {
                Some(prefix) => group.starts_with(prefix),
                None => group == pattern,
            })
            .map(|(_, config)| *config)
    }

    /// Whether any group keeps a log.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }
}
