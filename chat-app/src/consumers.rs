//! The chat consumer: one per WebSocket, one group per room.

use std::sync::atomic::{AtomicU64, Ordering};

use rand::Rng;
use switchboard::layer::Envelope;
use switchboard::prelude::*;

use crate::group_format::GroupFormat;
use crate::history::{HISTORY_CHANNEL, History, HistoryMessage};

/// Longest accepted message, in characters.
pub const MAX_MESSAGE_CHARS: usize = 4096;

/// What a client sends: `{"message": "<text>"}`.
///
/// Decoded by hand (`decode.rs`): only a JSON object is accepted, so an array such as
/// `["hi"]`, which serde's derive would take positionally, is refused like any other shape.
#[derive(Debug)]
pub struct ChatInput {
    /// The text to say to the room.
    pub message: String,
}

/// What travels between the members of a room through the channel layer. Its JSON encoding is
/// also exactly what clients receive, so consumers forward it without re-encoding. Decoded by
/// hand (`decode.rs`), once per message per process, without the buffering of serde's
/// internally tagged enums.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type")]
pub enum ChatEvent {
    /// Someone said something.
    #[serde(rename = "chat.message")]
    ChatMessage {
        /// The text, as sent.
        message: String,
        /// Who said it.
        user: String,
    },
}

/// The room member: joins the room's group (`chat_<room>` by default) before the handshake
/// answers, so a message sent right after connecting reaches everyone, and gets the room's
/// history before live messages.
pub struct ChatConsumer {
    room: String,
    group: String,
    group_format: GroupFormat,
    display_name: String,
    history: History,
    /// Messages said so far, to make each history entry's id unique.
    said: u64,
}

impl ChatConsumer {
    /// A consumer reading history from `history`, joining the group `group_format` names.
    pub fn new(history: History, group_format: GroupFormat) -> ChatConsumer {
        ChatConsumer {
            room: String::new(),
            group: String::new(),
            group_format,
            display_name: String::new(),
            history,
            said: 0,
        }
    }
}

impl ChatConsumer {
    /// Adds a message to the room's history. In memory it is pushed right here: a push under a
    /// lock is less work than handing it to a worker (an encode, a queue, the worker's wake-up
    /// and the copies into the store). For Redis it goes to the history worker, so the chat
    /// never waits for a round trip; best effort: a full or absent worker must not cost the
    /// chat.
    async fn remember(&mut self, ws: &mut Websocket, message: String) {
        let layer = match &self.history {
            History::Off => return,
            History::Memory(rooms) => {
                rooms.push(&self.room, message, self.display_name.clone());
                return;
            }
            History::Redis { .. } => ws.channel_layer(),
        };
        self.said += 1;
        let remember = HistoryMessage {
            room: self.room.clone(),
            message,
            user: self.display_name.clone(),
            at: now_micros(),
            id: format!("{}#{}", ws.channel_name(), self.said),
        };
        // Plain JSON, not typed: the worker reads only the room and time and stores the JSON.
        let sent = async {
            layer
                .send(HISTORY_CHANNEL, Envelope::encode(&remember)?)
                .await
        };
        if let Err(err) = sent.await {
            history_not_written(&self.room, &err);
        }
    }
}

/// A guest name that stays the same for the whole connection.
fn guest_name() -> String {
    format!("guest-{:04}", rand::rng().random_range(0..10_000))
}

/// Seconds between two "not added to the history" warnings of this process: under overload
/// every message fails alike, and a line per message would cost more than the message.
const HISTORY_WARNING_INTERVAL: u64 = 10;

/// Logs a message left out of the history, at most once per [`HISTORY_WARNING_INTERVAL`], with
/// how many were left out since the last line.
fn history_not_written(room: &str, err: &Error) {
    static LAST_WARNING: AtomicU64 = AtomicU64::new(0);
    static SKIPPED: AtomicU64 = AtomicU64::new(0);
    let now = now_micros() / 1_000_000;
    let last = LAST_WARNING.load(Ordering::Relaxed);
    if now >= last + HISTORY_WARNING_INTERVAL
        && LAST_WARNING
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        let also = SKIPPED.swap(0, Ordering::Relaxed);
        tracing::warn!(%room, error = %err, also_not_written = also, "message not added to the history");
    } else {
        SKIPPED.fetch_add(1, Ordering::Relaxed);
    }
}

