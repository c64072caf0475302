//! Network fuzzing: thousands of mutated request heads, and of random frames after a real
//! handshake, against a live server in a process of its own. Afterwards it still serves, its
//! open files and tasks are back to where they started, and it logged no panic.
//!
//! The server is a child process (this test binary, run for [`fuzzed_server`]) so that its
//! file descriptors and tasks can be counted without the clients' or other tests' in them.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use switchboard::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::raw::raw_websocket;
use crate::room::member;
use crate::support::*;
use crate::whoami::whoami_app;

/// Mutated heads sent, and connections that get random frames after a valid handshake.
const HEADS: usize = 3_000;
const FRAMED: usize = 1_000;

/// The server side, run as a child process by [`mutated_heads_and_frames_leave_the_server_as_it_was`]:
/// serves on an ephemeral port, prints it, answers `stats` on stdin with its open files and
/// tasks, and stops when stdin closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run as a child process by mutated_heads_and_frames_leave_the_server_as_it_was"]
async fn fuzzed_server() {
    if std::env::var_os("SWITCHBOARD_TEST_FUZZED_SERVER").is_none() {
        return;
    }
    let (member, _) = member();
    let app = ProtocolTypeRouter::new().http(whoami_app()).websocket(
        URLRouter::new()
            .route("/ws/chat/{room}/", member.clone())
            .route("/ws/room/", member)
            .nest("/who", whoami_app()),
    );
    let config = ServerConfig::default()
        .header_read_timeout(Duration::from_secs(2))
        .keepalive(Duration::from_secs(2), Duration::from_secs(4))
        .connect_timeout(Duration::from_secs(2));
    let server = Server::bind("127.0.0.1:0").await.unwrap().config(config);
    println!("listening on {}", server.local_addr().unwrap());
    let (commands, received) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if commands.send(line).is_err() {
                break;
            }
        }
    });
    let stats = async move {
        let mut received = received;
        while let Some(command) = received.recv().await {
            if command == "stats" {
                let fds = std::fs::read_dir("/proc/self/fd").unwrap().count();
                let tasks = tokio::runtime::Handle::current()
                    .metrics()
                    .num_alive_tasks();
                println!("stats fds={fds} tasks={tasks}");
            }
        }
    };
    server.serve_with_shutdown(app, stats).await.unwrap();
}

/// The child server: its address, its stdin for commands, its stdout lines and its log.
struct Fuzzed {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    log: Arc<Mutex<Vec<String>>>,
    addr: SocketAddr,
}

impl Fuzzed {
    async fn start() -> Fuzzed {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "network_fuzz::fuzzed_server",
                "--ignored",
                "--nocapture",
            ])
            .env("SWITCHBOARD_TEST_FUZZED_SERVER", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run the test binary as a child");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let kept = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                kept.lock().unwrap().push(line);
            }
        });
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take().unwrap();
        let mut fuzzed = Fuzzed {
            child,
            stdin,
            lines,
            log,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let line = fuzzed.line_with("listening on ").await;
        fuzzed.addr = line.trim().parse().unwrap();
        fuzzed
    }

    /// The rest of the next stdout line holding `marker` (the test harness may write its own
    /// words first on the same line).
    async fn line_with(&mut self, marker: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = tokio::task::block_in_place(|| self.lines.recv_timeout(left))
                .unwrap_or_else(|_| panic!("no {marker:?} from the child:\n{}", self.log()));
            if let Some((_, rest)) = line.split_once(marker) {
                return rest.to_owned();
            }
        }
    }

    /// Open files and alive tasks in the child.
    async fn stats(&mut self) -> (usize, usize) {
        writeln!(self.stdin, "stats").unwrap();
        let line = self.line_with("stats ").await;
        let number = |key: &str| -> usize {
            let (_, rest) = line.split_once(key).unwrap();
            rest.split_whitespace().next().unwrap().parse().unwrap()
        };
        (number("fds="), number("tasks="))
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

/// Sends `bytes` on a fresh connection and reads whatever comes back for a moment.
async fn send_raw(addr: SocketAddr, bytes: &[u8]) {
    let Ok(Ok(mut stream)) = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr)).await else {
        panic!("the server stopped accepting connections");
    };
    let _ = tokio::time::timeout(Duration::from_millis(500), stream.write_all(bytes)).await;
    let mut sink = vec![0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_millis(100), stream.read(&mut sink)).await;
}

