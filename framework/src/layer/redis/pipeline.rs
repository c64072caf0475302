//! The per-server outgoing pipeline: group messages and named-channel pushes wait in one
//! ordered queue, and a task sends what has accumulated as one Redis pipeline.
//!
//! Within a batch, the messages for one group go out as one `PUBLISH` (a version 2 batch
//! payload when there are several) and the pushes to one named channel as one `LPUSH`, so
//! under load Redis and every subscriber pay per batch rather than per message, while order per
//! group and per named channel is kept. Nothing waits to fill a batch: a batch is whatever was
//! queued while the previous one was in flight.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use fred::prelude::{ClientLike, KeysInterface, ListInterface};
use fred::types::{ClusterHash, CustomCommand, Value};
use tokio::sync::mpsc;

use super::{Inner, Shard, log, wire};
use crate::layer::{ChannelLayer, Envelope, Position};

/// Items queued per server; a sender waits for a slot when Redis falls this far behind.
pub(super) const OUTGOING_CAPACITY: usize = 4096;

/// Most items sent in one pipeline: all that can be queued. The pipeline waits for Redis'
/// answers before it sends the next one, so at most this many items travel per round trip; with
/// 256 the round trip, not the CPU, capped what two processes sharing a core could send (a
/// quarter of a million messages a second at a 1 ms round trip, much less once three processes
/// compete for the core and the round trip grows).
const PIPELINE_BATCH: usize = OUTGOING_CAPACITY;

/// Largest `PUBLISH` payload, in bytes, before a group's batch is split in several: Redis
/// disconnects a subscriber whose unsent output passes 32 MiB (`client-output-buffer-limit
/// pubsub`), so one payload must stay far below that whatever the messages' size.
const MAX_PAYLOAD: usize = 512 << 10;

