//! Several chat-app servers sharing rooms through the Redis layer: real sockets, real Redis.

mod support;

use support::chat::*;
use support::redis::{RedisProcess, redis_url, unique_prefix};

#[tokio::test]
async fn members_on_two_processes_chat_as_one_room() {
    let Some(url) = redis_url().await else { return };
    let prefix = unique_prefix("two-servers");
    let one = ChatNode::redis(std::slice::from_ref(&url), &prefix).await;
    let two = ChatNode::redis(std::slice::from_ref(&url), &prefix).await;
    two_processes_chat_as_one_room(&one, &two).await;
}

#[tokio::test]
async fn a_burst_of_500_arrives_complete_and_in_order_per_sender() {
    let Some(url) = redis_url().await else { return };
    let prefix = unique_prefix("burst");
    let one = ChatNode::redis(std::slice::from_ref(&url), &prefix).await;
    let two = ChatNode::redis(std::slice::from_ref(&url), &prefix).await;
    a_burst_of_500_arrives_complete_and_in_order(&one, &two).await;
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
    // Rooms' groups; the presence trackers' own group is one more, on one of the servers.
    let groups = |channels: &[String]| {
        channels
            .iter()
            .filter(|c| c.contains(":group:") && !c.ends_with(":group:switchboard.presence"))
            .count()
    };
    assert!(
        groups(&on_first) > 0 && groups(&on_second) > 0,
        "both servers carry rooms: {on_first:?} / {on_second:?}"
    );
    assert_eq!(groups(&on_first) + groups(&on_second), 8);
}

#[tokio::test]
async fn a_redis_restart_is_survived_and_announced() {
    let Some(redis) = RedisProcess::start() else {
        return;
    };
    let urls = [redis.url()];
    let prefix = unique_prefix("restart");
    let one = ChatNode::redis(&urls, &prefix).await;
    let two = ChatNode::redis(&urls, &prefix).await;
    let redis = std::cell::RefCell::new(redis);
    an_outage_is_survived_and_announced(
        &one,
        &two,
        || redis.borrow_mut().stop(),
        || redis.borrow_mut().restart(),
    )
    .await;
}
