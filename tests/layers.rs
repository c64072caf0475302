//! One conformance suite, run against every channel layer: the in-memory layer, the Redis layer
//! on a real Redis (`REDIS_URL`, default `redis://127.0.0.1:6379`) and the NATS layer on a real
//! NATS (`NATS_URL`, default `nats://127.0.0.1:4222`, else a private `nats-server`).

mod support;

use std::sync::Arc;

use serde_json::json;
use support::nats::{NatsProcess, nats};
use support::redis::{RedisProcess, redis_url, unique_prefix};
use support::redis_cluster::RedisCluster;
use support::*;
use switchboard::Error;
use switchboard::layer::{
    ChannelLayer, ChannelReceiver, Envelope, InMemoryChannelLayer, LayerConfig, LayerStatus,
    LogConfig, LogSlice, NatsChannelLayer, NatsConfig, Position, RedisChannelLayer, RedisConfig,
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

#[tokio::test]
async fn presence_on_the_in_memory_layer() {
    let layer = InMemoryChannelLayer::with_config(conformance::fast_presence());
    conformance::presence_is_shared(&layer, &layer).await;
}

#[tokio::test]
async fn presence_on_redis_across_two_processes() {
    let Some(url) = redis_url().await else { return };
    let prefix = unique_prefix("presence");
    let connect = || redis_layer(&url, &prefix, conformance::fast_presence());
    conformance::presence_is_shared(&connect().await, &connect().await).await;
}

/// Limits whose `logged*` groups keep a log of 5 messages.
fn logged() -> LayerConfig {
    LayerConfig::default().group_log(
        "logged*",
        LogConfig::new(5, std::time::Duration::from_secs(300)),
    )
}

fn offsets(slice: &LogSlice) -> Vec<u64> {
    slice
        .messages
        .iter()
        .map(|m| {
            m.position()
                .expect("a logged message has a position")
                .offset
        })
        .collect()
}

/// Group logs, on two "processes" of one engine (or one in-memory layer twice): messages of a
/// logged group are numbered in order for every member, the log keeps the newest, a read from a
/// position the log still has recovers exactly what follows, and anything else says it cannot.
async fn group_logs(sender: &impl ChannelLayer, reader: &impl ChannelLayer) {
    let mut member = reader.new_channel().await.expect("channel");
    reader
        .group_add("logged_room", member.name())
        .await
        .expect("add");
    reader
        .group_add("plain_room", member.name())
        .await
        .expect("add");
    for n in 1..=7 {
        sender
            .group_send("logged_room", message(n))
            .await
            .expect("send");
    }
    sender
        .group_send("plain_room", message(99))
        .await
        .expect("send");
    let mut epoch = None;
    for n in 1..=7 {
        let envelope = within("a logged message", member.recv())
            .await
            .expect("alive");
        let position = envelope.position().expect("positioned").clone();
        assert_eq!(position.offset, n);
        assert_eq!(*epoch.get_or_insert(position.epoch.clone()), position.epoch);
        assert!(
            envelope
                .text()
                .as_str()
                .ends_with(&format!(",\"offset\":{n}}}"))
        );
    }
    let plain = within("a plain message", member.recv())
        .await
        .expect("alive");
    assert!(plain.position().is_none(), "no log, no position");
    let epoch = epoch.expect("an epoch");

    let recent = reader
        .group_log("logged_room", None, 3)
        .await
        .expect("read");
    assert_eq!(offsets(&recent), [5, 6, 7]);
    assert_eq!(recent.head, Some(Position::new(epoch.clone(), 7)));
    assert!(!recent.recovered);

    let since = Position::new(epoch.clone(), 4);
    let found = reader
        .group_log("logged_room", Some(&since), 3)
        .await
        .expect("read");
    assert!(found.recovered);
    assert_eq!(offsets(&found), [5, 6, 7]);
    for lost in [
        Position::new(epoch.clone(), 1),
        Position::new("someOtherEpoch".into(), 4),
    ] {
        let slice = reader
            .group_log("logged_room", Some(&lost), 2)
            .await
            .expect("read");
        assert!(!slice.recovered, "{lost}");
        assert_eq!(offsets(&slice), [6, 7], "the newest instead");
    }
    let none = reader
        .group_log("plain_room", None, 10)
        .await
        .expect("read");
    assert!(none.head.is_none() && none.messages.is_empty());
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
async fn in_memory_group_logs_conform() {
    let layer = InMemoryChannelLayer::with_config(logged());
    group_logs(&layer, &layer).await;
}

#[tokio::test]
async fn redis_group_logs_conform_across_two_processes() {
    let Some(url) = redis_url().await else { return };
    let prefix = unique_prefix("logs");
    let one = redis_layer(&url, &prefix, logged()).await;
    let two = redis_layer(&url, &prefix, logged()).await;
    group_logs(&one, &two).await;
}

#[tokio::test]
async fn redis_layer_conforms() {
    let Some(url) = redis_url().await else { return };
    let prefix = unique_prefix("conformance");
    conformance::run(|| redis_layer(&url, &prefix, small())).await;
}

/// Two processes on one engine: a group spans both, a direct send crosses, a member that left
/// hears nothing more.
async fn two_processes_share_groups_and_direct_sends(
    one: &impl ChannelLayer,
    two: &impl ChannelLayer,
) {
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
    one.group_send("room", message(3)).await.expect("send");
    assert_eq!(next_n(&mut on_one).await, 3);
    nothing_more(&mut on_two).await;
}

/// Two workers of one named channel in two processes, a third process sending: each message
/// reaches exactly one of them.
async fn a_worker_gets_each_message_once(
    web: &impl ChannelLayer,
    worker_a: &impl ChannelLayer,
    worker_b: &impl ChannelLayer,
) {
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

/// `group_add` returns only once the engine has the subscription: no warm-up, no retry.
async fn a_group_send_right_after_a_remote_join_arrives(
    sender: &impl ChannelLayer,
    joiner: &impl ChannelLayer,
) {
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
async fn redis_layers_in_two_processes_share_groups_and_direct_sends() {
    let Some(url) = redis_url().await else { return };
    let prefix = unique_prefix("two");
    let connect = || redis_layer(&url, &prefix, LayerConfig::default());
    let (one, two) = (connect().await, connect().await);
    two_processes_share_groups_and_direct_sends(&one, &two).await;
    assert!(
        two.subscribed_groups().await.is_empty(),
        "the last local member left: unsubscribed"
    );
}

#[tokio::test]
async fn a_worker_in_one_process_gets_each_message_sent_by_another_once() {
    let Some(url) = redis_url().await else { return };
    let prefix = unique_prefix("worker");
    let connect = || redis_layer(&url, &prefix, LayerConfig::default());
    let (web, worker_a, worker_b) = (connect().await, connect().await, connect().await);
    a_worker_gets_each_message_once(&web, &worker_a, &worker_b).await;
}

#[tokio::test]
async fn a_group_send_right_after_a_remote_join_is_not_lost() {
    let Some(url) = redis_url().await else { return };
    let prefix = unique_prefix("join-race");
    let connect = || redis_layer(&url, &prefix, LayerConfig::default());
    let (sender, joiner) = (connect().await, connect().await);
    a_group_send_right_after_a_remote_join_arrives(&sender, &joiner).await;
}

#[tokio::test]
async fn redis_layer_refuses_to_start_without_redis() {
    // Port 1 on loopback: nothing listens there.
    let mut config = RedisConfig::new(["redis://127.0.0.1:1"]);
    config.connect_timeout = std::time::Duration::from_millis(500);
    let err = match RedisChannelLayer::connect(config).await {
        Ok(_) => panic!("connected to nothing"),
        Err(err) => err,
    };
    assert!(matches!(err, Error::Unavailable { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("at redis://127.0.0.1:1 is unavailable: cannot connect"),
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

/// A NATS layer on `url` under `prefix`, with these limits.
async fn nats_layer(url: &str, prefix: &str, limits: LayerConfig) -> NatsChannelLayer {
    let config = NatsConfig::new(url).prefix(prefix).layer(limits);
    NatsChannelLayer::connect(config).await.expect("connect")
}

/// The NATS layer keeps no group logs: messages carry no position and a read finds nothing.
#[tokio::test]
async fn nats_keeps_no_group_logs() {
    let Some(nats) = nats().await else { return };
    let layer = nats_layer(&nats.url, &unique_prefix("nats-logs"), logged()).await;
    let mut member = layer.new_channel().await.expect("channel");
    layer
        .group_add("logged_room", member.name())
        .await
        .expect("add");
    layer
        .group_send("logged_room", message(1))
        .await
        .expect("send");
    let envelope = within("a message", member.recv()).await.expect("alive");
    assert!(envelope.position().is_none());
    let slice = layer
        .group_log("logged_room", None, 10)
        .await
        .expect("read");
    assert!(slice.head.is_none() && !slice.recovered);
}

#[tokio::test]
async fn presence_on_nats_across_two_processes() {
    let Some(nats) = nats().await else { return };
    let prefix = unique_prefix("presence");
    let connect = || nats_layer(&nats.url, &prefix, conformance::fast_presence());
    conformance::presence_is_shared(&connect().await, &connect().await).await;
}

#[tokio::test]
async fn nats_layer_conforms() {
    let Some(nats) = nats().await else { return };
    let prefix = unique_prefix("conformance");
    conformance::run(|| nats_layer(&nats.url, &prefix, small())).await;
}

#[tokio::test]
async fn nats_layers_in_two_processes_share_groups_and_direct_sends() {
    let Some(nats) = nats().await else { return };
    let prefix = unique_prefix("two");
    let connect = || nats_layer(&nats.url, &prefix, LayerConfig::default());
    let (one, two) = (connect().await, connect().await);
    two_processes_share_groups_and_direct_sends(&one, &two).await;
    assert!(
        two.subscribed_groups().await.is_empty(),
        "the last local member left: unsubscribed"
    );
}

#[tokio::test]
async fn a_nats_worker_queue_group_gets_each_message_once() {
    let Some(nats) = nats().await else { return };
    let prefix = unique_prefix("worker");
    let connect = || nats_layer(&nats.url, &prefix, LayerConfig::default());
    let (web, worker_a, worker_b) = (connect().await, connect().await, connect().await);
    a_worker_gets_each_message_once(&web, &worker_a, &worker_b).await;
}

#[tokio::test]
async fn a_group_send_right_after_a_remote_join_on_nats_is_not_lost() {
    let Some(nats) = nats().await else { return };
    let prefix = unique_prefix("join-race");
    let connect = || nats_layer(&nats.url, &prefix, LayerConfig::default());
    let (sender, joiner) = (connect().await, connect().await);
    a_group_send_right_after_a_remote_join_arrives(&sender, &joiner).await;
}

#[tokio::test]
async fn nats_layer_refuses_to_start_without_nats() {
    let mut config = NatsConfig::new("nats://127.0.0.1:1");
    config.connect_timeout = std::time::Duration::from_millis(500);
    let err = match NatsChannelLayer::connect(config).await {
        Ok(_) => panic!("connected to nothing"),
        Err(err) => err.to_string(),
    };
    assert!(
        err.contains("cannot connect to NATS at nats://127.0.0.1:1"),
        "{err}"
    );
}

/// A NATS outage: the layer says so, keeps delivering to this process' own members, and once
/// the server is back its groups are subscribed again (including one joined meanwhile).
#[tokio::test]
async fn a_nats_restart_is_survived_by_the_layer() {
    let Some(mut server) = NatsProcess::start() else {
        return;
    };
    let prefix = unique_prefix("nats-outage");
    let one = nats_layer(&server.url(), &prefix, LayerConfig::default()).await;
    let two = nats_layer(&server.url(), &prefix, LayerConfig::default()).await;
    let mut status = one.status().expect("a status");
    let mut on_one = one.new_channel().await.expect("channel");
    let mut on_two = two.new_channel().await.expect("channel");
    one.group_add("before", on_one.name()).await.expect("add");
    two.group_add("before", on_two.name()).await.expect("add");

    server.stop();
    within(
        "layer.disconnected",
        status.wait_for(|s| *s == LayerStatus::Disconnected),
    )
    .await
    .expect("status");
    one.group_send("before", message(1))
        .await
        .expect("delivered locally");
    assert_eq!(next_n(&mut on_one).await, 1);
    let mut joined_meanwhile = one.new_channel().await.expect("channel");
    one.group_add("during", joined_meanwhile.name())
        .await
        .expect("a join while NATS is away");
    let mut also_during = two.new_channel().await.expect("channel");
    two.group_add("during", also_during.name())
        .await
        .expect("a join while NATS is away");

    server.restart();
    within(
        "layer.reconnected",
        status.wait_for(|s| *s == LayerStatus::Reconnected),
    )
    .await
    .expect("status");
    let mut two_status = two.status().expect("a status");
    within(
        "the second layer back",
        two_status.wait_for(|s| *s == LayerStatus::Reconnected),
    )
    .await
    .expect("status");
    two.group_send("before", message(2)).await.expect("send");
    assert_eq!(next_n(&mut on_one).await, 2);
    assert_eq!(next_n(&mut on_two).await, 2);
    one.group_send("during", message(3)).await.expect("send");
    assert_eq!(next_n(&mut joined_meanwhile).await, 3);
    assert_eq!(next_n(&mut also_during).await, 3);
}

/// A Redis Cluster layer through `nodes` under `prefix`, with these limits.
async fn cluster_layer(nodes: &[String], prefix: &str, limits: LayerConfig) -> RedisChannelLayer {
    let config = RedisConfig::cluster(nodes.to_vec())
        .prefix(prefix)
        .layer(limits);
    RedisChannelLayer::connect(config).await.expect("connect")
}

#[tokio::test]
async fn redis_cluster_layer_conforms() {
    let Some(cluster) = RedisCluster::shared() else {
        return;
    };
    let prefix = unique_prefix("cluster-conformance");
    let nodes = cluster.nodes();
    conformance::run(|| cluster_layer(&nodes, &prefix, small())).await;
}

#[tokio::test]
async fn presence_on_a_redis_cluster_across_two_processes() {
    let Some(cluster) = RedisCluster::shared() else {
        return;
    };
    let prefix = unique_prefix("cluster-presence");
    let nodes = cluster.nodes();
    let connect = || cluster_layer(&nodes, &prefix, conformance::fast_presence());
    conformance::presence_is_shared(&connect().await, &connect().await).await;
}

#[tokio::test]
async fn redis_cluster_group_logs_conform_across_two_processes() {
    let Some(cluster) = RedisCluster::shared() else {
        return;
    };
    let prefix = unique_prefix("cluster-logs");
    let nodes = cluster.nodes();
    let one = cluster_layer(&nodes, &prefix, logged()).await;
    let two = cluster_layer(&nodes, &prefix, logged()).await;
    group_logs(&one, &two).await;
}

/// On a cluster, groups travel over a few sharded partition channels, not one per group.
#[tokio::test]
async fn redis_cluster_layers_in_two_processes_share_groups_over_partitions() {
    let Some(cluster) = RedisCluster::shared() else {
        return;
    };
    let prefix = unique_prefix("cluster-two");
    let nodes = cluster.nodes();
    let connect = || cluster_layer(&nodes, &prefix, LayerConfig::default());
    let (one, two) = (connect().await, connect().await);
    two_processes_share_groups_and_direct_sends(&one, &two).await;
    assert!(two.subscribed_channels().await.is_empty(), "unsubscribed");

    let three = connect().await;
    let mut members = Vec::new();
    for n in 0..100 {
        let member = three.new_channel().await.expect("channel");
        three
            .group_add(&format!("room_{n}"), member.name())
            .await
            .expect("add");
        members.push(member);
    }
    let channels = three.subscribed_channels().await;
    assert_eq!(three.subscribed_groups().await.len(), 100);
    assert_eq!(channels.len(), 16, "one per partition: {channels:?}");
    let sent = "room_42";
    two.group_send(sent, message(42)).await.expect("send");
    assert_eq!(next_n(&mut members[42]).await, 42);
    for (n, member) in members.iter_mut().enumerate() {
        if n != 42 {
            assert!(
                member.try_recv().is_none(),
                "room_{n} heard {sent}'s message"
            );
        }
    }
}

#[tokio::test]
async fn a_redis_cluster_worker_gets_each_message_once() {
    let Some(cluster) = RedisCluster::shared() else {
        return;
    };
    let prefix = unique_prefix("cluster-worker");
    let nodes = cluster.nodes();
    let connect = || cluster_layer(&nodes, &prefix, LayerConfig::default());
    let (web, worker_a, worker_b) = (connect().await, connect().await, connect().await);
    a_worker_gets_each_message_once(&web, &worker_a, &worker_b).await;
}

#[tokio::test]
async fn a_group_send_right_after_a_remote_join_on_a_cluster_is_not_lost() {
    let Some(cluster) = RedisCluster::shared() else {
        return;
    };
    let prefix = unique_prefix("cluster-join-race");
    let nodes = cluster.nodes();
    let connect = || cluster_layer(&nodes, &prefix, LayerConfig::default());
    let (sender, joiner) = (connect().await, connect().await);
    a_group_send_right_after_a_remote_join_arrives(&sender, &joiner).await;
}
