#![doc = include_str!("../README.md")]
#![warn(missing_docs)]
#![deny(unreachable_pub, unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod authenticator;
mod cache;
mod classify;
pub mod env;
mod error;
mod future;
mod headers;
mod http_client;
mod layer;
pub mod replay;
#[cfg(feature = "reqwest-middleware")]
mod reqwest;
mod service;
pub mod sign_in;
mod source;
mod stats;
mod token;

#[cfg(feature = "reqwest-middleware")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest-middleware")))]
pub use crate::reqwest::VeracityAuthMiddleware;
pub use authenticator::{
    AfterRejection, AuthHeaders, Authenticator, AuthenticatorBuilder, Generation, HeadersFuture,
};
pub use error::{BoxError, Error, ErrorChain, OAuthError};
pub use future::ResponseFuture;
pub use headers::API_KEY_HEADER;
pub use http_client::{HttpClient, TokenRequestBody};
pub use layer::VeracityAuthLayer;
pub use service::VeracityAuth;
pub use sign_in::SignInError;
#[cfg(feature = "sign-in")]
#[cfg_attr(docsrs, doc(cfg(feature = "sign-in")))]
pub use sign_in::{DEFAULT_AUTHORIZE_URL, PendingSignIn, RedirectHost, SignIn, SignedIn};
pub use source::{
    ClientCredentials, DEFAULT_RESOURCE, DEFAULT_SCOPE, DEFAULT_TOKEN_URL, StaticToken, TokenFn,
    TokenSource, V2_TOKEN_URL, parse_token_response, token_fn,
};
pub use source::{
    DEFAULT_USER_SCOPE, DEFAULT_USER_TOKEN_URL, RefreshToken, SERVICES_API_USER_SCOPE,
};
pub use stats::AuthStats;
pub use token::Token;

/// The rustls version the HTTPS constructors of [`HttpClient`] take types from.
#[cfg(feature = "default-client")]
pub use rustls;
