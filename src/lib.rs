//! Tower middleware that authenticates every request to [DNV Veracity Data
//! Workbench](https://developer.veracity.com/docs/section/dataworkbench/dataworkbench): a
//! valid bearer token and the API key ([`API_KEY_HEADER`], `Ocp-Apim-Subscription-Key`) on
//! each request.
//!
//! Build an [`Authenticator`] over a [`TokenSource`], hand it to [`VeracityAuthLayer::new`], and
//! add the layer to any stack that sends `http::Request`s (a hyper-util client, a tonic
//! `Channel`, anything built with `tower::ServiceBuilder`). The README shows it over a
//! hyper-util client and with reqwest; here it is over a stand-in service:
//!
//! ```
//! use std::time::Duration;
//!
//! use http::{Request, Response};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use veracity_auth::{API_KEY_HEADER, Authenticator, CachePolicy, StaticToken, VeracityAuthLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let authenticator = Authenticator::builder(StaticToken::new("a-token"))
//!     .api_key("api-key")
//!     .cache_policy(CachePolicy::default().refresh_ahead(Duration::from_secs(120)))
//!     .build()?; // settings are checked here, once
//! // Or, from VERACITY_* variables: VeracityAuthLayer::from_env()?
//! let api = ServiceBuilder::new()
//!     .layer(VeracityAuthLayer::new(authenticator))
//!     .service(service_fn(|request: Request<String>| async move {
//!         assert_eq!(request.headers()["authorization"], "Bearer a-token");
//!         assert_eq!(request.headers()[API_KEY_HEADER], "api-key");
//!         Ok::<_, tower::BoxError>(Response::new(String::new()))
//!     }));
//!
//! let url = "https://api.veracity.com/veracity/dw/gateway/api/v2/workspaces/my-workspace-id";
//! api.oneshot(Request::get(url).body(String::new())?).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Guarantees
//!
//! - **One token request however many requests need one.** On a cold or expired cache one fetch
//!   runs, and every waiting request shares its result, error included.
//! - **No request waits in steady state.** A background refresh starts ahead of expiry, jittered
//!   so replicas do not refresh in step, while requests keep using the valid token.
//! - **No expired token is sent.** A token is retired a safety margin before it expires, by
//!   tokio's monotonic clock; a token response's `expires_in` is trusted, an absolute expiry
//!   (which depends on the machine's clock) is not.
//! - **Failures cost no more than they must.** A failed refresh keeps the valid token; failures
//!   back off exponentially with jitter and honour `Retry-After`; while no valid token exists,
//!   requests fail at once with the last error, and permanent errors say so
//!   ([`Error::is_permanent`]).
//! - **A rejected token is replaced and the request replayed once.** After a 401 (bearer
//!   challenge, none, or gRPC `UNAUTHENTICATED`) only the token that request carried is dropped,
//!   a new one is fetched and the request is sent again, readying the inner service first: never
//!   on a 403, never twice, never when API Management says the API key is wrong, and at most one
//!   401-caused fetch per rejection interval. A body that cannot be replayed ([`replay`] lists
//!   them) gets its 401 back as a response.
//! - **Credentials go only where they belong.** A request to an origin not named in
//!   [`origins`](AuthenticatorBuilder::origins) (by default [`VERACITY_ORIGIN`] alone) carries
//!   neither the token nor the API key, even when a redirect follower outside the layer copied
//!   them.
//! - **Secrets stay secret.** The client secret, tokens, refresh tokens and the API key never
//!   appear in `Debug`, `Display`, errors or logs; the headers the layer adds are marked
//!   sensitive.
//! - **Cancellation-safe.** Dropping waiting requests neither cancels nor restarts a fetch; a
//!   source that fails or panics is a failed fetch, and a fetch whose runtime shut down is
//!   started again by the next request on a live runtime.
//!
//! The numbers behind each (margins, intervals, backoff, the replay body cap) are
//! [`CachePolicy`]'s defaults and [`VeracityAuthLayer::max_replay_body`]'s.
//!
//! # Where to find what
//!
//! - **Token sources:** [`ClientCredentials`] (a service account, Veracity's Azure AD v1 form by
//!   default; [`scope`](ClientCredentials::scope) selects v2.0), [`RefreshToken`] (a signed-in
//!   person), [`StaticToken`], [`token_fn`], or your own [`TokenSource`]. The grants reach
//!   their [`TokenEndpoint`] (HTTPS, checked once when it is made; Veracity's by default)
//!   through an [`HttpClient`]: by default one per process, hyper-util with rustls and `ring`,
//!   honouring `HTTPS_PROXY`/`NO_PROXY`; `HttpClientBuilder` sets a proxy, private roots or
//!   a rustls configuration.
//! - **Settings:** [`AuthenticatorBuilder`] (API key, origins, [`CachePolicy`]); on the layer,
//!   [`without_replay`](VeracityAuthLayer::without_replay) (any `http_body::Body`, no replay)
//!   and [`max_replay_body`](VeracityAuthLayer::max_replay_body). [`VeracityAuthLayer::from_env`]
//!   reads a service account from the variables the [`env`](mod@env) module lists.
//! - **Errors, by concern:** every `build()` and `from_env` returns a [`ConfigError`], before
//!   anything is sent. The service's error is `tower::BoxError`; errors of the layer downcast
//!   to [`Error`] (a fetch's error, shared by the requests that waited for it; SAS failures are
//!   [`Error::Sas`], sign-in ones `Error::SignIn`), errors of the inner service pass through
//!   untouched, and HTTP responses (401, 403, 429, ...) stay responses. [`Error::kind`] says
//!   whether an error is configuration, temporary, refused credentials or a sign-in needed.
//! - **Counters:** [`VeracityAuthLayer::stats`] ([`AuthStats`]).
//! - **Clients that are not tower:** [`Authenticator::authorize`], [`Authenticator::headers`] and
//!   [`Authenticator::rejected`]; one authenticator shared by a layer and a reqwest middleware
//!   has one cache and one set of counters.
//! - **Storage:** [`StorageSas`] keeps a Data Workbench storage SAS valid with the token's
//!   guarantees (`StorageSas::dataset(&auth, workspace, dataset).build()?`); `SasStore` is an
//!   object_store store over it, for object_store 0.14 ([`object_store_0_14`], feature
//!   `object-store`) and 0.13 (`object_store_0_13`, feature `object-store-013`).
//!
//! # reqwest
//!
//! With feature `reqwest-middleware`, `VeracityAuthMiddleware` puts both headers on every
//! request of a reqwest 0.13 client and replays a request once after a 401 when
//! `Request::try_clone` allows. This crate enables none of reqwest's TLS features. reqwest's
//! default `rustls` links aws-lc-rs; to stay on `ring`, use `default-features = false,
//! features = ["rustls-no-provider"]` and either install ring as the process default
//! (`rustls::crypto::ring::default_provider().install_default()`) or pass a ring
//! `rustls::ClientConfig` to `ClientBuilder::tls_backend_preconfigured`; with neither, reqwest
//! panics when it builds a client.
//!
//! # Signing in as a person
//!
//! With feature `sign-in`, `SignIn` runs the authorization-code flow with PKCE against
//! Veracity's Azure AD B2C, with a loopback redirect on `http://localhost:<port>/` (register
//! `http://localhost` in Veracity's developer portal), and yields a [`RefreshToken`] source that
//! follows the provider's rotations ([`on_rotate`](RefreshToken::on_rotate)).
//! `SignIn::restore_or_sign_in` keeps the refresh token in a `RefreshTokenStore` (`FileStore`;
//! `KeyringStore`, feature `keyring`) and opens the browser only when there is none or it is
//! refused (feature `open-browser` opens it for you). [`RefreshToken::for_scope`] feeds a second
//! API from the same sign-in. When the refresh token is expired or revoked, requests fail with
//! [`Error::SignInRequired`]: sign in again. `cargo run --example sign_in --features sign-in`
//! runs it against the embedded mock.
//!
//! B2C offers no device-code flow. On a machine without a browser, use a service account, or
//! copy a refresh token from the store of a machine where you signed in
//! (`RefreshToken::new(client_id, token)`) and persist its rotations there.
//!
//! # Features
//!
//! - `default-client` (default): the HTTPS client for token requests.
//! - `native-roots`: that client also trusts the operating system's roots (`Roots`).
//! - `sign-in`, `open-browser`, `keyring`: signing in as a person, opening the browser, the
//!   refresh token in the OS keychain.
//! - `tonic`, `axum`: replay of `tonic::body::Body` and `axum::body::Body`.
//! - `reqwest-middleware`: `VeracityAuthMiddleware` for reqwest 0.13 (reqwest-middleware 0.5).
//! - `object-store`, `object-store-013`: `SasStore` for object_store 0.14 and 0.13; both can be
//!   on at once.
//!
//! The public modules are [`replay`] and [`env`](mod@env); every other item is at the root.
//! To test your own code, `veracity-auth-mock` is a mock of Veracity in a crate of its own.
#![warn(missing_docs)]
#![deny(unreachable_pub, unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod authenticator;
mod cache;
#[cfg(feature = "default-client")]
mod client_builder;
pub mod env;
mod error;
mod future;
mod head_pool;
mod headers;
mod http_client;
mod layer;
mod origin;
#[cfg(feature = "default-client")]
mod proxy;
mod redact;
mod rejection;
pub mod replay;
#[cfg(feature = "reqwest-middleware")]
mod reqwest;
#[cfg(feature = "default-client")]
mod roots;
mod runtime;
mod sas;
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
    AuthHeaders, Authenticator, AuthenticatorBuilder, Generation, HeadersFuture, VERACITY_ORIGIN,
};
pub use cache::CachePolicy;
#[cfg(feature = "sign-in")]
#[cfg_attr(docsrs, doc(cfg(feature = "sign-in")))]
pub use error::SignInError;
#[cfg(feature = "sign-in")]
#[cfg_attr(docsrs, doc(cfg(feature = "sign-in")))]
pub use error::StoreError;
pub use error::{BoxError, ConfigError, Error, ErrorKind, OAuthError, SasError};
pub use future::{NoReplayFuture, ResponseFuture};
pub use headers::API_KEY_HEADER;
pub use http_client::{HttpClient, TokenRequestBody};
pub use layer::VeracityAuthLayer;
#[cfg(feature = "object-store-013")]
pub use sas::object_store_0_13;
#[cfg(feature = "object-store")]
pub use sas::object_store_0_14;
#[cfg(feature = "object-store")]
#[cfg_attr(docsrs, doc(cfg(feature = "object-store")))]
pub use sas::object_store_0_14::{SasCredentialProvider, SasStore};
pub use sas::{Sas, SasAccess, SasStats, StorageSas, StorageSasBuilder};
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
#[cfg(feature = "__fuzzing")]
#[doc(hidden)]
pub use source::parse_token_response;
pub use source::{
    ClientCredentials, DEFAULT_RESOURCE, DEFAULT_SCOPE, DEFAULT_TOKEN_URL, StaticToken,
    TokenEndpoint, TokenFn, TokenSource, V2_TOKEN_URL, token_fn,
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
