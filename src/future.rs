//! [`ResponseFuture`]: the state machine of one request (and [`NoReplayFuture`], the same
//! without 401 handling).
//!
//! ```text
//!            cached token                  401 (Bearer) / grpc-status 16
//! call ─────────────────────► Called ─────────────────────────────────────► Refreshing
//!   │ no token                  ▲  │ │ 401, no challenge                 ▲      │ new token
//!   └──► WaitingForToken ───────┘  │ └──► ReadingBody ───────────────────┘      ▼
//!                                  │      (its start; an API key rejection:  ReadyingReplay
//!                                  ▼       done)            (newer token) ──►  (the first
//!                              (response) ◄── Replaying ◄──────────────────── body settles,
//!                                            (no further replay)               the clone is
//!                                                                              readied, the
//!                                                                              token checked)
//! ```
//!
//! A 401 with no challenge may be API Management's answer to an invalid API key, which no
//! token fixes: `ReadingBody` reads at most [`BODY_PREFIX_CAP`] bytes of its body, for at
//! most [`BODY_PREFIX_TIMEOUT`], and [`classify_body`] decides. The body read is handed on
//! whole ([`ResponseBody`]). A body that fails while read is handed on with its error, and
//! nothing is replayed; one that stalls past the deadline counts as a token rejection, as a
//! bare 401 always did.
//!
//! What every stage may need lives on the future itself: the authenticator (only when a
//! 401 can be acted on, that is with replay on), the generation of the token the first
//! attempt carried, and the replay state (a clone of the service, a copy of the request
//! head from a per-thread pool, the body's replay), kept inline. With a cached token and
//! replay off, the future is the inner future and a tag.
//!
//! Readying the replay, in order:
//! 1. The first attempt's body settles: h2 may still hold it when the response arrives and
//!    drop it a moment later (hyper's pipe task sees the server's reset after the response
//!    future does). A replay needs that body's end or its unread rest, so the future waits
//!    for the recording to end, be dropped, go over the cap or fail, for at most
//!    [`BODY_SETTLE_TIMEOUT`]; a body still held then (a bidirectional stream, a server that
//!    stopped reading) is not replayed: the caller gets the 401.
//! 2. The clone is readied. If that fails, the caller gets the 401 it would have had.
//! 3. The token is checked once the clone is ready, since readying may wait long (a
//!    concurrency limit, a buffer): one that expired meanwhile is not sent; the future waits
//!    for a valid one from the cache, and the replay carries that.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};

use http::{Request, Response, response};
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_service::Service;

use crate::{
    AfterRejection, AuthHeaders, Authenticator, BoxError, Generation, HeadersFuture,
    classify::{BODY_PREFIX_CAP, BODY_PREFIX_TIMEOUT, Rejection, classify, classify_body},
    head_pool::{PooledHead, copy_head},
    replay::{Replay, ReplayPolicy},
    response_body::{PrefixEnd, ReadPrefix, ResponseBody},
    runtime::timer,
};

pin_project! {
    /// The response future of [`VeracityAuth`](crate::VeracityAuth) (with replay, the
    /// default): the inner service's response with its body in a [`ResponseBody`].
    pub struct ResponseFuture<S, B, ResBody>
    where
        S: Service<Request<B>>,
        ResBody: Body,
    {
        // Set when a 401 can be acted on (replay on): to refresh the rejected token.
        authenticator: Option<Authenticator>,
        // The token the first attempt carries.
        generation: Generation,
        // What a replay sends, if the body allows one.
        replay: Option<ReplayState<S, B>>,
        #[pin]
        stage: Stage<S, B, ResBody>,
    }
}

/// The response the caller gets from a [`ResponseFuture`].
type Answer<ResBody> = Response<ResponseBody<ResBody>>;

