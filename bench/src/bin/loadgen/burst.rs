//! A join burst: N members join one room within a second or so, and every member counts the
//! presence events it receives. Without coalescing each join would be one diff to every member
//! already there, N²/2 deliveries (half a million for a thousand); with it, each member gets the
//! state once and about one diff per interval.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bench::procfs;
use futures::StreamExt;
use serde::Deserialize;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::Target;
use crate::conn::Dialer;
use crate::output::{Burst, Output};

/// What to do.
pub struct BurstSpec {
    pub members: usize,
    /// The joins are spread evenly over this long.
    pub within: Duration,
    /// How long the presence may stay quiet before the run counts as settled.
    pub settle: Duration,
    pub room: String,
}

/// What one member received.
#[derive(Default, Clone, Copy)]
struct Counts {
    states: u64,
    diffs: u64,
    presence_bytes: u64,
}

/// A frame's type; the rest is skipped unread.
#[derive(Deserialize)]
struct Event<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<std::borrow::Cow<'a, str>>,
}

struct Shared {
    members: Vec<Counts>,
    last_presence: Instant,
}

pub async fn run(target: &Target, spec: &BurstSpec) -> Result<Output, String> {
    let dialer = Dialer::new(target)?;
    procfs::raise_nofile_limit().map_err(|err| format!("cannot raise RLIMIT_NOFILE: {err}"))?;
    let pids = &target.server_pids;
    let shared = Rc::new(RefCell::new(Shared {
        members: vec![Counts::default(); spec.members],
        last_presence: Instant::now(),
    }));
    let cpu_before = procfs::cpu_seconds(pids).ok();
    let started = Instant::now();
    let gap = spec.within.div_f64(spec.members.max(1) as f64);
    let mut readers: Vec<JoinHandle<()>> = Vec::with_capacity(spec.members);
    let mut failed = 0;
    let mut first_error = None;
    let mut connects = futures::stream::iter(0..spec.members)
        .map(|n| {
            let dialer = &dialer;
            let room = spec.room.as_str();
            async move {
                tokio::time::sleep_until((started + gap * n as u32).into()).await;
                (n, dialer.open(n, n, room).await)
            }
        })
        .buffer_unordered(target.concurrency.max(1));
    while let Some((n, result)) = connects.next().await {
        match result {
            Ok(ws) => {
                let shared = Rc::clone(&shared);
                readers.push(tokio::task::spawn_local(read(ws, n, shared)));
            }
            Err(err) => {
                failed += 1;
                first_error.get_or_insert(err);
            }
        }
    }
    drop(connects);
    let joined_s = started.elapsed().as_secs_f64();
    let joined = spec.members - failed;
    // Settled once no presence event arrived for `settle` (guests' names are random, so a
    // member cannot tell when it has seen everyone).
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if shared.borrow().last_presence.elapsed() >= spec.settle {
            break;
        }
    }
    let settled_s = started.elapsed().as_secs_f64();
    let cpu_after = procfs::cpu_seconds(pids).ok();
    for reader in &readers {
        reader.abort();
    }
    let shared = shared.borrow();
    let counts = &shared.members;
    let sum = |f: fn(&Counts) -> u64| counts.iter().map(f).sum::<u64>();
    let diffs = sum(|c| c.diffs);
    let server_cpu_s = cpu_before
        .zip(cpu_after)
        .filter(|_| !pids.is_empty())
        .map(|(a, b)| b - a);
    Ok(Output::Burst(Burst {
        members: spec.members,
        failed,
        first_error,
        joined_s,
        settled_s,
        states: sum(|c| c.states),
        diffs,
        presence_bytes: sum(|c| c.presence_bytes),
        max_diffs_per_member: counts.iter().map(|c| c.diffs).max().unwrap_or(0),
        mean_diffs_per_member: diffs as f64 / joined.max(1) as f64,
        uncoalesced_diffs: (joined as u64) * (joined as u64).saturating_sub(1) / 2,
        server_cpu_s,
        server_cpu_us_per_join: server_cpu_s.map(|s| s * 1e6 / joined.max(1) as f64),
    }))
}

/// Counts one member's presence events until its connection ends.
async fn read(ws: crate::conn::Ws, n: usize, shared: Rc<RefCell<Shared>>) {
    let (_sink, mut stream) = ws.split();
    while let Some(Ok(frame)) = stream.next().await {
        let Message::Text(text) = frame else { continue };
        let Ok(event) = serde_json::from_str::<Event<'_>>(&text) else {
            continue;
        };
        let mut shared = shared.borrow_mut();
        let counts = &mut shared.members[n];
        match event.kind.as_deref() {
            Some("presence.state") => counts.states += 1,
            Some("presence.diff") => counts.diffs += 1,
            _ => continue,
        }
        counts.presence_bytes += text.len() as u64;
        shared.last_presence = Instant::now();
    }
}
