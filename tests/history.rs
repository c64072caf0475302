//! Room history and recovery: every message has a position in its room's log; a joiner sees the
//! room's recent messages before live ones, and a member that lost its connection gets exactly
//! what it missed (`?since=EPOCH:OFFSET`) or is told it cannot.

mod support;

use std::sync::Arc;

use chat_app::rooms::HISTORY_LIMIT;
use chat_app::state::AppState;
use serde_json::{Value, json};
use support::chat::{
    ChatNode, assert_no_event, assert_no_event_for, chat_layer_config, recv_event, redis_layer,
    room, say,
};
use support::redis::{RedisProcess, redis_url, unique_prefix};
use support::*;
use switchboard::layer::{InMemoryChannelLayer, LogConfig, SharedLayer};
use switchboard::redis::RedisConnector;
use switchboard::redis::fred::prelude::KeysInterface;

fn since(name: &str, position: &str) -> String {
    format!("/ws/chat/{name}/?since={position}")
}

/// The next `chat.message` whole (with its position), skipping informational events.
async fn heard(client: &mut Client) -> Value {
    loop {
        let event = recv_event(client).await;
        if event["type"] == "chat.message" {
            return event;
        }
        assert!(
            !["chat.history", "chat.recovered", "error"]
                .contains(&event["type"].as_str().unwrap_or("")),
            "unexpected {event}"
        );
    }
}

/// `EPOCH:OFFSET` of a message.
fn position(message: &Value) -> String {
    let epoch = message["epoch"].as_str().expect("an epoch");
    let offset = message["offset"].as_u64().expect("an offset");
    format!("{epoch}:{offset}")
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
            assert!(m["epoch"].is_string() && m["offset"].is_u64(), "{m}");
            m["message"].as_str().expect("text").to_owned()
        })
        .collect()
}

/// Says `count` messages `{prefix}{n}` and waits for the sender's own copies: then every one
/// is in the room's log.
async fn say_all(client: &mut Client, prefix: &str, count: usize) -> Vec<Value> {
    for n in 0..count {
        say(client, &format!("{prefix}{n}")).await;
    }
    let mut heard_back = Vec::with_capacity(count);
    for _ in 0..count {
        heard_back.push(heard(client).await);
    }
    heard_back
}

#[tokio::test]
async fn a_late_joiner_gets_the_last_100_in_order_then_live_messages_with_positions() {
    let node = ChatNode::in_memory().await;
    let mut early = node.connect(&room("hist")).await;
    let total = HISTORY_LIMIT + 20;
    let sent = say_all(&mut early, "m", total).await;
    let offsets: Vec<u64> = sent.iter().map(|m| m["offset"].as_u64().unwrap()).collect();
    assert_eq!(
        offsets,
        (1..=total as u64).collect::<Vec<_>>(),
        "one more each"
    );

    let mut late = node.connect(&room("hist")).await;
    let history = recv_event(&mut late).await;
    let expected: Vec<String> = (total - HISTORY_LIMIT..total)
        .map(|n| format!("m{n}"))
        .collect();
    assert_eq!(texts(&history), expected);
    assert_eq!(history["messages"][HISTORY_LIMIT - 1]["offset"], total);
    say(&mut early, "live").await;
    let live = heard(&mut late).await;
    assert_eq!(live["message"], "live");
    assert_eq!(live["offset"], total + 1);
    assert_eq!(live["epoch"], sent[0]["epoch"]);

    let mut elsewhere = node.connect(&room("quiet")).await;
    assert_no_event(&mut elsewhere).await;
    node.stop().await;
}

