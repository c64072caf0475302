//! Room history: a late joiner sees the room's recent messages, in order, before live ones.

mod support;

use std::sync::Arc;

use chat_app::history::{HISTORY_LIMIT, History};
use serde_json::Value;
use support::chat::{ChatNode, room, say};
use support::redis::{redis_url, unique_prefix};
use support::*;
use switchboard::layer::InMemoryChannelLayer;

/// Waits (bounded) until the worker has written `count` messages of `room`.
async fn history_holds(history: &History, room: &str, count: usize) {
    within("the history worker to catch up", async {
        loop {
            if history.recent(room).await.map(|r| r.len()).unwrap_or(0) >= count {
                return;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await;
}

fn texts(history_event: &Value) -> Vec<String> {
    assert_eq!(history_event["type"], "chat.history", "{history_event}");
    history_event["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            assert_eq!(m["type"], "chat.message");
            assert!(m["user"].is_string());
            m["message"].as_str().expect("text").to_owned()
        })
        .collect()
}

#[tokio::test]
async fn a_late_joiner_gets_the_last_100_in_order_then_live_messages() {
    let node = ChatNode::start(Arc::new(InMemoryChannelLayer::new()), History::in_memory()).await;
    let mut early = node.server.connect(&room("hist")).await;
    let total = HISTORY_LIMIT + 20;
    for n in 0..total {
        say(&mut early, &format!("m{n}")).await;
        recv_json(&mut early).await;
    }
    history_holds(&node.history, "hist", HISTORY_LIMIT).await;

    let mut late = node.server.connect(&room("hist")).await;
    let expected: Vec<String> = (total - HISTORY_LIMIT..total)
        .map(|n| format!("m{n}"))
        .collect();
    assert_eq!(texts(&recv_json(&mut late).await), expected);
    say(&mut early, "live").await;
    assert_eq!(recv_json(&mut late).await["message"], "live");

    let mut elsewhere = node.server.connect(&room("quiet")).await;
    assert_quiet(&mut elsewhere).await;
    node.stop().await;
}

#[tokio::test]
async fn with_history_off_a_joiner_gets_live_messages_only() {
    let node = ChatNode::start(Arc::new(InMemoryChannelLayer::new()), History::off()).await;
    let mut early = node.server.connect(&room("off")).await;
    say(&mut early, "before").await;
    assert_eq!(recv_json(&mut early).await["message"], "before");

    let mut late = node.server.connect(&room("off")).await;
    say(&mut early, "after").await;
    let first = recv_json(&mut late).await;
    assert_eq!(
        first["type"], "chat.message",
        "no chat.history first: {first}"
    );
    assert_eq!(first["message"], "after");
    assert!(node.history.recent("off").await.expect("recent").is_empty());
    node.stop().await;
}

#[tokio::test]
async fn in_memory_history_is_written_by_the_consumer_without_a_worker() {
    // As `chat-app --no-workers` serves: nobody receives on the history worker's channel.
    let app = chat_app::routing::application(chat_app::state::AppState::in_memory());
    let server = TestServer::start(app).await;
    let mut early = server.connect(&room("no-worker")).await;
    say(&mut early, "kept").await;
    // The sender's own copy arrives after the consumer has stored the message.
    assert_eq!(recv_json(&mut early).await["message"], "kept");

    let mut late = server.connect(&room("no-worker")).await;
    assert_eq!(texts(&recv_json(&mut late).await), ["kept"]);
    server.shutdown().await;
}

#[tokio::test]
async fn history_is_kept_per_room() {
    let node = ChatNode::start(Arc::new(InMemoryChannelLayer::new()), History::in_memory()).await;
    let mut red = node.server.connect(&room("red")).await;
    let mut blue = node.server.connect(&room("blue")).await;
    say(&mut red, "r1").await;
    say(&mut blue, "b1").await;
    history_holds(&node.history, "red", 1).await;
    history_holds(&node.history, "blue", 1).await;
    let mut late_red = node.server.connect(&room("red")).await;
    assert_eq!(texts(&recv_json(&mut late_red).await), ["r1"]);
    let mut late_blue = node.server.connect(&room("blue")).await;
    assert_eq!(texts(&recv_json(&mut late_blue).await), ["b1"]);
    node.stop().await;
}

#[tokio::test]
async fn with_redis_history_is_shared_between_processes_and_survives_restarts() {
    let Some(url) = redis_url().await else { return };
    let prefix = unique_prefix("history");
    let one = ChatNode::redis(std::slice::from_ref(&url), &prefix).await;
    let two = ChatNode::redis(std::slice::from_ref(&url), &prefix).await;
    one.history.clear("shared").await.expect("clear");

    let mut writer = one.server.connect(&room("shared")).await;
    for n in 0..5 {
        say(&mut writer, &format!("s{n}")).await;
    }
    history_holds(&two.history, "shared", 5).await;
    let mut reader = two.server.connect(&room("shared")).await;
    let expected: Vec<String> = (0..5).map(|n| format!("s{n}")).collect();
    assert_eq!(texts(&recv_json(&mut reader).await), expected);

    close(&mut writer).await;
    close(&mut reader).await;
    one.stop().await;
    two.stop().await;

    let again = ChatNode::redis(std::slice::from_ref(&url), &prefix).await;
    let mut late = again.server.connect(&room("shared")).await;
    assert_eq!(texts(&recv_json(&mut late).await), expected);
    again.history.clear("shared").await.expect("clear");
    again.stop().await;
}

/// A burst far beyond the layer's default capacity of 100 still reaches the Redis history
/// whole: the history channel has a capacity of its own (`history::layer_config`).
#[tokio::test]
async fn with_redis_a_burst_of_messages_is_all_written_to_the_history() {
    let Some(url) = redis_url().await else { return };
    let prefix = unique_prefix("burst");
    let node = ChatNode::redis(std::slice::from_ref(&url), &prefix).await;
    node.history.clear("burst").await.expect("clear");
    let mut writer = node.server.connect(&room("burst")).await;
    let total = 2000;
    // Zero-padded, so texts sort like numbers should two share an arrival time.
    for n in 0..total {
        say(&mut writer, &format!("m{n:04}")).await;
    }
    let last = format!("m{:04}", total - 1);
    let stored: Vec<String> = within("the burst's last message in the history", async {
        loop {
            let recent = node.history.recent("burst").await.unwrap_or_default();
            if recent.last().is_some_and(|entry| entry.message == last) {
                return recent.into_iter().map(|entry| entry.message).collect();
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
    let expected: Vec<String> = (total - HISTORY_LIMIT..total)
        .map(|n| format!("m{n:04}"))
        .collect();
    assert_eq!(stored, expected);
    node.history.clear("burst").await.expect("clear");
    node.stop().await;
}
