//! Sessions in Redis (feature `redis`): every process sharing the Redis reads every session.

use std::time::Duration;

use fred::prelude::{Builder, ClientLike, Config as FredConfig, KeysInterface, ReconnectPolicy};
use fred::types::Expiration;

use super::SessionStore;
use crate::scope::SessionData;
use crate::{Error, Result};

/// Sessions as Redis strings `{prefix}:session:{id}` holding JSON, with Redis' own expiry
/// (`SET … EX`), so nothing is left behind and any process reads what another wrote.
///
/// Give every process the same session key too (the chat-app's `SESSION_SECRET`): the store
/// shares the data, the key makes the cookie valid everywhere. While Redis is unreachable,
/// visitors are anonymous and logins fail; the client reconnects on its own.
///
/// ```no_run
/// use switchboard::middleware::{RedisSessionStore, SessionConfig, SessionKey};
///
/// # async fn run(secret: &str) -> switchboard::Result<()> {
/// let store = RedisSessionStore::connect("redis://127.0.0.1:6379/0", "myapp").await?;
/// let sessions = SessionConfig::new(SessionKey::from_secret(secret)?).store(store);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisSessionStore {
    client: fred::clients::Client,
    prefix: String,
    url: String,
}

impl std::fmt::Debug for RedisSessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSessionStore")
            .field("url", &self.url)
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// How long start-up waits for Redis.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one command may take: a session lookup holds a handshake up.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

impl RedisSessionStore {
    /// Connects to the Redis at `url` (`redis://HOST:PORT[/DB]`); keys start with `prefix`.
    /// Fails with a clear error when Redis does not answer within 5 s.
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisSessionStore> {
        let config = FredConfig::from_url(url)
            .map_err(|err| Error::custom(format!("invalid Redis URL {url:?}: {err}")))?;
        let mut builder = Builder::from_config(config);
        builder
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 1_000, 2))
            .with_connection_config(|c| {
                c.connection_timeout = CONNECT_TIMEOUT;
                c.max_command_attempts = 1;
                // Concurrent handshakes' lookups share the connection: none may wait for the
                // acknowledgement of another's write (as in the channel layer).
                c.tcp.nodelay = Some(true);
            })
            .with_performance_config(|p| p.default_command_timeout = COMMAND_TIMEOUT);
        let client = builder
            .build()
            .map_err(|err| Error::custom(format!("Redis client for {url}: {err}")))?;
        match tokio::time::timeout(CONNECT_TIMEOUT, client.init()).await {
            Ok(Ok(_connection_task)) => {}
            Ok(Err(err)) => {
                return Err(Error::custom(format!(
                    "session store: cannot connect to Redis at {url}: {err}"
                )));
            }
            Err(_) => {
                return Err(Error::custom(format!(
                    "session store: cannot connect to Redis at {url}: no answer within {CONNECT_TIMEOUT:?}"
                )));
            }
        }
        Ok(RedisSessionStore {
            client,
            prefix: prefix.to_owned(),
            url: url.to_owned(),
        })
    }

    fn key(&self, id: &str) -> String {
        format!("{}:session:{id}", self.prefix)
    }

    fn error(&self, what: &str, err: fred::error::Error) -> Error {
        Error::custom(format!(
            "session store: {what} on Redis at {}: {err}",
            self.url
        ))
    }
}

impl SessionStore for RedisSessionStore {
    async fn load(&self, id: &str) -> Result<Option<SessionData>> {
        let stored: Option<String> = self
            .client
            .get(self.key(id))
            .await
            .map_err(|err| self.error("GET", err))?;
        // Something that is not a session's JSON (another program's key) reads as no session.
        Ok(stored.and_then(|json| serde_json::from_str(&json).ok()))
    }

    async fn save(&self, id: &str, data: &SessionData, ttl: Duration) -> Result<()> {
        let json = serde_json::to_string(data)?;
        let seconds = i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        self.client
            .set::<(), _, _>(
                self.key(id),
                json,
                Some(Expiration::EX(seconds)),
                None,
                false,
            )
            .await
            .map_err(|err| self.error("SET", err))
    }

    async fn delete(&self, id: &str) -> Result<()> {
        self.client
            .del::<i64, _>(self.key(id))
            .await
            .map(drop)
            .map_err(|err| self.error("DEL", err))
    }
}
