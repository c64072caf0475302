//! Command-line options (daphne's `-b`/`-p` included).

use clap::Parser;

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

    /// Channel layer: Redis URL(s) `redis://HOST:PORT[/DB]`, repeated or comma-separated; several
    /// servers shard rooms between them. Without it, the in-memory layer serves one process.
    #[arg(long = "layer", env = "CHANNEL_LAYER_URL", value_delimiter = ',')]
    pub layers: Vec<String>,

    /// Prefix of every Redis key and channel, so several applications can share one Redis.
    #[arg(long, default_value = "switchboard")]
    pub layer_prefix: String,

    /// Log filter: error, warn, info, debug, trace, or a tracing directive list.
    /// RUST_LOG, when set, wins.
    #[arg(long, default_value = "info")]
    pub log_level: String,
}

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
