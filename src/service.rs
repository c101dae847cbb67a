//! [`VeracityAuth`]: the service [`VeracityAuthLayer`](crate::VeracityAuthLayer) builds.

use std::{
    fmt,
    marker::PhantomData,
    task::{Context, Poll},
};

use http::{Request, Response};
use tower_service::Service;

use crate::{
    AuthStats, Authenticator, BoxError,
    cache::TokenView,
    future::{NoReplayFuture, ResponseFuture, prepare_replay},
    layer::DEFAULT_MAX_REPLAY_BODY,
    replay::{NoReplay, ReplayableBody, Replaying},
};

/// Middleware that authenticates every request; see [`VeracityAuthLayer`](crate::VeracityAuthLayer).
///
/// Cloning it clones the inner service and increments one reference count.
///
/// # Clone
///
/// The service needs `S: Clone`. A request that may be replayed after a 401 keeps an
/// unreadied clone of the inner service (readied again before the replay is sent), and a
/// request that has to wait for a token takes the readied service along into its future
/// and leaves a clone in its place, as tower's guide on cloning inner services advises.
/// Services that are expensive to clone can be wrapped in `tower::buffer::Buffer`, which is
/// `Clone` and cheap to clone.
///
/// # Replay
///
/// `R` says whether requests are replayed after a 401: [`Replaying`] (the default, so
/// `VeracityAuth<S>` names it) needs the request body to be a
/// [`ReplayableBody`](crate::replay::ReplayableBody). [`NoReplay`], from
/// [`VeracityAuthLayer::without_replay`](crate::VeracityAuthLayer::without_replay), takes
/// any body type. Either way the response is the inner service's, unchanged.
///
/// # Origins
///
/// With [origins](crate::AuthenticatorBuilder::origins) set, a request to another origin is
/// passed to the inner service as it is, but for this authenticator's own credentials
/// (copied along by a redirect follower, say), which are removed; its 401s are not acted on.
pub struct VeracityAuth<S, R = Replaying> {
    inner: S,
    authenticator: Authenticator,
    /// This service's view of the token: its hot path writes nothing shared.
    view: TokenView,
    max_replay_body: usize,
    policy: PhantomData<R>,
}

impl<S> VeracityAuth<S> {
    /// Wraps `inner` with the credentials of `authenticator`, replaying once after a 401;
    /// [`VeracityAuthLayer`](crate::VeracityAuthLayer) makes the same as a layer.
    pub fn new(inner: S, authenticator: Authenticator) -> Self {
        VeracityAuth::from_parts(inner, authenticator, DEFAULT_MAX_REPLAY_BODY)
    }
}

impl<S, R> VeracityAuth<S, R> {
    pub(crate) fn from_parts(
        inner: S,
        authenticator: Authenticator,
        max_replay_body: usize,
    ) -> Self {
        VeracityAuth {
            inner,
            view: authenticator.view(),
            authenticator,
            max_replay_body,
            policy: PhantomData,
        }
    }

    /// The authenticator this service shares with its clones (and its layer).
    pub fn authenticator(&self) -> &Authenticator {
        &self.authenticator
    }

    /// A reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// A mutable reference to the inner service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// What the shared token cache has done so far.
    pub fn stats(&self) -> AuthStats {
        self.authenticator.stats()
    }
}

impl<S: Clone, R> Clone for VeracityAuth<S, R> {
    fn clone(&self) -> Self {
        VeracityAuth {
            inner: self.inner.clone(),
            authenticator: self.authenticator.clone(),
            view: self.view.clone(),
            max_replay_body: self.max_replay_body,
            policy: PhantomData,
        }
    }
}

impl<S: fmt::Debug, R> fmt::Debug for VeracityAuth<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VeracityAuth")
            .field("inner", &self.inner)
            .field("authenticator", &self.authenticator)
            .finish_non_exhaustive()
    }
}

impl<S, R> VeracityAuth<S, R> {
    /// A request to an origin the credentials are not for: none are added, and copies of
    /// this authenticator's are removed.
    #[cold]
    #[inline(never)]
    fn prepare_foreign<B>(&self, request: &mut Request<B>) {
        self.authenticator
            .remove_own_credentials(request.headers_mut());
    }
}

impl<S, B, ResBody> Service<Request<B>> for VeracityAuth<S, Replaying>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
    B: ReplayableBody,
{
    type Response = Response<ResBody>;
    type Error = BoxError;
    type Future = ResponseFuture<S, B>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        if !self.authenticator.is_for(request.uri()) {
            self.prepare_foreign(&mut request);
            return ResponseFuture::called(self.inner.call(request));
        }
        // Hot path: a valid token is cached; the readied inner service is called at once.
        // A replay gets its own clone, readied again before use. The request is split once:
        // its head is copied and authorized where it lies, and the request is rebuilt as the
        // inner call's argument (every move of a request copies some 200 bytes).
        let (mut head, body) = request.into_parts();
        let (body, replay) = prepare_replay(&self.inner, &head, body, self.max_replay_body);
        match self
            .authenticator
            .authorize_in(&mut self.view, &mut head.headers)
        {
            Some(generation) => ResponseFuture::called_with_replay(
                self.inner.call(Request::from_parts(head, body)),
                generation,
                &self.authenticator,
                replay,
            ),
            None => ResponseFuture::waiting_for_token(
                self.authenticator.headers(),
                self.take_ready(),
                Request::from_parts(head, body),
                &self.authenticator,
                replay,
            ),
        }
    }
}

impl<S: Clone, R> VeracityAuth<S, R> {
    /// Cold path: the readied inner service, moved into a future that waits for a token
    /// before calling it, and a clone in its place (tower's "be careful when cloning inner
    /// services").
    #[cold]
    #[inline(never)]
    fn take_ready(&mut self) -> S {
        let clone = self.inner.clone();
        std::mem::replace(&mut self.inner, clone)
    }
}

impl<S, B> Service<Request<B>> for VeracityAuth<S, NoReplay>
where
    S: Service<Request<B>> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = NoReplayFuture<S, B>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // Hot path: a valid token is cached (or the request is for another origin).
        let ready = if self.authenticator.is_for(request.uri()) {
            self.authenticator
                .authorize_in(&mut self.view, request.headers_mut())
                .is_some()
        } else {
            self.prepare_foreign(&mut request);
            true
        };
        if ready {
            return NoReplayFuture::called(self.inner.call(request));
        }
        NoReplayFuture::waiting_for_token(self.authenticator.headers(), self.take_ready(), request)
    }
}
