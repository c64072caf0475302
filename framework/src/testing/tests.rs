//! The communicators' behaviour: what they report and how they wait. The consumer loop they
//! drive is tested next to it, in `consumer/runner.rs`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::{Value, json};

use super::probe::probe;
use super::{ApplicationCommunicator, Error, Handshake, HttpCommunicator, WebsocketCommunicator};
use crate::consumer::{
    CloseCode, HttpRequest, Message, NoEvent, Websocket, WebsocketConsumer, handler, response,
};
use crate::error::Result;
use crate::layer::{Event, InMemoryChannelLayer, SharedLayer};
use crate::routing::{ProtocolTypeRouter, URLRouter};
use crate::scope::{Protocol, Scope, User};

#[derive(Default)]
struct Echo;

impl WebsocketConsumer for Echo {
    type Event = NoEvent;

    async fn receive(&mut self, ws: &mut Websocket, message: Message) -> Result<()> {
        ws.send_message(message).await
    }
}

/// Answers the handshake as its `answer` query parameter says.
#[derive(Default)]
struct Gate;

impl WebsocketConsumer for Gate {
    type Event = NoEvent;

    async fn connect(&mut self, ws: &mut Websocket) -> Result<()> {
        let answer = ws.scope().query().get("answer").map(str::to_owned);
        match answer.as_deref() {
            Some("deny") => ws.deny(),
            Some("teapot") => ws.deny_with(StatusCode::IM_A_TEAPOT),
            _ => {
                let mut headers = HeaderMap::new();
                headers.insert("x-room", HeaderValue::from_static("lobby"));
                let chosen = ws
                    .scope()
                    .subprotocols
                    .iter()
                    .find(|p| p.starts_with("chat"))
                    .cloned();
                ws.accept_with(chosen.as_deref(), headers).await
            }
        }
    }
}

/// Closes on `bye`, answers `ok ...` otherwise.
#[derive(Default)]
struct Strict;

impl WebsocketConsumer for Strict {
    type Event = NoEvent;

    async fn receive(&mut self, ws: &mut Websocket, message: Message) -> Result<()> {
        match message.as_text()? {
            "bye" => ws.close(CloseCode::from(4000), "see you").await,
            text => ws.send_text(format!("ok {text}")).await,
        }
    }
}

/// Echoes each frame 200 ms after it arrived.
#[derive(Default)]
struct SlowEcho;

impl WebsocketConsumer for SlowEcho {
    type Event = NoEvent;

    async fn receive(&mut self, ws: &mut Websocket, message: Message) -> Result<()> {
        tokio::time::sleep(Duration::from_millis(200)).await;
        ws.send_message(message).await
    }
}

/// Panics where its query string says.
#[derive(Default)]
struct Panicky;

impl WebsocketConsumer for Panicky {
    type Event = NoEvent;

    async fn connect(&mut self, ws: &mut Websocket) -> Result<()> {
        if ws.scope().query_string == "in=connect" {
            panic!("connect exploded");
        }
        ws.accept().await
    }

    async fn receive(&mut self, _ws: &mut Websocket, message: Message) -> Result<()> {
        panic!("boom on {:?}", message.as_text()?);
    }
}

#[derive(Clone, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type")]
enum Broadcast {
    #[serde(rename = "broadcast.message")]
    Message { text: String },
}

/// Everyone in the `broadcast` group hears every message.
#[derive(Default)]
struct Broadcaster;

impl WebsocketConsumer for Broadcaster {
    type Event = Broadcast;

    fn groups(&self) -> Vec<String> {
        vec!["broadcast".to_owned()]
    }

    async fn receive(&mut self, ws: &mut Websocket, message: Message) -> Result<()> {
        let text = message.into_text()?;
        ws.group_send("broadcast", &Broadcast::Message { text })
            .await
    }

    async fn event(&mut self, ws: &mut Websocket, event: Event<Broadcast>) -> Result<()> {
        ws.forward(&event).await
    }
}

