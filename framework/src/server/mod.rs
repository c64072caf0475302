//! The server: hyper for HTTP/1.1, tokio-tungstenite after the upgrade; the usual WebSocket
//! handshake is answered without hyper (see `direct.rs`).
//!
//! ```no_run
//! use switchboard::prelude::*;
//!
//! # async fn run(app: impl Application) -> switchboard::Result<()> {
//! let server = Server::bind("127.0.0.1:8000").await?;
//! println!("listening on http://{}/", server.local_addr()?);
//! server.serve(app).await // until SIGINT or SIGTERM
//! # }
//! ```

mod config;
mod direct;
mod handshake;
mod http1;
pub(crate) mod plumbing;
pub(crate) mod request;
mod signal;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::ServerConfig;
pub use signal::shutdown_signal;

use crate::application::Application;
use crate::error::Result;
use crate::layer::{InMemoryChannelLayer, SharedLayer};

/// Accepts connections until the task is aborted; each is served in a task of its own.
async fn accept<A: Application>(listener: TcpListener, shared: Arc<plumbing::Shared<A>>) {
    // Bound to one address, every connection's local address is the listener's; only a
    // wildcard bind needs asking the kernel per connection.
    let fixed_local = listener
        .local_addr()
        .ok()
        .filter(|addr| !addr.ip().is_unspecified());
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let local = fixed_local.or_else(|| stream.local_addr().ok());
                let task_shared = Arc::clone(&shared);
                shared
                    .tasks
                    .spawn(serve_tcp(task_shared, stream, peer, local));
            }
            Err(err) => {
                // Typically EMFILE: out of file descriptors. Back off instead of spinning.
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// Serves one TCP connection: the usual WebSocket handshake directly, anything else through
/// hyper.
async fn serve_tcp<A: Application>(
    shared: Arc<plumbing::Shared<A>>,
    stream: TcpStream,
    peer: SocketAddr,
    local: Option<SocketAddr>,
) {
    // Chat traffic is many small frames: send each at once.
    let _ = stream.set_nodelay(true);
    if let Some(stream) = direct::serve(&shared, stream, peer, local).await {
        http1::serve(shared, stream, peer, local).await;
    }
}

/// Serves an [`Application`] over TCP (Channels' daphne).
pub struct Server {
    listener: TcpListener,
    layer: SharedLayer,
    config: ServerConfig,
}

impl Server {
    /// Binds a TCP listener. Port 0 picks a free port (see [`Server::local_addr`]).
    pub async fn bind(addr: impl ToSocketAddrs) -> Result<Server> {
        Ok(Server::from_listener(TcpListener::bind(addr).await?))
    }

    /// Serves on a listener bound elsewhere.
    pub fn from_listener(listener: TcpListener) -> Server {
        Server {
            listener,
            layer: Arc::new(InMemoryChannelLayer::new()),
            config: ServerConfig::default(),
        }
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// The channel layer consumers use; the in-memory layer unless set.
    pub fn channel_layer(mut self, layer: SharedLayer) -> Server {
        self.layer = layer;
        self
    }

    /// Replaces the limits and timeouts.
    pub fn config(mut self, config: ServerConfig) -> Server {
        self.config = config;
        self
    }

    /// Serves until SIGINT or SIGTERM, then shuts down gracefully.
    pub async fn serve(self, app: impl Application) -> Result<()> {
        self.serve_with_shutdown(app, shutdown_signal()).await
    }

    /// Serves until `signal` completes, then shuts down gracefully: stops accepting, closes
    /// every WebSocket with 1001, and waits (at most [`ServerConfig::shutdown_timeout`]) for
    /// the consumers' `disconnect` handlers.
    pub async fn serve_with_shutdown(
        self,
        app: impl Application,
        signal: impl Future<Output = ()> + Send,
    ) -> Result<()> {
        let shared = Arc::new(plumbing::Shared {
            app,
            layer: self.layer,
            config: self.config,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        });
        // The accept loop is a task of its own, so it runs on a runtime worker and each
        // connection's task starts in that worker's own queue. Run here instead, it would
        // usually be in `main`'s `block_on`, outside the workers, and every accepted
        // connection would cost a cross-thread wake-up (an eventfd write and a futex).
        let acceptor = tokio::spawn(accept(self.listener, Arc::clone(&shared)));
        signal.await;
        acceptor.abort();
        // The listener is closed once the task is gone.
        let _ = acceptor.await;
        tracing::info!("shutting down: closing connections");
        shared.shutdown.cancel();
        shared.tasks.close();
        if tokio::time::timeout(shared.config.shutdown_timeout, shared.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                remaining = shared.tasks.len(),
                "shutdown timeout: some connections did not finish"
            );
        }
        Ok(())
    }
}
