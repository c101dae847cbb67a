//! [`VeracityAuthLayer`]: the tower adapter's configuration, over one [`Authenticator`].

use std::{fmt, marker::PhantomData, time::Duration};

use tower_layer::Layer;

use crate::{
    AuthStats, Authenticator, AuthenticatorBuilder, TokenSource, VeracityAuth,
    replay::{NoReplay, Replaying},
    service::ReplayConfig,
};

/// Adds `Authorization: Bearer <token>` and `Ocp-Apim-Subscription-Key` to every request,
/// and replays a request once after a 401 with a new token.
///
/// A layer is a built value: one [`Authenticator`] (the token cache) plus the replay
/// settings. Every service it builds, every clone of the layer and of those services, shares
/// that authenticator, its cache and its counters.
///
/// There is one way to make one, from an authenticator, and two shorthands for it:
/// [`new`](Self::new) (an authenticator with the default settings) and
/// [`from_env`](Self::from_env). The methods that set something of the authenticator
/// ([`api_key`](Self::api_key), [`origins`](Self::origins), the durations) are shorthands for
/// [`AuthenticatorBuilder`]'s, meant where the layer is made: each returns a layer with an
/// authenticator of its own, built from this one's settings ([`Authenticator::to_builder`])
/// with one changed, and an empty cache. To share one authenticator between the layer and
/// other clients, configure it with [`Authenticator::builder`] and make the layer with
/// [`VeracityAuthLayer::from`]. The replay setting ([`max_replay_body`](Self::max_replay_body))
/// and [`without_replay`](Self::without_replay) keep the authenticator.
///
/// Unusable settings (a negative jitter, a zero timeout, an API key that cannot be a header,
/// an origin that is not one) make every request fail with their error and send nothing;
/// [`AuthenticatorBuilder::try_build`] refuses them where the authenticator is built instead.
///
/// ```
/// use std::time::Duration;
/// use veracity_auth::{ClientCredentials, VeracityAuthLayer};
///
/// let auth = VeracityAuthLayer::new(ClientCredentials::new("client-id", "client-secret"))
///     .api_key("api-key")
///     .refresh_ahead(Duration::from_secs(600))
///     .fetch_timeout(Duration::from_secs(10));
/// ```
///
/// The same, with the settings in one builder and refused there if unusable:
///
/// ```
/// use std::time::Duration;
/// use veracity_auth::{Authenticator, ClientCredentials, VeracityAuthLayer};
///
/// let authenticator = Authenticator::builder(ClientCredentials::new("client-id", "client-secret"))
///     .api_key("api-key")
///     .refresh_ahead(Duration::from_secs(600))
///     .fetch_timeout(Duration::from_secs(10))
///     .try_build()?;
/// let auth = VeracityAuthLayer::from(authenticator);
/// # Ok::<(), veracity_auth::Error>(())
/// ```
///
/// One authenticator can feed a layer and other clients at once:
///
/// ```
/// use veracity_auth::{Authenticator, StaticToken, VeracityAuthLayer};
///
/// let auth = Authenticator::builder(StaticToken::new("token")).api_key("key").build();
/// let layer = VeracityAuthLayer::from(auth.clone());
/// // `auth` serves a non-tower client; both share one cache and one set of counters.
/// assert_eq!(layer.stats(), auth.stats());
/// ```
///
/// # Origins
///
/// By default credentials go with every request the stack sends. When the stack can follow
/// redirects (tower-http's `FollowRedirect` outside this layer), name the origins they are
/// for with [`origins`](Self::origins): a request to any other origin then carries neither
/// the token nor the API key.
///
/// # Replay and body types
///
/// The default layer, `VeracityAuthLayer<Replaying>` (or just `VeracityAuthLayer`), replays
/// a request once after a 401, so it needs its body type to be a
/// [`ReplayableBody`](crate::replay::ReplayableBody). [`without_replay`](Self::without_replay)
/// gives a `VeracityAuthLayer<NoReplay>`, which never replays and takes any
/// `http_body::Body`, with no trait to implement. Both answer with the inner service's
/// response unchanged (any response type; no body is read):
///
/// ```
/// use veracity_auth::{StaticToken, VeracityAuthLayer, replay::NoReplay};
///
/// let layer: VeracityAuthLayer<NoReplay> =
///     VeracityAuthLayer::new(StaticToken::new("token")).api_key("key").without_replay();
/// ```
#[derive(Clone)]
pub struct VeracityAuthLayer<R = Replaying> {
    authenticator: Authenticator,
    replay: ReplayConfig,
    policy: PhantomData<R>,
}

