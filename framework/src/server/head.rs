//! Reading a connection's first request head within the server's limits, before anything else
//! sees it.
//!
//! The limits are enforced while the bytes arrive: a request line longer than
//! [`ServerConfig::max_request_line`] is answered 414 as soon as that many bytes came without
//! its end, a header section over [`ServerConfig::max_header_bytes`] or with more than
//! [`ServerConfig::max_headers`] lines 431, and a head not complete within
//! [`ServerConfig::header_read_timeout`] is closed. So a connection never holds more than the
//! limits (the read buffer grows from 4 KiB only as far as they allow), and neither does the
//! scope made from it. Requests after the first on a kept-alive connection are read by hyper,
//! which is given the same limits (see `http1.rs`).

use std::ops::Range;
use std::time::Duration;

use http::{Method, StatusCode};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::ServerConfig;
use crate::scope::Headers;

/// The read buffer's first size: most request heads fit (a browser's handshake with its cookies
/// is 0.5–2 KiB).
const FIRST_READ: usize = 4096;

/// How the first request head of a connection arrived.
#[derive(Debug)]
pub(crate) enum Head {
    /// A whole head, and whatever followed it in the same reads.
    Complete(RawHead),
    /// Over a limit: answer this status and close.
    TooLarge(StatusCode),
    /// Closed, failed, too slow, or the server is shutting down: close without an answer.
    Gone,
}

/// The bytes of a complete head: `bytes[..len]` is the head, the rest came behind it.
#[derive(Debug)]
pub(crate) struct RawHead {
    pub bytes: Vec<u8>,
    pub len: usize,
    /// Header lines counted while reading.
    headers: usize,
}

/// Reads the first request head, at most `timeout` long (the server's header timeout, or a
/// shorter one for a connection about to be refused).
pub(crate) async fn read(
    stream: &mut TcpStream,
    config: &ServerConfig,
    timeout: Duration,
    shutdown: &CancellationToken,
) -> Head {
    let reading = read_within_limits(stream, config);
    tokio::select! {
        head = reading => head,
        _ = tokio::time::sleep(timeout) => Head::Gone,
        _ = shutdown.cancelled() => Head::Gone,
    }
}

async fn read_within_limits(stream: &mut TcpStream, config: &ServerConfig) -> Head {
    let most = config
        .max_request_line
        .saturating_add(config.max_header_bytes)
        .saturating_add(4);
    let mut bytes = Vec::with_capacity(FIRST_READ.min(most));
    let mut scan = Scan::default();
    loop {
        if bytes.len() == bytes.capacity() {
            let grown = (bytes.capacity() * 2).min(most);
            if grown <= bytes.len() {
                // Only reachable with limits that add up to less than a request line.
                return Head::TooLarge(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
            }
            bytes.reserve_exact(grown - bytes.len());
        }
        match stream.read_buf(&mut bytes).await {
            Ok(0) | Err(_) => return Head::Gone,
            Ok(_) => {}
        }
        match scan.advance(&bytes, config) {
            Scanned::More => {}
            Scanned::Complete(len) => {
                return Head::Complete(RawHead {
                    bytes,
                    len,
                    headers: scan.headers,
                });
            }
            Scanned::TooLarge(status) => return Head::TooLarge(status),
        }
    }
}

/// The head at the start of `bytes`, as [`read`] would take it if they arrived at once (the
/// fuzz targets' way in).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn from_bytes(bytes: &[u8], config: &ServerConfig) -> Head {
    let mut scan = Scan::default();
    match scan.advance(bytes, config) {
        Scanned::Complete(len) => Head::Complete(RawHead {
            bytes: bytes.to_vec(),
            len,
            headers: scan.headers,
        }),
        Scanned::TooLarge(status) => Head::TooLarge(status),
        Scanned::More => Head::Gone,
    }
}

/// Where the scan of the bytes read so far stands.
#[derive(Debug, Default)]
struct Scan {
    /// Bytes already looked at.
    seen: usize,
    /// Where the current line starts.
    line: usize,
    /// Where the header section starts, once the request line is over.
    headers_start: Option<usize>,
    headers: usize,
}

enum Scanned {
    More,
    Complete(usize),
    TooLarge(StatusCode),
}