pin_project! {
    #[project = StageProj]
    enum Stage<S, B, ResBody>
    where
        S: Service<Request<B>>,
        ResBody: Body,
    {
        // The first attempt is in flight.
        Called {
            #[pin]
            future: S::Future,
        },
        // No valid token was cached: waiting for the cache's single fetch, holding the
        // readied service and the request.
        WaitingForToken {
            token: HeadersFuture,
            call: Option<Box<(S, Request<B>)>>,
        },
        // A 401 without a challenge came back: reading the start of its body to tell an
        // API key rejection from a token one.
        ReadingBody {
            head: Option<response::Parts>,
            read: ReadPrefix<ResBody>,
        },
        // A 401 came back: waiting for a token newer than the rejected one.
        Refreshing {
            token: HeadersFuture,
            // The 401: the answer if no replay can be sent.
            rejected: Option<Answer<ResBody>>,
        },
        // A newer token is at hand: letting the first body settle, readying the replay's
        // service, renewing the token if it expired meanwhile.
        ReadyingReplay {
            // The 401: the answer if no replay can be sent.
            rejected: Option<Answer<ResBody>>,
            // `None` while `renew` runs.
            token: Option<AuthHeaders>,
            // The token expired while the clone was readied: a valid one from the cache.
            renew: Option<HeadersFuture>,
            // Bounds the wait for the first body; armed only if that body has not settled.
            settle_deadline: Option<Pin<Box<Sleep>>>,
            settled: bool,
            ready: bool,
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

/// A request no valid token was cached for, with its replay state (cold path, boxed).
pub(crate) type RequestAwaitingToken<S, B> = (Request<B>, Option<ReplayState<S, B>>);

/// The one impossible case: a stage's owned data is taken once, as the stage ends.
const TAKEN_ONCE: &str = "a stage's data is taken once, as the stage ends";

/// A 401's body is read only when a 401 can be acted on, that is with the authenticator.
const READ_WITH_REPLAY: &str = "a 401's body is read only with replay on";

/// What a replay sends: an unreadied clone of the service, the request head and the body's
/// replay. Kept inline in the future; the head's header map comes from a per-thread pool
/// and goes back to it.
pub(crate) struct ReplayState<S, B> {
    service: S,
    parts: PooledHead,
    body: Replay<B>,
}

/// Splits `request` so it can be sent now and, maybe, once more. A body that can never be
/// replayed (its type cannot be rebuilt, or it is larger than the cap) keeps no copy of
/// the service or the head.
#[inline]
fn prepare_replay<R, S, B>(
    service: &S,
    request: Request<B>,
    max_body: usize,
) -> (Request<B>, Option<ReplayState<S, B>>)
where
    S: Clone,
    R: ReplayPolicy<B>,
{
    let (parts, body) = request.into_parts();
    let (body, replay) = R::prepare(body, max_body);
    let state = replay.is_possible().then(|| ReplayState {
        service: service.clone(),
        parts: copy_head(&parts),
        body: replay,
    });
    (Request::from_parts(parts, body), state)
}

impl<S, B, ResBody> ResponseFuture<S, B, ResBody>
where
    S: Service<Request<B>>,
    ResBody: Body,
{
    /// The hot path with replay off (or for a request to another origin): the inner future
    /// and a tag.
    #[inline]
    pub(crate) fn called(future: S::Future) -> Self {
        ResponseFuture {
            authenticator: None,
            generation: Generation::NONE,
            replay: None,
            stage: Stage::Called { future },
        }
    }

    /// The hot path with replay on, `request` not yet authorized: keeps what a replay needs
    /// (the head is copied before the credentials go in, which a replay replaces anyway),
    /// then authorizes `request` and calls `service`. `Err` gives the request back with its
    /// replay state when no valid token is cached, for [`waiting_for_token`](Self::waiting_for_token).
    #[inline]
    pub(crate) fn try_called_with_replay<R>(
        service: &mut S,
        request: Request<B>,
        authenticator: &Authenticator,
        max_body: usize,
    ) -> Result<Self, Box<RequestAwaitingToken<S, B>>>
    where
        S: Clone,
        R: ReplayPolicy<B>,
    {
        let (mut request, replay) = prepare_replay::<R, _, _>(service, request, max_body);
        let Some(generation) = authenticator.authorize(request.headers_mut()) else {
            return Err(Box::new((request, replay)));
        };
        Ok(ResponseFuture {
            authenticator: Some(authenticator.clone()),
            generation,
            replay,
            stage: Stage::Called {
                future: service.call(request),
            },
        })
    }

    /// The cold path: wait for a token, then call the readied `service`. With replay on,
    /// `replay` holds the authenticator and what a replay sends, prepared up front.
    pub(crate) fn waiting_for_token(
        token: HeadersFuture,
        service: S,
        request: Request<B>,
        replay: Option<(&Authenticator, Option<ReplayState<S, B>>)>,
    ) -> Self {
        let (authenticator, replay) = match replay {
            Some((authenticator, replay)) => (Some(authenticator.clone()), replay),
            None => (None, None),
        };
        ResponseFuture {
            authenticator,
            generation: Generation::NONE,
            replay,
            stage: Stage::WaitingForToken {
                token,
                call: Some(Box::new((service, request))),
            },
        }
    }
}

impl<S, B, ResBody> Future for ResponseFuture<S, B, ResBody>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
    ResBody: Body,
{
    type Output = Result<Answer<ResBody>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.stage.as_mut().project() {
                StageProj::Called { future } => {
                    let response = ready!(future.poll(cx)).map_err(Into::into)?;
                    // Replay off: nothing to decide, the response is the answer.
                    let Some(authenticator) = this.authenticator.as_ref() else {
                        return Poll::Ready(Ok(response.map(ResponseBody::new)));
                    };
                    let next = match classify(response.status(), response.headers()) {
                        Rejection::None => return Poll::Ready(Ok(response.map(ResponseBody::new))),
                        Rejection::ApiKey => {
                            return Poll::Ready(Ok(api_key_rejected(
                                response.map(ResponseBody::new),
                            )));
                        }
                        Rejection::BodyDecides => {
                            let (head, body) = response.into_parts();
                            Stage::ReadingBody {
                                head: Some(head),
                                read: ReadPrefix::new(body, BODY_PREFIX_CAP, BODY_PREFIX_TIMEOUT),
                            }
                        }
                        Rejection::Token => match token_rejected(
                            authenticator,
                            *this.generation,
                            this.replay.as_ref(),
                            response.map(ResponseBody::new),
                        ) {
                            Ok(next) => next,
                            Err(response) => return Poll::Ready(Ok(response)),
                        },
                    };
                    this.stage.set(next);
                }
                StageProj::ReadingBody { head, read } => {
                    let (body, prefix, end) = ready!(Pin::new(read).poll(cx));
                    let response = Response::from_parts(head.take().expect(TAKEN_ONCE), body);
                    let complete = match end {
                        PrefixEnd::Complete => true,
                        PrefixEnd::Partial => false,
                        PrefixEnd::Failed => {
                            tracing::debug!(
                                target: "veracity_auth",
                                "the body of a 401 failed while read: returning it, no replay"
                            );
                            return Poll::Ready(Ok(response));
                        }
                    };
                    let authenticator = this.authenticator.as_ref().expect(READ_WITH_REPLAY);
                    let next = match classify_body(&prefix, complete) {
                        Rejection::ApiKey => return Poll::Ready(Ok(api_key_rejected(response))),
                        _ => token_rejected(
                            authenticator,
                            *this.generation,
                            this.replay.as_ref(),
                            response,
                        ),
                    };
                    match next {
                        Ok(next) => this.stage.set(next),
                        Err(response) => return Poll::Ready(Ok(response)),
                    }
                }
                StageProj::WaitingForToken { token, call } => {
                    let headers = ready!(Pin::new(token).poll(cx));
                    let (mut service, mut request) = *call.take().expect(TAKEN_ONCE);
                    let headers = headers?;
                    headers.insert_into(request.headers_mut());
                    *this.generation = headers.generation();
                    let future = service.call(request);
                    this.stage.set(Stage::Called { future });
                }
                StageProj::Refreshing { token, rejected } => {
                    let token = ready!(Pin::new(token).poll(cx));
                    let rejected = rejected.take().expect(TAKEN_ONCE);
                    match token {
                        Ok(token) => this.stage.set(Stage::readying(token, rejected)),
                        // No new token: the caller gets the 401 it would have had.
                        Err(_) => return Poll::Ready(Ok(rejected)),
                    }
                }
                StageProj::ReadyingReplay {
                    rejected,
                    token,
                    renew,
                    settle_deadline,
                    settled,
                    ready,
                } => {
                    let mut readiness = ReplayReadiness {
                        authenticator: this.authenticator.as_ref(),
                        replay: &mut *this.replay,
                        token: &mut *token,
                        renew,
                        settle_deadline,
                        settled,
                        ready,
                    };
                    ready!(readiness.poll(cx));
                    let rejected = rejected.take().expect(TAKEN_ONCE);
                    let (Some(token), Some(replay)) = (token.take(), this.replay.take()) else {
                        return Poll::Ready(Ok(rejected));
                    };
                    let Some(body) = replay.body.take() else {
                        return Poll::Ready(Ok(rejected));
                    };
                    drop(rejected);
                    let ReplayState {
                        mut service, parts, ..
                    } = replay;
                    let mut parts = parts.into_parts();
                    token.insert_into(&mut parts.headers);
                    if let Some(authenticator) = this.authenticator.as_ref() {
                        authenticator.count_replay();
                    }
                    tracing::debug!(
                        target: "veracity_auth",
                        generation = token.generation().get(),
                        "replaying the request with a new token after a 401"
                    );
                    let future = service.call(Request::from_parts(parts, body));
                    this.stage.set(Stage::Replaying { future });
                }
                StageProj::Replaying { future } => {
                    let response = ready!(future.poll(cx));
                    this.stage.set(Stage::Done);
                    return Poll::Ready(
                        response
                            .map(|response| response.map(ResponseBody::new))
                            .map_err(Into::into),
                    );
                }
                StageProj::Done => return Poll::Ready(Err(polled_after_completion())),
            }
        }
    }
}

impl<S, B, ResBody> Stage<S, B, ResBody>
where
    S: Service<Request<B>>,
    ResBody: Body,
{
    fn readying(token: AuthHeaders, rejected: Answer<ResBody>) -> Self {
        Stage::ReadyingReplay {
            rejected: Some(rejected),
            token: Some(token),
            renew: None,
            settle_deadline: None,
            settled: false,
            ready: false,
        }
    }
}

/// What follows a token rejection: get a newer token (single flight, rate-limited) even if
/// the body cannot be replayed, so the next request gets a good one (dropping the wait does
/// not cancel the refresh it may have started), and replay if the body allows. `Err` is the
/// answer when there is nothing to wait for.
fn token_rejected<S, B, ResBody>(
    authenticator: &Authenticator,
    generation: Generation,
    replay: Option<&ReplayState<S, B>>,
    response: Answer<ResBody>,
) -> Result<Stage<S, B, ResBody>, Answer<ResBody>>
where
    S: Service<Request<B>>,
    ResBody: Body,
{
    let after = authenticator.rejected(generation);
    if !replay.is_some_and(|r| r.body.is_possible()) {
        return Err(response);
    }
    match after {
        AfterRejection::Refused => {
            tracing::debug!(
                target: "veracity_auth",
                "401 within the replay refresh interval: returning it without a new token"
            );
            Err(response)
        }
        AfterRejection::Newer(token) => Ok(Stage::readying(token, response)),
        AfterRejection::Wait(token) => Ok(Stage::Refreshing {
            token,
            rejected: Some(response),
        }),
    }
}

/// The gateway rejected the API key: says so, and hands the response on.
fn api_key_rejected<T>(response: Response<T>) -> Response<T> {
    tracing::warn!(
        target: "veracity_auth",
        status = response.status().as_u16(),
        "the gateway rejected the API key (Ocp-Apim-Subscription-Key); \
         a new token cannot fix that, returning the response"
    );
    response
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
        stage: NoReplayStage<S, B>,
    }
}

