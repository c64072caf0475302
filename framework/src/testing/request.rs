//! Filling a test request's scope, keeping derived fields in step with the headers as the
//! server does.

use cookie::Cookie;
use http::header::{COOKIE, SEC_WEBSOCKET_PROTOCOL};
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::scope::Scope;

/// Turns a header name or value given to a builder into its `http` type; a bad literal in a
/// test is a bug in the test, reported where it is written.
pub(super) fn convert<T, U>(value: U, what: &str) -> T
where
    T: TryFrom<U>,
    <T as TryFrom<U>>::Error: Into<http::Error>,
{
    T::try_from(value).unwrap_or_else(|err| panic!("invalid {what}: {}", err.into()))
}

/// Appends a header; a `Cookie` or `Sec-WebSocket-Protocol` header also fills
/// [`Scope::cookies`] or [`Scope::subprotocols`].
pub(super) fn append_header(scope: &mut Scope, name: HeaderName, value: HeaderValue) {
    if name == COOKIE || name == SEC_WEBSOCKET_PROTOCOL {
        let mut single = HeaderMap::new();
        single.insert(name.clone(), value.clone());
        let derived = Scope::new(scope.protocol, "/").with_headers(single);
        for cookie in derived.cookies.iter() {
            scope.cookies.add_original(cookie.clone());
        }
        scope.subprotocols.extend(derived.subprotocols);
    }
    scope.headers.append(name, value);
}

/// Adds a cookie to the request's one `Cookie` header, as a browser sends them.
pub(super) fn add_cookie(scope: &mut Scope, name: &str, value: &str) {
    let cookie = Cookie::new(name.to_owned(), value.to_owned());
    let pair = cookie.stripped().encoded().to_string();
    let header = match scope.headers.get(COOKIE).map(HeaderValue::to_str) {
        Some(Ok(existing)) => format!("{existing}; {pair}"),
        _ => pair,
    };
    let header: HeaderValue = convert(header, "cookie");
    scope.headers.insert(COOKIE, header);
    scope.cookies.add_original(cookie);
}

/// Adds offered subprotocols, in order of preference.
pub(super) fn add_subprotocols<S: Into<String>>(
    scope: &mut Scope,
    subprotocols: impl IntoIterator<Item = S>,
) {
    let offered: Vec<String> = subprotocols.into_iter().map(Into::into).collect();
    if offered.is_empty() {
        return;
    }
    let value: HeaderValue = convert(offered.join(", "), "subprotocol");
    append_header(scope, SEC_WEBSOCKET_PROTOCOL, value);
}
