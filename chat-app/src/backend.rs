//! What `--layer` selects: the channel layer (which keeps the rooms' logs, their history) and
//! where sessions live. Every scheme is dispatched here, in [`layer_from_url`], and nowhere
//! else.
//!
//! | `--layer` | channel layer | history | sessions |
//! |---|---|---|---|
//! | none | in-memory | in memory | in memory |
//! | `redis://HOST:PORT[/DB]`, several to shard | Redis pub/sub | each room on its server | first server |
//! | `redis+cluster://HOST:PORT[,HOST:PORT...]` | Redis Cluster, sharded pub/sub | the cluster | the cluster |
//! | `nats://HOST:PORT` | NATS | none (see below) | in memory |
//! | `channels-redis://HOST:PORT[/DB]?flavour=core\|pubsub&prefix=asgi`, one per host | channels_redis' own format, shared with Django processes | none (see below) | first host |
//!
//! On NATS the chat-app keeps no room history: the NATS layer keeps no group logs (core NATS
//! stores nothing). The process starts as with `--no-history` and says so in a warning. Its
//! sessions stay in the process: a login is valid on the process that made it.
//!
//! On channels-redis neither: channels_redis keeps no logs, and messages that Django processes
//! send would be missing from one. Sessions are the chat-app's own (not Django's), on the first
//! host under `--layer-prefix`.

use std::sync::Arc;
use std::time::Duration;

use switchboard::layer::{
    ChannelsRedisConfig, Flavour, InMemoryChannelLayer, LayerConfig, NatsChannelLayer, NatsConfig,
    RedisChannelLayer, RedisConfig, SharedLayer,
};

/// A process' backends, as its `--layer` URLs say.
pub struct Backend {
    /// The channel layer every consumer uses.
    pub layer: SharedLayer,
    /// Whether the layer keeps the rooms' logs (history and recovery).
    pub history: bool,
    /// The Redis that keeps sessions (a URL as `fred` reads it), when there is one.
    pub sessions: Option<String>,
}

/// Which engine the `--layer` URLs name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerUrl {
    /// No `--layer`: one process, everything in memory.
    InMemory,
    /// `redis://…`, one or several servers (rooms sharded between them).
    Redis(Vec<String>),
    /// `redis+cluster://HOST:PORT[,HOST:PORT...]`: the cluster's seed nodes.
    RedisCluster(Vec<String>),
    /// `nats://HOST:PORT`.
    Nats(String),
    /// `channels-redis://HOST:PORT[/DB]?...`, one per host: channels_redis' formats.
    ChannelsRedis(ChannelsRedisUrls),
}

/// What `channels-redis://` URLs say: the hosts in Django's order and the layer's options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelsRedisUrls {
    /// `redis://HOST:PORT[/DB]`, in order.
    pub hosts: Vec<String>,
    /// `flavour=core|pubsub` (default core).
    pub flavour: Flavour,
    /// `prefix=` (default `asgi`).
    pub prefix: String,
    /// Django's `capacity`, `expiry` and `group_expiry`, when given.
    pub capacity: Option<usize>,
    /// See `capacity`.
    pub expiry: Option<Duration>,
    /// See `capacity`.
    pub group_expiry: Option<Duration>,
}

/// The scheme of `--layer channels-redis://…`.
pub const CHANNELS_REDIS_SCHEME: &str = "channels-redis://";

impl LayerUrl {
    /// Reads the `--layer` values (already split on commas).
    pub fn parse(urls: &[String]) -> Result<LayerUrl, String> {
        let Some(first) = urls.first() else {
            return Ok(LayerUrl::InMemory);
        };
        if let Some(seed) = first.strip_prefix("redis+cluster://") {
            // `redis+cluster://a:1,b:2` arrives split: the nodes after the first have no scheme.
            let mut nodes = vec![seed.to_owned()];
            for node in &urls[1..] {
                nodes.push(
                    node.strip_prefix("redis+cluster://")
                        .unwrap_or(node)
                        .to_owned(),
                );
            }
            if let Some(bad) = nodes.iter().find(|node| !is_host_port(node)) {
                return Err(format!(
                    "--layer: {bad:?} is not a cluster node: write redis+cluster://HOST:PORT[,HOST:PORT...]"
                ));
            }
            return Ok(LayerUrl::RedisCluster(nodes));
        }
        if first.starts_with(CHANNELS_REDIS_SCHEME) {
            return channels_redis_urls(urls).map(LayerUrl::ChannelsRedis);
        }
        if first.starts_with("nats://") {
            if urls.len() > 1 {
                return Err(
                    "--layer: give one nats:// URL; the client learns the other servers of a \
                     NATS cluster from it"
                        .to_owned(),
                );
            }
            return Ok(LayerUrl::Nats(first.clone()));
        }
        if let Some(bad) = urls
            .iter()
            .find(|url| !url.starts_with("redis://") && !url.starts_with("rediss://"))
        {
            return Err(format!(
                "--layer: unknown layer URL {bad:?}: use redis://HOST:PORT[/DB], \
                 redis+cluster://HOST:PORT[,HOST:PORT...], nats://HOST:PORT or \
                 {CHANNELS_REDIS_SCHEME}HOST:PORT[/DB]?flavour=core|pubsub&prefix=asgi"
            ));
        }
        Ok(LayerUrl::Redis(urls.to_vec()))
    }
}