#[derive(Clone, PartialEq, Debug)]
struct Tenant(&'static str);

/// Sends back what its scope says.
#[derive(Default)]
struct ScopeReporter;

impl WebsocketConsumer for ScopeReporter {
    type Event = NoEvent;

    async fn connect(&mut self, ws: &mut Websocket) -> Result<()> {
        ws.accept().await?;
        let scope = ws.scope();
        let report = json!({
            "path": scope.path,
            "query": scope.query_string,
            "origin": scope.header("origin"),
            "cookie_header": scope.header("cookie"),
            "session": scope.cookie("session"),
            "theme": scope.cookie("theme"),
            "subprotocols": scope.subprotocols,
            "client": scope.client.map(|c| c.to_string()),
            "tenant": scope.extensions.get::<Tenant>().map(|t| t.0),
            "user": scope.user.username(),
            "room": scope.url_route.kwargs.get("room"),
        });
        ws.send_json(&report).await
    }
}

#[tokio::test]
async fn accepts_with_the_chosen_subprotocol_and_headers() {
    let mut ws = WebsocketCommunicator::new(Gate::as_app(), "/").subprotocols(["v1", "chat.v2"]);
    let handshake = ws.connect().await.unwrap();
    assert!(handshake.is_accepted());
    assert_eq!(handshake.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(handshake.subprotocol(), Some("chat.v2"));
    let Handshake::Accepted { headers, .. } = handshake else {
        unreachable!()
    };
    assert_eq!(headers["x-room"], "lobby");
}

#[tokio::test]
async fn refusals_are_answers_with_their_status() {
    for (query, status) in [
        ("deny", StatusCode::FORBIDDEN),
        ("teapot", StatusCode::IM_A_TEAPOT),
    ] {
        let mut ws = WebsocketCommunicator::new(Gate::as_app(), &format!("/?answer={query}"));
        assert_eq!(
            ws.connect().await.unwrap(),
            Handshake::Denied { status },
            "{query}"
        );
        let err = ws.send_text("anyone?").await.unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("refused the handshake with HTTP {status}")),
            "{err}"
        );
        ws.disconnect(CloseCode::Normal).await.unwrap();
    }
}

#[tokio::test]
async fn an_application_that_drops_the_handshake_refuses_it() {
    struct Dropper;
    impl crate::Application for Dropper {
        async fn call(&self, _scope: Scope, _conn: crate::Connection) {}
    }
    let mut ws = WebsocketCommunicator::new(Dropper, "/");
    assert_eq!(ws.connect().await.unwrap().status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn echoes_text_bytes_and_json() {
    let mut ws = WebsocketCommunicator::new(Echo::as_app(), "/");
    ws.connect().await.unwrap();
    ws.send_text("héllo").await.unwrap();
    assert_eq!(ws.receive_text().await.unwrap(), "héllo");
    ws.send_bytes(b"\x00\x01\xff").await.unwrap();
    assert_eq!(ws.receive_bytes().await.unwrap(), b"\x00\x01\xff");
    ws.send_json(&json!({"n": [1, 2]})).await.unwrap();
    assert_eq!(
        ws.receive_json::<Value>().await.unwrap(),
        json!({"n": [1, 2]})
    );

    #[derive(serde::Deserialize, PartialEq, Debug)]
    struct Point {
        x: i32,
        y: i32,
    }
    ws.send_json(&json!({"x": 1, "y": -2})).await.unwrap();
    assert_eq!(
        ws.receive_json::<Point>().await.unwrap(),
        Point { x: 1, y: -2 }
    );
}

#[tokio::test]
async fn receive_nothing_keeps_what_does_arrive() {
    let mut ws = WebsocketCommunicator::new(Echo::as_app(), "/");
    ws.connect().await.unwrap();
    assert!(ws.receive_nothing().await);
    ws.send_text("late").await.unwrap();
    assert!(!ws.receive_nothing().await);
    assert!(!ws.receive_nothing().await);
    assert_eq!(ws.receive_text().await.unwrap(), "late");
}

#[tokio::test(start_paused = true)]
async fn receive_nothing_listens_for_the_nothing_timeout() {
    let mut ws = WebsocketCommunicator::new(SlowEcho::as_app(), "/");
    ws.connect().await.unwrap();
    ws.send_text("a").await.unwrap();
    assert!(ws.receive_nothing().await, "100 ms: over before the echo");
    assert_eq!(ws.receive_text().await.unwrap(), "a");

    ws.set_nothing_timeout(Duration::from_millis(300));
    ws.send_text("b").await.unwrap();
    assert!(!ws.receive_nothing().await, "300 ms: the echo comes within");
    assert_eq!(ws.receive_text().await.unwrap(), "b");

    let mut ws = WebsocketCommunicator::new(SlowEcho::as_app(), "/")
        .nothing_timeout(Duration::from_millis(300));
    ws.connect().await.unwrap();
    ws.send_text("c").await.unwrap();
    assert!(!ws.receive_nothing().await, "set by the builder");
    assert_eq!(ws.receive_text().await.unwrap(), "c");
}

#[tokio::test]
async fn the_wrong_kind_of_frame_is_a_clear_error() {
    let mut ws = WebsocketCommunicator::new(Echo::as_app(), "/");
    ws.connect().await.unwrap();
    ws.send_bytes([1, 2, 3]).await.unwrap();
    let err = ws.receive_text().await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "expected a text frame, got a binary frame of 3 bytes"
    );
    ws.send_text("plain").await.unwrap();
    let err = ws.receive_bytes().await.unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"expected a binary frame, got a text frame: "plain""#
    );
    ws.send_text("{not json").await.unwrap();
    let err = ws.receive_json::<Value>().await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with(r#"the application sent "{not json", which is not the expected JSON"#),
        "{err}"
    );
}

