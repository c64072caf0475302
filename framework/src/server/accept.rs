//! The accept loop: connections are counted against the limit as they arrive, and a failing
//! `accept` (out of file descriptors) backs off instead of spinning or ending the server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;

use super::plumbing::Shared;
use super::serve_tcp;
use crate::application::Application;
use crate::limits::{Admission, ClientRefusal};

/// First and longest wait after a failed `accept`.
const BACKOFF_FIRST: Duration = Duration::from_millis(10);
const BACKOFF_MOST: Duration = Duration::from_secs(1);

/// Accepts connections until the task is aborted; each is served in a task of its own.
pub(super) async fn accept<A: Application>(listener: TcpListener, shared: Arc<Shared<A>>) {
    // Bound to one address, every connection's local address is the listener's; only a
    // wildcard bind needs asking the kernel per connection.
    let fixed_local = listener
        .local_addr()
        .ok()
        .filter(|addr| !addr.ip().is_unspecified());
    let mut failing: Option<Episode> = None;
    let mut over_limit: Option<Episode> = None;
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                if let Some(episode) = failing.take() {
                    tracing::info!(
                        failures = episode.count,
                        seconds = episode.started.elapsed().as_secs_f64(),
                        "accepting connections again"
                    );
                }
                let local = fixed_local.or_else(|| stream.local_addr().ok());
                let (permit, refused) = match shared.counts.admit() {
                    Admission::Serve(permit) => {
                        if let Some(episode) = over_limit.take() {
                            tracing::info!(
                                refused = episode.count,
                                seconds = episode.started.elapsed().as_secs_f64(),
                                "connections back under the limit"
                            );
                        }
                        (permit, false)
                    }
                    Admission::Refuse(permit) => {
                        note_over_limit(&mut over_limit, shared.config.max_connections);
                        (permit, true)
                    }
                    Admission::Drop => {
                        note_over_limit(&mut over_limit, shared.config.max_connections);
                        continue;
                    }
                };
                let task_shared = Arc::clone(&shared);
                shared
                    .tasks
                    .spawn(serve_tcp(task_shared, stream, permit, refused, peer, local));
            }
            Err(err) => {
                // Typically EMFILE: out of file descriptors. The connection waits in the
                // listen backlog; try again later rather than spin.
                let episode = failing.get_or_insert_with(|| {
                    tracing::warn!(
                        error = %err,
                        "accept failed: backing off until it works again (out of file \
                         descriptors? raise the open-file limit, or lower max_connections)"
                    );
                    Episode::new()
                });
                episode.count += 1;
                tokio::time::sleep(episode.backoff()).await;
            }
        }
    }
}

/// A run of failures or refusals, logged when it starts and when it ends.
struct Episode {
    started: Instant,
    count: u64,
}

impl Episode {
    fn new() -> Episode {
        Episode {
            started: Instant::now(),
            count: 0,
        }
    }

    /// Doubles from [`BACKOFF_FIRST`] with each failure, up to [`BACKOFF_MOST`].
    fn backoff(&self) -> Duration {
        let doublings = u32::try_from(self.count.saturating_sub(1)).unwrap_or(u32::MAX);
        BACKOFF_FIRST
            .saturating_mul(2u32.saturating_pow(doublings.min(16)))
            .min(BACKOFF_MOST)
    }
}

/// Counts a connection over the connection limit, logging the first of an episode.
fn note_over_limit(episode: &mut Option<Episode>, max: usize) {
    let episode = episode.get_or_insert_with(|| {
        tracing::warn!(
            max_connections = max,
            "connection limit reached: new connections are answered 503 until some close"
        );
        Episode::new()
    });
    episode.count += 1;
}

/// A client over its own limits, answered 429. Logged at debug level only: under a flood a
/// line per refusal would cost more than the refusal.
pub(super) fn client_refused(client: SocketAddr, refusal: ClientRefusal) {
    let limit = match refusal {
        ClientRefusal::Connections => "connections per client",
        ClientRefusal::Handshakes => "handshakes per second per client",
    };
    tracing::debug!(%client, limit, "client over its limit: answered 429");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_up_to_a_second() {
        let mut episode = Episode::new();
        let mut waits = Vec::new();
        for _ in 0..10 {
            episode.count += 1;
            waits.push(episode.backoff().as_millis());
        }
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        episode.count = u64::MAX;
        assert_eq!(episode.backoff(), BACKOFF_MOST);
    }
}