impl ChannelsRedisUrls {
    /// The layer's configuration, over `limits` (what the URLs do not say).
    pub fn config(&self, limits: LayerConfig) -> ChannelsRedisConfig {
        let mut layer = limits;
        if let Some(capacity) = self.capacity {
            layer = layer.capacity(capacity);
        }
        if let Some(expiry) = self.expiry {
            layer = layer.expiry(expiry);
        }
        if let Some(group_expiry) = self.group_expiry {
            layer = layer.group_expiry(group_expiry);
        }
        ChannelsRedisConfig::new(self.hosts.clone())
            .flavour(self.flavour)
            .prefix(self.prefix.clone())
            .layer(layer)
    }
}

/// Reads `channels-redis://HOST:PORT[/DB]?flavour=core|pubsub&prefix=asgi` URLs, one per host
/// in Django's `hosts` order; every URL must name the same options. Besides `flavour` and
/// `prefix`, Django's `capacity`, `expiry` and `group_expiry` (seconds) may be given.
fn channels_redis_urls(urls: &[String]) -> Result<ChannelsRedisUrls, String> {
    let mut parsed: Option<ChannelsRedisUrls> = None;
    for url in urls {
        let Some(rest) = url.strip_prefix(CHANNELS_REDIS_SCHEME) else {
            return Err(format!(
                "--layer: {url:?}: every URL must be {CHANNELS_REDIS_SCHEME}… when one is"
            ));
        };
        let (address, query) = rest.split_once('?').unwrap_or((rest, ""));
        if address.is_empty() {
            return Err(format!(
                "--layer: {url:?}: name the Redis host, {CHANNELS_REDIS_SCHEME}HOST:PORT[/DB]"
            ));
        }
        let mut options = url_options(url, query)?;
        let host = format!("redis://{address}");
        match &mut parsed {
            Some(first) => {
                options.hosts.clone_from(&first.hosts);
                if *first != options {
                    return Err(format!(
                        "--layer: {url:?}: every channels-redis URL must name the same options"
                    ));
                }
                first.hosts.push(host);
            }
            None => {
                options.hosts = vec![host];
                parsed = Some(options);
            }
        }
    }
    parsed.ok_or_else(|| "--layer: no channels-redis URL".to_owned())
}

/// The options of one URL's query.
fn url_options(url: &str, query: &str) -> Result<ChannelsRedisUrls, String> {
    let mut options = ChannelsRedisUrls {
        hosts: Vec::new(),
        flavour: Flavour::Core,
        prefix: "asgi".to_owned(),
        capacity: None,
        expiry: None,
        group_expiry: None,
    };
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let number =
            |value: &str| {
                value.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    format!("--layer: {url:?}: {pair:?} needs a whole number above 0")
                })
            };
        match pair.split_once('=') {
            Some(("flavour", value)) => {
                options.flavour = value
                    .parse()
                    .map_err(|err| format!("--layer: {url:?}: {err}"))?;
            }
            Some(("prefix", value)) if !value.is_empty() => options.prefix = value.to_owned(),
            Some(("capacity", value)) => {
                options.capacity = Some(usize::try_from(number(value)?).unwrap_or(usize::MAX));
            }
            Some(("expiry", value)) => options.expiry = Some(Duration::from_secs(number(value)?)),
            Some(("group_expiry", value)) => {
                options.group_expiry = Some(Duration::from_secs(number(value)?));
            }
            _ => {
                return Err(format!(
                    "--layer: {url:?}: unknown option {pair:?}; the options are flavour=core|pubsub, prefix=NAME, capacity=N, expiry=SECONDS and group_expiry=SECONDS"
                ));
            }
        }
    }
    Ok(options)
}

fn is_host_port(node: &str) -> bool {
    node.rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}

