//! The pure parts of switchboard's benchmark: what a probe message says, how loss is counted,
//! how the maximum rate is searched, how `/proc` is read and how repeated runs are summarised.
//!
//! The binaries are `loadgen` (the load generator) and `reference` (a minimal hand-written
//! tokio-tungstenite broadcast server, the bar to measure the chat-app against); `bench/run.sh`
//! drives both. Nothing here runs under `cargo test` except these units: a benchmark is never
//! a timed test.

pub mod probe;
pub mod procfs;
pub mod report;
pub mod search;
pub mod tally;
