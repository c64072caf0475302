//! Background workers: consumers of fixed channel names (Channels' `ChannelNameRouter` and
//! `runworker`).
//!
//! A worker handles typed messages that any consumer or HTTP handler sends to a channel name
//! with [`ChannelLayer::send`](crate::layer::ChannelLayer::send). Run the workers inside the
//! web process, or in a process of their own; with the Redis layer, a worker process receives
//! what every web process sends, and each message reaches one worker.
//!
//! ```
//! use switchboard::prelude::*;
//! use switchboard::worker::{ChannelNameRouter, Worker, WorkerContext};
//!
//! #[derive(Deserialize)]
//! #[serde(tag = "type")]
//! enum Thumbnail {
//!     #[serde(rename = "thumbnail.generate")]
//!     Generate { id: u64 },
//! }
//!
//! struct Thumbnailer;
//!
//! impl Worker for Thumbnailer {
//!     type Message = Thumbnail;
//!
//!     async fn handle(&self, _ctx: &WorkerContext, message: Event<Thumbnail>) -> Result<()> {
//!         let Thumbnail::Generate { id } = &*message;
//!         println!("making the thumbnail of {id}");
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<()> {
//! let layer: SharedLayer = std::sync::Arc::new(InMemoryChannelLayer::new());
//! let workers = ChannelNameRouter::new().route("thumbnails-generate", Thumbnailer);
//! let running = workers.spawn(layer.clone(), None).await?;
//! let message = switchboard::layer::Envelope::encode(&serde_json::json!({"type": "thumbnail.generate", "id": 7}))?;
//! layer.send("thumbnails-generate", message).await?;
//! running.shutdown().await;
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::layer::{ChannelReceiver, Envelope, Event, SharedLayer};
use crate::{Error, Result};

/// How long a stopping worker may take to finish what it holds.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A background consumer of one channel name.
///
/// `handle` takes `&self` because up to [`ChannelNameRouter::route_with`]'s `concurrency`
/// messages are handled at once; keep mutable state behind a lock, or use concurrency 1.
pub trait Worker: Send + Sync + 'static {
    /// The messages it handles, usually an enum with `#[serde(tag = "type")]`.
    type Message: DeserializeOwned + Send + Sync + 'static;

    /// Handles one message. An error is logged with the channel name and the worker goes on.
    fn handle(
        &self,
        ctx: &WorkerContext,
        message: Event<Self::Message>,
    ) -> impl Future<Output = Result<()>> + Send;
}

/// What a worker can reach while handling a message.
#[derive(Clone)]
pub struct WorkerContext {
    layer: SharedLayer,
    channel: Arc<str>,
}

impl WorkerContext {
    /// The channel layer, to answer or to notify groups.
    pub fn channel_layer(&self) -> &SharedLayer {
        &self.layer
    }

    /// The channel name this worker receives on.
    pub fn channel_name(&self) -> &str {
        &self.channel
    }

    /// Sends a message to a channel (for example the `reply_to` of a request).
    pub async fn send<T: Serialize + ?Sized>(&self, channel: &str, message: &T) -> Result<()> {
        self.layer.send(channel, Envelope::encode(message)?).await
    }

    /// Sends a message to every member of a group.
    pub async fn group_send<T: Serialize + ?Sized>(&self, group: &str, message: &T) -> Result<()> {
        self.layer
            .group_send(group, Envelope::encode(message)?)
            .await
    }
}

/// The object-safe face of a [`Worker`]: decodes, then handles.
trait DynWorker: Send + Sync + 'static {
    fn handle_envelope(
        &self,
        ctx: WorkerContext,
        envelope: Arc<Envelope>,
    ) -> BoxFuture<'_, Result<()>>;
}

impl<W: Worker> DynWorker for W {
    fn handle_envelope(
        &self,
        ctx: WorkerContext,
        envelope: Arc<Envelope>,
    ) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let value = envelope.decode::<W::Message>().map_err(|err| {
                Error::Custom(format!(
                    "message the worker does not handle ({err}): {}",
                    envelope.json()
                ))
            })?;
            self.handle(&ctx, Event::new(value, envelope)).await
        })
    }
}

struct Route {
    channel: String,
    worker: Arc<dyn DynWorker>,
    concurrency: usize,
}

/// Maps fixed channel names to workers (Channels' `ChannelNameRouter`).
#[derive(Default)]
pub struct ChannelNameRouter {
    routes: Vec<Route>,
}

impl ChannelNameRouter {
    /// An empty router.
    pub fn new() -> ChannelNameRouter {
        ChannelNameRouter::default()
    }

    /// Routes a channel name to a worker that handles one message at a time, in order.
    pub fn route(self, channel: &str, worker: impl Worker) -> ChannelNameRouter {
        self.route_with(channel, worker, 1)
    }

    /// Routes a channel name to a worker that handles up to `concurrency` messages at once.
    pub fn route_with(
        mut self,
        channel: &str,
        worker: impl Worker,
        concurrency: usize,
    ) -> ChannelNameRouter {
        self.routes.push(Route {
            channel: channel.to_owned(),
            worker: Arc::new(worker),
            concurrency: concurrency.max(1),
        });
        self
    }

    /// The channel names routed.
    pub fn channels(&self) -> Vec<&str> {
        self.routes.iter().map(|r| r.channel.as_str()).collect()
    }

