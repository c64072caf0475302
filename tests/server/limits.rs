//! Size limits: a message over the default 64 KiB, or over a configured frame or message limit
//! (fragments adding up included), closes the connection with 1009.

use futures::SinkExt;
use switchboard::prelude::*;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

use crate::probe::{OnConnect, Probe, assert_echo};
use crate::support::*;

#[tokio::test]
async fn a_message_over_the_default_64_kib_limit_closes_with_1009() {
    let probe = Probe::new();
    let server =
        TestServer::start(URLRouter::new().route("/ws/", probe.app(OnConnect::Accept))).await;
    let mut client = server.connect("/ws/").await;
    assert_echo(&mut client, &"a".repeat(60_000)).await;
    send_text(&mut client, &"a".repeat(70_000)).await;
    let frame = recv_close(&mut client).await.expect("a close code");
    assert_eq!(frame.code, CloseCode::Size);
    assert_eq!(probe.wait_disconnects(1).await, [1009]);
    server.shutdown().await;
    assert_eq!(probe.codes(), [1009]);
}

#[tokio::test]
async fn configured_frame_and_message_limits_close_with_1009() {
    let probe = Probe::new();
    let config = config(|c| {
        c.max_message_size = 1024;
        c.max_frame_size = 1024;
    });
    let server = TestServer::start_with(
        URLRouter::new().route("/ws/", probe.app(OnConnect::Accept)),
        config,
    )
    .await;

    // Exactly at the limit is fine; one byte over is not.
    let mut client = server.connect("/ws/").await;
    assert_echo(&mut client, &"b".repeat(1024)).await;
    send_text(&mut client, &"b".repeat(1025)).await;
    assert_eq!(recv_close(&mut client).await.unwrap().code, CloseCode::Size);

    // Fragments each under the frame limit that add up to more than the message limit.
    let mut client = server.connect("/ws/").await;
    let fragments = [
        Frame::message("c".repeat(600), OpCode::Data(Data::Text), false),
        Frame::message("c".repeat(600), OpCode::Data(Data::Continue), true),
    ];
    for fragment in fragments {
        within(
            "sending a fragment",
            client.send(WsMessage::Frame(fragment)),
        )
        .await
        .expect("send fragment");
    }
    assert_eq!(recv_close(&mut client).await.unwrap().code, CloseCode::Size);

    assert_eq!(probe.wait_disconnects(2).await, [1009, 1009]);
}
