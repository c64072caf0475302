//! Room history: the last messages of each room.
//!
//! In memory by default (one process, lost on restart): the consumer appends each message itself,
//! a push under a lock that costs less than handing it to anyone. In Redis with
//! `--layer redis://…`: written by a background worker fed through the channel layer, so the
//! consumer never waits for a round trip, as one capped sorted set per room, ordered by when the
//! server received each message, so every process serves the same history in the same order —
//! whichever worker process wrote it — and it survives restarts. A room that never had a message
//! has no entry at all.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use fred::prelude::{
    Builder, ClientLike, Config, KeysInterface, ReconnectPolicy, SortedSetsInterface,
};
use switchboard::layer::LayerConfig;
use switchboard::prelude::*;
use switchboard::worker::{ChannelNameRouter, Worker, WorkerContext};

/// The channel name the history worker receives on.
pub const HISTORY_CHANNEL: &str = "chat-history";

/// Messages the history channel holds for its workers (Channels' `channel_capacity`): the
/// layer's default of 100 filled in a few milliseconds at tens of thousands of messages a
/// second, and history was dropped while the workers were waiting for a round trip.
pub const HISTORY_CAPACITY: usize = 10_000;

/// The chat-app's channel layer limits: Channels' defaults, with room for the history
/// channel's bursts.
pub fn layer_config() -> LayerConfig {
    LayerConfig::default().channel_capacity(HISTORY_CHANNEL, HISTORY_CAPACITY)
}

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

/// What the history worker is sent: `{"type": "history.append", "room": …, …}`, the one
/// message of its channel.
///
/// A struct rather than a one-variant `#[serde(tag = "type")]` enum: it is encoded with the
/// same `"type"`, but decoded without serde buffering every field of an internally tagged
/// enum first — this runs once per chat message.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename = "history.append")]
pub struct HistoryMessage {
    /// The room name.
    pub room: String,
    /// The text.
    pub message: String,
    /// Who said it.
    pub user: String,
    /// When the server received it, in microseconds since the Unix epoch: the order of the
    /// history, whichever worker writes it.
    pub at: u64,
    /// Unique among all messages (the sender's channel name and a counter), so two equal texts
    /// are two entries.
    pub id: String,
}

/// What the history worker reads of a [`HistoryMessage`]: where and when. The rest stays in
/// the message's JSON, which is what is stored; decoding it into owned strings only to encode
/// it again was a third of the worker's time.
#[derive(Debug, Deserialize)]
pub struct HistoryAppend {
    /// Always `history.append`: checked, as serde does not check a struct's `tag`.
    #[serde(rename = "type")]
    pub kind: HistoryAppendType,
    /// The room name.
    pub room: String,
    /// When the server received it (see [`HistoryMessage::at`]).
    pub at: u64,
}

/// The one `"type"` of the history channel's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum HistoryAppendType {
    /// `history.append`
    #[serde(rename = "history.append")]
    HistoryAppend,
}

/// One message to remember: its room, its time and its `history.append` JSON, which is stored
/// as it is — a [`HistoryEntry`] reads the `message` and `user` back out of it.
#[derive(Debug, Clone, Copy)]
pub struct Remember<'a> {
    /// The room name.
    pub room: &'a str,
    /// When the server received it: the order of the history.
    pub at: u64,
    /// The [`HistoryMessage`] as JSON.
    pub json: &'a str,
}

/// Where history lives.
#[derive(Clone)]
pub enum History {
    /// Kept nowhere.
    Off,
    /// In this process.
    Memory(MemoryHistory),
    /// In Redis: the sorted set `{prefix}:chat-history:{room}`, scored by arrival time, capped.
    Redis {
        /// The connection.
        client: fred::clients::Client,
        /// Key prefix, shared with the channel layer's.
        prefix: String,
    },
}

impl History {
    /// No history at all (`--no-history`): nothing is stored, joiners get none.
    pub fn off() -> History {
        History::Off
    }

