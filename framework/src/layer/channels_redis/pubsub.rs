//! channels_redis' pub/sub layer (`channels_redis.pubsub.RedisPubSubChannelLayer`), spoken as
//! it is.
//!
//! * A group send publishes the message, a msgpack map, on `{prefix}__group__{group}`, on the
//!   host of that name; every process with members subscribes to it (once, however many
//!   members) and hands each message to its members.
//! * A channel's name is its Redis channel: `{prefix}specific.{process}!{n}` here (Django's
//!   are `{prefix}specific.{uuid}`), published to on the host of the name. This process
//!   subscribes to the pattern `{prefix}specific.{process}!*` on every host, once, instead of
//!   once per channel.
//! * A named channel (`thumbnails`) is a Redis channel of that very name: every process
//!   receiving on it gets every message (pub/sub has no queue).
//!
//! Redis pub/sub keeps nothing: a message sent while a process is not subscribed (or Redis is
//! away) is lost, as with channels_redis. `capacity` is this process' own queues' only, and
//! there is no `group_expiry` (members stay until they leave), as with channels_redis.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use fred::clients::SubscriberClient;
use fred::prelude::{ClientLike, EventInterface, PubsubInterface};
use fred::types::{Message as RedisMessage, Value};
use futures::future::{BoxFuture, FutureExt};
use tokio::sync::{Mutex, broadcast, mpsc, watch};

use super::ChannelsRedisConfig;
use super::codec::{self, Body};
use super::hash::consistent_hash;
use super::hosts::{self, Followed, Health};
use super::serializer::Serializer;
use crate::layer::{
    ChannelLayer, ChannelReceiver, Envelope, InMemoryChannelLayer, LayerStatus, PresenceTracker,
    SharedLayer, validate_channel_name, validate_group_name,
};
use crate::{Error, Result};

/// Publishes queued per host; a sender waits for a slot when Redis falls this far behind.
const PUBLISH_QUEUE: usize = 4096;

/// Most publishes sent in one pipeline.
const PUBLISH_BATCH: usize = 1024;

/// Something to publish on one host; a group's message is kept to deliver locally when Redis
/// cannot be reached.
struct Publish {
    channel: String,
    payload: Bytes,
    group: Option<(String, Arc<Envelope>)>,
}

struct Host {
    publisher: fred::clients::Client,
    subscriber: SubscriberClient,
    outgoing: mpsc::Sender<Publish>,
}

struct Inner {
    config: ChannelsRedisConfig,
    local: InMemoryChannelLayer,
    hosts: Vec<Host>,
    health: Health,
    serializer: Serializer,
    /// `{prefix}__group__`.
    group_prefix: String,
    /// Local members per subscribed group: the reference counts behind SUBSCRIBE/UNSUBSCRIBE,
    /// held across the round trip so a join waits for the subscription another join started.
    subscriptions: Mutex<HashMap<String, usize>>,
    /// Presence across the processes sharing these hosts (switchboard's own; Django processes
    /// neither see nor join its group).
    presence: PresenceTracker,
}

/// The layer for Django projects on `channels_redis.pubsub.RedisPubSubChannelLayer`.
///
/// Made by [`ChannelsRedisConfig::connect`] with [`Flavour::PubSub`](super::Flavour::PubSub),
/// or [`PubSubChannelLayer::connect`].
#[derive(Clone)]
pub struct PubSubChannelLayer {
    inner: Arc<Inner>,
}

