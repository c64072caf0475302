//! The slow-client policy over real sockets: a member that does not read is closed with 1013,
//! gets what was on its way and the close frame when it reads again, and the others lose
//! nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use switchboard::layer::{ChannelLayer, Envelope};
use switchboard::limits::SlowClientPolicy;
use switchboard::prelude::*;

use crate::room::{Said, drain_until_close, non_reader, room};
use crate::support::*;

#[tokio::test]
async fn a_member_that_does_not_read_is_closed_with_1013_and_the_others_lose_nothing() {
    let layer = InMemoryChannelLayer::new();
    let (app, mut codes) = room();
    let config = ServerConfig::default().slow_client(SlowClientPolicy::Disconnect {
        after: Duration::from_millis(300),
        max_dropped: None,
    });
    let server = TestServer::start_with_layer(app, config, Arc::new(layer.clone())).await;
    let mut reader = server.connect("/ws/room/").await;
    let mut sleeper = non_reader(&server, "/ws/room/").await;
    within("both in the room", async {
        while layer.group_size("room") < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;

    // 16 KB messages as fast as the reader reads them (never more than 50 ahead of it, so its
    // own queue of 100 never overflows), until the sleeper is gone.
    let padding = "x".repeat(16 << 10);
    let sent = Arc::new(AtomicUsize::new(0));
    let read = Arc::new(AtomicUsize::new(0));
    let flood = {
        let (layer, sent, read) = (layer.clone(), sent.clone(), read.clone());
        let mut codes = codes.clone();
        tokio::spawn(async move {
            while codes.borrow_and_update().is_empty() {
                let n = sent.load(Ordering::SeqCst);
                if n >= read.load(Ordering::SeqCst) + 50 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                let said = Said {
                    said: format!("{n} {padding}"),
                };
                let envelope = Envelope::encode(&said).unwrap();
                layer.group_send("room", envelope).await.unwrap();
                sent.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    let mut heard = 0;
    // Filling the sleeper's socket takes megabytes: on a busy machine, more than `within`'s
    // bound. The wait ends as soon as it is closed.
    let closed = bounded("the sleeper to be closed", Duration::from_secs(30), async {
        loop {
            tokio::select! {
                text = recv_text(&mut reader) => {
                    assert_eq!(sequence(&text), heard, "the reader missed a message");
                    heard += 1;
                    read.store(heard, Ordering::SeqCst);
                }
                changed = codes.changed() => {
                    changed.unwrap();
                    return codes.borrow().clone();
                }
            }
        }
    })
    .await;
    assert_eq!(closed, [1013]);
    within("the flood to stop", flood).await.unwrap();
    // The reader gets the rest of what was sent, in order.
    let total = sent.load(Ordering::SeqCst);
    while heard < total {
        assert_eq!(sequence(&recv_text(&mut reader).await), heard);
        heard += 1;
    }
    assert_eq!(layer.group_size("room"), 1, "the sleeper left the room");
    // Reading again, the sleeper gets what was already on its way, then 1013.
    let (texts, code, reason) = drain_until_close(&mut sleeper).await;
    assert!(
        !texts.is_empty() && texts.len() < total,
        "{} of {total}",
        texts.len()
    );
    assert_eq!(
        (code, reason.as_str()),
        (1013, "too slow: messages for this client were dropped")
    );
    server.shutdown().await;
}

/// The number a message says first: `{"type":"room.said","said":"17 xxx…"}` (read without
/// parsing 16 KB of JSON, which a debug build does slowly).
fn sequence(text: &str) -> usize {
    let said = text.split(r#""said":""#).nth(1).expect("a room.said event");
    let number = said.split([' ', '"']).next().unwrap();
    number.parse().expect("a sequence number")
}

/// A room member that tells its client its channel name first, so a test can send to it alone.
struct Announced;

impl WebsocketConsumer for Announced {
    type Event = Said;

    fn groups(&self) -> Vec<String> {
        vec!["room".to_owned()]
    }

    async fn connect(&mut self, ws: &mut Websocket) -> Result<()> {
        ws.accept().await?;
        let name = ws.channel_name().to_owned();
        ws.send_text(name).await
    }

    async fn event(&mut self, ws: &mut Websocket, event: Event<Said>) -> Result<()> {
        ws.forward(&event).await
    }
}

/// The issue's case at its scale: a member that never reads, in a room of a thousand. What it
/// is sent alone (to its channel) overflows it until it is closed with 1013, while the room
/// says two hundred things that every other member hears, in order.
#[tokio::test]
async fn a_member_that_never_reads_in_a_room_of_a_thousand_is_closed_and_no_one_else_misses_a_thing()
 {
    let layer = InMemoryChannelLayer::new();
    let config = ServerConfig::default().slow_client(SlowClientPolicy::Disconnect {
        after: Duration::from_millis(500),
        max_dropped: None,
    });
    let app = ProtocolTypeRouter::new()
        .websocket(URLRouter::new().route("/ws/room/", ConsumerApp::new(|| Announced)));
    let server = TestServer::start_with_layer(app, config, Arc::new(layer.clone())).await;
    let mut sleeper = non_reader(&server, "/ws/room/").await;
    let sleeper_channel = recv_text(&mut sleeper).await;
    let joining = futures::stream::iter(0..1_000)
        .map(|_| async {
            let mut member = server.connect("/ws/room/").await;
            recv_text(&mut member).await;
            member
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>();
    let mut members = bounded("a thousand members", Duration::from_secs(120), joining).await;
    assert_eq!(layer.group_size("room"), 1_001);

    // 16 KB messages to the sleeper alone, until it is gone from the room.
    let padding = "x".repeat(16 << 10);
    let flooding = {
        let layer = layer.clone();
        tokio::spawn(async move {
            while layer.has_channel(&sleeper_channel) {
                let said = Said {
                    said: padding.clone(),
                };
                // A full queue refuses the send: that is the overflow being measured.
                let _ = layer
                    .send(&sleeper_channel, Envelope::encode(&said).unwrap())
                    .await;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    for n in 0..200 {
        let said = Said {
            said: n.to_string(),
        };
        layer
            .group_send("room", Envelope::encode(&said).unwrap())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let hearing =
        futures::stream::iter(members.iter_mut()).for_each_concurrent(64, |member| async move {
            for n in 0..200 {
                let text = recv_text(member).await;
                assert_eq!(sequence(&text), n, "a member missed a message");
            }
        });
    bounded(
        "every member to hear the two hundred",
        Duration::from_secs(120),
        hearing,
    )
    .await;
    bounded(
        "the sleeper to be closed",
        Duration::from_secs(60),
        flooding,
    )
    .await
    .unwrap();
    let (_, code, reason) = drain_until_close(&mut sleeper).await;
    assert_eq!(
        (code, reason.as_str()),
        (1013, "too slow: messages for this client were dropped")
    );
    assert_eq!(layer.group_size("room"), 1_000);
    server.shutdown().await;
}
