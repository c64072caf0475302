//! The Redis channel layer: many processes, one set of groups (feature `redis`).
//!
//! Built on Redis pub/sub, like channels_redis' `RedisPubSubChannelLayer`, with bounded queues
//! and an outage story:
//!
//! * each process holds one subscriber and one publisher connection per Redis server;
//! * a group is one Redis channel, subscribed once per process while it has local members;
//! * `group_send` is one `PUBLISH`, whatever the number of members and processes; each process
//!   decodes what it receives once and shares it among its local members;
//! * channel names carry the process id (`specific.<process>!<n>`), so a direct `send` is one
//!   `PUBLISH` to the owning process, or no Redis at all when the owner is this process;
//! * names are spread over several Redis servers by a stable hash (channels_redis' `hosts`).
//!
//! When Redis goes away the process keeps serving its own members (a group send that cannot be
//! published is delivered locally), reconnects with backoff, subscribes every live group again,
//! and tells consumers through [`ChannelLayer::status`]. Delivery across processes is
//! at-most-once: what is published during an outage is lost.

mod log;
mod pipeline;
mod shard;
mod topology;
mod wire;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fred::prelude::{ClientLike, EventInterface, ListInterface};
use fred::types::{Message as RedisMessage, Value};
use futures::future::{BoxFuture, FutureExt};
use tokio::sync::{Mutex, Notify, broadcast, mpsc, watch};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::{
    ChannelLayer, ChannelReceiver, Envelope, InMemoryChannelLayer, LayerConfig, LayerStatus,
    LogSlice, Position, PresenceTracker, SharedLayer, owner_process, validate_channel_name,
    validate_group_name,
};
use crate::error::{Error, Result};
use crate::layer::log::LogPatterns;
use crate::redis::RedisConnector;
use pipeline::Outgoing;
use topology::Naming;
pub use topology::{DEFAULT_PARTITIONS, RedisTopology};

/// How to reach Redis and how to name things there.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// One URL per Redis server (`redis://HOST:PORT/DB`); names are sharded across them. For
    /// a cluster, its seed nodes as `HOST:PORT` (see [`RedisConfig::cluster`]).
    pub hosts: Vec<String>,
    /// Servers, or one cluster.
    pub topology: RedisTopology,
    /// Prefix of every Redis channel, so several applications can share one Redis.
    /// Default `switchboard`.
    pub prefix: String,
    /// Local limits (capacity, expiry, group expiry), as the in-memory layer.
    pub layer: LayerConfig,
    /// How long start-up waits for each server, and how long one command may take before
    /// the layer treats Redis as unavailable. Default 5 s at start-up, 2 s per command.
    pub connect_timeout: Duration,
    /// See `connect_timeout`.
    pub command_timeout: Duration,
}

impl RedisConfig {
    /// A configuration for these servers with the defaults.
    pub fn new<S: Into<String>>(hosts: impl IntoIterator<Item = S>) -> RedisConfig {
        RedisConfig {
            hosts: hosts.into_iter().map(Into::into).collect(),
            topology: RedisTopology::Servers,
            prefix: "switchboard".to_owned(),
            layer: LayerConfig::default(),
            connect_timeout: Duration::from_secs(5),
            command_timeout: Duration::from_secs(2),
        }
    }

    /// A configuration for a Redis Cluster reached through these nodes (`HOST:PORT`; one is
    /// enough, the client learns the others), with the defaults and
    /// [`DEFAULT_PARTITIONS`] partitions.
    ///
    /// ```
    /// use switchboard::layer::{RedisConfig, RedisTopology};
    ///
    /// let config = RedisConfig::cluster(["127.0.0.1:7000", "127.0.0.1:7001"]);
    /// assert_eq!(config.topology, RedisTopology::Cluster { partitions: 16 });
    /// ```
    pub fn cluster<S: Into<String>>(nodes: impl IntoIterator<Item = S>) -> RedisConfig {
        RedisConfig {
            topology: RedisTopology::Cluster {
                partitions: DEFAULT_PARTITIONS,
            },
            ..RedisConfig::new(nodes)
        }
    }

