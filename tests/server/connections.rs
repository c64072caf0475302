//! Connection limits over real sockets: over `max_connections` a handshake (or any request) is
//! answered 503 with `Retry-After` while the members carry on; per-client limits answer 429,
//! counting the client a trusted proxy names.

use std::time::Duration;

use switchboard::limits::{ClientLimits, Rate};
use switchboard::prelude::*;

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
