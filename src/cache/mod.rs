//! The token cache: one per [`Authenticator`](crate::Authenticator), shared by its every clone.
//!
//! [`TokenCache`] is the bearer-token cache on top of [`expiring`], a cache of any expiring
//! credential (single flight, refresh ahead, backoff and negative caching, invalidation by
//! generation: its docs tell how). What is of tokens and headers is here:
//!
//! - **Hot path** ([`TokenCache::authorize`]): one `ArcSwap` load of the current token, one
//!   clock read, and two header clones of values prepared once per token: no lock, no
//!   allocation. Past the token's check point a request looks at the cache's state once, and
//!   re-arms the refresh if its timer died with its runtime.
//! - **A token as a header** ([`Bearer`]): a fetched [`Token`] becomes its `Authorization`
//!   value once; a token that cannot be a header value is a failed fetch.
//! - **401s** ([`TokenCache::refresh_rejected`]): only the rejected generation is dropped,
//!   and 401-caused fetches are rate-limited and wait out a running backoff.
//!
//! Beside them: [`config`] (the settings and their checks), [`timing`] (when a token is
//! retired and refreshed, how long to back off), [`catch_panic`] (a source's panic as a
//! failed fetch).

use std::{fmt, ops::Deref, sync::Arc};

use arc_swap::ArcSwapOption;

use http::{HeaderMap, HeaderValue, header::AUTHORIZATION};
use tokio::time::Instant;

use crate::{
    AuthStats, Error, Token,
    headers::{API_KEY_HEADER, ApiKey},
    source::{AnySource, BoxFuture},
    stats::Counters,
};
use expiring::{Cached, CredentialSource, ExpiringCache, Fetched, Outcome};

mod catch_panic;
mod config;
pub(crate) mod expiring;
pub(crate) mod timing;

pub use config::CachePolicy;

/// A token ready to be sent: its header value, built once, and its schedule.
pub(crate) type CachedToken = Cached<Bearer>;

/// A handle on the shared cache. Cloning it is one reference-count increment.
#[derive(Clone, Debug)]
pub(crate) struct TokenCache {
    tokens: Arc<ExpiringCache<BearerSource>>,
}

/// A bearer token as the cache holds it: its `Authorization` value, built once.
#[derive(Clone, Debug)]
pub(crate) struct Bearer {
    pub(crate) header: HeaderValue,
}

/// What the token cache fetches from: the token source, and the API key sent beside every
/// token (held here so that the whole cache is one allocation, and a clone one increment).
#[derive(Debug)]
struct BearerSource {
    source: AnySource,
    api_key: ApiKey,
}

// === impl TokenCache ===

impl TokenCache {
    pub(crate) fn new(source: AnySource, config: CachePolicy, api_key: ApiKey) -> Self {
        let source = BearerSource { source, api_key };
        TokenCache {
            tokens: Arc::new(ExpiringCache::new(source, config)),
        }
    }

    pub(crate) fn source(&self) -> &AnySource {
        &self.tokens.source().source
    }

    pub(crate) fn api_key(&self) -> &ApiKey {
        &self.tokens.source().api_key
    }

    pub(crate) fn stats(&self) -> AuthStats {
        self.tokens.counters().snapshot()
    }

    pub(crate) fn count_replay(&self) {
        Counters::bump(&self.tokens.counters().replays);
    }

    /// The hot path: inserts `Authorization` (and the API key, when there is one) from a
    /// valid cached token and returns its generation, or `None` when the caller must
    /// [`acquire`](Self::acquire) one. One `ArcSwap` load, one clock read, and two header
    /// clones: no lock, no allocation.
    #[inline]
    pub(crate) fn authorize(&self, headers: &mut HeaderMap) -> Option<u64> {
        let now = Instant::now();
        self.authorize_with(self.tokens.load().as_deref(), headers, now)
    }

