//! A greeting on connect, `/name NEW` to pick a username, and "关闭" to be disconnected.
//!
//! From seed `002_026aabdeacef7555.txt` (the first `ChatConsumer`), combined with seed
//! `001_27e33c67744dafa1.txt`, where the client can ask the server to hang up:
//!
//! ```python
//! # seed 002
//! class ChatConsumer(WebsocketConsumer):
//!     def connect(self):
//!         self.user = self.scope['user']
//!         self.accept()
//!         self.send(text_data="[Welcome %s!]" % self.user.username)
//!
//!     def receive(self, *, text_data):
//!         if text_data.startswith("/name"):
//!             username = text_data[5:].strip()
//!             self.send(text_data="[set your username to %s]" % username)
//!         else:
//!             self.send(text_data=username + ": " + text_data)
//!
//! # seed 001
//!     def websocket_receive(self, message):
//!         if message['text'] == "关闭":
//!             self.close()
//!             raise StopConsumer
//! ```
//!
//! Seed 002's `username` is a local of the `/name` branch, so its `else` branch raises
//! `NameError`; here the name lives on the consumer and later messages use it. The name starts as
//! the authenticated user's (`scope.user`, set by authentication middleware) or `anonymous`.
//!
//! Try it: `cargo run -p examples --example welcome`, then `websocat
//! ws://127.0.0.1:8000/ws/welcome/` and type `hello`, `/name 小明`, `hello`, then `关闭`.

use switchboard::prelude::*;

/// Paths worth trying, printed at start-up.
pub const PATHS: &[&str] = &["/ws/welcome/"];

/// What a client sends to be disconnected (seed 001: "close").
pub const CLOSE_COMMAND: &str = "关闭";

/// A username's greeter and keeper.
#[derive(Debug, Default)]
pub struct WelcomeConsumer {
    username: String,
}

impl WebsocketConsumer for WelcomeConsumer {
    type Event = NoEvent;

    async fn connect(&mut self, ws: &mut Websocket) -> Result<()> {
        self.username = ws.scope().user.username().unwrap_or("anonymous").to_owned();
        ws.accept().await?;
        ws.send_text(format!("[Welcome {}!]", self.username)).await
    }

    async fn receive(&mut self, ws: &mut Websocket, message: Message) -> Result<()> {
        let Some(text) = crate::text_or_close(ws, message).await? else {
            return Ok(());
        };
        if text == CLOSE_COMMAND {
            // The consumer stops once this handler returns; `disconnect` then runs with 1000.
            return ws.close(CloseCode::Normal, "closed on request").await;
        }
        if let Some(name) = text.strip_prefix("/name") {
            let name = name.trim();
            if name.is_empty() {
                return ws.send_text("[usage: /name NEW_NAME]").await;
            }
            self.username = name.to_owned();
            return ws
                .send_text(format!("[set your username to {}]", self.username))
                .await;
        }
        ws.send_text(format!("{}: {text}", self.username)).await
    }
}

/// [`WelcomeConsumer`] on `/ws/welcome/`.
pub fn application() -> impl Application {
    ProtocolTypeRouter::new()
        .websocket(URLRouter::new().route("/ws/welcome/", WelcomeConsumer::as_app()))
}
