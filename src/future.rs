//! [`ResponseFuture`]: the state machine of one request (and [`NoReplayFuture`], the same
//! without 401 handling). What a response means, [`rejection`] decides from its head; this
//! future only sequences the I/O. The response is the inner service's, unchanged: no body
//! is read.
//!
//! ```text
//!                 cached token
//! call ───────────────────────────► Calling ── no rejection, the API key's, ──► (response)
//!   │ no token                       ▲   │     or the replay's answer
//!   └──► Waiting ────────────────────┘   │ a rejected token: `rejection::renewal`
//!                                        ▼
//!                                    Renewing (a token newer than the rejected one)
//!                                     ▲  │
//!          the new token expired      │  ▼
//!          while the service readied  └─ Readying (the first body settles, the clone is
//!                                        │        readied, the token is checked)
//!                                        ▼
//!                                    Calling the replay (no further replay)
//! ```
//!
//! Every state after a rejection answers with the 401 when it cannot go on: `rejection`
//! gives no renewal (the API key was rejected, the rejection interval has not passed), the
//! request cannot be replayed (its renewal still runs, for the next request), no newer
//! token comes, the first body is not settled in time, the clone cannot be readied, or the
//! body cannot be replayed after all.
//!
//! What every state may need lives on the future itself: the authenticator (only while a
//! 401 can be acted on: for the first attempt of a request to one of its origins), the
//! generation of the token the first attempt carried, and the replay state (a clone of the
//! service, a copy of the request head whose header map comes boxed from a per-thread pool,
//! the body's replay), kept inline. Each state holds only its own data: the future it
//! polls, and after a rejection the 401 (the answer if no replay can be sent), boxed then (a
//! cold path), so the future every request moves is the inner future, the replay state and
//! three words.
//!
//! The hot path (a cached token, a response that is no rejection) costs: a copy of the head
//! (the URI's two reference counts; no header map when the request has none yet, as the
//! credentials go in after the copy), the authenticator's reference count, and one inline
//! check of the response (in [`rejection::Rejection::of`]: a 401, or a 200 with headers
//! where a gRPC status may be).
//!
//! `Readying`, in order:
//! 1. The first attempt's body settles. h2 may still hold it when the response arrives and
//!    drop it a moment later (hyper's pipe task sees the server's reset after the response
//!    future does). A replay needs that body's end or its unread rest, so the future waits
//!    for the recording to end, be dropped, go over the cap or fail, for at most
//!    [`BODY_SETTLE_TIMEOUT`]; a body still held then (a bidirectional stream, a server that
//!    stopped reading) is not replayed: the caller gets the 401.
//! 2. The clone is readied. If that fails, the caller gets the 401 it would have had.
//! 3. The token is checked once the clone is ready, since readying may wait long (a
//!    concurrency limit, a buffer): one that expired meanwhile is not sent; `Renewing` waits
//!    for a valid one from the cache, and the replay carries that.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};

use http::{Request, Response, request::Parts};
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_service::Service;

use crate::{
    AuthHeaders, Authenticator, BoxError, Generation, HeadersFuture,
    head_pool::{PooledHead, copy_head},
    rejection,
    replay::{Replay, ReplayableBody},
    runtime::timer,
};

pin_project! {
    /// The response future of [`VeracityAuth`](crate::VeracityAuth) (with replay, the
    /// default): the inner service's response, or the replay's.
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        // Set while a 401 can be acted on (the first attempt of a request for one of the
        // authenticator's origins): to renew the rejected token.
        authenticator: Option<Authenticator>,
        // The token the first attempt carries.
        generation: Generation,
        // What a replay sends, if the body allows one.
        replay: Option<ReplayState<S, B>>,
        #[pin]
        state: State<S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<B>>,
    {
        // No valid token was cached: waiting for the cache's single fetch, holding the
        // readied service and the request.
        Waiting {
            token: HeadersFuture,
            call: Option<Box<(S, Request<B>)>>,
        },
        // An attempt is in flight: the first, or the replay, whose answer is the answer.
        Calling {
            #[pin]
            future: S::Future,
        },
        // The token was rejected: waiting for a newer one.
        Renewing {
            token: HeadersFuture,
            rejected: Option<Box<S::Response>>,
        },
        // A newer token is at hand: waiting for the first attempt's body to settle (for at
        // most `BODY_SETTLE_TIMEOUT`, a deadline armed only if it has not settled at the
        // first look), then readying the replay's service.
        Readying {
            token: Option<AuthHeaders>,
            rejected: Option<Box<S::Response>>,
            deadline: Option<Pin<Box<Sleep>>>,
        },
    }
}

/// How long a replay waits, after its new token is at hand, for the first attempt's body to
/// be dropped or to end. h2 drops it a moment after the response arrives.
pub(crate) const BODY_SETTLE_TIMEOUT: Duration = Duration::from_secs(1);

/// The one impossible case: a state's owned data is taken once, as the state ends.
const TAKEN_ONCE: &str = "a state's data is taken once, as the state ends";

