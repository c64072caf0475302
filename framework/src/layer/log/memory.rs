//! Group logs kept in this process: one ring of messages per logged group, within a byte budget
//! shared by all of them.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use tokio::time::Instant;

use super::{LogConfig, LogPatterns, LogSlice, Position};
use crate::layer::Envelope;

/// What one logged message is counted as, beyond its JSON: the envelope, its position, the
/// ring's slot.
const ENTRY_OVERHEAD: usize = 160;

/// What one group's log costs beyond its messages: the map entry, the ring, the names.
const LOG_OVERHEAD: usize = 256;

struct GroupLog {
    /// The group's name, as the map's key holds it.
    group: Arc<str>,
    epoch: Arc<str>,
    /// Offset of the newest message (0 before the first).
    head: u64,
    /// The newest messages, oldest first; the last has offset `head`.
    entries: VecDeque<Arc<Envelope>>,
    bytes: usize,
    config: LogConfig,
    last_write: Instant,
    /// Key of this log in [`MemoryLogs::idle`].
    touched: u64,
}

impl GroupLog {
    fn new(group: Arc<str>, config: LogConfig, now: Instant) -> GroupLog {
        GroupLog {
            group,
            epoch: Position::new_epoch(),
            head: 0,
            entries: VecDeque::new(),
            bytes: LOG_OVERHEAD,
            config,
            last_write: now,
            touched: 0,
        }
    }

    fn head(&self) -> Position {
        Position::new(Arc::clone(&self.epoch), self.head)
    }

    /// Offset of the oldest message held (`head + 1` when none is).
    fn first(&self) -> u64 {
        self.head + 1 - self.entries.len() as u64
    }

    fn pop_oldest(&mut self) -> usize {
        let freed = self.entries.pop_front().map_or(0, |e| cost(&e));
        self.bytes -= freed;
        freed
    }

    fn read(&self, since: Option<&Position>, recent: usize) -> LogSlice {
        let found = since.and_then(|since| {
            let same_epoch = *since.epoch == *self.epoch;
            (same_epoch && since.offset <= self.head && since.offset + 1 >= self.first())
                .then(|| (since.offset + 1 - self.first()) as usize)
        });
        let (from, recovered) = match found {
            Some(from) => (from, true),
            None => (self.entries.len().saturating_sub(recent), false),
        };
        LogSlice {
            head: Some(self.head()),
            messages: self.entries.range(from..).cloned().collect(),
            recovered,
        }
    }
}

fn cost(envelope: &Envelope) -> usize {
    envelope.json().len() + ENTRY_OVERHEAD
}

/// The logs of one in-memory layer, kept under the layer's lock so that a message is logged and
/// delivered in one step: a member that has seen it finds it in the log.
pub(crate) struct MemoryLogs {
    patterns: LogPatterns,
    logs: HashMap<Arc<str>, GroupLog>,
    /// Logs by last write, oldest first: forgotten first when over the budget, and where the
    /// ones past their time to live are found.
    idle: BTreeMap<u64, Arc<str>>,
    writes: u64,
    bytes: usize,
}

impl MemoryLogs {
    pub(crate) fn new(patterns: LogPatterns) -> MemoryLogs {
        MemoryLogs {
            patterns,
            logs: HashMap::new(),
            idle: BTreeMap::new(),
            writes: 0,
            bytes: 0,
        }
    }

    /// Logs `message` when `group` keeps a log, returning it with its position; returns it as
    /// it is otherwise.
    pub(crate) fn append(
        &mut self,
        group: &str,
        message: Arc<Envelope>,
        now: Instant,
    ) -> Arc<Envelope> {
        if self.patterns.is_empty() {
            return message;
        }
        self.forget_expired(now);
        if !self.logs.contains_key(group) {
            let Some(config) = self.patterns.config_of(group) else {
                return message;
            };
            let name: Arc<str> = Arc::from(group);
            let log = GroupLog::new(Arc::clone(&name), config, now);
            self.bytes += log.bytes;
            self.logs.insert(name, log);
        }
        let Some(log) = self.logs.get_mut(group) else {
            return message;
        };
        log.head += 1;
        let logged = message.at_position(log.head());
        let added = cost(&logged);
        log.entries.push_back(Arc::clone(&logged));
        log.bytes += added;
        self.bytes += added;
        while log.entries.len() > log.config.size {
            self.bytes -= log.pop_oldest();
        }
        log.last_write = now;
        self.writes += 1;
        self.idle.remove(&log.touched);
        log.touched = self.writes;
        self.idle.insert(self.writes, Arc::clone(&log.group));
        self.keep_to_budget(group);
        logged
    }

    /// Reads `group`'s log (see [`ChannelLayer::group_log`](crate::layer::ChannelLayer::group_log)).
    pub(crate) fn read(
        &mut self,
        group: &str,
        since: Option<&Position>,
        recent: usize,
        now: Instant,
    ) -> LogSlice {
        self.forget_expired(now);
        self.logs
            .get(group)
            .map_or_else(LogSlice::none, |log| log.read(since, recent))
    }

