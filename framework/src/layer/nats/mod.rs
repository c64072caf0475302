//! The NATS channel layer: many processes, one set of groups (feature `nats`).
//!
//! Built on core NATS through the official `async-nats` client, which reconnects and
//! subscribes again by itself:
//!
//! * a group is one subject, `{prefix}.group.{group}`, subscribed once per process while it
//!   has local members; `group_send` is one publish whatever the number of members and
//!   processes, and each process hands what it receives, checked once, to its local members;
//! * a direct `send` goes to the owning process' subject `{prefix}.process.{process}.{channel}`
//!   (one wildcard subscription per process), or stays in the process when the owner is this
//!   one;
//! * a named channel (a worker's, Channels' `runworker`) is `{prefix}.queue.{name}`, received
//!   by a queue group, so each message reaches exactly one worker in whichever process.
//!
//! What NATS does not keep: core NATS stores nothing, so a message for a named channel that no
//! worker receives at that moment is dropped (the Redis layer keeps it in a list), and a full
//! worker queue in the receiving process holds the message until there is room, while NATS
//! drops what its client buffer cannot take (a slow consumer, logged).
//!
//! When NATS goes away the process keeps serving its own members (a group send is delivered
//! locally), the client reconnects with backoff and subscribes every live subject again, and
//! consumers are told through [`ChannelLayer::status`]. Delivery across processes is
//! at-most-once: what is published during an outage is lost.

mod subject;

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_nats::{
    Client, ConnectOptions, Event as NatsEvent, Subscriber,
    client::{PublishErrorKind, RequestErrorKind},
};
use bytes::Bytes;
use futures::StreamExt;
use futures::future::{BoxFuture, FutureExt};
use tokio::sync::{Mutex, mpsc, watch};
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::sync::CancellationToken;

use super::{
    ChannelLayer, ChannelReceiver, Envelope, InMemoryChannelLayer, LayerConfig, LayerStatus,
    PresenceTracker, SharedLayer, owner_process, validate_channel_name, validate_group_name,
};
use crate::{Error, Result};
use subject::Subjects;

/// How to reach NATS and how to name things there.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    /// The server, `nats://HOST:PORT`; several, comma-separated, for a NATS cluster (the
    /// client also learns the other members from the server it reaches).
    pub url: String,
    /// First tokens of every subject, so several applications can share one NATS.
    /// Default `switchboard`.
    pub prefix: String,
    /// Local limits (capacity, expiry, group expiry), as the in-memory layer.
    pub layer: LayerConfig,
    /// How long start-up waits for the server. Default 5 s.
    pub connect_timeout: Duration,
    /// How long a publish or subscription may wait for the client (its queue towards the
    /// server is full while it reconnects) before the layer treats NATS as unavailable.
    /// Default 2 s.
    pub command_timeout: Duration,
}

impl NatsConfig {
    /// A configuration for this server with the defaults.
    pub fn new(url: impl Into<String>) -> NatsConfig {
        NatsConfig {
            url: url.into(),
            prefix: "switchboard".to_owned(),
            layer: LayerConfig::default(),
            connect_timeout: Duration::from_secs(5),
            command_timeout: Duration::from_secs(2),
        }
    }

    /// Sets the prefix.
    pub fn prefix(mut self, prefix: impl Into<String>) -> NatsConfig {
        self.prefix = prefix.into();
        self
    }

    /// Sets the local limits.
    pub fn layer(mut self, layer: LayerConfig) -> NatsConfig {
        self.layer = layer;
        self
    }
}

/// A group subscribed in NATS: its local members, and the listener to stop when the last
/// one leaves (`None` while the subscription waits for NATS to come back).
struct GroupSubscription {
    members: usize,
    listener: Option<CancellationToken>,
}

struct Inner {
    local: InMemoryChannelLayer,
    client: Client,
    subjects: Subjects,
    url: String,
    command_timeout: Duration,
    /// Local members per subscribed group: the reference counts behind SUB/UNSUB. An async
    /// lock, held across the subscription's round trip, so a join waits for the subscription
    /// another join of the same group started.
    groups: Mutex<HashMap<String, GroupSubscription>>,
    connected: AtomicBool,
    status: watch::Sender<LayerStatus>,
    /// Cancelled when the layer is dropped: every listener it started stops.
    closed: CancellationToken,
    /// Presence across the processes sharing this NATS.
    presence: PresenceTracker,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.closed.cancel();
    }
}

