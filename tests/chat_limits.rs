//! The chat-app's limits as chat-protocol v2 states them ("Limits"), tested from outside over
//! real sockets, with the flags the contract names: oversized request heads (414, 431), the
//! connection limit (503 with `Retry-After`), a flooder (`rate limited`, then 1008) next to a
//! member who loses nothing, a member that never reads (1013) in a room that carries on, and
//! trusted proxies (`--forwarded-allow-ips`).

mod support;

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use support::chat::{ChatNode, room, say};
use support::*;

/// Sends `request` on a fresh connection and reads the answer's status line.
async fn status_line(node: &ChatNode, request: String) -> String {
    let mut stream = within("TCP connect", TcpStream::connect(node.addr))
        .await
        .unwrap();
    // The server may answer and close before all of it is written.
    let _ = within("writing", stream.write_all(request.as_bytes())).await;
    let mut answer = Vec::new();
    let _ = within("the answer", stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

fn handshake(target: &str, extra: &str) -> String {
    format!(
        "GET {target} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

#[tokio::test]
async fn oversized_request_heads_get_414_and_431() {
    let (node, _) = ChatNode::with_flags(&[]).await;
    let lobby = room("lobby");
    let long_line = format!("{lobby}?q={}", "a".repeat(10 << 10));
    let big_header = format!("Cookie: {}\r\n", "c".repeat(100 << 10));
    let many: String = (0..200).map(|n| format!("X-{n}: {n}\r\n")).collect();
    assert_eq!(
        status_line(&node, handshake(&long_line, "")).await,
        "HTTP/1.1 414 URI Too Long"
    );
    for extra in [big_header, many] {
        assert_eq!(
            status_line(&node, handshake(&lobby, &extra)).await,
            "HTTP/1.1 431 Request Header Fields Too Large"
        );
    }
    // The flags move the limits.
    let (node, _) = ChatNode::with_flags(&["--max-request-line", "64", "--max-headers", "8"]).await;
    assert!(
        status_line(&node, handshake(&format!("{lobby}?{}", "a".repeat(64)), ""))
            .await
            .contains(" 414 ")
    );
    assert!(
        status_line(&node, handshake(&lobby, "A: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n"))
            .await
            .contains(" 431 ")
    );
    let mut member = node.connect(&lobby).await;
    say(&mut member, "still serving").await;
}

#[tokio::test]
async fn over_the_connection_limit_a_handshake_gets_503_with_retry_after() {
    let (node, _) = ChatNode::with_flags(&["--max-connections", "2"]).await;
    let mut ann = node.connect(&room("lobby")).await;
    let mut bob = node.connect(&room("lobby")).await;
    let refused = node.try_connect(&room("lobby")).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
            assert!(response.headers().contains_key("retry-after"));
        }
        other => panic!("expected a 503, got {:?}", other.map(|_| "a socket")),
    }
    say(&mut ann, "we are still here").await;
    for member in [&mut ann, &mut bob] {
        let event = support::chat::next_of(member, "chat.message").await;
        assert_eq!(event["message"], "we are still here");
    }
}

/// Every text frame until the close frame, and its code.
async fn until_close(client: &mut Client) -> (Vec<Value>, u16) {
    bounded(
        "frames up to a close frame",
        Duration::from_secs(20),
        async {
            let mut events = Vec::new();
            loop {
                match client.next().await {
                    Some(Ok(WsMessage::Text(text))) => {
                        events.push(serde_json::from_str(&text).unwrap());
                    }
                    Some(Ok(WsMessage::Close(frame))) => {
                        return (events, frame.map_or(1005, |f| u16::from(f.code)));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(err)) => panic!("connection failed before a close frame: {err}"),
                    None => panic!("connection ended without a close frame"),
                }
            }
        },
    )
    .await
}

/// The measurement: one member floods a room of five listeners at full speed while
/// another says twenty messages at ten a second. Each listener hears all twenty; the flooder
/// gets `rate limited` for its excess and is closed with 1008.
#[tokio::test]
async fn a_flooder_is_limited_and_closed_and_a_member_beside_it_loses_nothing() {
    let (node, _) = ChatNode::with_flags(&[]).await;
    let flood_room = room("flooded");
    let mut listeners = Vec::new();
    for _ in 0..5 {
        listeners.push(node.connect(&flood_room).await);
    }
    let mut flooder = node.connect(&flood_room).await;
    let mut speaker = node.connect(&flood_room).await;

    let flooding = async {
        // 10 000 as fast as the socket takes them; the server closes it long before the end.
        for n in 0..10_000 {
            let text = json!({ "message": format!("flood {n}") }).to_string();
            if flooder.send(WsMessage::text(text)).await.is_err() {
                break;
            }
        }
        until_close(&mut flooder).await
    };
    let speaking = async {
        for n in 0..20 {
            say(&mut speaker, &format!("said {n}")).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let ((events, code), ()) = tokio::join!(flooding, speaking);
    assert_eq!(code, 1008);
    let limited = events
        .iter()
        .filter(|e| **e == json!({"type": "error", "error": "rate limited"}))
        .count();
    assert!(limited > 0, "no rate limited answer: {events:?}");

    for listener in &mut listeners {
        let mut said = Vec::new();
        let mut flood = 0;
        bounded("the twenty messages", Duration::from_secs(20), async {
            while said.len() < 20 {
                let event = support::chat::next_of(listener, "chat.message").await;
                let text = event["message"].as_str().unwrap();
                if let Some(n) = text.strip_prefix("said ") {
                    said.push(n.parse::<u32>().unwrap());
                } else {
                    flood += 1;
                }
            }
        })
        .await;
        assert_eq!(said, (0..20).collect::<Vec<_>>());
        // The burst of 500, and what 200 a second earned while the flood lasted.
        assert!(flood < 1_000, "{flood} flood messages were broadcast");
    }
}

/// A member that never reads, in a room that keeps talking, is closed with 1013 after
/// `--slow-client-timeout-secs`; the members who read hear everything.
#[tokio::test]
async fn a_member_that_never_reads_is_closed_with_1013_and_the_room_carries_on() {
    let (node, layer) = ChatNode::with_flags(&["--slow-client-timeout-secs", "1"]).await;
    let busy = room("busy");
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = within("TCP connect", socket.connect(node.addr))
        .await
        .unwrap();
    let (mut sleeper, _) = within(
        "the handshake",
        tokio_tungstenite::client_async(
            node.ws_url(&busy),
            tokio_tungstenite::MaybeTlsStream::Plain(stream),
        ),
    )
    .await
    .unwrap();
    // The first reader also speaks: it hears itself too, and reads along like the others.
    let mut readers = Vec::new();
    for _ in 0..5 {
        readers.push(node.connect(&busy).await);
    }

    // Long messages at the rate one member may keep up (bursts of 500, then 200 a second),
    // until the sleeper's socket and queue are full and it is closed; readers read along.
    let long = "m".repeat(4000);
    let mut said = 0;
    let mut heard = vec![0usize; readers.len()];
    bounded("the sleeper to be closed", Duration::from_secs(60), async {
        loop {
            say(&mut readers[0], &format!("{said} {long}")).await;
            said += 1;
            if said % 50 == 0 {
                for (reader, heard) in readers.iter_mut().zip(&mut heard) {
                    while *heard < said {
                        let event = support::chat::next_of(reader, "chat.message").await;
                        let text = event["message"].as_str().unwrap();
                        assert!(
                            text.starts_with(&format!("{} ", *heard)),
                            "a reader missed one"
                        );
                        *heard += 1;
                    }
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
                // Whether the sleeper is gone: the room's count of members says so.
                if layer.group_size("chat_busy") == readers.len() {
                    return;
                }
            }
        }
    })
    .await;
    let (_events, code) = until_close(&mut sleeper).await;
    assert_eq!(code, 1013);
}

/// `--forwarded-allow-ips`: the client a trusted proxy names is the one the per-client limits
/// count; from an untrusted peer, a spoofed `X-Forwarded-For` changes nothing.
#[tokio::test]
async fn forwarded_addresses_count_only_from_trusted_proxies() {
    let request = |node: &ChatNode, forwarded_for: &str| {
        let mut request = node.ws_url(&room("lobby")).into_client_request().unwrap();
        request
            .headers_mut()
            .insert("x-forwarded-for", forwarded_for.parse().unwrap());
        request
    };
    let status = |result: Result<Client, tokio_tungstenite::tungstenite::Error>| match result {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("{other}"),
    };

    let (untrusted, _) = ChatNode::with_flags(&["--max-connections-per-client", "1"]).await;
    let _first = untrusted
        .connect_request(request(&untrusted, "198.51.100.1"))
        .await
        .unwrap();
    // Spoofing another address does not make another client.
    let spoofed = untrusted
        .connect_request(request(&untrusted, "198.51.100.2"))
        .await;
    assert_eq!(status(spoofed), 429);

    let (trusted, _) = ChatNode::with_flags(&[
        "--max-connections-per-client",
        "1",
        "--forwarded-allow-ips",
        "127.0.0.0/8,10.0.0.0/8",
    ])
    .await;
    let chain = "6.6.6.6, 198.51.100.1, 10.0.0.2";
    let _ann = trusted
        .connect_request(request(&trusted, chain))
        .await
        .unwrap();
    let bob = trusted
        .connect_request(request(&trusted, "198.51.100.2"))
        .await;
    assert_eq!(status(bob), 101, "another client behind the proxy");
    // The same client through another chain (its forged first hop differs): still one client.
    let again = trusted
        .connect_request(request(&trusted, "7.7.7.7, 198.51.100.1"))
        .await;
    assert_eq!(status(again), 429);
}

/// Behind a trusted proxy that terminates TLS (`X-Forwarded-Proto: https`), the login's session
/// cookie is `Secure` without `--secure-cookies`; from an untrusted peer the header is ignored.
#[tokio::test]
async fn a_login_through_a_trusted_tls_proxy_gets_a_secure_cookie() {
    let login = |node: &ChatNode| {
        let addr = node.addr;
        async move {
            let (status, head, _) = http_request(
                addr,
                "POST",
                "/login",
                &[
                    ("Content-Type", "application/x-www-form-urlencoded"),
                    ("X-Forwarded-Proto", "https"),
                ],
                b"username=ann",
            )
            .await;
            assert!((300..400).contains(&status), "{status}: {head}");
            head.lines()
                .find(|line| line.to_ascii_lowercase().starts_with("set-cookie:"))
                .expect("a session cookie")
                .to_owned()
        }
    };
    let (trusting, _) = ChatNode::with_flags(&["--forwarded-allow-ips", "127.0.0.1"]).await;
    let cookie = login(&trusting).await;
    assert!(cookie.contains("Secure"), "{cookie}");
    let (untrusting, _) = ChatNode::with_flags(&[]).await;
    let cookie = login(&untrusting).await;
    assert!(!cookie.contains("Secure"), "{cookie}");
}

/// Messages into a hundred thousand invented rooms: the rooms' logs stay within the history
/// budget (here 1 MiB), the rooms idle longest forgotten first, and a room nobody is in keeps
/// nothing else.
#[tokio::test]
async fn messages_into_100_000_invented_rooms_stay_within_the_budget() {
    use switchboard::layer::{ChannelLayer, Envelope};

    let (node, layer) = ChatNode::with_flags(&["--history-budget-mib", "1"]).await;
    let text = "x".repeat(200);
    for n in 0..100_000 {
        let event = json!({"type": "chat.message", "message": text, "user": "guest"});
        layer
            .group_send(
                &format!("chat_invented-{n}"),
                Envelope::encode(&event).unwrap(),
            )
            .await
            .unwrap();
        if n % 10_000 == 0 {
            let (bytes, _) = layer.log_usage();
            assert!(bytes <= 1 << 20, "{bytes} bytes after {n} rooms");
        }
    }
    let (bytes, logs) = layer.log_usage();
    assert!(bytes <= 1 << 20, "{bytes} bytes");
    assert!(logs < 10_000, "{logs} logs kept");
    // The newest room still has its message; a joiner of the oldest gets none.
    let mut newest = node.connect(&room("invented-99999")).await;
    let history = support::chat::next_of(&mut newest, "chat.history").await;
    assert_eq!(
        history["messages"].as_array().unwrap().len(),
        1,
        "{history}"
    );
}
