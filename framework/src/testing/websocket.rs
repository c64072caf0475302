//! [`WebsocketCommunicator`]: a WebSocket client for an application, in-process.

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{FutureExt, SinkExt, StreamExt};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;

use super::error::preview;
use super::request::{add_cookie, add_subprotocols, append_header, convert};
use super::task::AppTask;
use super::transport::{Pipes, pair};
use super::{DEFAULT_NOTHING_TIMEOUT, DEFAULT_TIMEOUT, Error};
use crate::application::{
    Application, BoxApplication, Connection, HandshakeAnswer, WebsocketConnection,
};
use crate::consumer::CloseCode;
use crate::layer::{InMemoryChannelLayer, SharedLayer};
use crate::scope::{Protocol, Scope};
use crate::transport::BoxTransport;

/// A WebSocket client for an [`Application`], in-process: no socket, no port (Channels'
/// `WebsocketCommunicator`).
///
/// Build it with the request's details, [`connect`](Self::connect), then send and receive
/// frames: one method per kind of frame, as Channels has one `receive_from`. Every wait is
/// bounded by one [timeout](Self::timeout), 1 s unless set, which
/// [`set_timeout`](Self::set_timeout) changes mid-test where Channels passes `timeout=` to a
/// call. What the application did instead of what was expected is the error: a refused
/// handshake is [`Handshake::Denied`] rather than a timeout, a close frame is [`Error::Closed`]
/// with its code and reason, a panic in the consumer is [`Error::Panicked`] with the panic
/// message.
///
/// The application runs in its own task, exactly as under the server: the same
/// [`WebsocketConnection`] and handshake answer, over in-memory queues instead of a socket.
///
/// ```
/// use switchboard::prelude::*;
/// use switchboard::testing::{Handshake, WebsocketCommunicator};
///
/// #[derive(Default)]
/// struct Echo;
///
/// impl WebsocketConsumer for Echo {
///     type Event = NoEvent;
///
///     async fn receive(&mut self, ws: &mut Websocket, message: Message) -> Result<()> {
///         ws.send_message(message).await
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), switchboard::testing::Error> {
/// let app = URLRouter::new().route("/ws/echo/", Echo::as_app());
/// let mut ws = WebsocketCommunicator::new(app, "/ws/echo/");
/// assert!(ws.connect().await?.is_accepted());
///
/// ws.send_text("hello").await?;
/// assert_eq!(ws.receive_text().await?, "hello");
/// ws.send_bytes([1, 2, 3]).await?;
/// assert_eq!(ws.receive_bytes().await?, [1, 2, 3]);
/// assert!(ws.receive_nothing().await);
///
/// ws.disconnect(CloseCode::Normal).await?;
/// # Ok(())
/// # }
/// ```
///
/// To share one application between several communicators, pass clones of an `Arc` of it
/// (or of a [`BoxApplication`]); to let them hear each other, give them one
/// [channel layer](Self::channel_layer).
pub struct WebsocketCommunicator {
    app: BoxApplication,
    layer: SharedLayer,
    timeout: Duration,
    nothing_timeout: Duration,
    /// The scope until `connect` hands it to the application.
    scope: Option<Scope>,
    task: Option<AppTask>,
    /// Frames read ahead (by `receive_nothing`, or while finding out why a send failed).
    buffered: VecDeque<Message>,
    state: State,
}

enum State {
    NotConnected,
    Denied(StatusCode),
    Open(Pipes),
    /// The application's close frame was received.
    Closed(Close),
    /// The application dropped the connection without a close frame.
    Ended,
    Disconnected,
}

/// How the application answered the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handshake {
    /// HTTP 101: the connection is open.
    Accepted {
        /// The subprotocol the application chose, if any.
        subprotocol: Option<String>,
        /// The extra headers the application added to the 101 response (for example
        /// `Set-Cookie`); the protocol's own headers are not included.
        headers: HeaderMap,
    },
    /// An HTTP error instead of the upgrade: `deny()` (403), a router without a match (404), a
    /// middleware's refusal, ...
    Denied {
        /// The status sent.
        status: StatusCode,
    },
}

impl Handshake {
    /// Whether the connection was accepted.
    pub fn is_accepted(&self) -> bool {
        matches!(self, Handshake::Accepted { .. })
    }

    /// The HTTP status of the answer: 101 when accepted.
    pub fn status(&self) -> StatusCode {
        match self {
            Handshake::Accepted { .. } => StatusCode::SWITCHING_PROTOCOLS,
            Handshake::Denied { status } => *status,
        }
    }

