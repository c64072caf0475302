//! The loop that drives one consumer over one connection.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, SinkExt, StreamExt};
use http::StatusCode;
use tokio::sync::watch;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Bytes};

use super::backlog::{self, Backlog, Look, TOO_SLOW, guarded};
use super::handle::State;
use super::pings::PingTimer;
use super::throttle::{self, Throttle, Verdict};
use super::{CloseCode, Message, Websocket, WebsocketConsumer};
use crate::application::{HandshakeAnswer, Keepalive, WebsocketConnection};
use crate::error::{Error, Result};
use crate::layer::{ChannelReceiver, Envelope, Event, LayerStatus};
use crate::scope::Scope;

/// How long a server-initiated close waits for the client's close frame.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Layer events handled back to back before the socket is flushed.
const EVENT_BATCH: usize = 64;

/// Runs a consumer from handshake to disconnect.
///
/// Not an `async fn`: an async fn keeps its arguments in its state machine for its whole life,
/// and here they (the scope above all) would sit there next to the copies `open` moves into the
/// `Websocket`, in every idle connection's task. Only a box is captured instead, and the one-off
/// steps before and after `serve` are boxed too, so the task holds just what the open
/// connection needs: the consumer, its handle and channel, and `serve`'s state.
pub(crate) fn run<C: WebsocketConsumer>(
    consumer: C,
    scope: Scope,
    conn: WebsocketConnection,
) -> impl Future<Output = ()> + Send {
    let opening = Box::pin(open(consumer, scope, conn));
    async move {
        let Some((mut consumer, mut ws, mut channel)) = opening.await else {
            return;
        };
        let ended = match ws.state {
            State::Open => serve(&mut consumer, &mut ws, &mut channel).await,
            _ => Ended::Code(not_served(&mut ws).await),
        };
        match ended {
            Ended::Code(code) => Box::pin(finish(consumer, &mut ws, code)).await,
            Ended::TooSlow => {
                // Out of the layer at once, so nothing more is queued or fanned out to it, and
                // out of the consumer; the close frame waits behind what its socket holds.
                backlog::closed_as_slow(&ws.scope().path, ws.channel_name(), channel.dropped());
                drop(channel);
                ws.state = State::Closed(CloseCode::Again);
                Box::pin(finish(consumer, &mut ws, CloseCode::Again)).await;
                Box::pin(close_too_slow(ws)).await;
            }
        }
    }
}

/// How an open connection's loop ended.
enum Ended {
    /// With this close code, the close handshake done.
    Code(CloseCode),
    /// The slow-client policy closes it: 1013, once it has left.
    TooSlow,
}

/// Gets a channel, joins the consumer's groups and runs `connect()`; `None` when the handshake
/// was refused before `connect()` could run (nothing is left to clean up then).
async fn open<C: WebsocketConsumer>(
    mut consumer: C,
    scope: Scope,
    conn: WebsocketConnection,
) -> Option<(C, Websocket, ChannelReceiver)> {
    let layer = Arc::clone(&conn.layer);
    let channel = match layer.new_channel().await {
        Ok(channel) => channel,
        Err(err) => {
            tracing::error!(path = %scope.path, error = %err, "no channel from the channel layer; refusing the handshake");
            conn.answer(HandshakeAnswer::Deny {
                status: StatusCode::INTERNAL_SERVER_ERROR,
            });
            return None;
        }
    };
    let mut ws = Websocket::new(scope, channel.name().to_owned(), conn);

    for group in consumer.groups() {
        if let Err(err) = ws.group_add(&group).await {
            tracing::error!(path = %ws.scope().path, %group, error = %err, "joining the consumer's groups failed; refusing the handshake");
            let _ = ws.deny_with(StatusCode::INTERNAL_SERVER_ERROR);
            leave_groups(&mut ws).await;
            return None;
        }
    }

    // The server answers 503 itself when connect() outlasts the connect timeout; connect() is
    // then dropped where it stands, and the consumer still gets its disconnect().
    // Never missing here; a token nobody cancels would be the right stand-in anyway.
    let abandoned = ws.conn().abandoned.take().unwrap_or_default();
    let connected = tokio::select! {
        connected = consumer.connect(&mut ws) => Some(connected),
        () = abandoned.cancelled() => None,
    };
    let connected = connected.unwrap_or_else(|| {
        ws.state = State::Denied(StatusCode::SERVICE_UNAVAILABLE);
        Ok(())
    });
    let path = &ws.scope().path;
    match (&connected, ws.state) {
        (Ok(()), State::Connecting) => {
            tracing::debug!(%path, "connect() returned without accept(): refusing with 403");
            let _ = ws.deny();
        }
        (Err(err), State::Connecting) => {
            tracing::error!(%path, error = %err, "connect() failed: refusing with 500");
            let _ = ws.deny_with(StatusCode::INTERNAL_SERVER_ERROR);
        }
        (Err(err), State::Open) => {
            tracing::error!(%path, error = %err, "connect() failed after accept(): closing with 1011");
            let _ = ws.close(CloseCode::Error, "internal error").await;
        }
        (Err(err), _) => tracing::error!(%path, error = %err, "connect() failed"),
        (Ok(()), _) => {}
    }
    if ws.state == State::Open {
        tracing::info!(target: "switchboard::access", path = %ws.scope().path, channel = ws.channel_name(), "websocket connected");
    }
    Some((consumer, ws, channel))
}