/// A 401 is renewed only with the authenticator, and only for a request that can be
/// replayed.
const RENEWED_WITH_REPLAY: &str =
    "a 401 is renewed only with the authenticator, for a request with a replay";

/// What a replay sends: an unreadied clone of the service, the request head and the body's
/// replay. Kept inline in the future; the head's header map comes boxed from a per-thread
/// pool and goes back to it.
pub(crate) struct ReplayState<S, B> {
    service: S,
    parts: PooledHead,
    body: Replay<B>,
}

/// Prepares a request (its `head` and `body`) to be sent now and, maybe, once more: returns
/// the body to send and what a replay sends. A body that can never be replayed (its type
/// cannot be rebuilt, or it is larger than the cap) keeps no copy of the service or the
/// head. The head is copied before the credentials go in, which a replay replaces anyway.
#[inline]
pub(crate) fn prepare_replay<S: Clone, B: ReplayableBody>(
    service: &S,
    head: &Parts,
    body: B,
    max_body: usize,
) -> (B, Option<ReplayState<S, B>>) {
    let (body, replay) = body.replayable(max_body);
    let state = replay.is_possible().then(|| ReplayState {
        service: service.clone(),
        parts: copy_head(head),
        body: replay,
    });
    (body, state)
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    /// A request to another origin: the inner future and a tag; its 401s are not acted on.
    #[inline]
    pub(crate) fn called(future: S::Future) -> Self {
        ResponseFuture {
            authenticator: None,
            generation: Generation::NONE,
            replay: None,
            state: State::Calling { future },
        }
    }

    /// The hot path: the first attempt's `future`, sent with the cached token of
    /// `generation`, and what a replay sends ([`prepare_replay`]).
    #[inline]
    pub(crate) fn called_with_replay(
        future: S::Future,
        generation: Generation,
        authenticator: &Authenticator,
        replay: Option<ReplayState<S, B>>,
    ) -> Self {
        ResponseFuture {
            authenticator: Some(authenticator.clone()),
            generation,
            replay,
            state: State::Calling { future },
        }
    }

    /// The cold path: wait for a token, then call the readied `service`; `replay` is what a
    /// replay sends, prepared up front.
    pub(crate) fn waiting_for_token(
        token: HeadersFuture,
        service: S,
        request: Request<B>,
        authenticator: &Authenticator,
        replay: Option<ReplayState<S, B>>,
    ) -> Self {
        ResponseFuture {
            authenticator: Some(authenticator.clone()),
            generation: Generation::NONE,
            replay,
            state: State::Waiting {
                token,
                call: Some(Box::new((service, request))),
            },
        }
    }
}

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
{
    type Output = Result<Response<ResBody>, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.state.as_mut().project() {
                StateProj::Waiting { token, call } => {
                    let headers = ready!(Pin::new(token).poll(cx));
                    let (mut service, mut request) = *call.take().expect(TAKEN_ONCE);
                    let headers = headers?;
                    headers.insert_into(request.headers_mut());
                    *this.generation = headers.generation();
                    State::Calling {
                        future: service.call(request),
                    }
                }
                StateProj::Calling { future } => {
                    let response = ready!(future.poll(cx)).map_err(Into::into)?;
                    // The hot path: another origin's response, the replay's, or one that is
                    // no rejection of the token is the answer.
                    let renewal = this.authenticator.as_ref().and_then(|authenticator| {
                        rejection::renewal(
                            authenticator,
                            *this.generation,
                            response.status(),
                            response.headers(),
                        )
                    });
                    let Some(token) = renewal else {
                        return Poll::Ready(Ok(response));
                    };
                    if !this.replay.as_ref().is_some_and(|r| r.body.is_possible()) {
                        tracing::debug!(
                            target: "veracity_auth",
                            "401 for a request that cannot be replayed: returning it"
                        );
                        return Poll::Ready(Ok(response));
                    }
                    State::Renewing {
                        token,
                        rejected: Some(Box::new(response)),
                    }
                }
                StateProj::Renewing { token, rejected } => {
                    let token = ready!(Pin::new(token).poll(cx));
                    let rejected = rejected.take().expect(TAKEN_ONCE);
                    match token {
                        Ok(token) => State::Readying {
                            token: Some(token),
                            rejected: Some(rejected),
                            deadline: None,
                        },
                        // No new token: the caller gets the 401 it would have had.
                        Err(_) => return Poll::Ready(Ok(*rejected)),
                    }
                }
                StateProj::Readying {
                    token,
                    rejected,
                    deadline,
                } => {
                    let replay = this.replay.as_mut().expect(RENEWED_WITH_REPLAY);
                    if replay.body.poll_settled(cx).is_pending() {
                        if deadline.is_none() {
                            *deadline = timer(BODY_SETTLE_TIMEOUT);
                        }
                        // No timer to bound the wait with: do not wait.
                        if let Some(deadline) = deadline.as_mut() {
                            ready!(deadline.as_mut().poll(cx));
                            tracing::debug!(
                                target: "veracity_auth",
                                "the first attempt's body is still being sent: returning the 401"
                            );
                        }
                        return Poll::Ready(Ok(*rejected.take().expect(TAKEN_ONCE)));
                    }
                    if !replay.body.is_possible() {
                        return Poll::Ready(Ok(*rejected.take().expect(TAKEN_ONCE)));
                    }
                    if let Err(error) = ready!(replay.service.poll_ready(cx)) {
                        let error: BoxError = error.into();
                        tracing::debug!(
                            target: "veracity_auth",
                            error = %error,
                            "readying the service for the replay failed: returning the 401"
                        );
                        return Poll::Ready(Ok(*rejected.take().expect(TAKEN_ONCE)));
                    }
                    let token = token.take().expect(TAKEN_ONCE);
                    let rejected = rejected.take().expect(TAKEN_ONCE);
                    let authenticator = this.authenticator.take().expect(RENEWED_WITH_REPLAY);
                    if !token.is_usable() {
                        tracing::debug!(
                            target: "veracity_auth",
                            "the new token expired while the service was readied: waiting for another"
                        );
                        let token = authenticator.headers();
                        *this.authenticator = Some(authenticator);
                        State::Renewing {
                            token,
                            rejected: Some(rejected),
                        }
                    } else {
                        let ReplayState {
                            mut service,
                            parts,
                            body,
                        } = this.replay.take().expect(RENEWED_WITH_REPLAY);
                        let Some(body) = body.take() else {
                            return Poll::Ready(Ok(*rejected));
                        };
                        drop(rejected);
                        let mut parts = parts.into_parts();
                        rejection::replaying(&authenticator, &token, &mut parts.headers);
                        // The authenticator is gone: the replay's answer is the answer.
                        State::Calling {
                            future: service.call(Request::from_parts(parts, body)),
                        }
                    }
                }
            };
            this.state.set(next);
        }
    }
}

