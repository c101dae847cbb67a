//! The body that plays a recording back.

use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use super::record::Parts;

/// A body that yields the data chunks recorded by a [`Recording`](super::Recording), then its
/// trailers, if any.
///
/// Its error type `E` is the recorded body's; no error is ever produced. Its size hint is
/// exact.
pub struct Replayed<E> {
    chunks: VecDeque<Bytes>,
    /// Sum of the lengths of `chunks`.
    remaining: usize,
    trailers: Option<HeaderMap>,
    _error: PhantomData<fn() -> E>,
}

impl<E> Replayed<E> {
    pub(crate) fn new(parts: Parts) -> Self {
        Self {
            // Reuses the vector's allocation.
            chunks: VecDeque::from(parts.chunks),
            remaining: parts.len,
            trailers: parts.trailers,
            _error: PhantomData,
        }
    }
}

impl<E> fmt::Debug for Replayed<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Replayed")
            .field("chunks", &self.chunks.len())
            .field("remaining", &self.remaining)
            .field("trailers", &self.trailers.is_some())
            .finish()
    }
}

impl<E> Body for Replayed<E> {
    type Data = Bytes;
    type Error = E;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, E>>> {
        let this = self.get_mut();
        if let Some(chunk) = this.chunks.pop_front() {
            this.remaining = this.remaining.saturating_sub(chunk.len());
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(u64::try_from(self.remaining).unwrap_or(u64::MAX))
    }
}