    /// The chosen subprotocol, if accepted with one.
    pub fn subprotocol(&self) -> Option<&str> {
        match self {
            Handshake::Accepted { subprotocol, .. } => subprotocol.as_deref(),
            Handshake::Denied { .. } => None,
        }
    }
}

/// The application's close frame: its code and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    /// The close code, e.g. [`CloseCode::Normal`] or `CloseCode::from(4000)`.
    pub code: CloseCode,
    /// The reason, possibly empty.
    pub reason: String,
}

impl WebsocketCommunicator {
    /// A client for `app` that will ask for `path`, which may carry a query string
    /// (`/ws/chat/lobby/?token=abc`). The request has no headers until some are added; its
    /// channel layer is a fresh [`InMemoryChannelLayer`].
    pub fn new(app: impl Application, path: &str) -> WebsocketCommunicator {
        WebsocketCommunicator::with_scope(
            BoxApplication::new(app),
            Scope::new(Protocol::Websocket, path),
        )
    }

    pub(super) fn with_scope(app: BoxApplication, scope: Scope) -> WebsocketCommunicator {
        WebsocketCommunicator {
            app,
            layer: Arc::new(InMemoryChannelLayer::new()),
            timeout: DEFAULT_TIMEOUT,
            nothing_timeout: DEFAULT_NOTHING_TIMEOUT,
            scope: Some(scope),
            task: None,
            buffered: VecDeque::new(),
            state: State::NotConnected,
        }
    }

    /// Adds a request header (several values for one name are kept).
    ///
    /// # Panics
    ///
    /// If the name or value is not a valid header name or value, or after `connect`.
    pub fn header<K, V>(mut self, name: K, value: V) -> WebsocketCommunicator
    where
        HeaderName: TryFrom<K>,
        <HeaderName as TryFrom<K>>::Error: Into<http::Error>,
        HeaderValue: TryFrom<V>,
        <HeaderValue as TryFrom<V>>::Error: Into<http::Error>,
    {
        let name = convert(name, "header name");
        let value = convert(value, "header value");
        append_header(self.scope_mut(), name, value);
        self
    }

    /// Offers subprotocols, in order of preference (`Sec-WebSocket-Protocol`); the application
    /// sees them in [`Scope::subprotocols`].
    ///
    /// # Panics
    ///
    /// If a subprotocol is not a valid header value, or after `connect`.
    pub fn subprotocols<S: Into<String>>(
        mut self,
        subprotocols: impl IntoIterator<Item = S>,
    ) -> WebsocketCommunicator {
        add_subprotocols(self.scope_mut(), subprotocols);
        self
    }

    /// Adds a cookie to the request's `Cookie` header (percent-encoded as needed).
    ///
    /// # Panics
    ///
    /// After `connect`.
    pub fn cookie(mut self, name: &str, value: &str) -> WebsocketCommunicator {
        add_cookie(self.scope_mut(), name, value);
        self
    }

    /// Sets the client's address ([`Scope::client`]); unset, it is `None`.
    ///
    /// # Panics
    ///
    /// After `connect`.
    pub fn client(mut self, addr: SocketAddr) -> WebsocketCommunicator {
        self.scope_mut().client = Some(addr);
        self
    }

