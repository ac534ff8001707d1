//! A socket whose calls are watched: every read and write result passes through a [`Watch`],
//! which may act on a call that could not proceed (start a clock, give a turn away) or turn it
//! into an error. One wrapper for what connections watch: stalled sends (`StallGuard`) and
//! turns (`TurnIo`).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Which way a watched call went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    Read,
    /// A write, flush or shutdown.
    Write,
}

/// What a [`Watched`] socket does with each call's result.
pub trait Watch {
    fn watch<R>(
        &mut self,
        cx: &mut Context<'_>,
        call: Call,
        polled: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>>;
}

/// `inner`, with `watch` seeing every call's result.
pub struct Watched<T, W> {
    inner: T,
    watch: W,
}

impl<T, W> Watched<T, W> {
    pub fn new(inner: T, watch: W) -> Watched<T, W> {
        Watched { inner, watch }
    }
}

impl<T: AsyncRead + Unpin, W: Watch + Unpin> AsyncRead for Watched<T, W> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.watch.watch(cx, Call::Read, polled)
    }
}

impl<T: AsyncWrite + Unpin, W: Watch + Unpin> AsyncWrite for Watched<T, W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.watch.watch(cx, Call::Write, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.watch.watch(cx, Call::Write, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.watch.watch(cx, Call::Write, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.watch.watch(cx, Call::Write, polled)
    }
}
