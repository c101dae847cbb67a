//! [`VeracityAuthLayer`]: the tower adapter's configuration, over one [`Authenticator`].

use std::{fmt, marker::PhantomData};

use tower_layer::Layer;

use crate::{
    AuthStats, Authenticator, VeracityAuth,
    replay::{NoReplay, Replaying},
};

/// The most bytes of a streaming request body buffered for a replay, unless set.
pub(crate) const DEFAULT_MAX_REPLAY_BODY: usize = 64 * 1024;

/// Adds `Authorization: Bearer <token>` and `Ocp-Apim-Subscription-Key` to every request,
/// and replays a request once after a 401 with a new token.
///
/// A plain value made from a built [`Authenticator`] (the token cache, the API key, the
/// origins) plus the replay settings. Every service it builds, every clone of the layer and
/// of those services, and every other user of the same authenticator share one cache and one
/// set of counters.
///
/// ```
/// use std::time::Duration;
/// use veracity_auth::{Authenticator, CachePolicy, ClientCredentials, VeracityAuthLayer};
///
/// let authenticator = Authenticator::builder(ClientCredentials::new("client-id", "client-secret"))
///     .api_key("api-key")
///     .cache_policy(CachePolicy::default().refresh_ahead(Duration::from_secs(600)))
///     .build()?;
/// let layer = VeracityAuthLayer::new(authenticator.clone());
/// // `authenticator` can serve a non-tower client too: one cache, one set of counters.
/// assert_eq!(layer.stats(), authenticator.stats());
/// # Ok::<(), veracity_auth::Error>(())
/// ```
///
/// # Replay and body types
///
/// The default layer, `VeracityAuthLayer<Replaying>` (or just `VeracityAuthLayer`), replays
/// a request once after a 401, so it needs its body type to be a
/// [`ReplayableBody`](crate::replay::ReplayableBody). [`without_replay`](Self::without_replay)
/// gives a `VeracityAuthLayer<NoReplay>`, which never replays and takes any
/// `http_body::Body`, with no trait to implement. Both answer with the inner service's
/// response unchanged (any response type; no body is read).
#[derive(Clone)]
pub struct VeracityAuthLayer<R = Replaying> {
    authenticator: Authenticator,
    max_replay_body: usize,
    policy: PhantomData<R>,
}

impl VeracityAuthLayer {
    /// A layer over `authenticator`, replaying a request once after a 401.
    pub fn new(authenticator: Authenticator) -> Self {
        VeracityAuthLayer {
            authenticator,
            max_replay_body: DEFAULT_MAX_REPLAY_BODY,
            policy: PhantomData,
        }
    }

    /// The most bytes of a streaming request body buffered for a replay (default 64 KiB).
    /// Larger bodies stream through unbuffered and their 401 is returned as it is. Empty
    /// and `Clone` bodies (`Full`, `String`, `()`) replay whatever their size.
    pub fn max_replay_body(mut self, bytes: usize) -> Self {
        self.max_replay_body = bytes;
        self
    }

    /// A layer that never replays, for any request body type (`B: http_body::Body`, no
    /// [`ReplayableBody`](crate::replay::ReplayableBody) needed): 401s pass through without
    /// refreshing the token, expiry-driven refresh is unchanged, and the hot path keeps
    /// nothing per request.
    pub fn without_replay(self) -> VeracityAuthLayer<NoReplay> {
        VeracityAuthLayer {
            authenticator: self.authenticator,
            max_replay_body: self.max_replay_body,
            policy: PhantomData,
        }
    }
}

impl<R> VeracityAuthLayer<R> {
    /// The authenticator every service of this layer uses.
    pub fn authenticator(&self) -> &Authenticator {
        &self.authenticator
    }

    /// What the layer's authenticator has done so far.
    pub fn stats(&self) -> AuthStats {
        self.authenticator.stats()
    }
}

impl<S, R> Layer<S> for VeracityAuthLayer<R> {
    type Service = VeracityAuth<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        VeracityAuth::from_parts(inner, self.authenticator.clone(), self.max_replay_body)
    }
}

impl<R> fmt::Debug for VeracityAuthLayer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VeracityAuthLayer")
            .field("authenticator", &self.authenticator)
            .field("max_replay_body", &self.max_replay_body)
            .finish()
    }
}