#[tokio::test]
async fn the_applications_close_comes_with_code_and_reason() {
    let mut ws = WebsocketCommunicator::new(Strict::as_app(), "/");
    ws.connect().await.unwrap();
    ws.send_text("hi").await.unwrap();
    assert_eq!(ws.receive_text().await.unwrap(), "ok hi");
    ws.send_text("bye").await.unwrap();
    let close = ws.receive_close().await.unwrap();
    assert_eq!(u16::from(close.code), 4000);
    assert_eq!(close.reason, "see you");
    // Asking again gives the same close; other calls say the connection is closed.
    assert_eq!(ws.receive_close().await.unwrap(), close);
    let err = ws.receive_text().await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "the application closed the connection with 4000: see you"
    );
    assert!(matches!(
        ws.send_text("more").await,
        Err(Error::Closed { .. })
    ));
    ws.disconnect(CloseCode::Normal).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_send_after_the_application_left_says_why() {
    let mut ws = WebsocketCommunicator::new(Strict::as_app(), "/");
    ws.connect().await.unwrap();
    ws.send_text("bye").await.unwrap();
    // Unanswered, the consumer waits 2 s for the client's close frame, then finishes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let result = ws.send_text("still there?").await;
    let err = result.unwrap_err();
    assert_eq!(
        err.to_string(),
        "the application closed the connection with 4000: see you"
    );
    // The close frame is still there to receive.
    assert_eq!(u16::from(ws.receive_close().await.unwrap().code), 4000);
}

#[tokio::test]
async fn disconnect_runs_the_consumers_disconnect_with_the_code() {
    let (app, log) = probe();
    let mut ws = WebsocketCommunicator::new(app.clone(), "/");
    ws.connect().await.unwrap();
    ws.disconnect(4321u16).await.unwrap();
    assert_eq!(log.codes(), [4321]);
    assert!(matches!(
        ws.send_text("after").await,
        Err(Error::Disconnected)
    ));

    // A communicator dropped without a close is a client gone away: 1006.
    let mut ws = WebsocketCommunicator::new(app, "/");
    ws.connect().await.unwrap();
    drop(ws);
    for _ in 0..100 {
        if log.codes().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(log.codes(), [4321, 1006]);
}

#[tokio::test]
async fn a_panic_in_receive_fails_with_its_message() {
    let mut ws = WebsocketCommunicator::new(Panicky::as_app(), "/");
    ws.connect().await.unwrap();
    ws.send_text("this").await.unwrap();
    let err = ws.receive_text().await.unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"the application panicked: boom on "this""#
    );
    // Every later call says so too.
    assert!(matches!(
        ws.send_text("again").await,
        Err(Error::Panicked { .. })
    ));
    assert!(matches!(
        ws.disconnect(CloseCode::Normal).await,
        Err(Error::Panicked { .. })
    ));
}

