//! What every Redis-backed layer does with its fred clients.

use std::time::Duration;

use fred::prelude::ClientLike;

use crate::{Error, Result};

/// Connects one client, failing clearly instead of retrying for ever at start-up.
pub(crate) async fn init(client: &impl ClientLike, url: &str, limit: Duration) -> Result<()> {
    match tokio::time::timeout(limit, client.init()).await {
        Ok(Ok(_handle)) => Ok(()),
        Ok(Err(err)) => Err(Error::Layer(format!(
            "cannot connect to Redis at {url}: {err}"
        ))),
        Err(_) => Err(Error::Layer(format!(
            "cannot connect to Redis at {url}: no answer within {limit:?}"
        ))),
    }
}
