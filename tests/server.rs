//! End-to-end tests of the server over real sockets on 127.0.0.1: the handshake answer on the
//! wire, routing refusals, limits, malformed handshakes and frames, graceful shutdown,
//! `disconnect()` running exactly once however a connection ends, HTTP, nesting behind
//! middleware, and the connect and ping timeouts. What the consumer loop decides (groups, layer
//! events, the answer to each outcome of `connect()`) is tested next to it, through a
//! communicator, in `framework/src/consumer/runner.rs`.
//!
//! The clients are real tokio-tungstenite clients, or raw TCP where the input must be malformed
//! or arrive in a particular shape (a head in pieces, a frame right behind the head).
//! Every network await is bounded by `within`; nothing here asserts on how long anything took.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::SinkExt;
use http::{HeaderMap, HeaderValue};
use serde_json::json;
use switchboard::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

use support::*;

// ---------------------------------------------------------------------------------------------
// A test consumer whose behaviour is chosen per route, and a probe that records what it did.
// ---------------------------------------------------------------------------------------------

/// What the test consumer's `connect()` does.
#[derive(Debug, Clone, Copy)]
enum OnConnect {
    Accept,
    Deny,
    DenyUnauthorized,
    /// Accepts with the subprotocol `chat` and an extra header, then reports what was offered.
    Subprotocol,
    /// Never answers in time.
    Stall,
}

/// Shared with the consumers of one test: how many were made, how many connected, which codes
/// their `disconnect()` got.
struct Probe {
    made: AtomicUsize,
    connects: AtomicUsize,
    disconnects: watch::Sender<Vec<u16>>,
}

impl Probe {
    fn new() -> Arc<Probe> {
        Arc::new(Probe {
            made: AtomicUsize::new(0),
            connects: AtomicUsize::new(0),
            disconnects: watch::channel(Vec::new()).0,
        })
    }

    fn app(self: &Arc<Self>, on_connect: OnConnect) -> ConsumerApp<TestConsumer> {
        self.app_in_groups(on_connect, &[])
    }

    fn app_in_groups(
        self: &Arc<Self>,
        on_connect: OnConnect,
        groups: &[&str],
    ) -> ConsumerApp<TestConsumer> {
        let probe = Arc::clone(self);
        let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        ConsumerApp::new(move || {
            probe.made.fetch_add(1, Ordering::SeqCst);
            TestConsumer {
                probe: Arc::clone(&probe),
                on_connect,
                groups: groups.clone(),
            }
        })
    }

    fn made(&self) -> usize {
        self.made.load(Ordering::SeqCst)
    }

    fn connects(&self) -> usize {
        self.connects.load(Ordering::SeqCst)
    }

    /// The codes `disconnect()` got so far, in order.
    fn codes(&self) -> Vec<u16> {
        self.disconnects.borrow().clone()
    }

    /// Waits until `disconnect()` ran at least `n` times; returns the codes.
    async fn wait_disconnects(&self, n: usize) -> Vec<u16> {
        let mut changes = self.disconnects.subscribe();
        within(
            &format!("{n} disconnect() call(s)"),
            changes.wait_for(|codes| codes.len() >= n),
        )
        .await
        .expect("the probe outlives the wait")
        .clone()
    }
}

struct TestConsumer {
    probe: Arc<Probe>,
    on_connect: OnConnect,
    groups: Vec<String>,
}

impl WebsocketConsumer for TestConsumer {
    type Event = NoEvent;

    fn groups(&self) -> Vec<String> {
        self.groups.clone()
    }

    async fn connect(&mut self, ws: &mut Websocket) -> Result<()> {
        self.probe.connects.fetch_add(1, Ordering::SeqCst);
        match self.on_connect {
            OnConnect::Accept => ws.accept().await,
            OnConnect::Deny => ws.deny(),
            OnConnect::DenyUnauthorized => ws.deny_with(StatusCode::UNAUTHORIZED),
            OnConnect::Subprotocol => {
                if !ws.scope().subprotocols.iter().any(|p| p == "chat") {
                    return ws.deny_with(StatusCode::BAD_REQUEST);
                }
                let mut headers = HeaderMap::new();
                headers.insert("x-switchboard-test", HeaderValue::from_static("yes"));
                ws.accept_with(Some("chat"), headers).await?;
                let offered = ws.scope().subprotocols.clone();
                ws.send_json(&json!({ "offered": offered })).await
            }
            OnConnect::Stall => {
                tokio::time::sleep(Duration::from_secs(60)).await;
                ws.accept().await
            }
        }
    }

