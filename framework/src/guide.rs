//! The guides from the repository's `docs/` folder, rendered here so that `cargo doc` shows
//! them beside the API they teach; every example in them is compiled and run as a doctest.

#[doc = include_str!("../../docs/tutorial.md")]
pub mod tutorial {}

#[doc = include_str!("../../docs/concepts.md")]
pub mod concepts {}

#[doc = include_str!("../../docs/testing.md")]
pub mod testing {}

#[doc = include_str!("../../docs/workers.md")]
pub mod workers {}

#[cfg(all(feature = "redis", feature = "nats"))]
#[doc = include_str!("../../docs/scaling.md")]
pub mod scaling {}

#[doc = include_str!("../../docs/security.md")]
pub mod security {}

#[doc = include_str!("../../docs/migrating.md")]
pub mod migrating {}

#[cfg(feature = "channels-redis")]
#[doc = include_str!("../../docs/channels-redis.md")]
pub mod channels_redis {}

#[cfg(feature = "axum")]
#[doc = include_str!("../../docs/axum.md")]
pub mod axum {}

#[doc = include_str!("../../docs/performance.md")]
pub mod performance {}
