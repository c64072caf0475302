//! [`HttpCommunicator`]: one HTTP request to an application, in-process.

use std::borrow::Cow;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;
use tokio::time::timeout;

use super::request::{add_cookie, append_header, convert};
use super::task::AppTask;
use super::{DEFAULT_TIMEOUT, Error};
use crate::application::{Application, BoxApplication, Connection, HttpConnection};
use crate::layer::{InMemoryChannelLayer, SharedLayer};
use crate::scope::{Protocol, Scope};

/// Sends one HTTP request to an [`Application`] and captures the response, in-process
/// (Channels' `HttpCommunicator`).
///
/// ```
/// use switchboard::prelude::*;
/// use switchboard::testing::HttpCommunicator;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), switchboard::testing::Error> {
/// let app = URLRouter::new().route(
///     "/hello/{name}/",
///     handler(|req: HttpRequest| async move {
///         response::text(format!("hello {}", req.scope.kwarg("name").unwrap_or("?")))
///     }),
/// );
///
/// let response = HttpCommunicator::new(app, "GET", "/hello/ada/").get_response().await?;
/// assert_eq!(response.status, StatusCode::OK);
/// assert_eq!(response.header("content-type"), Some("text/plain; charset=utf-8"));
/// assert_eq!(response.text(), "hello ada");
/// # Ok(())
/// # }
/// ```
pub struct HttpCommunicator {
    app: BoxApplication,
    scope: Scope,
    body: Bytes,
    layer: SharedLayer,
    timeout: Duration,
}

impl HttpCommunicator {
    /// A request for `path` (which may carry a query string) with `method`: a
    /// [`Method`] or its name (`"POST"`).
    ///
    /// # Panics
    ///
    /// If `method` is not a valid method name.
    pub fn new<M>(app: impl Application, method: M, path: &str) -> HttpCommunicator
    where
        Method: TryFrom<M>,
        <Method as TryFrom<M>>::Error: Into<http::Error>,
    {
        let mut scope = Scope::new(Protocol::Http, path);
        scope.method = convert(method, "method");
        HttpCommunicator::with_scope(BoxApplication::new(app), scope)
    }

    pub(super) fn with_scope(app: BoxApplication, scope: Scope) -> HttpCommunicator {
        HttpCommunicator {
            app,
            scope,
            body: Bytes::new(),
            layer: Arc::new(InMemoryChannelLayer::new()),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Adds a request header (several values for one name are kept).
    ///
    /// # Panics
    ///
    /// If the name or value is not a valid header name or value.
    pub fn header<K, V>(mut self, name: K, value: V) -> HttpCommunicator
    where
        HeaderName: TryFrom<K>,
        <HeaderName as TryFrom<K>>::Error: Into<http::Error>,
        HeaderValue: TryFrom<V>,
        <HeaderValue as TryFrom<V>>::Error: Into<http::Error>,
    {
        let name = convert(name, "header name");
        let value = convert(value, "header value");
        append_header(&mut self.scope, name, value);
        self
    }

    /// Adds a cookie to the request's `Cookie` header (percent-encoded as needed).
    pub fn cookie(mut self, name: &str, value: &str) -> HttpCommunicator {
        add_cookie(&mut self.scope, name, value);
        self
    }

    /// Sets the client's address ([`Scope::client`]); unset, it is `None`.
    pub fn client(mut self, addr: SocketAddr) -> HttpCommunicator {
        self.scope.client = Some(addr);
        self
    }

    /// Puts a value in the scope's [extensions](Scope::extensions), as a middleware would.
    pub fn extension<T: Clone + Send + Sync + 'static>(mut self, value: T) -> HttpCommunicator {
        self.scope.extensions.insert(value);
        self
    }

    /// Sets the request body.
    pub fn body(mut self, body: impl Into<Bytes>) -> HttpCommunicator {
        self.body = body.into();
        self
    }

    /// Uses this channel layer instead of a fresh in-memory one, for views that send to
    /// consumers.
    pub fn channel_layer(mut self, layer: SharedLayer) -> HttpCommunicator {
        self.layer = layer;
        self
    }

    /// How long to wait for the response. Default 1 s.
    pub fn timeout(mut self, timeout: Duration) -> HttpCommunicator {
        self.timeout = timeout;
        self
    }

    /// Calls the application and waits for its response. A panic in the application is
    /// [`Error::Panicked`]; returning without a response is [`Error::NoResponse`].
    pub async fn get_response(self) -> Result<Response, Error> {
        let (tx, rx) = oneshot::channel();
        let conn = HttpConnection::new(self.body, self.layer, tx);
        let mut task = AppTask::spawn(self.app, self.scope, Connection::Http(conn));
        match timeout(self.timeout, rx).await {
            Ok(Ok(response)) => {
                let (parts, body) = response.into_parts();
                Ok(Response {
                    status: parts.status,
                    headers: parts.headers,
                    body,
                })
            }
            Ok(Err(_)) => {
                task.finish(self.timeout).await?;
                Err(Error::NoResponse)
            }
            Err(_) => Err(Error::Timeout {
                waiting_for: "the HTTP response",
                timeout: self.timeout,
            }),
        }
    }
}

impl fmt::Debug for HttpCommunicator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpCommunicator")
            .field("method", &self.scope.method)
            .field("path", &self.scope.path)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The response an [`HttpCommunicator`] captured.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status.
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl Response {
    /// The first value of a header as text, if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as text; bytes that are not UTF-8 become U+FFFD.
    pub fn text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }

    /// The body decoded as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|err| Error::decode(err, &self.text()))
    }
}
