//! The default, single-process channel layer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::time::Instant;

use futures::future::{BoxFuture, FutureExt};
use rand::distr::{Alphanumeric, SampleString};
use tokio::sync::mpsc::{self, error::TrySendError};

use super::log::memory::MemoryLogs;
use super::log::{LogConfig, LogPatterns, LogSlice, Position};
use super::names::validate_named_channel;
use super::presence::{PresenceConfig, PresenceTracker};
use super::{
    ChannelLayer, ChannelReceiver, Envelope, SharedLayer, validate_channel_name,
    validate_group_name,
};
use crate::error::{Error, Result};

/// Limits of a channel layer, with Channels' defaults.
///
/// ```
/// use switchboard::layer::LayerConfig;
///
/// // Channels' `"capacity": 100, "channel_capacity": {"thumbnails": 1000, "chat.*": 20}`.
/// let config = LayerConfig::default()
///     .channel_capacity("thumbnails", 1000)
///     .channel_capacity("chat.*", 20);
/// assert_eq!(config.capacity_of("thumbnails"), 1000);
/// assert_eq!(config.capacity_of("chat.log"), 20);
/// assert_eq!(config.capacity_of("specific.abc!1"), 100);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LayerConfig {
    /// Messages a channel holds before it is full (default 100).
    pub capacity: usize,
    /// How long an unread message lives (default 60 s).
    pub expiry: Duration,
    /// How long a group membership lives without being renewed by `group_add` (default 1 day).
    pub group_expiry: Duration,
    /// Capacities of particular channels, as `(pattern, capacity)` in the order they were
    /// added (Channels' `channel_capacity`); see [`LayerConfig::channel_capacity`].
    pub channel_capacity: Vec<(String, usize)>,
    /// The groups that keep a log, and the budget of all logs together; see
    /// [`LayerConfig::group_log`]. None by default.
    pub logs: LogPatterns,
    /// How [presence](super::presence) is kept: how often changes go out, heartbeats, when a
    /// silent process is gone.
    pub presence: PresenceConfig,
}

impl Default for LayerConfig {
    fn default() -> Self {
        LayerConfig {
            capacity: 100,
            expiry: Duration::from_secs(60),
            group_expiry: Duration::from_secs(86_400),
            channel_capacity: Vec::new(),
            logs: LogPatterns::default(),
            presence: PresenceConfig::default(),
        }
    }
}

impl LayerConfig {
    /// Sets [`LayerConfig::capacity`] (at least 1).
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// Gives the channels matching `pattern` their own capacity (at least 1), like Channels'
    /// `channel_capacity`: a busy worker channel can hold a burst while every WebSocket's
    /// channel keeps the small default that drops for a client that does not read.
    ///
    /// A pattern is a channel name, or a prefix followed by `*` (`"chat.*"`, `"specific.*"`);
    /// the first pattern added that matches wins.
    pub fn channel_capacity(mut self, pattern: impl Into<String>, capacity: usize) -> Self {
        self.channel_capacity
            .push((pattern.into(), capacity.max(1)));
        self
    }

    /// The capacity of the channel `name`: its pattern's, else [`LayerConfig::capacity`].
    pub fn capacity_of(&self, name: &str) -> usize {
        self.channel_capacity
            .iter()
            .find(|(pattern, _)| match pattern.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => name == pattern,
            })
            .map_or(self.capacity, |(_, capacity)| *capacity)
    }

    /// Gives the groups matching `pattern` (a group name, or a prefix followed by `*`) a log
    /// (see [`log`](super::log)): their messages get positions, and members can recover what
    /// they missed. The first pattern added that matches wins.
    ///
    /// ```
    /// use std::time::Duration;
    /// use switchboard::layer::{LayerConfig, LogConfig};
    ///
    /// // Every chat room keeps its last 1 000 messages for a day after its last one.
    /// let config = LayerConfig::default()
    ///     .group_log("chat_*", LogConfig::new(1_000, Duration::from_secs(86_400)))
    ///     .log_budget(64 << 20);
    /// assert_eq!(config.logs.config_of("chat_lobby").map(|c| c.size), Some(1_000));
    /// assert!(config.logs.config_of("presence").is_none());
    /// ```
    pub fn group_log(mut self, pattern: impl Into<String>, log: LogConfig) -> Self {
        self.logs.patterns.push((pattern.into(), log));
        self
    }

    /// Sets how many bytes all of a process' in-memory group logs may hold together (default
    /// 256 MiB): past it, the logs of the groups idle longest are forgotten first. On Redis the
    /// logs live in Redis, bounded by their size and time to live.
    pub fn log_budget(mut self, bytes: usize) -> Self {
        self.logs.budget = bytes;
        self
    }

    /// Sets [`LayerConfig::presence`].
    pub fn presence(mut self, presence: PresenceConfig) -> Self {
        self.presence = presence;
        self
    }

    /// Sets [`LayerConfig::expiry`].
    pub fn expiry(mut self, expiry: Duration) -> Self {
        self.expiry = expiry;
        self
    }

    /// Sets [`LayerConfig::group_expiry`].
    pub fn group_expiry(mut self, group_expiry: Duration) -> Self {
        self.group_expiry = group_expiry;
        self
    }
}

