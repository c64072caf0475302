//! Command-line options (daphne's `-b`/`-p` included).

use std::collections::HashMap;

use std::time::Duration;

use clap::Parser;
use switchboard::layer::PresenceConfig;
use switchboard::middleware::AllowedOrigins;

use crate::limits::LimitFlags;
use crate::views::clean_username;

/// Run the switchboard group chat.
#[derive(Debug, Parser)]
#[command(name = "chat-app", version, about)]
pub struct Cli {
    /// Address to listen on, HOST:PORT.
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub bind: String,

    /// Host to listen on (daphne's -b); overrides the host of --bind.
    #[arg(short = 'b', long = "host")]
    pub host: Option<String>,

    /// Port to listen on (daphne's -p); overrides the port of --bind.
    #[arg(short = 'p', long)]
    pub port: Option<u16>,

    /// Channel layer: Redis URL(s) `redis://HOST:PORT[/DB]`, repeated or comma-separated (several
    /// servers shard rooms between them), `redis+cluster://HOST:PORT[,HOST:PORT...]` (a Redis
    /// Cluster), `nats://HOST:PORT` (no room history there), or
    /// `channels-redis://HOST:PORT[/DB]?flavour=core|pubsub&prefix=asgi` to share groups with
    /// Django Channels processes on channels_redis (no room history there). Without it, the
    /// in-memory layer serves one process.
    #[arg(long = "layer", env = "CHANNEL_LAYER_URL", value_delimiter = ',')]
    pub layers: Vec<String>,

    /// Prefix of every Redis key and channel (NATS subject), so several applications can share
    /// one Redis (NATS).
    #[arg(long, default_value = "switchboard")]
    pub layer_prefix: String,

    /// The channel layer group of a room: `{room}` stands for the room name. The default is
    /// the Channels tutorial's, so its consumer and the chat-app share rooms.
    #[arg(long, default_value = "chat_{room}")]
    pub group_format: String,

    /// channels_redis' `symmetric_encryption_keys` for the channels-redis layer, comma-separated,
    /// as in Django's settings (first encrypts, any decrypts). Prefer the environment variable.
    #[arg(
        long,
        env = "CHANNELS_REDIS_SYMMETRIC_ENCRYPTION_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub symmetric_encryption_keys: Vec<String>,

    /// Keep no room history: nothing is stored, messages carry no position, joiners get no
    /// `chat.history` and `?since=` recovers nothing, as in the Channels tutorial's chat.
    #[arg(long)]
    pub no_history: bool,

    /// Memory all rooms' history may use together in this process, in MiB: past it, the
    /// history of the rooms idle longest is forgotten first. (With Redis, the history lives in
    /// Redis, bounded per room.)
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    pub history_budget_mib: u64,

    /// A room without a message for this many seconds forgets its history (with Redis, the keys
    /// carry this TTL, renewed by every message).
    #[arg(long, default_value_t = 86_400, value_parser = clap::value_parser!(u64).range(1..))]
    pub history_ttl_secs: u64,

    /// Keep no presence: members are not tracked, and no `presence.state` or `presence.diff`
    /// is sent.
    #[arg(long)]
    pub no_presence: bool,

    /// How often, at most, a room's presence changes go out (to the other processes, and as
    /// one `presence.diff` to its members), in milliseconds.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub presence_interval_ms: u64,

    /// How often this process tells the others sharing its layer that it is alive, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub presence_heartbeat_secs: u64,

    /// A process not heard from for this many seconds is gone: its members leave every room's
    /// presence. Keep it above twice the heartbeat.
    #[arg(long, default_value_t = 25, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub presence_timeout_secs: u64,

    /// Log filter: error, warn, info, debug, trace, or a tracing directive list.
    /// RUST_LOG, when set, wins.
    #[arg(long, default_value = "info")]
    pub log_level: String,

