//! Replayable request bodies.
//!
//! After an HTTP 401 the layer refreshes its token and sends the request once more. The
//! request body has usually been consumed by then, and the inner service is typed by the
//! body type `B` (tonic's `Channel` only accepts `tonic::body::Body`, hyper-util's
//! `Client<C, B>` is generic over `B`), so a replay has to produce a second body *of the same
//! type*. [`ReplayableBody`] is implemented per body type and decides, once per request and
//! before the first attempt, how that can happen:
//!
//! - bodies that are cheap to clone (`()`, [`Full`](http_body_util::Full),
//!   [`Empty`](http_body_util::Empty), [`String`], [`Bytes`](bytes::Bytes)) keep a clone:
//!   [`Replay::clone_of`]; any other `Clone` body does once wrapped in a [`CloneBody`];
//! - type-erased bodies ([`UnsyncBoxBody`](http_body_util::combinators::UnsyncBoxBody),
//!   [`BoxBody`](http_body_util::combinators::BoxBody), `tonic::body::Body` with the
//!   `tonic` feature and `axum::body::Body` with the `axum` feature) are wrapped in a
//!   [`Recording`] that forwards every frame unchanged and keeps a reference-counted copy of
//!   each data chunk (no byte is copied) and of the trailers, up to a cap; the replay plays
//!   them back through [`Replayed`]: [`Replay::record`] and [`Replay::record_same`];
//! - [`Either`](http_body_util::Either) of two replayable bodies replays as whichever side
//!   it is, through that side's replay and [`Replay::map`]; a body type of your own does the
//!   same (below);
//! - bodies that cannot be rebuilt as the same type
//!   ([`StreamBody`](http_body_util::StreamBody), [`Limited`](http_body_util::Limited), and
//!   hyper's `Incoming`) are not replayed: [`Replay::none`], and the 401 is returned as it is.
//!
//! A recorded body replays if, without an error and without ever holding more than the
//! cap, the first attempt either read it to its end (end of stream seen, trailers included,
//! or all the data its exact size hint promised) or dropped it before its end. h2 and hyper
//! drop a body once the server has answered (a gRPC interceptor rejecting at the headers)
//! or once `Content-Length` bytes are written; the dropped recording then hands its unread
//! rest to the replay, which sends the recorded prefix followed by that rest. So a body of
//! any size replays as long as what was sent before the rejection fits the cap. A body that
//! failed, or went over the cap, does not replay; past the cap the recording frees what it
//! held and keeps streaming. While the first attempt's body is still held (by h2's send
//! stream, say), the replay waits for it to be dropped or to end, for at most a second, and
//! otherwise returns the 401.
//!
//! # Your own body type
//!
//! The layer needs `B: ReplayableBody`. A body type of your own that wraps a body this
//! module replays implements it in a few lines: it asks its inner body for the replay and
//! maps that replay back into itself with [`Replay::map`]. (The trait is this crate's and
//! the inner body type another crate's, so your own type is the only place such an impl can
//! live.)
//!
//! ```
//! use std::pin::Pin;
//! use std::task::{Context, Poll};
//!
//! use bytes::Bytes;
//! use http_body::{Body, Frame, SizeHint};
//! use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
//! use veracity_auth::replay::{Replay, ReplayableBody};
//!
//! /// Your request body: a boxed body inside, recorded as it is sent.
//! pub struct MyBody(UnsyncBoxBody<Bytes, std::io::Error>);
//!
//! impl Body for MyBody {
//!     type Data = Bytes;
//!     type Error = std::io::Error;
//!
//!     fn poll_frame(
//!         mut self: Pin<&mut Self>,
//!         cx: &mut Context<'_>,
//!     ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
//!         Pin::new(&mut self.0).poll_frame(cx)
//!     }
//!
//!     fn is_end_stream(&self) -> bool {
//!         self.0.is_end_stream()
//!     }
//!
//!     fn size_hint(&self) -> SizeHint {
//!         self.0.size_hint()
//!     }
//! }
//!
//! impl ReplayableBody for MyBody {
//!     fn replayable(self, cap: usize) -> (Self, Replay<Self>) {
//!         let (body, replay) = self.0.replayable(cap);
//!         (MyBody(body), replay.map(MyBody))
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let body = MyBody(Full::new(Bytes::from_static(b"{}")).map_err(|e| match e {}).boxed_unsync());
//! let (to_send, replay) = body.replayable(64 * 1024);
//! // The first attempt sends the body to its end...
//! assert_eq!(to_send.collect().await.unwrap().to_bytes(), "{}");
//! // ...and the replay is a `MyBody` with the same bytes.
//! let again: MyBody = replay.take().expect("recorded within the cap");
//! assert_eq!(again.collect().await.unwrap().to_bytes(), "{}");
//! # });
//! ```
//!
//! An enum of bodies maps each variant's replay the same way, as the impl for
//! [`Either`](http_body_util::Either) does.
//!
//! A body type of your own that cannot be rebuilt opts out in three lines (its 401s are
//! then returned as they are, and still refresh the token):
//!
//! ```
//! use veracity_auth::replay::{Replay, ReplayableBody};
//!
//! struct UploadBody {/* a body read from a socket, say */}
//!
//! impl ReplayableBody for UploadBody {
//!     fn replayable(self, _cap: usize) -> (Self, Replay<Self>) {
//!         (self, Replay::none())
//!     }
//! }
//! ```
//!
//! A streaming body you want replayed is best sent boxed
//! (`http_body_util::BodyExt::boxed_unsync`), which is recorded up to the cap:
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Full};
//! use veracity_auth::replay::ReplayableBody;
//!
//! let body = Full::new(Bytes::from_static(b"{}")).map_err(|e| match e {}).boxed_unsync();
//! let (to_send, replay) = body.replayable(64 * 1024);
//! assert!(replay.is_possible());
//! # let _: http_body_util::combinators::UnsyncBoxBody<Bytes, std::convert::Infallible> = to_send;
//! ```

mod cloned;
mod impls;
mod record;
mod replayed;
#[cfg(test)]
mod tests;

pub use cloned::CloneBody;
pub use record::{Recording, Replay};
pub use replayed::Replayed;

/// A request body type that the layer knows how to replay after a 401.
pub trait ReplayableBody: Sized {
    /// Called once per request, before the first attempt: returns the body to send now and
    /// what a replay needs. `cap` is the most bytes that may be buffered.
    fn replayable(self, cap: usize) -> (Self, Replay<Self>);
}

/// Whether a [`VeracityAuth`](crate::VeracityAuth) service replays requests after a 401, as
/// a type: requests are replayed once with a new token (the default), and the body type
/// must be a [`ReplayableBody`]. See [`VeracityAuthLayer`](crate::VeracityAuthLayer).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Replaying;

/// Requests are never replayed: 401s pass through without refreshing the token (expiry-driven
/// refresh is unchanged), and nothing is kept per request. Any `http_body::Body` works. From
/// [`VeracityAuthLayer::without_replay`](crate::VeracityAuthLayer::without_replay).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NoReplay;
