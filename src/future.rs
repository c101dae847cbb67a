//! [`ResponseFuture`]: the state machine of one request.
//!
//! ```text
//!            cached token                       401 / grpc-status 16
//! call ──────────────────────► First ──────────────────────────────► Reauthenticating
//!   │ no token                   ▲  │ anything else: done                  │ new token
//!   └──► Acquiring ──────────────┘  ▼                                      ▼
//!                                 (response)     ◄── Second ◄──────── Readying
//!                                                  (no further replay)   (the first body
//!                                                                         settles, the clone
//!                                                                         is readied, the
//!                                                                         token re-checked)
//! ```
//!
//! With a cached token and replay off, the future is the inner future and a tag.
//!
//! Readying, in order:
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
    sync::Arc,
    task::{Context, Poll, ready},
    time::Duration,
};

use http::{Request, Response, header::AUTHORIZATION, request::Parts};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use crate::{
    BoxError, Error,
    cache::{CachedToken, Reauth},
    classify::{Rejection, classify},
    layer::Shared,
    replay::{Replay, ReplayableBody},
    source::BoxFuture,
    stats::Counters,
};

type TokenFuture = BoxFuture<'static, Result<Arc<CachedToken>, Error>>;

pin_project! {
    /// The response future of [`VeracityAuth`](crate::VeracityAuth).
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
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
        // The first attempt; `retry` holds what a replay needs, if one is possible.
        First {
            #[pin]
            future: S::Future,
            retry: Option<Box<Retry<S, B>>>,
        },
        // No token yet: waiting for the cache's single fetch (cold path, boxed).
        Acquiring {
            acquiring: Option<Box<Acquiring<S, B>>>,
        },
        // A 401 came back: waiting for a token newer than the rejected one.
        Reauthenticating {
            token: TokenFuture,
            retry: Option<Box<Retry<S, B>>>,
            rejected: Option<S::Response>,
        },
        // A newer token is at hand: letting the first body settle, readying the replay's
        // service, renewing the token if it expired meanwhile.
        Readying {
            readying: Option<Box<Readying<S, B, S::Response>>>,
        },
        // The replay: whatever it answers is the answer.
        Second {
            #[pin]
            future: S::Future,
        },
        Failed {
            error: Option<Error>,
        },
    }
}

/// The cold path's luggage: the token fetch, the readied service and the request.
struct Acquiring<S, B> {
    token: TokenFuture,
    service: S,
    request: Request<B>,
    shared: Option<Arc<Shared>>,
}

/// What a 401 needs: the generation of the token the first attempt carried and the cache
/// (to refresh it), and, if the body can be replayed, what the replay sends.
pub(crate) struct Retry<S, B> {
    generation: u64,
    shared: Arc<Shared>,
    replay: Option<Replayable<S, B>>,
}

/// How long a replay waits, after its new token is at hand, for the first attempt's body to
/// be dropped or to end. h2 drops it a moment after the response arrives.
pub(crate) const BODY_SETTLE_TIMEOUT: Duration = Duration::from_secs(1);

/// What the replay needs between the new token and the call (cold path, boxed).
struct Readying<S, B, R> {
    /// `None` while `renew` runs.
    token: Option<Arc<CachedToken>>,
    /// The token expired while the clone was readied: a valid one from the cache.
    renew: Option<TokenFuture>,
    /// Bounds the wait for the first body; armed only if that body has not settled.
    settle_deadline: Option<Pin<Box<Sleep>>>,
    settled: bool,
    ready: bool,
    retry: Box<Retry<S, B>>,
    rejected: R,
}

impl<S, B, R> Readying<S, B, R> {
    fn new(token: Arc<CachedToken>, retry: Box<Retry<S, B>>, rejected: R) -> Box<Self> {
        Box::new(Readying {
            token: Some(token),
            renew: None,
            settle_deadline: None,
            settled: false,
            ready: false,
            retry,
            rejected,
        })
    }
}

/// An unreadied clone of the service, the request head and the body's replay.
struct Replayable<S, B> {
    service: S,
    parts: Parts,
    body: Replay<B>,
}