    /// Sites whose pages may open WebSockets and post the login form, comma-separated: `*`,
    /// `example.com`, `.example.com` (with subdomains), `example.com:8000`,
    /// `https://example.com`. Default: pages of the host the request was sent to.
    #[arg(long, value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Refuse WebSockets and form posts without an Origin header. By default they are let in:
    /// non-browser clients (websocat, scripts) send none, and browsers always send one.
    #[arg(long)]
    pub require_origin: bool,

    /// Mark the session cookie Secure, so browsers send it over HTTPS only: use it whenever
    /// the site is served over HTTPS, directly or behind a proxy.
    #[arg(long)]
    pub secure_cookies: bool,

    /// API tokens for non-browser clients, USER:TOKEN (tokens of at least 16 characters),
    /// repeated or comma-separated. Prefer the environment variable: other users of the machine
    /// can read command lines.
    #[arg(
        long = "api-token",
        env = "CHAT_API_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub api_tokens: Vec<String>,

    /// Request, connection and rate limits, and trusted proxies.
    #[command(flatten)]
    pub limits: LimitFlags,
}

/// Shortest API token accepted, in characters.
pub const MIN_API_TOKEN_CHARS: usize = 16;

impl Cli {
    /// The address to bind, with `-b`/`-p` applied over `--bind`.
    pub fn address(&self) -> String {
        let (bind_host, bind_port) = match self.bind.rsplit_once(':') {
            Some((host, port)) => (host, port.to_owned()),
            None => (self.bind.as_str(), "8000".to_owned()),
        };
        let host = self.host.as_deref().unwrap_or(bind_host);
        let port = self.port.map_or(bind_port, |p| p.to_string());
        format!("{host}:{port}")
    }

    /// How long a room's history lives after its last message (`--history-ttl-secs`).
    pub fn history_ttl(&self) -> Duration {
        Duration::from_secs(self.history_ttl_secs)
    }

    /// How presence is kept (`--presence-*`).
    pub fn presence(&self) -> PresenceConfig {
        PresenceConfig::default()
            .interval(Duration::from_millis(self.presence_interval_ms))
            .heartbeat(Duration::from_secs(self.presence_heartbeat_secs))
            .timeout(Duration::from_secs(self.presence_timeout_secs))
    }

    /// Bytes all rooms' history may hold in this process (`--history-budget-mib`).
    pub fn history_budget(&self) -> usize {
        usize::try_from(self.history_budget_mib << 20).unwrap_or(usize::MAX)
    }

    /// Who may open WebSockets and post forms: `--allowed-origins` (default: the requested
    /// host), with or without an Origin header as `--require-origin` says.
    pub fn origins(&self) -> Result<AllowedOrigins, String> {
        let allowed = if self.allowed_origins.is_empty() {
            AllowedOrigins::same_host()
        } else {
            AllowedOrigins::new(&self.allowed_origins)
                .map_err(|err| format!("--allowed-origins: {err}"))?
        };
        Ok(allowed.allow_missing(!self.require_origin))
    }

