//! One process' copy of one group's presence: every process' entries, the changes not yet
//! sent, and the watchers to tell.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::Value;
use tokio::time::Instant;

use super::PresenceEntry;
use super::wire::WireEntry;

/// One tracked connection: the process it is in, the key it is tracked under and its
/// metadata (boxed, and no box at all for `null`: most connections carry little or nothing,
/// and every idle member pays for this).
#[derive(Debug, Clone)]
pub(super) struct Track {
    process: Arc<str>,
    pub(super) key: Arc<str>,
    meta: Option<Box<Value>>,
}

impl Track {
    pub(super) fn meta(&self) -> Value {
        self.meta.as_deref().cloned().unwrap_or(Value::Null)
    }
}

/// How a key's connections changed since the last flush.
struct Touch {
    /// Its connections at the last flush.
    before: u32,
    /// A connection joined it (a new meta to show even if the count is the same).
    joined: bool,
}

/// A change of this process' own entries not yet sent to the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outgoing {
    /// Tracked since the last send: untracked before the next, it is nothing.
    New,
    /// Tracked again with another key or meta.
    Updated,
    /// Untracked.
    Left,
}

/// A group's replica in one process.
pub(super) struct Replica {
    /// Every connection's entry, this process' and the others' (connection names are unique
    /// across processes: they hold their process' id).
    conns: HashMap<Arc<str>, Track>,
    /// How many entries each process has here.
    processes: HashMap<Arc<str>, u32>,
    /// Connections per key across all processes.
    counts: HashMap<Arc<str>, u32>,
    /// Keys changed since the last flush.
    touched: HashMap<Arc<str>, Touch>,
    /// This process' own changes not yet sent, by connection.
    outbox: HashMap<Arc<str>, Outgoing>,
    /// Local channels that receive the group's presence events.
    pub(super) watchers: Vec<Arc<str>>,
    /// Watchers that get the whole state at the next flush instead of the diff: new ones, and
    /// ones whose queue was full for the last event.
    pub(super) fresh: Vec<Arc<str>>,
    /// This process' entries are to be sent whole (the others asked, or the layer came back).
    pub(super) state_due: bool,
    /// Entries of others may be missing: ask everyone for theirs.
    pub(super) sync_due: bool,
    /// Kept without watchers or entries until then, for [`list`](super::PresenceTracker::list).
    pub(super) kept_until: Option<Instant>,
}

impl Replica {
    pub(super) fn new() -> Replica {
        Replica {
            conns: HashMap::new(),
            processes: HashMap::new(),
            counts: HashMap::new(),
            touched: HashMap::new(),
            outbox: HashMap::new(),
            watchers: Vec::new(),
            fresh: Vec::new(),
            state_due: false,
            // A new replica asks the other processes for their entries.
            sync_due: true,
            kept_until: None,
        }
    }

    /// The key's shared name, reusing the allocation of a key already present.
    fn intern(&self, key: &str) -> Arc<str> {
        match self.counts.get_key_value(key) {
            Some((shared, _)) => Arc::clone(shared),
            None => Arc::from(key),
        }
    }

    fn touch(&mut self, key: &Arc<str>, joined: bool) {
        let before = self.counts.get(key).copied().unwrap_or(0);
        let touch = self
            .touched
            .entry(Arc::clone(key))
            .or_insert(Touch { before, joined });
        touch.joined |= joined;
    }

