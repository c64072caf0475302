//! Parsing of the request parts a scope derives its fields from.

use cookie::{Cookie, CookieJar};
use http::header::{COOKIE, SEC_WEBSOCKET_PROTOCOL};
use percent_encoding::percent_decode_str;

use super::Headers;

/// Percent-decodes a path; bytes that do not form UTF-8 become U+FFFD rather than an error,
/// so a hostile path can only fail to match a route, never fail the request.
pub(crate) fn decode_path(raw: &str) -> String {
    percent_decode_str(raw).decode_utf8_lossy().into_owned()
}

/// Every `Cookie` header's pairs, skipping the malformed ones.
pub(crate) fn parse_cookies(headers: &Headers) -> CookieJar {
    let mut jar = CookieJar::new();
    for value in headers.get_all(COOKIE) {
        let Ok(text) = value.to_str() else { continue };
        for cookie in Cookie::split_parse_encoded(text.to_owned()).flatten() {
            jar.add_original(cookie);
        }
    }
    jar
}

/// Subprotocols offered in every `Sec-WebSocket-Protocol` header, in order.
pub(crate) fn parse_subprotocols(headers: &Headers) -> Vec<String> {
    headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue};

    #[test]
    fn decodes_percent_escapes_and_survives_bad_utf8() {
        assert_eq!(decode_path("/a%20b/"), "/a b/");
        assert_eq!(decode_path("/%FF/"), "/\u{FFFD}/");
        assert_eq!(decode_path("/100%/"), "/100%/");
    }

    #[test]
    fn parses_cookies_from_several_headers_and_skips_garbage() {
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, HeaderValue::from_static("a=1; b=two%20words"));
        headers.append(COOKIE, HeaderValue::from_static("=novalue; c=3"));
        let jar = parse_cookies(&headers.into());
        assert_eq!(jar.get("a").map(|c| c.value()), Some("1"));
        assert_eq!(jar.get("b").map(|c| c.value()), Some("two words"));
        assert_eq!(jar.get("c").map(|c| c.value()), Some("3"));
    }

    #[test]
    fn splits_subprotocols_across_headers() {
        let mut headers = HeaderMap::new();
        headers.append(
            SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("chat, json"),
        );
        headers.append(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(" v2 "));
        assert_eq!(parse_subprotocols(&headers.into()), ["chat", "json", "v2"]);
    }
}