    /// Puts a value in the scope's [extensions](Scope::extensions), as a middleware would.
    ///
    /// # Panics
    ///
    /// After `connect`.
    pub fn extension<T: Clone + Send + Sync + 'static>(
        mut self,
        value: T,
    ) -> WebsocketCommunicator {
        self.scope_mut().extensions.insert(value);
        self
    }

    /// Uses this channel layer (an in-memory one, Redis, ...) instead of a fresh in-memory one.
    /// Communicators sharing a layer hear each other's group messages.
    pub fn channel_layer(mut self, layer: SharedLayer) -> WebsocketCommunicator {
        self.layer = layer;
        self
    }

    /// How long each call waits: for the handshake answer, a frame, the application to finish
    /// (Channels' `timeout=1` of `receive_from` and the others). Default 1 s; change it later
    /// with [`set_timeout`](Self::set_timeout).
    pub fn timeout(mut self, timeout: Duration) -> WebsocketCommunicator {
        self.timeout = timeout;
        self
    }

    /// How long [`receive_nothing`](Self::receive_nothing) listens before it says nothing came
    /// (Channels' `receive_nothing(timeout=0.1)`). Default 100 ms; change it later with
    /// [`set_nothing_timeout`](Self::set_nothing_timeout).
    pub fn nothing_timeout(mut self, timeout: Duration) -> WebsocketCommunicator {
        self.nothing_timeout = timeout;
        self
    }

    /// Changes the [timeout](Self::timeout) of every call from now on, mid-test: a longer one
    /// before a slow step, a short one before a receive that should time out.
    ///
    /// ```
    /// use std::time::Duration;
    /// use switchboard::prelude::*;
    /// use switchboard::testing::WebsocketCommunicator;
    ///
    /// #[derive(Default)]
    /// struct Silent;
    ///
    /// impl WebsocketConsumer for Silent {
    ///     type Event = NoEvent;
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), switchboard::testing::Error> {
    /// let mut ws = WebsocketCommunicator::new(Silent::as_app(), "/");
    /// ws.connect().await?;
    /// ws.set_timeout(Duration::from_millis(20));
    /// let err = ws.receive_text().await.unwrap_err();
    /// assert_eq!(err.to_string(), "timed out after 20ms waiting for a text frame");
    /// # Ok(())
    /// # }
    /// ```
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Changes how long [`receive_nothing`](Self::receive_nothing) listens from now on.
    pub fn set_nothing_timeout(&mut self, timeout: Duration) {
        self.nothing_timeout = timeout;
    }

    /// The channel layer the application uses, to send it events from the test.
    pub fn layer(&self) -> &SharedLayer {
        &self.layer
    }

    fn scope_mut(&mut self) -> &mut Scope {
        self.scope
            .as_mut()
            .expect("WebsocketCommunicator options must be set before connect()")
    }

    /// Starts the application on the handshake and waits for its answer.
    ///
    /// A refusal is `Ok(`[`Handshake::Denied`]`)` with its status, never a timeout. An
    /// application that drops the handshake unanswered is refused with 403, as the server does.
    /// When no answer comes within the timeout, the application's `connect` is abandoned as
    /// under the server (which answers 503) and the error names the timeout.
    ///
    /// ```
    /// use switchboard::prelude::*;
    /// use switchboard::testing::{Handshake, WebsocketCommunicator};
    ///
    /// #[derive(Default)]
    /// struct MembersOnly;
    ///
    /// impl WebsocketConsumer for MembersOnly {
    ///     type Event = NoEvent;
    ///
    ///     async fn connect(&mut self, ws: &mut Websocket) -> Result<()> {
    ///         if ws.scope().cookie("member").is_some() {
    ///             ws.accept_with(Some("chat.v2"), Default::default()).await
    ///         } else {
    ///             ws.deny_with(StatusCode::UNAUTHORIZED)
    ///         }
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), switchboard::testing::Error> {
    /// let mut stranger = WebsocketCommunicator::new(MembersOnly::as_app(), "/");
    /// assert_eq!(
    ///     stranger.connect().await?,
    ///     Handshake::Denied { status: StatusCode::UNAUTHORIZED }
    /// );
    ///
    /// let mut member = WebsocketCommunicator::new(MembersOnly::as_app(), "/")
    ///     .cookie("member", "yes")
    ///     .subprotocols(["chat.v1", "chat.v2"]);
    /// assert_eq!(member.connect().await?.subprotocol(), Some("chat.v2"));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect(&mut self) -> Result<Handshake, Error> {
        let Some(scope) = self.scope.take() else {
            return Err(Error::AlreadyConnected);
        };
        let (transport, pipes) = pair();
        let (answer_tx, answer_rx) = oneshot::channel();
        let upgrade = futures::future::ready(Some(Box::new(transport) as BoxTransport)).boxed();
        let conn = WebsocketConnection::new(
            Arc::clone(&self.layer),
            answer_tx,
            upgrade,
            CancellationToken::new(),
        );
        let abandoned = conn.abandoned.clone();
        self.task = Some(AppTask::spawn(
            self.app.clone(),
            scope,
            Connection::Websocket(conn),
        ));

        let answer = match timeout(self.timeout, answer_rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => {
                // Dropped unanswered: a panic, or what the server takes for a refusal.
                self.finish_task(self.timeout).await?;
                HandshakeAnswer::Deny {
                    status: StatusCode::FORBIDDEN,
                }
            }
            Err(_) => {
                if let Some(abandoned) = abandoned {
                    abandoned.cancel();
                }
                self.state = State::Denied(StatusCode::SERVICE_UNAVAILABLE);
                return Err(Error::Timeout {
                    waiting_for: "the handshake answer: connect() neither accepted nor denied",
                    timeout: self.timeout,
                });
            }
        };
        Ok(match answer {
            HandshakeAnswer::Accept {
                subprotocol,
                headers,
            } => {
                self.state = State::Open(pipes);
                Handshake::Accepted {
                    subprotocol,
                    headers,
                }
            }
            HandshakeAnswer::Deny { status } => {
                self.state = State::Denied(status);
                Handshake::Denied { status }
            }
        })
    }

    /// Sends a text frame.
    pub async fn send_text(&mut self, text: impl Into<Utf8Bytes>) -> Result<(), Error> {
        self.send(Message::Text(text.into())).await
    }

    /// Sends a binary frame.
    pub async fn send_bytes(&mut self, bytes: impl AsRef<[u8]>) -> Result<(), Error> {
        self.send(Message::Binary(Bytes::copy_from_slice(bytes.as_ref())))
            .await
    }

    /// Sends a value as a JSON text frame.
    pub async fn send_json<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        let text = serde_json::to_string(value).map_err(Error::Encode)?;
        self.send_text(text).await
    }

    /// Receives a text frame within the [timeout](Self::timeout).
    pub async fn receive_text(&mut self) -> Result<String, Error> {
        match self.next_frame("a text frame").await? {
            Message::Text(text) => Ok(text.as_str().to_owned()),
            other => Err(self.unexpected("a text frame", other)),
        }
    }

    /// Receives a binary frame within the [timeout](Self::timeout).
    pub async fn receive_bytes(&mut self) -> Result<Vec<u8>, Error> {
        match self.next_frame("a binary frame").await? {
            Message::Binary(bytes) => Ok(bytes.into()),
            other => Err(self.unexpected("a binary frame", other)),
        }
    }

    /// Receives a text frame within the [timeout](Self::timeout) and decodes it as JSON: into
    /// your type, or into a [`serde_json::Value`] to compare with `json!`.
    ///
    /// ```
    /// use serde_json::{Value, json};
    /// use switchboard::prelude::*;
    /// use switchboard::testing::WebsocketCommunicator;
    ///
    /// #[derive(Deserialize)]
    /// struct Ping {
    ///     seq: u32,
    /// }
    ///
    /// #[derive(Default)]
    /// struct Pong;
    ///
    /// impl JsonWebsocketConsumer for Pong {
    ///     type Incoming = Ping;
    ///     type Event = NoEvent;
    ///
    ///     async fn receive_json(&mut self, ws: &mut Websocket, ping: Ping) -> Result<()> {
    ///         ws.send_json(&json!({"type": "pong", "seq": ping.seq})).await
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), switchboard::testing::Error> {
    /// let mut ws = WebsocketCommunicator::new(Pong::as_app(), "/");
    /// ws.connect().await?;
    /// ws.send_json(&json!({"seq": 7})).await?;
    /// assert_eq!(ws.receive_json::<Value>().await?, json!({"type": "pong", "seq": 7}));
    ///
    /// // A frame that does not decode gets the consumer's error event, not a crash.
    /// ws.send_text("not json").await?;
    /// let error: Value = ws.receive_json().await?;
    /// assert_eq!(error["type"], "error");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn receive_json<T: DeserializeOwned>(&mut self) -> Result<T, Error> {
        match self.next_frame("a JSON text frame").await? {
            Message::Text(text) => {
                serde_json::from_str(text.as_str()).map_err(|err| Error::decode(err, &text))
            }
            other => Err(self.unexpected("a JSON text frame", other)),
        }
    }

    /// Whether nothing arrives for the [nothing timeout](Self::nothing_timeout), 100 ms unless
    /// set (Channels' `receive_nothing`). A frame that does arrive is kept for the next
    /// `receive_*` call.
    ///
    /// # Panics
    ///
    /// If the application panicked, with its panic message, so the test fails for that reason.
    pub async fn receive_nothing(&mut self) -> bool {
        if !self.buffered.is_empty() {
            return false;
        }
        let deadline = Instant::now() + self.nothing_timeout;
        let ended = match &mut self.state {
            State::Open(pipes) => loop {
                match timeout_at(deadline, pipes.from_app.next()).await {
                    Err(_) => return true,
                    Ok(Some(frame)) if is_data_or_close(&frame) => {
                        self.buffered.push_back(frame);
                        return false;
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => break true,
                }
            },
            _ => false,
        };
        let failure = if ended {
            Some(self.ended().await)
        } else {
            self.finish_task(Duration::ZERO).await.err()
        };
        if let Some(panic @ Error::Panicked { .. }) = failure {
            panic!("{panic}");
        }
        true
    }

    /// Waits, within the [timeout](Self::timeout), for the application to close the connection
    /// and returns its close frame, or code 1006 if it ended without one. Any other frame first
    /// is an error.
    ///
    /// ```
    /// use switchboard::prelude::*;
    /// use switchboard::testing::WebsocketCommunicator;
    ///
    /// #[derive(Default)]
    /// struct OneShot;
    ///
    /// impl WebsocketConsumer for OneShot {
    ///     type Event = NoEvent;
    ///
    ///     async fn receive(&mut self, ws: &mut Websocket, _message: Message) -> Result<()> {
    ///         ws.close(CloseCode::from(4000), "one message per connection").await
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), switchboard::testing::Error> {
    /// let mut ws = WebsocketCommunicator::new(OneShot::as_app(), "/");
    /// ws.connect().await?;
    /// ws.send_text("hi").await?;
    /// let close = ws.receive_close().await?;
    /// assert_eq!(u16::from(close.code), 4000);
    /// assert_eq!(close.reason, "one message per connection");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn receive_close(&mut self) -> Result<Close, Error> {
        match self.next_frame("a close frame").await {
            Ok(Message::Close(frame)) => Ok(self.on_close(frame)),
            Ok(other) => Err(Error::UnexpectedFrame {
                expected: "a close frame",
                got: describe(&other),
            }),
            Err(Error::Closed { code, reason }) => Ok(Close { code, reason }),
            Err(Error::Ended) => Ok(Close {
                code: CloseCode::Abnormal,
                reason: String::new(),
            }),
            Err(err) => Err(err),
        }
    }

    /// Closes the connection with `code` (a close frame, as a browser's `close(code)`) and
    /// waits for the application to finish, so its `disconnect` has run when this returns.
    /// After the application closed or refused the connection, only waits. A panic in the
    /// application is the error.
    pub async fn disconnect(&mut self, code: impl Into<CloseCode>) -> Result<(), Error> {
        if let State::NotConnected = self.state {
            return Ok(());
        }
        if let State::Open(pipes) = &mut self.state {
            let frame = CloseFrame {
                code: code.into(),
                reason: Utf8Bytes::default(),
            };
            // An application that no longer reads is finishing anyway.
            let _ = timeout(self.timeout, pipes.to_app.feed(Message::Close(Some(frame)))).await;
        }
        // Dropping the queues: like tungstenite after a close, the application's sends now fail.
        self.state = State::Disconnected;
        if self.finish_task(self.timeout).await? {
            Ok(())
        } else {
            Err(Error::Timeout {
                waiting_for: "the application to finish after the close frame",
                timeout: self.timeout,
            })
        }
    }

    async fn send(&mut self, frame: Message) -> Result<(), Error> {
        let State::Open(pipes) = &mut self.state else {
            return Err(self.not_open().await);
        };
        match timeout(self.timeout, pipes.to_app.feed(frame)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(self.why_gone().await),
            Err(_) => Err(Error::Timeout {
                waiting_for: "the application to read the frames sent (it is not reading)",
                timeout: self.timeout,
            }),
        }
    }

    /// The next frame, skipping pings and pongs: a buffered one, else one within the timeout.
    async fn next_frame(&mut self, waiting_for: &'static str) -> Result<Message, Error> {
        if let Some(frame) = self.buffered.pop_front() {
            return Ok(frame);
        }
        let State::Open(pipes) = &mut self.state else {
            return Err(self.not_open().await);
        };
        let deadline = Instant::now() + self.timeout;
        loop {
            match timeout_at(deadline, pipes.from_app.next()).await {
                Err(_) => {
                    return Err(Error::Timeout {
                        waiting_for,
                        timeout: self.timeout,
                    });
                }
                Ok(Some(frame)) if is_data_or_close(&frame) => return Ok(frame),
                Ok(Some(_)) => {}
                Ok(None) => return Err(self.ended().await),
            }
        }
    }

    /// The error for a frame of the wrong kind; a close frame is recorded as the close.
    fn unexpected(&mut self, expected: &'static str, frame: Message) -> Error {
        match frame {
            Message::Close(frame) => {
                let Close { code, reason } = self.on_close(frame);
                Error::Closed { code, reason }
            }
            other => Error::UnexpectedFrame {
                expected,
                got: describe(&other),
            },
        }
    }

    /// Records the application's close and answers it, as a WebSocket client does.
    fn on_close(&mut self, frame: Option<CloseFrame>) -> Close {
        let close = match &frame {
            Some(frame) => Close {
                code: frame.code,
                reason: frame.reason.as_str().to_owned(),
            },
            None => Close {
                code: CloseCode::Status,
                reason: String::new(),
            },
        };
        if let State::Open(pipes) = &mut self.state {
            // Best effort: dropping the queues below also ends the application's wait.
            let _ = pipes.to_app.try_send(Message::Close(frame));
        }
        self.state = State::Closed(close.clone());
        close
    }

    /// Why there is no open connection to use.
    async fn not_open(&mut self) -> Error {
        // A panic is the real story whatever the state says.
        if let Err(panic) = self.finish_task(Duration::ZERO).await {
            return panic;
        }
        match &self.state {
            State::NotConnected => Error::NotConnected,
            State::Denied(status) => Error::Denied { status: *status },
            State::Closed(close) => Error::Closed {
                code: close.code,
                reason: close.reason.clone(),
            },
            State::Ended => Error::Ended,
            State::Disconnected => Error::Disconnected,
            State::Open(_) => unreachable!("not_open() is only called without an open connection"),
        }
    }

    /// The application's end of the connection is gone: its panic, else [`Error::Ended`].
    async fn ended(&mut self) -> Error {
        self.state = State::Ended;
        match self.finish_task(self.timeout).await {
            Err(panic) => panic,
            Ok(_) => Error::Ended,
        }
    }

    /// The application stopped reading. Its close frame, if it sent one, explains why (the
    /// frames before it stay buffered for the next receive); else its panic, or that it ended.
    async fn why_gone(&mut self) -> Error {
        if let State::Open(pipes) = &mut self.state {
            while let Ok(frame) = pipes.from_app.try_recv() {
                self.buffered.push_back(frame);
            }
        }
        let close = self.buffered.iter().find_map(|frame| match frame {
            Message::Close(Some(frame)) => Some((frame.code, frame.reason.as_str().to_owned())),
            Message::Close(None) => Some((CloseCode::Status, String::new())),
            _ => None,
        });
        if let Some((code, reason)) = close {
            return Error::Closed { code, reason };
        }
        if let Err(panic) = self.finish_task(self.timeout).await {
            return panic;
        }
        Error::Ended
    }

    async fn finish_task(&mut self, limit: Duration) -> Result<bool, Error> {
        match self.task.as_mut() {
            Some(task) => task.finish(limit).await,
            None => Ok(true),
        }
    }
}

