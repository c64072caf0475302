//! Command-line options (daphne's `-b`/`-p` included).

use clap::{Parser, Subcommand};

/// Run the switchboard group chat.
#[derive(Debug, Parser)]
#[command(name = "chat-app", version, about)]
pub struct Cli {
    /// Run the chat server (default) or only background workers.
    #[command(subcommand)]
    pub command: Option<Command>,

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
    #[arg(
        long = "layer",
        env = "CHANNEL_LAYER_URL",
        value_delimiter = ',',
        global = true
    )]
    pub layers: Vec<String>,

    /// Prefix of every Redis key and channel, so several applications can share one Redis.
    #[arg(long, default_value = "switchboard", global = true)]
    pub layer_prefix: String,

    /// Do not run the background workers (room history) in this process; run them with
    /// `chat-app worker chat-history` instead.
    #[arg(long)]
    pub no_workers: bool,

    /// Log filter: error, warn, info, debug, trace, or a tracing directive list.
    /// RUST_LOG, when set, wins.
    #[arg(long, default_value = "info", global = true)]
    pub log_level: String,
}

/// What to run instead of the server.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run background workers only (Channels' `runworker`); with the Redis layer they receive
    /// what every web process sends.
    Worker {
        /// Channel names to work on, e.g. `chat-history`.
        #[arg(required = true)]
        channels: Vec<String>,
    },
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
    fn worker_subcommand_takes_channels_and_global_flags() {
        let cli = parse(&["worker", "chat-history", "--layer", "redis://a:1"]);
        match cli.command {
            Some(Command::Worker { channels }) => assert_eq!(channels, ["chat-history"]),
            None => panic!("no subcommand"),
        }
        assert_eq!(cli.layers, ["redis://a:1"]);
        assert!(parse(&[]).command.is_none());
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
