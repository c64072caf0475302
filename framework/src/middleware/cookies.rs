//! Cookies: Channels' `CookieMiddleware`, and setting or deleting cookies on responses.

use cookie::Cookie;
use http::HeaderValue;
use http::header::SET_COOKIE;

use crate::application::{Application, Connection, HttpResponse};
use crate::error::{Error, Result};
use crate::scope::Scope;

/// Fills [`Scope::cookies`] from the `Cookie` headers (Channels' `CookieMiddleware`).
///
/// The server already parses cookies when it builds a scope, so in a server this only keeps a
/// Channels stack reading the same; it does the parsing for scopes built without
/// [`Scope::with_headers`] (hand-made scopes in tests). Malformed pairs are skipped, never an
/// error. [`AuthMiddlewareStack`](super::AuthMiddlewareStack) includes it.
///
/// ```
/// use switchboard::middleware::CookieMiddleware;
/// use switchboard::prelude::*;
///
/// let app = CookieMiddleware::new(handler(|req: HttpRequest| async move {
///     let theme = req.scope.cookie("theme").unwrap_or("light").to_owned();
///     response::text(theme)
/// }));
/// ```
#[derive(Debug, Clone)]
pub struct CookieMiddleware<A> {
    inner: A,
}

impl<A> CookieMiddleware<A> {
    /// Wraps `inner`.
    pub fn new(inner: A) -> CookieMiddleware<A> {
        CookieMiddleware { inner }
    }
}

impl<A: Application> Application for CookieMiddleware<A> {
    async fn call(&self, mut scope: Scope, conn: Connection) {
        if scope.cookies.iter().next().is_none() {
            scope.cookies = crate::scope::parse_cookies(&scope.headers);
        }
        self.inner.call(scope, conn).await
    }
}

/// Adds a `Set-Cookie` header for `cookie` to `response` (other cookies set before stay).
///
/// The name and value are percent-encoded. Fails only for a path or domain that cannot be
/// sent in a header (control characters), which is a bug in the caller.
///
/// ```
/// use switchboard::middleware::{Cookie, set_cookie};
/// use switchboard::prelude::*;
///
/// let mut response = response::text("ok");
/// set_cookie(&mut response, Cookie::build(("theme", "dark")).path("/").http_only(true)).unwrap();
/// assert_eq!(response.headers()["set-cookie"], "theme=dark; HttpOnly; Path=/");
/// ```
pub fn set_cookie<'c>(response: &mut HttpResponse, cookie: impl Into<Cookie<'c>>) -> Result<()> {
    let cookie = cookie.into();
    let value = HeaderValue::try_from(cookie.encoded().to_string()).map_err(|_| Error::Cookie {
        name: cookie.name().to_owned(),
    })?;
    response.headers_mut().append(SET_COOKIE, value);
    Ok(())
}

/// Tells the browser to forget a cookie: a `Set-Cookie` with an empty value, `Max-Age=0` and
/// an expiry in the past.
///
/// A browser only drops a cookie whose name, path and domain match, so give the path and domain
/// it was set with; without a path, `/` is used (a cookie set by a handler without a path lives
/// under that handler's path, which is rarely what anyone meant).
///
/// ```
/// use switchboard::middleware::{Cookie, delete_cookie};
/// use switchboard::prelude::*;
///
/// let mut response = response::text("bye");
/// delete_cookie(&mut response, Cookie::from("theme")).unwrap();
/// let header = response.headers()["set-cookie"].to_str().unwrap();
/// assert!(header.starts_with("theme=; Path=/; Max-Age=0; Expires="), "{header}");
/// ```
pub fn delete_cookie<'c>(response: &mut HttpResponse, cookie: impl Into<Cookie<'c>>) -> Result<()> {
    let mut cookie = cookie.into();
    if cookie.path().is_none() {
        cookie.set_path("/");
    }
    cookie.make_removal();
    set_cookie(response, cookie)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::application::{HttpConnection, plain_response};
    use crate::layer::InMemoryChannelLayer;
    use crate::scope::Protocol;
    use bytes::Bytes;
    use http::{HeaderMap, StatusCode, header::COOKIE};
    use std::sync::{Arc, Mutex};
    use tokio::sync::oneshot;

    /// Records the cookies the inner application saw.
    struct Seen(Arc<Mutex<Vec<(String, String)>>>);

    impl Application for Seen {
        async fn call(&self, scope: Scope, conn: Connection) {
            let pairs = scope
                .cookies
                .iter()
                .map(|c| (c.name().to_owned(), c.value().to_owned()))
                .collect();
            *self.0.lock().unwrap() = pairs;
            conn.refuse(StatusCode::OK);
        }
    }

    async fn run(app: &impl Application, scope: Scope) {
        let (tx, rx) = oneshot::channel();
        let conn = HttpConnection::new(Bytes::new(), Arc::new(InMemoryChannelLayer::new()), tx);
        app.call(scope, Connection::Http(conn)).await;
        rx.await.unwrap();
    }

    #[tokio::test]
    async fn parses_cookies_of_a_scope_built_without_headers_parsing() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let app = CookieMiddleware::new(Seen(seen.clone()));
        let mut scope = Scope::new(Protocol::Http, "/");
        scope
            .headers
            .insert(COOKIE, HeaderValue::from_static("a=1; broken; b=x%20y"));
        run(&app, scope).await;
        let mut pairs = seen.lock().unwrap().clone();
        pairs.sort();
        assert_eq!(
            pairs,
            [("a".into(), "1".into()), ("b".into(), "x y".into())]
        );
    }

    #[tokio::test]
    async fn keeps_cookies_already_parsed() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let app = CookieMiddleware::new(Seen(seen.clone()));
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_static("a=1"));
        let mut scope = Scope::new(Protocol::Http, "/").with_headers(headers);
        scope.cookies.add_original(Cookie::new("extra", "2"));
        run(&app, scope).await;
        assert_eq!(seen.lock().unwrap().len(), 2);
    }

    #[test]
    fn set_cookie_appends_and_encodes() {
        let mut response = plain_response(StatusCode::OK);
        set_cookie(&mut response, Cookie::new("a", "x y;z")).unwrap();
        set_cookie(&mut response, Cookie::new("b", "2")).unwrap();
        let values: Vec<_> = response.headers().get_all(SET_COOKIE).iter().collect();
        assert_eq!(values, ["a=x%20y%3Bz", "b=2"]);
    }

    #[test]
    fn set_cookie_refuses_what_a_header_cannot_carry() {
        let mut response = plain_response(StatusCode::OK);
        let bad = Cookie::build(("a", "1")).path("/\n");
        assert!(set_cookie(&mut response, bad).is_err());
        assert!(response.headers().get(SET_COOKIE).is_none());
    }

    #[test]
    fn delete_cookie_keeps_the_given_path_and_domain() {
        let mut response = plain_response(StatusCode::OK);
        let cookie = Cookie::build(("sid", "x"))
            .path("/app")
            .domain("example.com");
        delete_cookie(&mut response, cookie).unwrap();
        let header = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
        assert!(header.starts_with("sid=; "), "{header}");
        for part in ["Path=/app", "Domain=example.com", "Max-Age=0", "Expires="] {
            assert!(header.contains(part), "{part} missing: {header}");
        }
    }
}