/// The close code of a connection that never reached `serve`.
async fn not_served(ws: &mut Websocket) -> CloseCode {
    match ws.state {
        State::Closed(code) => {
            finish_close(ws).await;
            code
        }
        State::Denied(status) => {
            tracing::info!(target: "switchboard::access", path = %ws.scope().path, status = status.as_u16(), "websocket rejected");
            CloseCode::Abnormal
        }
        State::Open | State::Connecting => CloseCode::Abnormal,
    }
}

/// `disconnect()`, then the groups are left.
async fn finish<C: WebsocketConsumer>(mut consumer: C, ws: &mut Websocket, code: CloseCode) {
    if let Err(err) = consumer.disconnect(ws, code).await {
        tracing::error!(path = %ws.scope().path, error = %err, "disconnect() failed");
    }
    leave_groups(ws).await;
    forget_presence(ws);
    if matches!(ws.state, State::Open | State::Closed(_)) {
        tracing::info!(target: "switchboard::access", path = %ws.scope().path, code = u16::from(code), "websocket disconnected");
    }
}

/// The open connection's loop; says how it ended.
async fn serve<C: WebsocketConsumer>(
    consumer: &mut C,
    ws: &mut Websocket,
    channel: &mut ChannelReceiver,
) -> Ended {
    let shutdown = ws.conn().shutdown.clone();
    let keepalive = ws.conn().keepalive;
    let mut throttle = ws.conn().rate_limit.as_deref().map(Throttle::new);
    let mut backlog = ws
        .conn()
        .slow_client
        .as_ref()
        .and_then(|policy| Backlog::new(policy, channel));
    let mut pings = keepalive.map(|k| PingTimer::new(k.interval));
    let mut last_heard = Instant::now();
    let mut layer_status = ws.channel_layer().status();
    // What connect() sent after accept() is still buffered.
    match flush(ws, keepalive, backlog.as_mut()).await {
        Flushed::Done => {}
        Flushed::Failed => return Ended::Code(CloseCode::Abnormal),
        Flushed::TooSlow => return Ended::TooSlow,
    }

    // Made once: a fresh `cancelled()` future per iteration would register with the token's
    // waiter list (a lock) on every frame and event.
    let shutting_down = shutdown.cancelled();
    tokio::pin!(shutting_down);

    loop {
        // Every handler is watched: one that waits (on a client that does not read, most
        // likely) while the member's queue overflows is given up under the slow-client policy.
        let step = if ws.replaying() {
            // Boxed, as frames are: rare, and inline its state would be in every connection's
            // task.
            guarded(Box::pin(replay(consumer, ws)).as_mut(), backlog.as_mut())
                .await
                .map_or(Step::TooSlow, Step::Handled)
        } else {
            let Some(transport) = ws.transport.as_mut() else {
                return Ended::Code(CloseCode::Abnormal);
            };
            tokio::select! {
                _ = &mut shutting_down => {
                    let _ = ws.close(CloseCode::Away, "server shutting down").await;
                    Step::Closed
                }
                frame = transport.next() => {
                    // In a block of its own, so that none of it is kept across the handler.
                    let verdict = {
                        let now = Instant::now();
                        let since_last = now.saturating_duration_since(last_heard);
                        last_heard = now;
                        match (&frame, throttle.as_mut(), ws.conn().rate_limit.as_deref()) {
                            (Some(Ok(message)), Some(throttle), Some(limit)) if !message.is_close() => {
                                throttle.admit(limit, message.len(), since_last)
                            }
                            _ => Verdict::Pass,
                        }
                    };
                    // Boxed: a client frame is rarer than a delivery, and inline its handler's
                    // state would be part of every idle connection's memory.
                    let mut handling = Box::pin(on_frame(consumer, ws, frame, verdict));
                    guarded(handling.as_mut(), backlog.as_mut()).await.unwrap_or(Step::TooSlow)
                }
                envelope = channel.recv() => match envelope {
                    // One atomic read per wake-up: has the layer dropped anything for it lately?
                    Some(_) if backlog.as_mut().is_some_and(|backlog| {
                        backlog.too_slow(Look::Reading { backed_up: channel.is_backed_up() })
                    }) => Step::TooSlow,
                    Some(envelope) => {
                        let mut handled = guarded(pin!(on_live_event(consumer, ws, envelope)), backlog.as_mut()).await;
                        for _ in 1..EVENT_BATCH {
                            if !matches!(handled, Some(Ok(()))) || ws.state != State::Open {
                                break;
                            }
                            let Some(envelope) = channel.try_recv() else { break };
                            handled = guarded(pin!(on_live_event(consumer, ws, envelope)), backlog.as_mut()).await;
                        }
                        handled.map_or(Step::TooSlow, Step::Handled)
                    }
                    None => Step::Handled(Err(Error::Layer("the channel layer closed this consumer's channel".into()))),
                },
                status = next_status(&mut layer_status) => {
                    let mut handling = Box::pin(consumer.layer_status(ws, status));
                    guarded(handling.as_mut(), backlog.as_mut()).await.map_or(Step::TooSlow, Step::Handled)
                }
                _ = PingTimer::tick(&mut pings) => match keepalive {
                    Some(k) if last_heard.elapsed() > k.timeout => {
                        tracing::info!(path = %ws.scope().path, "no frame or pong within the ping timeout: dropping the client");
                        return Ended::Code(CloseCode::Abnormal);
                    }
                    _ => guarded(pin!(ping(ws)), backlog.as_mut()).await.map_or(Step::TooSlow, Step::Handled),
                },
            }
        };

        match step {
            Step::Ended(code) => return Ended::Code(code),
            Step::TooSlow => return Ended::TooSlow,
            Step::Closed => {}
            Step::Handled(Ok(())) => {}
            Step::Handled(Err(err)) => {
                tracing::error!(path = %ws.scope().path, error = %err, "consumer failed: closing with 1011");
                let _ = ws.close(CloseCode::Error, "internal error").await;
            }
        }
        if let State::Closed(code) = ws.state {
            finish_close(ws).await;
            return Ended::Code(code);
        }
        match flush(ws, keepalive, backlog.as_mut()).await {
            Flushed::Done => {}
            Flushed::Failed => return Ended::Code(CloseCode::Abnormal),
            Flushed::TooSlow => return Ended::TooSlow,
        }
    }
}

