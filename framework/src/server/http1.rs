//! Requests through hyper's HTTP/1.1 server: plain HTTP, and every WebSocket handshake the
//! direct path leaves alone.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::FutureExt;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::oneshot;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use super::ServerConfig;
use super::forwarded::{self, Origin};
use super::handshake::{self, Refusal};
use super::plumbing::{
    MAX_COOKIE_BYTES, Shared, access_log, scope_for, tcp_socket, websocket_config,
    websocket_connection,
};
use super::rewind::Rewind;
use crate::application::{Application, Connection, HttpConnection, HttpResponse, plain_response};
use crate::scope::{Headers, Protocol, Scope};
use crate::transport::Socket;

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
    let cookies = request.headers().get_all(http::header::COOKIE).iter();
    let response = if let Some(status) = over_head_limits(&request, &shared.config) {
        plain_response(status)
    } else if cookies.map(|value| value.len()).sum::<usize>() > MAX_COOKIE_BYTES {
        plain_response(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
    } else if websocket {
        respond_websocket(&shared, request, origin, local).await
    } else {
        respond_http(&shared, request, origin, local).await
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

/// The scope of a request hyper read. Its header values are slices of hyper's 8 KiB read
/// buffer, which the scope would keep: they are copied.
fn scope_of_parts(
    protocol: Protocol,
    parts: http::request::Parts,
    origin: Origin,
    local: Option<SocketAddr>,
) -> Scope {
    let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let headers = Headers::from(&parts.headers);
    scope_for(
        protocol,
        parts.method,
        path_and_query,
        headers,
        origin,
        local,
    )
}

async fn respond_http<A: Application>(
    shared: &Shared<A>,
    request: Request<Incoming>,
    origin: Origin,
    local: Option<SocketAddr>,
) -> HttpResponse {
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, shared.config.max_body_size)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => {
            return plain_response(StatusCode::PAYLOAD_TOO_LARGE);
        }
        Err(_) => return plain_response(StatusCode::BAD_REQUEST),
    };
    let scope = scope_of_parts(Protocol::Http, parts, origin, local);
    let (tx, rx) = oneshot::channel();
    let conn = HttpConnection::new(body, Arc::clone(&shared.layer), tx);
    shared.app.call(scope, Connection::Http(conn)).await;
    rx.await.unwrap_or_else(|_| {
        tracing::error!("the application returned without answering an HTTP request");
        plain_response(StatusCode::INTERNAL_SERVER_ERROR)
    })
}

/// tungstenite straight over the TCP stream when hyper hands it back (it does for this server's
/// own connections): without hyper's `Upgraded` (a boxed stream behind a rewind buffer) in
/// between, a connection keeps one allocation less and reads and writes cross fewer layers.
async fn websocket_over(upgraded: Upgraded, config: WebSocketConfig) -> Socket {
    match upgraded.downcast::<TokioIo<Rewind>>() {
        // Frames the client sent right behind its request were read already: by hyper, or
        // with the first head.
        Ok(parts) => {
            let (stream, mut read, permit) = parts.io.into_inner().into_parts();
            read.extend_from_slice(&parts.read_buf);
            tcp_socket(stream, read, config, permit).await
        }
        Err(upgraded) => Socket::Boxed(Box::new(
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config))
                .await,
        )),
    }
}

fn refusal_response(refusal: Refusal) -> HttpResponse {
    tracing::debug!(reason = refusal.reason, "malformed WebSocket handshake");
    let mut response = Response::new(Bytes::from(format!("{}\n", refusal.reason)));
    *response.status_mut() = refusal.status;
    if refusal.status == StatusCode::UPGRADE_REQUIRED {
        let (name, value) = handshake::version_header();
        response.headers_mut().insert(name, value);
    }
    response
}

async fn respond_websocket<A: Application>(
    shared: &Arc<Shared<A>>,
    mut request: Request<Incoming>,
    origin: Origin,
    local: Option<SocketAddr>,
) -> HttpResponse {
    let on_upgrade = hyper::upgrade::on(&mut request);
    let (parts, _body) = request.into_parts();
    let scope = scope_of_parts(Protocol::Websocket, parts, origin, local);
    let accept_key = match handshake::check(&scope.method, &scope.headers) {
        Ok(key) => key,
        Err(refusal) => return refusal_response(refusal),
    };
    let config = websocket_config(&shared.config);
    let upgrade = async move {
        match on_upgrade.await {
            Ok(upgraded) => Some(websocket_over(upgraded, config).await),
            Err(err) => {
                tracing::debug!(error = %err, "the upgrade did not complete");
                None
            }
        }
    }
    .boxed();
    let (conn, pending) = websocket_connection(shared, upgrade);
    // A task of its own: hyper's service must return the answer while the application goes on.
    let task_shared = Arc::clone(shared);
    shared.tasks.spawn(async move {
        task_shared
            .app
            .call(scope, Connection::Websocket(conn))
            .await;
    });
    match pending.wait(origin.client).await {
        Ok(accepted) => {
            let mut response = Response::new(Bytes::new());
            *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            *response.headers_mut() = accepted.headers(accept_key);
            response
        }
        Err(refused) => refused,
    }
}