#[tokio::test]
async fn a_panic_in_connect_fails_connect_with_its_message() {
    let mut ws = WebsocketCommunicator::new(Panicky::as_app(), "/?in=connect");
    let err = ws.connect().await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "the application panicked: connect exploded"
    );
}

#[tokio::test]
#[should_panic(expected = "the application panicked: boom on \"quiet\"")]
async fn receive_nothing_panics_with_the_applications_panic() {
    let mut ws = WebsocketCommunicator::new(Panicky::as_app(), "/");
    ws.connect().await.unwrap();
    ws.send_text("quiet").await.unwrap();
    ws.receive_nothing().await;
}

#[tokio::test(start_paused = true)]
async fn timeouts_name_what_was_awaited() {
    let mut ws = WebsocketCommunicator::new(Echo::as_app(), "/");
    ws.connect().await.unwrap();
    let err = ws.receive_text().await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "timed out after 1s waiting for a text frame"
    );
    ws.set_timeout(Duration::from_millis(250));
    let err = ws.receive_close().await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "timed out after 250ms waiting for a close frame"
    );
}

#[tokio::test(start_paused = true)]
async fn a_connect_timeout_abandons_connect_as_the_server_does() {
    let (app, log) = probe();
    let mut ws = WebsocketCommunicator::new(app, "/?do=stall").timeout(Duration::from_millis(500));
    let err = ws.connect().await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "timed out after 500ms waiting for the handshake answer: connect() neither accepted nor denied"
    );
    // The server answers 503 here; connect() is dropped and disconnect() still runs.
    assert!(matches!(
        ws.send_text("x").await,
        Err(Error::Denied {
            status: StatusCode::SERVICE_UNAVAILABLE
        })
    ));
    ws.disconnect(CloseCode::Normal).await.unwrap();
    assert_eq!(log.codes(), [1006]);
}

#[tokio::test]
async fn calls_out_of_order_say_so() {
    let mut ws = WebsocketCommunicator::new(Echo::as_app(), "/");
    assert_eq!(
        ws.receive_text().await.unwrap_err().to_string(),
        "not connected: call connect() first"
    );
    ws.disconnect(CloseCode::Normal).await.unwrap();
    ws.connect().await.unwrap();
    assert!(matches!(ws.connect().await, Err(Error::AlreadyConnected)));
}

#[tokio::test]
async fn groups_reach_every_communicator_on_the_layer() {
    let layer: SharedLayer = Arc::new(InMemoryChannelLayer::new());
    let app = Arc::new(Broadcaster::as_app());
    let mut alice = WebsocketCommunicator::new(app.clone(), "/").channel_layer(layer.clone());
    let mut bob = WebsocketCommunicator::new(app, "/").channel_layer(layer.clone());
    alice.connect().await.unwrap();
    bob.connect().await.unwrap();

    alice.send_text("hello all").await.unwrap();
    let expected = json!({"type": "broadcast.message", "text": "hello all"});
    assert_eq!(bob.receive_json::<Value>().await.unwrap(), expected);
    assert_eq!(alice.receive_json::<Value>().await.unwrap(), expected);

    // The test can speak through the layer too, as a view or a worker would.
    let envelope = crate::layer::Envelope::encode(
        &json!({"type": "broadcast.message", "text": "from the test"}),
    )
    .unwrap();
    bob.layer().group_send("broadcast", envelope).await.unwrap();
    assert_eq!(
        alice.receive_json::<Value>().await.unwrap()["text"],
        "from the test"
    );
    assert_eq!(
        bob.receive_json::<Value>().await.unwrap()["text"],
        "from the test"
    );

    alice.disconnect(CloseCode::Normal).await.unwrap();
    bob.send_text("anyone?").await.unwrap();
    assert_eq!(
        bob.receive_json::<Value>().await.unwrap()["text"],
        "anyone?"
    );
    assert!(bob.receive_nothing().await);
}

