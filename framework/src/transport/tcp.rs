//! tungstenite over the server's own TCP connections, read only when the socket is readable.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::{Sink, Stream};

use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{Error, Message};

use crate::limits::Permit;

/// tungstenite over a [`TcpStream`], asked for a frame only when one can have arrived.
///
/// Every time tungstenite is asked for a frame it zeroes its read window (the server's
/// `read_buffer_size`) before it tries the socket, whether or not anything arrived. A consumer's
/// loop asks on every turn, and a busy member turns once per batch of deliveries, so at fan-out
/// rates that `memset` alone was ~4 % of the server's CPU. Once tungstenite has found the socket
/// empty (it returned `Pending`, so no complete frame waits in its buffer either), this asks the
/// socket's readiness first — a flag check — and leaves tungstenite alone until it changes.
///
/// One thing tungstenite does inside a read is retry a pong it could not write (a client that
/// stopped reading filled the socket): that retry now waits for the next frame from the client,
/// the next send to it or the next keepalive ping, whose flush writes the pong too.
pub(crate) struct TcpTransport {
    inner: WebSocketStream<TcpStream>,
    /// tungstenite's last read found the socket empty.
    drained: bool,
    /// The connection's place under the server's limits, given back when the socket closes
    /// (none for a connection another server accepted, through the tower service).
    _permit: Option<Permit>,
}

impl TcpTransport {
    pub(crate) fn new(inner: WebSocketStream<TcpStream>, permit: Option<Permit>) -> TcpTransport {
        TcpTransport {
            inner,
            drained: false,
            _permit: permit,
        }
    }
}

impl Stream for TcpTransport {
    type Item = Result<Message, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        // An error here (the socket is gone) is left for tungstenite to find and report.
        if this.drained && this.inner.get_ref().poll_read_ready(cx).is_pending() {
            return Poll::Pending;
        }
        let polled = Pin::new(&mut this.inner).poll_next(cx);
        this.drained = polled.is_pending();
        polled
    }
}

impl Sink<Message> for TcpTransport {
    type Error = Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Pin::new(&mut self.inner).poll_ready(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, item: Message) -> Result<(), Error> {
        Pin::new(&mut self.inner).start_send(item)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}