impl fmt::Debug for WebsocketCommunicator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::NotConnected => "not connected",
            State::Denied(_) => "denied",
            State::Open(_) => "open",
            State::Closed(_) => "closed by the application",
            State::Ended => "ended by the application",
            State::Disconnected => "disconnected",
        };
        f.debug_struct("WebsocketCommunicator")
            .field("state", &state)
            .field("timeout", &self.timeout)
            .field("nothing_timeout", &self.nothing_timeout)
            .finish_non_exhaustive()
    }
}

/// Text, binary and close frames are what a test sees; pings and pongs are the transport's.
fn is_data_or_close(frame: &Message) -> bool {
    matches!(
        frame,
        Message::Text(_) | Message::Binary(_) | Message::Close(_)
    )
}

/// A frame, for error messages.
fn describe(frame: &Message) -> String {
    match frame {
        Message::Text(text) => format!("a text frame: {:?}", preview(text)),
        Message::Binary(bytes) => format!("a binary frame of {} bytes", bytes.len()),
        Message::Close(Some(frame)) if frame.reason.is_empty() => {
            format!("a close frame with {}", frame.code)
        }
        Message::Close(Some(frame)) => {
            format!("a close frame with {}: {}", frame.code, frame.reason)
        }
        Message::Close(None) => "a close frame".to_owned(),
        Message::Ping(_) => "a ping".to_owned(),
        Message::Pong(_) => "a pong".to_owned(),
        Message::Frame(_) => "a raw frame".to_owned(),
    }
}
