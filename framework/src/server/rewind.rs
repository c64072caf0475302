//! The stream hyper is given: the bytes the server already read off the connection (its first
//! request head, and what came behind it), then the socket; with the connection's permit.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::limits::Permit;

/// A [`TcpStream`] whose first bytes were read already: reads return those first. The permit
/// rides along, so an upgraded connection keeps its place under the limits after hyper lets
/// go of it.
pub(crate) struct Rewind {
    unread: Vec<u8>,
    /// How much of `unread` was read again.
    taken: usize,
    stream: TcpStream,
    permit: Permit,
}

impl Rewind {
    pub(crate) fn new(stream: TcpStream, unread: Vec<u8>, permit: Permit) -> Rewind {
        Rewind {
            unread,
            taken: 0,
            stream,
            permit,
        }
    }

    /// The socket, the bytes not read again yet, and the permit.
    pub(crate) fn into_parts(mut self) -> (TcpStream, Vec<u8>, Permit) {
        self.unread.drain(..self.taken);
        (self.stream, self.unread, self.permit)
    }
}

impl AsyncRead for Rewind {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.taken < this.unread.len() {
            let rest = &this.unread[this.taken..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.taken += n;
            if this.taken == this.unread.len() {
                // Nothing more to give back: free it for the connection's remaining life.
                this.unread = Vec::new();
                this.taken = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
