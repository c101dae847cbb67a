//! [`Authenticator`]: the credential core. It owns a token source, its cache, the API key,
//! the origins they are for and the counters; the tower layer and any other client use it
//! alike.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use http::{HeaderMap, HeaderName, HeaderValue, Uri, header::AUTHORIZATION};
use tokio::time::Instant;

use crate::{
    AuthStats, ConfigError, Error, TokenSource,
    cache::{CachePolicy, CachedToken, TokenCache, TokenView},
    headers::{API_KEY_HEADER, ApiKey},
    origin::Origins,
    source::{AnySource, BoxFuture},
};

/// The origin credentials go to by default: Veracity's API gateway (Data Workbench and the
/// Services API). Name others with [`AuthenticatorBuilder::origins`].
pub const VERACITY_ORIGIN: &str = "https://api.veracity.com";

/// Which token a request carried: the cache numbers its tokens 1, 2, 3, ... in the order
/// they were fetched. Hand it back to [`Authenticator::rejected`] when that request is
/// answered 401, so only that token is dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Generation(u64);

impl Generation {
    /// No token yet (generations start at 1).
    pub(crate) const NONE: Generation = Generation(0);

    /// The generation numbered `n`.
    pub(crate) fn of(n: u64) -> Self {
        Generation(n)
    }

    /// The number of the token (1 for the first one fetched).
    pub fn get(self) -> u64 {
        self.0
    }
}

/// The credential core: a token source, its cache (single flight, refresh ahead, backoff,
/// generation-aware 401 handling), the API key, the origins they are for and the counters.
///
/// Cloning it is one reference-count increment (two with [origins](AuthenticatorBuilder::origins)
/// set); every clone shares the one cache.
/// [`VeracityAuthLayer`](crate::VeracityAuthLayer) is a tower adapter over it; a client
/// that is not tower uses it directly:
///
/// ```
/// use http::{Request, StatusCode};
/// use veracity_auth::{Authenticator, StaticToken};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let auth = Authenticator::builder(StaticToken::new("my-token")).api_key("my-key").build()?;
///
/// // Stands in for the network: this server rejects the first request it sees.
/// let mut seen = 0;
/// let mut send = |request: &Request<()>| {
///     assert_eq!(request.headers()["authorization"], "Bearer my-token");
///     seen += 1;
///     if seen == 1 { StatusCode::UNAUTHORIZED } else { StatusCode::OK }
/// };
///
/// // A hand-rolled client: authorize, send, and replay once after a 401.
/// let mut request = Request::get("https://api.veracity.com/").body(())?;
/// assert!(auth.is_for(request.uri())); // with origins set, other hosts get no credentials
/// let generation = match auth.authorize(request.headers_mut()) {
///     Some(generation) => generation, // the hot path: a valid token was cached
///     None => {
///         let headers = auth.headers().await?; // waits for the one token fetch
///         headers.insert_into(request.headers_mut());
///         headers.generation()
///     }
/// };
/// let mut status = send(&request);
/// if status == StatusCode::UNAUTHORIZED {
///     // `None` when rate-limited: keep the 401.
///     if let Some(renewal) = auth.rejected(generation) {
///         renewal.await?.insert_into(request.headers_mut());
///         status = send(&request);
///     }
/// }
/// assert_eq!(status, StatusCode::OK);
/// assert_eq!(auth.stats().replay_refreshes, 1);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Authenticator {
    cache: TokenCache,
    origins: Origins,
}

impl Authenticator {
    /// A builder for an authenticator taking tokens from `source`: the API key, the origins
    /// and the cache policy, checked by [`build`](AuthenticatorBuilder::build).
    pub fn builder<T: TokenSource>(source: T) -> AuthenticatorBuilder {
        AuthenticatorBuilder {
            source: AnySource::new(source),
            policy: CachePolicy::default(),
            api_key: ApiKey::None,
            origins: Origins::parse([VERACITY_ORIGIN]),
        }
    }

