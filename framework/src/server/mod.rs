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

mod accept;
mod answer;
mod config;
mod direct;
mod forwarded;
mod handshake;
mod head;
mod http1;
pub(crate) mod plumbing;
pub(crate) mod request;
mod rewind;
mod signal;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio_util::sync::CancellationToken;

pub use config::ServerConfig;
pub use forwarded::ForwardedAllow;
pub use signal::shutdown_signal;

use crate::application::Application;
use crate::error::Result;
use crate::layer::{InMemoryChannelLayer, SharedLayer};
use crate::limits::Permit;
use head::Head;
use plumbing::Shared;

#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use {
    direct::answerable,
    head::{Head as FuzzHead, from_bytes as head_from_bytes, parse as parse_head},
};

/// The origin of a request with `headers` from `peer` (the fuzz targets' way to the resolution
/// of forwarding headers).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn resolve_origin(
    allow: &ForwardedAllow,
    peer: SocketAddr,
    headers: &crate::scope::Headers,
) -> SocketAddr {
    forwarded::resolve(allow, peer, |name| {
        headers.get_all(name).map(|value| value.as_bytes())
    })
    .client
}

/// How long a connection over the connection limit has to send its head before it is closed
/// unanswered: it is only read to be answered 503.
const REFUSED_HEAD_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves one TCP connection: reads its first request head within the limits, then answers the
/// usual WebSocket handshake directly and anything else through hyper. `refused`: the
/// connection is over the connection limit and only gets its 503.
async fn serve_tcp<A: Application>(
    shared: Arc<Shared<A>>,
    mut stream: TcpStream,
    mut permit: Permit,
    refused: bool,
    peer: SocketAddr,
    local: Option<SocketAddr>,
) {
    // Chat traffic is many small frames: send each at once.
    let _ = stream.set_nodelay(true);
    let config = &shared.config;
    let timeout = if refused {
        config.header_read_timeout.min(REFUSED_HEAD_TIMEOUT)
    } else {
        config.header_read_timeout
    };
    let head = match head::read(&mut stream, config, timeout, &shared.shutdown).await {
        Head::Complete(head) => head,
        Head::TooLarge(status) => {
            tracing::debug!(%peer, status = status.as_u16(), "request head over the limits");
            return answer::refuse(stream, answer::limit_response(status, config.retry_after))
                .await;
        }
        Head::Gone => return,
    };
    if refused {
        let busy = answer::limit_response(StatusCode::SERVICE_UNAVAILABLE, config.retry_after);
        return answer::refuse(stream, busy).await;
    }
    let Some(request) = head::parse(&head) else {
        // Malformed: hyper answers it (400) as it always has.
        let rewound = rewind::Rewind::new(stream, head.bytes, permit);
        return http1::serve(shared, rewound, peer, local).await;
    };
    let target = request.target(&head);
    let origin = forwarded::resolve(&config.forwarded_allow, peer, |name| {
        request.headers.get_all(name).map(|value| value.as_bytes())
    });
    let accept_key = direct::answerable(&request, target);
    if let Err(refusal) = permit.charge_client(origin.client.ip(), accept_key.is_some()) {
        accept::client_refused(origin.client, refusal);
        let status = StatusCode::TOO_MANY_REQUESTS;
        return answer::refuse(stream, answer::limit_response(status, config.retry_after)).await;
    }
    match accept_key {
        Some(key) => {
            direct::serve(&shared, stream, permit, head, request, key, origin, local).await;
        }
        None => {
            let rewound = rewind::Rewind::new(stream, head.bytes, permit);
            http1::serve(shared, rewound, peer, local).await;
        }
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
        let shared = Arc::new(Shared::new(
            app,
            self.layer,
            self.config,
            CancellationToken::new(),
        ));
        // The accept loop is a task of its own, so it runs on a runtime worker and each
        // connection's task starts in that worker's own queue. Run here instead, it would
        // usually be in `main`'s `block_on`, outside the workers, and every accepted
        // connection would cost a cross-thread wake-up (an eventfd write and a futex).
        let acceptor = tokio::spawn(accept::accept(self.listener, Arc::clone(&shared)));
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
