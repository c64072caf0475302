//! Presence from outside, as `chat-protocol.md` (v2) describes it: real sockets, the chat-app's
//! routing module served in-process, real Redis, and a real process killed with SIGKILL.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use chat_app::routing::{Security, application_with_security};
use chat_app::state::AppState;
use futures::StreamExt;
use serde_json::Value;
use support::chat::{chat_layer_config, room};
use support::redis::{RedisProcess, redis_url, unique_prefix};
use support::*;
use switchboard::layer::{
    ChannelLayer, InMemoryChannelLayer, PresenceConfig, RedisChannelLayer, RedisConfig, SharedLayer,
};
use switchboard::server::ServerConfig;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// Presence that moves fast enough for tests: changes every 50 ms, a heartbeat every 500 ms,
/// a process silent for 2 s is gone.
fn fast() -> PresenceConfig {
    PresenceConfig::default()
        .interval(Duration::from_millis(50))
        .heartbeat(Duration::from_millis(500))
        .timeout(Duration::from_secs(2))
}

fn token_of(user: &str) -> String {
    format!("presence-test-token-{user}")
}

/// The users the tests log in as, by API token: amy, bob, cat, ghost and u0 … u999.
fn tokens() -> HashMap<String, String> {
    ["amy", "bob", "cat", "ghost"]
        .into_iter()
        .map(str::to_owned)
        .chain((0..1_000).map(|n| format!("u{n}")))
        .map(|user| (token_of(&user), user))
        .collect()
}

/// A chat-app "process" on `layer`, whose users log in with [`tokens`].
async fn chat_app(layer: SharedLayer) -> TestServer {
    let security = Security {
        api_tokens: tokens(),
        ..Security::default()
    };
    TestServer::start_with_layer(
        application_with_security(AppState::default(), security),
        ServerConfig::default(),
        layer,
    )
    .await
}

/// The room's WebSocket path, logged in as `user`.
fn room_as(name: &str, user: &str) -> String {
    format!("{}?token={}", room(name), token_of(user))
}

async fn redis_chat_layer(url: &str, prefix: &str, presence: PresenceConfig) -> SharedLayer {
    let config = RedisConfig::new([url.to_owned()])
        .prefix(prefix)
        .layer(chat_layer_config().presence(presence));
    Arc::new(RedisChannelLayer::connect(config).await.expect("connect"))
}

/// Who a client believes is online, from the presence events it received.
#[derive(Default)]
struct Roster {
    online: BTreeMap<String, u64>,
    states: usize,
    diffs: usize,
}

impl Roster {
    /// Applies an event; false for events that are not presence.
    fn apply(&mut self, event: &Value) -> bool {
        let member = |entry: &Value| {
            let user = entry["user"].as_str().expect("a user").to_owned();
            (user, entry["connections"].as_u64().unwrap_or(0))
        };
        match event["type"].as_str() {
            Some("presence.state") => {
                self.states += 1;
                self.online = event["members"]
                    .as_array()
                    .expect("members")
                    .iter()
                    .map(member)
                    .collect();
            }
            Some("presence.diff") => {
                self.diffs += 1;
                for leave in event["leaves"].as_array().expect("leaves") {
                    self.online.remove(leave["user"].as_str().expect("a user"));
                }
                for join in event["joins"].as_array().expect("joins") {
                    let (user, connections) = member(join);
                    assert!(connections > 0, "a join with no connection: {event}");
                    self.online.insert(user, connections);
                }
            }
            _ => return false,
        }
        true
    }

    fn is(&self, expected: &[(&str, u64)]) -> bool {
        self.online.len() == expected.len()
            && expected
                .iter()
                .all(|(user, n)| self.online.get(*user) == Some(n))
    }

