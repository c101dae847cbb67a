//! [`CloneBody`]: any `Clone` body, replayed as a clone.

use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::{Replay, ReplayableBody};

pin_project! {
    /// A `Clone` body of any type, replayed by sending a clone of it (taken before the first
    /// attempt, so nothing is recorded and there is no cap).
    ///
    /// A blanket `impl ReplayableBody for B where B: Clone` is not possible in stable Rust
    /// next to the impls for boxed bodies, so a `Clone` body from another crate is wrapped
    /// instead: send `CloneBody::new(body)`, and the inner service receives
    /// `CloneBody<B>`, a [`Body`] forwarding every frame, size hint and end of stream of `B`.
    /// Your own `Clone` body type can instead implement [`ReplayableBody`] with
    /// [`Replay::clone_of`].
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, Full};
    /// use veracity_auth::replay::{CloneBody, ReplayableBody};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let body = CloneBody::new(Full::new(Bytes::from_static(b"{}")));
    /// let (to_send, replay) = body.replayable(64 * 1024);
    /// assert_eq!(to_send.collect().await.unwrap().to_bytes(), "{}");
    /// let again = replay.take().expect("a clone always replays");
    /// assert_eq!(again.collect().await.unwrap().to_bytes(), "{}");
    /// # });
    /// ```
    #[derive(Clone, Debug, Default)]
    pub struct CloneBody<B> {
        #[pin]
        inner: B,
    }
}

impl<B> CloneBody<B> {
    /// Wraps `body`.
    pub fn new(body: B) -> Self {
        Self { inner: body }
    }

    /// The wrapped body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// Unwraps the body.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B: Body> Body for CloneBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: Clone> ReplayableBody for CloneBody<B> {
    fn replayable(self, _cap: usize) -> (Self, Replay<Self>) {
        let copy = self.clone();
        (self, Replay::clone_of(copy))
    }
}
