//! The switchboard group chat: rooms over WebSockets, a lobby and a room page, one binary.
//!
//! Built only on switchboard's public API, laid out as a Django Channels project would be:
//! [`routing`] is the routing module (Channels' `asgi.py` + `routing.py`), [`consumers`] holds
//! the `ChatConsumer`, [`views`] the HTTP pages, [`rooms`] the rules for room names and
//! messages that all three follow, [`limits`] what one client may cost. The wire contract is
//! `chat-protocol.md`.

pub mod backend;
pub mod cli;
pub mod consumers;
mod decode;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzz;
pub mod group_format;
pub mod limits;
pub mod rooms;
pub mod routing;
pub mod state;
pub mod views;
