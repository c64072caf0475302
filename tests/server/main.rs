//! End-to-end tests of the server over real sockets on 127.0.0.1, one module per concept. The
//! consumers behind it are real ([`probe`]), the clients real tokio-tungstenite clients, or raw
//! TCP ([`raw`]) where the input must be malformed or arrive in a particular shape. Every
//! network await is bounded by `within`; nothing here asserts on how long anything took.
//!
//! What the consumer loop decides (groups, layer events, the answer to each outcome of
//! `connect()`) is tested next to it, through a communicator, in
//! `framework/src/consumer/runner.rs`; these tests cover what only a socket shows.

#[path = "../support/mod.rs"]
mod support;

mod probe;
mod raw;

mod handshake;
mod http;
mod lifecycle;
mod limits;
mod malformed;
mod routing;
