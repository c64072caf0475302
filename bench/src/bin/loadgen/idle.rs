//! Idle connections: how much server memory each one costs, and how fast handshakes go.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bench::procfs;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::task::JoinHandle;

use crate::Target;
use crate::conn::Dialer;
use crate::output::{Checkpoint, Idle, Output};

/// File descriptors the load generator keeps for itself (stdio, the runtime, /proc reads).
const RESERVED_FDS: u64 = 32;

/// What to hold.
pub struct IdleSpec {
    pub connections: usize,
    pub room_size: usize,
    pub hold: Duration,
    pub room_prefix: String,
}

pub async fn run(target: &Target, spec: &IdleSpec) -> Result<Output, String> {
    let dialer = Dialer::new(target)?;
    let nofile_limit =
        procfs::raise_nofile_limit().map_err(|err| format!("cannot raise RLIMIT_NOFILE: {err}"))?;
    let attempted = spec
        .connections
        .min(nofile_limit.saturating_sub(RESERVED_FDS) as usize);
    if attempted < spec.connections {
        eprintln!(
            "loadgen: {} connections requested, the open-file limit ({nofile_limit}) allows {attempted}",
            spec.connections
        );
    }
    let pids = &target.server_pids;
    let rss_before = procfs::rss_total(pids).ok().filter(|_| !pids.is_empty());
    let cpu_before = procfs::cpu_seconds(pids).ok();

    let progress = ProgressBar::new(attempted as u64);
    if let Ok(style) =
        ProgressStyle::with_template("connecting {pos}/{len} [{bar:30}] {per_sec} {elapsed}")
    {
        progress.set_style(style);
    }
    let open = Rc::new(Cell::new(0usize));
    let quarter = attempted.div_ceil(4).max(1);
    let mut checkpoints = Vec::new();
    let mut holders: Vec<JoinHandle<()>> = Vec::with_capacity(attempted);
    let mut failed = 0;
    let mut first_error = None;
    let started = Instant::now();
    let mut connects = futures::stream::iter(0..attempted)
        .map(|n| {
            let room = format!("{}-{}", spec.room_prefix, n / spec.room_size);
            let dialer = &dialer;
            async move { dialer.open(n, n, &room).await }
        })
        .buffer_unordered(target.concurrency.max(1));
    let mut done = 0;
    while let Some(result) = connects.next().await {
        done += 1;
        progress.inc(1);
        match result {
            Ok(ws) => {
                let open = Rc::clone(&open);
                open.set(open.get() + 1);
                // Keep reading, so pings are answered and a server close is noticed.
                holders.push(tokio::task::spawn_local(async move {
                    let (_sink, mut stream) = ws.split();
                    while let Some(Ok(_)) = stream.next().await {}
                    open.set(open.get() - 1);
                }));
            }
            Err(err) => {
                failed += 1;
                first_error.get_or_insert(err);
            }
        }
        if (done % quarter == 0 || done == attempted)
            && !pids.is_empty()
            && let Ok(rss) = procfs::rss_total(pids)
        {
            checkpoints.push(Checkpoint {
                connections: open.get(),
                rss_bytes: rss,
            });
        }
    }
    drop(connects);
    let connect_s = started.elapsed().as_secs_f64();
    progress.finish_and_clear();
    let cpu_after = procfs::cpu_seconds(pids).ok();
    let connected = attempted - failed;

    tokio::time::sleep(spec.hold).await;
    let held = open.get();
    let rss_after = procfs::rss_total(pids).ok().filter(|_| !pids.is_empty());
    for holder in &holders {
        holder.abort();
    }

    let per_connection = rss_before
        .zip(rss_after)
        .filter(|_| held > 0)
        .map(|(before, after)| (after as f64 - before as f64) / held as f64);
    // Growth over the last quarter: from the 75 % checkpoint to the settled reading.
    let last_quarter = checkpoints
        .len()
        .checked_sub(2)
        .and_then(|i| checkpoints.get(i))
        .zip(rss_after)
        .filter(|(c, _)| held > c.connections)
        .map(|(c, after)| (after as f64 - c.rss_bytes as f64) / (held - c.connections) as f64);
    let server_cpu = cpu_before
        .zip(cpu_after)
        .filter(|_| !pids.is_empty() && connected > 0)
        .map(|(a, b)| (b - a) * 1e6 / connected as f64);
    Ok(Output::Idle(Idle {
        requested: spec.connections,
        nofile_limit,
        attempted,
        failed,
        first_error,
        connections: held,
        connect_s,
        handshakes_per_s: connected as f64 / connect_s,
        server_cpu_us_per_handshake: server_cpu,
        rss_before,
        rss_after,
        rss_per_connection: per_connection,
        rss_per_connection_last_quarter: last_quarter,
        checkpoints,
    }))
}
