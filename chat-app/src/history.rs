//! Room history: the last messages of each room, written by a background worker fed through
//! the channel layer, so the consumer's hot path never waits for storage.
//!
//! In memory by default (one process, lost on restart); in Redis with `--layer redis://…`, as
//! one capped list per room, so every process serves the same history and it survives
//! restarts. A room that never had a message has no entry at all.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use fred::prelude::{Builder, ClientLike, Config, KeysInterface, ListInterface};
use switchboard::prelude::*;
use switchboard::worker::{ChannelNameRouter, Worker, WorkerContext};

/// The channel name the history worker receives on.
pub const HISTORY_CHANNEL: &str = "chat-history";

/// Messages kept per room.
pub const HISTORY_LIMIT: usize = 100;

/// One remembered message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The text.
    pub message: String,
    /// Who said it.
    pub user: String,
}

/// What the history worker is sent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum HistoryMessage {
    /// Remember a message of a room.
    #[serde(rename = "history.append")]
    Append {
        /// The room name.
        room: String,
        /// The text.
        message: String,
        /// Who said it.
        user: String,
    },
}

/// Where history lives.
#[derive(Clone)]
pub enum History {
    /// In this process.
    Memory(Arc<Mutex<HashMap<String, VecDeque<HistoryEntry>>>>),
    /// In Redis: the list `{prefix}:history:{room}`, newest first, capped.
    Redis {
        /// The connection.
        client: fred::clients::Client,
        /// Key prefix, shared with the channel layer's.
        prefix: String,
    },
}

impl History {
    /// History kept in this process.
    pub fn in_memory() -> History {
        History::Memory(Arc::default())
    }

    /// History kept in Redis at `url`.
    pub async fn redis(url: &str, prefix: &str) -> Result<History> {
        let config = Config::from_url(url)
            .map_err(|err| Error::custom(format!("invalid Redis URL {url:?}: {err}")))?;
        let client = Builder::from_config(config)
            .build()
            .map_err(|err| Error::custom(format!("Redis client for {url}: {err}")))?;
        client
            .init()
            .await
            .map_err(|err| Error::custom(format!("cannot connect to Redis at {url}: {err}")))?;
        Ok(History::Redis {
            client,
            prefix: prefix.to_owned(),
        })
    }

    fn lock(
        rooms: &Mutex<HashMap<String, VecDeque<HistoryEntry>>>,
    ) -> std::sync::MutexGuard<'_, HashMap<String, VecDeque<HistoryEntry>>> {
        // Plain data: a panic elsewhere cannot leave it half-updated in a harmful way.
        rooms.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remembers a message, forgetting the oldest beyond [`HISTORY_LIMIT`].
    pub async fn append(&self, room: &str, entry: HistoryEntry) -> Result<()> {
        match self {
            History::Memory(rooms) => {
                let mut rooms = Self::lock(rooms);
                let entries = rooms.entry(room.to_owned()).or_default();
                if entries.len() == HISTORY_LIMIT {
                    entries.pop_front();
                }
                entries.push_back(entry);
                Ok(())
            }
            History::Redis { client, prefix } => {
                let key = format!("{prefix}:history:{room}");
                let json = serde_json::to_string(&entry)?;
                // One round trip for both commands.
                let stored = async {
                    let pipeline = client.pipeline();
                    pipeline.lpush::<(), _, _>(&key, json).await?;
                    pipeline
                        .ltrim::<(), _>(&key, 0, HISTORY_LIMIT as i64 - 1)
                        .await?;
                    pipeline.all::<fred::types::Value>().await.map(|_| ())
                };
                stored
                    .await
                    .map_err(|err| Error::custom(format!("storing history of {room}: {err}")))
            }
        }
    }

    /// The room's remembered messages, oldest first.
    pub async fn recent(&self, room: &str) -> Result<Vec<HistoryEntry>> {
        match self {
            History::Memory(rooms) => Ok(Self::lock(rooms)
                .get(room)
                .map(|entries| entries.iter().cloned().collect())
                .unwrap_or_default()),
            History::Redis { client, prefix } => {
                let key = format!("{prefix}:history:{room}");
                let raw: Vec<String> = client
                    .lrange(&key, 0, HISTORY_LIMIT as i64 - 1)
                    .await
                    .map_err(|err| Error::custom(format!("reading history of {room}: {err}")))?;
                // Stored newest first; entries that do not parse are skipped, not fatal.
                Ok(raw
                    .iter()
                    .rev()
                    .filter_map(|json| serde_json::from_str(json).ok())
                    .collect())
            }
        }
    }

    /// Forgets a room (tests and maintenance).
    pub async fn clear(&self, room: &str) -> Result<()> {
        match self {
            History::Memory(rooms) => {
                Self::lock(rooms).remove(room);
                Ok(())
            }
            History::Redis { client, prefix } => client
                .del::<i64, _>(format!("{prefix}:history:{room}"))
                .await
                .map(|_| ())
                .map_err(|err| Error::custom(format!("clearing history of {room}: {err}"))),
        }
    }
}

/// Writes what [`HistoryMessage`]s say into a [`History`].
pub struct HistoryWorker {
    history: History,
}

impl Worker for HistoryWorker {
    type Message = HistoryMessage;

    async fn handle(&self, _ctx: &WorkerContext, message: Event<HistoryMessage>) -> Result<()> {
        let HistoryMessage::Append {
            room,
            message,
            user,
        } = &*message;
        let entry = HistoryEntry {
            message: message.clone(),
            user: user.clone(),
        };
        self.history.append(room, entry).await
    }
}

/// The chat-app's workers (Channels' `ChannelNameRouter`); one message at a time keeps each
/// room's history in order.
pub fn workers(history: History) -> ChannelNameRouter {
    ChannelNameRouter::new().route(HISTORY_CHANNEL, HistoryWorker { history })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: usize) -> HistoryEntry {
        HistoryEntry {
            message: format!("m{n}"),
            user: "u".into(),
        }
    }

    #[tokio::test]
    async fn memory_history_is_capped_ordered_and_per_room() {
        let history = History::in_memory();
        for n in 0..HISTORY_LIMIT + 5 {
            history.append("a", entry(n)).await.unwrap();
        }
        history.append("b", entry(0)).await.unwrap();
        let a = history.recent("a").await.unwrap();
        assert_eq!(a.len(), HISTORY_LIMIT);
        assert_eq!(a[0], entry(5));
        assert_eq!(a[HISTORY_LIMIT - 1], entry(HISTORY_LIMIT + 4));
        assert_eq!(history.recent("b").await.unwrap(), [entry(0)]);
        assert!(history.recent("never").await.unwrap().is_empty());
    }
}