    /// Whether messages are kept.
    pub fn is_on(&self) -> bool {
        !matches!(self, History::Off)
    }

    /// History kept in this process.
    pub fn in_memory() -> History {
        History::Memory(MemoryHistory::default())
    }

    /// History kept in Redis at `url`.
    pub async fn redis(url: &str, prefix: &str) -> Result<History> {
        let config = Config::from_url(url)
            .map_err(|err| Error::custom(format!("invalid Redis URL {url:?}: {err}")))?;
        let client = Builder::from_config(config)
            // As the channel layer's connections (see there): reconnect for ever, and a command
            // that gets no answer fails instead of holding a joiner's handshake. Without a
            // policy a cluster's client stayed broken after a master's failover.
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 1_000, 2))
            .with_connection_config(|c| {
                c.tcp.nodelay = Some(true);
                c.connection_timeout = std::time::Duration::from_secs(5);
            })
            .with_performance_config(|p| {
                p.default_command_timeout = std::time::Duration::from_secs(2);
            })
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

    /// Remembers messages of any rooms, in one round trip to Redis, forgetting the oldest
    /// beyond [`HISTORY_LIMIT`] per room. A message whose JSON does not read as a
    /// [`HistoryEntry`] is skipped with a log line in memory; Redis stores it as it came, and
    /// [`recent`](History::recent) skips it.
    pub async fn append(&self, messages: &[Remember<'_>]) -> Result<()> {
        match self {
            History::Off => Ok(()),
            History::Memory(rooms) => {
                for remember in messages {
                    match serde_json::from_str::<HistoryEntry>(remember.json) {
                        Ok(entry) => rooms.push(remember.room, entry.message, entry.user),
                        Err(err) => {
                            tracing::warn!(room = %remember.room, error = %err, "unreadable history message: skipped");
                        }
                    }
                }
                Ok(())
            }
            // Boxed: the Redis client's futures are kilobytes, and inline they would size
            // every append, the in-memory ones too (and the worker's boxed batch future).
            History::Redis { client, prefix } => {
                Box::pin(Self::append_redis(client, prefix, messages)).await
            }
        }
    }

    async fn append_redis(
        client: &fred::clients::Client,
        prefix: &str,
        messages: &[Remember<'_>],
    ) -> Result<()> {
        // A map, not a search of the rooms seen so far: a batch can span many rooms.
        let mut per_room: HashMap<&str, Vec<&Remember<'_>>> = HashMap::new();
        for remember in messages {
            per_room.entry(remember.room).or_default().push(remember);
        }
        let stored = async {
            let pipeline = client.pipeline();
            for (room, mut entries) in per_room {
                keep_newest(&mut entries);
                // Microseconds since the epoch stay exact in an f64 until the year 2255.
                let scored: Vec<(f64, &str)> = entries
                    .iter()
                    .map(|remember| (remember.at as f64, remember.json))
                    .collect();
                let key = Self::key(prefix, room);
                pipeline
                    .zadd::<(), _, _>(&key, None, None, false, false, scored)
                    .await?;
                let keep = HISTORY_LIMIT as i64;
                pipeline
                    .zremrangebyrank::<(), _>(&key, 0, -keep - 1)
                    .await?;
            }
            pipeline.all::<fred::types::Value>().await.map(|_| ())
        };
        stored.await.map_err(|err| {
            Error::custom(format!(
                "storing {} history messages: {err}",
                messages.len()
            ))
        })
    }

    fn key(prefix: &str, room: &str) -> String {
        format!("{prefix}:chat-history:{room}")
    }

    /// The room's remembered messages, oldest first.
    pub async fn recent(&self, room: &str) -> Result<Vec<HistoryEntry>> {
        match self {
            History::Off => Ok(Vec::new()),
            History::Memory(rooms) => Ok(rooms.recent(room)),
            History::Redis { client, prefix } => {
                let keep = HISTORY_LIMIT as i64;
                let raw: Vec<String> = client
                    .zrange(Self::key(prefix, room), -keep, -1, None, false, None, false)
                    .await
                    .map_err(|err| Error::custom(format!("reading history of {room}: {err}")))?;
                // Entries that do not parse are skipped, not fatal.
                Ok(raw
                    .iter()
                    .filter_map(|json| serde_json::from_str(json).ok())
                    .collect())
            }
        }
    }

    /// Forgets a room (tests and maintenance).
    pub async fn clear(&self, room: &str) -> Result<()> {
        match self {
            History::Off => Ok(()),
            History::Memory(rooms) => {
                rooms.clear(room);
                Ok(())
            }
            History::Redis { client, prefix } => client
                .del::<i64, _>(Self::key(prefix, room))
                .await
                .map(|_| ())
                .map_err(|err| Error::custom(format!("clearing history of {room}: {err}"))),
        }
    }
}

/// Only the newest [`HISTORY_LIMIT`] of one room's batch can survive the trim that follows the
/// write: the others are not written at all.
fn keep_newest(entries: &mut Vec<&Remember<'_>>) {
    if entries.len() > HISTORY_LIMIT {
        entries.sort_by_key(|remember| remember.at);
        entries.drain(..entries.len() - HISTORY_LIMIT);
    }
}

/// History kept in this process: each room's last [`HISTORY_LIMIT`] messages.
///
/// One process writes it, so arrival order is the order messages were sent in; no time or id
/// is needed. Cloning shares the store.
#[derive(Clone, Default)]
pub struct MemoryHistory {
    rooms: Arc<Mutex<HashMap<String, VecDeque<HistoryEntry>>>>,
}

impl MemoryHistory {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, VecDeque<HistoryEntry>>> {
        // Plain data: a panic elsewhere cannot leave it half-updated in a harmful way.
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remembers a message, forgetting the room's oldest beyond [`HISTORY_LIMIT`].
    pub fn push(&self, room: &str, message: String, user: String) {
        let mut rooms = self.lock();
        // Looked up before inserting: the room's name is copied once per room, not per message.
        if !rooms.contains_key(room) {
            rooms.insert(room.to_owned(), VecDeque::new());
        }
        if let Some(kept) = rooms.get_mut(room) {
            if kept.len() == HISTORY_LIMIT {
                kept.pop_front();
            }
            kept.push_back(HistoryEntry { message, user });
        }
    }

    /// The room's remembered messages, oldest first.
    pub fn recent(&self, room: &str) -> Vec<HistoryEntry> {
        self.lock()
            .get(room)
            .map(|entries| entries.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn clear(&self, room: &str) {
        self.lock().remove(room);
    }
}

/// Writes what [`HistoryMessage`]s say into a [`History`].
pub struct HistoryWorker {
    history: History,
}

/// Most history messages written in one round trip.
const HISTORY_BATCH: usize = 512;

impl Worker for HistoryWorker {
    type Message = HistoryAppend;

    async fn handle(&self, _ctx: &WorkerContext, message: Event<HistoryAppend>) -> Result<()> {
        self.history.append(&[remember(&message)]).await
    }

    async fn handle_batch(
        &self,
        _ctx: &WorkerContext,
        messages: Vec<Event<HistoryAppend>>,
    ) -> Result<()> {
        let messages: Vec<Remember<'_>> = messages.iter().map(remember).collect();
        self.history.append(&messages).await
    }
}

fn remember(message: &Event<HistoryAppend>) -> Remember<'_> {
    Remember {
        room: &message.room,
        at: message.at,
        json: message.envelope().json(),
    }
}

/// The chat-app's workers (Channels' `ChannelNameRouter`). The history worker takes what has
/// gathered (one batch at a time keeps each room's history in order), so a busy server writes
/// many messages per round trip to Redis.
pub fn workers(history: History) -> ChannelNameRouter {
    ChannelNameRouter::new().route_batched(
        HISTORY_CHANNEL,
        HistoryWorker { history },
        HISTORY_BATCH,
    )
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

    fn said(room: &str, n: usize) -> HistoryMessage {
        HistoryMessage {
            room: room.into(),
            message: format!("m{n}"),
            user: "u".into(),
            at: n as u64,
            id: format!("test!{n}"),
        }
    }

    /// Appends messages as the worker does: each as its JSON.
    async fn append(history: &History, messages: &[HistoryMessage]) {
        let json: Vec<String> = messages
            .iter()
            .map(|m| serde_json::to_string(m).unwrap())
            .collect();
        let remember: Vec<Remember<'_>> = messages
            .iter()
            .zip(&json)
            .map(|(m, json)| Remember {
                room: &m.room,
                at: m.at,
                json,
            })
            .collect();
        history.append(&remember).await.unwrap();
    }

    #[tokio::test]
    async fn memory_history_is_capped_ordered_and_per_room() {
        let history = History::in_memory();
        for n in 0..HISTORY_LIMIT + 5 {
            append(&history, &[said("a", n)]).await;
        }
        append(&history, &[said("b", 0)]).await;
        let a = history.recent("a").await.unwrap();
        assert_eq!(a.len(), HISTORY_LIMIT);
        assert_eq!(a[0], entry(5));
        assert_eq!(a[HISTORY_LIMIT - 1], entry(HISTORY_LIMIT + 4));
        assert_eq!(history.recent("b").await.unwrap(), [entry(0)]);
        assert!(history.recent("never").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_unreadable_message_is_skipped_not_fatal() {
        let history = History::in_memory();
        let bad = Remember {
            room: "a",
            at: 1,
            json: r#"{"type":"history.append"}"#,
        };
        history.append(&[bad]).await.unwrap();
        append(&history, &[said("a", 2)]).await;
        assert_eq!(history.recent("a").await.unwrap(), [entry(2)]);
    }

    #[test]
    fn of_a_big_batch_only_the_newest_are_written() {
        let json = "{}";
        let mut remembered: Vec<Remember<'_>> = (0..HISTORY_LIMIT + 20)
            .map(|n| Remember {
                room: "a",
                at: n as u64,
                json,
            })
            .collect();
        // Two workers' batches interleave: arrival order is not time order.
        remembered.swap(0, HISTORY_LIMIT + 19);
        let mut entries: Vec<&Remember<'_>> = remembered.iter().collect();
        keep_newest(&mut entries);
        let kept: Vec<u64> = entries.iter().map(|r| r.at).collect();
        assert_eq!(kept, (20..HISTORY_LIMIT as u64 + 20).collect::<Vec<_>>());
    }

    #[test]
    fn the_worker_reads_room_and_time_from_a_history_message() {
        let json = serde_json::to_string(&said("a", 7)).unwrap();
        let append: HistoryAppend = serde_json::from_str(&json).unwrap();
        assert_eq!((append.room.as_str(), append.at), ("a", 7));
        let entry: HistoryEntry = serde_json::from_str(&json).unwrap();
        assert_eq!(
            entry,
            super::HistoryEntry {
                message: "m7".into(),
                user: "u".into()
            }
        );
        assert!(
            serde_json::from_str::<HistoryAppend>(r#"{"type":"other","room":"a","at":1}"#).is_err()
        );
    }

    #[test]
    fn a_history_message_reads_back_from_its_json_unchanged() {
        // The worker stores this JSON as it is, whichever process it runs in.
        let sent = said("a", 1);
        let json = serde_json::to_string(&sent).unwrap();
        let decoded: HistoryMessage = serde_json::from_str(&json).unwrap();
        assert_eq!(serde_json::to_string(&decoded).unwrap(), json);
    }

    #[test]
    fn history_messages_say_their_type() {
        let encoded = serde_json::to_value(said("a", 1)).unwrap();
        assert_eq!(encoded["type"], "history.append");
        let decoded: HistoryMessage = serde_json::from_value(encoded).unwrap();
        assert_eq!((decoded.room.as_str(), decoded.at), ("a", 1));
    }
}
