//! The in-memory WebSocket a consumer talks over under test: two bounded queues.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures::channel::mpsc;
use futures::{Sink, Stream, StreamExt};
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::{Error, Message};

/// Frames buffered each way before the sender waits, like a socket's buffers.
const QUEUE: usize = 1024;

/// The application's end: a [`Transport`](crate::transport::Transport).
pub(super) struct MemoryTransport {
    incoming: mpsc::Receiver<Message>,
    outgoing: mpsc::Sender<Message>,
    /// A close frame went one way or the other: like tungstenite, nothing more may be sent.
    closing: bool,
}

/// The communicator's end.
pub(super) struct Pipes {
    pub to_app: mpsc::Sender<Message>,
    pub from_app: mpsc::Receiver<Message>,
}

/// A connected pair of ends.
pub(super) fn pair() -> (MemoryTransport, Pipes) {
    let (to_app, incoming) = mpsc::channel(QUEUE);
    let (outgoing, from_app) = mpsc::channel(QUEUE);
    let transport = MemoryTransport {
        incoming,
        outgoing,
        closing: false,
    };
    (transport, Pipes { to_app, from_app })
}

impl Stream for MemoryTransport {
    type Item = Result<Message, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let frame = ready!(self.incoming.poll_next_unpin(cx));
        if frame.as_ref().is_some_and(Message::is_close) {
            self.closing = true;
        }
        Poll::Ready(frame.map(Ok))
    }
}

impl Sink<Message> for MemoryTransport {
    type Error = Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.outgoing.poll_ready(cx).map_err(peer_gone)
    }

    fn start_send(mut self: Pin<&mut Self>, frame: Message) -> Result<(), Error> {
        if self.closing {
            return Err(Error::Protocol(ProtocolError::SendAfterClosing));
        }
        self.closing = frame.is_close();
        self.outgoing.start_send(frame).map_err(peer_gone)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Pin::new(&mut self.outgoing)
            .poll_flush(cx)
            .map_err(peer_gone)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Pin::new(&mut self.outgoing)
            .poll_close(cx)
            .map_err(peer_gone)
    }
}

/// The communicator went away: what writing to a socket whose peer left gives.
fn peer_gone(_: mpsc::SendError) -> Error {
    Error::Io(io::ErrorKind::BrokenPipe.into())
}
