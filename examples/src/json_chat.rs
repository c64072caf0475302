//! JSON room chat on `/ws/json/{room}/`: `{"message": ...}` in, `chat.message` events out.
//!
//! From seed `002_026aabdeacef7555.txt`, section "通道层 channel layer" (the Channels tutorial's
//! room chat):
//!
//! ```python
//! class ChatConsumer(WebsocketConsumer):
//!     def connect(self):
//!         self.room_name = self.scope["url_route"]["kwargs"]["room_name"]
//!         self.room_group_name = f"chat_{self.room_name}"
//!         async_to_sync(self.channel_layer.group_add)(self.room_group_name, self.channel_name)
//!         self.accept()
//!
//!     def receive(self, text_data):
//!         message = json.loads(text_data)["message"]
//!         async_to_sync(self.channel_layer.group_send)(
//!             self.room_group_name, {"type": "chat.message", "message": message})
//!
//!     def chat_message(self, event):
//!         self.send(text_data=json.dumps({"message": event["message"]}))
//! ```
//!
//! In the seed, a frame that is not JSON, or JSON without `"message"`, raises inside `receive`
//! and kills the connection. Here incoming frames decode into [`Incoming`]; one that does not
//! (not JSON, the wrong shape, a binary frame) reaches the default
//! [`receive_invalid`](JsonWebsocketConsumer::receive_invalid), which answers
//! `{"type": "error", "error": "..."}` to the sender only and keeps the connection open.
//! Members receive the group event as it was encoded, `{"type":"chat.message","message":"..."}`,
//! forwarded without being decoded and encoded again per member.
//!
//! Try it: `cargo run -p examples --example json_chat`, then `websocat
//! ws://127.0.0.1:8000/ws/json/lobby/` in two terminals and type `{"message": "hi"}` (and, to
//! see the error event, `hi`).

use switchboard::prelude::*;

/// Paths worth trying, printed at start-up.
pub const PATHS: &[&str] = &["/ws/json/lobby/"];

/// What a client sends.
#[derive(Debug, Deserialize)]
pub struct Incoming {
    /// The chat line.
    pub message: String,
}

/// What travels through a room's group, and on to its members as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum RoomEvent {
    /// `{"type": "chat.message", "message": "..."}`.
    #[serde(rename = "chat.message")]
    ChatMessage {
        /// The chat line.
        message: String,
    },
}

/// One member of one JSON room.
#[derive(Debug, Default)]
pub struct JsonChatConsumer {
    group: String,
}

impl JsonWebsocketConsumer for JsonChatConsumer {
    type Incoming = Incoming;
    type Event = RoomEvent;

    async fn connect(&mut self, ws: &mut Websocket) -> Result<()> {
        self.group = format!("chat_{}", ws.scope().kwarg("room")?);
        ws.group_add(&self.group).await?;
        ws.accept().await
    }

    async fn receive_json(&mut self, ws: &mut Websocket, content: Incoming) -> Result<()> {
        let event = RoomEvent::ChatMessage {
            message: content.message,
        };
        ws.group_send(&self.group, &event).await
    }

    async fn event(&mut self, ws: &mut Websocket, event: Event<RoomEvent>) -> Result<()> {
        ws.forward(&event).await
    }
}

/// [`JsonChatConsumer`] on `/ws/json/{room}/`; invalid room names are refused with 404.
pub fn application() -> impl Application {
    ProtocolTypeRouter::new().websocket(
        URLRouter::new()
            .converter("room", crate::is_room_name)
            .route("/ws/json/{room:room}/", JsonChatConsumer::as_app()),
    )
}
