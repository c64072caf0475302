//! The chat-app's room page in a real browser: headless Chromium driven through ChromeDriver
//! (WebDriver) by fantoccini, against the chat-app served in-process.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian: `chromium chromium-driver`).
//! Without them the test says SKIPPED on stderr and passes — unless `CI` is set, where it fails.

mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fantoccini::elements::Element;
use fantoccini::key::Key;
use fantoccini::wd::Capabilities;
use fantoccini::{Client as Browser, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use support::*;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Bound on starting ChromeDriver, starting a browser session, loading a page, closing.
const STARTUP: Duration = Duration::from_secs(30);

/// How long a page gets to show something (the socket open, a message in the log).
const SHOW: Duration = Duration::from_secs(10);

/// Pause between two looks while polling.
const POLL: Duration = Duration::from_millis(50);

/// Chromium's flags: headless, and no background networking — without those its connections
/// get refused on machines that only have 127.0.0.1.
const CHROMIUM_ARGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1024,768",
];

/// Markup and an XSS attempt: the page must show it as text.
const MARKUP_MESSAGE: &str = "<b>bold</b> & <img src=x onerror=alert(1)>";

/// Sent from the other browser through the button.
const SECOND_MESSAGE: &str = "second one, from page 2 via the button: 'quotes' \"too\" & héllo";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browsers_chat_in_a_room_and_markup_stays_text() {
    if !browsers_installed() {
        return;
    }
    let server = TestServer::start(chat_app::routing::application(
        chat_app::state::AppState::default(),
    ))
    .await;
    let driver = ChromeDriver::start().await;
    let room = format!("browser_{}", std::process::id());

    let page1 = driver.open_browser("profile-1").await;
    let page2 = driver.open_browser("profile-2").await;

    // Page 1 by the room URL, page 2 by the seeds' entry point.
    goto(&page1, &server.http_url(&format!("/chat/{room}/"))).await;
    goto(&page2, &server.http_url(&format!("/index/?num={room}"))).await;
    for (name, page) in [("page 1", &page1), ("page 2", &page2)] {
        let shown = within("#room-name", text_of(page, "#room-name")).await;
        assert_eq!(shown, room, "{name} shows the wrong room name");
        wait_connected(name, page).await;
    }

    // Page 1 types markup and presses Enter.
    let input1 = find(&page1, "#chat-message-input").await;
    within(
        "typing in page 1",
        input1.send_keys(&format!("{MARKUP_MESSAGE}{}", char::from(Key::Enter))),
    )
    .await
    .expect("type into #chat-message-input");
    let sent1 = wait_for_message("page 1", &page1, MARKUP_MESSAGE).await;
    let got2 = wait_for_message("page 2", &page2, MARKUP_MESSAGE).await;
    for shown in [&sent1, &got2] {
        assert!(
            shown.entry.contains("<b>bold</b>"),
            "the markup is not shown literally: {shown:?}"
        );
    }
    assert_eq!(
        sent1.user, got2.user,
        "both pages name the same sender for one message"
    );
    assert!(
        !sent1.user.is_empty(),
        "the message is shown with a user name"
    );
    let left = within("the input's value", input1.prop("value"))
        .await
        .expect("read the input's value");
    assert_eq!(
        left.as_deref(),
        Some(""),
        "page 1 clears its input after sending"
    );
    for (name, page) in [("page 1", &page1), ("page 2", &page2)] {
        assert_markup_stayed_text(name, page).await;
    }

    // Page 2 types and clicks the button; page 1 gets it.
    let input2 = find(&page2, "#chat-message-input").await;
    within("typing in page 2", input2.send_keys(SECOND_MESSAGE))
        .await
        .expect("type into #chat-message-input");
    let button2 = find(&page2, "#chat-message-submit").await;
    within("clicking #chat-message-submit", button2.click())
        .await
        .expect("click #chat-message-submit");
    let got1 = wait_for_message("page 1", &page1, SECOND_MESSAGE).await;
    let sent2 = wait_for_message("page 2", &page2, SECOND_MESSAGE).await;
    assert_eq!(got1.user, sent2.user);
    for (name, page) in [("page 1", &page1), ("page 2", &page2)] {
        assert_markup_stayed_text(name, page).await;
        let order = message_texts(page).await;
        let first = order.iter().position(|t| t == MARKUP_MESSAGE);
        let second = order.iter().position(|t| t == SECOND_MESSAGE);
        assert!(
            first < second,
            "{name} shows the messages out of order: {order:?}"
        );
    }

    // Who is online: each page lists both members, by the names their messages carry.
    let mut both = vec![sent1.user.clone(), sent2.user.clone()];
    both.sort();
    for (name, page) in [("page 1", &page1), ("page 2", &page2)] {
        wait_for_presence(name, page, &both).await;
    }
    // Page 2 logs in as amy (the page reloads, its WebSocket now amy's); a second connection of
    // amy's from that browser, another tab in effect, shows as one name with a count.
    let login = find(&page2, "#login-username").await;
    within(
        "typing a user name",
        login.send_keys(&format!("amy{}", char::from(Key::Enter))),
    )
    .await
    .expect("type into #login-username");
    let amy = |tabs: &str| {
        let mut names = vec![sent1.user.clone(), format!("amy{tabs}")];
        names.sort();
        names
    };
    wait_for_presence("page 1", &page1, &amy("")).await;
    wait_connected("page 2", &page2).await;
    within(
        "opening a second connection of amy's",
        page2.execute(
            "window.secondTab = new WebSocket(location.origin.replace(/^http/, 'ws') +              '/ws/chat/' + arguments[0] + '/'); return true;",
            vec![room.clone().into()],
        ),
    )
    .await
    .expect("run the script");
    wait_for_presence("page 1", &page1, &amy(" \u{d7}2")).await;
    wait_for_presence("page 2", &page2, &amy(" \u{d7}2")).await;
    within(
        "closing the second connection",
        page2.execute("window.secondTab.close(); return true;", vec![]),
    )
    .await
    .expect("run the script");
    wait_for_presence("page 1", &page1, &amy("")).await;

    for (name, page) in [("page 1", page1), ("page 2", page2)] {
        bounded(
            &format!("closing the {name} session"),
            STARTUP,
            page.close(),
        )
        .await
        .unwrap_or_else(|err| panic!("closing the {name} session failed: {err}"));
    }
    drop(driver);
    server.shutdown().await;
}

