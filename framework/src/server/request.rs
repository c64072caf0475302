//! Answering one request that a hyper server read, whichever server that is: this one's
//! (`http1.rs`), or axum's and any tower server's through the tower module's
//! `ApplicationService`. Plain HTTP gets its body read within the limit and one response; a
//! WebSocket handshake is checked, answered by the application within the connect timeout, and
//! upgraded through hyper's upgrade.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures::FutureExt;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use super::forwarded::{self, Origin};
use super::handshake::{self, Refusal};
use super::plumbing::{
    MAX_COOKIE_BYTES, Shared, scope_for, tcp_socket, websocket_config, websocket_connection,
};
use super::rewind::Rewind;
use crate::application::{Application, Connection, HttpConnection, HttpResponse, plain_response};
use crate::scope::{Headers, Protocol, Scope};
use crate::transport::Socket;

/// Where a request from `peer` (when the server knows it) really came from: what its
/// forwarding headers say when `peer` is a trusted proxy (see [`crate::server::ForwardedAllow`]).
pub(crate) fn origin_of<A, B>(
    shared: &Shared<A>,
    peer: Option<SocketAddr>,
    request: &Request<B>,
) -> Option<Origin> {
    let peer = peer?;
    Some(forwarded::resolve(
        &shared.config.forwarded_allow,
        peer,
        |name| {
            request
                .headers()
                .get_all(name)
                .iter()
                .map(|value| value.as_bytes())
        },
    ))
}

/// Answers `request` with the application. `origin` is the client's address (see
/// [`origin_of`]) when the server knows it, `local` the address the request arrived on.
pub(crate) async fn respond<A, B>(
    shared: &Arc<Shared<A>>,
    request: Request<B>,
    origin: Option<Origin>,
    local: Option<SocketAddr>,
) -> HttpResponse
where
    A: Application,
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let cookies = request.headers().get_all(http::header::COOKIE).iter();
    if cookies.map(|value| value.len()).sum::<usize>() > MAX_COOKIE_BYTES {
        plain_response(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
    } else if handshake::wants_websocket(request.headers()) {
        respond_websocket(shared, request, origin, local).await
    } else {
        respond_http(shared, request, origin, local).await
    }
}

/// The scope of a request hyper read. Its header values are slices of hyper's read buffer,
/// which the scope would keep: they are copied. The request's extensions (what tower layers
/// put there) become the scope's.
fn scope_of_parts(
    protocol: Protocol,
    parts: http::request::Parts,
    origin: Option<Origin>,
    local: Option<SocketAddr>,
) -> Scope {
    let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let headers = Headers::from(&parts.headers);
    let mut scope = scope_for(
        protocol,
        parts.method,
        path_and_query,
        headers,
        origin,
        local,
    );
    scope.extensions = parts.extensions;
    scope
}

async fn respond_http<A, B>(
    shared: &Shared<A>,
    request: Request<B>,
    origin: Option<Origin>,
    local: Option<SocketAddr>,
) -> HttpResponse
where
    A: Application,
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
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
/// Servers that wrap the stream (hyper-util's `auto` builder, which axum's `serve` uses, wraps
/// it in a rewind buffer of its own) get the boxed transport.
async fn websocket_over(upgraded: Upgraded, config: WebSocketConfig) -> Socket {
    // This server's own connections, with their permit under its connection limit.
    let upgraded = match upgraded.downcast::<TokioIo<Rewind>>() {
        // Frames the client sent right behind its request were read already: by hyper, or
        // with the first head.
        Ok(parts) => {
            let (stream, mut read, permit) = parts.io.into_inner().into_parts();
            read.extend_from_slice(&parts.read_buf);
            return tcp_socket(stream, read, config, Some(permit)).await;
        }
        Err(upgraded) => upgraded,
    };
    match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => {
            let read = parts.read_buf.to_vec();
            tcp_socket(parts.io.into_inner(), read, config, None).await
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

async fn respond_websocket<A: Application, B>(
    shared: &Arc<Shared<A>>,
    mut request: Request<B>,
    origin: Option<Origin>,
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
    match pending.wait(origin.map(|origin| origin.client)).await {
        Ok(accepted) => {
            let mut response = Response::new(Bytes::new());
            *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            *response.headers_mut() = accepted.headers(accept_key);
            response
        }
        Err(refused) => refused,
    }
}
