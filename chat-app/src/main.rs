//! `chat-app`: serve the group chat until Ctrl-C or SIGTERM, or run its workers
//! (`chat-app worker chat-history`, Channels' `runworker`).

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use chat_app::cli::{Cli, Command};
use chat_app::group_format::GroupFormat;
use chat_app::history;
use chat_app::layer::{Chosen, layer_from_url};
use chat_app::routing::{self, Security};
use chat_app::state::AppState;
use clap::Parser;
use switchboard::middleware::{RedisSessionStore, SessionConfig, SessionKey};
use switchboard::server::{Server, shutdown_signal};
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
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("chat-app: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let group_format = GroupFormat::parse(&cli.group_format)?;
    let Chosen {
        layer,
        history,
        sessions: sessions_url,
    } = layer_from_url(&cli).await?;
    let state = AppState {
        history,
        group_format,
    };

    if let Some(Command::Worker { channels }) = &cli.command {
        if cli.layers.is_empty() {
            tracing::warn!(
                "a worker process on the in-memory layer only hears itself: pass --layer redis://…"
            );
        }
        let running = history::workers(state.history.clone())
            .spawn(layer, Some(channels))
            .await
            .map_err(|err| err.to_string())?;
        println!(
            "chat-app worker: receiving on {} (Ctrl-C to stop)",
            channels.join(", ")
        );
        shutdown_signal().await;
        running.shutdown().await;
        return Ok(());
    }

    // Flags first, so a typo is reported before anything connects.
    let security = Security {
        origins: cli.origins()?,
        api_tokens: cli.api_tokens()?,
        sessions: sessions(&cli, sessions_url.as_deref()).await?,
    };
    let address = cli.address();
    let server = Server::bind(&address)
        .await
        .map_err(|err| format!("cannot listen on {address}: {err}"))?
        .channel_layer(Arc::clone(&layer));
    // Without history there is nothing for the workers to do.
    let workers = if cli.no_workers || !state.history.is_on() {
        None
    } else {
        let running = history::workers(state.history.clone())
            .spawn(layer, None)
            .await
            .map_err(|err| err.to_string())?;
        Some(running)
    };
    let addr = server.local_addr().map_err(|err| err.to_string())?;
    println!("switchboard chat: open http://{addr}/ (Ctrl-C to stop)");
    let served = server
        .serve(routing::application_with_security(state, security))
        .await;
    if let Some(workers) = workers {
        workers.shutdown().await;
    }
    served.map_err(|err| err.to_string())
}

/// Sessions signed with `SESSION_SECRET` (or a random key, with a warning), kept in Redis with
/// `--layer` (on the first server, like room history) so every process reads them, else in
/// memory.
async fn sessions(cli: &Cli, redis: Option<&str>) -> Result<SessionConfig, String> {
    let key = match std::env::var("SESSION_SECRET") {
        Ok(secret) => {
            SessionKey::from_secret(secret).map_err(|err| format!("SESSION_SECRET: {err}"))?
        }
        Err(std::env::VarError::NotPresent) => {
            tracing::warn!(
                "SESSION_SECRET is not set: using a random key, so logins will not survive a \
                 restart{}",
                if cli.layers.is_empty() {
                    ""
                } else {
                    " and other processes will not accept them"
                }
            );
            SessionKey::generate()
        }
        Err(err) => return Err(format!("SESSION_SECRET: {err}")),
    };
    let sessions = SessionConfig::new(key).secure(cli.secure_cookies);
    match redis {
        None => Ok(sessions),
        Some(url) => RedisSessionStore::connect(url, &cli.layer_prefix)
            .await
            .map(|store| sessions.store(store))
            .map_err(|err| err.to_string()),
    }
}