    /// Reads `client`'s events until the roster is `expected`, within `limit`.
    async fn until_within(
        &mut self,
        client: &mut Client,
        expected: &[(&str, u64)],
        limit: Duration,
    ) {
        let deadline = Instant::now() + limit;
        while !self.is(expected) {
            let left = deadline.saturating_duration_since(Instant::now());
            let frame = match tokio::time::timeout(left, client.next()).await {
                Ok(Some(Ok(frame))) => frame,
                Ok(other) => panic!("the connection ended: {other:?}"),
                Err(_) => panic!(
                    "after {limit:?} the roster is {:?}, not {expected:?}",
                    self.online
                ),
            };
            if let WsMessage::Text(text) = frame {
                self.apply(&serde_json::from_str(&text).expect("JSON"));
            }
        }
    }

    async fn until(&mut self, client: &mut Client, expected: &[(&str, u64)]) {
        self.until_within(client, expected, TIMEOUT).await;
    }
}

#[tokio::test]
async fn tabs_of_one_user_are_one_entry_and_a_closed_tab_is_a_diff() {
    let layer = Arc::new(InMemoryChannelLayer::with_config(
        chat_layer_config().presence(fast()),
    ));
    let server = chat_app(layer.clone()).await;
    let mut amy = server.connect(&room_as("tabs", "amy")).await;
    let mut seen_by_amy = Roster::default();
    seen_by_amy.until(&mut amy, &[("amy", 1)]).await;
    assert_eq!(seen_by_amy.states, 1, "a joiner gets the state first");

    let mut amy_again = server.connect(&room_as("tabs", "amy")).await;
    let mut seen_by_tab = Roster::default();
    seen_by_tab.until(&mut amy_again, &[("amy", 2)]).await;
    seen_by_amy.until(&mut amy, &[("amy", 2)]).await;
    let mut bob = server.connect(&room_as("tabs", "bob")).await;
    let mut seen_by_bob = Roster::default();
    let everyone = [("amy", 2), ("bob", 1)];
    seen_by_bob.until(&mut bob, &everyone).await;
    seen_by_amy.until(&mut amy, &everyone).await;
    seen_by_tab.until(&mut amy_again, &everyone).await;
    // Another room's members hear nothing of it.
    let mut elsewhere = server.connect(&room_as("other", "cat")).await;
    Roster::default().until(&mut elsewhere, &[("cat", 1)]).await;

    // A tab closed: one diff, to everyone, and the state is not sent again.
    close(&mut amy_again).await;
    let diffs = seen_by_amy.diffs;
    seen_by_amy.until(&mut amy, &[("amy", 1), ("bob", 1)]).await;
    seen_by_bob.until(&mut bob, &[("amy", 1), ("bob", 1)]).await;
    assert_eq!((seen_by_amy.states, seen_by_amy.diffs), (1, diffs + 1));

    // A connection that vanishes without a close frame leaves too.
    drop(bob);
    seen_by_amy.until(&mut amy, &[("amy", 1)]).await;
    let listed = layer.presence("chat_tabs").await.expect("list");
    assert_eq!(
        listed
            .iter()
            .map(|e| (e.key.as_str(), e.metas.len()))
            .collect::<Vec<_>>(),
        [("amy", 1)]
    );
    server.shutdown().await;
}

#[tokio::test]
async fn two_processes_on_redis_agree_on_who_is_online() {
    let Some(url) = redis_url().await else { return };
    let prefix = unique_prefix("presence-two");
    let (one_layer, two_layer) = (
        redis_chat_layer(&url, &prefix, fast()).await,
        redis_chat_layer(&url, &prefix, fast()).await,
    );
    let (one, two) = (
        chat_app(one_layer.clone()).await,
        chat_app(two_layer.clone()).await,
    );
    let mut amy = one.connect(&room_as("shared", "amy")).await;
    let mut bob = two.connect(&room_as("shared", "bob")).await;
    let mut cat_here = one.connect(&room_as("shared", "cat")).await;
    let mut cat_there = two.connect(&room_as("shared", "cat")).await;
    let everyone = [("amy", 1), ("bob", 1), ("cat", 2)];
    let mut rosters: Vec<Roster> = (0..4).map(|_| Roster::default()).collect();
    for (roster, client) in
        rosters
            .iter_mut()
            .zip([&mut amy, &mut bob, &mut cat_here, &mut cat_there])
    {
        roster.until(client, &everyone).await;
    }
    let list = |layer: SharedLayer| async move {
        layer
            .presence("chat_shared")
            .await
            .expect("list")
            .into_iter()
            .map(|e| (e.key, e.metas.len()))
            .collect::<Vec<_>>()
    };
    let listed = list(one_layer.clone()).await;
    assert_eq!(listed, list(two_layer.clone()).await, "the lists agree");
    assert_eq!(
        listed,
        [("amy".into(), 1), ("bob".into(), 1), ("cat".into(), 2)]
    );

    // A tab closed on one process is a diff on the other.
    close(&mut cat_there).await;
    let after = [("amy", 1), ("bob", 1), ("cat", 1)];
    rosters[0].until(&mut amy, &after).await;
    rosters[1].until(&mut bob, &after).await;
    one.shutdown().await;
    two.shutdown().await;
}