// ---- the browser side ---------------------------------------------------------------------------

/// One chat message as a page shows it.
#[derive(Debug)]
struct Shown {
    /// The sender's name (`b.user`).
    user: String,
    /// The entry's whole text: "user: message".
    entry: String,
}

/// Loads `url`, bounded.
async fn goto(page: &Browser, url: &str) {
    bounded(&format!("loading {url}"), STARTUP, page.goto(url))
        .await
        .unwrap_or_else(|err| panic!("loading {url} failed: {err}"));
}

/// The element matching the CSS `selector`; panics if there is none.
async fn find(page: &Browser, selector: &str) -> Element {
    within(selector, page.find(Locator::Css(selector)))
        .await
        .unwrap_or_else(|err| panic!("no {selector} on the page: {err}"))
}

/// The rendered text of the element matching `selector`.
async fn text_of(page: &Browser, selector: &str) -> String {
    find(page, selector)
        .await
        .text()
        .await
        .unwrap_or_else(|err| panic!("reading the text of {selector}: {err}"))
}

/// Waits until the page's `#connection-status` says connected and the button is enabled.
async fn wait_connected(name: &str, page: &Browser) {
    let status = find(page, "#connection-status").await;
    let button = find(page, "#chat-message-submit").await;
    eventually(
        &format!("{name} to show #connection-status connected"),
        SHOW,
        async || {
            let state = within("data-state", status.attr("data-state")).await;
            let class = within("class", status.attr("class")).await;
            let enabled = within("the button's state", button.is_enabled()).await;
            match (state, class, enabled) {
                (Ok(Some(state)), Ok(Some(class)), Ok(true))
                    if state == "connected"
                        && class.split_whitespace().any(|c| c == "connected") =>
                {
                    Ok(())
                }
                other => Err(format!("(data-state, class, button enabled) = {other:?}")),
            }
        },
    )
    .await;
}

