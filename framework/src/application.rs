//! The [`Application`] trait: what routers, middleware and consumers all are, so they nest.
//!
//! An application takes a [`Scope`] and a [`Connection`] and answers it: an HTTP response, or a
//! WebSocket handshake answer followed by the conversation. This is Channels' ASGI callable.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt};
use http::{HeaderMap, Response, StatusCode};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::layer::SharedLayer;
use crate::scope::Scope;
use crate::transport::{BoxTransport, Socket};

/// An HTTP response with its whole body.
pub type HttpResponse = Response<Bytes>;

/// Anything that can serve a connection: a router, a middleware, a consumer, a handler.
///
/// Implement it to write middleware: change the scope (or refuse the connection), then call the
/// inner application.
///
/// ```
/// use switchboard::prelude::*;
///
/// /// Refuses connections from clients that do not send a `X-Api-Version` header.
/// struct RequireVersion<A>(A);
///
/// impl<A: Application> Application for RequireVersion<A> {
///     async fn call(&self, scope: Scope, conn: Connection) {
///         if scope.header("x-api-version").is_some() {
///             self.0.call(scope, conn).await
///         } else {
///             conn.refuse(StatusCode::BAD_REQUEST)
///         }
///     }
/// }
/// ```
pub trait Application: Send + Sync + 'static {
    /// Serves one connection until it ends.
    fn call(&self, scope: Scope, conn: Connection) -> impl Future<Output = ()> + Send;
}

/// An application behind a pointer, so routers can hold applications of different types.
#[derive(Clone)]
pub struct BoxApplication(Arc<dyn DynApplication>);

impl BoxApplication {
    /// Erases the application's type.
    pub fn new(app: impl Application) -> BoxApplication {
        BoxApplication(Arc::new(app))
    }
}

impl fmt::Debug for BoxApplication {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BoxApplication")
    }
}

/// The object-safe twin of [`Application`]: one box per connection, none per frame.
trait DynApplication: Send + Sync + 'static {
    fn call_boxed(&self, scope: Scope, conn: Connection) -> BoxFuture<'_, ()>;
}

impl<A: Application> DynApplication for A {
    fn call_boxed(&self, scope: Scope, conn: Connection) -> BoxFuture<'_, ()> {
        Box::pin(self.call(scope, conn))
    }
}

impl Application for BoxApplication {
    async fn call(&self, scope: Scope, conn: Connection) {
        self.0.call_boxed(scope, conn).await
    }
}

impl<A: Application> Application for Arc<A> {
    async fn call(&self, scope: Scope, conn: Connection) {
        A::call(self, scope, conn).await
    }
}

/// One connection waiting for an application's answer.
#[derive(Debug)]
pub enum Connection {
    /// An HTTP request, answered with one response.
    Http(HttpConnection),
    /// A WebSocket handshake, answered by accepting or denying it.
    Websocket(WebsocketConnection),
}

impl Connection {
    /// Refuses the connection with an HTTP status before any consumer runs: a plain response
    /// for HTTP, a refused handshake for WebSocket (Channels can only say 403 here).
    pub fn refuse(self, status: StatusCode) {
        match self {
            Connection::Http(http) => http.respond(plain_response(status)),
            Connection::Websocket(ws) => ws.answer(HandshakeAnswer::Deny { status }),
        }
    }

    /// The channel layer this connection's consumers use.
    pub fn channel_layer(&self) -> &SharedLayer {
        match self {
            Connection::Http(http) => &http.layer,
            Connection::Websocket(ws) => &ws.layer,
        }
    }
}