/// The channel layer for several processes sharing NATS.
///
/// ```no_run
/// use std::sync::Arc;
/// use switchboard::layer::{NatsChannelLayer, NatsConfig};
/// use switchboard::prelude::*;
///
/// # async fn run(app: impl Application) -> switchboard::Result<()> {
/// let layer = NatsChannelLayer::connect(NatsConfig::new("nats://127.0.0.1:4222")).await?;
/// Server::bind("127.0.0.1:8000").await?.channel_layer(Arc::new(layer)).serve(app).await
/// # }
/// ```
#[derive(Clone)]
pub struct NatsChannelLayer {
    inner: Arc<Inner>,
}

/// Where a subscription's messages go.
enum Target {
    Group(String),
    Process,
}

impl NatsChannelLayer {
    /// Connects, subscribes to this process' own subject and starts listening. Fails with a
    /// clear error when the server does not answer within the connect timeout.
    pub async fn connect(config: NatsConfig) -> Result<NatsChannelLayer> {
        let subjects = Subjects::new(&config.prefix)?;
        let (events, mut connection_events) = mpsc::unbounded_channel();
        let client = connect_client(&config, events).await?;
        let (status, _) = watch::channel(LayerStatus::Connected);
        let presence = config.layer.presence.clone();
        let layer = NatsChannelLayer {
            inner: Arc::new_cyclic(|weak: &std::sync::Weak<Inner>| {
                let weak = weak.clone();
                Inner {
                    local: InMemoryChannelLayer::fan_out(config.layer, "specific."),
                    client,
                    subjects,
                    url: config.url,
                    command_timeout: config.command_timeout,
                    groups: Mutex::new(HashMap::new()),
                    connected: AtomicBool::new(true),
                    status,
                    closed: CancellationToken::new(),
                    presence: PresenceTracker::new(presence, move || {
                        let inner = weak.upgrade()?;
                        Some(Arc::new(NatsChannelLayer { inner }) as SharedLayer)
                    }),
                }
            }),
        };
        let own = layer
            .inner
            .subjects
            .process_wildcard(layer.inner.local.process_id());
        let subscriber = layer.subscribe(own).await?;
        layer.spawn_listener(
            subscriber,
            Target::Process,
            layer.inner.closed.child_token(),
        );
        let weak = Arc::downgrade(&layer.inner);
        tokio::spawn(async move {
            while let Some(event) = connection_events.recv().await {
                let Some(inner) = weak.upgrade() else { return };
                inner.connection_event(event).await;
            }
        });
        Ok(layer)
    }

    /// The server this layer was given.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// Local members of a group in this process.
    pub fn local_group_size(&self, group: &str) -> usize {
        self.inner.local.group_size(group)
    }

    /// Groups this process is subscribed to in NATS right now.
    pub async fn subscribed_groups(&self) -> Vec<String> {
        let mut groups: Vec<String> = self.inner.groups.lock().await.keys().cloned().collect();
        groups.sort();
        groups
    }

    /// Subscribes, and returns once the server has the subscription: a publish from another
    /// process after this cannot slip past the subscriber.
    async fn subscribe(&self, subject: String) -> Result<Subscriber> {
        let subscriber = self
            .inner
            .within("subscribing", self.inner.client.subscribe(subject))
            .await?;
        self.inner.confirm().await?;
        Ok(subscriber)
    }

    fn spawn_listener(&self, subscriber: Subscriber, target: Target, stop: CancellationToken) {
        tokio::spawn(listen(
            Arc::downgrade(&self.inner),
            subscriber,
            target,
            stop,
        ));
    }

