//! Who is on the other end.

/// The user of a connection (Channels' `scope["user"]`).
///
/// Every scope starts [`User::Anonymous`]; authentication middleware replaces it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum User {
    /// Nobody logged in (Django's `AnonymousUser`).
    #[default]
    Anonymous,
    /// A user an authentication backend vouched for.
    Authenticated {
        /// A stable identifier from the backend.
        id: String,
        /// The name to show.
        username: String,
    },
}

impl User {
    /// An authenticated user.
    pub fn authenticated(id: impl Into<String>, username: impl Into<String>) -> User {
        User::Authenticated {
            id: id.into(),
            username: username.into(),
        }
    }

    /// Whether a backend vouched for this user.
    pub fn is_authenticated(&self) -> bool {
        matches!(self, User::Authenticated { .. })
    }

    /// The username, or `None` when anonymous.
    pub fn username(&self) -> Option<&str> {
        match self {
            User::Anonymous => None,
            User::Authenticated { username, .. } => Some(username),
        }
    }
}
