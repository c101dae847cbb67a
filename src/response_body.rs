//! [`ResponseBody`]: the response body the layer hands on, which is the inner service's
//! body unchanged, or a 401's body whose start was read to classify it, replayed and then
//! continued.
//!
//! Only a 401 without a challenge is read ([`classify`](crate::classify)): API Management
//! may answer an invalid API key that way, with a short JSON body that says so. Reading a
//! prefix consumes frames of a body that cannot be rebuilt (hyper's `Incoming`), so the
//! frames read are kept and handed on first, followed by the rest of the body: the caller
//! reads every byte, and any error, as the server sent them.

use std::{
    collections::VecDeque,
    fmt,
    future::Future,
    io::IoSlice,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::Sleep;

use crate::runtime::timer;

pin_project! {
    /// The response body of [`VeracityAuth`](crate::VeracityAuth) with replay on (the
    /// default): the inner service's body `B`, with the same `Data` and `Error`, so tonic,
    /// hyper and `http_body_util::BodyExt::collect` read it as they read `B`.
    ///
    /// For every response but a 401 without a challenge it is `B` itself, passed through.
    /// For such a 401 the layer read the start of the body (at most 512 bytes, for at most a
    /// second) to tell API Management's answer to an invalid API key from a rejected token;
    /// this body then hands on the frames read, then the rest of `B`: the whole body,
    /// unchanged. An error met while reading comes after the frames read before it.
    ///
    /// A [`VeracityAuthLayer::without_replay`](crate::VeracityAuthLayer::without_replay)
    /// service reads no 401 and keeps the inner service's response type.
    pub struct ResponseBody<B>
    where
        B: Body,
    {
        #[pin]
        body: MaybePrefixed<B>,
    }
}

pin_project! {
    #[project = MaybePrefixedProj]
    enum MaybePrefixed<B>
    where
        B: Body,
    {
        Inner {
            #[pin]
            body: B,
        },
        // A 401 whose start was read (boxed: the read is a cold path, and the box lets the
        // reader move a body it polled).
        Prefixed {
            body: Pin<Box<Prefixed<B>>>,
        },
    }
}

pin_project! {
    /// A body whose first frames were read: those frames, then the error met, if any, then
    /// the rest.
    pub(crate) struct Prefixed<B>
    where
        B: Body,
    {
        read: VecDeque<Frame<B::Data>>,
        error: Option<B::Error>,
        // `rest` said it ended: it is not polled again.
        ended: bool,
        #[pin]
        rest: B,
    }
}

impl<B: Body> ResponseBody<B> {
    /// `body`, passed through unchanged.
    #[inline]
    pub fn new(body: B) -> Self {
        ResponseBody {
            body: MaybePrefixed::Inner { body },
        }
    }

    pub(crate) fn prefixed(body: Pin<Box<Prefixed<B>>>) -> Self {
        ResponseBody {
            body: MaybePrefixed::Prefixed { body },
        }
    }
}

impl<B: Body> Body for ResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        match self.project().body.project() {
            MaybePrefixedProj::Inner { body } => body.poll_frame(cx),
            MaybePrefixedProj::Prefixed { body } => body.as_mut().poll_frame(cx),
        }
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        match &self.body {
            MaybePrefixed::Inner { body } => body.is_end_stream(),
            MaybePrefixed::Prefixed { body } => body.is_end_stream(),
        }
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        match &self.body {
            MaybePrefixed::Inner { body } => body.size_hint(),
            MaybePrefixed::Prefixed { body } => body.size_hint(),
        }
    }
}

impl<B: Body> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.body {
            MaybePrefixed::Inner { .. } => "inner",
            MaybePrefixed::Prefixed { .. } => "prefixed",
        };
        f.debug_struct("ResponseBody")
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}

// === impl Prefixed ===

