//! `--layer`: which channel layer the chat-app runs on, chosen by the URL's scheme, and where
//! its room history and sessions live with it.
//!
//! * none: the in-memory layer (one process), history in memory;
//! * `redis://HOST:PORT[/DB]`: switchboard's Redis layer, history and sessions in Redis;
//! * `channels-redis://HOST:PORT[/DB]?flavour=core|pubsub&prefix=asgi` (and Django's
//!   `capacity`, `expiry`, `group_expiry`): channels_redis' own format, sharing groups with
//!   Django Channels processes. No room history there: messages
//!   that Django processes send would be missing from it, so there is none, as in the Channels
//!   tutorial. Sessions are the chat-app's own, in Redis on the first host.

use std::sync::Arc;
use std::time::Duration;

use switchboard::layer::{
    ChannelsRedisConfig, Flavour, InMemoryChannelLayer, LayerConfig, RedisChannelLayer,
    RedisConfig, SharedLayer,
};

use crate::cli::Cli;
use crate::history::{self, History};

/// The layer, the history store that goes with it, and the Redis the sessions are kept in.
pub struct Chosen {
    /// The channel layer.
    pub layer: SharedLayer,
    /// Where room history lives.
    pub history: History,
    /// The Redis URL of the session store (`None`: sessions in memory).
    pub sessions: Option<String>,
}

/// The scheme of `--layer channels-redis://…`.
pub const CHANNELS_REDIS_SCHEME: &str = "channels-redis://";

/// Connects the layer the `--layer` URLs name.
pub async fn layer_from_url(cli: &Cli) -> Result<Chosen, String> {
    let Some(first) = cli.layers.first() else {
        let layer = Arc::new(InMemoryChannelLayer::with_config(history::layer_config()));
        let history = if cli.no_history {
            History::off()
        } else {
            History::in_memory()
        };
        return Ok(Chosen {
            layer,
            history,
            sessions: None,
        });
    };
    if first.starts_with(CHANNELS_REDIS_SCHEME) {
        let config = channels_redis_config(&cli.layers, history::layer_config())?
            .symmetric_encryption_keys(cli.symmetric_encryption_keys.iter().cloned());
        let sessions = config.hosts[0].clone();
        let layer = config.connect().await.map_err(|err| err.to_string())?;
        if !cli.no_history {
            tracing::info!(
                "no room history on the channels-redis layer (Django processes' messages would be missing from it)"
            );
        }
        return Ok(Chosen {
            layer,
            history: History::off(),
            sessions: Some(sessions),
        });
    }
    if let Some(other) = cli.layers.iter().find(|url| !url.starts_with("redis://")) {
        return Err(format!(
            "--layer {other:?}: use redis://HOST:PORT[/DB] or {CHANNELS_REDIS_SCHEME}HOST:PORT[/DB]?flavour=core|pubsub&prefix=asgi, all of one kind"
        ));
    }
    let config = RedisConfig::new(cli.layers.clone())
        .prefix(cli.layer_prefix.clone())
        .layer(history::layer_config());
    let layer = RedisChannelLayer::connect(config)
        .await
        .map_err(|err| err.to_string())?;
    // History lives on the first Redis server, whatever the sharding of channels.
    let history = if cli.no_history {
        History::off()
    } else {
        History::redis(first, &cli.layer_prefix)
            .await
            .map_err(|err| err.to_string())?
    };
    Ok(Chosen {
        layer: Arc::new(layer),
        history,
        sessions: Some(first.clone()),
    })
}

