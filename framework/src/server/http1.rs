//! Requests through hyper's HTTP/1.1 server: plain HTTP, and every WebSocket handshake the
//! direct path leaves alone. Each request is measured against the head limits, answered by
//! `request.rs`, and logged here.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};

use super::ServerConfig;
use super::forwarded;
use super::handshake;
use super::plumbing::{Shared, access_log};
use super::request;
use super::rewind::Rewind;
use crate::application::{Application, plain_response};

/// Serves the connection's requests until it closes, the client upgrades, or the server shuts
/// down (then after the request in flight). `stream` starts with the first request's head,
/// read already.
pub(crate) async fn serve<A: Application>(
    shared: Arc<Shared<A>>,
    stream: Rewind,
    peer: SocketAddr,
    local: Option<SocketAddr>,
) {
    let shutdown = shared.shutdown.clone();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(shared.config.header_read_timeout)
        .max_headers(shared.config.max_headers)
        // hyper answers a longer head 431; one that fits is measured in `respond`.
        .max_buf_size(head_buffer(&shared.config));
    let service = service_fn(move |request| {
        let shared = Arc::clone(&shared);
        async move { Ok::<_, Infallible>(respond(shared, request, peer, local).await) }
    });
    let conn = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(err) = result {
        tracing::debug!(%peer, error = %err, "HTTP connection ended with an error");
    }
}

/// hyper's read buffer limit: room for the longest head the limits allow, at least hyper's
/// minimum.
fn head_buffer(config: &ServerConfig) -> usize {
    config
        .max_request_line
        .saturating_add(config.max_header_bytes)
        .saturating_add(4)
        .max(8192)
}

/// The status for a request over the head limits that still fit hyper's buffer, if any. The
/// first request of a connection was measured while it was read (`head.rs`); this catches the
/// ones after it.
fn over_head_limits<B>(request: &Request<B>, config: &ServerConfig) -> Option<StatusCode> {
    let target = request
        .uri()
        .path_and_query()
        .map_or(1, |pq| pq.as_str().len());
    // `METHOD SP target SP HTTP/1.1`
    if request.method().as_str().len() + target + 10 > config.max_request_line {
        return Some(StatusCode::URI_TOO_LONG);
    }
    let header_bytes: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    (header_bytes > config.max_header_bytes).then_some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
}

async fn respond<A: Application>(
    shared: Arc<Shared<A>>,
    request: Request<Incoming>,
    peer: SocketAddr,
    local: Option<SocketAddr>,
) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let websocket = handshake::wants_websocket(request.headers());
    let origin = forwarded::resolve(&shared.config.forwarded_allow, peer, |name| {
        request
            .headers()
            .get_all(name)
            .iter()
            .map(|value| value.as_bytes())
    });
    let response = match over_head_limits(&request, &shared.config) {
        Some(status) => plain_response(status),
        None => request::respond(&shared, request, Some(origin), local).await,
    };
    access_log(
        &method,
        &path,
        response.status(),
        started,
        websocket,
        origin.client,
    );
    response.map(Full::new)
}
