//! One TCP connection: HTTP/1.1 requests, and a WebSocket after an upgrade.

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
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::ServerConfig;
use super::handshake::{self, Refusal};
use super::transport::{Socket, TcpTransport};
use crate::application::{
    Application, Connection, HandshakeAnswer, HttpConnection, HttpResponse, Keepalive,
    WebsocketConnection, plain_response,
};
use crate::layer::SharedLayer;
use crate::scope::{Protocol, Scope};

/// What every connection of one server shares.
pub(crate) struct Shared<A> {
    pub app: A,
    pub layer: SharedLayer,
    pub config: ServerConfig,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
}

pub(crate) async fn serve_tcp<A: Application>(
    shared: Arc<Shared<A>>,
    stream: TcpStream,
    peer: SocketAddr,
    local: Option<SocketAddr>,
) {
    // Chat traffic is many small frames: send each at once.
    let _ = stream.set_nodelay(true);
    let shutdown = shared.shutdown.clone();
    let service = service_fn(move |request| {
        let shared = Arc::clone(&shared);
        async move { Ok::<_, Infallible>(respond(shared, request, peer, local).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
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
    let response = if cookie_bytes(request.headers()) > MAX_COOKIE_BYTES {
        plain_response(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
    } else if websocket {
        respond_websocket(&shared, request, peer, local).await
    } else {
        respond_http(&shared, request, peer, local).await
    };
    tracing::info!(
        target: "switchboard::access",
        %method,
        %path,
        status = response.status().as_u16(),
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        websocket,
        client = %peer,
    );
    response.map(Full::new)
}

/// Largest total size of a request's `Cookie` headers (browsers keep about 4 KiB per cookie);
/// larger is refused with 431 before anything parses them.
const MAX_COOKIE_BYTES: usize = 8 << 10;

fn cookie_bytes(headers: &http::HeaderMap) -> usize {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .map(|value| value.len())
        .sum()
}

fn scope_for(
    protocol: Protocol,
    parts: http::request::Parts,
    peer: SocketAddr,
    local: Option<SocketAddr>,
) -> Scope {
    let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    // Copied: hyper's values are slices of its 8 KiB read buffer, which the scope would keep.
    let mut scope = Scope::new(protocol, path_and_query).with_headers(&parts.headers);
    scope.method = parts.method;
    scope.client = Some(peer);
    scope.server = local;
    scope
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
    let scope = scope_for(Protocol::Http, parts, peer, local);
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
        Ok(parts) => {
            let stream = parts.io.into_inner();
            let role = Role::Server;
            // Frames the client sent right behind its request were read by hyper already.
            let transport = if parts.read_buf.is_empty() {
                WebSocketStream::from_raw_socket(stream, role, Some(config)).await
            } else {
                let read = parts.read_buf.to_vec();
                WebSocketStream::from_partially_read(stream, read, role, Some(config)).await
            };
            Socket::Tcp(TcpTransport::new(transport))
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
    peer: SocketAddr,
    local: Option<SocketAddr>,
) -> HttpResponse {
    let accept_key = match handshake::check(request.method(), request.headers()) {
        Ok(key) => key,
        Err(refusal) => return refusal_response(refusal),
    };
    let on_upgrade = hyper::upgrade::on(&mut request);
    let (parts, _body) = request.into_parts();
    let scope = scope_for(Protocol::Websocket, parts, peer, local);

    let config = WebSocketConfig::default()
        .read_buffer_size(shared.config.read_buffer_size)
        .write_buffer_size(shared.config.write_buffer_size)
        .max_message_size(Some(shared.config.max_message_size))
        .max_frame_size(Some(shared.config.max_frame_size));
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

    let (answer_tx, answer_rx) = oneshot::channel();
    let conn = WebsocketConnection::upgrading_to(
        Arc::clone(&shared.layer),
        answer_tx,
        upgrade,
        shared.shutdown.clone(),
    )
    .with_keepalive(Keepalive {
        interval: shared.config.ping_interval,
        timeout: shared.config.ping_timeout,
    })
    .with_task_tracker(shared.tasks.clone());
    let abandoned = conn.abandoned.clone();
    let task_shared = Arc::clone(shared);
    shared.tasks.spawn(async move {
        task_shared
            .app
            .call(scope, Connection::Websocket(conn))
            .await;
    });

    match tokio::time::timeout(shared.config.connect_timeout, answer_rx).await {
        Ok(Ok(HandshakeAnswer::Accept {
            subprotocol,
            headers,
        })) => {
            let mut response = Response::new(Bytes::new());
            *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            *response.headers_mut() =
                handshake::switching_headers(accept_key, subprotocol.as_deref(), headers);
            response
        }
        Ok(Ok(HandshakeAnswer::Deny { status })) => plain_response(status),
        // The application dropped the handshake without answering: Channels' "closed before
        // accept", a refusal.
        Ok(Err(_)) => plain_response(StatusCode::FORBIDDEN),
        Err(_) => {
            tracing::warn!(client = %peer, "connect() did not accept or deny within the connect timeout");
            // Not an abort: the consumer stops connect() and still runs disconnect().
            if let Some(abandoned) = abandoned {
                abandoned.cancel();
            }
            plain_response(StatusCode::SERVICE_UNAVAILABLE)
        }
    }
}
