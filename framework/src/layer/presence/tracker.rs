//! A layer's presence tracker: the replicas of one process, and the task that keeps them in
//! step with the other processes' trackers.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use serde_json::Value;
use tokio::sync::{OnceCell, watch};
use tokio::time::{Instant, MissedTickBehavior};

use super::replica::Replica;
use super::wire::{Change, SyncRequest, TRACKERS_GROUP, Wire};
use super::{PresenceConfig, PresenceEntry, PresenceEvent};
use crate::error::{Error, Result};
use crate::layer::{
    ChannelReceiver, Envelope, LayerStatus, SharedLayer, validate_channel_name, validate_group_name,
};

/// How a tracker reaches its layer without keeping it alive: the layer owns the tracker.
type LayerRef = Box<dyn Fn() -> Option<SharedLayer> + Send + Sync>;

/// Messages taken from the tracker's channel in one go before it looks at its timers.
const DRAIN_BATCH: usize = 64;

/// One layer's presence in this process (see [`presence`](super)).
///
/// Every built-in layer has one, reached with
/// [`ChannelLayer::presence_tracker`](crate::layer::ChannelLayer::presence_tracker). It starts on
/// first use: a channel of its own, one group joined, one task.
pub struct PresenceTracker {
    shared: Arc<Shared>,
}

struct Shared {
    config: PresenceConfig,
    layer: LayerRef,
    state: Mutex<State>,
    /// The tracker's channel name once started: it names this process in presence traffic.
    started: OnceCell<Arc<str>>,
}

#[derive(Default)]
struct State {
    groups: HashMap<Arc<str>, Replica>,
    /// The groups each local channel tracks or watches in, to forget it in one step.
    channels: HashMap<Arc<str>, Vec<Arc<str>>>,
    peers: HashMap<Arc<str>, Peer>,
    /// The number of this tracker's last message.
    seq: u64,
    /// Processes that asked for groups this process has no entries in: they get an empty
    /// state for each, so they drop what they still hold of it.
    owed: Vec<String>,
    /// Processes whose messages went missing: they are asked for every group replicated here.
    resync: HashSet<Arc<str>>,
}

/// Another process' tracker, as heard.
struct Peer {
    seen: Instant,
    seq: u64,
}

impl PresenceTracker {
    /// A tracker for the layer that `layer` hands out; called by each layer when it is made,
    /// with a weak way back to itself.
    pub(crate) fn new(
        config: PresenceConfig,
        layer: impl Fn() -> Option<SharedLayer> + Send + Sync + 'static,
    ) -> PresenceTracker {
        PresenceTracker {
            shared: Arc::new(Shared {
                config,
                layer: Box::new(layer),
                state: Mutex::new(State::default()),
                started: OnceCell::new(),
            }),
        }
    }

    /// How presence is kept.
    pub fn config(&self) -> &PresenceConfig {
        &self.shared.config
    }

    /// Tracks `channel` in `group` under `key` with `meta`; tracking it again replaces its key
    /// and meta (Phoenix's `update`). Whoever watches the group hears of it within one
    /// interval, in this process and the others.
    pub async fn track(&self, group: &str, channel: &str, key: &str, meta: Value) -> Result<()> {
        validate_group_name(group)?;
        validate_channel_name(channel)?;
        let own = self.start().await?;
        let mut state = self.shared.state();
        let (group, conn) = state.register(group, channel);
        let replica = state.groups.entry(group).or_insert_with(Replica::new);
        replica.track(&own, conn, key, meta);
        Ok(())
    }

    /// Stops tracking `channel` in `group` (it may still watch it).
    pub async fn untrack(&self, group: &str, channel: &str) -> Result<()> {
        validate_group_name(group)?;
        let Some(own) = self.shared.started.get() else {
            return Ok(());
        };
        let mut state = self.shared.state();
        let watching = match state.groups.get_mut(group) {
            Some(replica) => {
                replica.untrack(own, channel);
                replica.watchers.iter().any(|w| &**w == channel)
            }
            None => false,
        };
        if !watching {
            state.unregister(group, channel);
        }
        Ok(())
    }

    /// Makes `channel` a watcher of `group`: within one interval it receives the group's whole
    /// presence ([`PresenceEvent::State`]), then a [`PresenceEvent::Diff`] whenever it changes,
    /// as envelopes on its channel that carry the event
    /// ([`Envelope::presence_event`]).
    pub async fn watch(&self, group: &str, channel: &str) -> Result<()> {
        validate_group_name(group)?;
        validate_channel_name(channel)?;
        self.start().await?;
        let mut state = self.shared.state();
        let (group, conn) = state.register(group, channel);
        state
            .groups
            .entry(group)
            .or_insert_with(Replica::new)
            .watch(conn);
        Ok(())
    }