impl VeracityAuthLayer {
    /// A layer that takes tokens from `source`, with the default settings and no API key.
    pub fn new<T: TokenSource>(source: T) -> Self {
        VeracityAuthLayer::from(Authenticator::new(source))
    }

    /// The most bytes of a streaming request body buffered for a replay (default 64 KiB).
    /// Larger bodies stream through unbuffered and their 401 is returned as it is. Empty
    /// and `Clone` bodies (`Full`, `String`, `()`) replay whatever their size. Keeps the
    /// authenticator.
    pub fn max_replay_body(mut self, bytes: usize) -> Self {
        self.replay.max_body = bytes;
        self
    }

    /// A layer that never replays, for any request body type (`B: http_body::Body`, no
    /// [`ReplayableBody`](crate::replay::ReplayableBody) needed): 401s pass through without
    /// refreshing the token, expiry-driven refresh is unchanged, and the hot path keeps
    /// nothing per request. Keeps the authenticator (its cache and counters).
    pub fn without_replay(self) -> VeracityAuthLayer<NoReplay> {
        VeracityAuthLayer {
            authenticator: self.authenticator,
            replay: self.replay,
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

    /// This layer with an authenticator of its own, built from this one's settings with
    /// `edit` applied (see the type's docs).
    fn reconfigure(self, edit: impl FnOnce(AuthenticatorBuilder) -> AuthenticatorBuilder) -> Self {
        VeracityAuthLayer {
            authenticator: edit(self.authenticator.to_builder()).build(),
            replay: self.replay,
            policy: PhantomData,
        }
    }

    /// The workspace service account's API key; see [`AuthenticatorBuilder::api_key`].
    pub fn api_key(self, key: impl Into<String>) -> Self {
        self.reconfigure(|b| b.api_key(key))
    }

    /// The origins the credentials are for, such as `["https://api.veracity.com"]`: a
    /// request to any other origin goes out without them. Set them when the stack can follow
    /// redirects (tower-http's `FollowRedirect` outside this layer). See
    /// [`AuthenticatorBuilder::origins`].
    ///
    /// ```
    /// use veracity_auth::{StaticToken, VeracityAuthLayer};
    ///
    /// let auth = VeracityAuthLayer::new(StaticToken::new("token"))
    ///     .api_key("api-key")
    ///     .origins(["https://api.veracity.com"]);
    /// ```
    pub fn origins<I>(self, origins: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.reconfigure(|b| b.origins(origins))
    }

    /// See [`AuthenticatorBuilder::refresh_ahead`].
    pub fn refresh_ahead(self, window: Duration) -> Self {
        self.reconfigure(|b| b.refresh_ahead(window))
    }

    /// See [`AuthenticatorBuilder::safety_margin`].
    pub fn safety_margin(self, margin: Duration) -> Self {
        self.reconfigure(|b| b.safety_margin(margin))
    }

    /// See [`AuthenticatorBuilder::default_lifetime`].
    pub fn default_lifetime(self, lifetime: Duration) -> Self {
        self.reconfigure(|b| b.default_lifetime(lifetime))
    }

    /// See [`AuthenticatorBuilder::jitter`].
    pub fn jitter(self, jitter: f64) -> Self {
        self.reconfigure(|b| b.jitter(jitter))
    }

    /// See [`AuthenticatorBuilder::backoff`].
    pub fn backoff(self, initial: Duration, max: Duration) -> Self {
        self.reconfigure(|b| b.backoff(initial, max))
    }

    /// See [`AuthenticatorBuilder::fetch_timeout`].
    pub fn fetch_timeout(self, timeout: Duration) -> Self {
        self.reconfigure(|b| b.fetch_timeout(timeout))
    }

    /// See [`AuthenticatorBuilder::replay_refresh_interval`].
    pub fn replay_refresh_interval(self, interval: Duration) -> Self {
        self.reconfigure(|b| b.replay_refresh_interval(interval))
    }
}

impl From<Authenticator> for VeracityAuthLayer {
    /// A layer over `authenticator`, sharing its cache and counters with every other user
    /// of it.
    fn from(authenticator: Authenticator) -> Self {
        VeracityAuthLayer {
            authenticator,
            replay: ReplayConfig::default(),
            policy: PhantomData,
        }
    }
}

impl<S, R> Layer<S> for VeracityAuthLayer<R> {
    type Service = VeracityAuth<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        VeracityAuth::from_parts(inner, self.authenticator.clone(), self.replay)
    }
}

impl<R> fmt::Debug for VeracityAuthLayer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VeracityAuthLayer")
            .field("authenticator", &self.authenticator)
            .field("replay", &self.replay)
            .finish()
    }
}
