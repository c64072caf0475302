//! The floor every connection stands on: the duplex stream of WebSocket messages a consumer
//! talks over once a handshake is accepted.
//!
//! Owned by neither the server nor the consumer, so that neither imports the other: the server
//! hands over its own TCP connections (held inline, without a box), the testing communicators
//! and custom servers a [`BoxTransport`], and the consumer's loop reads and writes whichever it
//! is given.

mod tcp;

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::{Sink, Stream};
use tokio_tungstenite::tungstenite::{Error, Message};

pub(crate) use tcp::TcpTransport;

/// The duplex stream of WebSocket messages a consumer talks over once accepted: a real socket
/// in production, in-memory queues in tests, anything a custom server hands over.
pub trait Transport:
    Stream<Item = Result<Message, Error>> + Sink<Message, Error = Error> + Send + Unpin
{
}

impl<T> Transport for T where
    T: Stream<Item = Result<Message, Error>> + Sink<Message, Error = Error> + Send + Unpin
{
}

/// A transport whose concrete type is erased.
pub type BoxTransport = Box<dyn Transport>;

/// The transport a consumer's connection runs on. The server's own TCP connections are held
/// inline, in the connection's task, rather than behind a box and a vtable: every delivery and
/// every loop turn reaches them, and at fan-out rates the pointer chase to a separate
/// allocation (a cache miss per member woken) showed in profiles. Test pipes and streams hyper
/// could not hand back are boxed.
#[expect(
    clippy::large_enum_variant,
    reason = "inline on purpose: the TCP variant is the one every connection of the server uses"
)]
pub(crate) enum Socket {
    /// A TCP connection of this server.
    Tcp(TcpTransport),
    /// Anything else.
    Boxed(BoxTransport),
}

impl Stream for Socket {
    type Item = Result<Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.get_mut() {
            Socket::Tcp(tcp) => Pin::new(tcp).poll_next(cx),
            Socket::Boxed(boxed) => Pin::new(boxed).poll_next(cx),
        }
    }
}

impl Sink<Message> for Socket {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        match self.get_mut() {
            Socket::Tcp(tcp) => Pin::new(tcp).poll_ready(cx),
            Socket::Boxed(boxed) => Pin::new(boxed).poll_ready(cx),
        }
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Error> {
        match self.get_mut() {
            Socket::Tcp(tcp) => Pin::new(tcp).start_send(item),
            Socket::Boxed(boxed) => Pin::new(boxed).start_send(item),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        match self.get_mut() {
            Socket::Tcp(tcp) => Pin::new(tcp).poll_flush(cx),
            Socket::Boxed(boxed) => Pin::new(boxed).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        match self.get_mut() {
            Socket::Tcp(tcp) => Pin::new(tcp).poll_close(cx),
            Socket::Boxed(boxed) => Pin::new(boxed).poll_close(cx),
        }
    }
}