    /// The URLs a Redis client reads for these hosts: each server's own, or for a cluster one,
    /// `redis-cluster://FIRST?node=SECOND&node=…` (what other Redis users of the same
    /// deployment, such as a session store, connect to).
    ///
    /// ```
    /// use switchboard::layer::RedisConfig;
    ///
    /// let config = RedisConfig::cluster(["a:1", "b:2", "c:3"]);
    /// assert_eq!(config.client_urls(), ["redis-cluster://a:1?node=b:2&node=c:3"]);
    /// ```
    pub fn client_urls(&self) -> Vec<String> {
        match self.topology {
            RedisTopology::Servers => self.hosts.clone(),
            RedisTopology::Cluster { .. } => {
                let mut url = "redis-cluster://".to_owned();
                for (n, node) in self.hosts.iter().enumerate() {
                    if n > 0 {
                        url.push_str(if n == 1 { "?node=" } else { "&node=" });
                    }
                    url.push_str(node);
                }
                vec![url]
            }
        }
    }

    /// The Redis channel a group's messages travel on with this configuration: the group's
    /// own on servers, its partition's on a cluster (to find the node that carries a room).
    ///
    /// ```
    /// use switchboard::layer::RedisConfig;
    ///
    /// assert_eq!(RedisConfig::new(["redis://a:1"]).group_channel("chat_x"), "switchboard:group:chat_x");
    /// assert!(RedisConfig::cluster(["a:1"]).group_channel("chat_x").starts_with("switchboard:group:{p"));
    /// ```
    pub fn group_channel(&self, group: &str) -> String {
        Naming::new(&self.prefix, self.topology).group_channel(group)
    }

    /// Sets the prefix.
    pub fn prefix(mut self, prefix: impl Into<String>) -> RedisConfig {
        self.prefix = prefix.into();
        self
    }

    /// Sets the local limits.
    pub fn layer(mut self, layer: LayerConfig) -> RedisConfig {
        self.layer = layer;
        self
    }
}

struct Shard {
    /// How to reach this server, and to build more clients for it: every named-channel
    /// receiver blocks one connection in `BRPOP`.
    redis: RedisConnector,
    outgoing: mpsc::Sender<Outgoing>,
    publisher: fred::clients::Client,
    subscriber: fred::clients::SubscriberClient,
    connected: AtomicBool,
    /// Messages this server's subscriber has received that the listener has not delivered yet.
    backlog: AtomicUsize,
}

struct Inner {
    /// This process' members, channels and workers. It keeps no group logs: those live in
    /// Redis.
    local: InMemoryChannelLayer,
    /// The groups that keep a log, in Redis.
    logs: LogPatterns,
    /// Channel and key names, and the pub/sub commands, of servers or of a cluster.
    naming: Naming,
    shards: Vec<Shard>,
    command_timeout: Duration,
    /// The reference counts behind SUBSCRIBE/UNSUBSCRIBE. An async lock, held across the
    /// Redis round trip, so a join waits for the subscription another join started.
    subscriptions: Mutex<Subscriptions>,
    status: watch::Sender<LayerStatus>,
    /// Named channels whose Redis list was found full, and until when sends to them fail
    /// without asking Redis (see [`pipeline::FULL_BACKOFF`]).
    full_channels: std::sync::Mutex<HashMap<String, Instant>>,
    /// Woken when every listener's backlog is short again (see [`Inner::wait_for_listeners`]).
    caught_up: Notify,
    /// Presence across the processes sharing this Redis.
    presence: PresenceTracker,
}

/// What this process is subscribed to.
#[derive(Default)]
struct Subscriptions {
    /// Local members per group with any.
    groups: HashMap<String, usize>,
    /// Groups with members per subscribed Redis channel: one each on servers, all the groups
    /// of a partition on a cluster.
    channels: HashMap<String, usize>,
}

