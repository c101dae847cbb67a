//! [`ReplayableBody`] for concrete body types.

use bytes::Bytes;
use http_body_util::combinators::{BoxBody, UnsyncBoxBody};
use http_body_util::{Empty, Full, Limited, StreamBody};

use super::{Replay, ReplayableBody};

impl ReplayableBody for () {
    fn replayable(self, _cap: usize) -> (Self, Replay<Self>) {
        ((), Replay::clone_of(()))
    }
}

impl ReplayableBody for Full<Bytes> {
    fn replayable(self, _cap: usize) -> (Self, Replay<Self>) {
        let copy = self.clone();
        (self, Replay::clone_of(copy))
    }
}

impl ReplayableBody for Empty<Bytes> {
    fn replayable(self, _cap: usize) -> (Self, Replay<Self>) {
        (self, Replay::clone_of(Empty::new()))
    }
}

impl ReplayableBody for String {
    fn replayable(self, _cap: usize) -> (Self, Replay<Self>) {
        let copy = self.clone();
        (self, Replay::clone_of(copy))
    }
}

impl ReplayableBody for Bytes {
    fn replayable(self, _cap: usize) -> (Self, Replay<Self>) {
        let copy = self.clone();
        (self, Replay::clone_of(copy))
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

/// Not replayable: a body received from hyper cannot be rebuilt.
#[cfg(any(feature = "default-client", feature = "sign-in"))]
impl ReplayableBody for hyper::body::Incoming {
    fn replayable(self, _cap: usize) -> (Self, Replay<Self>) {
        (self, Replay::none())
    }
}
