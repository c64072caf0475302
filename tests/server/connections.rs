//! Connection limits over real sockets: over `max_connections` a handshake (or any request) is
//! answered 503 with `Retry-After` while the members carry on; per-client limits answer 429,
//! counting the client a trusted proxy names.

use std::time::Duration;

use switchboard::limits::{ClientLimits, Rate};
use switchboard::prelude::*;
use tokio::net::TcpStream;

use crate::support::*;
use crate::whoami::{refusal, request_with, whoami_app};

#[tokio::test]
async fn over_the_connection_limit_handshakes_get_503_and_members_carry_on() {
    let server =
        TestServer::start_with(whoami_app(), ServerConfig::default().max_connections(3)).await;
    let mut members = Vec::new();
    for _ in 0..3 {
        let mut client = server.connect("/ws/").await;
        recv_json(&mut client).await;
        members.push(client);
    }
    let (status, retry_after) = refusal(&server, request_with(&server, &[])).await;
    assert_eq!((status, retry_after.as_str()), (503, "1"));
    // Plain HTTP is refused the same way.
    assert_eq!(http_get(server.addr, "/").await.0, 503);
    for client in &mut members {
        send_text(client, "still here").await;
        assert_eq!(recv_text(client).await, "still here");
    }
    // A member leaving makes room.
    let mut leaving = members.pop().unwrap();
    close(&mut leaving).await;
    drop(leaving);
    let mut newcomer = within("a place to free up", async {
        loop {
            if let Ok(client) = server.try_connect("/ws/").await {
                return client;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    recv_json(&mut newcomer).await;
    server.shutdown().await;
}

#[tokio::test]
async fn per_client_limits_answer_429_and_count_the_forwarded_client() {
    let limits = ClientLimits::default()
        .max_connections(2)
        .handshakes(Rate::new(1, 4));
    let config = ServerConfig::default()
        .client_limits(limits)
        .forwarded_allow("127.0.0.1".parse().unwrap());
    let server = TestServer::start_with(whoami_app(), config).await;
    // Two clients behind the trusted proxy (this test) are two clients.
    let ann = [("x-forwarded-for", "198.51.100.1")];
    let bob = [("x-forwarded-for", "198.51.100.2")];
    let mut held = Vec::new();
    for who in [&ann, &ann, &bob, &bob] {
        let client = server
            .connect_request(request_with(&server, who))
            .await
            .unwrap();
        held.push(client);
    }
    let (status, retry_after) = refusal(&server, request_with(&server, &ann)).await;
    assert_eq!((status, retry_after.as_str()), (429, "1"));
    // A closed connection gives its place back, but ann's handshakes are spent (4 of a burst
    // of 4, one more a second).
    let mut first = held.remove(0);
    close(&mut first).await;
    drop(first);
    // Handshakes: a burst of 4, then one a second. Of a dozen in a row, the first 4 open and
    // one at least is refused (all twelve would take the server over three seconds).
    let carol = [("x-forwarded-for", "198.51.100.3")];
    let mut outcomes = Vec::new();
    for _ in 0..12 {
        match server.connect_request(request_with(&server, &carol)).await {
            Ok(mut client) => {
                close(&mut client).await;
                outcomes.push(101);
            }
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                outcomes.push(response.status().as_u16());
            }
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!(outcomes[..4], [101; 4], "{outcomes:?}");
    assert!(outcomes.contains(&429), "{outcomes:?}");
    server.shutdown().await;
}

/// Ten thousand handshakes from one address, with a per-client limit of a thousand: a thousand
/// open, the rest are answered 429, and another address is served all along.
#[tokio::test]
async fn ten_thousand_connections_from_one_address_meet_the_per_client_limit() {
    use futures::StreamExt;

    let limits = ClientLimits::default().max_connections(1_000);
    let server =
        TestServer::start_with(whoami_app(), ServerConfig::default().client_limits(limits)).await;
    let attempts = futures::stream::iter(0..10_000)
        .map(|_| server.try_connect("/ws/"))
        .buffer_unordered(128);
    let (mut open, mut refused) = (Vec::new(), 0);
    bounded("10 000 handshakes", Duration::from_secs(120), async {
        tokio::pin!(attempts);
        while let Some(attempt) = attempts.next().await {
            match attempt {
                Ok(client) => open.push(client),
                Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                    assert_eq!(response.status(), 429);
                    refused += 1;
                }
                Err(other) => panic!("{other}"),
            }
        }
    })
    .await;
    assert_eq!((open.len(), refused), (1_000, 9_000));
    // Another client address (127.0.0.2 is loopback too) is served meanwhile.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let stream = within("TCP connect", socket.connect(server.addr))
        .await
        .unwrap();
    let (mut other, _) = within(
        "the handshake from 127.0.0.2",
        tokio_tungstenite::client_async(
            server.ws_url("/ws/"),
            tokio_tungstenite::MaybeTlsStream::Plain(stream),
        ),
    )
    .await
    .unwrap();
    let report = recv_json(&mut other).await;
    assert!(report["client"].as_str().unwrap().starts_with("127.0.0.2:"));
    server.shutdown().await;
}

/// The server side of [`out_of_file_descriptors_accept_backs_off_logs_once_and_recovers`], run
/// by it as a child process: a server whose process may open only a few files.
#[tokio::test]
#[ignore = "run as a child process by out_of_file_descriptors_accept_backs_off_logs_once_and_recovers"]
async fn server_with_few_file_descriptors() {
    let Ok(limit) = std::env::var("SWITCHBOARD_TEST_NOFILE") else {
        return;
    };
    let limit: u64 = limit.parse().unwrap();
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    rlimit::setrlimit(rlimit::Resource::NOFILE, limit, hard).unwrap();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    // A connection limit far above what the process may open: accept itself fails.
    let config = ServerConfig::default().max_connections(10_000);
    let server = Server::bind("127.0.0.1:0").await.unwrap().config(config);
    println!("listening on {}", server.local_addr().unwrap());
    let stdin_closed = async {
        let _ =
            tokio::task::spawn_blocking(|| std::io::stdin().read_line(&mut String::new())).await;
    };
    server
        .serve_with_shutdown(whoami_app(), stdin_closed)
        .await
        .unwrap();
}

/// A server out of file descriptors does not die: `accept` fails, the server backs off and logs
/// it once (not once per attempt), and serves again once descriptors are free.
#[tokio::test]
async fn out_of_file_descriptors_accept_backs_off_logs_once_and_recovers() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    use std::sync::{Arc, Mutex};

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "connections::server_with_few_file_descriptors",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("SWITCHBOARD_TEST_NOFILE", "64")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the test binary as a child");
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let stderr = child.stderr.take().unwrap();
    let reading = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log.lock().unwrap().push(line);
            }
        })
    };
    // Read to the end, so the child never writes into a closed pipe.
    let stdout = child.stdout.take().unwrap();
    let (address, addressed) = std::sync::mpsc::channel();
    let draining = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // The test harness writes its own words on the same line first.
            if let Some((_, addr)) = line.split_once("listening on ") {
                let _ = address.send(addr.trim().parse::<std::net::SocketAddr>().unwrap());
            }
        }
    });
    let addr = bounded(
        "the child server's address",
        Duration::from_secs(30),
        async {
            tokio::task::spawn_blocking(move || addressed.recv().expect("the child listens"))
                .await
                .unwrap()
        },
    )
    .await;
    let logged = |needle: &str| {
        log.lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    };

    // A hundred connections that send nothing: the server accepts until it has no descriptor
    // left, the rest wait in the listen backlog.
    let mut held = Vec::new();
    for _ in 0..100 {
        held.push(
            within("TCP connect", TcpStream::connect(addr))
                .await
                .unwrap(),
        );
    }
    within("the accept failure to be logged", async {
        while logged("accept failed") == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    drop(held);
    // Descriptors free again: it serves.
    let request = format!("ws://{addr}/ws/");
    let mut client = bounded(
        "a handshake once descriptors are free",
        Duration::from_secs(30),
        async {
            loop {
                if let Ok(Ok((client, _))) = tokio::time::timeout(
                    Duration::from_secs(2),
                    tokio_tungstenite::connect_async(&request),
                )
                .await
                {
                    return client;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        },
    )
    .await;
    recv_json(&mut client).await;
    drop(client);

    drop(child.stdin.take());
    let status = bounded("the child to exit", Duration::from_secs(30), async {
        tokio::task::spawn_blocking(move || child.wait().unwrap())
            .await
            .unwrap()
    })
    .await;
    reading.join().unwrap();
    draining.join().unwrap();
    let log = log.lock().unwrap().join("\n");
    assert!(status.success(), "the child failed:\n{log}");
    let failures = log.matches("accept failed").count();
    let recoveries = log.matches("accepting connections again").count();
    assert!(failures >= 1, "{log}");
    assert_eq!(
        failures, recoveries,
        "one line per episode, each ended:\n{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
}
