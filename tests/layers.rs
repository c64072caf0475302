//! One conformance suite, run against every channel layer: the in-memory layer, and the Redis
//! layer on a real Redis (`REDIS_URL`, default `redis://127.0.0.1:6379`).

mod support;

use std::sync::Arc;

use serde_json::json;
use support::redis::{RedisProcess, redis_url, unique_prefix};
use support::*;
use switchboard::Error;
use switchboard::layer::{
    ChannelLayer, ChannelReceiver, Envelope, InMemoryChannelLayer, LayerConfig, RedisChannelLayer,
    RedisConfig,
};

#[path = "layers/conformance.rs"]
mod conformance;

fn message(n: u32) -> Arc<Envelope> {
    Envelope::encode(&json!({"type": "test.message", "n": n})).expect("encode")
}

async fn next_n(receiver: &mut ChannelReceiver) -> u64 {
    let envelope = within("a layer message", receiver.recv())
        .await
        .expect("the layer is alive");
    let value: serde_json::Value = serde_json::from_str(envelope.json()).expect("json");
    value["n"].as_u64().expect("n")
}

async fn nothing_more(receiver: &mut ChannelReceiver) {
    if let Ok(Some(envelope)) = tokio::time::timeout(QUIET, receiver.recv()).await {
        panic!("expected nothing, got {}", envelope.json());
    }
}

fn small() -> LayerConfig {
    LayerConfig::default().capacity(3)
}

/// A Redis layer at `url` under `prefix`, with these limits.
async fn redis_layer(url: &str, prefix: &str, limits: LayerConfig) -> RedisChannelLayer {
    let config = RedisConfig::new([url.to_owned()])
        .prefix(prefix)
        .layer(limits);
    RedisChannelLayer::connect(config).await.expect("connect")
}

#[tokio::test]
async fn in_memory_layer_conforms() {
    conformance::run(|| async { InMemoryChannelLayer::with_config(small()) }).await;
}

#[tokio::test]
async fn redis_layer_conforms() {
    let Some(url) = redis_url().await else { return };
    let prefix = unique_prefix("conformance");
    conformance::run(|| redis_layer(&url, &prefix, small())).await;
}

#[tokio::test]
async fn redis_layers_in_two_processes_share_groups_and_direct_sends() {
    let Some(url) = redis_url().await else { return };
    let prefix = unique_prefix("two");
    let connect = || async {
        RedisChannelLayer::connect(RedisConfig::new([url.clone()]).prefix(prefix.clone()))
            .await
            .expect("connect")
    };
    let (one, two) = (connect().await, connect().await);
    let mut on_one = one.new_channel().await.expect("channel");
    let mut on_two = two.new_channel().await.expect("channel");
    one.group_add("room", on_one.name()).await.expect("add");
    two.group_add("room", on_two.name()).await.expect("add");
    one.group_send("room", message(1)).await.expect("send");
    assert_eq!(next_n(&mut on_one).await, 1);
    assert_eq!(next_n(&mut on_two).await, 1);

    two.send(on_one.name(), message(2))
        .await
        .expect("direct send across processes");
    assert_eq!(next_n(&mut on_one).await, 2);
    nothing_more(&mut on_two).await;

    two.group_discard("room", on_two.name())
        .await
        .expect("discard");
    assert!(
        two.subscribed_groups().await.is_empty(),
        "the last local member left: unsubscribed"
    );
    one.group_send("room", message(3)).await.expect("send");
    assert_eq!(next_n(&mut on_one).await, 3);
    nothing_more(&mut on_two).await;
}

