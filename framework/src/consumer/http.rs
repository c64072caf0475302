//! HTTP handlers: async functions from a request to a response.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;

use crate::application::{Application, Connection, HttpResponse};
use crate::layer::SharedLayer;
use crate::scope::{QueryParams, Scope};

/// An HTTP request as a handler sees it: the scope and the whole body.
pub struct HttpRequest {
    /// Method, path, query, headers, cookies, user, url_route kwargs, ...
    pub scope: Scope,
    /// The body, read whole within the server's limit.
    pub body: Bytes,
    layer: SharedLayer,
}

impl HttpRequest {
    /// The body parsed as an HTML form (`application/x-www-form-urlencoded`).
    pub fn form(&self) -> QueryParams {
        QueryParams::parse(&String::from_utf8_lossy(&self.body))
    }

    /// The channel layer, to reach consumers or workers from a view.
    pub fn channel_layer(&self) -> &SharedLayer {
        &self.layer
    }
}

impl fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpRequest")
            .field("method", &self.scope.method)
            .field("path", &self.scope.path)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// An application answering HTTP requests with an async function; see [`handler`].
pub struct Handler<F> {
    f: Arc<F>,
}

/// Turns an async function into an HTTP application (a Django view).
///
/// A WebSocket routed to a handler is refused with 404.
///
/// ```
/// use switchboard::prelude::*;
///
/// let views = URLRouter::new()
///     .route("/healthz", handler(|_req| async { response::text("ok") }))
///     .route("/hello/{name}/", handler(|req: HttpRequest| async move {
///         let name = req.scope.kwarg("name").unwrap_or("stranger").to_owned();
///         response::text(format!("hello {name}"))
///     }));
/// ```
pub fn handler<F, Fut>(f: F) -> Handler<F>
where
    F: Fn(HttpRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = HttpResponse> + Send,
{
    Handler { f: Arc::new(f) }
}

impl<F, Fut> Application for Handler<F>
where
    F: Fn(HttpRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = HttpResponse> + Send,
{
    async fn call(&self, scope: Scope, conn: Connection) {
        match conn {
            Connection::Http(http) => {
                let request = HttpRequest {
                    scope,
                    body: http.body.clone(),
                    layer: Arc::clone(http.channel_layer()),
                };
                let response = (self.f)(request).await;
                http.respond(response);
            }
            ws @ Connection::Websocket(_) => ws.refuse(StatusCode::NOT_FOUND),
        }
    }
}
