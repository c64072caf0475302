//! Logging in, sessions, tokens and origin checks, from outside: the chat-app served in-process,
//! real HTTP requests and real WebSocket clients on 127.0.0.1.

mod support;

use std::collections::HashMap;
use std::sync::Arc;

use chat_app::routing::{Security, application_with_security};
use chat_app::state::AppState;
use http::HeaderValue;
use serde_json::{Value, json};
use support::redis::{redis_url, unique_prefix};
use support::*;
use switchboard::layer::InMemoryChannelLayer;
use switchboard::middleware::{
    AllowedOrigins, MemorySessionStore, RedisSessionStore, SessionConfig, SessionKey, SessionStore,
};
use switchboard::prelude::*;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;

/// An API token the tests configure, for the user "robot".
const TOKEN: &str = "0123456789abcdef-robot";

/// A session secret shared by the "processes" of the Redis test.
const SECRET: &str = "a test secret that is long enough: 0123456789";

async fn chat_server(security: Security) -> TestServer {
    TestServer::start(application_with_security(AppState::default(), security)).await
}

/// `POST path` with a form body; returns status, head and body.
async fn post_form(
    server: &TestServer,
    path: &str,
    form: &str,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    let mut all = vec![("Content-Type", "application/x-www-form-urlencoded")];
    all.extend_from_slice(headers);
    let (status, head, body) = http_request(server.addr, "POST", path, &all, form.as_bytes()).await;
    (status, head, String::from_utf8_lossy(&body).into_owned())
}

/// The `name=value` of the session cookie a response sets.
fn session_cookie(head: &str) -> String {
    let set = header_values(head, "set-cookie");
    let cookie = set
        .iter()
        .find(|c| c.starts_with("sessionid="))
        .unwrap_or_else(|| panic!("no session cookie set: {head}"));
    cookie.split(';').next().expect("a pair").to_owned()
}

/// Logs in as `name` and returns the session cookie.
async fn log_in(server: &TestServer, name: &str) -> String {
    let (status, head, body) = post_form(server, "/login", &format!("username={name}"), &[]).await;
    assert_eq!(status, 303, "login as {name}: {head}\n{body}");
    session_cookie(&head)
}

/// `GET /whoami` with these headers.
async fn whoami(server: &TestServer, headers: &[(&str, &str)]) -> Value {
    let (status, _head, body) = http_request(server.addr, "GET", "/whoami", headers, b"").await;
    assert_eq!(status, 200);
    serde_json::from_slice(&body).expect("JSON from /whoami")
}