    /// Untracks `channel` everywhere and stops its watching: what a consumer's end does,
    /// however the connection ends.
    pub fn forget(&self, channel: &str) {
        let Some(own) = self.shared.started.get() else {
            return;
        };
        let mut state = self.shared.state();
        let Some(groups) = state.channels.remove(channel) else {
            return;
        };
        for group in groups {
            if let Some(replica) = state.groups.get_mut(&group) {
                replica.untrack(own, channel);
                replica.unwatch(channel);
            }
        }
    }

    /// Who is in `group`: one entry per key, in key order, from this process' replica.
    ///
    /// A group this process does not replicate yet (none of its connections tracks or watches
    /// it) is replicated from now on for a [`timeout`](PresenceConfig::timeout); on a layer
    /// shared by several processes the first call then waits two intervals for the others'
    /// answers.
    pub async fn list(&self, group: &str) -> Result<Vec<PresenceEntry>> {
        validate_group_name(group)?;
        self.start().await?;
        let now = Instant::now();
        let new = {
            let mut state = self.shared.state();
            let new = !state.groups.contains_key(group);
            let replica = state
                .groups
                .entry(Arc::from(group))
                .or_insert_with(Replica::new);
            replica.kept_until = Some(now + self.shared.config.timeout);
            new
        };
        if new && self.shared.layer().is_ok_and(|l| l.status().is_some()) {
            tokio::time::sleep(self.shared.config.interval * 2).await;
        }
        let state = self.shared.state();
        Ok(state
            .groups
            .get(group)
            .map(Replica::entries)
            .unwrap_or_default())
    }

    /// Starts the tracker once: its channel, its group, its task.
    async fn start(&self) -> Result<Arc<str>> {
        let shared = &self.shared;
        let own = shared
            .started
            .get_or_try_init(|| async {
                let layer = shared.layer()?;
                let receiver = layer.new_channel().await?;
                let own: Arc<str> = Arc::from(receiver.name());
                layer.group_add(TRACKERS_GROUP, &own).await?;
                tokio::spawn(run(
                    Arc::downgrade(shared),
                    receiver,
                    Arc::clone(&own),
                    layer.status(),
                    shared.config.clone(),
                ));
                Ok::<_, Error>(own)
            })
            .await?;
        Ok(Arc::clone(own))
    }
}

impl fmt::Debug for PresenceTracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PresenceTracker")
            .field("config", &self.shared.config)
            .field("process", &self.shared.started.get())
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// A poisoned lock only means a thread panicked mid-update of plain maps; keep serving.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn layer(&self) -> Result<SharedLayer> {
        (self.layer)().ok_or_else(|| Error::Layer("the channel layer has been dropped".into()))
    }
}

impl State {
    /// Notes that `channel` is in `group`; the group's and the channel's shared names.
    fn register(&mut self, group: &str, channel: &str) -> (Arc<str>, Arc<str>) {
        let group = match self.groups.get_key_value(group) {
            Some((name, _)) => Arc::clone(name),
            None => Arc::from(group),
        };
        let (conn, groups) = match self.channels.get_key_value(channel) {
            Some((conn, _)) => (Arc::clone(conn), None),
            None => (Arc::from(channel), Some(Vec::with_capacity(1))),
        };
        let groups = match groups {
            Some(new) => self.channels.entry(Arc::clone(&conn)).or_insert(new),
            None => self
                .channels
                .get_mut(&conn)
                .expect("looked up just above, under the same lock"),
        };
        if !groups.contains(&group) {
            groups.push(Arc::clone(&group));
        }
        (group, conn)
    }

    fn unregister(&mut self, group: &str, channel: &str) {
        if let Some(groups) = self.channels.get_mut(channel) {
            groups.retain(|g| &**g != group);
            if groups.is_empty() {
                self.channels.remove(channel);
            }
        }
    }

