//! Results: JSON for scripts, a readable table for people.

use std::fmt::Write;

use bench::tally::Tally;
use serde::Serialize;

/// Latency percentiles of the counted deliveries, in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

impl Latency {
    pub fn of(tally: &Tally) -> Latency {
        let h = &tally.latency_us;
        Latency {
            count: h.len(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
        }
    }
}

/// One measured phase of fan-out.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub rooms: usize,
    pub members: usize,
    pub senders: usize,
    pub size: usize,
    pub servers: usize,
    /// Offered load: deliveries per second the schedule asks for.
    pub offered_deliveries_per_s: f64,
    /// Messages per second sent, all senders together.
    pub messages_per_s: f64,
    pub window_s: f64,
    /// Probe deliveries that arrived during the window, per second.
    pub deliveries_per_s: f64,
    /// Deliveries owed for messages scheduled in the window.
    pub expected: u64,
    /// Of those, deliveries that arrived within the grace period.
    pub received: u64,
    pub loss: f64,
    pub misrouted: u64,
    /// Scheduled messages a sender could not write in time (counted as lost).
    pub unsent: u64,
    /// `{"type":"error"}` answers the server sent.
    pub errors: u64,
    /// Members the server disconnected.
    pub closed: u64,
    pub latency_us: Latency,
    /// Server CPU seconds (user + system) during the window, all server processes together.
    pub server_cpu_s: Option<f64>,
    /// Server CPU during the window, in cores (1.0 = one core busy all the time).
    pub server_cpu_util: Option<f64>,
    /// Server CPU microseconds per delivery during the window.
    pub server_cpu_us_per_delivery: Option<f64>,
    /// The load generator's own CPU during the window, in cores: near 1.0 means the figures
    /// above are the load generator's limit, not the server's.
    pub loadgen_cpu_util: f64,
    /// Whether the step met the maxrate bar (maxrate only).
    pub passed: Option<bool>,
}

/// The result of a maximum-rate search.
#[derive(Debug, Clone, Serialize)]
pub struct Maxrate {
    pub max_loss: f64,
    pub max_p99_us: u64,
    pub budget_s: f64,
    pub elapsed_s: f64,
    /// The best passing step's achieved deliveries/s (0 when none passed).
    pub best_deliveries_per_s: f64,
    pub best: Option<Step>,
    pub steps: Vec<Step>,
}

/// One RSS reading during the connection ramp.
#[derive(Debug, Clone, Serialize)]
pub struct Checkpoint {
    pub connections: usize,
    pub rss_bytes: u64,
}

/// The result of an idle-connection run.
#[derive(Debug, Clone, Serialize)]
pub struct Idle {
    pub requested: usize,
    /// Open-file limit of the load generator after raising it.
    pub nofile_limit: u64,
    pub attempted: usize,
    pub failed: usize,
    pub first_error: Option<String>,
    /// Connections still open at the end of the hold.
    pub connections: usize,
    pub connect_s: f64,
    pub handshakes_per_s: f64,
    pub server_cpu_us_per_handshake: Option<f64>,
    pub rss_before: Option<u64>,
    pub rss_after: Option<u64>,
    /// (RSS after − RSS before) / connections held.
    pub rss_per_connection: Option<f64>,
    /// RSS growth per connection over the last quarter of the ramp: flat memory means this
    /// stays close to `rss_per_connection`.
    pub rss_per_connection_last_quarter: Option<f64>,
    pub checkpoints: Vec<Checkpoint>,
}

