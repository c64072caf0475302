//! `chat-app`: serve the group chat until Ctrl-C or SIGTERM.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use chat_app::backend::{Backend, layer_from_url};
use chat_app::cli::Cli;
use chat_app::group_format::GroupFormat;
use chat_app::rooms;
use chat_app::routing::{self, Security};
use chat_app::state::AppState;
use clap::Parser;
use switchboard::layer::LayerConfig;
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
    // Before anything connects, so a typo is reported at once.
    let config = cli.limits.server_config()?;
    let group_format = GroupFormat::parse(&cli.group_format)?;
    let limits = if cli.no_history {
        LayerConfig::default()
    } else {
        rooms::layer_config_for(cli.history_ttl(), cli.history_budget(), &group_format)
    }
    .presence(cli.presence());
    let Backend {
        layer,
        history,
        sessions: session_store,
    } = layer_from_url(
        &cli.layers,
        &cli.layer_prefix,
        limits,
        &cli.symmetric_encryption_keys,
    )
    .await?;
    let state = AppState {
        history_limit: if history { rooms::HISTORY_LIMIT } else { 0 },
        presence: !cli.no_presence,
        group_format: Arc::new(group_format),
    };

    // Flags first, so a typo is reported before anything connects.
    let security = Security {
        origins: cli.origins()?,
        api_tokens: cli.api_tokens()?,
        sessions: sessions(&cli, session_store.as_deref()).await?,
    };
    let address = cli.address();
    let server = Server::bind(&address)
        .await
        .map_err(|err| format!("cannot listen on {address}: {err}"))?
        .channel_layer(layer)
        .config(config);
    let addr = server.local_addr().map_err(|err| err.to_string())?;
    println!("switchboard chat: open http://{addr}/ (Ctrl-C to stop)");
    server
        .serve(routing::application_with_security(state, security))
        .await
        .map_err(|err| err.to_string())
}

/// Sessions signed with `SESSION_SECRET` (or a random key, with a warning), kept in the Redis
/// that `--layer` names (on the first server, or the cluster) so every process reads them, else
/// in memory.
async fn sessions(cli: &Cli, store: Option<&str>) -> Result<SessionConfig, String> {
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
    match store {
        None => Ok(sessions),
        Some(url) => RedisSessionStore::connect(url, &cli.layer_prefix)
            .await
            .map(|store| sessions.store(store))
            .map_err(|err| err.to_string()),
    }
}
