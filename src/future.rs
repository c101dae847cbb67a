//! [`ResponseFuture`]: the state machine of one request (and [`NoReplayFuture`], the same
//! without 401 handling). What a response means, [`rejection`] decides from its head (hand
//! it on, wait for a newer token, replay with these headers); this future only sequences
//! the I/O. The response is the inner service's, unchanged: no body is read.
//!
//! ```text
//!              cached token
//! call ───────────────────────► Called ─── no rejection, or the API key's ──► (response)
//!   │ no token                    ▲  │
//!   └──► WaitingForToken ─────────┘  │ 401 / grpc-status 16: ask `rejection`
//!                                    ▼
//!                           wait or replay?
//!                       wait │         │ replay (a newer token is cached)
//!                            ▼         │
//!                       Refreshing     │
//!                newer token │         │
//!                            ▼         ▼
//!                            Settling (the first attempt's body ends or is dropped)
//!                                │
//!                                ▼
//!                         ReadyingService ─── token expired meanwhile ──► Renewing
//!                                │ token usable                              │
//!                                ▼                                           │
//!         (response) ◄──── Replaying ◄──────────── token usable ─────────────┘
//!                       (no further replay)
//! ```
//!
//! Every state after a rejection answers with the 401 when it cannot go on: `rejection`
//! says return it (the API key was rejected, the request cannot be replayed, the refresh
//! interval has not passed), no newer token comes, the first body is not settled in time,
//! the clone cannot be readied, or the body cannot be replayed after all.
//!
//! What every state may need lives on the future itself: the authenticator (only when a
//! 401 can be acted on, that is for a request to one of its origins), the generation of the
//! token the first attempt carried, and the replay state (a clone of the service, a copy of
//! the request head whose header map comes boxed from a per-thread pool, the body's
//! replay), kept inline. Each state holds only its own data: the future it polls, and after
//! a rejection the 401 (the answer if no replay can be sent) and the newer token, boxed
//! then (a cold path), so the future every request moves is the inner future, the replay
//! state and three words.
//!
//! The hot path (a cached token, a response that is no rejection) costs: a copy of the head
//! (the URI's two reference counts; no header map when the request has none yet, as the
//! credentials go in after the copy), the authenticator's reference count, and one inline
//! check of the response ([`rejection::may_be_rejection`]: a 401, or a 200 with headers
//! where a gRPC status may be).
//!
//! Readying the replay, in order:
//! 1. `Settling`: the first attempt's body settles. h2 may still hold it when the response
//!    arrives and drop it a moment later (hyper's pipe task sees the server's reset after
//!    the response future does). A replay needs that body's end or its unread rest, so the
//!    future waits for the recording to end, be dropped, go over the cap or fail, for at
//!    most [`BODY_SETTLE_TIMEOUT`]; a body still held then (a bidirectional stream, a server
//!    that stopped reading) is not replayed: the caller gets the 401.
//! 2. `ReadyingService`: the clone is readied. If that fails, the caller gets the 401 it
//!    would have had.
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
    rejection::{self, Decision},
    replay::{Replay, ReplayPolicy},
    runtime::timer,
};

pin_project! {
    /// The response future of [`VeracityAuth`](crate::VeracityAuth) (with replay, the
    /// default): the inner service's response, or the replay's.
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        // Set when a 401 can be acted on (the request is for one of the authenticator's
        // origins): to refresh the rejected token.
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
        WaitingForToken {
            token: HeadersFuture,
            call: Option<Box<(S, Request<B>)>>,
        },
        // The first attempt is in flight.
        Called {
            #[pin]
            future: S::Future,
        },
        // The token was rejected: waiting for a newer one.
        Refreshing {
            token: HeadersFuture,
            rejected: Option<Box<S::Response>>,
        },
        // A newer token is at hand: waiting for the first attempt's body to end or be
        // dropped, for at most `BODY_SETTLE_TIMEOUT` (the deadline is armed only if it has
        // not settled at the first look).
        Settling {
            token: Option<AuthHeaders>,
            rejected: Option<Box<S::Response>>,
            deadline: Option<Pin<Box<Sleep>>>,
        },
        // The first body settled: readying the replay's service.
        ReadyingService {
            token: Option<AuthHeaders>,
            rejected: Option<Box<S::Response>>,
        },
        // The newer token expired while the service was readied: waiting for a valid one.
        Renewing {
            token: HeadersFuture,
            rejected: Option<Box<S::Response>>,
        },
        // The replay: whatever it answers is the answer.
        Replaying {
            #[pin]
            future: S::Future,
        },
        Done,
    }
}

