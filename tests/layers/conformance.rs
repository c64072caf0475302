//! The conformance suite every channel layer passes, included by the tests of each layer.

use std::sync::Arc;

use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;
use switchboard::Error;

use switchboard::layer::{
    ChannelLayer, ChannelReceiver, Envelope, LayerConfig, PresenceConfig, PresenceEntry,
    PresenceEvent,
};

use crate::support::{QUIET, TIMEOUT, within};

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

/// Every test of the suite, in order, on a layer made by `make` (capacity 3).
pub async fn run<L, F, Fut>(make: F)
where
    L: ChannelLayer,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = L>,
{
    unique_names(&make().await).await;
    direct_send(&make().await).await;
    channel_full(&make().await).await;
    group_fan_out(&make().await).await;
    discard(&make().await).await;
    full_member_misses_only_its_message(&make().await).await;
    invalid_names(&make().await).await;
    released_channel(&make().await).await;
    named_channel(&make().await).await;
}

async fn unique_names(layer: &impl ChannelLayer) {
    let a = layer.new_channel().await.expect("channel");
    let b = layer.new_channel().await.expect("channel");
    assert_ne!(a.name(), b.name());
    switchboard::layer::validate_channel_name(a.name()).expect("valid name");
}

async fn direct_send(layer: &impl ChannelLayer) {
    let mut rx = layer.new_channel().await.expect("channel");
    layer.send(rx.name(), message(1)).await.expect("send");
    layer.send(rx.name(), message(2)).await.expect("send");
    assert_eq!(next_n(&mut rx).await, 1);
    assert_eq!(next_n(&mut rx).await, 2);
    layer
        .send("specific.nobody!1", message(3))
        .await
        .expect("a send to nobody is dropped silently");
}

async fn channel_full(layer: &impl ChannelLayer) {
    let mut rx = layer.new_channel().await.expect("channel");
    for n in 0..3 {
        layer.send(rx.name(), message(n)).await.expect("send");
    }
    let err = layer.send(rx.name(), message(9)).await.expect_err("full");
    assert!(matches!(err, Error::ChannelFull(_)), "{err}");
    assert_eq!(next_n(&mut rx).await, 0);
}

async fn group_fan_out(layer: &impl ChannelLayer) {
    let mut members = Vec::new();
    for _ in 0..5 {
        let rx = layer.new_channel().await.expect("channel");
        layer.group_add("conf_room", rx.name()).await.expect("add");
        members.push(rx);
    }
    let mut outsider = layer.new_channel().await.expect("channel");
    layer
        .group_send("conf_room", message(7))
        .await
        .expect("group send");
    layer
        .group_send("conf_room", message(8))
        .await
        .expect("group send");
    for rx in &mut members {
        assert_eq!(next_n(rx).await, 7);
        assert_eq!(next_n(rx).await, 8);
    }
    nothing_more(&mut outsider).await;
    layer
        .group_send("conf_empty", message(1))
        .await
        .expect("sending to an empty group is fine");
}

async fn discard(layer: &impl ChannelLayer) {
    let mut stays = layer.new_channel().await.expect("channel");
    let mut leaves = layer.new_channel().await.expect("channel");
    layer
        .group_add("conf_discard", stays.name())
        .await
        .expect("add");
    layer
        .group_add("conf_discard", leaves.name())
        .await
        .expect("add");
    layer
        .group_add("conf_discard", leaves.name())
        .await
        .expect("adding twice is fine");
    layer
        .group_discard("conf_discard", leaves.name())
        .await
        .expect("discard");
    layer
        .group_discard("conf_discard", leaves.name())
        .await
        .expect("discarding a non-member is fine");
    layer
        .group_send("conf_discard", message(1))
        .await
        .expect("send");
    assert_eq!(next_n(&mut stays).await, 1);
    nothing_more(&mut leaves).await;
}

async fn full_member_misses_only_its_message(layer: &impl ChannelLayer) {
    let mut slow = layer.new_channel().await.expect("channel");
    let mut fast = layer.new_channel().await.expect("channel");
    layer
        .group_add("conf_slow", slow.name())
        .await
        .expect("add");
    layer
        .group_add("conf_slow", fast.name())
        .await
        .expect("add");
    for n in 0..5 {
        layer
            .group_send("conf_slow", message(n))
            .await
            .expect("send");
        assert_eq!(next_n(&mut fast).await, u64::from(n));
    }
    for n in 0..3 {
        assert_eq!(
            next_n(&mut slow).await,
            n,
            "the first messages up to capacity"
        );
    }
    nothing_more(&mut slow).await;
}

async fn invalid_names(layer: &impl ChannelLayer) {
    let rx = layer.new_channel().await.expect("channel");
    for group in ["", "has space", "ünïcode", &"g".repeat(100)] {
        let err = layer
            .group_add(group, rx.name())
            .await
            .expect_err("invalid group");
        assert!(matches!(err, Error::InvalidName { .. }), "{err}");
        assert!(layer.group_send(group, message(1)).await.is_err());
    }
    assert!(layer.send("bad name", message(1)).await.is_err());
}

