//! channels_redis' core layer (`channels_redis.core.RedisChannelLayer`), spoken as it is.
//!
//! * A group is the sorted set `{prefix}:group:{group}` of channel names, scored by when they
//!   joined, on the host of the group's name; members older than `group_expiry` are trimmed by
//!   every group send, so this layer adds its members again before they get that old.
//! * A channel `specific.{process}!{n}` is served by its process' sorted set
//!   `{prefix}specific.{process}!`, scored by send time; a message in it is 12 random bytes and
//!   a msgpack map whose `__asgi_channel__` names the channel (a direct send) or the list of
//!   the process' channels in the group (a group send: one message per process, not per member).
//!   Each process pops its set with `BZPOPMIN`.
//! * A named channel (`thumbnails`) is the sorted set `{prefix}thumbnails`, on a host chosen in
//!   turn, popped by whichever worker comes first.
//! * A send finds a set holding `capacity` messages full (a direct send fails with
//!   [`Error::ChannelFull`], a group send skips that process); messages older than `expiry` are
//!   trimmed by every send and dropped when popped.
//!
//! A group send reaches this process' own members at once, without Redis, and every other
//! process through its set; the Redis part goes through one queue whose batches read the
//! groups and write the sets in one round trip each.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fred::prelude::{ClientLike, KeysInterface, LuaInterface, SortedSetsInterface};
use fred::types::Value;
use fred::types::sorted_sets::{ZRange, ZRangeBound, ZRangeKind};
use futures::future::{BoxFuture, FutureExt};
use tokio::sync::{Mutex, mpsc, watch};

use super::ChannelsRedisConfig;
use super::codec::{self, Body, Target};
use super::hash::consistent_hash;
use super::hosts::{self, Followed, Health};
use super::serializer::{CORE_RANDOM_PREFIX, Serializer};
use crate::layer::names::validate_named_channel;
use crate::layer::{
    ChannelLayer, ChannelReceiver, Envelope, InMemoryChannelLayer, LayerStatus, PresenceTracker,
    SharedLayer, validate_channel_name, validate_group_name,
};
use crate::redis::RedisConnector;
use crate::{Error, Result};

/// Longest wait of one `BZPOPMIN`, in seconds: short enough that a dropped receiver is noticed.
/// It is also at most half the command timeout (see [`block_secs`]).
const BLOCK: f64 = 1.0;

/// How long one `BZPOPMIN` waits: well under the command timeout, so the client's timeout never
/// ends an idle wait (channels_redis #422, where redis-py's 5 s socket timeout raced the layer's
/// 5 s pop and idle daphne members were closed).
fn block_secs(command_timeout: Duration) -> f64 {
    (command_timeout.as_secs_f64() / 2.0).clamp(0.01, BLOCK)
}

/// Most messages taken from a set in one round trip.
const MAX_POP: usize = 512;

/// Messages delivered between two turns given to the consumers.
const YIELD_EVERY: usize = 32;

/// Group sends whose Redis part is done in one batch.
const SEND_BATCH: usize = 256;

/// Group sends queued for Redis; a sender waits for a slot when Redis falls this far behind.
const SEND_QUEUE: usize = 4096;

