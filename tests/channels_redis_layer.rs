//! The channels_redis layers against a real Redis (`REDIS_URL`, default
//! `redis://127.0.0.1:6379`, and private `redis-server`s): the conformance suite of every
//! layer, then what is particular to channels_redis' formats. Django itself is in
//! `tests/django.rs`.

mod support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use support::redis::{RedisProcess, redis_url, unique_prefix};
use support::*;
use switchboard::Error;
use switchboard::layer::channels_redis::{CoreChannelLayer, PubSubChannelLayer};
use switchboard::layer::{
    ChannelLayer, ChannelReceiver, ChannelsRedisConfig, Envelope, Flavour, LayerConfig, LayerStatus,
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

fn config(urls: &[String], prefix: &str, limits: LayerConfig) -> ChannelsRedisConfig {
    ChannelsRedisConfig::new(urls.to_vec())
        .prefix(prefix)
        .layer(limits)
}

async fn core(urls: &[String], prefix: &str, limits: LayerConfig) -> CoreChannelLayer {
    CoreChannelLayer::connect(config(urls, prefix, limits))
        .await
        .expect("connect")
}

async fn pubsub(urls: &[String], prefix: &str, limits: LayerConfig) -> PubSubChannelLayer {
    PubSubChannelLayer::connect(config(urls, prefix, limits).flavour(Flavour::PubSub))
        .await
        .expect("connect")
}

fn small() -> LayerConfig {
    LayerConfig::default().capacity(3)
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test]
async fn presence_on_the_core_flavour_across_two_processes() {
    let Some(url) = redis_url().await else { return };
    let (urls, prefix) = ([url], unique_prefix("cr-core-presence"));
    let connect = || core(&urls, &prefix, conformance::fast_presence());
    conformance::presence_is_shared(&connect().await, &connect().await).await;
}

#[tokio::test]
async fn presence_on_the_pubsub_flavour_across_two_processes() {
    let Some(url) = redis_url().await else { return };
    let (urls, prefix) = ([url], unique_prefix("cr-pubsub-presence"));
    let connect = || pubsub(&urls, &prefix, conformance::fast_presence());
    conformance::presence_is_shared(&connect().await, &connect().await).await;
}

#[tokio::test]
async fn core_layer_conforms() {
    let Some(url) = redis_url().await else { return };
    let prefix = unique_prefix("cr-core");
    conformance::run(|| core(std::slice::from_ref(&url), &prefix, small())).await;
}

#[tokio::test]
async fn pubsub_layer_conforms() {
    let Some(url) = redis_url().await else { return };
    let prefix = unique_prefix("cr-pubsub");
    conformance::run(|| pubsub(std::slice::from_ref(&url), &prefix, small())).await;
}

/// Two processes on each flavour: group sends and direct sends both ways.
#[tokio::test]
async fn two_processes_share_groups_and_direct_sends_on_both_flavours() {
    let Some(url) = redis_url().await else { return };
    let urls = [url];
    let core_pair = (
        core(&urls, &unique_prefix("cr-two"), LayerConfig::default()).await,
        core(&urls, &unique_prefix("cr-two"), LayerConfig::default()).await,
    );
    shares(&core_pair.0, &core_pair.1).await;
    let pubsub_pair = (
        pubsub(&urls, &unique_prefix("cr-two-ps"), LayerConfig::default()).await,
        pubsub(&urls, &unique_prefix("cr-two-ps"), LayerConfig::default()).await,
    );
    shares(&pubsub_pair.0, &pubsub_pair.1).await;
}

async fn shares(one: &impl ChannelLayer, two: &impl ChannelLayer) {
    let mut on_one = one.new_channel().await.expect("channel");
    let mut on_two = two.new_channel().await.expect("channel");
    one.group_add("room", on_one.name()).await.expect("add");
    two.group_add("room", on_two.name()).await.expect("add");
    for n in 0..3 {
        one.group_send("room", message(n)).await.expect("send");
    }
    for n in 0..3 {
        assert_eq!(next_n(&mut on_one).await, n);
        assert_eq!(next_n(&mut on_two).await, n, "in order across processes");
    }
    two.send(on_one.name(), message(7)).await.expect("direct");
    assert_eq!(next_n(&mut on_one).await, 7);
    two.group_discard("room", on_two.name())
        .await
        .expect("discard");
    one.group_send("room", message(8)).await.expect("send");
    assert_eq!(next_n(&mut on_one).await, 8);
    nothing_more(&mut on_two).await;
}

/// Named channels on the core layer are queues: each message reaches one worker, whichever
/// process it is in; a full one refuses sends with `ChannelFull`.
#[tokio::test]
async fn core_named_channels_are_shared_queues_with_a_capacity() {
    let Some(url) = redis_url().await else { return };
    let urls = [url];
    let prefix = unique_prefix("cr-jobs");
    let web = core(&urls, &prefix, small()).await;
    for n in 0..3 {
        web.send("jobs", message(n)).await.expect("room for 3");
    }
    let err = web.send("jobs", message(3)).await.expect_err("full");
    assert!(matches!(err, Error::ChannelFull(_)), "{err}");
    let (a, b) = (
        core(&urls, &prefix, small()).await,
        core(&urls, &prefix, small()).await,
    );
    let mut worker_a = a.receive_channel("jobs").await.expect("receive");
    let mut worker_b = b.receive_channel("jobs").await.expect("receive");
    // Sent as the workers free room, while they read.
    let sender = tokio::spawn(async move {
        for n in 3..12 {
            while web.send("jobs", message(n)).await.is_err() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    let mut seen = Vec::new();
    while seen.len() < 12 {
        tokio::select! {
            Some(envelope) = worker_a.recv() => seen.push(envelope.json().to_owned()),
            Some(envelope) = worker_b.recv() => seen.push(envelope.json().to_owned()),
            _ = tokio::time::sleep(TIMEOUT) => panic!("only {} of 12 arrived", seen.len()),
        }
    }
    within("the sender", sender).await.expect("sender");
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 12, "each message reached exactly one worker");
    nothing_more(&mut worker_a).await;
    nothing_more(&mut worker_b).await;
}

/// channels_redis trims group members older than `group_expiry` at every group send, connected
/// or not: this layer adds its members again before that.
#[tokio::test]
async fn core_memberships_outlive_group_expiry_while_connected() {
    let Some(url) = redis_url().await else { return };
    let urls = [url];
    let prefix = unique_prefix("cr-expiry");
    let limits = LayerConfig::default().group_expiry(Duration::from_secs(2));
    let (member_side, sender) = (
        core(&urls, &prefix, limits.clone()).await,
        core(&urls, &prefix, limits).await,
    );
    let mut member = member_side.new_channel().await.expect("channel");
    member_side
        .group_add("long", member.name())
        .await
        .expect("add");
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    sender.group_send("long", message(1)).await.expect("send");
    assert_eq!(next_n(&mut member).await, 1);
    member_side
        .group_send("long", message(2))
        .await
        .expect("send");
    assert_eq!(next_n(&mut member).await, 2, "renewed in the process too");
}

/// Names land where channels_redis puts them over several hosts: groups on the host of their
/// name, a process' set on the host of its name, named channels in turn; and both layers of a
/// pair, sharded alike, hear each other.
#[tokio::test]
async fn core_shards_over_several_hosts_as_channels_redis_does() {
    let (Some(first), Some(second)) = (RedisProcess::start(), RedisProcess::start()) else {
        return;
    };
    let urls = [first.url(), second.url()];
    let ports = [first.port, second.port];
    let (one, two) = (
        core(&urls, "asgi", LayerConfig::default()).await,
        core(&urls, "asgi", LayerConfig::default()).await,
    );
    // chat_0..chat_7 hash to host 0, chat_8 and chat_9 to host 1 (as channels_redis computes).
    let mut members = Vec::new();
    for room in ["chat_0", "chat_8"] {
        let mut a = one.new_channel().await.expect("channel");
        let mut b = two.new_channel().await.expect("channel");
        one.group_add(room, a.name()).await.expect("add");
        two.group_add(room, b.name()).await.expect("add");
        one.group_send(room, message(1)).await.expect("send");
        assert_eq!(next_n(&mut a).await, 1);
        assert_eq!(next_n(&mut b).await, 1);
        two.send(a.name(), message(2)).await.expect("direct");
        assert_eq!(next_n(&mut a).await, 2);
        members.push((a, b));
    }
    assert_eq!(redis_cli(ports[0], &["EXISTS", "asgi:group:chat_0"]), "1");
    assert_eq!(redis_cli(ports[1], &["EXISTS", "asgi:group:chat_0"]), "0");
    assert_eq!(redis_cli(ports[1], &["EXISTS", "asgi:group:chat_8"]), "1");
    assert_eq!(redis_cli(ports[0], &["EXISTS", "asgi:group:chat_8"]), "0");
}

/// `symmetric_encryption_keys`: a process reads what is encrypted with any of its keys and
/// skips what it cannot decrypt, without harm.
#[tokio::test]
async fn core_encryption_with_key_rotation() {
    let Some(url) = redis_url().await else { return };
    let urls = [url];
    let prefix = unique_prefix("cr-fernet");
    let keyed = |keys: &[&str]| {
        config(&urls, &prefix, LayerConfig::default())
            .symmetric_encryption_keys(keys.iter().copied())
    };
    let old = CoreChannelLayer::connect(keyed(&["old"])).await.expect("c");
    let rotated = CoreChannelLayer::connect(keyed(&["new", "old"]))
        .await
        .expect("c");
    let stranger = CoreChannelLayer::connect(keyed(&["other"]))
        .await
        .expect("c");
    let mut member = rotated.new_channel().await.expect("channel");
    rotated
        .group_add("secret", member.name())
        .await
        .expect("add");
    stranger
        .group_send("secret", message(1))
        .await
        .expect("send");
    old.group_send("secret", message(2)).await.expect("send");
    assert_eq!(next_n(&mut member).await, 2, "the stranger's is skipped");
    let mut old_member = old.new_channel().await.expect("channel");
    rotated
        .send(old_member.name(), message(3))
        .await
        .expect("send");
    nothing_more(&mut old_member).await;
    old.send(member.name(), message(4)).await.expect("send");
    assert_eq!(next_n(&mut member).await, 4);
}

/// Whatever lands in a process' set — not msgpack, not a map, a map without `__asgi_channel__`,
/// an unknown type — is skipped, and what follows is delivered.
#[tokio::test]
async fn core_skips_malformed_messages() {
    let Some(redis) = RedisProcess::start() else {
        return;
    };
    let urls = [redis.url()];
    let layer = core(&urls, "asgi", LayerConfig::default()).await;
    let mut member = layer.new_channel().await.expect("channel");
    let key = layer.process_key().to_owned();
    let now = format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs_f64()
    );
    for garbage in [
        "short",
        "123456789012not msgpack at all",
        "123456789012\u{92}\u{01}\u{02}",
        "123456789012\u{81}\u{a4}type\u{a1}x",
    ] {
        redis_cli(redis.port, &["ZADD", &key, &now, garbage]);
    }
    let other = core(&urls, "asgi", LayerConfig::default()).await;
    other.send(member.name(), message(5)).await.expect("send");
    assert_eq!(next_n(&mut member).await, 5);
}

/// A Redis restart loses every membership: they are added again, and the layer says it is back.
#[tokio::test]
async fn core_memberships_come_back_after_a_redis_restart() {
    let Some(mut redis) = RedisProcess::start() else {
        return;
    };
    let urls = [redis.url()];
    let mut cfg = config(&urls, "asgi", LayerConfig::default());
    cfg.command_timeout = Duration::from_millis(500);
    let layer = CoreChannelLayer::connect(cfg.clone())
        .await
        .expect("connect");
    let mut status = layer.status().expect("a status");
    let mut member = layer.new_channel().await.expect("channel");
    layer.group_add("stays", member.name()).await.expect("add");
    redis.restart();
    within("the layer to say it is back", async {
        loop {
            status.changed().await.expect("status");
            if *status.borrow() == LayerStatus::Reconnected {
                return;
            }
        }
    })
    .await;
    let sender = CoreChannelLayer::connect(cfg).await.expect("connect");
    sender.group_send("stays", message(9)).await.expect("send");
    assert_eq!(next_n(&mut member).await, 9);
}

/// On pub/sub, a Redis restart loses every subscription: fred subscribes again (groups and this
/// process' channel pattern) before the layer says it is back.
#[tokio::test]
async fn pubsub_subscriptions_come_back_after_a_redis_restart() {
    let Some(mut redis) = RedisProcess::start() else {
        return;
    };
    let urls = [redis.url()];
    let mut cfg = config(&urls, "asgi", LayerConfig::default()).flavour(Flavour::PubSub);
    cfg.command_timeout = Duration::from_millis(500);
    let layer = PubSubChannelLayer::connect(cfg.clone())
        .await
        .expect("connect");
    let mut status = layer.status().expect("a status");
    let mut member = layer.new_channel().await.expect("channel");
    layer.group_add("stays", member.name()).await.expect("add");
    redis.restart();
    within("the layer to say it is back", async {
        loop {
            status.changed().await.expect("status");
            if *status.borrow() == LayerStatus::Reconnected {
                return;
            }
        }
    })
    .await;
    let sender = PubSubChannelLayer::connect(cfg).await.expect("connect");
    sender.group_send("stays", message(1)).await.expect("send");
    assert_eq!(next_n(&mut member).await, 1);
    sender.send(member.name(), message(2)).await.expect("send");
    assert_eq!(next_n(&mut member).await, 2);
}

/// On pub/sub a named channel is a broadcast (channels_redis' semantics): every receiver, in
/// every process, gets every message.
#[tokio::test]
async fn pubsub_named_channels_reach_every_receiver() {
    let Some(url) = redis_url().await else { return };
    let urls = [url];
    let prefix = unique_prefix("cr-ps-named");
    let (a, b) = (
        pubsub(&urls, &prefix, LayerConfig::default()).await,
        pubsub(&urls, &prefix, LayerConfig::default()).await,
    );
    let name = format!("ps-jobs-{}", std::process::id());
    let mut on_a = a.receive_channel(&name).await.expect("receive");
    let mut on_b = b.receive_channel(&name).await.expect("receive");
    a.send(&name, message(1)).await.expect("send");
    assert_eq!(next_n(&mut on_a).await, 1);
    assert_eq!(next_n(&mut on_b).await, 1);
}