pin_project! {
    #[project = NoReplayStageProj]
    enum NoReplayStage<S, B>
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
            stage: NoReplayStage::Called { future },
        }
    }

    /// The cold path: wait for a token, then call the readied `service`.
    pub(crate) fn waiting_for_token(token: HeadersFuture, service: S, request: Request<B>) -> Self {
        NoReplayFuture {
            stage: NoReplayStage::WaitingForToken {
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

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.stage.as_mut().project() {
                NoReplayStageProj::Called { future } => {
                    return future.poll(cx).map_err(Into::into);
                }
                NoReplayStageProj::WaitingForToken { token, call } => {
                    let headers = ready!(Pin::new(token).poll(cx));
                    let (mut service, mut request) = *call.take().expect(TAKEN_ONCE);
                    headers?.insert_into(request.headers_mut());
                    let future = service.call(request);
                    this.stage.set(NoReplayStage::Called { future });
                }
            }
        }
    }
}

/// Whether the replay can be sent yet: the readying step, over the future's fields.
struct ReplayReadiness<'a, S, B> {
    authenticator: Option<&'a Authenticator>,
    replay: &'a mut Option<ReplayState<S, B>>,
    token: &'a mut Option<AuthHeaders>,
    renew: &'a mut Option<HeadersFuture>,
    settle_deadline: &'a mut Option<Pin<Box<Sleep>>>,
    settled: &'a mut bool,
    ready: &'a mut bool,
}