    /// Whether this authenticator's credentials go with a request to `uri`: always with no
    /// [origins](AuthenticatorBuilder::origins) set; otherwise when `uri` names one of them
    /// (scheme, host and port), or names no origin at all (`/pkg.Service/Method`, as a tonic
    /// `Channel` sends it). (Origins that cannot be parsed never get here: `build` refuses
    /// them.)
    ///
    /// [`authorize`](Self::authorize) does not look at the URI: a client of your own asks
    /// this first, as the layer and the reqwest middleware do.
    ///
    /// ```
    /// use veracity_auth::{Authenticator, StaticToken};
    ///
    /// let auth = Authenticator::builder(StaticToken::new("token"))
    ///     .origins(["https://api.veracity.com"])
    ///     .build()?;
    /// assert!(auth.is_for(&"https://api.veracity.com/veracity/dw/gateway/api/v2".parse()?));
    /// assert!(!auth.is_for(&"https://storage.example/after-a-redirect".parse()?));
    /// assert!(auth.is_for(&"/greeter.Greeter/SayHello".parse()?));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn is_for(&self, uri: &Uri) -> bool {
        self.origins.allows(uri)
    }

    /// [`is_for`](Self::is_for) for a URL already split (reqwest's `Url`): `scheme` in lower
    /// case, `host` as the URL serializes it, `port` `None` for the scheme's default.
    #[cfg(feature = "reqwest-middleware")]
    pub(crate) fn is_for_parts(&self, scheme: &str, host: Option<&str>, port: Option<u16>) -> bool {
        self.origins.allows_parts(scheme, host, port)
    }

    /// For a request to another origin: removes this authenticator's own credentials that a
    /// redirect follower (or any code copying a sent request's headers) carried along: an
    /// `Ocp-Apim-Subscription-Key` equal to the API key, and a sensitive `Authorization`
    /// equal to the cached token's. Values of your own (another key, another token) stay.
    #[cold]
    pub(crate) fn remove_own_credentials(&self, headers: &mut HeaderMap) {
        if let Some(key) = self.cache.api_key().value() {
            remove_value(headers, &API_KEY_HEADER, key);
        }
        // Ours are always marked sensitive, and copies keep the mark: only then is it worth
        // asking the cache for the current value.
        if headers
            .get_all(AUTHORIZATION)
            .iter()
            .any(HeaderValue::is_sensitive)
        {
            let mut ours = HeaderMap::new();
            if self.cache.authorize(&mut ours).is_some()
                && let Some(bearer) = ours.get(AUTHORIZATION)
            {
                remove_value(headers, &AUTHORIZATION, bearer);
            }
        }
    }

    /// The hot path: inserts `Authorization` (and the API key, if set) from a valid cached
    /// token and returns its generation, or `None` when no valid token is cached: then
    /// [`headers`](Self::headers) waits for one. Synchronous, no lock, no allocation. It
    /// does not check the request's origin: see [`is_for`](Self::is_for).
    ///
    /// ```
    /// use http::HeaderMap;
    /// use veracity_auth::{Authenticator, StaticToken};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), veracity_auth::Error> {
    /// let auth = Authenticator::builder(StaticToken::new("my-token")).build()?;
    /// let mut headers = HeaderMap::new();
    /// let generation = match auth.authorize(&mut headers) {
    ///     Some(generation) => generation,
    ///     None => {
    ///         let fetched = auth.headers().await?;
    ///         fetched.insert_into(&mut headers);
    ///         fetched.generation()
    ///     }
    /// };
    /// assert_eq!(headers["authorization"], "Bearer my-token");
    /// assert_eq!(auth.authorize(&mut HeaderMap::new()), Some(generation));
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn authorize(&self, headers: &mut HeaderMap) -> Option<Generation> {
        self.cache.authorize(headers).map(Generation)
    }

    /// [`authorize`](Self::authorize) through a service's own view of the token.
    #[inline]
    pub(crate) fn authorize_in(
        &self,
        view: &mut TokenView,
        headers: &mut HeaderMap,
    ) -> Option<Generation> {
        self.cache.authorize_in(view, headers).map(Generation)
    }

    /// A view of the token for one service to read it through.
    pub(crate) fn view(&self) -> TokenView {
        self.cache.view()
    }

    /// Valid headers, waiting for the single token fetch if no valid token is cached (one
    /// fetch runs at a time, whoever waits). Fails with the fetch's error, or at once with
    /// the last error while backing off after failures. The future owns what it needs.
    ///
    /// ```
    /// use http::Request;
    /// use veracity_auth::{Authenticator, StaticToken};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let auth = Authenticator::builder(StaticToken::new("my-token")).build()?;
    /// let mut request = Request::get("https://api.veracity.com/").body(())?;
    /// auth.headers().await?.insert_into(request.headers_mut());
    /// assert_eq!(request.headers()["authorization"], "Bearer my-token");
    /// # Ok(())
    /// # }
    /// ```
    pub fn headers(&self) -> HeadersFuture {
        HeadersFuture {
            token: self.cache.acquire(),
            authenticator: self.clone(),
        }
    }

    /// The 401 path: a request sent with `generation` was rejected. Drops that token
    /// (only if it is still the current one) and starts one fetch for a new one, at most
    /// once per [`rejection_interval`](CachePolicy::rejection_interval)
    /// and never while backing off after failures.
    ///
    /// Returns the headers of a token newer than the rejected one (ready at once when the
    /// cache already holds one, else the fetch's; dropping the future does not cancel the
    /// fetch), or `None`: no new token now (rate-limited, or backing off); hand the 401 on.
    ///
    /// ```
    /// use veracity_auth::{Authenticator, StaticToken};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), veracity_auth::Error> {
    /// let auth = Authenticator::builder(StaticToken::new("my-token")).build()?;
    /// let first = auth.headers().await?;
    /// let newer = auth.rejected(first.generation()).expect("the first 401 is never refused");
    /// assert!(newer.await?.generation() > first.generation());
    /// // A second 401 within the interval gets no new token.
    /// let second = auth.headers().await?;
    /// assert!(auth.rejected(second.generation()).is_none());
    /// assert_eq!(auth.stats().replay_refreshes, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn rejected(&self, generation: Generation) -> Option<HeadersFuture> {
        let token = self.cache.refresh_rejected(generation.0)?;
        Some(HeadersFuture {
            token,
            authenticator: self.clone(),
        })
    }

    /// What the cache has done so far.
    pub fn stats(&self) -> AuthStats {
        self.cache.stats()
    }

    pub(crate) fn count_replay(&self) {
        self.cache.count_replay();
    }

    fn headers_of(&self, token: Arc<CachedToken>) -> AuthHeaders {
        AuthHeaders {
            token,
            api_key: self.cache.api_key().clone(),
        }
    }
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("source", self.cache.source())
            .field("api_key", self.cache.api_key())
            .field("origins", &self.origins)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// Configures an [`Authenticator`]; from [`Authenticator::builder`]. Cheap to clone.