    /// Past the token's check point (its refresh point, or sooner when its timer died):
    /// see that the refresh is under way, then use it while it is usable.
    #[cold]
    fn authorize_cold(&self, headers: &mut HeaderMap, now: Instant) -> Option<u64> {
        let token = self.tokens.get(now)?;
        self.insert(headers, &token);
        Some(token.generation)
    }

    /// A view of the published token for one service ([`TokenView`]).
    pub(crate) fn view(&self) -> TokenView {
        TokenView(arc_swap::Cache::new(Published(Arc::clone(&self.tokens))))
    }

    /// [`authorize`](Self::authorize) through a service's own `view`: while the published
    /// token is unchanged, one relaxed load and a compare instead of a shared load.
    #[inline]
    pub(crate) fn authorize_in(
        &self,
        view: &mut TokenView,
        headers: &mut HeaderMap,
    ) -> Option<u64> {
        let now = Instant::now();
        self.authorize_with(view.0.load().as_deref(), headers, now)
    }

    /// Inserts `published` if it may be used without a look at the cache until its check
    /// point, else sees to the cache ([`authorize_cold`](Self::authorize_cold)).
    #[inline]
    fn authorize_with(
        &self,
        published: Option<&CachedToken>,
        headers: &mut HeaderMap,
        now: Instant,
    ) -> Option<u64> {
        match published {
            Some(token) if now < token.check_at => {
                self.insert(headers, token);
                Some(token.generation)
            }
            _ => self.authorize_cold(headers, now),
        }
    }

    #[inline]
    fn insert(&self, headers: &mut HeaderMap, token: &CachedToken) {
        headers.insert(AUTHORIZATION, token.header.clone());
        if let Some(key) = self.api_key().value() {
            headers.insert(API_KEY_HEADER, key.clone());
        }
    }

    /// The slow path: a valid token, waiting for the single flight if there is none.
    pub(crate) fn acquire(&self) -> BoxFuture<'static, Outcome<Bearer>> {
        self.tokens.acquire()
    }

    /// After a 401 for a request sent with `rejected`: drop that token (only if it is still
    /// the current one) and fetch a new one, at most once per `rejection_interval`: the
    /// future of a newer token, or `None` for no new token now.
    pub(crate) fn refresh_rejected(
        &self,
        rejected: u64,
    ) -> Option<BoxFuture<'static, Outcome<Bearer>>> {
        self.tokens.refresh_rejected(rejected)
    }
}

/// One service's copy of the published token, checked against the cache's with one
/// relaxed load per request and loaded again when it changed ([`arc_swap::Cache`]). It
/// belongs to the service (`call` takes `&mut self`): nothing is kept per thread, and any
/// number of layers cost the same.
#[derive(Clone)]
pub(crate) struct TokenView(arc_swap::Cache<Published, Option<Arc<CachedToken>>>);

/// The token cache, read as the place its token is published.
#[derive(Clone)]
struct Published(Arc<ExpiringCache<BearerSource>>);

impl Deref for Published {
    type Target = ArcSwapOption<CachedToken>;

    fn deref(&self) -> &Self::Target {
        self.0.published()
    }
}

impl fmt::Debug for TokenView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenView")
    }
}

// === impl Bearer ===

impl Bearer {
    /// `token` ready to be cached: its header value, and its lifetime if it says.
    fn prepare(token: &Token) -> Result<Fetched<Bearer>, Error> {
        Ok(Fetched {
            credential: Bearer {
                header: token.bearer_header()?,
            },
            lifetime: token.expires_in(),
        })
    }
}

// === impl BearerSource ===

impl CredentialSource for BearerSource {
    type Credential = Bearer;

    const CREDENTIAL: &'static str = "token";

    fn name(&self) -> &'static str {
        self.source.name
    }

    fn ready(&self) -> Option<Result<Fetched<Bearer>, Error>> {
        let token = self.source.inner.ready_token()?;
        Some(Bearer::prepare(&token))
    }

    async fn fetch(&self) -> Result<Fetched<Bearer>, Error> {
        let token = self.source.inner.fetch_boxed().await?;
        Bearer::prepare(&token)
    }
}

#[cfg(test)]
mod tests;