    /// Forgets the logs that have had no message for their time to live, oldest first.
    fn forget_expired(&mut self, now: Instant) {
        while let Some((_, group)) = self.idle.first_key_value() {
            let expired = self
                .logs
                .get(group)
                .is_none_or(|log| now.saturating_duration_since(log.last_write) > log.config.ttl);
            if !expired {
                return;
            }
            let group = Arc::clone(group);
            self.forget(&group);
        }
    }

    /// Forgets the logs idle longest until all fit the budget; the log just written (`keep`)
    /// goes last, losing its oldest messages instead of the whole log.
    fn keep_to_budget(&mut self, keep: &str) {
        while self.bytes > self.patterns.budget {
            let oldest = self
                .idle
                .values()
                .find(|group| ***group != *keep)
                .map(Arc::clone);
            match oldest {
                Some(group) => {
                    tracing::debug!(%group, "group log forgotten to stay within the log budget");
                    self.forget(&group);
                }
                None => {
                    let Some(log) = self.logs.get_mut(keep) else {
                        return;
                    };
                    if log.entries.len() <= 1 {
                        return;
                    }
                    self.bytes -= log.pop_oldest();
                }
            }
        }
    }

    fn forget(&mut self, group: &str) {
        if let Some(log) = self.logs.remove(group) {
            self.idle.remove(&log.touched);
            self.bytes -= log.bytes;
        }
    }

    /// Bytes held by all logs, as counted against the budget.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// How many groups have a log.
    pub(crate) fn len(&self) -> usize {
        self.logs.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn logs(size: usize, budget: usize) -> MemoryLogs {
        MemoryLogs::new(LogPatterns {
            patterns: vec![(
                "chat_*".to_owned(),
                LogConfig::new(size, Duration::from_secs(60)),
            )],
            budget,
        })
    }

    fn text(n: u64) -> Arc<Envelope> {
        Envelope::from_json(format!("{{\"n\":{n}}}"))
    }

    fn offsets(slice: &LogSlice) -> Vec<u64> {
        slice
            .messages
            .iter()
            .map(|m| m.position().expect("positioned").offset)
            .collect()
    }

    #[test]
    fn logs_only_the_groups_of_its_patterns_and_numbers_their_messages() {
        let mut logs = logs(3, usize::MAX);
        let now = Instant::now();
        let plain = text(0);
        assert!(Arc::ptr_eq(
            &logs.append("other", plain.clone(), now),
            &plain
        ));
        for n in 1..=5 {
            let logged = logs.append("chat_a", text(n), now);
            assert_eq!(logged.position().unwrap().offset, n);
        }
        let recent = logs.read("chat_a", None, 2, now);
        assert_eq!(offsets(&recent), [4, 5]);
        assert!(!recent.recovered);
        let head = recent.head.clone().unwrap();
        assert_eq!(head.offset, 5);
        assert_eq!(logs.read("other", None, 10, now).head, None);

        let since = |offset| Position::new(head.epoch.clone(), offset);
        let found = logs.read("chat_a", Some(&since(2)), 10, now);
        assert!(found.recovered);
        assert_eq!(offsets(&found), [3, 4, 5]);
        let nothing_missed = logs.read("chat_a", Some(&since(5)), 10, now);
        assert!(nothing_missed.recovered && nothing_missed.messages.is_empty());
        for lost in [since(1), since(6), Position::new(Arc::from("other"), 4)] {
            let slice = logs.read("chat_a", Some(&lost), 10, now);
            assert!(!slice.recovered, "{lost}");
            assert_eq!(offsets(&slice), [3, 4, 5], "the newest instead");
        }
    }

    #[test]
    fn an_idle_log_is_forgotten_after_its_ttl_and_starts_a_new_epoch() {
        let mut logs = logs(10, usize::MAX);
        let start = Instant::now();
        let first = logs.append("chat_a", text(1), start);
        let epoch = first.position().unwrap().epoch.clone();
        logs.append("chat_b", text(1), start + Duration::from_secs(50));
        let later = start + Duration::from_secs(61);
        assert_eq!(logs.read("chat_a", None, 10, later).head, None);
        assert_eq!(logs.len(), 1, "chat_b lives on");
        let again = logs.append("chat_a", text(2), later);
        assert_ne!(again.position().unwrap().epoch, epoch);
        assert_eq!(again.position().unwrap().offset, 1);
    }

    #[test]
    fn churning_invented_groups_stays_within_the_budget_idle_ones_first() {
        let budget = 64 << 10;
        let mut logs = logs(100, budget);
        let now = Instant::now();
        for room in 0..10_000 {
            logs.append(&format!("chat_{room}"), text(room), now);
            assert!(logs.bytes() <= budget);
        }
        assert!(logs.len() < 10_000);
        assert_eq!(
            logs.read("chat_9999", None, 1, now).messages.len(),
            1,
            "the newest survives"
        );
        assert_eq!(
            logs.read("chat_0", None, 1, now).head,
            None,
            "the oldest went"
        );

        let mut one = self::logs(100_000, 16 << 10);
        for n in 0..1_000 {
            one.append("chat_big", text(n), now);
        }
        assert!(one.bytes() <= 16 << 10);
        let kept = one.read("chat_big", None, usize::MAX, now);
        assert_eq!(kept.head.unwrap().offset, 1_000);
        assert_eq!(
            kept.messages.last().unwrap().position().unwrap().offset,
            1_000
        );
    }
}