async fn released_channel(layer: &impl ChannelLayer) {
    let rx = layer.new_channel().await.expect("channel");
    let name = rx.name().to_owned();
    layer.group_add("conf_release", &name).await.expect("add");
    drop(rx);
    layer
        .group_send("conf_release", message(1))
        .await
        .expect("send to a group whose member is gone");
    layer
        .send(&name, message(2))
        .await
        .expect("send to a released channel is dropped");
}

async fn named_channel(layer: &impl ChannelLayer) {
    let name = format!("conf-jobs-{}", std::process::id());
    let mut worker = layer
        .receive_channel(&name)
        .await
        .expect("receive on a named channel");
    assert!(
        layer.receive_channel("specific.x!1").await.is_err(),
        "specific names are not for workers"
    );
    for n in 0..3 {
        layer
            .send(&name, message(n))
            .await
            .expect("send to the worker");
    }
    for n in 0..3u64 {
        assert_eq!(next_n(&mut worker).await, n);
    }
    nothing_more(&mut worker).await;
}

/// Presence fast enough for tests: changes every 50 ms, a process silent for 2 s is gone.
pub fn fast_presence() -> LayerConfig {
    LayerConfig::default().presence(
        PresenceConfig::default()
            .interval(Duration::from_millis(50))
            .heartbeat(Duration::from_millis(500))
            .timeout(Duration::from_secs(2)),
    )
}

fn keys(entries: &[PresenceEntry]) -> Vec<(String, usize)> {
    entries
        .iter()
        .map(|e| (e.key.clone(), e.metas.len()))
        .collect()
}

/// Applies `watcher`'s presence events until it sees `expected` (key, connections).
async fn presence_until(
    watcher: &mut ChannelReceiver,
    seen: &mut BTreeMap<String, usize>,
    expected: &[(&str, usize)],
) {
    let expected: BTreeMap<String, usize> = expected
        .iter()
        .map(|(key, n)| ((*key).to_owned(), *n))
        .collect();
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while *seen != expected {
        let Ok(Some(envelope)) = tokio::time::timeout_at(deadline, watcher.recv()).await else {
            panic!("the watcher sees {seen:?}, not {expected:?}");
        };
        match &**envelope.presence_event().expect("a presence event") {
            PresenceEvent::State { entries, .. } => {
                *seen = keys(entries).into_iter().collect();
            }
            PresenceEvent::Diff { joins, leaves, .. } => {
                for key in leaves {
                    seen.remove(key);
                }
                seen.extend(keys(joins));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Presence across two processes (or one, given twice): entries tracked on either are listed
/// alike on both, watchers on both get the state and then the diffs, and an untracked
/// connection leaves everyone's list.
pub async fn presence_is_shared(one: &impl ChannelLayer, two: &impl ChannelLayer) {
    let (tracker_one, tracker_two) = (
        one.presence_tracker().expect("a tracker"),
        two.presence_tracker().expect("a tracker"),
    );
    let mut amy = one.new_channel().await.expect("channel");
    let mut bob = two.new_channel().await.expect("channel");
    let bob_tab = two.new_channel().await.expect("channel");
    tracker_one
        .track("room", amy.name(), "amy", json!({"on": 1}))
        .await
        .expect("track");
    tracker_one.watch("room", amy.name()).await.expect("watch");
    tracker_two
        .track("room", bob.name(), "bob", json!({"on": 2}))
        .await
        .expect("track");
    tracker_two
        .track("room", bob_tab.name(), "bob", json!({"on": 2}))
        .await
        .expect("track");
    tracker_two.watch("room", bob.name()).await.expect("watch");
    let everyone = [("amy", 1), ("bob", 2)];
    let (mut seen_by_amy, mut seen_by_bob) = Default::default();
    presence_until(&mut amy, &mut seen_by_amy, &everyone).await;
    presence_until(&mut bob, &mut seen_by_bob, &everyone).await;
    let listed = keys(&one.presence("room").await.expect("list"));
    assert_eq!(listed, keys(&two.presence("room").await.expect("list")));
    assert_eq!(listed, [("amy".into(), 1), ("bob".into(), 2)]);

    tracker_two.forget(bob_tab.name());
    presence_until(&mut amy, &mut seen_by_amy, &[("amy", 1), ("bob", 1)]).await;
    tracker_two
        .untrack("room", bob.name())
        .await
        .expect("untrack");
    presence_until(&mut amy, &mut seen_by_amy, &[("amy", 1)]).await;
    presence_until(&mut bob, &mut seen_by_bob, &[("amy", 1)]).await;
    tracker_one.forget(amy.name());
    tracker_two.forget(bob.name());
    assert!(
        one.presence("elsewhere").await.expect("list").is_empty(),
        "a group nobody is in"
    );
}