enum Step {
    /// The connection is over, with this code.
    Ended(CloseCode),
    /// The member does not keep up: the slow-client policy closes it.
    TooSlow,
    /// The server closed it; the state holds the code.
    Closed,
    /// A handler ran.
    Handled(Result<()>),
}

async fn on_frame<C: WebsocketConsumer>(
    consumer: &mut C,
    ws: &mut Websocket,
    frame: Option<Result<tungstenite::Message, tungstenite::Error>>,
    verdict: Verdict,
) -> Step {
    match verdict {
        Verdict::Pass => {}
        Verdict::Excess => {
            return Step::Handled(match frame {
                Some(Ok(tungstenite::Message::Text(text))) => {
                    consumer.rate_limited(ws, Message::Text(text)).await
                }
                Some(Ok(tungstenite::Message::Binary(bytes))) => {
                    consumer.rate_limited(ws, Message::Binary(bytes)).await
                }
                // Control frames over the limit count as violations, nothing more.
                _ => Ok(()),
            });
        }
        Verdict::Close => {
            if let Some(limit) = ws.conn().rate_limit.clone() {
                throttle::closed_for_rate(&ws.scope().path, &limit);
            }
            let _ = ws.close(CloseCode::Policy, "rate limit exceeded").await;
            return Step::Closed;
        }
    }
    match frame {
        Some(Ok(tungstenite::Message::Text(text))) => {
            Step::Handled(consumer.receive(ws, Message::Text(text)).await)
        }
        Some(Ok(tungstenite::Message::Binary(bytes))) => {
            Step::Handled(consumer.receive(ws, Message::Binary(bytes)).await)
        }
        Some(Ok(tungstenite::Message::Close(frame))) => {
            // tungstenite has queued the echo of the close frame; send it before leaving.
            if let Some(transport) = ws.transport.as_mut() {
                let _ = transport.flush().await;
            }
            Step::Ended(frame.map_or(CloseCode::Status, |f| f.code))
        }
        Some(Ok(_)) => Step::Handled(Ok(())),
        Some(Err(tungstenite::Error::Capacity(CapacityError::MessageTooLong {
            size,
            max_size,
        }))) => {
            tracing::info!(path = %ws.scope().path, size, max_size, "message over the size limit: closing with 1009");
            let _ = ws.close(CloseCode::Size, "message too big").await;
            Step::Closed
        }
        Some(Err(tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake))) => {
            Step::Ended(CloseCode::Abnormal)
        }
        Some(Err(tungstenite::Error::Utf8(err))) => {
            tracing::info!(path = %ws.scope().path, error = %err, "invalid UTF-8 in a text frame: closing with 1007");
            let _ = ws.close(CloseCode::Invalid, "invalid UTF-8").await;
            Step::Closed
        }
        Some(Err(tungstenite::Error::Protocol(err))) => {
            tracing::info!(path = %ws.scope().path, error = %err, "protocol violation: closing with 1002");
            let _ = ws.close(CloseCode::Protocol, "protocol error").await;
            Step::Closed
        }
        Some(Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed))
        | None => Step::Ended(CloseCode::Abnormal),
        Some(Err(err)) => {
            tracing::debug!(path = %ws.scope().path, error = %err, "connection lost");
            Step::Ended(CloseCode::Abnormal)
        }
    }
}