#[tokio::test]
async fn a_redis_outage_drops_the_other_process_and_its_return_rebuilds_it() {
    let Some(mut redis) = RedisProcess::start() else {
        return;
    };
    let url = redis.url();
    let prefix = unique_prefix("presence-outage");
    let one = chat_app(redis_chat_layer(&url, &prefix, fast()).await).await;
    let two = chat_app(redis_chat_layer(&url, &prefix, fast()).await).await;
    let mut amy = one.connect(&room_as("outage", "amy")).await;
    let _bob = two.connect(&room_as("outage", "bob")).await;
    let mut roster = Roster::default();
    roster.until(&mut amy, &[("amy", 1), ("bob", 1)]).await;

    redis.stop();
    // bob's process is not heard from any more: gone after the timeout.
    roster
        .until_within(&mut amy, &[("amy", 1)], Duration::from_secs(10))
        .await;
    redis.restart();
    // Back: the processes ask each other, and bob is there again.
    roster
        .until_within(&mut amy, &[("amy", 1), ("bob", 1)], Duration::from_secs(20))
        .await;
}

/// The environment variable that makes [`killed_process_child`] serve: `REDIS_URL PREFIX
/// HEARTBEAT_MS TIMEOUT_MS`.
const CHILD: &str = "SWITCHBOARD_PRESENCE_CHILD";

/// Not a test: the process the SIGKILL tests start (this test binary, running only this), a
/// chat-app on Redis that prints its port and serves until it is killed (or 120 s pass).
#[tokio::test]
#[ignore = "a child process of the SIGKILL tests, which start it themselves"]
async fn killed_process_child() {
    let Ok(spec) = std::env::var(CHILD) else {
        return;
    };
    let spec: Vec<&str> = spec.split(' ').collect();
    let [url, prefix, heartbeat, timeout] = spec[..] else {
        panic!("{CHILD}: {spec:?}");
    };
    let ms = |text: &str| Duration::from_millis(text.parse().expect("milliseconds"));
    let presence = PresenceConfig::default()
        .heartbeat(ms(heartbeat))
        .timeout(ms(timeout));
    let server = chat_app(redis_chat_layer(url, prefix, presence).await).await;
    println!("PORT {}", server.addr.port());
    tokio::time::sleep(Duration::from_secs(120)).await;
}

/// Starts [`killed_process_child`] and reads its port.
fn spawn_child(url: &str, prefix: &str, presence: &PresenceConfig) -> (Child, u16) {
    let spec = format!(
        "{url} {prefix} {} {}",
        presence.heartbeat.as_millis(),
        presence.timeout.as_millis()
    );
    let mut child = Command::new(std::env::current_exe().expect("this test binary"))
        .args([
            "--ignored",
            "--exact",
            "killed_process_child",
            "--nocapture",
        ])
        .env(CHILD, spec)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the child process");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if let Some(port) = line.strip_prefix("PORT ") {
                let _ = tx.send(port.trim().parse::<u16>());
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Ok(port)) => (child, port),
        other => {
            let _ = child.kill();
            panic!("the child process did not say its port: {other:?}");
        }
    }
}