#[derive(Clone)]
pub struct AuthenticatorBuilder {
    source: AnySource,
    policy: CachePolicy,
    api_key: ApiKey,
    /// Parsed when set; an error is returned by `build`.
    origins: Result<Origins, ConfigError>,
}

impl AuthenticatorBuilder {
    /// The workspace service account's API key, sent as `Ocp-Apim-Subscription-Key`.
    ///
    /// A key that is not a valid header value (control characters, spaces, non-ASCII) is
    /// refused by [`build`](Self::build) with [`ConfigError::InvalidApiKey`].
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = ApiKey::new(key.into());
        self
    }

    /// The origins (scheme, host and port) the credentials are for, such as
    /// `["https://api.veracity.com"]`. A request to any other origin goes out with neither
    /// the token nor the API key (and with those of this authenticator removed, should a
    /// redirect follower have copied them), and its 401s are not acted on. A request URI
    /// without an origin (`/pkg.Service/Method`, as a tonic `Channel` sends it) counts as
    /// one of them. See [`Authenticator::is_for`].
    ///
    /// Default: [`VERACITY_ORIGIN`] alone, so a redirect followed outside the layer
    /// (tower-http's `FollowRedirect`) to another host never carries them. To send them
    /// elsewhere (the mock, a gateway of your own), name every origin they are for:
    /// `.origins([mock.url()])`. A redirect follower *inside* the layer (between it and the
    /// client) sends its hops unseen by the layer, with the credentials it copied: keep
    /// followers outside. (reqwest follows redirects inside the client, below any
    /// middleware: give it `VeracityAuthMiddleware::redirect_policy()`.)
    ///
    /// Each value is `http` or `https`, a host and an optional port, with no path (a `/`
    /// at most), query or user name: `https://api.veracity.com`, `http://127.0.0.1:8080`.
    /// `localhost` and `127.0.0.1` are different origins. Any other value, or an empty list,
    /// is refused by [`build`](Self::build) with [`ConfigError::Origin`] naming it.
    ///
    /// ```
    /// use veracity_auth::{Authenticator, ConfigError, StaticToken};
    ///
    /// let builder = Authenticator::builder(StaticToken::new("token")).api_key("key");
    /// assert!(builder.clone().origins(["https://api.veracity.com"]).build().is_ok());
    /// let Err(ConfigError::Origin(message)) = builder.origins(["api.veracity.com"]).build() else {
    ///     panic!("not an origin");
    /// };
    /// assert!(message.contains("`api.veracity.com`"));
    /// ```
    pub fn origins<I>(mut self, origins: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.origins = Origins::parse(origins);
        self
    }

    /// How tokens are cached: refresh ahead, safety margin, backoff, fetch timeout, the
    /// rejection interval (see [`CachePolicy`]).
    pub fn cache_policy(mut self, policy: CachePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The authenticator, with an empty cache (the first request fetches a token); or the
    /// setting it cannot work with: an API key that cannot be a header
    /// ([`ConfigError::InvalidApiKey`]), an unusable origin or cache policy
    /// ([`ConfigError::Origin`], [`ConfigError::CachePolicy`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// use veracity_auth::{Authenticator, CachePolicy, ConfigError, StaticToken};
    ///
    /// let refused = Authenticator::builder(StaticToken::new("token"))
    ///     .cache_policy(CachePolicy::default().fetch_timeout(Duration::ZERO))
    ///     .build();
    /// assert!(matches!(refused, Err(ConfigError::CachePolicy(message)) if message.contains("fetch_timeout")));
    /// ```
    pub fn build(self) -> Result<Authenticator, ConfigError> {
        if let ApiKey::Invalid = self.api_key {
            return Err(ConfigError::InvalidApiKey);
        }
        let origins = self.origins?;
        self.policy.check()?;
        Ok(Authenticator {
            cache: TokenCache::new(self.source, self.policy, self.api_key),
            origins,
        })
    }
}

