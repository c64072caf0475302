//! The consumers of the seed tutorials (Django Channels, in Chinese), rewritten on switchboard.
//!
//! Each module is one behaviour from one seed document, with the original Python quoted in its
//! docs, a consumer, and an `application()` to serve it. Each also has a runnable example:
//!
//! | module | seed | try it |
//! |---|---|---|
//! | [`echo`] | 000, first branch | `cargo run -p examples --example echo` |
//! | [`everyone_chat`] | 000, "简单的聊天室" | `cargo run -p examples --example everyone_chat` |
//! | [`group_broadcast`] | 000, "channel layer" | `cargo run -p examples --example group_broadcast` |
//! | [`room_chat`] | 000, "聊天室" (and 001) | `cargo run -p examples --example room_chat` |
//! | [`welcome`] | 002 and 001 | `cargo run -p examples --example welcome` |
//! | [`json_chat`] | 002, "通道层 channel layer" | `cargo run -p examples --example json_chat` |
//! | [`with_axum`] | [`room_chat`] inside axum | `cargo run -p examples --example switchboard_in_axum` |
//! | [`with_axum`] | axum views inside switchboard | `cargo run -p examples --example axum_in_switchboard` |
//!
//! Every example takes `--bind ADDR` (default `127.0.0.1:8000`) and logs at `info` unless
//! `RUST_LOG` says otherwise. Talk to them with [websocat](https://github.com/vi/websocat),
//! Python `websockets`, or a browser console (`new WebSocket("ws://127.0.0.1:8000/")`).
//!
//! The applications are plain values, so tests serve them on an ephemeral port:
//!
//! ```no_run
//! # async fn demo() -> switchboard::Result<()> {
//! let server = switchboard::server::Server::bind("127.0.0.1:0").await?;
//! server.serve(examples::echo::application()).await
//! # }
//! ```

#![warn(missing_docs)]

pub mod echo;
pub mod everyone_chat;
pub mod group_broadcast;
pub mod json_chat;
pub mod room_chat;
pub mod welcome;
pub mod with_axum;

use std::net::{Ipv4Addr, SocketAddr};

use clap::Parser;
use switchboard::prelude::*;
use tracing_subscriber::EnvFilter;

/// The command line every example shares.
#[derive(Debug, Parser)]
#[command(about = "Serves one of the switchboard seed examples")]
struct Cli {
    /// Address to listen on (daphne's `-b`/`-p` in one).
    #[arg(
        long,
        short,
        default_value = "127.0.0.1:8000",
        env = "SWITCHBOARD_BIND"
    )]
    bind: String,
}

/// Serves `app` until Ctrl-C (or SIGTERM), after printing the WebSocket URLs of `paths`.
///
/// Parses `--bind` from the command line and sets up logging from `RUST_LOG` (default `info`).
///
/// ```no_run
/// #[tokio::main]
/// async fn main() -> switchboard::Result<()> {
///     examples::run(examples::echo::application(), examples::echo::PATHS).await
/// }
/// ```
pub async fn run(app: impl Application, paths: &[&str]) -> Result<()> {
    let cli = init();
    let server = Server::bind(cli.bind.as_str()).await?;
    print_urls(server.local_addr()?, paths);
    server.serve(app).await
}

/// Parses the command line and sets up logging from `RUST_LOG` (default `info`).
fn init() -> Cli {
    let cli = Cli::parse();
    // A second subscriber (a test harness that set its own) is not worth failing over.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    cli
}

/// Prints where the server listens and the WebSocket URLs of `paths`.
fn print_urls(addr: SocketAddr, paths: &[&str]) {
    let addr = printable(addr);
    println!("listening on {addr}; try:");
    for path in paths {
        println!("    websocat ws://{addr}{path}");
    }
    println!("Ctrl-C stops the server.");
}

/// A wildcard bind address is not something a client can dial; show loopback instead.
fn printable(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::from((Ipv4Addr::LOCALHOST, addr.port()))
    } else {
        addr
    }
}

/// Whether `value` may name a room: 1 to 64 ASCII letters, digits, `-` or `_`.
///
/// The seeds capture rooms with `\w+`; this is its ASCII form, with a length cap so that every
/// room name also makes a valid channel-layer group name (fewer than 100 characters). Register
/// it as a route converter, `URLRouter::new().converter("room", examples::is_room_name)`.
///
/// ```
/// assert!(examples::is_room_name("lobby-1_a"));
/// assert!(!examples::is_room_name("no spaces"));
/// assert!(!examples::is_room_name(&"x".repeat(65)));
/// ```
pub fn is_room_name(value: &str) -> bool {
    (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The text of a text frame. A binary frame closes the connection with 1003 (unsupported data),
/// the WebSocket protocol's own answer to a kind of frame an endpoint does not take, and gives
/// `None`.
pub(crate) async fn text_or_close(ws: &mut Websocket, message: Message) -> Result<Option<String>> {
    match message {
        Message::Text(text) => Ok(Some(text.to_string())),
        Message::Binary(_) => {
            ws.close(CloseCode::Unsupported, "text frames only").await?;
            Ok(None)
        }
    }
}