    /// Subscribes to a group's subject and starts its listener; the token stops it.
    async fn subscribe_group(&self, group: &str) -> Result<CancellationToken> {
        let subscriber = self.subscribe(self.inner.subjects.group(group)).await?;
        let stop = self.inner.closed.child_token();
        self.spawn_listener(subscriber, Target::Group(group.to_owned()), stop.clone());
        Ok(stop)
    }

    async fn do_group_add(&self, group: &str, channel: &str) -> Result<()> {
        validate_group_name(group)?;
        validate_channel_name(channel)?;
        let mut groups = self.inner.groups.lock().await;
        let was_member = self.inner.local.is_member(group, channel);
        self.inner.local.group_add(group, channel).await?;
        if was_member {
            return Ok(());
        }
        match groups.entry(group.to_owned()) {
            Entry::Occupied(mut subscribed) => subscribed.get_mut().members += 1,
            Entry::Vacant(vacant) => {
                // While NATS is down the subscription is made when it is back.
                let listener = if self.inner.connected.load(Ordering::SeqCst) {
                    self.subscribe_group(group)
                        .await
                        .inspect_err(|err| {
                            tracing::warn!(%group, error = %err, "NATS subscription failed; serving local members only until NATS is back");
                        })
                        .ok()
                } else {
                    None
                };
                vacant.insert(GroupSubscription {
                    members: 1,
                    listener,
                });
            }
        }
        Ok(())
    }

    async fn do_group_discard(&self, group: &str, channel: &str) -> Result<()> {
        validate_group_name(group)?;
        validate_channel_name(channel)?;
        let mut groups = self.inner.groups.lock().await;
        let was_member = self.inner.local.is_member(group, channel);
        self.inner.local.group_discard(group, channel).await?;
        if !was_member {
            return Ok(());
        }
        if let Entry::Occupied(mut subscribed) = groups.entry(group.to_owned()) {
            subscribed.get_mut().members -= 1;
            if subscribed.get().members == 0
                && let Some(listener) = subscribed.remove().listener
            {
                // The listener drops its subscriber, which unsubscribes.
                listener.cancel();
            }
        }
        Ok(())
    }

    async fn do_group_send(&self, group: &str, message: Arc<Envelope>) -> Result<()> {
        validate_group_name(group)?;
        // While NATS is known to be down, deliver to this process' members straight away.
        if self.inner.connected.load(Ordering::SeqCst) {
            let subject = self.inner.subjects.group(group);
            match self.inner.publish(subject, &message).await {
                Ok(()) => return Ok(()),
                Err(Failed::Refused(err)) => return Err(err),
                Err(Failed::Unsent(err)) => {
                    tracing::warn!(%group, error = %err, "NATS unavailable: group message delivered to this process' members only");
                }
            }
        }
        self.inner.local.group_send(group, message).await
    }

    async fn do_send(&self, channel: &str, message: Arc<Envelope>) -> Result<()> {
        validate_channel_name(channel)?;
        match owner_process(channel) {
            Some(process) if process != self.inner.local.process_id() => {
                self.inner.available()?;
                let subject = self.inner.subjects.direct(process, channel);
                self.inner
                    .publish(subject, &message)
                    .await
                    .map_err(Failed::into_error)
            }
            Some(_) => self.inner.local.send(channel, message).await,
            None => {
                if !self.inner.connected.load(Ordering::SeqCst)
                    && self.inner.local.has_channel(channel)
                {
                    return self.inner.local.send(channel, message).await;
                }
                self.inner.available()?;
                let subject = self.inner.subjects.queue(channel);
                self.inner
                    .publish(subject, &message)
                    .await
                    .map_err(Failed::into_error)
            }
        }
    }

    /// A worker's channel: a queue-group subscription whose messages go to the local receiver.
    async fn do_receive_channel(&self, name: &str) -> Result<ChannelReceiver> {
        let receiver = self.inner.local.receive_channel(name).await?;
        self.inner.available()?;
        let subject = self.inner.subjects.queue(name);
        let subscriber = self
            .inner
            .within(
                "subscribing",
                self.inner
                    .client
                    .queue_subscribe(subject, QUEUE_GROUP.to_owned()),
            )
            .await?;
        self.inner.confirm().await?;
        tokio::spawn(pump_queue(
            Arc::downgrade(&self.inner),
            subscriber,
            name.to_owned(),
            self.inner.closed.child_token(),
        ));
        Ok(receiver)
    }
}