/// How long a replay waits, after its new token is at hand, for the first attempt's body to
/// be dropped or to end. h2 drops it a moment after the response arrives.
pub(crate) const BODY_SETTLE_TIMEOUT: Duration = Duration::from_secs(1);

/// The one impossible case: a state's owned data is taken once, as the state ends.
const TAKEN_ONCE: &str = "a state's data is taken once, as the state ends";

/// A 401 is acted on only with the authenticator, and a replay is readied only when
/// `rejection` was told the request can be replayed.
const DECIDED_WITH_REPLAY: &str =
    "a 401 is acted on only with the authenticator, a replay readied only with its state";

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
pub(crate) fn prepare_replay<R, S, B>(
    service: &S,
    head: &Parts,
    body: B,
    max_body: usize,
) -> (B, Option<ReplayState<S, B>>)
where
    S: Clone,
    R: ReplayPolicy<B>,
{
    let (body, replay) = R::prepare(body, max_body);
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
            state: State::Called { future },
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
            state: State::Called { future },
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
            state: State::WaitingForToken {
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
                StateProj::WaitingForToken { token, call } => {
                    let headers = ready!(Pin::new(token).poll(cx));
                    let (mut service, mut request) = *call.take().expect(TAKEN_ONCE);
                    let headers = headers?;
                    headers.insert_into(request.headers_mut());
                    *this.generation = headers.generation();
                    State::Called {
                        future: service.call(request),
                    }
                }
                StateProj::Called { future } => {
                    let response = ready!(future.poll(cx)).map_err(Into::into)?;
                    // The hot path: another origin's response, or one that is no rejection,
                    // is the answer.
                    let authenticator = match this.authenticator.as_ref() {
                        Some(authenticator)
                            if rejection::may_be_rejection(
                                response.status(),
                                response.headers(),
                            ) =>
                        {
                            authenticator
                        }
                        _ => return Poll::Ready(Ok(response)),
                    };
                    let next = rejection::after_response(
                        authenticator,
                        *this.generation,
                        response.status(),
                        response.headers(),
                        replayable(this.replay),
                    );
                    match State::after(next, response) {
                        Ok(state) => state,
                        Err(answer) => return Poll::Ready(Ok(answer)),
                    }
                }
                StateProj::Refreshing { token, rejected } => {
                    let token = ready!(Pin::new(token).poll(cx));
                    let rejected = *rejected.take().expect(TAKEN_ONCE);
                    match token {
                        Ok(token) => State::settling(token, rejected),
                        // No new token: the caller gets the 401 it would have had.
                        Err(_) => return Poll::Ready(Ok(rejected)),
                    }
                }
                StateProj::Settling {
                    token,
                    rejected,
                    deadline,
                } => {
                    let replay = this.replay.as_ref().expect(DECIDED_WITH_REPLAY);
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
                    State::ReadyingService {
                        token: token.take(),
                        rejected: rejected.take(),
                    }
                }
                StateProj::ReadyingService { token, rejected } => {
                    let replay = this.replay.as_mut().expect(DECIDED_WITH_REPLAY);
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
                    let rejected = *rejected.take().expect(TAKEN_ONCE);
                    let authenticator = this.authenticator.as_ref().expect(DECIDED_WITH_REPLAY);
                    match send_replay(authenticator, this.replay, token, rejected) {
                        Ok(state) => state,
                        Err(answer) => return Poll::Ready(Ok(answer)),
                    }
                }
                StateProj::Renewing { token, rejected } => {
                    let renewed = ready!(Pin::new(token).poll(cx));
                    let rejected = *rejected.take().expect(TAKEN_ONCE);
                    let Ok(token) = renewed else {
                        return Poll::Ready(Ok(rejected));
                    };
                    let authenticator = this.authenticator.as_ref().expect(DECIDED_WITH_REPLAY);
                    match send_replay(authenticator, this.replay, token, rejected) {
                        Ok(state) => state,
                        Err(answer) => return Poll::Ready(Ok(answer)),
                    }
                }
                StateProj::Replaying { future } => {
                    let response = ready!(future.poll(cx));
                    this.state.set(State::Done);
                    return Poll::Ready(response.map_err(Into::into));
                }
                StateProj::Done => return Poll::Ready(Err(polled_after_completion())),
            };
            this.state.set(next);
        }
    }
}

