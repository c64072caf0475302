//! Helpers shared by the end-to-end tests: a real server on an ephemeral 127.0.0.1 port, real
//! tokio-tungstenite clients, and a timeout on every network await.
#![allow(dead_code)] // each test file uses its own subset

pub mod chat;
pub mod django;
pub mod nats;
pub mod redis;
pub mod redis_cluster;

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use switchboard::prelude::*;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

/// The bound on every network await in the tests.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// How long "nothing arrives" is watched for.
pub const QUIET: Duration = Duration::from_millis(300);

pub type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Awaits `future` or panics naming `what` after [`TIMEOUT`].
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    bounded(what, TIMEOUT, future).await
}

/// Awaits `future` or panics naming `what` after `limit`: [`within`] for the rare wait that
/// needs another bound (starting a browser).
pub async fn bounded<T>(what: &str, limit: Duration, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {limit:?} waiting for {what}"),
    }
}

/// A 127.0.0.1 port nobody listens on right now, for a process the test starts.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

/// The default server configuration with `edit` applied.
pub fn config(edit: impl FnOnce(&mut ServerConfig)) -> ServerConfig {
    let mut config = ServerConfig::default();
    edit(&mut config);
    config
}

/// A server running in this process until [`TestServer::shutdown`] or drop.
pub struct TestServer {
    pub addr: SocketAddr,
    stop: CancellationToken,
    task: Option<JoinHandle<switchboard::Result<()>>>,
}

impl TestServer {
    /// Serves `app` on an ephemeral port with the default configuration.
    pub async fn start(app: impl Application) -> TestServer {
        TestServer::start_with(app, ServerConfig::default()).await
    }

    /// Serves `app` with `config`.
    pub async fn start_with(app: impl Application, config: ServerConfig) -> TestServer {
        TestServer::start_with_layer(app, config, Arc::new(InMemoryChannelLayer::new())).await
    }

    /// Serves `app` with `config` over `layer`, which the test keeps a handle on (to
    /// `group_send` from outside, or to watch `group_size`).
    pub async fn start_with_layer(
        app: impl Application,
        config: ServerConfig,
        layer: SharedLayer,
    ) -> TestServer {
        let server = Server::bind("127.0.0.1:0")
            .await
            .expect("bind an ephemeral port")
            .config(config)
            .channel_layer(layer);
        let addr = server.local_addr().expect("local address");
        let stop = CancellationToken::new();
        let signal = stop.clone();
        let task =
            tokio::spawn(server.serve_with_shutdown(app, async move { signal.cancelled().await }));
        TestServer {
            addr,
            stop,
            task: Some(task),
        }
    }

    /// `ws://127.0.0.1:PORT{path}`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Connects a WebSocket client to `path`; panics if the handshake is refused.
    pub async fn connect(&self, path: &str) -> Client {
        match self.try_connect(path).await {
            Ok(client) => client,
            Err(err) => panic!("WebSocket handshake to {path} failed: {err}"),
        }
    }

    /// Connects, returning the handshake error (for refusals).
    pub async fn try_connect(&self, path: &str) -> Result<Client, tungstenite::Error> {
        let request = self.ws_url(path).into_client_request()?;
        self.connect_request(request).await
    }

    /// Connects with a prepared request (extra headers, subprotocols).
    pub async fn connect_request(
        &self,
        request: tungstenite::handshake::client::Request,
    ) -> Result<Client, tungstenite::Error> {
        within(
            "the WebSocket handshake",
            tokio_tungstenite::connect_async(request),
        )
        .await
        .map(|(client, _response)| client)
    }

