//! The chat-app for the tests: a chat-app process (its server and its history worker on one
//! layer), and its protocol as a client speaks it.

use std::sync::Arc;

use chat_app::history::History;
use chat_app::state::AppState;
use serde_json::{Value, json};
use switchboard::layer::{RedisChannelLayer, RedisConfig, SharedLayer};
use switchboard::server::ServerConfig;
use switchboard::worker::RunningWorkers;

use super::{Client, TestServer, recv_json, send_json, within};

/// The WebSocket path of a room.
pub fn room(name: &str) -> String {
    format!("/ws/chat/{name}/")
}

/// Sends a chat message.
pub async fn say(client: &mut Client, message: &str) {
    send_json(client, &json!({ "message": message })).await;
}

/// A `chat.message` as a member hears it.
#[derive(Debug, PartialEq)]
pub struct Heard {
    pub message: String,
    pub user: String,
}

/// The next chat message, skipping informational events (history, presence, layer notices);
/// an error event fails the test.
pub async fn heard(client: &mut Client) -> Heard {
    loop {
        let event = recv_json(client).await;
        if event["type"] == "chat.message" {
            let text = |field: &str| match &event[field] {
                Value::String(text) => text.clone(),
                other => panic!("a chat.message whose {field} is {other}: {event}"),
            };
            return Heard {
                message: text("message"),
                user: text("user"),
            };
        }
        assert_ne!(event["type"], "error", "unexpected error event: {event}");
    }
}

/// The next event of type `kind`, skipping others.
pub async fn next_of(client: &mut Client, kind: &str) -> Value {
    loop {
        let event = recv_json(client).await;
        if event["type"] == kind {
            return event;
        }
    }
}

/// One chat-app "process", in-process: the server and the workers `chat-app` runs by default.
pub struct ChatNode {
    pub server: TestServer,
    pub history: History,
    workers: RunningWorkers,
}

impl std::ops::Deref for ChatNode {
    type Target = TestServer;

    fn deref(&self) -> &TestServer {
        &self.server
    }
}

impl ChatNode {
    /// Serves the chat-app on `layer`, with its history in `history`.
    pub async fn start(layer: SharedLayer, history: History) -> ChatNode {
        let workers = chat_app::history::workers(history.clone())
            .spawn(Arc::clone(&layer), None)
            .await
            .expect("workers");
        let state = AppState {
            history: history.clone(),
        };
        let server = TestServer::start_with_layer(
            chat_app::routing::application(state),
            ServerConfig::default(),
            layer,
        )
        .await;
        ChatNode {
            server,
            history,
            workers,
        }
    }

    /// A chat-app on Redis at `urls` under `prefix`, history on the first server, as
    /// `chat-app --layer` runs it.
    pub async fn redis(urls: &[String], prefix: &str) -> ChatNode {
        let config = RedisConfig::new(urls.to_vec())
            .prefix(prefix)
            .layer(chat_app::history::layer_config());
        let layer = RedisChannelLayer::connect(config)
            .await
            .expect("connect to Redis");
        let history = History::redis(&urls[0], prefix)
            .await
            .expect("history store");
        ChatNode::start(Arc::new(layer), history).await
    }

    /// Shuts the server down, then the workers.
    pub async fn stop(self) {
        self.server.shutdown().await;
        within("the workers to stop", self.workers.shutdown()).await;
    }
}
