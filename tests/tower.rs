//! End-to-end tests of switchboard with axum, both ways round, over real sockets on 127.0.0.1:
//! switchboard applications mounted in a real `axum::serve` as tower services (chat, the scope
//! built from the request, handshake refusals, the builder's limits, graceful shutdown), and
//! axum routers as the HTTP side of switchboard's own server (extractors, tower-http layers,
//! the client address and the channel layer handed to axum).
//!
//! The clients are real tokio-tungstenite clients, or raw HTTP/1.1 over TCP. Every network await
//! is bounded by `within`; nothing here asserts on how long anything took.

mod support;

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Extension;
use examples::with_axum::{self, RequestIds};
use futures::StreamExt;
use serde_json::{Value, json};
use switchboard::prelude::*;
use switchboard::tower::{ApplicationService, IntoService, ShutdownHandle};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_util::sync::CancellationToken;

use support::*;

// ---------------------------------------------------------------------------------------------
// A real axum server, and clients for it.
// ---------------------------------------------------------------------------------------------

/// `axum::serve` on an ephemeral 127.0.0.1 port, with `ConnectInfo<SocketAddr>`, until
/// [`AxumServer::stop`].
struct AxumServer {
    addr: SocketAddr,
    stop: CancellationToken,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl AxumServer {
    async fn start(router: Router) -> AxumServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local address");
        let stop = CancellationToken::new();
        let signal = stop.clone();
        let serve = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { signal.cancelled().await });
        AxumServer {
            addr,
            stop,
            task: Some(tokio::spawn(serve.into_future())),
        }
    }

    /// axum's graceful shutdown: stops accepting and waits for its HTTP connections (not for
    /// the upgraded ones, which are no longer its own).
    async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            within("axum's graceful shutdown", task)
                .await
                .expect("axum task")
                .expect("axum serve");
        }
    }
}

impl Drop for AxumServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Connects to `ws://addr{path}`; returns the client and the 101's headers.
async fn connect(addr: SocketAddr, path: &str) -> (Client, http::HeaderMap) {
    let request = format!("ws://{addr}{path}")
        .into_client_request()
        .expect("a client request");
    try_connect(request)
        .await
        .unwrap_or_else(|err| panic!("WebSocket handshake to {path} failed: {err}"))
}

async fn try_connect(
    request: tokio_tungstenite::tungstenite::handshake::client::Request,
) -> Result<(Client, http::HeaderMap), tokio_tungstenite::tungstenite::Error> {
    within(
        "the WebSocket handshake",
        tokio_tungstenite::connect_async(request),
    )
    .await
    .map(|(client, response)| (client, response.headers().clone()))
}

/// The HTTP status a handshake to `path` was refused with.
async fn refused(addr: SocketAddr, path: &str) -> u16 {
    let request = format!("ws://{addr}{path}").into_client_request().unwrap();
    refused_status(try_connect(request).await.map(|(client, _)| client))
}

/// The local address of the client's TCP connection: what the server sees as the client.
fn client_addr(client: &Client) -> SocketAddr {
    match client.get_ref() {
        MaybeTlsStream::Plain(stream) => stream.local_addr().expect("local address"),
        _ => unreachable!("plain TCP only"),
    }
}

/// A POST of JSON; status, head and body.
async fn post_json(addr: SocketAddr, path: &str, body: &Value) -> (u16, String, String) {
    let body = body.to_string();
    let headers = [("Content-Type", "application/json")];
    let (status, head, body) = http_request(addr, "POST", path, &headers, body.as_bytes()).await;
    (status, head, String::from_utf8_lossy(&body).into_owned())
}

// ---------------------------------------------------------------------------------------------
// A consumer that reports its scope and records its disconnects.
// ---------------------------------------------------------------------------------------------

