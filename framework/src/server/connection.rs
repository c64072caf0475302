//! One TCP connection: HTTP/1.1 requests, and a WebSocket after an upgrade.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
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
use super::direct;
use super::handshake::{self, Refusal};
use super::transport::{Socket, TcpTransport};
use crate::application::{
    Application, Connection, HandshakeAnswer, HttpConnection, HttpResponse, Keepalive,
    WebsocketConnection, plain_response,
};
use crate::layer::SharedLayer;
use crate::scope::{Headers, Protocol, Scope};

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
    let Some(stream) = direct::serve(&shared, stream, peer, local).await else {
        return;
    };
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

/// How long a client has to send its request head (hyper's default, also for the handshakes
/// answered without hyper).
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest total size of a request's `Cookie` headers (browsers keep about 4 KiB per cookie);
/// larger is refused with 431 before anything parses them.
pub(crate) const MAX_COOKIE_BYTES: usize = 8 << 10;

/// One line per request on the `switchboard::access` target.
pub(crate) fn access_log(
    method: &Method,
    path: &str,
    status: StatusCode,
    started: Instant,
    websocket: bool,
    peer: SocketAddr,
) {
    tracing::info!(
        target: "switchboard::access",
        %method,
        %path,
        status = status.as_u16(),
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        websocket,
        client = %peer,
    );
}

/// The scope of a request; `headers` are copies that the scope keeps for the connection's life.
pub(crate) fn scope_for(
    protocol: Protocol,
    method: Method,
    path_and_query: &str,
    headers: Headers,
    peer: SocketAddr,
    local: Option<SocketAddr>,
) -> Scope {
    let mut scope = Scope::new(protocol, path_and_query).with_headers(headers);
    scope.method = method;
    scope.client = Some(peer);
    scope.server = local;
    scope
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

/// tungstenite's limits from the server's.
pub(crate) fn websocket_config(config: &ServerConfig) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(config.read_buffer_size)
        .write_buffer_size(config.write_buffer_size)
        .max_message_size(Some(config.max_message_size))
        .max_frame_size(Some(config.max_frame_size))
}

/// What a consumer accepted a handshake with.
pub(crate) struct Accepted {
    subprotocol: Option<String>,
    headers: HeaderMap,
}

impl Accepted {
    /// The 101 answer's headers.
    pub(crate) fn headers(self, accept_key: HeaderValue) -> HeaderMap {
        handshake::switching_headers(accept_key, self.subprotocol.as_deref(), self.headers)
    }
}

/// The connection the application is called with for a checked handshake, and the wait for
/// its answer. After an acceptance the consumer gets its transport from `upgrade` once the 101
/// is on its way.
pub(crate) fn websocket_connection<A>(
    shared: &Shared<A>,
    upgrade: BoxFuture<'static, Option<Socket>>,
) -> (WebsocketConnection, PendingAnswer) {
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
    let pending = PendingAnswer {
        answer: answer_rx,
        timeout: shared.config.connect_timeout,
        abandoned: conn.abandoned.clone(),
    };
    (conn, pending)
}

/// A handshake's answer on its way from the application.
pub(crate) struct PendingAnswer {
    answer: oneshot::Receiver<HandshakeAnswer>,
    /// The server's connect timeout.
    timeout: Duration,
    abandoned: Option<CancellationToken>,
}

impl PendingAnswer {
    /// Waits up to the connect timeout for the answer: the 101's headers, or the refusal to
    /// send instead.
    pub(crate) async fn wait(self, peer: SocketAddr) -> Result<Accepted, HttpResponse> {
        match tokio::time::timeout(self.timeout, self.answer).await {
            Ok(Ok(HandshakeAnswer::Accept {
                subprotocol,
                headers,
            })) => Ok(Accepted {
                subprotocol,
                headers,
            }),
            Ok(Ok(HandshakeAnswer::Deny { status })) => Err(plain_response(status)),
            // The application dropped the handshake without answering: Channels' "closed
            // before accept", a refusal.
            Ok(Err(_)) => Err(plain_response(StatusCode::FORBIDDEN)),
            Err(_) => {
                tracing::warn!(client = %peer, "connect() did not accept or deny within the connect timeout");
                // Not an abort: the consumer stops connect() and still runs disconnect().
                if let Some(abandoned) = self.abandoned {
                    abandoned.cancel();
                }
                Err(plain_response(StatusCode::SERVICE_UNAVAILABLE))
            }
        }
    }
}