impl<S, B> Retry<S, B> {
    /// Splits `request` so it can be sent now and, maybe, once more. A body that can never
    /// be replayed (its type cannot be rebuilt, or it is larger than the cap) keeps no copy
    /// of the service or the head.
    pub(crate) fn prepare(
        service: &S,
        request: Request<B>,
        generation: u64,
        shared: &Arc<Shared>,
    ) -> (Request<B>, Box<Self>)
    where
        S: Clone,
        B: ReplayableBody,
    {
        let (parts, body) = request.into_parts();
        let (body, replay) = body.replayable(shared.replay.max_body);
        let replay = replay.is_possible().then(|| Replayable {
            service: service.clone(),
            parts: parts.clone(),
            body: replay,
        });
        let retry = Box::new(Retry {
            generation,
            shared: Arc::clone(shared),
            replay,
        });
        (Request::from_parts(parts, body), retry)
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    pub(crate) fn first(future: S::Future, retry: Option<Box<Retry<S, B>>>) -> Self {
        ResponseFuture {
            state: State::First { future, retry },
        }
    }

    pub(crate) fn acquiring(
        token: TokenFuture,
        service: S,
        request: Request<B>,
        shared: Option<Arc<Shared>>,
    ) -> Self {
        ResponseFuture {
            state: State::Acquiring {
                acquiring: Some(Box::new(Acquiring {
                    token,
                    service,
                    request,
                    shared,
                })),
            },
        }
    }

    pub(crate) fn failed(error: Error) -> Self {
        ResponseFuture {
            state: State::Failed { error: Some(error) },
        }
    }
}

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
    B: ReplayableBody,
{
    type Output = Result<Response<ResBody>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::First { future, retry } => {
                    let response = ready!(future.poll(cx)).map_err(Into::into)?;
                    // Replay off: nothing to decide, the response is the answer.
                    if retry.is_none() {
                        return Poll::Ready(Ok(response));
                    }
                    let next = match classify(response.status(), response.headers()) {
                        Rejection::None => return Poll::Ready(Ok(response)),
                        Rejection::ApiKey => {
                            tracing::warn!(
                                target: "veracity_auth",
                                status = response.status().as_u16(),
                                "the gateway rejected the API key (Ocp-Apim-Subscription-Key); \
                                 a new token cannot fix that, returning the response"
                            );
                            return Poll::Ready(Ok(response));
                        }
                        Rejection::Token => after_rejection(retry.take(), response),
                    };
                    match next {
                        Next::Return(response) => return Poll::Ready(Ok(response)),
                        Next::State(state) => this.state.set(state),
                    }
                }
                StateProj::Acquiring { acquiring } => {
                    let Some(waiting) = acquiring else {
                        return Poll::Ready(Err(polled_after_completion()));
                    };
                    let token = ready!(waiting.token.as_mut().poll(cx));
                    let Some(waiting) = acquiring.take() else {
                        return Poll::Ready(Err(polled_after_completion()));
                    };
                    let Acquiring {
                        mut service,
                        mut request,
                        shared,
                        ..
                    } = *waiting;
                    let token = token?;
                    request
                        .headers_mut()
                        .insert(AUTHORIZATION, token.header.clone());
                    let (request, retry) = match &shared {
                        Some(shared) => {
                            let (request, retry) =
                                Retry::prepare(&service, request, token.generation, shared);
                            (request, Some(retry))
                        }
                        None => (request, None),
                    };
                    let future = service.call(request);
                    this.state.set(State::First { future, retry });
                }
                StateProj::Reauthenticating {
                    token,
                    retry,
                    rejected,
                } => {
                    let token = ready!(token.as_mut().poll(cx));
                    let (Some(retry), Some(rejected)) = (retry.take(), rejected.take()) else {
                        return Poll::Ready(Err(polled_after_completion()));
                    };
                    match token {
                        Ok(token) => this.state.set(State::Readying {
                            readying: Some(Readying::new(token, retry, rejected)),
                        }),
                        // No new token: the caller gets the 401 it would have had.
                        Err(_) => return Poll::Ready(Ok(rejected)),
                    }
                }
                StateProj::Readying { readying } => {
                    let Some(r) = readying.as_mut() else {
                        return Poll::Ready(Err(polled_after_completion()));
                    };
                    ready!(r.poll(cx));
                    let Some(r) = readying.take() else {
                        return Poll::Ready(Err(polled_after_completion()));
                    };
                    let Readying {
                        token,
                        retry,
                        rejected,
                        ..
                    } = *r;
                    let Retry { shared, replay, .. } = *retry;
                    let (Some(token), Some(replayable)) = (token, replay) else {
                        return Poll::Ready(Ok(rejected));
                    };
                    let Replayable {
                        mut service,
                        mut parts,
                        body,
                    } = replayable;
                    let Some(body) = body.take() else {
                        return Poll::Ready(Ok(rejected));
                    };
                    drop(rejected);
                    parts.headers.insert(AUTHORIZATION, token.header.clone());
                    Counters::bump(&shared.counters.replays);
                    tracing::debug!(
                        target: "veracity_auth",
                        generation = token.generation,
                        "replaying the request with a new token after a 401"
                    );
                    let future = service.call(Request::from_parts(parts, body));
                    this.state.set(State::Second { future });
                }
                StateProj::Second { future } => return future.poll(cx).map_err(Into::into),
                StateProj::Failed { error } => {
                    let error = error
                        .take()
                        .map_or_else(polled_after_completion, Into::into);
                    return Poll::Ready(Err(error));
                }
            }
        }
    }
}

