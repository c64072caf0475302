//! The chat-app and a real Django Channels process (daphne serving the Channels tutorial's chat
//! consumer) sharing rooms over channels_redis, in each of its formats: members on either side
//! chat both ways, plain Python (a view, a Celery task) reaches chat-app members, text arrives
//! intact, rooms stay isolated, and malformed messages harm nobody.
//!
//! Needs Redis and the Python environment `.ci/run` makes; skipped loudly without them, failed
//! with `CI` set.

mod support;

use serde_json::{Value, json};
use support::chat::ChatNode;
use support::django::{Daphne, DjangoLayer, venv};
use support::redis::{RedisProcess, redis_url};
use support::*;
use switchboard::layer::channels_redis::CoreChannelLayer;
use switchboard::layer::{ChannelLayer, ChannelsRedisConfig, Envelope, Flavour};
use tokio_tungstenite::connect_async;

#[tokio::test]
async fn the_chat_app_and_daphne_share_rooms_over_channels_redis_core() {
    shares_rooms("core", Flavour::Core).await;
}

#[tokio::test]
async fn the_chat_app_and_daphne_share_rooms_over_channels_redis_pubsub() {
    shares_rooms("pubsub", Flavour::PubSub).await;
}

async fn connect_daphne(daphne: &Daphne, path: &str) -> Client {
    within(
        "a WebSocket handshake with daphne",
        connect_async(daphne.ws_url(path)),
    )
    .await
    .unwrap_or_else(|err| panic!("daphne refused {path}: {err}"))
    .0
}

/// The text of the next chat message (skipping other event types).
async fn next_message(client: &mut Client) -> String {
    loop {
        let frame: Value = recv_json(client).await;
        if frame.get("type").is_none_or(|t| t == "chat.message") {
            return frame["message"]
                .as_str()
                .unwrap_or_else(|| panic!("a message without text: {frame}"))
                .to_owned();
        }
    }
}

async fn shares_rooms(flavour: &'static str, layer_flavour: Flavour) {
    let Some(url) = redis_url().await else { return };
    let Some(venv) = venv() else { return };
    let django = DjangoLayer {
        url: url.clone(),
        flavour,
        prefix: format!("sbdj{}{flavour}", std::process::id()),
    };
    let daphne = Daphne::start(&venv, &django);
    let config = ChannelsRedisConfig::new([django.url.clone()])
        .flavour(layer_flavour)
        .prefix(django.prefix.clone());
    let chat = ChatNode::channels_redis(config).await;

    let mut on_django = connect_daphne(&daphne, "/ws/chat/lobby/").await;
    let mut on_chat = chat.connect("/ws/chat/lobby/").await;
    let mut django_elsewhere = connect_daphne(&daphne, "/ws/chat/other/").await;
    let mut chat_elsewhere = chat.connect("/ws/chat/other/").await;

    // switchboard → both sides.
    let hello = "from switchboard: 你好, 世界 👋🏽 ñ";
    send_json(&mut on_chat, &json!({"message": hello})).await;
    assert_eq!(next_message(&mut on_chat).await, hello);
    assert_eq!(next_message(&mut on_django).await, hello);

    // Django → both sides.
    let reply = "from daphne: 中文 🐍✨ \"quoted\" <b>not html</b>";
    send_json(&mut on_django, &json!({"message": reply})).await;
    assert_eq!(next_message(&mut on_django).await, reply);
    assert_eq!(next_message(&mut on_chat).await, reply);

    // A plain-Python group_send, as a view or a Celery task makes it.
    let notice = "from a Celery task: 完成 ✅";
    django.inject(&venv, &["send", "chat_lobby", notice]);
    assert_eq!(next_message(&mut on_chat).await, notice);
    assert_eq!(next_message(&mut on_django).await, notice);

    // Malformed messages to a room of chat-app members only (a stock Channels consumer would
    // crash on them), then a good one: it arrives, the connection still open.
    let mut quarantined = chat.connect("/ws/chat/quarantine/").await;
    django.inject(&venv, &["malformed", "chat_quarantine"]);
    django.inject(&venv, &["send", "chat_quarantine", "still here"]);
    within("the good message after the malformed ones", async {
        while next_message(&mut quarantined).await != "still here" {}
    })
    .await;

    // Everyone in the lobby still chats; the other room heard nothing of it.
    send_json(&mut on_chat, &json!({"message": "after"})).await;
    assert_eq!(next_message(&mut on_chat).await, "after");
    assert_eq!(next_message(&mut on_django).await, "after");
    assert_quiet(&mut django_elsewhere).await;
    support::chat::assert_no_event(&mut chat_elsewhere).await;

    close(&mut on_chat).await;
    chat.stop().await;
    drop(daphne);
}