/// Most events in one payload: a logged group's batch becomes the arguments of a script, and
/// Lua's stack (about 8 000 slots) must hold them.
const MAX_EVENTS: usize = 1_000;

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
/// delivered to this process' own members and workers, as sends are during an outage; one that
/// was sent but not answered is not, as Redis may have carried it out (see [`Failed`]).
pub(super) async fn run(weak: Weak<Inner>, index: usize, mut queued: mpsc::Receiver<Outgoing>) {
    let mut batch = Vec::with_capacity(PIPELINE_BATCH);
    while queued.recv_many(&mut batch, PIPELINE_BATCH).await > 0 {
        // Consumers that are ready to send run before the batch is cut, so their messages
        // share this round trip instead of each starting one (a tenth less CPU per message at
        // 5 000 messages/s with history, where batches are otherwise one message).
        tokio::task::yield_now().await;
        while batch.len() < PIPELINE_BATCH {
            match queued.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        let Some(inner) = weak.upgrade() else { return };
        inner.wait_for_listeners().await;
        let plan = Plan::of(&batch);
        let shard = &inner.shards[index];
        match send(&inner, shard, &plan).await {
            Ok(refused) => note_full_channels(&inner, &plan, &refused),
            Err(Failed::Unsent(err)) => deliver_locally(&inner, shard, &plan, &err).await,
            Err(Failed::Unanswered(err)) => {
                let merged = plan.publishes.iter().chain(&plan.pushes);
                let messages: usize = merged.map(|m| m.items.len()).sum();
                tracing::warn!(url = %shard.url(), error = %err, messages, "Redis did not answer a batch: not delivered again here, as it may have been (at most once)");
            }
        }
        batch.clear();
    }
}

/// Sends a plan in one pipeline; returns how many items of each push were dropped because
/// the list was full.
///
/// A push is `LPUSH` (newest at the head; workers pop the tail), `LTRIM` to the channel's
/// capacity keeping the tail, so what overflowed is the newest, just pushed, and `EXPIRE`.
/// `LPUSH`'s answer, the list's length, says how many overflowed. Not atomic across processes,
/// and it need not be: a trim only ever removes the newest items, which belong to the push that
/// made the list overflow, and that push counts them; a pop in between only makes a push count
/// more than was trimmed. So nothing is dropped uncounted. (A script that checked the length
/// first did the same atomically, but copying every message into Lua was a quarter of Redis'
/// CPU in the benchmark.)
async fn send(inner: &Inner, shard: &Shard, plan: &Plan<'_>) -> Result<Vec<usize>, Failed> {
    shard
        .available()
        .map_err(|err| Failed::Unsent(err.to_string()))?;
    let pipeline = shard.publisher.pipeline();
    let mut publishes = 0;
    for merged in &plan.publishes {
        let channel = inner.naming.group_channel(merged.name);
        let named = inner.naming.names_group_in_payload().then_some(merged.name);
        let logged = inner.logs.config_of(merged.name);
        for events in payload_chunks(&merged.items) {
            match logged {
                None => inner
                    .naming
                    .publish(&pipeline, &channel, wire::group_payload(named, &events))
                    .await
                    .map_err(Failed::unsent)?,
                Some(config) => {
                    // fred's pipelines have no EVAL of their own: the command as Redis reads
                    // it, `EVAL script 2 key key arg...`, sent to the slot of its keys (fred
                    // would hash the script's text).
                    let [head, list] = inner.naming.log_keys(merged.name);
                    let slot = ClusterHash::from(head.as_str());
                    let eval = CustomCommand::new_static("EVAL", slot, false);
                    let mut args: Vec<Value> = Vec::with_capacity(10 + events.len());
                    args.extend([
                        Value::from_static_str(log::APPEND),
                        Value::Integer(2),
                        Value::from(head),
                        Value::from(list),
                        Value::from(&*Position::new_epoch()),
                        Value::Integer(i64::try_from(config.size).unwrap_or(i64::MAX)),
                        Value::Integer(
                            i64::try_from(config.ttl.as_secs().max(1)).unwrap_or(i64::MAX),
                        ),
                        Value::from_static_str(inner.naming.publish_command()),
                        Value::from(channel.as_str()),
                        Value::from(wire::logged_payload_head(named)),
                    ]);
                    args.extend(events.into_iter().map(Value::from));
                    pipeline
                        .custom::<(), _>(eval, args)
                        .await
                        .map_err(Failed::unsent)?;
                }
            }
            publishes += 1;
        }
    }
    let config = inner.local.config();
    let expiry = i64::try_from(config.expiry.as_secs().max(1)).unwrap_or(i64::MAX);
    let mut capacities = Vec::with_capacity(plan.pushes.len());
    for merged in &plan.pushes {
        let key = inner.naming.queue_key(merged.name);
        let capacity = i64::try_from(config.capacity_of(merged.name)).unwrap_or(i64::MAX);
        capacities.push(capacity);
        let items: Vec<&str> = merged.items.iter().map(|e| e.json()).collect();
        pipeline
            .lpush::<(), _, _>(&key, items)
            .await
            .map_err(Failed::unsent)?;
        pipeline
            .ltrim::<(), _>(&key, -capacity, -1)
            .await
            .map_err(Failed::unsent)?;
        pipeline
            .expire::<(), _>(&key, expiry, None)
            .await
            .map_err(Failed::unsent)?;
    }
    let answers = tokio::time::timeout(inner.command_timeout, pipeline.all::<Vec<Value>>())
        .await
        .map_err(|_| {
            Failed::Unanswered(format!(
                "no answer from {} within {:?}",
                shard.url(),
                inner.command_timeout
            ))
        })?
        .map_err(|err| Failed::Unanswered(err.to_string()))?;
    // The pushes' answers follow the publishes', three per push, LPUSH's first.
    Ok(answers
        .iter()
        .skip(publishes)
        .step_by(3)
        .zip(plan.pushes.iter().zip(capacities))
        .map(|(length, (merged, capacity))| {
            let over = length.as_i64().unwrap_or(0).saturating_sub(capacity);
            usize::try_from(over).map_or(0, |over| over.min(merged.items.len()))
        })
        .collect())
}

/// Why a batch did not go through.
enum Failed {
    /// Nothing of it reached Redis (the server is known to be down, or a command could not be
    /// put in the pipeline): delivering it in this process is the only delivery it gets.
    Unsent(String),
    /// Sent, or perhaps sent, without an answer (a timeout, a connection lost on the way): Redis
    /// may have published and pushed any of it, so delivering it here as well could deliver it
    /// twice.
    Unanswered(String),
}

impl Failed {
    fn unsent(err: impl ToString) -> Failed {
        Failed::Unsent(err.to_string())
    }
}

/// A group's events in order, cut where a payload would pass [`MAX_PAYLOAD`] bytes or
/// [`MAX_EVENTS`] events.
fn payload_chunks<'e>(items: &[&'e Arc<Envelope>]) -> Vec<Vec<&'e str>> {
    let mut chunks = Vec::new();
    let mut chunk: Vec<&str> = Vec::new();
    let mut size = 0;
    for envelope in items {
        let json = envelope.json();
        if !chunk.is_empty() && (size + json.len() > MAX_PAYLOAD || chunk.len() == MAX_EVENTS) {
            chunks.push(std::mem::take(&mut chunk));
            size = 0;
        }
        size += json.len() + 1;
        chunk.push(json);
    }
    if !chunk.is_empty() {
        chunks.push(chunk);
    }
    chunks
}

/// Remembers the named channels that refused messages, so sends fail fast for a while, and
/// says what was dropped once per episode: an episode ends with a push that is taken whole.
fn note_full_channels(inner: &Inner, plan: &Plan<'_>, refused: &[usize]) {
    let mut full = inner
        .full_channels
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    for (merged, &refused) in plan.pushes.iter().zip(refused) {
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
    tracing::warn!(url = %shard.url(), error = %err, messages = items, "Redis unavailable: group messages delivered to this process' members only");
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
    fn a_group_batch_is_cut_before_a_payload_grows_too_big() {
        let big = Envelope::encode(&"x".repeat(MAX_PAYLOAD / 3)).unwrap();
        let small = Envelope::encode(&1).unwrap();
        let items = [&big, &big, &small, &big, &big];
        let sizes: Vec<usize> = payload_chunks(&items).iter().map(Vec::len).collect();
        assert_eq!(sizes, [3, 2], "in order, each chunk under the limit");
        let huge = Envelope::encode(&"x".repeat(MAX_PAYLOAD * 2)).unwrap();
        let sizes: Vec<usize> = payload_chunks(&[&small, &huge, &small])
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(
            sizes,
            [1, 1, 1],
            "an event bigger than the limit travels alone"
        );
        let many = vec![&small; MAX_EVENTS + 1];
        let sizes: Vec<usize> = payload_chunks(&many).iter().map(Vec::len).collect();
        assert_eq!(sizes, [MAX_EVENTS, 1]);
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