impl Inner {
    /// Waits while a listener of this process is more than [`BACKLOG_HIGH`] messages behind.
    ///
    /// Without it an overloaded process keeps reading its senders and publishing for them,
    /// while what it receives back for its members waits, then is dropped when the
    /// subscriber's queue overflows: the more was offered, the less was delivered (at twice
    /// the rate two processes sustained, a tenth of it). Holding the pipeline back holds the
    /// senders back instead (their sends wait for a queue slot, their sockets for a read), as
    /// a single process that fans out in its senders' tasks does.
    async fn wait_for_listeners(&self) {
        loop {
            let caught_up = self.caught_up.notified();
            tokio::pin!(caught_up);
            caught_up.as_mut().enable();
            if self
                .shards
                .iter()
                .all(|shard| shard.backlog.load(Ordering::Relaxed) <= BACKLOG_HIGH)
            {
                return;
            }
            // Bounded: a listener that stops (its connection lost) wakes nobody.
            let _ = tokio::time::timeout(BACKLOG_RECHECK, caught_up).await;
        }
    }
}

/// A listener this many received messages behind holds its process' sends back...
const BACKLOG_HIGH: usize = 256;
/// ...until it is this close to caught up.
const BACKLOG_LOW: usize = 64;
/// How often a held-back pipeline looks again without being woken.
const BACKLOG_RECHECK: Duration = Duration::from_millis(10);

/// The channel layer for several processes sharing Redis (Channels' `channels_redis`).
///
/// ```no_run
/// use std::sync::Arc;
/// use switchboard::layer::{RedisChannelLayer, RedisConfig};
/// use switchboard::prelude::*;
///
/// # async fn run(app: impl Application) -> switchboard::Result<()> {
/// let layer = RedisChannelLayer::connect(RedisConfig::new(["redis://127.0.0.1:6379/0"])).await?;
/// Server::bind("127.0.0.1:8000").await?.channel_layer(Arc::new(layer)).serve(app).await
/// # }
/// ```
#[derive(Clone)]
pub struct RedisChannelLayer {
    inner: Arc<Inner>,
}

impl RedisChannelLayer {
    /// Connects to every server, subscribes to this process' own channel and starts listening.
    /// Fails with a clear error when a server does not answer within the connect timeout.
    pub async fn connect(config: RedisConfig) -> Result<RedisChannelLayer> {
        if config.hosts.is_empty() {
            return Err(Error::Config("no Redis URL given".into()));
        }
        let logs = config.layer.logs.clone();
        let local = InMemoryChannelLayer::fan_out(config.layer.clone(), "specific.");
        let urls = config.client_urls();
        let mut shards = Vec::with_capacity(urls.len());
        let mut queues = Vec::with_capacity(urls.len());
        for url in &urls {
            let (shard, queued) = connect_shard(url, &config).await?;
            shards.push(shard);
            queues.push(queued);
        }
        let (status, _) = watch::channel(LayerStatus::Connected);
        let presence = config.layer.presence.clone();
        let layer = RedisChannelLayer {
            inner: Arc::new_cyclic(|weak: &std::sync::Weak<Inner>| {
                let weak = weak.clone();
                Inner {
                    local,
                    logs,
                    naming: Naming::new(&config.prefix, config.topology),
                    shards,
                    command_timeout: config.command_timeout,
                    subscriptions: Mutex::new(Subscriptions::default()),
                    status,
                    full_channels: std::sync::Mutex::new(HashMap::new()),
                    caught_up: Notify::new(),
                    presence: PresenceTracker::new(presence, move || {
                        let inner = weak.upgrade()?;
                        Some(Arc::new(RedisChannelLayer { inner }) as SharedLayer)
                    }),
                }
            }),
        };
        let own = layer
            .inner
            .naming
            .process_channel(layer.inner.local.process_id());
        let shard = layer.shard(&own);
        layer.redis_subscribe(shard, &own).await?;
        for (index, queued) in queues.into_iter().enumerate() {
            layer.spawn_listener(index);
            tokio::spawn(pipeline::run(Arc::downgrade(&layer.inner), index, queued));
        }
        Ok(layer)
    }

