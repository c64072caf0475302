//! Several chat-app servers sharing rooms through a real Redis Cluster (3 masters, 3
//! replicas) that the tests start: chat, history, and a master's failover.

mod support;

use support::chat::*;
use support::redis::unique_prefix;
use support::redis_cluster::RedisCluster;
use switchboard::layer::RedisConfig;

#[tokio::test]
async fn members_on_two_processes_chat_as_one_room_over_a_cluster() {
    let Some(cluster) = RedisCluster::shared() else {
        return;
    };
    let prefix = unique_prefix("cluster-two-servers");
    let one = ChatNode::cluster(&cluster.nodes(), &prefix).await;
    let two = ChatNode::cluster(&cluster.nodes(), &prefix).await;
    two_processes_chat_as_one_room(&one, &two).await;
}

#[tokio::test]
async fn a_burst_of_500_over_a_cluster_arrives_complete_and_in_order_per_sender() {
    let Some(cluster) = RedisCluster::shared() else {
        return;
    };
    let prefix = unique_prefix("cluster-burst");
    let one = ChatNode::cluster(&cluster.nodes(), &prefix).await;
    let two = ChatNode::cluster(&cluster.nodes(), &prefix).await;
    a_burst_of_500_arrives_complete_and_in_order(&one, &two).await;
}

/// The room's log lives in the cluster: a joiner on the other process gets the history, and a
/// member cut off recovers what it missed from the other process' messages.
#[tokio::test]
async fn history_and_recovery_work_across_processes_over_a_cluster() {
    let Some(cluster) = RedisCluster::shared() else {
        return;
    };
    let prefix = unique_prefix("cluster-history");
    let one = ChatNode::cluster(&cluster.nodes(), &prefix).await;
    let two = ChatNode::cluster(&cluster.nodes(), &prefix).await;
    let mut ann = one.connect(&room("kept")).await;
    let mut last = serde_json::Value::Null;
    for n in 0..3 {
        say(&mut ann, &format!("m{n}")).await;
        last = next_of(&mut ann, "chat.message").await;
        assert_eq!(last["message"], format!("m{n}"));
    }
    let mut bob = two.connect(&room("kept")).await;
    let event = next_of(&mut bob, "chat.history").await;
    let texts: Vec<&str> = event["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["message"].as_str())
        .collect();
    assert_eq!(texts, ["m0", "m1", "m2"]);

    drop(ann);
    for n in 3..6 {
        say(&mut bob, &format!("m{n}")).await;
        assert_eq!(heard(&mut bob).await.message, format!("m{n}"));
    }
    let since = format!("{}:{}", last["epoch"].as_str().unwrap(), last["offset"]);
    let mut ann = one.connect(&format!("/ws/chat/kept/?since={since}")).await;
    let recovered = next_of(&mut ann, "chat.recovered").await;
    assert_eq!(recovered["recovered"], true);
    for n in 3..6 {
        assert_eq!(heard(&mut ann).await.message, format!("m{n}"));
    }
}

/// The master holding the room's partition dies: its replica takes over, every member is told
/// the layer went and came back, and the two processes chat again; then the old master comes
/// back (as a replica) and nothing changes for the chat.
#[tokio::test]
async fn a_master_failover_is_survived_and_announced() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let prefix = unique_prefix("cluster-failover");
    let one = ChatNode::cluster(&cluster.nodes(), &prefix).await;
    let two = ChatNode::cluster(&cluster.nodes(), &prefix).await;
    // The master of the partition channel of the room `outage` (group `chat_outage`).
    let channel = RedisConfig::cluster(cluster.nodes())
        .prefix(&prefix)
        .group_channel("chat_outage");
    let master = cluster.master_of(&channel);
    an_outage_is_survived_and_announced(
        &one,
        &two,
        || cluster.stop(master),
        || cluster.wait_until_healthy().expect("the replica took over"),
    )
    .await;
    assert_ne!(cluster.master_of(&channel), master, "a replica took over");

    cluster.restart(master);
    cluster
        .wait_until_healthy()
        .expect("the old master rejoined");
    let mut ann = one.connect(&room("after-restart")).await;
    let mut bob = two.connect(&room("after-restart")).await;
    say(&mut bob, "still here").await;
    assert_eq!(heard(&mut ann).await.message, "still here");
    assert_eq!(heard(&mut bob).await.message, "still here");
}
