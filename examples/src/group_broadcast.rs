//! A fixed group, `group_1`: each message is answered "你好" privately and broadcast to all.
//!
//! From seed `000_b443d9ff7a4198e0.txt`, section "channel layer", which replaced the list of
//! clients with a channel-layer group:
//!
//! ```python
//! class ChatConsumer(WebsocketConsumer):
//!     def websocket_connect(self, message):
//!         self.accept()
//!         async_to_sync(self.channel_layer.group_add)("group_1", self.channel_name)
//!
//!     def websocket_receive(self, message):
//!         self.send("你好")  # to this client only
//!         async_to_sync(self.channel_layer.group_send)(
//!             "group_1", {"type": "all_send", "message": message})
//!
//!     def all_send(self, event):
//!         self.send(event['message']['text'])
//!
//!     def websocket_disconnect(self, message):
//!         async_to_sync(self.channel_layer.group_discard)("group_1", self.channel_name)
//! ```
//!
//! Channels picks the handler from the event's `"type"` (`all_send` → `all_send()`); here the
//! `"type"` picks a variant of [`GroupEvent`] and [`event`](WebsocketConsumer::event) matches
//! on it. Leaving the group on disconnect is automatic.
//!
//! Try it: `cargo run -p examples --example group_broadcast`, then `websocat
//! ws://127.0.0.1:8000/` in two terminals. The one that types gets "你好" and its line; the
//! other gets only the line.

use switchboard::prelude::*;

/// Paths worth trying, printed at start-up.
pub const PATHS: &[&str] = &["/"];

/// The group every connection joins, named as in the seed.
pub const GROUP: &str = "group_1";

/// What travels through `group_1`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum GroupEvent {
    /// The seed's `{"type": "all_send", "message": ...}`.
    #[serde(rename = "all_send")]
    AllSend {
        /// The text a client sent.
        message: String,
    },
}

/// One member of `group_1`.
#[derive(Debug, Default)]
pub struct GroupBroadcastConsumer;

impl WebsocketConsumer for GroupBroadcastConsumer {
    type Event = GroupEvent;

    async fn connect(&mut self, ws: &mut Websocket) -> Result<()> {
        // Joining before accepting (the seed does it after) means no broadcast sent right
        // after the client's handshake completes can slip past it.
        ws.group_add(GROUP).await?;
        ws.accept().await
    }

    async fn receive(&mut self, ws: &mut Websocket, message: Message) -> Result<()> {
        let Some(message) = crate::text_or_close(ws, message).await? else {
            return Ok(());
        };
        ws.send_text("你好").await?;
        ws.group_send(GROUP, &GroupEvent::AllSend { message }).await
    }

    async fn event(&mut self, ws: &mut Websocket, event: Event<GroupEvent>) -> Result<()> {
        let GroupEvent::AllSend { message } = &*event;
        ws.send_text(message.as_str()).await
    }
}

/// [`GroupBroadcastConsumer`] on every path, as the seed's `re_path(r"", ...)`.
pub fn application() -> impl Application {
    ProtocolTypeRouter::new().websocket(
        URLRouter::new()
            .route("/", GroupBroadcastConsumer::as_app())
            .route("/{rest:path}", GroupBroadcastConsumer::as_app()),
    )
}
