//! `chat-app`: serve the group chat until Ctrl-C or SIGTERM.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use chat_app::cli::Cli;
use chat_app::routing;
use clap::Parser;
use switchboard::layer::{InMemoryChannelLayer, RedisChannelLayer, RedisConfig, SharedLayer};
use switchboard::server::Server;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cli.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Logs go to stderr, so stdout carries only the URL to open.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let layer: SharedLayer = if cli.layers.is_empty() {
        Arc::new(InMemoryChannelLayer::new())
    } else {
        let config = RedisConfig::new(cli.layers.clone()).prefix(cli.layer_prefix.clone());
        match RedisChannelLayer::connect(config).await {
            Ok(layer) => Arc::new(layer),
            Err(err) => {
                eprintln!("chat-app: {err}");
                return ExitCode::FAILURE;
            }
        }
    };

    let address = cli.address();
    let server = match Server::bind(&address).await {
        Ok(server) => server.channel_layer(layer),
        Err(err) => {
            eprintln!("chat-app: cannot listen on {address}: {err}");
            return ExitCode::FAILURE;
        }
    };
    match server.local_addr() {
        Ok(addr) => println!("switchboard chat: open http://{addr}/ (Ctrl-C to stop)"),
        Err(err) => eprintln!("chat-app: listening, address unknown: {err}"),
    }
    match server.serve(routing::application()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("chat-app: {err}");
            ExitCode::FAILURE
        }
    }
}
