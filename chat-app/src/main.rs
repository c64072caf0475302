//! `chat-app`: serve the group chat until Ctrl-C or SIGTERM.

use std::process::ExitCode;

use chat_app::cli::Cli;
use chat_app::routing;
use clap::Parser;
use switchboard::server::Server;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cli.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();

    let address = cli.address();
    let server = match Server::bind(&address).await {
        Ok(server) => server,
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
