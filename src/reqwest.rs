//! [`VeracityAuthMiddleware`]: the [`Authenticator`] as a `reqwest_middleware::Middleware`
//! (feature `reqwest-middleware`: reqwest-middleware 0.5 over reqwest 0.13).
//!
//! The same behaviour as the tower layer: both headers on every request, and one replay
//! after a token rejection, as [`classify`] decides it for the layer.
//!
//! TLS: this crate depends on reqwest with `default-features = false` and enables none of
//! its TLS features, so it adds no TLS stack and no crypto provider; your own `reqwest`
//! dependency picks them. reqwest's default `rustls` feature links `aws-lc-rs` (a C build);
//! to stay on `ring`, the provider this crate's token client uses, enable reqwest's
//! `rustls-no-provider` instead and either install ring as the process default before
//! building a client (`rustls::crypto::ring::default_provider().install_default()`) or hand
//! reqwest a ring `rustls::ClientConfig` through `ClientBuilder::tls_backend_preconfigured`.
//! Without either, reqwest panics when it builds a client.

use ::reqwest::{Request, Response};
use http::Extensions;
use reqwest_middleware::{Error, Middleware, Next, Result};

use crate::{
    AfterRejection, Authenticator, Generation,
    classify::{Rejection, classify},
};

/// Adds `Authorization: Bearer <token>` and `Ocp-Apim-Subscription-Key` to every request
/// of a [`reqwest_middleware::ClientWithMiddleware`], and replays a request once after a
/// 401 that rejects its token (feature `reqwest-middleware`).
///
/// - The hot path takes the cached token without waiting; with none cached, the request
///   waits for the authenticator's single token fetch. A failed fetch is
///   [`reqwest_middleware::Error::Middleware`] holding the crate's [`Error`](crate::Error).
/// - A 401 with a `Bearer` challenge or none, in any `WWW-Authenticate` field, starts one
///   refresh (rate-limited, generation-aware: [`Authenticator::rejected`]) and replays the
///   request with the new token when `reqwest::Request::try_clone` allows. A streaming body
///   (`reqwest::Body::wrap_stream`, `Body::wrap`) cannot be cloned: that request gets its
///   401, and the next request the new token.
/// - Never replayed: a 401 with Azure API Management's `AzureApiManagementKey` challenge
///   (the API key is wrong), a 403, a second 401.
///
/// Replays are counted in [`AuthStats::replays`](crate::AuthStats::replays), with the
/// layer's if the authenticator is shared.
///
/// ```no_run
/// use veracity_auth::{Authenticator, ClientCredentials, VeracityAuthMiddleware};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let auth = Authenticator::builder(ClientCredentials::new("client-id", "client-secret"))
///     .api_key("api-key")
///     .build();
/// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
///     .with(VeracityAuthMiddleware::new(auth))
///     .build();
/// let response = client
///     .get("https://api.veracity.com/veracity/dw/gateway/api/v2/workspaces")
///     .send()
///     .await?;
/// # drop(response);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct VeracityAuthMiddleware {
    authenticator: Authenticator,
}

impl VeracityAuthMiddleware {
    /// A middleware over `authenticator`, sharing its cache and counters with every other
    /// user of it (a [`VeracityAuthLayer`](crate::VeracityAuthLayer), another client).
    pub fn new(authenticator: Authenticator) -> Self {
        VeracityAuthMiddleware { authenticator }
    }

    /// The authenticator this middleware uses.
    pub fn authenticator(&self) -> &Authenticator {
        &self.authenticator
    }

    /// Adds both headers to `request`: the cached token, or the one the single fetch gets.
    async fn authorize(&self, request: &mut Request) -> Result<Generation> {
        if let Some(generation) = self.authenticator.authorize(request.headers_mut()) {
            return Ok(generation);
        }
        let headers = self
            .authenticator
            .headers()
            .await
            .map_err(Error::middleware)?;
        headers.insert_into(request.headers_mut());
        Ok(headers.generation())
    }
}

impl From<Authenticator> for VeracityAuthMiddleware {
    fn from(authenticator: Authenticator) -> Self {
        VeracityAuthMiddleware::new(authenticator)
    }
}

#[async_trait::async_trait]
impl Middleware for VeracityAuthMiddleware {
    async fn handle(
        &self,
        mut request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> Result<Response> {
        let generation = self.authorize(&mut request).await?;
        // `None` for a streaming body: such a request is sent once.
        let replay = request.try_clone();
        let response = next.clone().run(request, extensions).await?;
        match classify(response.status(), response.headers()) {
            Rejection::None => return Ok(response),
            Rejection::ApiKey => {
                tracing::warn!(
                    target: "veracity_auth",
                    status = response.status().as_u16(),
                    "the gateway rejected the API key (Ocp-Apim-Subscription-Key); \
                     a new token cannot fix that, returning the response"
                );
                return Ok(response);
            }
            Rejection::Token => {}
        }
        // Start the refresh even when the request cannot be replayed, so the next request
        // gets a good token; dropping the wait does not cancel the fetch.
        let after = self.authenticator.rejected(generation);
        let Some(mut replay) = replay else {
            tracing::debug!(
                target: "veracity_auth",
                "401 for a request whose body cannot be cloned: returning it"
            );
            return Ok(response);
        };
        let headers = match after {
            AfterRejection::Newer(headers) => headers,
            AfterRejection::Wait(headers) => match headers.await {
                Ok(headers) => headers,
                // No new token: the caller gets the 401 it would have had.
                Err(_) => return Ok(response),
            },
            AfterRejection::Refused => {
                tracing::debug!(
                    target: "veracity_auth",
                    "401 within the replay refresh interval: returning it without a new token"
                );
                return Ok(response);
            }
        };
        drop(response);
        headers.insert_into(replay.headers_mut());
        self.authenticator.count_replay();
        tracing::debug!(
            target: "veracity_auth",
            generation = headers.generation().get(),
            "replaying the request with a new token after a 401"
        );
        next.run(replay, extensions).await
    }
}