/// A process with members is killed with SIGKILL: they leave everyone's list within `limit`.
async fn a_killed_process_members_leave(presence: PresenceConfig, limit: Duration) {
    let Some(url) = redis_url().await else { return };
    let prefix = unique_prefix(&format!("presence-kill-{}", presence.timeout.as_millis()));
    let survivor = chat_app(redis_chat_layer(&url, &prefix, presence.clone()).await).await;
    let (mut child, port) = spawn_child(&url, &prefix, &presence);
    let victim = format!("ws://127.0.0.1:{port}{}", room_as("kill", "ghost"));
    let (mut ghost, _) = within(
        "connecting to the child",
        tokio_tungstenite::connect_async(victim),
    )
    .await
    .expect("connect to the child");
    let mut amy = survivor.connect(&room_as("kill", "amy")).await;
    let mut roster = Roster::default();
    roster.until(&mut amy, &[("amy", 1), ("ghost", 1)]).await;
    Roster::default()
        .until(&mut ghost, &[("amy", 1), ("ghost", 1)])
        .await;

    child.kill().expect("SIGKILL the child");
    child.wait().expect("reap the child");
    roster.until_within(&mut amy, &[("amy", 1)], limit).await;
    survivor.shutdown().await;
}

#[tokio::test]
async fn a_killed_process_members_leave_within_its_timeout() {
    a_killed_process_members_leave(
        PresenceConfig::default()
            .heartbeat(Duration::from_millis(500))
            .timeout(Duration::from_secs(2)),
        Duration::from_secs(10),
    )
    .await;
}

#[tokio::test]
async fn with_the_defaults_a_killed_process_members_leave_within_30_s() {
    a_killed_process_members_leave(PresenceConfig::default(), Duration::from_secs(30)).await;
}

/// A thousand members join a room within a second or two: every member gets a handful of
/// diffs, not a thousand (at most about one per interval).
#[tokio::test]
async fn a_burst_of_1000_joins_is_a_bounded_number_of_diffs() {
    let interval = PresenceConfig::default().interval;
    let layer = Arc::new(InMemoryChannelLayer::with_config(chat_layer_config()));
    let server = Arc::new(chat_app(layer).await);
    let mut amy = server.connect(&room_as("burst", "amy")).await;
    let mut seen_by_amy = Roster::default();
    seen_by_amy.until(&mut amy, &[("amy", 1)]).await;

    let started = Instant::now();
    let mut joining = tokio::task::JoinSet::new();
    for batch in 0..20 {
        let server = Arc::clone(&server);
        joining.spawn(async move {
            let mut members = Vec::new();
            for n in batch * 50..(batch + 1) * 50 {
                members.push(server.connect(&room_as("burst", &format!("u{n}"))).await);
            }
            members
        });
    }
    let mut members = Vec::new();
    while let Some(joined) = joining.join_next().await {
        members.extend(joined.expect("joined"));
    }
    let mut everyone: Vec<(String, u64)> = (0..1_000).map(|n| (format!("u{n}"), 1)).collect();
    everyone.push(("amy".into(), 1));
    let everyone: Vec<(&str, u64)> = everyone.iter().map(|(u, n)| (u.as_str(), *n)).collect();
    seen_by_amy
        .until_within(&mut amy, &everyone, Duration::from_secs(30))
        .await;
    let took = started.elapsed();
    let bound = (took.as_millis() / interval.as_millis()) as usize + 2;
    assert!(
        seen_by_amy.diffs <= bound,
        "{} diffs in {took:?} (at most one per {interval:?})",
        seen_by_amy.diffs
    );
    // The joiners themselves: the state, then at most one diff per interval.
    for member in members.iter_mut().step_by(100) {
        let mut roster = Roster::default();
        roster
            .until_within(member, &everyone, Duration::from_secs(30))
            .await;
        assert_eq!(roster.states, 1);
        assert!(roster.diffs <= bound, "{} diffs", roster.diffs);
    }
}