/// Hands over a batch of recovered messages: they go before anything live (see
/// `Websocket::group_add_with_log`).
async fn replay<C: WebsocketConsumer>(consumer: &mut C, ws: &mut Websocket) -> Result<()> {
    let mut result = Ok(());
    for _ in 0..EVENT_BATCH {
        if result.is_err() || ws.state != State::Open {
            break;
        }
        let Some(recovered) = ws.next_replayed() else {
            break;
        };
        result = on_event(consumer, ws, recovered).await;
    }
    result
}

/// A message from the consumer's channel: handed over unless a log read already had it.
async fn on_live_event<C: WebsocketConsumer>(
    consumer: &mut C,
    ws: &mut Websocket,
    envelope: Arc<Envelope>,
) -> Result<()> {
    if ws.already_read(&envelope) {
        return Ok(());
    }
    on_event(consumer, ws, envelope).await
}

async fn on_event<C: WebsocketConsumer>(
    consumer: &mut C,
    ws: &mut Websocket,
    envelope: Arc<Envelope>,
) -> Result<()> {
    if let Some(presence) = envelope.presence_event() {
        let event = Event::new(Arc::clone(presence), envelope);
        // Boxed: rarer than messages, and inline its state would be in every connection's task.
        return Box::pin(consumer.presence(ws, event)).await;
    }
    match envelope.decode::<C::Event>() {
        Ok(value) => consumer.event(ws, Event::new(value, envelope)).await,
        Err(err) => {
            tracing::warn!(
                consumer = std::any::type_name::<C>(),
                event = envelope.json(),
                error = %err,
                "event this consumer does not handle: dropped"
            );
            Ok(())
        }
    }
}

