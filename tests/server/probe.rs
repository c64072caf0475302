//! The consumer these tests serve: what its `connect()` does is chosen per route
//! ([`OnConnect`]), and a [`Probe`] shared with the test records what happened to it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use serde_json::json;
use switchboard::prelude::*;
use tokio::sync::watch;

use crate::support::*;

/// What the test consumer's `connect()` does.
#[derive(Debug, Clone, Copy)]
pub enum OnConnect {
    Accept,
    Deny,
    DenyUnauthorized,
    /// Accepts with the subprotocol `chat` and an extra header, then reports what was offered.
    Subprotocol,
    /// Never answers in time.
    Stall,
}

/// Shared with the consumers of one test: how many were made, how many connected, which codes
/// their `disconnect()` got.
pub struct Probe {
    made: AtomicUsize,
    connects: AtomicUsize,
    disconnects: watch::Sender<Vec<u16>>,
}

impl Probe {
    pub fn new() -> Arc<Probe> {
        Arc::new(Probe {
            made: AtomicUsize::new(0),
            connects: AtomicUsize::new(0),
            disconnects: watch::channel(Vec::new()).0,
        })
    }

    pub fn app(self: &Arc<Self>, on_connect: OnConnect) -> ConsumerApp<TestConsumer> {
        self.app_in_groups(on_connect, &[])
    }

    pub fn app_in_groups(
        self: &Arc<Self>,
        on_connect: OnConnect,
        groups: &[&str],
    ) -> ConsumerApp<TestConsumer> {
        let probe = Arc::clone(self);
        let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        ConsumerApp::new(move || {
            probe.made.fetch_add(1, Ordering::SeqCst);
            TestConsumer {
                probe: Arc::clone(&probe),
                on_connect,
                groups: groups.clone(),
            }
        })
    }

    pub fn made(&self) -> usize {
        self.made.load(Ordering::SeqCst)
    }

    pub fn connects(&self) -> usize {
        self.connects.load(Ordering::SeqCst)
    }

    /// The codes `disconnect()` got so far, in order.
    pub fn codes(&self) -> Vec<u16> {
        self.disconnects.borrow().clone()
    }

    /// Waits until `disconnect()` ran at least `n` times; returns the codes.
    pub async fn wait_disconnects(&self, n: usize) -> Vec<u16> {
        let mut changes = self.disconnects.subscribe();
        within(
            &format!("{n} disconnect() call(s)"),
            changes.wait_for(|codes| codes.len() >= n),
        )
        .await
        .expect("the probe outlives the wait")
        .clone()
    }
}

pub struct TestConsumer {
    probe: Arc<Probe>,
    on_connect: OnConnect,
    groups: Vec<String>,
}

impl WebsocketConsumer for TestConsumer {
    type Event = NoEvent;

    fn groups(&self) -> Vec<String> {
        self.groups.clone()
    }

    async fn connect(&mut self, ws: &mut Websocket) -> Result<()> {
        self.probe.connects.fetch_add(1, Ordering::SeqCst);
        match self.on_connect {
            OnConnect::Accept => ws.accept().await,
            OnConnect::Deny => ws.deny(),
            OnConnect::DenyUnauthorized => ws.deny_with(StatusCode::UNAUTHORIZED),
            OnConnect::Subprotocol => {
                if !ws.scope().subprotocols.iter().any(|p| p == "chat") {
                    return ws.deny_with(StatusCode::BAD_REQUEST);
                }
                let mut headers = HeaderMap::new();
                headers.insert("x-switchboard-test", HeaderValue::from_static("yes"));
                ws.accept_with(Some("chat"), headers).await?;
                let offered = ws.scope().subprotocols.clone();
                ws.send_json(&json!({ "offered": offered })).await
            }
            OnConnect::Stall => {
                tokio::time::sleep(Duration::from_secs(60)).await;
                ws.accept().await
            }
        }
    }

    /// `close` closes with 1000 "bye"; anything else is echoed.
    async fn receive(&mut self, ws: &mut Websocket, message: Message) -> Result<()> {
        if message.as_text().is_ok_and(|text| text == "close") {
            return ws.close(CloseCode::Normal, "bye").await;
        }
        ws.send_message(message).await
    }

    async fn disconnect(&mut self, _ws: &mut Websocket, code: CloseCode) -> Result<()> {
        self.probe
            .disconnects
            .send_modify(|codes| codes.push(u16::from(code)));
        Ok(())
    }
}

/// Sends `text` and asserts it comes back.
pub async fn assert_echo(client: &mut Client, text: &str) {
    send_text(client, text).await;
    assert_eq!(recv_text(client).await, text);
}