/// Waits until the page's `#presence-list` names exactly `expected` (in order: the page sorts
/// them), each with its tab count when above one, and `#presence-count` says how many.
async fn wait_for_presence(name: &str, page: &Browser, expected: &[String]) {
    eventually(
        &format!("{name} to list {expected:?} as online"),
        SHOW,
        async || {
            let listed = within(
                "reading #presence-list",
                page.execute(
                    "return [Array.from(document.querySelectorAll('#presence-list > li'), \
                     li => li.textContent), document.getElementById('presence-count').textContent];",
                    vec![],
                ),
            )
            .await
            .map_err(|err| err.to_string())?;
            let expected_count = expected.len().to_string();
            match serde_json::from_value::<(Vec<String>, String)>(listed) {
                Ok((names, count)) if names == expected && count == expected_count => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
}

/// The texts of the chat messages in `#chat-log`, in order.
async fn message_texts(page: &Browser) -> Vec<String> {
    let spans = within(
        "the messages",
        page.find_all(Locator::Css("#chat-log > li.message .text")),
    )
    .await
    .expect("list the messages");
    let mut texts = Vec::new();
    for span in spans {
        texts.push(
            within("a message's text", span.text())
                .await
                .expect("read a message"),
        );
    }
    texts
}

/// Waits until `#chat-log` holds an entry whose message text is exactly `message`, and checks
/// the entry as a whole reads "user: message".
async fn wait_for_message(name: &str, page: &Browser, message: &str) -> Shown {
    let li = eventually(&format!("{name} to show {message:?}"), SHOW, async || {
        let items = within(
            "#chat-log entries",
            page.find_all(Locator::Css("#chat-log > li")),
        )
        .await
        .map_err(|err| err.to_string())?;
        let mut seen = Vec::new();
        for li in items {
            let text = within("an entry's text", li.text())
                .await
                .map_err(|err| err.to_string())?;
            if text.contains(message) {
                return Ok(li);
            }
            seen.push(text);
        }
        Err(format!("#chat-log holds {seen:?}"))
    })
    .await;

    let class = within("the entry's class", li.attr("class"))
        .await
        .expect("class");
    assert!(
        class
            .as_deref()
            .unwrap_or("")
            .split_whitespace()
            .any(|c| c == "message"),
        "{name}: the entry for {message:?} is not a chat message (class {class:?})"
    );
    let text = li.find(Locator::Css(".text"));
    let text = within("the message's text", async { text.await?.text().await })
        .await
        .expect("the entry has a .text element");
    assert_eq!(text, message, "{name} shows the message text altered");
    let user = li.find(Locator::Css("b.user"));
    let user = within("the sender's name", async { user.await?.text().await })
        .await
        .expect("the entry has a b.user element");
    let whole = within("the entry's text", li.text()).await.expect("text");
    assert_eq!(
        whole,
        format!("{user}: {message}"),
        "{name}: the entry reads oddly"
    );
    Shown { user, entry: whole }
}

/// No element came out of a message's text: the only elements inside `#chat-log` are the page's
/// own (`b.user`, `span.text`, `a`), no `img`, no `b` but the user names; and no alert opened.
async fn assert_markup_stayed_text(name: &str, page: &Browser) {
    // First: while an alert is open every other command fails with "unexpected alert open".
    let alert = within("the alert check", page.get_alert_text()).await;
    assert!(
        alert.is_err(),
        "{name}: a message ran script: alert {alert:?}"
    );
    let imgs = within(
        "img in #chat-log",
        page.find_all(Locator::Css("#chat-log img")),
    )
    .await
    .expect("look for img");
    assert!(imgs.is_empty(), "{name}: an <img> was created in #chat-log");
    let bolds = within(
        "b in #chat-log",
        page.find_all(Locator::Css("#chat-log b:not(.user)")),
    )
    .await
    .expect("look for b");
    assert!(
        bolds.is_empty(),
        "{name}: a <b> was created from a message in #chat-log"
    );
    let inside_text = within(
        "elements inside message texts",
        page.find_all(Locator::Css("#chat-log .text *")),
    )
    .await
    .expect("look inside .text");
    assert!(
        inside_text.is_empty(),
        "{name}: a message's text holds elements"
    );
    // Any element in the log must be one the page makes itself.
    let all: Value = within(
        "the elements of #chat-log",
        page.execute(
            "return Array.from(document.querySelectorAll('#chat-log *'), \
             e => e.tagName.toLowerCase() + '.' + e.className);",
            vec![],
        ),
    )
    .await
    .expect("run a script");
    let unexpected: Vec<&Value> = all
        .as_array()
        .expect("an array")
        .iter()
        .filter(|tag| {
            let tag = tag.as_str().unwrap_or("");
            !(tag.starts_with("li.") || tag == "b.user" || tag == "span.text" || tag == "a.")
        })
        .collect();
    assert!(
        unexpected.is_empty(),
        "{name}: unexpected elements in #chat-log: {unexpected:?}"
    );
}

// ---- ChromeDriver -------------------------------------------------------------------------------

/// Whether Chromium and ChromeDriver are installed; prints SKIPPED if not, panics under CI.
fn browsers_installed() -> bool {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|path| !Path::new(path).exists())
        .collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "{} missing and CI is set: install chromium chromium-driver",
            missing.join(" and ")
        );
    }
    // Straight to the process's stderr, past the test harness's capture: seen even without
    // --nocapture.
    let _ = writeln!(
        std::io::stderr(),
        "\n\
         ************************************************************************\n\
         SKIPPED: the browser test: {} not found.\n\
         To run it: apt-get install chromium chromium-driver\n\
         ************************************************************************\n",
        missing.join(" and ")
    );
    false
}

