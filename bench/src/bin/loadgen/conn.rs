//! Opening chat WebSockets from loopback source addresses.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::Target;

/// A client WebSocket.
pub type Ws = WebSocketStream<TcpStream>;

fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// Nanoseconds since the load generator's clock origin: the time base of every probe.
pub fn now_ns() -> u64 {
    origin().elapsed().as_nanos() as u64
}

/// The `Instant` of a probe time.
pub fn instant_of(ns: u64) -> tokio::time::Instant {
    tokio::time::Instant::from_std(origin() + Duration::from_nanos(ns))
}

/// A server address parsed from `ws://127.0.0.1:PORT` (or `127.0.0.1:PORT`); loopback only.
pub fn parse_server(url: &str) -> Result<SocketAddrV4, String> {
    let rest = url
        .strip_prefix("ws://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or(url);
    let host_port = rest.trim_end_matches('/');
    let addr: SocketAddrV4 = host_port
        .parse()
        .map_err(|_| format!("{url:?}: expected ws://127.x.y.z:PORT"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "{url:?}: the load generator only talks to 127.0.0.0/8"
        ));
    }
    Ok(addr)
}

/// Resolved targets: server addresses, source addresses and the client's limits.
pub struct Dialer {
    servers: Vec<SocketAddrV4>,
    sources: Vec<Ipv4Addr>,
    timeout: Duration,
    config: WebSocketConfig,
}

impl Dialer {
    /// Checks and resolves a [`Target`].
    pub fn new(target: &Target) -> Result<Dialer, String> {
        let servers = target
            .urls
            .iter()
            .map(|url| parse_server(url))
            .collect::<Result<Vec<_>, _>>()?;
        let sources = (0..target.sources.max(1))
            .map(|i| Ipv4Addr::new(127, 0, 0, 2 + i))
            .collect();
        Ok(Dialer {
            servers,
            sources,
            timeout: Duration::from_secs_f64(target.connect_timeout),
            // Chat frames are small: a small read buffer keeps thousands of clients cheap.
            config: WebSocketConfig::default()
                .read_buffer_size(8 << 10)
                .max_message_size(Some(1 << 20)),
        })
    }

    /// How many servers members are spread over.
    pub fn servers(&self) -> usize {
        self.servers.len()
    }

    /// Opens connection number `n` to `/ws/chat/{room}/` on server `server`, from a source
    /// address chosen by `n`.
    pub async fn open(&self, n: usize, server: usize, room: &str) -> Result<Ws, String> {
        let server = self.servers[server % self.servers.len()];
        let source = self.sources[n % self.sources.len()];
        let open = async {
            let socket = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
            socket
                .bind(SocketAddr::new(source.into(), 0))
                .map_err(|e| format!("bind {source}: {e}"))?;
            let stream = socket
                .connect(server.into())
                .await
                .map_err(|e| format!("connect {server}: {e}"))?;
            let _ = stream.set_nodelay(true);
            let url = format!("ws://{server}/ws/chat/{room}/");
            let (ws, _) =
                tokio_tungstenite::client_async_with_config(url, stream, Some(self.config))
                    .await
                    .map_err(|e| format!("handshake {server}: {e}"))?;
            Ok(ws)
        };
        tokio::time::timeout(self.timeout, open)
            .await
            .map_err(|_| format!("handshake with {server} timed out"))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_must_be_loopback() {
        assert_eq!(
            parse_server("ws://127.0.0.1:8000").unwrap(),
            "127.0.0.1:8000".parse().unwrap()
        );
        assert!(parse_server("127.0.0.9:1/").is_ok());
        assert!(parse_server("ws://10.0.0.1:8000").is_err());
        assert!(parse_server("ws://localhost:8000").is_err());
    }

    #[test]
    fn probe_clock_round_trips() {
        let now = now_ns();
        let later = instant_of(now + 1_000_000_000);
        let delta = later - tokio::time::Instant::now();
        assert!(delta > Duration::from_millis(900) && delta <= Duration::from_secs(1));
    }
}
