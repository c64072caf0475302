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
//!
//! On NATS the chat-app keeps no room history: the NATS layer keeps no group logs (core NATS
//! stores nothing). The process starts as with `--no-history` and says so in a warning. Its
//! sessions stay in the process: a login is valid on the process that made it.

use std::sync::Arc;

use switchboard::layer::{
    InMemoryChannelLayer, LayerConfig, NatsChannelLayer, NatsConfig, RedisChannelLayer,
    RedisConfig, SharedLayer,
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
}

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
                 redis+cluster://HOST:PORT[,HOST:PORT...] or nats://HOST:PORT"
            ));
        }
        Ok(LayerUrl::Redis(urls.to_vec()))
    }
}

fn is_host_port(node: &str) -> bool {
    node.rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}

/// Connects what the `--layer` URLs name, under `prefix`, with `limits` (the rooms' logs when
/// history is on).
pub async fn layer_from_url(
    urls: &[String],
    prefix: &str,
    limits: LayerConfig,
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