    /// The Redis servers, in shard order (for a cluster, its one `redis-cluster://` URL).
    pub fn hosts(&self) -> Vec<String> {
        self.inner
            .shards
            .iter()
            .map(|s| s.url().to_owned())
            .collect()
    }

    /// Local members of a group in this process.
    pub fn local_group_size(&self, group: &str) -> usize {
        self.inner.local.group_size(group)
    }

    /// Groups this process is subscribed to in Redis right now.
    pub async fn subscribed_groups(&self) -> Vec<String> {
        let mut groups: Vec<String> = self
            .inner
            .subscriptions
            .lock()
            .await
            .groups
            .keys()
            .cloned()
            .collect();
        groups.sort();
        groups
    }

    /// Redis channels this process is subscribed to for its groups right now: one per group
    /// on servers, at most one per partition on a cluster.
    pub async fn subscribed_channels(&self) -> Vec<String> {
        let subscriptions = self.inner.subscriptions.lock().await;
        let mut channels: Vec<String> = subscriptions.channels.keys().cloned().collect();
        channels.sort();
        channels
    }

    fn shard(&self, redis_channel: &str) -> &Shard {
        &self.inner.shards[shard::shard_of(redis_channel, self.inner.shards.len())]
    }

    /// The server of a group's Redis channel; with one server, without naming the channel.
    fn group_shard(&self, group: &str) -> &Shard {
        match self.inner.shards.as_slice() {
            [only] => only,
            _ => self.shard(&self.inner.naming.group_channel(group)),
        }
    }

    /// The server of a named channel's list; with one server, without naming the list.
    fn queue_shard(&self, name: &str) -> &Shard {
        match self.inner.shards.as_slice() {
            [only] => only,
            _ => self.shard(&self.inner.naming.queue_key(name)),
        }
    }

