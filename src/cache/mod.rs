//! The token cache: one per [`Authenticator`](crate::Authenticator), shared by its every clone.
//!
//! [`TokenCache`] is the bearer-token cache on top of [`expiring`], a cache of any expiring
//! credential (single flight, refresh ahead, backoff and negative caching, invalidation by
//! generation: its docs tell how). What is of tokens and headers is here:
//!
//! - **Hot path** ([`TokenCache::authorize`]): one atomic load of the current token's id (a
//!   value written once per token), one clock read, and header insertions of this thread's
//!   own copies of values prepared once per token (see [`local`]): no lock, no shared
//!   reference count, no allocation. A thread's first request past the refresh point
//!   takes the slow path once, and re-arms the refresh if its timer died with its runtime.
//! - **A token as a header** ([`Bearer`]): a fetched [`Token`] becomes its `Authorization`
//!   value once; a token that cannot be a header value is a failed fetch.
//! - **401s** ([`TokenCache::refresh_rejected`]): only the rejected generation is dropped,
//!   and 401-caused fetches are rate-limited and wait out a running backoff.
//!
//! Beside them: [`config`] (the settings and their checks), [`timing`] (when a token is
//! retired and refreshed, how long to back off), [`catch_panic`] (a source's panic as a
//! failed fetch).

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, header::AUTHORIZATION};
use tokio::time::Instant;

use crate::{
    AuthStats, Error, Token,
    headers::{API_KEY_HEADER, ApiKey},
    source::{AnySource, BoxFuture},
    stats::Counters,
};
use expiring::{CacheAfterRejection, Cached, CredentialSource, ExpiringCache, Fetched, Outcome};

mod catch_panic;
mod config;
pub(crate) mod expiring;
mod local;
pub(crate) mod timing;

pub use config::CachePolicy;

/// A token ready to be sent: its header value, built once, and its schedule.
pub(crate) type CachedToken = Cached<Bearer>;

pub use expiring::AfterRejection;

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
    /// [`acquire`](Self::acquire) one. One atomic load of a value written once per token,
    /// one clock read, and this thread's own copies of the header values.
    #[inline]
    pub(crate) fn authorize(&self, headers: &mut HeaderMap) -> Option<u64> {
        let id = self.tokens.current_id();
        if id == 0 {
            return None;
        }
        let now = Instant::now();
        let hit = local::use_copy(id, |copy| {
            if now >= copy.check_at {
                return None;
            }
            headers.insert(AUTHORIZATION, copy.bearer.clone());
            if let Some(key) = &copy.api_key {
                headers.insert(API_KEY_HEADER, key.clone());
            }
            Some(copy.generation)
        });
        // No copy, or one past its check point: the cold path (which re-arms the refresh).
        match hit.flatten() {
            Some(generation) => Some(generation),
            None => self.authorize_cold(headers, now),
        }
    }

    /// This thread's first request with the current token, or its first past the token's
    /// refresh point (or past the moment it was told to look again): (re)make its copies,
    /// and see that the refresh is under way.
    #[cold]
    fn authorize_cold(&self, headers: &mut HeaderMap, now: Instant) -> Option<u64> {
        let token = self.tokens.usable(now)?;
        let check_at = if now < token.refresh_at {
            token.refresh_at
        } else {
            self.tokens.ensure_refresh(&token, now)
        };
        let copy = local::LocalToken {
            id: token.id,
            generation: token.generation,
            check_at,
            bearer: local::own_copy(&token.header),
            api_key: self.api_key().value().map(local::own_copy),
        };
        headers.insert(AUTHORIZATION, copy.bearer.clone());
        if let Some(key) = &copy.api_key {
            headers.insert(API_KEY_HEADER, key.clone());
        }
        local::store_copy(copy);
        Some(token.generation)
    }

    /// The slow path: a valid token, waiting for the single flight if there is none.
    pub(crate) fn acquire(&self) -> BoxFuture<'static, Outcome<Bearer>> {
        self.tokens.acquire()
    }

    /// After a 401 for a request sent with `rejected`: drop that token (only if it is still
    /// the current one) and fetch a new one, at most once per `rejection_interval`.
    pub(crate) fn refresh_rejected(&self, rejected: u64) -> CacheAfterRejection<Bearer> {
        self.tokens.refresh_rejected(rejected)
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