    /// Applies a message from another tracker.
    fn receive(&mut self, own: &str, wire: Wire, now: Instant) {
        let process = match self.peers.get_key_value(wire.process.as_str()) {
            Some((name, _)) => Arc::clone(name),
            None => Arc::from(wire.process.as_str()),
        };
        let expected = match self.peers.get(&process) {
            Some(peer) if wire.heartbeat => Some(peer.seq),
            Some(peer) => Some(peer.seq + 1),
            None => None,
        };
        if expected.is_some_and(|expected| expected != wire.seq) {
            tracing::debug!(%process, seq = wire.seq, "presence: messages from a process went missing; asking it again");
            self.resync.insert(Arc::clone(&process));
        }
        self.peers.insert(
            Arc::clone(&process),
            Peer {
                seen: now,
                seq: wire.seq,
            },
        );
        for change in wire.changes {
            let Some(replica) = self.groups.get_mut(change.group.as_str()) else {
                continue;
            };
            if let Some(entries) = change.state {
                replica.apply_state(&process, entries);
            }
            replica.apply_delta(&process, change.joins, change.leaves);
        }
        for sync in wire.syncs {
            let asked = sync.of.as_deref().is_none_or(|of| of == own);
            if !asked {
                continue;
            }
            for group in sync.groups {
                match self.groups.get_mut(group.as_str()) {
                    Some(replica) if replica.tracks_any(own) || sync.of.is_some() => {
                        replica.state_due = true;
                    }
                    Some(_) => {}
                    // Asked by name: say there is nothing, so what the asker holds goes.
                    None if sync.of.is_some() => self.owed.push(group),
                    None => {}
                }
            }
        }
    }

    /// Drops the processes not heard from within `timeout`.
    fn sweep(&mut self, now: Instant, timeout: std::time::Duration) {
        let gone: Vec<Arc<str>> = self
            .peers
            .iter()
            .filter(|(_, peer)| now.saturating_duration_since(peer.seen) > timeout)
            .map(|(process, _)| Arc::clone(process))
            .collect();
        for process in gone {
            tracing::info!(%process, "presence: a process went silent; its entries leave");
            self.peers.remove(&process);
            self.resync.remove(&process);
            for replica in self.groups.values_mut() {
                replica.drop_process(&process);
            }
        }
    }
}

/// A presence event for a group, and the watchers it goes to.
struct Delivery {
    envelope: Arc<Envelope>,
    group: Arc<str>,
    watchers: Vec<Arc<str>>,
}

/// What a flush hands out once the lock is released.
struct Outbound {
    wire: Option<Wire>,
    deliveries: Vec<Delivery>,
}

impl State {
    /// Takes what is due: this process' changes and requests as one message, and each group's
    /// event for its watchers. Forgets groups nobody here needs any more.
    fn flush(&mut self, own: &str, now: Instant, heartbeat: bool) -> Outbound {
        let mut changes = Vec::new();
        let mut syncs = Vec::new();
        let mut everyone = Vec::new();
        let mut deliveries = Vec::new();
        for (group, replica) in &mut self.groups {
            if replica.state_due {
                replica.state_due = false;
                replica.clear_outbox();
                changes.push(Change {
                    group: group.to_string(),
                    state: Some(replica.own_entries(own)),
                    ..Change::default()
                });
            } else {
                let (joins, leaves) = replica.take_outbox(own);
                if !joins.is_empty() || !leaves.is_empty() {
                    changes.push(Change {
                        group: group.to_string(),
                        state: None,
                        joins,
                        leaves,
                    });
                }
            }
            if replica.sync_due {
                replica.sync_due = false;
                everyone.push(group.to_string());
            }
            deliveries.extend(events(group, replica));
        }
        if !everyone.is_empty() {
            syncs.push(SyncRequest {
                groups: everyone,
                of: None,
            });
        }
        if self.groups.is_empty() {
            // Nothing replicated here, nothing to ask for.
            self.resync.clear();
        }
        for process in self.resync.drain() {
            syncs.push(SyncRequest {
                groups: self.groups.keys().map(|g| g.to_string()).collect(),
                of: Some(process.to_string()),
            });
        }
        for group in self.owed.drain(..) {
            changes.push(Change {
                group,
                state: Some(Vec::new()),
                ..Change::default()
            });
        }
        self.groups.retain(|_, replica| !replica.idle(own, now));
        let mut wire = Wire {
            process: own.to_owned(),
            seq: self.seq,
            heartbeat,
            changes,
            syncs,
        };
        let wire = if !wire.is_empty() {
            self.seq += 1;
            wire.seq = self.seq;
            wire.heartbeat = false;
            Some(wire)
        } else {
            heartbeat.then_some(wire)
        };
        Outbound { wire, deliveries }
    }
}