    async fn redis_subscribe(&self, shard: &Shard, channel: &str) -> Result<()> {
        let subscribe = self.inner.naming.subscribe(&shard.subscriber, channel);
        let what = || format!("SUBSCRIBE {channel}");
        match tokio::time::timeout(self.inner.command_timeout, subscribe).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(shard.redis.error(&what(), err)),
            Err(_) => Err(shard.redis.error(&what(), "timed out")),
        }
    }

    async fn redis_publish(&self, channel: String, payload: String) -> Result<()> {
        let shard = self.shard(&channel);
        shard.available()?;
        let publish = self
            .inner
            .naming
            .publish(&shard.publisher, &channel, payload);
        match tokio::time::timeout(self.inner.command_timeout, publish).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(shard.redis.error("PUBLISH", err)),
            Err(_) => Err(shard.redis.error("PUBLISH", "timed out")),
        }
    }

    /// Forwards what one server's subscriber receives to local channels and groups, and follows
    /// the server's connection state.
    fn spawn_listener(&self, index: usize) {
        let shard = &self.inner.shards[index];
        let messages = shard.subscriber.message_rx();
        let reconnects = shard.subscriber.reconnect_rx();
        let errors = shard.subscriber.error_rx();
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(listen(weak, index, messages, reconnects, errors));
    }

    async fn do_group_add(&self, group: &str, channel: &str) -> Result<()> {
        validate_group_name(group)?;
        validate_channel_name(channel)?;
        let mut subscriptions = self.inner.subscriptions.lock().await;
        let was_member = self.inner.local.is_member(group, channel);
        self.inner.local.group_add(group, channel).await?;
        if was_member {
            return Ok(());
        }
        let members = subscriptions.groups.entry(group.to_owned()).or_insert(0);
        *members += 1;
        if *members > 1 {
            return Ok(());
        }
        let redis_channel = self.inner.naming.group_channel(group);
        let groups = subscriptions
            .channels
            .entry(redis_channel.clone())
            .or_insert(0);
        *groups += 1;
        // While the server is down the subscription is made on reconnection instead.
        let shard = self.shard(&redis_channel);
        if *groups == 1
            && shard.connected.load(Ordering::SeqCst)
            && let Err(err) = self.redis_subscribe(shard, &redis_channel).await
        {
            // Local members still hear each other; the subscription is retried on reconnect.
            tracing::warn!(%group, error = %err, "Redis subscription failed; serving local members only until Redis is back");
        }
        Ok(())
    }

    async fn do_group_discard(&self, group: &str, channel: &str) -> Result<()> {
        validate_group_name(group)?;
        validate_channel_name(channel)?;
        let mut subscriptions = self.inner.subscriptions.lock().await;
        let was_member = self.inner.local.is_member(group, channel);
        self.inner.local.group_discard(group, channel).await?;
        if !was_member {
            return Ok(());
        }
        let Some(members) = subscriptions.groups.get_mut(group) else {
            return Ok(());
        };
        *members = members.saturating_sub(1);
        if *members > 0 {
            return Ok(());
        }
        subscriptions.groups.remove(group);
        let redis_channel = self.inner.naming.group_channel(group);
        let Some(groups) = subscriptions.channels.get_mut(&redis_channel) else {
            return Ok(());
        };
        *groups = groups.saturating_sub(1);
        if *groups > 0 {
            return Ok(());
        }
        subscriptions.channels.remove(&redis_channel);
        let shard = self.shard(&redis_channel);
        // A lost connection took its subscriptions with it; the reconnection subscribes only
        // to the channels still in the map.
        if !shard.connected.load(Ordering::SeqCst) {
            return Ok(());
        }
        let unsubscribe = self
            .inner
            .naming
            .unsubscribe(&shard.subscriber, &redis_channel);
        match tokio::time::timeout(self.inner.command_timeout, unsubscribe).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(%group, error = %err, "UNSUBSCRIBE failed"),
            Err(_) => tracing::warn!(%group, "UNSUBSCRIBE timed out"),
        }
        Ok(())
    }

    async fn do_group_send(&self, group: &str, message: Arc<Envelope>) -> Result<()> {
        validate_group_name(group)?;
        let shard = self.group_shard(group);
        // While the server is known to be down, deliver to this process' members straight away;
        // so too when the pipeline has stopped.
        if shard.connected.load(Ordering::SeqCst) {
            let outgoing = Outgoing::Publish {
                group: group.to_owned(),
                envelope: Arc::clone(&message),
            };
            if shard.outgoing.send(outgoing).await.is_ok() {
                return Ok(());
            }
        }
        self.inner.local.group_send(group, message).await
    }

    async fn do_group_log(
        &self,
        group: &str,
        since: Option<&Position>,
        recent: usize,
    ) -> Result<LogSlice> {
        validate_group_name(group)?;
        if self.inner.logs.config_of(group).is_none() {
            return Ok(LogSlice::none());
        }
        let shard = self.group_shard(group);
        shard.available()?;
        let keys = self.inner.naming.log_keys(group);
        let read = log::read(&shard.publisher, keys, since, recent);
        match tokio::time::timeout(self.inner.command_timeout, read).await {
            Ok(Ok(slice)) => Ok(slice),
            Ok(Err(err)) => Err(shard.redis.error("reading a group log", err)),
            Err(_) => Err(shard.redis.error("reading a group log", "timed out")),
        }
    }

    async fn do_send(&self, channel: &str, message: Arc<Envelope>) -> Result<()> {
        validate_channel_name(channel)?;
        match owner_process(channel) {
            Some(process) if process != self.inner.local.process_id() => {
                let payload = wire::direct_payload(channel, message.json())?;
                let channel = self.inner.naming.process_channel(process);
                self.redis_publish(channel, payload).await
            }
            Some(_) => self.inner.local.send(channel, message).await,
            None => self.queue_push(channel, message).await,
        }
    }

    /// A send to a named channel: pushed on a Redis list that one worker, in whichever
    /// process, pops — Channels' queue semantics, bounded by the channel's capacity.
    ///
    /// The push goes through the ordered per-server pipeline, so the sender waits for a queue
    /// slot, not a round trip. The capacity is enforced in Redis when the push is made (see
    /// `pipeline::send`): a message that finds the list full is dropped (and logged), and sends
    /// to that channel then fail with [`Error::ChannelFull`] for [`pipeline::FULL_BACKOFF`].
    async fn queue_push(&self, name: &str, message: Arc<Envelope>) -> Result<()> {
        let shard = self.queue_shard(name);
        if !shard.connected.load(Ordering::SeqCst) {
            if self.inner.local.has_channel(name) {
                return self.inner.local.send(name, message).await;
            }
            shard.available()?;
        }
        if self.refuses(name) {
            return Err(Error::ChannelFull(name.to_owned()));
        }
        let push = Outgoing::Push {
            name: name.to_owned(),
            envelope: message,
        };
        shard
            .outgoing
            .send(push)
            .await
            .map_err(|_| Error::Layer("the Redis layer has stopped".into()))
    }

    /// Whether a named channel was found full less than [`pipeline::FULL_BACKOFF`] ago.
    fn refuses(&self, name: &str) -> bool {
        let full = self
            .inner
            .full_channels
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        !full.is_empty() && full.get(name).is_some_and(|until| *until > Instant::now())
    }

    async fn do_receive_channel(&self, name: &str) -> Result<ChannelReceiver> {
        let receiver = self.inner.local.receive_channel(name).await?;
        let key = self.inner.naming.queue_key(name);
        let shard = self.shard(&key);
        let client = shard.redis.client("named channel").await?;
        let batch = self.inner.local.config().capacity_of(name).min(MAX_POP);
        tokio::spawn(pump_queue(
            client,
            key,
            name.to_owned(),
            self.inner.local.clone(),
            batch,
        ));
        Ok(receiver)
    }
}