#[tokio::test]
async fn with_history_off_a_joiner_gets_live_messages_only_without_positions() {
    let app = chat_app::routing::application(AppState {
        history_limit: 0,
        ..AppState::default()
    });
    let server = TestServer::start(app).await;
    let mut early = server.connect(&room("off")).await;
    say(&mut early, "before").await;
    assert_eq!(recv_event(&mut early).await["message"], "before");

    let mut late = server.connect(&room("off")).await;
    say(&mut early, "after").await;
    let first = recv_event(&mut late).await;
    assert_eq!(
        first["type"], "chat.message",
        "no chat.history first: {first}"
    );
    assert_eq!(first["message"], "after");
    assert!(first.get("offset").is_none(), "{first}");
    server.shutdown().await;
}

#[tokio::test]
async fn history_is_kept_per_room() {
    let node = ChatNode::in_memory().await;
    let mut red = node.connect(&room("red")).await;
    let mut blue = node.connect(&room("blue")).await;
    say_all(&mut red, "r", 1).await;
    say_all(&mut blue, "b", 1).await;
    let mut late_red = node.connect(&room("red")).await;
    assert_eq!(texts(&recv_event(&mut late_red).await), ["r0"]);
    let mut late_blue = node.connect(&room("blue")).await;
    assert_eq!(texts(&recv_event(&mut late_blue).await), ["b0"]);
    node.stop().await;
}

/// The member whose connection is cut reconnects with the last position it saw and gets
/// exactly the 50 messages it missed, in order, then live ones, none twice.
async fn a_cut_member_recovers_exactly_what_it_missed(
    ann_node: &ChatNode,
    bob_node: &ChatNode,
    name: &str,
) {
    let mut ann = ann_node.connect(&room(name)).await;
    let mut bob = bob_node.connect(&room(name)).await;
    let seen = say_all(&mut ann, "before", 3).await;
    for _ in 0..3 {
        heard(&mut bob).await;
    }
    let last = position(&seen[2]);
    // Cut: the socket goes away without a close handshake.
    drop(ann);

    let missed = say_all(&mut bob, "missed", 50).await;
    let mut ann = ann_node.connect(&since(name, &last)).await;
    let recovered = recv_event(&mut ann).await;
    assert_eq!(
        recovered,
        json!({"type": "chat.recovered", "recovered": true})
    );
    for expected in &missed {
        let got = recv_event(&mut ann).await;
        assert_eq!(got["type"], "chat.message", "no chat.history: {got}");
        assert_eq!(got, *expected);
    }
    say(&mut bob, "live").await;
    let live = recv_event(&mut ann).await;
    assert_eq!(live["message"], "live");
    assert_eq!(
        live["offset"].as_u64(),
        missed[49]["offset"].as_u64().map(|o| o + 1)
    );
    assert_no_event(&mut ann).await;
}

#[tokio::test]
async fn a_cut_member_recovers_exactly_what_it_missed_in_one_process() {
    let node = ChatNode::in_memory().await;
    a_cut_member_recovers_exactly_what_it_missed(&node, &node, "cut").await;
    node.stop().await;
}

#[tokio::test]
async fn a_cut_member_recovers_exactly_what_it_missed_across_two_processes_on_redis() {
    let Some(url) = redis_url().await else { return };
    let prefix = unique_prefix("recover");
    let one = ChatNode::redis(std::slice::from_ref(&url), &prefix).await;
    let two = ChatNode::redis(&[url], &prefix).await;
    a_cut_member_recovers_exactly_what_it_missed(&one, &two, "cut-redis").await;
    one.stop().await;
    two.stop().await;
}

