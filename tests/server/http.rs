//! Plain HTTP beside WebSockets on one port: routes answer, a body over the limit is 413, and a
//! plain request to a WebSocket route is 404 or, reaching a consumer itself, 426.

use std::sync::Arc;

use switchboard::prelude::*;

use crate::probe::{OnConnect, Probe, assert_echo};
use crate::support::*;

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
