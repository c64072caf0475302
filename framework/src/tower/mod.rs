//! Mounting into and out of tower and axum (crate feature `tower`; `axum` adds what needs
//! axum's own types).
//!
//! Both ways, one connection is still one scope and one application call:
//!
//! - **switchboard inside axum**: [`ApplicationService`] is an [`Application`] as a tower
//!   `Service`. Mount it on an axum route (`Router::route_service("/ws/{*path}", service)`), and
//!   its WebSockets upgrade through hyper's upgrade in axum's server, with switchboard's
//!   handshake checks, connect timeout, keepalive, limits and channel layer, and a
//!   [`ShutdownHandle`] for their graceful shutdown.
//! - **axum inside switchboard**: [`TowerService`] is a tower HTTP `Service` (an axum `Router`
//!   with its extractors and tower-http layers) as an [`Application`], for
//!   `ProtocolTypeRouter::new().http(..)`. With the feature `axum`, a `Router` is an
//!   [`Application`] by itself.
//!
//! The guide `docs/axum.md` ("with axum", rendered as `guide::axum` with the feature `axum`)
//! walks through both.
//!
//! [`Application`]: crate::Application

mod app;
mod service;
mod shutdown;

pub use app::TowerService;
pub use service::{ApplicationService, Builder, IntoService};
pub use shutdown::ShutdownHandle;
