//! The chat-app from outside, as `chat-protocol.md` describes it: real sockets on 127.0.0.1,
//! real WebSocket clients, the chat-app's own routing module served in-process.

mod support;

use std::sync::Arc;

use futures::SinkExt;
use serde_json::{Value, json};
use support::chat::{Heard, assert_no_event, heard, recv_event, room, say};
use support::*;
use switchboard::layer::InMemoryChannelLayer;
use switchboard::prelude::*;
use tokio_tungstenite::tungstenite::Message as WsMessage;

fn app() -> impl Application {
    chat_app::routing::application(chat_app::state::AppState::default())
}

async fn chat_server() -> TestServer {
    TestServer::start(app()).await
}

#[tokio::test]
async fn a_message_reaches_the_whole_room_sender_included() {
    let server = chat_server().await;
    let mut ann = server.connect(&room("lobby")).await;
    let mut bob = server.connect(&room("lobby")).await;
    say(&mut ann, "hello <b>room</b>").await;
    let event = recv_event(&mut ann).await;
    assert_eq!(event["type"], "chat.message");
    assert_eq!(event["message"], "hello <b>room</b>");
    let user = event["user"].as_str().expect("user").to_owned();
    assert!(
        user.starts_with("guest-"),
        "anonymous users get a guest name: {user}"
    );
    assert_eq!(
        heard(&mut bob).await,
        Heard {
            message: "hello <b>room</b>".to_owned(),
            user: user.clone()
        }
    );

    say(&mut ann, "again").await;
    assert_eq!(
        heard(&mut ann).await.user,
        user,
        "the guest name stays for the connection"
    );
}

#[tokio::test]
async fn rooms_are_isolated() {
    let server = chat_server().await;
    let mut red = server.connect(&room("red")).await;
    let mut blue = server.connect(&room("blue")).await;
    say(&mut red, "only red").await;
    assert_eq!(heard(&mut red).await.message, "only red");
    assert_no_event(&mut blue).await;
    say(&mut blue, "only blue").await;
    assert_eq!(heard(&mut blue).await.message, "only blue");
    assert_no_event(&mut red).await;
}

#[tokio::test]
async fn fifty_members_receive_every_message_in_order() {
    let server = chat_server().await;
    let mut members = Vec::new();
    for _ in 0..50 {
        members.push(server.connect(&room("crowd")).await);
    }
    let sent: Vec<String> = (0..30).map(|n| format!("message {n}")).collect();
    for text in &sent {
        say(&mut members[0], text).await;
    }
    for member in &mut members {
        for text in &sent {
            assert_eq!(&heard(member).await.message, text);
        }
    }
}

#[tokio::test]
async fn bad_input_gets_an_error_to_the_sender_only_and_the_connection_stays_usable() {
    let server = chat_server().await;
    let mut sender = server.connect(&room("errors")).await;
    let mut other = server.connect(&room("errors")).await;

    let too_long = "x".repeat(4097);
    let bad_frames: Vec<WsMessage> = vec![
        WsMessage::text("not json"),
        WsMessage::text("{\"message\": "),
        WsMessage::text("{\"text\": \"hi\"}"),
        WsMessage::text("{\"message\": 42}"),
        WsMessage::text("[\"message\"]"),
        WsMessage::text("{\"message\": \"\"}"),
        WsMessage::text(json!({ "message": too_long }).to_string()),
        WsMessage::binary(b"{\"message\": \"hi\"}".to_vec()),
    ];
    for frame in bad_frames {
        let shown = format!("{frame:?}").chars().take(60).collect::<String>();
        within("sending a bad frame", sender.send(frame))
            .await
            .expect("send");
        let answer = recv_event(&mut sender).await;
        assert_eq!(answer["type"], "error", "for {shown}: {answer}");
        assert!(
            answer["error"].as_str().is_some_and(|e| !e.is_empty()),
            "for {shown}: {answer}"
        );
    }
    assert_no_event(&mut other).await;

    say(&mut sender, "still here").await;
    assert_eq!(heard(&mut sender).await.message, "still here");
    assert_eq!(heard(&mut other).await.message, "still here");

    // 4096 characters exactly is allowed.
    let longest = "é".repeat(4096);
    say(&mut sender, &longest).await;
    assert_eq!(heard(&mut other).await.message, longest);
}

