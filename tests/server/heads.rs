//! Request head limits over real sockets: a request line over 8 KiB is 414, a header section over
//! 16 KiB or more than 100 headers 431, at the defaults and configured, for the first request of
//! a connection (read by the server) and the ones after it (read by hyper); a head dribbled a
//! byte at a time is closed at the header timeout.

use std::time::Duration;

use switchboard::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::raw::{handshake_with, raw_exchange};
use crate::support::*;
use crate::whoami::whoami_app;

#[tokio::test]
async fn oversized_request_heads_get_414_and_431_at_the_default_limits() {
    let server = TestServer::start(whoami_app()).await;
    let long_target = format!("/ws/?q={}", "a".repeat(10 << 10));
    let big_header = format!("X-Big: {}\r\n", "b".repeat(100 << 10));
    let many_headers: String = (0..200).map(|n| format!("X-{n}: 1\r\n")).collect();
    for (what, request, status) in [
        (
            "10 KB request line",
            handshake_with(&long_target, ""),
            "HTTP/1.1 414 URI Too Long",
        ),
        (
            "100 KB header",
            handshake_with("/ws/", &big_header),
            "HTTP/1.1 431 Request Header Fields Too Large",
        ),
        (
            "200 headers",
            handshake_with("/ws/", &many_headers),
            "HTTP/1.1 431 Request Header Fields Too Large",
        ),
        (
            "plain HTTP, 10 KB line",
            format!("GET {long_target} HTTP/1.1\r\nHost: x\r\n\r\n"),
            "HTTP/1.1 414 URI Too Long",
        ),
    ] {
        assert_eq!(
            raw_exchange(server.addr, request.as_bytes()).await,
            status,
            "{what}"
        );
    }
    // Just under the limits, a handshake opens.
    let fits = format!("/ws/?q={}", "a".repeat(8000));
    let mut client = server.connect(&fits).await;
    assert_eq!(recv_json(&mut client).await["scheme"], "ws");
    close(&mut client).await;
    server.shutdown().await;
}

#[tokio::test]
async fn head_limits_are_configurable_and_hold_for_requests_after_the_first() {
    let config = ServerConfig::default().request_head(200, 400, 6);
    let server = TestServer::start_with(whoami_app(), config).await;
    let over_line = handshake_with(&format!("/ws/?{}", "a".repeat(200)), "");
    assert!(
        raw_exchange(server.addr, over_line.as_bytes())
            .await
            .contains(" 414 ")
    );
    let over_bytes = handshake_with("/ws/", &format!("X: {}\r\n", "b".repeat(300)));
    assert!(
        raw_exchange(server.addr, over_bytes.as_bytes())
            .await
            .contains(" 431 ")
    );
    // The handshake's own 5 headers and 2 more.
    let over_count = handshake_with("/ws/", "A: 1\r\nB: 2\r\n");
    assert!(
        raw_exchange(server.addr, over_count.as_bytes())
            .await
            .contains(" 431 ")
    );

    // A kept-alive connection: the second request is read by hyper, with the same limits.
    let mut stream = within("TCP connect", TcpStream::connect(server.addr))
        .await
        .unwrap();
    let first = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let second = format!("GET /?{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(300));
    within(
        "writing",
        stream.write_all(format!("{first}{second}").as_bytes()),
    )
    .await
    .unwrap();
    let mut answers = String::new();
    within("two answers", async {
        let mut buf = [0u8; 4096];
        while answers.matches("HTTP/1.1 ").count() < 2 {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed early: {answers}");
            answers.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
    .await;
    assert!(answers.starts_with("HTTP/1.1 200 OK"), "{answers}");
    assert!(answers.contains("HTTP/1.1 414 URI Too Long"), "{answers}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_head_dribbled_byte_by_byte_is_closed_at_the_header_timeout() {
    let config = ServerConfig::default().header_read_timeout(Duration::from_millis(400));
    let server = TestServer::start_with(whoami_app(), config).await;
    let mut stream = within("TCP connect", TcpStream::connect(server.addr))
        .await
        .unwrap();
    let head = handshake_with("/ws/", "");
    // One byte every 50 ms would take seconds; the server gives up long before.
    let closed = within("the server to close the connection", async {
        for byte in head.as_bytes() {
            if stream.write_all(&[*byte]).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            let mut buf = [0u8; 64];
            match tokio::time::timeout(Duration::from_millis(1), stream.read(&mut buf)).await {
                Ok(Ok(0) | Err(_)) => return true,
                Ok(Ok(_)) => panic!("the server answered a head it had not seen whole"),
                Err(_) => {}
            }
        }
        false
    })
    .await;
    assert!(closed, "the whole head was sent before the server closed");
    // It still serves.
    let mut client = server.connect("/ws/").await;
    recv_json(&mut client).await;
    server.shutdown().await;
}