/// A ChromeDriver process on a free 127.0.0.1 port, in its own process group with the browsers
/// it launches. Drop kills the group (browsers left by a failed test included), reaps ChromeDriver
/// and removes the temporary directory holding its log and the browser profiles.
struct ChromeDriver {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl ChromeDriver {
    async fn start() -> ChromeDriver {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "switchboard-browser-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("create the temporary directory");
        let port = free_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!(
                "--log-path={}",
                dir.join("chromedriver.log").display()
            ))
            // Chromium keeps crash reports and caches under these, not the profile: keep them in
            // the temporary directory too.
            .env("XDG_CONFIG_HOME", dir.join("config"))
            .env("XDG_CACHE_HOME", dir.join("cache"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(err) => {
                let _ = std::fs::remove_dir_all(&dir);
                panic!("cannot start {CHROMEDRIVER}: {err}");
            }
        };
        let mut driver = ChromeDriver { child, port, dir };
        driver.wait_ready().await;
        driver
    }

    /// Polls `GET /status` until ChromeDriver says it is ready.
    async fn wait_ready(&mut self) {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("chromedriver exited early ({status})");
            }
            let last = match within("chromedriver's /status", status_body(addr)).await {
                Ok(body) => {
                    let ready = serde_json::from_str::<Value>(&body)
                        .ok()
                        .and_then(|v| v["value"]["ready"].as_bool());
                    if ready == Some(true) {
                        return;
                    }
                    body
                }
                Err(err) => err.to_string(),
            };
            if Instant::now() >= deadline {
                panic!("chromedriver not ready after {STARTUP:?}: {last}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// A new browser session with a fresh profile directory named `profile`.
    async fn open_browser(&self, profile: &str) -> Browser {
        let profile = self.dir.join(profile);
        std::fs::create_dir_all(&profile).expect("create a profile directory");
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|a| a.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let mut caps = Capabilities::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": CHROMIUM, "args": args }),
        );
        let mut builder = ClientBuilder::new(HttpConnector::new());
        builder.capabilities(caps);
        let url = format!("http://127.0.0.1:{}", self.port);
        bounded("a Chromium session", STARTUP, builder.connect(&url))
            .await
            .unwrap_or_else(|err| panic!("cannot start a Chromium session: {err}"))
    }

    /// The end of ChromeDriver's log, for failure reports.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("chromedriver.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- chromedriver log (tail) ----\n{}\n----",
                self.log_tail()
            );
        }
        // ChromeDriver is not reaped yet, so its process group id is still ours: kill the
        // group first, taking any browser a failed test left behind with it.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A browser may still be flushing its profile for a moment.
        for _ in 0..20 {
            if std::fs::remove_dir_all(&self.dir).is_ok() || !self.dir.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `GET /status` of the WebDriver server at `addr`: the body of a 200 answer. ChromeDriver keeps
/// the connection open despite `Connection: close`, so the body is read by its Content-Length.
async fn status_body(addr: SocketAddr) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET /status HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await?;
        raw.extend_from_slice(&chunk[..n]);
        if let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|value| value.trim().parse::<usize>().ok());
            let body = &raw[split + 4..];
            if n == 0 || length.is_some_and(|length| body.len() >= length) {
                if !head.starts_with("http/1.1 200") {
                    return Err(std::io::Error::other(format!("answer: {head}")));
                }
                return Ok(String::from_utf8_lossy(body).into_owned());
            }
        } else if n == 0 {
            return Err(std::io::Error::other("connection closed before an answer"));
        }
    }
}

// ---- waiting ------------------------------------------------------------------------------------

/// Calls `probe` until it returns `Ok`, every [`POLL`], for at most `limit`; then panics with
/// `what` and the last `Err` (what was seen instead).
async fn eventually<T>(
    what: &str,
    limit: Duration,
    mut probe: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(seen) if Instant::now() >= deadline => {
                panic!("gave up after {limit:?} waiting for {what}; last seen: {seen}")
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}
