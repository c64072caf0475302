//! The slow-client policy over real sockets: a member that does not read is closed with 1013,
//! gets what was on its way and the close frame when it reads again, and the others lose
//! nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use switchboard::layer::Envelope;
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

/// The number a flood message starts with: `{"type":"room.said","said":"17 xxx…"}` (read
/// without parsing 16 KB of JSON, which a debug build does slowly).
fn sequence(text: &str) -> usize {
    let said = text.split(r#""said":""#).nth(1).expect("a room.said event");
    said.split(' ')
        .next()
        .unwrap()
        .parse()
        .expect("a sequence number")
}
