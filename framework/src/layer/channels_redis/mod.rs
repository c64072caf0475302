//! Channel layers that speak channels_redis' own formats (feature `channels-redis`), so a
//! switchboard process and Django Channels processes share groups on one Redis.
//!
//! Both of channels_redis' layers are spoken, as its version 4.3 writes and reads them (the
//! format is written down in `docs/channels-redis.md`):
//!
//! * [`Flavour::Core`], `channels_redis.core.RedisChannelLayer` (most projects' choice): a group
//!   is a sorted set of channel names, each process pops its own sorted set with `BZPOPMIN`, and
//!   messages are msgpack maps behind 12 random bytes, with `__asgi_channel__` naming their
//!   channels in the receiving process;
//! * [`Flavour::PubSub`], `channels_redis.pubsub.RedisPubSubChannelLayer`: msgpack maps
//!   published on the group's and the channel's Redis channels.
//!
//! Message bodies are msgpack maps with a `"type"`; they reach consumers as the JSON envelopes
//! of every other layer (see the `codec` module for how msgpack values map to JSON), so a
//! Django view's `group_send("chat_lobby", {"type": "chat.message", ...})` arrives in a
//! consumer's typed `event()`. A body that cannot be read is logged and skipped.
//!
//! ```no_run
//! use std::sync::Arc;
//! use switchboard::layer::{ChannelsRedisConfig, Flavour};
//! use switchboard::prelude::*;
//!
//! # async fn run(app: impl Application) -> switchboard::Result<()> {
//! // Django's CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
//! //                            "CONFIG": {"hosts": ["redis://127.0.0.1:6379/0"]}}}
//! let layer = ChannelsRedisConfig::new(["redis://127.0.0.1:6379/0"])
//!     .flavour(Flavour::Core)
//!     .connect()
//!     .await?;
//! Server::bind("127.0.0.1:8000").await?.channel_layer(layer).serve(app).await
//! # }
//! ```

mod codec;
mod core;
mod hash;
mod hosts;
mod pubsub;
mod serializer;

use std::time::Duration;

pub use self::core::CoreChannelLayer;
pub use self::pubsub::PubSubChannelLayer;
use super::{LayerConfig, SharedLayer};
use crate::{Error, Result};

/// Which of channels_redis' layers to speak: the one Django's `CHANNEL_LAYERS` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Flavour {
    /// `channels_redis.core.RedisChannelLayer`.
    #[default]
    Core,
    /// `channels_redis.pubsub.RedisPubSubChannelLayer`.
    PubSub,
}

impl std::str::FromStr for Flavour {
    type Err = Error;

    fn from_str(name: &str) -> Result<Flavour> {
        match name {
            "core" => Ok(Flavour::Core),
            "pubsub" => Ok(Flavour::PubSub),
            other => Err(Error::Layer(format!(
                "unknown channels_redis flavour {other:?}: use core (channels_redis.core.RedisChannelLayer) or pubsub (channels_redis.pubsub.RedisPubSubChannelLayer)"
            ))),
        }
    }
}

/// The `CONFIG` of a channels_redis layer in Django's `CHANNEL_LAYERS`, with the same names
/// and defaults. Both sides must agree on `hosts` (in the same order), `prefix` and
/// `symmetric_encryption_keys`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ChannelsRedisConfig {
    /// Redis URLs (`redis://HOST:PORT/DB`), in the order Django lists them: names are spread
    /// over them by channels_redis' CRC-32 hash, so the order matters.
    pub hosts: Vec<String>,
    /// Prefix of every key and Redis channel (default `asgi`). On the pub/sub layer it is all
    /// that separates deployments: Redis pub/sub ignores the database number.
    pub prefix: String,
    /// Which layer Django runs.
    pub flavour: Flavour,
    /// `capacity`, `channel_capacity`, `expiry` and `group_expiry`, with Channels' defaults.
    pub layer: LayerConfig,
    /// channels_redis' `symmetric_encryption_keys`: messages are Fernet-encrypted with the first
    /// and decrypted with any. Empty: not encrypted (the default).
    pub symmetric_encryption_keys: Vec<String>,
    /// How long start-up waits for each server (default 5 s).
    pub connect_timeout: Duration,
    /// How long one command may take before Redis is treated as unavailable (default 2 s).
    pub command_timeout: Duration,
}

impl ChannelsRedisConfig {
    /// The core layer on these servers with channels_redis' defaults.
    pub fn new<S: Into<String>>(hosts: impl IntoIterator<Item = S>) -> ChannelsRedisConfig {
        ChannelsRedisConfig {
            hosts: hosts.into_iter().map(Into::into).collect(),
            prefix: "asgi".to_owned(),
            flavour: Flavour::Core,
            layer: LayerConfig::default(),
            symmetric_encryption_keys: Vec::new(),
            connect_timeout: Duration::from_secs(5),
            command_timeout: Duration::from_secs(2),
        }
    }

    /// Sets [`ChannelsRedisConfig::prefix`].
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets [`ChannelsRedisConfig::flavour`].
    pub fn flavour(mut self, flavour: Flavour) -> Self {
        self.flavour = flavour;
        self
    }

    /// Sets the limits ([`ChannelsRedisConfig::layer`]).
    pub fn layer(mut self, layer: LayerConfig) -> Self {
        self.layer = layer;
        self
    }

    /// Sets [`ChannelsRedisConfig::symmetric_encryption_keys`].
    pub fn symmetric_encryption_keys<S: Into<String>>(
        mut self,
        keys: impl IntoIterator<Item = S>,
    ) -> Self {
        self.symmetric_encryption_keys = keys.into_iter().map(Into::into).collect();
        self
    }

    /// Connects the layer of [`ChannelsRedisConfig::flavour`].
    pub async fn connect(self) -> Result<SharedLayer> {
        Ok(match self.flavour {
            Flavour::Core => std::sync::Arc::new(CoreChannelLayer::connect(self).await?),
            Flavour::PubSub => std::sync::Arc::new(PubSubChannelLayer::connect(self).await?),
        })
    }

    fn check(&self) -> Result<()> {
        if self.hosts.is_empty() {
            return Err(Error::Layer("no Redis URL given for channels_redis".into()));
        }
        if self.prefix.is_empty() || self.prefix.chars().any(char::is_whitespace) {
            return Err(Error::Layer(format!(
                "channels_redis prefix {:?}: use the prefix of Django's CHANNEL_LAYERS (default \"asgi\"), without spaces",
                self.prefix
            )));
        }
        Ok(())
    }
}