/// What cannot be recovered is said: `recovered: false`, then the history.
#[tokio::test]
async fn positions_that_cannot_be_recovered_get_recovered_false_and_the_history() {
    // The first matching pattern wins: the small log goes before the rooms' own.
    let mut config = chat_layer_config();
    let small = LogConfig::new(5, std::time::Duration::from_secs(60));
    config
        .logs
        .patterns
        .insert(0, ("chat_small".to_owned(), small));
    let node = ChatNode::start(Arc::new(InMemoryChannelLayer::with_config(config))).await;
    let mut ann = node.connect(&room("small")).await;
    let sent = say_all(&mut ann, "m", 10).await;
    let epoch = sent[0]["epoch"].as_str().expect("epoch").to_owned();

    for lost in [
        format!("{epoch}:1"),      // older than the log keeps (5)
        "0therEpoch:3".to_owned(), // another epoch
        format!("{epoch}:99"),     // a position never given
    ] {
        let mut back = node.connect(&since("small", &lost)).await;
        assert_eq!(
            recv_event(&mut back).await,
            json!({"type": "chat.recovered", "recovered": false}),
            "{lost}"
        );
        let history = recv_event(&mut back).await;
        assert_eq!(texts(&history), ["m5", "m6", "m7", "m8", "m9"], "{lost}");
    }
    // The oldest position the log can still continue from.
    let mut back = node.connect(&since("small", &format!("{epoch}:5"))).await;
    assert_eq!(recv_event(&mut back).await["recovered"], true);
    assert_eq!(recv_event(&mut back).await["message"], "m5");
    node.stop().await;
}

#[tokio::test]
async fn a_malformed_since_gets_an_error_and_joins_as_without_it() {
    let node = ChatNode::in_memory().await;
    for (n, bad) in ["nope", "a-b:1", "abc:-1", "%ff:1", ""]
        .into_iter()
        .enumerate()
    {
        let name = format!("bad-since-{n}");
        let mut ann = node.connect(&room(&name)).await;
        say_all(&mut ann, "m", 2).await;
        let mut bob = node.connect(&since(&name, bad)).await;
        let error = recv_event(&mut bob).await;
        assert_eq!(error["type"], "error", "{bad}: {error}");
        assert!(
            error["error"]
                .as_str()
                .unwrap()
                .starts_with("invalid since"),
            "{error}"
        );
        assert_eq!(texts(&recv_event(&mut bob).await), ["m0", "m1"], "{bad}");
        say(&mut bob, "still here").await;
        assert_eq!(heard(&mut bob).await["message"], "still here");
        assert_eq!(heard(&mut ann).await["message"], "still here");
    }
    node.stop().await;
}

/// The gap of issue 18: a member joining right after a message was broadcast finds it, in the
/// history or live, once.
async fn a_joiner_right_after_a_broadcast_finds_it(layers: [SharedLayer; 2], rounds: usize) {
    let one = ChatNode::start(Arc::clone(&layers[0])).await;
    let two = ChatNode::start(Arc::clone(&layers[1])).await;
    let mut sender = one.connect(&room("gap")).await;
    for n in 0..rounds {
        let text = format!("h{n}");
        say(&mut sender, &text).await;
        // The sender has seen it broadcast: a joiner must find it.
        assert_eq!(heard(&mut sender).await["message"], *text);
        let mut joiner = two.connect(&room("gap")).await;
        let history = recv_event(&mut joiner).await;
        let found = texts(&history);
        assert_eq!(found.last(), Some(&text), "round {n}");
        assert_eq!(found.iter().filter(|t| **t == text).count(), 1);
        assert_no_event_for(&mut joiner, std::time::Duration::from_millis(20)).await;
    }
    one.stop().await;
    two.stop().await;
}

#[tokio::test]
async fn a_joiner_right_after_a_broadcast_finds_it_in_one_process() {
    let layer: SharedLayer = Arc::new(InMemoryChannelLayer::with_config(chat_layer_config()));
    a_joiner_right_after_a_broadcast_finds_it([Arc::clone(&layer), layer], 30).await;
}

#[tokio::test]
async fn a_joiner_right_after_a_broadcast_finds_it_across_two_processes_on_redis() {
    let Some(url) = redis_url().await else { return };
    let prefix = unique_prefix("gap");
    let urls = [url];
    let layers = [
        redis_layer(&urls, &prefix).await,
        redis_layer(&urls, &prefix).await,
    ];
    a_joiner_right_after_a_broadcast_finds_it(layers, 30).await;
}

