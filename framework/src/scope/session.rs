//! The session a connection carries.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::Result;

/// What a session holds: JSON values by key, as Django's session dict.
pub type SessionData = Map<String, Value>;

/// One browser's session (Channels' `scope["session"]`): an id and JSON values by key.
///
/// [`SessionMiddleware`](crate::middleware::SessionMiddleware) loads it into
/// [`Scope::session`](super::Scope::session) from the signed session cookie. A session without
/// an id is new: nothing is stored for it until an HTTP view saves it
/// ([`save_session`](crate::middleware::save_session), [`login`](crate::middleware::login)),
/// which also sends the cookie. WebSocket consumers read it; a WebSocket cannot set cookies
/// once accepted, so sessions are written from HTTP views.
///
/// ```
/// use switchboard::scope::Session;
///
/// let mut session = Session::new();
/// session.insert("theme", "dark").unwrap();
/// assert_eq!(session.get::<String>("theme").as_deref(), Some("dark"));
/// assert_eq!(session.get::<u32>("theme"), None); // another type reads as absent
/// assert_eq!(session.id(), None); // not saved yet
/// ```
#[derive(Clone, Default, PartialEq)]
pub struct Session {
    id: Option<String>,
    data: SessionData,
}

impl Session {
    /// An empty session that was never saved.
    pub fn new() -> Session {
        Session::default()
    }

    /// A session loaded from a store under `id` (for middleware and test harnesses).
    pub fn stored(id: impl Into<String>, data: SessionData) -> Session {
        Session {
            id: Some(id.into()),
            data,
        }
    }

    /// The session id (Django's `session_key`), `None` until saved. A credential: never log it.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    pub(crate) fn set_id(&mut self, id: Option<String>) {
        self.id = id;
    }

    /// The value under `key` as a `T`; `None` when absent or of another shape.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        self.data
            .get(key)
            .and_then(|value| T::deserialize(value).ok())
    }

    /// Sets `key` to `value` (in this copy; save it to keep it).
    pub fn insert(&mut self, key: impl Into<String>, value: impl Serialize) -> Result<()> {
        self.data.insert(key.into(), serde_json::to_value(value)?);
        Ok(())
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        self.data.remove(key)
    }

    /// Removes every key.
    pub fn clear(&mut self) {
        self.data.clear();
    }

    /// Whether it holds no keys.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// All keys and values.
    pub fn data(&self) -> &SessionData {
        &self.data
    }
}

/// The id is a credential: debug output (and so logged scopes) shows only whether there is one.
impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id.as_ref().map(|_| "<redacted>"))
            .field("keys", &self.data.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_the_id() {
        let mut session = Session::stored("secret-id", SessionData::new());
        session.insert("k", 1).unwrap();
        let shown = format!("{session:?}");
        assert!(!shown.contains("secret-id"), "{shown}");
        assert!(shown.contains("\"k\""), "{shown}");
    }

    #[test]
    fn values_round_trip_and_remove() {
        let mut session = Session::new();
        session.insert("n", 3).unwrap();
        assert_eq!(session.get::<i32>("n"), Some(3));
        assert_eq!(session.remove("n"), Some(Value::from(3)));
        assert!(session.is_empty());
    }
}
