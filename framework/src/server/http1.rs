//! Requests through hyper's HTTP/1.1 server: plain HTTP, and every WebSocket handshake the
//! direct path leaves alone. Each request is answered by `request.rs`, and logged here.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;

use super::handshake;
use super::plumbing::{HEADER_READ_TIMEOUT, Shared, access_log};
use super::request;
use crate::application::Application;

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
    let response = request::respond(&shared, request, Some(peer), local).await;
    access_log(&method, &path, response.status(), started, websocket, peer);
    response.map(Full::new)
}