/// channels_redis' group send script, made to take a batch: for each message, its set is
/// trimmed of messages older than `expiry` (what channels_redis does in a pipeline just before
/// its script), then the message is added unless the set holds its capacity. channels_redis
/// gives every message of one call the same time; here each has its own score, so that several
/// messages to one set in one call keep their order. Returns how many messages found their set
/// full. `KEYS`: a set per message (a set may repeat); `ARGV`: the messages, a capacity per
/// message, a score per message, the expiry.
const SEND_SCRIPT: &str = r"
local n = #KEYS
local expiry = tonumber(ARGV[#ARGV])
local over_capacity = 0
local added = {}
for i = 1, n do
    local key = KEYS[i]
    local score = ARGV[2 * n + i]
    if added[key] == nil then
        redis.call('ZREMRANGEBYSCORE', key, 0, math.floor(tonumber(score)) - expiry)
        added[key] = false
    end
    if redis.call('ZCARD', key) < tonumber(ARGV[n + i]) then
        redis.call('ZADD', key, score, ARGV[i])
        added[key] = true
    else
        over_capacity = over_capacity + 1
    end
end
for key, was_added in pairs(added) do
    if was_added then
        redis.call('EXPIRE', key, expiry)
    end
end
return over_capacity
";

struct Host {
    /// Commands that do not block; fred pipelines the concurrent ones on its connection.
    client: fred::clients::Client,
    /// For the clients of blocking pops, one per popped set.
    connector: RedisConnector,
}

/// A group send on its way to the other processes.
struct GroupSend {
    group: String,
    envelope: Arc<Envelope>,
}

struct Inner {
    config: ChannelsRedisConfig,
    local: InMemoryChannelLayer,
    hosts: Vec<Host>,
    health: Health,
    serializer: Serializer,
    /// `{prefix}specific.{process}!`: this process' set, the part of its channel names before
    /// the `!` after the prefix.
    process_key: String,
    /// SHA-1 of [`SEND_SCRIPT`], as `SCRIPT LOAD` answered.
    script: std::sync::Mutex<String>,
    /// The channels of this process added to each group in Redis, to add again before
    /// `group_expiry` and after Redis comes back. An async lock, held across the Redis round
    /// trip, so a join and a leave of one channel reach Redis in the order they were made.
    memberships: Mutex<HashMap<String, HashSet<String>>>,
    outgoing: mpsc::Sender<GroupSend>,
    /// The host of the next send to a named channel (channels_redis takes them in turn).
    next_host: AtomicUsize,
    /// The last score given, so that one process' messages keep their order in a set.
    last_score: std::sync::Mutex<f64>,
    /// Presence across the processes sharing these hosts (switchboard's own; Django processes
    /// neither see nor join its group).
    presence: PresenceTracker,
}

/// The layer for Django projects on `channels_redis.core.RedisChannelLayer`.
///
/// Made by [`ChannelsRedisConfig::connect`] with [`Flavour::Core`](super::Flavour::Core), or
/// [`CoreChannelLayer::connect`].
#[derive(Clone)]
pub struct CoreChannelLayer {
    inner: Arc<Inner>,
}

impl CoreChannelLayer {
    /// Connects to every host, starts popping this process' set on each, and starts adding
    /// this process' memberships again every third of `group_expiry`.
    pub async fn connect(config: ChannelsRedisConfig) -> Result<CoreChannelLayer> {
        config.check()?;
        let mut hosts = Vec::with_capacity(config.hosts.len());
        for url in &config.hosts {
            let connector = hosts::connector(url, &config)?;
            let client = connector.client(hosts::PURPOSE).await?;
            hosts.push(Host { client, connector });
        }
        let script = load_script(&hosts[0].client, &config.hosts[0]).await?;
        for (host, url) in hosts.iter().zip(&config.hosts).skip(1) {
            load_script(&host.client, url).await?;
        }
        let local = InMemoryChannelLayer::fan_out(config.layer.clone(), "specific.");
        let process_key = format!("{}specific.{}!", config.prefix, local.process_id());
        let serializer = Serializer::new(
            CORE_RANDOM_PREFIX,
            &config.symmetric_encryption_keys,
            Some(config.layer.expiry),
        );
        let (outgoing, queued) = mpsc::channel(SEND_QUEUE);
        let presence = config.layer.presence.clone();
        let inner = Arc::new_cyclic(|weak: &std::sync::Weak<Inner>| {
            let weak = weak.clone();
            Inner {
                health: Health::new(&config.hosts),
                local,
                hosts,
                serializer,
                process_key,
                script: std::sync::Mutex::new(script),
                memberships: Mutex::new(HashMap::new()),
                outgoing,
                next_host: AtomicUsize::new(0),
                last_score: std::sync::Mutex::new(0.0),
                config,
                presence: PresenceTracker::new(presence, move || {
                    let inner = weak.upgrade()?;
                    Some(Arc::new(CoreChannelLayer { inner }) as SharedLayer)
                }),
            }
        });
        // A direct send from a Django process lands on the host of the whole channel name,
        // a group send on the host of its part before the `!` (channels_redis #221): this
        // process pops its set on every host, so it gets both.
        for host in 0..inner.hosts.len() {
            let client = inner.pop_client(host).await?;
            let route = Route::Process;
            tokio::spawn(pump(
                Arc::downgrade(&inner),
                client,
                inner.process_key.clone(),
                route,
            ));
            hosts::follow(Arc::downgrade(&inner), host, &inner.hosts[host].client);
        }
        tokio::spawn(send_groups(Arc::downgrade(&inner), queued));
        tokio::spawn(refresh_memberships(Arc::downgrade(&inner)));
        Ok(CoreChannelLayer { inner })
    }

    /// This process' sorted set, `{prefix}specific.{process}!`.
    pub fn process_key(&self) -> &str {
        &self.inner.process_key
    }

    /// Members of a group in this process.
    pub fn local_group_size(&self, group: &str) -> usize {
        self.inner.local.group_size(group)
    }
}

impl Inner {
    fn group_key(&self, group: &str) -> String {
        format!("{}:group:{group}", self.config.prefix)
    }

    fn group_host(&self, group: &str) -> usize {
        consistent_hash(group, self.hosts.len())
    }

    /// A score after every score this process gave, so that its messages to one set are popped
    /// in the order they were sent (a set orders equal scores by the random bytes).
    fn score(&self) -> f64 {
        let now = unix_time();
        let mut last = self.last_score.lock().unwrap_or_else(|e| e.into_inner());
        *last = if now > *last { now } else { *last + 1e-6 };
        *last
    }

    async fn pop_client(&self, host: usize) -> Result<fred::clients::Client> {
        self.hosts[host].connector.client(hosts::PURPOSE).await
    }

    fn script_sha(&self) -> String {
        self.script
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Runs [`SEND_SCRIPT`] on `host` for each `(keys, args)` in one pipeline; answers how
    /// many sets were full per call. A Redis that restarted has forgotten the script: it is
    /// loaded again and the calls sent once more.
    async fn run_script(&self, host: usize, calls: &[ScriptCall]) -> Result<Vec<i64>> {
        self.health.available(host)?;
        let client = &self.hosts[host].client;
        let mut answers = self.pipelined(client, calls).await?;
        if answers
            .iter()
            .any(|a| matches!(a, Err(err) if is_noscript(err)))
        {
            let sha = load_script(client, self.health.url(host)).await?;
            *self.script.lock().unwrap_or_else(|e| e.into_inner()) = sha;
            answers = self.pipelined(client, calls).await?;
        }
        answers
            .into_iter()
            .map(|answer| {
                answer.map_err(|err| {
                    Error::Layer(format!("send on {}: {err}", self.health.url(host)))
                })
            })
            .collect()
    }

    async fn pipelined(
        &self,
        client: &fred::clients::Client,
        calls: &[ScriptCall],
    ) -> Result<Vec<std::result::Result<i64, fred::error::Error>>> {
        let sha = self.script_sha();
        // Concurrent commands on one fred client are written together (fred pipelines them
        // automatically; its explicit pipelines do not take EVALSHA).
        let calls = calls.iter().map(|call| {
            client.evalsha::<i64, _, _, _>(sha.as_str(), call.keys.clone(), call.args.clone())
        });
        let answers = tokio::time::timeout(
            self.config.command_timeout,
            futures::future::join_all(calls),
        )
        .await
        .map_err(|_| Error::Layer("Redis did not answer a send in time".into()))?;
        Ok(answers)
    }

    /// The arguments of [`SEND_SCRIPT`] for these messages, one per set.
    fn script_call(&self, messages: Vec<(String, Vec<u8>, usize)>) -> ScriptCall {
        let mut keys = Vec::with_capacity(messages.len());
        let mut stored = Vec::with_capacity(messages.len() * 3 + 1);
        let mut capacities = Vec::with_capacity(messages.len());
        let mut scores = Vec::with_capacity(messages.len());
        for (key, message, capacity) in messages {
            keys.push(key);
            stored.push(Value::Bytes(message.into()));
            capacities.push(Value::Integer(i64::try_from(capacity).unwrap_or(i64::MAX)));
            // Shortest text that reads back as the same f64: scores stay distinct.
            scores.push(Value::from(self.score().to_string()));
        }
        stored.extend(capacities);
        stored.extend(scores);
        stored.push(Value::Integer(secs(self.config.layer.expiry)));
        ScriptCall { keys, args: stored }
    }

    /// Adds `channels` of this process to `group` in Redis, as joined now.
    async fn redis_group_add(&self, group: &str, channels: &[String]) -> Result<()> {
        let host = self.group_host(group);
        self.health.available(host)?;
        let key = self.group_key(group);
        let score = unix_time();
        let members: Vec<(f64, String)> = channels.iter().map(|c| (score, c.clone())).collect();
        let client = &self.hosts[host].client;
        let pipeline = client.pipeline();
        let queued: std::result::Result<(), fred::error::Error> = async {
            pipeline
                .zadd::<(), _, _>(&key, None, None, false, false, members)
                .await?;
            pipeline
                .expire::<(), _>(&key, secs(self.config.layer.group_expiry), None)
                .await
        }
        .await;
        queued.map_err(|err| Error::Layer(format!("group_add {group}: {err}")))?;
        match tokio::time::timeout(self.config.command_timeout, pipeline.all::<Vec<Value>>()).await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(err)) => Err(Error::Layer(format!(
                "group_add {group} on {}: {err}",
                self.health.url(host)
            ))),
            Err(_) => Err(Error::Layer(format!(
                "group_add {group} on {}: timed out",
                self.health.url(host)
            ))),
        }
    }

    /// Adds every membership of this process on `host` (all when `None`) again, as joined now,
    /// in Redis and in this process; forgets those whose channel has closed.
    async fn add_memberships_again(&self, host: Option<usize>) {
        let mut memberships = self.memberships.lock().await;
        let mut gone = Vec::new();
        for (group, channels) in memberships.iter_mut() {
            if host.is_some_and(|host| host != self.group_host(group)) {
                continue;
            }
            let closed: Vec<String> = channels
                .iter()
                .filter(|channel| !self.local.has_channel(channel))
                .cloned()
                .collect();
            for channel in closed {
                channels.remove(&channel);
                gone.push((group.clone(), channel));
            }
            // The local membership ages like the one in Redis: renewed together.
            for channel in channels.iter() {
                let _ = self.local.group_add(group, channel).now_or_never();
            }
            if channels.is_empty() {
                continue;
            }
            let channels: Vec<String> = channels.iter().cloned().collect();
            if let Err(err) = self.redis_group_add(group, &channels).await {
                tracing::warn!(%group, error = %err, "could not renew this process' group memberships; retried later");
            }
        }
        memberships.retain(|_, channels| !channels.is_empty());
        drop(memberships);
        for (group, channel) in gone {
            let _ = self.redis_group_discard(&group, &channel).await;
        }
    }

    async fn redis_group_discard(&self, group: &str, channel: &str) -> Result<()> {
        let host = self.group_host(group);
        self.health.available(host)?;
        let remove = self.hosts[host]
            .client
            .zrem::<i64, _, _>(self.group_key(group), channel);
        match tokio::time::timeout(self.config.command_timeout, remove).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(err)) => Err(Error::Layer(format!("group_discard {group}: {err}"))),
            Err(_) => Err(Error::Layer(format!("group_discard {group}: timed out"))),
        }
    }

    /// The channels in each of `groups` (trimming those older than `group_expiry` first, as
    /// channels_redis does), read on each group's host in one pipeline.
    async fn read_groups(&self, groups: &[&str]) -> HashMap<String, Vec<String>> {
        let mut by_host: HashMap<usize, Vec<&str>> = HashMap::new();
        for group in groups {
            by_host
                .entry(self.group_host(group))
                .or_default()
                .push(group);
        }
        let expired = unix_time().floor() - secs(self.config.layer.group_expiry) as f64;
        let reads = by_host.into_iter().map(|(host, groups)| async move {
            let mut found = Vec::new();
            if let Err(err) = self.health.available(host) {
                tracing::warn!(error = %err, groups = groups.len(), "group sends reach this process' members only");
                return found;
            }
            let pipeline = self.hosts[host].client.pipeline();
            for group in &groups {
                let key = self.group_key(group);
                let queued: std::result::Result<(), fred::error::Error> = async {
                    pipeline
                        .zremrangebyscore::<(), _, _, _>(&key, score(0.0), score(expired))
                        .await?;
                    pipeline
                        .zrange::<(), _, _, _>(&key, 0, -1, None, false, None, false)
                        .await
                }
                .await;
                if let Err(err) = queued {
                    tracing::warn!(%group, error = %err, "reading a group failed");
                    return found;
                }
            }
            let answers =
                tokio::time::timeout(self.config.command_timeout, pipeline.try_all::<Value>())
                    .await;
            let Ok(answers) = answers else {
                tracing::warn!(url = %self.health.url(host), "Redis did not answer a group read in time: group sends reach this process' members only");
                return found;
            };
            for (group, answer) in groups.iter().zip(answers.into_iter().skip(1).step_by(2)) {
                match answer {
                    Ok(members) => found.push((
                        (*group).to_owned(),
                        members
                            .into_array()
                            .into_iter()
                            .filter_map(|m| m.as_str().map(|s| s.into_owned()))
                            .collect(),
                    )),
                    Err(err) => tracing::warn!(%group, error = %err, "reading a group failed"),
                }
            }
            found
        });
        futures::future::join_all(reads)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// The Redis part of a batch of group sends: a message per other process with members in
    /// the group, written to that process' set.
    /// Reads the groups of a batch of group sends and makes their messages: one per other
    /// process with members in the group, for that process' set; one script call per host.
    async fn prepare_batch(&self, batch: &[GroupSend]) -> HashMap<usize, Vec<ScriptCall>> {
        let mut groups: Vec<&str> = batch.iter().map(|send| send.group.as_str()).collect();
        groups.sort_unstable();
        groups.dedup();
        let members = self.read_groups(&groups).await;
        let mut messages: HashMap<usize, Vec<(String, Vec<u8>, usize)>> = HashMap::new();
        for send in batch {
            let Some(channels) = members.get(&send.group) else {
                continue;
            };
            let body = match Body::from_json(send.envelope.json()) {
                Ok(body) => body,
                Err(err) => {
                    tracing::warn!(group = %send.group, error = %err, "group message not sent to other processes");
                    continue;
                }
            };
            for (host, made) in self.messages_by_host(&body, channels) {
                messages.entry(host).or_default().extend(made);
            }
        }
        messages
            .into_iter()
            .map(|(host, messages)| (host, vec![self.script_call(messages)]))
            .collect()
    }

    /// Writes what [`Inner::prepare_batch`] made, every host at once.
    async fn write_batch(&self, calls: HashMap<usize, Vec<ScriptCall>>) {
        let writes = calls.into_iter().map(|(host, calls)| async move {
            match self.run_script(host, &calls).await {
                Ok(over) => {
                    let full: i64 = over.iter().sum();
                    if full > 0 {
                        tracing::info!(
                            processes = full,
                            "group messages not stored for processes whose set is at capacity"
                        );
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "group messages to other processes lost")
                }
            }
        });
        futures::future::join_all(writes).await;
    }

    /// For each host, the messages of a group send to the sets of the processes with members:
    /// `(set, message, capacity)`, with this process left out (its members already have it).
    fn messages_by_host(
        &self,
        body: &Body,
        channels: &[String],
    ) -> HashMap<usize, Vec<(String, Vec<u8>, usize)>> {
        // channels_redis' `_map_channel_keys_to_connection`: one message per set, listing the
        // set's channels in the order the group gave them.
        let mut sets: Vec<(&str, Vec<&str>)> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        for channel in channels {
            let set = non_local_name(channel);
            let at = *index.entry(set).or_insert_with(|| {
                sets.push((set, Vec::new()));
                sets.len() - 1
            });
            sets[at].1.push(channel);
        }
        let prefix = &self.config.prefix;
        let mut by_host: HashMap<usize, Vec<(String, Vec<u8>, usize)>> = HashMap::new();
        for (set, channels) in sets {
            let key = format!("{prefix}{set}");
            if key == self.process_key {
                continue;
            }
            let capacity = self.config.layer.capacity_of(channels[0]);
            let message = self
                .serializer
                .serialize(&body.to_channels(channels.into_iter()));
            by_host
                .entry(consistent_hash(set, self.hosts.len()))
                .or_default()
                .push((key, message, capacity));
        }
        by_host
    }

    /// Hands a popped message to its channels in this process; a named channel's message is
    /// returned instead, for its receiver.
    fn deliver(&self, stored: &[u8], score: f64, route: &Route) -> Option<Arc<Envelope>> {
        if score < unix_time() - self.config.layer.expiry.as_secs_f64() {
            tracing::debug!("dropped a message older than the layer's expiry");
            return None;
        }
        let body = match self.serializer.deserialize(stored) {
            Ok(body) => body,
            Err(err) => {
                tracing::warn!(error = %err, "unreadable channels_redis message: skipped");
                return None;
            }
        };
        let decoded = match codec::decode(&body) {
            Ok(decoded) => decoded,
            Err(err) => {
                tracing::warn!(error = %err, "unreadable channels_redis message: skipped");
                return None;
            }
        };
        let envelope = Envelope::from_json(decoded.json);
        match (route, decoded.target) {
            (Route::Named(_), _) => return Some(envelope),
            (Route::Process, Target::One(channel)) => self.deliver_locally(channel, envelope),
            (Route::Process, Target::Many(channels)) => {
                for channel in channels {
                    self.deliver_locally(channel, Arc::clone(&envelope));
                }
            }
            (Route::Process, Target::Popped) => {
                tracing::warn!("a message in this process' set names no channel: skipped");
            }
        }
        None
    }

    fn deliver_locally(&self, channel: &str, envelope: Arc<Envelope>) {
        // The in-memory layer's send is synchronous; its future is ready at once.
        match self.local.send(channel, envelope).now_or_never() {
            Some(Err(Error::ChannelFull(_))) => {
                tracing::debug!(%channel, "channel full: message dropped");
            }
            Some(Err(err)) => tracing::debug!(%channel, error = %err, "message not delivered"),
            Some(Ok(())) | None => {}
        }
    }

    /// The set and host of a direct send (see `CoreChannelLayer::do_send`).
    fn direct_target(&self, channel: &str) -> (String, usize, bool) {
        let hosts = self.hosts.len();
        match channel.find('!') {
            Some(_) => {
                let set = non_local_name(channel);
                // Where its process pops: the host of the set's name. (channels_redis' own
                // sender uses the whole channel name's, so with several hosts a Django
                // process' direct send can miss a Django receiver; see docs/channels-redis.md.)
                (
                    format!("{}{set}", self.config.prefix),
                    consistent_hash(set, hosts),
                    true,
                )
            }
            None => (
                format!("{}{channel}", self.config.prefix),
                self.next_host.fetch_add(1, Ordering::Relaxed) % hosts,
                false,
            ),
        }
    }
}

