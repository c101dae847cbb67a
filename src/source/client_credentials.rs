//! A Veracity service account: the OAuth 2.0 client-credentials grant.

use std::{fmt, sync::LazyLock};

use super::{TokenEndpoint, TokenSource, response};
use crate::{Error, Token, token::Secret};

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
/// [`resource`](Self::resource) the v1 form. An [`endpoint`](Self::endpoint) you give is used
/// whatever either says, in any order.
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
    /// Given by [`endpoint`](Self::endpoint); else Veracity's, for the audience's form.
    endpoint: Option<TokenEndpoint>,
}

#[derive(Clone, Debug)]
enum Audience {
    Scope(String),
    Resource(String),
}

static V1: LazyLock<TokenEndpoint> = LazyLock::new(|| TokenEndpoint::veracity(DEFAULT_TOKEN_URL));
static V2: LazyLock<TokenEndpoint> = LazyLock::new(|| TokenEndpoint::veracity(V2_TOKEN_URL));

impl ClientCredentials {
    /// A service account with Veracity's defaults.
    pub fn new(client_id: impl Into<String>, client_secret: impl Into<String>) -> Self {
        ClientCredentials {
            client_id: client_id.into(),
            client_secret: Secret::new(client_secret),
            audience: Audience::Resource(DEFAULT_RESOURCE.to_owned()),
            endpoint: None,
        }
    }

    /// The token endpoint, used whatever [`scope`](Self::scope) or
    /// [`resource`](Self::resource) say (default: Veracity's, [`V2_TOKEN_URL`] with a scope,
    /// else [`DEFAULT_TOKEN_URL`]).
    pub fn endpoint(mut self, endpoint: TokenEndpoint) -> Self {
        self.endpoint = Some(endpoint);
        self
    }

    /// Sends `scope=<scope>` (the Azure AD v2.0 form), to [`V2_TOKEN_URL`] unless an
    /// [`endpoint`](Self::endpoint) is given. For Data Workbench: [`DEFAULT_SCOPE`].
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.audience = Audience::Scope(scope.into());
        self
    }

    /// Sends `resource=<resource>` (the Azure AD v1 form, the default), to
    /// [`DEFAULT_TOKEN_URL`] unless an [`endpoint`](Self::endpoint) is given.
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.audience = Audience::Resource(resource.into());
        self
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Where the token requests go: the endpoint given, or Veracity's for the audience.
    fn target(&self) -> &TokenEndpoint {
        self.endpoint.as_ref().unwrap_or(match self.audience {
            Audience::Scope(_) => &V2,
            Audience::Resource(_) => &V1,
        })
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
        let endpoint = self.target();
        let response = endpoint.post_form(&form, None).await?;
        response::parse(
            response.status(),
            response.headers(),
            response.body(),
            &[self.client_secret.expose()],
        )
        .map_err(|e| endpoint.locate(e))
    }
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .field("token_url", self.target())
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(c: &ClientCredentials) -> String {
        format!("{:?}", c.target())
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
    fn a_given_endpoint_wins_in_either_order() {
        let mine = "https://login.example.com/t/oauth2/v2.0/token";
        let endpoint = || TokenEndpoint::new(mine).unwrap();
        let before = ClientCredentials::new("id", "s")
            .endpoint(endpoint())
            .scope("x");
        let after = ClientCredentials::new("id", "s")
            .scope("x")
            .endpoint(endpoint());
        let resource = ClientCredentials::new("id", "s")
            .endpoint(endpoint())
            .resource("r");
        for c in [before, after, resource] {
            assert_eq!(url(&c), mine);
        }
    }

    #[test]
    fn debug_shows_no_query_of_the_token_url() {
        let endpoint = TokenEndpoint::new("https://host/p?code=x").unwrap();
        let c = ClientCredentials::new("id", "s").endpoint(endpoint);
        let d = format!("{c:?}");
        assert!(d.contains("https://host/p"), "{d}");
        assert!(!d.contains("code=x"), "{d}");
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