/// A response whose body is the status' reason phrase, for refusals.
pub(crate) fn plain_response(status: StatusCode) -> HttpResponse {
    let reason = status.canonical_reason().unwrap_or("error");
    let mut response = Response::new(Bytes::from(format!("{} {reason}\n", status.as_u16())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// An HTTP request's body and the slot for its response.
pub struct HttpConnection {
    /// The request body, read whole (within the server's limit).
    pub body: Bytes,
    layer: SharedLayer,
    respond: oneshot::Sender<HttpResponse>,
}

impl HttpConnection {
    /// A connection whose response goes to `respond` (for servers and test harnesses).
    pub fn new(
        body: Bytes,
        layer: SharedLayer,
        respond: oneshot::Sender<HttpResponse>,
    ) -> HttpConnection {
        HttpConnection {
            body,
            layer,
            respond,
        }
    }

    /// The channel layer, to reach consumers from an HTTP handler.
    pub fn channel_layer(&self) -> &SharedLayer {
        &self.layer
    }

    /// Sends the response.
    pub fn respond(self, response: HttpResponse) {
        // The server may have given up on the request (client gone); nobody to tell.
        let _ = self.respond.send(response);
    }
}

impl fmt::Debug for HttpConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpConnection")
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// How an application answered a WebSocket handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeAnswer {
    /// HTTP 101: switch protocols.
    Accept {
        /// The chosen subprotocol, echoed in `Sec-WebSocket-Protocol`.
        subprotocol: Option<String>,
        /// Extra response headers (for example `Set-Cookie`).
        headers: HeaderMap,
    },
    /// An HTTP error instead of the upgrade.
    Deny {
        /// The status sent, usually 403.
        status: StatusCode,
    },
}

/// A WebSocket handshake waiting for its answer, and the way to the transport after it.
pub struct WebsocketConnection {
    pub(crate) layer: SharedLayer,
    answer: Option<oneshot::Sender<HandshakeAnswer>>,
    upgrade: Option<BoxFuture<'static, Option<Socket>>>,
    pub(crate) shutdown: CancellationToken,
    /// Cancelled when the server stops waiting for the handshake answer (connect timeout).
    /// The consumer's runner takes it for the handshake only: kept, the token's allocation
    /// would live as long as the connection.
    pub(crate) abandoned: Option<CancellationToken>,
    pub(crate) keepalive: Option<Keepalive>,
    pub(crate) tasks: Option<TaskTracker>,
}

/// Keepalive pings for an open WebSocket (daphne's `--ping-interval` / `--ping-timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// How often to ping an otherwise quiet client.
    pub interval: Duration,
    /// How long the client may stay silent (no frame, no pong) before it is dropped; also how
    /// long a write may wait on a client that does not read.
    pub timeout: Duration,
}

impl WebsocketConnection {
    /// A handshake whose answer goes to `answer`; after an acceptance, `upgrade` yields the
    /// transport (or `None` if the client went away). `shutdown` asks the consumer to close
    /// with 1001. For servers and test harnesses.
    pub fn new(
        layer: SharedLayer,
        answer: oneshot::Sender<HandshakeAnswer>,
        upgrade: BoxFuture<'static, Option<BoxTransport>>,
        shutdown: CancellationToken,
    ) -> WebsocketConnection {
        let upgrade = upgrade
            .map(|transport| transport.map(Socket::Boxed))
            .boxed();
        WebsocketConnection::upgrading_to(layer, answer, upgrade, shutdown)
    }

    /// [`WebsocketConnection::new`] for the server's own connections, whose transport is not
    /// boxed.
    pub(crate) fn upgrading_to(
        layer: SharedLayer,
        answer: oneshot::Sender<HandshakeAnswer>,
        upgrade: BoxFuture<'static, Option<Socket>>,
        shutdown: CancellationToken,
    ) -> WebsocketConnection {
        WebsocketConnection {
            layer,
            answer: Some(answer),
            upgrade: Some(upgrade),
            shutdown,
            abandoned: Some(CancellationToken::new()),
            keepalive: None,
            tasks: None,
        }
    }

    /// Runs the consumer in a task of its own on `tasks` once routing has found it, so that
    /// the routers' and middleware's futures are freed after the handshake instead of living
    /// as long as the connection (their state is per-connection memory). Servers set this;
    /// without it (test harnesses) the consumer runs inside the application's future.
    pub fn with_task_tracker(mut self, tasks: TaskTracker) -> WebsocketConnection {
        self.tasks = Some(tasks);
        self
    }

    /// Pings the client while it is open and drops it when it stays silent.
    pub fn with_keepalive(mut self, keepalive: Keepalive) -> WebsocketConnection {
        self.keepalive = Some(keepalive);
        self
    }

    /// The channel layer this connection's consumer uses.
    pub fn channel_layer(&self) -> &SharedLayer {
        &self.layer
    }

    /// Whether the handshake still waits for its answer.
    pub fn is_pending(&self) -> bool {
        self.answer.is_some()
    }

    /// Sends the handshake answer; a second answer is ignored.
    pub(crate) fn answer(mut self, answer: HandshakeAnswer) {
        self.send_answer(answer);
    }

    pub(crate) fn send_answer(&mut self, answer: HandshakeAnswer) -> bool {
        match self.answer.take() {
            // The server may have timed the handshake out already; that is its answer.
            Some(slot) => slot.send(answer).is_ok(),
            None => false,
        }
    }

    /// Waits for the upgraded transport after an acceptance.
    pub(crate) async fn upgraded(&mut self) -> Option<Socket> {
        self.upgrade.take()?.await
    }
}

impl fmt::Debug for WebsocketConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebsocketConnection")
            .field("pending", &self.is_pending())
            .finish_non_exhaustive()
    }
}
