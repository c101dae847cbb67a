//! A Veracity service account: the OAuth 2.0 client-credentials grant.

use std::fmt;

use super::{TokenSource, endpoint::TokenEndpoint, response};
use crate::{Error, HttpClient, Token, token::Secret};

/// The token endpoint for Veracity service accounts: Azure AD v1, the form Veracity's Data
/// Workbench documentation shows and its wire-protocol notes require for client credentials.
/// It takes [`DEFAULT_RESOURCE`]. The default of [`ClientCredentials`].
pub const DEFAULT_TOKEN_URL: &str =
    "https://login.microsoftonline.com/dnvglb2cprod.onmicrosoft.com/oauth2/token";
/// Veracity's Azure AD B2C v2.0 token endpoint, which takes a `scope` ([`DEFAULT_SCOPE`]).
/// [`ClientCredentials::scope`] switches to it. Veracity's Data Workbench authentication page
/// showed this form for about 28 hours (2022-08-24 to 2022-08-25) before the v1 form
/// replaced it.
pub const V2_TOKEN_URL: &str =
    "https://login.veracity.com/a68572e3-63ce-4bc1-acdc-b64943502e9d/oauth2/v2.0/token";
/// The `.default` scope of Veracity's Services API (`83054ebf-…`), the API Data Workbench
/// service-account tokens are issued for, on [`V2_TOKEN_URL`].
pub const DEFAULT_SCOPE: &str =
    "https://dnvglb2cprod.onmicrosoft.com/83054ebf-1d7b-43f5-82ad-b2bde84d7b75/.default";
/// Veracity's Services API (`83054ebf-…`) as an Azure AD v1 resource on
/// [`DEFAULT_TOKEN_URL`]: the resource Veracity's Data Workbench authentication page names
/// for service accounts.
pub const DEFAULT_RESOURCE: &str =
    "https://dnvglb2cprod.onmicrosoft.com/83054ebf-1d7b-43f5-82ad-b2bde84d7b75";

/// A Veracity service account (client id and secret): tokens from the OAuth 2.0
/// client-credentials grant.
///
/// By default it uses the form Veracity documents for Data Workbench service accounts: the
/// Azure AD v1 endpoint [`DEFAULT_TOKEN_URL`] with `resource=`[`DEFAULT_RESOURCE`].
/// [`scope`](Self::scope) selects the v2.0 form instead ([`V2_TOKEN_URL`] with `scope=`), and
/// [`resource`](Self::resource) the v1 form, each with its URL, unless
/// [`token_url`](Self::token_url) was set explicitly (before or after).
///
/// `Debug` shows the client id and the token URL's scheme, host and path, never the secret.
///
/// ```
/// use veracity_auth::{Authenticator, ClientCredentials, VeracityAuthLayer};
///
/// // Veracity's documented form (Azure AD v1, `resource`):
/// let v1 = ClientCredentials::new("client-id", "client-secret");
/// // The v2.0 form: Veracity's B2C endpoint with the `.default` scope.
/// let v2 = ClientCredentials::new("client-id", "client-secret")
///     .scope(veracity_auth::DEFAULT_SCOPE);
/// let layer = VeracityAuthLayer::new(Authenticator::builder(v1).api_key("api-key").build().unwrap());
/// assert!(!format!("{layer:?} {v2:?}").contains("client-secret"));
/// ```
#[derive(Clone)]
pub struct ClientCredentials {
    client_id: String,
    client_secret: Secret,
    audience: Audience,
    endpoint: TokenEndpoint,
    /// Set by [`token_url`](Self::token_url): `scope`/`resource` no longer pick the URL.
    explicit_url: bool,
}

#[derive(Clone, Debug)]
enum Audience {
    Scope(String),
    Resource(String),
}

impl ClientCredentials {
    /// A service account with Veracity's defaults.
    pub fn new(client_id: impl Into<String>, client_secret: impl Into<String>) -> Self {
        ClientCredentials {
            client_id: client_id.into(),
            client_secret: Secret::new(client_secret),
            audience: Audience::Resource(DEFAULT_RESOURCE.to_owned()),
            endpoint: TokenEndpoint::new(DEFAULT_TOKEN_URL),
            explicit_url: false,
        }
    }

