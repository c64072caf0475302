//! The per-server outgoing pipeline: group messages and named-channel pushes wait in one
//! ordered queue, and a task sends what has accumulated as one Redis pipeline.
//!
//! Within a batch, the messages for one group go out as one `PUBLISH` (a version 2 batch
//! payload when there are several) and the pushes to one named channel as one script call, so
//! under load Redis and every subscriber pay per batch rather than per message, while order per
//! group and per named channel is kept. Nothing waits to fill a batch: a batch is whatever was
//! queued while the previous one was in flight.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use fred::prelude::{ClientLike, PubsubInterface};
use fred::types::{ClusterHash, CustomCommand, Value};
use tokio::sync::mpsc;

use super::{Inner, Shard, wire};
use crate::layer::{ChannelLayer, Envelope};

/// Items queued per server; a sender waits for a slot when Redis falls this far behind.
pub(super) const OUTGOING_CAPACITY: usize = 4096;

/// Most items sent in one pipeline.
const PIPELINE_BATCH: usize = 256;

/// How long a named channel found full refuses sends without asking Redis again.
pub(super) const FULL_BACKOFF: Duration = Duration::from_millis(100);

/// Something to send to one Redis server.
pub(super) enum Outgoing {
    /// A message for every member of a group, in every process.
    Publish {
        group: String,
        envelope: Arc<Envelope>,
    },
    /// A message for a named channel's list, popped by one worker somewhere.
    Push {
        name: String,
        envelope: Arc<Envelope>,
    },
}

/// Pushes ARGV[3..] on the list KEYS[1], oldest first, as far as it holds fewer than ARGV[1]
/// items; the list expires ARGV[2] seconds after the last push. Returns how many were pushed.
const QUEUE_PUSH: &str = "local n = math.min(tonumber(ARGV[1]) - redis.call('LLEN', KEYS[1]), #ARGV - 2) \
if n <= 0 then return 0 end \
redis.call('LPUSH', KEYS[1], unpack(ARGV, 3, n + 2)) \
redis.call('EXPIRE', KEYS[1], ARGV[2]) \
return n";

/// The items of a batch that share one target (a group, or a named channel's list), in queue
/// order. The Redis names are made here, once per target, not once per message.
struct Merged<'a> {
    name: &'a str,
    items: Vec<&'a Arc<Envelope>>,
}

/// A batch merged by target: publishes and pushes, each in order of first appearance.
#[derive(Default)]
struct Plan<'a> {
    publishes: Vec<Merged<'a>>,
    pushes: Vec<Merged<'a>>,
}