    /// `close` closes with 1000 "bye"; anything else is echoed.
    async fn receive(&mut self, ws: &mut Websocket, message: Message) -> Result<()> {
        if message.as_text().is_ok_and(|text| text == "close") {
            return ws.close(CloseCode::Normal, "bye").await;
        }
        ws.send_message(message).await
    }

    async fn disconnect(&mut self, _ws: &mut Websocket, code: CloseCode) -> Result<()> {
        self.probe
            .disconnects
            .send_modify(|codes| codes.push(u16::from(code)));
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Small helpers.
// ---------------------------------------------------------------------------------------------

/// Sends `text` and asserts it comes back.
async fn assert_echo(client: &mut Client, text: &str) {
    send_text(client, text).await;
    assert_eq!(recv_text(client).await, text);
}

/// The RFC 6455 example key and its accept value.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// A valid handshake over raw TCP; returns the socket right after the 101 head, so the test
/// can write frames a well-behaved client library would never send.
async fn raw_websocket(addr: std::net::SocketAddr, path: &str) -> TcpStream {
    raw_websocket_sent(addr, path, "", &[]).await
}

/// The handshake request of [`raw_websocket`] with `extra` header lines (each ending in CRLF).
fn raw_handshake(addr: std::net::SocketAddr, path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n{extra}\r\n"
    )
}

/// [`raw_websocket`] with `extra` header lines, the request written in one piece or, when
/// `splits` gives byte offsets, in pieces with a pause between them (so the server sees a
/// partial head).
async fn raw_websocket_sent(
    addr: std::net::SocketAddr,
    path: &str,
    extra: &str,
    splits: &[usize],
) -> TcpStream {
    let mut stream = within("TCP connect", TcpStream::connect(addr))
        .await
        .expect("connect");
    let request = raw_handshake(addr, path, extra);
    let mut from = 0;
    for to in splits.iter().copied().chain([request.len()]) {
        within(
            "writing the handshake",
            stream.write_all(&request.as_bytes()[from..to]),
        )
        .await
        .expect("write handshake");
        if to < request.len() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        from = to;
    }
    // Byte by byte, so no frame after the head is swallowed.
    let mut head = Vec::new();
    within("the handshake answer", async {
        while !head.ends_with(b"\r\n\r\n") {
            head.push(stream.read_u8().await.expect("read the handshake answer"));
        }
    })
    .await;
    let head = String::from_utf8(head).expect("an ASCII head");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(
        header(&head, "sec-websocket-accept"),
        Some(ACCEPT),
        "{head}"
    );
    stream
}

/// A client frame (masked, as RFC 6455 requires), payload under 126 bytes.
fn masked_frame(first_byte: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![first_byte, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// Reads one server frame (unmasked, payload under 126 bytes): opcode and payload.
async fn read_raw_frame(stream: &mut TcpStream, what: &str) -> (u8, Vec<u8>) {
    within(what, async {
        let first = stream
            .read_u8()
            .await
            .unwrap_or_else(|err| panic!("{what}: no frame header ({err})"));
        let len = stream.read_u8().await.expect("frame length");
        assert!(len < 126, "a short server frame, got length byte {len}");
        let mut payload = vec![0; len as usize];
        stream.read_exact(&mut payload).await.expect("payload");
        (first & 0x0f, payload)
    })
    .await
}

/// Reads server frames until a close frame; returns its code.
async fn read_raw_close_code(stream: &mut TcpStream, what: &str) -> u16 {
    loop {
        let (opcode, payload) = read_raw_frame(stream, what).await;
        if opcode == 0x8 {
            assert!(payload.len() >= 2, "close frame without a code");
            return u16::from_be_bytes([payload[0], payload[1]]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The handshake: connect() decides the HTTP answer.
// ---------------------------------------------------------------------------------------------

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
async fn unmatched_routes_are_404_before_any_consumer_code_runs() {
    let probe = Probe::new();
    let app = URLRouter::new()
        .route("/ws/user/{id:int}/", probe.app(OnConnect::Accept))
        .route("/healthz", handler(|_req| async { response::text("ok") }));
    let server = TestServer::start(app).await;
    for path in [
        "/ws/nowhere/",
        "/ws/user/abc/",
        "/ws/user/-1/",
        "/ws/user/12",
        "/ws/user/12/extra/",
        // An HTTP handler answers a WebSocket handshake with 404 too.
        "/healthz",
    ] {
        assert_eq!(
            refused_status(server.try_connect(path).await),
            404,
            "{path}"
        );
    }
    assert_eq!(probe.made(), 0, "no consumer was made for a refused path");

    // The same route does take a valid id, so the counter can move.
    let mut client = server.connect("/ws/user/42/").await;
    assert_echo(&mut client, "hello").await;
    assert_eq!((probe.made(), probe.connects()), (1, 1));
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

// ---------------------------------------------------------------------------------------------
// Size limits.
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Malformed handshakes and frames over raw TCP.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn malformed_handshakes_get_specific_statuses() {
    let probe = Probe::new();
    let server =
        TestServer::start(URLRouter::new().route("/ws/", probe.app(OnConnect::Accept))).await;
    let upgrade = |version: &'static str, key: Option<&'static str>| {
        let mut headers = vec![
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Version", version),
        ];
        if let Some(key) = key {
            headers.push(("Sec-WebSocket-Key", key));
        }
        headers
    };

    let (status, head, _) =
        http_request(server.addr, "GET", "/ws/", &upgrade("8", Some(KEY)), b"").await;
    assert_eq!(status, 426, "{head}");
    assert_eq!(header(&head, "sec-websocket-version"), Some("13"), "{head}");

    for key in [
        None,
        Some("not a key"),
        Some("dGhlIHNhbXBsZSBub25jZQ"),
        Some("dGhlIHNhbXBsZSBub25jZQ!="),
    ] {
        let (status, head, _) =
            http_request(server.addr, "GET", "/ws/", &upgrade("13", key), b"").await;
        assert_eq!(status, 400, "key {key:?}: {head}");
    }

    let (status, head, _) =
        http_request(server.addr, "POST", "/ws/", &upgrade("13", Some(KEY)), b"").await;
    assert_eq!(status, 400, "a POST handshake: {head}");

    assert_eq!(probe.made(), 0, "no consumer ran for a malformed handshake");
}

#[tokio::test]
async fn a_raw_handshake_gets_the_rfc_accept_key_and_bad_frames_get_close_codes() {
    let probe = Probe::new();
    let server =
        TestServer::start(URLRouter::new().route("/ws/", probe.app(OnConnect::Accept))).await;

    // A well-formed masked text frame is echoed.
    let mut stream = raw_websocket(server.addr, "/ws/").await;
    within(
        "writing a frame",
        stream.write_all(&masked_frame(0x81, b"hi")),
    )
    .await
    .unwrap();
    assert_eq!(
        read_raw_frame(&mut stream, "the echo").await,
        (0x1, b"hi".to_vec())
    );

    // An unmasked client frame is a protocol violation.
    within(
        "writing a frame",
        stream.write_all(&[0x81, 0x02, b'h', b'i']),
    )
    .await
    .unwrap();
    assert_eq!(
        read_raw_close_code(&mut stream, "the close after an unmasked frame").await,
        1002
    );

    // So is a reserved opcode.
    let mut stream = raw_websocket(server.addr, "/ws/").await;
    within(
        "writing a frame",
        stream.write_all(&masked_frame(0x83, b"?")),
    )
    .await
    .unwrap();
    assert_eq!(
        read_raw_close_code(&mut stream, "the close after a reserved opcode").await,
        1002
    );

    // And a text frame that is not UTF-8.
    let mut stream = raw_websocket(server.addr, "/ws/").await;
    within(
        "writing a frame",
        stream.write_all(&masked_frame(0x81, &[0xff, 0xfe])),
    )
    .await
    .unwrap();
    assert_eq!(
        read_raw_close_code(&mut stream, "the close after invalid UTF-8").await,
        1007
    );

    let mut codes = probe.wait_disconnects(3).await;
    codes.sort_unstable();
    assert_eq!(codes, [1002, 1002, 1007]);
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

#[tokio::test]
async fn a_client_silent_past_the_ping_timeout_is_dropped_with_1006() {
    let probe = Probe::new();
    let config = config(|c| {
        c.ping_interval = Duration::from_millis(100);
        c.ping_timeout = Duration::from_millis(300);
    });
    let server = TestServer::start_with(
        URLRouter::new().route("/ws/", probe.app(OnConnect::Accept)),
        config,
    )
    .await;
    // A raw client that reads but never answers pings.
    let mut stream = raw_websocket(server.addr, "/ws/").await;
    let (opcode, _) = read_raw_frame(&mut stream, "a ping").await;
    assert_eq!(opcode, 0x9, "the server pings a quiet client");
    assert_eq!(probe.wait_disconnects(1).await, [1006]);
}

// ---------------------------------------------------------------------------------------------
// Shutdown and disconnect.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn graceful_shutdown_closes_clients_with_1001_and_runs_disconnect() {
    let probe = Probe::new();
    let server =
        TestServer::start(URLRouter::new().route("/ws/", probe.app(OnConnect::Accept))).await;
    let mut a = server.connect("/ws/").await;
    let mut b = server.connect("/ws/").await;
    assert_echo(&mut a, "a").await;
    assert_echo(&mut b, "b").await;

    // shutdown() returns only once the server task has finished (it asserts so itself).
    let ((), close_a, close_b) = tokio::join!(
        server.shutdown(),
        closed_by_server(&mut a),
        closed_by_server(&mut b)
    );
    assert_eq!(close_a.code, CloseCode::Away);
    assert_eq!(close_b.code, CloseCode::Away);
    // The server waited for the consumers' disconnect before finishing.
    assert_eq!(probe.codes(), [1001, 1001]);
}

/// A client that connected but has sent nothing yet does not hold a graceful shutdown up: the
/// server stops waiting for its request head and closes it.
#[tokio::test]
async fn graceful_shutdown_does_not_wait_for_a_silent_connection() {
    let probe = Probe::new();
    // A shutdown timeout longer than the test's bound: were the silent connection waited for,
    // the shutdown below would time out.
    let server = TestServer::start_with(
        URLRouter::new().route("/ws/", probe.app(OnConnect::Accept)),
        config(|c| c.shutdown_timeout = Duration::from_secs(600)),
    )
    .await;
    let mut silent = within("TCP connect", TcpStream::connect(server.addr))
        .await
        .unwrap();
    // The server has accepted it once a WebSocket opened after it is served.
    let mut client = server.connect("/ws/").await;
    assert_echo(&mut client, "after the silent one").await;

    let ((), close) = tokio::join!(server.shutdown(), closed_by_server(&mut client));
    assert_eq!(close.code, CloseCode::Away);
    let mut rest = Vec::new();
    let read = within(
        "the silent connection to close",
        silent.read_to_end(&mut rest),
    )
    .await;
    assert!(read.is_ok() && rest.is_empty(), "{read:?} {rest:?}");
}

#[tokio::test]
async fn disconnect_gets_the_clients_close_code_once() {
    let probe = Probe::new();
    let server =
        TestServer::start(URLRouter::new().route("/ws/", probe.app(OnConnect::Accept))).await;
    let mut client = server.connect("/ws/").await;
    assert_echo(&mut client, "x").await;
    close(&mut client).await;
    assert_eq!(probe.wait_disconnects(1).await, [1000]);
    server.shutdown().await;
    assert_eq!(probe.codes(), [1000], "exactly once");
}

#[tokio::test]
async fn disconnect_gets_1006_once_when_the_client_vanishes() {
    let probe = Probe::new();
    let server =
        TestServer::start(URLRouter::new().route("/ws/", probe.app(OnConnect::Accept))).await;

    // The socket closed without a closing handshake (FIN).
    let mut client = server.connect("/ws/").await;
    assert_echo(&mut client, "x").await;
    drop(client);
    assert_eq!(probe.wait_disconnects(1).await, [1006]);

    // The socket reset (RST).
    let mut client = server.connect("/ws/").await;
    assert_echo(&mut client, "y").await;
    match client.get_ref() {
        MaybeTlsStream::Plain(tcp) => tcp.set_zero_linger().expect("SO_LINGER 0"),
        _ => unreachable!("plain ws://"),
    }
    drop(client);
    assert_eq!(probe.wait_disconnects(2).await, [1006, 1006]);

    server.shutdown().await;
    assert_eq!(probe.codes(), [1006, 1006], "exactly once each");
}

#[tokio::test]
async fn a_server_close_from_receive_reaches_the_client_and_disconnect_runs_once() {
    let probe = Probe::new();
    let server =
        TestServer::start(URLRouter::new().route("/ws/", probe.app(OnConnect::Accept))).await;
    let mut client = server.connect("/ws/").await;
    send_text(&mut client, "close").await;
    let frame = closed_by_server(&mut client).await;
    assert_eq!(frame.code, CloseCode::Normal);
    assert_eq!(frame.reason.as_str(), "bye");
    assert_eq!(probe.wait_disconnects(1).await, [1000]);
    server.shutdown().await;
    assert_eq!(probe.codes(), [1000]);
}

// ---------------------------------------------------------------------------------------------
// HTTP.
// ---------------------------------------------------------------------------------------------

fn http_and_websocket_app(probe: &Arc<Probe>) -> ProtocolTypeRouter {
    ProtocolTypeRouter::new()
        .http(
            URLRouter::new()
                .route("/healthz", handler(|_req| async { response::text("ok") }))
                .route(
                    "/length",
                    handler(|req: HttpRequest| async move {
                        response::text(req.body.len().to_string())
                    }),
                ),
        )
        .websocket(URLRouter::new().route("/ws/", probe.app(OnConnect::Accept)))
}

#[tokio::test]
async fn http_routes_answer_and_bad_requests_get_statuses() {
    let probe = Probe::new();
    let config = config(|c| c.max_body_size = 1024);
    let server = TestServer::start_with(http_and_websocket_app(&probe), config).await;

    let (status, head, body) = http_request(server.addr, "GET", "/healthz", &[], b"").await;
    assert_eq!((status, body.as_slice()), (200, b"ok".as_slice()));
    assert_eq!(
        header(&head, "content-type"),
        Some("text/plain; charset=utf-8")
    );

    assert_eq!(http_get(server.addr, "/nope").await.0, 404);

    let (status, _, body) = http_request(server.addr, "POST", "/length", &[], &[b'x'; 1024]).await;
    assert_eq!((status, body.as_slice()), (200, b"1024".as_slice()));
    let (status, _, _) = http_request(server.addr, "POST", "/length", &[], &[b'x'; 1025]).await;
    assert_eq!(status, 413);

    // The WebSocket route is not an HTTP route, and the HTTP route is not a WebSocket one.
    assert_eq!(http_get(server.addr, "/ws/").await.0, 404);
    assert_eq!(refused_status(server.try_connect("/healthz").await), 404);
    assert_eq!(probe.made(), 0);
    let mut client = server.connect("/ws/").await;
    assert_echo(&mut client, "both protocols on one port").await;
}

#[tokio::test]
async fn plain_http_to_a_websocket_only_app_is_404() {
    let probe = Probe::new();
    let app = ProtocolTypeRouter::new()
        .websocket(URLRouter::new().route("/ws/", probe.app(OnConnect::Accept)));
    let server = TestServer::start(app).await;
    assert_eq!(http_get(server.addr, "/ws/").await.0, 404);
    assert_eq!(http_get(server.addr, "/").await.0, 404);
    assert_eq!(probe.made(), 0);
}

#[tokio::test]
async fn plain_http_to_a_consumer_is_426_upgrade_required() {
    let probe = Probe::new();
    // No ProtocolTypeRouter: the plain GET reaches the consumer application itself.
    let server =
        TestServer::start(URLRouter::new().route("/ws/", probe.app(OnConnect::Accept))).await;
    let (status, head, _) = http_request(server.addr, "GET", "/ws/", &[], b"").await;
    assert_eq!(status, 426, "{head}");
    assert_eq!(header(&head, "upgrade"), Some("websocket"), "{head}");
    assert_eq!(probe.made(), 0);
}

// ---------------------------------------------------------------------------------------------
// Nesting behind middleware.
// ---------------------------------------------------------------------------------------------

/// A stand-in for authentication middleware: everyone is alice.
struct LogInAlice<A>(A);

impl<A: Application> Application for LogInAlice<A> {
    async fn call(&self, mut scope: Scope, conn: Connection) {
        scope.user = User::authenticated("1", "alice");
        self.0.call(scope, conn).await
    }
}

/// Reports what it sees of its scope.
#[derive(Default)]
struct WhoAmI;

impl WebsocketConsumer for WhoAmI {
    type Event = NoEvent;

    async fn connect(&mut self, ws: &mut Websocket) -> Result<()> {
        ws.accept().await?;
        let scope = ws.scope();
        let report = json!({
            "room": scope.kwarg("room")?,
            "user": scope.user.username(),
            "path": scope.path,
            "path_remaining": scope.path_remaining(),
        });
        ws.send_json(&report).await
    }
}

#[tokio::test]
async fn kwargs_and_the_remaining_path_survive_middleware_inside_a_nested_router() {
    let app = URLRouter::new().nest(
        "/api",
        LogInAlice(URLRouter::new().route("/rooms/{room:slug}/", WhoAmI::as_app())),
    );
    let server = TestServer::start(app).await;
    let mut client = server.connect("/api/rooms/lobby-1/").await;
    assert_eq!(
        recv_json(&mut client).await,
        json!({
            "room": "lobby-1",
            "user": "alice",
            "path": "/api/rooms/lobby-1/",
            "path_remaining": "/rooms/lobby-1/",
        })
    );
    for path in ["/api/rooms/not.a.slug/", "/api/other/", "/rooms/lobby-1/"] {
        assert_eq!(
            refused_status(server.try_connect(path).await),
            404,
            "{path}"
        );
    }
}
