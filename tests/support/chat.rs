//! The chat-app for the tests: a chat-app process (its server on its channel layer, as
//! `chat-app` runs it), and its protocol as a client speaks it.

use std::sync::Arc;

use chat_app::rooms;
use chat_app::state::AppState;
use serde_json::{Value, json};
use switchboard::layer::{
    InMemoryChannelLayer, LayerConfig, RedisChannelLayer, RedisConfig, SharedLayer,
};
use switchboard::server::ServerConfig;

use super::{Client, TestServer, recv_json, send_json};

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

/// One chat-app "process", in-process.
pub struct ChatNode {
    pub server: TestServer,
    pub layer: SharedLayer,
}

impl std::ops::Deref for ChatNode {
    type Target = TestServer;

    fn deref(&self) -> &TestServer {
        &self.server
    }
}

/// The channel layer settings `chat-app` runs with by default (room logs on).
pub fn chat_layer_config() -> LayerConfig {
    rooms::layer_config(rooms::DEFAULT_HISTORY_TTL, rooms::DEFAULT_HISTORY_BUDGET)
}

/// The Redis layer `chat-app --layer` runs with, on `urls` under `prefix`.
pub async fn redis_layer(urls: &[String], prefix: &str) -> SharedLayer {
    let config = RedisConfig::new(urls.to_vec())
        .prefix(prefix)
        .layer(chat_layer_config());
    let layer = RedisChannelLayer::connect(config)
        .await
        .expect("connect to Redis");
    Arc::new(layer)
}

impl ChatNode {
    /// Serves the chat-app on `layer`.
    pub async fn start(layer: SharedLayer) -> ChatNode {
        let server = TestServer::start_with_layer(
            chat_app::routing::application(AppState::default()),
            ServerConfig::default(),
            Arc::clone(&layer),
        )
        .await;
        ChatNode { server, layer }
    }

    /// A chat-app on its own in-memory layer, as `chat-app` runs by default.
    pub async fn in_memory() -> ChatNode {
        ChatNode::start(Arc::new(InMemoryChannelLayer::with_config(
            chat_layer_config(),
        )))
        .await
    }

    /// A chat-app on Redis at `urls` under `prefix`, as `chat-app --layer` runs it.
    pub async fn redis(urls: &[String], prefix: &str) -> ChatNode {
        ChatNode::start(redis_layer(urls, prefix).await).await
    }

    /// Shuts the server down.
    pub async fn stop(self) {
        self.server.shutdown().await;
    }
}
