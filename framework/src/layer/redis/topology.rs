//! What differs between Redis servers and a Redis Cluster: the names of channels and keys, and
//! the pub/sub commands that carry them. Everything else (pipeline, listener, outage story)
//! is the same code for both.
//!
//! On servers a group is its own channel, `{prefix}:group:{group}` (`PUBLISH`/`SUBSCRIBE`),
//! spread over the servers by a hash of the name. On a cluster, plain pub/sub is broadcast to
//! every node, so groups use sharded pub/sub (`SPUBLISH`/`SSUBSCRIBE`, Redis 7) instead, on a
//! fixed number of partition channels `{prefix}:group:{pN-K}`: a process holds at most that
//! many shard subscriptions however many rooms it serves, each message names its group in the
//! payload, and each partition's hash tag puts it in its own part of the slot space, so the
//! partitions spread evenly over the masters. Process channels and named channels' lists carry
//! their name as hash tag (`{prefix}:process:{id}`, `{prefix}:queue:{name}`, braces included),
//! so anything later stored beside them (`…:{name}:…`) stays in the same slot.

use fred::clients::SubscriberClient;
use fred::interfaces::{ClientLike, ClusterInterface, PubsubInterface};
use fred::prelude::Options;
use fred::types::Value;

type FredResult<T> = Result<T, fred::error::Error>;

/// How the Redis the layer talks to is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RedisTopology {
    /// Independent servers (one, or several that names are sharded over by the layer).
    Servers,
    /// One Redis Cluster: groups over sharded pub/sub, spread over `partitions` channels.
    Cluster {
        /// Shard channels the groups are spread over (default 16): each process subscribes
        /// to at most this many. More spreads the load over more masters; fewer means each
        /// process receives the messages of more rooms it has no member in.
        partitions: u16,
    },
}

/// Default [`RedisTopology::Cluster::partitions`].
pub const DEFAULT_PARTITIONS: u16 = 16;

/// Number of hash slots of a Redis Cluster.
const SLOTS: u32 = 16_384;

/// The names of one layer's channels and keys.
pub(super) struct Naming {
    /// `{prefix}:group:`, the start of every group channel.
    group_prefix: String,
    prefix: String,
    /// A cluster's partitions' hash tags, and their channels, in partition order; empty on
    /// servers.
    tags: Vec<String>,
    partitions: Vec<String>,
}

impl Naming {
    pub(super) fn new(prefix: &str, topology: RedisTopology) -> Naming {
        let group_prefix = format!("{prefix}:group:");
        let tags: Vec<String> = match topology {
            RedisTopology::Servers => Vec::new(),
            RedisTopology::Cluster { partitions } => (0..u32::from(partitions.max(1)))
                .map(|n| partition_tag(n, partitions.max(1)))
                .collect(),
        };
        let partitions = tags
            .iter()
            .map(|tag| format!("{group_prefix}{{{tag}}}"))
            .collect();
        Naming {
            group_prefix,
            prefix: prefix.to_owned(),
            tags,
            partitions,
        }
    }

    fn is_cluster(&self) -> bool {
        !self.partitions.is_empty()
    }

    /// The channel a group's messages are published on.
    pub(super) fn group_channel(&self, group: &str) -> String {
        if self.is_cluster() {
            self.partitions[self.partition_of(group)].clone()
        } else {
            format!("{}{group}", self.group_prefix)
        }
    }

    fn partition_of(&self, group: &str) -> usize {
        super::shard::shard_of(group, self.partitions.len())
    }

    /// The keys of a group's log (see `log.rs`): its head hash and its list. On a cluster they
    /// carry the hash tag of the group's partition, so the script that appends to them and
    /// publishes on the partition touches one slot.
    pub(super) fn log_keys(&self, group: &str) -> [String; 2] {
        let prefix = &self.prefix;
        if self.is_cluster() {
            let tag = &self.tags[self.partition_of(group)];
            [
                format!("{prefix}:log-head:{{{tag}}}:{group}"),
                format!("{prefix}:log:{{{tag}}}:{group}"),
            ]
        } else {
            [
                format!("{prefix}:log-head:{group}"),
                format!("{prefix}:log:{group}"),
            ]
        }
    }