    /// Asks the server to shut down gracefully and waits for it (bounded).
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            within("the server to shut down", task)
                .await
                .expect("server task")
                .expect("server result");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The HTTP status of a refused handshake, or panics if it was accepted.
pub fn refused_status(result: Result<Client, tungstenite::Error>) -> u16 {
    match result {
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("expected an HTTP refusal, the handshake was accepted"),
    }
}

/// Sends a text frame.
pub async fn send_text(client: &mut Client, text: &str) {
    within("sending a text frame", client.send(WsMessage::text(text)))
        .await
        .expect("send text");
}

/// Sends a binary frame.
pub async fn send_binary(client: &mut Client, bytes: &[u8]) {
    within(
        "sending a binary frame",
        client.send(WsMessage::binary(bytes.to_vec())),
    )
    .await
    .expect("send binary");
}

/// Sends `value` as a JSON text frame.
pub async fn send_json(client: &mut Client, value: &Value) {
    send_text(client, &value.to_string()).await;
}

/// The next data frame (pings and pongs skipped); panics on close or timeout.
pub async fn recv(client: &mut Client) -> WsMessage {
    within("a frame from the server", async {
        loop {
            match client.next().await {
                Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => continue,
                Some(Ok(message)) => return message,
                Some(Err(err)) => panic!("connection failed while waiting for a frame: {err}"),
                None => panic!("connection closed while waiting for a frame"),
            }
        }
    })
    .await
}

/// The next frame as text; panics if it is not a text frame.
pub async fn recv_text(client: &mut Client) -> String {
    match recv(client).await {
        WsMessage::Text(text) => text.to_string(),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

/// The next frame as JSON.
pub async fn recv_json(client: &mut Client) -> Value {
    let text = recv_text(client).await;
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("not JSON ({err}): {text}"))
}

/// Asserts no data frame arrives within [`QUIET`].
pub async fn assert_quiet(client: &mut Client) {
    let next = tokio::time::timeout(QUIET, async {
        loop {
            match client.next().await {
                Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => continue,
                other => return other,
            }
        }
    })
    .await;
    if let Ok(frame) = next {
        panic!("expected no frame, got {frame:?}");
    }
}

/// Waits for the server's close frame and returns its code and reason.
pub async fn recv_close(client: &mut Client) -> Option<CloseFrame> {
    within("a close frame", async {
        loop {
            match client.next().await {
                Some(Ok(WsMessage::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                Some(Err(err)) => panic!("connection failed before a close frame: {err}"),
                None => panic!("connection ended without a close frame"),
            }
        }
    })
    .await
}

/// Waits for the server's close frame, then for the end of the connection (reading on, so the
/// client's close reply goes out and the closing handshake completes); returns the server's
/// frame. A data frame after the close frame fails the test.
pub async fn closed_by_server(client: &mut Client) -> CloseFrame {
    let frame = recv_close(client)
        .await
        .expect("the server's close frame carries a code");
    within("the end of the connection", async {
        loop {
            match client.next().await {
                None | Some(Err(_)) => break,
                Some(Ok(WsMessage::Close(_))) => continue,
                Some(Ok(other)) => panic!("expected nothing after the close frame, got {other:?}"),
            }
        }
    })
    .await;
    frame
}

/// Asserts the server closes with `code` and that nothing follows its close frame.
pub async fn assert_closed_with(client: &mut Client, code: CloseCode) {
    let frame = closed_by_server(client).await;
    assert_eq!(frame.code, code, "close code (reason {:?})", frame.reason);
}

/// Closes from the client side with 1000 and waits for the server's echo.
pub async fn close(client: &mut Client) {
    let normal = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    within("closing", client.close(Some(normal))).await.ok();
    within("the close echo", async {
        while let Some(Ok(_)) = client.next().await {}
    })
    .await;
}

/// Waits until `group` has `size` members in `layer`.
pub async fn wait_group_size(layer: &InMemoryChannelLayer, group: &str, size: usize) {
    within(
        &format!("group {group:?} to have {size} member(s)"),
        async {
            while layer.group_size(group) != size {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        },
    )
    .await;
}

/// A plain HTTP/1.1 request over a fresh TCP connection (`Connection: close`); returns the
/// status code, the raw header block and the body.
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = within("TCP connect", TcpStream::connect(addr))
        .await
        .expect("connect");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    within("writing the request", async {
        stream.write_all(request.as_bytes()).await?;
        stream.write_all(body).await
    })
    .await
    .expect("write request");
    let mut raw = Vec::new();
    within("reading the response", stream.read_to_end(&mut raw))
        .await
        .expect("read response");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    (status, head, raw[split + 4..].to_vec())
}

/// Every value of a header in a raw response head (the name in any case).
pub fn header_values<'a>(head: &'a str, name: &str) -> Vec<&'a str> {
    head.lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .filter(|(key, _)| key.trim().eq_ignore_ascii_case(name))
        .map(|(_, value)| value.trim())
        .collect()
}

/// The first value of a header in a raw response head.
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    header_values(head, name).first().copied()
}

/// `GET path`: status and body as text.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let (status, _head, body) = http_request(addr, "GET", path, &[], b"").await;
    (status, String::from_utf8_lossy(&body).into_owned())
}
