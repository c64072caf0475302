//! Ways in for fuzzers: each target takes arbitrary bytes, as they could come off the network,
//! and runs one of the parsers that see them. Never a panic, whatever the bytes.
//!
//! The cargo-fuzz targets in `fuzz/` (libFuzzer, nightly) call these with feature `fuzzing`;
//! [`exercise`] runs them over the kept corpus and the crashers found so far
//! (`fuzz/corpus/<target>/`, `fuzz/regressions/<target>/`), and over a few thousand seeded
//! mutations of it, on every `cargo test` (the tests below, and the chat-app's own target's).
//! `docs/security.md` records how long each target has run without a finding.

use std::net::SocketAddr;
use std::path::PathBuf;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::routing::{Converter, URLRouter};
use crate::scope::{Headers, Protocol, QueryParams, Scope};
use crate::server::{ForwardedAllow, ServerConfig};

/// A request head as the server reads a connection's first bytes: the scan within the limits,
/// httparse, the checks of a WebSocket handshake, the forwarding headers (from a trusted
/// peer), and the scope made from it (cookies, subprotocols, the path, the query).
pub fn request_head(data: &[u8]) {
    let config = ServerConfig::default().request_head(2048, 4096, 32);
    let crate::server::FuzzHead::Complete(head) = crate::server::head_from_bytes(data, &config)
    else {
        return;
    };
    let Some(request) = crate::server::parse_head(&head) else {
        return;
    };
    let target = request.target(&head).to_owned();
    let _ = crate::server::answerable(&request, &target);
    let allow: ForwardedAllow = "127.0.0.0/8, 10.0.0.0/8, ::1".parse().unwrap_or_default();
    let peer = SocketAddr::from(([127, 0, 0, 1], 5000));
    let _ = crate::server::resolve_origin(&allow, peer, &request.headers);
    let scope = Scope::new(Protocol::Websocket, &target).with_headers(request.headers);
    let _ = scope.query().iter().count();
}

/// `Forwarded`, `X-Forwarded-For` and `X-Forwarded-Proto` values: each line of `data` is one
/// header, its first byte choosing which.
pub fn forwarded(data: &[u8]) {
    let mut headers = Headers::new();
    for line in data.split(|&b| b == b'\n') {
        let Some((&which, value)) = line.split_first() else {
            continue;
        };
        let name = match which % 3 {
            0 => "forwarded",
            1 => "x-forwarded-for",
            _ => "x-forwarded-proto",
        };
        if let Ok(value) = http::HeaderValue::from_bytes(value) {
            headers.append(http::HeaderName::from_static(name), value);
        }
    }
    let peer = SocketAddr::from(([10, 0, 0, 3], 80));
    for allow in ["*", "10.0.0.0/8", "10.0.0.3, 203.0.113.0/24, 2001:db8::/32"] {
        let allow: ForwardedAllow = allow.parse().unwrap_or_default();
        let _ = crate::server::resolve_origin(&allow, peer, &headers);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = text.parse::<ForwardedAllow>();
    }
}

/// The `Cookie` header, the query string and the percent-encoded path, as a scope reads them.
pub fn cookies_and_query(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut headers = Headers::new();
    if let Ok(value) = http::HeaderValue::from_bytes(data) {
        headers.append(http::header::COOKIE, value.clone());
        headers.append(http::header::SEC_WEBSOCKET_PROTOCOL, value);
    }
    let scope = Scope::new(Protocol::Http, &format!("/{text}")).with_headers(headers);
    let _ = scope.cookies.iter().count();
    let query = QueryParams::parse(&text);
    let _ = query.iter().count();
    let _ = query.get("since");
}

/// A session cookie's value, verified against a fixed key (a forged or garbled cookie must be
/// anonymous, never an error).
pub fn session_cookie(data: &[u8]) {
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    let key = crate::middleware::SessionKey::from_secret("fuzzing-secret-fuzzing-secret-fuzz")
        .expect("a long enough secret");
    let config = crate::middleware::SessionConfig::new(key);
    let mut headers = Headers::new();
    if let Ok(cookie) = http::HeaderValue::from_str(&format!("sessionid={value}")) {
        headers.append(http::header::COOKIE, cookie);
    }
    let scope = Scope::new(Protocol::Http, "/").with_headers(headers);
    let _ = config.verified_id(&scope);
}

/// A path through a router with every kind of parameter, a custom converter and a nested
/// router.
pub fn url_route(data: &[u8]) {
    use std::sync::OnceLock;
    static ROUTER: OnceLock<URLRouter> = OnceLock::new();
    let router = ROUTER.get_or_init(|| {
        let nothing =
            crate::application::BoxApplication::new(crate::consumer::handler(|_req| async {
                crate::response::text("")
            }));
        URLRouter::new()
            .converter("room", |s| {
                (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric())
            })
            .route("/ws/chat/{room_name:room}/", nothing.clone())
            .route("/ws/user/{id:int}/", nothing.clone())
            .route("/ws/doc/{id:uuid}/{slug:slug}/", nothing.clone())
            .route("/files/{rest:path}", nothing.clone())
            .nest(
                "/api/{version:int}",
                URLRouter::new().route("/rooms/{room:slug}/", nothing),
            )
    });
    let path = crate::scope::decode_path(&String::from_utf8_lossy(data));
    let _ = router.resolve(&path);
    let _ = Converter::builtin("int").map(|c| c.accepts(&path));
}

