//! Who may open a WebSocket: Channels' `OriginValidator` and `AllowedHostsOriginValidator`.
//!
//! Browsers let any page open a WebSocket to any site, cookies included; the `Origin` header
//! says which site's page asked. Checking it before the handshake keeps other sites from
//! talking to the application in a visitor's name (cross-site WebSocket hijacking).

use http::StatusCode;
use http::header::{HOST, ORIGIN};
use http::uri::{Authority, Uri};

use crate::application::{Application, Connection};
use crate::error::{Error, Result};
use crate::scope::{Headers, Protocol, Scope};

/// Which origins may connect: a list of patterns, or the request's own host.
///
/// Patterns follow Channels' `OriginValidator`:
///
/// | pattern | allows |
/// |---|---|
/// | `*` | any origin, and requests without one |
/// | `example.com` | `example.com` with any scheme and port |
/// | `.example.com` | `example.com` and every subdomain, any scheme and port |
/// | `example.com:8000` | `example.com` on port 8000, any scheme |
/// | `https://example.com` | `https://example.com` on port 443 only |
/// | `http://.example.com:8000` | `http` on port 8000, `example.com` and subdomains |
///
/// Hosts compare case-insensitively; a scheme's default port counts as given (`https://a.com`
/// and `https://a.com:443` are one origin). Unlike Channels, a port in a pattern without a
/// scheme is compared too. An `Origin` header that is not an origin (`null`, garbage, several
/// headers) is refused by every pattern but `*`.
///
/// A request without `Origin` (websocat, Python clients, servers: only browsers send it) is
/// refused unless `*` is in the list — Channels' rule — or [`allow_missing`](Self::allow_missing)
/// says otherwise.
///
/// ```
/// use switchboard::middleware::AllowedOrigins;
///
/// let allowed = AllowedOrigins::new([".example.com", "http://localhost:8000"]).unwrap();
/// assert!(allowed.allows_origin(Some("https://chat.example.com"), None));
/// assert!(allowed.allows_origin(Some("http://localhost:8000"), None));
/// assert!(!allowed.allows_origin(Some("http://localhost:9000"), None));
/// assert!(!allowed.allows_origin(Some("https://example.com.evil.net"), None));
/// assert!(!allowed.allows_origin(None, None));
/// assert!(allowed.allow_missing(true).allows_origin(None, None));
///
/// let same_host = AllowedOrigins::same_host();
/// assert!(same_host.allows_origin(Some("http://127.0.0.1:8000"), Some("127.0.0.1:8000")));
/// assert!(!same_host.allows_origin(Some("http://127.0.0.1:8000"), Some("127.0.0.1:9000")));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedOrigins {
    rule: Rule,
    allow_missing: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Rule {
    /// The origin's host and port are the `Host` header's.
    SameHost,
    Patterns(Vec<Pattern>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Any,
    Origin {
        scheme: Option<String>,
        /// Lowercase; a leading `.` also matches subdomains.
        host: String,
        port: Option<u16>,
    },
}

/// An `Origin` header taken apart.
struct ParsedOrigin {
    scheme: String,
    host: String,
    /// The explicit port, else the scheme's default.
    port: Option<u16>,
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

impl ParsedOrigin {
    fn parse(value: &str) -> Option<ParsedOrigin> {
        let uri: Uri = value.trim().parse().ok()?;
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let authority = uri.authority()?;
        let host = authority.host().to_ascii_lowercase();
        if host.is_empty() {
            return None;
        }
        Some(ParsedOrigin {
            port: authority.port_u16().or_else(|| default_port(&scheme)),
            scheme,
            host,
        })
    }
}

/// Django's `is_same_domain`: a leading dot matches the domain and its subdomains.
fn is_same_domain(host: &str, pattern: &str) -> bool {
    match pattern.strip_prefix('.') {
        Some(domain) => host == domain || host.ends_with(pattern),
        None => host == pattern,
    }
}

impl Pattern {
    fn parse(pattern: &str) -> Result<Pattern> {
        let trimmed = pattern.trim();
        if trimmed == "*" {
            return Ok(Pattern::Any);
        }
        let invalid = |why: &str| {
            Error::Config(format!(
                "invalid allowed origin {pattern:?}: {why}; write `*`, `example.com`, `.example.com`, \
                 `example.com:8000` or `https://example.com`"
            ))
        };
        let lower = trimmed.to_ascii_lowercase();
        let (scheme, rest) = match lower.split_once("://") {
            Some((scheme, rest)) if !scheme.is_empty() => (Some(scheme.to_owned()), rest),
            Some(_) => return Err(invalid("empty scheme")),
            None => (None, lower.as_str()),
        };
        // Parsed as an authority with the leading dot set aside, since `.example.com` is not one.
        let (dot, authority) = match rest.strip_prefix('.') {
            Some(rest) => (".", rest),
            None => ("", rest),
        };
        let authority: Authority = authority
            .trim_end_matches('/')
            .parse()
            .map_err(|_| invalid("not a host with an optional port"))?;
        // `Authority` takes `host:junk` with no port; a pattern must say what it means.
        let junk_port = authority.port().is_none() && authority.as_str() != authority.host();
        if authority.host().is_empty() || authority.as_str().contains('@') || junk_port {
            return Err(invalid("not a host with an optional port"));
        }
        let port = match authority.port() {
            Some(port) => Some(port.as_u16()),
            None => scheme.as_deref().and_then(default_port),
        };
        Ok(Pattern::Origin {
            scheme,
            host: format!("{dot}{}", authority.host()),
            port,
        })
    }

    fn matches(&self, origin: &ParsedOrigin) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Origin { scheme, host, port } => {
                scheme.as_ref().is_none_or(|s| *s == origin.scheme)
                    && port.is_none_or(|p| Some(p) == origin.port)
                    && is_same_domain(&origin.host, host)
            }
        }
    }
}