impl PubSubChannelLayer {
    /// Connects to every host and subscribes to this process' channels there.
    pub async fn connect(config: ChannelsRedisConfig) -> Result<PubSubChannelLayer> {
        config.check()?;
        let channel_prefix = format!("{}specific.", config.prefix);
        // channels_redis' pub/sub layer has no group_expiry: a member stays until it leaves.
        let limits = config.layer.clone().group_expiry(Duration::MAX);
        let local = InMemoryChannelLayer::fan_out(limits, &channel_prefix);
        let mut hosts = Vec::with_capacity(config.hosts.len());
        let mut queues = Vec::with_capacity(config.hosts.len());
        for url in &config.hosts {
            let connector = hosts::connector(url, &config)?;
            let publisher = connector.client(hosts::PURPOSE).await?;
            let subscriber = connector.subscriber(hosts::PURPOSE).await?;
            let (outgoing, queued) = mpsc::channel(PUBLISH_QUEUE);
            hosts.push(Host {
                publisher,
                subscriber,
                outgoing,
            });
            queues.push(queued);
        }
        let presence = config.layer.presence.clone();
        let inner = Arc::new_cyclic(|weak: &std::sync::Weak<Inner>| {
            let weak = weak.clone();
            Inner {
                health: Health::new(&config.hosts),
                serializer: Serializer::new(0, &config.symmetric_encryption_keys, None),
                group_prefix: format!("{}__group__", config.prefix),
                subscriptions: Mutex::new(HashMap::new()),
                local,
                hosts,
                config,
                presence: PresenceTracker::new(presence, move || {
                    let inner = weak.upgrade()?;
                    Some(Arc::new(PubSubChannelLayer { inner }) as SharedLayer)
                }),
            }
        });
        let pattern = format!(
            "{}{}!*",
            glob_escape(&channel_prefix),
            inner.local.process_id()
        );
        for (index, queued) in queues.into_iter().enumerate() {
            let host = &inner.hosts[index];
            let psubscribe = host.subscriber.psubscribe(pattern.clone());
            match tokio::time::timeout(inner.config.command_timeout, psubscribe).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => {
                    return Err(Error::Layer(format!(
                        "PSUBSCRIBE on {}: {err}",
                        inner.health.url(index)
                    )));
                }
                Err(_) => {
                    return Err(Error::Layer(format!(
                        "PSUBSCRIBE on {}: timed out",
                        inner.health.url(index)
                    )));
                }
            }
            let messages = host.subscriber.message_rx();
            tokio::spawn(listen(Arc::downgrade(&inner), messages));
            tokio::spawn(publish(Arc::downgrade(&inner), index, queued));
            hosts::follow(Arc::downgrade(&inner), index, &host.subscriber);
        }
        Ok(PubSubChannelLayer { inner })
    }

    /// Groups this process is subscribed to right now.
    pub async fn subscribed_groups(&self) -> Vec<String> {
        let mut groups: Vec<String> = self
            .inner
            .subscriptions
            .lock()
            .await
            .keys()
            .cloned()
            .collect();
        groups.sort();
        groups
    }
}

impl Inner {
    fn group_channel(&self, group: &str) -> String {
        format!("{}{group}", self.group_prefix)
    }

    fn host_of(&self, redis_channel: &str) -> usize {
        consistent_hash(redis_channel, self.hosts.len())
    }

    /// Subscribes and waits until Redis has the subscription: fred answers SUBSCRIBE once it
    /// is written, and a PING on the same connection is answered after it, so a message
    /// published after this returns reaches this process.
    async fn subscribe(&self, redis_channel: &str) -> Result<()> {
        let host = self.host_of(redis_channel);
        let subscriber = &self.hosts[host].subscriber;
        let subscribe = async {
            subscriber.subscribe(redis_channel.to_owned()).await?;
            subscriber.ping::<Value>(None).await.map(|_| ())
        };
        match tokio::time::timeout(self.config.command_timeout, subscribe).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(Error::Layer(format!(
                "SUBSCRIBE {redis_channel} on {}: {err}",
                self.health.url(host)
            ))),
            Err(_) => Err(Error::Layer(format!(
                "SUBSCRIBE {redis_channel} on {}: timed out",
                self.health.url(host)
            ))),
        }
    }

    async fn unsubscribe(&self, redis_channel: &str) {
        let host = self.host_of(redis_channel);
        let unsubscribe = self.hosts[host]
            .subscriber
            .unsubscribe(redis_channel.to_owned());
        match tokio::time::timeout(self.config.command_timeout, unsubscribe).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                tracing::warn!(channel = %redis_channel, error = %err, "UNSUBSCRIBE failed")
            }
            Err(_) => tracing::warn!(channel = %redis_channel, "UNSUBSCRIBE timed out"),
        }
    }

    /// Queues a publish on the host of `channel`.
    async fn queue(&self, publish: Publish) -> Result<()> {
        let host = self.host_of(&publish.channel);
        self.hosts[host]
            .outgoing
            .send(publish)
            .await
            .map_err(|_| Error::Layer("the channels_redis layer has stopped".into()))
    }

    fn payload(&self, message: &Envelope) -> Result<Bytes> {
        let body = Body::from_json(message.json())
            .map_err(|err| Error::Layer(format!("cannot send as channels_redis: {err}")))?;
        Ok(self.serializer.serialize(&body.plain()).into())
    }

    /// Hands one received message to the members of its group or to its channel.
    async fn deliver(&self, message: &RedisMessage) {
        let Some(stored) = message.value.as_bytes() else {
            tracing::warn!(channel = %&*message.channel, "non-bytes channels_redis message: skipped");
            return;
        };
        let body = match self.serializer.deserialize(stored) {
            Ok(body) => body,
            Err(err) => {
                tracing::warn!(channel = %&*message.channel, error = %err, "unreadable channels_redis message: skipped");
                return;
            }
        };
        let decoded = match codec::decode(&body) {
            Ok(decoded) => decoded,
            Err(err) => {
                tracing::warn!(channel = %&*message.channel, error = %err, "unreadable channels_redis message: skipped");
                return;
            }
        };
        let envelope = Envelope::from_json(decoded.json);
        let result = match message.channel.strip_prefix(self.group_prefix.as_str()) {
            Some(group) => self.local.group_send(group, envelope).await,
            None => self.local.send(&message.channel, envelope).await,
        };
        if let Err(err) = result {
            tracing::debug!(channel = %&*message.channel, error = %err, "message not delivered");
        }
    }
}

