//! [`VeracityAuth`]: the service [`VeracityAuthLayer`] builds.

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    AuthStats, BoxError, Error, TokenSource, VeracityAuthLayer,
    future::{ResponseFuture, Retry},
    headers::API_KEY_HEADER,
    layer::{ApiKey, Shared},
    replay::ReplayableBody,
};

/// Middleware that authenticates every request; see [`VeracityAuthLayer`].
///
/// Cloning it clones the inner service and increments one reference count.
///
/// # Clone
///
/// The inner service must be `Clone`, as for tower's `Retry`: a request answered 401 is sent
/// again, and the service that sends it again must be one the caller has not readied for
/// another request. So each call takes the service `poll_ready` readied and leaves a clone in
/// its place (the usual `std::mem::replace` pattern); a replay then readies its own clone
/// before sending. Services that are expensive to clone can be wrapped in `tower::buffer::Buffer`,
/// which is `Clone` and cheap to clone.
pub struct VeracityAuth<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> VeracityAuth<S> {
    /// Wraps `inner` with tokens from `source` and the default settings; see
    /// [`VeracityAuthLayer`] to configure more.
    pub fn new<T: TokenSource>(inner: S, source: T) -> Self {
        VeracityAuthLayer::new(source).layer(inner)
    }

    pub(crate) fn from_shared(inner: S, shared: Arc<Shared>) -> Self {
        VeracityAuth { inner, shared }
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
        self.shared.counters.snapshot()
    }
}

impl<S: Clone> Clone for VeracityAuth<S> {
    fn clone(&self) -> Self {
        VeracityAuth {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for VeracityAuth<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VeracityAuth")
            .field("inner", &self.inner)
            .field("api_key", &self.shared.api_key)
            .finish_non_exhaustive()
    }
}

impl<S, B, ResBody> Service<Request<B>> for VeracityAuth<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
    B: ReplayableBody,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, B>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let shared = &*self.shared;
        let api_key = match &shared.api_key {
            ApiKey::Valid(key) => Some(key),
            ApiKey::Invalid => return ResponseFuture::failed(Error::InvalidApiKey),
            ApiKey::None => None,
        };
        // Hot path: a valid token is cached; the readied inner service is called at once.
        // A replay, if enabled, gets its own clone, readied again before use.
        if let Some(generation) = shared.cache.authorize(request.headers_mut(), api_key) {
            if !shared.replay.enabled {
                return ResponseFuture::first(self.inner.call(request), None);
            }
            let (request, retry) = Retry::prepare(&self.inner, request, generation, &self.shared);
            return ResponseFuture::first(self.inner.call(request), Some(retry));
        }
        // Cold path: wait for a token, then call the readied service, which moves into the
        // future (tower's "be careful when cloning inner services").
        if let Some(key) = api_key {
            request.headers_mut().insert(API_KEY_HEADER, key.clone());
        }
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let replay = shared.replay.enabled.then(|| Arc::clone(&self.shared));
        ResponseFuture::acquiring(shared.cache.acquire(), inner, request, replay)
    }
}
