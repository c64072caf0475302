//! A chat-app process for the tests: its server and its history worker on one layer.

use std::sync::Arc;

use chat_app::history::History;
use chat_app::state::AppState;
use switchboard::layer::{RedisChannelLayer, RedisConfig, SharedLayer};
use switchboard::server::ServerConfig;
use switchboard::worker::RunningWorkers;

use super::{TestServer, within};

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
            group_format: Default::default(),
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