impl<'a> Plan<'a> {
    fn of(batch: &'a [Outgoing]) -> Plan<'a> {
        let mut plan = Plan::default();
        let mut index: HashMap<(bool, &str), usize> = HashMap::new();
        for item in batch {
            let (is_push, name, envelope) = match item {
                Outgoing::Publish { group, envelope } => (false, group.as_str(), envelope),
                Outgoing::Push { name, envelope } => (true, name.as_str(), envelope),
            };
            let list = if is_push {
                &mut plan.pushes
            } else {
                &mut plan.publishes
            };
            let at = *index.entry((is_push, name)).or_insert_with(|| {
                list.push(Merged {
                    name,
                    items: Vec::new(),
                });
                list.len() - 1
            });
            list[at].items.push(envelope);
        }
        plan
    }
}

/// Sends one server's queued items until the layer is dropped. A batch that cannot be sent is
/// delivered to this process' own members and workers, as sends are during an outage.
pub(super) async fn run(weak: Weak<Inner>, index: usize, mut queued: mpsc::Receiver<Outgoing>) {
    let mut batch = Vec::with_capacity(PIPELINE_BATCH);
    while queued.recv_many(&mut batch, PIPELINE_BATCH).await > 0 {
        let Some(inner) = weak.upgrade() else { return };
        let plan = Plan::of(&batch);
        let shard = &inner.shards[index];
        match send(&inner, shard, &plan).await {
            Ok(pushed) => note_full_channels(&inner, &plan, &pushed),
            Err(err) => deliver_locally(&inner, shard, &plan, &err).await,
        }
        batch.clear();
    }
}

/// Sends a plan in one pipeline; returns how many items each push stored.
async fn send(inner: &Inner, shard: &Shard, plan: &Plan<'_>) -> Result<Vec<i64>, String> {
    shard.available().map_err(|err| err.to_string())?;
    let pipeline = shard.publisher.pipeline();
    for merged in &plan.publishes {
        let events: Vec<&str> = merged.items.iter().map(|e| e.json()).collect();
        pipeline
            .publish::<(), _, _>(
                inner.group_channel(merged.name),
                wire::group_payload(&events),
            )
            .await
            .map_err(|err| err.to_string())?;
    }
    let config = inner.local.config();
    let expiry = config.expiry.as_secs().max(1).to_string();
    for merged in &plan.pushes {
        // fred's pipelines have no EVAL of their own: EVAL script 1 key capacity expiry items…
        let eval = CustomCommand::new_static("EVAL", ClusterHash::Offset(2), false);
        let key = inner.queue_key(merged.name);
        let capacity = config.capacity_of(merged.name).to_string();
        let mut args = Vec::with_capacity(merged.items.len() + 5);
        args.extend([QUEUE_PUSH, "1", &key, &capacity, &expiry]);
        args.extend(merged.items.iter().map(|e| e.json()));
        pipeline
            .custom::<(), _>(eval, args)
            .await
            .map_err(|err| err.to_string())?;
    }
    let answers = tokio::time::timeout(inner.command_timeout, pipeline.all::<Vec<Value>>())
        .await
        .map_err(|_| {
            format!(
                "no answer from {} within {:?}",
                shard.url, inner.command_timeout
            )
        })?
        .map_err(|err| err.to_string())?;
    // The pushes' answers follow the publishes' in the pipeline.
    Ok(answers
        .iter()
        .skip(plan.publishes.len())
        .map(|answer| answer.as_i64().unwrap_or(0))
        .collect())
}

/// Remembers the named channels that refused messages, so sends fail fast for a while, and
/// says what was dropped once per episode: an episode ends with a push that is taken whole.
fn note_full_channels(inner: &Inner, plan: &Plan<'_>, pushed: &[i64]) {
    let mut full = inner
        .full_channels
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    for (merged, &stored) in plan.pushes.iter().zip(pushed) {
        let refused = merged
            .items
            .len()
            .saturating_sub(usize::try_from(stored).unwrap_or(0));
        if refused == 0 {
            if !full.is_empty() {
                full.remove(merged.name);
            }
            continue;
        }
        let until = Instant::now() + FULL_BACKOFF;
        if full.insert(merged.name.to_owned(), until).is_none() {
            tracing::warn!(channel = %merged.name, dropped = refused, "named channel full: messages dropped until its workers catch up");
        }
    }
}

async fn deliver_locally(inner: &Inner, shard: &Shard, plan: &Plan<'_>, err: &str) {
    let items: usize = plan.publishes.iter().map(|m| m.items.len()).sum();
    tracing::warn!(url = %shard.url, error = %err, messages = items, "Redis unavailable: group messages delivered to this process' members only");
    for merged in &plan.publishes {
        for envelope in &merged.items {
            let _ = inner
                .local
                .group_send(merged.name, Arc::clone(envelope))
                .await;
        }
    }
    for merged in &plan.pushes {
        if !inner.local.has_channel(merged.name) {
            tracing::warn!(channel = %merged.name, messages = merged.items.len(), "Redis unavailable and no local worker: messages dropped");
            continue;
        }
        for envelope in &merged.items {
            let _ = inner.local.send(merged.name, Arc::clone(envelope)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(group: &str, n: u32) -> Outgoing {
        Outgoing::Publish {
            group: group.to_owned(),
            envelope: Envelope::encode(&n).unwrap(),
        }
    }

    fn push(name: &str, n: u32) -> Outgoing {
        Outgoing::Push {
            name: name.to_owned(),
            envelope: Envelope::encode(&n).unwrap(),
        }
    }

    #[test]
    fn batches_merge_by_target_in_order() {
        let batch = [
            publish("a", 1),
            push("jobs", 2),
            publish("b", 3),
            publish("a", 4),
            push("jobs", 5),
        ];
        let plan = Plan::of(&batch);
        let shape = |merged: &[Merged<'_>]| -> Vec<(String, Vec<String>)> {
            merged
                .iter()
                .map(|m| {
                    (
                        m.name.to_owned(),
                        m.items.iter().map(|e| e.json().to_owned()).collect(),
                    )
                })
                .collect()
        };
        assert_eq!(
            shape(&plan.publishes),
            [
                ("a".to_owned(), vec!["1".to_owned(), "4".to_owned()]),
                ("b".to_owned(), vec!["3".to_owned()]),
            ]
        );
        assert_eq!(
            shape(&plan.pushes),
            [("jobs".to_owned(), vec!["2".to_owned(), "5".to_owned()])]
        );
    }
}
