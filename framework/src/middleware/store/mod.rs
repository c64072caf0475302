//! Where sessions live: the [`SessionStore`] trait, the in-memory store and the Redis store.

#[cfg(feature = "redis")]
mod redis;

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::time::Instant;

use crate::error::Result;
use crate::scope::SessionData;

#[cfg(feature = "redis")]
pub use self::redis::RedisSessionStore;

/// Keeps session data by session id, each entry for a limited time (Django's session engine).
///
/// Ids are chosen by [`SessionMiddleware`](super::SessionMiddleware): random, 32 characters
/// from `[A-Za-z0-9]`. A store error while loading makes the visitor anonymous for that
/// request (and is logged); while saving it fails the [`login`](super::login) or
/// [`save_session`](super::save_session) call.
///
/// ```
/// use std::collections::HashMap;
/// use std::sync::{Arc, Mutex};
/// use std::time::Duration;
/// use switchboard::middleware::SessionStore;
/// use switchboard::scope::SessionData;
///
/// /// A store that never forgets (an example, not for production: it grows without bound).
/// #[derive(Default)]
/// struct Forever(Mutex<HashMap<String, SessionData>>);
///
/// impl SessionStore for Forever {
///     async fn load(&self, id: &str) -> switchboard::Result<Option<SessionData>> {
///         Ok(self.0.lock().unwrap().get(id).cloned())
///     }
///     async fn save(&self, id: &str, data: &SessionData, _ttl: Duration) -> switchboard::Result<()> {
///         self.0.lock().unwrap().insert(id.to_owned(), data.clone());
///         Ok(())
///     }
///     async fn delete(&self, id: &str) -> switchboard::Result<()> {
///         self.0.lock().unwrap().remove(id);
///         Ok(())
///     }
/// }
/// ```
pub trait SessionStore: Send + Sync + 'static {
    /// The data saved under `id`, or `None` when it is unknown or expired.
    fn load(&self, id: &str) -> impl Future<Output = Result<Option<SessionData>>> + Send;

    /// Saves `data` under `id` for `ttl`, replacing what was there.
    fn save(
        &self,
        id: &str,
        data: &SessionData,
        ttl: Duration,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Forgets `id`; an unknown id is not an error.
    fn delete(&self, id: &str) -> impl Future<Output = Result<()>> + Send;
}

/// A store shared with the rest of the application (to inspect or clear sessions).
impl<S: SessionStore> SessionStore for Arc<S> {
    fn load(&self, id: &str) -> impl Future<Output = Result<Option<SessionData>>> + Send {
        S::load(self, id)
    }

    fn save(
        &self,
        id: &str,
        data: &SessionData,
        ttl: Duration,
    ) -> impl Future<Output = Result<()>> + Send {
        S::save(self, id, data, ttl)
    }

    fn delete(&self, id: &str) -> impl Future<Output = Result<()>> + Send {
        S::delete(self, id)
    }
}

/// The object-safe twin of [`SessionStore`], so one configuration can hold any store. A box
/// per session operation (one per connection at most), none per frame.
pub(crate) trait DynSessionStore: Send + Sync + 'static {
    fn load_boxed<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<SessionData>>>;
    fn save_boxed<'a>(
        &'a self,
        id: &'a str,
        data: &'a SessionData,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<()>>;
    fn delete_boxed<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>>;
}

impl<S: SessionStore> DynSessionStore for S {
    fn load_boxed<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<SessionData>>> {
        Box::pin(self.load(id))
    }

    fn save_boxed<'a>(
        &'a self,
        id: &'a str,
        data: &'a SessionData,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.save(id, data, ttl))
    }

    fn delete_boxed<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.delete(id))
    }
}

/// Sessions in this process' memory: the default store, for one process.
///
/// Bounded: at most `capacity` sessions (default 10 000). Only saving adds one — visitors
/// without a session, and failed logins, store nothing — and when it is full the session
/// closest to expiry makes room, so a flood of logins costs the oldest sessions, never memory.
/// Expired sessions read as unknown and are dropped as the store is used. Sessions are lost
/// when the process stops and are not seen by other processes: use
/// `RedisSessionStore` (feature `redis`) for those.
///
/// ```
/// use std::time::Duration;
/// use switchboard::middleware::{MemorySessionStore, SessionStore};
/// use switchboard::scope::SessionData;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> switchboard::Result<()> {
/// let store = MemorySessionStore::with_capacity(2);
/// for id in ["a", "b", "c"] {
///     store.save(id, &SessionData::new(), Duration::from_secs(60)).await?;
/// }
/// assert_eq!(store.len(), 2);
/// assert!(store.load("a").await?.is_none()); // made room for "c"
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct MemorySessionStore {
    capacity: usize,
    inner: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    by_id: HashMap<String, (SessionData, Instant)>,
    /// The same entries ordered by expiry: the next to expire (or to make room) comes first.
    by_expiry: BTreeSet<(Instant, String)>,
}