    fn count(&mut self, key: &Arc<str>, up: bool) {
        if up {
            *self.counts.entry(Arc::clone(key)).or_insert(0) += 1;
        } else if let Some(count) = self.counts.get_mut(key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.counts.remove(key);
            }
        }
    }

    /// Adds (or replaces) a connection's entry; true if the connection was not there before.
    fn insert(&mut self, process: &Arc<str>, conn: Arc<str>, key: &str, meta: Value) -> bool {
        let key = self.intern(key);
        self.touch(&key, true);
        self.count(&key, true);
        let process = match self.processes.get_key_value(process) {
            Some((shared, _)) => Arc::clone(shared),
            None => Arc::clone(process),
        };
        *self.processes.entry(Arc::clone(&process)).or_insert(0) += 1;
        let meta = (!meta.is_null()).then(|| Box::new(meta));
        let old = self.conns.insert(conn, Track { process, key, meta });
        match old {
            Some(old) => {
                self.forget(&old);
                false
            }
            None => true,
        }
    }

    /// Counts a removed entry out.
    fn forget(&mut self, old: &Track) {
        self.touch(&old.key, false);
        self.count(&old.key, false);
        if let Some(entries) = self.processes.get_mut(&old.process) {
            *entries = entries.saturating_sub(1);
            if *entries == 0 {
                self.processes.remove(&old.process);
            }
        }
    }

    /// Removes a connection's entry, if `process` has it; whether it was there.
    fn remove(&mut self, process: &str, conn: &str) -> bool {
        if self
            .conns
            .get(conn)
            .is_none_or(|track| &*track.process != process)
        {
            return false;
        }
        let Some(old) = self.conns.remove(conn) else {
            return false;
        };
        self.forget(&old);
        true
    }

    /// Tracks a connection of this process.
    pub(super) fn track(&mut self, own: &Arc<str>, conn: Arc<str>, key: &str, meta: Value) {
        let new = self.insert(own, Arc::clone(&conn), key, meta);
        let change = match self.outbox.get(&conn) {
            Some(Outgoing::New) => Outgoing::New,
            _ if new && !self.outbox.contains_key(&conn) => Outgoing::New,
            _ => Outgoing::Updated,
        };
        self.outbox.insert(conn, change);
    }

    /// Untracks a connection of this process; whether it was tracked.
    pub(super) fn untrack(&mut self, own: &str, conn: &str) -> bool {
        if !self.remove(own, conn) {
            return false;
        }
        match self.outbox.get(conn) {
            Some(Outgoing::New) => {
                self.outbox.remove(conn);
            }
            _ => {
                self.outbox.insert(Arc::from(conn), Outgoing::Left);
            }
        }
        true
    }

    /// Whether this process tracks any connection here.
    pub(super) fn tracks_any(&self, own: &str) -> bool {
        self.processes.contains_key(own)
    }

    /// Whether nothing here needs the replica any more.
    pub(super) fn idle(&self, own: &str, now: Instant) -> bool {
        self.watchers.is_empty()
            && !self.tracks_any(own)
            && self.outbox.is_empty()
            && self.kept_until.is_none_or(|until| until <= now)
    }

    /// This process' unsent changes: the entries joined or updated, and the connections that
    /// left. Empty when nothing changed.
    pub(super) fn take_outbox(&mut self, own: &str) -> (Vec<WireEntry>, Vec<String>) {
        let mut joins = Vec::new();
        let mut leaves = Vec::new();
        // Taken, not drained: a drained map keeps its buckets, in every idle room.
        for (conn, change) in std::mem::take(&mut self.outbox) {
            match change {
                Outgoing::Left => leaves.push(conn.to_string()),
                Outgoing::New | Outgoing::Updated => {
                    if let Some(track) = self.conns.get(&conn)
                        && &*track.process == own
                    {
                        joins.push(WireEntry::new(&conn, track));
                    }
                }
            }
        }
        (joins, leaves)
    }

    /// Forgets the unsent changes: a whole state is about to go instead.
    pub(super) fn clear_outbox(&mut self) {
        self.outbox = HashMap::new();
    }

    /// This process' entries, whole.
    pub(super) fn own_entries(&self, own: &str) -> Vec<WireEntry> {
        self.conns
            .iter()
            .filter(|(_, track)| &*track.process == own)
            .map(|(conn, track)| WireEntry::new(conn, track))
            .collect()
    }

    /// Whether `process` has entries here.
    #[cfg(test)]
    pub(super) fn has_process(&self, process: &str) -> bool {
        self.processes.contains_key(process)
    }

    /// Applies another process' changes.
    pub(super) fn apply_delta(
        &mut self,
        process: &Arc<str>,
        joins: Vec<WireEntry>,
        leaves: Vec<String>,
    ) {
        for leave in &leaves {
            self.remove(process, leave);
        }
        for join in joins {
            self.insert(process, Arc::from(join.conn), &join.key, join.meta);
        }
    }

    /// Replaces another process' entries with the whole state it sent.
    pub(super) fn apply_state(&mut self, process: &Arc<str>, entries: Vec<WireEntry>) {
        self.drop_process(process);
        for entry in entries {
            self.insert(process, Arc::from(entry.conn), &entry.key, entry.meta);
        }
    }

    /// Forgets every entry of a process (gone, or about to send its whole state).
    pub(super) fn drop_process(&mut self, process: &str) {
        if !self.processes.contains_key(process) {
            return;
        }
        let gone: Vec<Arc<str>> = self
            .conns
            .iter()
            .filter(|(_, track)| &*track.process == process)
            .map(|(conn, _)| Arc::clone(conn))
            .collect();
        for conn in gone {
            if let Some(old) = self.conns.remove(&conn) {
                self.forget(&old);
            }
        }
    }

    /// Every key with its connections' metas, in key order.
    pub(super) fn entries(&self) -> Vec<PresenceEntry> {
        let mut by_key: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
        for track in self.conns.values() {
            by_key.entry(&track.key).or_default().push(track.meta());
        }
        by_key
            .into_iter()
            .map(|(key, metas)| PresenceEntry {
                key: key.to_owned(),
                metas,
            })
            .collect()
    }

    /// What changed since the last flush, netted: keys that appeared or changed (with every
    /// meta they have now) and keys that are gone. Starts the next interval.
    pub(super) fn take_diff(&mut self) -> (Vec<PresenceEntry>, Vec<String>) {
        if self.touched.is_empty() {
            return (Vec::new(), Vec::new());
        }
        let touched = std::mem::take(&mut self.touched);
        let mut joins: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
        let mut leaves = Vec::new();
        for (key, touch) in &touched {
            let after = self.counts.get(key).copied().unwrap_or(0);
            if after == 0 {
                if touch.before > 0 {
                    leaves.push(key.to_string());
                }
            } else if after != touch.before || touch.joined {
                joins.insert(key, Vec::new());
            }
        }
        if !joins.is_empty() {
            for track in self.conns.values() {
                if let Some(metas) = joins.get_mut(&*track.key) {
                    metas.push(track.meta());
                }
            }
        }
        leaves.sort();
        let joins = joins
            .into_iter()
            .map(|(key, metas)| PresenceEntry {
                key: key.to_owned(),
                metas,
            })
            .collect();
        (joins, leaves)
    }

    /// Whether a diff is waiting.
    pub(super) fn changed(&self) -> bool {
        !self.touched.is_empty()
    }

    /// Adds a watcher; it gets the whole state at the next flush.
    pub(super) fn watch(&mut self, channel: Arc<str>) {
        if !self.watchers.contains(&channel) {
            self.watchers.push(Arc::clone(&channel));
            self.fresh.push(channel);
        }
    }

    /// Removes a watcher.
    pub(super) fn unwatch(&mut self, channel: &str) {
        self.watchers.retain(|w| &**w != channel);
        self.fresh.retain(|w| &**w != channel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keys(entries: &[PresenceEntry]) -> Vec<(String, usize)> {
        entries
            .iter()
            .map(|e| (e.key.clone(), e.metas.len()))
            .collect()
    }

    #[test]
    fn one_entry_per_key_with_every_connections_meta() {
        let own: Arc<str> = Arc::from("p1");
        let other: Arc<str> = Arc::from("p2");
        let mut replica = Replica::new();
        replica.track(&own, Arc::from("c1"), "amy", json!({"tab": 1}));
        replica.track(&own, Arc::from("c2"), "amy", json!({"tab": 2}));
        replica.apply_delta(
            &other,
            vec![WireEntry {
                conn: "c3".into(),
                key: "bob".into(),
                meta: json!({}),
            }],
            vec![],
        );
        assert_eq!(
            keys(&replica.entries()),
            [("amy".to_owned(), 2), ("bob".to_owned(), 1)]
        );
        let (joins, leaves) = replica.take_diff();
        assert_eq!(keys(&joins), [("amy".to_owned(), 2), ("bob".to_owned(), 1)]);
        assert!(leaves.is_empty());
    }

    #[test]
    fn a_join_then_a_leave_within_one_interval_is_nothing() {
        let own: Arc<str> = Arc::from("p1");
        let mut replica = Replica::new();
        replica.track(&own, Arc::from("c1"), "amy", json!({}));
        assert!(replica.untrack(&own, "c1"));
        assert_eq!(replica.take_diff(), (vec![], vec![]));
        assert_eq!(replica.take_outbox(&own), (vec![], vec![]));
        assert!(replica.idle(&own, Instant::now()));
    }

    #[test]
    fn a_second_tab_changes_the_count_and_the_last_one_leaves() {
        let own: Arc<str> = Arc::from("p1");
        let mut replica = Replica::new();
        replica.track(&own, Arc::from("c1"), "amy", json!({}));
        replica.take_diff();
        let (joins, leaves) = replica.take_outbox(&own);
        assert_eq!((joins.len(), leaves.len()), (1, 0));

        replica.track(&own, Arc::from("c2"), "amy", json!({}));
        let (joins, _) = replica.take_diff();
        assert_eq!(keys(&joins), [("amy".to_owned(), 2)]);
        replica.untrack(&own, "c1");
        let (joins, leaves) = replica.take_diff();
        assert_eq!(keys(&joins), [("amy".to_owned(), 1)]);
        assert!(leaves.is_empty());
        replica.untrack(&own, "c2");
        assert_eq!(replica.take_diff(), (vec![], vec!["amy".to_owned()]));
        // c1 was sent, c2 was not: only c1's leave goes.
        assert_eq!(replica.take_outbox(&own), (vec![], vec!["c1".to_owned()]));
    }

    #[test]
    fn a_state_replaces_a_process_entries() {
        let other: Arc<str> = Arc::from("p2");
        let entry = |conn: &str, key: &str| WireEntry {
            conn: conn.into(),
            key: key.into(),
            meta: json!(null),
        };
        let mut replica = Replica::new();
        replica.apply_state(&other, vec![entry("a", "amy"), entry("b", "bob")]);
        replica.apply_delta(&other, vec![entry("c", "cat")], vec!["a".into()]);
        assert_eq!(
            keys(&replica.entries()),
            [("bob".to_owned(), 1), ("cat".to_owned(), 1)]
        );
        replica.apply_state(&other, vec![entry("d", "dan")]);
        assert_eq!(keys(&replica.entries()), [("dan".to_owned(), 1)]);
        replica.take_diff();
        replica.drop_process(&other);
        assert_eq!(replica.take_diff(), (vec![], vec!["dan".to_owned()]));
        assert!(!replica.has_process(&other));
    }
}
