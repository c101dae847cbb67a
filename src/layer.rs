//! [`VeracityAuthLayer`]: the configuration, and the token cache every service it builds
//! shares.

use std::{fmt, sync::Arc, time::Duration};

use bytes::Bytes;
use http::HeaderValue;
use tower_layer::Layer;

use crate::{
    AuthStats, TokenSource, VeracityAuth,
    cache::{CacheConfig, TokenCache},
    headers::{is_visible_ascii, sensitive_header},
    source::AnySource,
    stats::Counters,
};

/// Adds `Authorization: Bearer <token>` and `Ocp-Apim-Subscription-Key` to every request.
///
/// The layer owns one token cache; every service it builds, and every clone of those,
/// shares it. Builder methods take and return `self`; call them before the first request.
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
#[derive(Clone)]
pub struct VeracityAuthLayer {
    source: AnySource,
    config: CacheConfig,
    api_key: ApiKey,
    replay: ReplayConfig,
    pub(crate) shared: Arc<Shared>,
}

/// What every clone of the service shares: one pointer, one reference count.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) cache: TokenCache,
    pub(crate) api_key: ApiKey,
    pub(crate) counters: Arc<Counters>,
    pub(crate) replay: ReplayConfig,
}

/// Whether and how requests are replayed after a 401.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ReplayConfig {
    pub(crate) enabled: bool,
    pub(crate) max_body: usize,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        ReplayConfig {
            enabled: true,
            max_body: 64 * 1024,
        }
    }
}

/// The API key as a prepared, sensitive header value.
#[derive(Clone)]
pub(crate) enum ApiKey {
    None,
    Valid(HeaderValue),
    /// Not a valid header value (CR, LF, ...): every request fails with
    /// [`Error::InvalidApiKey`](crate::Error::InvalidApiKey).
    Invalid,
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ApiKey::None => "None",
            ApiKey::Valid(_) => "[redacted]",
            ApiKey::Invalid => "Invalid",
        })
    }
}

impl ApiKey {
    pub(crate) fn new(key: String) -> ApiKey {
        let valid = is_visible_ascii(key.as_bytes());
        match valid.then(|| sensitive_header(Bytes::from(key))).flatten() {
            Some(value) => ApiKey::Valid(value),
            None => ApiKey::Invalid,
        }
    }
}

impl VeracityAuthLayer {
    /// A layer that takes tokens from `source`, with the default cache settings and no API key.
    pub fn new<T: TokenSource>(source: T) -> Self {
        VeracityAuthLayer::build(
            AnySource::new(source),
            CacheConfig::default(),
            ApiKey::None,
            ReplayConfig::default(),
        )
    }

    fn build(
        source: AnySource,
        config: CacheConfig,
        api_key: ApiKey,
        replay: ReplayConfig,
    ) -> Self {
        let counters = Arc::new(Counters::default());
        let cache = TokenCache::new(source.clone(), config.clone(), Arc::clone(&counters));
        VeracityAuthLayer {
            shared: Arc::new(Shared {
                cache,
                api_key: api_key.clone(),
                counters,
                replay,
            }),
            source,
            config,
            api_key,
            replay,
        }
    }

    /// A configured copy with a fresh cache: builder methods run before any request.
    fn with(self, edit: impl FnOnce(&mut CacheConfig)) -> Self {
        let mut config = self.config;
        edit(&mut config);
        VeracityAuthLayer::build(self.source, config, self.api_key, self.replay)
    }

    /// Replay a request once after a 401 (or gRPC `UNAUTHENTICATED`) with a new token
    /// (default on). Off, the hot path keeps nothing per request (no copy of the request
    /// head: the allocations of a static header and no more) and 401s pass through without
    /// refreshing the token; expiry-driven refresh is unchanged.
    pub fn replay_unauthorized(self, enabled: bool) -> Self {
        let replay = ReplayConfig {
            enabled,
            ..self.replay
        };
        VeracityAuthLayer::build(self.source, self.config, self.api_key, replay)
    }

