//! The handshake: a refusal from `connect()` as the client's HTTP status, the subprotocol and
//! headers of the 101, the connect timeout (503), and both ways a handshake is read — without
//! hyper for the usual small head, through hyper for one in pieces or larger — ending in the
//! same WebSocket, a frame right behind the head included, or in a whole HTTP refusal.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use serde_json::json;
use switchboard::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::probe::{OnConnect, Probe, assert_echo};
use crate::raw::{masked_frame, raw_handshake, raw_websocket_sent, read_raw_frame};
use crate::support::*;

/// Which answer each outcome of `connect()` is, is the consumer loop's (tested next to it, in
/// `consumer/runner.rs`); here, that the answer reaches a real client as that HTTP status.
#[tokio::test]
async fn connect_answers_become_http_statuses() {
    for (on_connect, status) in [(OnConnect::Deny, 403), (OnConnect::DenyUnauthorized, 401)] {
        let probe = Probe::new();
        let server = TestServer::start(URLRouter::new().route("/ws/", probe.app(on_connect))).await;
        assert_eq!(
            refused_status(server.try_connect("/ws/").await),
            status,
            "{on_connect:?}"
        );
        assert_eq!(probe.connects(), 1, "{on_connect:?}");
        // As in Channels, a refused handshake still ends with one disconnect (1006).
        assert_eq!(probe.wait_disconnects(1).await, [1006], "{on_connect:?}");
        server.shutdown().await;
        assert_eq!(probe.codes(), [1006], "{on_connect:?}: exactly once");
    }
}

#[tokio::test]
async fn subprotocol_and_extra_headers_shape_the_101() {
    let probe = Probe::new();
    let server =
        TestServer::start(URLRouter::new().route("/ws/", probe.app(OnConnect::Subprotocol))).await;
    let mut request = server.ws_url("/ws/").into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("v1, chat"),
    );
    let (mut client, response) = within("the handshake", tokio_tungstenite::connect_async(request))
        .await
        .expect("the handshake is accepted");
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(response.headers()["sec-websocket-protocol"], "chat");
    assert_eq!(response.headers()["x-switchboard-test"], "yes");
    assert_eq!(
        recv_json(&mut client).await,
        json!({ "offered": ["v1", "chat"] })
    );
    assert_echo(&mut client, "still open").await;
}

#[tokio::test]
async fn a_connect_slower_than_the_connect_timeout_is_refused_with_503() {
    let layer = InMemoryChannelLayer::new();
    let probe = Probe::new();
    let app = URLRouter::new().route("/ws/", probe.app_in_groups(OnConnect::Stall, &["slow"]));
    let config = config(|c| c.connect_timeout = Duration::from_millis(200));
    let server = TestServer::start_with_layer(app, config, Arc::new(layer.clone())).await;

    assert_eq!(refused_status(server.try_connect("/ws/").await), 503);
    assert_eq!(probe.connects(), 1);
    // The abandoned consumer still ends properly: disconnect once, groups left.
    assert_eq!(probe.wait_disconnects(1).await, [1006]);
    wait_group_size(&layer, "slow", 0).await;
    server.shutdown().await;
    assert_eq!(probe.codes(), [1006]);
}

/// The usual handshake (one small head) is answered without hyper; one that arrives in pieces
/// or is larger goes through hyper. Both must end in the same working WebSocket, and a frame
/// sent right behind the head must not be lost on either path.
#[tokio::test]
async fn handshakes_in_pieces_large_or_followed_by_a_frame_all_open_the_socket() {
    let probe = Probe::new();
    let server =
        TestServer::start(URLRouter::new().route("/ws/", probe.app(OnConnect::Accept))).await;
    let big = format!("X-Padding: {}\r\n", "p".repeat(6000));
    let head_len = raw_handshake(server.addr, "/ws/", "").len();
    for (what, extra, splits) in [
        ("one piece", String::new(), vec![]),
        ("in pieces", String::new(), vec![20, head_len / 2]),
        ("larger than 4 KiB", big, vec![]),
    ] {
        let mut stream = raw_websocket_sent(server.addr, "/ws/", &extra, &splits).await;
        within(
            "writing a frame",
            stream.write_all(&masked_frame(0x81, what.as_bytes())),
        )
        .await
        .unwrap();
        assert_eq!(
            read_raw_frame(&mut stream, what).await,
            (0x1, what.as_bytes().to_vec()),
            "{what}"
        );
    }

    // Head and first frame in one write.
    let mut stream = within("TCP connect", TcpStream::connect(server.addr))
        .await
        .unwrap();
    let mut bytes = raw_handshake(server.addr, "/ws/", "").into_bytes();
    bytes.extend_from_slice(&masked_frame(0x81, b"right behind"));
    within("writing head and frame", stream.write_all(&bytes))
        .await
        .unwrap();
    let mut answer = Vec::new();
    within("the answer and the echo", async {
        while !answer.ends_with(b"right behind") {
            answer.push(stream.read_u8().await.expect("read"));
        }
    })
    .await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
}

/// A refused handshake answered without hyper is a whole HTTP response: status, length, body,
/// and the connection closes after it.
#[tokio::test]
async fn a_denied_raw_handshake_gets_a_whole_response_and_the_connection_closes() {
    let probe = Probe::new();
    let server =
        TestServer::start(URLRouter::new().route("/ws/", probe.app(OnConnect::Deny))).await;
    let mut stream = within("TCP connect", TcpStream::connect(server.addr))
        .await
        .unwrap();
    let request = raw_handshake(server.addr, "/ws/", "");
    within(
        "writing the handshake",
        stream.write_all(request.as_bytes()),
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    within(
        "the refusal, then the end of the stream",
        stream.read_to_end(&mut answer),
    )
    .await
    .expect("read the refusal");
    let answer = String::from_utf8(answer).expect("an ASCII answer");
    assert!(answer.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{answer}");
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    assert_eq!(
        header(head, "content-length"),
        Some(body.len().to_string().as_str()),
        "{answer}"
    );
    assert_eq!(body, "403 Forbidden\n");
}
