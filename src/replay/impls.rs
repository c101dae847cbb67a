//! [`ReplayableBody`] for concrete body types.

use bytes::Bytes;
use http_body_util::combinators::{BoxBody, UnsyncBoxBody};
use http_body_util::{Either, Empty, Full, Limited, StreamBody};

use super::{Replay, ReplayableBody};

/// Cheap to clone: a replay sends a clone taken before the first attempt.
macro_rules! replayed_as_a_clone {
    ($($body:ty),*) => {$(
        impl ReplayableBody for $body {
            fn replayable(self, _cap: usize) -> (Self, Replay<Self>) {
                let copy = self.clone();
                (self, Replay::clone_of(copy))
            }
        }
    )*};
}

replayed_as_a_clone!(Full<Bytes>, Empty<Bytes>, String, Bytes);

impl ReplayableBody for () {
    fn replayable(self, _cap: usize) -> (Self, Replay<Self>) {
        ((), Replay::clone_of(()))
    }
}

impl<E: 'static> ReplayableBody for UnsyncBoxBody<Bytes, E> {
    fn replayable(self, cap: usize) -> (Self, Replay<Self>) {
        Replay::record_same(self, cap, UnsyncBoxBody::new, UnsyncBoxBody::new)
    }
}

impl<E: 'static> ReplayableBody for BoxBody<Bytes, E> {
    fn replayable(self, cap: usize) -> (Self, Replay<Self>) {
        Replay::record_same(self, cap, BoxBody::new, BoxBody::new)
    }
}

/// Replays as whichever side it is: the side's own replay, mapped back into `Either`.
impl<L, R> ReplayableBody for Either<L, R>
where
    L: ReplayableBody + 'static,
    R: ReplayableBody + 'static,
{
    fn replayable(self, cap: usize) -> (Self, Replay<Self>) {
        match self {
            Either::Left(body) => {
                let (body, replay) = body.replayable(cap);
                (Either::Left(body), replay.map(Either::Left))
            }
            Either::Right(body) => {
                let (body, replay) = body.replayable(cap);
                (Either::Right(body), replay.map(Either::Right))
            }
        }
    }
}

/// Not replayable: a stream cannot be rebuilt as the same type.
impl<S> ReplayableBody for StreamBody<S> {
    fn replayable(self, _cap: usize) -> (Self, Replay<Self>) {
        (self, Replay::none())
    }
}

/// Not replayable: the limit left cannot be read back to rebuild one.
impl<B> ReplayableBody for Limited<B> {
    fn replayable(self, _cap: usize) -> (Self, Replay<Self>) {
        (self, Replay::none())
    }
}

#[cfg(feature = "tonic")]
impl ReplayableBody for tonic::body::Body {
    fn replayable(self, cap: usize) -> (Self, Replay<Self>) {
        Replay::record_same(self, cap, tonic::body::Body::new, tonic::body::Body::new)
    }
}

/// Recorded as it is sent, like the other boxed bodies (`axum::body::Body` is a boxed body).
#[cfg(feature = "axum")]
impl ReplayableBody for axum_core::body::Body {
    fn replayable(self, cap: usize) -> (Self, Replay<Self>) {
        Replay::record_same(
            self,
            cap,
            axum_core::body::Body::new,
            axum_core::body::Body::new,
        )
    }
}

/// Not replayable: a body received from hyper cannot be rebuilt.
#[cfg(any(feature = "default-client", feature = "sign-in"))]
impl ReplayableBody for hyper::body::Incoming {
    fn replayable(self, _cap: usize) -> (Self, Replay<Self>) {
        (self, Replay::none())
    }
}