#[tokio::test]
async fn request_details_reach_the_scope() {
    let client: SocketAddr = "10.0.0.7:5555".parse().unwrap();
    let mut ws = WebsocketCommunicator::new(ScopeReporter::as_app(), "/ws/x/?a=1&b=2")
        .header("origin", "http://example.com")
        .cookie("session", "a b;c")
        .cookie("theme", "dark")
        .subprotocols(["one", "two"])
        .client(client)
        .extension(Tenant("acme"));
    ws.connect().await.unwrap();
    let report: Value = ws.receive_json().await.unwrap();
    assert_eq!(report["path"], "/ws/x/");
    assert_eq!(report["query"], "a=1&b=2");
    assert_eq!(report["origin"], "http://example.com");
    assert_eq!(report["cookie_header"], "session=a%20b%3Bc; theme=dark");
    assert_eq!(report["session"], "a b;c");
    assert_eq!(report["theme"], "dark");
    assert_eq!(report["subprotocols"], json!(["one", "two"]));
    assert_eq!(report["client"], "10.0.0.7:5555");
    assert_eq!(report["tenant"], "acme");
    assert_eq!(report["user"], Value::Null);
}

#[tokio::test]
async fn a_cookie_header_fills_the_jar_too() {
    let mut ws = WebsocketCommunicator::new(ScopeReporter::as_app(), "/")
        .header("cookie", "session=s1")
        .cookie("theme", "light");
    ws.connect().await.unwrap();
    let report: Value = ws.receive_json().await.unwrap();
    assert_eq!(report["cookie_header"], "session=s1; theme=light");
    assert_eq!(report["session"], "s1");
    assert_eq!(report["theme"], "light");
}

fn views() -> URLRouter {
    URLRouter::new()
        .route(
            "/echo/",
            handler(|req: HttpRequest| async move {
                response::json(&json!({
                    "method": req.scope.method.as_str(),
                    "query": req.scope.query_string,
                    "body": String::from_utf8_lossy(&req.body),
                    "token": req.scope.header("x-token"),
                    "flavour": req.scope.cookie("flavour"),
                }))
            }),
        )
        .route(
            "/teapot/",
            handler(|_req| async { response::status(StatusCode::IM_A_TEAPOT) }),
        )
}

#[tokio::test]
async fn http_requests_reach_handlers() {
    let response = HttpCommunicator::new(views(), "POST", "/echo/?page=2")
        .header("x-token", "t0k")
        .cookie("flavour", "mint")
        .body("name=ada")
        .get_response()
        .await
        .unwrap();
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(
        response.json::<Value>().unwrap(),
        json!({"method": "POST", "query": "page=2", "body": "name=ada", "token": "t0k", "flavour": "mint"})
    );

    let response = HttpCommunicator::new(views(), http::Method::GET, "/teapot/")
        .get_response()
        .await
        .unwrap();
    assert_eq!(response.status, StatusCode::IM_A_TEAPOT);
    assert_eq!(response.text(), "418 I'm a teapot\n");
    assert!(response.json::<Value>().is_err());
}

#[tokio::test]
async fn http_failures_are_errors_not_timeouts() {
    let silent = handler(|_req| async { panic!("view exploded") });
    let err = HttpCommunicator::new(silent, "GET", "/")
        .get_response()
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "the application panicked: view exploded");

    struct Mute;
    impl crate::Application for Mute {
        async fn call(&self, _scope: Scope, _conn: crate::Connection) {}
    }
    let err = HttpCommunicator::new(Mute, "GET", "/")
        .get_response()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoResponse), "{err}");
}