/// The queue group of every named channel's workers: one per subject is all NATS needs.
const QUEUE_GROUP: &str = "workers";

/// How often a named channel's pump looks whether its receiver is still there while nothing
/// arrives.
const RECEIVER_CHECK: Duration = Duration::from_secs(1);

/// Why a publish did not go through.
enum Failed {
    /// The message cannot travel at all (too big for the server): the sender is told.
    Refused(Error),
    /// NATS did not take it: delivering it in this process is the only delivery it gets.
    Unsent(Error),
}

impl Failed {
    fn into_error(self) -> Error {
        match self {
            Failed::Refused(err) | Failed::Unsent(err) => err,
        }
    }
}

impl Inner {
    /// Fails at once while NATS is known to be down, so callers do not each wait for a
    /// command timeout during an outage.
    fn available(&self) -> Result<()> {
        if self.connected.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(Error::Layer(format!(
                "NATS at {} is unreachable; reconnecting",
                self.url
            )))
        }
    }

    /// Hands a message to the client, which writes what has queued in batches: no round trip.
    async fn publish(&self, subject: String, message: &Envelope) -> Result<(), Failed> {
        let payload = Bytes::from(message.text());
        let size = payload.len();
        match tokio::time::timeout(self.command_timeout, self.client.publish(subject, payload))
            .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) if err.kind() == PublishErrorKind::MaxPayloadExceeded => {
                Err(Failed::Refused(Error::Layer(format!(
                    "a message of {size} bytes is over the NATS server's max_payload ({} bytes): \
                     send less, or raise max_payload in the server's configuration",
                    self.client.max_payload()
                ))))
            }
            Ok(Err(err)) => Err(Failed::Unsent(Error::Layer(format!(
                "publishing to NATS at {}: {err}",
                self.url
            )))),
            Err(_) => Err(Failed::Unsent(Error::Layer(format!(
                "NATS at {} did not take a message within {:?}",
                self.url, self.command_timeout
            )))),
        }
    }

    /// Waits for the server to have processed everything sent so far: a request nobody
    /// answers is answered by the server itself ("no responders") after what came before it on
    /// the connection. (The client's `flush` only writes the socket.)
    async fn confirm(&self) -> Result<()> {
        let round_trip = self.client.request(self.subjects.sync(), Bytes::new());
        match tokio::time::timeout(self.command_timeout, round_trip).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(err)) if err.kind() == RequestErrorKind::NoResponders => Ok(()),
            Ok(Err(err)) => Err(Error::Layer(format!(
                "confirming a subscription on NATS at {}: {err}",
                self.url
            ))),
            Err(_) => Err(Error::Layer(format!(
                "confirming a subscription on NATS at {}: no answer within {:?}",
                self.url, self.command_timeout
            ))),
        }
    }

    async fn within<T, E: std::fmt::Display>(
        &self,
        what: &str,
        future: impl Future<Output = std::result::Result<T, E>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.command_timeout, future).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(Error::Layer(format!(
                "{what} on NATS at {}: {err}",
                self.url
            ))),
            Err(_) => Err(Error::Layer(format!(
                "{what} on NATS at {}: no answer within {:?}",
                self.url, self.command_timeout
            ))),
        }
    }

    /// Follows the client's connection: says when it is lost and, once the client has
    /// subscribed everything again, that it is back.
    async fn connection_event(self: Arc<Inner>, event: NatsEvent) {
        match event {
            NatsEvent::Disconnected if self.connected.swap(false, Ordering::SeqCst) => {
                tracing::warn!(url = %self.url, "lost NATS: serving local members only, reconnecting");
                self.status.send_replace(LayerStatus::Disconnected);
            }
            NatsEvent::Connected => {
                if self.connected.load(Ordering::SeqCst) {
                    return;
                }
                let layer = NatsChannelLayer {
                    inner: Arc::clone(&self),
                };
                // The client sent its subscriptions again before anything else; groups joined
                // during the outage have none yet.
                {
                    let mut groups = self.groups.lock().await;
                    for (group, subscribed) in groups.iter_mut() {
                        if subscribed.listener.is_none() {
                            match layer.subscribe_group(group).await {
                                Ok(stop) => subscribed.listener = Some(stop),
                                Err(err) => {
                                    tracing::warn!(%group, error = %err, "resubscription failed; retried on the next reconnection");
                                }
                            }
                        }
                    }
                }
                if let Err(err) = self.confirm().await {
                    tracing::warn!(error = %err, "NATS answered no PING after reconnecting");
                }
                self.connected.store(true, Ordering::SeqCst);
                tracing::info!(url = %self.url, "NATS is back: groups subscribed again");
                self.status.send_replace(LayerStatus::Reconnected);
            }
            _ => {}
        }
    }

    /// Hands one received message to local members or a local channel, checked once.
    async fn receive(&self, target: &Target, message: async_nats::Message) {
        let envelope = match envelope_of(message.payload) {
            Ok(envelope) => envelope,
            Err(why) => {
                tracing::warn!(subject = %message.subject, "{why}: dropped");
                return;
            }
        };
        let result = match target {
            Target::Group(group) => self.local.group_send(group, envelope).await,
            Target::Process => {
                let process = self.local.process_id();
                match self.subjects.channel_of(process, &message.subject) {
                    Some(channel) => self.local.send(&channel, envelope).await,
                    None => Ok(()),
                }
            }
        };
        if let Err(err) = result {
            tracing::warn!(subject = %message.subject, error = %err, "local delivery failed");
        }
    }
}

