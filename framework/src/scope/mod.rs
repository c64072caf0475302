//! The per-connection metadata every application sees: Channels' `scope`.
//!
//! A [`Scope`] is built once per request by the server (or a testing communicator) and then
//! travels down the application tree by value: routers add [`UrlRoute`] kwargs, middleware fill in
//! [`Scope::session`], [`Scope::user`] or [`Scope::extensions`], and the consumer reads it
//! through its handle.

mod build;
mod headers;
mod query;
mod session;
mod url_route;
mod user;

use std::net::SocketAddr;

use cookie::CookieJar;
use http::{Extensions, Method};

pub(crate) use build::parse_cookies;
pub use headers::Headers;
pub use query::QueryParams;
pub use session::{Session, SessionData};
pub use url_route::{Kwargs, UrlRoute};
pub use user::User;

use crate::error::{Error, Result};

/// Which protocol a connection speaks (Channels' `scope["type"]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// A plain HTTP request.
    Http,
    /// A WebSocket handshake and the connection that follows it.
    Websocket,
}

impl Protocol {
    /// The ASGI name: `"http"` or `"websocket"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Websocket => "websocket",
        }
    }
}

/// Everything known about one connection, as Channels' `scope` dict.
#[derive(Debug)]
#[non_exhaustive]
pub struct Scope {
    /// `http` or `websocket`.
    pub protocol: Protocol,
    /// The HTTP method (`GET` for every WebSocket).
    pub method: Method,
    /// The percent-decoded path, e.g. `/ws/chat/café/`.
    pub path: String,
    /// The path exactly as it arrived on the wire, still percent-encoded.
    pub raw_path: String,
    /// The raw query string without the `?`, e.g. `num=111&x=1`.
    pub query_string: String,
    /// Request headers: case-insensitive names, possibly several values per name.
    pub headers: Headers,
    /// The peer's address, when known.
    pub client: Option<SocketAddr>,
    /// The local address the connection arrived on, when known.
    pub server: Option<SocketAddr>,
    /// Subprotocols the client offered in `Sec-WebSocket-Protocol`, in its order of preference.
    pub subprotocols: Vec<String>,
    /// What the URL routers matched: keyword and positional arguments.
    pub url_route: UrlRoute,
    /// Cookies from the `Cookie` header (malformed pairs are skipped).
    pub cookies: CookieJar,
    /// The session; `None` unless [`SessionMiddleware`](crate::middleware::SessionMiddleware)
    /// (or `AuthMiddlewareStack`) runs, which always sets one, new and empty for a visitor
    /// without a valid session cookie.
    pub session: Option<Session>,
    /// The user; [`User::Anonymous`] until authentication middleware sets it.
    pub user: User,
    /// Typed slots for middleware-specific data.
    pub extensions: Extensions,
    /// The part of the path an enclosing router has not consumed yet (Channels' `path_remaining`).
    pub(crate) path_remaining: Option<String>,
}

impl Scope {
    /// A scope for `protocol` and a path-and-query such as `/ws/chat/lobby/?x=1`, with no headers.
    ///
    /// Servers and communicators build scopes this way and then fill in the rest.
    ///
    /// ```
    /// use switchboard::scope::{Protocol, Scope};
    ///
    /// let scope = Scope::new(Protocol::Websocket, "/ws/chat/caf%C3%A9/?num=1");
    /// assert_eq!(scope.path, "/ws/chat/café/");
    /// assert_eq!(scope.raw_path, "/ws/chat/caf%C3%A9/");
    /// assert_eq!(scope.query().get("num"), Some("1"));
    /// ```
    pub fn new(protocol: Protocol, path_and_query: &str) -> Scope {
        let (raw_path, query_string) = match path_and_query.split_once('?') {
            Some((path, query)) => (path, query),
            None => (path_and_query, ""),
        };
        Scope {
            protocol,
            method: Method::GET,
            path: build::decode_path(raw_path),
            raw_path: raw_path.to_owned(),
            query_string: query_string.to_owned(),
            headers: Headers::new(),
            client: None,
            server: None,
            subprotocols: Vec::new(),
            url_route: UrlRoute::default(),
            cookies: CookieJar::new(),
            session: None,
            user: User::Anonymous,
            extensions: Extensions::new(),
            path_remaining: None,
        }
    }

    /// Adds headers and derives what depends on them: cookies and offered subprotocols.
    pub fn with_headers(mut self, headers: impl Into<Headers>) -> Scope {
        let headers = headers.into();
        self.cookies = build::parse_cookies(&headers);
        self.subprotocols = build::parse_subprotocols(&headers);
        self.headers = headers;
        self
    }

    /// The parsed query string.
    pub fn query(&self) -> QueryParams {
        QueryParams::parse(&self.query_string)
    }

    /// The first value of a header as text, if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A cookie's value.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies.get(name).map(|c| c.value())
    }

    /// A keyword argument captured by a URL route, e.g. `room_name` of `/ws/chat/{room_name}/`.
    ///
    /// An error here means the route pattern and the consumer disagree about names.
    pub fn kwarg(&self, name: &str) -> Result<&str> {
        self.url_route
            .kwargs
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| Error::MissingKwarg(name.to_owned()))
    }

    /// The path still to be routed: the whole path unless an enclosing router consumed a prefix.
    pub fn path_remaining(&self) -> &str {
        self.path_remaining.as_deref().unwrap_or(&self.path)
    }

    pub(crate) fn set_path_remaining(&mut self, rest: String) {
        self.path_remaining = Some(rest);
    }
}