    /// The command a script publishes a group's messages with.
    pub(super) fn publish_command(&self) -> &'static str {
        if self.is_cluster() {
            "SPUBLISH"
        } else {
            "PUBLISH"
        }
    }

    /// Whether a group's name travels in its payloads (a partition carries many groups).
    pub(super) fn names_group_in_payload(&self) -> bool {
        self.is_cluster()
    }

    /// The group a received channel is the channel of, on servers; on a cluster the payload
    /// says it.
    pub(super) fn group_of_channel<'a>(&self, channel: &'a str) -> Option<&'a str> {
        if self.is_cluster() {
            None
        } else {
            channel.strip_prefix(self.group_prefix.as_str())
        }
    }

    /// Whether a received channel carries group messages.
    pub(super) fn is_group_channel(&self, channel: &str) -> bool {
        channel.starts_with(self.group_prefix.as_str())
    }

    /// The channel of one process' direct messages.
    pub(super) fn process_channel(&self, process: &str) -> String {
        if self.is_cluster() {
            format!("{}:process:{{{process}}}", self.prefix)
        } else {
            format!("{}:process:{process}", self.prefix)
        }
    }

    /// The list of a named channel.
    pub(super) fn queue_key(&self, name: &str) -> String {
        if self.is_cluster() {
            format!("{}:queue:{{{name}}}", self.prefix)
        } else {
            format!("{}:queue:{name}", self.prefix)
        }
    }

    /// Subscribes the subscriber to a channel and returns once Redis has the subscription:
    /// fred reports a subscription done once written, and a PING on the same connection is
    /// answered after it, so a publish from another process cannot slip past the joiner.
    pub(super) async fn subscribe(
        &self,
        subscriber: &SubscriberClient,
        channel: &str,
    ) -> FredResult<()> {
        if !self.is_cluster() {
            subscriber.subscribe(channel.to_owned()).await?;
            return subscriber.ping::<Value>(None).await.map(drop);
        }
        subscriber.ssubscribe(channel.to_owned()).await?;
        // The PING must reach the node that took the SSUBSCRIBE: the slot's master.
        let slot = fred::util::redis_keyslot(channel.as_bytes());
        let node = subscriber
            .cached_cluster_state()
            .and_then(|state| state.get_server(slot).cloned());
        let options = Options {
            cluster_node: node,
            ..Options::default()
        };
        subscriber
            .with_options(&options)
            .ping::<Value>(None)
            .await
            .map(drop)
    }

    pub(super) async fn unsubscribe(
        &self,
        subscriber: &SubscriberClient,
        channel: &str,
    ) -> FredResult<()> {
        if self.is_cluster() {
            subscriber.sunsubscribe(channel.to_owned()).await
        } else {
            subscriber.unsubscribe(channel.to_owned()).await
        }
    }

    /// Queues a publish in a pipeline (`SPUBLISH` on a cluster, routed to the slot's master).
    pub(super) async fn publish<C: PubsubInterface>(
        &self,
        client: &C,
        channel: &str,
        payload: String,
    ) -> FredResult<()> {
        if self.is_cluster() {
            client.spublish::<(), _, _>(channel, payload).await
        } else {
            client.publish::<(), _, _>(channel, payload).await
        }
    }
}

/// The hash tag of partition `n` of `count`: `pN-K` with the smallest `K` whose slot falls in
/// the `n`th of `count` equal parts of the slot space. The same in every process; spread
/// evenly over any cluster whose masters hold equal ranges of slots (as `redis-cli --cluster
/// create` makes them).
fn partition_tag(n: u32, count: u16) -> String {
    let count = u32::from(count);
    let (low, high) = (n * SLOTS / count, (n + 1) * SLOTS / count);
    (0u32..)
        .map(|k| format!("p{n}-{k}"))
        .find(|tag| {
            let slot = u32::from(fred::util::redis_keyslot(tag.as_bytes()));
            (low..high).contains(&slot)
        })
        .unwrap_or_else(|| format!("p{n}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_keep_their_names() {
        let naming = Naming::new("sb", RedisTopology::Servers);
        assert_eq!(naming.group_channel("chat_a"), "sb:group:chat_a");
        assert_eq!(naming.group_of_channel("sb:group:chat_a"), Some("chat_a"));
        assert_eq!(naming.process_channel("abc"), "sb:process:abc");
        assert_eq!(naming.queue_key("jobs"), "sb:queue:jobs");
        assert!(!naming.names_group_in_payload());
        assert_eq!(
            naming.log_keys("chat_a"),
            ["sb:log-head:chat_a", "sb:log:chat_a"]
        );
        assert_eq!(naming.publish_command(), "PUBLISH");
    }

    #[test]
    fn a_cluster_spreads_groups_over_tagged_partitions() {
        let naming = Naming::new("sb", RedisTopology::Cluster { partitions: 16 });
        assert!(naming.names_group_in_payload());
        let mut channels: Vec<String> = (0..1000)
            .map(|n| naming.group_channel(&format!("chat_{n}")))
            .collect();
        channels.sort();
        channels.dedup();
        assert_eq!(channels.len(), 16, "every partition used, no other channel");
        assert!(channels.iter().all(|c| naming.is_group_channel(c)));
        assert_eq!(naming.group_of_channel(&channels[0]), None);
        // Each partition in its own sixteenth of the slot space: even over 2, 4 or 8 masters
        // and within one partition of even over 3.
        let mut slots: Vec<u16> = naming
            .partitions
            .iter()
            .map(|c| fred::util::redis_keyslot(c.as_bytes()))
            .collect();
        slots.sort();
        for (n, slot) in slots.iter().enumerate() {
            assert_eq!(u32::from(*slot) * 16 / SLOTS, n as u32, "{slots:?}");
        }
        assert_eq!(naming.process_channel("abc"), "sb:process:{abc}");
        assert_eq!(naming.queue_key("jobs"), "sb:queue:{jobs}");
        // A log's keys share its group's partition's slot.
        let channel_slot = fred::util::redis_keyslot(naming.group_channel("chat_7").as_bytes());
        for key in naming.log_keys("chat_7") {
            assert_eq!(
                fred::util::redis_keyslot(key.as_bytes()),
                channel_slot,
                "{key}"
            );
        }
        assert_eq!(naming.publish_command(), "SPUBLISH");
    }
}