impl AllowedOrigins {
    /// The origins matching any of `patterns` (see the table above). Fails on a pattern that
    /// is not a host with an optional scheme and port.
    pub fn new<S: AsRef<str>>(patterns: impl IntoIterator<Item = S>) -> Result<AllowedOrigins> {
        let patterns = patterns
            .into_iter()
            .map(|p| Pattern::parse(p.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        let allow_missing = patterns.contains(&Pattern::Any);
        Ok(AllowedOrigins {
            rule: Rule::Patterns(patterns),
            allow_missing,
        })
    }

    /// Origins on the host the request was sent to: the origin's host and port are those of the
    /// `Host` header (the scheme is not compared, so it works behind a TLS-terminating proxy
    /// that keeps the `Host` header). What [`AllowedHostsOriginValidator`] checks.
    pub fn same_host() -> AllowedOrigins {
        AllowedOrigins {
            rule: Rule::SameHost,
            allow_missing: false,
        }
    }

    /// Whether a request without an `Origin` header (a non-browser client) is allowed.
    pub fn allow_missing(mut self, allow: bool) -> AllowedOrigins {
        self.allow_missing = allow;
        self
    }

    /// Whether a request with these headers may connect.
    pub fn allows(&self, headers: &Headers) -> bool {
        let mut origins = headers.get_all(ORIGIN);
        let origin = match (origins.next(), origins.next()) {
            (None, _) => None,
            (Some(value), None) => Some(value.to_str().unwrap_or("")),
            // Several Origin headers: no browser sends that.
            (Some(_), Some(_)) => Some(""),
        };
        let host = headers.get(HOST).and_then(|v| v.to_str().ok());
        self.allows_origin(origin, host)
    }

    /// Whether a request with this `Origin` (`None`: no header) and this `Host` may connect.
    pub fn allows_origin(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        let Some(origin) = origin else {
            return self.allow_missing;
        };
        let parsed = ParsedOrigin::parse(origin);
        match &self.rule {
            Rule::Patterns(patterns) => match parsed {
                Some(parsed) => patterns.iter().any(|p| p.matches(&parsed)),
                None => patterns.contains(&Pattern::Any),
            },
            Rule::SameHost => {
                let (Some(origin), Some(host)) = (parsed, host) else {
                    return false;
                };
                let Ok(host) = host.trim().parse::<Authority>() else {
                    return false;
                };
                host.host().eq_ignore_ascii_case(&origin.host)
                    && host.port_u16().or_else(|| default_port(&origin.scheme)) == origin.port
            }
        }
    }
}

/// Refuses WebSocket handshakes from origins not allowed, with HTTP 403 before any consumer
/// code runs (Channels' `OriginValidator`). Plain HTTP requests pass through unchecked.
///
/// ```
/// use switchboard::middleware::{AllowedOrigins, OriginValidator};
/// use switchboard::prelude::*;
///
/// # fn routes() -> URLRouter { URLRouter::new() }
/// let allowed = AllowedOrigins::new(["https://example.com", ".example.org"]).unwrap();
/// let app = ProtocolTypeRouter::new().websocket(OriginValidator::new(allowed, routes()));
/// ```
#[derive(Debug, Clone)]
pub struct OriginValidator<A> {
    allowed: AllowedOrigins,
    inner: A,
}

impl<A> OriginValidator<A> {
    /// Wraps `inner`, letting in WebSockets from `allowed` origins only.
    pub fn new(allowed: AllowedOrigins, inner: A) -> OriginValidator<A> {
        OriginValidator { allowed, inner }
    }

    /// Whether a WebSocket without an `Origin` header (a non-browser client) is let in.
    pub fn allow_missing_origin(mut self, allow: bool) -> OriginValidator<A> {
        self.allowed = self.allowed.allow_missing(allow);
        self
    }
}

impl<A: Application> Application for OriginValidator<A> {
    async fn call(&self, scope: Scope, conn: Connection) {
        if scope.protocol == Protocol::Websocket && !self.allowed.allows(&scope.headers) {
            tracing::info!(
                origin = ?scope.header("origin"),
                host = ?scope.header("host"),
                path = %scope.path,
                "WebSocket refused: origin not allowed"
            );
            return conn.refuse(StatusCode::FORBIDDEN);
        }
        self.inner.call(scope, conn).await
    }
}

/// Lets in WebSockets only from pages of the host they were sent to (Channels'
/// `AllowedHostsOriginValidator`, with the request's `Host` standing for `ALLOWED_HOSTS`);
/// see [`AllowedOrigins::same_host`]. Others get HTTP 403 before any consumer code runs.
///
/// Without an `Origin` header the handshake is refused, as in Channels, unless
/// [`allow_missing_origin`](Self::allow_missing_origin) is set.
///
/// ```
/// use switchboard::middleware::AllowedHostsOriginValidator;
/// use switchboard::prelude::*;
///
/// # fn routes() -> URLRouter { URLRouter::new() }
/// let app = ProtocolTypeRouter::new()
///     .websocket(AllowedHostsOriginValidator::new(routes()).allow_missing_origin(true));
/// ```
#[derive(Debug, Clone)]
pub struct AllowedHostsOriginValidator<A>(OriginValidator<A>);

impl<A> AllowedHostsOriginValidator<A> {
    /// Wraps `inner`.
    pub fn new(inner: A) -> AllowedHostsOriginValidator<A> {
        AllowedHostsOriginValidator(OriginValidator::new(AllowedOrigins::same_host(), inner))
    }

    /// Whether a WebSocket without an `Origin` header (a non-browser client) is let in.
    pub fn allow_missing_origin(self, allow: bool) -> AllowedHostsOriginValidator<A> {
        AllowedHostsOriginValidator(self.0.allow_missing_origin(allow))
    }
}

impl<A: Application> Application for AllowedHostsOriginValidator<A> {
    async fn call(&self, scope: Scope, conn: Connection) {
        self.0.call(scope, conn).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::application::{HandshakeAnswer, WebsocketConnection};
    use crate::layer::InMemoryChannelLayer;
    use futures::FutureExt;
    use http::HeaderValue;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::sync::oneshot;
    use tokio_util::sync::CancellationToken;

    fn allowed(patterns: &[&str]) -> AllowedOrigins {
        AllowedOrigins::new(patterns).unwrap()
    }

    #[test]
    fn channels_patterns() {
        let cases: &[(&str, &str, bool)] = &[
            ("example.com", "http://example.com", true),
            ("example.com", "https://EXAMPLE.com:8443", true),
            ("example.com", "https://www.example.com", false),
            (".example.com", "https://www.example.com", true),
            (".example.com", "http://example.com", true),
            (".example.com", "http://badexample.com", false),
            (".example.com", "http://example.com.evil.net", false),
            ("example.com:8000", "http://example.com:8000", true),
            ("example.com:8000", "http://example.com", false),
            ("https://example.com", "https://example.com", true),
            ("https://example.com", "https://example.com:443", true),
            ("https://example.com", "http://example.com", false),
            ("https://example.com", "https://example.com:8443", false),
            ("http://example.com:8000", "http://example.com:8000", true),
            ("http://example.com:8000", "http://example.com:8001", false),
            (
                "http://.example.com:8000",
                "http://a.b.example.com:8000",
                true,
            ),
            ("HTTP://Example.COM", "http://example.com", true),
            ("[::1]:8000", "http://[::1]:8000", true),
            ("*", "http://anything.example", true),
            ("*", "null", true),
            ("example.com", "null", false),
            ("example.com", "example.com", false),
            ("example.com", "", false),
            ("example.com", "http://", false),
        ];
        for (pattern, origin, expected) in cases {
            assert_eq!(
                allowed(&[pattern]).allows_origin(Some(origin), None),
                *expected,
                "pattern {pattern:?}, origin {origin:?}"
            );
        }
    }

    #[test]
    fn missing_origins_follow_channels_unless_told() {
        assert!(!allowed(&["example.com"]).allows_origin(None, None));
        assert!(allowed(&["example.com", "*"]).allows_origin(None, None));
        assert!(
            allowed(&["example.com"])
                .allow_missing(true)
                .allows_origin(None, None)
        );
        assert!(!AllowedOrigins::same_host().allows_origin(None, Some("a:1")));
        assert!(allowed(&[]).allow_missing(true).allows_origin(None, None));
        assert!(!allowed(&[]).allows_origin(Some("http://a"), None));
    }

    #[test]
    fn bad_patterns_are_errors() {
        for bad in [
            "http://",
            "://x",
            "a b",
            "a.com:port",
            "a.com:",
            "user@host",
            "",
        ] {
            assert!(AllowedOrigins::new([bad]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn same_host_compares_host_and_port() {
        let same = AllowedOrigins::same_host();
        let cases: &[(&str, &str, bool)] = &[
            ("http://127.0.0.1:8000", "127.0.0.1:8000", true),
            ("https://chat.example", "chat.example", true),
            ("http://chat.example", "Chat.Example:80", true),
            ("https://chat.example", "chat.example:443", true),
            ("https://chat.example:8443", "chat.example", false),
            ("http://127.0.0.1:8000", "127.0.0.1:8001", false),
            ("http://evil.example:8000", "127.0.0.1:8000", false),
            ("http://[::1]:8000", "[::1]:8000", true),
            ("null", "127.0.0.1:8000", false),
            ("http://127.0.0.1:8000", "not a host", false),
        ];
        for (origin, host, expected) in cases {
            assert_eq!(
                same.allows_origin(Some(origin), Some(host)),
                *expected,
                "origin {origin:?}, host {host:?}"
            );
        }
        assert!(!same.allows_origin(Some("http://a:1"), None));
    }

    #[test]
    fn several_or_non_text_origin_headers_are_refused() {
        let mut headers = Headers::new();
        headers.append(ORIGIN, HeaderValue::from_static("http://a.com"));
        headers.append(ORIGIN, HeaderValue::from_static("http://a.com"));
        assert!(!allowed(&["a.com"]).allows(&headers));
        assert!(allowed(&["*"]).allows(&headers));
        let mut binary = Headers::new();
        binary.insert(
            ORIGIN,
            HeaderValue::from_bytes(b"http://\xffa.com").unwrap(),
        );
        assert!(!allowed(&["a.com"]).allow_missing(true).allows(&binary));
    }

    /// Counts the calls that got through.
    #[derive(Clone, Default)]
    struct Inner(Arc<AtomicUsize>);

    impl Application for Inner {
        async fn call(&self, _scope: Scope, conn: Connection) {
            self.0.fetch_add(1, Ordering::SeqCst);
            conn.refuse(StatusCode::IM_A_TEAPOT);
        }
    }

    async fn handshake(app: &impl Application, headers: &[(&'static str, &'static str)]) -> u16 {
        let mut scope = Scope::new(Protocol::Websocket, "/ws/");
        for (name, value) in headers {
            let name = http::HeaderName::from_static(name);
            scope.headers.append(name, HeaderValue::from_static(value));
        }
        let (tx, rx) = oneshot::channel();
        let conn = WebsocketConnection::new(
            Arc::new(InMemoryChannelLayer::new()),
            tx,
            async { None }.boxed(),
            CancellationToken::new(),
        );
        app.call(scope, Connection::Websocket(conn)).await;
        match rx.await.unwrap() {
            HandshakeAnswer::Deny { status } => status.as_u16(),
            HandshakeAnswer::Accept { .. } => 101,
        }
    }

    #[tokio::test]
    async fn foreign_origins_get_403_and_the_inner_app_never_runs() {
        let inner = Inner::default();
        let app = AllowedHostsOriginValidator::new(inner.clone());
        let foreign = [
            ("host", "127.0.0.1:8000"),
            ("origin", "http://evil.example"),
        ];
        assert_eq!(handshake(&app, &foreign).await, 403);
        assert_eq!(handshake(&app, &[("host", "127.0.0.1:8000")]).await, 403);
        assert_eq!(inner.0.load(Ordering::SeqCst), 0);

        let own = [
            ("host", "127.0.0.1:8000"),
            ("origin", "http://127.0.0.1:8000"),
        ];
        assert_eq!(handshake(&app, &own).await, 418);
        let lenient = AllowedHostsOriginValidator::new(inner.clone()).allow_missing_origin(true);
        assert_eq!(
            handshake(&lenient, &[("host", "127.0.0.1:8000")]).await,
            418
        );
        assert_eq!(handshake(&lenient, &foreign).await, 403);
        assert_eq!(inner.0.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn plain_http_passes_through() {
        let inner = Inner::default();
        let app = OriginValidator::new(allowed(&["example.com"]), inner.clone());
        let mut scope = Scope::new(Protocol::Http, "/");
        scope
            .headers
            .insert(ORIGIN, HeaderValue::from_static("http://evil.example"));
        let (tx, rx) = oneshot::channel();
        let conn = crate::application::HttpConnection::new(
            bytes::Bytes::new(),
            Arc::new(InMemoryChannelLayer::new()),
            tx,
        );
        app.call(scope, Connection::Http(conn)).await;
        assert_eq!(rx.await.unwrap().status(), StatusCode::IM_A_TEAPOT);
    }
}