type Queue = mpsc::Sender<Arc<Envelope>>;

/// How many messages were dropped for a channel because its queue was full, shared with its
/// receiver (see [`ChannelReceiver::dropped`]).
type DropCount = Arc<AtomicU64>;

struct Member {
    queue: Queue,
    dropped: DropCount,
    joined: Instant,
}

/// How often, at most, the layer warns about group messages dropped for full channels.
const DROP_WARNING_INTERVAL: Duration = Duration::from_secs(1);

/// Group messages dropped because a member's channel was full, since the last warning.
///
/// Counted and reported at most once per [`DROP_WARNING_INTERVAL`]: overloaded, members fill
/// and drain all the time, and a line per member per episode was a flood whose writing cost
/// more than the deliveries (tens of thousands of lines a second at 10 members per room).
#[derive(Default)]
struct Drops {
    dropped: u64,
    last_warning: Option<Instant>,
}

impl Drops {
    /// The one place a dropped group message is counted, for the member and for the log.
    fn note(&mut self, group: &str, channel: &str, member: &DropCount, now: Instant) {
        member.fetch_add(1, Ordering::Relaxed);
        self.dropped += 1;
        if self
            .last_warning
            .is_none_or(|at| now.saturating_duration_since(at) >= DROP_WARNING_INTERVAL)
        {
            tracing::warn!(%group, %channel, dropped = self.dropped, "channel full: group messages dropped for members that do not keep up (this one and `dropped` in all since the last warning)");
            self.dropped = 0;
            self.last_warning = Some(now);
        }
    }
}

/// A channel's queue and the groups it was added to.
struct Channel {
    /// The same allocation as the map's key, handed to the groups it joins.
    name: Arc<str>,
    queue: Queue,
    dropped: DropCount,
    /// Kept so a closing channel leaves just its own groups: scanning every group of the
    /// process per closed channel made a mass disconnect quadratic.
    groups: Vec<Arc<str>>,
}

/// Channel and group names are shared between the maps: one allocation per name, not one per
/// membership.
struct State {
    channels: HashMap<Arc<str>, Channel>,
    /// Members in the order they joined: a group send wakes them in that order, which is the
    /// order their tasks and sockets were allocated in, so a large room is walked through
    /// memory front to back (measured on the benchmark's reference server: a shuffled order
    /// cost a third more median latency at 1 000 members).
    ///
    /// A list, not a map: found by a pointer compare (a member's name is its channel's own
    /// allocation), it costs less memory per member than an ordered map, and a room's members
    /// are walked on every send but looked up only when one joins or leaves.
    groups: HashMap<Arc<str>, Vec<(Arc<str>, Member)>>,
    drops: Drops,
    /// Group logs live under the same lock as memberships, so a message is logged and handed to
    /// the members in one step.
    logs: MemoryLogs,
}

impl State {
    fn new(config: &LayerConfig) -> State {
        State {
            channels: HashMap::new(),
            groups: HashMap::new(),
            drops: Drops::default(),
            logs: MemoryLogs::new(config.logs.clone()),
        }
    }

    fn open_channel(&mut self, name: &str, queue: Queue, dropped: DropCount) {
        let name: Arc<str> = Arc::from(name);
        let channel = Channel {
            name: Arc::clone(&name),
            queue,
            dropped,
            groups: Vec::new(),
        };
        self.channels.insert(name, channel);
    }

