//! Connecting to Redis (feature `redis`): one builder, and so one reconnect policy, for every
//! Redis user — the channel layer, the session store, and an application's own keys.
//!
//! Every client made here reconnects for ever, from 100 ms up to 1 s between attempts, so
//! service resumes within seconds of Redis coming back; tries each command once, failing it
//! after the command timeout instead of queueing it through an outage; sets `TCP_NODELAY`; and
//! fails start-up clearly when Redis does not answer within the connect timeout. Failures are
//! [`Error::Unavailable`] (transient) or [`Error::Config`] (a URL that cannot be used).
//!
//! ```no_run
//! use switchboard::redis::RedisConnector;
//! use switchboard::redis::fred::prelude::KeysInterface;
//!
//! # async fn run() -> switchboard::Result<()> {
//! let redis = RedisConnector::new("redis://127.0.0.1:6379/0")?;
//! let client = redis.client("visit counter").await?;
//! let visits: i64 = client.incr("visits").await.map_err(|err| redis.error("INCR", err))?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::time::Duration;

use fred::prelude::{Builder, ClientLike, Config, ReconnectPolicy};

use crate::error::{Error, Result};

/// The Redis client the connector's clients are made with, for their commands and types.
pub use fred;

/// How long start-up waits for Redis, by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one command may take before it fails, by default.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// Makes Redis clients for one server (or cluster), all with the same policy.
#[derive(Clone)]
pub struct RedisConnector {
    url: String,
    config: Config,
    connect_timeout: Duration,
    command_timeout: Duration,
}

impl fmt::Debug for RedisConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConnector")
            .field("url", &self.url)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .finish()
    }
}

impl RedisConnector {
    /// A connector for `url` (`redis://HOST:PORT[/DB]`, `rediss://…`, or any URL `fred`
    /// reads), with the default timeouts. Nothing connects yet.
    pub fn new(url: &str) -> Result<RedisConnector> {
        let config = Config::from_url(url)
            .map_err(|err| Error::Config(format!("invalid Redis URL {url:?}: {err}")))?;
        Ok(RedisConnector::from_config(config, url))
    }

    /// A connector for a `fred` configuration built by hand (a cluster's nodes, say); `url`
    /// names it in logs and errors.
    pub fn from_config(config: Config, url: impl Into<String>) -> RedisConnector {
        RedisConnector {
            url: url.into(),
            config,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
        }
    }

    /// Sets how long [`client`](Self::client) waits for Redis at start-up, and how long one
    /// command may take before it fails.
    pub fn timeouts(mut self, connect: Duration, command: Duration) -> RedisConnector {
        self.connect_timeout = connect;
        self.command_timeout = command;
        self
    }

    /// The URL, as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How long start-up waits for Redis.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// How long one command may take.
    pub fn command_timeout(&self) -> Duration {
        self.command_timeout
    }

    /// The builder every client is made from.
    pub fn builder(&self) -> Builder {
        let mut builder = Builder::from_config(self.config.clone());
        builder
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 1_000, 2))
            .with_connection_config(|c| {
                c.connection_timeout = self.connect_timeout;
                // A command is tried once: during an outage callers fail fast and decide what
                // to do (deliver locally, answer 503), instead of queueing behind a retry.
                c.max_command_attempts = 1;
                // As other Redis clients do (redis-py, go-redis, ioredis): without it the
                // kernel may hold a small command back until an earlier write is acknowledged.
                // fred leaves it unset.
                c.tcp.nodelay = Some(true);
            })
            .with_performance_config(|p| {
                p.default_command_timeout = self.command_timeout;
                // A subscriber's queue towards its listener: bounded; a listener that falls
                // this far behind loses messages (and says so) rather than growing memory.
                p.broadcast_channel_capacity = 4096;
            });
        builder
    }

    /// A connected client; `purpose` names it in errors ("session store", …). Fails with
    /// [`Error::Unavailable`] when Redis does not answer within the connect timeout.
    pub async fn client(&self, purpose: &str) -> Result<fred::clients::Client> {
        let client = self
            .builder()
            .build()
            .map_err(|err| self.error(purpose, err))?;
        self.init(&client, purpose).await?;
        Ok(client)
    }

    /// A connected subscriber client (it re-subscribes on its own after a reconnection).
    pub async fn subscriber(&self, purpose: &str) -> Result<fred::clients::SubscriberClient> {
        let client = self
            .builder()
            .build_subscriber_client()
            .map_err(|err| self.error(purpose, err))?;
        self.init(&client, purpose).await?;
        Ok(client)
    }

    /// Connects a client made from [`builder`](Self::builder), failing clearly instead of
    /// retrying for ever at start-up.
    pub async fn init(&self, client: &impl ClientLike, purpose: &str) -> Result<()> {
        match tokio::time::timeout(self.connect_timeout, client.init()).await {
            Ok(Ok(_connection_task)) => Ok(()),
            Ok(Err(err)) => Err(self.error(purpose, format!("cannot connect: {err}"))),
            Err(_) => Err(self.error(
                purpose,
                format!("no answer within {:?}", self.connect_timeout),
            )),
        }
    }

    /// The error for a failed command or connection of this server.
    pub fn error(&self, what: &str, reason: impl ToString) -> Error {
        Error::Unavailable {
            service: format!("Redis ({what})"),
            url: self.url.clone(),
            reason: reason.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_url_is_a_configuration_error() {
        let err = RedisConnector::new("not a url").unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err}");
        let redis = RedisConnector::new("redis://127.0.0.1:1/0").unwrap();
        assert_eq!(redis.url(), "redis://127.0.0.1:1/0");
    }

    #[tokio::test]
    async fn no_answer_is_unavailable_not_a_hang() {
        let redis = RedisConnector::new("redis://127.0.0.1:1")
            .unwrap()
            .timeouts(Duration::from_millis(200), DEFAULT_COMMAND_TIMEOUT);
        let err = redis.client("test").await.unwrap_err();
        assert!(matches!(err, Error::Unavailable { .. }), "{err}");
        assert!(err.to_string().contains("Redis (test)"), "{err}");
    }
}
