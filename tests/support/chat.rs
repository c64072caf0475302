//! The chat-app for the tests: a chat-app process (its server on its channel layer, as
//! `chat-app` runs it), and its protocol as a client speaks it.

use std::sync::Arc;

use chat_app::rooms;
use chat_app::state::AppState;
use serde_json::{Value, json};
use switchboard::layer::{
    ChannelsRedisConfig, InMemoryChannelLayer, LayerConfig, NatsChannelLayer, NatsConfig,
    RedisChannelLayer, RedisConfig, SharedLayer,
};
use switchboard::server::ServerConfig;

use super::{Client, QUIET, TestServer, recv_json, send_json};

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

/// Whether an event is the room's presence (`presence.state`, `presence.diff`), which comes and
/// goes with other members whatever a test is about.
pub fn is_presence(event: &Value) -> bool {
    event["type"]
        .as_str()
        .is_some_and(|kind| kind.starts_with("presence."))
}

/// The next event that is not presence.
pub async fn recv_event(client: &mut Client) -> Value {
    loop {
        let event = recv_json(client).await;
        if !is_presence(&event) {
            return event;
        }
    }
}

/// Asserts that no event but presence arrives within `wait`.
pub async fn assert_no_event_for(client: &mut Client, wait: std::time::Duration) {
    let next = tokio::time::timeout(wait, recv_event(client)).await;
    if let Ok(event) = next {
        panic!("expected no event, got {event}");
    }
}

/// Asserts that no event but presence arrives within [`QUIET`].
pub async fn assert_no_event(client: &mut Client) {
    assert_no_event_for(client, QUIET).await;
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

    /// A chat-app on its own in-memory layer (returned too, to look into) with the server
    /// limits and history flags `chat-app` takes from `flags` (`--max-connections 3`,
    /// `--forwarded-allow-ips 127.0.0.1`, ...).
    pub async fn with_flags(flags: &[&str]) -> (ChatNode, InMemoryChannelLayer) {
        use clap::Parser;
        let args = std::iter::once("chat-app").chain(flags.iter().copied());
        let cli = chat_app::cli::Cli::parse_from(args);
        let config = cli.limits.server_config().expect("valid limit flags");
        let memory = InMemoryChannelLayer::with_config(rooms::layer_config(
            cli.history_ttl(),
            cli.history_budget(),
        ));
        let layer: SharedLayer = Arc::new(memory.clone());
        let server = TestServer::start_with_layer(
            chat_app::routing::application(AppState::default()),
            config,
            Arc::clone(&layer),
        )
        .await;
        (ChatNode { server, layer }, memory)
    }

    /// A chat-app on Redis at `urls` under `prefix`, as `chat-app --layer` runs it.
    pub async fn redis(urls: &[String], prefix: &str) -> ChatNode {
        ChatNode::start(redis_layer(urls, prefix).await).await
    }

    /// A chat-app on the Redis Cluster reached through `nodes`, under `prefix`, history in
    /// the cluster, as `chat-app --layer redis+cluster://…` runs it.
    pub async fn cluster(nodes: &[String], prefix: &str) -> ChatNode {
        let config = RedisConfig::cluster(nodes.to_vec())
            .prefix(prefix)
            .layer(chat_layer_config());
        let layer = RedisChannelLayer::connect(config)
            .await
            .expect("connect to the Redis Cluster");
        ChatNode::start(Arc::new(layer)).await
    }

    /// A chat-app on NATS at `url` under `prefix`, as `chat-app --layer nats://…` runs it:
    /// without room history.
    pub async fn nats(url: &str, prefix: &str) -> ChatNode {
        let config = NatsConfig::new(url).prefix(prefix);
        let layer = NatsChannelLayer::connect(config)
            .await
            .expect("connect to NATS");
        let layer: SharedLayer = Arc::new(layer);
        let server = TestServer::start_with_layer(
            chat_app::routing::application(AppState {
                history_limit: 0,
                ..AppState::default()
            }),
            ServerConfig::default(),
            Arc::clone(&layer),
        )
        .await;
        ChatNode { server, layer }
    }

    /// A chat-app sharing groups with Django processes over channels_redis, as `chat-app
    /// --layer channels-redis://…` runs it: without room history.
    pub async fn channels_redis(config: ChannelsRedisConfig) -> ChatNode {
        let layer = config
            .layer(chat_layer_config())
            .connect()
            .await
            .expect("connect the channels_redis layer");
        let server = TestServer::start_with_layer(
            chat_app::routing::application(AppState {
                history_limit: 0,
                ..AppState::default()
            }),
            ServerConfig::default(),
            Arc::clone(&layer),
        )
        .await;
        ChatNode { server, layer }
    }

    /// Shuts the server down.
    pub async fn stop(self) {
        self.server.shutdown().await;
    }
}