#[tokio::test]
async fn unrouted_paths_are_404_for_both_protocols() {
    let app = Arc::new(
        ProtocolTypeRouter::new()
            .http(views())
            .websocket(URLRouter::new().route("/ws/echo/", Echo::as_app())),
    );
    let mut ws = WebsocketCommunicator::new(app.clone(), "/ws/nowhere/");
    assert_eq!(
        ws.connect().await.unwrap(),
        Handshake::Denied {
            status: StatusCode::NOT_FOUND
        }
    );
    let response = HttpCommunicator::new(app.clone(), "GET", "/nowhere/")
        .get_response()
        .await
        .unwrap();
    assert_eq!(response.status, StatusCode::NOT_FOUND);

    // The routed paths work through the same application.
    let mut ws = WebsocketCommunicator::new(app.clone(), "/ws/echo/");
    assert!(ws.connect().await.unwrap().is_accepted());
    let response = HttpCommunicator::new(app, "GET", "/teapot/")
        .get_response()
        .await
        .unwrap();
    assert_eq!(response.status, StatusCode::IM_A_TEAPOT);
}

#[tokio::test]
async fn a_prepared_scope_reaches_the_application_as_is() {
    let mut scope = Scope::new(Protocol::Websocket, "/anything/");
    scope.user = User::authenticated("7", "grace");
    scope
        .url_route
        .kwargs
        .insert("room".to_owned(), "lobby".to_owned());
    let mut ws = ApplicationCommunicator::new(ScopeReporter::as_app(), scope)
        .websocket()
        .cookie("theme", "dark");
    ws.connect().await.unwrap();
    let report: Value = ws.receive_json().await.unwrap();
    assert_eq!(report["user"], "grace");
    assert_eq!(report["room"], "lobby");
    assert_eq!(report["theme"], "dark");

    let mut scope = Scope::new(Protocol::Http, "/echo/");
    scope.method = http::Method::PUT;
    let response = ApplicationCommunicator::new(views(), scope)
        .http()
        .body("data")
        .get_response()
        .await
        .unwrap();
    let body: Value = response.json().unwrap();
    assert_eq!(body["method"], "PUT");
    assert_eq!(body["body"], "data");
}

#[test]
#[should_panic(expected = "needs a scope built with Protocol::Websocket")]
fn a_prepared_scope_must_match_the_protocol() {
    let scope = Scope::new(Protocol::Http, "/");
    let _ = ApplicationCommunicator::new(Echo::as_app(), scope).websocket();
}

#[tokio::test]
async fn errors_convert_for_tests_returning_switchboard_results() {
    async fn run() -> Result<()> {
        let mut ws = WebsocketCommunicator::new(Gate::as_app(), "/?answer=deny");
        ws.connect().await?;
        ws.send_text("x").await?;
        Ok(())
    }
    let err = run().await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "the application refused the handshake with HTTP 403 Forbidden: there is no connection"
    );
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn groups_reach_communicators_across_redis_layers() {
    use crate::layer::{RedisChannelLayer, RedisConfig};

    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let prefix = format!("sbtest-communicators-{}", std::process::id());
    let connect = || RedisChannelLayer::connect(RedisConfig::new([url.clone()]).prefix(&prefix));
    let (one, two) = match (connect().await, connect().await) {
        (Ok(one), Ok(two)) => (one, two),
        (Err(err), _) | (_, Err(err)) => {
            if std::env::var_os("CI").is_some() {
                panic!("Redis at {url} is required in CI: {err}");
            }
            eprintln!("SKIPPED: no Redis at {url} ({err}); start one or set REDIS_URL");
            return;
        }
    };
    // Two layers on one Redis: two server processes.
    let mut alice = WebsocketCommunicator::new(Broadcaster::as_app(), "/")
        .channel_layer(Arc::new(one))
        .timeout(Duration::from_secs(3));
    let mut bob = WebsocketCommunicator::new(Broadcaster::as_app(), "/")
        .channel_layer(Arc::new(two))
        .timeout(Duration::from_secs(3));
    alice.connect().await.unwrap();
    bob.connect().await.unwrap();

    alice.send_text("over redis").await.unwrap();
    let expected = json!({"type": "broadcast.message", "text": "over redis"});
    assert_eq!(bob.receive_json::<Value>().await.unwrap(), expected);
    assert_eq!(alice.receive_json::<Value>().await.unwrap(), expected);
    alice.disconnect(CloseCode::Normal).await.unwrap();
    bob.disconnect(CloseCode::Normal).await.unwrap();
}
