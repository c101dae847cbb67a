//! [`VeracityAuthMiddleware`]: the [`Authenticator`] as a `reqwest_middleware::Middleware`
//! (feature `reqwest-middleware`: reqwest-middleware 0.5 over reqwest 0.13).
//!
//! The same behaviour as the tower layer: both headers on every request (to the
//! authenticator's [origins](crate::AuthenticatorBuilder::origins), if set), and one replay
//! after a token rejection, as [`rejection`] decides it for both.
//!
//! Redirects: reqwest follows them inside the client, below every middleware, and copies
//! every header but `Authorization`, `Cookie` and `Proxy-Authorization` to another host, so
//! the API key would follow a redirect to anywhere.
//! [`VeracityAuthMiddleware::redirect_policy`] follows same-origin redirects only.
//!
//! TLS: this crate depends on reqwest with `default-features = false` and enables none of
//! its TLS features, so it adds no TLS stack and no crypto provider; your own `reqwest`
//! dependency picks them. reqwest's default `rustls` feature links `aws-lc-rs` (a C build);
//! to stay on `ring`, the provider this crate's token client uses, enable reqwest's
//! `rustls-no-provider` instead and either install ring as the process default before
//! building a client (`rustls::crypto::ring::default_provider().install_default()`) or hand
//! reqwest a ring `rustls::ClientConfig` through `ClientBuilder::tls_backend_preconfigured`.
//! Without either, reqwest panics when it builds a client.

use ::reqwest::{Request, Response, redirect};
use http::Extensions;
use reqwest_middleware::{Error, Middleware, Next, Result};

use crate::{Authenticator, Generation, rejection};

/// Adds `Authorization: Bearer <token>` and `Ocp-Apim-Subscription-Key` to every request
/// of a [`reqwest_middleware::ClientWithMiddleware`], and replays a request once after a
/// 401 that rejects its token (feature `reqwest-middleware`).
///
/// - The hot path takes the cached token without waiting; with none cached, the request
///   waits for the authenticator's single token fetch. A failed fetch is
///   [`reqwest_middleware::Error::Middleware`] holding the crate's [`Error`](crate::Error).
/// - A 401 with a `Bearer` challenge, in any `WWW-Authenticate` field, or with none, starts
///   one refresh (rate-limited,
///   generation-aware: [`Authenticator::rejected`]) and replays the request with the new
///   token when `reqwest::Request::try_clone` allows. A streaming body
///   (`reqwest::Body::wrap_stream`, `Body::wrap`) cannot be cloned: that request gets its
///   401, and the next request the new token.
/// - Never replayed: a 401 with Azure API Management's `AzureApiManagementKey` challenge,
///   a 403, a second 401. No body is read.
/// - A request to an origin the authenticator is not for goes out without credentials
///   (and without this authenticator's, should they have been copied into it).
///
/// Replays are counted in [`AuthStats::replays`](crate::AuthStats::replays), with the
/// layer's if the authenticator is shared.
///
/// ```no_run
/// use veracity_auth::{Authenticator, ClientCredentials, VeracityAuthMiddleware};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let auth = Authenticator::builder(ClientCredentials::new("client-id", "client-secret"))
///     .api_key("api-key").build()?;
/// let reqwest = reqwest::Client::builder()
///     .redirect(VeracityAuthMiddleware::redirect_policy())
///     .build()?;
/// let client = reqwest_middleware::ClientBuilder::new(reqwest)
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

    /// A redirect policy for the reqwest client under this middleware: follows a redirect
    /// to the same origin (scheme, host and port; at most 10 in a row, as reqwest's default
    /// policy), and stops at one to another origin, handing the 3xx response to the caller.
    ///
    /// reqwest follows redirects inside the client, below every middleware, and strips only
    /// `Authorization`, `Cookie` and `Proxy-Authorization` when the host changes: with its
    /// default policy, `Ocp-Apim-Subscription-Key` would follow a redirect to any host.
    ///
    /// ```
    /// use veracity_auth::VeracityAuthMiddleware;
    ///
    /// # fn build() -> Result<(), reqwest::Error> {
    /// let client = reqwest::Client::builder()
    ///     .redirect(VeracityAuthMiddleware::redirect_policy())
    ///     .build()?;
    /// # drop(client);
    /// # Ok(())
    /// # }
    /// ```
    pub fn redirect_policy() -> redirect::Policy {
        redirect::Policy::custom(|attempt| {
            let same_origin = attempt
                .previous()
                .last()
                .is_some_and(|from| from.origin() == attempt.url().origin());
            if same_origin {
                redirect::Policy::default().redirect(attempt)
            } else {
                tracing::debug!(
                    target: "veracity_auth",
                    "not following a redirect to another origin: returning it"
                );
                attempt.stop()
            }
        })
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

#[async_trait::async_trait]
impl Middleware for VeracityAuthMiddleware {
    async fn handle(
        &self,
        mut request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> Result<Response> {
        let url = request.url();
        if !self
            .authenticator
            .is_for_parts(url.scheme(), url.host_str(), url.port())
        {
            self.authenticator
                .remove_own_credentials(request.headers_mut());
            return next.run(request, extensions).await;
        }
        let generation = self.authorize(&mut request).await?;
        // `None` for a streaming body: such a request is sent once.
        let replay = request.try_clone();
        let response = next.clone().run(request, extensions).await?;
        let auth = &self.authenticator;
        let Some(renewal) =
            rejection::renewal(auth, generation, response.status(), response.headers())
        else {
            return Ok(response);
        };
        // Dropping the renewal of a request that cannot be sent again leaves its fetch
        // running, for the next request.
        let Some(mut replay) = replay else {
            return Ok(response);
        };
        // No new token: the caller gets the 401 it would have had.
        let Ok(headers) = renewal.await else {
            return Ok(response);
        };
        drop(response);
        rejection::replaying(auth, &headers, replay.headers_mut());
        next.run(replay, extensions).await
    }
}
