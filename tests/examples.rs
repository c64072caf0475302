//! End-to-end tests of the seed examples (`examples` crate): each application served on a real
//! socket, driven by real WebSocket clients, every network await bounded by a timeout.

mod support;

use serde_json::{Value, json};
use support::*;
use switchboard::prelude::*;

/// Closes each client from its side, then stops the server. (A client left open and unread
/// would hold the server's graceful shutdown for its whole close timeout.)
async fn finish(server: TestServer, clients: impl IntoIterator<Item = Client>) {
    for mut client in clients {
        close(&mut client).await;
    }
    server.shutdown().await;
}

/// Connects `n` clients to `path`.
async fn connect_all(server: &TestServer, path: &str, n: usize) -> Vec<Client> {
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        clients.push(server.connect(path).await);
    }
    clients
}

// ---------------------------------------------------------------------------------------- echo

#[tokio::test]
async fn echo_answers_every_frame_at_any_path() {
    let server = TestServer::start(examples::echo::application()).await;

    for path in ["/", "/anything", "/deep/path/with/segments/"] {
        let mut client = server.connect(path).await;
        send_text(&mut client, "你好").await;
        assert_eq!(recv_text(&mut client).await, "收到了", "at {path}");
        send_text(&mut client, "again").await;
        assert_eq!(recv_text(&mut client).await, "收到了", "at {path}");
        close(&mut client).await;
    }

    let mut client = server.connect("/").await;
    send_binary(&mut client, &[0, 159, 146, 150]).await;
    assert_eq!(recv_text(&mut client).await, "收到了");
    assert_quiet(&mut client).await;

    finish(server, [client]).await;
}

// ------------------------------------------------------------------------------- everyone_chat

#[tokio::test]
async fn everyone_chat_reaches_every_client_sender_included() {
    let server = TestServer::start(examples::everyone_chat::application()).await;
    let mut clients = connect_all(&server, "/", 3).await;

    send_text(&mut clients[0], "大家好").await;
    for client in &mut clients {
        assert_eq!(recv_text(client).await, "大家好");
    }
    send_text(&mut clients[2], "from the third").await;
    for client in &mut clients {
        assert_eq!(recv_text(client).await, "from the third");
    }
    for client in &mut clients {
        assert_quiet(client).await;
    }

    finish(server, clients).await;
}

#[tokio::test]
async fn everyone_chat_close_is_broadcast_then_closes_only_the_sender() {
    let server = TestServer::start(examples::everyone_chat::application()).await;
    let mut clients = connect_all(&server, "/", 3).await;

    send_text(&mut clients[0], "close").await;
    assert_eq!(recv_text(&mut clients[0]).await, "close");
    assert_closed_with(&mut clients[0], CloseCode::Normal).await;
    for client in &mut clients[1..] {
        assert_eq!(recv_text(client).await, "close");
    }

    // The closed client left the group; the others still talk.
    send_text(&mut clients[1], "still here").await;
    for client in &mut clients[1..] {
        assert_eq!(recv_text(client).await, "still here");
    }

    finish(server, clients.split_off(1)).await;
}

#[tokio::test]
async fn everyone_chat_refuses_binary_with_1003_and_the_others_hear_nothing() {
    let server = TestServer::start(examples::everyone_chat::application()).await;
    let mut sender = server.connect("/").await;
    let mut other = server.connect("/").await;

    send_binary(&mut sender, b"\x00\x01").await;
    assert_closed_with(&mut sender, CloseCode::Unsupported).await;
    assert_quiet(&mut other).await;

    finish(server, [other]).await;
}

// ----------------------------------------------------------------------------- group_broadcast

#[tokio::test]
async fn group_broadcast_greets_the_sender_then_broadcasts_to_group_1() {
    let server = TestServer::start(examples::group_broadcast::application()).await;
    let mut sender = server.connect("/").await;
    let mut others = connect_all(&server, "/", 2).await;

    send_text(&mut sender, "hello group").await;
    assert_eq!(recv_text(&mut sender).await, "你好");
    assert_eq!(recv_text(&mut sender).await, "hello group");
    for other in &mut others {
        assert_eq!(recv_text(other).await, "hello group");
    }
    assert_quiet(&mut sender).await;
    for other in &mut others {
        assert_quiet(other).await;
    }

    // Another member speaking: only it gets the "你好".
    send_text(&mut others[0], "me too").await;
    assert_eq!(recv_text(&mut others[0]).await, "你好");
    assert_eq!(recv_text(&mut others[0]).await, "me too");
    assert_eq!(recv_text(&mut sender).await, "me too");
    assert_eq!(recv_text(&mut others[1]).await, "me too");

    finish(server, others.into_iter().chain([sender])).await;
}

