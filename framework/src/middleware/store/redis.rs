//! Sessions in Redis (feature `redis`): every process sharing the Redis reads every session.

use std::time::Duration;

use fred::prelude::KeysInterface;
use fred::types::Expiration;

use super::SessionStore;
use crate::error::{Error, Result};
use crate::redis::RedisConnector;
use crate::scope::SessionData;

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
#[derive(Clone, Debug)]
pub struct RedisSessionStore {
    client: fred::clients::Client,
    redis: RedisConnector,
    prefix: String,
}

impl RedisSessionStore {
    /// Connects to the Redis at `url` (`redis://HOST:PORT[/DB]`); keys start with `prefix`.
    /// Fails with a clear error when Redis does not answer within 5 s. A command (a session
    /// lookup holds a handshake up) fails after 2 s.
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisSessionStore> {
        RedisSessionStore::with_connector(RedisConnector::new(url)?, prefix).await
    }

    /// Connects through a [`RedisConnector`] set up by hand (other timeouts, a cluster).
    pub async fn with_connector(redis: RedisConnector, prefix: &str) -> Result<RedisSessionStore> {
        let client = redis.client("session store").await?;
        Ok(RedisSessionStore {
            client,
            redis,
            prefix: prefix.to_owned(),
        })
    }

    fn key(&self, id: &str) -> String {
        format!("{}:session:{id}", self.prefix)
    }

    fn error(&self, what: &str, err: fred::error::Error) -> Error {
        self.redis.error(&format!("session store {what}"), err)
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
