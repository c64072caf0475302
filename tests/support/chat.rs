//! A chat-app process for the tests: its server and its history worker on one layer.

use std::sync::Arc;

use chat_app::history::History;
use chat_app::state::AppState;
use serde_json::{Value, json};
use switchboard::layer::{
    NatsChannelLayer, NatsConfig, RedisChannelLayer, RedisConfig, SharedLayer,
};
use switchboard::server::ServerConfig;
use switchboard::worker::RunningWorkers;

use super::{Client, TestServer, assert_quiet, recv_json, send_json, within};

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

    /// A chat-app on the Redis Cluster reached through `nodes`, under `prefix`, history in
    /// the cluster, as `chat-app --layer redis+cluster://…` runs it.
    pub async fn cluster(nodes: &[String], prefix: &str) -> ChatNode {
        let config = RedisConfig::cluster(nodes.to_vec())
            .prefix(prefix)
            .layer(chat_app::history::layer_config());
        let store = config.client_urls().swap_remove(0);
        let layer = RedisChannelLayer::connect(config)
            .await
            .expect("connect to the Redis Cluster");
        let history = History::redis(&store, prefix).await.expect("history store");
        ChatNode::start(Arc::new(layer), history).await
    }

    /// A chat-app on NATS at `url` under `prefix`, as `chat-app --layer nats://…` runs it:
    /// without room history.
    pub async fn nats(url: &str, prefix: &str) -> ChatNode {
        let config = NatsConfig::new(url)
            .prefix(prefix)
            .layer(chat_app::history::layer_config());
        let layer = NatsChannelLayer::connect(config)
            .await
            .expect("connect to NATS");
        ChatNode::start(Arc::new(layer), History::off()).await
    }

    /// Shuts the server down, then the workers.
    pub async fn stop(self) {
        self.server.shutdown().await;
        within("the workers to stop", self.workers.shutdown()).await;
    }
}

/// `/ws/chat/{name}/`.
pub fn room(name: &str) -> String {
    format!("/ws/chat/{name}/")
}

/// Sends a chat message.
pub async fn say(client: &mut Client, message: &str) {
    send_json(client, &json!({ "message": message })).await;
}

/// The next event of `kind`, skipping others.
pub async fn next_of(client: &mut Client, kind: &str) -> Value {
    loop {
        let event = recv_json(client).await;
        if event["type"] == kind {
            return event;
        }
    }
}

/// The text of the next chat message.
pub async fn heard(client: &mut Client) -> String {
    let event = next_of(client, "chat.message").await;
    event["message"].as_str().expect("message").to_owned()
}

/// Members connected to two processes hear each other; another room hears nothing.
pub async fn two_processes_chat_as_one_room(one: &ChatNode, two: &ChatNode) {
    let mut ann = one.connect(&room("shared")).await;
    let mut bob = two.connect(&room("shared")).await;
    let mut elsewhere = two.connect(&room("other")).await;

    say(&mut ann, "from one").await;
    assert_eq!(heard(&mut ann).await, "from one");
    assert_eq!(heard(&mut bob).await, "from one");
    say(&mut bob, "from two").await;
    assert_eq!(heard(&mut ann).await, "from two");
    assert_eq!(heard(&mut bob).await, "from two");
    assert_quiet(&mut elsewhere).await;
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
                let text = heard(listener).await;
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
    assert_eq!(heard(&mut bob).await, "before");
    assert_eq!(heard(&mut amy).await, "before");

    stop();
    for client in [&mut ann, &mut amy, &mut bob] {
        let notice = next_of(client, "layer.disconnected").await;
        assert!(notice["notice"].is_string(), "{notice}");
    }
    // Members of one process still hear each other while the engine is away.
    say(&mut ann, "during").await;
    assert_eq!(heard(&mut amy).await, "during");

    restart();
    for client in [&mut ann, &mut amy, &mut bob] {
        let notice = next_of(client, "layer.reconnected").await;
        assert!(notice["notice"].is_string(), "{notice}");
    }
    say(&mut bob, "after").await;
    assert_eq!(heard(&mut ann).await, "after");
    assert_eq!(heard(&mut amy).await, "after");
}
