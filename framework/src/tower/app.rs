//! A tower [`Service`] as an [`Application`]: an axum router (or any tower HTTP service) as the
//! HTTP side of a switchboard application.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use tower_service::Service;

use crate::application::{Application, Connection, HttpResponse, plain_response};
use crate::layer::SharedLayer;
use crate::scope::Scope;

/// A tower HTTP [`Service`] as an [`Application`]: give it to
/// [`ProtocolTypeRouter::http`](crate::routing::ProtocolTypeRouter::http) (or a route of a
/// [`URLRouter`](crate::routing::URLRouter)) and it answers the HTTP requests, with its own
/// extractors and tower layers, while switchboard's consumers take the WebSockets. With the
/// crate feature `axum`, an axum `Router` is an [`Application`] itself, without this wrapper.
///
/// The service gets a `Request<Full<Bytes>>`: the body switchboard's server read whole within
/// [`ServerConfig::max_body_size`](crate::server::ServerConfig::max_body_size), the scope's
/// method, path and query (whole, as the client sent them: a router mounted under a prefix
/// still sees it) and headers (as middleware left them), HTTP/1.1. Its extensions carry:
///
/// - the scope's [`extensions`](Scope::extensions), as middleware left them;
/// - the scope's [`User`](crate::scope::User) and, when a session middleware ran,
///   [`Session`](crate::scope::Session) (a copy: a change made by the service is not saved);
/// - the connection's [`SharedLayer`], to send to groups and consumers from a handler;
/// - with the crate feature `axum`, the client address as axum's `ConnectInfo<SocketAddr>`, so
///   axum's `ConnectInfo` extractor works as under `axum::serve`.
///
/// The response's body is read whole before it is sent: a streaming response (server-sent
/// events, a large download) is held until it ends, so serve those from an axum server instead
/// (see [`ApplicationService`](super::ApplicationService) to put switchboard inside it).
/// A WebSocket routed here is refused with 404; a service error is logged and answered with
/// 500.
///
/// ```
/// use axum::routing::get;
/// use switchboard::prelude::*;
/// use switchboard::tower::TowerService;
///
/// let views = axum::Router::new()
///     .route("/", get(|| async { "hello from axum" }))
///     .route("/rooms/{room}", get(|axum::extract::Path(room): axum::extract::Path<String>| async move {
///         format!("room {room}")
///     }));
/// // With the crate feature `axum`, `.http(views)` says the same.
/// let app = ProtocolTypeRouter::new().http(TowerService(views));
/// ```
#[derive(Clone)]
pub struct TowerService<S>(pub S);

impl<S> fmt::Debug for TowerService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TowerService<{}>", std::any::type_name::<S>())
    }
}

impl<S, B> Application for TowerService<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Future: Send,
    S::Error: fmt::Display,
    B: hyper::body::Body<Data = Bytes> + Send,
    B::Error: fmt::Display,
{
    async fn call(&self, scope: Scope, conn: Connection) {
        serve(self.0.clone(), scope, conn).await
    }
}

/// An axum router as the HTTP side of a switchboard application:
/// `ProtocolTypeRouter::new().http(router)`. See [`TowerService`] for what it receives.
#[cfg(feature = "axum")]
impl Application for axum::Router {
    async fn call(&self, scope: Scope, conn: Connection) {
        serve(self.clone(), scope, conn).await
    }
}

/// Answers an HTTP connection with `service` (a clone of its own: tower's `call` takes
/// `&mut self`).
async fn serve<S, B>(mut service: S, scope: Scope, conn: Connection)
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
    S::Error: fmt::Display,
    B: hyper::body::Body<Data = Bytes>,
    B::Error: fmt::Display,
{
    let mut http = match conn {
        Connection::Http(http) => http,
        ws @ Connection::Websocket(_) => return ws.refuse(StatusCode::NOT_FOUND),
    };
    let body = std::mem::take(&mut http.body);
    let Some(request) = request_of(scope, body, http.channel_layer()) else {
        return http.respond(plain_response(StatusCode::BAD_REQUEST));
    };
    let answered = async {
        futures::future::poll_fn(|cx| service.poll_ready(cx)).await?;
        service.call(request).await
    };
    let response = match answered.await {
        Ok(response) => response,
        Err(err) => {
            tracing::error!(error = %err, "the tower service failed: answering 500");
            return http.respond(plain_response(StatusCode::INTERNAL_SERVER_ERROR));
        }
    };
    http.respond(collected(response).await);
}

/// The request the service gets for `scope`; `None` if its path and query make no URI (they
/// came from one, so only an application that rewrote them badly gets there).
fn request_of(scope: Scope, body: Bytes, layer: &SharedLayer) -> Option<Request<Full<Bytes>>> {
    let uri = if scope.query_string.is_empty() {
        Uri::try_from(scope.raw_path.as_str())
    } else {
        Uri::try_from(format!("{}?{}", scope.raw_path, scope.query_string))
    };
    let mut request = Request::new(Full::new(body));
    *request.uri_mut() = uri.ok()?;
    *request.method_mut() = scope.method;
    *request.headers_mut() = scope.headers.into_iter().collect::<HeaderMap>();
    let extensions = request.extensions_mut();
    extensions.extend(scope.extensions);
    extensions.insert(Arc::clone(layer));
    #[cfg(feature = "axum")]
    if let Some(client) = scope.client {
        extensions.insert(axum::extract::ConnectInfo(client));
    }
    if let Some(session) = scope.session {
        extensions.insert(session);
    }
    extensions.insert(scope.user);
    Some(request)
}

/// The service's response with its body read whole.
async fn collected<B>(response: Response<B>) -> HttpResponse
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: fmt::Display,
{
    let (parts, body) = response.into_parts();
    match body.collect().await {
        Ok(body) => Response::from_parts(parts, body.to_bytes()),
        Err(err) => {
            tracing::error!(error = %err, "the tower service's response body failed: answering 500");
            plain_response(StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}