enum Next<S, B, R>
where
    S: Service<Request<B>>,
{
    Return(R),
    State(State<S, B>),
}

/// The first attempt's token was rejected: get a newer one (single flight, rate-limited)
/// and replay if the body allows; otherwise hand back the 401, having still started the
/// refresh so the next request gets a good token.
fn after_rejection<S, B, R>(retry: Option<Box<Retry<S, B>>>, rejected: R) -> Next<S, B, R>
where
    S: Service<Request<B>, Response = R>,
{
    let Some(retry) = retry else {
        return Next::Return(rejected);
    };
    let reauth = retry.shared.cache.reauthenticate(retry.generation);
    if !retry.replay.as_ref().is_some_and(|r| r.body.is_possible()) {
        // Dropping the wait does not cancel the refresh it may have started.
        return Next::Return(rejected);
    }
    match reauth {
        Reauth::Denied => {
            tracing::debug!(
                target: "veracity_auth",
                "401 within the re-authentication interval: returning it without a new token"
            );
            Next::Return(rejected)
        }
        Reauth::Use(token) => Next::State(State::Readying {
            readying: Some(Readying::new(token, retry, rejected)),
        }),
        Reauth::Wait(token) => Next::State(State::Reauthenticating {
            token,
            retry: Some(retry),
            rejected: Some(rejected),
        }),
    }
}

impl<S, B, R> Readying<S, B, R>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    /// Ready when the replay can be sent (the clone ready, the token valid, the body
    /// settled) or must not be: then `token` or the replay is `None`, or the body's
    /// [`Replay::take`] says no, and the caller gets the 401.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(replayable) = self.retry.replay.as_mut() else {
            return Poll::Ready(());
        };
        if !self.settled {
            if replayable.body.poll_settled(cx).is_pending() {
                if self.settle_deadline.is_none() {
                    self.settle_deadline = settle_deadline();
                }
                let Some(deadline) = self.settle_deadline.as_mut() else {
                    // No timer to bound the wait with: do not wait.
                    self.retry.replay = None;
                    return Poll::Ready(());
                };
                ready!(deadline.as_mut().poll(cx));
                self.retry.replay = None;
                tracing::debug!(
                    target: "veracity_auth",
                    "the first attempt's body is still being sent: returning the 401"
                );
                return Poll::Ready(());
            }
            self.settled = true;
            self.settle_deadline = None;
            if !replayable.body.is_possible() {
                self.retry.replay = None;
                return Poll::Ready(());
            }
        }
        if !self.ready {
            if let Err(error) = ready!(replayable.service.poll_ready(cx)) {
                let error: BoxError = error.into();
                tracing::debug!(
                    target: "veracity_auth",
                    error = %error,
                    "readying the service for the replay failed: returning the 401"
                );
                self.retry.replay = None;
                return Poll::Ready(());
            }
            self.ready = true;
        }
        loop {
            if let Some(renew) = self.renew.as_mut() {
                let renewed = ready!(renew.as_mut().poll(cx));
                self.renew = None;
                match renewed {
                    Ok(token) => self.token = Some(token),
                    Err(_) => return Poll::Ready(()),
                }
            }
            match &self.token {
                Some(token) if Instant::now() < token.usable_until => return Poll::Ready(()),
                Some(_) => {
                    tracing::debug!(
                        target: "veracity_auth",
                        "the new token expired while the service was readied: waiting for another"
                    );
                    self.token = None;
                    self.renew = Some(self.retry.shared.cache.acquire());
                }
                None => return Poll::Ready(()),
            }
        }
    }
}

/// A timer bounding the wait for the first body, if this thread has a runtime with a
/// time driver.
fn settle_deadline() -> Option<Pin<Box<Sleep>>> {
    tokio::runtime::Handle::try_current().ok()?;
    // `sleep` panics on a runtime built without the time driver.
    std::panic::catch_unwind(|| Box::pin(tokio::time::sleep(BODY_SETTLE_TIMEOUT))).ok()
}

fn polled_after_completion() -> BoxError {
    "ResponseFuture polled after completion".into()
}
