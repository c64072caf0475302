//! Checking a WebSocket handshake request (RFC 6455 §4.2.1) and building the 101 answer.

use http::header::{
    CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL,
    SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::scope::Headers;

/// Why a handshake request is refused, and with which status.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub status: StatusCode,
    pub reason: &'static str,
}

fn has_token<'a>(values: impl Iterator<Item = &'a HeaderValue>, token: &str) -> bool {
    values
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Whether the request asks for a WebSocket at all (`Upgrade: websocket`).
pub(crate) fn wants_websocket(headers: &HeaderMap) -> bool {
    has_token(headers.get_all(UPGRADE).iter(), "websocket")
}

/// [`wants_websocket`] for headers already copied for a scope.
pub(crate) fn wants_websocket_in(headers: &Headers) -> bool {
    has_token(headers.get_all(UPGRADE), "websocket")
}

/// Checks the rest of the handshake; on success returns the `Sec-WebSocket-Accept` value.
pub(crate) fn check(method: &Method, headers: &Headers) -> Result<HeaderValue, Refusal> {
    let refuse = |reason| Refusal {
        status: StatusCode::BAD_REQUEST,
        reason,
    };
    if method != Method::GET {
        return Err(refuse("a WebSocket handshake must be a GET"));
    }
    if !has_token(headers.get_all(CONNECTION), "upgrade") {
        return Err(refuse("missing 'Connection: Upgrade'"));
    }
    if headers
        .get(SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Err(Refusal {
            status: StatusCode::UPGRADE_REQUIRED,
            reason: "unsupported Sec-WebSocket-Version: only 13 is spoken",
        });
    }
    let key = headers
        .get(SEC_WEBSOCKET_KEY)
        .map(HeaderValue::as_bytes)
        .filter(|key| is_nonce(key))
        .ok_or(refuse("missing or malformed Sec-WebSocket-Key"))?;
    HeaderValue::from_str(&derive_accept_key(key))
        .map_err(|_| refuse("malformed Sec-WebSocket-Key"))
}

/// A base64-encoded 16-byte nonce: 22 base64 characters and `==`.
fn is_nonce(key: &[u8]) -> bool {
    key.len() == 24
        && key.ends_with(b"==")
        && key[..22]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
}

/// The headers of a 101 answer.
pub(crate) fn switching_headers(
    accept: HeaderValue,
    subprotocol: Option<&str>,
    extra: HeaderMap,
) -> HeaderMap {
    let mut headers = extra;
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
    if let Some(value) = subprotocol.and_then(|p| HeaderValue::from_str(p).ok()) {
        headers.insert(SEC_WEBSOCKET_PROTOCOL, value);
    }
    headers
}

/// The `Sec-WebSocket-Version` header a 426 answer must carry.
pub(crate) fn version_header() -> (http::HeaderName, HeaderValue) {
    (SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(pairs: &[(&'static str, &'static str)]) -> Headers {
        let mut headers = Headers::new();
        for (name, value) in pairs {
            headers.append(
                http::HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        headers
    }

    const GOOD: &[(&str, &str)] = &[
        ("upgrade", "websocket"),
        ("connection", "keep-alive, Upgrade"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    #[test]
    fn accepts_the_rfc_example() {
        let accept = check(&Method::GET, &request(GOOD)).unwrap();
        assert_eq!(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn refuses_what_is_malformed() {
        let mut bad_key = request(GOOD);
        bad_key.insert(SEC_WEBSOCKET_KEY, HeaderValue::from_static("short"));
        assert_eq!(
            check(&Method::GET, &bad_key).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );

        let mut old = request(GOOD);
        old.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("8"));
        assert_eq!(
            check(&Method::GET, &old).unwrap_err().status,
            StatusCode::UPGRADE_REQUIRED
        );

        let no_conn = request(&[GOOD[0], GOOD[2], GOOD[3]]);
        assert_eq!(
            check(&Method::GET, &no_conn).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );

        assert_eq!(
            check(&Method::POST, &request(GOOD)).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn detects_upgrade_requests_case_insensitively() {
        assert!(wants_websocket_in(&request(&[("upgrade", "WebSocket")])));
        assert!(!wants_websocket_in(&request(&[("upgrade", "h2c")])));
        let mut map = HeaderMap::new();
        map.insert(UPGRADE, HeaderValue::from_static("websocket, foo"));
        assert!(wants_websocket(&map));
    }
}