impl<S, B> ReplayReadiness<'_, S, B>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    /// Ready when the replay can be sent (the clone ready, the token valid, the body
    /// settled) or must not be: then `token` or the replay is `None`, or the body's
    /// [`Replay::take`] says no, and the caller gets the 401.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(replay) = self.replay.as_mut() else {
            return Poll::Ready(());
        };
        if !*self.settled {
            if replay.body.poll_settled(cx).is_pending() {
                if self.settle_deadline.is_none() {
                    *self.settle_deadline = timer(BODY_SETTLE_TIMEOUT);
                }
                let Some(deadline) = self.settle_deadline.as_mut() else {
                    // No timer to bound the wait with: do not wait.
                    *self.replay = None;
                    return Poll::Ready(());
                };
                ready!(deadline.as_mut().poll(cx));
                *self.replay = None;
                tracing::debug!(
                    target: "veracity_auth",
                    "the first attempt's body is still being sent: returning the 401"
                );
                return Poll::Ready(());
            }
            *self.settled = true;
            *self.settle_deadline = None;
            if !replay.body.is_possible() {
                *self.replay = None;
                return Poll::Ready(());
            }
        }
        if !*self.ready {
            if let Err(error) = ready!(replay.service.poll_ready(cx)) {
                let error: BoxError = error.into();
                tracing::debug!(
                    target: "veracity_auth",
                    error = %error,
                    "readying the service for the replay failed: returning the 401"
                );
                *self.replay = None;
                return Poll::Ready(());
            }
            *self.ready = true;
        }
        loop {
            if let Some(renew) = self.renew.as_mut() {
                let renewed = ready!(Pin::new(renew).poll(cx));
                *self.renew = None;
                match renewed {
                    Ok(token) => *self.token = Some(token),
                    Err(_) => return Poll::Ready(()),
                }
            }
            match self.token.as_ref() {
                Some(token) if token.is_usable() => return Poll::Ready(()),
                Some(_) => {
                    tracing::debug!(
                        target: "veracity_auth",
                        "the new token expired while the service was readied: waiting for another"
                    );
                    *self.token = None;
                    *self.renew = self.authenticator.map(Authenticator::headers);
                    if self.renew.is_none() {
                        return Poll::Ready(());
                    }
                }
                None => return Poll::Ready(()),
            }
        }
    }
}

fn polled_after_completion() -> BoxError {
    "ResponseFuture polled after completion".into()
}
