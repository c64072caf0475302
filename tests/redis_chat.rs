//! Several chat-app servers sharing rooms through the Redis layer: real sockets, real Redis.

mod support;

use support::chat::{ChatNode, heard, next_of, room, say};
use support::redis::{RedisProcess, redis_url, unique_prefix};
use support::*;

#[tokio::test]
async fn members_on_two_processes_chat_as_one_room() {
    let Some(url) = redis_url().await else { return };
    let prefix = unique_prefix("two-servers");
    let one = ChatNode::redis(std::slice::from_ref(&url), &prefix).await;
    let two = ChatNode::redis(std::slice::from_ref(&url), &prefix).await;

    let mut ann = one.connect(&room("shared")).await;
    let mut bob = two.connect(&room("shared")).await;
    let mut elsewhere = two.connect(&room("other")).await;

    say(&mut ann, "from one").await;
    assert_eq!(heard(&mut ann).await.message, "from one");
    assert_eq!(heard(&mut bob).await.message, "from one");
    say(&mut bob, "from two").await;
    assert_eq!(heard(&mut ann).await.message, "from two");
    assert_eq!(heard(&mut bob).await.message, "from two");
    assert_quiet(&mut elsewhere).await;
}

#[tokio::test]
async fn a_burst_of_500_arrives_complete_and_in_order_per_sender() {
    let Some(url) = redis_url().await else { return };
    let prefix = unique_prefix("burst");
    let one = ChatNode::redis(std::slice::from_ref(&url), &prefix).await;
    let two = ChatNode::redis(std::slice::from_ref(&url), &prefix).await;

    let mut sender_one = one.connect(&room("burst")).await;
    let mut sender_two = two.connect(&room("burst")).await;
    let mut listeners = vec![
        one.connect(&room("burst")).await,
        two.connect(&room("burst")).await,
    ];

    // Each sender's messages are interleaved with the other's; order holds per sender. The
    // burst stays within what the layer's per-member queue (100) absorbs while a reader lags.
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

/// Channels subscribed on one Redis server, read with `redis-cli`.
fn pubsub_channels(port: u16) -> Vec<String> {
    let output = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string(), "PUBSUB", "CHANNELS", "*"])
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn rooms_are_sharded_over_two_redis_servers() {
    let (Some(first), Some(second)) = (RedisProcess::start(), RedisProcess::start()) else {
        return;
    };
    let urls = [first.url(), second.url()];
    let prefix = unique_prefix("shards");
    let one = ChatNode::redis(&urls, &prefix).await;
    let two = ChatNode::redis(&urls, &prefix).await;

    let mut pairs = Vec::new();
    for n in 0..8 {
        let name = format!("shard-{n}");
        let a = one.connect(&room(&name)).await;
        let b = two.connect(&room(&name)).await;
        pairs.push((name, a, b));
    }
    for (name, a, b) in &mut pairs {
        say(a, name).await;
        assert_eq!(&heard(b).await.message, name);
        assert_eq!(&heard(a).await.message, name);
    }
    let on_first = pubsub_channels(first.port);
    let on_second = pubsub_channels(second.port);
    let groups = |channels: &[String]| channels.iter().filter(|c| c.contains(":group:")).count();
    assert!(
        groups(&on_first) > 0 && groups(&on_second) > 0,
        "both servers carry rooms: {on_first:?} / {on_second:?}"
    );
    assert_eq!(groups(&on_first) + groups(&on_second), 8);
}

#[tokio::test]
async fn a_redis_restart_is_survived_and_announced() {
    let Some(mut redis) = RedisProcess::start() else {
        return;
    };
    let urls = [redis.url()];
    let prefix = unique_prefix("restart");
    let one = ChatNode::redis(&urls, &prefix).await;
    let two = ChatNode::redis(&urls, &prefix).await;
    let mut ann = one.connect(&room("outage")).await;
    let mut amy = one.connect(&room("outage")).await;
    let mut bob = two.connect(&room("outage")).await;
    say(&mut ann, "before").await;
    assert_eq!(heard(&mut bob).await.message, "before");
    assert_eq!(heard(&mut amy).await.message, "before");

    redis.stop();
    for client in [&mut ann, &mut amy, &mut bob] {
        let notice = next_of(client, "layer.disconnected").await;
        assert!(notice["notice"].is_string(), "{notice}");
    }
    // Members of one process still hear each other while Redis is away.
    say(&mut ann, "during").await;
    assert_eq!(heard(&mut amy).await.message, "during");

    redis.restart();
    for client in [&mut ann, &mut amy, &mut bob] {
        let notice = next_of(client, "layer.reconnected").await;
        assert!(notice["notice"].is_string(), "{notice}");
    }
    say(&mut bob, "after").await;
    assert_eq!(heard(&mut ann).await.message, "after");
    assert_eq!(heard(&mut amy).await.message, "after");
}