    /// Forgets a channel and its memberships.
    fn close_channel(&mut self, name: &str) {
        let Some(channel) = self.channels.remove(name) else {
            return;
        };
        for group in channel.groups {
            self.leave(&group, &channel.name);
        }
    }

    /// `channel` is the channel's own name allocation, as its memberships hold it.
    fn leave(&mut self, group: &str, channel: &Arc<str>) {
        if let Some(members) = self.groups.get_mut(group) {
            if let Some(at) = members
                .iter()
                .position(|(name, _)| Arc::ptr_eq(name, channel))
            {
                // The last member takes the leaver's place; the others keep their order.
                members.swap_remove(at);
            }
            if members.is_empty() {
                self.groups.remove(group);
            }
        }
    }
}

struct Inner {
    config: LayerConfig,
    process: String,
    /// What channel names start with: `specific.` (`{prefix}specific.` on channels_redis'
    /// pub/sub layer, whose names carry its prefix).
    channel_prefix: String,
    next_channel: AtomicU64,
    state: Mutex<State>,
    presence: PresenceTracker,
}

impl Inner {
    /// A poisoned lock only means another thread panicked mid-update of plain maps, which
    /// cannot leave them inconsistent in a way that matters here, so keep serving.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The in-process channel layer (Channels' `InMemoryChannelLayer`), the default.
///
/// Every channel is a bounded queue; a group is a set of channels. A group send encodes the
/// message once and hands the same [`Envelope`] to every member.
#[derive(Clone)]
pub struct InMemoryChannelLayer {
    inner: Arc<Inner>,
}

impl Default for InMemoryChannelLayer {
    fn default() -> Self {
        InMemoryChannelLayer::with_config(LayerConfig::default())
    }
}

impl InMemoryChannelLayer {
    /// A layer with Channels' default limits.
    pub fn new() -> InMemoryChannelLayer {
        InMemoryChannelLayer::default()
    }

    /// A layer with the given limits.
    pub fn with_config(config: LayerConfig) -> InMemoryChannelLayer {
        InMemoryChannelLayer::with_channel_prefix(config, "specific.")
    }

    /// A layer whose channel names are `{channel_prefix}{process}!{n}`.
    fn with_channel_prefix(config: LayerConfig, channel_prefix: &str) -> InMemoryChannelLayer {
        let state = Mutex::new(State::new(&config));
        let inner = Arc::new_cyclic(|weak: &Weak<Inner>| {
            let weak = weak.clone();
            let presence = PresenceTracker::new(config.presence.clone(), move || {
                let inner = weak.upgrade()?;
                Some(Arc::new(InMemoryChannelLayer { inner }) as SharedLayer)
            });
            Inner {
                config,
                process: Alphanumeric.sample_string(&mut rand::rng(), 12),
                channel_prefix: channel_prefix.to_owned(),
                next_channel: AtomicU64::new(0),
                state,
                presence,
            }
        });
        InMemoryChannelLayer { inner }
    }