    /// The `--api-token USER:TOKEN` pairs, as token → user name.
    pub fn api_tokens(&self) -> Result<HashMap<String, String>, String> {
        let mut tokens = HashMap::new();
        for entry in &self.api_tokens {
            // User names may hold ':', tokens may not: the last ':' separates them.
            let Some((user, token)) = entry.rsplit_once(':') else {
                return Err("--api-token: write USER:TOKEN".to_owned());
            };
            let user = clean_username(user)
                .map_err(|reason| format!("--api-token: invalid user name: {reason}"))?;
            if token.chars().count() < MIN_API_TOKEN_CHARS {
                return Err(format!(
                    "--api-token: the token for {user:?} is too short: use at least \
                     {MIN_API_TOKEN_CHARS} random characters (e.g. `openssl rand -hex 16`)"
                ));
            }
            if tokens.insert(token.to_owned(), user.to_owned()).is_some() {
                return Err(format!("--api-token: a token is given twice ({user:?})"));
            }
        }
        Ok(tokens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::parse_from(std::iter::once("chat-app").chain(args.iter().copied()))
    }

    #[test]
    fn bind_and_daphne_flags() {
        assert_eq!(parse(&[]).address(), "127.0.0.1:8000");
        assert_eq!(
            parse(&["--bind", "127.0.0.1:9000"]).address(),
            "127.0.0.1:9000"
        );
        assert_eq!(parse(&["-p", "9001"]).address(), "127.0.0.1:9001");
        assert_eq!(
            parse(&["-b", "0.0.0.0", "-p", "80"]).address(),
            "0.0.0.0:80"
        );
        assert_eq!(parse(&["--bind", "[::1]:8080"]).address(), "[::1]:8080");
    }

    #[test]
    fn history_limits_have_defaults_and_flags() {
        let cli = parse(&[]);
        assert_eq!(cli.history_budget(), 256 << 20);
        assert_eq!(cli.history_ttl(), Duration::from_secs(86_400));
        let cli = parse(&["--history-budget-mib", "8", "--history-ttl-secs", "60"]);
        assert_eq!(cli.history_budget(), 8 << 20);
        assert_eq!(cli.history_ttl(), Duration::from_secs(60));
        for bad in [
            ["--history-budget-mib", "0"],
            ["--history-ttl-secs", "0"],
            ["--history-ttl-secs", "-5"],
        ] {
            let args = std::iter::once("chat-app").chain(bad);
            assert!(Cli::try_parse_from(args).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn presence_has_defaults_and_flags() {
        let cli = parse(&[]);
        assert!(!cli.no_presence);
        assert_eq!(cli.presence(), PresenceConfig::default());
        let cli = parse(&[
            "--presence-interval-ms",
            "50",
            "--presence-heartbeat-secs",
            "1",
            "--presence-timeout-secs",
            "3",
        ]);
        let presence = cli.presence();
        assert_eq!(presence.interval, Duration::from_millis(50));
        assert_eq!(presence.heartbeat, Duration::from_secs(1));
        assert_eq!(presence.timeout, Duration::from_secs(3));
        for bad in [
            ["--presence-interval-ms", "0"],
            ["--presence-heartbeat-secs", "0"],
            ["--presence-timeout-secs", "-1"],
        ] {
            assert!(Cli::try_parse_from(std::iter::once("chat-app").chain(bad)).is_err());
        }
    }

    #[test]
    fn origins_default_to_the_requested_host_and_missing_ones_are_a_choice() {
        let default = parse(&[]).origins().unwrap();
        assert!(default.allows_origin(None, Some("a:1")));
        assert!(default.allows_origin(Some("http://a:1"), Some("a:1")));
        assert!(!default.allows_origin(Some("http://b:1"), Some("a:1")));
        let strict = parse(&["--require-origin"]).origins().unwrap();
        assert!(!strict.allows_origin(None, Some("a:1")));
        let listed = parse(&["--allowed-origins", "https://chat.example,.example.org"])
            .origins()
            .unwrap();
        assert!(listed.allows_origin(Some("https://chat.example"), Some("a:1")));
        assert!(listed.allows_origin(Some("http://x.example.org"), None));
        assert!(!listed.allows_origin(Some("http://a:1"), Some("a:1")));
        assert!(parse(&["--allowed-origins", "bad host"]).origins().is_err());
    }

    #[test]
    fn api_tokens_are_user_colon_token() {
        let tokens = parse(&["--api-token", "ann:0123456789abcdef,a:b:fedcba9876543210"])
            .api_tokens()
            .unwrap();
        assert_eq!(tokens["0123456789abcdef"], "ann");
        assert_eq!(tokens["fedcba9876543210"], "a:b");
        for bad in [
            "no-colon-0123456789",
            "ann:short",
            ":0123456789abcdef",
            "ann:0123456789abcdef,bob:0123456789abcdef",
        ] {
            assert!(parse(&["--api-token", bad]).api_tokens().is_err(), "{bad}");
        }
    }

    #[test]
    fn layer_urls_repeat_or_split_on_commas() {
        let cli = parse(&[
            "--layer",
            "redis://a:1/0,redis://b:2",
            "--layer",
            "redis://c:3",
        ]);
        assert_eq!(cli.layers, ["redis://a:1/0", "redis://b:2", "redis://c:3"]);
    }
}
