//! `chat-app`: serve the group chat until Ctrl-C or SIGTERM.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use chat_app::cli::Cli;
use chat_app::rooms;
use chat_app::routing::{self, Security};
use chat_app::state::AppState;
use clap::Parser;
use switchboard::layer::{
    InMemoryChannelLayer, LayerConfig, RedisChannelLayer, RedisConfig, SharedLayer,
};
use switchboard::middleware::{RedisSessionStore, SessionConfig, SessionKey};
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
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("chat-app: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let layer_config = if cli.no_history {
        LayerConfig::default()
    } else {
        rooms::layer_config(cli.history_ttl(), cli.history_budget())
    };
    let layer: SharedLayer = if cli.layers.is_empty() {
        Arc::new(InMemoryChannelLayer::with_config(layer_config))
    } else {
        let config = RedisConfig::new(cli.layers.clone())
            .prefix(cli.layer_prefix.clone())
            .layer(layer_config);
        let layer = RedisChannelLayer::connect(config)
            .await
            .map_err(|err| err.to_string())?;
        Arc::new(layer)
    };
    let state = AppState {
        history_limit: if cli.no_history {
            0
        } else {
            rooms::HISTORY_LIMIT
        },
    };

    // Flags first, so a typo is reported before anything connects.
    let security = Security {
        origins: cli.origins()?,
        api_tokens: cli.api_tokens()?,
        sessions: sessions(&cli).await?,
    };
    let address = cli.address();
    let server = Server::bind(&address)
        .await
        .map_err(|err| format!("cannot listen on {address}: {err}"))?
        .channel_layer(layer);
    let addr = server.local_addr().map_err(|err| err.to_string())?;
    println!("switchboard chat: open http://{addr}/ (Ctrl-C to stop)");
    server
        .serve(routing::application_with_security(state, security))
        .await
        .map_err(|err| err.to_string())
}

/// Sessions signed with `SESSION_SECRET` (or a random key, with a warning), kept in Redis with
/// `--layer` (on the first server) so every process reads them, else in memory.
async fn sessions(cli: &Cli) -> Result<SessionConfig, String> {
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
    match cli.layers.first() {
        None => Ok(sessions),
        Some(first) => RedisSessionStore::connect(first, &cli.layer_prefix)
            .await
            .map(|store| sessions.store(store))
            .map_err(|err| err.to_string()),
    }
}