// ----------------------------------------------------------------------------------- room_chat

#[tokio::test]
async fn room_chat_keeps_rooms_apart() {
    let server = TestServer::start(examples::room_chat::application()).await;
    let mut room_111 = vec![
        server.connect("/room/111").await,
        server.connect("/room/111/").await,
    ];
    let mut room_222 = server.connect("/room/222").await;

    send_text(&mut room_111[0], "in 111").await;
    for client in &mut room_111 {
        assert_eq!(recv_text(client).await, "in 111");
    }
    assert_quiet(&mut room_222).await;

    send_text(&mut room_222, "in 222").await;
    assert_eq!(recv_text(&mut room_222).await, "in 222");
    for client in &mut room_111 {
        assert_quiet(client).await;
    }

    finish(server, room_111.into_iter().chain([room_222])).await;
}

#[tokio::test]
async fn room_chat_refuses_invalid_room_paths_with_404() {
    let server = TestServer::start(examples::room_chat::application()).await;
    let too_long = format!("/room/{}", "x".repeat(65));
    for path in [
        "/room/",
        "/room",
        "/room/bad%20room",
        "/room/a.b",
        "/room/111/extra",
        "/elsewhere",
        too_long.as_str(),
    ] {
        assert_eq!(
            refused_status(server.try_connect(path).await),
            404,
            "{path}"
        );
    }
    // The longest valid name still works: it must also make a valid group name.
    let mut longest = server.connect(&format!("/room/{}", "x".repeat(64))).await;
    send_text(&mut longest, "fits").await;
    assert_eq!(recv_text(&mut longest).await, "fits");

    finish(server, [longest]).await;
}

// ------------------------------------------------------------------------------------- welcome

#[tokio::test]
async fn welcome_greets_renames_and_prefixes() {
    let server = TestServer::start(examples::welcome::application()).await;
    let mut client = server.connect("/ws/welcome/").await;

    assert_eq!(recv_text(&mut client).await, "[Welcome anonymous!]");
    send_text(&mut client, "hello").await;
    assert_eq!(recv_text(&mut client).await, "anonymous: hello");
    send_text(&mut client, "/name 小明").await;
    assert_eq!(recv_text(&mut client).await, "[set your username to 小明]");
    send_text(&mut client, "hello").await;
    assert_eq!(recv_text(&mut client).await, "小明: hello");
    send_text(&mut client, "/name   ").await;
    assert_eq!(recv_text(&mut client).await, "[usage: /name NEW_NAME]");
    send_text(&mut client, "still me").await;
    assert_eq!(recv_text(&mut client).await, "小明: still me");

    close(&mut client).await;
    server.shutdown().await;
}

#[tokio::test]
async fn welcome_greeting_comes_first_even_when_the_client_speaks_at_once() {
    let server = TestServer::start(examples::welcome::application()).await;
    let mut client = server.connect("/ws/welcome/").await;

    // Sent before reading anything: the greeting from connect() must still lead.
    send_text(&mut client, "hi").await;
    assert_eq!(recv_text(&mut client).await, "[Welcome anonymous!]");
    assert_eq!(recv_text(&mut client).await, "anonymous: hi");

    finish(server, [client]).await;
}

#[tokio::test]
async fn welcome_closes_with_1000_on_request_and_sends_nothing_more() {
    let server = TestServer::start(examples::welcome::application()).await;
    let mut client = server.connect("/ws/welcome/").await;
    assert_eq!(recv_text(&mut client).await, "[Welcome anonymous!]");

    send_text(&mut client, "关闭").await;
    assert_closed_with(&mut client, CloseCode::Normal).await;

    server.shutdown().await;
}

#[tokio::test]
async fn welcome_refuses_binary_with_1003() {
    let server = TestServer::start(examples::welcome::application()).await;
    let mut client = server.connect("/ws/welcome/").await;
    assert_eq!(recv_text(&mut client).await, "[Welcome anonymous!]");

    send_binary(&mut client, b"binary").await;
    assert_closed_with(&mut client, CloseCode::Unsupported).await;

    server.shutdown().await;
}