/// Connects what the `--layer` URLs name, under `prefix`, with `limits` (the rooms' logs when
/// history is on); `symmetric_encryption_keys` are for the channels-redis layer.
pub async fn layer_from_url(
    urls: &[String],
    prefix: &str,
    limits: LayerConfig,
    symmetric_encryption_keys: &[String],
) -> Result<Backend, String> {
    let history = !limits.logs.is_empty();
    match LayerUrl::parse(urls)? {
        LayerUrl::InMemory => Ok(Backend {
            layer: Arc::new(InMemoryChannelLayer::with_config(limits)),
            history,
            sessions: None,
        }),
        LayerUrl::Redis(servers) => {
            let config = RedisConfig::new(servers).prefix(prefix).layer(limits);
            redis_backend(config, history).await
        }
        LayerUrl::RedisCluster(nodes) => {
            let config = RedisConfig::cluster(nodes).prefix(prefix).layer(limits);
            redis_backend(config, history).await
        }
        LayerUrl::ChannelsRedis(urls) => {
            let sessions = urls.hosts[0].clone();
            let layer = urls
                .config(limits)
                .symmetric_encryption_keys(symmetric_encryption_keys.iter().cloned())
                .connect()
                .await
                .map_err(|err| err.to_string())?;
            if history {
                tracing::warn!(
                    "room history is not kept on the channels-redis layer (channels_redis keeps no group logs, and Django processes' messages would be missing): running as with --no-history"
                );
            }
            Ok(Backend {
                layer,
                history: false,
                sessions: Some(sessions),
            })
        }
        LayerUrl::Nats(url) => {
            let config = NatsConfig::new(url).prefix(prefix).layer(limits);
            let layer = NatsChannelLayer::connect(config)
                .await
                .map_err(|err| err.to_string())?;
            if history {
                tracing::warn!(
                    "room history is not kept on the NATS layer (it keeps no group logs):                      running as with --no-history; use a redis:// or redis+cluster:// layer for                      history and recovery"
                );
            }
            Ok(Backend {
                layer: Arc::new(layer),
                history: false,
                sessions: None,
            })
        }
    }
}

/// A Redis layer, with sessions on the first server (whatever the sharding of rooms), or on the
/// cluster.
async fn redis_backend(config: RedisConfig, history: bool) -> Result<Backend, String> {
    let store = config.client_urls().swap_remove(0);
    let layer = RedisChannelLayer::connect(config)
        .await
        .map_err(|err| err.to_string())?;
    Ok(Backend {
        layer: Arc::new(layer),
        history,
        sessions: Some(store),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(urls: &[&str]) -> Result<LayerUrl, String> {
        LayerUrl::parse(&urls.iter().map(|u| u.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn schemes() {
        assert_eq!(parse(&[]), Ok(LayerUrl::InMemory));
        assert_eq!(
            parse(&["redis://a:1/0", "redis://b:2"]),
            Ok(LayerUrl::Redis(vec![
                "redis://a:1/0".into(),
                "redis://b:2".into()
            ]))
        );
        assert_eq!(
            parse(&["redis+cluster://a:1", "b:2", "redis+cluster://c:3"]),
            Ok(LayerUrl::RedisCluster(vec![
                "a:1".into(),
                "b:2".into(),
                "c:3".into()
            ]))
        );
        assert_eq!(
            parse(&["nats://127.0.0.1:4222"]),
            Ok(LayerUrl::Nats("nats://127.0.0.1:4222".into()))
        );
    }

    #[test]
    fn channels_redis_urls() {
        let Ok(LayerUrl::ChannelsRedis(one)) = parse(&["channels-redis://127.0.0.1:6379/2"]) else {
            panic!("a channels-redis URL");
        };
        assert_eq!(one.hosts, ["redis://127.0.0.1:6379/2"]);
        assert_eq!((one.flavour, one.prefix.as_str()), (Flavour::Core, "asgi"));
        let config = one.config(LayerConfig::default());
        assert_eq!(config.layer, LayerConfig::default());

        let Ok(LayerUrl::ChannelsRedis(two)) = parse(&[
            "channels-redis://a:1?flavour=pubsub&prefix=site&capacity=1500&expiry=10&group_expiry=3600",
            "channels-redis://b:2/0?prefix=site&flavour=pubsub&group_expiry=3600&expiry=10&capacity=1500",
        ]) else {
            panic!("two channels-redis URLs");
        };
        assert_eq!(two.hosts, ["redis://a:1", "redis://b:2/0"]);
        assert_eq!(
            (two.flavour, two.prefix.as_str()),
            (Flavour::PubSub, "site")
        );
        let config = two.config(LayerConfig::default());
        assert_eq!(config.layer.capacity, 1500);
        assert_eq!(config.layer.expiry, Duration::from_secs(10));
        assert_eq!(config.layer.group_expiry, Duration::from_secs(3600));

        for bad in [
            &["channels-redis://a:1?flavour=cluster"][..],
            &["channels-redis://a:1?db=3"],
            &["channels-redis://?flavour=core"],
            &[
                "channels-redis://a:1",
                "channels-redis://b:1?flavour=pubsub",
            ],
            &["channels-redis://a:1", "redis://b:1"],
            &["channels-redis://a:1?capacity=0"],
            &["channels-redis://a:1?expiry=soon"],
        ] {
            let err = parse(bad).expect_err("refused");
            assert!(err.starts_with("--layer: "), "{err}");
        }
    }

    #[test]
    fn bad_urls_say_what_to_write() {
        for bad in [
            &["http://a:1"][..],
            &["redis://a:1", "nats://b:2"],
            &["nats://a:1", "nats://b:2"],
            &["redis+cluster://a"],
            &["redis+cluster://a:1", "b:x"],
        ] {
            let err = parse(bad).expect_err("refused");
            assert!(err.starts_with("--layer: "), "{err}");
        }
    }
}