/// Members connected to two processes hear each other; another room hears nothing.
pub async fn two_processes_chat_as_one_room(one: &ChatNode, two: &ChatNode) {
    let mut ann = one.connect(&room("shared")).await;
    let mut bob = two.connect(&room("shared")).await;
    let mut elsewhere = two.connect(&room("other")).await;

    say(&mut ann, "from one").await;
    assert_eq!(heard(&mut ann).await.message, "from one");
    assert_eq!(heard(&mut bob).await.message, "from one");
    say(&mut bob, "from two").await;
    assert_eq!(heard(&mut ann).await.message, "from two");
    assert_eq!(heard(&mut bob).await.message, "from two");
    assert_no_event(&mut elsewhere).await;
}

/// Two senders on two processes send 250 each, interleaved; listeners on both processes get
/// all 500, in order per sender.
pub async fn a_burst_of_500_arrives_complete_and_in_order(one: &ChatNode, two: &ChatNode) {
    let mut sender_one = one.connect(&room("burst")).await;
    let mut sender_two = two.connect(&room("burst")).await;
    let mut listeners = vec![
        one.connect(&room("burst")).await,
        two.connect(&room("burst")).await,
    ];

    // The burst stays within what the layer's per-member queue (100) absorbs while a reader
    // lags.
    let sending = async {
        for n in 0..250 {
            say(&mut sender_one, &format!("one {n}")).await;
            say(&mut sender_two, &format!("two {n}")).await;
        }
    };
    let receiving = async {
        for listener in &mut listeners {
            let (mut next_one, mut next_two) = (0, 0);
            while next_one + next_two < 500 {
                let text = heard(listener).await.message;
                match text.split_once(' ') {
                    Some(("one", n)) => {
                        assert_eq!(n, next_one.to_string());
                        next_one += 1;
                    }
                    Some(("two", n)) => {
                        assert_eq!(n, next_two.to_string());
                        next_two += 1;
                    }
                    _ => panic!("unexpected message {text}"),
                }
            }
        }
    };
    tokio::join!(sending, receiving);
}

/// The engine goes away and comes back (`stop`, then `restart`): every member is told both
/// times, members of one process still hear each other meanwhile, and the processes hear each
/// other again afterwards.
pub async fn an_outage_is_survived_and_announced(
    one: &ChatNode,
    two: &ChatNode,
    stop: impl FnOnce(),
    restart: impl FnOnce(),
) {
    let mut ann = one.connect(&room("outage")).await;
    let mut amy = one.connect(&room("outage")).await;
    let mut bob = two.connect(&room("outage")).await;
    say(&mut ann, "before").await;
    assert_eq!(heard(&mut bob).await.message, "before");
    assert_eq!(heard(&mut amy).await.message, "before");

    stop();
    for client in [&mut ann, &mut amy, &mut bob] {
        let notice = next_of(client, "layer.disconnected").await;
        assert!(notice["notice"].is_string(), "{notice}");
    }
    // Members of one process still hear each other while the engine is away.
    say(&mut ann, "during").await;
    assert_eq!(heard(&mut amy).await.message, "during");

    restart();
    for client in [&mut ann, &mut amy, &mut bob] {
        let notice = next_of(client, "layer.reconnected").await;
        assert!(notice["notice"].is_string(), "{notice}");
    }
    say(&mut bob, "after").await;
    assert_eq!(heard(&mut ann).await.message, "after");
    assert_eq!(heard(&mut amy).await.message, "after");
}
