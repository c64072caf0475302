//! The graceful shutdown of a service's WebSockets.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Closes the WebSockets of an [`ApplicationService`](super::ApplicationService) (from
/// [`shutdown_handle`](super::ApplicationService::shutdown_handle)).
///
/// axum's graceful shutdown stops accepting and lets HTTP requests finish, but a connection it
/// has handed to an upgrade is no longer its own: the WebSockets stay open. This does for them
/// what switchboard's [`Server`](crate::server::Server) does at shutdown. Call it once axum's
/// `serve` has returned, so that clients that reconnect at once find the port closed instead
/// of a service that closes them again.
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    shutdown: CancellationToken,
    tasks: TaskTracker,
    timeout: Duration,
}

impl ShutdownHandle {
    pub(super) fn new(
        shutdown: CancellationToken,
        tasks: TaskTracker,
        timeout: Duration,
    ) -> ShutdownHandle {
        ShutdownHandle {
            shutdown,
            tasks,
            timeout,
        }
    }

    /// Closes every WebSocket with 1001 ("server shutting down"), so that each consumer's
    /// `disconnect(1001)` runs, and waits for them, at most
    /// [`ServerConfig::shutdown_timeout`](crate::server::ServerConfig::shutdown_timeout). From
    /// then on the service answers every request with 503. Calling it again waits again.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        self.tasks.close();
        if tokio::time::timeout(self.timeout, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                remaining = self.tasks.len(),
                "shutdown timeout: some WebSockets did not finish"
            );
        }
    }

    /// Whether [`shutdown`](ShutdownHandle::shutdown) was called.
    pub fn is_shut_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }
}
