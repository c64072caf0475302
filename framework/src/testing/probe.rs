//! [`Probe`]: the consumer the crate's unit tests drive, for the consumer loop's tests and the
//! communicators' alike. It does in `connect` what its query string says and keeps a [`Log`]
//! of what happened to it, so a test can check what its `disconnect` saw.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::consumer::{CloseCode, ConsumerApp, Message, Websocket, WebsocketConsumer};
use crate::error::{Error, Result};
use crate::layer::{Event, InMemoryChannelLayer};

/// The group every probe is in.
pub(crate) const GROUP: &str = "probes";

/// The layer events a probe handles.
#[derive(Clone, Serialize, Deserialize)]
#[serde(tag = "type")]
pub(crate) enum ProbeEvent {
    /// Answered with `{"pong": n}`.
    #[serde(rename = "test.ping")]
    Ping { n: u32 },
    /// Forwarded to the client as it came.
    #[serde(rename = "test.hello")]
    Hello { from: String },
}

/// What the probes of one test went through, shared between the test and its probes.
#[derive(Default)]
pub(crate) struct Log {
    codes: Mutex<Vec<u16>>,
    group_sizes: Mutex<Vec<(&'static str, usize)>>,
    /// The layer to read [`GROUP`]'s size in, from inside `connect` and `disconnect`.
    layer: Option<InMemoryChannelLayer>,
}

impl Log {
    /// The codes `disconnect` got, in order.
    pub(crate) fn codes(&self) -> Vec<u16> {
        self.codes.lock().unwrap().clone()
    }

    /// The size of [`GROUP`] seen from inside each `connect` and `disconnect`, in order.
    pub(crate) fn group_sizes(&self) -> Vec<(&'static str, usize)> {
        self.group_sizes.lock().unwrap().clone()
    }

    fn record_group_size(&self, when: &'static str) {
        if let Some(layer) = &self.layer {
            let size = layer.group_size(GROUP);
            self.group_sizes.lock().unwrap().push((when, size));
        }
    }
}

/// Is in [`GROUP`]; in `connect`, after `accept`, sends the client its channel name. What else
/// `connect` does is the query string's choice:
///
/// | query | `connect` |
/// |---|---|
/// | none | accepts |
/// | `do=nothing` | returns without an answer |
/// | `do=fail` | fails before `accept` |
/// | `do=fail-after-accept` | fails after `accept` |
/// | `do=close` | closes with 4001 "go away" after `accept` |
/// | `do=announce` | sends [`ProbeEvent::Hello`] to its group, then accepts |
/// | `do=stall` | sleeps a minute, then returns without an answer |
///
/// Its `receive` wants text and fails on `fail`; it answers [`ProbeEvent`]s from the layer.
pub(crate) struct Probe {
    log: Arc<Log>,
}

/// Probes sharing a log.
pub(crate) fn probe() -> (ConsumerApp<Probe>, Arc<Log>) {
    with_log(Log::default())
}

/// Probes that also log [`GROUP`]'s size in `layer` from inside `connect` and `disconnect`.
pub(crate) fn probe_watching(layer: &InMemoryChannelLayer) -> (ConsumerApp<Probe>, Arc<Log>) {
    with_log(Log {
        layer: Some(layer.clone()),
        ..Log::default()
    })
}

fn with_log(log: Log) -> (ConsumerApp<Probe>, Arc<Log>) {
    let log = Arc::new(log);
    let shared = Arc::clone(&log);
    let app = ConsumerApp::new(move || Probe {
        log: Arc::clone(&shared),
    });
    (app, log)
}

impl WebsocketConsumer for Probe {
    type Event = ProbeEvent;

    fn groups(&self) -> Vec<String> {
        vec![GROUP.to_owned()]
    }

    async fn connect(&mut self, ws: &mut Websocket) -> Result<()> {
        self.log.record_group_size("connect");
        let command = ws.scope().query_string.clone();
        match command.as_str() {
            "do=nothing" => return Ok(()),
            "do=fail" => return Err(Error::custom("connect failed")),
            "do=stall" => {
                tokio::time::sleep(Duration::from_secs(60)).await;
                return Ok(());
            }
            "do=announce" => {
                let from = ws.channel_name().to_owned();
                ws.group_send(GROUP, &ProbeEvent::Hello { from }).await?;
            }
            _ => {}
        }
        ws.accept().await?;
        let name = ws.channel_name().to_owned();
        ws.send_text(name).await?;
        match command.as_str() {
            "do=fail-after-accept" => Err(Error::custom("failed after accept")),
            "do=close" => ws.close(CloseCode::from(4001), "go away").await,
            _ => Ok(()),
        }
    }

    async fn receive(&mut self, _ws: &mut Websocket, message: Message) -> Result<()> {
        match message.as_text()? {
            "fail" => Err(Error::custom("receive failed")),
            _ => Ok(()),
        }
    }

    async fn event(&mut self, ws: &mut Websocket, event: Event<ProbeEvent>) -> Result<()> {
        match &*event {
            ProbeEvent::Ping { n } => ws.send_json(&json!({ "pong": n })).await,
            ProbeEvent::Hello { .. } => ws.forward(&event).await,
        }
    }

    async fn disconnect(&mut self, _ws: &mut Websocket, code: CloseCode) -> Result<()> {
        self.log.record_group_size("disconnect");
        self.log.codes.lock().unwrap().push(code.into());
        Ok(())
    }
}
