//! Routing over the server: an unmatched path or a failed converter is a 404 before any
//! consumer is made, and kwargs and the remaining path survive middleware inside a nested router.

use serde_json::json;
use switchboard::prelude::*;

use crate::probe::{OnConnect, Probe, assert_echo};
use crate::support::*;

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
