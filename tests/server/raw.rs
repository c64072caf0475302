//! A WebSocket client over raw TCP, for input a client library would never send (unmasked or
//! reserved frames, invalid UTF-8) or must arrive in a particular shape (a head in pieces, a
//! frame right behind the head).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// The RFC 6455 example key and its accept value.
pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// A valid handshake over raw TCP; returns the socket right after the 101 head, so the test
/// can write frames a well-behaved client library would never send.
pub async fn raw_websocket(addr: SocketAddr, path: &str) -> TcpStream {
    raw_websocket_sent(addr, path, "", &[]).await
}

/// The handshake request of [`raw_websocket`] with `extra` header lines (each ending in CRLF).
pub fn raw_handshake(addr: SocketAddr, path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n{extra}\r\n"
    )
}

/// [`raw_websocket`] with `extra` header lines, the request written in one piece or, when
/// `splits` gives byte offsets, in pieces with a pause between them (so the server sees a
/// partial head).
pub async fn raw_websocket_sent(
    addr: SocketAddr,
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
pub fn masked_frame(first_byte: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![first_byte, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// Reads one server frame (unmasked, payload under 126 bytes): opcode and payload.
pub async fn read_raw_frame(stream: &mut TcpStream, what: &str) -> (u8, Vec<u8>) {
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
pub async fn read_raw_close_code(stream: &mut TcpStream, what: &str) -> u16 {
    loop {
        let (opcode, payload) = read_raw_frame(stream, what).await;
        if opcode == 0x8 {
            assert!(payload.len() >= 2, "close frame without a code");
            return u16::from_be_bytes([payload[0], payload[1]]);
        }
    }
}