impl Followed for Inner {
    fn health(&self) -> &Health {
        &self.health
    }

    async fn reconnected(&self, host: usize) {
        match load_script(&self.hosts[host].client, self.health.url(host)).await {
            Ok(sha) => *self.script.lock().unwrap_or_else(|e| e.into_inner()) = sha,
            Err(err) => tracing::warn!(error = %err, "loading the send script failed"),
        }
        self.add_memberships_again(Some(host)).await;
    }
}

struct ScriptCall {
    keys: Vec<String>,
    args: Vec<Value>,
}

/// What a popped set is.
enum Route {
    /// This process' set: messages name their channels.
    Process,
    /// A named channel's set: its messages are the channel's.
    Named(String),
}

/// `specific.abc!def` → `specific.abc!` (channels_redis' `non_local_name`); other names stay.
fn non_local_name(channel: &str) -> &str {
    match channel.find('!') {
        Some(at) => &channel[..=at],
        None => channel,
    }
}

/// A score as a range bound (fred takes integers as indexes).
fn score(at: f64) -> ZRange {
    ZRange {
        kind: ZRangeKind::Inclusive,
        range: ZRangeBound::Score(at),
    }
}

fn unix_time() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn secs(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs().max(1)).unwrap_or(i64::MAX)
}

fn is_noscript(err: &fred::error::Error) -> bool {
    err.details().starts_with("NOSCRIPT")
}