/// The result of a join burst.
#[derive(Debug, Clone, Serialize)]
pub struct Burst {
    pub members: usize,
    pub failed: usize,
    pub first_error: Option<String>,
    /// Seconds from the first handshake started to the last one done.
    pub joined_s: f64,
    /// Seconds until presence was quiet again.
    pub settled_s: f64,
    /// `presence.state` events received, all members together.
    pub states: u64,
    /// `presence.diff` events received, all members together.
    pub diffs: u64,
    pub presence_bytes: u64,
    pub max_diffs_per_member: u64,
    pub mean_diffs_per_member: f64,
    /// What one diff per join to every member already there would have been: N(N−1)/2.
    pub uncoalesced_diffs: u64,
    /// Server CPU seconds from the first handshake to the end, all server processes.
    pub server_cpu_s: Option<f64>,
    pub server_cpu_us_per_join: Option<f64>,
}

/// What a subcommand produced.
#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Output {
    Fanout(Step),
    Maxrate(Maxrate),
    Idle(Idle),
    Burst(Burst),
}

impl Output {
    /// Whether the run measured something and saw no routing error.
    pub fn is_complete(&self) -> bool {
        match self {
            Output::Fanout(step) => step.expected > 0 && step.misrouted == 0,
            Output::Maxrate(m) => m.best.is_some() && m.steps.iter().all(|s| s.misrouted == 0),
            Output::Idle(idle) => idle.connections > 0,
            Output::Burst(burst) => burst.failed < burst.members,
        }
    }

    /// Prints JSON on stdout and the table on stderr, or only the table on stdout.
    pub fn print(&self, json: bool) {
        let table = self.table();
        if json {
            eprint!("{table}");
            match serde_json::to_string_pretty(self) {
                Ok(text) => println!("{text}"),
                Err(err) => eprintln!("loadgen: cannot encode the result: {err}"),
            }
        } else {
            print!("{table}");
        }
    }

    fn table(&self) -> String {
        let mut out = String::new();
        match self {
            Output::Fanout(step) => {
                let _ = writeln!(out, "fanout");
                step_table(&mut out, step);
            }
            Output::Maxrate(m) => {
                let _ = writeln!(
                    out,
                    "maxrate (loss <= {:.2}%, p99 <= {} ms; {:.0} s of {:.0} s budget)",
                    m.max_loss * 100.0,
                    m.max_p99_us / 1000,
                    m.elapsed_s,
                    m.budget_s
                );
                let _ = writeln!(
                    out,
                    "  {:>12} {:>12} {:>9} {:>9} {:>9} {:>10} {:>8} {:>6}",
                    "offered/s",
                    "delivered/s",
                    "loss%",
                    "p50 ms",
                    "p99 ms",
                    "cpu us/dlv",
                    "lg cpu",
                    "pass"
                );
                for s in &m.steps {
                    let _ = writeln!(
                        out,
                        "  {:>12.0} {:>12.0} {:>9.3} {:>9.2} {:>9.2} {:>10} {:>8.2} {:>6}",
                        s.offered_deliveries_per_s,
                        s.deliveries_per_s,
                        s.loss * 100.0,
                        s.latency_us.p50 as f64 / 1000.0,
                        s.latency_us.p99 as f64 / 1000.0,
                        opt(s.server_cpu_us_per_delivery, 3),
                        s.loadgen_cpu_util,
                        if s.passed == Some(true) { "yes" } else { "no" }
                    );
                }
                match &m.best {
                    Some(best) => {
                        let _ = writeln!(out, "best passing step:");
                        step_table(&mut out, best);
                    }
                    None => {
                        let _ = writeln!(out, "no step passed");
                    }
                }
            }
            Output::Idle(idle) => {
                let rows: Vec<(&str, String)> = vec![
                    ("connections held", idle.connections.to_string()),
                    (
                        "requested / attempted / failed",
                        format!("{} / {} / {}", idle.requested, idle.attempted, idle.failed),
                    ),
                    ("open-file limit", idle.nofile_limit.to_string()),
                    ("handshakes/s", format!("{:.0}", idle.handshakes_per_s)),
                    (
                        "server CPU us/handshake",
                        opt(idle.server_cpu_us_per_handshake, 1),
                    ),
                    ("server RSS before", mib(idle.rss_before)),
                    ("server RSS after", mib(idle.rss_after)),
                    ("RSS bytes/connection", opt(idle.rss_per_connection, 0)),
                    (
                        "RSS bytes/conn, last quarter",
                        opt(idle.rss_per_connection_last_quarter, 0),
                    ),
                ];
                let _ = writeln!(out, "idle");
                for (name, value) in rows {
                    let _ = writeln!(out, "  {name:<32} {value}");
                }
                if let Some(err) = &idle.first_error {
                    let _ = writeln!(out, "  {:<32} {err}", "first error");
                }
            }
            Output::Burst(b) => {
                let rows: Vec<(&str, String)> = vec![
                    (
                        "members joined / failed",
                        format!("{} / {}", b.members - b.failed, b.failed),
                    ),
                    (
                        "joined in / settled at (s)",
                        format!("{:.2} / {:.2}", b.joined_s, b.settled_s),
                    ),
                    ("presence.state received", b.states.to_string()),
                    ("presence.diff received", b.diffs.to_string()),
                    (
                        "diffs per member mean / max",
                        format!(
                            "{:.1} / {}",
                            b.mean_diffs_per_member, b.max_diffs_per_member
                        ),
                    ),
                    (
                        "one diff per join would be",
                        b.uncoalesced_diffs.to_string(),
                    ),
                    ("presence bytes received", b.presence_bytes.to_string()),
                    ("server CPU s", opt(b.server_cpu_s, 3)),
                    ("server CPU us/join", opt(b.server_cpu_us_per_join, 0)),
                ];
                let _ = writeln!(out, "burst");
                for (name, value) in rows {
                    let _ = writeln!(out, "  {name:<32} {value}");
                }
                if let Some(err) = &b.first_error {
                    let _ = writeln!(out, "  {:<32} {err}", "first error");
                }
            }
        }
        out
    }
}

