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
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::layer::{ChannelReceiver, Envelope, Event, SharedLayer};

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

    /// Handles, in order, the messages that were waiting together, on a route made with
    /// [`ChannelNameRouter::route_batched`]. Override it to do one round trip for many
    /// messages (one database write for a batch of rows); the default handles them one by one
    /// with [`handle`](Worker::handle), logging each failure. An error is logged with the
    /// channel name and the size of the batch, and the worker goes on.
    fn handle_batch(
        &self,
        ctx: &WorkerContext,
        messages: Vec<Event<Self::Message>>,
    ) -> impl Future<Output = Result<()>> + Send {
        async move {
            for message in messages {
                if let Err(err) = self.handle(ctx, message).await {
                    tracing::error!(channel = %ctx.channel_name(), error = %err, "worker failed on a message");
                }
            }
            Ok(())
        }
    }
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
    /// One message through `handle`, or several through `handle_batch` when `batched`.
    fn handle_envelopes(
        &self,
        ctx: WorkerContext,
        envelopes: Vec<Arc<Envelope>>,
        batched: bool,
    ) -> BoxFuture<'_, Result<()>>;
}

impl<W: Worker> DynWorker for W {
    fn handle_envelopes(
        &self,
        ctx: WorkerContext,
        envelopes: Vec<Arc<Envelope>>,
        batched: bool,
    ) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let mut messages = Vec::with_capacity(envelopes.len());
            for envelope in envelopes {
                match envelope.decode::<W::Message>() {
                    Ok(value) => messages.push(Event::new(value, envelope)),
                    // One undecodable message must not cost the rest of its batch.
                    Err(err) => {
                        tracing::error!(channel = %ctx.channel_name(), error = %err, message = %envelope.json(), "message the worker does not handle")
                    }
                }
            }
            if batched {
                if messages.is_empty() {
                    return Ok(());
                }
                let count = messages.len();
                return self
                    .handle_batch(&ctx, messages)
                    .await
                    .map_err(|err| Error::Worker(format!("batch of {count} messages: {err}")));
            }
            for message in messages {
                self.handle(&ctx, message).await?;
            }
            Ok(())
        })
    }
}