/// A group's events for its watchers: the diff for those who had the state, the state for new
/// ones.
fn events(group: &Arc<str>, replica: &mut Replica) -> Vec<Delivery> {
    let mut events = Vec::new();
    let fresh = std::mem::take(&mut replica.fresh);
    if replica.changed() {
        let (joins, leaves) = replica.take_diff();
        let settled: Vec<Arc<str>> = if fresh.is_empty() {
            replica.watchers.clone()
        } else {
            let fresh: HashSet<&str> = fresh.iter().map(|w| &**w).collect();
            replica
                .watchers
                .iter()
                .filter(|w| !fresh.contains(&***w))
                .cloned()
                .collect()
        };
        let changed = !joins.is_empty() || !leaves.is_empty();
        if changed && !settled.is_empty() {
            let diff = PresenceEvent::Diff {
                group: group.to_string(),
                joins,
                leaves,
            };
            push_event(&mut events, group, diff, settled);
        }
    }
    if !fresh.is_empty() {
        let state = PresenceEvent::State {
            group: group.to_string(),
            entries: replica.entries(),
        };
        push_event(&mut events, group, state, fresh);
    }
    events
}

fn push_event(
    events: &mut Vec<Delivery>,
    group: &Arc<str>,
    event: PresenceEvent,
    watchers: Vec<Arc<str>>,
) {
    match Envelope::presence(event) {
        Ok(envelope) => events.push(Delivery {
            envelope,
            group: Arc::clone(group),
            watchers,
        }),
        Err(err) => tracing::error!(%group, error = %err, "presence event not encoded"),
    }
}

/// The tracker's task: applies what the other processes say, and flushes every interval.
/// Ends when the tracker is dropped with its layer.
async fn run(
    weak: Weak<Shared>,
    mut receiver: ChannelReceiver,
    own: Arc<str>,
    mut status: Option<watch::Receiver<LayerStatus>>,
    config: PresenceConfig,
) {
    let mut flush = tokio::time::interval(config.interval);
    flush.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut heartbeat = tokio::time::interval(config.heartbeat);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let woken = tokio::select! {
            message = receiver.recv() => match message {
                Some(message) => Wake::Message(message),
                None => return,
            },
            _ = flush.tick() => Wake::Flush { heartbeat: false },
            _ = heartbeat.tick() => Wake::Flush { heartbeat: true },
            changed = next_status(&mut status) => Wake::Status(changed),
        };
        let Some(shared) = weak.upgrade() else { return };
        match woken {
            Wake::Message(message) => {
                let now = Instant::now();
                let mut state = shared.state();
                receive(&mut state, &own, &message, now);
                for _ in 1..DRAIN_BATCH {
                    let Some(message) = receiver.try_recv() else {
                        break;
                    };
                    receive(&mut state, &own, &message, now);
                }
            }
            Wake::Status(LayerStatus::Reconnected) => {
                // Whatever was said during the outage is lost: say everything again, and ask
                // everyone for everything.
                let mut state = shared.state();
                for replica in state.groups.values_mut() {
                    replica.state_due = true;
                    replica.sync_due = true;
                }
            }
            Wake::Status(_) => {}
            Wake::Flush { heartbeat } => {
                let Ok(layer) = shared.layer() else { return };
                let outbound = {
                    let mut state = shared.state();
                    let now = Instant::now();
                    state.sweep(now, config.timeout);
                    state.flush(&own, now, heartbeat)
                };
                send(&shared, &layer, outbound).await;
            }
        }
    }
}

/// What woke the tracker's task.
enum Wake {
    Message(Arc<Envelope>),
    Flush { heartbeat: bool },
    Status(LayerStatus),
}

fn receive(state: &mut State, own: &str, message: &Envelope, now: Instant) {
    match serde_json::from_str::<Wire>(message.json()) {
        Ok(wire) if wire.process == own => {}
        Ok(wire) => state.receive(own, wire, now),
        Err(err) => {
            tracing::debug!(error = %err, "presence: a message that is not a tracker's: ignored")
        }
    }
}