fn opt(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.decimals$}"))
}

fn mib(bytes: Option<u64>) -> String {
    bytes.map_or_else(
        || "-".to_owned(),
        |b| format!("{:.1} MiB", b as f64 / (1 << 20) as f64),
    )
}

fn step_table(out: &mut String, s: &Step) {
    let l = &s.latency_us;
    let rows: Vec<(&str, String)> = vec![
        (
            "shape",
            format!(
                "{} rooms x {} members, {} sender(s)/room, {} B, {} server(s)",
                s.rooms, s.members, s.senders, s.size, s.servers
            ),
        ),
        (
            "offered",
            format!(
                "{:.0} deliveries/s ({:.1} messages/s)",
                s.offered_deliveries_per_s, s.messages_per_s
            ),
        ),
        (
            "delivered",
            format!("{:.0} deliveries/s", s.deliveries_per_s),
        ),
        (
            "loss",
            format!(
                "{:.4}% ({} of {} owed missing)",
                s.loss * 100.0,
                s.expected.saturating_sub(s.received),
                s.expected
            ),
        ),
        (
            "latency ms p50/p90/p99/p99.9/max",
            format!(
                "{:.2} / {:.2} / {:.2} / {:.2} / {:.2}",
                l.p50 as f64 / 1e3,
                l.p90 as f64 / 1e3,
                l.p99 as f64 / 1e3,
                l.p999 as f64 / 1e3,
                l.max as f64 / 1e3
            ),
        ),
        (
            "server CPU us/delivery",
            opt(s.server_cpu_us_per_delivery, 3),
        ),
        ("server CPU (cores)", opt(s.server_cpu_util, 2)),
        ("loadgen CPU (cores)", format!("{:.2}", s.loadgen_cpu_util)),
        (
            "misrouted / unsent / errors / closed",
            format!(
                "{} / {} / {} / {}",
                s.misrouted, s.unsent, s.errors, s.closed
            ),
        ),
    ];
    for (name, value) in rows {
        let _ = writeln!(out, "  {name:<36} {value}");
    }
}
