//! Where tokens come from.
//!
//! A [`TokenSource`] fetches one token when the cache asks for one; the cache decides when
//! (once per flight, ahead of expiry, after a 401), so a source never caches or retries.
//!
//! - [`ClientCredentials`]: a Veracity service account (OAuth 2.0 client credentials).
//! - [`RefreshToken`]: a signed-in person (OAuth 2.0 refresh-token grant, rotation-aware).
//! - [`StaticToken`]: a fixed token, for tests and short scripts.
//! - [`token_fn`]: any async closure.
//! - your own type implementing [`TokenSource`].

use std::{fmt, future::Future, sync::Arc};

pub(crate) use crate::http_client::BoxFuture;
use crate::{BoxError, Error, Token};

mod client_credentials;
mod endpoint;
mod lease;
mod refresh_token;
pub(crate) mod response;

#[cfg(feature = "__fuzzing")]
pub use response::parse_token_response;

pub use client_credentials::{
    ClientCredentials, DEFAULT_RESOURCE, DEFAULT_SCOPE, DEFAULT_TOKEN_URL, V2_TOKEN_URL,
};
pub use endpoint::TokenEndpoint;
pub(crate) use endpoint::{USER_AGENT, check_scheme, client_or_default, is_loopback};
#[cfg(feature = "sign-in")]
pub(crate) use lease::StoreGuard;
#[cfg(feature = "sign-in")]
pub(crate) use refresh_token::StoreHook;
pub use refresh_token::{
    DEFAULT_USER_SCOPE, DEFAULT_USER_TOKEN_URL, RefreshToken, SERVICES_API_USER_SCOPE,
};

/// Fetches an access token. The cache calls [`fetch`](TokenSource::fetch) at most once at a
/// time per layer, on a task of its own, under the layer's fetch timeout.
///
/// ```
/// use std::time::Duration;
/// use veracity_auth::{Error, Token, TokenSource};
///
/// struct FromVault;
///
/// impl TokenSource for FromVault {
///     async fn fetch(&self) -> Result<Token, Error> {
///         Ok(Token::new("token-from-vault", Some(Duration::from_secs(600))))
///     }
/// }
/// ```
pub trait TokenSource: Send + Sync + 'static {
    /// Fetches a fresh token.
    fn fetch(&self) -> impl Future<Output = Result<Token, Error>> + Send;

    /// A token available at once, without I/O (a fixed token, one resolved at
    /// construction), or `None` (the default) when it must be [`fetch`](Self::fetch)ed.
    /// The cache calls this first on every fetch: when it answers, no task is spawned, so
    /// requests are served even outside a tokio runtime.
    fn ready_token(&self) -> Option<Token> {
        None
    }
}

/// [`TokenSource`] made object safe, so the layer is not generic over its source.
pub(crate) trait DynTokenSource: Send + Sync + 'static {
    fn fetch_boxed(&self) -> BoxFuture<'_, Result<Token, Error>>;
    fn ready_token(&self) -> Option<Token>;
}

impl<T: TokenSource> DynTokenSource for T {
    fn fetch_boxed(&self) -> BoxFuture<'_, Result<Token, Error>> {
        Box::pin(self.fetch())
    }

    fn ready_token(&self) -> Option<Token> {
        TokenSource::ready_token(self)
    }
}

/// A source type-erased for the cache, remembering its type name for `Debug`.
#[derive(Clone)]
pub(crate) struct AnySource {
    pub(crate) inner: Arc<dyn DynTokenSource>,
    pub(crate) name: &'static str,
}

impl AnySource {
    pub(crate) fn new<T: TokenSource>(source: T) -> Self {
        AnySource {
            inner: Arc::new(source),
            name: std::any::type_name::<T>(),
        }
    }
}

impl fmt::Debug for AnySource {
    // The source's own `Debug` might print a secret; its type name cannot.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// A fixed token. It never expires as far as the cache knows (it is re-read after the
/// cache's default lifetime), so a 401 is the only sign that it went bad. It is ready at
/// once, so it serves requests without a tokio runtime too.
///
/// ```
/// use veracity_auth::{Authenticator, StaticToken, VeracityAuthLayer};
///
/// let layer = VeracityAuthLayer::new(Authenticator::builder(StaticToken::new("my-token")).api_key("my-key").build().unwrap());
/// ```
#[derive(Clone)]
pub struct StaticToken(Token);

impl StaticToken {
    /// A source that always returns `token`.
    pub fn new(token: impl Into<String>) -> Self {
        StaticToken(Token::new(token, None))
    }
}

impl fmt::Debug for StaticToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StaticToken").field(&self.0).finish()
    }
}

impl TokenSource for StaticToken {
    async fn fetch(&self) -> Result<Token, Error> {
        Ok(self.0.clone())
    }

    fn ready_token(&self) -> Option<Token> {
        Some(self.0.clone())
    }
}

/// A token source from an async closure.
///
/// ```
/// use std::time::Duration;
/// use veracity_auth::{Authenticator, token_fn, Token, VeracityAuthLayer};
///
/// let layer = VeracityAuthLayer::new(Authenticator::builder(token_fn(|| async {
///     Ok::<_, std::io::Error>(Token::new("from-a-closure", Some(Duration::from_secs(3600))))
/// })).build()?);
/// # Ok::<(), veracity_auth::Error>(())
/// ```
pub fn token_fn<F, Fut, E>(f: F) -> TokenFn<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Token, E>> + Send,
    E: Into<BoxError>,
{
    TokenFn(f)
}

/// The [`TokenSource`] returned by [`token_fn`].
#[derive(Clone)]
pub struct TokenFn<F>(F);

impl<F> fmt::Debug for TokenFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenFn")
    }
}

impl<F, Fut, E> TokenSource for TokenFn<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Token, E>> + Send,
    E: Into<BoxError>,
{
    async fn fetch(&self) -> Result<Token, Error> {
        (self.0)().await.map_err(Error::source_error)
    }
}