/// With two hosts, channels_redis' receiver pops its process' set on the host of the channel
/// name's part before the `!`, while its sender hashes the whole name (channels_redis #221).
/// switchboard sends where Django receivers pop and pops everywhere Django senders write, so
/// direct sends arrive both ways, and group chat works on groups of either host.
#[tokio::test]
async fn over_two_hosts_direct_sends_and_groups_reach_both_sides() {
    let (Some(first), Some(second)) = (RedisProcess::start(), RedisProcess::start()) else {
        return;
    };
    let Some(venv) = venv() else { return };
    let urls = vec![first.url(), second.url()];
    let django = DjangoLayer {
        url: urls.join(","),
        flavour: "core",
        prefix: "asgi".to_owned(),
    };
    let daphne = Daphne::start(&venv, &django);
    let config = ChannelsRedisConfig::new(urls.clone());
    let chat = ChatNode::channels_redis(config.clone()).await;

    // chat_0 lives on the first host, chat_8 on the second (channels_redis' CRC-32 hash).
    for room in ["0", "8"] {
        let path = format!("/ws/chat/{room}/");
        let mut on_django = connect_daphne(&daphne, &path).await;
        let mut on_chat = chat.connect(&path).await;
        send_json(&mut on_chat, &json!({"message": format!("s{room}")})).await;
        assert_eq!(next_message(&mut on_django).await, format!("s{room}"));
        send_json(&mut on_django, &json!({"message": format!("d{room}")})).await;
        assert_eq!(next_message(&mut on_chat).await, format!("s{room}"));
        assert_eq!(next_message(&mut on_chat).await, format!("d{room}"));
    }

    // Django → switchboard: a direct send to each of eight chat-app members, whose whole names
    // hash to either host.
    let mut ours = Vec::new();
    for _ in 0..8 {
        ours.push(chat.connect("/ws/chat/9/").await);
    }
    django.inject(&venv, &["direct", "chat_9", "direct from django"]);
    for member in &mut ours {
        assert_eq!(next_message(member).await, "direct from django");
    }

    // switchboard → Django: a direct send to each of eight daphne members (one process: one set,
    // on one host, while their whole names hash to either).
    let mut theirs = Vec::new();
    for _ in 0..8 {
        theirs.push(connect_daphne(&daphne, "/ws/chat/1/").await);
    }
    let listed = std::process::Command::new("redis-cli")
        .args([
            "-p",
            &first.port.to_string(),
            "ZRANGE",
            "asgi:group:chat_1",
            "0",
            "-1",
        ])
        .output()
        .expect("redis-cli");
    let names: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(names.len(), 8, "{names:?}");
    let sender = CoreChannelLayer::connect(config).await.expect("connect");
    let event = json!({"type": "chat.message", "message": "direct from switchboard"});
    for name in &names {
        let envelope = Envelope::encode(&event).expect("encode");
        sender.send(name, envelope).await.expect("direct send");
    }
    for member in &mut theirs {
        assert_eq!(next_message(member).await, "direct from switchboard");
    }

    chat.stop().await;
    drop(daphne);
}