    /// The local members of a layer shared by several processes (Redis, NATS, …), with
    /// `config`'s limits and channel names `{channel_prefix}{process}!{n}`, but no group logs: a
    /// distributed layer keeps those in its backend (or keeps none), and numbering messages in
    /// each process would give them positions that disagree between processes.
    #[cfg_attr(
        not(any(feature = "redis", feature = "nats", feature = "channels-redis")),
        allow(dead_code)
    )]
    pub(crate) fn fan_out(mut config: LayerConfig, channel_prefix: &str) -> InMemoryChannelLayer {
        config.logs.patterns.clear();
        InMemoryChannelLayer::with_channel_prefix(config, channel_prefix)
    }

    /// The layer's limits.
    pub fn config(&self) -> &LayerConfig {
        &self.inner.config
    }

    /// How many members a group has right now (expired memberships excluded).
    pub fn group_size(&self, group: &str) -> usize {
        let expiry = self.inner.config.group_expiry;
        self.inner.state().groups.get(group).map_or(0, |members| {
            members
                .iter()
                .filter(|(_, m)| m.joined.elapsed() <= expiry && !m.queue.is_closed())
                .count()
        })
    }

    /// The random id of this process, part of every channel name it gives out.
    pub fn process_id(&self) -> &str {
        &self.inner.process
    }

    /// Whether `channel` is a member of `group`.
    pub fn is_member(&self, group: &str, channel: &str) -> bool {
        self.inner
            .state()
            .groups
            .get(group)
            .is_some_and(|members| members.iter().any(|(name, _)| &**name == channel))
    }

    /// How many channels are open right now.
    pub fn channel_count(&self) -> usize {
        self.inner.state().channels.len()
    }

    fn new_channel_now(&self) -> ChannelReceiver {
        let n = self.inner.next_channel.fetch_add(1, Ordering::Relaxed);
        let name = format!("{}{}!{n}", self.inner.channel_prefix, self.inner.process);
        let (tx, rx) = mpsc::channel(self.inner.config.capacity_of(&name));
        let dropped = DropCount::default();
        self.inner
            .state()
            .open_channel(&name, tx, Arc::clone(&dropped));
        self.receiver(name, rx).counting_drops(dropped)
    }

    /// Whether a receiver listens on `channel` in this process.
    pub fn has_channel(&self, channel: &str) -> bool {
        self.inner
            .state()
            .channels
            .get(channel)
            .is_some_and(|channel| !channel.queue.is_closed())
    }

    fn receive_channel_now(&self, name: &str) -> Result<ChannelReceiver> {
        validate_named_channel(name)?;
        let (tx, rx) = mpsc::channel(self.inner.config.capacity_of(name));
        {
            let mut state = self.inner.state();
            if state
                .channels
                .get(name)
                .is_some_and(|channel| !channel.queue.is_closed())
            {
                return Err(Error::Layer(format!(
                    "channel {name:?} already has a receiver in this process"
                )));
            }
            state.close_channel(name);
            state.open_channel(name, tx, DropCount::default());
        }
        Ok(self.receiver(name.to_owned(), rx))
    }

    fn receiver(&self, name: String, rx: mpsc::Receiver<Arc<Envelope>>) -> ChannelReceiver {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        ChannelReceiver::new(name, rx, self.inner.config.expiry, move |name| {
            if let Some(inner) = weak.upgrade() {
                inner.state().close_channel(name);
            }
        })
    }

    fn send_now(&self, channel: &str, message: Arc<Envelope>) -> Result<()> {
        validate_channel_name(channel)?;
        let mut state = self.inner.state();
        let Some(open) = state.channels.get(channel) else {
            tracing::debug!(%channel, "send to a channel nobody listens on: dropped");
            return Ok(());
        };
        match open.queue.try_send(message) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                open.dropped.fetch_add(1, Ordering::Relaxed);
                Err(Error::ChannelFull(channel.to_owned()))
            }
            Err(TrySendError::Closed(_)) => {
                state.close_channel(channel);
                Ok(())
            }
        }
    }

    fn group_add_now(&self, group: &str, channel: &str) -> Result<()> {
        validate_group_name(group)?;
        validate_channel_name(channel)?;
        let mut state = self.inner.state();
        let group = match state.groups.get_key_value(group) {
            Some((name, _)) => Arc::clone(name),
            None => Arc::from(group),
        };
        let Some(open) = state.channels.get_mut(channel) else {
            return Err(Error::Layer(format!(
                "channel {channel:?} does not belong to this in-memory layer; use the channel name the layer gave the consumer"
            )));
        };
        let name = Arc::clone(&open.name);
        let queue = open.queue.clone();
        let dropped = Arc::clone(&open.dropped);
        if !open.groups.contains(&group) {
            open.groups.push(Arc::clone(&group));
        }
        let member = Member {
            queue,
            dropped,
            joined: Instant::now(),
        };
        let members = state.groups.entry(group).or_default();
        // Joining again renews the membership where it stands.
        match members
            .iter_mut()
            .find(|(joined, _)| Arc::ptr_eq(joined, &name))
        {
            Some((_, renewed)) => *renewed = member,
            None => members.push((name, member)),
        }
        Ok(())
    }

    fn group_discard_now(&self, group: &str, channel: &str) -> Result<()> {
        validate_group_name(group)?;
        validate_channel_name(channel)?;
        let mut state = self.inner.state();
        // Only an open channel can be a member: a closed one left its groups when it closed.
        let Some(open) = state.channels.get_mut(channel) else {
            return Ok(());
        };
        open.groups.retain(|joined| &**joined != group);
        let name = Arc::clone(&open.name);
        state.leave(group, &name);
        Ok(())
    }

    fn group_send_now(&self, group: &str, message: Arc<Envelope>) -> Result<()> {
        validate_group_name(group)?;
        let expiry = self.inner.config.group_expiry;
        let mut state = self.inner.state();
        let State {
            groups,
            drops,
            logs,
            ..
        } = &mut *state;
        let now = Instant::now();
        let message = logs.append(group, message, now);
        let Some(members) = groups.get_mut(group) else {
            return Ok(());
        };
        // One subtraction per send rather than one per member: joined before this, expired.
        let expired_before = now.checked_sub(expiry);
        members.retain_mut(|(channel, member)| {
            if expired_before.is_some_and(|before| member.joined < before) {
                return false;
            }
            match member.queue.try_send(Arc::clone(&message)) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    drops.note(group, channel, &member.dropped, now);
                    true
                }
                Err(TrySendError::Closed(_)) => false,
            }
        });
        if members.is_empty() {
            groups.remove(group);
        }
        Ok(())
    }
}