/// The layer's next connection change; never completes for layers without a backend.
async fn next_status(status: &mut Option<watch::Receiver<LayerStatus>>) -> LayerStatus {
    if let Some(receiver) = status {
        if receiver.changed().await.is_ok() {
            return *receiver.borrow_and_update();
        }
        *status = None;
    }
    std::future::pending().await
}

async fn ping(ws: &mut Websocket) -> Result<()> {
    let Some(transport) = ws.transport.as_mut() else {
        return Ok(());
    };
    transport
        .feed(tungstenite::Message::Ping(Bytes::new()))
        .await?;
    ws.unflushed = true;
    Ok(())
}

/// How a flush went.
enum Flushed {
    Done,
    /// The socket failed, or the client read nothing for the keepalive timeout.
    Failed,
    /// The client read too little for too long while its queue overflowed.
    TooSlow,
}

/// Flushes buffered sends; a client that does not read within the keepalive timeout is dropped,
/// so one slow reader cannot hold its task (and its queue) forever. Watched by the slow-client
/// policy (`backlog`), the wait looks at the channel's overflow now and then, and ends as soon
/// as the policy says the client is too slow.
async fn flush(
    ws: &mut Websocket,
    keepalive: Option<Keepalive>,
    mut backlog: Option<&mut Backlog>,
) -> Flushed {
    let done = |flushed: Result<()>| match flushed {
        Ok(()) => Flushed::Done,
        Err(_) => Flushed::Failed,
    };
    // Most flushes (and every loop turn with nothing to flush) finish at once: the timer (a
    // clock read and a timer entry) is only armed for one that has to wait. Dropping a pending
    // flush loses nothing: what is buffered stays buffered and the next flush writes it.
    if let Some(flushed) = ws.flush().now_or_never() {
        return done(flushed);
    }
    let started = Instant::now();
    let limit = keepalive.map(|k| k.timeout);
    let look_every = backlog.as_ref().map(|backlog| backlog.look_every());
    let Some(slice) = look_every.or(limit) else {
        return done(ws.flush().await);
    };
    loop {
        if let Ok(flushed) = timeout(slice, ws.flush()).await {
            return done(flushed);
        }
        if backlog
            .as_mut()
            .is_some_and(|backlog| backlog.too_slow(Look::Waiting))
        {
            return Flushed::TooSlow;
        }
        if limit.is_some_and(|limit| started.elapsed() >= limit) {
            tracing::info!(path = %ws.scope().path, "client does not read: dropping it");
            return Flushed::Failed;
        }
    }
}

/// The close frame of a member closed for not keeping up, sent once it has left the layer and
/// its consumer has disconnected: a client that reads again within the keepalive timeout gets
/// what was already on its way, then 1013.
async fn close_too_slow(mut ws: Websocket) {
    let wait = ws.conn().keepalive.map_or(CLOSE_TIMEOUT, |k| k.timeout);
    let Some(transport) = ws.transport.as_mut() else {
        return;
    };
    let frame = CloseFrame {
        code: CloseCode::Again,
        reason: TOO_SLOW.into(),
    };
    let closing = transport.send(tungstenite::Message::Close(Some(frame)));
    if timeout(wait, closing).await.is_ok() {
        finish_close(&mut ws).await;
    }
}

