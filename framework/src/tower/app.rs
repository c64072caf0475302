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

#[cfg(test)]
mod tests {
    use std::future::{Ready, ready};
    use std::net::SocketAddr;
    use std::task::{Context, Poll};

    use axum::extract::{Extension, Json, Path, Query};
    use axum::routing::{get, post};
    use http::Method;

    use super::*;
    use crate::scope::User;
    use crate::testing::{HttpCommunicator, WebsocketCommunicator};

    #[derive(Debug, Clone)]
    struct Tag(&'static str);

    /// A view that reports what axum's extractors found.
    fn views() -> axum::Router {
        axum::Router::new()
            .route(
                "/echo/{name}",
                post(
                    |Path(name): Path<String>,
                     Query(query): Query<Vec<(String, String)>>,
                     method: Method,
                     headers: HeaderMap,
                     Extension(Tag(tag)): Extension<Tag>,
                     Extension(user): Extension<User>,
                     // Extracted, or axum answers 500.
                     Extension(_layer): Extension<SharedLayer>,
                     Json(body): Json<serde_json::Value>| async move {
                        Json(serde_json::json!({
                            "name": name,
                            "query": query,
                            "method": method.as_str(),
                            "x_custom": headers.get("x-custom").and_then(|v| v.to_str().ok()),
                            "tag": tag,
                            "user": user.username(),
                            "body": body,
                        }))
                    },
                ),
            )
            .route(
                "/client",
                get(
                    |Extension(info): Extension<axum::extract::ConnectInfo<SocketAddr>>| async move {
                        info.0.to_string()
                    },
                ),
            )
    }

    /// Middleware that logs everyone in as ann.
    struct LogIn<A>(A);

    impl<A: Application> Application for LogIn<A> {
        async fn call(&self, mut scope: Scope, conn: Connection) {
            scope.user = User::authenticated("1", "ann");
            self.0.call(scope, conn).await
        }
    }

    #[tokio::test]
    async fn the_scope_reaches_axum_as_a_request() {
        let app = LogIn(TowerService(views()));
        let response = HttpCommunicator::new(app, Method::POST, "/echo/caf%C3%A9?a=1&a=2")
            .header("x-custom", "yes")
            .header("content-type", "application/json")
            .extension(Tag("from middleware"))
            .body(r#"{"hello": "axum"}"#)
            .get_response()
            .await
            .unwrap();
        assert_eq!(response.status, StatusCode::OK, "{}", response.text());
        let seen: serde_json::Value = response.json().unwrap();
        assert_eq!(seen["name"], "café");
        assert_eq!(seen["query"], serde_json::json!([["a", "1"], ["a", "2"]]));
        assert_eq!(seen["method"], "POST");
        assert_eq!(seen["x_custom"], "yes");
        assert_eq!(seen["tag"], "from middleware");
        assert_eq!(seen["user"], "ann");
        assert_eq!(seen["body"]["hello"], "axum");
    }

    #[cfg(feature = "axum")]
    #[tokio::test]
    async fn a_router_is_an_application_and_gets_the_client_address() {
        let client: SocketAddr = "127.0.0.1:4321".parse().unwrap();
        let response = HttpCommunicator::new(views(), Method::GET, "/client")
            .client(client)
            .get_response()
            .await
            .unwrap();
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(response.text(), "127.0.0.1:4321");
    }

    #[tokio::test]
    async fn a_websocket_routed_to_a_tower_service_is_refused_with_404() {
        let mut ws = WebsocketCommunicator::new(TowerService(views()), "/client");
        assert_eq!(ws.connect().await.unwrap().status(), StatusCode::NOT_FOUND);
    }

    /// A tower service that fails, or whose response body fails.
    #[derive(Clone)]
    struct Failing {
        in_body: bool,
    }

    /// A body that fails when read.
    struct BrokenBody;

    impl hyper::body::Body for BrokenBody {
        type Data = Bytes;
        type Error = &'static str;

        fn poll_frame(
            self: std::pin::Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, &'static str>>> {
            Poll::Ready(Some(Err("the body broke")))
        }
    }

    impl Service<Request<Full<Bytes>>> for Failing {
        type Response = Response<BrokenBody>;
        type Error = &'static str;
        type Future = Ready<Result<Response<BrokenBody>, &'static str>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), &'static str>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _request: Request<Full<Bytes>>) -> Self::Future {
            ready(match self.in_body {
                true => Ok(Response::new(BrokenBody)),
                false => Err("the service failed"),
            })
        }
    }

    #[tokio::test]
    async fn a_failing_service_or_body_is_answered_with_500() {
        for in_body in [false, true] {
            let app = TowerService(Failing { in_body });
            let response = HttpCommunicator::new(app, Method::GET, "/")
                .get_response()
                .await
                .unwrap();
            assert_eq!(response.status, StatusCode::INTERNAL_SERVER_ERROR);
        }
    }

    #[test]
    fn headers_collect_into_a_header_map_in_order() {
        let mut map = HeaderMap::new();
        map.append("cookie", "a=1".parse().unwrap());
        map.append("x-one", "1".parse().unwrap());
        map.append("cookie", "b=2".parse().unwrap());
        let scope = Scope::new(crate::scope::Protocol::Http, "/").with_headers(&map);
        let back: HeaderMap = scope.headers.into_iter().collect();
        let cookies: Vec<_> = back.get_all("cookie").iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        assert_eq!(back["x-one"], "1");
    }
}