impl InMemoryChannelLayer {
    fn group_log_now(
        &self,
        group: &str,
        since: Option<&Position>,
        recent: usize,
    ) -> Result<LogSlice> {
        validate_group_name(group)?;
        Ok(self
            .inner
            .state()
            .logs
            .read(group, since, recent, Instant::now()))
    }

    /// Bytes held by this layer's group logs, as counted against
    /// [`LayerConfig::log_budget`], and how many groups have one.
    pub fn log_usage(&self) -> (usize, usize) {
        let state = self.inner.state();
        (state.logs.bytes(), state.logs.len())
    }
}

impl ChannelLayer for InMemoryChannelLayer {
    fn new_channel(&self) -> BoxFuture<'_, Result<ChannelReceiver>> {
        let receiver = self.new_channel_now();
        async move { Ok(receiver) }.boxed()
    }

    fn receive_channel<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<ChannelReceiver>> {
        futures::future::ready(self.receive_channel_now(name)).boxed()
    }

    fn send<'a>(&'a self, channel: &'a str, message: Arc<Envelope>) -> BoxFuture<'a, Result<()>> {
        futures::future::ready(self.send_now(channel, message)).boxed()
    }

    fn group_add<'a>(&'a self, group: &'a str, channel: &'a str) -> BoxFuture<'a, Result<()>> {
        futures::future::ready(self.group_add_now(group, channel)).boxed()
    }

    fn group_discard<'a>(&'a self, group: &'a str, channel: &'a str) -> BoxFuture<'a, Result<()>> {
        futures::future::ready(self.group_discard_now(group, channel)).boxed()
    }

    fn group_send<'a>(
        &'a self,
        group: &'a str,
        message: Arc<Envelope>,
    ) -> BoxFuture<'a, Result<()>> {
        futures::future::ready(self.group_send_now(group, message)).boxed()
    }

    fn group_log<'a>(
        &'a self,
        group: &'a str,
        since: Option<&'a Position>,
        recent: usize,
    ) -> BoxFuture<'a, Result<LogSlice>> {
        futures::future::ready(self.group_log_now(group, since, recent)).boxed()
    }

    fn presence_tracker(&self) -> Option<&PresenceTracker> {
        Some(&self.inner.presence)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msg(n: u32) -> Arc<Envelope> {
        Envelope::encode(&json!({"type": "test.message", "n": n})).unwrap()
    }

    #[tokio::test]
    async fn channel_names_are_unique_and_valid() {
        let layer = InMemoryChannelLayer::new();
        let a = layer.new_channel().await.unwrap();
        let b = layer.new_channel().await.unwrap();
        assert_ne!(a.name(), b.name());
        validate_channel_name(a.name()).unwrap();
        assert_eq!(layer.channel_count(), 2);
        drop(a);
        assert_eq!(layer.channel_count(), 1);
    }

    #[tokio::test]
    async fn direct_send_reports_channel_full_at_capacity() {
        let layer = InMemoryChannelLayer::with_config(LayerConfig::default().capacity(2));
        let mut rx = layer.new_channel().await.unwrap();
        layer.send(rx.name(), msg(1)).await.unwrap();
        layer.send(rx.name(), msg(2)).await.unwrap();
        let err = layer.send(rx.name(), msg(3)).await.unwrap_err();
        assert!(matches!(err, Error::ChannelFull(_)), "{err}");
        assert_eq!(rx.recv().await.unwrap().json(), msg(1).json());
        layer.send(rx.name(), msg(4)).await.unwrap();
    }

    #[tokio::test]
    async fn a_channel_capacity_pattern_sizes_only_its_channels() {
        let config = LayerConfig::default()
            .capacity(1)
            .channel_capacity("jobs", 3)
            .channel_capacity("jobs*", 5);
        let layer = InMemoryChannelLayer::with_config(config);
        let jobs = layer.receive_channel("jobs").await.unwrap();
        for n in 0..3 {
            layer.send(jobs.name(), msg(n)).await.unwrap();
        }
        let err = layer.send(jobs.name(), msg(9)).await.unwrap_err();
        assert!(
            matches!(err, Error::ChannelFull(_)),
            "the first match wins: {err}"
        );
        let rx = layer.new_channel().await.unwrap();
        layer.send(rx.name(), msg(1)).await.unwrap();
        let err = layer.send(rx.name(), msg(2)).await.unwrap_err();
        assert!(
            matches!(err, Error::ChannelFull(_)),
            "others keep the default: {err}"
        );
        assert_eq!(layer.config().capacity_of("jobs.thumbnails"), 5);
    }

    #[tokio::test]
    async fn group_send_skips_only_the_full_member() {
        let layer = InMemoryChannelLayer::with_config(LayerConfig::default().capacity(1));
        let mut slow = layer.new_channel().await.unwrap();
        let mut fast = layer.new_channel().await.unwrap();
        layer.group_add("g", slow.name()).await.unwrap();
        layer.group_add("g", fast.name()).await.unwrap();
        layer.group_send("g", msg(1)).await.unwrap();
        assert_eq!(fast.recv().await.unwrap().json(), msg(1).json());
        layer.group_send("g", msg(2)).await.unwrap();
        assert_eq!(fast.recv().await.unwrap().json(), msg(2).json());
        assert_eq!(slow.recv().await.unwrap().json(), msg(1).json());
        assert_eq!(layer.group_size("g"), 2);
        // The slow member's receiver sees what it missed; the fast one missed nothing.
        assert_eq!((slow.dropped(), fast.dropped()), (1, 0));
        assert!(layer.send(slow.name(), msg(3)).await.is_ok());
        assert!(layer.send(slow.name(), msg(4)).await.is_err());
        assert_eq!(slow.dropped(), 2, "a refused direct send counts too");
    }

    /// `count` new channels, each added to `group`, in that order.
    async fn joined(
        layer: &InMemoryChannelLayer,
        group: &str,
        count: usize,
    ) -> Vec<ChannelReceiver> {
        let mut channels = Vec::new();
        for _ in 0..count {
            let channel = layer.new_channel().await.unwrap();
            layer.group_add(group, channel.name()).await.unwrap();
            channels.push(channel);
        }
        channels
    }

    #[tokio::test]
    async fn group_fan_out_shares_one_envelope() {
        let layer = InMemoryChannelLayer::new();
        let mut members = joined(&layer, "room", 10).await;
        let sent = msg(7);
        layer.group_send("room", Arc::clone(&sent)).await.unwrap();
        for rx in &mut members {
            assert!(Arc::ptr_eq(&rx.recv().await.unwrap(), &sent));
        }
    }

    #[tokio::test]
    async fn discard_and_drop_leave_the_group() {
        let layer = InMemoryChannelLayer::new();
        let a = layer.new_channel().await.unwrap();
        let b = layer.new_channel().await.unwrap();
        layer.group_add("g", a.name()).await.unwrap();
        layer.group_add("g", b.name()).await.unwrap();
        layer.group_discard("g", a.name()).await.unwrap();
        layer.group_discard("g", a.name()).await.unwrap();
        assert_eq!(layer.group_size("g"), 1);
        drop(b);
        assert_eq!(layer.group_size("g"), 0);
    }

    #[tokio::test]
    async fn a_closed_channel_leaves_every_group_it_was_in_and_only_those() {
        let layer = InMemoryChannelLayer::new();
        let a = layer.new_channel().await.unwrap();
        let b = layer.new_channel().await.unwrap();
        let a_name = a.name().to_owned();
        for group in ["g1", "g2", "g3"] {
            layer.group_add(group, &a_name).await.unwrap();
        }
        layer.group_add("g1", &a_name).await.unwrap();
        layer.group_add("g2", b.name()).await.unwrap();
        layer.group_discard("g3", &a_name).await.unwrap();
        layer.group_add("g3", &a_name).await.unwrap();
        drop(a);
        for group in ["g1", "g2", "g3"] {
            assert!(!layer.is_member(group, &a_name), "still in {group}");
        }
        assert!(layer.is_member("g2", b.name()));
        assert_eq!(
            layer.inner.state().groups.len(),
            1,
            "empty groups are removed"
        );
    }

    #[tokio::test]
    async fn a_group_is_walked_in_the_order_its_members_joined() {
        let layer = InMemoryChannelLayer::new();
        let channels = joined(&layer, "room", 5).await;
        let names: Vec<String> = channels.iter().map(|c| c.name().to_owned()).collect();
        // Joining again renews the membership in place.
        layer.group_add("room", &names[1]).await.unwrap();
        // A leaver's place goes to the last member; the others keep their order.
        layer.group_discard("room", &names[2]).await.unwrap();
        let order: Vec<String> = layer.inner.state().groups["room"]
            .iter()
            .map(|(name, _)| name.to_string())
            .collect();
        let expected = [0, 1, 4, 3].map(|i| names[i].clone());
        assert_eq!(order, expected);
    }

    #[tokio::test(start_paused = true)]
    async fn memberships_and_messages_expire() {
        let config = LayerConfig::default()
            .expiry(Duration::from_secs(5))
            .group_expiry(Duration::from_secs(10));
        let layer = InMemoryChannelLayer::with_config(config);
        let mut rx = layer.new_channel().await.unwrap();
        layer.group_add("g", rx.name()).await.unwrap();
        layer.send(rx.name(), msg(1)).await.unwrap();
        tokio::time::advance(Duration::from_secs(6)).await;
        layer.send(rx.name(), msg(2)).await.unwrap();
        assert_eq!(rx.recv().await.unwrap().json(), msg(2).json());
        tokio::time::advance(Duration::from_secs(6)).await;
        layer.group_send("g", msg(3)).await.unwrap();
        assert_eq!(layer.group_size("g"), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn messages_drained_without_waiting_expire_too() {
        let layer = InMemoryChannelLayer::with_config(
            LayerConfig::default().expiry(Duration::from_secs(5)),
        );
        let mut rx = layer.new_channel().await.unwrap();
        layer.send(rx.name(), msg(1)).await.unwrap();
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(rx.try_recv().is_none(), "expired before the first try_recv");
        layer.send(rx.name(), msg(2)).await.unwrap();
        assert_eq!(rx.recv().await.unwrap().json(), msg(2).json());
        assert!(rx.try_recv().is_none());
        layer.send(rx.name(), msg(3)).await.unwrap();
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(rx.try_recv().is_none(), "a new drain reads the clock again");
    }

    #[tokio::test]
    async fn named_channels_have_one_receiver_per_process() {
        let layer = InMemoryChannelLayer::new();
        let mut worker = layer.receive_channel("thumbnails-generate").await.unwrap();
        assert!(layer.receive_channel("thumbnails-generate").await.is_err());
        assert!(layer.receive_channel("specific.x!1").await.is_err());
        layer.send("thumbnails-generate", msg(1)).await.unwrap();
        assert_eq!(worker.recv().await.unwrap().json(), msg(1).json());
        drop(worker);
        assert!(!layer.has_channel("thumbnails-generate"));
        layer.receive_channel("thumbnails-generate").await.unwrap();
    }

    #[tokio::test]
    async fn invalid_names_are_refused() {
        let layer = InMemoryChannelLayer::new();
        let rx = layer.new_channel().await.unwrap();
        assert!(layer.group_add("bad name", rx.name()).await.is_err());
        assert!(layer.group_send("bad/name", msg(1)).await.is_err());
        assert!(layer.send("no such!chan", msg(1)).await.is_err());
    }
}
