//! End-to-end tests of the server's limits over real sockets: request heads (414, 431, the
//! header timeout), connection limits (503 with `Retry-After`, 429 per client), trusted proxies
//! (`X-Forwarded-For`, `Forwarded`, `X-Forwarded-Proto`).
//!
//! Most tests configure low limits so they stay small; every network await is bounded.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard::limits::{ClientLimits, Rate, RateLimit, SlowClientPolicy};
use switchboard::prelude::*;
use switchboard::server::ForwardedAllow;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request as WsRequest;

use support::*;

/// Says who it thinks the client is, then echoes.
#[derive(Default)]
struct Whoami;

impl WebsocketConsumer for Whoami {
    type Event = NoEvent;

    async fn connect(&mut self, ws: &mut Websocket) -> Result<()> {
        ws.accept().await?;
        let scope = ws.scope();
        let report = json!({
            "client": scope.client.map(|c| c.to_string()),
            "scheme": scope.scheme(),
        });
        ws.send_json(&report).await
    }

    async fn receive(&mut self, ws: &mut Websocket, message: Message) -> Result<()> {
        ws.send_message(message).await
    }
}

fn app() -> ProtocolTypeRouter {
    ProtocolTypeRouter::new()
        .http(URLRouter::new().route(
            "/",
            handler(|req| async move {
                let client = req.scope.client.map(|c| c.to_string()).unwrap_or_default();
                response::text(format!("{} {}", client, req.scope.scheme()))
            }),
        ))
        .websocket(URLRouter::new().route("/ws/", Whoami::as_app()))
}

/// Sends `request` on a fresh connection and reads until the server closes; returns the
/// response's status line ("" if the server closed without answering).
async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = within("TCP connect", TcpStream::connect(addr))
        .await
        .expect("connect");
    // The server may answer and close before all of it is written: that is the point.
    let _ = within("writing", stream.write_all(request)).await;
    let mut answer = Vec::new();
    let _ = within("the answer", stream.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    text.lines().next().unwrap_or("").to_owned()
}