struct Route {
    channel: String,
    worker: Arc<dyn DynWorker>,
    concurrency: usize,
    /// Most messages handed to one `handle_batch`; 0 for a route handled message by message.
    batch: usize,
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
            batch: 0,
        });
        self
    }

    /// Routes a channel name to a worker whose [`Worker::handle_batch`] gets what has
    /// gathered while its previous batch was handled, up to `max_batch` messages, in order;
    /// one batch at a time. Nothing waits to fill a batch: a lone message is a batch of one.
    pub fn route_batched(
        mut self,
        channel: &str,
        worker: impl Worker,
        max_batch: usize,
    ) -> ChannelNameRouter {
        self.routes.push(Route {
            channel: channel.to_owned(),
            worker: Arc::new(worker),
            concurrency: 1,
            batch: max_batch.max(1),
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
            return Err(Error::Config(format!(
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
        reap(&route, &mut handling);
        // The permit comes before the message, so a batched route gathers what arrives while
        // its previous batch is being handled.
        let permit = tokio::select! {
            _ = stop.cancelled() => break,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let first = tokio::select! {
            _ = stop.cancelled() => break,
            envelope = receiver.recv() => match envelope {
                Some(envelope) => envelope,
                None => break,
            },
        };
        let job = gather(&route, first, &mut receiver);
        run_job(&route, &ctx, &mut handling, permit, job).await;
    }
    // Stop receiving, then drain what this process already holds, within a bound.
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while let Some(first) = receiver.try_recv() {
            reap(&route, &mut handling);
            let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                break;
            };
            let job = gather(&route, first, &mut receiver);
            run_job(&route, &ctx, &mut handling, permit, job).await;
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

/// Finished handlers are reaped as the route goes, so the set stays as small as the
/// concurrency.
fn reap(route: &Route, handling: &mut JoinSet<Result<()>>) {
    while let Some(done) = handling.try_join_next() {
        report(&route.channel, done);
    }
}

/// The message just received and, on a batched route, what is already waiting behind it.
fn gather(
    route: &Route,
    first: Arc<Envelope>,
    receiver: &mut ChannelReceiver,
) -> Vec<Arc<Envelope>> {
    let mut job = vec![first];
    while job.len() < route.batch
        && let Some(envelope) = receiver.try_recv()
    {
        job.push(envelope);
    }
    job
}

async fn run_job(
    route: &Route,
    ctx: &WorkerContext,
    handling: &mut JoinSet<Result<()>>,
    permit: OwnedSemaphorePermit,
    job: Vec<Arc<Envelope>>,
) {
    let work = handle_job(Arc::clone(&route.worker), ctx.clone(), job, route.batch > 0);
    if route.concurrency == 1 {
        // One at a time: handled right here, without a task per message.
        report(&route.channel, Ok(work.await));
        drop(permit);
        return;
    }
    handling.spawn(async move {
        let _permit = permit;
        work.await
    });
}

/// Decodes and handles one job; a panic is reported like an error, so one bad message does not
/// stop the worker.
async fn handle_job(
    worker: Arc<dyn DynWorker>,
    ctx: WorkerContext,
    job: Vec<Arc<Envelope>>,
    batched: bool,
) -> Result<()> {
    AssertUnwindSafe(worker.handle_envelopes(ctx, job, batched))
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| Err(Error::Worker(panic_message(&panic))))
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
    format!("panicked: {text}")
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

    /// Records each batch it is given; the first batch waits for `gate`.
    struct Batcher {
        batches: mpsc::UnboundedSender<Vec<u32>>,
        gate: tokio::sync::Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
    }

    impl Worker for Batcher {
        type Message = Job;

        async fn handle(&self, _ctx: &WorkerContext, _job: Event<Job>) -> Result<()> {
            unreachable!("a batched route calls handle_batch")
        }

        async fn handle_batch(&self, _ctx: &WorkerContext, jobs: Vec<Event<Job>>) -> Result<()> {
            if let Some(gate) = self.gate.lock().await.take() {
                let _ = gate.await;
            }
            let _ = self.batches.send(jobs.iter().map(|job| job.n).collect());
            Ok(())
        }
    }

    #[tokio::test]
    async fn batched_routes_get_what_gathered_in_order_and_skip_bad_messages() {
        let layer: SharedLayer = Arc::new(InMemoryChannelLayer::new());
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (open, gate) = tokio::sync::oneshot::channel();
        let worker = Batcher {
            batches: tx,
            gate: tokio::sync::Mutex::new(Some(gate)),
        };
        let running = ChannelNameRouter::new()
            .route_batched("jobs", worker, 4)
            .spawn(Arc::clone(&layer), None)
            .await
            .unwrap();
        send(&layer, serde_json::json!({"n": 1})).await;
        // Let the first batch start (and block) before the rest arrive.
        tokio::time::sleep(Duration::from_millis(50)).await;
        for n in 2..=5 {
            send(&layer, serde_json::json!({"n": n})).await;
        }
        send(&layer, serde_json::json!({"nope": true})).await;
        send(&layer, serde_json::json!({"n": 6})).await;
        let _ = open.send(());
        for expected in [vec![1], vec![2, 3, 4, 5], vec![6]] {
            let batch = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
            // At most 4 per batch, in order, the undecodable one left out.
            assert_eq!(batch.expect("a batch within 5 s"), Some(expected));
        }
        running.shutdown().await;
    }

    #[tokio::test]
    async fn the_default_batch_handler_handles_each_message() {
        let layer: SharedLayer = Arc::new(InMemoryChannelLayer::new());
        let (tx, mut rx) = mpsc::unbounded_channel();
        let running = ChannelNameRouter::new()
            .route_batched("jobs", Recorder(tx), 8)
            .spawn(Arc::clone(&layer), None)
            .await
            .unwrap();
        for n in [1, 13, 2, 3] {
            send(&layer, serde_json::json!({"n": n})).await;
        }
        running.shutdown().await;
        let mut got = Vec::new();
        while let Ok(n) = rx.try_recv() {
            got.push(n);
        }
        assert_eq!(got, [1, 2, 3], "a failing message does not stop its batch");
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