/// A handshake request for `path` with extra headers.
fn ws_request(server: &TestServer, path: &str, headers: &[(&'static str, &str)]) -> Request {
    let mut request = server.ws_url(path).into_client_request().expect("request");
    for (name, value) in headers {
        request
            .headers_mut()
            .append(*name, HeaderValue::from_str(value).expect("header value"));
    }
    request
}

/// Connects to a room (`lobby`, or `lobby?query`) with `headers`, says something, and returns
/// the user it was said as.
async fn speaks_as(server: &TestServer, room: &str, headers: &[(&'static str, &str)]) -> String {
    let path = match room.split_once('?') {
        Some((room, query)) => format!("/ws/chat/{room}/?{query}"),
        None => format!("/ws/chat/{room}/"),
    };
    let request = ws_request(server, &path, headers);
    let mut client = server
        .connect_request(request)
        .await
        .unwrap_or_else(|err| panic!("handshake with {headers:?} refused: {err}"));
    send_json(&mut client, &json!({"message": "who am I?"})).await;
    loop {
        let event = recv_json(&mut client).await;
        assert_ne!(event["type"], "error", "{event}");
        if event["type"] == "chat.message" {
            close(&mut client).await;
            return event["user"].as_str().expect("a user").to_owned();
        }
    }
}

fn is_guest(user: &str) -> bool {
    user.starts_with("guest-")
}

#[tokio::test]
async fn login_names_the_users_websockets_and_logout_makes_them_a_guest_again() {
    let server = chat_server(Security::default()).await;
    assert!(is_guest(&speaks_as(&server, "lobby", &[]).await));

    let (status, head, _) = post_form(&server, "/login", "username=%20Ann%20Lee%20", &[]).await;
    assert_eq!(status, 303, "{head}");
    assert_eq!(header_values(&head, "location"), ["/"]);
    let set = header_values(&head, "set-cookie").join("\n");
    for part in ["sessionid=", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(set.contains(part), "{part} missing from {set}");
    }
    assert!(
        !set.contains("Secure"),
        "not Secure unless configured: {set}"
    );
    let cookie = session_cookie(&head);

    assert_eq!(
        speaks_as(&server, "lobby", &[("cookie", &cookie)]).await,
        "Ann Lee",
        "the name is trimmed and carried by every WebSocket of the browser"
    );
    assert_eq!(
        whoami(&server, &[("Cookie", &cookie)]).await,
        json!({"authenticated": true, "user": "Ann Lee"})
    );

    let (status, head, _) = post_form(&server, "/logout", "", &[("Cookie", &cookie)]).await;
    assert_eq!(status, 303, "{head}");
    let removal = header_values(&head, "set-cookie").join("\n");
    assert!(
        removal.starts_with("sessionid=;") && removal.contains("Max-Age=0"),
        "{removal}"
    );
    // The old cookie is worthless: the session is gone from the store, not only the browser.
    assert!(is_guest(
        &speaks_as(&server, "lobby", &[("cookie", &cookie)]).await
    ));
    assert_eq!(
        whoami(&server, &[("Cookie", &cookie)]).await,
        json!({"authenticated": false, "user": null})
    );
}

#[tokio::test]
async fn login_sends_the_browser_back_to_a_page_of_this_site_only() {
    let server = chat_server(Security::default()).await;
    let own = format!("http://{}/chat/lobby/?x=1", server.addr);
    let no_referer: &[(&str, &str)] = &[];
    let cases = [
        (
            "username=a",
            &[("Referer", own.as_str())][..],
            "/chat/lobby/?x=1",
        ),
        (
            "username=a",
            &[("Referer", "http://evil.example/chat/x/")][..],
            "/",
        ),
        (
            "username=a&next=%2Findex%2F%3Fnum%3D7",
            no_referer,
            "/index/?num=7",
        ),
        ("username=a&next=%2F%2Fevil.example%2F", no_referer, "/"),
        (
            "username=a&next=https%3A%2F%2Fevil.example%2F",
            no_referer,
            "/",
        ),
        // `next` wins over the Referer.
        (
            "username=a&next=%2Fchat%2Fb%2F",
            &[("Referer", own.as_str())][..],
            "/chat/b/",
        ),
    ];
    for (form, headers, expected) in cases {
        let (status, head, _) = post_form(&server, "/login", form, headers).await;
        assert_eq!(status, 303, "{form}");
        assert_eq!(
            header_values(&head, "location"),
            [expected],
            "{form} {headers:?}"
        );
    }
}

#[tokio::test]
async fn invalid_usernames_get_400_with_the_reason_and_no_session() {
    let store = Arc::new(MemorySessionStore::new());
    let security = Security {
        sessions: SessionConfig::new(SessionKey::generate()).store(store.clone()),
        ..Security::default()
    };
    let server = chat_server(security).await;
    let long = "x".repeat(33);
    let cases = [
        ("username=", "enter a user name"),
        ("username=+++", "enter a user name"),
        ("", "enter a user name"),
        (&*format!("username={long}"), "at most 32 characters"),
        ("username=a%00b", "control characters"),
        ("username=a%0Ab", "control characters"),
        ("username=a%E2%80%AEb", "control characters"),
    ];
    // Repeated many times: refused logins must not cost memory.
    for _ in 0..20 {
        for (form, reason) in cases {
            let (status, head, body) = post_form(&server, "/login", form, &[]).await;
            assert_eq!(status, 400, "{form:?}: {head}");
            assert!(
                body.contains("invalid username") && body.contains(reason),
                "{form:?}: {body}"
            );
            assert!(header_values(&head, "set-cookie").is_empty(), "{head}");
        }
    }
    // Nor do visitors without a session.
    for _ in 0..20 {
        assert_eq!(whoami(&server, &[]).await["authenticated"], false);
        assert_eq!(http_get(server.addr, "/chat/lobby/").await.0, 200);
    }
    assert_eq!(store.len(), 0, "nothing was stored");

    let (status, head, _) = http_request(server.addr, "GET", "/login", &[], b"").await;
    assert_eq!(status, 405);
    assert_eq!(header_values(&head, "allow"), ["POST"]);
}

#[tokio::test]
async fn tampered_or_unknown_session_cookies_are_guests_never_errors() {
    let server = chat_server(Security::default()).await;
    let cookie = log_in(&server, "ann").await;
    let (name, value) = cookie.split_once('=').expect("name=value");
    let mut tampered = value.to_owned();
    let last = tampered.pop().expect("a value");
    tampered.push(if last == 'x' { 'y' } else { 'x' });
    // The same session id signed by another process' key.
    let other = chat_server(Security::default()).await;
    let foreign = log_in(&other, "ann").await;
    for bad in [
        format!("{name}={tampered}"),
        format!("{name}=garbage"),
        format!("{name}="),
        format!("{name}=%FF%00"),
        foreign,
        format!("{name}={}", "A".repeat(3000)),
    ] {
        assert!(
            is_guest(&speaks_as(&server, "lobby", &[("cookie", &bad)]).await),
            "{bad}"
        );
        assert_eq!(
            whoami(&server, &[("Cookie", &bad)]).await,
            json!({"authenticated": false, "user": null}),
            "{bad}"
        );
        let (status, _) = http_get_with(&server, "/chat/lobby/", &bad).await;
        assert_eq!(status, 200, "a bad cookie never costs the page: {bad}");
    }
    // The genuine cookie still works beside them.
    assert_eq!(
        speaks_as(&server, "lobby", &[("cookie", &cookie)]).await,
        "ann"
    );
}

async fn http_get_with(server: &TestServer, path: &str, cookie: &str) -> (u16, Vec<u8>) {
    let (status, _head, body) =
        http_request(server.addr, "GET", path, &[("Cookie", cookie)], b"").await;
    (status, body)
}

#[tokio::test]
async fn tokens_in_the_authorization_header_or_the_query_name_the_user() {
    let security = Security {
        api_tokens: HashMap::from([(TOKEN.to_owned(), "robot".to_owned())]),
        ..Security::default()
    };
    let server = chat_server(security).await;
    let token = format!("Token {TOKEN}");
    let bearer = format!("Bearer {TOKEN}");
    // As the seeds do: websocat -H "Authorization: Token xxxx".
    assert_eq!(
        speaks_as(&server, "bots", &[("authorization", &token)]).await,
        "robot"
    );
    assert_eq!(
        speaks_as(&server, "bots", &[("authorization", &bearer)]).await,
        "robot"
    );
    assert_eq!(
        speaks_as(&server, &format!("bots?token={TOKEN}"), &[]).await,
        "robot"
    );
    for bad in ["Token nope", "Token ", "Basic cm9ib3Q6eA==", TOKEN] {
        assert!(
            is_guest(&speaks_as(&server, "bots", &[("authorization", bad)]).await),
            "{bad}"
        );
    }
    assert!(is_guest(&speaks_as(&server, "bots?token=nope", &[]).await));
    // Tokens serve HTTP too.
    assert_eq!(
        whoami(&server, &[("Authorization", &token)]).await,
        json!({"authenticated": true, "user": "robot"})
    );
}

#[tokio::test]
async fn a_foreign_origin_gets_403_and_no_consumer_runs() {
    let layer = InMemoryChannelLayer::new();
    let server = TestServer::start_with_layer(
        application_with_security(AppState::default(), Security::default()),
        ServerConfig::default(),
        Arc::new(layer.clone()),
    )
    .await;
    for origin in [
        "http://evil.example",
        "null",
        "http://127.0.0.1:1",
        "garbage",
    ] {
        let request = ws_request(&server, "/ws/chat/lobby/", &[("origin", origin)]);
        assert_eq!(
            refused_status(server.connect_request(request).await),
            403,
            "{origin}"
        );
    }
    assert_eq!(
        layer.group_size("chat_lobby"),
        0,
        "no consumer joined the room"
    );
    assert_eq!(layer.channel_count(), 0, "no consumer was even created");

    // Pages of the server's own host connect, and so do clients that send no Origin.
    let own = format!("http://{}", server.addr);
    assert!(is_guest(
        &speaks_as(&server, "lobby", &[("origin", &own)]).await
    ));
    assert!(is_guest(&speaks_as(&server, "lobby", &[]).await));

    // A form posted from another site cannot log the visitor in.
    let (status, head, _) = post_form(
        &server,
        "/login",
        "username=mallory",
        &[("Origin", "http://evil.example")],
    )
    .await;
    assert_eq!(status, 403);
    assert!(header_values(&head, "set-cookie").is_empty());
    let (status, _, _) = post_form(&server, "/login", "username=ann", &[("Origin", &own)]).await;
    assert_eq!(status, 303);
}

#[tokio::test]
async fn require_origin_refuses_clients_without_one_and_listed_origins_are_allowed() {
    // What `--require-origin --allowed-origins https://chat.example,.example.org` builds.
    let origins = AllowedOrigins::new(["https://chat.example", ".example.org"])
        .expect("patterns")
        .allow_missing(false);
    let security = Security {
        origins,
        ..Security::default()
    };
    let layer = InMemoryChannelLayer::new();
    let server = TestServer::start_with_layer(
        application_with_security(AppState::default(), security),
        ServerConfig::default(),
        Arc::new(layer.clone()),
    )
    .await;
    let refused = server
        .connect_request(ws_request(&server, "/ws/chat/lobby/", &[]))
        .await;
    assert_eq!(refused_status(refused), 403);
    let own = format!("http://{}", server.addr);
    for origin in [own.as_str(), "http://chat.example", "https://evil.example"] {
        let request = ws_request(&server, "/ws/chat/lobby/", &[("origin", origin)]);
        assert_eq!(
            refused_status(server.connect_request(request).await),
            403,
            "{origin}"
        );
    }
    assert_eq!(layer.channel_count(), 0);
    for origin in ["https://chat.example", "http://www.example.org"] {
        assert!(
            is_guest(&speaks_as(&server, "lobby", &[("origin", origin)]).await),
            "{origin}"
        );
    }
}

#[tokio::test]
async fn an_oversized_cookie_header_gets_431() {
    let server = chat_server(Security::default()).await;
    let huge = format!("sessionid={}", "a".repeat(9 * 1024));
    let (status, _) = http_get_with(&server, "/", &huge).await;
    assert_eq!(status, 431);
    let request = ws_request(&server, "/ws/chat/lobby/", &[("cookie", &huge)]);
    assert_eq!(refused_status(server.connect_request(request).await), 431);
    // Split over several headers it is the same request.
    let half = format!("a={}", "b".repeat(5 * 1024));
    let request = ws_request(
        &server,
        "/ws/chat/lobby/",
        &[("cookie", &half), ("cookie", &half)],
    );
    assert_eq!(refused_status(server.connect_request(request).await), 431);
    // A normal one is fine.
    assert_eq!(http_get_with(&server, "/", "a=1; b=2").await.0, 200);
}

#[tokio::test]
async fn secure_cookies_when_configured() {
    let security = Security {
        sessions: SessionConfig::new(SessionKey::generate()).secure(true),
        ..Security::default()
    };
    let server = chat_server(security).await;
    let (status, head, _) = post_form(&server, "/login", "username=ann", &[]).await;
    assert_eq!(status, 303);
    let set = header_values(&head, "set-cookie").join("\n");
    assert!(set.contains("Secure") && set.contains("HttpOnly"), "{set}");
}

/// One chat-app process with its sessions in Redis under `prefix`, signed with `secret`.
async fn redis_process(url: &str, prefix: &str, secret: &str) -> TestServer {
    let store = RedisSessionStore::connect(url, prefix)
        .await
        .expect("Redis session store");
    let key = SessionKey::from_secret(secret).expect("a long enough secret");
    chat_server(Security {
        sessions: SessionConfig::new(key).store(store),
        ..Security::default()
    })
    .await
}

#[tokio::test]
async fn a_session_written_by_one_process_is_read_by_another_through_redis() {
    let Some(url) = redis_url().await else {
        return;
    };
    let prefix = unique_prefix("auth-sessions");
    let one = redis_process(&url, &prefix, SECRET).await;
    let two = redis_process(&url, &prefix, SECRET).await;

    let cookie = log_in(&one, "ann").await;
    assert_eq!(
        speaks_as(&two, "lobby", &[("cookie", &cookie)]).await,
        "ann"
    );
    assert_eq!(
        whoami(&two, &[("Cookie", &cookie)]).await,
        json!({"authenticated": true, "user": "ann"})
    );

    // A process with another secret does not accept the cookie, whatever is in Redis.
    let stranger = redis_process(&url, &prefix, &format!("{SECRET}-other")).await;
    assert!(is_guest(
        &speaks_as(&stranger, "lobby", &[("cookie", &cookie)]).await
    ));

    // Logging out on one process logs out everywhere.
    let (status, _, _) = post_form(&two, "/logout", "", &[("Cookie", &cookie)]).await;
    assert_eq!(status, 303);
    assert!(is_guest(
        &speaks_as(&one, "lobby", &[("cookie", &cookie)]).await
    ));
}

#[tokio::test]
async fn redis_sessions_expire_with_a_ttl() {
    let Some(url) = redis_url().await else {
        return;
    };
    let prefix = unique_prefix("auth-ttl");
    let store = RedisSessionStore::connect(&url, &prefix)
        .await
        .expect("store");
    let mut data = switchboard::scope::SessionData::new();
    data.insert("k".into(), json!("v"));
    store
        .save("ttl-test-session", &data, std::time::Duration::from_secs(1))
        .await
        .expect("save");
    assert_eq!(
        store.load("ttl-test-session").await.expect("load"),
        Some(data)
    );
    within("the session to expire", async {
        while store
            .load("ttl-test-session")
            .await
            .expect("load")
            .is_some()
        {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await;
    store
        .delete("never-saved")
        .await
        .expect("deleting nothing is fine");
}

#[tokio::test]
async fn the_pages_offer_the_login_form_and_keep_their_ids() {
    let server = chat_server(Security::default()).await;
    for path in ["/", "/chat/lobby/", "/index/?num=7"] {
        let (status, page) = http_get(server.addr, path).await;
        assert_eq!(status, 200, "{path}");
        for id in [
            "whoami",
            "login-form",
            "login-username",
            "logout-form",
            "login-error",
        ] {
            assert!(page.contains(&format!("id=\"{id}\"")), "{path} lacks #{id}");
        }
        assert!(page.contains("action=\"/login\"") && page.contains("name=\"username\""));
        assert!(page.contains("src=\"/account.js\""), "{path}");
    }
    let (status, head, script) = http_request(server.addr, "GET", "/account.js", &[], b"").await;
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/javascript"),
        "{head}"
    );
    assert!(String::from_utf8_lossy(&script).contains("/whoami"));
}
