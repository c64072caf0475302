//! The conformance suite every channel layer passes, included by the tests of each layer.

use std::sync::Arc;

use serde_json::json;
use switchboard::Error;
use switchboard::layer::{ChannelLayer, ChannelReceiver, Envelope};

use crate::support::{QUIET, within};

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