/// The events' JSON in a payload (see [`super::redis_wire_parse`]).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn wire_events(payload: &str) -> Result<Vec<&str>, String> {
    wire::parse(payload).map(|parsed| parsed.events.iter().map(|event| event.get()).collect())
}

impl Shard {
    /// Fails at once while the server is known to be down, so callers do not each wait for a
    /// command timeout during an outage.
    fn available(&self) -> Result<()> {
        if self.connected.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(self
                .redis
                .error("channel layer", "unreachable; reconnecting"))
        }
    }

    fn url(&self) -> &str {
        self.redis.url()
    }
}

async fn connect_shard(
    url: &str,
    config: &RedisConfig,
) -> Result<(Shard, mpsc::Receiver<Outgoing>)> {
    let redis = RedisConnector::new(url)?.timeouts(config.connect_timeout, config.command_timeout);
    let publisher = redis.client("channel layer").await?;
    let subscriber = redis.subscriber("channel layer").await?;
    let (outgoing, queued) = mpsc::channel(pipeline::OUTGOING_CAPACITY);
    Ok((
        Shard {
            redis,
            outgoing,
            publisher,
            subscriber,
            connected: AtomicBool::new(true),
            backlog: AtomicUsize::new(0),
        },
        queued,
    ))
}

async fn listen(
    weak: std::sync::Weak<Inner>,
    index: usize,
    messages: broadcast::Receiver<RedisMessage>,
    reconnects: broadcast::Receiver<fred::types::config::Server>,
    errors: broadcast::Receiver<(fred::error::Error, Option<fred::types::config::Server>)>,
) {
    listen_until_closed(weak.clone(), index, messages, reconnects, errors).await;
    // A stopped listener holds no sender back.
    if let Some(inner) = weak.upgrade() {
        inner.shards[index].backlog.store(0, Ordering::Relaxed);
        inner.caught_up.notify_waiters();
    }
}