/// After the server's close frame: flush it and wait (bounded) for the client's echo.
async fn finish_close(ws: &mut Websocket) {
    let Some(transport) = ws.transport.as_mut() else {
        return;
    };
    let _ = timeout(CLOSE_TIMEOUT, async {
        let _ = transport.flush().await;
        while let Some(Ok(frame)) = transport.next().await {
            if frame.is_close() {
                break;
            }
        }
    })
    .await;
    let _ = transport.close().await;
}

/// Untracks the connection everywhere and ends its watching.
fn forget_presence(ws: &Websocket) {
    if ws.presence
        && let Some(tracker) = ws.channel_layer().presence_tracker()
    {
        tracker.forget(ws.channel_name());
    }
}

async fn leave_groups(ws: &mut Websocket) {
    for group in std::mem::take(&mut ws.groups) {
        if let Err(err) = ws
            .channel_layer()
            .group_discard(&group, ws.channel_name())
            .await
        {
            tracing::warn!(%group, error = %err, "leaving a group failed");
        }
    }
}

#[cfg(test)]
mod tests {
    //! The consumer loop's behaviour, driven through a communicator: what `connect` decides,
    //! groups, layer events, handler errors. The communicator's own behaviour is tested in
    //! `testing/tests.rs`, what only a socket shows in the workspace's `tests/server/`.

    use serde_json::{Value, json};

    use super::*;
    use crate::layer::{ChannelLayer, InMemoryChannelLayer, SharedLayer};
    use crate::testing::probe::{GROUP, probe, probe_watching};
    use crate::testing::{Handshake, WebsocketCommunicator};

    #[tokio::test]
    async fn what_connect_does_decides_the_handshake() {
        let (app, log) = probe();
        let app = Arc::new(app);
        for (query, status) in [
            ("do=nothing", StatusCode::FORBIDDEN),
            ("do=fail", StatusCode::INTERNAL_SERVER_ERROR),
        ] {
            let mut ws = WebsocketCommunicator::new(app.clone(), &format!("/?{query}"));
            assert_eq!(ws.connect().await.unwrap(), Handshake::Denied { status });
            ws.disconnect(CloseCode::Normal).await.unwrap();
        }
        // disconnect() runs once even for a refused handshake, with 1006.
        assert_eq!(log.codes(), [1006, 1006]);

        let mut ws = WebsocketCommunicator::new(app.clone(), "/?do=fail-after-accept");
        assert!(ws.connect().await.unwrap().is_accepted());
        ws.receive_text().await.unwrap();
        let close = ws.receive_close().await.unwrap();
        assert_eq!(
            (close.code, close.reason.as_str()),
            (CloseCode::Error, "internal error")
        );
        ws.disconnect(CloseCode::Normal).await.unwrap();

        let mut ws = WebsocketCommunicator::new(app, "/?do=close");
        assert!(ws.connect().await.unwrap().is_accepted());
        ws.receive_text().await.unwrap();
        let close = ws.receive_close().await.unwrap();
        assert_eq!(
            (u16::from(close.code), close.reason.as_str()),
            (4001, "go away")
        );
        ws.disconnect(CloseCode::Normal).await.unwrap();
        assert_eq!(log.codes(), [1006, 1006, 1011, 4001]);
    }

    #[tokio::test]
    async fn a_failing_handler_closes_with_1011_and_disconnect_gets_it() {
        let (app, log) = probe();
        let app = Arc::new(app);
        let mut ws = WebsocketCommunicator::new(app.clone(), "/");
        ws.connect().await.unwrap();
        ws.receive_text().await.unwrap();
        ws.send_text("fail").await.unwrap();
        let close = ws.receive_close().await.unwrap();
        assert_eq!(
            (close.code, close.reason.as_str()),
            (CloseCode::Error, "internal error")
        );
        ws.disconnect(CloseCode::Normal).await.unwrap();

        // Binary where the consumer wants text: `as_text()?` fails the handler the same way.
        let mut ws = WebsocketCommunicator::new(app, "/");
        ws.connect().await.unwrap();
        ws.receive_text().await.unwrap();
        ws.send_bytes([0]).await.unwrap();
        assert_eq!(ws.receive_close().await.unwrap().code, CloseCode::Error);
        ws.disconnect(CloseCode::Normal).await.unwrap();
        assert_eq!(log.codes(), [1011, 1011]);
    }