/// Microseconds since the Unix epoch (0 for a clock set before 1970).
fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Why a decoded message is refused, if it is.
fn check_message(message: &str) -> Result<(), String> {
    if message.trim().is_empty() {
        return Err("empty message".to_owned());
    }
    if message.chars().count() > MAX_MESSAGE_CHARS {
        return Err(format!(
            "message too long: at most {MAX_MESSAGE_CHARS} characters"
        ));
    }
    Ok(())
}

impl JsonWebsocketConsumer for ChatConsumer {
    type Incoming = ChatInput;
    type Event = ChatEvent;

    async fn connect(&mut self, ws: &mut Websocket) -> Result<()> {
        self.room = ws.scope().kwarg("room_name")?.to_owned();
        self.group = self.group_format.group(&self.room);
        self.display_name = match ws.scope().user.username() {
            Some(name) => name.to_owned(),
            None => guest_name(),
        };
        // Joined before the history is read: a message in between may show twice, but none
        // goes missing; live messages wait in this consumer's queue until the history is out.
        ws.group_add(&self.group).await?;
        let recent = self.history.recent(&self.room).await.unwrap_or_else(|err| {
            tracing::warn!(room = %self.room, error = %err, "history unavailable: joining without it");
            Vec::new()
        });
        ws.accept().await?;
        if recent.is_empty() {
            return Ok(());
        }
        let messages: Vec<ChatEvent> = recent
            .into_iter()
            .map(|entry| ChatEvent::ChatMessage {
                message: entry.message,
                user: entry.user,
            })
            .collect();
        ws.send_json(&serde_json::json!({"type": "chat.history", "messages": messages}))
            .await
    }

    async fn receive_json(&mut self, ws: &mut Websocket, input: ChatInput) -> Result<()> {
        if let Err(error) = check_message(&input.message) {
            return ws
                .send_json(&serde_json::json!({"type": "error", "error": error}))
                .await;
        }
        let remembered = self.history.is_on().then(|| input.message.clone());
        let event = ChatEvent::ChatMessage {
            message: input.message,
            user: self.display_name.clone(),
        };
        // Channels' `self.channel_layer.group_send(...)`, with a typed envelope: the members in
        // this process forward the event without parsing it back.
        ws.channel_layer()
            .group_send(&self.group, Envelope::typed(event)?)
            .await?;
        if let Some(message) = remembered {
            self.remember(ws, message).await;
        }
        Ok(())
    }

    async fn event(&mut self, ws: &mut Websocket, event: Event<ChatEvent>) -> Result<()> {
        ws.forward(&event).await
    }

    /// Tells the page that messages from other processes may be missing, so it can say so.
    async fn layer_status(&mut self, ws: &mut Websocket, status: LayerStatus) -> Result<()> {
        let (kind, notice) = match status {
            LayerStatus::Disconnected => (
                "layer.disconnected",
                "Lost contact with the other chat servers: you may miss messages until it is back.",
            ),
            LayerStatus::Reconnected => (
                "layer.reconnected",
                "Back in contact with the other chat servers: messages sent meanwhile may be missing.",
            ),
            LayerStatus::Connected => return Ok(()),
        };
        ws.send_json(&serde_json::json!({"type": kind, "notice": notice}))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_checked() {
        assert!(check_message("hi").is_ok());
        assert!(check_message("   ").is_err());
        assert!(check_message(&"x".repeat(MAX_MESSAGE_CHARS)).is_ok());
        assert!(check_message(&"é".repeat(MAX_MESSAGE_CHARS + 1)).is_err());
    }

    #[test]
    fn events_encode_as_the_protocol_says() {
        let event = ChatEvent::ChatMessage {
            message: "hi".into(),
            user: "ann".into(),
        };
        assert_eq!(
            serde_json::to_value(&event).unwrap(),
            serde_json::json!({"type": "chat.message", "message": "hi", "user": "ann"})
        );
    }
}
