//! The common WebSocket handshake, answered without hyper.
//!
//! Most connections a WebSocket server accepts are a WebSocket handshake and nothing else: one
//! `GET` head, one answer, then frames. Taking such a connection through hyper's HTTP/1
//! dispatcher (its read and write buffers, the request and response types, the upgrade hand-off
//! and the downcast back to the TCP stream) and a task of its own for the application cost
//! about 8 % of a handshake's CPU and 3 % of every idle connection's memory (see
//! docs/performance.md). So when the first request head of a connection (read within the limits
//! by `head.rs`, parsed with httparse, hyper's own parser) is a valid handshake, it is answered
//! here, with the same checks, scope and answers as hyper's path. Anything else — plain HTTP, a
//! malformed handshake, a request with a body — goes to hyper with the bytes already read, and
//! is answered as before. A refusal from the application ends the connection here (hyper would
//! have kept it open for another request).

use std::net::SocketAddr;
use std::time::Instant;

use futures::FutureExt;
use http::{HeaderValue, Method, StatusCode};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use super::answer::{refusal, response_head};
use super::forwarded::Origin;
use super::handshake;
use super::head::{RawHead, Request};
use super::plumbing::{
    MAX_COOKIE_BYTES, Shared, access_log, scope_for, tcp_socket, websocket_config,
    websocket_connection,
};
use crate::application::{Application, Connection};
use crate::limits::Permit;
use crate::scope::Protocol;

/// The `Sec-WebSocket-Accept` value if `request` is a handshake answered here: an HTTP/1.1
/// `GET` of an origin-form path with `Upgrade: websocket`, no body, cookies within
/// [`MAX_COOKIE_BYTES`], and a valid handshake otherwise.
pub(crate) fn answerable(request: &Request, target: &str) -> Option<HeaderValue> {
    if request.method != Method::GET || !request.http11 {
        return None;
    }
    // What hyper would accept as the request target, in origin form.
    if !target.starts_with('/') || target.parse::<http::uri::PathAndQuery>().is_err() {
        return None;
    }
    let headers = &request.headers;
    if headers.contains_key(http::header::CONTENT_LENGTH)
        || headers.contains_key(http::header::TRANSFER_ENCODING)
    {
        return None;
    }
    let cookie_bytes: usize = headers
        .get_all(http::header::COOKIE)
        .map(HeaderValue::len)
        .sum();
    if cookie_bytes > MAX_COOKIE_BYTES || !handshake::wants_websocket_in(headers) {
        return None;
    }
    handshake::check(&Method::GET, headers).ok()
}

/// Answers a handshake [`answerable`] accepted and serves the WebSocket after it, from a client
/// at `origin`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn serve<A: Application>(
    shared: &Shared<A>,
    mut stream: TcpStream,
    permit: Permit,
    head: RawHead,
    request: Request,
    accept_key: HeaderValue,
    origin: Origin,
    local: Option<SocketAddr>,
) {
    let started = Instant::now();
    let scope = scope_for(
        Protocol::Websocket,
        Method::GET,
        request.target(&head),
        request.headers,
        Some(origin),
        local,
    );
    // Frames the client sent right behind its head.
    let RawHead { mut bytes, len, .. } = head;
    let behind = bytes.split_off(len);
    drop(bytes);
    // The access log's path: as sent, without the query (hyper's `uri().path()`).
    let path = scope.raw_path.clone();
    let (stream_tx, stream_rx) = oneshot::channel::<TcpStream>();
    let config = websocket_config(&shared.config);
    let upgrade = async move {
        let stream = stream_rx.await.ok()?;
        Some(tcp_socket(stream, behind, config, Some(permit)).await)
    }
    .boxed();
    let (conn, pending) = websocket_connection(shared, upgrade);
    // The application runs in this task until it has routed the connection (a consumer then
    // runs in a task of its own), next to the wait for its answer: no task just for that.
    let answered = async {
        match pending.wait(Some(origin.client)).await {
            Ok(accepted) => {
                let answer = response_head(
                    StatusCode::SWITCHING_PROTOCOLS,
                    &accepted.headers(accept_key),
                );
                if stream.write_all(&answer).await.is_ok() {
                    // A consumer that already gave up drops the stream: the client sees it
                    // close.
                    let _ = stream_tx.send(stream);
                }
                StatusCode::SWITCHING_PROTOCOLS
            }
            Err(refused) => {
                let status = refused.status();
                // The connection ends with the refusal: its head was consumed, and hyper
                // could not be handed what follows it.
                let _ = stream.write_all(&refusal(refused)).await;
                let _ = stream.shutdown().await;
                status
            }
        }
    };
    let ((), status) = tokio::join!(
        shared.app.call(scope, Connection::Websocket(conn)),
        answered
    );
    access_log(&Method::GET, &path, status, started, true, origin.client);
}

#[cfg(test)]
mod tests {
    use super::super::head::{Head, from_bytes, parse};
    use super::*;

    const HANDSHAKE: &str = "GET /ws/chat/lobby/?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nCookie: a=1\r\n\r\n";

    /// Whether the head in `text` is answered here.
    fn answered(text: &str) -> bool {
        let config = crate::server::ServerConfig::default();
        let Head::Complete(head) = from_bytes(text.as_bytes(), &config) else {
            panic!("not a complete head: {text:?}");
        };
        parse(&head).is_some_and(|request| {
            let target = request.target(&head).to_owned();
            answerable(&request, &target).is_some()
        })
    }

    #[test]
    fn takes_a_plain_handshake() {
        assert!(answered(HANDSHAKE));
        let mut many = HANDSHAKE.replacen("\r\n\r\n", "\r\n", 1);
        for n in 0..64 {
            many.push_str(&format!("X-{n}: 1\r\n"));
        }
        many.push_str("\r\n");
        assert!(answered(&many), "any number of headers within the limits");
    }

    #[test]
    fn leaves_everything_else_to_hyper() {
        let post = HANDSHAKE.replacen("GET", "POST", 1);
        let http10 = HANDSHAKE.replacen("HTTP/1.1", "HTTP/1.0", 1);
        let plain = HANDSHAKE.replacen("Upgrade: websocket", "X-Upgrade: no", 1);
        let body = HANDSHAKE.replacen("\r\n\r\n", "\r\nContent-Length: 2\r\n\r\nhi", 1);
        let chunked = HANDSHAKE.replacen("\r\n\r\n", "\r\nTransfer-Encoding: chunked\r\n\r\n", 1);
        let absolute = HANDSHAKE.replacen("/ws/", "http://h/ws/", 1);
        let bad_value = HANDSHAKE.replacen("a=1", "a=\x7f", 1);
        let cookies = HANDSHAKE.replacen("a=1", &"a".repeat(MAX_COOKIE_BYTES + 1), 1);
        let bad_key = HANDSHAKE.replacen("dGhlIHNhbXBsZSBub25jZQ==", "short", 1);
        for request in [
            &post, &http10, &plain, &body, &chunked, &absolute, &bad_value, &cookies, &bad_key,
        ] {
            assert!(!answered(request), "{request:?}");
        }
    }
}