/// Sends a flush's message to the other trackers and its events to the watchers here. A
/// watcher whose queue is full gets the whole state at the next flush instead of what it
/// missed.
async fn send(shared: &Shared, layer: &SharedLayer, outbound: Outbound) {
    if let Some(wire) = outbound.wire {
        let sent = match Envelope::encode(&wire) {
            Ok(envelope) => layer.group_send(TRACKERS_GROUP, envelope).await,
            Err(err) => Err(err),
        };
        if let Err(err) = sent {
            tracing::warn!(error = %err, "presence: changes not sent to the other processes; they ask again when they notice");
        }
    }
    let mut missed = Vec::new();
    for Delivery {
        envelope,
        group,
        watchers,
    } in outbound.deliveries
    {
        for watcher in watchers {
            match layer.send(&watcher, Arc::clone(&envelope)).await {
                Ok(()) => {}
                Err(Error::ChannelFull(_)) => missed.push((Arc::clone(&group), watcher)),
                Err(err) => {
                    tracing::debug!(%watcher, error = %err, "presence event not delivered")
                }
            }
        }
    }
    if !missed.is_empty() {
        let mut state = shared.state();
        for (group, watcher) in missed {
            if let Some(replica) = state.groups.get_mut(&group)
                && replica.watchers.contains(&watcher)
                && !replica.fresh.contains(&watcher)
            {
                replica.fresh.push(watcher);
            }
        }
    }
}

