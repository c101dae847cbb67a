//! The body that plays a recording back.

use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

/// The unread remainder of a body dropped before its end. In a `Mutex` only so that
/// `Replayed` stays `Sync`; it is reached through `get_mut`, never locked.
type Rest<E> = Mutex<Pin<Box<dyn Body<Data = Bytes, Error = E> + Send>>>;

/// The frames a recording holds, handed over for a replay: the data chunks (shared, not
/// copied), their total length and the trailers.
pub(crate) struct RecordedFrames {
    pub(crate) chunks: Vec<Bytes>,
    pub(crate) len: usize,
    pub(crate) trailers: Option<HeaderMap>,
}

/// A body that yields the data chunks recorded by a [`Recording`](super::Recording), then
/// its trailers, if any; or, when the recorded body was dropped before its end, the rest of
/// that body, frames forwarded as they come.
///
/// Its error type `E` is the recorded body's; no error is produced but the rest's. Its size
/// hint is exact, unless the rest's is not.
pub struct Replayed<E> {
    chunks: VecDeque<Bytes>,
    /// Sum of the lengths of `chunks`.
    remaining: usize,
    trailers: Option<HeaderMap>,
    rest: Option<Rest<E>>,
    _error: PhantomData<fn() -> E>,
}

impl<E> Replayed<E> {
    pub(crate) fn new<T>(parts: RecordedFrames, rest: Option<T>) -> Self
    where
        T: Body<Data = Bytes, Error = E> + Send + 'static,
    {
        Self {
            // Reuses the vector's allocation.
            chunks: VecDeque::from(parts.chunks),
            remaining: parts.len,
            trailers: parts.trailers,
            rest: rest.map(|rest| {
                Mutex::new(Box::pin(rest) as Pin<Box<dyn Body<Data = Bytes, Error = E> + Send>>)
            }),
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
            .field("rest", &self.rest.is_some())
            .finish()
    }
}

impl<E> Body for Replayed<E> {
    type Data = Bytes;
    type Error = E;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, E>>> {
        let this = self.get_mut();
        if let Some(chunk) = this.chunks.pop_front() {
            this.remaining = this.remaining.saturating_sub(chunk.len());
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if let Some(rest) = this.rest.as_mut() {
            let rest = rest.get_mut().unwrap_or_else(|e| e.into_inner());
            let polled = rest.as_mut().poll_frame(cx);
            if let Poll::Ready(None) = polled {
                this.rest = None;
            }
            return polled;
        }
        Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
            && self.trailers.is_none()
            && self.rest.as_ref().is_none_or(|rest| {
                rest.try_lock()
                    .map(|rest| rest.is_end_stream())
                    .unwrap_or(false)
            })
    }

    fn size_hint(&self) -> SizeHint {
        let recorded = u64::try_from(self.remaining).unwrap_or(u64::MAX);
        let Some(rest) = self.rest.as_ref() else {
            return SizeHint::with_exact(recorded);
        };
        let Ok(rest) = rest.try_lock() else {
            let mut hint = SizeHint::new();
            hint.set_lower(recorded);
            return hint;
        };
        let rest = rest.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(recorded.saturating_add(rest.lower()));
        if let Some(upper) = rest.upper() {
            hint.set_upper(recorded.saturating_add(upper));
        }
        hint
    }
}
