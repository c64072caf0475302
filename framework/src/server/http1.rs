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
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use super::handshake::{self, Refusal};
use super::plumbing::{
    HEADER_READ_TIMEOUT, MAX_COOKIE_BYTES, Shared, access_log, scope_for, tcp_socket,
    websocket_config, websocket_connection,
};
use crate::application::{Application, Connection, HttpConnection, HttpResponse, plain_response};
use crate::scope::{Headers, Protocol, Scope};
use crate::transport::Socket;

/// Serves the connection's requests until it closes, the client upgrades, or the server shuts
/// down (then after the request in flight).
pub(crate) async fn serve<A: Application>(
    shared: Arc<Shared<A>>,
    stream: TcpStream,
    peer: SocketAddr,
    local: Option<SocketAddr>,
) {
    let shutdown = shared.shutdown.clone();
    let service = service_fn(move |request| {
        let shared = Arc::clone(&shared);
        async move { Ok::<_, Infallible>(respond(shared, request, peer, local).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
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
    let cookies = request.headers().get_all(http::header::COOKIE).iter();
    let response = if cookies.map(|value| value.len()).sum::<usize>() > MAX_COOKIE_BYTES {
        plain_response(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
    } else if websocket {
        respond_websocket(&shared, request, peer, local).await
    } else {
        respond_http(&shared, request, peer, local).await
    };
    access_log(&method, &path, response.status(), started, websocket, peer);
    response.map(Full::new)
}

/// The scope of a request hyper read. Its header values are slices of hyper's 8 KiB read
/// buffer, which the scope would keep: they are copied.
fn scope_of_parts(
    protocol: Protocol,
    parts: http::request::Parts,
    peer: SocketAddr,
    local: Option<SocketAddr>,
) -> Scope {
    let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let headers = Headers::from(&parts.headers);
    scope_for(protocol, parts.method, path_and_query, headers, peer, local)
}

async fn respond_http<A: Application>(
    shared: &Shared<A>,
    request: Request<Incoming>,
    peer: SocketAddr,
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
    let scope = scope_of_parts(Protocol::Http, parts, peer, local);
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
    match upgraded.downcast::<TokioIo<TcpStream>>() {
        // Frames the client sent right behind its request were read by hyper already.
        Ok(parts) => tcp_socket(parts.io.into_inner(), parts.read_buf.to_vec(), config).await,
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
    peer: SocketAddr,
    local: Option<SocketAddr>,
) -> HttpResponse {
    let on_upgrade = hyper::upgrade::on(&mut request);
    let (parts, _body) = request.into_parts();
    let scope = scope_of_parts(Protocol::Websocket, parts, peer, local);
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
    match pending.wait(peer).await {
        Ok(accepted) => {
            let mut response = Response::new(Bytes::new());
            *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            *response.headers_mut() = accepted.headers(accept_key);
            response
        }
        Err(refused) => refused,
    }
}
