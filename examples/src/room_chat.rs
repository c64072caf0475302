//! Chat rooms chosen by path, `/room/{group_id}`: plain text, heard only inside the room.
//!
//! From seed `000_b443d9ff7a4198e0.txt`, section "聊天室" (chat room); seed
//! `001_27e33c67744dafa1.txt` builds the same consumer on `ws/(?P<group>\w+)/$`.
//!
//! ```python
//! websocket_urlPatterns = [
//!     re_path(r"room/(?P<group_id>\w+)", consumers.ChatConsumer.as_asgi()),
//! ]
//!
//! class ChatConsumer(WebsocketConsumer):
//!     def websocket_connect(self, message):
//!         self.accept()
//!         group_id = self.scope["url_route"]["kwargs"].get("group_id")
//!         async_to_sync(self.channel_layer.group_add)(group_id, self.channel_name)
//!
//!     def websocket_receive(self, message):
//!         group_id = self.scope["url_route"]["kwargs"].get("group_id")
//!         async_to_sync(self.channel_layer.group_send)(
//!             group_id, {"type": "all_send", "message": message})
//!
//!     def all_send(self, event):
//!         self.send(event['message']['text'])
//! ```
//!
//! `\w+` becomes the `room` converter ([`is_room_name`](crate::is_room_name)): a path whose room
//! is not a valid name (`/room/a b`, `/room/`, 65 characters) is refused with 404 before any
//! consumer runs. Both `/room/111` (seed 000) and `/room/111/` (seed 001's page) are routed.
//!
//! Try it: `cargo run -p examples --example room_chat`, then `websocat
//! ws://127.0.0.1:8000/room/111` in two terminals and `websocat ws://127.0.0.1:8000/room/222` in
//! a third; room 111's lines never reach room 222.

use switchboard::prelude::*;

/// Paths worth trying, printed at start-up.
pub const PATHS: &[&str] = &["/room/111", "/room/222"];

/// What travels through a room's group.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum RoomEvent {
    /// The seed's `{"type": "all_send", "message": ...}`.
    #[serde(rename = "all_send")]
    AllSend {
        /// The text a member sent.
        message: String,
    },
}

/// The channel-layer group of `room`. A prefix keeps room groups apart from any other group
/// the process may use.
pub fn group(room: &str) -> String {
    format!("room_{room}")
}

/// One member of one room.
#[derive(Debug, Default)]
pub struct RoomChatConsumer {
    /// The room's group, read once from the route instead of on every message as the seed does.
    group: String,
}

impl WebsocketConsumer for RoomChatConsumer {
    type Event = RoomEvent;

    async fn connect(&mut self, ws: &mut Websocket) -> Result<()> {
        self.group = group(ws.scope().kwarg("group_id")?);
        ws.group_add(&self.group).await?;
        ws.accept().await
    }

    async fn receive(&mut self, ws: &mut Websocket, message: Message) -> Result<()> {
        let Some(message) = crate::text_or_close(ws, message).await? else {
            return Ok(());
        };
        ws.group_send(&self.group, &RoomEvent::AllSend { message })
            .await
    }

    async fn event(&mut self, ws: &mut Websocket, event: Event<RoomEvent>) -> Result<()> {
        let RoomEvent::AllSend { message } = &*event;
        ws.send_text(message.as_str()).await
    }
}

/// [`RoomChatConsumer`] on `/room/{group_id}`, with or without a trailing slash.
pub fn application() -> impl Application {
    ProtocolTypeRouter::new().websocket(
        URLRouter::new()
            .converter("room", crate::is_room_name)
            .route("/room/{group_id:room}", RoomChatConsumer::as_app())
            .route("/room/{group_id:room}/", RoomChatConsumer::as_app()),
    )
}