#[tokio::test]
async fn an_oversized_frame_closes_with_1009() {
    let server = chat_server().await;
    let mut client = server.connect(&room("big")).await;
    let huge = json!({ "message": "x".repeat(70_000) }).to_string();
    send_text(&mut client, &huge).await;
    let frame = recv_close(&mut client)
        .await
        .expect("a close frame with a code");
    assert_eq!(u16::from(frame.code), 1009);
}

#[tokio::test]
async fn invalid_rooms_are_refused_at_the_handshake() {
    let server = chat_server().await;
    let long = "r".repeat(65);
    for path in [
        "/ws/chat/bad.name/".to_owned(),
        "/ws/chat/with%20space/".to_owned(),
        format!("/ws/chat/{long}/"),
        "/ws/chat//".to_owned(),
        "/ws/chat/lobby".to_owned(),
        "/ws/elsewhere/".to_owned(),
    ] {
        assert_eq!(
            refused_status(server.try_connect(&path).await),
            404,
            "{path}"
        );
    }
    server.connect(&room(&"r".repeat(64))).await;
}

#[tokio::test]
async fn a_member_who_left_hears_nothing_more_and_the_group_empties() {
    let layer = InMemoryChannelLayer::new();
    let server =
        TestServer::start_with_layer(app(), ServerConfig::default(), Arc::new(layer.clone())).await;

    let mut stays = server.connect(&room("leaving")).await;
    let mut leaves = server.connect(&room("leaving")).await;
    assert_eq!(layer.group_size("chat_leaving"), 2);
    close(&mut leaves).await;
    wait_group_size(&layer, "chat_leaving", 1).await;
    say(&mut stays, "anyone?").await;
    assert_eq!(heard(&mut stays).await.message, "anyone?");
    close(&mut stays).await;
    wait_group_size(&layer, "chat_leaving", 0).await;
    assert_eq!(
        layer.channel_count(),
        1,
        "channel names are released: only the presence tracker's own is left"
    );

    server.shutdown().await;
}

#[tokio::test]
async fn graceful_shutdown_closes_members_with_1001() {
    let server = chat_server().await;
    let mut a = server.connect(&room("bye")).await;
    let mut b = server.connect(&room("bye")).await;
    let (close_a, close_b, ()) =
        tokio::join!(recv_close(&mut a), recv_close(&mut b), server.shutdown());
    assert_eq!(close_a.map(|f| u16::from(f.code)), Some(1001));
    assert_eq!(close_b.map(|f| u16::from(f.code)), Some(1001));
}

#[tokio::test]
async fn pages_and_health() {
    let server = chat_server().await;
    let (status, lobby) = http_get(server.addr, "/").await;
    assert_eq!(status, 200);
    assert!(lobby.contains("room-name-input") && lobby.contains("room-name-submit"));
    let (status, page) = http_get(server.addr, "/chat/lobby/").await;
    assert_eq!(status, 200);
    for id in ["chat-log", "chat-message-input", "chat-message-submit"] {
        assert!(page.contains(id), "room page lacks #{id}");
    }
    let (status, seeds_page) = http_get(server.addr, "/index/?num=111").await;
    assert_eq!((status, seeds_page == page), (200, true));
    assert_eq!(
        http_get(server.addr, "/healthz").await,
        (200, "ok".to_owned())
    );
    assert_eq!(http_get(server.addr, "/chat/bad.name/").await.0, 404);
    assert_eq!(http_get(server.addr, "/nowhere").await.0, 404);
}

#[tokio::test]
async fn unknown_json_fields_are_ignored() {
    let server = chat_server().await;
    let mut client = server.connect(&room("extra")).await;
    send_json(&mut client, &json!({"message": "hi", "extra": true})).await;
    let event: Value = recv_event(&mut client).await;
    assert_eq!(event["message"], "hi");
}