    /// Starts receiving on the routed channels — all of them, or only those in `only`
    /// (`runworker CHANNEL...`) — and returns a handle to stop them.
    pub async fn spawn(
        self,
        layer: SharedLayer,
        only: Option<&[String]>,
    ) -> Result<RunningWorkers> {
        if let Some(names) = only
            && let Some(unknown) = names
                .iter()
                .find(|n| !self.routes.iter().any(|r| &r.channel == *n))
        {
            return Err(Error::Custom(format!(
                "no worker is routed on channel {unknown:?}; routed: {}",
                self.channels().join(", ")
            )));
        }
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        for route in self.routes {
            if only.is_some_and(|names| !names.contains(&route.channel)) {
                continue;
            }
            let receiver = layer.receive_channel(&route.channel).await?;
            let ctx = WorkerContext {
                layer: Arc::clone(&layer),
                channel: Arc::from(route.channel.as_str()),
            };
            tracing::info!(channel = %route.channel, concurrency = route.concurrency, "worker started");
            tasks.spawn(run_route(route, ctx, receiver, stop.clone()));
        }
        Ok(RunningWorkers { stop, tasks })
    }
}

/// Workers that run until [`RunningWorkers::shutdown`].
pub struct RunningWorkers {
    stop: CancellationToken,
    tasks: JoinSet<()>,
}

impl RunningWorkers {
    /// Stops receiving, finishes what was already received (at most 10 s), and returns.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}

async fn run_route(
    route: Route,
    ctx: WorkerContext,
    mut receiver: ChannelReceiver,
    stop: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(route.concurrency));
    let mut handling = JoinSet::new();
    loop {
        let envelope = tokio::select! {
            _ = stop.cancelled() => break,
            envelope = receiver.recv() => match envelope {
                Some(envelope) => envelope,
                None => break,
            },
        };
        handle_one(&route, &ctx, &permits, &mut handling, envelope).await;
    }
    // Stop receiving, then drain what this process already holds, within a bound.
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while let Some(envelope) = receiver.try_recv() {
            handle_one(&route, &ctx, &permits, &mut handling, envelope).await;
        }
        drop(receiver);
        while let Some(done) = handling.join_next().await {
            report(&route.channel, done);
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(channel = %route.channel, "worker did not finish within {DRAIN_TIMEOUT:?}");
    }
    tracing::info!(channel = %route.channel, "worker stopped");
}

async fn handle_one(
    route: &Route,
    ctx: &WorkerContext,
    permits: &Arc<Semaphore>,
    handling: &mut JoinSet<Result<()>>,
    envelope: Arc<Envelope>,
) {
    // Finished handlers are reaped here so the set stays as small as the concurrency.
    while let Some(done) = handling.try_join_next() {
        report(&route.channel, done);
    }
    let Ok(permit) = Arc::clone(permits).acquire_owned().await else {
        return;
    };
    let worker = Arc::clone(&route.worker);
    let ctx = ctx.clone();
    handling.spawn(async move {
        let _permit = permit;
        // A panic is reported like an error: one bad message must not stop the worker.
        AssertUnwindSafe(worker.handle_envelope(ctx, envelope))
            .catch_unwind()
            .await
            .unwrap_or_else(|panic| Err(Error::Custom(panic_message(&panic))))
    });
}

fn report(channel: &str, done: std::result::Result<Result<()>, tokio::task::JoinError>) {
    match done {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::error!(%channel, error = %err, "worker failed on a message"),
        Err(err) => tracing::error!(%channel, error = %err, "worker task failed"),
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned());
    format!("worker panicked: {text}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::InMemoryChannelLayer;
    use serde::Deserialize;
    use tokio::sync::mpsc;

    #[derive(Debug, Deserialize)]
    struct Job {
        n: u32,
    }

    struct Recorder(mpsc::UnboundedSender<u32>);

    impl Worker for Recorder {
        type Message = Job;

        async fn handle(&self, _ctx: &WorkerContext, job: Event<Job>) -> Result<()> {
            match job.n {
                13 => Err(Error::custom("unlucky")),
                14 => panic!("very unlucky"),
                n => {
                    let _ = self.0.send(n);
                    Ok(())
                }
            }
        }
    }

    async fn send(layer: &SharedLayer, value: serde_json::Value) {
        layer
            .send("jobs", Envelope::encode(&value).unwrap())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn failing_messages_do_not_stop_the_worker_and_shutdown_drains() {
        let layer: SharedLayer = Arc::new(InMemoryChannelLayer::new());
        let (tx, mut rx) = mpsc::unbounded_channel();
        let running = ChannelNameRouter::new()
            .route("jobs", Recorder(tx))
            .spawn(Arc::clone(&layer), None)
            .await
            .unwrap();
        send(&layer, serde_json::json!({"n": 1})).await;
        send(&layer, serde_json::json!({"n": 13})).await;
        send(&layer, serde_json::json!({"n": 14})).await;
        send(&layer, serde_json::json!({"nope": true})).await;
        send(&layer, serde_json::json!({"n": 2})).await;
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(rx.recv().await, Some(2));
        send(&layer, serde_json::json!({"n": 3})).await;
        running.shutdown().await;
        assert_eq!(rx.recv().await, Some(3), "what was queued is drained");
    }

    #[tokio::test]
    async fn only_named_channels_run_and_unknown_names_are_refused() {
        let layer: SharedLayer = Arc::new(InMemoryChannelLayer::new());
        let (tx, _rx) = mpsc::unbounded_channel();
        let router = ChannelNameRouter::new().route("jobs", Recorder(tx));
        let err = router
            .spawn(Arc::clone(&layer), Some(&["nope".to_owned()]))
            .await
            .err()
            .expect("unknown channel");
        assert!(err.to_string().contains("\"nope\""), "{err}");
    }
}
