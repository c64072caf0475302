//! The common WebSocket handshake, answered without hyper.
//!
//! Most connections a WebSocket server accepts are a WebSocket handshake and nothing else: one
//! `GET` head, one answer, then frames. Taking such a connection through hyper's HTTP/1
//! dispatcher (its read and write buffers, the request and response types, the upgrade hand-off
//! and the downcast back to the TCP stream) and a task of its own for the application cost
//! about 8 % of a handshake's CPU and 3 % of every idle connection's memory (see
//! docs/performance.md). So the first request head is peeked at, and when it is a complete,
//! valid handshake that fits [`MAX_HEAD`], it is consumed and answered here, with httparse
//! (hyper's own parser) and the same checks, scope and answers as hyper's path. Anything else —
//! plain HTTP, a head that arrived in pieces or is larger, a malformed handshake, a request with
//! a body — is left unread for hyper, which answers it as before. A refusal from the
//! application ends the connection here (hyper would have kept it open for another request).

use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use futures::FutureExt;
use http::{HeaderMap, Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use super::handshake;
use super::plumbing::{
    HEADER_READ_TIMEOUT, MAX_COOKIE_BYTES, Shared, access_log, scope_for, tcp_socket,
    websocket_config, websocket_connection,
};
use crate::application::{Application, Connection, HttpResponse};
use crate::scope::{Headers, Protocol};

/// Largest request head answered here: a browser's handshake with its cookies is well under
/// it; a larger one goes to hyper.
const MAX_HEAD: usize = 4096;

/// Most headers a head answered here may have (hyper allows 100).
const MAX_HEADERS: usize = 32;

/// A WebSocket handshake read off the wire.
struct Handshake {
    /// Bytes of the head, to consume once it is taken.
    len: usize,
    path_and_query: String,
    headers: Headers,
}

/// Answers the connection's first request if it is a plain WebSocket handshake, and serves the
/// WebSocket after it; returns the stream, nothing read from it, for hyper otherwise. `None`
/// when the connection is done with: served, closed by the client, silent for
/// [`HEADER_READ_TIMEOUT`], or the server shuts down first.
pub(crate) async fn serve<A: Application>(
    shared: &Shared<A>,
    mut stream: TcpStream,
    peer: SocketAddr,
    local: Option<SocketAddr>,
) -> Option<TcpStream> {
    let mut head = vec![0; MAX_HEAD];
    let peeked = tokio::select! {
        peeked = stream.peek(&mut head) => peeked,
        _ = tokio::time::sleep(HEADER_READ_TIMEOUT) => return None,
        _ = shared.shutdown.cancelled() => return None,
    };
    // An error or an end of stream is hyper's to find and report.
    let Ok(peeked) = peeked else {
        return Some(stream);
    };
    let Some(handshake) = parse(&head[..peeked]) else {
        return Some(stream);
    };
    let accept_key = match handshake::check(&Method::GET, &handshake.headers) {
        Ok(key) => key,
        Err(_) => return Some(stream),
    };
    // The head is in the socket's buffer: this returns at once.
    if stream.read_exact(&mut head[..handshake.len]).await.is_err() {
        return None;
    }
    drop(head);

    let started = Instant::now();
    let scope = scope_for(
        Protocol::Websocket,
        Method::GET,
        &handshake.path_and_query,
        handshake.headers,
        Some(peer),
        local,
    );
    // The access log's path: as sent, without the query (hyper's `uri().path()`).
    let path = scope.raw_path.clone();
    let (stream_tx, stream_rx) = oneshot::channel::<TcpStream>();
    let config = websocket_config(&shared.config);
    let upgrade = async move {
        let stream = stream_rx.await.ok()?;
        Some(tcp_socket(stream, Vec::new(), config).await)
    }
    .boxed();
    let (conn, pending) = websocket_connection(shared, upgrade);
    // The application runs in this task until it has routed the connection (a consumer then
    // runs in a task of its own), next to the wait for its answer: no task just for that.
    let answered = async {
        match pending.wait(Some(peer)).await {
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
    access_log(&Method::GET, &path, status, started, true, peer);
    None
}

/// The handshake in `bytes`, if they hold a whole request head that this module answers: an
/// HTTP/1.1 `GET` of an origin-form path with `Upgrade: websocket`, no body, well-formed
/// headers, cookies within [`MAX_COOKIE_BYTES`].
fn parse(bytes: &[u8]) -> Option<Handshake> {
    let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut raw);
    let httparse::Status::Complete(len) = request.parse(bytes).ok()? else {
        return None;
    };
    if request.method != Some("GET") || request.version != Some(1) {
        return None;
    }
    let path = request.path?;
    // What hyper would accept as the request target, in origin form.
    if !path.starts_with('/') || path.parse::<http::uri::PathAndQuery>().is_err() {
        return None;
    }
    let (mut cookie_bytes, mut upgrade) = (0, false);
    for header in request.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("transfer-encoding")
        {
            return None;
        }
        if name.eq_ignore_ascii_case("cookie") {
            cookie_bytes += header.value.len();
        }
        upgrade |= name.eq_ignore_ascii_case("upgrade");
    }
    // Plain HTTP is told apart before anything is copied.
    if !upgrade || cookie_bytes > MAX_COOKIE_BYTES {
        return None;
    }
    let headers = Headers::from_raw(request.headers)?;
    if !handshake::wants_websocket_in(&headers) {
        return None;
    }
    Some(Handshake {
        len,
        path_and_query: path.to_owned(),
        headers,
    })
}

/// A response head: status line, headers, blank line.
fn response_head(status: StatusCode, headers: &HeaderMap) -> Vec<u8> {
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    head.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// A refusal as the bytes hyper would have sent for it, closing the connection.
fn refusal(response: HttpResponse) -> Vec<u8> {
    let (mut parts, body): (_, Bytes) = response.into_parts();
    let date = httpdate::fmt_http_date(SystemTime::now());
    if let Ok(date) = date.parse() {
        parts.headers.insert(http::header::DATE, date);
    }
    parts
        .headers
        .insert(http::header::CONTENT_LENGTH, body.len().into());
    parts.headers.insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    let mut bytes = response_head(parts.status, &parts.headers);
    bytes.extend_from_slice(&body);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    const HANDSHAKE: &str = "GET /ws/chat/lobby/?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nCookie: a=1\r\n\r\n";

    #[test]
    fn takes_a_whole_handshake_head() {
        let mut bytes = HANDSHAKE.as_bytes().to_vec();
        // A frame sent right behind the head is not part of it.
        bytes.extend_from_slice(b"\x81\x00");
        let handshake = parse(&bytes).unwrap();
        assert_eq!(handshake.len, HANDSHAKE.len());
        assert_eq!(handshake.path_and_query, "/ws/chat/lobby/?x=1");
        assert_eq!(handshake.headers.get("cookie").unwrap(), "a=1");
        assert_eq!(handshake.headers.len(), 6);
    }

    #[test]
    fn leaves_everything_else_to_hyper() {
        let partial = &HANDSHAKE[..HANDSHAKE.len() - 2];
        let post = HANDSHAKE.replacen("GET", "POST", 1);
        let http10 = HANDSHAKE.replacen("HTTP/1.1", "HTTP/1.0", 1);
        let plain = HANDSHAKE.replacen("Upgrade: websocket", "X-Upgrade: no", 1);
        let body = HANDSHAKE.replacen("\r\n\r\n", "\r\nContent-Length: 2\r\n\r\nhi", 1);
        let chunked = HANDSHAKE.replacen("\r\n\r\n", "\r\nTransfer-Encoding: chunked\r\n\r\n", 1);
        let absolute = HANDSHAKE.replacen("/ws/", "http://h/ws/", 1);
        let bad_value = HANDSHAKE.replacen("a=1", "a=\x7f", 1);
        let cookies = HANDSHAKE.replacen("a=1", &"a".repeat(MAX_COOKIE_BYTES + 1), 1);
        let mut many = String::from("GET / HTTP/1.1\r\nUpgrade: websocket\r\n");
        for n in 0..MAX_HEADERS {
            many.push_str(&format!("X-{n}: 1\r\n"));
        }
        many.push_str("\r\n");
        for request in [
            partial,
            &post,
            &http10,
            &plain,
            &body,
            &chunked,
            &absolute,
            &bad_value,
            &cookies,
            &many,
            "",
            "garbage\r\n\r\n",
        ] {
            assert!(parse(request.as_bytes()).is_none(), "{request:?}");
        }
    }

    #[test]
    fn writes_heads_and_refusals_as_hyper_would() {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::UPGRADE, "websocket".parse().unwrap());
        let head = response_head(StatusCode::SWITCHING_PROTOCOLS, &headers);
        assert_eq!(
            head,
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n"
        );

        let refused = refusal(crate::application::plain_response(StatusCode::FORBIDDEN));
        let text = String::from_utf8(refused).unwrap();
        assert!(text.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{text}");
        assert!(text.contains("\r\ncontent-length: 14\r\n"), "{text}");
        assert!(text.contains("\r\nconnection: close\r\n"), "{text}");
        assert!(text.contains("\r\ndate: "), "{text}");
        assert!(text.ends_with("\r\n\r\n403 Forbidden\n"), "{text}");
    }
}