/// Reads `channels-redis://HOST:PORT[/DB]?flavour=core|pubsub&prefix=asgi` URLs, one per host
/// in Django's `hosts` order; every URL must name the same options. Besides `flavour` and
/// `prefix`, Django's `capacity`, `expiry` and `group_expiry` (seconds) may be given, over
/// `limits`.
pub fn channels_redis_config(
    urls: &[String],
    limits: LayerConfig,
) -> Result<ChannelsRedisConfig, String> {
    let mut hosts = Vec::with_capacity(urls.len());
    let mut options: Option<(Flavour, String, LayerConfig)> = None;
    for url in urls {
        let Some(rest) = url.strip_prefix(CHANNELS_REDIS_SCHEME) else {
            return Err(format!(
                "--layer {url:?}: every URL must be {CHANNELS_REDIS_SCHEME}… when one is"
            ));
        };
        let (address, query) = rest.split_once('?').unwrap_or((rest, ""));
        if address.is_empty() {
            return Err(format!(
                "--layer {url:?}: name the Redis host, HOST:PORT[/DB]"
            ));
        }
        let parsed = url_options(url, query, limits.clone())?;
        match &options {
            Some(first) if *first != parsed => {
                return Err(format!(
                    "--layer {url:?}: every channels-redis URL must name the same options"
                ));
            }
            Some(_) => {}
            None => options = Some(parsed),
        }
        hosts.push(format!("redis://{address}"));
    }
    let (flavour, prefix, layer) = options.ok_or("--layer: no channels-redis URL")?;
    Ok(ChannelsRedisConfig::new(hosts)
        .flavour(flavour)
        .prefix(prefix)
        .layer(layer))
}

/// The options of one URL's query.
fn url_options(
    url: &str,
    query: &str,
    limits: LayerConfig,
) -> Result<(Flavour, String, LayerConfig), String> {
    let mut flavour = Flavour::Core;
    let mut prefix = "asgi".to_owned();
    let mut layer = limits;
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let number =
            |value: &str| {
                value.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    format!("--layer {url:?}: {pair:?} needs a whole number above 0")
                })
            };
        match pair.split_once('=') {
            Some(("flavour", value)) => {
                flavour = value
                    .parse()
                    .map_err(|err| format!("--layer {url:?}: {err}"))?;
            }
            Some(("prefix", value)) if !value.is_empty() => prefix = value.to_owned(),
            Some(("capacity", value)) => {
                layer = layer.capacity(usize::try_from(number(value)?).unwrap_or(usize::MAX));
            }
            Some(("expiry", value)) => layer = layer.expiry(Duration::from_secs(number(value)?)),
            Some(("group_expiry", value)) => {
                layer = layer.group_expiry(Duration::from_secs(number(value)?));
            }
            _ => {
                return Err(format!(
                    "--layer {url:?}: unknown option {pair:?}; the options are flavour=core|pubsub, prefix=NAME, capacity=N, expiry=SECONDS and group_expiry=SECONDS"
                ));
            }
        }
    }
    Ok((flavour, prefix, layer))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(list: &[&str]) -> Result<ChannelsRedisConfig, String> {
        let urls: Vec<String> = list.iter().map(|u| (*u).to_owned()).collect();
        channels_redis_config(&urls, LayerConfig::default())
    }

    #[test]
    fn channels_redis_urls() {
        let config = parse(&["channels-redis://127.0.0.1:6379/2"]).unwrap();
        assert_eq!(config.hosts, ["redis://127.0.0.1:6379/2"]);
        assert_eq!(config.flavour, Flavour::Core);
        assert_eq!(config.prefix, "asgi");
        assert_eq!(config.layer, LayerConfig::default());

        let config = parse(&[
            "channels-redis://a:1?flavour=pubsub&prefix=site",
            "channels-redis://b:2/0?prefix=site&flavour=pubsub",
        ])
        .unwrap();
        assert_eq!(config.hosts, ["redis://a:1", "redis://b:2/0"]);
        assert_eq!(config.flavour, Flavour::PubSub);
        assert_eq!(config.prefix, "site");

        let config =
            parse(&["channels-redis://a:1?capacity=1500&expiry=10&group_expiry=3600"]).unwrap();
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
            &["channels-redis://a:1?capacity=5", "channels-redis://b:1"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
