//! The Postgres client's stream with a cap on one message's bytes, so that pgwire, which
//! buffers a whole message before it decodes it, never holds more than the cap.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pgwire::tokio::server::MaybeTls;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use datafusion_postgres::pgwire;

/// The client's stream, counting the bytes read since the last whole message: past `limit`
/// a read fails, so pgwire never buffers more of one message than that. Reads are cut to the
/// room left, so one read cannot overshoot by more than a byte.
pub(super) struct Capped {
    pub(super) io: MaybeTls,
    /// The bytes one message may take.
    pub(super) limit: usize,
    /// Bytes read since the last whole message.
    pub(super) read: usize,
    /// A read failed because of the limit.
    pub(super) refused: bool,
}

impl Capped {
    pub(super) fn new(io: MaybeTls, limit: usize) -> Self {
        Self {
            io,
            limit,
            read: 0,
            refused: false,
        }
    }
}

impl AsyncRead for Capped {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let room = (this.limit + 1).saturating_sub(this.read);
        if room == 0 {
            this.refused = true;
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "message over the size limit",
            )));
        }
        // As tokio's `Take` does: read into the first `room` bytes of the free space.
        let mut part = buf.take(room);
        let start = part.filled().as_ptr();
        ready!(Pin::new(&mut this.io).poll_read(cx, &mut part))?;
        assert_eq!(
            start,
            part.filled().as_ptr(),
            "the reader swapped the buffer"
        );
        let n = part.filled().len();
        // SAFETY: the `n` bytes were just initialized by the read above.
        unsafe { buf.assume_init(n) };
        buf.advance(n);
        this.read += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Capped {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