/// A tag an axum layer puts in the request's extensions.
#[derive(Debug, Clone)]
struct Tag(&'static str);

/// The close codes `disconnect()` got.
#[derive(Clone)]
struct Disconnects(watch::Sender<Vec<u16>>);

impl Disconnects {
    fn new() -> Disconnects {
        Disconnects(watch::channel(Vec::new()).0)
    }

    fn codes(&self) -> Vec<u16> {
        self.0.borrow().clone()
    }

    async fn wait_for(&self, n: usize) -> Vec<u16> {
        let mut changes = self.0.subscribe();
        within(
            &format!("{n} disconnect() call(s)"),
            changes.wait_for(|codes| codes.len() >= n),
        )
        .await
        .expect("the sender outlives the wait")
        .clone()
    }
}

/// Accepts unless the query says `deny=STATUS` or `stall`; sends its scope as JSON; echoes;
/// records its disconnect (after a pause, so that a shutdown that does not wait for it is
/// seen).
struct ScopeReporter {
    disconnects: Disconnects,
}

impl WebsocketConsumer for ScopeReporter {
    type Event = NoEvent;

    async fn connect(&mut self, ws: &mut Websocket) -> Result<()> {
        let query = ws.scope().query();
        if let Some(status) = query.get("deny").and_then(|s| s.parse().ok()) {
            let status = StatusCode::from_u16(status).map_err(|e| Error::custom(e.to_string()))?;
            return ws.deny_with(status);
        }
        if query.get("stall").is_some() {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        ws.accept().await?;
        let scope = ws.scope();
        let report = json!({
            "path": scope.path,
            "raw_path": scope.raw_path,
            "query_string": scope.query_string,
            "room": scope.kwarg("room")?,
            "x_custom": scope.header("x-custom"),
            "client": scope.client.map(|addr| addr.to_string()),
            "server": scope.server.map(|addr| addr.to_string()),
            "tag": scope.extensions.get::<Tag>().map(|tag| tag.0),
        });
        ws.send_json(&report).await
    }

    async fn receive(&mut self, ws: &mut Websocket, message: Message) -> Result<()> {
        ws.send_message(message).await
    }

    async fn disconnect(&mut self, _ws: &mut Websocket, code: CloseCode) -> Result<()> {
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.disconnects
            .0
            .send_modify(|codes| codes.push(code.into()));
        Ok(())
    }
}

fn reporter(disconnects: &Disconnects) -> URLRouter {
    let disconnects = disconnects.clone();
    URLRouter::new().route(
        "/ws/{room}/",
        ConsumerApp::new(move || ScopeReporter {
            disconnects: disconnects.clone(),
        }),
    )
}

/// An axum router with `service` on `/ws/{*rest}`, an HTTP route of its own, and a tag layer.
fn mounted<A: Application>(service: ApplicationService<A>) -> Router {
    Router::new()
        .route("/", axum::routing::get(|| async { "axum itself" }))
        .route_service("/ws/{*rest}", service)
        .layer(Extension(Tag("from axum")))
}

// ---------------------------------------------------------------------------------------------
// switchboard inside axum.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn chat_works_through_switchboard_mounted_in_axum() {
    let ids = RequestIds::default();
    let (router, websockets) = with_axum::switchboard_in_axum(ids.clone());
    let server = AxumServer::start(router).await;

    let (mut a, a_head) = connect(server.addr, "/room/111").await;
    let (mut b, _) = connect(server.addr, "/room/111/").await;
    let (mut c, _) = connect(server.addr, "/room/222").await;
    // tower-http's layers saw the handshakes: their ids came back on the 101s.
    assert_eq!(a_head["x-request-id"], "1");

    send_text(&mut a, "hello 111").await;
    assert_eq!(recv_text(&mut a).await, "hello 111");
    assert_eq!(recv_text(&mut b).await, "hello 111");
    assert_quiet(&mut c).await;

    // An axum handler reaches the consumers through switchboard's channel layer.
    let (status, head, body) = post_json(
        server.addr,
        "/rooms/111/announce",
        &json!({"message": "from axum"}),
    )
    .await;
    assert_eq!(status, 200, "{head}{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["announcements"],
        1
    );
    assert_eq!(header(&head, "x-request-id"), Some("4"), "{head}");
    assert_eq!(recv_text(&mut a).await, "from axum");
    assert_eq!(recv_text(&mut b).await, "from axum");
    assert_quiet(&mut c).await;

    let (status, body) = http_get(server.addr, "/hello?name=ann").await;
    assert_eq!((status, body.as_str()), (200, "hello ann"));
    let (status, body) = http_get(server.addr, "/whoami").await;
    assert_eq!(status, 200);
    assert!(body.starts_with("127.0.0.1:"), "{body}");

    // switchboard's router refuses what it does not route, inside axum too.
    assert_eq!(refused(server.addr, "/room/bad%20room").await, 404);
    assert_eq!(
        ids.issued(),
        7,
        "three handshakes, three requests, one refusal"
    );

    // axum's graceful shutdown finishes with the WebSockets still open; the handle closes them.
    server.stop().await;
    send_text(&mut c, "still here").await;
    assert_eq!(recv_text(&mut c).await, "still here");
    let ((), a_close, b_close, c_close) = tokio::join!(
        async { within("the WebSockets' shutdown", websockets.shutdown()).await },
        recv_close(&mut a),
        recv_close(&mut b),
        recv_close(&mut c),
    );
    for close in [a_close, b_close, c_close] {
        assert_eq!(close.expect("a close frame").code, CloseCode::Away);
    }
}

#[tokio::test]
async fn the_scope_is_built_from_the_request_axum_hands_over() {
    let disconnects = Disconnects::new();
    let service = reporter(&disconnects).into_service();
    let server = AxumServer::start(mounted(service)).await;

    let mut request = format!("ws://{}/ws/caf%C3%A9/?x=1&y=two", server.addr)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("x-custom", "custom value".parse().unwrap());
    let (mut client, _) = try_connect(request).await.expect("the handshake");
    let report: Value = serde_json::from_str(&recv_text(&mut client).await).unwrap();
    assert_eq!(report["path"], "/ws/café/");
    assert_eq!(report["raw_path"], "/ws/caf%C3%A9/");
    assert_eq!(report["query_string"], "x=1&y=two");
    assert_eq!(report["room"], "café");
    assert_eq!(report["x_custom"], "custom value");
    assert_eq!(report["client"], client_addr(&client).to_string());
    assert_eq!(report["server"], Value::Null, "a tower service is not told");
    assert_eq!(report["tag"], "from axum", "the request's extensions");

    // axum's own route beside it.
    assert_eq!(
        http_get(server.addr, "/").await,
        (200, "axum itself".into())
    );
    close(&mut client).await;
    server.stop().await;
}

#[tokio::test]
async fn handshake_refusals_inside_axum_get_their_http_status() {
    let disconnects = Disconnects::new();
    let config = ServerConfig::default().connect_timeout(Duration::from_millis(300));
    let allowed = AllowedOrigins::new(["chat.example"]).expect("a valid pattern");
    let guarded = OriginValidator::new(allowed, reporter(&disconnects));
    let service = ApplicationService::builder(guarded).config(config).build();
    let server = AxumServer::start(mounted(service)).await;
    let addr = server.addr;

    // Middleware: a foreign origin is refused before any consumer runs; the allowed one opens.
    let with_origin = |origin: &str| {
        let mut request = format!("ws://{addr}/ws/lobby/")
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
        request
    };
    let foreign = try_connect(with_origin("http://evil.example")).await;
    assert_eq!(refused_status(foreign.map(|(client, _)| client)), 403);
    let (mut allowed, _) = try_connect(with_origin("http://chat.example"))
        .await
        .expect("the allowed origin opens");
    recv_text(&mut allowed).await;
    close(&mut allowed).await;

    // connect()'s answers, and its timeout from the builder's config.
    let origin_header = [("Origin", "http://chat.example")];
    let upgrade = [
        ("Origin", "http://chat.example"),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    for (path, status) in [
        ("/ws/lobby/?deny=403", 403),
        ("/ws/lobby/?deny=401", 401),
        ("/ws/lobby/?stall", 503),
        ("/ws/lobby/extra/", 404),
    ] {
        let (got, head, _) = http_request(addr, "GET", path, &upgrade, b"").await;
        assert_eq!(got, status, "{path}: {head}");
    }

    // The handshake checks run before the application.
    let mut old = upgrade;
    old[3].1 = "8";
    let (status, head, _) = http_request(addr, "GET", "/ws/lobby/", &old, b"").await;
    assert_eq!(status, 426, "{head}");
    assert_eq!(header(&head, "sec-websocket-version"), Some("13"), "{head}");
    let (status, head, _) = http_request(addr, "GET", "/ws/lobby/", &upgrade[..4], b"").await;
    assert_eq!(status, 400, "no key: {head}");

    // Plain HTTP to a WebSocket-only route is the consumer's 426; a body over the limit is 413.
    let (status, _, _) = http_request(addr, "GET", "/ws/lobby/", &origin_header, b"").await;
    assert_eq!(status, 426);
    let big = vec![b'x'; (1 << 20) + 1];
    let (status, _, _) = http_request(addr, "POST", "/ws/lobby/", &origin_header, &big).await;
    assert_eq!(status, 413);

    // Every connect() that ran ended with one disconnect: the stalled one's (1006) included.
    let codes = disconnects.wait_for(4).await;
    assert_eq!(
        codes.iter().filter(|&&code| code == 1006).count(),
        3,
        "{codes:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_builders_keepalive_and_limits_apply_inside_axum() {
    let disconnects = Disconnects::new();
    let config = ServerConfig::default()
        .keepalive(Duration::from_millis(100), Duration::from_secs(5))
        .max_message_size(1024);
    let service = ApplicationService::builder(reporter(&disconnects))
        .config(config)
        .build();
    let server = AxumServer::start(mounted(service)).await;

    let (mut client, _) = connect(server.addr, "/ws/lobby/").await;
    recv_text(&mut client).await;
    within("a keepalive ping", async {
        loop {
            match client.next().await {
                Some(Ok(WsMessage::Ping(_))) => break,
                Some(Ok(_)) => continue,
                other => panic!("expected a ping, got {other:?}"),
            }
        }
    })
    .await;

    send_text(&mut client, &"x".repeat(2048)).await;
    let close = recv_close(&mut client).await.expect("a close frame");
    assert_eq!(close.code, CloseCode::Size);
    assert_eq!(disconnects.wait_for(1).await, [1009]);
    server.stop().await;
}

#[tokio::test]
async fn the_shutdown_handle_closes_with_1001_waits_for_disconnect_then_refuses() {
    let disconnects = Disconnects::new();
    let service = reporter(&disconnects).into_service();
    let websockets: ShutdownHandle = service.shutdown_handle();
    let server = AxumServer::start(mounted(service)).await;

    let mut clients = Vec::new();
    for _ in 0..3 {
        let (mut client, _) = connect(server.addr, "/ws/lobby/").await;
        recv_text(&mut client).await;
        clients.push(client);
    }
    assert!(!websockets.is_shut_down());

    // Called while axum still serves, as from inside its `with_graceful_shutdown` future.
    let closes = futures::future::join_all(clients.iter_mut().map(recv_close));
    let ((), closes) = tokio::join!(
        async { within("the WebSockets' shutdown", websockets.shutdown()).await },
        closes
    );
    for close in closes {
        assert_eq!(close.expect("a close frame").code, CloseCode::Away);
    }
    // shutdown() returned after every disconnect() (each takes 100 ms) had run.
    assert_eq!(disconnects.codes(), [1001, 1001, 1001]);
    assert!(websockets.is_shut_down());

    // From then on the service takes no new connection; axum's own routes still answer.
    assert_eq!(refused(server.addr, "/ws/lobby/").await, 503);
    assert_eq!(http_get(server.addr, "/").await.0, 200);
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// axum inside switchboard.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn chat_and_axum_views_work_with_axum_mounted_in_switchboard() {
    let ids = RequestIds::default();
    let layer: SharedLayer = Arc::new(InMemoryChannelLayer::new());
    let server = TestServer::start_with_layer(
        with_axum::axum_in_switchboard(ids.clone()),
        ServerConfig::default().max_body_size(4096),
        Arc::clone(&layer),
    )
    .await;

    let mut a = server.connect("/room/111").await;
    let mut b = server.connect("/room/111").await;
    send_text(&mut a, "hi").await;
    assert_eq!(recv_text(&mut a).await, "hi");
    assert_eq!(recv_text(&mut b).await, "hi");

    // Query, through tower-http's layers (the id on the response).
    let (status, head, body) = http_request(server.addr, "GET", "/hello?name=ann", &[], b"").await;
    assert_eq!(
        (status, body.as_slice()),
        (200, &b"hello ann"[..]),
        "{head}"
    );
    assert_eq!(header(&head, "x-request-id"), Some("1"), "{head}");

    // ConnectInfo: switchboard hands axum the client address.
    let (status, body) = http_get(server.addr, "/whoami").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("127.0.0.1:"), "{body}");

    // Path, Json, State and the channel layer as an Extension: the view talks to the room.
    let (status, head, body) = post_json(
        server.addr,
        "/rooms/111/announce",
        &json!({"message": "news"}),
    )
    .await;
    assert_eq!(status, 200, "{head}{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["announcements"],
        1
    );
    assert_eq!(recv_text(&mut a).await, "news");
    assert_eq!(recv_text(&mut b).await, "news");

    // axum's own refusals pass through; switchboard's body limit comes before axum.
    let (status, _, _) = post_json(server.addr, "/rooms/111/announce", &json!({"m": 1})).await;
    assert_eq!(status, 422, "axum's Json rejection");
    let (status, _, _) =
        post_json(server.addr, "/rooms/a.b/announce", &json!({"message": "x"})).await;
    assert_eq!(status, 404, "the view's own 404");
    assert_eq!(
        http_get(server.addr, "/nowhere").await.0,
        404,
        "axum's fallback"
    );
    let big = json!({"message": "x".repeat(5000)});
    let (status, _, _) = post_json(server.addr, "/rooms/111/announce", &big).await;
    assert_eq!(status, 413);
    assert_eq!(
        ids.issued(),
        6,
        "every HTTP request but the one refused for its size went through the layer"
    );

    close(&mut a).await;
    close(&mut b).await;
    server.shutdown().await;
}