/// Whether a 401 to this request could be answered by a replay: its body allows one.
#[inline]
fn replayable<S, B>(replay: &Option<ReplayState<S, B>>) -> bool {
    replay.as_ref().is_some_and(|r| r.body.is_possible())
}

/// Sends the replay with `token` once it is ready, or waits for a valid token when `token`
/// expired while the service was readied. `Err` is the answer (the 401) when the body
/// cannot be replayed after all.
fn send_replay<S, B>(
    authenticator: &Authenticator,
    replay: &mut Option<ReplayState<S, B>>,
    token: AuthHeaders,
    rejected: S::Response,
) -> Result<State<S, B>, S::Response>
where
    S: Service<Request<B>>,
{
    if !token.is_usable() {
        tracing::debug!(
            target: "veracity_auth",
            "the new token expired while the service was readied: waiting for another"
        );
        return Ok(State::Renewing {
            token: authenticator.headers(),
            rejected: Some(Box::new(rejected)),
        });
    }
    let replay = replay.take().expect(DECIDED_WITH_REPLAY);
    let Some(body) = replay.body.take() else {
        return Err(rejected);
    };
    drop(rejected);
    let ReplayState {
        mut service, parts, ..
    } = replay;
    let mut parts = parts.into_parts();
    rejection::replaying(authenticator, &token, &mut parts.headers);
    Ok(State::Replaying {
        future: service.call(Request::from_parts(parts, body)),
    })
}

impl<S, B> State<S, B>
where
    S: Service<Request<B>>,
{
    /// The state `rejection` asked for after the 401 `rejected`; `Err` is the answer when
    /// it said to hand the response on.
    fn after(next: Decision, rejected: S::Response) -> Result<Self, S::Response> {
        match next {
            Decision::Return => Err(rejected),
            Decision::Wait(token) => Ok(State::Refreshing {
                token,
                rejected: Some(Box::new(rejected)),
            }),
            Decision::Replay(token) => Ok(State::settling(token, rejected)),
        }
    }

    fn settling(token: AuthHeaders, rejected: S::Response) -> Self {
        State::Settling {
            token: Some(token),
            rejected: Some(Box::new(rejected)),
            deadline: None,
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
        Called {
            #[pin]
            future: S::Future,
        },
        WaitingForToken {
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
            state: NoReplayState::Called { future },
        }
    }

    /// The cold path: wait for a token, then call the readied `service`.
    pub(crate) fn waiting_for_token(token: HeadersFuture, service: S, request: Request<B>) -> Self {
        NoReplayFuture {
            state: NoReplayState::WaitingForToken {
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
                NoReplayStateProj::Called { future } => {
                    return future.poll(cx).map_err(Into::into);
                }
                NoReplayStateProj::WaitingForToken { token, call } => {
                    let headers = ready!(Pin::new(token).poll(cx));
                    let (mut service, mut request) = *call.take().expect(TAKEN_ONCE);
                    headers?.insert_into(request.headers_mut());
                    let future = service.call(request);
                    this.state.set(NoReplayState::Called { future });
                }
            }
        }
    }
}

fn polled_after_completion() -> BoxError {
    "ResponseFuture polled after completion".into()
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