impl<B: Body> Body for Prefixed<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        if let Some(frame) = this.read.pop_front() {
            return Poll::Ready(Some(Ok(frame)));
        }
        if let Some(error) = this.error.take() {
            *this.ended = true;
            return Poll::Ready(Some(Err(error)));
        }
        if *this.ended {
            return Poll::Ready(None);
        }
        this.rest.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.read.is_empty() && self.error.is_none() && (self.ended || self.rest.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let read: u64 = self
            .read
            .iter()
            .filter_map(Frame::data_ref)
            .map(|data| data.remaining() as u64)
            .sum();
        if self.ended || self.error.is_some() {
            return SizeHint::with_exact(read);
        }
        let rest = self.rest.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower().saturating_add(read));
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(read));
        }
        hint
    }
}

/// How reading the start of a body ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PrefixEnd {
    /// The body ended within the cap: the prefix is the whole body.
    Complete,
    /// The cap was reached, or the deadline passed, first: the prefix is only a start.
    Partial,
    /// The body failed: the error is handed on after the frames read.
    Failed,
}

/// Reads the start of a body: frames until `cap` bytes, the end, an error or the deadline.
/// Resolves to the body to hand on (the frames read, then the rest), the bytes read (at
/// most `cap`) and how the read ended.
pub(crate) struct ReadPrefix<B: Body> {
    body: Option<Pin<Box<Prefixed<B>>>>,
    seen: Vec<u8>,
    cap: usize,
    timeout: Duration,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<B: Body> ReadPrefix<B> {
    pub(crate) fn new(body: B, cap: usize, timeout: Duration) -> Self {
        ReadPrefix {
            body: Some(Box::pin(Prefixed {
                read: VecDeque::new(),
                error: None,
                ended: false,
                rest: body,
            })),
            seen: Vec::new(),
            cap,
            timeout,
            deadline: None,
        }
    }
}

impl<B: Body> Future for ReadPrefix<B> {
    type Output = (ResponseBody<B>, Vec<u8>, PrefixEnd);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let end = {
            let body = this
                .body
                .as_mut()
                .expect("ReadPrefix polled after completion");
            loop {
                let prefixed = body.as_mut().project();
                if prefixed.error.is_some() {
                    break PrefixEnd::Failed;
                }
                if *prefixed.ended {
                    break PrefixEnd::Complete;
                }
                if this.seen.len() >= this.cap {
                    break PrefixEnd::Partial;
                }
                if prefixed.rest.is_end_stream() {
                    *prefixed.ended = true;
                    continue;
                }
                match prefixed.rest.poll_frame(cx) {
                    Poll::Ready(None) => *prefixed.ended = true,
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Some(data) = frame.data_ref()
                            && !copy_start(data, &mut this.seen, this.cap)
                        {
                            // Bytes were left out: what was seen is not the body's start.
                            this.seen.resize(this.cap, 0);
                        }
                        prefixed.read.push_back(frame);
                    }
                    Poll::Ready(Some(Err(error))) => *prefixed.error = Some(error),
                    Poll::Pending => {
                        if this.deadline.is_none() {
                            this.deadline = timer(this.timeout);
                        }
                        // No timer to bound the wait with: do not wait.
                        if let Some(deadline) = this.deadline.as_mut() {
                            ready!(deadline.as_mut().poll(cx));
                        }
                        break PrefixEnd::Partial;
                    }
                }
            }
        };
        let body = this.body.take().expect("taken once, here");
        Poll::Ready((
            ResponseBody::prefixed(body),
            std::mem::take(&mut this.seen),
            end,
        ))
    }
}

