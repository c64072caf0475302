//! `loadgen`: the load generator of switchboard's benchmark, speaking the chat protocol
//! (`/ws/chat/{room}/`, `{"message": ...}` in, `{"type":"chat.message","message":...}` out).
//!
//! * `fanout`  — R rooms × M members, S senders per room at a fixed open-loop rate;
//! * `maxrate` — the highest deliveries/s with loss ≤ 0.1 % and p99 ≤ 100 ms, within a budget;
//! * `idle`    — N idle connections: server memory per connection and handshakes/s;
//! * `burst`   — N members join one room at once: presence events and server CPU;
//! * `report`  — medians and ratios of the results `bench/run.sh` stored;
//! * `median`  — the median of one figure over several result files (for scripts).
//!
//! It runs on one thread (pin it to its own core): every connection lives on the same
//! single-threaded runtime, so counting needs no locks. Only loopback addresses are accepted,
//! and every phase is bounded in time.

mod burst;
mod conn;
mod fanout;
mod idle;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use bench::report;

/// Load generator for switchboard's chat benchmark.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version, about)]
struct Cli {
    /// Print the result as JSON on stdout (the readable table then goes to stderr).
    #[arg(long, global = true)]
    json: bool,

    /// Give up after this many seconds, whatever the phase.
    #[arg(long, default_value_t = 900.0, global = true)]
    deadline: f64,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Fan-out at a fixed offered rate: deliveries/s, loss, latency, server CPU per delivery.
    Fanout(FanoutArgs),
    /// Searches the highest rate with loss ≤ --max-loss and p99 ≤ --max-p99-ms.
    Maxrate(MaxrateArgs),
    /// Holds N idle connections: server RSS per connection, handshakes/s.
    Idle(IdleArgs),
    /// N members join one room within a second: presence events per member, server CPU.
    Burst(BurstArgs),
    /// Prints medians and ratios of the results stored in a directory by bench/run.sh.
    Report {
        /// Directory of `<scenario>__<role>__<server>__<repeat>.json` files.
        dir: PathBuf,
    },
    /// Prints the median of one figure (a JSON pointer) over result files.
    Median {
        /// JSON pointer, e.g. `/best/deliveries_per_s`.
        #[arg(long)]
        pointer: String,
        /// Result files.
        files: Vec<PathBuf>,
    },
}

/// Where the servers are and which processes to measure.
#[derive(Debug, Args, Clone)]
pub struct Target {
    /// Server base URL, `ws://127.0.0.1:PORT`; repeat to spread members over several servers.
    #[arg(long = "url", required = true)]
    pub urls: Vec<String>,

    /// Server process ids whose CPU time (and memory) is measured; repeat for several.
    #[arg(long = "server-pid")]
    pub server_pids: Vec<u32>,

    /// Source addresses to connect from: 127.0.0.2, 127.0.0.3, ... (so ports do not run out).
    #[arg(long, default_value_t = 8)]
    pub sources: u8,

    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 128)]
    pub concurrency: usize,

    /// Seconds one handshake may take.
    #[arg(long, default_value_t = 10.0)]
    pub connect_timeout: f64,
}

/// The shape of a fan-out run.
#[derive(Debug, Args, Clone)]
pub struct Shape {
    /// Rooms.
    #[arg(long, short = 'r', default_value_t = 10)]
    pub rooms: usize,

    /// Members per room (senders included).
    #[arg(long, short = 'm', default_value_t = 10)]
    pub members: usize,

    /// Senders per room.
    #[arg(long, short = 's', default_value_t = 1)]
    pub senders: usize,

    /// Message text size in bytes (the probe is padded to it).
    #[arg(long, default_value_t = 64)]
    pub size: usize,

    /// Prefix of the room names (a unique one avoids another run's history).
    #[arg(long, default_value = "bench")]
    pub room_prefix: String,
}

/// How long each phase lasts.
#[derive(Debug, Args, Clone)]
pub struct Timing {
    /// Seconds of sending before the measurement window opens.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,

    /// Seconds of the measurement window.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,

    /// Seconds after the last send that deliveries may still arrive; later ones are lost.
    #[arg(long, default_value_t = 2.0)]
    pub grace: f64,
}

#[derive(Debug, Args)]
struct FanoutArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    shape: Shape,
    #[command(flatten)]
    timing: Timing,
    /// Offered load in deliveries per second (messages/s × members per room).
    #[arg(long, default_value_t = 10_000.0)]
    rate: f64,
}

#[derive(Debug, Args)]
struct MaxrateArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    shape: Shape,
    #[command(flatten)]
    timing: Timing,
    /// First offered rate tried, deliveries/s.
    #[arg(long, default_value_t = 20_000.0)]
    start: f64,
    /// Lowest rate tried.
    #[arg(long, default_value_t = 500.0)]
    min_rate: f64,
    /// Highest rate tried.
    #[arg(long, default_value_t = 10_000_000.0)]
    max_rate: f64,
    /// Rate multiplier while steps pass.
    #[arg(long, default_value_t = 2.0)]
    factor: f64,
    /// Stop bisecting when the bracket is this narrow (relative).
    #[arg(long, default_value_t = 0.05)]
    precision: f64,
    /// Seconds for the whole search (connecting included); no step starts that cannot end in it.
    #[arg(long, default_value_t = 60.0)]
    budget: f64,
    /// Highest loss a passing step may show (0.001 = 0.1 %).
    #[arg(long, default_value_t = 0.001)]
    max_loss: f64,
    /// Highest p99 latency a passing step may show, in milliseconds.
    #[arg(long, default_value_t = 100.0)]
    max_p99_ms: f64,
}

