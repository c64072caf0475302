//! Fan-out: rooms of members, some of them senders on an open-loop schedule.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bench::probe::{Delivered, Probe, classify};
use bench::procfs;
use bench::search::{PassBar, RateSearch};
use bench::tally::{Tally, Window, loss};
use futures::SinkExt;
use futures::stream::{SplitSink, StreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::conn::{Dialer, Ws, instant_of, now_ns};
use crate::output::{Latency, Maxrate, Output, Step};
use crate::{Shape, Target, Timing};

type Sink = SplitSink<Ws, Message>;

/// Sends keep going this long after the window closes, so the load is steady until its end.
const TAIL: Duration = Duration::from_millis(250);
/// After a phase, wait for this much silence (at most `SETTLE_MAX`) before the next one.
const SETTLE_QUIET: Duration = Duration::from_millis(300);
const SETTLE_MAX: Duration = Duration::from_secs(3);

/// Counters every reader task updates; the runtime is single-threaded, so a `RefCell` does.
#[derive(Default)]
struct Counters {
    phases: Vec<Tally>,
    sender_room: Vec<usize>,
    arrivals: u64,
    errors: u64,
    closed: u64,
}

type Shared = Rc<RefCell<Counters>>;

struct SenderSlot {
    room: usize,
    sink: Option<Sink>,
}

/// Connected rooms, ready to run phases.
struct Session {
    shape: Shape,
    servers: usize,
    server_pids: Vec<u32>,
    members: Vec<u64>,
    senders: Vec<SenderSlot>,
    others: Vec<Sink>,
    shared: Shared,
    readers: Vec<JoinHandle<()>>,
}

fn bar(len: u64, message: String) -> ProgressBar {
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template("{msg:<40} [{bar:30}] {pos}/{len} {elapsed}") {
        bar.set_style(style);
    }
    bar.set_message(message);
    bar
}

impl Session {
    async fn connect(target: &Target, shape: &Shape, tag: &str) -> Result<Session, String> {
        let dialer = Dialer::new(target)?;
        let rooms = shape.rooms.max(1);
        let members = shape.members.max(1);
        let senders = shape.senders.clamp(1, members);
        let total = rooms * members;
        let progress = bar(total as u64, format!("connecting {rooms} x {members}"));
        let dialer_ref = &dialer;
        let progress_ref = &progress;
        let opened: Vec<(usize, usize, Result<Ws, String>)> = futures::stream::iter(0..total)
            .map(|n| {
                // Fill rooms evenly; member k of room r goes to server k + r (mod servers), so
                // with several servers every room has members on each, and the rooms' senders
                // (their first members) are spread over the servers as a load balancer would
                // spread them, instead of all reading from the first server.
                let room = n % rooms;
                let member = n / rooms;
                let name = format!("{}-{tag}-{room}", shape.room_prefix);
                async move {
                    let ws = dialer_ref.open(n, member + room, &name).await;
                    progress_ref.inc(1);
                    (room, member, ws)
                }
            })
            .buffer_unordered(target.concurrency.max(1))
            .collect()
            .await;
        progress.finish_and_clear();

        let shared: Shared = Rc::default();
        let mut session = Session {
            shape: shape.clone(),
            servers: dialer.servers(),
            server_pids: target.server_pids.clone(),
            members: vec![members as u64; rooms],
            senders: Vec::new(),
            others: Vec::new(),
            shared: Rc::clone(&shared),
            readers: Vec::new(),
        };
        let mut sorted = Vec::with_capacity(opened.len());
        for (room, member, ws) in opened {
            match ws {
                Ok(ws) => sorted.push((room, member, ws)),
                Err(err) => {
                    session.close().await;
                    return Err(format!(
                        "cannot connect member {member} of room {room}: {err}"
                    ));
                }
            }
        }
        sorted.sort_by_key(|(room, member, _)| (*room, *member));
        for (room, member, ws) in sorted {
            let (sink, stream) = ws.split();
            session.readers.push(tokio::task::spawn_local(read(
                stream,
                room,
                Rc::clone(&shared),
            )));
            if member < senders {
                shared.borrow_mut().sender_room.push(room);
                session.senders.push(SenderSlot {
                    room,
                    sink: Some(sink),
                });
            } else {
                session.others.push(sink);
            }
        }
        // Let join-time frames (history, notices) arrive before anything is measured.
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(session)
    }

    fn closed(&self) -> u64 {
        self.shared.borrow().closed
    }

    /// Runs one phase at `rate` offered deliveries per second.
    async fn run_phase(&mut self, rate: f64, timing: &Timing) -> Step {
        let rooms = self.members.len();
        let members = self.shape.members.max(1);
        let senders = self.senders.len().max(1);
        let messages_per_s = rate / members as f64;
        let interval_ns = ((senders as f64 / messages_per_s) * 1e9).max(1.0) as u64;

        let t0 = now_ns() + 20_000_000;
        let window = Window {
            start_ns: t0 + secs_ns(timing.warmup),
            end_ns: t0 + secs_ns(timing.warmup) + secs_ns(timing.duration),
        };
        let send_end = window.end_ns + TAIL.as_nanos() as u64;
        let deadline = send_end + secs_ns(timing.grace);
        let phase = {
            let mut shared = self.shared.borrow_mut();
            shared.phases.push(Tally::new(window, rooms));
            (shared.phases.len() - 1) as u32
        };
        let closed_before = self.closed();
        let errors_before = self.shared.borrow().errors;

        let mut tasks = Vec::with_capacity(self.senders.len());
        for (i, slot) in self.senders.iter_mut().enumerate() {
            let Some(sink) = slot.sink.take() else {
                continue;
            };
            let schedule = Schedule {
                phase,
                sender: i as u32,
                room: slot.room,
                first_ns: t0 + interval_ns * i as u64 / senders as u64,
                interval_ns,
                end_ns: send_end,
                deadline_ns: deadline,
                size: self.shape.size,
            };
            tasks.push((
                i,
                tokio::task::spawn_local(send(sink, schedule, Rc::clone(&self.shared))),
            ));
        }

        let progress = bar(
            (deadline - now_ns()) / 1_000_000,
            format!("{rate:.0} deliveries/s offered"),
        );
        let started_ms = now_ns() / 1_000_000;
        let tick = |progress: &ProgressBar| {
            progress.set_position(now_ns() / 1_000_000 - started_ms);
        };
        wait_until(window.start_ns, &progress, tick).await;
        let server_before = procfs::cpu_seconds(&self.server_pids).ok();
        let own_before = procfs::cpu_seconds(&[std::process::id()]).ok();
        let arrivals_before = self.shared.borrow().arrivals;
        let measured_from = Instant::now();
        wait_until(window.end_ns, &progress, tick).await;
        let measured = measured_from.elapsed().as_secs_f64();
        let server_after = procfs::cpu_seconds(&self.server_pids).ok();
        let own_after = procfs::cpu_seconds(&[std::process::id()]).ok();
        let arrivals = self.shared.borrow().arrivals - arrivals_before;

        for (i, task) in tasks {
            if let Ok(sink) = task.await {
                self.senders[i].sink = Some(sink);
            }
        }
        wait_until(deadline, &progress, tick).await;
        progress.finish_and_clear();
        let tally = self.shared.borrow().phases[phase as usize].clone();
        let closed = self.closed() - closed_before;
        let errors = self.shared.borrow().errors - errors_before;
        self.settle().await;

        let server_cpu = if self.server_pids.is_empty() {
            None
        } else {
            server_before.zip(server_after).map(|(a, b)| b - a)
        };
        let expected = tally.expected(&self.members);
        Step {
            rooms,
            members,
            senders: self.shape.senders,
            size: self.shape.size,
            servers: self.servers,
            offered_deliveries_per_s: rate,
            messages_per_s,
            window_s: measured,
            deliveries_per_s: arrivals as f64 / measured,
            expected,
            received: tally.received,
            loss: loss(expected, tally.received),
            misrouted: tally.misrouted,
            unsent: tally.unsent,
            errors,
            closed,
            latency_us: Latency::of(&tally),
            server_cpu_s: server_cpu,
            server_cpu_util: server_cpu.map(|cpu| cpu / measured),
            server_cpu_us_per_delivery: server_cpu
                .filter(|_| arrivals > 0)
                .map(|cpu| cpu * 1e6 / arrivals as f64),
            loadgen_cpu_util: own_before
                .zip(own_after)
                .map_or(0.0, |(a, b)| (b - a) / measured),
            passed: None,
        }
    }

    /// Waits until deliveries stop arriving (bounded), so phases do not overlap.
    async fn settle(&self) {
        let give_up = Instant::now() + SETTLE_MAX;
        let mut last = self.shared.borrow().arrivals;
        while Instant::now() < give_up {
            tokio::time::sleep(SETTLE_QUIET).await;
            let now = self.shared.borrow().arrivals;
            if now == last {
                return;
            }
            last = now;
        }
    }

    /// Closes every connection (bounded), then stops the readers.
    async fn close(mut self) {
        let sinks = self
            .senders
            .iter_mut()
            .filter_map(|slot| slot.sink.take())
            .chain(std::mem::take(&mut self.others));
        let closes = futures::future::join_all(sinks.map(|mut sink| async move {
            let _ = sink.send(Message::Close(None)).await;
        }));
        let _ = tokio::time::timeout(Duration::from_secs(3), closes).await;
        let readers = futures::future::join_all(self.readers.iter_mut());
        let _ = tokio::time::timeout(Duration::from_secs(2), readers).await;
        for reader in &self.readers {
            reader.abort();
        }
    }
}

fn secs_ns(seconds: f64) -> u64 {
    (seconds.max(0.0) * 1e9) as u64
}

async fn wait_until(ns: u64, progress: &ProgressBar, tick: impl Fn(&ProgressBar)) {
    let target = instant_of(ns);
    loop {
        tick(progress);
        let now = tokio::time::Instant::now();
        if now >= target {
            return;
        }
        tokio::time::sleep_until(target.min(now + Duration::from_millis(200))).await;
    }
}

/// Reads one member's deliveries until its connection ends.
async fn read(mut stream: futures::stream::SplitStream<Ws>, room: usize, shared: Shared) {
    while let Some(frame) = stream.next().await {
        let text = match frame {
            Ok(Message::Text(text)) => text,
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => continue,
        };
        let now = now_ns();
        let mut counters = shared.borrow_mut();
        match classify(text.as_str()) {
            Delivered::Probe(probe) => {
                counters.arrivals += 1;
                let Some(&sender_room) = counters.sender_room.get(probe.sender as usize) else {
                    continue;
                };
                if let Some(tally) = counters.phases.get_mut(probe.phase as usize) {
                    tally.on_received(room, sender_room, probe.sent_ns, now);
                }
            }
            Delivered::Error => counters.errors += 1,
            Delivered::Other => {}
        }
    }
    shared.borrow_mut().closed += 1;
}

/// When one sender sends during a phase.
struct Schedule {
    phase: u32,
    sender: u32,
    room: usize,
    first_ns: u64,
    interval_ns: u64,
    end_ns: u64,
    deadline_ns: u64,
    size: usize,
}

impl Schedule {
    fn at(&self, k: u64) -> Option<u64> {
        let t = self.first_ns + k * self.interval_ns;
        (t < self.end_ns).then_some(t)
    }
}

/// Sends on schedule. A message that is due while the sender waits on its timer is stamped
/// when the timer wakes it (the timer's millisecond granularity is the load generator's
/// doing, not the server's); a message that fell due while the sender was still writing
/// earlier ones is stamped with the time it was *due*, and the sender catches up at once. So a
/// server that pushes back is charged for the delay instead of quietly lowering the offered
/// load (no coordinated omission).
async fn send(mut sink: Sink, schedule: Schedule, shared: Shared) -> Sink {
    let deadline = instant_of(schedule.deadline_ns);
    let mut k = 0;
    let mut ready_at = 0;
    let mut alive = true;
    while let Some(due) = schedule.at(k) {
        tokio::time::sleep_until(instant_of(due)).await;
        let wake = now_ns();
        let burst = async {
            while let Some(t) = schedule.at(k).filter(|t| *t <= wake) {
                let sent_ns = if t >= ready_at { wake } else { t };
                let probe = Probe {
                    phase: schedule.phase,
                    sender: schedule.sender,
                    seq: k,
                    sent_ns,
                };
                shared.borrow_mut().phases[schedule.phase as usize].on_sent(schedule.room, sent_ns);
                k += 1;
                sink.feed(Message::Text(probe.client_frame(schedule.size).into()))
                    .await?;
            }
            sink.flush().await
        };
        match tokio::time::timeout_at(deadline, burst).await {
            Ok(Ok(())) => ready_at = now_ns(),
            Ok(Err(_)) | Err(_) => {
                alive = false;
                break;
            }
        }
    }
    if !alive {
        // What was due and never went out is owed all the same: it shows up as loss.
        let mut shared = shared.borrow_mut();
        let tally = &mut shared.phases[schedule.phase as usize];
        while let Some(t) = schedule.at(k) {
            tally.on_sent(schedule.room, t);
            tally.unsent += 1;
            k += 1;
        }
    }
    sink
}

/// Parameters of a maximum-rate search.
pub struct SearchArgs {
    pub start: f64,
    pub min: f64,
    pub max: f64,
    pub factor: f64,
    pub precision: f64,
    pub budget: Duration,
    pub bar: PassBar,
}

/// One phase at a fixed offered rate.
pub async fn run_fixed(
    target: &Target,
    shape: &Shape,
    timing: &Timing,
    rate: f64,
) -> Result<Output, String> {
    let mut session = Session::connect(target, shape, "f").await?;
    let step = session.run_phase(rate, timing).await;
    session.close().await;
    Ok(Output::Fanout(step))
}

/// Doubles the offered rate while steps pass, then bisects; stops when the next step would
/// not fit in the budget.
pub async fn run_maxrate(
    target: &Target,
    shape: &Shape,
    timing: &Timing,
    args: &SearchArgs,
) -> Result<Output, String> {
    let started = Instant::now();
    let give_up = started + args.budget;
    let step_time = Duration::from_secs_f64(timing.warmup + timing.duration + timing.grace)
        + TAIL
        + SETTLE_QUIET * 2;
    let mut generation = 0;
    let mut session = Session::connect(target, shape, &format!("m{generation}")).await?;
    let mut search = RateSearch::new(args.start, args.min, args.max, args.factor, args.precision);
    let mut steps: Vec<Step> = Vec::new();
    while let Some(rate) = search.next() {
        if Instant::now() + step_time > give_up {
            break;
        }
        let mut step = session.run_phase(rate, timing).await;
        let passed = step.latency_us.count > 0
            && step.misrouted == 0
            && step.closed == 0
            && args.bar.passes(step.loss, step.latency_us.p99);
        step.passed = Some(passed);
        search.record(rate, passed);
        steps.push(step);
        if session.closed() > 0 {
            // The server dropped members (overload): start over with fresh rooms.
            session.close().await;
            generation += 1;
            session = Session::connect(target, shape, &format!("m{generation}")).await?;
        }
    }
    session.close().await;
    let best = search.best().and_then(|rate| {
        steps
            .iter()
            .find(|s| s.passed == Some(true) && s.offered_deliveries_per_s == rate)
            .cloned()
    });
    Ok(Output::Maxrate(Maxrate {
        max_loss: args.bar.max_loss,
        max_p99_us: args.bar.max_p99_us,
        budget_s: args.budget.as_secs_f64(),
        elapsed_s: started.elapsed().as_secs_f64(),
        best_deliveries_per_s: best.as_ref().map_or(0.0, |s| s.deliveries_per_s),
        best,
        steps,
    }))
}