impl Followed for Inner {
    fn health(&self) -> &Health {
        &self.health
    }

    /// Subscribes again to what this process was subscribed to on that host (fred keeps the
    /// list: groups, named channels, this process' pattern), and waits until Redis has it, so
    /// that the layer says it is back only once messages reach it again.
    async fn reconnected(&self, host: usize) {
        let subscriber = &self.hosts[host].subscriber;
        let again = async {
            subscriber.resubscribe_all().await?;
            subscriber.ping::<Value>(None).await.map(|_| ())
        };
        match tokio::time::timeout(self.config.command_timeout, again).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                tracing::warn!(url = %self.health.url(host), error = %err, "subscribing again failed")
            }
            Err(_) => tracing::warn!(url = %self.health.url(host), "subscribing again timed out"),
        }
    }
}

/// `*`, `?`, `[`, `]` and `\` stand for themselves in a PSUBSCRIBE pattern once escaped.
fn glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

async fn listen(weak: Weak<Inner>, mut messages: broadcast::Receiver<RedisMessage>) {
    loop {
        match messages.recv().await {
            Ok(message) => {
                let Some(inner) = weak.upgrade() else { return };
                inner.deliver(&message).await;
            }
            Err(broadcast::error::RecvError::Lagged(lost)) => {
                tracing::warn!(lost, "channels_redis listener fell behind: messages lost");
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Publishes one host's queue, what has accumulated at a time in one pipeline, until the layer
/// is dropped. What cannot be sent because Redis is known to be away reaches this process'
/// members of the group; what was sent but not answered is not delivered again (at most once).
async fn publish(weak: Weak<Inner>, host: usize, mut queued: mpsc::Receiver<Publish>) {
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    while queued.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
        let Some(inner) = weak.upgrade() else { return };
        if inner.health.is_up(host) {
            let pipeline = inner.hosts[host].publisher.pipeline();
            let mut queued_all = true;
            for item in &batch {
                let payload = Value::Bytes(item.payload.clone());
                if pipeline
                    .publish::<(), _, _>(item.channel.as_str(), payload)
                    .await
                    .is_err()
                {
                    queued_all = false;
                }
            }
            let sent =
                tokio::time::timeout(inner.config.command_timeout, pipeline.all::<Vec<Value>>())
                    .await;
            match sent {
                Ok(Ok(_)) if queued_all => {}
                Ok(Ok(_)) => tracing::warn!("some channels_redis messages could not be queued"),
                Ok(Err(err)) => {
                    tracing::warn!(url = %inner.health.url(host), error = %err, messages = batch.len(), "Redis did not take a batch: lost (at most once)")
                }
                Err(_) => {
                    tracing::warn!(url = %inner.health.url(host), messages = batch.len(), "Redis did not answer a batch in time: not delivered again here (at most once)")
                }
            }
        } else {
            for item in &batch {
                if let Some((group, envelope)) = &item.group {
                    let _ = inner.local.group_send(group, Arc::clone(envelope)).await;
                }
            }
        }
        batch.clear();
    }
}

impl PubSubChannelLayer {
    async fn do_group_add(&self, group: &str, channel: &str) -> Result<()> {
        validate_group_name(group)?;
        validate_channel_name(channel)?;
        let inner = &self.inner;
        let mut subscriptions = inner.subscriptions.lock().await;
        let was_member = inner.local.is_member(group, channel);
        // channels_redis' pub/sub layer takes only channels of its own process.
        inner.local.group_add(group, channel).await?;
        if was_member {
            return Ok(());
        }
        let members = subscriptions.entry(group.to_owned()).or_insert(0);
        *members += 1;
        if *members == 1 {
            let redis_channel = inner.group_channel(group);
            if inner.health.is_up(inner.host_of(&redis_channel))
                && let Err(err) = inner.subscribe(&redis_channel).await
            {
                tracing::warn!(%group, error = %err, "Redis subscription failed; serving this process' members only until Redis is back");
            }
        }
        Ok(())
    }

    async fn do_group_discard(&self, group: &str, channel: &str) -> Result<()> {
        validate_group_name(group)?;
        validate_channel_name(channel)?;
        let inner = &self.inner;
        let mut subscriptions = inner.subscriptions.lock().await;
        let was_member = inner.local.is_member(group, channel);
        inner.local.group_discard(group, channel).await?;
        if !was_member {
            return Ok(());
        }
        let Some(members) = subscriptions.get_mut(group) else {
            return Ok(());
        };
        *members = members.saturating_sub(1);
        if *members == 0 {
            subscriptions.remove(group);
            inner.unsubscribe(&inner.group_channel(group)).await;
        }
        Ok(())
    }

    async fn do_group_send(&self, group: &str, message: Arc<Envelope>) -> Result<()> {
        validate_group_name(group)?;
        let inner = &self.inner;
        let payload = inner.payload(&message)?;
        let publish = Publish {
            channel: inner.group_channel(group),
            payload,
            group: Some((group.to_owned(), message)),
        };
        inner.queue(publish).await
    }

    async fn do_send(&self, channel: &str, message: Arc<Envelope>) -> Result<()> {
        validate_channel_name(channel)?;
        let inner = &self.inner;
        if channel.contains('!') && inner.local.has_channel(channel) {
            return inner.local.send(channel, message).await;
        }
        let host = inner.host_of(channel);
        inner.health.available(host)?;
        let publish = Publish {
            channel: channel.to_owned(),
            payload: inner.payload(&message)?,
            group: None,
        };
        inner.queue(publish).await
    }

    async fn do_receive_channel(&self, name: &str) -> Result<ChannelReceiver> {
        let inner = &self.inner;
        let receiver = inner.local.receive_channel(name).await?;
        inner.subscribe(name).await?;
        // The subscription ends with the receiver.
        let weak = Arc::downgrade(inner);
        let name = name.to_owned();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let Some(inner) = weak.upgrade() else { return };
                if !inner.local.has_channel(&name) {
                    inner.unsubscribe(&name).await;
                    return;
                }
            }
        });
        Ok(receiver)
    }
}