impl Scan {
    /// Looks at the bytes that arrived since the last call.
    fn advance(&mut self, bytes: &[u8], config: &ServerConfig) -> Scanned {
        while let Some(at) = bytes[self.seen..].iter().position(|&b| b == b'\n') {
            let end = self.seen + at;
            let line = &bytes[self.line..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            self.seen = end + 1;
            match self.headers_start {
                // Empty lines before the request line are allowed (RFC 9112 §2.2).
                None if line.is_empty() => {}
                None => {
                    if line.len() > config.max_request_line {
                        return Scanned::TooLarge(StatusCode::URI_TOO_LONG);
                    }
                    self.headers_start = Some(self.seen);
                }
                Some(_) if line.is_empty() => return Scanned::Complete(self.seen),
                Some(start) => {
                    self.headers += 1;
                    if self.headers > config.max_headers {
                        return Scanned::TooLarge(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
                    }
                    if self.seen - start > config.max_header_bytes {
                        return Scanned::TooLarge(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
                    }
                }
            }
            self.line = self.seen;
        }
        self.seen = bytes.len();
        // The line still arriving is already too long.
        let pending = bytes.len() - self.line;
        match self.headers_start {
            None if pending > config.max_request_line + 1 => {
                Scanned::TooLarge(StatusCode::URI_TOO_LONG)
            }
            Some(start) if bytes.len() - start > config.max_header_bytes + 1 => {
                Scanned::TooLarge(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
            }
            _ => Scanned::More,
        }
    }
}

/// A request head, parsed.
#[derive(Debug)]
pub(crate) struct Request {
    pub method: Method,
    /// HTTP/1.1 (rather than 1.0).
    pub http11: bool,
    /// The request target as sent, in `RawHead::bytes`.
    target: Range<usize>,
    /// Every header, copied out of the read buffer (a scope keeps them).
    pub headers: Headers,
}

impl Request {
    /// The request target, e.g. `/ws/chat/lobby/?x=1`.
    pub(crate) fn target<'a>(&self, head: &'a RawHead) -> &'a str {
        // Checked to be UTF-8 (httparse allows only visible ASCII and obs-text; the target was
        // parsed from a &str) when the head was parsed.
        std::str::from_utf8(&head.bytes[self.target.clone()]).unwrap_or("/")
    }
}

/// Parses a complete head; `None` when it is malformed, for hyper to answer (400).
pub(crate) fn parse(head: &RawHead) -> Option<Request> {
    let mut raw = vec![httparse::EMPTY_HEADER; head.headers];
    let mut request = httparse::Request::new(&mut raw);
    match request.parse(&head.bytes[..head.len]) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return None,
    }
    let method = Method::from_bytes(request.method?.as_bytes()).ok()?;
    let path = request.path?;
    let offset = path.as_ptr() as usize - head.bytes.as_ptr() as usize;
    Some(Request {
        method,
        http11: request.version == Some(1),
        target: offset..offset + path.len(),
        headers: Headers::from_raw(request.headers)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ServerConfig {
        ServerConfig::default().request_head(64, 128, 4)
    }

    /// Scans `bytes` fed in pieces of `step`.
    fn scan(bytes: &[u8], step: usize) -> Result<usize, StatusCode> {
        let config = config();
        let mut scan = Scan::default();
        let mut end = 0;
        while end < bytes.len() {
            end = (end + step).min(bytes.len());
            match scan.advance(&bytes[..end], &config) {
                Scanned::More => {}
                Scanned::Complete(len) => return Ok(len),
                Scanned::TooLarge(status) => return Err(status),
            }
        }
        Err(StatusCode::CONTINUE)
    }

    #[test]
    fn finds_the_end_of_a_head_however_it_arrives() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n\r\nframes";
        for step in [1, 2, 7, head.len()] {
            assert_eq!(scan(head, step), Ok(head.len() - 6), "step {step}");
        }
        assert_eq!(scan(b"\r\n\r\nGET / HTTP/1.1\nHost: a\n\n", 3), Ok(28));
        assert_eq!(
            scan(b"GET / HTTP/1.1\r\nHost: a\r\n", 5),
            Err(StatusCode::CONTINUE)
        );
    }

    #[test]
    fn refuses_as_soon_as_a_limit_is_passed() {
        let long_line = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(64));
        assert_eq!(scan(long_line.as_bytes(), 1), Err(StatusCode::URI_TOO_LONG));
        // Without its end in sight, a line is refused once it passes the limit.
        let endless = format!("GET /{}", "a".repeat(100));
        assert_eq!(scan(endless.as_bytes(), 1), Err(StatusCode::URI_TOO_LONG));

        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "b".repeat(130));
        let endless = format!("GET / HTTP/1.1\r\nX: {}", "b".repeat(200));
        let many = "GET / HTTP/1.1\r\nA: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\nE: 1\r\n\r\n";
        for head in [big.as_str(), endless.as_str(), many] {
            assert_eq!(
                scan(head.as_bytes(), 3),
                Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
                "{head:?}"
            );
        }
        // At the limits exactly: fine.
        let fits = format!("GET /{} HTTP/1.1\r\nA: 1\r\n\r\n", "a".repeat(50));
        assert_eq!(fits.lines().next().unwrap().len(), 64);
        assert!(scan(fits.as_bytes(), 1).is_ok());
    }

    #[test]
    fn parses_what_it_scanned() {
        let bytes = b"GET /ws/?a=1 HTTP/1.1\r\nHost: h\r\nCookie: c=1\r\n\r\nrest".to_vec();
        let len = scan(&bytes, 4).unwrap();
        let head = RawHead {
            bytes,
            len,
            headers: 2,
        };
        let request = parse(&head).unwrap();
        assert_eq!(request.method, Method::GET);
        assert!(request.http11);
        assert_eq!(request.target(&head), "/ws/?a=1");
        assert_eq!(request.headers.get("cookie").unwrap(), "c=1");

        let garbage = RawHead {
            bytes: b"GET / HTTP/9\r\n\r\n".to_vec(),
            len: 16,
            headers: 0,
        };
        assert!(parse(&garbage).is_none());
    }
}
