//! A chat where everyone connected hears everyone, the sender included.
//!
//! From seed `000_b443d9ff7a4198e0.txt`, section "简单的聊天室" (the simple chat room), which kept
//! every connection in a module-level list:
//!
//! ```python
//! clients = []
//!
//! class ChatConsumer(WebsocketConsumer):
//!     def websocket_connect(self, message):
//!         self.accept()
//!         clients.append(self)
//!
//!     def websocket_receive(self, message):
//!         for client in clients:
//!             client.send(message['text'])
//!         if message['text'] == 'close':
//!             self.close()
//!             raise StopConsumer()
//! ```
//!
//! A list of sockets only works inside one process and is never cleaned up (the seed never
//! removes a client). Here every consumer joins one group, `everyone`: the channel layer does the
//! fan-out, memberships end with the connections, and the same code scales to several processes
//! once the layer is Redis.
//!
//! Try it: `cargo run -p examples --example everyone_chat`, then `websocat
//! ws://127.0.0.1:8000/` in two terminals; each line typed appears in both. Typing `close`
//! broadcasts it and then closes your own connection, as in the seed.

use switchboard::prelude::*;

/// Paths worth trying, printed at start-up.
pub const PATHS: &[&str] = &["/"];

/// The one group every connection belongs to.
pub const GROUP: &str = "everyone";

/// What travels through the `everyone` group.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ChatEvent {
    /// Someone said `text`.
    #[serde(rename = "chat.message")]
    ChatMessage {
        /// The text frame as it arrived.
        text: String,
    },
}

/// One member of the all-hands chat.
#[derive(Debug, Default)]
pub struct EveryoneChatConsumer;

impl WebsocketConsumer for EveryoneChatConsumer {
    type Event = ChatEvent;

    // Joined before connect, so no message sent right after the handshake can be missed.
    fn groups(&self) -> Vec<String> {
        vec![GROUP.to_owned()]
    }

    async fn receive(&mut self, ws: &mut Websocket, message: Message) -> Result<()> {
        let Some(text) = crate::text_or_close(ws, message).await? else {
            return Ok(());
        };
        if text == "close" {
            // The sender's copy would arrive through its channel after it stopped listening:
            // leave the group first and hand the sender its copy directly, ahead of the close.
            ws.group_discard(GROUP).await?;
            ws.group_send(GROUP, &ChatEvent::ChatMessage { text: text.clone() })
                .await?;
            ws.send_text(text).await?;
            return ws.close(CloseCode::Normal, "bye").await;
        }
        ws.group_send(GROUP, &ChatEvent::ChatMessage { text }).await
    }

    async fn event(&mut self, ws: &mut Websocket, event: Event<ChatEvent>) -> Result<()> {
        // Clients get the bare text, as in the seed, not the JSON the group carried.
        let ChatEvent::ChatMessage { text } = &*event;
        ws.send_text(text.as_str()).await
    }
}

/// [`EveryoneChatConsumer`] on every path, as the seed's `re_path(r"", ...)`.
pub fn application() -> impl Application {
    ProtocolTypeRouter::new().websocket(
        URLRouter::new()
            .route("/", EveryoneChatConsumer::as_app())
            .route("/{rest:path}", EveryoneChatConsumer::as_app()),
    )
}