impl ChannelLayer for PubSubChannelLayer {
    fn new_channel(&self) -> BoxFuture<'_, Result<ChannelReceiver>> {
        self.inner.local.new_channel()
    }

    fn send<'a>(&'a self, channel: &'a str, message: Arc<Envelope>) -> BoxFuture<'a, Result<()>> {
        self.do_send(channel, message).boxed()
    }

    fn group_add<'a>(&'a self, group: &'a str, channel: &'a str) -> BoxFuture<'a, Result<()>> {
        self.do_group_add(group, channel).boxed()
    }

    fn group_discard<'a>(&'a self, group: &'a str, channel: &'a str) -> BoxFuture<'a, Result<()>> {
        self.do_group_discard(group, channel).boxed()
    }

    fn group_send<'a>(
        &'a self,
        group: &'a str,
        message: Arc<Envelope>,
    ) -> BoxFuture<'a, Result<()>> {
        self.do_group_send(group, message).boxed()
    }

    fn receive_channel<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<ChannelReceiver>> {
        self.do_receive_channel(name).boxed()
    }

    fn status(&self) -> Option<watch::Receiver<LayerStatus>> {
        Some(self.inner.health.subscribe())
    }

    fn presence_tracker(&self) -> Option<&PresenceTracker> {
        Some(&self.inner.presence)
    }
}

#[cfg(test)]
mod tests {
    use super::glob_escape;

    #[test]
    fn patterns_take_the_prefix_literally() {
        assert_eq!(glob_escape("asgi"), "asgi");
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
