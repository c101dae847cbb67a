//! Tower middleware that authenticates every request to [DNV Veracity Data
//! Workbench](https://developer.veracity.com/docs/section/dataworkbench/dataworkbench): a
//! valid bearer token and the API key (`Ocp-Apim-Subscription-Key`) on each request.
//!
//! Add [`VeracityAuthLayer`] to any stack that sends `http::Request`s (a hyper-util client, a
//! tonic `Channel`, anything built with `tower::ServiceBuilder`). The layer gets tokens from a
//! [`TokenSource`] (a service account, [`ClientCredentials`]; a signed-in person,
//! [`RefreshToken`]; or your own), caches them, refreshes them ahead of expiry, and replays a
//! request once when the gateway rejects its token with a 401.
//!
//! # The layer in a stack
//!
//! ```no_run
//! # #[cfg(feature = "default-client")]
//! # async fn demo() -> Result<(), tower::BoxError> {
//! use std::time::Duration;
//!
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use hyper_util::{client::legacy::Client, rt::TokioExecutor};
//! use tower::{ServiceBuilder, ServiceExt};
//! use veracity_auth::{ClientCredentials, VeracityAuthLayer};
//!
//! // A Veracity service account (Azure AD v1 token URL and the Services API resource, as
//! // Veracity documents them for Data Workbench).
//! let auth = VeracityAuthLayer::new(ClientCredentials::new("client-id", "client-secret"))
//!     .api_key("api-key");
//! // Or: let auth = VeracityAuthLayer::from_env()?;
//!
//! // Name the crypto provider: an application that links two (reqwest 0.13 brings aws-lc-rs)
//! // and installs no process default makes rustls panic when asked to pick one.
//! let https = hyper_rustls::HttpsConnectorBuilder::new()
//!     .with_provider_and_webpki_roots(veracity_auth::rustls::crypto::ring::default_provider())?
//!     .https_only()
//!     .enable_http1()
//!     .build();
//! let client = Client::builder(TokioExecutor::new()).build::<_, Full<Bytes>>(https);
//!
//! let api = ServiceBuilder::new()
//!     .timeout(Duration::from_secs(30))
//!     .layer(auth)
//!     .service(client);
//!
//! let request = http::Request::get(
//!     "https://api.veracity.com/veracity/dw/gateway/api/v2/workspaces/my-workspace-id",
//! )
//! .body(Full::default())?;
//! let response = api.oneshot(request).await?;
//! println!("{}", response.status());
//! # Ok(()) }
//! ```
//!
//! The service's error is `tower::BoxError`; errors of the layer itself downcast to [`Error`].
//! HTTP responses (401, 403, 429, ...) are responses, not errors.
//!
//! # Guarantees
//!
//! - **One token request however many requests need one**: on a cold or expired cache exactly
//!   one fetch runs, and every waiting request shares its result, error included.
//! - **No expired token is ever sent**: a token is retired a safety margin (30 s, at most a
//!   tenth of its lifetime, never under 1 s for a token that lives 2 s or more: providers round
//!   `exp` down to the second) before it expires, by tokio's monotonic clock.
//! - **No request waits in steady state**: a background refresh starts ahead of expiry while
//!   requests keep using the valid token.
//! - **Failures cost no more than they must**: a failed refresh keeps the valid token; failures
//!   back off exponentially with jitter and honour `Retry-After`; while no valid token exists,
//!   requests fail at once with the last error.
//! - **Cancellation-safe, and no runtime holds another hostage**: dropping any or all waiting
//!   requests neither cancels nor restarts a fetch. A fetch or refresh timer whose runtime shut
//!   down or idles is taken over by the next request on a live runtime, without backoff; no
//!   request waits for a token in steady state, whichever runtime dies.
//! - **Secrets stay secret**: the client secret, tokens, refresh tokens and the API key never
//!   appear in `Debug`, `Display`, errors or logs; the headers the layer adds are marked
//!   sensitive; a token with control characters is refused; plain-HTTP token URLs only to
//!   loopback.
//! - **A rejected token is replaced and the request replayed once**: on a 401 with a bearer
//!   challenge (or gRPC `UNAUTHENTICATED`) only that token is dropped, a new one is fetched
//!   (at most one 401-caused fetch per interval) and the request is sent again. Never on 403,
//!   never twice, never for a wrong API key. Bodies replay as [`replay`] describes.
//!
//! # Modules
//!
//! Public: [`replay`] (request bodies the layer can replay after a 401) and [`env`](mod@env)
//! (configuration from `VERACITY_*` variables). Every other public item is at the root.
//!
//! Inside, imports run one way (`tests/module_graph.rs` checks there is no cycle; the picture
//! is in `ARCHITECTURE.md`):
//!
//! | module | its one job |
//! |---|---|
//! | `headers`, `token`, `error`, `classify`, `redact`, `runtime` | leaves: header names and checks, [`Token`], [`Error`], which responses mean "token rejected", redaction of credentials from any text, which tokio runtime the current thread offers |
//! | `http_client` | the HTTP client token requests go through ([`HttpClient`]) |
//! | `source` | where tokens come from ([`TokenSource`], [`ClientCredentials`], [`RefreshToken`], [`StaticToken`], [`token_fn`]) |
//! | `sign_in` | signing in as a person, feature `sign-in` (`SignIn`, `PendingSignIn`, `SignedIn`) |
//! | `cache` | the token cache: the bearer token and its headers, over `cache::expiring`, a cache of any expiring credential (single flight, refresh ahead, backoff, invalidation by generation) |
//! | `authenticator` | the credential core: a source, its cache, the API key and the counters |
//! | `layer`, `service`, `future` | the tower adapter: [`VeracityAuthLayer`], [`VeracityAuth`], [`ResponseFuture`] |
//! | [`replay`] | replayable request bodies |
//! | [`env`](mod@env), `stats` | configuration from the environment; the counters ([`AuthStats`]) |
//!
//! # Features
//!
//! - `default-client` (default): the HTTPS client for token requests (hyper-util,
//!   hyper-rustls, rustls with `ring`).
//! - `sign-in`: signing in as a person (authorization code with PKCE, loopback redirect).
//! - `tonic`: replay of `tonic::body::Body`, so the layer wraps a tonic `Channel`.
//! - `axum`: replay of `axum::body::Body` request bodies (axum-core only).
//!
//! To test your own code, the mock of Veracity is its own crate, `veracity-auth-mock`: a
//! dev-dependency, as tower users add `tower-test`.
#![warn(missing_docs)]
#![deny(unreachable_pub, unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod authenticator;
mod cache;
mod classify;
#[cfg(feature = "default-client")]
mod client_builder;
pub mod env;
mod error;
mod future;
mod headers;
mod http_client;
mod layer;
#[cfg(feature = "default-client")]
mod proxy;
mod redact;
pub mod replay;
#[cfg(feature = "reqwest-middleware")]
mod reqwest;
#[cfg(feature = "default-client")]
mod roots;
mod runtime;
mod service;
#[cfg(feature = "sign-in")]
mod sign_in;
mod source;
mod stats;
mod token;

