//! Bad input over raw TCP: malformed handshake requests get a specific HTTP status and no
//! consumer runs; frames that break RFC 6455 (unmasked, a reserved opcode) close with 1002, a
//! text frame that is not UTF-8 with 1007.

use switchboard::prelude::*;
use tokio::io::AsyncWriteExt;

use crate::probe::{OnConnect, Probe};
use crate::raw::{KEY, masked_frame, raw_websocket, read_raw_close_code, read_raw_frame};
use crate::support::*;

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
