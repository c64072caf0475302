//! How a connection ends, and `disconnect()` running exactly once each way: a graceful shutdown
//! (1001, not held up by a connection that never spoke), the client's close code, a client that
//! vanishes (FIN or RST, 1006), a close from the consumer, a client silent past the ping timeout
//! (1006).

use std::time::Duration;

use switchboard::prelude::*;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_tungstenite::MaybeTlsStream;

use crate::probe::{OnConnect, Probe, assert_echo};
use crate::raw::{raw_websocket, read_raw_frame};
use crate::support::*;

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
