//! Middleware: applications that fill in the scope or refuse the connection, then call the
//! application they wrap — Channels' `CookieMiddleware`, `SessionMiddleware`,
//! `AuthMiddlewareStack`, `OriginValidator` and `AllowedHostsOriginValidator`.
//!
//! | what | fills in / checks |
//! |---|---|
//! | [`CookieMiddleware`] | [`Scope::cookies`](crate::scope::Scope::cookies) |
//! | [`SessionMiddleware`] | [`Scope::session`](crate::scope::Scope::session), from a signed cookie and a [`SessionStore`] |
//! | [`AuthMiddleware`] | [`Scope::user`](crate::scope::Scope::user), from the session or a token, through your [`AuthBackend`] |
//! | [`AuthMiddlewareStack`] | the three above, in that order |
//! | [`OriginValidator`], [`AllowedHostsOriginValidator`] | refuse WebSockets from other sites with 403 |
//!
//! Views write sessions with [`login`], [`logout`] and [`save_session`], and cookies with
//! [`set_cookie`] and [`delete_cookie`]. A bad cookie, an unknown session, an unknown token or
//! an unreachable store never fails a request: the visitor is anonymous.
//!
//! The usual stack, as in the Channels tutorial:
//!
//! ```
//! use std::sync::Arc;
//! use switchboard::middleware::*;
//! use switchboard::prelude::*;
//!
//! struct Users;
//!
//! impl AuthBackend for Users {
//!     async fn get_user(&self, user_id: &str) -> Result<Option<User>> {
//!         Ok(Some(User::authenticated(user_id, user_id)))
//!     }
//! }
//!
//! # fn websocket_urlpatterns() -> URLRouter { URLRouter::new() }
//! # fn views() -> URLRouter { URLRouter::new() }
//! # fn main() -> switchboard::Result<()> {
//! # unsafe { std::env::set_var("SESSION_SECRET", "x".repeat(32)) };
//! let secret = std::env::var("SESSION_SECRET")
//!     .map_err(|_| Error::custom("set SESSION_SECRET to at least 32 random bytes"))?;
//! let sessions = SessionConfig::new(SessionKey::from_secret(secret)?).secure(true);
//! let users = Arc::new(Users);
//! let application = ProtocolTypeRouter::new()
//!     .http(AuthMiddlewareStack::new(sessions.clone(), users.clone(), views()))
//!     .websocket(AllowedHostsOriginValidator::new(AuthMiddlewareStack::new(
//!         sessions,
//!         users,
//!         websocket_urlpatterns(),
//!     )));
//! # Ok(()) }
//! ```

mod auth;
mod cookies;
mod origin;
mod session;
mod store;

pub use self::auth::{
    AuthBackend, AuthMiddleware, AuthMiddlewareStack, SESSION_USER_KEY, login, logout,
};
pub use self::cookies::{CookieMiddleware, delete_cookie, set_cookie};
pub use self::origin::{AllowedHostsOriginValidator, AllowedOrigins, OriginValidator};
pub use self::session::{
    MIN_SECRET_LEN, SessionConfig, SessionKey, SessionMiddleware, save_session,
};
#[cfg(feature = "redis")]
pub use self::store::RedisSessionStore;
pub use self::store::{MemorySessionStore, SessionStore};
pub use ::cookie::{Cookie, SameSite};
