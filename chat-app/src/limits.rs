//! The server limits' flags: what one client may cost, and whom to believe about who it is.
//!
//! Every limit is on by default at a level no person in a browser meets; the flags move them.
//! What a client sees over each one is in `docs/security.md` and `../shared/chat-protocol.md`.

use std::time::Duration;

use clap::{Args, ValueEnum};
use switchboard::limits::{ClientLimits, Rate, RateLimit, SlowClientPolicy};
use switchboard::server::{ForwardedAllow, ServerConfig};

/// The limits' command-line flags.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Limits")]
pub struct LimitFlags {
    /// Reverse proxies whose Forwarded / X-Forwarded-For / X-Forwarded-Proto headers are
    /// believed: CIDRs or addresses, comma-separated, or `*` for any peer. Default: none, the
    /// client is the TCP peer.
    #[arg(long, env = "FORWARDED_ALLOW_IPS", value_name = "CIDR[,CIDR...]")]
    pub forwarded_allow_ips: Option<String>,

    /// Longest request line, in bytes; longer is answered 414.
    #[arg(long, default_value_t = 8 << 10, value_name = "BYTES")]
    pub max_request_line: usize,

    /// Largest header section, in bytes; larger is answered 431.
    #[arg(long, default_value_t = 16 << 10, value_name = "BYTES")]
    pub max_header_bytes: usize,

    /// Most headers in a request; more is answered 431.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub max_headers: usize,

    /// Seconds a client has to send its request head before the connection is closed.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..), value_name = "SECS")]
    pub header_timeout_secs: u64,

    /// Connections served at once; more are answered 503 with Retry-After. Default: the
    /// open-file limit less a reserve.
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,

    /// Open connections per client address; more are answered 429. Off by default: behind a
    /// proxy not in --forwarded-allow-ips every client has the proxy's address.
    #[arg(long, value_name = "N")]
    pub max_connections_per_client: Option<usize>,

    /// WebSocket handshakes per second per client address, in bursts of twice as many; more
    /// are answered 429. Off by default, for the same reason.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub handshakes_per_client: Option<u32>,

    /// Messages per second one WebSocket may send, sustained; more get
    /// {"type": "error", "error": "rate limited"}. 0: no limit.
    #[arg(long, default_value_t = 200, value_name = "N")]
    pub message_rate: u32,

    /// Messages one WebSocket may send at once after a quiet spell.
    #[arg(long, default_value_t = 500, value_name = "N")]
    pub message_burst: u32,

    /// Bytes per second one WebSocket may send, sustained. 0: no limit.
    #[arg(long, default_value_t = 1 << 20, value_name = "BYTES")]
    pub byte_rate: u32,

    /// Bytes one WebSocket may send at once after a quiet spell.
    #[arg(long, default_value_t = 4 << 20, value_name = "BYTES")]
    pub byte_burst: u32,

    /// Messages over the rate a WebSocket may send within 5 s; one more closes it with 1008.
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub rate_violations: u32,

    /// What happens to a member that does not read what the room sends it: `disconnect`
    /// (closed with 1013) or `drop` (it misses messages and stays).
    #[arg(long, value_enum, default_value_t = SlowClients::Disconnect)]
    pub slow_clients: SlowClients,

    /// Seconds a member's queue may keep overflowing before it is closed with 1013.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..), value_name = "SECS")]
    pub slow_client_timeout_secs: u64,

    /// Messages a member may miss in all before it is closed with 1013. Default: no count.
    #[arg(long, value_name = "N")]
    pub slow_client_max_dropped: Option<u64>,
}

/// `--slow-clients`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SlowClients {
    /// Close it with 1013 (Try Again Later); the page reconnects and shows the history.
    Disconnect,
    /// Drop what does not fit its queue and keep it.
    Drop,
}

impl LimitFlags {
    /// The server configuration these flags describe; fails on a proxy list that does not
    /// parse.
    pub fn server_config(&self) -> Result<ServerConfig, String> {
        let forwarded_allow = match &self.forwarded_allow_ips {
            Some(list) => list
                .parse::<ForwardedAllow>()
                .map_err(|err| format!("--forwarded-allow-ips: {err}"))?,
            None => ForwardedAllow::none(),
        };
        let mut clients = ClientLimits::default();
        if let Some(max) = self.max_connections_per_client {
            clients = clients.max_connections(max);
        }
        if let Some(rate) = self.handshakes_per_client {
            clients = clients.handshakes(Rate::new(rate, rate.saturating_mul(2)));
        }
        let mut config = ServerConfig::default()
            .request_head(
                self.max_request_line,
                self.max_header_bytes,
                self.max_headers,
            )
            .header_read_timeout(Duration::from_secs(self.header_timeout_secs))
            .client_limits(clients)
            .forwarded_allow(forwarded_allow)
            .rate_limit(self.rate_limit())
            .slow_client(self.slow_client_policy());
        if let Some(max) = self.max_connections {
            config = config.max_connections(max);
        }
        Ok(config)
    }

    fn rate_limit(&self) -> RateLimit {
        let mut limit =
            RateLimit::unlimited().close_after(self.rate_violations, Duration::from_secs(5));
        if self.message_rate > 0 {
            limit = limit.messages(Rate::new(self.message_rate, self.message_burst));
        }
        if self.byte_rate > 0 {
            limit = limit.bytes(Rate::new(self.byte_rate, self.byte_burst));
        }
        limit
    }

    fn slow_client_policy(&self) -> SlowClientPolicy {
        match self.slow_clients {
            SlowClients::Disconnect => SlowClientPolicy::Disconnect {
                after: Duration::from_secs(self.slow_client_timeout_secs),
                max_dropped: self.slow_client_max_dropped,
            },
            SlowClients::Drop => SlowClientPolicy::DropNewest,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::Cli;

    fn config(args: &[&str]) -> Result<switchboard::server::ServerConfig, String> {
        Cli::parse_from(std::iter::once("chat-app").chain(args.iter().copied()))
            .limits
            .server_config()
    }

    #[test]
    fn the_defaults_are_the_servers() {
        let config = config(&[]).unwrap();
        let defaults = switchboard::server::ServerConfig::default();
        assert_eq!(config, defaults);
    }

    #[test]
    fn flags_move_the_limits() {
        let config = config(&[
            "--forwarded-allow-ips",
            "10.0.0.0/8,::1",
            "--max-request-line",
            "1000",
            "--max-connections",
            "50",
            "--max-connections-per-client",
            "5",
            "--handshakes-per-client",
            "3",
            "--message-rate",
            "0",
            "--slow-clients",
            "drop",
        ])
        .unwrap();
        assert!(config.forwarded_allow.contains("10.1.1.1".parse().unwrap()));
        assert_eq!(config.max_request_line, 1000);
        assert_eq!(config.max_connections, 50);
        assert_eq!(config.client_limits.max_connections, Some(5));
        assert_eq!(
            config.client_limits.handshakes,
            Some(switchboard::limits::Rate::new(3, 6))
        );
        assert_eq!(config.rate_limit.messages, None);
        assert!(config.rate_limit.bytes.is_some());
        assert_eq!(
            config.slow_client,
            switchboard::limits::SlowClientPolicy::DropNewest
        );
        let err = self::config(&["--forwarded-allow-ips", "10.0.0.0/8,nope"]).unwrap_err();
        assert!(err.starts_with("--forwarded-allow-ips: "), "{err}");
    }
}
