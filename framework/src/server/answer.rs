//! Answers the server writes itself, without hyper: response heads, refusals, and the closing
//! of a connection after a refusal.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::application::{HttpResponse, plain_response};

/// How long a refused connection is read (and what it sends thrown away) after the answer.
const LINGER: Duration = Duration::from_secs(2);

/// Most bytes thrown away while lingering.
const LINGER_BYTES: usize = 1 << 20;

/// A response head: status line, headers, blank line.
pub(crate) fn response_head(status: StatusCode, headers: &HeaderMap) -> Vec<u8> {
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    head.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// A refusal as the bytes hyper would have sent for it, closing the connection.
pub(crate) fn refusal(response: HttpResponse) -> Vec<u8> {
    let (mut parts, body): (_, Bytes) = response.into_parts();
    let date = httpdate::fmt_http_date(SystemTime::now());
    if let Ok(date) = date.parse() {
        parts.headers.insert(http::header::DATE, date);
    }
    parts
        .headers
        .insert(http::header::CONTENT_LENGTH, body.len().into());
    parts
        .headers
        .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    let mut bytes = response_head(parts.status, &parts.headers);
    bytes.extend_from_slice(&body);
    bytes
}

/// A plain refusal with `status`, saying when to come back for a 503 or a 429.
pub(crate) fn limit_response(status: StatusCode, retry_after: Duration) -> HttpResponse {
    let mut response = plain_response(status);
    if matches!(
        status,
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
    ) {
        let seconds = retry_after.as_secs().max(1);
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// Sends a refusal and closes the connection.
///
/// The client may still be sending (the rest of a 100 KB header): closed with unread bytes, the
/// socket would be reset and the client might lose the answer. So after the answer the
/// connection is half-closed and read for a moment, what arrives thrown away (nginx's
/// lingering close), bounded in time and bytes.
pub(crate) async fn refuse(mut stream: TcpStream, response: HttpResponse) {
    if stream.write_all(&refusal(response)).await.is_err() {
        return;
    }
    if stream.shutdown().await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(LINGER, async {
        let mut sink = [0u8; 4096];
        let mut thrown = 0;
        while thrown < LINGER_BYTES {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => thrown += n,
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_heads_and_refusals_as_hyper_would() {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::UPGRADE, "websocket".parse().unwrap());
        let head = response_head(StatusCode::SWITCHING_PROTOCOLS, &headers);
        assert_eq!(
            head,
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n"
        );

        let refused = refusal(plain_response(StatusCode::FORBIDDEN));
        let text = String::from_utf8(refused).unwrap();
        assert!(text.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{text}");
        assert!(text.contains("\r\ncontent-length: 14\r\n"), "{text}");
        assert!(text.contains("\r\nconnection: close\r\n"), "{text}");
        assert!(text.contains("\r\ndate: "), "{text}");
        assert!(text.ends_with("\r\n\r\n403 Forbidden\n"), "{text}");
    }

    #[test]
    fn limit_answers_say_when_to_retry() {
        let busy = limit_response(StatusCode::SERVICE_UNAVAILABLE, Duration::from_millis(10));
        assert_eq!(busy.headers()[http::header::RETRY_AFTER], "1");
        let slow_down = limit_response(StatusCode::TOO_MANY_REQUESTS, Duration::from_secs(30));
        assert_eq!(slow_down.headers()[http::header::RETRY_AFTER], "30");
        let too_long = limit_response(StatusCode::URI_TOO_LONG, Duration::from_secs(30));
        assert!(!too_long.headers().contains_key(http::header::RETRY_AFTER));
    }
}
