//! The Redis servers of a channels_redis layer: their connectors (the crate's one client
//! builder, so one reconnect policy), and how their connections are followed into
//! [`LayerStatus`].

use std::future::Future;
use std::sync::Weak;
use std::sync::atomic::{AtomicBool, Ordering};

use fred::prelude::EventInterface;
use tokio::sync::{broadcast, watch};

use super::ChannelsRedisConfig;
use crate::layer::LayerStatus;
use crate::redis::RedisConnector;
use crate::{Error, Result};

/// What the layer's clients are called in errors.
pub(super) const PURPOSE: &str = "channels_redis layer";

/// The connector of one host, with the layer's timeouts. Blocking pops wait at most half the
/// command timeout (see `core::block_secs`): the client's timeout must never be what ends an
/// idle wait (channels_redis #422).
pub(super) fn connector(url: &str, config: &ChannelsRedisConfig) -> Result<RedisConnector> {
    Ok(RedisConnector::new(url)?.timeouts(config.connect_timeout, config.command_timeout))
}

/// Whether each server is reachable, and the layer's status made of them.
pub(super) struct Health {
    urls: Vec<String>,
    connected: Vec<AtomicBool>,
    status: watch::Sender<LayerStatus>,
}

impl Health {
    pub(super) fn new(urls: &[String]) -> Health {
        Health {
            urls: urls.to_vec(),
            connected: urls.iter().map(|_| AtomicBool::new(true)).collect(),
            status: watch::channel(LayerStatus::Connected).0,
        }
    }

    pub(super) fn is_up(&self, host: usize) -> bool {
        self.connected[host].load(Ordering::SeqCst)
    }

    /// Fails at once while the server is known to be down, so callers do not each wait for a
    /// command timeout during an outage.
    pub(super) fn available(&self, host: usize) -> Result<()> {
        if self.is_up(host) {
            Ok(())
        } else {
            Err(Error::Layer(format!(
                "Redis at {} is unreachable; reconnecting",
                self.urls[host]
            )))
        }
    }

    pub(super) fn url(&self, host: usize) -> &str {
        &self.urls[host]
    }

    pub(super) fn subscribe(&self) -> watch::Receiver<LayerStatus> {
        self.status.subscribe()
    }

    fn down(&self, host: usize, err: &fred::error::Error) {
        if self.connected[host].swap(false, Ordering::SeqCst) {
            tracing::warn!(url = %self.urls[host], error = %err, "lost Redis (channels_redis layer): serving this process' members only, reconnecting");
            self.status.send_replace(LayerStatus::Disconnected);
        }
    }

    /// Marks a server reachable again; answers whether it was down.
    fn up(&self, host: usize) -> bool {
        !self.connected[host].swap(true, Ordering::SeqCst)
    }

    /// Says the layer is back once every server is.
    fn announce(&self, host: usize) {
        if self.connected.iter().all(|c| c.load(Ordering::SeqCst)) {
            tracing::info!(url = %self.urls[host], "Redis is back (channels_redis layer)");
            self.status.send_replace(LayerStatus::Reconnected);
        }
    }
}

/// A layer whose servers' connections are followed.
pub(super) trait Followed: Send + Sync + 'static {
    fn health(&self) -> &Health;

    /// Puts back what a restarted Redis may have lost (group memberships, subscriptions),
    /// before the layer says it is reconnected.
    fn reconnected(&self, host: usize) -> impl Future<Output = ()> + Send;
}

/// Follows `client`'s connection to server `host` for as long as the layer lives.
pub(super) fn follow<L: Followed>(layer: Weak<L>, host: usize, client: &impl EventInterface) {
    let errors = client.error_rx();
    let reconnects = client.reconnect_rx();
    tokio::spawn(follow_events(layer, host, errors, reconnects));
}

async fn follow_events<L: Followed>(
    layer: Weak<L>,
    host: usize,
    mut errors: broadcast::Receiver<(fred::error::Error, Option<fred::types::config::Server>)>,
    mut reconnects: broadcast::Receiver<fred::types::config::Server>,
) {
    loop {
        tokio::select! {
            error = errors.recv() => match error {
                Ok((err, _)) => {
                    let Some(layer) = layer.upgrade() else { return };
                    layer.health().down(host, &err);
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            reconnected = reconnects.recv() => match reconnected {
                Ok(_) => {
                    let Some(layer) = layer.upgrade() else { return };
                    // Reachable before it is repaired: the repair itself goes through it.
                    let was_down = layer.health().up(host);
                    layer.reconnected(host).await;
                    if was_down {
                        layer.health().announce(host);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}