#[tokio::test]
async fn a_worker_in_one_process_gets_each_message_sent_by_another_once() {
    let Some(url) = redis_url().await else { return };
    let prefix = unique_prefix("worker");
    let connect = || async {
        RedisChannelLayer::connect(RedisConfig::new([url.clone()]).prefix(prefix.clone()))
            .await
            .expect("connect")
    };
    let (web, worker_a, worker_b) = (connect().await, connect().await, connect().await);
    let mut a = worker_a.receive_channel("jobs").await.expect("receive");
    let mut b = worker_b.receive_channel("jobs").await.expect("receive");
    for n in 0..20 {
        web.send("jobs", message(n)).await.expect("send");
    }
    let mut seen = Vec::new();
    while seen.len() < 20 {
        tokio::select! {
            Some(envelope) = a.recv() => seen.push(envelope.json().to_owned()),
            Some(envelope) = b.recv() => seen.push(envelope.json().to_owned()),
            _ = tokio::time::sleep(TIMEOUT) => panic!("only {} of 20 messages arrived", seen.len()),
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 20, "each message reached exactly one worker");
    nothing_more(&mut a).await;
    nothing_more(&mut b).await;
}

#[tokio::test]
async fn a_group_send_right_after_a_remote_join_is_not_lost() {
    let Some(url) = redis_url().await else { return };
    let prefix = unique_prefix("join-race");
    let connect = || async {
        RedisChannelLayer::connect(RedisConfig::new([url.clone()]).prefix(prefix.clone()))
            .await
            .expect("connect")
    };
    let (sender, joiner) = (connect().await, connect().await);
    // group_add returns only once Redis has the subscription: no warm-up, no retry.
    for round in 0..50u32 {
        let group = format!("race_{round}");
        let mut member = joiner.new_channel().await.expect("channel");
        joiner.group_add(&group, member.name()).await.expect("add");
        sender
            .group_send(&group, message(round))
            .await
            .expect("send");
        assert_eq!(next_n(&mut member).await, u64::from(round));
        joiner
            .group_discard(&group, member.name())
            .await
            .expect("discard");
    }
}

#[tokio::test]
async fn redis_layer_refuses_to_start_without_redis() {
    // Port 1 on loopback: nothing listens there.
    let mut config = RedisConfig::new(["redis://127.0.0.1:1"]);
    config.connect_timeout = std::time::Duration::from_millis(500);
    let err = match RedisChannelLayer::connect(config).await {
        Ok(_) => panic!("connected to nothing"),
        Err(err) => err.to_string(),
    };
    assert!(
        err.contains("cannot connect to Redis at redis://127.0.0.1:1"),
        "{err}"
    );
}

/// On Redis a named channel's capacity is checked in Redis, in the pipeline: the send that
/// overflows it is queued and dropped there, and the sends after it fail with `ChannelFull`
/// until the workers catch up; what was stored arrives whole and in order.
#[tokio::test]
async fn a_full_named_channel_on_redis_refuses_sends_until_drained() {
    let Some(url) = redis_url().await else { return };
    let layer = redis_layer(&url, &unique_prefix("full"), small()).await;
    for n in 0..3 {
        layer.send("jobs", message(n)).await.expect("room for 3");
    }
    let refused = within("a send to fail with ChannelFull", async {
        for n in 3.. {
            match layer.send("jobs", message(n)).await {
                Ok(()) => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
                Err(err) => return err,
            }
        }
        unreachable!("the loop only ends by returning")
    })
    .await;
    assert!(matches!(refused, Error::ChannelFull(_)), "{refused}");

    let mut worker = layer.receive_channel("jobs").await.expect("receive");
    for n in 0..3u64 {
        assert_eq!(next_n(&mut worker).await, n, "the first 3, in order");
    }
    nothing_more(&mut worker).await;
    within("sends to be taken again once drained", async {
        while layer.send("jobs", message(7)).await.is_err() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(next_n(&mut worker).await, 7);
}

/// Channels' `channel_capacity`: a named channel given its own capacity holds that many on
/// Redis while the layer's default (3 here) would have dropped the rest.
#[tokio::test]
async fn a_named_channel_with_its_own_capacity_holds_more_on_redis() {
    let Some(url) = redis_url().await else { return };
    let limits = small().channel_capacity("big-*", 6);
    let layer = redis_layer(&url, &unique_prefix("capacity"), limits).await;
    for n in 0..6 {
        layer
            .send("big-jobs", message(n))
            .await
            .expect("room for 6");
    }
    let mut worker = layer.receive_channel("big-jobs").await.expect("receive");
    for n in 0..6u64 {
        assert_eq!(next_n(&mut worker).await, n, "all 6, in order");
    }
    nothing_more(&mut worker).await;
}

/// A batch Redis answers too late may still be carried out by it: this process must not also
/// deliver it to its own members, or they get the message twice (Channels' layers deliver at
/// most once). Redis is paused past the layer's command timeout while a group message is on
/// its way.
#[tokio::test]
async fn a_group_message_redis_answers_late_reaches_a_member_once() {
    let Some(redis) = RedisProcess::start() else {
        return;
    };
    let mut config = RedisConfig::new([redis.url()]).prefix(unique_prefix("late"));
    config.command_timeout = std::time::Duration::from_millis(100);
    let layer = RedisChannelLayer::connect(config).await.expect("connect");
    let mut member = layer.new_channel().await.expect("a channel");
    layer
        .group_add("late", member.name())
        .await
        .expect("group_add");

    let paused = std::process::Command::new("redis-cli")
        .args([
            "-p",
            &redis.port.to_string(),
            "CLIENT",
            "PAUSE",
            "600",
            "ALL",
        ])
        .output()
        .expect("redis-cli");
    assert!(paused.status.success(), "{paused:?}");
    layer.group_send("late", message(1)).await.expect("send");
    assert_eq!(next_n(&mut member).await, 1);
    // Past the pause: a copy delivered here at the timeout would be followed by Redis' own.
    if let Ok(Some(envelope)) =
        tokio::time::timeout(std::time::Duration::from_millis(1500), member.recv()).await
    {
        panic!("delivered twice: {}", envelope.json());
    }
}