/// A received payload as an envelope, sharing its buffer: it must be UTF-8 JSON.
fn envelope_of(payload: Bytes) -> std::result::Result<Arc<Envelope>, &'static str> {
    let text = Utf8Bytes::try_from(payload).map_err(|_| "payload is not UTF-8")?;
    serde_json::from_str::<serde::de::IgnoredAny>(text.as_str())
        .map_err(|_| "payload is not JSON")?;
    Ok(Envelope::from_json(text))
}

/// Connects the client; fails clearly instead of retrying for ever at start-up.
async fn connect_client(
    config: &NatsConfig,
    events: mpsc::UnboundedSender<NatsEvent>,
) -> Result<Client> {
    let options = ConnectOptions::new()
        .connection_timeout(config.connect_timeout)
        // Messages a subscription holds for its listener (the client's default is 65 536):
        // bounded as the Redis layer's subscriber queue; past it NATS reports a slow consumer
        // and the messages are lost, logged, instead of growing memory.
        .subscription_capacity(SUBSCRIPTION_CAPACITY)
        // Reconnect for ever, from 100 ms up to 1 s between attempts, so delivery resumes
        // within seconds of NATS coming back (as the Redis layer).
        .max_reconnects(None)
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis(100u64.saturating_mul(1 << attempts.min(4)).min(1_000))
        })
        .event_callback(move |event| {
            let events = events.clone();
            async move {
                match event {
                    NatsEvent::SlowConsumer(sid) => {
                        tracing::warn!(sid, "NATS subscription fell behind: messages lost");
                    }
                    NatsEvent::ServerError(err) => {
                        tracing::warn!(error = %err, "NATS server error")
                    }
                    other => {
                        let _ = events.send(other);
                    }
                }
            }
        });
    let url = &config.url;
    match tokio::time::timeout(config.connect_timeout, options.connect(url.as_str())).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(err)) => Err(Error::Layer(format!(
            "cannot connect to NATS at {url}: {err}"
        ))),
        Err(_) => Err(Error::Layer(format!(
            "cannot connect to NATS at {url}: no answer within {:?}",
            config.connect_timeout
        ))),
    }
}

