//! Answers "收到了" ("got it") to every frame, at any path.
//!
//! From seed `000_b443d9ff7a4198e0.txt`, its first branch: the smallest consumer, routed with
//! `re_path(r"", ...)` so that every path reaches it.
//!
//! ```python
//! class ChatConsumer(WebsocketConsumer):
//!     def websocket_connect(self, message):
//!         self.accept()
//!
//!     def websocket_receive(self, message):
//!         self.send(text_data='收到了')
//! ```
//!
//! Try it: `cargo run -p examples --example echo`, then `websocat ws://127.0.0.1:8000/` (any
//! path works) and type a line.

use switchboard::prelude::*;

/// Paths worth trying, printed at start-up.
pub const PATHS: &[&str] = &["/", "/anything/at/all"];

/// Acknowledges each frame with "收到了".
///
/// `websocket_receive` in the seed saw every data frame, text or binary, so this answers both.
/// Accepting on connect is the trait's default.
#[derive(Debug, Default)]
pub struct EchoConsumer;

impl WebsocketConsumer for EchoConsumer {
    type Event = NoEvent;

    async fn receive(&mut self, ws: &mut Websocket, _message: Message) -> Result<()> {
        ws.send_text("收到了").await
    }
}

/// [`EchoConsumer`] on every path: the seed's empty `re_path` matched everything.
pub fn application() -> impl Application {
    ProtocolTypeRouter::new().websocket(
        URLRouter::new()
            .route("/", EchoConsumer::as_app())
            .route("/{rest:path}", EchoConsumer::as_app()),
    )
}
