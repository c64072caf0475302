//! Trusted proxies over real sockets: forwarding headers from an untrusted peer are ignored; from
//! a trusted one, a chain of hops is walked from the right and the scheme follows
//! `X-Forwarded-Proto` or `Forwarded: proto=`.

use serde_json::{Value, json};
use switchboard::prelude::*;
use switchboard::server::ForwardedAllow;

use crate::support::*;
use crate::whoami::{request_with, whoami_app};

#[tokio::test]
async fn forwarding_headers_count_only_from_trusted_proxies() {
    let spoofed = [
        ("x-forwarded-for", "6.6.6.6"),
        ("x-forwarded-proto", "https"),
        ("forwarded", "for=7.7.7.7;proto=https"),
    ];
    // Untrusted (the default): the headers are ignored.
    let server = TestServer::start(whoami_app()).await;
    let mut client = server
        .connect_request(request_with(&server, &spoofed))
        .await
        .unwrap();
    let report = recv_json(&mut client).await;
    assert!(
        report["client"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{report}"
    );
    assert_eq!(report["scheme"], "ws");
    server.shutdown().await;

    // Trusted: a chain of several hops, walked from the right past the trusted ones.
    let allow: ForwardedAllow = "127.0.0.1, 10.0.0.0/8".parse().unwrap();
    let server =
        TestServer::start_with(whoami_app(), ServerConfig::default().forwarded_allow(allow)).await;
    let chain = [
        ("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.0.0.2"),
        ("x-forwarded-proto", "https"),
    ];
    let mut client = server
        .connect_request(request_with(&server, &chain))
        .await
        .unwrap();
    let report: Value = recv_json(&mut client).await;
    assert_eq!(report, json!({"client": "203.0.113.7:0", "scheme": "wss"}));
    let forwarded = [("forwarded", r#"for="[2001:db8::7]:4711";proto=http"#)];
    let mut client = server
        .connect_request(request_with(&server, &forwarded))
        .await
        .unwrap();
    let report: Value = recv_json(&mut client).await;
    assert_eq!(
        report,
        json!({"client": "[2001:db8::7]:4711", "scheme": "ws"})
    );
    // Plain HTTP too.
    let (status, _, body) = http_request(
        server.addr,
        "GET",
        "/",
        &[
            ("X-Forwarded-For", "192.0.2.44"),
            ("X-Forwarded-Proto", "https"),
        ],
        b"",
    )
    .await;
    assert_eq!(
        (status, String::from_utf8_lossy(&body).as_ref()),
        (200, "192.0.2.44:0 https")
    );
    server.shutdown().await;
}