/// Stands in for authentication middleware: every connection is user "alice".
struct AsAlice<A>(A);

impl<A: Application> Application for AsAlice<A> {
    async fn call(&self, mut scope: Scope, conn: Connection) {
        scope.user = User::authenticated("1", "alice");
        self.0.call(scope, conn).await
    }
}

#[tokio::test]
async fn welcome_starts_from_the_authenticated_username() {
    let server = TestServer::start(AsAlice(examples::welcome::application())).await;
    let mut client = server.connect("/ws/welcome/").await;

    assert_eq!(recv_text(&mut client).await, "[Welcome alice!]");
    send_text(&mut client, "hi").await;
    assert_eq!(recv_text(&mut client).await, "alice: hi");

    close(&mut client).await;
    server.shutdown().await;
}

#[tokio::test]
async fn welcome_is_only_at_its_path() {
    let server = TestServer::start(examples::welcome::application()).await;
    for path in ["/", "/ws/welcome", "/ws/welcome/x/"] {
        assert_eq!(
            refused_status(server.try_connect(path).await),
            404,
            "{path}"
        );
    }
    server.shutdown().await;
}

// ----------------------------------------------------------------------------------- json_chat

#[tokio::test]
async fn json_chat_broadcasts_chat_message_events_within_the_room() {
    let server = TestServer::start(examples::json_chat::application()).await;
    let mut lobby = connect_all(&server, "/ws/json/lobby/", 2).await;
    let mut elsewhere = server.connect("/ws/json/other-room/").await;

    send_json(&mut lobby[0], &json!({"message": "你好, lobby"})).await;
    for client in &mut lobby {
        assert_eq!(
            recv_json(client).await,
            json!({"type": "chat.message", "message": "你好, lobby"})
        );
    }
    assert_quiet(&mut elsewhere).await;

    finish(server, lobby.into_iter().chain([elsewhere])).await;
}

/// Reads an error event and returns its `error` text.
async fn recv_error(client: &mut Client) -> String {
    let event = recv_json(client).await;
    assert_eq!(event["type"], "error", "{event}");
    match &event["error"] {
        Value::String(error) => error.clone(),
        other => panic!("error event without an error text: {other}"),
    }
}

#[tokio::test]
async fn json_chat_answers_bad_input_to_the_sender_only_and_keeps_going() {
    let server = TestServer::start(examples::json_chat::application()).await;
    let mut sender = server.connect("/ws/json/lobby/").await;
    let mut other = server.connect("/ws/json/lobby/").await;

    send_text(&mut sender, "not json").await;
    let error = recv_error(&mut sender).await;
    assert!(error.starts_with("not valid JSON"), "{error}");

    send_json(&mut sender, &json!({"msg": "wrong field"})).await;
    let error = recv_error(&mut sender).await;
    assert!(error.starts_with("unexpected JSON"), "{error}");

    send_json(&mut sender, &json!({"message": 42})).await;
    let error = recv_error(&mut sender).await;
    assert!(error.starts_with("unexpected JSON"), "{error}");

    send_binary(&mut sender, br#"{"message": "as bytes"}"#).await;
    let error = recv_error(&mut sender).await;
    assert!(error.contains("binary"), "{error}");

    assert_quiet(&mut other).await;

    // Both connections survived the bad input.
    send_json(&mut sender, &json!({"message": "still works"})).await;
    let expected = json!({"type": "chat.message", "message": "still works"});
    assert_eq!(recv_json(&mut sender).await, expected);
    assert_eq!(recv_json(&mut other).await, expected);

    finish(server, [sender, other]).await;
}

#[tokio::test]
async fn json_chat_refuses_invalid_rooms_with_404() {
    let server = TestServer::start(examples::json_chat::application()).await;
    let too_long = format!("/ws/json/{}/", "r".repeat(65));
    for path in [
        "/ws/json/",
        "/ws/json/lobby",
        "/ws/json/no%20spaces/",
        too_long.as_str(),
    ] {
        assert_eq!(
            refused_status(server.try_connect(path).await),
            404,
            "{path}"
        );
    }
    server.shutdown().await;
}
