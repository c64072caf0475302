//! The chat consumer: one per WebSocket, one group per room.

use rand::Rng;
use switchboard::consumer::LogJoin;
use switchboard::layer::{Envelope, Position, PositionError, PresenceEntry};
use switchboard::prelude::*;

use crate::rooms::check_message;
use crate::state::AppState;

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

/// The room member: joins `chat_<room>` before the handshake answers, so a message sent right
/// after connecting reaches everyone; reads the room's log in the same step, so that it gets
/// either what it missed since `?since=EPOCH:OFFSET` or the room's history, and then the live
/// messages, none twice and none missing. It is tracked in the room's presence under its
/// display name and watches it: after the history it gets `presence.state`, then
/// `presence.diff` as others come and go.
pub struct ChatConsumer {
    room: String,
    group: String,
    display_name: String,
    state: AppState,
}

impl ChatConsumer {
    /// A consumer for one connection.
    pub fn new(state: AppState) -> ChatConsumer {
        ChatConsumer {
            room: String::new(),
            group: String::new(),
            display_name: String::new(),
            state,
        }
    }

    /// Joins the room's group and reads its log: the recovery asked for, else the history.
    /// A log that cannot be read (Redis down) is logged and the member joins without it.
    async fn join(&mut self, ws: &mut Websocket, since: Option<&Position>) -> Result<Joined> {
        if self.state.history_limit == 0 && since.is_none() {
            ws.group_add(&self.group).await?;
            return Ok(Joined::Quietly);
        }
        match ws
            .group_add_with_log(&self.group, since, self.state.history_limit)
            .await
        {
            Ok(LogJoin::Recovered) => Ok(Joined::Recovered),
            Ok(LogJoin::History {
                messages,
                since_lost,
            }) => Ok(Joined::History {
                messages,
                since_lost,
            }),
            Err(err @ Error::Unavailable { .. }) => {
                tracing::warn!(room = %self.room, error = %err, "room log unavailable: joining without history");
                Ok(Joined::History {
                    messages: Vec::new(),
                    since_lost: since.is_some(),
                })
            }
            Err(err) => Err(err),
        }
    }
}

impl ChatConsumer {
    /// Tracks the member in its room's presence and watches it; the state comes after
    /// whatever `connect` sends. A layer that cannot track (Redis down) is logged and the member
    /// joins without presence.
    async fn show_up(&mut self, ws: &mut Websocket) {
        let tracked = match ws
            .presence_track(&self.group, &self.display_name, &())
            .await
        {
            Ok(()) => ws.presence_watch(&self.group).await,
            Err(err) => Err(err),
        };
        if let Err(err) = tracked {
            tracing::warn!(room = %self.room, error = %err, "presence unavailable: joining without it");
        }
    }
}

/// How a member joined its room.
enum Joined {
    /// Without reading the log (`--no-history`, no `since`).
    Quietly,
    /// What it missed since its position is on its way, before live messages.
    Recovered,
    /// The room's newest messages; `since_lost` when a position was asked for in vain.
    History {
        messages: Vec<std::sync::Arc<Envelope>>,
        since_lost: bool,
    },
}

/// A guest name that stays the same for the whole connection.
fn guest_name() -> String {
    format!("guest-{:04}", rand::rng().random_range(0..10_000))
}

/// One member as the protocol shows it: `{"user": "amy", "connections": 2}`.
#[derive(Serialize)]
struct Member<'a> {
    user: &'a str,
    connections: usize,
}

#[derive(Serialize)]
struct Leaver<'a> {
    user: &'a str,
}

fn members(entries: &[PresenceEntry]) -> Vec<Member<'_>> {
    entries
        .iter()
        .map(|entry| Member {
            user: &entry.key,
            connections: entry.metas.len(),
        })
        .collect()
}

/// `presence.state` and `presence.diff` as the chat protocol (v2) writes them.
fn presence_json(event: &PresenceEvent) -> Result<String> {
    let json = match event {
        PresenceEvent::State { entries, .. } => serde_json::to_string(&serde_json::json!({
            "type": "presence.state",
            "members": members(entries),
        })),
        PresenceEvent::Diff { joins, leaves, .. } => {
            let leaves: Vec<Leaver<'_>> = leaves.iter().map(|user| Leaver { user }).collect();
            serde_json::to_string(&serde_json::json!({
                "type": "presence.diff",
                "joins": members(joins),
                "leaves": leaves,
            }))
        }
        _ => {
            return Err(Error::custom(
                "a presence event this chat-app does not know",
            ));
        }
    };
    Ok(json?)
}

/// The `since` of the query string: `None` when absent, an error when malformed.
fn since_of(scope: &Scope) -> Result<Option<Position>, PositionError> {
    scope.query().get("since").map(str::parse).transpose()
}