#[cfg(feature = "reqwest-middleware")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest-middleware")))]
pub use crate::reqwest::VeracityAuthMiddleware;
pub use authenticator::{
    AfterRejection, AuthHeaders, Authenticator, AuthenticatorBuilder, Generation, HeadersFuture,
};
#[cfg(feature = "sign-in")]
#[cfg_attr(docsrs, doc(cfg(feature = "sign-in")))]
pub use error::SignInError;
#[cfg(feature = "sign-in")]
#[cfg_attr(docsrs, doc(cfg(feature = "sign-in")))]
pub use error::StoreError;
pub use error::{BoxError, Error, ErrorChain, OAuthError};
pub use future::ResponseFuture;
pub use headers::API_KEY_HEADER;
pub use http_client::{HttpClient, TokenRequestBody};
pub use layer::VeracityAuthLayer;
pub use service::VeracityAuth;
#[cfg(feature = "keyring")]
#[cfg_attr(docsrs, doc(cfg(feature = "keyring")))]
pub use sign_in::KeyringStore;
#[cfg(feature = "sign-in")]
#[cfg_attr(docsrs, doc(cfg(feature = "sign-in")))]
pub use sign_in::{
    DEFAULT_AUTHORIZE_URL, FileStore, PendingSignIn, RedirectHost, RefreshTokenStore, SignIn,
    SignedIn,
};
/// Public only for the fuzz target (fuzz/) and the parser's property tests: not an API.
#[doc(hidden)]
pub use source::parse_token_response;
pub use source::{
    ClientCredentials, DEFAULT_RESOURCE, DEFAULT_SCOPE, DEFAULT_TOKEN_URL, StaticToken, TokenFn,
    TokenSource, V2_TOKEN_URL, token_fn,
};
pub use source::{
    DEFAULT_USER_SCOPE, DEFAULT_USER_TOKEN_URL, RefreshToken, SERVICES_API_USER_SCOPE,
};
pub use stats::AuthStats;
pub use token::Token;
#[cfg(feature = "default-client")]
#[cfg_attr(docsrs, doc(cfg(feature = "default-client")))]
pub use {client_builder::HttpClientBuilder, roots::Roots};

/// The rustls version the HTTPS constructors of [`HttpClient`] take types from.
#[cfg(feature = "default-client")]
pub use rustls;

// The README's examples are compiled and run as doctests too, without being the crate docs.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