/// A frame a client could send, or nearly: any opcode, masked or not, any length field
/// (sometimes lying), text that is or is not UTF-8, JSON that is or is not the room's.
fn random_frame(rng: &mut StdRng) -> Vec<u8> {
    let opcode = match rng.random_range(0..10) {
        0..=3 => 0x1,
        4 | 5 => 0x2,
        6 => 0x9,
        7 => 0x8,
        8 => 0x0,
        _ => rng.random_range(0..16),
    };
    let fin = if rng.random_bool(0.9) { 0x80 } else { 0 };
    let rsv = if rng.random_bool(0.05) { 0x40 } else { 0 };
    let mut payload: Vec<u8> = match rng.random_range(0..4) {
        0 => br#"{"say":"hello"}"#.to_vec(),
        1 => format!(r#"{{"say":"{}"}}"#, "x".repeat(rng.random_range(0..300))).into_bytes(),
        2 => (0..rng.random_range(0..200))
            .map(|_| rng.random())
            .collect(),
        _ => vec![0xff, 0xfe, 0x80],
    };
    let masked = rng.random_bool(0.95);
    let mask_bit = if masked { 0x80 } else { 0 };
    let mut frame = vec![fin | rsv | opcode];
    match rng.random_range(0..10) {
        0 => {
            frame.push(mask_bit | 126);
            frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        // A length far larger than what follows: the server waits for the rest, then the
        // socket ends.
        1 => {
            frame.push(mask_bit | 127);
            frame.extend_from_slice(&rng.random::<u64>().to_be_bytes());
        }
        _ => {
            payload.truncate(125);
            frame.push(mask_bit | payload.len() as u8);
        }
    }
    if masked {
        let mask: [u8; 4] = rng.random();
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    } else {
        frame.extend_from_slice(&payload);
    }
    frame
}

/// A valid handshake, then random frames (the last one sometimes cut short), then the socket is
/// dropped.
async fn handshake_then_frames(addr: SocketAddr, path: &str, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut stream = raw_websocket(addr, path).await;
    for _ in 0..rng.random_range(1..12) {
        let frame = random_frame(&mut rng);
        let cut = if rng.random_bool(0.1) {
            rng.random_range(0..=frame.len())
        } else {
            frame.len()
        };
        let written =
            tokio::time::timeout(Duration::from_millis(200), stream.write_all(&frame[..cut]));
        if !matches!(written.await, Ok(Ok(()))) {
            break;
        }
    }
    let mut sink = vec![0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_millis(50), stream.read(&mut sink)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_heads_and_frames_leave_the_server_as_it_was() {
    let mut server = Fuzzed::start().await;
    let addr = server.addr;
    let before = server.stats().await;
    // The counts see connections: twenty held open show as twenty more files and tasks.
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(raw_websocket(addr, "/ws/room/").await);
    }
    let busy = server.stats().await;
    assert!(
        busy.0 >= before.0 + 20 && busy.1 >= before.1 + 20,
        "{before:?} -> {busy:?}"
    );
    drop(held);

    let heads = switchboard::fuzz::inputs("request_head", HEADS, 0x6e65_7466);
    bounded("the mutated heads", Duration::from_secs(300), async {
        futures::stream::iter(heads)
            .for_each_concurrent(64, |head| async move { send_raw(addr, &head).await })
            .await;
    })
    .await;
    bounded("the random frames", Duration::from_secs(300), async {
        futures::stream::iter(0..FRAMED as u64)
            .for_each_concurrent(64, |n| async move {
                let path = if n % 2 == 0 { "/ws/room/" } else { "/who/ws/" };
                handshake_then_frames(addr, path, n).await;
            })
            .await;
    })
    .await;

    // Everything closed: the server lets go of every socket and task (bounded by its header
    // and ping timeouts), and serves as before.
    let after = bounded("the server to settle", Duration::from_secs(60), async {
        loop {
            let now = server.stats().await;
            if now == before {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert_eq!(after, before);
    let (mut client, _) = within(
        "a handshake after the fuzzing",
        tokio_tungstenite::connect_async(format!("ws://{addr}/who/ws/")),
    )
    .await
    .unwrap();
    assert!(recv_json(&mut client).await["client"].is_string());
    drop(client);

    drop(server.stdin);
    let status = bounded("the child to exit", Duration::from_secs(30), async {
        tokio::task::spawn_blocking(move || server.child.wait().unwrap())
            .await
            .unwrap()
    })
    .await;
    let log = server.log.lock().unwrap().join("\n");
    assert!(status.success(), "the server failed:\n{log}");
    assert!(!log.contains("panicked"), "a panic:\n{log}");
}