    /// The token endpoint, kept whatever [`scope`](Self::scope) or
    /// [`resource`](Self::resource) select. Plain `http://` is accepted only for loopback
    /// hosts, unless [`allow_http`](Self::allow_http) is set. A URL with credentials in it
    /// (`https://user:password@host/...`) is refused: every fetch fails with
    /// [`Error::InvalidTokenUrl`] and nothing is sent.
    pub fn token_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint.url = url.into();
        self.explicit_url = true;
        self
    }

    /// Sends `scope=<scope>` (the Azure AD v2.0 form), to [`V2_TOKEN_URL`] unless
    /// [`token_url`](Self::token_url) is set. For Data Workbench: [`DEFAULT_SCOPE`].
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.audience = Audience::Scope(scope.into());
        if !self.explicit_url {
            self.endpoint.url = V2_TOKEN_URL.to_owned();
        }
        self
    }

    /// Sends `resource=<resource>` (the Azure AD v1 form, the default), to
    /// [`DEFAULT_TOKEN_URL`] unless [`token_url`](Self::token_url) is set.
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.audience = Audience::Resource(resource.into());
        if !self.explicit_url {
            self.endpoint.url = DEFAULT_TOKEN_URL.to_owned();
        }
        self
    }

    /// Allows a plain-HTTP token URL to a non-loopback host. Credentials then cross the
    /// network in clear text; only for test networks.
    pub fn allow_http(mut self, allow: bool) -> Self {
        self.endpoint.allow_http = allow;
        self
    }

    /// The largest token response read (default 64 KiB); larger answers are an error.
    pub fn max_response_size(mut self, bytes: usize) -> Self {
        self.endpoint.max_response = bytes;
        self
    }

    /// The HTTP client for token requests (default: [`HttpClient::default_https`]).
    pub fn http_client(mut self, client: HttpClient) -> Self {
        self.endpoint.client.given = Some(client);
        self
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }
}

impl TokenSource for ClientCredentials {
    async fn fetch(&self) -> Result<Token, Error> {
        let (key, value) = match &self.audience {
            Audience::Scope(s) => ("scope", s),
            Audience::Resource(r) => ("resource", r),
        };
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.expose()),
            (key, value.as_str()),
        ];
        let response = self.endpoint.post_form(&form).await?;
        response::parse(
            response.status(),
            response.headers(),
            response.body(),
            &[self.client_secret.expose()],
        )
        .map_err(|e| self.endpoint.locate(e))
    }
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .field("token_url", &self.endpoint)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(c: &ClientCredentials) -> String {
        format!("{:?}", c.endpoint)
    }

    #[test]
    fn the_documented_v1_form_is_the_default_and_scope_switches_to_v2() {
        let c = ClientCredentials::new("id", "s");
        assert_eq!(url(&c), DEFAULT_TOKEN_URL);
        assert!(matches!(&c.audience, Audience::Resource(r) if r == DEFAULT_RESOURCE));
        let c = c.scope(DEFAULT_SCOPE);
        assert_eq!(url(&c), V2_TOKEN_URL);
        assert!(matches!(&c.audience, Audience::Scope(s) if s == DEFAULT_SCOPE));
        let c = c.resource("https://r");
        assert_eq!(url(&c), DEFAULT_TOKEN_URL);
    }

    #[test]
    fn an_explicit_token_url_wins_in_either_order() {
        let mine = "https://login.example.com/t/oauth2/v2.0/token";
        let before = ClientCredentials::new("id", "s").token_url(mine).scope("x");
        let after = ClientCredentials::new("id", "s").scope("x").token_url(mine);
        let resource = ClientCredentials::new("id", "s")
            .token_url(mine)
            .resource("r");
        for c in [before, after, resource] {
            assert_eq!(url(&c), mine);
        }
    }

    #[test]
    fn debug_shows_no_credentials_or_query_of_the_token_url() {
        let c = ClientCredentials::new("id", "s").token_url("https://user:pass@host/p?code=x");
        let d = format!("{c:?}");
        assert!(d.contains("https://host/p"), "{d}");
        for hidden in ["user", "pass", "code=x"] {
            assert!(!d.contains(hidden), "{hidden} in {d}");
        }
    }

    #[test]
    fn debug_hides_the_secret() {
        let c = ClientCredentials::new("id-123", "very-secret-value");
        let s = format!("{c:?}");
        assert!(
            s.contains("id-123") && !s.contains("very-secret-value"),
            "{s}"
        );
    }
}