    /// The most bytes of a streaming request body buffered for a replay (default 64 KiB).
    /// Larger bodies stream through unbuffered and their 401 is returned as it is. Empty
    /// and `Clone` bodies (`Full`, `String`, `()`) replay whatever their size.
    pub fn max_replay_body(self, bytes: usize) -> Self {
        let replay = ReplayConfig {
            max_body: bytes,
            ..self.replay
        };
        VeracityAuthLayer::build(self.source, self.config, self.api_key, replay)
    }

    /// The workspace service account's API key, sent as `Ocp-Apim-Subscription-Key`.
    ///
    /// A key that is not a valid header value (control characters, spaces, non-ASCII)
    /// makes every request fail with [`Error::InvalidApiKey`](crate::Error::InvalidApiKey).
    pub fn api_key(self, key: impl Into<String>) -> Self {
        VeracityAuthLayer::build(
            self.source,
            self.config,
            ApiKey::new(key.into()),
            self.replay,
        )
    }

    /// Start refreshing this long before a token expires (default 5 minutes; at most a
    /// quarter of the token's lifetime is used, so short-lived tokens work).
    pub fn refresh_ahead(self, window: Duration) -> Self {
        self.with(|c| c.refresh_ahead = window)
    }

    /// Never send a token this close to its expiry (default 30 s; at most a tenth of the
    /// token's lifetime), for clock skew and transit.
    pub fn safety_margin(self, margin: Duration) -> Self {
        self.with(|c| c.safety_margin = margin)
    }

    /// The lifetime assumed when a token response has no `expires_in` (default 5 minutes).
    /// `Duration::MAX` means "never expires" (any lifetime saturates about a century ahead);
    /// zero is a mistake: every request then fails with [`Error::Config`](crate::Error::Config).
    pub fn default_lifetime(self, lifetime: Duration) -> Self {
        self.with(|c| c.default_lifetime = lifetime)
    }

    /// The share of the refresh window and of each backoff delay that is randomised
    /// (default 0.2), so a fleet of replicas does not refresh in step. `0.0` makes the
    /// schedule exact (tests). Values above 1 count as 1 and NaN as 0; a negative value
    /// is a mistake: every request then fails with [`Error::Config`](crate::Error::Config).
    pub fn jitter(self, jitter: f64) -> Self {
        self.with(|c| {
            c.jitter = if jitter.is_nan() {
                0.0
            } else {
                jitter.min(1.0)
            }
        })
    }

    /// Backoff after failed fetches: `initial`, doubling per failure, at most `max`
    /// (defaults 1 s and 60 s). `Retry-After` is honoured up to 5 minutes.
    pub fn backoff(self, initial: Duration, max: Duration) -> Self {
        self.with(|c| {
            c.backoff_initial = initial;
            c.backoff_max = max.max(initial);
        })
    }

    /// The longest a token fetch may take (default 30 s), and the longest a request waits
    /// for one, timed on the request's own runtime. Zero is a mistake: every request then
    /// fails with [`Error::Config`](crate::Error::Config).
    pub fn fetch_timeout(self, timeout: Duration) -> Self {
        self.with(|c| c.fetch_timeout = timeout)
    }

    /// At most one token refresh caused by a 401 per `interval` (default 30 s), so an API
    /// that rejects every token cannot turn every request into a token request.
    pub fn reauth_interval(self, interval: Duration) -> Self {
        self.with(|c| c.reauth_interval = interval)
    }

    /// What the layer's cache has done so far.
    pub fn stats(&self) -> AuthStats {
        self.shared.counters.snapshot()
    }
}

impl<S> Layer<S> for VeracityAuthLayer {
    type Service = VeracityAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        VeracityAuth::from_shared(inner, Arc::clone(&self.shared))
    }
}

impl fmt::Debug for VeracityAuthLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VeracityAuthLayer")
            .field("source", &self.source)
            .field("api_key", &self.api_key)
            .field("config", &self.config)
            .field("replay", &self.replay)
            .finish()
    }
}