/// A message as Redis delivers it to a process: the wire format around the events' JSON, and
/// each event read as a layer envelope.
#[cfg(feature = "redis")]
pub fn redis_wire(data: &[u8]) {
    let Ok(payload) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(parsed) = crate::layer::redis_wire_parse(payload) {
        for event in parsed {
            let envelope = crate::layer::Envelope::from_json(event.to_owned());
            let _ = envelope.decode::<serde_json::Value>();
        }
    }
}

/// Mutations [`exercise`] tries per target.
const MUTATIONS: usize = 3_000;

/// Bytes that mean something to these parsers, spliced in by the mutations.
const TOKENS: &[&[u8]] = &[
    b"\r\n",
    b"\r\n\r\n",
    b": ",
    b";",
    b",",
    b"=",
    b"\"",
    b"%",
    b"%FF",
    b"[",
    b"]",
    b"{",
    b"}",
    b"/",
    b"?",
    b"&",
    b"\0",
    b"\xff",
    b"for=",
    b"proto=https",
    b"Upgrade: websocket",
    b"Cookie: ",
    b"sessionid=",
    b"\"v\":3",
    b"\"messages\":[",
    b"\"message\":",
    b"::ffff:",
    b"127.0.0.1",
];

/// The stable half of the fuzzing: runs `parse` over every kept input of `target` (its corpus
/// and its crashers in `fuzz/`), then over [`MUTATIONS`] seeded mutations of them — byte flips,
/// insertions, deletions, repeats, splices of the parsers' own tokens and of other inputs.
/// Quick enough for every `cargo test`; the long runs are cargo-fuzz's. Panics (the test
/// fails) when `target` has no corpus, and of course when `parse` does.
pub fn exercise(target: &str, parse: fn(&[u8])) {
    for input in inputs(target, MUTATIONS, 0x005b_0a2d) {
        parse(&input);
    }
}

/// Every kept input of `target`, then `mutations` mutations of them drawn from `seed`: what
/// [`exercise`] feeds a parser, for tests that send it over a socket instead. Panics when
/// `target` has no corpus.
pub fn inputs(target: &str, mutations: usize, seed: u64) -> Vec<Vec<u8>> {
    let seeds = seeds(target);
    assert!(
        seeds.len() > 1,
        "no corpus for {target} in {:?}",
        fuzz_dir()
    );
    let mut rng = StdRng::seed_from_u64(seed);
    let mutated: Vec<Vec<u8>> = (0..mutations).map(|_| mutate(&mut rng, &seeds)).collect();
    seeds.into_iter().chain(mutated).collect()
}

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The kept inputs of `target`, and the empty input.
fn seeds(target: &str) -> Vec<Vec<u8>> {
    let mut seeds = vec![Vec::new()];
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz_dir().join(dir).join(target)) else {
            continue;
        };
        for entry in entries.flatten() {
            if let Ok(bytes) = std::fs::read(entry.path()) {
                seeds.push(bytes);
            }
        }
    }
    seeds
}

fn mutate(rng: &mut StdRng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut data = seeds[rng.random_range(0..seeds.len())].clone();
    for _ in 0..rng.random_range(1..8) {
        let at = rng.random_range(0..=data.len());
        match rng.random_range(0..6) {
            0 if !data.is_empty() => {
                let i = rng.random_range(0..data.len());
                data[i] ^= 1 << rng.random_range(0..8);
            }
            1 => data.insert(at, rng.random()),
            2 if at < data.len() => {
                let end = rng.random_range(at..=data.len());
                data.drain(at..end);
            }
            3 => {
                let token = TOKENS[rng.random_range(0..TOKENS.len())];
                data.splice(at..at, token.iter().copied());
            }
            4 if at < data.len() => {
                let end = rng.random_range(at..=data.len().min(at + 64));
                let copy = data[at..end].to_vec();
                data.splice(at..at, copy);
            }
            _ => {
                let other = &seeds[rng.random_range(0..seeds.len())];
                let from = rng.random_range(0..=other.len());
                data.splice(at.., other[from..].iter().copied());
            }
        }
    }
    data
}

#[cfg(test)]
mod tests {
    use super::exercise;

    #[test]
    fn request_head() {
        exercise("request_head", super::request_head);
    }

    #[test]
    fn forwarded() {
        exercise("forwarded", super::forwarded);
    }

    #[test]
    fn cookies_and_query() {
        exercise("cookies_and_query", super::cookies_and_query);
    }

    #[test]
    fn session_cookie() {
        exercise("session_cookie", super::session_cookie);
    }

    #[test]
    fn url_route() {
        exercise("url_route", super::url_route);
    }

    #[cfg(feature = "redis")]
    #[test]
    fn redis_wire() {
        exercise("redis_wire", super::redis_wire);
    }
}