/// Appends the start of `data` to `seen`, up to `cap` bytes in all, without consuming it.
/// `false` if a chunk of `data` that would fit was left out (a `Buf` of more than 16
/// chunks).
fn copy_start(data: &impl Buf, seen: &mut Vec<u8>, cap: usize) -> bool {
    let mut chunks = [IoSlice::new(&[]); 16];
    let n = data.chunks_vectored(&mut chunks);
    let mut copied = 0;
    for chunk in &chunks[..n] {
        let room = cap.saturating_sub(seen.len());
        seen.extend_from_slice(&chunk[..chunk.len().min(room)]);
        copied += chunk.len();
        if seen.len() >= cap {
            return true;
        }
    }
    copied >= data.remaining()
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full, StreamBody};

    use super::*;

    type Frames = Vec<Result<Frame<Bytes>, std::io::Error>>;

    fn stream(frames: Frames) -> impl Body<Data = Bytes, Error = std::io::Error> {
        StreamBody::new(futures_util::stream::iter(frames))
    }

    fn data(bytes: &'static [u8]) -> Result<Frame<Bytes>, std::io::Error> {
        Ok(Frame::data(Bytes::from_static(bytes)))
    }

    #[tokio::test]
    async fn a_short_body_is_read_whole_and_handed_on_whole() {
        let body = Full::new(Bytes::from_static(b"{\"statusCode\":401}"));
        let (body, seen, end) = ReadPrefix::new(body, 512, Duration::from_secs(1)).await;
        assert_eq!(
            (seen.as_slice(), end),
            (&b"{\"statusCode\":401}"[..], PrefixEnd::Complete)
        );
        assert!(!body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(18));
        assert_eq!(
            body.collect().await.unwrap().to_bytes(),
            "{\"statusCode\":401}"
        );
    }

    #[tokio::test]
    async fn a_long_body_is_read_up_to_the_cap_and_handed_on_whole_with_its_trailers() {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-end", "1".parse().unwrap());
        let body = stream(vec![
            data(b"0123"),
            data(b"4567"),
            data(b"89"),
            Ok(Frame::trailers(trailers.clone())),
        ]);
        let (body, seen, end) = ReadPrefix::new(body, 6, Duration::from_secs(1)).await;
        assert_eq!((seen.as_slice(), end), (&b"012345"[..], PrefixEnd::Partial));
        let collected = body.collect().await.unwrap();
        assert_eq!(collected.trailers(), Some(&trailers));
        assert_eq!(collected.to_bytes(), "0123456789");
    }

    #[tokio::test]
    async fn an_error_is_handed_on_after_the_frames_read_before_it() {
        let body = stream(vec![
            data(b"{\"a\""),
            Err(std::io::Error::other("reset")),
            data(b"never read"),
        ]);
        let (mut body, seen, end) = ReadPrefix::new(body, 512, Duration::from_secs(1)).await;
        assert_eq!((seen.as_slice(), end), (&b"{\"a\""[..], PrefixEnd::Failed));
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "{\"a\"");
        let error = body.frame().await.unwrap().unwrap_err();
        assert_eq!(error.to_string(), "reset");
        assert!(body.frame().await.is_none());
        assert!(body.is_end_stream());
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_is_read_until_the_deadline_then_continues() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(4);
        tx.send(data(b"{\"statusCode\":")).await.unwrap();
        let body = StreamBody::new(tokio_stream_from(rx));
        let started = tokio::time::Instant::now();
        let (body, seen, end) = ReadPrefix::new(body, 512, Duration::from_secs(1)).await;
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        assert_eq!(
            (seen.as_slice(), end),
            (&b"{\"statusCode\":"[..], PrefixEnd::Partial)
        );
        tx.send(data(b"401}")).await.unwrap();
        drop(tx);
        assert_eq!(
            body.collect().await.unwrap().to_bytes(),
            "{\"statusCode\":401}"
        );
    }

    /// A stream of what `rx` receives, ending when every sender is gone.
    fn tokio_stream_from<T>(
        mut rx: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures_util::Stream<Item = T> {
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }

    #[test]
    fn a_buf_of_many_chunks_is_copied_or_marked_incomplete() {
        let mut seen = Vec::new();
        let two = Bytes::from_static(b"ab").chain(Bytes::from_static(b"cd"));
        assert!(copy_start(&two, &mut seen, 512));
        assert_eq!(seen, b"abcd");
        let mut seen = Vec::new();
        assert!(copy_start(&two, &mut seen, 3), "the cap was reached");
        assert_eq!(seen, b"abc");
    }
}