async fn load_script(client: &fred::clients::Client, url: &str) -> Result<String> {
    client
        .script_load::<String, _>(SEND_SCRIPT)
        .await
        .map_err(|err| Error::Layer(format!("SCRIPT LOAD on {url}: {err}")))
}

/// Sends the Redis part of queued group sends, a batch at a time, until the layer is dropped.
///
/// The groups of the next batch are read while the current one is written; a batch is written
/// only once the one before it is answered, so each sender's messages keep their order.
///
/// A batch is at most half a set's capacity: its messages to one process arrive together, and
/// more than the set holds would be refused before that process could pop any.
async fn send_groups(weak: Weak<Inner>, mut queued: mpsc::Receiver<GroupSend>) {
    let most = match weak.upgrade() {
        Some(inner) => SEND_BATCH.min(inner.config.layer.capacity / 2).max(1),
        None => return,
    };
    let mut batch = Vec::with_capacity(most);
    let mut writing: Option<tokio::task::JoinHandle<()>> = None;
    while queued.recv_many(&mut batch, most).await > 0 {
        let Some(inner) = weak.upgrade() else { return };
        let calls = inner.prepare_batch(&batch).await;
        batch.clear();
        if let Some(previous) = writing.take() {
            let _ = previous.await;
        }
        writing = Some(tokio::spawn(async move { inner.write_batch(calls).await }));
    }
}