#[derive(Debug, Args)]
struct IdleArgs {
    #[command(flatten)]
    target: Target,
    /// Connections to open and hold (capped by this process' open-file limit).
    #[arg(long, short = 'n', default_value_t = 10_000)]
    connections: usize,
    /// Members per room: idle connections are spread over rooms of this size.
    #[arg(long, default_value_t = 10)]
    room_size: usize,
    /// Seconds to hold every connection open after the last handshake, before measuring.
    #[arg(long, default_value_t = 2.0)]
    hold: f64,
    /// Prefix of the room names.
    #[arg(long, default_value = "idle")]
    room_prefix: String,
}

#[derive(Debug, Args)]
struct BurstArgs {
    #[command(flatten)]
    target: Target,
    /// Members joining.
    #[arg(long, short = 'n', default_value_t = 1_000)]
    members: usize,
    /// Seconds over which the joins are spread evenly.
    #[arg(long, default_value_t = 1.0)]
    within: f64,
    /// Seconds without a presence event after which the run is over.
    #[arg(long, default_value_t = 2.0)]
    settle: f64,
    /// The room.
    #[arg(long, default_value = "burst")]
    room: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let load = match cli.command {
        Command::Report { dir } => return run_report(&dir),
        Command::Median { pointer, files } => return run_median(&pointer, &files),
        Command::Fanout(args) => Load::Fanout(args),
        Command::Maxrate(args) => Load::Maxrate(args),
        Command::Idle(args) => Load::Idle(args),
        Command::Burst(args) => Load::Burst(args),
    };
    let result = run_load(load, cli.deadline);
    match result {
        Ok(output) => {
            output.print(cli.json);
            if output.is_complete() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            }
        }
        Err(message) => {
            eprintln!("loadgen: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The subcommands that put load on a server.
enum Load {
    Fanout(FanoutArgs),
    Maxrate(MaxrateArgs),
    Idle(IdleArgs),
    Burst(BurstArgs),
}

fn run_load(load: Load, deadline: f64) -> Result<output::Output, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| format!("cannot start the runtime: {err}"))?;
    let local = tokio::task::LocalSet::new();
    let work = async move {
        match load {
            Load::Fanout(args) => {
                fanout::run_fixed(&args.target, &args.shape, &args.timing, args.rate).await
            }
            Load::Maxrate(args) => {
                let search = fanout::SearchArgs {
                    start: args.start,
                    min: args.min_rate,
                    max: args.max_rate,
                    factor: args.factor,
                    precision: args.precision,
                    budget: Duration::from_secs_f64(args.budget),
                    bar: bench::search::PassBar {
                        max_loss: args.max_loss,
                        max_p99_us: (args.max_p99_ms * 1000.0) as u64,
                    },
                };
                fanout::run_maxrate(&args.target, &args.shape, &args.timing, &search).await
            }
            Load::Idle(args) => {
                let idle = idle::IdleSpec {
                    connections: args.connections,
                    room_size: args.room_size.max(1),
                    hold: Duration::from_secs_f64(args.hold),
                    room_prefix: args.room_prefix,
                };
                idle::run(&args.target, &idle).await
            }
            Load::Burst(args) => {
                let burst = burst::BurstSpec {
                    members: args.members,
                    within: Duration::from_secs_f64(args.within.max(0.0)),
                    settle: Duration::from_secs_f64(args.settle.max(0.1)),
                    room: args.room,
                };
                burst::run(&args.target, &burst).await
            }
        }
    };
    let limit = Duration::from_secs_f64(deadline);
    runtime
        .block_on(async { tokio::time::timeout(limit, local.run_until(work)).await })
        .map_err(|_| format!("gave up after the {deadline} s deadline"))?
}

fn run_report(dir: &std::path::Path) -> ExitCode {
    match report::load_dir(dir) {
        Ok(stored) if !stored.is_empty() => {
            print!("{}", report::render(&report::rows(&stored)));
            ExitCode::SUCCESS
        }
        Ok(_) => {
            eprintln!("loadgen: no results in {}", dir.display());
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("loadgen: cannot read {}: {err}", dir.display());
            ExitCode::FAILURE
        }
    }
}

fn run_median(pointer: &str, files: &[PathBuf]) -> ExitCode {
    let values: Vec<f64> = files
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .filter_map(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .filter_map(|value| value.pointer(pointer).and_then(serde_json::Value::as_f64))
        .collect();
    match report::median(&values) {
        Some(median) => {
            println!("{median}");
            ExitCode::SUCCESS
        }
        None => {
            eprintln!("loadgen: no {pointer} in the files given");
            ExitCode::FAILURE
        }
    }
}