    #[tokio::test]
    async fn groups_are_joined_before_connect_and_left_after_disconnect() {
        let layer = InMemoryChannelLayer::new();
        let shared: SharedLayer = Arc::new(layer.clone());
        let (app, log) = probe_watching(&layer);
        let app = Arc::new(app);
        let member = |query: &str| {
            WebsocketCommunicator::new(app.clone(), &format!("/?{query}"))
                .channel_layer(shared.clone())
        };

        // Each probe's hello, sent to the group from inside connect(), comes back to it.
        let mut a = member("do=announce");
        a.connect().await.unwrap();
        let channel_a = a.receive_text().await.unwrap();
        assert_eq!(a.receive_json::<Value>().await.unwrap()["from"], channel_a);
        let mut b = member("do=announce");
        b.connect().await.unwrap();
        let channel_b = b.receive_text().await.unwrap();
        assert_eq!(b.receive_json::<Value>().await.unwrap()["from"], channel_b);
        assert_eq!(a.receive_json::<Value>().await.unwrap()["from"], channel_b);
        assert!(layer.is_member(GROUP, &channel_a) && layer.is_member(GROUP, &channel_b));

        // A group message sent from outside right after the handshakes reaches both.
        let ping = Envelope::encode(&json!({"type": "test.ping", "n": 1})).unwrap();
        layer.group_send(GROUP, ping).await.unwrap();
        assert_eq!(a.receive_json::<Value>().await.unwrap(), json!({"pong": 1}));
        assert_eq!(b.receive_json::<Value>().await.unwrap(), json!({"pong": 1}));

        a.disconnect(CloseCode::Away).await.unwrap();
        assert_eq!(layer.group_size(GROUP), 1);
        b.disconnect(CloseCode::Normal).await.unwrap();
        assert_eq!(layer.group_size(GROUP), 0);
        assert_eq!(log.codes(), [1001, 1000]);
        // Seen from inside: a member during connect (1, then 2) and still during disconnect.
        assert_eq!(
            log.group_sizes(),
            [
                ("connect", 1),
                ("connect", 2),
                ("disconnect", 2),
                ("disconnect", 1)
            ]
        );

        // A refused connection leaves its groups too.
        let mut refused = member("do=nothing");
        refused.connect().await.unwrap();
        refused.disconnect(CloseCode::Normal).await.unwrap();
        assert_eq!(layer.group_size(GROUP), 0);
        assert_eq!(log.codes(), [1001, 1000, 1006]);
    }

    #[tokio::test]
    async fn events_it_does_not_handle_are_dropped_and_it_carries_on() {
        let layer = Arc::new(InMemoryChannelLayer::new());
        let (app, log) = probe();
        let mut ws = WebsocketCommunicator::new(app, "/").channel_layer(layer.clone());
        ws.connect().await.unwrap();
        let channel = ws.receive_text().await.unwrap();

        for junk in [
            json!({"type": "test.unknown"}),
            json!({"type": "test.ping", "n": "two"}),
            json!({"no": "type"}),
            json!([1, 2, 3]),
        ] {
            let junk = Envelope::encode(&junk).unwrap();
            layer.send(&channel, junk.clone()).await.unwrap();
            layer.group_send(GROUP, junk).await.unwrap();
        }
        let not_json = Envelope::from_json("not even json");
        layer.send(&channel, not_json.clone()).await.unwrap();
        layer.group_send(GROUP, not_json).await.unwrap();
        let ping = Envelope::encode(&json!({"type": "test.ping", "n": 2})).unwrap();
        layer.send(&channel, ping).await.unwrap();

        assert_eq!(
            ws.receive_json::<Value>().await.unwrap(),
            json!({"pong": 2})
        );
        // Still open: no close frame, and disconnect() has not run.
        assert!(ws.receive_nothing().await);
        assert!(log.codes().is_empty());
    }
}