/// Adds this process' memberships again every third of `group_expiry`: channels_redis trims
/// members older than that at every group send, connected or not.
async fn refresh_memberships(weak: Weak<Inner>) {
    let every = match weak.upgrade() {
        Some(inner) => (inner.config.layer.group_expiry / 3).max(Duration::from_millis(500)),
        None => return,
    };
    let mut ticks = tokio::time::interval(every);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(inner) = weak.upgrade() else { return };
        inner.add_memberships_again(None).await;
    }
}

/// Pops a set into this process for as long as the layer lives (and, for a named channel, its
/// receiver): whatever is waiting in one round trip, or, when nothing is, one blocking pop.
async fn pump(weak: Weak<Inner>, client: fred::clients::Client, key: String, route: Route) {
    let mut held: VecDeque<Arc<Envelope>> = VecDeque::new();
    let Some((batch, block)) = weak.upgrade().map(|inner| {
        let batch = match &route {
            Route::Named(name) => inner.config.layer.capacity_of(name).min(MAX_POP),
            Route::Process => MAX_POP,
        };
        (batch, block_secs(inner.config.command_timeout))
    }) else {
        return;
    };
    loop {
        let Some(inner) = weak.upgrade() else { break };
        if let Route::Named(name) = &route {
            if !inner.local.has_channel(name) {
                break;
            }
            // A receiver's full queue holds the popping; the set keeps the rest.
            if let Some(envelope) = held.pop_front() {
                if let Err(Error::ChannelFull(_)) =
                    inner.local.send(name, Arc::clone(&envelope)).await
                {
                    held.push_front(envelope);
                    drop(inner);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                continue;
            }
        }
        drop(inner);
        let popped = match client.zpopmin::<Value, _>(&key, Some(batch)).await {
            Ok(value) => pairs(value),
            Err(err) => {
                tracing::warn!(%key, error = %err, "popping failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let popped = if popped.is_empty() {
            match client.bzpopmin::<Value, _>(&key, block).await {
                Ok(value) => blocking_pair(value).into_iter().collect(),
                // fred reports "nothing arrived" as a timeout.
                Err(err) if *err.kind() == fred::error::ErrorKind::Timeout => Vec::new(),
                Err(err) => {
                    tracing::warn!(%key, error = %err, "popping failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    Vec::new()
                }
            }
        } else {
            popped
        };
        for (n, (stored, score)) in popped.into_iter().enumerate() {
            // A batch can hold more messages than a member's queue: let the members'
            // consumers take what they were given before the next ones, or a burst would
            // overflow queues that are being read.
            if n > 0 && n % YIELD_EVERY == 0 {
                tokio::task::yield_now().await;
            }
            let Some(inner) = weak.upgrade() else { break };
            if let Some(envelope) = inner.deliver(&stored, score, &route) {
                held.push_back(envelope);
            }
        }
    }
    let _ = client.quit().await;
}

/// `ZPOPMIN`'s answer: member, score, member, score...
fn pairs(value: Value) -> Vec<(bytes::Bytes, f64)> {
    let items = value.into_array();
    items
        .chunks_exact(2)
        .filter_map(|pair| Some((member(&pair[0])?, pair[1].as_f64()?)))
        .collect()
}

/// `BZPOPMIN`'s answer: key, member, score; or nothing.
fn blocking_pair(value: Value) -> Option<(bytes::Bytes, f64)> {
    let items = value.into_array();
    match items.as_slice() {
        [_, stored, score] => Some((member(stored)?, score.as_f64()?)),
        _ => None,
    }
}

fn member(value: &Value) -> Option<bytes::Bytes> {
    match value {
        Value::Bytes(bytes) => Some(bytes.clone()),
        Value::String(text) => Some(text.inner().clone()),
        _ => None,
    }
}

impl CoreChannelLayer {
    async fn do_group_add(&self, group: &str, channel: &str) -> Result<()> {
        validate_group_name(group)?;
        validate_channel_name(channel)?;
        let inner = &self.inner;
        let mut memberships = inner.memberships.lock().await;
        let local = inner.local.has_channel(channel);
        if local {
            inner.local.group_add(group, channel).await?;
            memberships
                .entry(group.to_owned())
                .or_default()
                .insert(channel.to_owned());
        }
        match inner.redis_group_add(group, &[channel.to_owned()]).await {
            Ok(()) => Ok(()),
            // This process' members hear each other meanwhile; the membership is added when
            // Redis is back.
            Err(err) if local => {
                tracing::warn!(%group, error = %err, "group_add reached this process only until Redis is back");
                Ok(())
            }
            Err(err) => Err(err),
        }
    }

    async fn do_group_discard(&self, group: &str, channel: &str) -> Result<()> {
        validate_group_name(group)?;
        validate_channel_name(channel)?;
        let inner = &self.inner;
        let mut memberships = inner.memberships.lock().await;
        inner.local.group_discard(group, channel).await?;
        if let Some(channels) = memberships.get_mut(group) {
            channels.remove(channel);
            if channels.is_empty() {
                memberships.remove(group);
            }
        }
        if let Err(err) = inner.redis_group_discard(group, channel).await {
            tracing::warn!(%group, error = %err, "group_discard did not reach Redis: the membership lasts until group_expiry");
        }
        Ok(())
    }

    async fn do_group_send(&self, group: &str, message: Arc<Envelope>) -> Result<()> {
        validate_group_name(group)?;
        let inner = &self.inner;
        inner.local.group_send(group, Arc::clone(&message)).await?;
        let send = GroupSend {
            group: group.to_owned(),
            envelope: message,
        };
        // A stopped queue only means the layer is going away.
        let _ = inner.outgoing.send(send).await;
        Ok(())
    }

    async fn do_send(&self, channel: &str, message: Arc<Envelope>) -> Result<()> {
        validate_channel_name(channel)?;
        let inner = &self.inner;
        let (key, host, specific) = inner.direct_target(channel);
        if specific && key == inner.process_key {
            return inner.local.send(channel, message).await;
        }
        let body = Body::from_json(message.json())
            .map_err(|err| Error::Layer(format!("cannot send to {channel}: {err}")))?;
        let body = if specific {
            body.to_channel(channel)
        } else {
            body.plain()
        };
        let stored = inner.serializer.serialize(&body);
        let call = inner.script_call(vec![(key, stored, inner.config.layer.capacity_of(channel))]);
        let over = inner.run_script(host, std::slice::from_ref(&call)).await?;
        if over.first().copied().unwrap_or(0) > 0 {
            return Err(Error::ChannelFull(channel.to_owned()));
        }
        Ok(())
    }

    async fn do_receive_channel(&self, name: &str) -> Result<ChannelReceiver> {
        validate_named_channel(name)?;
        let inner = &self.inner;
        let receiver = inner.local.receive_channel(name).await?;
        let key = format!("{}{name}", inner.config.prefix);
        // channels_redis' senders take the hosts in turn: pop them all.
        for host in 0..inner.hosts.len() {
            let client = inner.pop_client(host).await?;
            tokio::spawn(pump(
                Arc::downgrade(inner),
                client,
                key.clone(),
                Route::Named(name.to_owned()),
            ));
        }
        Ok(receiver)
    }
}

impl ChannelLayer for CoreChannelLayer {
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
    use super::*;

    #[test]
    fn a_blocking_pop_ends_before_the_client_gives_up() {
        assert_eq!(block_secs(Duration::from_secs(2)), 1.0);
        assert_eq!(block_secs(Duration::from_millis(500)), 0.25);
        assert_eq!(block_secs(Duration::ZERO), 0.01);
    }

    #[test]
    fn non_local_names() {
        assert_eq!(non_local_name("specific.abc!def"), "specific.abc!");
        assert_eq!(non_local_name("specific.abc!"), "specific.abc!");
        assert_eq!(non_local_name("thumbnails"), "thumbnails");
    }

    #[test]
    fn popped_answers() {
        let answer = Value::Array(vec![
            Value::Bytes(b"one".to_vec().into()),
            Value::from("1.5"),
            Value::from("two"),
            Value::Double(2.0),
        ]);
        let got = pairs(answer);
        assert_eq!(got.len(), 2);
        assert_eq!((&got[0].0[..], got[0].1), (&b"one"[..], 1.5));
        assert_eq!((&got[1].0[..], got[1].1), (&b"two"[..], 2.0));
        assert!(pairs(Value::Null).is_empty());
        let blocking = Value::Array(vec![Value::from("k"), Value::from("m"), Value::from("3")]);
        assert_eq!(blocking_pair(blocking).map(|(_, s)| s), Some(3.0));
        assert!(blocking_pair(Value::Null).is_none());
    }
}