/// `{"type": "chat.history", "messages": [...]}`, written around the messages' own JSON (each
/// with its position): nothing is decoded to be encoded again.
fn history_event(messages: &[std::sync::Arc<Envelope>]) -> String {
    let size = messages.iter().map(|m| m.json().len() + 40).sum::<usize>() + 40;
    let mut event = String::with_capacity(size);
    event.push_str(r#"{"type":"chat.history","messages":["#);
    for (n, message) in messages.iter().enumerate() {
        if n > 0 {
            event.push(',');
        }
        event.push_str(message.text().as_str());
    }
    event.push_str("]}");
    event
}

impl JsonWebsocketConsumer for ChatConsumer {
    type Incoming = ChatInput;
    type Event = ChatEvent;

    async fn connect(&mut self, ws: &mut Websocket) -> Result<()> {
        self.room = ws.scope().kwarg("room_name")?.to_owned();
        self.group = self.state.group_format.group(&self.room);
        self.display_name = match ws.scope().user.username() {
            Some(name) => name.to_owned(),
            None => guest_name(),
        };
        // A malformed position is answered once the socket is open; the member joins as
        // without one.
        let since = since_of(ws.scope());
        let joined = self
            .join(ws, since.as_ref().ok().and_then(Option::as_ref))
            .await?;
        if self.state.presence {
            self.show_up(ws).await;
        }
        ws.accept().await?;
        if let Err(err) = &since {
            let error = format!("invalid since: {err}");
            ws.send_json(&serde_json::json!({"type": "error", "error": error}))
                .await?;
        }
        match joined {
            Joined::Quietly => Ok(()),
            Joined::Recovered => {
                ws.send_json(&serde_json::json!({"type": "chat.recovered", "recovered": true}))
                    .await
            }
            Joined::History {
                messages,
                since_lost,
            } => {
                if since_lost {
                    ws.send_json(
                        &serde_json::json!({"type": "chat.recovered", "recovered": false}),
                    )
                    .await?;
                } else if messages.is_empty() {
                    return Ok(());
                }
                ws.send_text(history_event(&messages)).await
            }
        }
    }

    async fn receive_json(&mut self, ws: &mut Websocket, input: ChatInput) -> Result<()> {
        if let Err(error) = check_message(&input.message) {
            return ws
                .send_json(&serde_json::json!({"type": "error", "error": error}))
                .await;
        }
        let event = ChatEvent::ChatMessage {
            message: input.message,
            user: self.display_name.clone(),
        };
        // Channels' `self.channel_layer.group_send(...)`, with a typed envelope: the members in
        // this process forward the event without parsing it back. The layer logs it on the way.
        ws.channel_layer()
            .group_send(&self.group, Envelope::typed(event)?)
            .await
    }

    /// Forwards the message as it was encoded, with its position in the room's log.
    async fn event(&mut self, ws: &mut Websocket, event: Event<ChatEvent>) -> Result<()> {
        ws.forward(&event).await
    }

    /// Tells the member who is online, encoded once per event for every member of the room in
    /// this process.
    async fn presence(&mut self, ws: &mut Websocket, event: Event<PresenceEvent>) -> Result<()> {
        ws.forward_presence(&event, presence_json).await
    }

    /// Tells the page that messages from other processes may be missing, so it can say so (and
    /// reconnect with its last position to recover them).
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
    fn since_is_optional_and_checked() {
        let scope = |query: &str| Scope::new(switchboard::scope::Protocol::Websocket, query);
        assert_eq!(since_of(&scope("/ws/chat/a/")), Ok(None));
        assert_eq!(
            since_of(&scope("/ws/chat/a/?since=ab12:7"))
                .unwrap()
                .unwrap()
                .offset,
            7
        );
        assert!(since_of(&scope("/ws/chat/a/?since=nope")).is_err());
    }

    #[test]
    fn history_is_written_around_the_messages_json() {
        let message = Envelope::from_json(r#"{"type":"chat.message","message":"hi","user":"a"}"#);
        let event: serde_json::Value =
            serde_json::from_str(&history_event(&[message.clone(), message])).unwrap();
        assert_eq!(event["type"], "chat.history");
        assert_eq!(event["messages"][1]["message"], "hi");
        assert_eq!(
            history_event(&[]),
            r#"{"type":"chat.history","messages":[]}"#
        );
    }

    #[test]
    fn presence_encodes_as_the_protocol_says() {
        let entry = |key: &str, tabs: usize| PresenceEntry {
            key: key.into(),
            metas: vec![serde_json::Value::Null; tabs],
        };
        let state: serde_json::Value = serde_json::from_str(
            &presence_json(&PresenceEvent::State {
                group: "chat_a".into(),
                entries: vec![entry("amy", 2), entry("bob", 1)],
            })
            .unwrap(),
        )
        .unwrap();
        assert_eq!(
            state,
            serde_json::json!({"type": "presence.state", "members": [
                {"user": "amy", "connections": 2}, {"user": "bob", "connections": 1}]})
        );
        let diff: serde_json::Value = serde_json::from_str(
            &presence_json(&PresenceEvent::Diff {
                group: "chat_a".into(),
                joins: vec![entry("cat", 1)],
                leaves: vec!["bob".into()],
            })
            .unwrap(),
        )
        .unwrap();
        assert_eq!(
            diff,
            serde_json::json!({"type": "presence.diff",
                "joins": [{"user": "cat", "connections": 1}], "leaves": [{"user": "bob"}]})
        );
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
