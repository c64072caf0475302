//! A consumer that says who it thinks the client is (`scope.client`, `scope.scheme()`), for the
//! tests of limits and trusted proxies; and handshakes with extra headers, and what a refused one
//! was answered.

use serde_json::json;
use switchboard::prelude::*;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request as WsRequest;

use crate::support::*;

/// Says who it thinks the client is, then echoes.
#[derive(Default)]
pub struct Whoami;

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

pub fn whoami_app() -> ProtocolTypeRouter {
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

/// The status and `Retry-After` of a refused handshake.
pub async fn refusal(server: &TestServer, request: WsRequest) -> (u16, String) {
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

pub fn request_with(server: &TestServer, headers: &[(&'static str, &str)]) -> WsRequest {
    let mut request = server.ws_url("/ws/").into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().append(*name, value.parse().unwrap());
    }
    request
}