async fn listen_until_closed(
    weak: std::sync::Weak<Inner>,
    index: usize,
    mut messages: broadcast::Receiver<RedisMessage>,
    mut reconnects: broadcast::Receiver<fred::types::config::Server>,
    mut errors: broadcast::Receiver<(fred::error::Error, Option<fred::types::config::Server>)>,
) {
    loop {
        tokio::select! {
            message = messages.recv() => match message {
                Ok(message) => {
                    let Some(inner) = weak.upgrade() else { return };
                    deliver(&inner, &message).await;
                    let behind = messages.len();
                    inner.shards[index].backlog.store(behind, Ordering::Relaxed);
                    if behind <= BACKLOG_LOW {
                        inner.caught_up.notify_waiters();
                    }
                }
                Err(broadcast::error::RecvError::Lagged(lost)) => {
                    tracing::warn!(lost, "Redis listener fell behind: messages lost");
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            error = errors.recv() => match error {
                Ok((err, _)) => {
                    let Some(inner) = weak.upgrade() else { return };
                    if inner.shards[index].connected.swap(false, Ordering::SeqCst) {
                        tracing::warn!(url = %inner.shards[index].url(), error = %err, "lost Redis: serving local members only, reconnecting");
                        inner.status.send_replace(LayerStatus::Disconnected);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            reconnected = reconnects.recv() => match reconnected {
                Ok(_) => {
                    let Some(inner) = weak.upgrade() else { return };
                    resubscribe(&inner, index).await;
                    let was_down = !inner.shards[index].connected.swap(true, Ordering::SeqCst);
                    if was_down && inner.shards.iter().all(|s| s.connected.load(Ordering::SeqCst)) {
                        tracing::info!(url = %inner.shards[index].url(), "Redis is back: groups subscribed again");
                        inner.status.send_replace(LayerStatus::Reconnected);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

/// Most messages taken from a named channel's list in one round trip; a channel with a smaller
/// capacity is taken up to its capacity, all its local queue can hold.
const MAX_POP: usize = 1024;

/// Moves a named channel's Redis list into the local receiver as long as the receiver lives:
/// whatever is waiting (up to `batch`) in one round trip, or, when nothing is, one blocking
/// pop. A full local queue stops the popping (the list holds the rest).
async fn pump_queue(
    client: fred::clients::Client,
    key: String,
    name: String,
    local: InMemoryChannelLayer,
    batch: usize,
) {
    let mut held: VecDeque<Arc<Envelope>> = VecDeque::with_capacity(batch);
    while local.has_channel(&name) {
        if let Some(envelope) = held.pop_front() {
            match local.send(&name, Arc::clone(&envelope)).await {
                Err(Error::ChannelFull(_)) => {
                    held.push_front(envelope);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(err) => {
                    tracing::warn!(channel = %name, error = %err, "worker queue delivery failed")
                }
                Ok(()) => {}
            }
            continue;
        }
        // Whatever is waiting, in one round trip; only an empty list is waited on, with a short
        // block so that a dropped receiver is noticed within a second.
        match client
            .rpop::<Option<Vec<String>>, _>(&key, Some(batch))
            .await
        {
            Ok(Some(waiting)) if !waiting.is_empty() => {
                held.extend(waiting.into_iter().map(Envelope::from_json));
                continue;
            }
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(channel = %name, error = %err, "reading the worker queue failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        }
        match client.brpop::<Option<(String, String)>, _>(&key, 1.0).await {
            Ok(Some((_, json))) => held.push_back(Envelope::from_json(json)),
            Ok(None) => {}
            // fred reports BRPOP's "nothing arrived" as a timeout error.
            Err(err) if *err.kind() == fred::error::ErrorKind::Timeout => {}
            Err(err) => {
                tracing::warn!(channel = %name, error = %err, "reading the worker queue failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    let _ = client.quit().await;
}

/// After a reconnection, subscribes again to this shard's live groups and the process channel.
async fn resubscribe(inner: &Arc<Inner>, index: usize) {
    let layer = RedisChannelLayer {
        inner: Arc::clone(inner),
    };
    let mut channels: Vec<String> = layer
        .inner
        .subscriptions
        .lock()
        .await
        .channels
        .keys()
        .cloned()
        .collect();
    let process = layer.inner.local.process_id();
    channels.push(layer.inner.naming.process_channel(process));
    let shards = layer.inner.shards.len();
    for channel in channels
        .into_iter()
        .filter(|c| shard::shard_of(c, shards) == index)
    {
        if let Err(err) = layer
            .redis_subscribe(&layer.inner.shards[index], &channel)
            .await
        {
            tracing::warn!(%channel, error = %err, "resubscription failed; retried on the next reconnection");
        }
    }
}

/// Events of a batch delivered between two turns given to the consumers.
const YIELD_EVERY: usize = 32;

/// Hands one received Redis message to local channels or groups, each event decoded once.
async fn deliver(inner: &Inner, message: &RedisMessage) {
    // Each event's envelope is cut out of the received buffer and shares it: no copy per event.
    let (text, buffer): (&str, &Bytes) = match &message.value {
        Value::String(text) => (text, text.inner()),
        Value::Bytes(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => (text, bytes),
            Err(_) => {
                tracing::warn!(channel = %&*message.channel, "payload is not UTF-8: dropped");
                return;
            }
        },
        _ => {
            tracing::warn!(channel = %&*message.channel, "non-text payload on a switchboard channel: dropped");
            return;
        }
    };
    let payload = match wire::parse(text) {
        Ok(payload) => payload,
        Err(err) => {
            tracing::warn!(channel = %&*message.channel, error = %err, "unreadable payload: dropped");
            return;
        }
    };
    // A group's own channel on servers, a partition's on a cluster (its payload names the
    // group), or this process' channel (its payload names the channel); anything else is
    // dropped below.
    let (group, direct) = if inner.naming.is_group_channel(&message.channel) {
        let group = inner.naming.group_of_channel(&message.channel);
        (group.or(payload.group), None)
    } else {
        (None, payload.channel)
    };
    let first = payload
        .first
        .map(|(epoch, offset)| (Arc::<str>::from(epoch), offset));
    for (n, event) in payload.events.into_iter().enumerate() {
        // A batch can hold more messages than a member's queue: let the members' consumers
        // take what they were given before the next ones, or a burst would overflow queues
        // that are being read.
        if n > 0 && n % YIELD_EVERY == 0 {
            tokio::task::yield_now().await;
        }
        // `event` borrows from `text`, which is `buffer`'s memory.
        let envelope = match Utf8Bytes::try_from(buffer.slice_ref(event.get().as_bytes())) {
            Ok(json) => match &first {
                Some((epoch, offset)) => {
                    let position = Position::new(Arc::clone(epoch), offset + n as u64);
                    Envelope::from_json_at(json, position)
                }
                None => Envelope::from_json(json),
            },
            Err(err) => {
                tracing::warn!(channel = %&*message.channel, error = %err, "event is not UTF-8: dropped");
                continue;
            }
        };
        let result = match (group, direct) {
            (Some(group), _) => inner.local.group_send(group, envelope).await,
            (None, Some(channel)) => inner.local.send(channel, envelope).await,
            (None, None) => Ok(()),
        };
        if let Err(err) = result {
            tracing::warn!(channel = %&*message.channel, error = %err, "local delivery failed");
        }
    }
}

impl ChannelLayer for RedisChannelLayer {
    fn new_channel(&self) -> BoxFuture<'_, Result<ChannelReceiver>> {
        self.inner.local.new_channel()
    }

    fn send<'a>(&'a self, channel: &'a str, message: Arc<Envelope>) -> BoxFuture<'a, Result<()>> {
        self.do_send(channel, message).boxed()
    }

    fn receive_channel<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<ChannelReceiver>> {
        self.do_receive_channel(name).boxed()
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

    fn group_log<'a>(
        &'a self,
        group: &'a str,
        since: Option<&'a Position>,
        recent: usize,
    ) -> BoxFuture<'a, Result<LogSlice>> {
        self.do_group_log(group, since, recent).boxed()
    }

    fn status(&self) -> Option<watch::Receiver<LayerStatus>> {
        Some(self.inner.status.subscribe())
    }

    fn presence_tracker(&self) -> Option<&PresenceTracker> {
        Some(&self.inner.presence)
    }
}