// === impl NoReplayFuture ===

pin_project! {
    /// The response future of a [`VeracityAuth`](crate::VeracityAuth) built
    /// [`without_replay`](crate::VeracityAuthLayer::without_replay): the inner service's
    /// response, unchanged. It waits for a token when none is cached, and acts on no 401.
    pub struct NoReplayFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: NoReplayState<S, B>,
    }
}

pin_project! {
    #[project = NoReplayStateProj]
    enum NoReplayState<S, B>
    where
        S: Service<Request<B>>,
    {
        Calling {
            #[pin]
            future: S::Future,
        },
        Waiting {
            token: HeadersFuture,
            call: Option<Box<(S, Request<B>)>>,
        },
    }
}

impl<S, B> NoReplayFuture<S, B>
where
    S: Service<Request<B>>,
{
    /// The hot path: the inner future and a tag.
    #[inline]
    pub(crate) fn called(future: S::Future) -> Self {
        NoReplayFuture {
            state: NoReplayState::Calling { future },
        }
    }

    /// The cold path: wait for a token, then call the readied `service`.
    pub(crate) fn waiting_for_token(token: HeadersFuture, service: S, request: Request<B>) -> Self {
        NoReplayFuture {
            state: NoReplayState::Waiting {
                token,
                call: Some(Box::new((service, request))),
            },
        }
    }
}

impl<S, B> Future for NoReplayFuture<S, B>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                NoReplayStateProj::Calling { future } => {
                    return future.poll(cx).map_err(Into::into);
                }
                NoReplayStateProj::Waiting { token, call } => {
                    let headers = ready!(Pin::new(token).poll(cx));
                    let (mut service, mut request) = *call.take().expect(TAKEN_ONCE);
                    headers?.insert_into(request.headers_mut());
                    let future = service.call(request);
                    this.state.set(NoReplayState::Calling { future });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{convert::Infallible, future::Ready};

    use super::*;

    #[derive(Clone)]
    struct Noop;

    impl Service<Request<()>> for Noop {
        type Response = Response<String>;
        type Error = Infallible;
        type Future = Ready<Result<Response<String>, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Request<()>) -> Self::Future {
            std::future::ready(Ok(Response::new(String::new())))
        }
    }

    /// Every request moves the future a few times: what only a 401 needs (the 401 itself,
    /// the new token) is boxed when it happens, so the hot path's future is
    /// the inner future, the replay state and a few words.
    #[test]
    fn the_states_after_a_401_take_no_more_room_than_the_inner_future() {
        let inner = size_of::<Ready<Result<Response<String>, Infallible>>>();
        let state = size_of::<State<Noop, ()>>();
        assert!(
            state <= inner + 8,
            "state {state} bytes, inner future {inner}"
        );
        let future = size_of::<ResponseFuture<Noop, ()>>();
        let replay = size_of::<Option<ReplayState<Noop, ()>>>();
        assert!(
            future <= state + replay + 32,
            "future {future} bytes, state {state}, replay {replay}"
        );
    }
}