impl Entries {
    fn remove(&mut self, id: &str) {
        if let Some((_, expires)) = self.by_id.remove(id) {
            self.by_expiry.remove(&(expires, id.to_owned()));
        }
    }

    fn purge_expired(&mut self, now: Instant) {
        while let Some((expires, _)) = self.by_expiry.first() {
            if *expires > now {
                break;
            }
            if let Some((_, id)) = self.by_expiry.pop_first() {
                self.by_id.remove(&id);
            }
        }
    }
}

/// Default capacity of [`MemorySessionStore`].
const DEFAULT_CAPACITY: usize = 10_000;

impl Default for MemorySessionStore {
    fn default() -> Self {
        MemorySessionStore::with_capacity(DEFAULT_CAPACITY)
    }
}

impl MemorySessionStore {
    /// A store for at most 10 000 sessions.
    pub fn new() -> MemorySessionStore {
        MemorySessionStore::default()
    }

    /// A store for at most `capacity` sessions (at least one).
    pub fn with_capacity(capacity: usize) -> MemorySessionStore {
        MemorySessionStore {
            capacity: capacity.max(1),
            inner: Mutex::default(),
        }
    }

    /// Live sessions held now.
    pub fn len(&self) -> usize {
        let mut entries = self.lock();
        entries.purge_expired(Instant::now());
        entries.by_id.len()
    }

    /// Whether no live session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // Every update leaves both maps consistent before anything can panic.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl SessionStore for MemorySessionStore {
    async fn load(&self, id: &str) -> Result<Option<SessionData>> {
        let mut entries = self.lock();
        entries.purge_expired(Instant::now());
        Ok(entries.by_id.get(id).map(|(data, _)| data.clone()))
    }

    async fn save(&self, id: &str, data: &SessionData, ttl: Duration) -> Result<()> {
        let now = Instant::now();
        let expires = now
            .checked_add(ttl)
            .unwrap_or(now + Duration::from_secs(86_400 * 365));
        let mut entries = self.lock();
        entries.remove(id);
        entries.purge_expired(now);
        while entries.by_id.len() >= self.capacity {
            match entries.by_expiry.pop_first() {
                Some((_, evicted)) => {
                    entries.by_id.remove(&evicted);
                }
                None => break,
            }
        }
        entries.by_id.insert(id.to_owned(), (data.clone(), expires));
        entries.by_expiry.insert((expires, id.to_owned()));
        Ok(())
    }

    async fn delete(&self, id: &str) -> Result<()> {
        self.lock().remove(id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data(n: i64) -> SessionData {
        let mut data = SessionData::new();
        data.insert("n".into(), json!(n));
        data
    }

    const MINUTE: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn saves_loads_replaces_and_deletes() {
        let store = MemorySessionStore::new();
        assert!(store.load("x").await.unwrap().is_none());
        store.save("x", &data(1), MINUTE).await.unwrap();
        store.save("x", &data(2), MINUTE).await.unwrap();
        assert_eq!(store.load("x").await.unwrap(), Some(data(2)));
        assert_eq!(store.len(), 1);
        store.delete("x").await.unwrap();
        store.delete("never-there").await.unwrap();
        assert!(store.load("x").await.unwrap().is_none());
        assert!(store.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn sessions_expire() {
        let store = MemorySessionStore::new();
        store.save("short", &data(1), MINUTE).await.unwrap();
        store.save("long", &data(2), MINUTE * 10).await.unwrap();
        tokio::time::advance(MINUTE).await;
        assert!(store.load("short").await.unwrap().is_none());
        assert_eq!(store.load("long").await.unwrap(), Some(data(2)));
        assert_eq!(store.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_of_saves_stays_within_capacity_and_evicts_the_oldest() {
        let store = MemorySessionStore::with_capacity(100);
        for n in 0..10_000 {
            store
                .save(&format!("s{n}"), &data(n), MINUTE)
                .await
                .unwrap();
            tokio::time::advance(Duration::from_millis(1)).await;
        }
        assert_eq!(store.len(), 100);
        let entries = store.lock();
        assert_eq!(entries.by_expiry.len(), 100, "both indexes stay in step");
        assert!(entries.by_id.contains_key("s9999"));
        assert!(!entries.by_id.contains_key("s9899"));
        assert!(entries.by_id.contains_key("s9900"));
    }

    #[tokio::test]
    async fn resaving_an_id_does_not_leave_a_stale_expiry_behind() {
        let store = MemorySessionStore::with_capacity(2);
        for _ in 0..5 {
            store.save("same", &data(1), MINUTE).await.unwrap();
        }
        store.save("other", &data(2), MINUTE).await.unwrap();
        assert_eq!(store.load("same").await.unwrap(), Some(data(1)));
        assert_eq!(store.lock().by_expiry.len(), 2);
    }
}