/// Forwards a subscription's messages until it is stopped or the layer is dropped.
async fn listen(
    weak: Weak<Inner>,
    mut subscriber: Subscriber,
    target: Target,
    stop: CancellationToken,
) {
    for n in 1usize.. {
        let message = tokio::select! {
            _ = stop.cancelled() => return,
            message = subscriber.next() => message,
        };
        let Some(message) = message else { return };
        let Some(inner) = weak.upgrade() else { return };
        inner.receive(&target, message).await;
        // A burst can hold more messages than a member's queue: let the members' consumers
        // take what they were given before the next ones, or queues that are being read would
        // overflow (as the Redis layer does within a batch).
        if n % YIELD_EVERY == 0 {
            tokio::task::yield_now().await;
        }
    }
}

/// Messages one subscription holds for its listener.
const SUBSCRIPTION_CAPACITY: usize = 4096;

/// Messages delivered between two turns given to the consumers.
const YIELD_EVERY: usize = 32;

/// Moves a named channel's messages into the local receiver as long as it lives. A full local
/// queue holds the message until there is room; meanwhile the subscription's buffer in the
/// client takes what follows.
async fn pump_queue(
    weak: Weak<Inner>,
    mut subscriber: Subscriber,
    name: String,
    stop: CancellationToken,
) {
    loop {
        let message = tokio::select! {
            _ = stop.cancelled() => return,
            message = subscriber.next() => message,
            _ = tokio::time::sleep(RECEIVER_CHECK) => {
                match weak.upgrade() {
                    Some(inner) if inner.local.has_channel(&name) => continue,
                    _ => return,
                }
            }
        };
        let Some(message) = message else { return };
        let envelope = match envelope_of(message.payload) {
            Ok(envelope) => envelope,
            Err(why) => {
                tracing::warn!(channel = %name, "{why}: dropped");
                continue;
            }
        };
        loop {
            let Some(inner) = weak.upgrade() else { return };
            match inner.local.send(&name, Arc::clone(&envelope)).await {
                Err(Error::ChannelFull(_)) if inner.local.has_channel(&name) => {
                    drop(inner);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(Error::ChannelFull(_)) => return,
                Err(err) => {
                    tracing::warn!(channel = %name, error = %err, "worker queue delivery failed");
                    break;
                }
                Ok(()) if inner.local.has_channel(&name) => break,
                // The receiver went away: the message was dropped with it, and the next ones
                // are for the other workers of the queue group.
                Ok(()) => return,
            }
        }
    }
}

impl ChannelLayer for NatsChannelLayer {
    fn new_channel(&self) -> BoxFuture<'_, Result<ChannelReceiver>> {
        self.inner.local.new_channel()
    }

    fn send<'a>(&'a self, channel: &'a str, message: Arc<Envelope>) -> BoxFuture<'a, Result<()>> {
        self.do_send(channel, message).boxed()
    }

    fn receive_channel<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<ChannelReceiver>> {
        self.do_receive_channel(name).boxed()
    }

    fn group_add<'a>(&'a self, group: &'a str, channel: &'a str) -> BoxFuture<'a, Result<()>> {
        self.do_group_add(group, channel).boxed()
    }

    fn group_discard<'a>(&'a self, group: &'a str, channel: &'a str) -> BoxFuture<'a, Result<()>> {
        self.do_group_discard(group, channel).boxed()
    }

    fn group_send<'a>(
        &'a self,
        group: &'a str,
        message: Arc<Envelope>,
    ) -> BoxFuture<'a, Result<()>> {
        self.do_group_send(group, message).boxed()
    }

    fn status(&self) -> Option<watch::Receiver<LayerStatus>> {
        Some(self.inner.status.subscribe())
    }

    fn presence_tracker(&self) -> Option<&PresenceTracker> {
        Some(&self.inner.presence)
    }
}

#[cfg(test)]
mod tests {
    use super::envelope_of;
    use bytes::Bytes;

    #[test]
    fn only_utf8_json_becomes_an_envelope() {
        let envelope = envelope_of(Bytes::from_static(br#"{"type":"x"}"#)).unwrap();
        assert_eq!(envelope.json(), r#"{"type":"x"}"#);
        assert!(envelope_of(Bytes::from_static(b"\xff\xfe")).is_err());
        assert!(envelope_of(Bytes::from_static(b"{not json")).is_err());
        assert!(envelope_of(Bytes::new()).is_err());
    }
}
