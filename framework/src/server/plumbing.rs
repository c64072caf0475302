//! What both ways of answering a connection share: the server's shared state, the scope of a
//! request, the wait for a WebSocket handshake's answer, tungstenite's limits and the access log.
//!
//! The hyper path (`http1.rs`, answering through `request.rs`) and the direct handshake path
//! (`direct.rs`) are leaves that import this module (and the handshake checks), never each
//! other. The tower service (`crate::tower`) answers through `request.rs` too.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::ServerConfig;
use super::forwarded::Origin;
use super::handshake;
use crate::application::{
    HandshakeAnswer, HttpResponse, Keepalive, WebsocketConnection, plain_response,
};
use crate::layer::SharedLayer;
use crate::limits::{ConnectionCounts, Permit, RateLimit, SlowClientPolicy};
use crate::scope::{Headers, Protocol, Scope};
use crate::transport::{Socket, TcpTransport};

/// What every connection of one server shares.
pub(crate) struct Shared<A> {
    pub app: A,
    pub layer: SharedLayer,
    pub config: ServerConfig,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
    pub counts: Arc<ConnectionCounts>,
    /// The config's per-connection limits, allocated once and shared by every WebSocket.
    pub rate_limit: Option<Arc<RateLimit>>,
    pub slow_client: Arc<SlowClientPolicy>,
}

impl<A> Shared<A> {
    pub(crate) fn new(
        app: A,
        layer: SharedLayer,
        config: ServerConfig,
        shutdown: CancellationToken,
    ) -> Shared<A> {
        Shared {
            app,
            layer,
            counts: ConnectionCounts::new(config.max_connections, config.client_limits),
            rate_limit: config
                .rate_limit
                .is_limited()
                .then(|| Arc::new(config.rate_limit)),
            slow_client: Arc::new(config.slow_client),
            config,
            shutdown,
            tasks: TaskTracker::new(),
        }
    }
}

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
    client: SocketAddr,
) {
    tracing::info!(
        target: "switchboard::access",
        %method,
        %path,
        status = status.as_u16(),
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        websocket,
        %client,
    );
}

/// The scope of a request from a client at `origin` (when the server knows it); `headers` are
/// copies that the scope keeps for the connection's life.
pub(crate) fn scope_for(
    protocol: Protocol,
    method: Method,
    path_and_query: &str,
    headers: Headers,
    origin: Option<Origin>,
    local: Option<SocketAddr>,
) -> Scope {
    let mut scope = Scope::new(protocol, path_and_query).with_headers(headers);
    scope.method = method;
    scope.client = origin.map(|origin| origin.client);
    scope.secure = origin.is_some_and(|origin| origin.secure);
    scope.server = local;
    scope
}

/// tungstenite straight over one of this server's TCP connections, past its handshake;
/// `read` holds what the client sent behind its request head, if anything was read already.
/// The permit (this server's own connections have one) stays with the socket until it closes.
pub(crate) async fn tcp_socket(
    stream: TcpStream,
    read: Vec<u8>,
    config: WebSocketConfig,
    permit: Option<Permit>,
) -> Socket {
    let role = Role::Server;
    let transport = if read.is_empty() {
        WebSocketStream::from_raw_socket(stream, role, Some(config)).await
    } else {
        WebSocketStream::from_partially_read(stream, read, role, Some(config)).await
    };
    Socket::Tcp(TcpTransport::new(transport, permit))
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
    .with_shared_limits(
        shared.rate_limit.clone(),
        Some(Arc::clone(&shared.slow_client)),
    )
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
    pub(crate) async fn wait(self, peer: Option<SocketAddr>) -> Result<Accepted, HttpResponse> {
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
                tracing::warn!(
                    client = peer.map(tracing::field::display),
                    "connect() did not accept or deny within the connect timeout"
                );
                // Not an abort: the consumer stops connect() and still runs disconnect().
                if let Some(abandoned) = self.abandoned {
                    abandoned.cancel();
                }
                Err(plain_response(StatusCode::SERVICE_UNAVAILABLE))
            }
        }
    }
}