fn handshake_with(target: &str, extra: &str) -> String {
    format!(
        "GET {target} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

#[tokio::test]
async fn oversized_request_heads_get_414_and_431_at_the_default_limits() {
    let server = TestServer::start(app()).await;
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
    let server = TestServer::start_with(app(), config).await;
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
    let server = TestServer::start_with(app(), config).await;
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

/// The status and `Retry-After` of a refused handshake.
async fn refusal(server: &TestServer, request: WsRequest) -> (u16, String) {
    match server.connect_request(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let retry = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            (response.status().as_u16(), retry)
        }
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("expected an HTTP refusal, the handshake was accepted"),
    }
}

fn request(server: &TestServer, headers: &[(&'static str, &str)]) -> WsRequest {
    let mut request = server.ws_url("/ws/").into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().append(*name, value.parse().unwrap());
    }
    request
}

#[tokio::test]
async fn over_the_connection_limit_handshakes_get_503_and_members_carry_on() {
    let server = TestServer::start_with(app(), ServerConfig::default().max_connections(3)).await;
    let mut members = Vec::new();
    for _ in 0..3 {
        let mut client = server.connect("/ws/").await;
        recv_json(&mut client).await;
        members.push(client);
    }
    let (status, retry_after) = refusal(&server, request(&server, &[])).await;
    assert_eq!((status, retry_after.as_str()), (503, "1"));
    // Plain HTTP is refused the same way.
    assert_eq!(http_get(server.addr, "/").await.0, 503);
    for client in &mut members {
        send_text(client, "still here").await;
        assert_eq!(recv_text(client).await, "still here");
    }
    // A member leaving makes room.
    let mut leaving = members.pop().unwrap();
    close(&mut leaving).await;
    drop(leaving);
    let mut newcomer = within("a place to free up", async {
        loop {
            if let Ok(client) = server.try_connect("/ws/").await {
                return client;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    recv_json(&mut newcomer).await;
    server.shutdown().await;
}

#[tokio::test]
async fn per_client_limits_answer_429_and_count_the_forwarded_client() {
    let limits = ClientLimits::default()
        .max_connections(2)
        .handshakes(Rate::new(1, 4));
    let config = ServerConfig::default()
        .client_limits(limits)
        .forwarded_allow("127.0.0.1".parse().unwrap());
    let server = TestServer::start_with(app(), config).await;
    // Two clients behind the trusted proxy (this test) are two clients.
    let ann = [("x-forwarded-for", "198.51.100.1")];
    let bob = [("x-forwarded-for", "198.51.100.2")];
    let mut held = Vec::new();
    for who in [&ann, &ann, &bob, &bob] {
        let client = server.connect_request(request(&server, who)).await.unwrap();
        held.push(client);
    }
    let (status, retry_after) = refusal(&server, request(&server, &ann)).await;
    assert_eq!((status, retry_after.as_str()), (429, "1"));
    // A closed connection gives its place back, but ann's handshakes are spent (4 of a burst
    // of 4, one more a second).
    let mut first = held.remove(0);
    close(&mut first).await;
    drop(first);
    // Handshakes: a burst of 4, then one a second. Of a dozen in a row, the first 4 open and
    // one at least is refused (all twelve would take the server over three seconds).
    let carol = [("x-forwarded-for", "198.51.100.3")];
    let mut outcomes = Vec::new();
    for _ in 0..12 {
        match server.connect_request(request(&server, &carol)).await {
            Ok(mut client) => {
                close(&mut client).await;
                outcomes.push(101);
            }
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                outcomes.push(response.status().as_u16());
            }
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!(outcomes[..4], [101; 4], "{outcomes:?}");
    assert!(outcomes.contains(&429), "{outcomes:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn forwarding_headers_count_only_from_trusted_proxies() {
    let spoofed = [
        ("x-forwarded-for", "6.6.6.6"),
        ("x-forwarded-proto", "https"),
        ("forwarded", "for=7.7.7.7;proto=https"),
    ];
    // Untrusted (the default): the headers are ignored.
    let server = TestServer::start(app()).await;
    let mut client = server
        .connect_request(request(&server, &spoofed))
        .await
        .unwrap();
    let report = recv_json(&mut client).await;
    assert!(
        report["client"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{report}"
    );
    assert_eq!(report["scheme"], "ws");
    server.shutdown().await;

    // Trusted: a chain of several hops, walked from the right past the trusted ones.
    let allow: ForwardedAllow = "127.0.0.1, 10.0.0.0/8".parse().unwrap();
    let server =
        TestServer::start_with(app(), ServerConfig::default().forwarded_allow(allow)).await;
    let chain = [
        ("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.0.0.2"),
        ("x-forwarded-proto", "https"),
    ];
    let mut client = server
        .connect_request(request(&server, &chain))
        .await
        .unwrap();
    let report: Value = recv_json(&mut client).await;
    assert_eq!(report, json!({"client": "203.0.113.7:0", "scheme": "wss"}));
    let forwarded = [("forwarded", r#"for="[2001:db8::7]:4711";proto=http"#)];
    let mut client = server
        .connect_request(request(&server, &forwarded))
        .await
        .unwrap();
    let report: Value = recv_json(&mut client).await;
    assert_eq!(
        report,
        json!({"client": "[2001:db8::7]:4711", "scheme": "ws"})
    );
    // Plain HTTP too.
    let (status, _, body) = http_request(
        server.addr,
        "GET",
        "/",
        &[
            ("X-Forwarded-For", "192.0.2.44"),
            ("X-Forwarded-Proto", "https"),
        ],
        b"",
    )
    .await;
    assert_eq!(
        (status, String::from_utf8_lossy(&body).as_ref()),
        (200, "192.0.2.44:0 https")
    );
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// What one connection may send, and what happens to one that does not read.
// ---------------------------------------------------------------------------------------------

/// A room member: forwards what the room says, says what its client sends to the room (the
/// JSON consumer's defaults answer bad input and excess), records its disconnect code.
struct Member {
    codes: tokio::sync::watch::Sender<Vec<u16>>,
}

#[derive(Deserialize)]
struct Say {
    say: String,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename = "room.said")]
struct Said {
    said: String,
}

impl JsonWebsocketConsumer for Member {
    type Incoming = Say;
    type Event = Said;

    fn groups(&self) -> Vec<String> {
        vec!["room".to_owned()]
    }

    async fn receive_json(&mut self, ws: &mut Websocket, content: Say) -> Result<()> {
        ws.group_send("room", &Said { said: content.say }).await
    }

    async fn event(&mut self, ws: &mut Websocket, event: Event<Said>) -> Result<()> {
        ws.forward(&event).await
    }

    async fn disconnect(&mut self, _ws: &mut Websocket, code: CloseCode) -> Result<()> {
        self.codes.send_modify(|codes| codes.push(code.into()));
        Ok(())
    }
}

/// The member route, and the codes its consumers' `disconnect()` got.
fn room() -> (ProtocolTypeRouter, tokio::sync::watch::Receiver<Vec<u16>>) {
    let (codes, seen) = tokio::sync::watch::channel(Vec::new());
    let member = ConsumerApp::new(move || Member {
        codes: codes.clone(),
    });
    let app = ProtocolTypeRouter::new().websocket(URLRouter::new().route("/ws/room/", member));
    (app, seen)
}

/// Reads frames until the close frame: the texts before it, and its code and reason.
async fn drain_until_close(client: &mut Client) -> (Vec<String>, u16, String) {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message as WsMessage;
    within("frames up to a close frame", async {
        let mut texts = Vec::new();
        loop {
            match client.next().await {
                Some(Ok(WsMessage::Text(text))) => texts.push(text.to_string()),
                Some(Ok(WsMessage::Close(Some(frame)))) => {
                    return (texts, u16::from(frame.code), frame.reason.to_string());
                }
                Some(Ok(WsMessage::Close(None))) => return (texts, 1005, String::new()),
                Some(Ok(_)) => {}
                Some(Err(err)) => panic!("connection failed before a close frame: {err}"),
                None => panic!("connection ended without a close frame"),
            }
        }
    })
    .await
}

#[tokio::test]
async fn a_flood_gets_rate_limited_answers_then_1008_and_nothing_of_the_excess_is_said() {
    let limit = RateLimit::default()
        .messages(Rate::new(10, 20))
        .close_after(5, Duration::from_secs(5));
    let (app, _) = room();
    let server = TestServer::start_with(app, ServerConfig::default().rate_limit(limit)).await;
    let mut listener = server.connect("/ws/room/").await;
    let mut flooder = server.connect("/ws/room/").await;
    for n in 0..100 {
        send_json(&mut flooder, &json!({ "say": n.to_string() })).await;
    }
    let (texts, code, reason) = drain_until_close(&mut flooder).await;
    assert_eq!((code, reason.as_str()), (1008, "rate limit exceeded"));
    let rate_limited = json!({"type": "error", "error": "rate limited"});
    let errors = texts
        .iter()
        .filter(|t| serde_json::from_str::<Value>(t).unwrap() == rate_limited)
        .count();
    assert_eq!(
        errors, 5,
        "one answer per excess frame until the close: {texts:?}"
    );
    let said = texts.len() - errors;
    // The burst of 20, and maybe a frame or two the rate earned while the rest arrived.
    assert!((20..30).contains(&said), "{said} said: {texts:?}");
    // The listener heard exactly what was said, not the excess.
    for _ in 0..said {
        recv_json(&mut listener).await;
    }
    assert_quiet(&mut listener).await;
    server.shutdown().await;
}

#[tokio::test]
async fn the_default_rate_lets_a_burst_of_500_through_and_a_route_can_lift_it() {
    let (app, _) = room();
    let server = TestServer::start(app).await;
    let mut client = server.connect("/ws/room/").await;
    for n in 0..500 {
        send_json(&mut client, &json!({ "say": n.to_string() })).await;
    }
    for n in 0..500 {
        assert_eq!(recv_json(&mut client).await["said"], n.to_string());
    }
    assert_quiet(&mut client).await;
    server.shutdown().await;

    // A route of its own, unlimited: 3 000 at once pass under the server's default.
    let (codes, _) = tokio::sync::watch::channel(Vec::new());
    let member = ConsumerApp::new(move || Member {
        codes: codes.clone(),
    })
    .rate_limit(RateLimit::unlimited());
    let app = ProtocolTypeRouter::new().websocket(URLRouter::new().route("/ws/room/", member));
    let server = TestServer::start(app).await;
    let mut client = server.connect("/ws/room/").await;
    let sending = async {
        for n in 0..3_000 {
            send_json(&mut client, &json!({ "say": n.to_string() })).await;
        }
    };
    sending.await;
    for n in 0..3_000 {
        assert_eq!(recv_json(&mut client).await["said"], n.to_string());
    }
    server.shutdown().await;
}

/// A client whose socket holds little, and that reads nothing until told to.
async fn non_reader(server: &TestServer, path: &str) -> Client {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = within("TCP connect", socket.connect(server.addr))
        .await
        .unwrap();
    let (client, _) = within(
        "the handshake",
        tokio_tungstenite::client_async(
            server.ws_url(path),
            tokio_tungstenite::MaybeTlsStream::Plain(stream),
        ),
    )
    .await
    .unwrap();
    client
}

#[tokio::test]
async fn a_member_that_does_not_read_is_closed_with_1013_and_the_others_lose_nothing() {
    let layer = InMemoryChannelLayer::new();
    let (app, mut codes) = room();
    let config = ServerConfig::default().slow_client(SlowClientPolicy::Disconnect {
        after: Duration::from_millis(300),
        max_dropped: None,
    });
    let server =
        TestServer::start_with_layer(app, config, std::sync::Arc::new(layer.clone())).await;
    let mut reader = server.connect("/ws/room/").await;
    let mut sleeper = non_reader(&server, "/ws/room/").await;
    within("both in the room", async {
        while layer.group_size("room") < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;

    // 8 KB messages, one a millisecond, until the sleeper is gone; the reader reads them all.
    let padding = "x".repeat(8 << 10);
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let flood = {
        let (layer, sent) = (layer.clone(), sent.clone());
        let mut codes = codes.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            while codes.borrow_and_update().is_empty() {
                tick.tick().await;
                let n = sent.load(std::sync::atomic::Ordering::SeqCst);
                let said = Said {
                    said: format!("{n} {padding}"),
                };
                let envelope = switchboard::layer::Envelope::encode(&said).unwrap();
                layer.group_send("room", envelope).await.unwrap();
                sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        })
    };
    let mut heard = 0;
    let closed = within("the sleeper to be closed", async {
        loop {
            tokio::select! {
                frame = recv_json(&mut reader) => {
                    let said = frame["said"].as_str().unwrap().to_owned();
                    let n: usize = said.split(' ').next().unwrap().parse().unwrap();
                    assert_eq!(n, heard, "the reader missed a message");
                    heard += 1;
                }
                changed = codes.changed() => {
                    changed.unwrap();
                    return codes.borrow().clone();
                }
            }
        }
    })
    .await;
    assert_eq!(closed, [1013]);
    within("the flood to stop", flood).await.unwrap();
    // The reader gets the rest of what was sent, in order.
    let total = sent.load(std::sync::atomic::Ordering::SeqCst);
    while heard < total {
        let frame = recv_json(&mut reader).await;
        let said = frame["said"].as_str().unwrap();
        assert_eq!(said.split(' ').next().unwrap(), heard.to_string());
        heard += 1;
    }
    assert_eq!(layer.group_size("room"), 1, "the sleeper left the room");
    // Reading again, the sleeper gets what was already on its way, then 1013.
    let (texts, code, reason) = drain_until_close(&mut sleeper).await;
    assert!(
        !texts.is_empty() && texts.len() < total,
        "{} of {total}",
        texts.len()
    );
    assert_eq!(
        (code, reason.as_str()),
        (1013, "too slow: messages for this client were dropped")
    );
    server.shutdown().await;
}