/// The layer's next connection change; never completes for layers without a backend.
async fn next_status(status: &mut Option<watch::Receiver<LayerStatus>>) -> LayerStatus {
    if let Some(receiver) = status {
        if receiver.changed().await.is_ok() {
            return *receiver.borrow_and_update();
        }
        *status = None;
    }
    std::future::pending().await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::layer::{ChannelLayer, InMemoryChannelLayer, LayerConfig};

    fn config() -> PresenceConfig {
        PresenceConfig::default()
            .interval(Duration::from_millis(100))
            .heartbeat(Duration::from_secs(1))
            .timeout(Duration::from_secs(3))
    }

    fn layer() -> Arc<InMemoryChannelLayer> {
        Arc::new(InMemoryChannelLayer::with_config(
            LayerConfig::default().presence(config()),
        ))
    }

    /// A second "process" on the same layer: a tracker of its own, as another process' would be.
    fn second_tracker(layer: &Arc<InMemoryChannelLayer>) -> PresenceTracker {
        let shared: SharedLayer = layer.clone();
        let weak = Arc::downgrade(&shared);
        PresenceTracker::new(config(), move || weak.upgrade())
    }

    async fn next_event(channel: &mut ChannelReceiver) -> PresenceEvent {
        let envelope = tokio::time::timeout(Duration::from_secs(5), channel.recv())
            .await
            .expect("a presence event in time")
            .expect("channel open");
        PresenceEvent::clone(envelope.presence_event().expect("a presence event"))
    }

    fn members(entries: &[PresenceEntry]) -> Vec<(&str, usize)> {
        entries
            .iter()
            .map(|e| (e.key.as_str(), e.metas.len()))
            .collect()
    }

    fn wire(process: &str, seq: u64) -> Wire {
        Wire {
            process: process.into(),
            seq,
            ..Wire::default()
        }
    }

    #[test]
    fn a_missed_message_is_noticed_and_asked_for_again() {
        let now = Instant::now();
        let mut state = State::default();
        let mut room = Replica::new();
        room.kept_until = Some(now + Duration::from_secs(3_600));
        state.groups.insert(Arc::from("room"), room);
        state.flush("me", now, false);
        state.receive("me", wire("other", 3), now);
        state.receive("me", wire("other", 4), now);
        assert!(state.resync.is_empty(), "one after the other");
        state.receive(
            "me",
            Wire {
                heartbeat: true,
                ..wire("other", 4)
            },
            now,
        );
        assert!(
            state.resync.is_empty(),
            "a heartbeat repeats the last number"
        );
        state.receive("me", wire("other", 6), now);
        assert!(state.resync.contains("other"), "5 went missing");
        let asked = state.flush("me", now, false).wire.expect("a message");
        assert_eq!(
            asked.syncs,
            [SyncRequest {
                groups: vec!["room".into()],
                of: Some("other".into()),
            }]
        );

        // Asked by name for a group it has nothing in, a process says so with an empty state.
        state.receive(
            "me",
            Wire {
                syncs: vec![SyncRequest {
                    groups: vec!["elsewhere".into()],
                    of: Some("me".into()),
                }],
                ..wire("other", 7)
            },
            now,
        );
        let answer = state.flush("me", now, false).wire.expect("a message");
        assert_eq!(answer.changes[0].group, "elsewhere");
        assert_eq!(answer.changes[0].state, Some(Vec::new()));
        assert_eq!(answer.seq, asked.seq + 1, "numbered one after the other");
    }

    #[tokio::test(start_paused = true)]
    async fn a_watcher_gets_the_state_then_netted_diffs() {
        let layer = layer();
        let tracker = layer.presence_tracker().unwrap();
        let mut amy = layer.new_channel().await.unwrap();
        tracker
            .track("room", amy.name(), "amy", json!({"tab": 1}))
            .await
            .unwrap();
        tracker.watch("room", amy.name()).await.unwrap();
        let PresenceEvent::State { entries, .. } = next_event(&mut amy).await else {
            panic!("the state first");
        };
        assert_eq!(members(&entries), [("amy", 1)]);

        let tab = layer.new_channel().await.unwrap();
        let bob = layer.new_channel().await.unwrap();
        tracker
            .track("room", tab.name(), "amy", json!({"tab": 2}))
            .await
            .unwrap();
        tracker
            .track("room", bob.name(), "bob", json!(null))
            .await
            .unwrap();
        let ghost = layer.new_channel().await.unwrap();
        tracker
            .track("room", ghost.name(), "ghost", json!(null))
            .await
            .unwrap();
        tracker.forget(ghost.name());
        let PresenceEvent::Diff { joins, leaves, .. } = next_event(&mut amy).await else {
            panic!("a diff");
        };
        assert_eq!(
            members(&joins),
            [("amy", 2), ("bob", 1)],
            "the ghost nets out"
        );
        assert!(leaves.is_empty());

        tracker.untrack("room", bob.name()).await.unwrap();
        tracker.forget(tab.name());
        let PresenceEvent::Diff { joins, leaves, .. } = next_event(&mut amy).await else {
            panic!("a diff");
        };
        assert_eq!(members(&joins), [("amy", 1)]);
        assert_eq!(leaves, ["bob"]);
        assert_eq!(
            members(&layer.presence("room").await.unwrap()),
            [("amy", 1)]
        );

        tracker.forget(amy.name());
        assert!(layer.presence("room").await.unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_joins_is_a_few_diffs() {
        let layer = layer();
        let tracker = layer.presence_tracker().unwrap();
        let mut watcher = layer.new_channel().await.unwrap();
        tracker.watch("room", watcher.name()).await.unwrap();
        assert!(matches!(
            next_event(&mut watcher).await,
            PresenceEvent::State { .. }
        ));
        let mut members = Vec::new();
        for n in 0..1_000 {
            let member = layer.new_channel().await.unwrap();
            tracker
                .track("room", member.name(), &format!("user{n}"), json!(null))
                .await
                .unwrap();
            members.push(member);
            if n % 100 == 99 {
                // A thousand joins over a second.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let mut joined = 0;
        let mut diffs = 0;
        while joined < 1_000 {
            let PresenceEvent::Diff { joins, .. } = next_event(&mut watcher).await else {
                panic!("diffs");
            };
            joined += joins.len();
            diffs += 1;
        }
        assert_eq!(joined, 1_000);
        assert!(diffs <= 12, "{diffs} diffs for a second of joins");
    }

    #[tokio::test(start_paused = true)]
    async fn processes_share_entries_and_a_silent_one_leaves() {
        let layer = layer();
        let first = second_tracker(&layer);
        let second = second_tracker(&layer);
        let amy = layer.new_channel().await.unwrap();
        first
            .track("room", amy.name(), "amy", json!(1))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;

        // The second process starts replicating later: it asks, and gets amy.
        let mut bob = layer.new_channel().await.unwrap();
        second
            .track("room", bob.name(), "bob", json!(2))
            .await
            .unwrap();
        second.watch("room", bob.name()).await.unwrap();
        let mut seen = Vec::new();
        while seen.len() < 2 {
            match next_event(&mut bob).await {
                PresenceEvent::State { entries, .. } => {
                    seen.extend(entries.into_iter().map(|e| e.key))
                }
                PresenceEvent::Diff { joins, .. } => seen.extend(joins.into_iter().map(|e| e.key)),
            }
            seen.sort();
            seen.dedup();
        }
        assert_eq!(seen, ["amy", "bob"]);
        assert_eq!(
            members(&first.list("room").await.unwrap()),
            members(&second.list("room").await.unwrap())
        );

        // The first process goes silent without a word (its tracker stops): amy leaves the
        // second's list within the timeout.
        let started = Instant::now();
        drop(first);
        loop {
            if let PresenceEvent::Diff { leaves, .. } = next_event(&mut bob).await
                && leaves == ["amy"]
            {
                break;
            }
        }
        let waited = started.elapsed();
        assert!(waited <= Duration::from_secs(4), "{waited:?}");
        assert_eq!(members(&second.list("room").await.unwrap()), [("bob", 1)]);
    }
}
