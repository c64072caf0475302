//! An [`Application`] as a tower [`Service`], to mount in axum or any tower server.

use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tokio_util::sync::CancellationToken;
use tower_service::Service;

use super::ShutdownHandle;
use crate::application::{Application, plain_response};
use crate::layer::{InMemoryChannelLayer, SharedLayer};
use crate::server::ServerConfig;
use crate::server::plumbing::Shared;
use crate::server::request;

/// A switchboard [`Application`] as a tower [`Service`]: mount it in an axum [`Router`] (or any
/// tower server built on hyper) and it answers HTTP requests and WebSocket handshakes as
/// switchboard's own [`Server`](crate::server::Server) does.
///
/// A WebSocket handshake is checked (RFC 6455), answered by the application within the connect
/// timeout (`deny()` is a real HTTP status), and upgraded through hyper's upgrade in the
/// server that called the service; the consumer then runs in a task of its own, with the
/// keepalive, frame limits and channel layer set on the [`Builder`]. A plain HTTP request has
/// its body read within [`ServerConfig::max_body_size`] (413 beyond it). Requests whose
/// `Cookie` headers add up to more than 8 KiB get 431, as with the server.
///
/// The scope is built from the request as the service receives it: `path`, `raw_path` and
/// `query_string` from its URI (so mount it with `route_service` on the full path, or give
/// its routes the path that remains after axum's `nest_service`), `headers` copied, `client`
/// from axum's `ConnectInfo<SocketAddr>` (with the crate feature `axum`, when the router is
/// served with `into_make_service_with_connect_info`), and `extensions` the request's own (a
/// tower-http `RequestId`, for example). `server` stays `None`: a tower service is not told
/// which local address the connection came in on.
///
/// Graceful shutdown is the service's own, since axum's stops following a connection once it
/// is upgraded: [`ApplicationService::shutdown_handle`] closes every WebSocket with 1001 and
/// waits for the consumers' `disconnect`.
///
/// ```no_run
/// use switchboard::prelude::*;
/// use switchboard::tower::IntoService;
///
/// #[derive(Default)]
/// struct Echo;
///
/// impl WebsocketConsumer for Echo {
///     type Event = NoEvent;
///
///     async fn receive(&mut self, ws: &mut Websocket, msg: Message) -> Result<()> {
///         ws.send_message(msg).await
///     }
/// }
///
/// # async fn run() -> std::io::Result<()> {
/// let echo = URLRouter::new().route("/ws/echo/", Echo::as_app()).into_service();
/// let websockets = echo.shutdown_handle();
/// let app = axum::Router::new()
///     .route("/", axum::routing::get(|| async { "hello from axum" }))
///     .route_service("/ws/{*path}", echo);
///
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
/// axum::serve(listener, app)
///     .with_graceful_shutdown(async {
///         let _ = tokio::signal::ctrl_c().await;
///     })
///     .await?;
/// websockets.shutdown().await; // closes every WebSocket with 1001
/// # Ok(())
/// # }
/// ```
///
/// [`Router`]: https://docs.rs/axum/0.8/axum/struct.Router.html
pub struct ApplicationService<A> {
    shared: Arc<Shared<A>>,
}

impl<A: Application> ApplicationService<A> {
    /// Serves `app` with the default [`ServerConfig`] and a fresh in-memory channel layer.
    pub fn new(app: A) -> ApplicationService<A> {
        ApplicationService::builder(app).build()
    }

    /// Starts a service whose limits and channel layer are set before it is built.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use switchboard::prelude::*;
    /// use switchboard::tower::ApplicationService;
    ///
    /// let layer: SharedLayer = Arc::new(InMemoryChannelLayer::new());
    /// let service = ApplicationService::builder(URLRouter::new())
    ///     .config(ServerConfig::default().connect_timeout(Duration::from_secs(2)))
    ///     .channel_layer(Arc::clone(&layer))
    ///     .build();
    /// assert!(Arc::ptr_eq(service.channel_layer(), &layer));
    /// ```
    pub fn builder(app: A) -> Builder<A> {
        Builder {
            app,
            layer: None,
            config: ServerConfig::default(),
        }
    }

    /// What stops this service's WebSockets: after the server stopped accepting (axum's
    /// `with_graceful_shutdown`), its [`shutdown`](ShutdownHandle::shutdown) closes each
    /// with 1001 and waits for their `disconnect`.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle::new(
            self.shared.shutdown.clone(),
            self.shared.tasks.clone(),
            self.shared.config.shutdown_timeout,
        )
    }

    /// The channel layer the consumers use (to hand to axum handlers that send to groups).
    pub fn channel_layer(&self) -> &SharedLayer {
        &self.shared.layer
    }
}

impl<A> Clone for ApplicationService<A> {
    fn clone(&self) -> Self {
        ApplicationService {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<A> fmt::Debug for ApplicationService<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApplicationService")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl<A, B> Service<Request<B>> for ApplicationService<A>
where
    A: Application,
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            // Shut down, the service takes no new connection (the server's listener would be
            // closed by now).
            let response = if shared.shutdown.is_cancelled() {
                plain_response(StatusCode::SERVICE_UNAVAILABLE)
            } else {
                let origin = request::origin_of(&shared, client_address(&request), &request);
                request::respond(&shared, request, origin, None).await
            };
            Ok(response.map(Full::new))
        })
    }
}

/// The client's address, from axum's `ConnectInfo` when the router was served with it.
#[cfg(feature = "axum")]
fn client_address<B>(request: &Request<B>) -> Option<SocketAddr> {
    use axum::extract::ConnectInfo;
    let info = request.extensions().get::<ConnectInfo<SocketAddr>>();
    info.map(|ConnectInfo(addr)| *addr)
}

/// Without axum's types there is no standard place for it.
#[cfg(not(feature = "axum"))]
fn client_address<B>(_request: &Request<B>) -> Option<SocketAddr> {
    None
}

/// Sets an [`ApplicationService`]'s limits and channel layer.
pub struct Builder<A> {
    app: A,
    layer: Option<SharedLayer>,
    config: ServerConfig,
}

impl<A: Application> Builder<A> {
    /// The limits and timeouts, as [`Server::config`](crate::server::Server::config): message
    /// and frame sizes, buffers, body size, keepalive, connect and shutdown timeouts.
    pub fn config(mut self, config: ServerConfig) -> Builder<A> {
        self.config = config;
        self
    }

    /// The channel layer consumers use; a fresh in-memory layer unless set.
    pub fn channel_layer(mut self, layer: SharedLayer) -> Builder<A> {
        self.layer = Some(layer);
        self
    }

    /// The service.
    pub fn build(self) -> ApplicationService<A> {
        let layer = self
            .layer
            .unwrap_or_else(|| Arc::new(InMemoryChannelLayer::new()));
        ApplicationService {
            shared: Arc::new(Shared::new(
                self.app,
                layer,
                self.config,
                CancellationToken::new(),
            )),
        }
    }
}

impl<A> fmt::Debug for Builder<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// `app.into_service()`: any [`Application`] as an [`ApplicationService`] with the defaults.
pub trait IntoService: Application + Sized {
    /// [`ApplicationService::new`].
    fn into_service(self) -> ApplicationService<Self> {
        ApplicationService::new(self)
    }
}

impl<A: Application> IntoService for A {}