#[tokio::test]
async fn with_redis_history_is_shared_between_processes_survives_restarts_and_expires() {
    let Some(url) = redis_url().await else { return };
    let prefix = unique_prefix("history");
    let one = ChatNode::redis(std::slice::from_ref(&url), &prefix).await;
    let two = ChatNode::redis(std::slice::from_ref(&url), &prefix).await;

    let mut writer = one.connect(&room("shared")).await;
    say_all(&mut writer, "s", 5).await;
    let mut reader = two.connect(&room("shared")).await;
    let expected: Vec<String> = (0..5).map(|n| format!("s{n}")).collect();
    assert_eq!(texts(&recv_event(&mut reader).await), expected);

    close(&mut writer).await;
    close(&mut reader).await;
    one.stop().await;
    two.stop().await;

    let again = ChatNode::redis(std::slice::from_ref(&url), &prefix).await;
    let mut late = again.connect(&room("shared")).await;
    assert_eq!(texts(&recv_event(&mut late).await), expected);
    again.stop().await;

    // The keys carry the history's time to live (renewed by every message).
    let redis = RedisConnector::new(&url).expect("url");
    let client = redis.client("test").await.expect("client");
    for key in [
        format!("{prefix}:log:chat_shared"),
        format!("{prefix}:log-head:chat_shared"),
    ] {
        let ttl: i64 = client.ttl(&key).await.expect("TTL");
        let day = chat_app::rooms::DEFAULT_HISTORY_TTL.as_secs() as i64;
        assert!((day - 60..=day).contains(&ttl), "{key}: {ttl}");
        client.del::<i64, _>(&key).await.expect("DEL");
    }
}

/// A Redis that comes back without its data has forgotten every log: a position from before is
/// `recovered: false`, and the log starts a new epoch.
#[tokio::test]
async fn after_a_redis_restart_without_data_positions_are_not_recovered() {
    let Some(mut redis) = RedisProcess::start() else {
        return;
    };
    let prefix = unique_prefix("restart-log");
    let node = ChatNode::redis(&[redis.url()], &prefix).await;
    let mut ann = node.connect(&room("gone")).await;
    let before = say_all(&mut ann, "b", 3).await;
    redis.restart();
    within("the layer to reconnect", async {
        loop {
            let event = recv_event(&mut ann).await;
            if event["type"] == "layer.reconnected" {
                return;
            }
        }
    })
    .await;
    let after = say_all(&mut ann, "a", 1).await;
    assert_ne!(after[0]["epoch"], before[0]["epoch"], "a new epoch");
    assert_eq!(after[0]["offset"], 1);

    let mut back = node.connect(&since("gone", &position(&before[2]))).await;
    assert_eq!(
        recv_event(&mut back).await,
        json!({"type": "chat.recovered", "recovered": false})
    );
    assert_eq!(texts(&recv_event(&mut back).await), ["a0"]);
    node.stop().await;
}

/// Rooms anyone can invent cannot grow memory past the history budget: the rooms idle longest
/// forget their history first.
#[tokio::test]
async fn invented_rooms_stay_within_the_history_budget() {
    let budget = 256 << 10;
    let layer = Arc::new(InMemoryChannelLayer::with_config(
        chat_app::rooms::layer_config(chat_app::rooms::DEFAULT_HISTORY_TTL, budget),
    ));
    let node = ChatNode::start(layer.clone()).await;
    let rooms = 2_000;
    for n in 0..rooms {
        let mut client = node.connect(&room(&format!("invented-{n}"))).await;
        say_all(&mut client, &"x".repeat(200), 1).await;
        close(&mut client).await;
        let (bytes, _) = layer.log_usage();
        assert!(bytes <= budget, "{bytes} bytes after {n} rooms");
    }
    let (_, logs) = layer.log_usage();
    assert!(logs < rooms, "{logs} logs kept");
    let mut newest = node
        .connect(&room(&format!("invented-{}", rooms - 1)))
        .await;
    assert_eq!(texts(&recv_event(&mut newest).await).len(), 1);
    node.stop().await;
}
