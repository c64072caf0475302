//! Inbound rate limits over real sockets: a flood gets `rate limited` answers, nothing of the
//! excess reaches the room, and it is closed with 1008; the default lets a burst of 500 through;
//! a route can set its own limit.

use std::time::Duration;

use serde_json::{Value, json};
use switchboard::limits::{Rate, RateLimit};
use switchboard::prelude::*;

use crate::room::{Member, drain_until_close, room};
use crate::support::*;

#[tokio::test]
async fn a_flood_gets_rate_limited_answers_then_1008_and_nothing_of_the_excess_is_said() {
    let limit = RateLimit::default()
        .messages(Rate::new(10, 20))
        .close_after(5, Duration::from_secs(5));
    let (app, _) = room();
    let server = TestServer::start_with(app, ServerConfig::default().rate_limit(limit)).await;
    let mut listener = server.connect("/ws/room/").await;
    let mut flooder = server.connect("/ws/room/").await;
    for n in 0..100 {
        send_json(&mut flooder, &json!({ "say": n.to_string() })).await;
    }
    let (texts, code, reason) = drain_until_close(&mut flooder).await;
    assert_eq!((code, reason.as_str()), (1008, "rate limit exceeded"));
    let rate_limited = json!({"type": "error", "error": "rate limited"});
    let errors = texts
        .iter()
        .filter(|t| serde_json::from_str::<Value>(t).unwrap() == rate_limited)
        .count();
    // One answer per excess frame until the close: five, and one more for each second the
    // flood lasted (the tolerance is earned back at five per five seconds).
    assert!(
        (5..20).contains(&errors),
        "{errors} rate limited answers: {texts:?}"
    );
    let said = texts.len() - errors;
    // The burst of 20, and what the rate earned while the rest arrived (on a busy machine,
    // sending a hundred frames can take a while): never all of them.
    assert!((20..100).contains(&said), "{said} said: {texts:?}");
    // The listener heard exactly what was said, not the excess.
    for _ in 0..said {
        recv_json(&mut listener).await;
    }
    assert_quiet(&mut listener).await;
    server.shutdown().await;
}

#[tokio::test]
async fn the_default_rate_lets_a_burst_of_500_through_and_a_route_can_lift_it() {
    let (app, _) = room();
    let server = TestServer::start(app).await;
    let mut client = server.connect("/ws/room/").await;
    for n in 0..500 {
        send_json(&mut client, &json!({ "say": n.to_string() })).await;
    }
    for n in 0..500 {
        assert_eq!(recv_json(&mut client).await["said"], n.to_string());
    }
    assert_quiet(&mut client).await;
    server.shutdown().await;

    // A route of its own, unlimited: 3 000 at once pass under the server's default.
    let (codes, _) = tokio::sync::watch::channel(Vec::new());
    let member = ConsumerApp::new(move || Member {
        codes: codes.clone(),
    })
    .rate_limit(RateLimit::unlimited());
    let app = ProtocolTypeRouter::new().websocket(URLRouter::new().route("/ws/room/", member));
    let server = TestServer::start(app).await;
    let mut client = server.connect("/ws/room/").await;
    let sending = async {
        for n in 0..3_000 {
            send_json(&mut client, &json!({ "say": n.to_string() })).await;
        }
    };
    sending.await;
    for n in 0..3_000 {
        assert_eq!(recv_json(&mut client).await["said"], n.to_string());
    }
    server.shutdown().await;
}