impl fmt::Debug for AuthenticatorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthenticatorBuilder")
            .field("source", &self.source)
            .field("api_key", &self.api_key)
            .field("origins", &self.origins)
            .field("policy", &self.policy)
            .finish()
    }
}

/// Valid authentication headers: a cached token's `Authorization` value and the API key.
/// Owned, cheap to clone; `Debug` shows the generation only.
#[derive(Clone)]
pub struct AuthHeaders {
    token: Arc<CachedToken>,
    api_key: ApiKey,
}

impl AuthHeaders {
    /// Inserts `Authorization` and, if set, the API key into `headers`, replacing any
    /// value they had.
    pub fn insert_into(&self, headers: &mut HeaderMap) {
        headers.insert(AUTHORIZATION, self.token.header.clone());
        if let Some(key) = self.api_key.value() {
            headers.insert(API_KEY_HEADER, key.clone());
        }
    }

    /// Which token these headers carry.
    pub fn generation(&self) -> Generation {
        Generation(self.token.generation)
    }

    /// Whether the token may still be sent (it is not within the safety margin of its
    /// expiry). A value held for long should be checked before use.
    pub fn is_usable(&self) -> bool {
        Instant::now() < self.token.usable_until
    }
}

impl fmt::Debug for AuthHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthHeaders")
            .field("generation", &self.token.generation)
            .finish_non_exhaustive()
    }
}

/// The future of [`Authenticator::headers`] and [`Authenticator::rejected`]: valid headers
/// once the single fetch is done. `'static` and `Send`; dropping it does not cancel the
/// fetch.
pub struct HeadersFuture {
    token: BoxFuture<'static, Result<Arc<CachedToken>, Error>>,
    authenticator: Authenticator,
}

impl Future for HeadersFuture {
    type Output = Result<AuthHeaders, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let token = ready!(self.token.as_mut().poll(cx))?;
        Poll::Ready(Ok(self.authenticator.headers_of(token)))
    }
}

impl fmt::Debug for HeadersFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeadersFuture").finish_non_exhaustive()
    }
}

/// Removes every `name` value equal to `value`, keeping the others in order.
fn remove_value(headers: &mut HeaderMap, name: &HeaderName, value: &HeaderValue) {
    if !headers.get_all(name).iter().any(|v| v == value) {
        return;
    }
    let kept: Vec<HeaderValue> = headers
        .get_all(name)
        .iter()
        .filter(|v| *v != value)
        .cloned()
        .collect();
    headers.remove(name);
    for v in kept {
        headers.append(name.clone(), v);
    }
}
